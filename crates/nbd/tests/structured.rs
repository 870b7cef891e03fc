//! Structured replies and the `base:allocation` context, byte by byte: the
//! negotiation rules (and clients that break them), structured read and
//! error chunks, and block status from a device's extents.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use coffer_nbd::{BlockDevice, DeviceError, ExportResolver, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const STRUCTURED_MAGIC: u32 = 0x668e_33ef;
const EXPORT: &str = "secret-export-token";
const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;
const OPT_LIST_META_CONTEXT: u32 = 9;
const OPT_SET_META_CONTEXT: u32 = 10;
const REP_ACK: u32 = 1;
const REP_META_CONTEXT: u32 = 4;
const REP_ERR_INVALID: u32 = (1 << 31) + 3;
const CMD_READ: u16 = 0;
const CMD_BLOCK_STATUS: u16 = 7;
const FLAG_REQ_ONE: u16 = 8;
const TYPE_NONE: u16 = 0;
const TYPE_OFFSET_DATA: u16 = 1;
const TYPE_BLOCK_STATUS: u16 = 5;
const TYPE_ERROR: u16 = (1 << 15) + 1;
const EINVAL: u32 = 22;
const EIO: u32 = 5;

/// 1 MiB: data in [0, 64 KiB) and [512 KiB, 576 KiB), holes elsewhere;
/// reads past 900 KiB fail.
struct Sparse;

fn byte_at(off: u64) -> u8 {
    if off < 65536 || (524_288..589_824).contains(&off) {
        0x5a
    } else {
        0
    }
}

#[async_trait]
impl BlockDevice for Sparse {
    fn size(&self) -> u64 {
        1 << 20
    }
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError> {
        if offset + u64::from(len) > 900 * 1024 {
            return Err(DeviceError::Io("bad sector".into()));
        }
        Ok((offset..offset + u64::from(len)).map(byte_at).collect())
    }
    async fn write(&self, _: u64, _: Bytes, _: bool) -> Result<(), DeviceError> {
        Ok(())
    }
    async fn flush(&self) -> Result<(), DeviceError> {
        Ok(())
    }
    async fn trim(&self, _: u64, _: u32, _: bool) -> Result<(), DeviceError> {
        Ok(())
    }
    async fn write_zeroes(&self, _: u64, _: u32, _: bool, _: bool) -> Result<(), DeviceError> {
        Ok(())
    }
    async fn extents(&self, offset: u64, len: u32) -> Result<Vec<(u32, bool)>, DeviceError> {
        let mut runs: Vec<(u32, bool)> = Vec::new();
        for off in (offset..offset + u64::from(len)).step_by(4096) {
            let hole = byte_at(off) == 0;
            match runs.last_mut() {
                Some((l, h)) if *h == hole => *l += 4096,
                _ => runs.push((4096, hole)),
            }
        }
        Ok(runs)
    }
}

struct One;

#[async_trait]
impl ExportResolver for One {
    async fn open(&self, name: &str) -> Option<Arc<dyn BlockDevice>> {
        (name == EXPORT).then(|| Arc::new(Sparse) as Arc<dyn BlockDevice>)
    }
    async fn list(&self) -> Vec<String> {
        vec![]
    }
}

async fn start() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(coffer_nbd::serve(
        l,
        Arc::new(One),
        ServerConfig::default(),
        std::future::pending(),
    ));
    addr
}

struct Client(TcpStream);

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut greeting = [0u8; 18];
        s.read_exact(&mut greeting).await.unwrap();
        s.write_u32(3).await.unwrap();
        Self(s)
    }

    async fn option(&mut self, opt: u32, data: &[u8]) {
        let mut m = IHAVEOPT.to_be_bytes().to_vec();
        m.extend_from_slice(&opt.to_be_bytes());
        m.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        m.extend_from_slice(data);
        self.0.write_all(&m).await.unwrap();
    }

    /// Replies to one option up to its final one: [(type, data)].
    async fn replies(&mut self) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            assert_eq!(self.0.read_u64().await.unwrap(), REPLY_MAGIC);
            let _opt = self.0.read_u32().await.unwrap();
            let kind = self.0.read_u32().await.unwrap();
            let len = self.0.read_u32().await.unwrap();
            let mut d = vec![0; usize::try_from(len).unwrap()];
            self.0.read_exact(&mut d).await.unwrap();
            let last = kind != REP_META_CONTEXT && kind != 3;
            out.push((kind, d));
            if last {
                return out;
            }
        }
    }

    async fn meta(&mut self, opt: u32, name: &str, queries: &[&str]) -> Vec<(u32, Vec<u8>)> {
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

    async fn go(&mut self, name: &str) {
        let mut d = u32::try_from(name.len()).unwrap().to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&0u16.to_be_bytes());
        self.option(OPT_GO, &d).await;
        assert_eq!(self.replies().await.last().unwrap().0, REP_ACK);
    }

    async fn request(&mut self, cmd: u16, flags: u16, cookie: u64, offset: u64, len: u32) {
        let mut m = REQUEST_MAGIC.to_be_bytes().to_vec();
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&cmd.to_be_bytes());
        m.extend_from_slice(&cookie.to_be_bytes());
        m.extend_from_slice(&offset.to_be_bytes());
        m.extend_from_slice(&len.to_be_bytes());
        self.0.write_all(&m).await.unwrap();
    }

    /// One structured chunk: (flags, type, cookie, payload).
    async fn chunk(&mut self) -> (u16, u16, u64, Vec<u8>) {
        assert_eq!(self.0.read_u32().await.unwrap(), STRUCTURED_MAGIC);
        let flags = self.0.read_u16().await.unwrap();
        let ty = self.0.read_u16().await.unwrap();
        let cookie = self.0.read_u64().await.unwrap();
        let len = self.0.read_u32().await.unwrap();
        let mut d = vec![0; usize::try_from(len).unwrap()];
        self.0.read_exact(&mut d).await.unwrap();
        (flags, ty, cookie, d)
    }
}

fn u32_at(d: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(d[i..i + 4].try_into().unwrap())
}

#[tokio::test]
async fn negotiation_follows_the_rules() {
    let addr = start().await;
    let mut c = Client::connect(addr).await;
    // Listing needs nothing first; "base:" lists the namespace, an empty
    // query list lists everything, an unknown context lists nothing.
    for queries in [&["base:"][..], &[], &["base:allocation"]] {
        let r = c.meta(OPT_LIST_META_CONTEXT, EXPORT, queries).await;
        assert_eq!(r.len(), 2, "{queries:?}");
        assert_eq!(r[0].0, REP_META_CONTEXT);
        assert_eq!(&r[0].1[4..], b"base:allocation");
        assert_eq!(r[1].0, REP_ACK);
    }
    let r = c
        .meta(OPT_LIST_META_CONTEXT, EXPORT, &["qemu:dirty-bitmap:x"])
        .await;
    assert_eq!(r, vec![(REP_ACK, vec![])]);
    // Setting before structured replies is refused.
    let r = c
        .meta(OPT_SET_META_CONTEXT, EXPORT, &["base:allocation"])
        .await;
    assert_eq!(r[0].0, REP_ERR_INVALID);
    // Structured replies take no data.
    c.option(OPT_STRUCTURED_REPLY, b"x").await;
    assert_eq!(c.replies().await[0].0, REP_ERR_INVALID);
    c.option(OPT_STRUCTURED_REPLY, &[]).await;
    assert_eq!(c.replies().await, vec![(REP_ACK, vec![])]);
    // A malformed request is invalid, and the session goes on.
    c.option(OPT_SET_META_CONTEXT, &[0, 0, 0, 40, 1]).await;
    assert_eq!(c.replies().await[0].0, REP_ERR_INVALID);
    // "base:" selects nothing when setting: only exact names do.
    let r = c.meta(OPT_SET_META_CONTEXT, EXPORT, &["base:"]).await;
    assert_eq!(r, vec![(REP_ACK, vec![])]);
    let r = c
        .meta(OPT_SET_META_CONTEXT, EXPORT, &["base:allocation"])
        .await;
    assert_eq!(r[0].0, REP_META_CONTEXT);
    let id = u32_at(&r[0].1, 0);
    c.go(EXPORT).await;

    // Block status: data, hole, data, hole, each with its own descriptor.
    c.request(CMD_BLOCK_STATUS, 0, 1, 0, 1 << 20).await;
    let (flags, ty, cookie, d) = c.chunk().await;
    assert_eq!((flags & 1, ty, cookie), (1, TYPE_BLOCK_STATUS, 1));
    assert_eq!(u32_at(&d, 0), id);
    let descs: Vec<(u32, u32)> = d[4..]
        .chunks_exact(8)
        .map(|e| (u32_at(e, 0), u32_at(e, 4)))
        .collect();
    assert_eq!(
        descs,
        vec![(65536, 0), (458_752, 3), (65536, 0), (458_752, 3)]
    );
    // REQ_ONE: the first extent only, from an unaligned offset.
    c.request(CMD_BLOCK_STATUS, FLAG_REQ_ONE, 2, 70_000, 100_000)
        .await;
    let (_, _, _, d) = c.chunk().await;
    assert_eq!(d.len(), 4 + 8);
    assert_eq!(u32_at(&d, 8), 3, "a hole");
    // Beyond the end, or empty: EINVAL in an error chunk.
    for (off, len) in [((1 << 20) - 4096, 8192), (0, 0)] {
        c.request(CMD_BLOCK_STATUS, 0, 3, off, len).await;
        let (flags, ty, cookie, d) = c.chunk().await;
        assert_eq!((flags & 1, ty, cookie), (1, TYPE_ERROR, 3));
        assert_eq!(u32_at(&d, 0), EINVAL);
    }
    // A read: one final data chunk with its offset.
    c.request(CMD_READ, 0, 4, 65_000, 1000).await;
    let (flags, ty, cookie, d) = c.chunk().await;
    assert_eq!((flags & 1, ty, cookie), (1, TYPE_OFFSET_DATA, 4));
    assert_eq!(u64::from_be_bytes(d[..8].try_into().unwrap()), 65_000);
    let expected: Vec<u8> = (65_000..66_000).map(byte_at).collect();
    assert_eq!(&d[8..], &expected[..]);
    // A read of nothing: one empty final chunk.
    c.request(CMD_READ, 0, 5, 0, 0).await;
    let (flags, ty, cookie, d) = c.chunk().await;
    assert_eq!((flags & 1, ty, cookie, d.len()), (1, TYPE_NONE, 5, 0));
    // A failed read: an error chunk with a message.
    c.request(CMD_READ, 0, 6, 950 * 1024, 4096).await;
    let (_, ty, cookie, d) = c.chunk().await;
    assert_eq!((ty, cookie), (TYPE_ERROR, 6));
    assert_eq!(u32_at(&d, 0), EIO);
    let msg_len = usize::from(u16::from_be_bytes([d[4], d[5]]));
    assert!(String::from_utf8_lossy(&d[6..6 + msg_len]).contains("bad sector"));
}

#[tokio::test]
async fn block_status_needs_a_context_and_plain_clients_get_simple_replies() {
    let addr = start().await;
    // No structured replies: block status is EINVAL in a simple reply, and
    // reads are simple replies as before.
    let mut c = Client::connect(addr).await;
    c.go(EXPORT).await;
    c.request(CMD_BLOCK_STATUS, 0, 9, 0, 4096).await;
    assert_eq!(c.0.read_u32().await.unwrap(), SIMPLE_REPLY_MAGIC);
    assert_eq!(c.0.read_u32().await.unwrap(), EINVAL);
    assert_eq!(c.0.read_u64().await.unwrap(), 9);
    c.request(CMD_READ, 0, 10, 0, 16).await;
    assert_eq!(c.0.read_u32().await.unwrap(), SIMPLE_REPLY_MAGIC);
    assert_eq!(c.0.read_u32().await.unwrap(), 0);
    assert_eq!(c.0.read_u64().await.unwrap(), 10);
    let mut d = [0u8; 16];
    c.0.read_exact(&mut d).await.unwrap();
    assert_eq!(d, [0x5a; 16]);

    // A context set for another export name does not carry over to GO.
    let mut c = Client::connect(addr).await;
    c.option(OPT_STRUCTURED_REPLY, &[]).await;
    c.replies().await;
    let r = c
        .meta(OPT_SET_META_CONTEXT, "another-export", &["base:allocation"])
        .await;
    assert_eq!(r[0].0, REP_META_CONTEXT);
    c.go(EXPORT).await;
    c.request(CMD_BLOCK_STATUS, 0, 11, 0, 4096).await;
    let (_, ty, _, d) = c.chunk().await;
    assert_eq!(ty, TYPE_ERROR);
    assert_eq!(u32_at(&d, 0), EINVAL);
}
