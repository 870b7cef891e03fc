//! The storage path against a model: seeded random 512-byte-aligned and
//! 4 KiB writes, zeroings and whole-chunk writes, reads, flushes, snapshots
//! and restores from them, compaction (in the background after writes and
//! run on demand) and power cuts (the volume fenced without writing back,
//! then reopened as a restarted server opens it) at random points. After a
//! power cut the disk holds exactly what the last flush acknowledged; every
//! read, at any time, returns exactly what the model says; every snapshot
//! restores to what the disk held when it was taken.

mod common;

use std::sync::Arc;

use coffer_meta::Loc;
use coffer_volume::Volume;
use common::{Fixture, Rigged, Rng, config, read_all, seed, usz};

const CHUNK: u32 = 64 * 1024;
const CHUNKS: u64 = 12;

/// A write's range: 4 KiB-aligned sectors, 512-byte-aligned pieces, or a
/// run of whole chunks.
fn range(rng: &mut Rng, size: u64) -> (u64, u64) {
    let chunk = u64::from(CHUNK);
    let (off, len) = match rng.below(10) {
        0..=4 => (4096 * rng.below(size / 4096), 4096 * (1 + rng.below(6))),
        5..=8 => (512 * rng.below(size / 512), 512 * (1 + rng.below(24))),
        _ => (chunk * rng.below(CHUNKS), chunk * (1 + rng.below(2))),
    };
    (off, len.min(size - off))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_io_flushes_snapshots_compaction_and_power_cuts_match_a_model() {
    model_run(false).await;
}

/// The same with whole chunks packed into segments (as a copy job's target
/// writes them): partial overwrites, zeroes, compaction and power cuts over
/// packed chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_holds_when_whole_chunks_are_packed() {
    model_run(true).await;
}

async fn model_run(pack: bool) {
    let config = |hw| coffer_volume::VolumeConfig {
        pack_chunks: pack,
        ..config(hw)
    };
    let s = seed();
    let mut rng = Rng(s | 1);
    let f = Fixture::new(CHUNK, CHUNKS).await;
    let store = Rigged::new();
    let size = f.size;
    // A small high-water mark, so background write-back runs mid-sequence.
    let mut v: Arc<Volume> = f.open(&store, config(192 * 1024)).await;
    let mut model = vec![0u8; usz(size)];
    let mut durable = model.clone();
    let mut snapshots: Vec<(u64, Vec<u8>)> = Vec::new();
    let (mut cuts, mut restores, mut compacted, mut cleaned) = (0, 0, 0u64, 0u64);
    for step in 0..700 {
        let at = format!("seed {s}, step {step}");
        match rng.below(100) {
            0..=44 => {
                let (off, len) = range(&mut rng, size);
                let data = rng.bytes(usz(len));
                v.write(off, data.clone().into(), false).await.unwrap();
                model[usz(off)..usz(off + len)].copy_from_slice(&data);
            }
            45..=49 => {
                let (off, len) = range(&mut rng, size);
                v.write_zeroes(off, len, false).await.unwrap();
                model[usz(off)..usz(off + len)].fill(0);
            }
            50..=64 => {
                let (off, len) = range(&mut rng, size);
                let got = v.read(off, len).await.unwrap();
                assert!(
                    got[..] == model[usz(off)..usz(off + len)],
                    "{at}: read {off}+{len} differs from the model"
                );
            }
            65..=76 => {
                v.flush().await.unwrap();
                durable.clone_from(&model);
            }
            77..=81 => {
                let row = v
                    .snapshot(f.snapshot_row(&format!("s{step}")))
                    .await
                    .unwrap();
                durable.clone_from(&model);
                snapshots.push((row.generation, model.clone()));
            }
            82..=85 if !snapshots.is_empty() => {
                let (generation, want) = &snapshots[usz(rng.below(snapshots.len() as u64))];
                let view = f.open_view(&store, *generation).await;
                assert!(
                    read_all(&view).await == *want,
                    "{at}: the restore of generation {generation} differs from the disk it was taken from"
                );
                restores += 1;
            }
            86..=93 => {
                v.compact_due().await.unwrap();
            }
            94..=99 => {
                // A power cut: nothing more is written back or committed.
                compacted += v.compacted_chunks();
                cleaned += v.cleaned_segments();
                v.fence();
                drop(v);
                v = f.open(&store, config(192 * 1024)).await;
                assert!(
                    read_all(&v).await == durable,
                    "{at}: after a power cut the disk differs from what the last flush acknowledged"
                );
                model.clone_from(&durable);
                cuts += 1;
            }
            _ => {}
        }
    }
    v.flush().await.unwrap();
    compacted += v.compacted_chunks();
    cleaned += v.cleaned_segments();
    let fresh = f.open_fresh(&store).await;
    assert!(
        read_all(&fresh).await == model,
        "seed {s}: the final disk differs from the model"
    );
    println!(
        "{cuts} power cuts, {restores} restores, {compacted} chunks compacted, {cleaned} segments cleaned"
    );
    assert!(
        cuts > 0 && restores > 0,
        "seed {s}: the sequence should cut power and restore"
    );
    assert!(
        compacted > 0,
        "seed {s}: scattered writes should make some chunk due for compaction"
    );
}

/// A chunk written sector by sector, one flush each, ends up in as many
/// segments; compaction rewrites it as one chunk object, and the commit
/// queues every segment for deletion (no view names any of its slots).
#[tokio::test]
async fn compaction_rewrites_a_fragmented_chunk_as_one_chunk_object() {
    let f = Fixture::new(CHUNK, 4).await;
    let store = Rigged::new();
    let v = f.open(&store, config(1 << 20)).await;
    let spc = CHUNK / 4096;
    let mut model = vec![0u8; usz(f.size)];
    let chunk = u64::from(CHUNK);
    // Half the sectors of chunk 1, every other one, each flushed alone.
    for i in 0..spc / 2 {
        let off = chunk + u64::from(2 * i) * 4096;
        let data = common::content(u64::from(i), 4096);
        v.write(off, data.clone().into(), false).await.unwrap();
        model[usz(off)..usz(off) + 4096].copy_from_slice(&data);
        v.flush().await.unwrap();
    }
    let segments = |m: &coffer_meta::ChunkMap| {
        m.get(&1)
            .into_iter()
            .flatten()
            .filter(|e| matches!(&e.loc, Loc::Obj { obj, .. } if obj.kind == 2))
            .count()
    };
    let before = f.meta.resolve_view(f.vol, 0).await.unwrap();
    assert_eq!(
        segments(&before),
        usz(u64::from(spc / 2)),
        "one segment extent per flushed sector"
    );
    // A second chunk with one sector in a segment is not due.
    v.write(0, vec![7u8; 4096].into(), false).await.unwrap();
    model[..4096].fill(7);
    v.flush().await.unwrap();
    // The write kicked compaction in the background; this waits for it.
    v.compact_due().await.unwrap();
    assert_eq!(v.compacted_chunks(), 1, "only chunk 1 is due");
    v.flush().await.unwrap();
    let after = f.meta.resolve_view(f.vol, 0).await.unwrap();
    assert_eq!(
        segments(&after),
        0,
        "chunk 1 names no segment after compaction"
    );
    assert!(
        after[&1].iter().all(|e| match &e.loc {
            Loc::Obj { obj, .. } => obj.kind == 1 && obj.index == 1,
            other => *other == Loc::Zero,
        }),
        "chunk 1 is one chunk object: {:?}",
        after[&1]
    );
    let queued = f.meta.gc_objects_peek("local", false, 1000).await.unwrap();
    assert_eq!(
        queued.len(),
        usz(u64::from(spc / 2)),
        "every segment of chunk 1 is queued for deletion"
    );
    assert_eq!(v.compact_due().await.unwrap(), 0, "nothing is due any more");
    drop(v);
    let fresh = f.open_fresh(&store).await;
    assert!(
        read_all(&fresh).await == model,
        "the disk reads the same after compaction"
    );
}

/// A volume that packs (a copy job's target) puts whole chunks into
/// segments, as many as fit (1,024 slots), each chunk one run of slots:
/// one object for many chunks, none of them due for compaction, and the
/// disk reads the same, also after a partial overwrite and a reopen.
#[tokio::test]
async fn a_packing_volume_puts_many_whole_chunks_in_one_segment() {
    const N: u64 = 40;
    let f = Fixture::new(CHUNK, N + 2).await;
    let store = Rigged::new();
    let v = f
        .open(
            &store,
            coffer_volume::VolumeConfig {
                pack_chunks: true,
                ..config(64 << 20)
            },
        )
        .await;
    let spc = CHUNK / 4096;
    let chunk = u64::from(CHUNK);
    let mut model = vec![0u8; usz(f.size)];
    let data = common::content(7, usz(N * chunk));
    v.write(0, data.clone().into(), false).await.unwrap();
    model[..data.len()].copy_from_slice(&data);
    // Half of the next chunk: loose sectors, a segment of their own.
    let half = common::content(8, usz(chunk / 2));
    v.write(N * chunk, half.clone().into(), false)
        .await
        .unwrap();
    model[usz(N * chunk)..usz(N * chunk) + half.len()].copy_from_slice(&half);
    v.flush().await.unwrap();
    let map = f.meta.resolve_view(f.vol, 0).await.unwrap();
    let mut objects = std::collections::HashMap::new();
    for idx in 0..N {
        let stack = &map[&idx];
        assert_eq!(stack.len(), 1, "chunk {idx} is one run: {stack:?}");
        let e = &stack[0];
        let Loc::Obj { obj, first_slot } = &e.loc else {
            panic!("chunk {idx} is not in an object: {e:?}")
        };
        assert_eq!((e.first, e.count, obj.kind), (0, spc, 2), "chunk {idx}");
        objects.insert(obj.id, obj.slots);
        assert!(first_slot + spc <= obj.slots);
    }
    let per_object = usz(u64::from(coffer_crypto::object::MAX_SLOTS / spc));
    assert_eq!(
        objects.len(),
        usz(N).div_ceil(per_object),
        "{N} whole chunks packed {per_object} an object"
    );
    assert_eq!(
        v.compact_due().await.unwrap(),
        0,
        "a packed whole chunk is not due for compaction"
    );
    assert!(read_all(&v).await == model, "the packed disk reads back");
    // A partial overwrite of a packed chunk reads over it.
    let patch = common::content(9, 3 * 4096);
    v.write(2 * chunk + 4096, patch.clone().into(), false)
        .await
        .unwrap();
    model[usz(2 * chunk + 4096)..usz(2 * chunk + 4096) + patch.len()].copy_from_slice(&patch);
    v.flush().await.unwrap();
    drop(v);
    let fresh = f.open_fresh(&store).await;
    assert!(
        read_all(&fresh).await == model,
        "the disk reads the same after a reopen"
    );
}

/// Segment cleaning: a segment of the head with fewer than half its slots
/// still live has them rewritten into a new segment, and the old one is
/// queued for deletion; chunks under the compaction threshold are left
/// alone. A segment a snapshot names is not cleaned (it would free
/// nothing), and the snapshot keeps reading it.
#[tokio::test]
async fn a_mostly_dead_segment_is_cleaned_and_queued_for_deletion() {
    let f = Fixture::new(CHUNK, CHUNKS).await;
    let store = Rigged::new();
    let v = f.open(&store, config(1 << 20)).await;
    let chunk = u64::from(CHUNK);
    let mut model = vec![0u8; usz(f.size)];
    let put = async |model: &mut Vec<u8>, off: u64, tag: u64| {
        let data = common::content(tag, 4096);
        v.write(off, data.clone().into(), false).await.unwrap();
        model[usz(off)..usz(off) + 4096].copy_from_slice(&data);
    };
    // One sector in each chunk, one flush: one segment of 12 slots.
    for i in 0..CHUNKS {
        put(&mut model, i * chunk, i).await;
    }
    v.flush().await.unwrap();
    let segment_of = |m: &coffer_meta::ChunkMap, idx: u64| {
        m[&idx]
            .iter()
            .find_map(|e| match &e.loc {
                Loc::Obj { obj, .. } if obj.kind == 2 => Some(obj.id),
                _ => None,
            })
            .unwrap()
    };
    let first = segment_of(&f.meta.resolve_view(f.vol, 0).await.unwrap(), 0);
    // Seven of its twelve sectors overwritten: five live, under half.
    for i in 0..7 {
        put(&mut model, i * chunk, 100 + i).await;
    }
    v.flush().await.unwrap();
    assert_eq!(v.compact_due().await.unwrap(), 0, "no chunk is due");
    v.flush().await.unwrap();
    assert_eq!(v.cleaned_segments(), 1, "the first segment was cleaned");
    let map = f.meta.resolve_view(f.vol, 0).await.unwrap();
    assert!(
        map.values()
            .flatten()
            .all(|e| !matches!(&e.loc, Loc::Obj { obj, .. } if obj.id == first)),
        "no extent names the cleaned segment"
    );
    let queued = f.meta.gc_objects_peek("local", false, 1000).await.unwrap();
    assert!(
        queued.iter().any(|(_, id)| *id == first),
        "the cleaned segment is queued for deletion"
    );
    assert!(read_all(&v).await == model, "the disk reads the same");

    // A segment that a snapshot names is left as it is.
    for i in 0..CHUNKS {
        put(&mut model, i * chunk + 8192, 200 + i).await;
    }
    v.flush().await.unwrap();
    let row = v.snapshot(f.snapshot_row("s")).await.unwrap();
    let at_snapshot = model.clone();
    // Other sectors of three of its chunks, then most of its own sectors:
    // neither makes it a candidate (a commit touching chunks that read
    // from it must not start tracking it with a partial count).
    for i in 0..3 {
        put(&mut model, i * chunk + 12288, 300 + i).await;
    }
    v.flush().await.unwrap();
    v.compact_due().await.unwrap();
    for i in 0..10 {
        put(&mut model, i * chunk + 8192, 400 + i).await;
    }
    v.flush().await.unwrap();
    v.compact_due().await.unwrap();
    v.flush().await.unwrap();
    assert_eq!(v.cleaned_segments(), 1, "nothing more was cleaned");
    let view = f.open_view(&store, row.generation).await;
    assert!(
        read_all(&view).await == at_snapshot,
        "the snapshot reads as taken"
    );
    drop(v);
    let fresh = f.open_fresh(&store).await;
    assert!(read_all(&fresh).await == model, "a reopen reads the same");
}
