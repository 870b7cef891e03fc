//! [`MemoryStore`]: a map in memory. A fast double for unit tests; never a
//! production backend (nothing survives the process).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::{ObjectStore, StoreError, slice_clipped, validate_key};

/// Objects in a map.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<HashMap<String, Bytes>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.map.lock().expect("poisoned").len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replace an object's bytes (tests only: simulates tampering).
    pub fn tamper(&self, key: &str, f: impl FnOnce(&mut Vec<u8>)) {
        let mut map = self.map.lock().expect("poisoned");
        if let Some(v) = map.get_mut(key) {
            let mut bytes = v.to_vec();
            f(&mut bytes);
            *v = Bytes::from(bytes);
        }
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        validate_key(key)?;
        let mut map = self.map.lock().expect("poisoned");
        if map.contains_key(key) {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        map.insert(key.to_string(), data);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<BytesMut, StoreError> {
        validate_key(key)?;
        let map = self.map.lock().expect("poisoned");
        map.get(key)
            .map(|b| BytesMut::from(&b[..]))
            .ok_or_else(|| StoreError::NotFound(key.to_string()))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        validate_key(key)?;
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let map = self.map.lock().expect("poisoned");
        map.get(key)
            .map(|b| slice_clipped(b, &range))
            .ok_or_else(|| StoreError::NotFound(key.to_string()))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.map.lock().expect("poisoned").remove(key);
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            validate_key(key)?;
        }
        let mut map = self.map.lock().expect("poisoned");
        for key in keys {
            map.remove(key);
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let map = self.map.lock().expect("poisoned");
        Ok(map
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance() {
        crate::conformance::run(&super::MemoryStore::new()).await;
    }
}
