//! What the NBD server serves: a [`BlockDevice`] per export, found by an
//! [`ExportResolver`] from the export name the client sends. The server knows
//! nothing of Coffer's disks, keys or metadata; the service layer implements
//! these traits.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

/// Why a device operation failed. Each maps to one NBD error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Data could not be read or written (NBD_EIO). Also used when stored data
    /// fails authentication: tampered data is an I/O error, never data.
    #[error("I/O error: {0}")]
    Io(String),
    /// The request is invalid for this device (NBD_EINVAL).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The device refuses the operation, e.g. a write to a read-only export (NBD_EPERM).
    #[error("not permitted: {0}")]
    NotPermitted(String),
    /// No space left (NBD_ENOSPC).
    #[error("no space: {0}")]
    NoSpace(String),
    /// The export was revoked (disk detached) or the server is stopping
    /// (NBD_ESHUTDOWN); the server replies with this error and then closes the
    /// connection.
    #[error("shut down: {0}")]
    Shutdown(String),
}

/// One exported block device. Offsets and lengths given to these methods are
/// already checked by the server against [`BlockDevice::size`] (no request
/// reaches the device past its end) and against the advertised maximum
/// request size. Methods may be called concurrently, also for overlapping
/// ranges; the device must keep each call atomic per its own unit of storage
/// and never return data that mixes up two writes in a way no order of them
/// explains within one chunk.
#[async_trait]
pub trait BlockDevice: Send + Sync + 'static {
    /// Size in bytes. Fixed for the life of a connection.
    fn size(&self) -> u64;

    /// Preferred I/O size advertised in NBD_INFO_BLOCK_SIZE (a power of two,
    /// at most 32 MiB). Requests of this size and alignment are fastest.
    fn preferred_block_size(&self) -> u32 {
        4096
    }

    /// Whether several connections to this export see one another's
    /// writes and a flush on any of them makes every connection's
    /// acknowledged writes durable (NBD_FLAG_CAN_MULTI_CONN). Clients such
    /// as nbdcopy and qemu then open connections in parallel.
    fn multi_conn(&self) -> bool {
        false
    }

    /// Whether the export is read-only (NBD_FLAG_READ_ONLY).
    fn read_only(&self) -> bool {
        false
    }

    /// Read `len` bytes at `offset`.
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError>;

    /// Write `data` at `offset`. With `fua`, the data (and everything
    /// acknowledged before it) is durable when this returns.
    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), DeviceError>;

    /// Make every write acknowledged so far durable.
    async fn flush(&self) -> Result<(), DeviceError>;

    /// Discard `len` bytes at `offset`; they read back as zeroes afterwards.
    async fn trim(&self, offset: u64, len: u32, fua: bool) -> Result<(), DeviceError>;

    /// How `len` bytes at `offset` are allocated: consecutive runs of
    /// `(length, hole)` covering the range in order, where a hole reads as
    /// zeroes and holds no stored data. Answers NBD_CMD_BLOCK_STATUS for
    /// `base:allocation`; must not read data. The default reports one run
    /// of data, which is always correct.
    async fn extents(&self, offset: u64, len: u32) -> Result<Vec<(u32, bool)>, DeviceError> {
        let _ = offset;
        Ok(vec![(len, false)])
    }

    /// Write zeroes over `len` bytes at `offset`. `may_trim` is false when the
    /// client sent NBD_CMD_FLAG_NO_HOLE.
    async fn write_zeroes(
        &self,
        offset: u64,
        len: u32,
        may_trim: bool,
        fua: bool,
    ) -> Result<(), DeviceError>;
}

/// Maps an export name to a device. Coffer's export names are unguessable
/// attachment tokens, so the resolver is also the access check of the NBD path.
#[async_trait]
pub trait ExportResolver: Send + Sync + 'static {
    /// Open the export called `name` for one connection; `None` if there is no
    /// such export (the client then gets NBD_REP_ERR_UNKNOWN, or the
    /// connection is closed for NBD_OPT_EXPORT_NAME).
    async fn open(&self, name: &str) -> Option<Arc<dyn BlockDevice>>;

    /// Names answered to NBD_OPT_LIST. Coffer lists none: export names are secrets.
    async fn list(&self) -> Vec<String> {
        Vec::new()
    }
}
