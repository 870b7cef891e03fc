//! The fuzzing entry point of the NBD server (used by `fuzz/` with AFL++ and
//! by the corpus replay test): one client session, the fuzzer's bytes as
//! everything the client sends, served against a 1 MiB in-memory export
//! named `fuzz`. The server must end the session (whatever the bytes) without
//! panicking, and the export must stay within its size.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{BlockDevice, DeviceError, ExportResolver, ServerConfig, handle_connection};

const SIZE: u64 = 1 << 20;

struct Mem(Mutex<Vec<u8>>);

fn range(off: u64, len: u64) -> Result<std::ops::Range<usize>, DeviceError> {
    let end = off
        .checked_add(len)
        .filter(|e| *e <= SIZE)
        .ok_or_else(|| DeviceError::Invalid("out of range".into()))?;
    let to = |v: u64| usize::try_from(v).map_err(|_| DeviceError::Invalid("range".into()));
    Ok(to(off)?..to(end)?)
}

#[async_trait]
impl BlockDevice for Mem {
    fn size(&self) -> u64 {
        SIZE
    }
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError> {
        let r = range(offset, u64::from(len))?;
        Ok(Bytes::copy_from_slice(&self.0.lock().expect("lock")[r]))
    }
    async fn write(&self, offset: u64, data: Bytes, _fua: bool) -> Result<(), DeviceError> {
        let r = range(offset, data.len() as u64)?;
        self.0.lock().expect("lock")[r].copy_from_slice(&data);
        Ok(())
    }
    async fn flush(&self) -> Result<(), DeviceError> {
        Ok(())
    }
    async fn trim(&self, offset: u64, len: u32, _fua: bool) -> Result<(), DeviceError> {
        let r = range(offset, u64::from(len))?;
        self.0.lock().expect("lock")[r].fill(0);
        Ok(())
    }
    async fn write_zeroes(
        &self,
        offset: u64,
        len: u32,
        _may_trim: bool,
        _fua: bool,
    ) -> Result<(), DeviceError> {
        self.trim(offset, len, false).await
    }
}

struct One(Arc<Mem>);

#[async_trait]
impl ExportResolver for One {
    async fn open(&self, name: &str) -> Option<Arc<dyn BlockDevice>> {
        (name == "fuzz").then(|| self.0.clone() as Arc<dyn BlockDevice>)
    }
}

/// A client that sends `input` and then closes its side; what the server
/// writes is dropped.
struct Client {
    input: Vec<u8>,
    at: usize,
}

impl AsyncRead for Client {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = buf.remaining().min(self.input.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.input[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Client {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Serve one session whose client sends `input`. Panics only on a bug.
pub fn session(input: &[u8]) {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
    }
    let dev = Arc::new(Mem(Mutex::new(vec![0; 1 << 20])));
    let client = Client {
        input: input.to_vec(),
        at: 0,
    };
    let config = ServerConfig {
        max_request: 1 << 20,
        max_in_flight: 4,
        ..ServerConfig::default()
    };
    RT.with(|rt| {
        rt.block_on(async {
            let _ = handle_connection(client, Arc::new(One(dev.clone())), config).await;
        });
    });
    assert_eq!(dev.0.lock().expect("lock").len() as u64, SIZE);
}
