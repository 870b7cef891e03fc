//! The block engine. A [`Volume`] is an open disk: it turns byte-range reads
//! and writes into sealed, immutable format v2 objects and chunk-map
//! extents (see docs/design/format-v2-and-keys.md).
//!
//! ## How one write becomes durable
//! 1. `write` splits the range into chunks (`chunk_size`, 256 KiB by
//!    default). A whole-chunk write keeps a slice of the caller's buffer;
//!    any other write keeps its 4 KiB sectors, and a sector only partly
//!    written is completed from its current content (one slot read, never
//!    the whole chunk). The result goes to the **dirty set**, in memory
//!    only: plaintext never touches persistent storage. Writes to one chunk
//!    are serialised by a striped lock, so overlapping partial writes never
//!    lose each other's bytes. A request's chunks enter the dirty set
//!    together, so a write-back (and a snapshot) takes all of a request or
//!    none of it. A chunk still stored in format v1 is rewritten whole on
//!    its first write.
//! 2. Write-back moves the dirty set to the **flushing set** and seals it:
//!    chunks written whole become **chunk objects**, every other sector is
//!    packed into **segments** (the small-write log, up to 1,024 sectors
//!    each), all-zero sectors and chunks become zero extents and cost no
//!    object. Each object gets a fresh random 128-bit id and keys derived
//!    from it, so no nonce depends on any stored counter, and is put
//!    create-only. Its extents become **pending**: reads use them, the chunk
//!    map does not name them yet. This runs in the background once the
//!    dirty set passes its high-water mark, or the unsealed data of all the
//!    server's volumes passes their shared [`MemoryBudget`] (writers wait
//!    at twice either, before changing anything, and are refused if that
//!    write-back fails), so memory stays bounded on long writes, with many
//!    busy disks, and while the store is down.
//! 3. On `flush` (and FUA, snapshot, close), after a last write-back, one
//!    `sync` makes every pending object durable, then one metadata
//!    transaction (a constant number of round trips) lays the pending
//!    extents over the head generation and queues objects no view needs any
//!    more for deletion. Only then is the flush acknowledged.
//!
//! A long run of writes without a flush also commits, unasked, once 16,384
//! extents are pending or the objects put since the last commit hold 256
//! MiB, so no commit transaction grows without bound and what overwrites
//! supersede is collected (its files reused) while the writes go on. That
//! commit runs in the background: its extents are **committing** (reads use
//! them) while writers go on sealing new ones above them, and only past
//! 65,536 pending extents or 1 GiB put does a write-back wait for it
//! (back-pressure).
//! Commits apply one at a time, in order; a failed one puts its extents back
//! under the newer pending ones.
//!
//! A crash before step 3 commits leaves unreferenced objects (garbage for the
//! orphan sweep) and the previous, intact chunk map: a flushed write is never
//! lost, an unflushed one may be, as for any disk.
//!
//! ## Compaction
//! A commit that leaves a chunk with at least half its sectors in segments
//! marks it due; a background task rewrites it whole as one chunk object
//! (see [`Volume::compact_due`]), which frees its segment slots.
//!
//! ## Reads
//! A read looks up each 4 KiB sector through the layers (dirty, flushing,
//! pending, committed map) and fetches runs of consecutive slots of one
//! object with one ranged read, opening each slot on its own: a 4 KiB read
//! reads and decrypts 4 KiB. A v1 chunk is read and opened whole.
//!
//! ## Snapshots
//! `snapshot` writes back the dirty set and then records the head generation
//! in a snapshot row and moves the head to the next generation, in one
//! transaction. Its cost is the dirty data (bounded by the high-water mark)
//! plus a few rows, never the disk's size. The snapshot is the disk as of the
//! instant the dirty set was taken: every write acknowledged before then is
//! in it, no write started after is.

mod seal;
mod state;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use coffer_crypto::chunk::ChunkKey;
use coffer_crypto::{SecretKey, open_chunk};
use coffer_meta::extents::overlay;
use coffer_meta::{Extent, Holder, Meta, MetaError, ObjectRef, SnapshotBy, SnapshotRow};
use coffer_store::{BufPool, ObjectStore, StoreError, chunk_key, object_key};
use coffer_types::Id;
use futures::StreamExt;

use state::{Dirty, SECTOR, Sec, Src, State};

/// The keys of a v2 object the chunk map names, from its DEK(s) (for
/// tools that open whole objects, such as `fsck`).
pub use seal::keys as object_keys;

/// Default chunk size: 256 KiB. Fixed per volume at creation.
pub const DEFAULT_CHUNK_SIZE: u32 = 256 * 1024;

/// Errors of volume I/O.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The object store failed.
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    /// The metadata store failed.
    #[error("metadata error: {0}")]
    Meta(#[from] MetaError),
    /// A stored chunk failed authentication: tampered, truncated or misplaced.
    #[error("chunk {chunk} of volume {volume} failed its integrity check: {reason}")]
    Integrity {
        /// Volume.
        volume: Id,
        /// Chunk index.
        chunk: u64,
        /// Why.
        reason: String,
    },
    /// Encryption failed.
    #[error("encryption error: {0}")]
    Crypto(#[from] coffer_crypto::CryptoError),
    /// A data key the volume needs cannot be had (its key is disabled,
    /// deleted or unreachable).
    #[error("data key {dek} is not usable: {reason}")]
    Key {
        /// The DEK.
        dek: Id,
        /// Why.
        reason: String,
    },
    /// A request beyond the end of the volume.
    #[error("range {offset}+{len} is outside the volume's {size} bytes")]
    OutOfRange {
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Volume size.
        size: u64,
    },
    /// The volume was closed (disk detached).
    #[error("volume is closed: the disk was detached")]
    Closed,
    /// This node no longer holds the disk's attachment (its lease passed,
    /// or another node took the disk over): the volume closed itself, and
    /// writes not yet flushed are dropped, as on a power cut.
    #[error("this node no longer holds the disk: {0}")]
    Fenced(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, VolumeError>;

/// Where an open volume gets the plaintext of the DEKs its view names
/// (its own write DEK, and those of the objects it reads from parents).
#[async_trait]
pub trait DekSource: Send + Sync + 'static {
    /// The DEK `id`, unwrapped; an error says why it cannot be had.
    async fn dek(&self, id: Id) -> std::result::Result<SecretKey, String>;

    /// A fresh write DEK for volume `volume` in place of `old` (one of its
    /// write DEKs, which has sealed its budget of objects): made and
    /// wrapped as `old` is, and recorded as the volume's (its id and
    /// plaintext returned). What was sealed under `old` stays readable
    /// under it. The default cannot make keys.
    async fn renew(&self, volume: Id, old: Id) -> std::result::Result<(Id, SecretKey), String> {
        let _ = (volume, old);
        Err("this key source cannot make data keys".into())
    }
}

/// A fixed set of DEKs (tests, tools).
pub struct StaticDeks(pub HashMap<Id, SecretKey>);

impl StaticDeks {
    /// One DEK.
    pub fn one(id: Id, key: SecretKey) -> Arc<Self> {
        Arc::new(Self([(id, key)].into()))
    }
}

#[async_trait]
impl DekSource for StaticDeks {
    async fn dek(&self, id: Id) -> std::result::Result<SecretKey, String> {
        self.0
            .get(&id)
            .cloned()
            .ok_or_else(|| "not among the keys given".to_string())
    }
}

/// A volume's write DEKs: layer 1's, and under double encryption layer
/// 2's (the outer, platform-wrapped one).
#[derive(Clone)]
struct WriteDeks {
    one: (Id, Arc<SecretKey>),
    two: Option<(Id, Arc<SecretKey>)>,
}

/// One ask of the key source for a DEK (see `Volume::dek_fetch`).
type DekFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::result::Result<Arc<SecretKey>, String>> + Send>,
>;
type DekAskWeak = futures::future::WeakShared<DekFuture>;

/// Tuning of an open volume.
#[derive(Debug, Clone)]
pub struct VolumeConfig {
    /// Write back in the background once this many dirty bytes are cached;
    /// writers wait (back-pressure) once twice this is unsealed (dirty, or
    /// being sealed by a write-back).
    pub dirty_high_water: usize,
    /// Objects put or fetched concurrently.
    pub io_parallelism: usize,
    /// Woken when a commit queues objects for deletion (the service's
    /// garbage collector listens).
    pub gc_notify: Option<Arc<tokio::sync::Notify>>,
    /// The memory every volume opened with (a clone of) this configuration
    /// shares: written data not yet sealed, and sealed objects being put.
    pub budget: Arc<MemoryBudget>,
    /// The pace of background compaction, shared by every volume opened
    /// with (a clone of) this configuration.
    pub compaction: Arc<Pace>,
    /// Objects a write DEK seals before the volume moves to a fresh one
    /// (default 2^32: each object's key is derived from the DEK and a
    /// random 128-bit object id, and 2^32 ids keep the chance of two
    /// colliding under one DEK below 2^-64; docs/SECURITY.md).
    pub dek_object_budget: u64,
    /// Pack whole chunks into segments, up to 16 chunks of 256 KiB an
    /// object, rather than one chunk object each. For writers that write
    /// whole chunks once and do not overwrite them one by one afterwards
    /// (a copy job's target, which becomes a snapshot): 16× fewer objects
    /// to put, list and delete (measured no faster on a local file system;
    /// docs/PERFORMANCE.md), while a packed segment stays stored as long
    /// as any chunk in it is live. Off for disks.
    pub pack_chunks: bool,
    /// Put and read objects with the store's streaming variants
    /// ([`ObjectStore::put_streaming`], [`ObjectStore::get_range_streaming`]):
    /// for a copy job's volumes, which write and read much data once, and
    /// should neither fill the page cache nor evict the live disks' cached
    /// data; the volume's own objects (which it put streaming) are read
    /// back with [`ObjectStore::get_range_uncached`]. Off for disks.
    pub streaming_io: bool,
    /// Buffers for large reads (the windows a copy reads, plaintext) and
    /// for sealed objects (ciphertext), reused rather than allocated fresh
    /// for each (see [`BufPool`]), shared by every volume opened with (a
    /// clone of) this configuration.
    pub buffers: Arc<BufPool>,
}

/// Idle buffers [`VolumeConfig::buffers`] keeps by default: a copy's
/// windows and sealed objects in flight at once, about.
pub const BUFFER_POOL: usize = 128 << 20;

/// Reads of at least this many bytes read into a pooled buffer.
const POOLED_READ: usize = 1 << 20;

impl Default for VolumeConfig {
    fn default() -> Self {
        Self {
            dirty_high_water: 64 << 20,
            io_parallelism: 16,
            gc_notify: None,
            budget: Arc::new(MemoryBudget::new(128 << 20, 16)),
            compaction: Arc::new(Pace::new(64 << 20)),
            pack_chunks: false,
            streaming_io: false,
            dek_object_budget: 1 << 32,
            buffers: BufPool::new(BUFFER_POOL, POOLED_READ),
        }
    }
}

/// A rate in bytes per second that background work of all the volumes of
/// a server shares (compaction: each chunk rewritten counts its size), so
/// it takes a bounded share of the CPU and the store away from the
/// clients' I/O however many chunks or disks are due. Work waits its turn:
/// the next start is at least `bytes / rate` after the last one. While
/// clients are busy (a read or write of any volume of the server within
/// the last [`Pace::BUSY_WINDOW`]) work yields to them: it runs at an
/// eighth of the rate, so it still progresses under constant load but
/// takes little from a client's reads (each chunk compaction rewrites
/// costs as many store reads as its live slots).
#[derive(Debug)]
pub struct Pace {
    bytes_per_second: f64,
    next: Mutex<tokio::time::Instant>,
    origin: tokio::time::Instant,
    /// Milliseconds from `origin` to the last client I/O, plus one (0:
    /// none yet).
    client: std::sync::atomic::AtomicU64,
}

impl Pace {
    /// How recent a client's I/O makes the pace yield.
    pub const BUSY_WINDOW: std::time::Duration = std::time::Duration::from_millis(100);

    /// A pace of `bytes_per_second` (at least 1 MiB/s).
    pub fn new(bytes_per_second: u64) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            bytes_per_second: bytes_per_second.max(1 << 20) as f64,
            next: Mutex::new(now),
            origin: now,
            client: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn since_origin_ms(&self, at: tokio::time::Instant) -> u64 {
        u64::try_from(at.duration_since(self.origin).as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Note a client's read or write (cheap: one clock read and one store).
    pub fn client_io(&self) {
        let ms = self.since_origin_ms(tokio::time::Instant::now());
        self.client.store(ms, Ordering::Relaxed);
    }

    /// Whether a client's I/O happened within [`Self::BUSY_WINDOW`] of `now`.
    fn clients_busy(&self, now: tokio::time::Instant) -> bool {
        let last = self.client.load(Ordering::Relaxed);
        let window = u64::try_from(Self::BUSY_WINDOW.as_millis()).unwrap_or(u64::MAX);
        last != 0 && self.since_origin_ms(now).saturating_sub(last) < window
    }

    /// Wait for the turn of `bytes` of work.
    pub async fn take(&self, bytes: usize) {
        let at = {
            let mut next = lock(&self.next);
            let now = tokio::time::Instant::now();
            let at = (*next).max(now);
            let rate = if self.clients_busy(now) {
                self.bytes_per_second / 8.0
            } else {
                self.bytes_per_second
            };
            *next = at + std::time::Duration::from_secs_f64(bytes as f64 / rate);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// A bound on the memory the open volumes of one server hold together,
/// whatever the number of busy disks: their written, not yet sealed data
/// (dirty and flushing sets) and the sealed objects being put. Each volume
/// writes back in the background once the total passes `high_water`, and
/// its writers wait for a write-back of their own at twice that (as at
/// twice a volume's own high-water mark). At most `puts` objects are sealed
/// and in flight at once across the server (a segment is up to 4 MiB).
#[derive(Debug)]
pub struct MemoryBudget {
    used: std::sync::atomic::AtomicUsize,
    high_water: usize,
    puts: tokio::sync::Semaphore,
}

impl MemoryBudget {
    /// A budget whose volumes write back past `high_water` bytes of
    /// unsealed data in total and put at most `puts` objects at once.
    pub fn new(high_water: usize, puts: usize) -> Self {
        Self {
            used: std::sync::atomic::AtomicUsize::new(0),
            high_water,
            puts: tokio::sync::Semaphore::new(puts.max(1)),
        }
    }

    /// Unsealed bytes held by all its volumes now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn over(&self, times: usize) -> bool {
        self.used() >= times * self.high_water
    }
}

/// A write-back also starts a commit, in the background, once this many
/// extents are pending.
const PENDING_COMMIT: usize = 16 * 1024;

/// While a commit runs, a write-back that leaves more extents than this
/// pending waits for it and commits them itself: back-pressure, so pending
/// extents (memory) and the next transaction stay bounded.
const PENDING_MAX: usize = 4 * PENDING_COMMIT;

/// A write-back also starts a commit once the objects put since the last
/// one hold this many bytes (4 KiB a slot). Overwrites of the same chunks
/// keep the pending extents few (each write-back's are laid over the
/// last's), so without this a disk rewritten sequentially and never
/// flushed committed nothing: every object it put stayed stored, the ones
/// superseded too, and none could be collected or its file reused until
/// the next flush (docs/PERFORMANCE.md, "Sequential writes and the
/// commit").
const PENDING_COMMIT_BYTES: u64 = 256 << 20;

/// The bytes counterpart of [`PENDING_MAX`]: past this, a write-back waits
/// for the running commit, so the store holds at most about this much
/// more than the disk's committed content.
const PENDING_MAX_BYTES: u64 = 4 * PENDING_COMMIT_BYTES;

/// A volume's share of the budget is counted only past this many dirty
/// bytes: a volume holding less is not made to write back for others.
const BUDGET_MIN_SHARE: usize = 1 << 20;

const STRIPES: usize = 64;

/// An open, writable volume (the head of a disk).
pub struct Volume {
    /// Itself, for the background tasks a commit starts.
    me: std::sync::Weak<Volume>,
    id: Id,
    meta: Meta,
    store: Arc<dyn ObjectStore>,
    deks: Arc<dyn DekSource>,
    dek_cache: Mutex<HashMap<Id, Arc<SecretKey>>>,
    /// The ask in flight for each DEK the cache lacks: the reads that miss
    /// it meanwhile wait for that ask and share its answer, failure
    /// included, rather than each asking the key source (a volume's first
    /// read starts dozens of fetches at once, and each ask is several
    /// metadata queries). Held weakly: an ask nobody waits for any more is
    /// dropped, never left holding what it had (a metadata connection).
    dek_fetch: Mutex<HashMap<Id, DekAskWeak>>,
    /// The DEK new objects are sealed under (layer 1), and under double
    /// encryption the outer layer's; each moves to a fresh DEK once it has
    /// sealed [`VolumeConfig::dek_object_budget`] objects.
    write_deks: Mutex<WriteDeks>,
    chunk_size: u32,
    size: u64,
    config: VolumeConfig,
    state: Mutex<State>,
    stripes: Vec<tokio::sync::Mutex<()>>,
    /// Held while sealing the dirty set (write-back), so one write-back
    /// runs at a time.
    flush_lock: Arc<tokio::sync::Mutex<()>>,
    /// Held while committing pending extents to the chunk map (and while
    /// a snapshot records the head), so commits apply in order. Taken
    /// after `flush_lock` when both are held; a background commit holds
    /// only this one, so writers keep sealing while it runs.
    commit_lock: Arc<tokio::sync::Mutex<()>>,
    closed: AtomicBool,
    holder: Option<Holder>,
    /// Held by whoever compacts (the background task or a caller of
    /// `compact_due`), so a caller waits for a running compaction.
    compact_lock: Arc<tokio::sync::Mutex<()>>,
    /// Chunks rewritten whole by compaction since open.
    compacted: AtomicU64,
    /// Segments emptied by cleaning since the volume was opened.
    cleaned: AtomicU64,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("id", &self.id)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Objects just put become pending: their extents laid over what is
/// pending already (so a chunk's pending extents stay one per run of
/// sectors however many write-backs come before a commit), and the objects
/// uncommitted, in one step under the state's lock.
fn add_pending(st: &mut State, extents: Vec<(u64, Extent)>, objects: Vec<Arc<ObjectRef>>) {
    for (idx, es) in seal::by_chunk(extents) {
        let stack = st.pending.entry(idx).or_default();
        for e in es {
            overlay(stack, e);
        }
    }
    st.uncommitted.extend(objects);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One fetch of a read: a run of slots of one object, or a v1 chunk.
enum Fetch {
    Slots {
        obj: Arc<ObjectRef>,
        first_slot: u32,
        n: u32,
        /// Absolute sector of the first slot.
        abs: u64,
    },
    V1 {
        dek: Id,
        counter: u64,
        chunk: u64,
        /// Absolute sectors wanted from it.
        sectors: Vec<u64>,
    },
}

/// What a fetch brought back.
enum Fetched {
    /// A run of slots, still sealed, opened straight into the reader's
    /// buffer (`Volume::place`): the keys of their object, its stored bytes,
    /// and the fetch's first slot, slot count and absolute sector.
    Sealed {
        keys: coffer_crypto::object::ObjectKeys,
        raw: Bytes,
        first_slot: u32,
        n: u32,
        abs: u64,
    },
    /// Plaintext sectors (a v1 chunk, opened whole): `(absolute sector,
    /// plaintext)`.
    Plain(Vec<(u64, Bytes)>),
}

impl Volume {
    /// Open the head of volume `id` for I/O, taking the DEKs its view
    /// names from `deks` (its write DEK at once). With `holder`, every
    /// commit and snapshot checks that it still holds the disk's
    /// attachment, and the volume closes itself ([`VolumeError::Fenced`])
    /// once it does not; without, the caller guarantees it is the only
    /// writer.
    pub async fn open(
        meta: Meta,
        store: Arc<dyn ObjectStore>,
        id: Id,
        deks: Arc<dyn DekSource>,
        config: VolumeConfig,
        holder: Option<Holder>,
    ) -> Result<Arc<Self>> {
        // A locking read: a snapshot being recorded right now finishes
        // first, so this head is current.
        let row = meta.volume_for_open(id).await?;
        let map = meta.resolve_view(id, row.head_generation).await?;
        let write = deks
            .dek(row.dek_id)
            .await
            .map_err(|reason| VolumeError::Key {
                dek: row.dek_id,
                reason,
            })?;
        let write = Arc::new(write);
        let write2 = match row.dek2_id {
            Some(id) => Some((
                id,
                Arc::new(
                    deks.dek(id)
                        .await
                        .map_err(|reason| VolumeError::Key { dek: id, reason })?,
                ),
            )),
            None => None,
        };
        let mut cache: HashMap<Id, Arc<SecretKey>> = [(row.dek_id, Arc::clone(&write))].into();
        if let Some((id, k)) = &write2 {
            cache.insert(*id, Arc::clone(k));
        }
        Ok(Arc::new_cyclic(|me| Self {
            me: me.clone(),
            id,
            meta,
            store,
            deks,
            dek_cache: Mutex::new(cache),
            dek_fetch: Mutex::new(HashMap::new()),
            write_deks: Mutex::new(WriteDeks {
                one: (row.dek_id, write),
                two: write2,
            }),
            chunk_size: row.chunk_size,
            size: row.size,
            config,
            state: Mutex::new(State::new(row.head_generation, map)),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            flush_lock: Arc::new(tokio::sync::Mutex::new(())),
            commit_lock: Arc::new(tokio::sync::Mutex::new(())),
            closed: AtomicBool::new(false),
            holder,
            compact_lock: Arc::new(tokio::sync::Mutex::new(())),
            compacted: AtomicU64::new(0),
            cleaned: AtomicU64::new(0),
        }))
    }

    /// Volume id.
    pub fn id(&self) -> Id {
        self.id
    }

    /// The hold this volume writes under, if any.
    pub fn holder(&self) -> Option<Holder> {
        self.holder
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Chunk size in bytes.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Bring this volume's charge to the shared budget up to date with its
    /// dirty and flushing sets (call after changing either).
    fn settle(&self, st: &mut State) {
        let now = st.dirty_bytes + st.flushing_bytes;
        let b = &self.config.budget.used;
        if now > st.charged {
            b.fetch_add(now - st.charged, Ordering::Relaxed);
        } else {
            b.fetch_sub(st.charged - now, Ordering::Relaxed);
        }
        st.charged = now;
    }

    /// Whether this volume should write back for the shared budget's sake
    /// (past `times` its high-water mark, and holding a share worth it).
    fn over_budget(&self, times: usize) -> bool {
        self.config.budget.over(times) && self.dirty_bytes() >= BUDGET_MIN_SHARE
    }

    /// Bytes written but not yet written back.
    pub fn dirty_bytes(&self) -> usize {
        lock(&self.state).dirty_bytes
    }

    /// Bytes written and not yet sealed: dirty, and being sealed.
    fn unsealed_bytes(&self) -> usize {
        let st = lock(&self.state);
        st.dirty_bytes + st.flushing_bytes
    }

    fn cs(&self) -> u64 {
        u64::from(self.chunk_size)
    }

    /// Sectors per chunk.
    fn spc(&self) -> u32 {
        (self.chunk_size / 4096).max(1)
    }

    fn check(&self, offset: u64, len: u64) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(VolumeError::Closed);
        }
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(VolumeError::OutOfRange {
                offset,
                len,
                size: self.size,
            }),
        }
    }

    /// The chunk pieces of a byte range: (chunk index, offset in chunk, length, offset in range).
    fn pieces(&self, offset: u64, len: u64) -> Vec<(u64, usize, usize, usize)> {
        let cs = self.cs();
        let mut out = Vec::new();
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let idx = pos / cs;
            let in_chunk = pos % cs;
            let n = (cs - in_chunk).min(end - pos);
            // All three fit in usize: chunk sizes are u32 and ranges are request-sized.
            out.push((idx, to_usize(in_chunk), to_usize(n), to_usize(pos - offset)));
            pos += n;
        }
        out
    }

    async fn dek(&self, id: Id) -> Result<Arc<SecretKey>> {
        if let Some(k) = lock(&self.dek_cache).get(&id) {
            return Ok(Arc::clone(k));
        }
        let ask = {
            let mut asks = lock(&self.dek_fetch);
            match asks.get(&id).and_then(futures::future::WeakShared::upgrade) {
                Some(ask) => ask,
                None => {
                    let deks = Arc::clone(&self.deks);
                    let ask = futures::FutureExt::shared(Box::pin(async move {
                        deks.dek(id).await.map(Arc::new)
                    }) as DekFuture);
                    if let Some(weak) = ask.downgrade() {
                        asks.insert(id, weak);
                    }
                    ask
                }
            }
        };
        let answer = ask.await;
        // Answered: a later miss (after a failure) asks again.
        lock(&self.dek_fetch).retain(|_, w| w.upgrade().is_some_and(|a| a.peek().is_none()));
        let k = answer.map_err(|reason| VolumeError::Key { dek: id, reason })?;
        lock(&self.dek_cache).insert(id, Arc::clone(&k));
        Ok(k)
    }

    fn integrity(&self, chunk: u64, e: impl std::fmt::Display) -> VolumeError {
        VolumeError::Integrity {
            volume: self.id,
            chunk,
            reason: e.to_string(),
        }
    }

    /// Run one fetch: the sealed slots it read, or a v1 chunk's plaintext
    /// sectors. A missing or malformed object is an integrity error of the
    /// chunk it holds.
    async fn fetch(&self, f: &Fetch) -> Result<Fetched> {
        let chunk = match f {
            Fetch::Slots { abs, .. } => abs / u64::from(self.spc()),
            Fetch::V1 { chunk, .. } => *chunk,
        };
        self.fetch_inner(f).await.map_err(|e| match e {
            VolumeError::Store(StoreError::NotFound(_)) => {
                self.integrity(chunk, "its object is missing from the store")
            }
            VolumeError::Crypto(c) => self.integrity(chunk, c),
            other => other,
        })
    }

    async fn fetch_inner(&self, f: &Fetch) -> Result<Fetched> {
        let spc = u64::from(self.spc());
        match f {
            Fetch::Slots {
                obj,
                first_slot,
                n,
                abs,
            } => {
                let dek = self.dek(obj.dek).await?;
                let dek2 = match obj.dek2 {
                    Some(d) => Some(self.dek(d).await?),
                    None => None,
                };
                let keys = seal::keys(obj, &dek, dek2.as_deref())?;
                let h = keys.header();
                let range = h.slot_offset(*first_slot)..h.slot_offset(first_slot + n);
                let key = object_key(obj.writer.value(), &obj.id);
                // A streaming volume's own objects were put streaming (it is
                // a copy's target, reading its copy back): not cached.
                let raw = match (self.config.streaming_io, obj.writer == self.id) {
                    (true, true) => self.store.get_range_uncached(&key, range).await?,
                    (true, false) => self.store.get_range_streaming(&key, range).await?,
                    (false, _) => self.store.get_range(&key, range).await?,
                };
                Ok(Fetched::Sealed {
                    keys,
                    raw,
                    first_slot: *first_slot,
                    n: *n,
                    abs: *abs,
                })
            }
            Fetch::V1 {
                dek,
                counter,
                chunk,
                sectors,
            } => {
                let secret = self.dek(*dek).await?;
                let key = ChunkKey::new(dek.value(), &secret)?;
                let obj = self.store.get(&chunk_key(dek.value(), *counter)).await?;
                let plain = open_chunk(&key, *counter, *chunk, obj)
                    .map_err(|e| self.integrity(*chunk, e))?;
                if plain.len() != self.chunk_size as usize {
                    return Err(self.integrity(*chunk, "v1 chunk of the wrong size"));
                }
                Ok(Fetched::Plain(
                    sectors
                        .iter()
                        .map(|abs| {
                            let at = to_usize(abs % spc) * SECTOR;
                            (*abs, plain.slice(at..at + SECTOR))
                        })
                        .collect(),
                ))
            }
        }
    }

    /// Open what `fetched` brought into `out`, which holds the bytes from
    /// `offset` on: sealed slots straight from the stored bytes into
    /// their place (a slot only partly inside `out` through a sector of
    /// its own), plaintext sectors by a copy.
    fn place(&self, out: &mut [u8], offset: u64, fetched: Fetched) -> Result<()> {
        let (keys, raw, first_slot, n, abs) = match fetched {
            Fetched::Plain(sectors) => {
                for (abs, b) in sectors {
                    copy_sector(out, offset, abs, &b);
                }
                return Ok(());
            }
            Fetched::Sealed {
                keys,
                raw,
                first_slot,
                n,
                abs,
            } => (keys, raw, first_slot, n, abs),
        };
        let spc = u64::from(self.spc());
        let chunk = abs / spc;
        let slot_len = keys.header().slot_len();
        if raw.len() != slot_len * n as usize {
            return Err(self.integrity(
                chunk,
                "object is shorter than the chunk map says: truncated",
            ));
        }
        let end = offset + out.len() as u64;
        for (i, sealed) in (0..n).zip(raw.chunks_exact(slot_len)) {
            let a = abs + u64::from(i);
            let target = coffer_crypto::object::Target {
                chunk,
                sector: seal::sector16(in_chunk(a, spc)),
            };
            let start = a * SECTOR as u64;
            let opened = if start >= offset && start + SECTOR as u64 <= end {
                let at = to_usize(start - offset);
                keys.open_slot_into(first_slot + i, target, sealed, &mut out[at..at + SECTOR])
            } else {
                let mut sector = [0u8; SECTOR];
                let r = keys.open_slot_into(first_slot + i, target, sealed, &mut sector);
                if r.is_ok() {
                    copy_sector(out, offset, a, &sector);
                }
                r
            };
            opened.map_err(|e| self.integrity(chunk, e))?;
        }
        Ok(())
    }

    /// The sources of absolute sectors `[first, end)`.
    fn sources(&self, first: u64, end: u64) -> Vec<Src> {
        let spc = u64::from(self.spc());
        let st = lock(&self.state);
        (first..end)
            .map(|abs| st.source(abs / spc, in_chunk(abs, spc)))
            .collect()
    }

    /// Read `len` bytes at `offset` (in range) from the current content
    /// into a new buffer.
    async fn read_inner(&self, offset: u64, len: usize) -> Result<BytesMut> {
        let mut out = BytesMut::zeroed(len);
        self.read_into(offset, &mut out).await?;
        Ok(out)
    }

    /// Read `out.len()` bytes at `offset` (in range) from the current
    /// content into `out`, writing every byte of it (zeroes where the disk
    /// reads as zeroes): what it held before never shows. Retries when an
    /// object it resolved to was replaced and collected meanwhile.
    async fn read_into(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        let len = out.len();
        let sec = SECTOR as u64;
        let first = offset / sec;
        let end = (offset + len as u64).div_ceil(sec);
        let spc = u64::from(self.spc());
        let mut attempts = 0;
        'again: loop {
            let srcs = self.sources(first, end);
            let mut fetches: Vec<Fetch> = Vec::new();
            let mut v1: HashMap<(Id, u64, u64), Vec<u64>> = HashMap::new();
            for (i, src) in srcs.iter().enumerate() {
                let abs = first + i as u64;
                match src {
                    Src::Zero => copy_sector(out, offset, abs, &ZERO_SECTOR),
                    Src::Mem(b) => copy_sector(out, offset, abs, b),
                    Src::V1 { dek, counter } => {
                        v1.entry((*dek, *counter, abs / spc)).or_default().push(abs);
                    }
                    Src::Obj { obj, slot } => {
                        if let Some(Fetch::Slots {
                            obj: o,
                            first_slot,
                            n,
                            abs: a,
                        }) = fetches.last_mut()
                            && o.id == obj.id
                            && *first_slot + *n == *slot
                            && *a + u64::from(*n) == abs
                            && !abs.is_multiple_of(spc)
                        {
                            *n += 1;
                            continue;
                        }
                        fetches.push(Fetch::Slots {
                            obj: Arc::clone(obj),
                            first_slot: *slot,
                            n: 1,
                            abs,
                        });
                    }
                }
            }
            fetches.extend(
                v1.into_iter()
                    .map(|((dek, counter, chunk), sectors)| Fetch::V1 {
                        dek,
                        counter,
                        chunk,
                        sectors,
                    }),
            );
            let futs: Vec<_> = fetches.iter().map(|f| self.fetch(f)).collect();
            let mut results =
                futures::stream::iter(futs).buffer_unordered(self.config.io_parallelism);
            while let Some(r) = results.next().await {
                match r.and_then(|fetched| self.place(out, offset, fetched)) {
                    Ok(()) => {}
                    Err(e) => {
                        // If the content moved meanwhile (rewritten, its old
                        // object collected), read the new content instead.
                        let now = self.sources(first, end);
                        let moved = now.iter().zip(&srcs).any(|(a, b)| !a.same(b));
                        if moved && attempts < 3 {
                            attempts += 1;
                            continue 'again;
                        }
                        return Err(e);
                    }
                }
            }
            return Ok(());
        }
    }

    /// How `len` bytes at `offset` are allocated, as consecutive runs of
    /// `(length, hole)`: a hole is a chunk that reads as zeroes without an
    /// object (never written, trimmed, or written as zeroes). Answered
    /// from memory: no object is read.
    ///
    /// # Errors
    /// Out of range, or the volume is closed.
    pub fn allocation(&self, offset: u64, len: u64) -> Result<Vec<(u64, bool)>> {
        self.check(offset, len)?;
        let pieces = self.pieces(offset, len);
        let spc = self.spc();
        let st = lock(&self.state);
        let mut out: Vec<(u64, bool)> = Vec::new();
        for (idx, _, n, _) in pieces {
            let hole = st.is_hole(idx, spc);
            match out.last_mut() {
                Some((l, h)) if *h == hole => *l += n as u64,
                _ => out.push((n as u64, hole)),
            }
        }
        Ok(out)
    }

    /// Read `len` bytes at `offset`.
    ///
    /// A large read reads into a buffer of [`VolumeConfig::buffers`], which
    /// goes back to the pool once every `Bytes` of it is dropped.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Bytes> {
        self.check(offset, len)?;
        self.config.compaction.client_io();
        let n = to_usize(len);
        if n < POOLED_READ {
            return Ok(self.read_inner(offset, n).await?.freeze());
        }
        let pool = &self.config.buffers;
        let mut buf = pool.take(n);
        match self.read_into(offset, &mut buf[..n]).await {
            Ok(()) => Ok(pool.bytes(buf, 0, n)),
            Err(e) => {
                pool.give(buf);
                Err(e)
            }
        }
    }

    async fn lock_stripes(
        &self,
        pieces: &[(u64, usize, usize, usize)],
    ) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut s: Vec<usize> = pieces
            .iter()
            .map(|p| to_usize(p.0 % STRIPES as u64))
            .collect();
        s.sort_unstable();
        s.dedup();
        let mut guards = Vec::with_capacity(s.len());
        for i in s {
            guards.push(self.stripes[i].lock().await);
        }
        guards
    }

    /// Put a request's new content in the dirty set, all under one lock: a
    /// write-back (and so a snapshot) takes all of a request or none of it.
    fn put_dirty(&self, changes: Vec<(u64, Dirty)>) {
        let spc = self.spc();
        let mut st = lock(&self.state);
        for (idx, new) in changes {
            let merged = match st.dirty.remove(&idx) {
                Some(old) => {
                    st.dirty_bytes -= old.bytes();
                    old.then(new, spc)
                }
                None => new,
            };
            st.dirty_bytes += merged.bytes();
            st.dirty.insert(idx, merged);
        }
        self.settle(&mut st);
    }

    /// The new content of each chunk `pieces` (of a request, as
    /// [`Volume::pieces`] cuts it) touch, for writing `data` (zeroes for
    /// `None`); a chunk the request leaves as it is has none.
    async fn chunk_changes(
        &self,
        pieces: &[(u64, usize, usize, usize)],
        data: Option<&Bytes>,
    ) -> Result<Vec<(u64, Dirty)>> {
        let mut changes = Vec::with_capacity(pieces.len());
        for &(idx, in_chunk, n, at) in pieces {
            let piece = data.map(|d| d.slice(at..at + n));
            if let Some(c) = self.chunk_change(idx, in_chunk, n, piece).await? {
                changes.push((idx, c));
            }
        }
        Ok(changes)
    }

    /// New content of one chunk for a write or zeroing of `n` bytes at
    /// `in_chunk`; `data` is `None` for zeroes. Partial sectors are
    /// completed from the current content; a v1 chunk is rewritten whole.
    async fn chunk_change(
        &self,
        idx: u64,
        in_chunk: usize,
        n: usize,
        data: Option<Bytes>,
    ) -> Result<Option<Dirty>> {
        let cs = to_usize(self.cs());
        if n == cs {
            return Ok(Some(data.map_or(Dirty::Zero, Dirty::Whole)));
        }
        let base = idx * self.cs();
        let (hole, v1) = {
            let st = lock(&self.state);
            (st.is_hole(idx, self.spc()), st.has_v1(idx))
        };
        if data.is_none() && hole {
            return Ok(None);
        }
        if v1 {
            let mut buf = self.read_inner(base, cs).await?;
            match &data {
                Some(d) => buf[in_chunk..in_chunk + n].copy_from_slice(d),
                None => buf[in_chunk..in_chunk + n].fill(0),
            }
            return Ok(Some(Dirty::Whole(buf.freeze())));
        }
        let mut m = std::collections::BTreeMap::new();
        let first = in_chunk / SECTOR;
        let end = (in_chunk + n).div_ceil(SECTOR);
        for s in first..end {
            let (a, b) = (s * SECTOR, (s + 1) * SECTOR);
            let (lo, hi) = (a.max(in_chunk), b.min(in_chunk + n));
            let sec = if lo == a && hi == b {
                match &data {
                    Some(d) => Sec::Data(d.slice(lo - in_chunk..hi - in_chunk)),
                    None => Sec::Zero,
                }
            } else {
                let mut cur = self.read_inner(base + a as u64, SECTOR).await?;
                match &data {
                    Some(d) => {
                        cur[lo - a..hi - a].copy_from_slice(&d[lo - in_chunk..hi - in_chunk])
                    }
                    None => cur[lo - a..hi - a].fill(0),
                }
                Sec::Data(cur.freeze())
            };
            m.insert(u32::try_from(s).expect("sectors a chunk fit u32"), sec);
        }
        Ok(Some(Dirty::Sectors(m)))
    }

    /// Write `data` at `offset`; with `fua`, durable on return.
    pub async fn write(self: &Arc<Self>, offset: u64, data: Bytes, fua: bool) -> Result<()> {
        self.write_or_zero(offset, data.len() as u64, Some(data), fua)
            .await
    }

    /// Make `len` bytes at `offset` read as zeroes; whole sectors and
    /// chunks become zero extents and cost no storage.
    pub async fn write_zeroes(self: &Arc<Self>, offset: u64, len: u64, fua: bool) -> Result<()> {
        self.write_or_zero(offset, len, None, fua).await
    }

    /// Write `data` at `offset` through to the store, past the write-back
    /// cache: its chunks are sealed and put now, and on return they read
    /// from the store (pending, as after a write-back) and are made durable
    /// by the next [`Volume::flush`]. For a writer that writes each chunk
    /// once and reads it back as it goes, such as a copy's target: writes
    /// of different chunks may run at once, each putting its own objects,
    /// with no batch of the write-back cache to wait for. A chunk that is
    /// in the write-back cache (written with [`Volume::write`] and not
    /// flushed) must not be written this way.
    pub async fn write_through(self: &Arc<Self>, offset: u64, data: Bytes) -> Result<()> {
        self.check(offset, data.len() as u64)?;
        let pieces = self.pieces(offset, data.len() as u64);
        let _g = self.lock_stripes(&pieces).await;
        let changes = self.chunk_changes(&pieces, Some(&data)).await?;
        debug_assert!({
            let st = lock(&self.state);
            changes
                .iter()
                .all(|(i, _)| !st.dirty.contains_key(i) && !st.flushing.contains_key(i))
        });
        let (extents, objects) = self.seal_and_put(changes).await?;
        add_pending(&mut lock(&self.state), extents, objects);
        Ok(())
    }

    async fn write_or_zero(
        self: &Arc<Self>,
        offset: u64,
        len: u64,
        data: Option<Bytes>,
        fua: bool,
    ) -> Result<()> {
        self.check(offset, len)?;
        self.config.compaction.client_io();
        self.make_room().await?;
        let pieces = self.pieces(offset, len);
        {
            let _g = self.lock_stripes(&pieces).await;
            // Build every chunk of the request first (partial ones may read,
            // which may wait on the store), then apply them at once: a
            // snapshot never sees half a request, and a request that fails
            // changes nothing.
            let changes = self.chunk_changes(&pieces, data.as_ref()).await?;
            self.put_dirty(changes);
        }
        self.after_write(fua).await
    }

    /// Back-pressure, before a write changes anything: once the unsealed
    /// data (dirty plus what a write-back is sealing) reaches twice the
    /// high-water mark, write back first. Counting the sealing data too
    /// keeps a volume's unsealed data within twice the mark: writers that
    /// outrun a write-back wait for it rather than fill a second dirty set
    /// as large beside it. If the write-back fails the write is refused
    /// and changes nothing, so the cache never grows without bound while
    /// the store is down.
    async fn make_room(&self) -> Result<()> {
        let over =
            || self.unsealed_bytes() >= 2 * self.config.dirty_high_water || self.over_budget(2);
        if over() {
            let _g = self.flush_lock.lock().await;
            // The write-back waited for may have made room, or failed and
            // put its data back in the dirty set (then nothing is being
            // sealed): write back only if still over.
            if over() {
                self.writeback_locked().await?;
            }
        }
        Ok(())
    }

    async fn after_write(self: &Arc<Self>, fua: bool) -> Result<()> {
        self.kick_compaction();
        if fua {
            return self.flush().await;
        }
        if (self.dirty_bytes() >= self.config.dirty_high_water || self.over_budget(1))
            && let Ok(g) = Arc::clone(&self.flush_lock).try_lock_owned()
        {
            let me = Arc::clone(self);
            tokio::spawn(async move {
                let _g = g;
                if let Err(e) = me.writeback_locked().await {
                    tracing::warn!(volume = %me.id, error = %e, "background write-back failed; data stays cached and the next flush retries");
                }
            });
        }
        Ok(())
    }

    /// Make every acknowledged write durable.
    pub async fn flush(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(VolumeError::Closed);
        }
        let _g = self.flush_lock.lock().await;
        self.writeback_durable().await.map(drop)
    }

    /// Close at once, without writing anything back: this node may no
    /// longer write the disk. Unflushed writes are dropped; open calls fail
    /// with [`VolumeError::Closed`].
    pub fn fence(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            tracing::warn!(volume = %self.id, "volume fenced: this node no longer holds the disk; unflushed writes are dropped");
        }
    }

    /// Pass a metadata result through, fencing the volume if the metadata
    /// store says this node no longer holds the disk.
    fn fenced<T>(&self, r: std::result::Result<T, MetaError>) -> Result<T> {
        match r {
            Err(MetaError::Fenced(m)) => {
                self.fence();
                Err(VolumeError::Fenced(m))
            }
            other => Ok(other?),
        }
    }

    /// Write back the dirty set (not durable yet). Caller holds
    /// `flush_lock`.
    ///
    /// Also commits, unasked, once many extents are pending: a long run of
    /// small writes without a flush then commits in bounded transactions
    /// (each one short, so other disks' commits and this node's lease
    /// renewal are not held up behind one huge one, and the pending extents
    /// stay bounded in memory). That commit runs in the background, holding
    /// only `commit_lock`, so writers go on writing back meanwhile; only
    /// past [`PENDING_MAX`] does a write-back wait for it. Each commit takes
    /// the pending extents whole, so what commits is the disk as of one
    /// instant.
    async fn writeback_locked(&self) -> Result<()> {
        self.seal_dirty().await?;
        let pending = self.pending_extents();
        let put = self.uncommitted_bytes();
        if pending < PENDING_COMMIT && put < PENDING_COMMIT_BYTES {
            return Ok(());
        }
        match (
            Arc::clone(&self.commit_lock).try_lock_owned(),
            self.me.upgrade(),
        ) {
            (Ok(g), Some(me)) => {
                tokio::spawn(async move {
                    if let Err(e) = me.commit_pending().await {
                        tracing::warn!(volume = %me.id, error = %e, "background commit failed; its extents stay pending and the next flush retries");
                    }
                    drop(g);
                });
            }
            (Ok(_g), None) => self.commit_pending().await?,
            (Err(_), _) if pending >= PENDING_MAX || put >= PENDING_MAX_BYTES => {
                let _c = self.commit_lock.lock().await;
                self.commit_pending().await?;
            }
            (Err(_), _) => {}
        }
        Ok(())
    }

    /// Write back the dirty set and make everything written back so far
    /// durable and committed to the chunk map. Caller holds `flush_lock`;
    /// returns holding `commit_lock`, so no commit runs until the caller
    /// drops it.
    async fn writeback_durable(&self) -> Result<tokio::sync::MutexGuard<'_, ()>> {
        self.seal_dirty().await?;
        let c = self.commit_lock.lock().await;
        self.commit_pending().await?;
        Ok(c)
    }

    fn pending_extents(&self) -> usize {
        lock(&self.state).pending.values().map(Vec::len).sum()
    }

    /// Bytes of the objects put since the last commit began.
    fn uncommitted_bytes(&self) -> u64 {
        let st = lock(&self.state);
        st.uncommitted
            .iter()
            .map(|o| u64::from(o.slots) * SECTOR as u64)
            .sum()
    }

    /// Phase 1: seal the dirty set and put its objects (not yet durable,
    /// not yet in the chunk map); their extents become *pending*, which
    /// reads use. On failure the data goes back to the dirty set.
    async fn seal_dirty(&self) -> Result<()> {
        let entries: Vec<(u64, Dirty)> = {
            let mut st = lock(&self.state);
            if st.dirty.is_empty() {
                return Ok(());
            }
            debug_assert!(st.flushing.is_empty());
            let taken = std::mem::take(&mut st.dirty);
            st.flushing_bytes = st.dirty_bytes;
            st.dirty_bytes = 0;
            let entries = taken.iter().map(|(k, v)| (*k, v.clone())).collect();
            st.flushing = taken;
            entries
        };
        let t0 = std::time::Instant::now();
        let n = entries.len();
        let res = self.seal_and_put(entries).await;
        tracing::debug!(volume = %self.id, chunks = n, elapsed = ?t0.elapsed(), "sealed and put");
        let spc = self.spc();
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        match res {
            Ok((extents, objects)) => {
                add_pending(st, extents, objects);
                st.flushing.clear();
                st.flushing_bytes = 0;
                self.settle(st);
                Ok(())
            }
            Err(e) => {
                // Nothing of this batch is pending: put the data back under
                // what was written since, so no acknowledged write is lost;
                // a later flush retries.
                for (idx, old) in std::mem::take(&mut st.flushing) {
                    let merged = match st.dirty.remove(&idx) {
                        Some(newer) => {
                            st.dirty_bytes -= newer.bytes();
                            old.then(newer, spc)
                        }
                        None => old,
                    };
                    st.dirty_bytes += merged.bytes();
                    st.dirty.insert(idx, merged);
                }
                st.flushing_bytes = 0;
                self.settle(st);
                Err(e)
            }
        }
    }

    /// Seal and put `entries`; returns their extents and the objects put.
    async fn seal_and_put(
        &self,
        entries: Vec<(u64, Dirty)>,
    ) -> Result<(Vec<(u64, Extent)>, Vec<Arc<ObjectRef>>)> {
        let serial = coffer_meta::now_ms().unsigned_abs();
        let plan = seal::plan(entries, self.spc(), serial, self.config.pack_chunks);
        let mut extents = plan.zeroes;
        let mut objects = Vec::with_capacity(plan.objects.len());
        let futs: Vec<_> = plan.objects.iter().map(|p| self.put_object(p)).collect();
        let puts = futures::stream::iter(futs).buffer_unordered(self.config.io_parallelism);
        // Stop at the first failure (dropping the puts still in flight)
        // rather than wait for every object to exhaust its retries: the
        // caller keeps the data cached and a later flush retries. Objects
        // already put are garbage for the orphan sweep.
        futures::pin_mut!(puts);
        while let Some(r) = puts.next().await {
            let (es, obj) = r?;
            extents.extend(es);
            objects.push(obj);
        }
        Ok((extents, objects))
    }

    /// Seal and put one object; returns its extents and reference.
    async fn put_object(
        &self,
        p: &seal::ObjectPlan,
    ) -> Result<(Vec<(u64, Extent)>, Arc<ObjectRef>)> {
        // Sealed bytes in flight count against the server's budget.
        let _permit = self
            .config
            .budget
            .puts
            .acquire()
            .await
            .expect("the budget's semaphore is never closed");
        let mut tries = 0;
        let deks = lock(&self.write_deks).clone();
        loop {
            let (obj, bytes) = seal::seal(
                p,
                self.id,
                (deks.one.0, &deks.one.1),
                deks.two.as_ref().map(|(id, k)| (*id, &**k)),
                &self.config.buffers,
            )?;
            let key = object_key(self.id.value(), &obj.id);
            let put = if self.config.streaming_io {
                self.store.put_streaming(&key, bytes).await
            } else {
                self.store.put(&key, bytes).await
            };
            match put {
                // A 128-bit collision with a stored object: draw again.
                Err(StoreError::AlreadyExists(_)) if tries < 3 => tries += 1,
                Err(e) => return Err(e.into()),
                Ok(()) => return Ok((seal::extents_of(p, &obj), obj)),
            }
        }
    }

    /// Phase 2: `sync` the store, then commit every pending extent to the
    /// chunk map in one transaction. They are *committing* meanwhile (reads
    /// use them, new write-backs pend above them); on failure they go back
    /// to pending and the next flush retries. Caller holds `commit_lock`.
    async fn commit_pending(&self) -> Result<()> {
        let (changes, head) = {
            let mut st = lock(&self.state);
            if st.pending.is_empty() {
                return Ok(());
            }
            (st.take_pending(), st.head)
        };
        // Until the map has them, a failure or a cancelled caller (a
        // snapshot request whose client went away) puts them back.
        let mut undo = RestoreOnDrop(Some(self));
        let t0 = std::time::Instant::now();
        let mut t1 = t0;
        let res = async {
            self.store.sync().await?;
            t1 = std::time::Instant::now();
            self.fenced(
                self.meta
                    .commit_extents(self.id, head, self.holder.as_ref(), &changes)
                    .await,
            )
        }
        .await;
        let stats = res?;
        self.renew_spent_deks(&stats.sealed).await;
        if stats.queued_for_gc > 0
            && let Some(n) = &self.config.gc_notify
        {
            n.notify_one();
        }
        tracing::debug!(volume = %self.id, chunks = changes.len(), sync = ?(t1 - t0), commit = ?t1.elapsed(), "committed");
        let discard: Vec<Arc<ObjectRef>> = {
            let mut guard = lock(&self.state);
            let st = &mut *guard;
            st.commit_tracking(&changes, self.id);
            st.committing.clear();
            undo.0 = None;
            for (idx, _) in &changes {
                if self.wants_compaction(st, *idx) {
                    st.compact.insert(*idx);
                }
            }
            let named: HashSet<[u8; 16]> = changes
                .iter()
                .filter_map(|(idx, _)| st.map.get(idx))
                .flatten()
                .filter_map(|e| match &e.loc {
                    coffer_meta::Loc::Obj { obj, .. } => Some(obj.id),
                    _ => None,
                })
                .collect();
            std::mem::take(&mut st.committing_objects)
                .into_iter()
                .filter(|o| !named.contains(&o.id))
                .collect()
        };
        self.kick_compaction();
        if !discard.is_empty() {
            // Superseded before they were ever committed: no view can see
            // them.
            let keys: Vec<String> = discard
                .iter()
                .map(|o| object_key(o.writer.value(), &o.id))
                .collect();
            if let Err(e) = self.store.delete_many(&keys).await {
                tracing::warn!(volume = %self.id, error = %e, "could not delete superseded objects; the orphan sweep will");
            }
        }
        Ok(())
    }

    /// Move each write DEK that has sealed its budget of objects (`sealed`:
    /// totals a commit returned) to a fresh one, without stopping I/O:
    /// write-backs from now on seal under the new DEK, what was sealed
    /// stays readable under the old. A failure is logged and retried after
    /// the next commit (the budget is far below the bound it keeps).
    async fn renew_spent_deks(&self, sealed: &[(Id, u64)]) {
        for &(dek, total) in sealed {
            if total < self.config.dek_object_budget {
                continue;
            }
            let current = {
                let w = lock(&self.write_deks);
                w.one.0 == dek || w.two.as_ref().is_some_and(|(id, _)| *id == dek)
            };
            if !current {
                continue;
            }
            match self.deks.renew(self.id, dek).await {
                Ok((id, key)) => {
                    let key = Arc::new(key);
                    lock(&self.dek_cache).insert(id, Arc::clone(&key));
                    let mut w = lock(&self.write_deks);
                    if w.one.0 == dek {
                        w.one = (id, key);
                    } else if let Some(two) = &mut w.two
                        && two.0 == dek
                    {
                        *two = (id, key);
                    }
                    tracing::info!(volume = %self.id, old = %dek, new = %id, objects = total, "write DEK renewed: the old one sealed its budget of objects");
                }
                Err(e) => {
                    tracing::warn!(volume = %self.id, dek = %dek, objects = total, error = %e, "could not move to a fresh write DEK; retried after the next commit");
                }
            }
        }
    }

    /// Whether chunk `idx` is due for compaction: whole (not the short last
    /// chunk of a disk), nothing newer in memory, and at least half its
    /// sectors in segments.
    fn wants_compaction(&self, st: &State, idx: u64) -> bool {
        let spc = self.spc();
        spc >= 2
            && (idx + 1) * self.cs() <= self.size
            && st
                .segment_sectors(idx, spc)
                .is_some_and(|n| n > 0 && 2 * n >= spc)
    }

    /// Start the background compaction task if chunks are due and none
    /// runs.
    fn kick_compaction(&self) {
        let idle = {
            let st = lock(&self.state);
            st.compact.is_empty() && !st.cleaning_due()
        };
        if idle || self.closed.load(Ordering::Acquire) {
            return;
        }
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let Ok(g) = Arc::clone(&self.compact_lock).try_lock_owned() else {
            return;
        };
        tokio::spawn(async move {
            if let Err(e) = me.compact_locked(true).await {
                tracing::warn!(volume = %me.id, error = %e, "compaction stopped; it resumes after the next write");
            }
            drop(g);
        });
    }

    /// Compaction: rewrite every chunk found due at commit time (at least
    /// half its sectors in segments) as one chunk object, by reading it
    /// whole and putting it in the dirty set as a whole-chunk write of the
    /// same content; the next write-back seals it and its commit frees the
    /// segment slots it held (a segment is deleted once no view names any
    /// of its slots). Runs in the background after writes; returns how many
    /// chunks it rewrote. Writes to a chunk wait while it is read (the
    /// chunk's stripe lock), so compaction never puts back older content.
    /// Rows a snapshot sees are not touched: the rewrite lands at the head
    /// generation like any write, so a snapshot taken before keeps reading
    /// its segments. Waits for a compaction already running.
    pub async fn compact_due(&self) -> Result<usize> {
        let _g = self.compact_lock.lock().await;
        self.compact_locked(false).await
    }

    /// Compact; `paced`: each chunk waits its turn at the configured pace
    /// (the background task; a caller of `compact_due` asked for it now).
    async fn compact_locked(&self, paced: bool) -> Result<usize> {
        let cs = to_usize(self.cs());
        let mut done = 0;
        let due = lock(&self.state).compact.len();
        tracing::debug!(volume = %self.id, due, "compaction started");
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(VolumeError::Closed);
            }
            if paced && !lock(&self.state).compact.is_empty() {
                self.config.compaction.take(cs).await;
            }
            let Some(idx) = lock(&self.state).compact.pop_first() else {
                let cleaned = self.clean_segments(paced).await?;
                tracing::debug!(volume = %self.id, chunks = done, cleaned, "compaction finished");
                return Ok(done);
            };
            self.make_room().await?;
            let piece = [(idx, 0, cs, 0)];
            let _g = self.lock_stripes(&piece).await;
            // Written or rewritten since it was found due: judged again
            // after that commits.
            if !self.wants_compaction(&lock(&self.state), idx) {
                continue;
            }
            let buf = self.read_inner(idx * self.cs(), cs).await?;
            self.put_dirty(vec![(idx, Dirty::Whole(buf.freeze()))]);
            tracing::trace!(volume = %self.id, chunk = idx, "chunk rewritten by compaction");
            self.compacted.fetch_add(1, Ordering::Relaxed);
            done += 1;
        }
    }

    /// Segment cleaning, after compaction: each segment this volume wrote
    /// at its head (no snapshot names it) with fewer than half its slots
    /// still live has those live sectors rewritten with their current
    /// content, like any write (under the chunk's stripe lock, so never
    /// older content), into the next write-back's segment; that commit
    /// leaves no extent naming the old segment, which is then queued for
    /// deletion. Sectors of a chunk with newer content in memory are left
    /// for a later pass. Returns how many segments it emptied so.
    async fn clean_segments(&self, paced: bool) -> Result<usize> {
        let todo = lock(&self.state).segments_to_clean();
        let cs = self.cs();
        let mut cleaned = 0;
        for (id, chunks) in todo {
            let mut all = true;
            for idx in chunks {
                if self.closed.load(Ordering::Acquire) {
                    return Err(VolumeError::Closed);
                }
                if paced {
                    // Paced before the chunk is locked: a client's write to
                    // it never waits for the pace.
                    let n: u32 = lock(&self.state)
                        .runs_in(idx, &id)
                        .iter()
                        .map(|r| r.1)
                        .sum();
                    self.config.compaction.take(n as usize * SECTOR).await;
                }
                self.make_room().await?;
                let piece = [(idx, 0, to_usize(cs), 0)];
                let _g = self.lock_stripes(&piece).await;
                let runs = {
                    let st = lock(&self.state);
                    if st.has_newer(idx) {
                        all = false;
                        continue;
                    }
                    st.runs_in(idx, &id)
                };
                let mut secs = BTreeMap::new();
                for (first, count) in runs {
                    let at = idx * cs + u64::from(first) * SECTOR as u64;
                    let buf = self.read_inner(at, count as usize * SECTOR).await?.freeze();
                    for i in 0..count {
                        let o = i as usize * SECTOR;
                        secs.insert(first + i, Sec::Data(buf.slice(o..o + SECTOR)));
                    }
                }
                if !secs.is_empty() {
                    self.put_dirty(vec![(idx, Dirty::Sectors(secs))]);
                }
            }
            if all {
                lock(&self.state).own_segments.remove(&id);
                self.cleaned.fetch_add(1, Ordering::Relaxed);
                cleaned += 1;
            }
        }
        Ok(cleaned)
    }

    /// Segments cleaning has emptied since the volume was opened.
    pub fn cleaned_segments(&self) -> u64 {
        self.cleaned.load(Ordering::Relaxed)
    }

    /// Chunks rewritten whole by compaction since the volume was opened.
    pub fn compacted_chunks(&self) -> u64 {
        self.compacted.load(Ordering::Relaxed)
    }

    /// Take a snapshot: write back, then record snapshot `row` at the head
    /// generation (the caller leaves `row.generation` to this method).
    pub async fn snapshot(&self, mut row: SnapshotRow) -> Result<SnapshotRow> {
        if self.closed.load(Ordering::Acquire) {
            return Err(VolumeError::Closed);
        }
        let _g = self.flush_lock.lock().await;
        // Held until the head has moved: no commit lands in between.
        let _c = self.writeback_durable().await?;
        let head = lock(&self.state).head;
        row.generation = head;
        row.volume_id = self.id;
        let by = match &self.holder {
            Some(h) => SnapshotBy::Holder(h),
            None => SnapshotBy::NotOpen {
                me: None,
                now_ms: coffer_meta::now_ms(),
            },
        };
        self.fenced(self.meta.create_snapshot(&row, by).await)?;
        let mut st = lock(&self.state);
        st.head = head + 1;
        // The snapshot names them now: rewriting their live sectors would
        // free nothing.
        st.own_segments.clear();
        drop(st);
        Ok(row)
    }

    /// Flush and close: later calls fail with [`VolumeError::Closed`]. If
    /// the flush fails the volume stays open (nothing cached is dropped), so
    /// the caller can retry.
    pub async fn close(&self) -> Result<()> {
        let _g = self.flush_lock.lock().await;
        if self.closed.load(Ordering::Acquire) {
            return Err(VolumeError::Closed);
        }
        drop(self.writeback_durable().await?);
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}

/// Puts a commit's extents back to pending when dropped armed: the commit
/// failed, or its future was dropped before the map had them.
struct RestoreOnDrop<'a>(Option<&'a Volume>);

impl Drop for RestoreOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(v) = self.0 {
            lock(&v.state).restore_committing();
        }
    }
}

impl Drop for Volume {
    /// Unsealed data dropped with the volume (fenced, or closed after a
    /// failed flush) no longer counts against the budget.
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        self.config
            .budget
            .used
            .fetch_sub(st.charged, Ordering::Relaxed);
    }
}

/// A sector of zeroes.
static ZERO_SECTOR: [u8; SECTOR] = [0; SECTOR];

/// Copy absolute sector `abs`'s plaintext `b` into `out`, which holds the
/// bytes from `offset` on: only the part inside `out`.
fn copy_sector(out: &mut [u8], offset: u64, abs: u64, b: &[u8]) {
    let start = abs * SECTOR as u64;
    let end = start + SECTOR as u64;
    let lo = start.max(offset);
    let hi = end.min(offset + out.len() as u64);
    if lo < hi {
        out[to_usize(lo - offset)..to_usize(hi - offset)]
            .copy_from_slice(&b[to_usize(lo - start)..to_usize(hi - start)]);
    }
}

/// Sector `abs`'s index in its chunk of `spc` sectors.
fn in_chunk(abs: u64, spc: u64) -> u32 {
    u32::try_from(abs % spc).expect("sectors a chunk fit u32")
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).expect("request-sized value fits usize")
}
