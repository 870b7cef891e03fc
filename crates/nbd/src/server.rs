//! The NBD server: fixed newstyle handshake, option haggling and the
//! transmission phase, following the normative protocol text
//! (NetworkBlockDevice/nbd `doc/proto.md`).
//!
//! Supported options: `EXPORT_NAME`, `ABORT`, `LIST` (answers the
//! resolver's list — Coffer's is empty, export names are secrets), `INFO`
//! and `GO` (with `NBD_INFO_EXPORT` and, when asked, `NBD_INFO_BLOCK_SIZE`);
//! every other option gets `NBD_REP_ERR_UNSUP`. Only simple replies are
//! used. Commands: `READ`, `WRITE`, `DISC`, `FLUSH`, `TRIM`, `WRITE_ZEROES`
//! with `FUA` and `NO_HOLE`.
//!
//! Concurrency: one reader loop per connection parses requests in order and
//! spawns a task per request (at most `max_in_flight` at once, which also
//! bounds memory); replies are sent by one writer task as they complete, in
//! any order. **Flush ordering**: every write-type request holds a shared
//! lock from the moment it is received until it completes; a flush first
//! takes that lock exclusively, so it waits for every write received before
//! it, then calls the device's flush. So a flush covers every write completed
//! before it was received (what the protocol requires), and more.
//!
//! Limits: the handshake must end within [`ServerConfig::handshake_timeout`]
//! (a client that connects and says nothing, or haggles forever, is cut
//! off) and uses small buffers (the 256 KiB transmission buffers are made
//! only once an export is open); at most [`ServerConfig::max_connections`]
//! connections are open at once (more are closed on accept: the protocol
//! has no way to say why before the handshake) and at most
//! [`ServerConfig::max_per_export`] to one export (more get
//! `NBD_REP_ERR_POLICY` to `GO`, or are closed after `EXPORT_NAME`).
//!
//! Bad input never panics and never corrupts data: bad request magic, an
//! oversized option or a write payload beyond [`HARD_PAYLOAD_CAP`] closes the
//! connection; a read or trim out of range, a request larger than the
//! advertised maximum, or one of an unknown type gets `EINVAL`; a write or
//! write-zeroes past the end gets `ENOSPC` (as the protocol recommends; a
//! write's payload is still consumed, so the stream stays in step); a write
//! to a read-only export gets `EPERM`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::{RwLock, Semaphore, mpsc};

use crate::device::{BlockDevice, DeviceError, ExportResolver};
use crate::structured::{
    self as st, CMD_BLOCK_STATUS, CMD_FLAG_REQ_ONE, OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT,
    OPT_STRUCTURED_REPLY, REP_META_CONTEXT,
};

/// `NBDMAGIC`.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of option replies.
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of requests.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of simple replies.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const CFLAG_FIXED_NEWSTYLE: u32 = 1;
const CFLAG_NO_ZEROES: u32 = 2;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;
const OPT_STARTTLS: u32 = 5;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
const REP_ERR_INVALID: u32 = (1 << 31) + 3;
const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;
const REP_ERR_POLICY: u32 = (1 << 31) + 2;
const REP_ERR_TLS_REQD: u32 = (1 << 31) + 5;

const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

const TFLAG_HAS_FLAGS: u16 = 1;
const TFLAG_READ_ONLY: u16 = 2;
const TFLAG_SEND_FLUSH: u16 = 4;
const TFLAG_SEND_FUA: u16 = 8;
const TFLAG_SEND_TRIM: u16 = 32;
const TFLAG_SEND_WRITE_ZEROES: u16 = 64;
const TFLAG_SEND_DF: u16 = 128;
const TFLAG_CAN_MULTI_CONN: u16 = 256;
const TFLAG_SEND_CACHE: u16 = 1024;
const TFLAG_SEND_FAST_ZERO: u16 = 2048;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_WRITE_ZEROES: u16 = 6;
const CMD_CACHE: u16 = 5;

const CMD_FLAG_FUA: u16 = 1;
const CMD_FLAG_NO_HOLE: u16 = 2;
const CMD_FLAG_FAST_ZERO: u16 = 16;

/// NBD error numbers.
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: u32 = 1;
    /// I/O error.
    pub const EIO: u32 = 5;
    /// Invalid argument.
    pub const EINVAL: u32 = 22;
    /// No space left.
    pub const ENOSPC: u32 = 28;
    /// Server shutting down.
    pub const ESHUTDOWN: u32 = 108;
}

/// Longest option payload accepted; longer ones close the connection.
pub const MAX_OPTION_LEN: u32 = 64 * 1024;
/// A write longer than the advertised maximum but at most this long has its
/// payload discarded and gets `EINVAL`; a longer one closes the connection.
pub const HARD_PAYLOAD_CAP: u32 = 64 << 20;

/// Server tuning and limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request payload accepted (advertised as the maximum block size).
    pub max_request: u32,
    /// Requests processed concurrently per connection.
    pub max_in_flight: usize,
    /// Time from accept to the end of the handshake.
    pub handshake_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once to one export.
    pub max_per_export: usize,
    /// Connections per export, shared by every connection served with
    /// (clones of) this configuration.
    pub exports: ExportCounts,
    /// TLS, required of every client when set (`NBD_OPT_STARTTLS` first).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_request: 32 << 20,
            max_in_flight: 64,
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_per_export: 16,
            exports: ExportCounts::default(),
            tls: None,
        }
    }
}

/// Open connections per export name.
#[derive(Debug, Clone, Default)]
pub struct ExportCounts(Arc<Mutex<HashMap<String, usize>>>);

/// One connection's place in [`ExportCounts`], given back on drop.
struct ExportSlot {
    counts: ExportCounts,
    name: String,
}

impl ExportCounts {
    fn enter(&self, name: &str, max: usize) -> Option<ExportSlot> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(name.to_string()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ExportSlot {
            counts: self.clone(),
            name: name.to_string(),
        })
    }
}

impl Drop for ExportSlot {
    fn drop(&mut self) {
        let mut m = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.name);
            }
        }
    }
}

/// Errors that end a connection.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    /// Socket error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The client broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

/// Accept connections on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    resolver: Arc<dyn ExportResolver>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    let open = Arc::new(Semaphore::new(config.max_connections));
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "NBD accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = open.clone().try_acquire_owned() else {
                    tracing::info!(%peer, max = config.max_connections, "NBD connection refused: the listener is full");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let resolver = resolver.clone();
                let config = config.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match handle_connection(stream, resolver, config).await {
                        Ok(()) => tracing::debug!(%peer, "NBD connection closed"),
                        Err(e) => tracing::info!(%peer, error = %e, "NBD connection ended"),
                    }
                });
            }
        }
    }
}

fn errno_of(e: &DeviceError) -> u32 {
    match e {
        DeviceError::Io(_) => errno::EIO,
        DeviceError::Invalid(_) => errno::EINVAL,
        DeviceError::NotPermitted(_) => errno::EPERM,
        DeviceError::NoSpace(_) => errno::ENOSPC,
        DeviceError::Shutdown(_) => errno::ESHUTDOWN,
    }
}

async fn opt_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    opt: u32,
    kind: u32,
    data: &[u8],
) -> Result<(), NbdError> {
    let len = u32::try_from(data.len()).map_err(|_| NbdError::Protocol("reply too long".into()))?;
    let mut b = BytesMut::with_capacity(20 + data.len());
    b.put_u64(REPLY_MAGIC);
    b.put_u32(opt);
    b.put_u32(kind);
    b.put_u32(len);
    b.put_slice(data);
    w.write_all(&b).await?;
    Ok(())
}

fn transmission_flags(dev: &dyn BlockDevice, structured: bool) -> u16 {
    let mut f = TFLAG_HAS_FLAGS
        | TFLAG_SEND_FLUSH
        | TFLAG_SEND_FUA
        | TFLAG_SEND_TRIM
        | TFLAG_SEND_WRITE_ZEROES
        // Cache is a hint this server needs nothing for (a success), and
        // zeroing is never slow (zero extents are metadata, a partial
        // sector one slot): a fast-zero request is always honoured.
        | TFLAG_SEND_CACHE
        | TFLAG_SEND_FAST_ZERO;
    if dev.multi_conn() {
        f |= TFLAG_CAN_MULTI_CONN;
    }
    if structured {
        // Every read is answered with one data chunk: "don't fragment"
        // always holds.
        f |= TFLAG_SEND_DF;
    }
    if dev.read_only() {
        f |= TFLAG_READ_ONLY;
    }
    f
}

/// Serve one client connection: handshake (with STARTTLS first when the
/// server has TLS), then transmission.
pub async fn handle_connection<S>(
    stream: S,
    resolver: Arc<dyn ExportResolver>,
    config: ServerConfig,
) -> Result<(), NbdError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + config.handshake_timeout;
    let Some(tls) = config.tls.clone() else {
        return session(stream, resolver, config, deadline, None).await;
    };
    // TLS is required: until the client has sent STARTTLS, every option but
    // ABORT is refused with NBD_REP_ERR_TLS_REQD (read unbuffered, so that
    // the TLS handshake's first bytes stay in the socket).
    let mut stream = stream;
    let started = tokio::time::timeout_at(deadline, async {
        let no_zeroes = greet(&mut stream).await?;
        Ok::<_, NbdError>(before_tls(&mut stream).await?.then_some(no_zeroes))
    })
    .await
    .map_err(|_| handshake_timeout(&config))??;
    let Some(no_zeroes) = started else {
        return Ok(());
    };
    let tls = tokio::time::timeout_at(
        deadline,
        tokio_rustls::TlsAcceptor::from(tls).accept(stream),
    )
    .await
    .map_err(|_| handshake_timeout(&config))??;
    session(tls, resolver, config, deadline, Some(no_zeroes)).await
}

fn handshake_timeout(config: &ServerConfig) -> NbdError {
    NbdError::Protocol(format!(
        "the handshake did not end within {:?}",
        config.handshake_timeout
    ))
}

/// Send the greeting and read the client's flags; whether the client asked
/// for no zeroes.
async fn greet<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Result<bool, NbdError> {
    let mut b = BytesMut::with_capacity(18);
    b.put_u64(NBDMAGIC);
    b.put_u64(IHAVEOPT);
    b.put_u16(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
    s.write_all(&b).await?;
    s.flush().await?;
    let cflags = s.read_u32().await?;
    if cflags & CFLAG_FIXED_NEWSTYLE == 0 {
        return Err(NbdError::Protocol(
            "client does not support fixed newstyle".into(),
        ));
    }
    if cflags & !(CFLAG_FIXED_NEWSTYLE | CFLAG_NO_ZEROES) != 0 {
        return Err(NbdError::Protocol(format!(
            "unknown client flags {cflags:#x}"
        )));
    }
    Ok(cflags & CFLAG_NO_ZEROES != 0)
}

/// Read one option: (option, data).
async fn read_option<R: AsyncRead + Unpin>(r: &mut R) -> Result<(u32, Vec<u8>), NbdError> {
    let magic = r.read_u64().await?;
    if magic != IHAVEOPT {
        return Err(NbdError::Protocol(format!("bad option magic {magic:#x}")));
    }
    let opt = r.read_u32().await?;
    let len = r.read_u32().await?;
    if len > MAX_OPTION_LEN {
        return Err(NbdError::Protocol(format!(
            "option {opt} of {len} bytes is too long"
        )));
    }
    let mut data = vec![0u8; len as usize];
    r.read_exact(&mut data).await?;
    Ok((opt, data))
}

/// Options before TLS on a server that requires it: true once STARTTLS is
/// acknowledged, false if the client gave up.
async fn before_tls<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Result<bool, NbdError> {
    loop {
        let (opt, data) = read_option(s).await?;
        match opt {
            OPT_STARTTLS if data.is_empty() => {
                opt_reply(s, opt, REP_ACK, &[]).await?;
                s.flush().await?;
                return Ok(true);
            }
            OPT_STARTTLS => {
                opt_reply(s, opt, REP_ERR_INVALID, b"NBD_OPT_STARTTLS takes no data").await?;
            }
            OPT_ABORT => {
                let _ = opt_reply(s, opt, REP_ACK, &[]).await;
                let _ = s.flush().await;
                return Ok(false);
            }
            // No error channel for EXPORT_NAME: close.
            OPT_EXPORT_NAME => return Ok(false),
            _ => {
                opt_reply(
                    s,
                    opt,
                    REP_ERR_TLS_REQD,
                    b"this server requires TLS: connect with nbds:// (NBD_OPT_STARTTLS)",
                )
                .await?;
            }
        }
        s.flush().await?;
    }
}

/// The handshake's options (after the greeting, and after TLS if any),
/// then transmission.
async fn session<S>(
    stream: S,
    resolver: Arc<dyn ExportResolver>,
    config: ServerConfig,
    deadline: tokio::time::Instant,
    greeted: Option<bool>,
) -> Result<(), NbdError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut stream = stream;
    let tls = greeted.is_some();
    let no_zeroes = match greeted {
        Some(nz) => nz,
        None => tokio::time::timeout_at(deadline, greet(&mut stream))
            .await
            .map_err(|_| handshake_timeout(&config))??,
    };
    let (r, w) = tokio::io::split(stream);
    // Small buffers until an export is open: an idle or hostile client
    // holds a few KiB, not the transmission phase's half MiB.
    let mut hr = BufReader::with_capacity(4096, r);
    let mut hw = BufWriter::with_capacity(4096, w);
    let opened = tokio::time::timeout_at(
        deadline,
        handshake(&mut hr, &mut hw, &*resolver, &config, no_zeroes, tls),
    )
    .await
    .map_err(|_| handshake_timeout(&config))??;
    let Some((dev, _slot, negotiated)) = opened else {
        return Ok(());
    };
    // The client waits for the handshake's last reply before it sends a
    // request, so nothing it sent is left in the small buffer; keep any
    // byte that is, in front of the new one.
    let early = hr.buffer().to_vec();
    let r = std::io::Cursor::new(early).chain(hr.into_inner());
    let r = BufReader::with_capacity(256 * 1024, r);
    let w = BufWriter::with_capacity(256 * 1024, hw.into_inner());
    transmission(r, w, dev, config, negotiated).await
}

/// What the handshake turned on for the transmission phase.
#[derive(Debug, Clone, Copy, Default)]
struct Negotiated {
    /// Structured replies (`NBD_OPT_STRUCTURED_REPLY`).
    structured: bool,
    /// The `base:allocation` metadata context, for NBD_CMD_BLOCK_STATUS.
    allocation: bool,
}

async fn handshake<R, W>(
    r: &mut R,
    w: &mut W,
    resolver: &dyn ExportResolver,
    config: &ServerConfig,
    no_zeroes: bool,
    tls: bool,
) -> Result<Option<(Arc<dyn BlockDevice>, ExportSlot, Negotiated)>, NbdError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut structured = false;
    // The export `base:allocation` was selected for (SET_META_CONTEXT).
    let mut allocation_for: Option<String> = None;
    loop {
        let (opt, data) = read_option(r).await?;
        let len = data.len();
        match opt {
            OPT_STRUCTURED_REPLY => {
                if len != 0 {
                    opt_reply(
                        w,
                        opt,
                        REP_ERR_INVALID,
                        b"NBD_OPT_STRUCTURED_REPLY takes no data",
                    )
                    .await?;
                } else {
                    structured = true;
                    opt_reply(w, opt, REP_ACK, &[]).await?;
                }
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                let set = opt == OPT_SET_META_CONTEXT;
                match st::parse_meta_request(&data) {
                    None => {
                        opt_reply(w, opt, REP_ERR_INVALID, b"malformed meta context request")
                            .await?;
                    }
                    Some(_) if set && !structured => {
                        opt_reply(
                            w,
                            opt,
                            REP_ERR_INVALID,
                            b"negotiate NBD_OPT_STRUCTURED_REPLY before setting meta contexts",
                        )
                        .await?;
                    }
                    Some((name, queries)) => {
                        // Listing with no query lists every context;
                        // setting with none selects none.
                        let chosen = if queries.is_empty() {
                            !set
                        } else {
                            queries.iter().any(|q| st::selects_allocation(q, !set))
                        };
                        if set {
                            allocation_for = chosen.then_some(name);
                        }
                        if chosen {
                            opt_reply(w, opt, REP_META_CONTEXT, &st::meta_context_reply()).await?;
                        }
                        opt_reply(w, opt, REP_ACK, &[]).await?;
                    }
                }
            }
            OPT_STARTTLS if tls => {
                opt_reply(w, opt, REP_ERR_INVALID, b"TLS is already on").await?;
            }
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data).to_string();
                // No error channel for EXPORT_NAME: close.
                let Some(slot) = config.exports.enter(&name, config.max_per_export) else {
                    return Ok(None);
                };
                let Some(dev) = resolver.open(&name).await else {
                    return Ok(None);
                };
                let mut b = BytesMut::with_capacity(10 + 124);
                b.put_u64(dev.size());
                b.put_u16(transmission_flags(&*dev, structured));
                if !no_zeroes {
                    b.put_bytes(0, 124);
                }
                w.write_all(&b).await?;
                w.flush().await?;
                let negotiated = Negotiated {
                    structured,
                    allocation: allocation_for.as_deref() == Some(name.as_str()),
                };
                return Ok(Some((dev, slot, negotiated)));
            }
            OPT_ABORT => {
                let _ = opt_reply(w, opt, REP_ACK, &[]).await;
                let _ = w.flush().await;
                return Ok(None);
            }
            OPT_LIST => {
                if len != 0 {
                    opt_reply(w, opt, REP_ERR_INVALID, b"NBD_OPT_LIST takes no data").await?;
                } else {
                    for name in resolver.list().await {
                        let mut d = BytesMut::new();
                        d.put_u32(u32::try_from(name.len()).unwrap_or(0));
                        d.put_slice(name.as_bytes());
                        opt_reply(w, opt, REP_SERVER, &d).await?;
                    }
                    opt_reply(w, opt, REP_ACK, &[]).await?;
                }
            }
            OPT_INFO | OPT_GO => {
                let Some((name, requests)) = parse_info_request(&data) else {
                    opt_reply(
                        w,
                        opt,
                        REP_ERR_INVALID,
                        b"malformed NBD_OPT_INFO/GO request",
                    )
                    .await?;
                    w.flush().await?;
                    continue;
                };
                let slot = if opt == OPT_GO {
                    match config.exports.enter(&name, config.max_per_export) {
                        Some(slot) => Some(slot),
                        None => {
                            let msg = format!(
                                "this export has {} connections open, the most it takes",
                                config.max_per_export
                            );
                            opt_reply(w, opt, REP_ERR_POLICY, msg.as_bytes()).await?;
                            w.flush().await?;
                            continue;
                        }
                    }
                } else {
                    None
                };
                match resolver.open(&name).await {
                    None => {
                        opt_reply(
                            w,
                            opt,
                            REP_ERR_UNKNOWN,
                            b"no such export (or it was detached)",
                        )
                        .await?;
                    }
                    Some(dev) => {
                        let mut d = BytesMut::with_capacity(12);
                        d.put_u16(INFO_EXPORT);
                        d.put_u64(dev.size());
                        d.put_u16(transmission_flags(&*dev, structured));
                        opt_reply(w, opt, REP_INFO, &d).await?;
                        if requests.contains(&INFO_BLOCK_SIZE) {
                            let mut d = BytesMut::with_capacity(14);
                            d.put_u16(INFO_BLOCK_SIZE);
                            d.put_u32(1);
                            d.put_u32(dev.preferred_block_size().clamp(1, config.max_request));
                            d.put_u32(config.max_request);
                            opt_reply(w, opt, REP_INFO, &d).await?;
                        }
                        opt_reply(w, opt, REP_ACK, &[]).await?;
                        if let Some(slot) = slot {
                            w.flush().await?;
                            // Contexts set for another export name do not
                            // carry over to this one.
                            let negotiated = Negotiated {
                                structured,
                                allocation: allocation_for.as_deref() == Some(name.as_str()),
                            };
                            return Ok(Some((dev, slot, negotiated)));
                        }
                    }
                }
            }
            _ => {
                opt_reply(w, opt, REP_ERR_UNSUP, b"option not supported").await?;
            }
        }
        w.flush().await?;
    }
}

fn parse_info_request(data: &[u8]) -> Option<(String, Vec<u16>)> {
    let name_len = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?) as usize;
    let name = data.get(4..4 + name_len)?;
    let rest = data.get(4 + name_len..)?;
    let n = u16::from_be_bytes(rest.get(0..2)?.try_into().ok()?) as usize;
    let reqs = rest.get(2..)?;
    if reqs.len() != 2 * n {
        return None;
    }
    let requests = reqs
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    Some((String::from_utf8_lossy(name).to_string(), requests))
}

struct Reply {
    cookie: u64,
    error: u32,
    data: Option<Bytes>,
    close: bool,
    /// A structured reply, sent as these bytes instead of a simple one.
    chunks: Vec<Bytes>,
}

async fn writer_task<W: AsyncWrite + Unpin>(
    mut w: BufWriter<W>,
    mut rx: mpsc::Receiver<Reply>,
) -> std::io::Result<()> {
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut close = false;
        while let Some(rep) = next.take() {
            if rep.chunks.is_empty() {
                let mut h = [0u8; 16];
                h[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
                h[4..8].copy_from_slice(&rep.error.to_be_bytes());
                h[8..16].copy_from_slice(&rep.cookie.to_be_bytes());
                w.write_all(&h).await?;
                if let Some(d) = &rep.data {
                    w.write_all(d).await?;
                }
            }
            for c in &rep.chunks {
                w.write_all(c).await?;
            }
            close |= rep.close;
            next = rx.try_recv().ok();
        }
        w.flush().await?;
        if close {
            w.shutdown().await?;
            return Ok(());
        }
    }
    w.flush().await?;
    w.shutdown().await
}

/// Read a write request's `len` bytes of payload into a fresh buffer,
/// without zeroing it first (a 1 MiB write would otherwise pay a 1 MiB
/// memset before the copy from the socket).
async fn read_payload<R: AsyncRead + Unpin>(r: &mut R, len: u32) -> std::io::Result<Bytes> {
    let n = len as usize;
    let mut buf = BytesMut::with_capacity(n);
    let mut rest = r.take(u64::from(len));
    while buf.len() < n {
        if rest.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buf.freeze())
}

async fn discard<R: AsyncRead + Unpin>(r: &mut R, mut n: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    while n > 0 {
        let k = usize::try_from(n.min(buf.len() as u64)).unwrap_or(buf.len());
        r.read_exact(&mut buf[..k]).await?;
        n -= k as u64;
    }
    Ok(())
}

async fn transmission<R, W>(
    mut r: BufReader<R>,
    w: BufWriter<W>,
    dev: Arc<dyn BlockDevice>,
    config: ServerConfig,
    neg: Negotiated,
) -> Result<(), NbdError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Reply>(config.max_in_flight.max(1) * 2);
    let writer = tokio::spawn(writer_task(w, rx));
    let permits = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let order = Arc::new(RwLock::new(()));
    let size = dev.size();
    let result = loop {
        // The writer stops after a reply that ends the connection (the export
        // was revoked): stop reading requests too.
        if tx.is_closed() {
            break Ok(());
        }
        let mut hdr = [0u8; 28];
        match r.read_exact(&mut hdr).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Ok(()),
            Err(e) => break Err(e.into()),
        }
        let magic = u32::from_be_bytes(hdr[0..4].try_into().expect("4"));
        if magic != REQUEST_MAGIC {
            break Err(NbdError::Protocol(format!("bad request magic {magic:#x}")));
        }
        let flags = u16::from_be_bytes(hdr[4..6].try_into().expect("2"));
        let kind = u16::from_be_bytes(hdr[6..8].try_into().expect("2"));
        let cookie = u64::from_be_bytes(hdr[8..16].try_into().expect("8"));
        let offset = u64::from_be_bytes(hdr[16..24].try_into().expect("8"));
        let len = u32::from_be_bytes(hdr[24..28].try_into().expect("4"));
        let in_range = offset
            .checked_add(u64::from(len))
            .is_some_and(|end| end <= size);
        let fua = flags & CMD_FLAG_FUA != 0;

        let reply_now = |error: u32| Reply::simple(cookie, error);
        // Reads and block status answer errors in a structured chunk once
        // structured replies are on.
        let error_now = |error: u32, why: &str| {
            if neg.structured {
                Reply::structured(cookie, st::error_reply(cookie, error, why), false)
            } else {
                Reply::simple(cookie, error)
            }
        };
        if kind == CMD_DISC {
            break Ok(());
        }
        // FAST_ZERO is only meaningful on WRITE_ZEROES (the specification:
        // EINVAL); a write's payload is read first, below.
        let bad_fast_zero = flags & CMD_FLAG_FAST_ZERO != 0 && kind != CMD_WRITE_ZEROES;
        if bad_fast_zero && kind != CMD_WRITE {
            let _ = tx.send(reply_now(errno::EINVAL)).await;
            continue;
        }
        let permit = match permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => break Ok(()),
        };
        match kind {
            CMD_READ => {
                if len > config.max_request || !in_range {
                    let _ = tx
                        .send(error_now(errno::EINVAL, "read beyond the end or too long"))
                        .await;
                    continue;
                }
                let (dev, tx) = (dev.clone(), tx.clone());
                // With structured replies and without DF, a read that
                // covers holes answers them as hole chunks, unread.
                let sparse = neg.structured && flags & st::CMD_FLAG_DF == 0 && len > 0;
                tokio::spawn(async move {
                    let _p = permit;
                    if sparse && let Some(rep) = sparse_read(&*dev, cookie, offset, len).await {
                        let _ = tx.send(rep).await;
                        return;
                    }
                    let res = if len == 0 {
                        Ok(Bytes::new())
                    } else {
                        match dev.read(offset, len).await {
                            Ok(d) if d.len() == len as usize => Ok(d),
                            Ok(_) => Err(DeviceError::Io("short read".into())),
                            Err(e) => Err(e),
                        }
                    };
                    let rep = match (res, neg.structured) {
                        (Ok(d), false) => Reply {
                            data: Some(d),
                            ..Reply::simple(cookie, 0)
                        },
                        (Ok(d), true) => {
                            Reply::structured(cookie, st::read_reply(cookie, offset, d), false)
                        }
                        (Err(e), false) => result_reply(cookie, Err(e)),
                        (Err(e), true) => Reply::structured(
                            cookie,
                            st::error_reply(cookie, errno_of(&e), &e.to_string()),
                            matches!(e, DeviceError::Shutdown(_)),
                        ),
                    };
                    let _ = tx.send(rep).await;
                });
            }
            CMD_BLOCK_STATUS => {
                if !neg.allocation {
                    let _ = tx
                        .send(error_now(
                            errno::EINVAL,
                            "no metadata context: set base:allocation first",
                        ))
                        .await;
                    continue;
                }
                if !in_range || len == 0 {
                    let _ = tx
                        .send(error_now(
                            errno::EINVAL,
                            "block status beyond the end or empty",
                        ))
                        .await;
                    continue;
                }
                let (dev, tx) = (dev.clone(), tx.clone());
                let req_one = flags & CMD_FLAG_REQ_ONE != 0;
                tokio::spawn(async move {
                    let _p = permit;
                    let rep = match dev.extents(offset, len).await {
                        Ok(runs) if !runs.is_empty() => Reply::structured(
                            cookie,
                            st::block_status_reply(cookie, &runs, req_one),
                            false,
                        ),
                        Ok(_) => Reply::structured(
                            cookie,
                            st::error_reply(cookie, errno::EIO, "no extents"),
                            false,
                        ),
                        Err(e) => Reply::structured(
                            cookie,
                            st::error_reply(cookie, errno_of(&e), &e.to_string()),
                            matches!(e, DeviceError::Shutdown(_)),
                        ),
                    };
                    let _ = tx.send(rep).await;
                });
            }
            CMD_WRITE => {
                if len > HARD_PAYLOAD_CAP {
                    break Err(NbdError::Protocol(format!(
                        "write of {len} bytes exceeds any acceptable size"
                    )));
                }
                if len > config.max_request || !in_range || dev.read_only() || bad_fast_zero {
                    discard(&mut r, u64::from(len)).await?;
                    let e = if len > config.max_request || bad_fast_zero {
                        errno::EINVAL
                    } else if !in_range {
                        errno::ENOSPC
                    } else {
                        errno::EPERM
                    };
                    let _ = tx.send(reply_now(e)).await;
                    continue;
                }
                let data = read_payload(&mut r, len).await?;
                let guard = order.clone().read_owned().await;
                let (dev, tx) = (dev.clone(), tx.clone());
                tokio::spawn(async move {
                    let _p = permit;
                    let res = if len == 0 {
                        Ok(())
                    } else {
                        dev.write(offset, data, fua).await
                    };
                    drop(guard);
                    let _ = tx.send(result_reply(cookie, res)).await;
                });
            }
            CMD_FLUSH => {
                let (dev, tx, order) = (dev.clone(), tx.clone(), order.clone());
                tokio::spawn(async move {
                    let _p = permit;
                    drop(order.write().await);
                    let res = dev.flush().await;
                    let _ = tx.send(result_reply(cookie, res)).await;
                });
            }
            CMD_TRIM | CMD_WRITE_ZEROES => {
                if !in_range {
                    let e = if kind == CMD_WRITE_ZEROES {
                        errno::ENOSPC
                    } else {
                        errno::EINVAL
                    };
                    let _ = tx.send(reply_now(e)).await;
                    continue;
                }
                if dev.read_only() {
                    let _ = tx.send(reply_now(errno::EPERM)).await;
                    continue;
                }
                let guard = order.clone().read_owned().await;
                let (dev, tx) = (dev.clone(), tx.clone());
                let may_trim = flags & CMD_FLAG_NO_HOLE == 0;
                tokio::spawn(async move {
                    let _p = permit;
                    let res = if len == 0 {
                        Ok(())
                    } else if kind == CMD_TRIM {
                        dev.trim(offset, len, fua).await
                    } else {
                        dev.write_zeroes(offset, len, may_trim, fua).await
                    };
                    drop(guard);
                    let _ = tx.send(result_reply(cookie, res)).await;
                });
            }
            CMD_CACHE => {
                // Nothing to prefetch into: data is read from the store
                // per request. Range-checked like a read.
                let _ = tx
                    .send(reply_now(if in_range { 0 } else { errno::EINVAL }))
                    .await;
            }
            _ => {
                let _ = tx.send(reply_now(errno::EINVAL)).await;
            }
        }
    };
    // Let in-flight requests finish and their replies go out, then close.
    drop(tx);
    let _ = writer.await;
    result
}

/// A structured read reply with hole chunks for the holes of `len` bytes
/// at `offset`, or `None` when the range has no hole (or the device's map
/// does not add up), so the caller answers with one data chunk.
async fn sparse_read(dev: &dyn BlockDevice, cookie: u64, offset: u64, len: u32) -> Option<Reply> {
    let runs = dev.extents(offset, len).await.ok()?;
    if !runs.iter().any(|r| r.1)
        || runs.iter().map(|r| u64::from(r.0)).sum::<u64>() != u64::from(len)
    {
        return None;
    }
    let mut pieces = Vec::with_capacity(runs.len());
    let mut at = offset;
    for (n, hole) in runs {
        if hole {
            pieces.push(st::Piece::Hole(at, n));
        } else {
            match dev.read(at, n).await {
                Ok(d) if d.len() == n as usize => pieces.push(st::Piece::Data(at, d)),
                Ok(_) => {
                    let e = DeviceError::Io("short read".into());
                    return Some(Reply::structured(
                        cookie,
                        st::error_reply(cookie, errno_of(&e), &e.to_string()),
                        false,
                    ));
                }
                Err(e) => {
                    let close = matches!(e, DeviceError::Shutdown(_));
                    return Some(Reply::structured(
                        cookie,
                        st::error_reply(cookie, errno_of(&e), &e.to_string()),
                        close,
                    ));
                }
            }
        }
        at += u64::from(n);
    }
    Some(Reply::structured(
        cookie,
        st::sparse_read_reply(cookie, pieces),
        false,
    ))
}

impl Reply {
    fn simple(cookie: u64, error: u32) -> Self {
        Self {
            cookie,
            error,
            data: None,
            close: false,
            chunks: Vec::new(),
        }
    }

    fn structured(cookie: u64, chunks: Vec<Bytes>, close: bool) -> Self {
        Self {
            close,
            chunks,
            ..Self::simple(cookie, 0)
        }
    }
}

fn result_reply(cookie: u64, res: Result<(), DeviceError>) -> Reply {
    match res {
        Ok(()) => Reply::simple(cookie, 0),
        Err(e) => Reply {
            close: matches!(e, DeviceError::Shutdown(_)),
            ..Reply::simple(cookie, errno_of(&e))
        },
    }
}
