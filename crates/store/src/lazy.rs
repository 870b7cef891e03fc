//! [`LazyStore`]: a store that is opened on first use, and again on each
//! use until an open succeeds: a region whose store cannot be opened when
//! the server starts (an unmounted directory, a bucket not reachable yet)
//! does not keep the server, or the other regions, from starting.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::{ObjectStore, StoreError};

/// Opens a store (blocking: it may touch the filesystem).
type Opener = Arc<dyn Fn() -> Result<Arc<dyn ObjectStore>, StoreError> + Send + Sync>;

/// A store opened by `open` the first time it is used (a failed open is
/// that use's error, and the next use tries again).
pub struct LazyStore {
    open: Opener,
    inner: OnceLock<Arc<dyn ObjectStore>>,
    describe: String,
}

impl LazyStore {
    /// A store `describe`d as given, opened by `open` when first needed.
    pub fn new(
        describe: impl Into<String>,
        open: impl Fn() -> Result<Arc<dyn ObjectStore>, StoreError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            open: Arc::new(open),
            inner: OnceLock::new(),
            describe: describe.into(),
        }
    }

    async fn store(&self) -> Result<&Arc<dyn ObjectStore>, StoreError> {
        if let Some(s) = self.inner.get() {
            return Ok(s);
        }
        // Off the async workers: a hung mount must not stall them.
        let open = self.open.clone();
        let opened = tokio::task::spawn_blocking(move || open())
            .await
            .map_err(|e| StoreError::Io {
                key: "<store>".into(),
                cause: std::io::Error::other(format!("the store's opener failed: {e}")),
            })??;
        // Two first uses at once: one store wins, the other is dropped.
        Ok(self.inner.get_or_init(|| opened))
    }
}

#[async_trait]
impl ObjectStore for LazyStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.store().await?.put(key, data).await
    }
    async fn get(&self, key: &str) -> Result<BytesMut, StoreError> {
        self.store().await?.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.store().await?.get_range(key, range).await
    }
    async fn put_streaming(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.store().await?.put_streaming(key, data).await
    }
    async fn get_range_streaming(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.store().await?.get_range_streaming(key, range).await
    }

    async fn get_range_uncached(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.store().await?.get_range_uncached(key, range).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.store().await?.delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.store().await?.delete_many(keys).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.store().await?.list(prefix).await
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.store().await?.sync().await
    }
    async fn probe(&self) -> Result<(), StoreError> {
        self.store().await?.probe().await
    }
    fn describe(&self) -> String {
        self.inner
            .get()
            .map_or_else(|| self.describe.clone(), |s| s.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    #[tokio::test]
    async fn conformance() {
        let store = LazyStore::new("memory", || Ok(Arc::new(MemoryStore::new())));
        crate::conformance::run(&store).await;
    }

    #[tokio::test]
    async fn a_failed_open_is_that_uses_error_and_the_next_use_opens_again() {
        let up = Arc::new(AtomicBool::new(false));
        let opens = Arc::new(AtomicU32::new(0));
        let (u, o) = (up.clone(), opens.clone());
        let store = LazyStore::new("later", move || {
            o.fetch_add(1, Ordering::SeqCst);
            if u.load(Ordering::SeqCst) {
                Ok(Arc::new(MemoryStore::new()) as Arc<dyn ObjectStore>)
            } else {
                Err(StoreError::Io {
                    key: "<root>".into(),
                    cause: std::io::Error::other("not mounted"),
                })
            }
        });
        let key = crate::object_key(1, &[7; 16]);
        assert!(store.probe().await.is_err());
        assert!(store.put(&key, Bytes::from_static(b"x")).await.is_err());
        assert_eq!(store.describe(), "later");
        up.store(true, Ordering::SeqCst);
        store.probe().await.unwrap();
        store.put(&key, Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(&store.get(&key).await.unwrap()[..], b"x");
        assert_eq!(
            opens.load(Ordering::SeqCst),
            3,
            "opened until it succeeded, then kept"
        );
        assert_eq!(store.describe(), "memory");
    }
}
