//! Shared by the tests of `coffer-volume`: a volume in real metadata (this
//! run's backend via `coffer-testkit`: SQLite in the test's directory by
//! default) over [`Rigged`], an in-memory store that fails and stalls on
//! demand; a seeded generator whose seed is printed and replayable.

#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use coffer_crypto::SecretKey;
use coffer_meta::{DekRow, Meta, SnapshotRow, VolumeRow};
use coffer_store::{MemoryStore, ObjectStore, StoreError};
use coffer_testkit::TestMetadata;
use coffer_types::{Id, Kind};
use coffer_volume::{Volume, VolumeConfig};

// ---------------------------------------------------------------------------
// A store that fails and stalls on demand.

/// Wraps a [`MemoryStore`]; every fault is off until switched on.
pub struct Rigged {
    pub inner: MemoryStore,
    /// Puts attempted so far (including failed and held ones).
    pub puts: AtomicU64,
    /// Put numbers (1-based, counted by `puts`) that fail, once each.
    pub fail_put_numbers: Mutex<HashSet<u64>>,
    pub fail_all_puts: AtomicBool,
    pub fail_sync: AtomicBool,
    pub fail_gets: AtomicBool,
    pub yield_on_get: AtomicBool,
    /// Microseconds every get takes (0: none), as a remote store's would.
    pub get_delay_us: AtomicU64,
    /// Puts wait while this is false.
    pub gate: tokio::sync::watch::Sender<bool>,
    /// Puts currently waiting at the gate.
    pub held: AtomicU64,
    /// Syncs wait while this is false.
    pub sync_gate: tokio::sync::watch::Sender<bool>,
    /// Syncs currently waiting at their gate.
    pub syncs_held: AtomicU64,
}

impl Rigged {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryStore::new(),
            puts: AtomicU64::new(0),
            fail_put_numbers: Mutex::new(HashSet::new()),
            fail_all_puts: AtomicBool::new(false),
            fail_sync: AtomicBool::new(false),
            fail_gets: AtomicBool::new(false),
            yield_on_get: AtomicBool::new(false),
            get_delay_us: AtomicU64::new(0),
            gate: tokio::sync::watch::channel(true).0,
            held: AtomicU64::new(0),
            sync_gate: tokio::sync::watch::channel(true).0,
            syncs_held: AtomicU64::new(0),
        })
    }

    /// The `n`-th put from now (1-based) fails, once.
    pub fn fail_nth_put_from_now(&self, n: u64) {
        let at = self.puts.load(Ordering::SeqCst) + n;
        self.fail_put_numbers.lock().unwrap().insert(at);
    }

    pub fn set_gate(&self, open: bool) {
        self.gate.send_replace(open);
    }

    fn injected(key: &str, what: &str) -> StoreError {
        StoreError::Io {
            key: key.to_string(),
            cause: std::io::Error::other(format!("injected {what} failure")),
        }
    }
}

#[async_trait]
impl ObjectStore for Rigged {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let n = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
        let mut rx = self.gate.subscribe();
        if !*rx.borrow() {
            self.held.fetch_add(1, Ordering::SeqCst);
            let _ = rx.wait_for(|open| *open).await;
            self.held.fetch_sub(1, Ordering::SeqCst);
        }
        if self.fail_all_puts.load(Ordering::SeqCst)
            || self.fail_put_numbers.lock().unwrap().remove(&n)
        {
            return Err(Self::injected(key, "put"));
        }
        self.inner.put(key, data).await
    }
    async fn get(&self, key: &str) -> Result<BytesMut, StoreError> {
        if self.yield_on_get.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        let us = self.get_delay_us.load(Ordering::SeqCst);
        if us > 0 {
            tokio::time::sleep(std::time::Duration::from_micros(us)).await;
        }
        if self.fail_gets.load(Ordering::SeqCst) {
            return Err(Self::injected(key, "get"));
        }
        self.inner.get(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn sync(&self) -> Result<(), StoreError> {
        let mut rx = self.sync_gate.subscribe();
        if !*rx.borrow() {
            self.syncs_held.fetch_add(1, Ordering::SeqCst);
            let _ = rx.wait_for(|open| *open).await;
            self.syncs_held.fetch_sub(1, Ordering::SeqCst);
        }
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(Self::injected("(sync)", "sync"));
        }
        self.inner.sync().await
    }
    fn describe(&self) -> String {
        "rigged(memory)".into()
    }
}

// ---------------------------------------------------------------------------
// One volume in real metadata.

pub struct Fixture {
    pub db: TestMetadata,
    pub meta: Meta,
    pub dek: SecretKey,
    pub dek_id: Id,
    pub kek: Id,
    pub account: Id,
    pub vol: Id,
    pub chunk: u64,
    pub size: u64,
    // Last: dropped after the database handle.
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A fresh volume of `chunks` chunks of `chunk` bytes.
    pub async fn new(chunk: u32, chunks: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = TestMetadata::new(dir.path());
        let meta = Meta::open(db.url()).await.unwrap();
        let kek = Id::random(Kind::Key);
        assert!(
            meta.insert_platform_key(kek, "r1", b"wrapped")
                .await
                .unwrap()
        );
        let dek_id = Id::random(Kind::Dek);
        meta.insert_dek(&DekRow {
            id: dek_id,
            kek_id: kek,
            kek_version: 1,
            wrapped: b"wrapped-dek".to_vec(),
            encryption_set_id: None,
        })
        .await
        .unwrap();
        let tenant = meta.create_tenant("t").await.unwrap();
        let account = meta.create_account(tenant.id, None, "a").await.unwrap().id;
        let vol = Id::random(Kind::Volume);
        let size = u64::from(chunk) * chunks;
        meta.create_volume(&VolumeRow {
            dek2_id: None,
            id: vol,
            dek_id,
            chunk_size: chunk,
            size,
            parent: None,
            head_generation: 0,
            live: true,
            region: "local".into(),
        })
        .await
        .unwrap();
        Self {
            db,
            meta,
            dek: SecretKey::generate(),
            dek_id,
            kek,
            account,
            vol,
            chunk: u64::from(chunk),
            size,
            _dir: dir,
        }
    }

    /// The DEKs the volume may need.
    pub fn deks(&self) -> Arc<dyn coffer_volume::DekSource> {
        coffer_volume::StaticDeks::one(self.dek_id, self.dek.clone())
    }

    pub async fn open(&self, store: &Arc<Rigged>, config: VolumeConfig) -> Arc<Volume> {
        let store: Arc<dyn ObjectStore> = store.clone();
        Volume::open(
            self.meta.clone(),
            store,
            self.vol,
            self.deks(),
            config,
            None,
        )
        .await
        .unwrap()
    }

    /// The head as a restarted server would see it: a new metadata
    /// connection, nothing cached.
    pub async fn open_fresh(&self, store: &Arc<Rigged>) -> Arc<Volume> {
        let meta = Meta::open(self.db.url()).await.unwrap();
        let store: Arc<dyn ObjectStore> = store.clone();
        Volume::open(
            meta,
            store,
            self.vol,
            self.deks(),
            VolumeConfig::default(),
            None,
        )
        .await
        .unwrap()
    }

    /// The view of snapshot generation `generation`, read as a disk restored
    /// from it reads it: a new child volume whose parent is that view.
    pub async fn open_view(&self, store: &Arc<Rigged>, generation: u64) -> Arc<Volume> {
        let child = Id::random(Kind::Volume);
        self.meta
            .create_volume(&VolumeRow {
                dek2_id: None,
                id: child,
                dek_id: self.dek_id,
                chunk_size: u32::try_from(self.chunk).unwrap(),
                size: self.size,
                parent: Some((self.vol, generation)),
                head_generation: 0,
                live: true,
                region: "local".into(),
            })
            .await
            .unwrap();
        let store: Arc<dyn ObjectStore> = store.clone();
        Volume::open(
            self.meta.clone(),
            store,
            child,
            self.deks(),
            VolumeConfig::default(),
            None,
        )
        .await
        .unwrap()
    }

    pub fn snapshot_row(&self, name: &str) -> SnapshotRow {
        SnapshotRow {
            id: Id::random(Kind::Snapshot),
            account_id: self.account,
            name: name.to_string(),
            region: "r1".into(),
            source_disk_id: None,
            volume_id: self.vol,
            generation: 0,
            size: self.size,
            encryption: coffer_types::EncryptionType::Platform,
            kek_id: self.kek,
            created_at: coffer_meta::now(),
            encryption_set_id: None,
            image: None,
            created_by: coffer_types::CreationMethod::Snapshot,
            origin: Default::default(),
        }
    }
}

pub fn config(high_water: u64) -> VolumeConfig {
    VolumeConfig {
        dirty_high_water: usize::try_from(high_water).unwrap(),
        io_parallelism: 4,
        gc_notify: None,
        ..VolumeConfig::default()
    }
}

pub async fn read_all(v: &Volume) -> Vec<u8> {
    v.read(0, v.size()).await.unwrap().to_vec()
}

/// The seed of a randomised test: `COFFER_TEST_SEED`, else fresh; printed.
pub fn seed() -> u64 {
    let s = std::env::var("COFFER_TEST_SEED")
        .ok()
        .map(|s| s.parse().expect("COFFER_TEST_SEED is a u64"))
        .unwrap_or_else(|| {
            let d = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            d.as_secs().wrapping_mul(1_000_000_007) ^ u64::from(d.subsec_nanos())
        });
    println!("seed {s} (replay with COFFER_TEST_SEED={s})");
    s
}

pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next().to_be_bytes()[3]).collect()
    }
}

/// Distinct, recognisable content for chunk-sized tests.
pub fn content(tag: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    r.bytes(len)
}

pub fn usz(v: u64) -> usize {
    usize::try_from(v).unwrap()
}
