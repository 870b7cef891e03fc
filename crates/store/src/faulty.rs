//! [`FaultyStore`]: wraps a store and injects failures, for tests that prove
//! a failed put or get never loses or corrupts data.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::{ObjectStore, StoreError};

/// A store that fails chosen operations.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    puts: AtomicU64,
    /// Fail every put whose 1-based sequence number is >= this (0 = never).
    fail_puts_from: AtomicU64,
    /// Fail every get (1 = yes).
    fail_gets: AtomicU64,
}

impl FaultyStore {
    /// Wrap `inner`, injecting nothing yet.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            puts: AtomicU64::new(0),
            fail_puts_from: AtomicU64::new(0),
            fail_gets: AtomicU64::new(0),
        }
    }

    /// From the `n`-th put on (counting from now, 1-based), every put fails; 0 disables.
    pub fn fail_puts_after(&self, n: u64) {
        self.puts.store(0, Ordering::SeqCst);
        self.fail_puts_from.store(n, Ordering::SeqCst);
    }

    /// Make gets fail or succeed (whole and ranged ones alike).
    pub fn fail_gets(&self, on: bool) {
        self.fail_gets.store(u64::from(on), Ordering::SeqCst);
    }

    fn injected(key: &str) -> StoreError {
        StoreError::Io {
            key: key.to_string(),
            cause: std::io::Error::other("injected fault"),
        }
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let n = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
        let from = self.fail_puts_from.load(Ordering::SeqCst);
        if from != 0 && n >= from {
            return Err(Self::injected(key));
        }
        self.inner.put(key, data).await
    }
    async fn get(&self, key: &str) -> Result<BytesMut, StoreError> {
        if self.fail_gets.load(Ordering::SeqCst) == 1 {
            return Err(Self::injected(key));
        }
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        if self.fail_gets.load(Ordering::SeqCst) == 1 {
            return Err(Self::injected(key));
        }
        self.inner.get_range(key, range).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.inner.delete_many(keys).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
    fn describe(&self) -> String {
        format!("faulty({})", self.inner.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[tokio::test]
    async fn conformance() {
        crate::conformance::run(&FaultyStore::new(Arc::new(MemoryStore::new()))).await;
    }

    #[tokio::test]
    async fn failed_gets_fail_ranged_reads_too() {
        let s = FaultyStore::new(Arc::new(MemoryStore::new()));
        s.put("a/1", Bytes::from_static(b"sealed")).await.unwrap();
        s.fail_gets(true);
        assert!(matches!(
            s.get_range("a/1", 0..3).await,
            Err(StoreError::Io { .. })
        ));
        s.fail_gets(false);
        assert_eq!(&s.get_range("a/1", 1..3).await.unwrap()[..], b"ea");
    }
}
