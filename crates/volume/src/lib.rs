//! The block engine. A [`Volume`] is an open disk: it turns byte-range reads
//! and writes into sealed, immutable chunk objects and chunk-map rows.
//!
//! ## How one write becomes durable
//! 1. `write` splits the range into chunks (`chunk_size`, 256 KiB by
//!    default). A whole-chunk write keeps a slice of the caller's buffer; a
//!    partial one reads the chunk's current content (from the cache or by
//!    opening its object) and patches it. The result goes to the **dirty
//!    set**, in memory only: plaintext never touches persistent storage.
//!    Writes to one chunk are serialised by a striped lock, so overlapping
//!    partial writes never lose each other's bytes. A request's chunks
//!    enter the dirty set together, so a write-back (and a snapshot) takes
//!    all of a request or none of it.
//! 2. Write-back moves the dirty set to the **flushing set**, reserves nonce
//!    counters from the metadata store (durably, before use), seals each
//!    chunk with AES-256-GCM under the lineage DEK, and puts it in the object
//!    store under a fresh, never reused key. The chunks become **pending**:
//!    reads use their objects, but the chunk map does not name them yet.
//!    All-zero chunks are recorded as zero and cost no object. This runs in
//!    the background once the dirty set passes its high-water mark (writers
//!    wait at twice that, before changing anything, and are refused if that
//!    write-back fails), so memory stays bounded on long writes and while
//!    the store is down.
//! 3. On `flush` (and FUA, snapshot, close), after a last write-back, one
//!    `sync` makes every pending object durable, then one metadata
//!    transaction points the chunk map at them (at the head generation) and
//!    queues objects no view needs any more for deletion. Only then is the
//!    flush acknowledged. So a long write costs one sync, like a file.
//!
//! A crash before step 3 commits leaves unreferenced objects (garbage for the
//! orphan sweep) and the previous, intact chunk map: a flushed write is never
//! lost, an unflushed one may be, as for any disk.
//!
//! ## Snapshots
//! `snapshot` writes back the dirty set and then records the head generation
//! in a snapshot row and moves the head to the next generation, in one
//! transaction. Its cost is the dirty data (bounded by the high-water mark)
//! plus a few rows, never the disk's size. The snapshot is the disk as of the
//! instant the dirty set was taken: every write acknowledged before then is
//! in it, no write started after is.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use coffer_crypto::chunk::ChunkKey;
use coffer_crypto::{SecretKey, open_chunk, seal_chunk};
use coffer_meta::{ChunkEntry, Holder, Meta, MetaError, SnapshotBy, SnapshotRow};
use coffer_store::{ObjectStore, StoreError, chunk_key};
use coffer_types::Id;
use futures::StreamExt;
use futures::stream::FuturesOrdered;

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
    /// Encryption failed (e.g. nonce counter exhausted).
    #[error("encryption error: {0}")]
    Crypto(#[from] coffer_crypto::CryptoError),
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

/// Tuning of an open volume.
#[derive(Debug, Clone)]
pub struct VolumeConfig {
    /// Write back in the background once this many dirty bytes are cached;
    /// writers wait (back-pressure) at twice this.
    pub dirty_high_water: usize,
    /// Nonce counters reserved per metadata round trip.
    pub counter_batch: u64,
    /// Objects put or fetched concurrently.
    pub io_parallelism: usize,
    /// Woken when a commit queues objects for deletion (the service's
    /// garbage collector listens).
    pub gc_notify: Option<Arc<tokio::sync::Notify>>,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        Self {
            dirty_high_water: 64 << 20,
            counter_batch: 2048,
            io_parallelism: 16,
            gc_notify: None,
        }
    }
}

/// Content of a cached chunk.
#[derive(Clone)]
enum Slot {
    Data(Bytes),
    Zero,
}

/// Where a chunk's current content is.
enum Source {
    Cached(Bytes),
    Zero,
    Object(u64),
}

struct State {
    head: u64,
    map: HashMap<u64, ChunkEntry>,
    dirty: HashMap<u64, Slot>,
    flushing: HashMap<u64, Slot>,
    /// Sealed and put, not yet durable nor in the chunk map.
    pending: HashMap<u64, ChunkEntry>,
    /// Objects superseded while pending: delete after the next commit.
    discard: Vec<u64>,
    dirty_bytes: usize,
}

impl State {
    fn source(&self, idx: u64) -> Source {
        let slot = self.dirty.get(&idx).or_else(|| self.flushing.get(&idx));
        match slot {
            Some(Slot::Data(b)) => Source::Cached(b.clone()),
            Some(Slot::Zero) => Source::Zero,
            None => match self.pending.get(&idx).or_else(|| self.map.get(&idx)) {
                Some(ChunkEntry::Object(c)) => Source::Object(*c),
                Some(ChunkEntry::Zero) | None => Source::Zero,
            },
        }
    }
}

const STRIPES: usize = 64;

/// An open, writable volume (the head of a disk).
pub struct Volume {
    id: Id,
    meta: Meta,
    store: Arc<dyn ObjectStore>,
    key: ChunkKey,
    dek_id: Id,
    chunk_size: u32,
    size: u64,
    config: VolumeConfig,
    state: Mutex<State>,
    stripes: Vec<tokio::sync::Mutex<()>>,
    flush_lock: Arc<tokio::sync::Mutex<()>>,
    counters: tokio::sync::Mutex<Range<u64>>,
    closed: AtomicBool,
    holder: Option<Holder>,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("id", &self.id)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Volume {
    /// Open the head of volume `id` for I/O; `dek` is its lineage's
    /// unwrapped DEK. With `holder`, every counter reservation, commit and
    /// snapshot checks that it still holds the disk's attachment, and the
    /// volume closes itself ([`VolumeError::Fenced`]) once it does not;
    /// without, the caller guarantees it is the only writer.
    pub async fn open(
        meta: Meta,
        store: Arc<dyn ObjectStore>,
        id: Id,
        dek: &SecretKey,
        config: VolumeConfig,
        holder: Option<Holder>,
    ) -> Result<Arc<Self>> {
        // A locking read: a snapshot being recorded right now finishes
        // first, so this head is current.
        let row = meta.volume_for_open(id).await?;
        let map = meta.resolve_view(id, row.head_generation).await?;
        let key = ChunkKey::new(row.dek_id.value(), dek)?;
        Ok(Arc::new(Self {
            id,
            meta,
            store,
            key,
            dek_id: row.dek_id,
            chunk_size: row.chunk_size,
            size: row.size,
            config,
            state: Mutex::new(State {
                head: row.head_generation,
                map,
                dirty: HashMap::new(),
                flushing: HashMap::new(),
                pending: HashMap::new(),
                discard: Vec::new(),
                dirty_bytes: 0,
            }),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            flush_lock: Arc::new(tokio::sync::Mutex::new(())),
            counters: tokio::sync::Mutex::new(0..0),
            closed: AtomicBool::new(false),
            holder,
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

    /// Bytes written but not yet written back.
    pub fn dirty_bytes(&self) -> usize {
        lock(&self.state).dirty_bytes
    }

    fn cs(&self) -> u64 {
        u64::from(self.chunk_size)
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

    async fn fetch(&self, idx: u64, counter: u64) -> Result<Bytes> {
        let obj = self
            .store
            .get(&chunk_key(self.dek_id.value(), counter))
            .await?;
        open_chunk(&self.key, counter, idx, obj).map_err(|e| VolumeError::Integrity {
            volume: self.id,
            chunk: idx,
            reason: e.to_string(),
        })
    }

    /// Current plaintext of chunk `idx` (`None` = zeroes). Retries if the
    /// object it resolved to was replaced and collected meanwhile.
    async fn chunk_content(&self, idx: u64) -> Result<Option<Bytes>> {
        let mut attempts = 0;
        loop {
            let src = lock(&self.state).source(idx);
            match src {
                Source::Cached(b) => return Ok(Some(b)),
                Source::Zero => return Ok(None),
                Source::Object(c) => match self.fetch(idx, c).await {
                    Ok(b) => return Ok(Some(b)),
                    Err(e) => {
                        // If the chunk was rewritten meanwhile, its old object
                        // may have been deleted or recycled under us: read
                        // the new content instead. Otherwise the error stands.
                        let moved =
                            !matches!(lock(&self.state).source(idx), Source::Object(c2) if c2 == c);
                        if !moved || attempts >= 3 {
                            return Err(match e {
                                VolumeError::Store(StoreError::NotFound(_)) => {
                                    VolumeError::Integrity {
                                        volume: self.id,
                                        chunk: idx,
                                        reason: "its object is missing from the store".into(),
                                    }
                                }
                                other => other,
                            });
                        }
                        attempts += 1;
                    }
                },
            }
        }
    }

    /// How `len` bytes at `offset` are allocated, as consecutive runs of
    /// `(length, hole)`: a hole is a chunk that reads as zeroes without an
    /// object (never written, trimmed, or written as zeroes). Answered
    /// from the in-memory map and dirty set: no object is read.
    ///
    /// # Errors
    /// Out of range, or the volume is closed.
    pub fn allocation(&self, offset: u64, len: u64) -> Result<Vec<(u64, bool)>> {
        self.check(offset, len)?;
        let pieces = self.pieces(offset, len);
        let st = lock(&self.state);
        let mut out: Vec<(u64, bool)> = Vec::new();
        for (idx, _, n, _) in pieces {
            let hole = matches!(st.source(idx), Source::Zero);
            match out.last_mut() {
                Some((l, h)) if *h == hole => *l += n as u64,
                _ => out.push((n as u64, hole)),
            }
        }
        Ok(out)
    }

    /// Read `len` bytes at `offset`.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Bytes> {
        self.check(offset, len)?;
        let pieces = self.pieces(offset, len);
        if let [(idx, 0, n, 0)] = pieces[..]
            && n == to_usize(self.cs())
        {
            // One whole chunk: hand out its plaintext without copying.
            return Ok(self
                .chunk_content(idx)
                .await?
                .unwrap_or_else(|| Bytes::from(vec![0u8; n])));
        }
        let mut out = BytesMut::zeroed(to_usize(len));
        let mut fetches: FuturesOrdered<_> = pieces
            .iter()
            .map(|&(idx, in_chunk, n, at)| async move {
                let content = self.chunk_content(idx).await?;
                Ok::<_, VolumeError>((content, in_chunk, n, at))
            })
            .collect();
        while let Some(r) = fetches.next().await {
            let (content, in_chunk, n, at) = r?;
            if let Some(c) = content {
                out[at..at + n].copy_from_slice(&c[in_chunk..in_chunk + n]);
            }
        }
        Ok(out.freeze())
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

    /// Put a request's new chunks in the dirty set, all under one lock: a
    /// write-back (and so a snapshot) takes all of a request or none of it.
    fn put_dirty(&self, slots: Vec<(u64, Slot)>) {
        let mut st = lock(&self.state);
        for (idx, slot) in slots {
            let add = match &slot {
                Slot::Data(b) => b.len(),
                Slot::Zero => 0,
            };
            if let Some(Slot::Data(old)) = st.dirty.insert(idx, slot) {
                st.dirty_bytes -= old.len();
            }
            st.dirty_bytes += add;
        }
    }

    /// Write `data` at `offset`; with `fua`, durable on return.
    pub async fn write(self: &Arc<Self>, offset: u64, data: Bytes, fua: bool) -> Result<()> {
        let len = data.len() as u64;
        self.check(offset, len)?;
        self.make_room().await?;
        let pieces = self.pieces(offset, len);
        {
            let _g = self.lock_stripes(&pieces).await;
            let cs = to_usize(self.cs());
            // Build every chunk of the request first (partial ones read
            // their chunk, which may wait on the store), then apply them at
            // once: a snapshot never sees half a request, and a request
            // that fails changes nothing.
            let mut slots = Vec::with_capacity(pieces.len());
            for &(idx, in_chunk, n, at) in &pieces {
                let piece = data.slice(at..at + n);
                let slot = if n == cs {
                    Slot::Data(piece)
                } else {
                    let mut buf = match self.chunk_content(idx).await? {
                        Some(b) => b.to_vec(),
                        None => vec![0u8; cs],
                    };
                    buf[in_chunk..in_chunk + n].copy_from_slice(&piece);
                    Slot::Data(Bytes::from(buf))
                };
                slots.push((idx, slot));
            }
            self.put_dirty(slots);
        }
        self.after_write(fua).await
    }

    /// Make `len` bytes at `offset` read as zeroes; whole chunks become
    /// zero entries and cost no storage.
    pub async fn write_zeroes(self: &Arc<Self>, offset: u64, len: u64, fua: bool) -> Result<()> {
        self.check(offset, len)?;
        self.make_room().await?;
        let pieces = self.pieces(offset, len);
        {
            let _g = self.lock_stripes(&pieces).await;
            let cs = to_usize(self.cs());
            // All at once, as in `write`.
            let mut slots = Vec::with_capacity(pieces.len());
            for &(idx, in_chunk, n, _) in &pieces {
                let slot = if n == cs {
                    Slot::Zero
                } else {
                    match self.chunk_content(idx).await? {
                        None => continue,
                        Some(b) => {
                            let mut buf = b.to_vec();
                            buf[in_chunk..in_chunk + n].fill(0);
                            Slot::Data(Bytes::from(buf))
                        }
                    }
                };
                slots.push((idx, slot));
            }
            self.put_dirty(slots);
        }
        self.after_write(fua).await
    }

    /// Back-pressure, before a write changes anything: past twice the
    /// high-water mark, write back first. If that fails the write is refused
    /// and changes nothing, so the cache never grows without bound while the
    /// store is down.
    async fn make_room(&self) -> Result<()> {
        if self.dirty_bytes() >= 2 * self.config.dirty_high_water {
            let _g = self.flush_lock.lock().await;
            self.writeback_locked(false).await?;
        }
        Ok(())
    }

    async fn after_write(self: &Arc<Self>, fua: bool) -> Result<()> {
        if fua {
            return self.flush().await;
        }
        if self.dirty_bytes() >= self.config.dirty_high_water
            && let Ok(g) = Arc::clone(&self.flush_lock).try_lock_owned()
        {
            let me = Arc::clone(self);
            tokio::spawn(async move {
                let _g = g;
                if let Err(e) = me.writeback_locked(false).await {
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
        self.writeback_locked(true).await
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

    async fn next_counters(&self, n: u64) -> Result<Range<u64>> {
        let mut r = self.counters.lock().await;
        if r.end - r.start < n {
            let fresh = self.fenced(
                self.meta
                    .reserve_counters(
                        self.dek_id,
                        n.max(self.config.counter_batch),
                        self.holder.as_ref(),
                    )
                    .await,
            )?;
            *r = fresh;
        }
        let out = r.start..r.start + n;
        r.start += n;
        Ok(out)
    }

    /// Write back the dirty set; with `durable`, also make everything
    /// written back so far durable and commit it to the chunk map. Caller
    /// holds `flush_lock`.
    async fn writeback_locked(&self, durable: bool) -> Result<()> {
        self.seal_dirty().await?;
        if durable {
            self.commit_pending().await?;
        }
        Ok(())
    }

    /// Phase 1: seal the dirty set and put its objects (not yet durable,
    /// not yet in the chunk map); they become *pending* entries that reads
    /// use. On failure the data goes back to the dirty set.
    async fn seal_dirty(&self) -> Result<()> {
        let entries: Vec<(u64, Slot)> = {
            let mut st = lock(&self.state);
            if st.dirty.is_empty() {
                return Ok(());
            }
            debug_assert!(st.flushing.is_empty());
            let taken = std::mem::take(&mut st.dirty);
            st.dirty_bytes = 0;
            let entries = taken.iter().map(|(k, v)| (*k, v.clone())).collect();
            st.flushing = taken;
            entries
        };
        let t0 = std::time::Instant::now();
        let n = entries.len();
        let res = self.seal_and_put(entries).await;
        tracing::debug!(volume = %self.id, chunks = n, elapsed = ?t0.elapsed(), "sealed and put");
        match res {
            Ok(sealed) => {
                let mut guard = lock(&self.state);
                let st = &mut *guard;
                for (idx, e) in sealed {
                    if let Some(ChunkEntry::Object(old)) = st.pending.insert(idx, e) {
                        // Superseded before it was ever committed: no view
                        // can see it, delete it after the next commit.
                        st.discard.push(old);
                    }
                }
                st.flushing.clear();
                Ok(())
            }
            Err(e) => {
                // Nothing of this batch is pending: put the data back so no
                // acknowledged write is lost; a later flush retries.
                let mut guard = lock(&self.state);
                let st = &mut *guard;
                for (idx, slot) in std::mem::take(&mut st.flushing) {
                    if let std::collections::hash_map::Entry::Vacant(v) = st.dirty.entry(idx) {
                        if let Slot::Data(b) = &slot {
                            st.dirty_bytes += b.len();
                        }
                        v.insert(slot);
                    }
                }
                Err(e)
            }
        }
    }

    /// Phase 2: `sync` the store, then commit every pending entry to the
    /// chunk map in one transaction. On failure the entries stay pending and
    /// the next flush retries.
    async fn commit_pending(&self) -> Result<()> {
        let (mut entries, head) = {
            let st = lock(&self.state);
            if st.pending.is_empty() {
                return Ok(());
            }
            (
                st.pending.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
                st.head,
            )
        };
        entries.sort_unstable_by_key(|(i, _)| *i);
        let t0 = std::time::Instant::now();
        self.store.sync().await?;
        let t1 = std::time::Instant::now();
        // Every counter below the unused rest of the current reservation
        // was used by a put that has finished (write-back holds the flush
        // lock), so its object is now named or dead.
        let resolved = self.counters.lock().await.start;
        let stats = self.fenced(
            self.meta
                .commit_chunks(
                    self.id,
                    head,
                    self.holder.as_ref().map(|h| (h, resolved)),
                    &entries,
                )
                .await,
        )?;
        if stats.queued_for_gc > 0
            && let Some(n) = &self.config.gc_notify
        {
            n.notify_one();
        }
        tracing::debug!(volume = %self.id, entries = entries.len(), sync = ?(t1 - t0), commit = ?t1.elapsed(), "committed");
        let discard = {
            let mut guard = lock(&self.state);
            let st = &mut *guard;
            for (idx, e) in &entries {
                st.map.insert(*idx, *e);
            }
            st.pending.clear();
            std::mem::take(&mut st.discard)
        };
        for counter in discard {
            if let Err(e) = self
                .store
                .delete(&chunk_key(self.dek_id.value(), counter))
                .await
            {
                tracing::warn!(volume = %self.id, error = %e, "could not delete a superseded object; the orphan sweep will");
            }
        }
        Ok(())
    }

    async fn seal_and_put(&self, entries: Vec<(u64, Slot)>) -> Result<Vec<(u64, ChunkEntry)>> {
        let mut results = Vec::with_capacity(entries.len());
        let mut data = Vec::with_capacity(entries.len());
        for (idx, slot) in entries {
            match slot {
                Slot::Data(b) if !is_zero(&b) => data.push((idx, b)),
                _ => results.push((idx, ChunkEntry::Zero)),
            }
        }
        let counters = self.next_counters(data.len() as u64).await?;
        let puts = futures::stream::iter(data.into_iter().zip(counters).map(
            |((idx, plain), counter)| async move {
                let sealed = seal_chunk(&self.key, counter, idx, &plain)?;
                self.store
                    .put(
                        &chunk_key(self.dek_id.value(), counter),
                        Bytes::from(sealed),
                    )
                    .await?;
                Ok::<_, VolumeError>((idx, ChunkEntry::Object(counter)))
            },
        ))
        .buffer_unordered(self.config.io_parallelism);
        // Stop at the first failure (dropping the puts still in flight)
        // rather than wait for every chunk to exhaust its retries: the
        // caller keeps the data cached and a later flush retries. Objects
        // already put are garbage for the orphan sweep.
        futures::pin_mut!(puts);
        while let Some(r) = puts.next().await {
            results.push(r?);
        }
        Ok(results)
    }

    /// Take a snapshot: write back, then record snapshot `row` at the head
    /// generation (the caller leaves `row.generation` to this method).
    pub async fn snapshot(&self, mut row: SnapshotRow) -> Result<SnapshotRow> {
        if self.closed.load(Ordering::Acquire) {
            return Err(VolumeError::Closed);
        }
        let _g = self.flush_lock.lock().await;
        self.writeback_locked(true).await?;
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
        lock(&self.state).head = head + 1;
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
        self.writeback_locked(true).await?;
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).expect("request-sized value fits usize")
}

/// Whether a buffer is all zeroes (folds 64-byte blocks, which vectorises).
fn is_zero(b: &[u8]) -> bool {
    b.chunks(64).all(|c| c.iter().fold(0u8, |a, &x| a | x) == 0)
}
