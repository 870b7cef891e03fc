//! Object storage for sealed chunks. This crate owns the [`ObjectStore`]
//! contract and its backends: [`LocalStore`] (a directory, the embedded
//! default), [`MemoryStore`] (a fast test double) and [`FaultyStore`] (a
//! wrapper that injects failures and corruption, for tests). An S3 backend
//! ([`S3Store`]) passes the same [`conformance`] suite against a real server.
//!
//! The store never sees plaintext: callers hand it sealed objects only.

use std::ops::Range;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

mod faulty;
mod lazy;
mod local;
mod memory;
mod pool;
mod s3;

pub mod conformance;

pub use faulty::FaultyStore;
pub use lazy::LazyStore;
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use pool::BufPool;
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
/// - `get_range` returns the bytes of a range of an object, clipped to the
///   object's length (never an error for a range past the end).
/// - `list` returns every key under a prefix, in no particular order.
/// - `delete_many` deletes a batch of keys, as idempotent as `delete`.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Create an object.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError>;
    /// Read a whole object.
    async fn get(&self, key: &str) -> Result<BytesMut, StoreError>;
    /// Read the bytes of an object in `range` (offsets in bytes), clipped to
    /// the object's length: a range that ends past the end returns the
    /// shorter tail, one that starts at or past the end returns empty bytes.
    ///
    /// An empty range (`start >= end`) returns empty bytes without looking
    /// the object up, so it is not [`StoreError::NotFound`] for a missing
    /// key (the key is still checked: [`StoreError::InvalidKey`]).
    ///
    /// The default reads the whole object with [`ObjectStore::get`] and
    /// slices it (so a wrapper that only overrides `get` keeps its
    /// behaviour); every backend of this crate reads only the range.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if no object has the key,
    /// [`StoreError::InvalidKey`] for a bad key, [`StoreError::Io`] if the
    /// backend fails.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        validate_key(key)?;
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        Ok(slice_clipped(&self.get(key).await?.freeze(), &range))
    }
    /// [`ObjectStore::put`] for a writer that streams much data once and
    /// reads it back at most once soon after (a copy job): a backend with a
    /// page cache keeps what this writes out of it, so a long copy neither
    /// evicts the cached data of live disks nor makes the kernel find a
    /// fresh page for every byte it writes. Same contract as `put`; the
    /// default is `put`.
    async fn put_streaming(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.put(key, data).await
    }
    /// [`ObjectStore::get_range`] for such a reader: what it reads is not
    /// kept in a page cache (what is already cached is read from there).
    /// Same contract as `get_range`; the default is `get_range`.
    async fn get_range_streaming(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.get_range(key, range).await
    }
    /// [`ObjectStore::get_range_streaming`] of bytes that
    /// [`ObjectStore::put_streaming`] wrote (a copy job reading back its
    /// own copy): a backend with a page cache knows they are not in it and
    /// reads them from the disk straight into the buffer, without looking.
    /// Same contract as `get_range`; the default is `get_range_streaming`.
    async fn get_range_uncached(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.get_range_streaming(key, range).await
    }
    /// Delete an object if it exists.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Delete every object of `keys` that exists (missing keys are fine,
    /// as for [`ObjectStore::delete`]).
    ///
    /// Every key is checked first: if one is invalid, nothing is deleted
    /// and the result is [`StoreError::InvalidKey`]. Otherwise every key is
    /// tried, even after a failure, and the result is the first error met
    /// (the other keys may or may not be deleted then).
    ///
    /// The default runs up to [`DELETE_CONCURRENCY`] `delete`s at a time;
    /// the S3 backend sends batches of up to 1000 keys per request.
    ///
    /// # Errors
    /// [`StoreError::InvalidKey`] for a bad key, else the first failure of
    /// the backend.
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        use futures::StreamExt as _;
        for key in keys {
            validate_key(key)?;
        }
        // By index: a closure over `&String` trips the compiler's check
        // that the boxed future is `Send` for every lifetime.
        let mut results = futures::stream::iter(0..keys.len())
            .map(|i| self.delete(&keys[i]))
            .buffer_unordered(DELETE_CONCURRENCY);
        let mut first = None;
        while let Some(r) = results.next().await {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
    /// Keys that start with `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Make every completed `put` durable.
    async fn sync(&self) -> Result<(), StoreError>;
    /// Whether the store answers now: a cheap request that fails when the
    /// store cannot be reached (by default, a list of a prefix that holds
    /// no objects).
    async fn probe(&self) -> Result<(), StoreError> {
        self.list("probe/").await.map(|_| ())
    }
    /// A short description for logs (`local:/var/lib/coffer/objects`).
    fn describe(&self) -> String;
}

/// How many `delete`s the default [`ObjectStore::delete_many`] runs at a
/// time.
pub const DELETE_CONCURRENCY: usize = 32;

/// The part of `range` inside an object of `len` bytes: `start..end` with
/// both ends clipped to `len`, and empty (`start == end`) when nothing of
/// the range is in the object.
pub(crate) fn clip(range: &Range<u64>, len: u64) -> Range<u64> {
    let end = range.end.min(len);
    range.start.min(end)..end
}

/// The bytes of `whole` in `range`, clipped as [`clip`] does (no copy).
#[allow(clippy::cast_possible_truncation)] // both ends are at most whole.len()
pub(crate) fn slice_clipped(whole: &Bytes, range: &Range<u64>) -> Bytes {
    let r = clip(range, whole.len() as u64);
    whole.slice(r.start as usize..r.end as usize)
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

/// The object key of format v2 object `id` written by volume `writer` (its
/// id value): `objects/<writer>/<id>`, all lowercase hex. The writer
/// segment lets the orphan sweep keep what an attached volume may still
/// commit; the id is random, so objects spread evenly.
pub fn object_key(writer: u64, id: &[u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("objects/{writer:016x}/{hex}")
}

/// Parse a key made by [`object_key`] back into `(writer, id)`.
pub fn parse_object_key(key: &str) -> Option<(u64, [u8; 16])> {
    let mut it = key.split('/');
    if it.next()? != "objects" {
        return None;
    }
    let w = it.next()?;
    let hex = it.next()?;
    if it.next().is_some() || w.len() != 16 || hex.len() != 32 {
        return None;
    }
    let writer = u64::from_str_radix(w, 16).ok()?;
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((writer, id))
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
        let k = object_key(0xab, &[0x5a; 16]);
        validate_key(&k).unwrap();
        assert_eq!(parse_object_key(&k), Some((0xab, [0x5a; 16])));
        assert_eq!(parse_object_key("objects/00ab/5a"), None);
        assert_eq!(parse_object_key(&k.replace("objects", "chunks")), None);
    }
}
