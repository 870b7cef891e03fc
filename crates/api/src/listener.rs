//! The HTTP listener: it owns accepting connections and the limits that
//! keep clients from holding the server's resources.
//!
//! - **Connections**: at most [`Limits::max_connections`] open at once, and
//!   at most [`Limits::max_per_address`] from one client address; one over
//!   either limit is answered `503 ServerBusy` or `429 TooManyConnections`
//!   (JSON, `Connection: close`) and closed at once.
//! - **Time**: a request head (and an idle keep-alive connection's next
//!   one) must arrive within [`Limits::header_timeout`]; a body within
//!   [`Limits::body_timeout`] of its head (enforced where it is read, in
//!   the forwarding layer), else `408 RequestTimeout` and the connection
//!   closes.
//! - **TLS** (rustls), when configured: the handshake must end within the
//!   header timeout too.
//! - **Errors the HTTP parser answers itself** (a request target over the
//!   http crate's 64 KiB, a head over hyper's buffer, a malformed request
//!   line) would go out as a bare status with no body. `JsonErrors`
//!   replaces such a response, which hyper writes only as the last thing on
//!   a connection, by the same status with the API's JSON error body.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use coffer_wire::{ErrorBody, ErrorCode, ErrorDetail};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Limits of one HTTP listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time for a request head to arrive (also how long an idle keep-alive
    /// connection is kept).
    pub header_timeout: Duration,
    /// Time for a request body to arrive once its head has.
    pub body_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_per_address: 128,
        }
    }
}

/// The largest request head read (request line and headers). Above the
/// http crate's 64 KiB limit on a request target, so that a target too long
/// for it is always refused as 414 (the whole line is read), never as a
/// head over the buffer (431), whatever sizes the reads come in.
pub const MAX_HEAD: usize = 128 * 1024;

#[derive(Default)]
struct Counts {
    total: usize,
    per: HashMap<IpAddr, usize>,
}

/// A connection's place in the counts, given back when it is dropped.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total -= 1;
        if let Some(n) = c.per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per.remove(&self.ip);
            }
        }
    }
}

fn admit(counts: &Arc<Mutex<Counts>>, ip: IpAddr, limits: &Limits) -> Result<Slot, ErrorCode> {
    let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
    if c.total >= limits.max_connections {
        return Err(ErrorCode::ServerBusy);
    }
    let n = c.per.entry(ip).or_default();
    if *n >= limits.max_per_address {
        return Err(ErrorCode::TooManyConnections);
    }
    *n += 1;
    c.total += 1;
    Ok(Slot {
        counts: counts.clone(),
        ip,
    })
}

/// A complete HTTP/1.1 response carrying the API's JSON error body, with
/// `Connection: close`.
fn error_response(code: ErrorCode, message: &str) -> Vec<u8> {
    let body = serde_json::to_vec(&ErrorBody {
        error: ErrorDetail {
            code,
            message: message.to_string(),
        },
    })
    .unwrap_or_default();
    let status = code.status();
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Answer a connection over a limit and close it (reading a little of what
/// the client sent first, so that the answer is not lost to a reset).
async fn refuse(mut stream: TcpStream, code: ErrorCode, limits: &Limits) {
    let msg = match code {
        ErrorCode::TooManyConnections => format!(
            "this address has {} connections open, the most one address may: reuse a connection (keep-alive) or close some",
            limits.max_per_address
        ),
        _ => format!(
            "the server has {} connections open, the most it takes: retry in a moment",
            limits.max_connections
        ),
    };
    let _ = stream.write_all(&error_response(code, &msg)).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        let mut left = 64 * 1024usize;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// HTTP/1.1 on one connection (plain TCP or TLS) until it ends.
async fn serve_connection<S>(
    stream: S,
    app: Router,
    limits: &Limits,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // A request head (and read-ahead) of at most 128 KiB: no route
        // needs more, and it bounds what one connection holds.
        .max_buf_size(MAX_HEAD)
        .serve_connection(
            TokioIo::new(JsonErrors::new(stream)),
            TowerToHyperService::new(app),
        );
    watcher.watch(conn).await.map_err(|e| e.to_string())
}

/// Serve `app` on `listener` within `limits` (over TLS with `tls`) until
/// `shutdown` completes; then stop accepting and give open requests up to
/// 5 s to finish. Under TLS, a connection over a limit is closed without an
/// answer (answering would cost a TLS handshake).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: do not spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let slot = match admit(&counts, peer.ip(), &limits) {
            Ok(s) => s,
            Err(code) => {
                tracing::info!(%peer, %code, "HTTP connection refused");
                if tls.is_none() {
                    let limits = limits.clone();
                    tokio::spawn(async move { refuse(stream, code, &limits).await });
                }
                continue;
            }
        };
        let watcher = graceful.watcher();
        let app = app.clone();
        let limits = limits.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let served = match tls {
                None => serve_connection(stream, app, &limits, watcher).await,
                Some(cfg) => {
                    let accept = tokio_rustls::TlsAcceptor::from(cfg).accept(stream);
                    match tokio::time::timeout(limits.header_timeout, accept).await {
                        Ok(Ok(s)) => serve_connection(s, app, &limits, watcher).await,
                        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
                        Err(_) => Err("TLS handshake timed out".to_string()),
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
    Ok(())
}

/// A connection whose parser-made error responses get JSON bodies.
///
/// hyper answers a request it cannot parse (URI over 64 KiB: 414; head over
/// its buffer: 431; malformed: 400) with a bare head and then closes the
/// connection. Responses made by the API always name a content type; a
/// write that starts with a 4xx head without one is hyper's, and is
/// replaced by the same status with a JSON body. Writes are not vectored,
/// so a response head always starts a write unless a pipelining client
/// left part of an earlier response unsent (then the bare head goes out).
struct JsonErrors<S> {
    inner: S,
    /// Bytes still to send of a replacement response.
    pending: Vec<u8>,
    sent: usize,
}

impl<S> JsonErrors<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            sent: 0,
        }
    }
}

/// The JSON replacement for `buf` if it is a bare error head from hyper.
fn replacement(buf: &[u8]) -> Option<Vec<u8>> {
    let rest = buf.strip_prefix(b"HTTP/1.1 4")?;
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if head.contains("\r\ncontent-type:") {
        return None;
    }
    let (code, msg) = match rest.get(..2)? {
        b"14" => (
            ErrorCode::UriTooLong,
            "the request target (path and query) is over 64 KiB: no route of this API takes one that long",
        ),
        b"31" => (
            ErrorCode::InvalidBody,
            "the request's headers are too large: no request of this API needs that much",
        ),
        b"00" => (
            ErrorCode::InvalidBody,
            "the request is not valid HTTP/1.1 (request line or headers malformed)",
        ),
        _ => return None,
    };
    let mut out = error_response(code, msg);
    if code == ErrorCode::InvalidBody {
        // Keep the parser's status (400 or 431) on the replacement.
        let status = std::str::from_utf8(&buf[9..12]).ok()?;
        let reason = if status == "431" {
            "Request Header Fields Too Large"
        } else {
            "Bad Request"
        };
        let line_end = out.windows(2).position(|w| w == b"\r\n")?;
        let mut fixed = format!("HTTP/1.1 {status} {reason}").into_bytes();
        fixed.extend_from_slice(&out[line_end..]);
        out = fixed;
    }
    Some(out)
}

impl<S: AsyncWrite + Unpin> JsonErrors<S> {
    /// Send what is left of a replacement.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        if let Some(r) = replacement(buf) {
            self.pending = r;
            self.sent = 0;
            // The parser's bytes count as written: the replacement stands
            // in for them (and is sent before any flush completes).
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_parser_error_becomes_json_and_api_responses_pass() {
        let bare = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let r = String::from_utf8(replacement(bare).unwrap()).unwrap();
        assert!(r.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{r}");
        assert!(r.contains("\"UriTooLong\""), "{r}");
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        let r = String::from_utf8(replacement(bare).unwrap()).unwrap();
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
        assert!(r.contains("application/json"), "{r}");
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert!(replacement(ours).is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"{\"HTTP/1.1 414").is_none());
    }
}
