//! [`LocalStore`]: objects as files under a root directory.
//!
//! A put writes the file with `O_CREAT | O_EXCL` straight under its final
//! name and does not fsync it; [`ObjectStore::sync`] then makes every
//! completed put durable at once with `syncfs(2)` on the store's file system
//! (one call instead of one fsync per object). A crash can leave a partial
//! file under its final name, but only for an object that no metadata names
//! yet (callers record an object in metadata only after `sync`), so such a
//! file is garbage for the orphan sweep, never data.
//!
//! With [`LocalStore::with_direct_io`], puts bypass the page cache
//! (`O_DIRECT`) for every whole 4 KiB block of an object and write only its
//! last partial block through the cache. That spares the copy of each put
//! into page-cache pages and leaves a flush's `syncfs` little to write, at
//! the price of reads of recently written objects going to the disk (see
//! docs/PERFORMANCE.md for both sides measured); it is off by default. File
//! systems without `O_DIRECT` (tmpfs on older kernels, some FUSE) get plain
//! buffered writes either way.
//!
//! The streaming variants ([`ObjectStore::put_streaming`],
//! [`ObjectStore::get_range_streaming`], a copy job's) keep what they move
//! out of the page cache: a streaming put writes an object's whole blocks
//! with `O_DIRECT` whatever the store's setting, and its last partial block
//! (and everything, where the file system has no `O_DIRECT`) with
//! `RWF_DONTCACHE` (Linux 6.14: through the page cache, its pages leaving
//! it once on disk); a streaming read reads with `RWF_DONTCACHE` too (what
//! the cache holds comes from it and stays, the rest leaves it once read),
//! into buffers that the store pools (they hold stored bytes only:
//! ciphertext) and takes back when the reader drops them; and a read of
//! what a streaming put wrote (a copy's read-back) reads its blocks with
//! `O_DIRECT` straight into such a buffer. A copy then draws no fresh page for every byte it moves (on a VM
//! whose free memory the host reclaims, ~2 s of system time per GiB
//! written; docs/PERFORMANCE.md) and evicts nothing of the live disks'
//! cached data. Where the kernel or file system refuses the flag, they fall
//! back to the plain paths for good.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::{BufPool, ObjectStore, StoreError, clip, validate_key};

/// `RWF_DONTCACHE` for `preadv2`/`pwritev2` (Linux 6.14; not yet named by
/// rustix): the I/O's pages leave the page cache once it is done.
const RWF_DONTCACHE: u32 = 0x80;

/// Directory (under the root) of reusable files; never a valid object key
/// prefix, so listings never show it.
const FREE_DIR: &str = ".free";

/// Objects as files under a directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: Arc<PathBuf>,
    free: Arc<FreePool>,
    direct: Arc<Direct>,
    /// Whether `RWF_DONTCACHE` works here: cleared at the first refusal.
    uncached: Arc<AtomicBool>,
}

/// Alignment of `O_DIRECT` writes (offset, length and memory): the largest
/// logical block size of the disks and file systems Coffer runs on.
const ALIGN: usize = 4096;
/// Bytes staged per direct write when the caller's buffer is not aligned.
const PIECE: usize = 1 << 20;
/// Staging buffers kept for reuse.
const MAX_BUFS: usize = 8;

/// Bytes of streaming-read buffers kept for reuse (a copy job's reads in
/// flight): reused, they cost no fresh page and no zeroing.
const READ_POOL: usize = 64 << 20;

/// Largest ranged read whose buffer is allocated before the file's length
/// is known (a volume's reads are at most one segment: 4 MiB and tags).
const PREALLOC_MAX: usize = 64 << 20;

/// State of the direct (page-cache-bypassing) write path.
#[derive(Debug)]
struct Direct {
    /// Whether the store writes with `O_DIRECT` (set by
    /// [`LocalStore::with_direct_io`]; streaming puts do either way).
    on: AtomicBool,
    /// Cleared the first time the file system refuses `O_DIRECT`.
    works: AtomicBool,
    /// Staging buffers of `PIECE + ALIGN` bytes, each used from its first
    /// `ALIGN`-aligned byte; they hold ciphertext only.
    bufs: std::sync::Mutex<Vec<Vec<u8>>>,
    /// Buffers of streaming reads, back from their readers: stored bytes
    /// only (ciphertext), at most `READ_POOL` bytes of them.
    reads: Arc<BufPool>,
}

impl Direct {
    fn take(&self) -> Vec<u8> {
        self.bufs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| vec![0u8; PIECE + ALIGN])
    }

    fn give(&self, buf: Vec<u8>) {
        let mut bufs = self
            .bufs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if bufs.len() < MAX_BUFS {
            bufs.push(buf);
        }
    }
}

/// Write `data` as the whole content of `f` from offset 0: its whole
/// blocks with `O_DIRECT` when the store is set to (or for a streaming put:
/// `uncached` given) and the file system allows it; the rest (and
/// everything, when it does not) with `RWF_DONTCACHE` for a streaming put
/// while `uncached` is set (cleared if the kernel refuses it), else through
/// the page cache.
fn write_object(
    f: &std::fs::File,
    data: &[u8],
    direct: &Direct,
    uncached: Option<&AtomicBool>,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let head = if (uncached.is_some() || direct.on.load(Ordering::Relaxed))
        && direct.works.load(Ordering::Relaxed)
    {
        data.len() / ALIGN * ALIGN
    } else {
        0
    };
    let mut done = 0;
    if head > 0 {
        match write_direct(f, &data[..head], direct) {
            Ok(()) => done = head,
            // The file system does not do direct I/O: write it all
            // through the cache, from now on too.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                direct.works.store(false, Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(u) = uncached
        && u.load(Ordering::Relaxed)
    {
        match write_uncached(f, &data[done..], done as u64) {
            Err(e) if refuses_uncached(&e) => u.store(false, Ordering::Relaxed),
            result => return result,
        }
    }
    f.write_all_at(&data[done..], done as u64)
}

/// Whether `e` is a kernel's or file system's refusal of `RWF_DONTCACHE`
/// (older kernels refuse unknown flags too; nothing was read or written).
fn refuses_uncached(e: &std::io::Error) -> bool {
    [rustix::io::Errno::OPNOTSUPP, rustix::io::Errno::INVAL]
        .iter()
        .any(|n| e.raw_os_error() == Some(n.raw_os_error()))
}

fn dontcache() -> rustix::io::ReadWriteFlags {
    rustix::io::ReadWriteFlags::from_bits_retain(RWF_DONTCACHE)
}

/// Write `data` at offset `at` of `f` with `RWF_DONTCACHE`.
fn write_uncached(f: &std::fs::File, data: &[u8], at: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        let piece = [std::io::IoSlice::new(&data[done..])];
        match rustix::io::pwritev2(f, &piece, at + done as u64, dontcache()) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// How a ranged read reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// Through the page cache.
    Plain,
    /// Leaving the page cache as it is (`ObjectStore::get_range_streaming`).
    Streaming,
    /// Straight from the disk (`ObjectStore::get_range_uncached`).
    Uncached,
}

/// Read `n` bytes of `f` from `at` (less only where the file ends) into a
/// pooled buffer, without changing what the page cache holds: with
/// `RWF_DONTCACHE` (cached bytes come from the cache and stay; the rest is
/// read through pages dropped once read) while the kernel takes it (cleared
/// at its first refusal), else plainly. Not `RWF_NOWAIT` reads with
/// `O_DIRECT` for what they miss: a `RWF_NOWAIT` read that misses starts
/// the readahead it declined to wait for, so uncached data was read twice
/// and cached after all.
///
/// `given` is a buffer taken for it on the caller's thread, if any (see
/// `get_range_with` on why).
fn read_streaming(
    f: &std::fs::File,
    (at, n): (u64, usize),
    direct: &Arc<Direct>,
    uncached: &AtomicBool,
    given: Option<Vec<u8>>,
) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut b = match given {
        Some(b) if b.len() >= n => b,
        other => {
            if let Some(b) = other {
                direct.reads.give(b);
            }
            direct.reads.take(n)
        }
    };
    let mut done = 0;
    let mut res = Ok(());
    while done < n {
        let r = if uncached.load(Ordering::Relaxed) {
            let piece = &mut [std::io::IoSliceMut::new(&mut b[done..n])];
            match rustix::io::preadv2(f, piece, at + done as u64, dontcache()) {
                Ok(k) => Ok(k),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    let e = std::io::Error::from(e);
                    if refuses_uncached(&e) {
                        uncached.store(false, Ordering::Relaxed);
                        continue;
                    }
                    Err(e)
                }
            }
        } else {
            match f.read_at(&mut b[done..n], at + done as u64) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => other,
            }
        };
        match r {
            Ok(0) => break,
            Ok(k) => done += k,
            Err(e) => {
                res = Err(e);
                break;
            }
        }
    }
    if let Err(e) = res {
        direct.reads.give(b);
        return Err(e);
    }
    Ok(direct.reads.bytes(b, 0, done))
}

/// The buffer [`read_uncached`] needs for `n` bytes at `at`: the blocks
/// covering them, and room to align them in memory.
fn uncached_buffer(at: u64, n: usize) -> usize {
    let skip = usize::try_from(at % ALIGN as u64).unwrap_or(0);
    (skip + n).div_ceil(ALIGN) * ALIGN + ALIGN
}

/// Read `n` bytes of `f` from `at` (less only where the file ends) that
/// are not in the page cache (a streaming put wrote them), with `O_DIRECT`
/// straight into a pooled buffer: the blocks covering them, into its
/// page-aligned part. Where the file system refuses `O_DIRECT` (cleared
/// for good), as [`read_streaming`].
fn read_uncached(
    f: &std::fs::File,
    (at, n): (u64, usize),
    direct: &Arc<Direct>,
    uncached: &AtomicBool,
    given: Option<Vec<u8>>,
) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    if !direct.works.load(Ordering::Relaxed) {
        return read_streaming(f, (at, n), direct, uncached, given);
    }
    let align = ALIGN as u64;
    let start = at / align * align;
    let skip = usize::try_from(at - start).unwrap_or(0);
    let span = (skip + n).div_ceil(ALIGN) * ALIGN;
    let mut b = match given {
        Some(b) if b.len() >= uncached_buffer(at, n) => b,
        other => {
            if let Some(b) = other {
                direct.reads.give(b);
            }
            direct.reads.take(uncached_buffer(at, n))
        }
    };
    let o = b.as_ptr().align_offset(ALIGN);
    let flags = match rustix::fs::fcntl_getfl(f)
        .and_then(|fl| rustix::fs::fcntl_setfl(f, fl | rustix::fs::OFlags::DIRECT).map(|()| fl))
    {
        Ok(fl) => fl,
        Err(e) => {
            direct.reads.give(b);
            // A file system that refuses O_DIRECT refuses the flag.
            if e == rustix::io::Errno::INVAL {
                direct.works.store(false, Ordering::Relaxed);
                return read_streaming(f, (at, n), direct, uncached, None);
            }
            return Err(e.into());
        }
    };
    let buf = &mut b[o..o + span];
    let mut done = 0;
    let res = loop {
        if done == span {
            break Ok(());
        }
        match f.read_at(&mut buf[done..], start + done as u64) {
            Ok(0) => break Ok(()),
            // Not a whole number of blocks: the file ends there.
            Ok(k) if k % ALIGN != 0 => {
                done += k;
                break Ok(());
            }
            Ok(k) => done += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    let restored = rustix::fs::fcntl_setfl(f, flags);
    let res = res.and_then(|()| Ok(restored?));
    match res {
        Ok(()) => {
            let len = done.clamp(skip, skip + n) - skip;
            Ok(direct.reads.bytes(b, o + skip, len))
        }
        Err(e) => {
            direct.reads.give(b);
            if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) {
                direct.works.store(false, Ordering::Relaxed);
                return read_streaming(f, (at, n), direct, uncached, None);
            }
            Err(e)
        }
    }
}

/// Write `data` (a whole number of blocks) at offset 0 of `f` with
/// `O_DIRECT` set for the duration, from `data` itself when it is aligned
/// in memory or else through a staging buffer.
fn write_direct(f: &std::fs::File, data: &[u8], direct: &Direct) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let flags = rustix::fs::fcntl_getfl(f)?;
    rustix::fs::fcntl_setfl(f, flags | rustix::fs::OFlags::DIRECT)?;
    let res = if data.as_ptr().align_offset(ALIGN) == 0 {
        f.write_all_at(data, 0)
    } else {
        let mut buf = direct.take();
        let o = buf.as_ptr().align_offset(ALIGN);
        let mut res = Ok(());
        for (i, piece) in data.chunks(PIECE).enumerate() {
            let staged = &mut buf[o..o + piece.len()];
            staged.copy_from_slice(piece);
            res = f.write_all_at(staged, (i * PIECE) as u64);
            if res.is_err() {
                break;
            }
        }
        direct.give(buf);
        res
    };
    rustix::fs::fcntl_setfl(f, flags)?;
    res
}

/// Files of deleted objects kept for reuse: overwriting an allocated,
/// probably cached file is several times cheaper than allocating a new one
/// (measured here: ~0.4 GB/s into new files, >5 GB/s over existing ones).
/// They hold only old ciphertext and no metadata names them.
#[derive(Debug)]
struct FreePool {
    files: std::sync::Mutex<Vec<PathBuf>>,
    cap: usize,
    seq: std::sync::atomic::AtomicU64,
}

/// Default number of deleted object files kept for reuse.
pub const DEFAULT_FREE_POOL: usize = 8192;

impl LocalStore {
    /// Open (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::open_with_pool(root, DEFAULT_FREE_POOL)
    }

    /// Open with a free pool of at most `cap` files (0 disables reuse).
    pub fn open_with_pool(root: impl Into<PathBuf>, cap: usize) -> Result<Self, StoreError> {
        let root = root.into();
        let free_dir = root.join(FREE_DIR);
        std::fs::create_dir_all(&free_dir).map_err(|source| StoreError::Io {
            key: free_dir.display().to_string(),
            cause: source,
        })?;
        let mut files = Vec::new();
        let mut seq = 0u64;
        for e in std::fs::read_dir(&free_dir).map_err(io("free"))?.flatten() {
            if let Some(n) = e
                .file_name()
                .to_str()
                .and_then(|n| u64::from_str_radix(n, 16).ok())
            {
                seq = seq.max(n + 1);
            }
            files.push(e.path());
        }
        Ok(Self {
            root: Arc::new(root),
            free: Arc::new(FreePool {
                files: std::sync::Mutex::new(files),
                cap,
                seq: std::sync::atomic::AtomicU64::new(seq),
            }),
            direct: Arc::new(Direct {
                on: AtomicBool::new(false),
                works: AtomicBool::new(true),
                bufs: std::sync::Mutex::new(Vec::new()),
                reads: BufPool::new(READ_POOL, 0),
            }),
            uncached: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Write objects' whole blocks with `O_DIRECT` (`on`) or through the
    /// page cache (the default). Where the file system refuses `O_DIRECT`,
    /// the store falls back to the page cache at the first put.
    #[must_use]
    pub fn with_direct_io(self, on: bool) -> Self {
        self.direct.on.store(on, Ordering::Relaxed);
        self
    }

    fn take_free(&self) -> Option<PathBuf> {
        self.free
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

/// Overwrite the reusable file `free` with `data` and move it to `path`
/// without replacing anything there (`RENAME_NOREPLACE`).
fn reuse(
    free: &Path,
    path: &Path,
    data: &[u8],
    direct: &Direct,
    uncached: Option<&AtomicBool>,
) -> std::io::Result<()> {
    let f = OpenOptions::new().write(true).open(free)?;
    write_object(&f, data, direct, uncached)?;
    f.set_len(data.len() as u64)?;
    drop(f);
    let rename = || {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            free,
            rustix::fs::CWD,
            path,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(std::io::Error::from)
    };
    match rename() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            rename()
        }
        other => other,
    }
}

/// Open the file of object `key` for reading; a missing file is
/// [`StoreError::NotFound`].
fn open_object(path: &Path, key: &str) -> Result<std::fs::File, StoreError> {
    std::fs::File::open(path).map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            StoreError::NotFound(key.to_string())
        } else {
            StoreError::Io {
                key: key.to_string(),
                cause: e,
            }
        }
    })
}

fn io(key: &str) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        key: key.to_string(),
        cause: source,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io {
            key: "<task>".into(),
            cause: std::io::Error::other(e.to_string()),
        })?
}

impl LocalStore {
    /// A put, with `RWF_DONTCACHE` if `streaming` (see the module's doc).
    async fn put_with(&self, key: &str, data: Bytes, streaming: bool) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let key = key.to_string();
        let recycled = self.take_free();
        let direct = self.direct.clone();
        let uncached = streaming.then(|| self.uncached.clone());
        blocking(move || {
            let uncached = uncached.as_deref();
            if let Some(free) = recycled {
                match reuse(&free, &path, &data, &direct, uncached) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        let _ = std::fs::remove_file(&free);
                        return Err(StoreError::AlreadyExists(key));
                    }
                    // Fall back to a new file.
                    Err(_) => {
                        let _ = std::fs::remove_file(&free);
                    }
                }
            }
            let open = || OpenOptions::new().write(true).create_new(true).open(&path);
            let f = match open() {
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir).map_err(io(&key))?;
                    }
                    open()
                }
                other => other,
            }
            .map_err(|e| {
                if e.kind() == ErrorKind::AlreadyExists {
                    StoreError::AlreadyExists(key.clone())
                } else {
                    StoreError::Io {
                        key: key.clone(),
                        cause: e,
                    }
                }
            })?;
            write_object(&f, &data, &direct, uncached).map_err(io(&key))
        })
        .await
    }

    /// One `open`, one `fstat` (to clip the range: it may be given as "to
    /// the end", far past it) and `pread`s until the clipped range is read
    /// or the file ends. The file's length is the object's: a recycled file
    /// is cut to its new object's length before it is renamed to the key
    /// (see `reuse`), so no byte of an older object is ever in range.
    ///
    /// The buffer of a bounded range is allocated here, on the caller's
    /// thread, not on the blocking-pool thread that reads into it: with a
    /// per-thread allocator (mimalloc), a buffer allocated on a pool thread
    /// and freed on a runtime worker stays charged to the pool thread's
    /// heap until that thread allocates again, and an idle pool thread
    /// never does. Reads through dozens of pool threads kept ~300 MiB so
    /// (docs/PERFORMANCE.md, "Memory").
    ///
    /// With `streaming`, what is not cached is read with `O_DIRECT` (see the
    /// module's doc).
    async fn get_range_with(
        &self,
        key: &str,
        range: Range<u64>,
        how: How,
    ) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let key = key.to_string();
        let bounded = usize::try_from(range.end - range.start)
            .ok()
            .filter(|&n| n <= PREALLOC_MAX);
        let (mut buf, mut pooled): (Vec<u8>, Option<Vec<u8>>) = match bounded {
            Some(n) if how == How::Streaming => (Vec::new(), Some(self.direct.reads.take(n))),
            Some(n) if how == How::Uncached => (
                Vec::new(),
                Some(self.direct.reads.take(uncached_buffer(range.start, n))),
            ),
            Some(n) => (Vec::with_capacity(n), None),
            None => (Vec::new(), None),
        };
        let direct = self.direct.clone();
        let uncached = self.uncached.clone();
        blocking(move || {
            use std::os::unix::fs::FileExt;
            let opened = open_object(&path, &key).and_then(|f| {
                let len = f.metadata().map_err(io(&key))?.len();
                let want = clip(&range, len);
                let n = usize::try_from(want.end - want.start).map_err(|_| StoreError::Io {
                    key: key.clone(),
                    cause: std::io::Error::other("range larger than the address space"),
                })?;
                Ok((f, want, n))
            });
            let (f, want, n) = match opened {
                Ok(o) => o,
                Err(e) => {
                    // The buffer taken for the read goes back for the next.
                    if let Some(b) = pooled.take() {
                        direct.reads.give(b);
                    }
                    return Err(e);
                }
            };
            match how {
                How::Streaming => {
                    return read_streaming(&f, (want.start, n), &direct, &uncached, pooled.take())
                        .map_err(io(&key));
                }
                How::Uncached => {
                    return read_uncached(&f, (want.start, n), &direct, &uncached, pooled.take())
                        .map_err(io(&key));
                }
                How::Plain => {}
            }
            buf.resize(n, 0);
            let mut filled = 0;
            while filled < n {
                match f.read_at(&mut buf[filled..], want.start + filled as u64) {
                    Ok(0) => break,
                    Ok(k) => filled += k,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(io(&key)(e)),
                }
            }
            buf.truncate(filled);
            Ok(Bytes::from(buf))
        })
        .await
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.put_with(key, data, false).await
    }

    async fn put_streaming(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.put_with(key, data, true).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.get_range_with(key, range, How::Plain).await
    }

    async fn get_range_streaming(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.get_range_with(key, range, How::Streaming).await
    }

    async fn get_range_uncached(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.get_range_with(key, range, How::Uncached).await
    }

    async fn get(&self, key: &str) -> Result<BytesMut, StoreError> {
        let path = self.path(key)?;
        let key = key.to_string();
        blocking(move || {
            let mut f = open_object(&path, &key)?;
            let len = f.metadata().map_err(io(&key))?.len();
            let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            f.read_to_end(&mut buf).map_err(io(&key))?;
            Ok(BytesMut::from(Bytes::from(buf)))
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let key = key.to_string();
        let keep = self
            .free
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
            < self.free.cap;
        let free_path = keep.then(|| {
            let n = self
                .free
                .seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.root.join(FREE_DIR).join(format!("{n:016x}"))
        });
        let pool = self.free.clone();
        blocking(move || {
            if let Some(fp) = free_path {
                match std::fs::rename(&path, &fp) {
                    Ok(()) => {
                        pool.files
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(fp);
                        return Ok(());
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                    Err(_) => {}
                }
            }
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(StoreError::Io { key, cause: e }),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![root.as_ref().clone()];
            while let Some(dir) = stack.pop() {
                let rd = match std::fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(StoreError::Io {
                            key: dir.display().to_string(),
                            cause: e,
                        });
                    }
                };
                for entry in rd {
                    let entry = entry.map_err(io(&prefix))?;
                    let path = entry.path();
                    let rel = path
                        .strip_prefix(root.as_ref())
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .to_string();
                    if rel == FREE_DIR {
                        continue;
                    }
                    if entry.file_type().map_err(io(&prefix))?.is_dir() {
                        let with_slash = format!("{rel}/");
                        if with_slash.starts_with(&prefix) || prefix.starts_with(&with_slash) {
                            stack.push(path);
                        }
                    } else if rel.starts_with(&prefix) && validate_key(&rel).is_ok() {
                        out.push(rel);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// The root must be a directory that can be read: a store whose
    /// directory went away (an unmounted volume, a removed path) does not
    /// answer, where a list would find nothing and succeed.
    async fn probe(&self) -> Result<(), StoreError> {
        let root = self.root.clone();
        blocking(move || {
            std::fs::read_dir(root.as_ref())
                .map(|_| ())
                .map_err(io("<root>"))
        })
        .await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        let root = self.root.clone();
        blocking(move || {
            let dir = std::fs::File::open(root.as_ref()).map_err(io("<root>"))?;
            rustix::fs::syncfs(&dir).map_err(|e| StoreError::Io {
                key: root.display().to_string(),
                cause: e.into(),
            })
        })
        .await
    }

    fn describe(&self) -> String {
        format!("local:{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path().join("objects")).unwrap();
        crate::conformance::run(&s).await;
        let s = LocalStore::open_with_pool(dir.path().join("nopool"), 0).unwrap();
        crate::conformance::run(&s).await;
        let s = LocalStore::open(dir.path().join("direct"))
            .unwrap()
            .with_direct_io(true);
        crate::conformance::run(&s).await;
    }

    #[tokio::test]
    async fn deleted_files_are_reused_and_never_listed() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path().join("o")).unwrap();
        s.put("a/1", Bytes::from(vec![1u8; 1000])).await.unwrap();
        s.delete("a/1").await.unwrap();
        assert_eq!(s.free.files.lock().unwrap().len(), 1);
        assert!(
            s.list("").await.unwrap().is_empty(),
            "free files must not be listed"
        );
        // A shorter object in a recycled file: exactly its bytes.
        s.put("a/2", Bytes::from_static(b"short")).await.unwrap();
        assert!(s.free.files.lock().unwrap().is_empty());
        assert_eq!(&s.get("a/2").await.unwrap()[..], b"short");
        // Reuse never replaces an existing object.
        s.put("a/3", Bytes::from_static(b"x")).await.unwrap();
        s.delete("a/3").await.unwrap();
        assert!(matches!(
            s.put("a/2", Bytes::from_static(b"y")).await,
            Err(StoreError::AlreadyExists(_))
        ));
        assert_eq!(&s.get("a/2").await.unwrap()[..], b"short");
        // The pool survives a reopen.
        s.put("a/4", Bytes::from_static(b"z")).await.unwrap();
        s.delete("a/4").await.unwrap();
        let s2 = LocalStore::open(dir.path().join("o")).unwrap();
        assert_eq!(s2.free.files.lock().unwrap().len(), 1);
    }

    /// Whether the file system under `dir` takes `O_DIRECT` writes.
    fn takes_direct_io(dir: &Path) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        let flag = i32::try_from(rustix::fs::OFlags::DIRECT.bits()).unwrap();
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(flag)
            .open(dir.join("probe"))
            .is_ok()
    }

    #[tokio::test]
    async fn objects_of_every_size_and_alignment_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path().join("o"))
            .unwrap()
            .with_direct_io(true);
        // A source buffer one byte off any alignment, and patterned so a
        // block written at the wrong offset shows.
        let big: Vec<u8> = (0..(3 * PIECE + 2 * ALIGN + 7))
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let big = Bytes::from(big);
        let sizes = [
            0,
            1,
            ALIGN - 1,
            ALIGN,
            ALIGN + 1,
            PIECE,
            PIECE + 5,
            3 * PIECE + 2 * ALIGN + 6,
        ];
        for (n, &len) in sizes.iter().enumerate() {
            let data = big.slice(1..1 + len);
            s.put(&format!("a/{n}"), data.clone()).await.unwrap();
            assert_eq!(s.get(&format!("a/{n}")).await.unwrap(), data, "{len} bytes");
            // Streamed in and out (O_DIRECT blocks, an uncached tail; read
            // back with RWF_DONTCACHE, and with O_DIRECT from a page-aligned
            // buffer), at every offset shape: whole, from an odd offset to
            // past the end, and a range that straddles pieces.
            let key = format!("s/{n}");
            s.put_streaming(&key, data.clone()).await.unwrap();
            let l = len as u64;
            for range in [0..l, (l / 3) | 1..l + 99, (l / 5)..(l - l / 7)] {
                let (a, b) = (range.start.min(l), range.end.min(l));
                let want = data.slice(usize::try_from(a).unwrap()..usize::try_from(b).unwrap());
                assert_eq!(
                    s.get_range_streaming(&key, range.clone()).await.unwrap(),
                    want,
                    "{len} bytes, range {range:?}"
                );
                assert_eq!(
                    s.get_range_uncached(&key, range.clone()).await.unwrap(),
                    want,
                    "{len} bytes, range {range:?}, uncached"
                );
            }
        }
        // Recycle the largest file for a smaller object and the smallest
        // for a larger one: exactly the new bytes either way.
        s.delete("a/7").await.unwrap();
        let data = big.slice(3..3 + PIECE + 100);
        s.put("b/1", data.clone()).await.unwrap();
        assert_eq!(s.get("b/1").await.unwrap(), data);
        s.delete("a/1").await.unwrap();
        let data = big.slice(0..2 * ALIGN + 9);
        s.put("b/2", data.clone()).await.unwrap();
        assert_eq!(s.get("b/2").await.unwrap(), data);
        assert_eq!(
            &s.get_range("b/2", 4090..4100).await.unwrap()[..],
            &data[4090..4100]
        );
        // Where the file system takes direct I/O, the store kept using it.
        assert_eq!(
            s.direct.works.load(Ordering::Relaxed),
            takes_direct_io(dir.path()),
            "direct writes are used exactly where the file system has them"
        );
    }

    #[tokio::test]
    async fn streaming_reads_fall_back_where_the_kernel_refuses_and_keep_a_bounded_pool() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path().join("o")).unwrap();
        let data: Bytes = (0..(PIECE + 3 * ALIGN + 11))
            .map(|i| u8::try_from(i % 253).unwrap())
            .collect::<Vec<u8>>()
            .into();
        s.put_streaming("k", data.clone()).await.unwrap();
        let l = data.len() as u64;
        let ranges = [0..l, 5..l - 7, 4096..8192, l - 1..l + 10];
        let check = |label: &'static str| {
            let (s, data, ranges) = (s.clone(), data.clone(), ranges.clone());
            async move {
                for r in ranges {
                    let (a, b) = (
                        usize::try_from(r.start.min(l)).unwrap(),
                        usize::try_from(r.end.min(l)).unwrap(),
                    );
                    let want = data.slice(a..b);
                    let got = s.get_range_streaming("k", r.clone()).await.unwrap();
                    assert_eq!(got, want, "streaming {r:?}, {label}");
                    let got = s.get_range_uncached("k", r.clone()).await.unwrap();
                    assert_eq!(got, want, "uncached {r:?}, {label}");
                }
            }
        };
        check("every flag taken").await;
        // A file system without O_DIRECT: uncached reads read as streaming
        // ones do; a kernel without RWF_DONTCACHE: plain reads.
        s.direct.works.store(false, Ordering::Relaxed);
        check("no O_DIRECT").await;
        s.uncached.store(false, Ordering::Relaxed);
        check("no O_DIRECT, no RWF_DONTCACHE").await;
        // Many reads held at once, then dropped: the pool keeps at most
        // its bound of their buffers.
        let held: Vec<Bytes> =
            futures::future::try_join_all((0..100).map(|_| s.get_range_streaming("k", 0..l)))
                .await
                .unwrap();
        assert!(held.iter().all(|b| *b == data));
        drop(held);
        let pooled = s.direct.reads.idle_bytes();
        assert!(pooled > 0, "dropped read buffers go back to the pool");
        assert!(pooled <= READ_POOL, "the pool holds {pooled} bytes");
    }

    #[tokio::test]
    async fn ranged_reads_of_a_recycled_file_see_only_its_object() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path().join("o")).unwrap();
        s.put("a/old", Bytes::from(vec![0xeeu8; 4096]))
            .await
            .unwrap();
        s.delete("a/old").await.unwrap();
        assert_eq!(s.free.files.lock().unwrap().len(), 1);
        s.put("a/new", Bytes::from_static(b"fresh bytes"))
            .await
            .unwrap();
        assert!(
            s.free.files.lock().unwrap().is_empty(),
            "the put reused the old file"
        );
        assert_eq!(
            &s.get_range("a/new", 0..4096).await.unwrap()[..],
            b"fresh bytes"
        );
        assert_eq!(&s.get_range("a/new", 6..100).await.unwrap()[..], b"bytes");
        assert!(s.get_range("a/new", 11..4096).await.unwrap().is_empty());
        assert!(s.get_range("a/new", 100..200).await.unwrap().is_empty());
        assert!(matches!(
            s.get_range("a/old", 0..10).await,
            Err(StoreError::NotFound(_))
        ));
    }
}
