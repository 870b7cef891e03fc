//! The write path of `coffer-volume`, against real metadata (this run's
//! backend via `coffer-testkit`: SQLite in the test's directory by default)
//! and an in-memory object store wrapped in [`Rigged`], which can hold puts
//! at a gate, fail a chosen put, fail every put, fail `sync`, and make gets
//! yield (so requests really interleave).
//!
//! - partial writes at unaligned offsets and lengths straddling chunk
//!   boundaries read back exactly (against a byte model), through cache,
//!   pending objects and committed objects, and after a reopen;
//! - back-pressure: with the store stalled, writers wait once the dirty data
//!   reaches twice the high-water mark, and nothing is lost when it resumes;
//!   with the store failing, writes are refused past that mark and change
//!   nothing;
//! - flush: a fresh open sees flushed data and never unflushed data; a failed
//!   put or sync makes flush fail, loses nothing, commits nothing, and a retry
//!   commits everything;
//! - commits off the writers' path: while a commit waits (its `sync`
//!   stalled), writers go on writing back; when it fails its extents go
//!   back to pending under newer ones, and the next flush commits all;
//! - snapshot races: a snapshot taken while requests spanning several chunks
//!   are in flight holds each request wholly or not at all, holds every
//!   request acknowledged before it started and none started after it
//!   returned, and later writes never leak into it;
//! - writes through to the store (a copy's target): several at once read
//!   back from the store at once, commit at the next flush, and are
//!   refused past the end and once the volume is fenced;
//! - commits without a flush: a disk overwritten again and again commits
//!   every 256 MiB put and drops what it superseded, in whole requests;
//! - data keys: the reads that miss a key in the volume's cache at once
//!   share one ask of the key source, its refusal included.
//!
//! Randomised tests print their seed; set `COFFER_TEST_SEED` to replay one.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use coffer_store::StoreError;
use coffer_volume::{Volume, VolumeError};
use common::*;

// ---------------------------------------------------------------------------
// Partial writes.

#[tokio::test]
async fn partial_writes_straddling_chunks_read_back_exactly() {
    const CS: u32 = 4096;
    let f = Fixture::new(CS, 16).await;
    let cs = f.chunk;
    let store = Rigged::new();
    store.yield_on_get.store(true, Ordering::SeqCst);
    // A small high-water mark: write-back runs in the background often, so
    // partial writes patch chunks held in the cache, in pending objects and
    // in committed objects.
    let mut v = f.open(&store, config(2 * cs)).await;
    let mut model = vec![0u8; usz(f.size)];
    let seed = seed();
    let mut rng = Rng(seed | 1);

    // Edges first, then random requests.
    let mut ops: Vec<(u64, u64, bool)> = vec![
        (0, 1, false),
        (cs - 1, 2, false),
        (3 * cs + 5, 2 * cs + 10, false),
        (f.size - 1, 1, false),
        (cs, cs, false),
        (5 * cs - 7, 14, true),
        (1, f.size - 2, false),
        (2 * cs + 100, 3 * cs, true),
        (7 * cs + 1, cs - 2, false),
    ];
    for _ in 0..150 {
        let len = 1 + rng.below(3 * cs);
        let off = rng.below(f.size - len + 1);
        ops.push((off, len, rng.below(5) == 0));
    }
    let mut flushes = 0;
    let mut reopens = 0;
    for (i, &(off, len, zero)) in ops.iter().enumerate() {
        let ctx = format!("op {i} ({off}+{len}, zeroes {zero}), seed {seed}");
        let range = usz(off)..usz(off + len);
        if zero {
            v.write_zeroes(off, len, false).await.unwrap();
            model[range].fill(0);
        } else {
            let data = rng.bytes(usz(len));
            model[range.clone()].copy_from_slice(&data);
            v.write(off, Bytes::from(data), false).await.unwrap();
        }
        assert!(
            read_all(&v).await == model,
            "whole disk differs after {ctx}"
        );
        // An unaligned read around the request.
        let (a, b) = (off.saturating_sub(cs / 2), (off + len + cs / 2).min(f.size));
        assert_eq!(
            &v.read(a, b - a).await.unwrap()[..],
            &model[usz(a)..usz(b)],
            "read {a}..{b} after {ctx}"
        );
        match rng.below(10) {
            0 => {
                v.flush().await.unwrap();
                flushes += 1;
            }
            1 => {
                v.close().await.unwrap();
                v = f.open(&store, config(2 * cs)).await;
                reopens += 1;
                assert!(read_all(&v).await == model, "after reopen, {ctx}");
            }
            _ => {}
        }
    }
    v.close().await.unwrap();
    let fresh = f.open_fresh(&store).await;
    assert!(
        read_all(&fresh).await == model,
        "a fresh open after close (seed {seed})"
    );
    println!(
        "{} requests, {flushes} flushes, {reopens} reopens, {} puts",
        ops.len(),
        store.puts.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn requests_beyond_the_end_are_refused_and_change_nothing() {
    let f = Fixture::new(4096, 4).await;
    let store = Rigged::new();
    let v = f.open(&store, config(1 << 20)).await;
    v.write(f.size - 10, Bytes::from(vec![7u8; 10]), false)
        .await
        .unwrap();
    for (off, len) in [(f.size - 9, 10), (f.size, 1), (u64::MAX, 2)] {
        let r = v.write(off, Bytes::from(vec![9u8; len]), false).await;
        assert!(
            matches!(r, Err(VolumeError::OutOfRange { .. })),
            "{off}+{len}: {r:?}"
        );
        let r = v.write_zeroes(off, len as u64, false).await;
        assert!(matches!(r, Err(VolumeError::OutOfRange { .. })), "{r:?}");
        assert!(matches!(
            v.read(off, len as u64).await,
            Err(VolumeError::OutOfRange { .. })
        ));
    }
    let tail = v.read(f.size - 16, 16).await.unwrap();
    assert_eq!(&tail[..6], &[0u8; 6]);
    assert_eq!(&tail[6..], &[7u8; 10]);
}

#[tokio::test]
async fn a_request_that_fails_half_way_changes_nothing() {
    const CS: u32 = 4096;
    let f = Fixture::new(CS, 4).await;
    let cs = f.chunk;
    let store = Rigged::new();
    let v = f.open(&store, config(1 << 20)).await;
    let old = content(1, usz(4 * cs));
    v.write(0, Bytes::from(old.clone()), false).await.unwrap();
    v.flush().await.unwrap();
    // Whole chunks 0 and 1 need nothing old; the partial piece in chunk 2
    // must read its chunk, and that read fails.
    store.fail_gets.store(true, Ordering::SeqCst);
    let r = v
        .write(0, Bytes::from(vec![0xeeu8; usz(2 * cs + 10)]), false)
        .await;
    assert!(matches!(r, Err(VolumeError::Store(_))), "{r:?}");
    let r = v.write_zeroes(cs, cs + 10, false).await;
    assert!(matches!(r, Err(VolumeError::Store(_))), "{r:?}");
    store.fail_gets.store(false, Ordering::SeqCst);
    assert!(
        read_all(&v).await == old,
        "a refused request left some of its chunks changed"
    );
    v.flush().await.unwrap();
    assert!(read_all(&*f.open_fresh(&store).await).await == old);
}

// ---------------------------------------------------------------------------
// Back-pressure.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_store_makes_writers_wait_and_loses_nothing() {
    const CS: u32 = 4096;
    const WRITERS: u64 = 4;
    const PER_WRITER: u64 = 16;
    let f = Fixture::new(CS, WRITERS * PER_WRITER).await;
    let cs = f.chunk;
    let hw = 4 * cs;
    let store = Rigged::new();
    store.set_gate(false);
    let v = f.open(&store, config(hw)).await;
    let done = Arc::new(AtomicU64::new(0));
    let max_dirty = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (v, done, max_dirty) = (v.clone(), done.clone(), max_dirty.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                let idx = i * WRITERS + w;
                v.write(idx * cs, Bytes::from(content(idx, usz(cs))), false)
                    .await?;
                max_dirty.fetch_max(v.dirty_bytes() as u64, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, VolumeError>(())
        }));
    }
    // With every put held, one write-back is stuck holding what the dirty
    // set had when it started, and the dirty set may grow only while the
    // two together stay under 2 * hw (plus one request per writer passing
    // the check at once). Beyond that every writer must wait.
    let bound = 2 * hw / cs + WRITERS;
    let total = WRITERS * PER_WRITER;
    let mut polls = 0;
    while polls < 100 {
        let n = done.load(Ordering::SeqCst);
        assert!(
            n <= bound,
            "{n} writes completed with the store stalled (bound {bound}): no back-pressure"
        );
        assert!(
            !tasks.iter().all(|t| t.is_finished()),
            "every write completed with the store stalled: no back-pressure"
        );
        polls += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        store.held.load(Ordering::SeqCst) > 0,
        "a write-back is waiting on the store"
    );
    assert!(
        max_dirty.load(Ordering::SeqCst) <= 2 * hw + WRITERS * cs,
        "dirty data grew to {} bytes",
        max_dirty.load(Ordering::SeqCst)
    );
    let stalled_at = done.load(Ordering::SeqCst);
    store.set_gate(true);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), total);
    v.flush().await.unwrap();
    let fresh = f.open_fresh(&store).await;
    for idx in 0..total {
        assert!(
            fresh.read(idx * cs, cs).await.unwrap()[..] == content(idx, usz(cs))[..],
            "chunk {idx} lost"
        );
    }
    println!(
        "writers stalled after {stalled_at} of {total} writes; max dirty {} bytes (hw {hw})",
        max_dirty.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn a_failing_store_refuses_writes_past_the_mark_and_keeps_acknowledged_ones() {
    const CS: u32 = 4096;
    let f = Fixture::new(CS, 32).await;
    let cs = f.chunk;
    let hw = 2 * cs;
    let store = Rigged::new();
    let v = f.open(&store, config(hw)).await;
    // Committed content to fall back on: chunk i holds content(1000 + i).
    for i in 0..32 {
        v.write(i * cs, Bytes::from(content(1000 + i, usz(cs))), false)
            .await
            .unwrap();
    }
    v.flush().await.unwrap();

    store.fail_all_puts.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..32u64 {
        // Partial writes (they read the committed chunk and patch it).
        let data = content(i, usz(cs / 2));
        match v.write(i * cs + 1, Bytes::from(data), false).await {
            Ok(()) => acked.push(i),
            Err(e) => {
                assert!(matches!(e, VolumeError::Store(_)), "{e}");
                refused = Some(i);
                break;
            }
        }
    }
    let refused = refused.expect("writes past twice the high-water mark are refused");
    // At most twice the mark in the dirty set, and as much again in a
    // background write-back still failing when the check ran.
    assert!(
        refused <= 4 * hw / cs,
        "refused only at write {refused}: the cache grew past twice the high-water mark"
    );
    assert!(v.dirty_bytes() as u64 <= 4 * hw);
    let expect = |i: u64, patched: bool| {
        let mut c = content(1000 + i, usz(cs));
        if patched {
            c[1..1 + usz(cs / 2)].copy_from_slice(&content(i, usz(cs / 2)));
        }
        c
    };
    // Acknowledged writes read back from the cache; the refused one changed nothing.
    for i in 0..32 {
        let want = expect(i, acked.contains(&i));
        assert!(
            v.read(i * cs, cs).await.unwrap()[..] == want[..],
            "chunk {i}"
        );
    }
    assert!(v.flush().await.is_err(), "flush fails while puts fail");
    store.fail_all_puts.store(false, Ordering::SeqCst);
    v.flush().await.unwrap();
    let fresh = f.open_fresh(&store).await;
    for i in 0..32 {
        let want = expect(i, acked.contains(&i));
        assert!(
            fresh.read(i * cs, cs).await.unwrap()[..] == want[..],
            "chunk {i} after the store recovered"
        );
    }
    println!(
        "{} writes acknowledged, write {refused} refused",
        acked.len()
    );
}

// ---------------------------------------------------------------------------
// Flush.

#[tokio::test]
async fn flush_commits_so_a_fresh_open_sees_the_data_and_never_before() {
    const CS: u32 = 4096;
    let f = Fixture::new(CS, 8).await;
    let cs = f.chunk;
    let store = Rigged::new();
    // High-water of one chunk: write-back puts objects in the background,
    // but only a flush may name them in the chunk map.
    let v = f.open(&store, config(cs)).await;
    let mut model = vec![0u8; usz(f.size)];
    for (off, len) in [(0, 3 * cs), (3 * cs + 17, cs), (6 * cs - 1, 2 * cs + 1)] {
        let d = content(off, usz(len));
        model[usz(off)..usz(off + len)].copy_from_slice(&d);
        v.write(off, Bytes::from(d), false).await.unwrap();
    }
    v.write_zeroes(cs + 5, cs, false).await.unwrap();
    model[usz(cs + 5)..usz(2 * cs + 5)].fill(0);
    assert!(read_all(&v).await == model);
    let before = f.open_fresh(&store).await;
    assert!(
        read_all(&before).await.iter().all(|&b| b == 0),
        "unflushed writes are not in the chunk map"
    );
    v.flush().await.unwrap();
    let after = f.open_fresh(&store).await;
    assert!(read_all(&after).await == model, "flushed writes are");
    // A second round over the same chunks: the newest content wins.
    let d = content(99, usz(2 * cs));
    model[usz(cs / 2)..usz(cs / 2 + 2 * cs)].copy_from_slice(&d);
    v.write(cs / 2, Bytes::from(d), true).await.unwrap(); // FUA: durable on return
    let after = f.open_fresh(&store).await;
    assert!(read_all(&after).await == model, "a FUA write is durable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_read_from_the_store_at_once_and_commit_at_the_next_flush() {
    const CS: u32 = 4096;
    let f = Fixture::new(CS, 16).await;
    let cs = f.chunk;
    let store = Rigged::new();
    // As a copy's target: packed objects, and a high-water mark no write
    // here reaches (what is read back is not in the cache).
    let v = f
        .open(
            &store,
            coffer_volume::VolumeConfig {
                pack_chunks: true,
                ..config(64 * cs)
            },
        )
        .await;
    let mut model = vec![0u8; usz(f.size)];
    // Several at once, over different chunks: whole runs, and a piece
    // that starts and ends inside chunks (its chunks completed with
    // zeroes, as the fresh disk reads).
    let ranges = [
        (0, 4 * cs),
        (4 * cs, 3 * cs),
        (8 * cs + 100, cs + 50),
        (12 * cs, 4 * cs),
    ];
    let mut tasks = vec![];
    for (i, &(off, len)) in ranges.iter().enumerate() {
        let d = content(i as u64 + 1, usz(len));
        model[usz(off)..usz(off + len)].copy_from_slice(&d);
        let v = v.clone();
        tasks.push(tokio::spawn(async move {
            v.write_through(off, Bytes::from(d)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        v.dirty_bytes(),
        0,
        "nothing of it waits in the write-back cache"
    );
    let puts = store.puts.load(Ordering::SeqCst);
    assert!(puts >= 4, "each write put its own objects ({puts} puts)");
    assert!(
        read_all(&v).await == model,
        "read back from the store at once"
    );
    assert!(
        read_all(&*f.open_fresh(&store).await)
            .await
            .iter()
            .all(|&b| b == 0),
        "not committed before a flush"
    );
    v.flush().await.unwrap();
    assert!(
        read_all(&*f.open_fresh(&store).await).await == model,
        "committed by the flush"
    );
    // Refused like any write past the end, and once the volume is fenced.
    let err = v.write_through(f.size - 1, Bytes::from_static(b"ab")).await;
    assert!(
        matches!(err, Err(VolumeError::OutOfRange { .. })),
        "{err:?}"
    );
    v.fence();
    let err = v.write_through(0, Bytes::from(vec![1; usz(cs)])).await;
    assert!(matches!(err, Err(VolumeError::Closed)), "{err:?}");
    assert!(
        read_all(&*f.open_fresh(&store).await).await == model,
        "the refused writes changed nothing"
    );
}

/// Version `ver` of the 8-chunk test disk, with a partial write in chunk 2.
fn version(ver: u64, cs: u64) -> Vec<u8> {
    content(ver, usz(8 * cs))
}

async fn write_version(v: &Arc<Volume>, ver: u64, cs: u64) {
    let d = version(ver, cs);
    // Unaligned pieces, covering everything.
    let cuts = [0, cs / 3, 2 * cs + 5, 5 * cs, 8 * cs];
    for w in cuts.windows(2) {
        let piece = Bytes::from(d[usz(w[0])..usz(w[1])].to_vec());
        v.write(w[0], piece, false).await.unwrap();
    }
}

#[tokio::test]
async fn a_failed_put_fails_flush_loses_nothing_commits_nothing_and_a_retry_succeeds() {
    const CS: u32 = 4096;
    let f = Fixture::new(CS, 8).await;
    let cs = f.chunk;
    let store = Rigged::new();
    let v = f.open(&store, config(1 << 20)).await;
    write_version(&v, 1, cs).await;
    v.flush().await.unwrap();
    write_version(&v, 2, cs).await;
    store.fail_nth_put_from_now(3);
    let e = v.flush().await.expect_err("flush with a failed put");
    assert!(
        matches!(e, VolumeError::Store(StoreError::Io { .. })),
        "{e}"
    );
    assert!(
        read_all(&v).await == version(2, cs),
        "nothing written is lost"
    );
    assert!(
        read_all(&*f.open_fresh(&store).await).await == version(1, cs),
        "nothing of the failed flush is committed"
    );
    v.flush().await.unwrap();
    assert!(read_all(&*f.open_fresh(&store).await).await == version(2, cs));
}

#[tokio::test]
async fn a_failed_sync_fails_flush_commits_nothing_and_a_retry_succeeds() {
    const CS: u32 = 4096;
    let f = Fixture::new(CS, 8).await;
    let cs = f.chunk;
    let store = Rigged::new();
    let v = f.open(&store, config(1 << 20)).await;
    write_version(&v, 1, cs).await;
    v.flush().await.unwrap();
    write_version(&v, 2, cs).await;
    store.fail_sync.store(true, Ordering::SeqCst);
    let e = v.flush().await.expect_err("flush with a failed sync");
    assert!(
        matches!(e, VolumeError::Store(StoreError::Io { .. })),
        "{e}"
    );
    // More writes while the objects wait, uncommitted, for a sync.
    let d = content(3, usz(cs));
    v.write(4 * cs, Bytes::from(d.clone()), false)
        .await
        .unwrap();
    let mut want = version(2, cs);
    want[usz(4 * cs)..usz(5 * cs)].copy_from_slice(&d);
    assert!(read_all(&v).await == want, "nothing written is lost");
    assert!(
        read_all(&*f.open_fresh(&store).await).await == version(1, cs),
        "nothing is committed before the sync succeeds"
    );
    store.fail_sync.store(false, Ordering::SeqCst);
    v.flush().await.unwrap();
    assert!(read_all(&*f.open_fresh(&store).await).await == want);
}

// ---------------------------------------------------------------------------
// Commits off the writers' path.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_go_on_while_a_commit_waits_and_a_failed_commit_loses_nothing() {
    // One-sector chunks: every write is an extent of its own, so 20,000
    // writes pass the 16,384 pending extents that start a commit.
    const CS: u32 = 4096;
    const N: u64 = 20_000;
    let f = Fixture::new(CS, N).await;
    let cs = f.chunk;
    let store = Rigged::new();
    // A small high-water mark: a write-back every 16 writes, and writers
    // wait for one at 32.
    let v = f.open(&store, config(64 << 10)).await;
    store.sync_gate.send_replace(false);
    let writes = async {
        for i in 0..N {
            v.write(i * cs, Bytes::from(content(i, usz(cs))), false)
                .await
                .unwrap();
        }
    };
    // A hang guard, not a timed assertion: before commits ran beside
    // writers, the first write-back after the commit started waited for it.
    tokio::time::timeout(std::time::Duration::from_secs(120), writes)
        .await
        .expect("writers were held behind a commit waiting at its sync");
    wait_until("a background commit waiting at sync", || {
        store.syncs_held.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(v.dirty_bytes() < 2 * (64 << 10), "writes were written back");
    // The commit fails; newer writes land over the sectors it held.
    store.fail_sync.store(true, Ordering::SeqCst);
    store.sync_gate.send_replace(true);
    wait_until("the failed commit to end", || {
        store.syncs_held.load(Ordering::SeqCst) == 0
    })
    .await;
    for i in (0..N).step_by(7) {
        v.write(i * cs, Bytes::from(content(N + i, usz(cs))), false)
            .await
            .unwrap();
    }
    let want = |i: u64| content(if i.is_multiple_of(7) { N + i } else { i }, usz(cs));
    for i in (0..N).step_by(97) {
        assert!(
            v.read(i * cs, cs).await.unwrap()[..] == want(i)[..],
            "sector {i} reads its last write"
        );
    }
    let fresh = f.open_fresh(&store).await;
    assert!(
        fresh.read(0, cs).await.unwrap().iter().all(|b| *b == 0),
        "nothing is committed while sync fails"
    );
    store.fail_sync.store(false, Ordering::SeqCst);
    v.flush().await.unwrap();
    let fresh = f.open_fresh(&store).await;
    for i in (0..N).step_by(13) {
        assert!(
            fresh.read(i * cs, cs).await.unwrap()[..] == want(i)[..],
            "sector {i} committed with its last write"
        );
    }
}

#[tokio::test]
async fn a_flush_dropped_while_it_commits_loses_nothing() {
    const CS: u32 = 4096;
    let f = Fixture::new(CS, 8).await;
    let cs = f.chunk;
    let store = Rigged::new();
    let v = f.open(&store, config(1 << 20)).await;
    write_version(&v, 1, cs).await;
    store.sync_gate.send_replace(false);
    // The caller goes away (a client disconnects) while the commit waits.
    tokio::select! {
        _ = v.flush() => panic!("the flush passed a closed sync gate"),
        () = wait_until("the commit at sync", || store.syncs_held.load(Ordering::SeqCst) == 1) => {}
    }
    store.sync_gate.send_replace(true);
    v.flush().await.unwrap();
    assert!(
        read_all(&*f.open_fresh(&store).await).await == version(1, cs),
        "the next flush commits what the dropped one had taken"
    );
}

// ---------------------------------------------------------------------------
// Snapshot races.

/// Poll `cond` until it holds; a hang guard (60 s), not a timed assertion.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_micros(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_during_writes_hold_whole_requests_and_nothing_later() {
    const CS: u32 = 4096;
    const WRITERS: u64 = 3;
    const REGION: u64 = 6; // chunks per writer
    const SNAPS: u64 = 40;
    const AHEAD: u64 = 6; // versions a writer may run ahead of the snapshots
    let f = Fixture::new(CS, WRITERS * REGION).await;
    let cs = f.chunk;
    let store = Rigged::new();
    // Gets take a millisecond, as a remote store's would (S3's take
    // more): a request's partial piece that reads its chunk suspends
    // between the request's other pieces.
    store.get_delay_us.store(1000, Ordering::SeqCst);
    // A high-water mark of one chunk: background write-back runs all the
    // time, so the partial pieces of requests patch chunks read from objects.
    let v = f.open(&store, config(cs)).await;
    let last = (SNAPS + 1) * AHEAD; // each writer's last version
    // Writer w owns bytes [w*REGION*cs + 100, (w+1)*REGION*cs - 100): every
    // request rewrites it whole (unaligned at both ends, over REGION chunks)
    // with one byte value, the request's version.
    let region = move |w: u64| (w * REGION * cs + 100, REGION * cs - 200);
    let started: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let snaps_done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (v, started, acked, snaps_done) = (
            v.clone(),
            started.clone(),
            acked.clone(),
            snaps_done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (off, len) = region(w);
            for ver in 1..=last {
                // Stay within AHEAD versions of the snapshots, so that each
                // snapshot falls while this writer is writing.
                wait_until("the next snapshot", || {
                    ver <= (snaps_done.load(Ordering::SeqCst) + 1) * AHEAD
                })
                .await;
                started[usz(w)].store(ver, Ordering::SeqCst);
                let fill = u8::try_from(ver).unwrap();
                v.write(off, Bytes::from(vec![fill; usz(len)]), false)
                    .await
                    .unwrap();
                acked[usz(w)].store(ver, Ordering::SeqCst);
            }
        }));
    }
    let seed = seed();
    let mut rng = Rng(seed | 1);
    // (generation, acked before it started, started when it returned)
    let mut snaps = Vec::new();
    for s in 0..SNAPS {
        // Wait until every writer is half way through this round.
        wait_until("the writers", || {
            (0..WRITERS).all(|w| acked[usz(w)].load(Ordering::SeqCst) >= s * AHEAD + AHEAD / 2)
        })
        .await;
        // A random moment within a request or two.
        tokio::time::sleep(std::time::Duration::from_micros(rng.below(3000))).await;
        let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        let row = v.snapshot(f.snapshot_row(&format!("s{s}"))).await.unwrap();
        let after: Vec<u64> = started.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        snaps_done.fetch_add(1, Ordering::SeqCst);
        snaps.push((row.generation, before, after));
    }
    for t in tasks {
        t.await.unwrap();
    }
    v.flush().await.unwrap();

    // Snapshots with a request of some writer in flight while they ran.
    let raced = snaps
        .iter()
        .filter(|(_, before, after)| (0..WRITERS).any(|w| before[usz(w)] < after[usz(w)]))
        .count();
    let mut inside = 0;
    let mut seen = Vec::new();
    for (i, (generation, before, after)) in snaps.iter().enumerate() {
        assert_eq!(*generation, i as u64, "one generation per snapshot");
        let view = f.open_view(&store, *generation).await;
        let mut vers = Vec::new();
        for w in 0..WRITERS {
            let (off, len) = region(w);
            let got = view.read(off, len).await.unwrap();
            let ver = u64::from(got[0]);
            if let Some(p) = got.iter().position(|&b| u64::from(b) != ver) {
                panic!(
                    "snapshot {i}, writer {w}: torn request: version {ver} at the start, {} at byte {p} of {len} (seed {seed})",
                    got[p]
                );
            }
            assert!(
                before[usz(w)] <= ver && ver <= after[usz(w)],
                "snapshot {i}, writer {w}: holds version {ver}, but versions up to {} were acknowledged before it and only up to {} started before it returned",
                before[usz(w)],
                after[usz(w)]
            );
            if 0 < ver && ver < last {
                inside += 1;
            }
            vers.push(ver);
        }
        seen.push(vers);
    }
    assert!(
        inside > 0,
        "no snapshot fell between a writer's first and last request"
    );
    // Later writes (to the end, and the flush) did not leak into any snapshot.
    for (i, (generation, _, _)) in snaps.iter().enumerate() {
        let view = f.open_view(&store, *generation).await;
        for w in 0..WRITERS {
            let (off, len) = region(w);
            let got = view.read(off, len).await.unwrap();
            assert!(
                got.iter().all(|&b| u64::from(b) == seen[i][usz(w)]),
                "snapshot {i} changed after later writes"
            );
        }
    }
    let head = f.open_fresh(&store).await;
    for w in 0..WRITERS {
        let (off, len) = region(w);
        assert!(
            head.read(off, len)
                .await
                .unwrap()
                .iter()
                .all(|&b| u64::from(b) == last)
        );
    }
    println!(
        "snapshot versions per writer: {seen:?}; {raced} of {SNAPS} snapshots ran with a request in flight"
    );
}

// ---------------------------------------------------------------------------
// Commits without a flush.

/// A disk overwritten again and again without a flush still commits, once
/// 256 MiB of objects were put since the last commit, and then deletes the
/// objects the overwrites superseded. Overwrites of the same chunks keep
/// the pending extents at one per chunk, so the extent count alone never
/// starts a commit here: without the bytes rule nothing would be committed,
/// and every object put (1,152 of them) kept, until a flush. What a fresh
/// open sees is whole requests of one instant: each 1 MiB write entirely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrites_without_a_flush_commit_every_256_mib_and_drop_what_they_supersede() {
    const CS: u32 = 256 * 1024;
    const MIB: u64 = 1 << 20;
    let f = Fixture::new(CS, 16).await; // 4 MiB
    let store = Rigged::new();
    let v = f.open(&store, config(MIB)).await;
    let regions = f.size / MIB;
    let passes = 72; // 288 MiB written, never flushed: 1,152 chunk objects
    for p in 0..passes {
        for r in 0..regions {
            let d = content(p * regions + r, usz(MIB));
            v.write(r * MIB, Bytes::from(d), false).await.unwrap();
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.inner.len() >= 600 {
        assert!(
            std::time::Instant::now() < deadline,
            "superseded objects dropped by a commit without a flush ({} stored)",
            store.inner.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    println!("{} objects stored after 1,152 put", store.inner.len());
    let fresh = f.open_fresh(&store).await;
    let seen = read_all(&fresh).await;
    for (r, got) in seen.chunks(usz(MIB)).enumerate() {
        let r = r as u64;
        assert!(
            (0..passes).any(|p| got[..64] == content(p * regions + r, 64)[..]
                && got == &content(p * regions + r, usz(MIB))[..]),
            "1 MiB region {r} of the committed disk is one write's content, whole"
        );
    }
}

/// Counts the DEKs it is asked for, each answer taking a while (the
/// metadata queries and the unwrap behind a real key source); knows only
/// the keys it holds.
struct CountingDeks {
    keys: std::collections::HashMap<coffer_types::Id, coffer_crypto::SecretKey>,
    asked: AtomicU64,
}

#[async_trait::async_trait]
impl coffer_volume::DekSource for CountingDeks {
    async fn dek(&self, id: coffer_types::Id) -> Result<coffer_crypto::SecretKey, String> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        self.keys
            .get(&id)
            .cloned()
            .ok_or_else(|| "the key is disabled".into())
    }
}

/// A disk made from a snapshot reads the snapshot's chunks under the DEK
/// that wrote them, which it does not write under: its first reads start
/// many fetches at once that all miss that key. The key source is asked
/// once while they wait, not once per fetch (each ask is several metadata
/// queries, all queued on SQLite's one connection at the start of every
/// copy), and a failed ask fails them all at once, not one ask after
/// another.
#[tokio::test]
async fn a_key_missing_from_the_cache_is_asked_for_once_by_the_reads_waiting_for_it() {
    const CS: u32 = 4096;
    const CHUNKS: u64 = 64;
    let f = Fixture::new(CS, CHUNKS).await;
    let store = Rigged::new();
    let v = f.open(&store, config(1 << 20)).await;
    let data = content(7, usz(CHUNKS * f.chunk));
    v.write(0, Bytes::from(data.clone()), false).await.unwrap();
    let snap = v.snapshot(f.snapshot_row("s")).await.unwrap();
    // A child writing under a DEK of its own, reading the snapshot's
    // chunks through a key source that knows the snapshot's DEK or not.
    let child = |knows: bool| {
        let (f, store) = (&f, &store);
        async move {
            let (child, own) = (
                coffer_types::Id::random(coffer_types::Kind::Volume),
                coffer_types::Id::random(coffer_types::Kind::Dek),
            );
            f.meta
                .insert_dek(&coffer_meta::DekRow {
                    id: own,
                    kek_id: f.kek,
                    kek_version: 1,
                    wrapped: b"wrapped-own".to_vec(),
                    encryption_set_id: None,
                })
                .await
                .unwrap();
            f.meta
                .create_volume(&coffer_meta::VolumeRow {
                    dek2_id: None,
                    id: child,
                    dek_id: own,
                    chunk_size: CS,
                    size: f.size,
                    parent: Some((f.vol, snap.generation)),
                    head_generation: 0,
                    live: true,
                    region: "local".into(),
                })
                .await
                .unwrap();
            let mut keys =
                std::collections::HashMap::from([(own, coffer_crypto::SecretKey::generate())]);
            if knows {
                keys.insert(f.dek_id, f.dek.clone());
            }
            let deks = Arc::new(CountingDeks {
                keys,
                asked: AtomicU64::new(0),
            });
            let c = Volume::open(
                f.meta.clone(),
                store.clone(),
                child,
                deks.clone(),
                config(1 << 20),
                None,
            )
            .await
            .unwrap();
            let opened = deks.asked.load(Ordering::SeqCst);
            (c, deks, opened)
        }
    };
    // Two reads at once, as a copy's windows read ahead.
    let half = f.size / 2;
    let (c, deks, opened) = child(true).await;
    let (a, b) = tokio::join!(c.read(0, half), c.read(half, half));
    assert!(
        [a.unwrap(), b.unwrap()].concat() == data,
        "the child reads the snapshot"
    );
    assert_eq!(
        deks.asked.load(Ordering::SeqCst) - opened,
        1,
        "the snapshot's DEK was asked for once"
    );
    // A key source that refuses the key: every read fails with one ask.
    let (c, deks, opened) = child(false).await;
    let (a, b) = tokio::join!(c.read(0, half), c.read(half, half));
    for r in [a, b] {
        assert!(matches!(r, Err(VolumeError::Key { .. })), "{r:?}");
    }
    assert_eq!(
        deks.asked.load(Ordering::SeqCst) - opened,
        1,
        "the refused DEK was asked for once, its refusal shared"
    );
    // Asked again after a refusal (the key may be enabled meanwhile).
    assert!(c.read(0, f.chunk).await.is_err());
    assert_eq!(deks.asked.load(Ordering::SeqCst) - opened, 2);
}
