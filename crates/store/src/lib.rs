//! Object storage for sealed chunks. This crate owns the [`ObjectStore`]
//! contract and its backends: [`LocalStore`] (a directory, the embedded
//! default), [`MemoryStore`] (a fast test double) and [`FaultyStore`] (a
//! wrapper that injects failures and corruption, for tests). An S3 backend
//! ([`S3Store`]) passes the same [`conformance`] suite against a real server.
//!
//! The store never sees plaintext: callers hand it sealed objects only.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

mod faulty;
mod local;
mod memory;
mod s3;

pub mod conformance;

pub use faulty::FaultyStore;
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use s3::{S3Location, S3Store};

/// Errors of an object store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object has that key.
    #[error("object '{0}' not found")]
    NotFound(String),
    /// `put` of a key that exists: objects are immutable.
    #[error("object '{0}' already exists")]
    AlreadyExists(String),
    /// The key is not a valid object key.
    #[error("invalid object key '{0}'")]
    InvalidKey(String),
    /// The backend failed. The message includes the cause, so the cause is
    /// deliberately not chained as `source()` too (an error chain printed
    /// with `{:#}` would say it twice).
    #[error("object store I/O error on '{key}': {cause}")]
    Io {
        /// The key involved, or the store root.
        key: String,
        /// The cause.
        cause: std::io::Error,
    },
}

/// A store of immutable objects addressed by keys made of lowercase
/// letters, digits, `-`, `_`, `.` and `/`-separated segments (no empty
/// segment, no `.` or `..` segment, at most 512 bytes).
///
/// Contract (every backend passes [`conformance::run`]):
/// - `put` creates an object atomically: a reader sees the whole object or
///   none; it fails with [`StoreError::AlreadyExists`] if the key exists.
/// - An object `put` before a `sync` call started is durable (survives a
///   crash of the process and of the machine) when `sync` returns. Backends
///   whose puts are durable at once make `sync` a no-op.
/// - `get` of a missing key is [`StoreError::NotFound`]; `delete` of a
///   missing key succeeds (deletes are idempotent).
/// - `list` returns every key under a prefix, in no particular order.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Create an object.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError>;
    /// Read a whole object.
    async fn get(&self, key: &str) -> Result<BytesMut, StoreError>;
    /// Delete an object if it exists.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Keys that start with `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Make every completed `put` durable.
    async fn sync(&self) -> Result<(), StoreError>;
    /// A short description for logs (`local:/var/lib/coffer/objects`).
    fn describe(&self) -> String;
}

/// Check `key` against the key grammar of [`ObjectStore`].
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.')
                })
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidKey(key.chars().take(80).collect()))
    }
}

/// The object key of chunk serial `counter` under DEK `dek_id`:
/// `chunks/<dek>/<low byte of counter>/<counter>`, all lowercase hex. The
/// middle segment spreads a lineage's objects over 256 directories.
pub fn chunk_key(dek_id: u64, counter: u64) -> String {
    format!("chunks/{dek_id:016x}/{:02x}/{counter:016x}", counter & 0xff)
}

/// Parse a key made by [`chunk_key`] back into `(dek_id, counter)`.
pub fn parse_chunk_key(key: &str) -> Option<(u64, u64)> {
    let mut it = key.split('/');
    if it.next()? != "chunks" {
        return None;
    }
    let dek = u64::from_str_radix(it.next()?, 16).ok()?;
    let _fan = it.next()?;
    let counter = u64::from_str_radix(it.next()?, 16).ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((dek, counter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_grammar() {
        for ok in ["a", "chunks/00/ff/0123", "x.y_z-1/b"] {
            validate_key(ok).unwrap();
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "../x",
            "a/./b",
            "A",
            "a b",
            &"a".repeat(513),
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chunk_keys_round_trip() {
        let k = chunk_key(0xdead_beef, 0x1234);
        validate_key(&k).unwrap();
        assert_eq!(parse_chunk_key(&k), Some((0xdead_beef, 0x1234)));
        assert_eq!(parse_chunk_key("chunks/zz/00/11"), None);
    }
}
