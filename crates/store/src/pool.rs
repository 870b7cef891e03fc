//! [`BufPool`]: large I/O buffers kept for reuse, and handed out as
//! [`Bytes`] that come back to the pool when their last reference drops.
//!
//! A copy job moves every byte through buffers of a few MiB: read buffers
//! (ciphertext, in [`crate::LocalStore`]), the windows a volume reads into
//! (plaintext, in `coffer-volume`) and the objects it seals (ciphertext).
//! Allocated fresh, each costs a page fault and the kernel's zeroing of
//! every page (and, on a VM whose free memory the host takes back, the
//! host handing the page over again), then the allocator's own zeroing: a
//! profile of a 1 GiB copy put 21% of its samples there before the windows
//! were pooled (docs/PERFORMANCE.md). A pooled buffer costs neither.
//!
//! What a buffer held stays in it until the next user overwrites it: a
//! pool's user must never expose bytes it did not write (the volume's
//! reads write every byte of their window; the store's reads hand out only
//! the bytes read). A pool holds at most its capacity in idle buffers and
//! frees the rest; it keeps only buffers of at least its minimum size (a
//! small buffer costs little to allocate, and a pool full of small ones
//! would crowd out the large ones), and hands a buffer out only for a
//! request of at least half its size. Idle buffers are process memory like
//! any freed heap memory, never written anywhere (docs/SECURITY.md).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// Idle buffers for reuse, at most `cap` bytes of them, each of at least
/// `min` bytes.
#[derive(Debug)]
pub struct BufPool {
    /// The idle buffers, and their bytes in all.
    idle: Mutex<(Vec<Vec<u8>>, usize)>,
    cap: usize,
    min: usize,
}

impl BufPool {
    /// A pool that keeps at most `cap` bytes of idle buffers of at least
    /// `min` bytes each.
    pub fn new(cap: usize, min: usize) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new((Vec::new(), 0)),
            cap,
            min,
        })
    }

    /// A buffer of at least `len` bytes (its `len()`): the smallest idle
    /// one that fits and is at most twice `len`, or a new one. Its bytes
    /// are unspecified (what its last user left, or zeroes).
    pub fn take(&self, len: usize) -> Vec<u8> {
        self.take_idle(len).unwrap_or_else(|| vec![0u8; len])
    }

    /// An empty buffer with room for at least `cap` bytes, to fill by
    /// appending: an idle one, cleared, or a new one (not zeroed).
    pub fn take_empty(&self, cap: usize) -> Vec<u8> {
        match self.take_idle(cap) {
            Some(mut b) => {
                b.clear();
                b
            }
            None => Vec::with_capacity(cap),
        }
    }

    /// The smallest idle buffer of `len` to `2 * len` bytes, if any.
    fn take_idle(&self, len: usize) -> Option<Vec<u8>> {
        let found = (len >= self.min / 2).then(|| {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let (bufs, bytes) = &mut *idle;
            let best = bufs
                .iter()
                .enumerate()
                .filter(|(_, b)| b.len() >= len && b.len() / 2 <= len)
                .min_by_key(|(_, b)| b.len())
                .map(|(i, _)| i)?;
            let b = bufs.swap_remove(best);
            *bytes -= b.len();
            Some(b)
        });
        found.flatten()
    }

    /// Keep `buf` for another user if it is large enough and the pool has
    /// room; else free it. A buffer shorter than its capacity (one cleared
    /// and refilled) is kept at its capacity.
    pub fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() < self.min {
            return;
        }
        if buf.len() < buf.capacity() {
            buf.resize(buf.capacity(), 0);
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let (bufs, bytes) = &mut *idle;
        if *bytes + buf.len() <= self.cap {
            *bytes += buf.len();
            bufs.push(buf);
        }
    }

    /// `buf[at..at + len]` as [`Bytes`]; `buf` comes back to this pool
    /// when the last `Bytes` of it drops.
    ///
    /// # Panics
    /// If `at + len` is past the buffer's end.
    pub fn bytes(self: &Arc<Self>, buf: Vec<u8>, at: usize, len: usize) -> Bytes {
        assert!(at + len <= buf.len(), "a pooled piece inside its buffer");
        Bytes::from_owner(Pooled {
            buf,
            at,
            len,
            pool: Arc::clone(self),
        })
    }

    /// Bytes of idle buffers held now.
    pub fn idle_bytes(&self) -> usize {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).1
    }
}

/// A piece of a pooled buffer, given back to its pool on drop.
struct Pooled {
    buf: Vec<u8>,
    at: usize,
    len: usize,
    pool: Arc<BufPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.at..self.at + self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_their_last_bytes_drop_and_the_pool_stays_bounded() {
        let pool = BufPool::new(3 << 20, 4096);
        let mut b = pool.take(1 << 20);
        b.fill(7);
        let whole = pool.bytes(b, 16, 1000);
        let piece = whole.slice(10..20);
        drop(whole);
        assert_eq!(pool.idle_bytes(), 0, "a slice still holds it");
        assert_eq!(&piece[..], &[7u8; 10]);
        drop(piece);
        assert_eq!(pool.idle_bytes(), 1 << 20);
        // Not for a request of less than half its size.
        assert_eq!(pool.take(4096).len(), 4096);
        // Reused: the same buffer, its old bytes still there.
        let again = pool.take(600 << 10);
        assert_eq!(again.len(), 1 << 20);
        assert_eq!(again[0], 7);
        assert_eq!(pool.idle_bytes(), 0);
        // The smallest that fits is taken.
        pool.give(vec![0; 2 << 20]);
        pool.give(again);
        assert_eq!(pool.take(1 << 20).len(), 1 << 20);
        // Past the cap, buffers are freed; too small ones are not kept.
        pool.give(vec![0; 1 << 20]);
        pool.give(vec![0; 1 << 20]);
        pool.give(vec![0; 100]);
        assert_eq!(pool.idle_bytes(), 3 << 20);
        assert_eq!(pool.take(8 << 20).len(), 8 << 20, "none fits: a new one");
        // A cleared buffer is kept at its capacity.
        let mut c = pool.take(2 << 20);
        c.clear();
        c.extend_from_slice(&[1, 2, 3]);
        let cap = c.capacity();
        pool.give(c);
        assert_eq!(pool.take(cap).len(), cap);
    }
}
