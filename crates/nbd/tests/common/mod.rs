//! What the byte-level NBD tests share: the protocol's numbers as
//! doc/proto.md of the NBD project states them (never taken from the
//! server under test, so a wrong constant there fails here), a client
//! written from the protocol text, and a server of one export.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coffer_nbd::{BlockDevice, ExportResolver, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// "NBDMAGIC", the first 8 bytes the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// "IHAVEOPT": after NBDMAGIC, and before every option the client sends.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of every option reply (fixed newstyle).
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// `NBD_REQUEST_MAGIC`.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// `NBD_SIMPLE_REPLY_MAGIC`.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

pub const EXPORT: &str = "secret-export-token";
pub const MAX_REQUEST: u32 = 1 << 20;

pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const REP_ACK: u32 = 1;
pub const REP_INFO: u32 = 3;
pub const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
pub const REP_ERR_INVALID: u32 = (1 << 31) + 3;
pub const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;
pub const REP_ERR_POLICY: u32 = (1 << 31) + 2;

pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const FLAG_FUA: u16 = 1;

pub const EPERM: u32 = 1;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const ESHUTDOWN: u32 = 108;

pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;
pub const REP_META_CONTEXT: u32 = 4;
/// `NBD_STRUCTURED_REPLY_MAGIC`.
pub const STRUCTURED_MAGIC: u32 = 0x668e_33ef;
pub const CMD_BLOCK_STATUS: u16 = 7;
pub const FLAG_REQ_ONE: u16 = 8;
pub const TYPE_NONE: u16 = 0;
pub const TYPE_OFFSET_DATA: u16 = 1;
pub const TYPE_BLOCK_STATUS: u16 = 5;
pub const TYPE_ERROR: u16 = (1 << 15) + 1;
pub const EIO: u32 = 5;

struct OneExport(Arc<dyn BlockDevice>);

#[async_trait]
impl ExportResolver for OneExport {
    async fn open(&self, name: &str) -> Option<Arc<dyn BlockDevice>> {
        (name == EXPORT).then(|| self.0.clone())
    }
}

/// Serve `dev` as [`EXPORT`] with `config` on a loopback port; returns
/// the address.
pub async fn serve_one(dev: Arc<dyn BlockDevice>, config: ServerConfig) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(coffer_nbd::serve(
        listener,
        Arc::new(OneExport(dev)),
        config,
        std::future::pending(),
    ));
    addr
}

/// A client speaking the protocol byte by byte.
pub struct Client {
    pub s: TcpStream,
}

impl Client {
    /// Connect and check the server's greeting; send `cflags`.
    pub async fn connect(addr: std::net::SocketAddr, cflags: u32) -> Self {
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert_eq!(s.read_u64().await.unwrap(), NBDMAGIC);
        assert_eq!(s.read_u64().await.unwrap(), IHAVEOPT);
        let hflags = s.read_u16().await.unwrap();
        assert_eq!(hflags, 3, "fixed newstyle and no zeroes advertised");
        s.write_u32(cflags).await.unwrap();
        Self { s }
    }

    pub async fn option(&mut self, opt: u32, data: &[u8]) {
        let mut m = IHAVEOPT.to_be_bytes().to_vec();
        m.extend_from_slice(&opt.to_be_bytes());
        m.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        m.extend_from_slice(data);
        self.s.write_all(&m).await.unwrap();
    }

    /// One option reply: (option, type, data).
    pub async fn opt_reply(&mut self) -> (u32, u32, Vec<u8>) {
        assert_eq!(self.s.read_u64().await.unwrap(), REPLY_MAGIC);
        let opt = self.s.read_u32().await.unwrap();
        let kind = self.s.read_u32().await.unwrap();
        let len = self.s.read_u32().await.unwrap();
        let mut d = vec![0; usize::try_from(len).unwrap()];
        self.s.read_exact(&mut d).await.unwrap();
        (opt, kind, d)
    }

    /// Send INFO or GO for `name` asking for `infos`; collect replies until
    /// the final one. Returns (the INFO payloads, the final reply type).
    pub async fn info_or_go(&mut self, opt: u32, name: &str, infos: &[u16]) -> (Vec<Vec<u8>>, u32) {
        let mut d = u32::try_from(name.len()).unwrap().to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&u16::try_from(infos.len()).unwrap().to_be_bytes());
        for i in infos {
            d.extend_from_slice(&i.to_be_bytes());
        }
        self.option(opt, &d).await;
        let mut got = Vec::new();
        loop {
            let (o, kind, data) = self.opt_reply().await;
            assert_eq!(o, opt);
            if kind == REP_INFO {
                got.push(data);
            } else {
                return (got, kind);
            }
        }
    }

    /// Connect with no-zeroes and enter transmission with GO.
    pub async fn transmission(addr: std::net::SocketAddr) -> Self {
        let mut c = Self::connect(addr, 3).await;
        let (_, last) = c.info_or_go(OPT_GO, EXPORT, &[]).await;
        assert_eq!(last, REP_ACK);
        c
    }

    pub async fn request(
        &mut self,
        cmd: u16,
        flags: u16,
        cookie: u64,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) {
        let mut m = REQUEST_MAGIC.to_be_bytes().to_vec();
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&cmd.to_be_bytes());
        m.extend_from_slice(&cookie.to_be_bytes());
        m.extend_from_slice(&offset.to_be_bytes());
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(payload);
        self.s.write_all(&m).await.unwrap();
    }

    /// One simple reply's header: (error, cookie).
    pub async fn reply(&mut self) -> (u32, u64) {
        assert_eq!(self.s.read_u32().await.unwrap(), SIMPLE_REPLY_MAGIC);
        let error = self.s.read_u32().await.unwrap();
        let cookie = self.s.read_u64().await.unwrap();
        (error, cookie)
    }

    pub async fn read_payload(&mut self, len: usize) -> Vec<u8> {
        let mut d = vec![0; len];
        self.s.read_exact(&mut d).await.unwrap();
        d
    }

    /// Whether the server closed the connection (EOF or reset within 5 s).
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(5), self.s.read(&mut b)).await {
            Ok(Ok(0) | Err(_)) => true,
            Ok(Ok(_)) | Err(_) => false,
        }
    }
    /// Replies to one option up to its final one: [(type, data)].
    pub async fn replies(&mut self) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let (_, kind, data) = self.opt_reply().await;
            let last = kind != REP_META_CONTEXT && kind != REP_INFO;
            out.push((kind, data));
            if last {
                return out;
            }
        }
    }

    /// LIST or SET_META_CONTEXT for `name` with `queries`; its replies.
    pub async fn meta(&mut self, opt: u32, name: &str, queries: &[&str]) -> Vec<(u32, Vec<u8>)> {
        let mut d = u32::try_from(name.len()).unwrap().to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&u32::try_from(queries.len()).unwrap().to_be_bytes());
        for q in queries {
            d.extend_from_slice(&u32::try_from(q.len()).unwrap().to_be_bytes());
            d.extend_from_slice(q.as_bytes());
        }
        self.option(opt, &d).await;
        self.replies().await
    }

    /// One structured reply chunk: (flags, type, cookie, payload).
    pub async fn chunk(&mut self) -> (u16, u16, u64, Vec<u8>) {
        assert_eq!(self.s.read_u32().await.unwrap(), STRUCTURED_MAGIC);
        let flags = self.s.read_u16().await.unwrap();
        let ty = self.s.read_u16().await.unwrap();
        let cookie = self.s.read_u64().await.unwrap();
        let len = self.s.read_u32().await.unwrap();
        let mut d = vec![0; usize::try_from(len).unwrap()];
        self.s.read_exact(&mut d).await.unwrap();
        (flags, ty, cookie, d)
    }
}
