//! The memory budget the volumes of one server share: however many disks
//! are busy, their unsealed data stays near twice the budget's high-water
//! mark, and the accounting balances when volumes flush, close or are
//! fenced with data still unsealed. And the pace background compaction
//! shares.

mod common;

use std::sync::Arc;

use coffer_volume::{MemoryBudget, Pace, VolumeConfig};
use common::{Fixture, Rigged, Rng, read_all, usz};

const CHUNK: u32 = 64 * 1024;
const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_busy_volumes_stay_within_the_shared_budget() {
    const VOLUMES: usize = 8;
    let budget = Arc::new(MemoryBudget::new(MIB, 4));
    // Each volume's own mark is far above what it is given: only the
    // shared budget makes them write back.
    let config = VolumeConfig {
        dirty_high_water: 256 * MIB,
        io_parallelism: 4,
        budget: Arc::clone(&budget),
        ..VolumeConfig::default()
    };
    let store = Rigged::new();
    let mut fixtures = Vec::new();
    let mut vols = Vec::new();
    for _ in 0..VOLUMES {
        let f = Fixture::new(CHUNK, 128).await;
        vols.push(f.open(&store, config.clone()).await);
        fixtures.push(f);
    }
    let mut rng = Rng(common::seed() | 1);
    let mut models: Vec<Vec<u8>> = vols.iter().map(|v| vec![0u8; usz(v.size())]).collect();
    let mut peak = 0;
    // 4 MiB into each volume, round robin: 64 KiB writes, every third one
    // split into 4 KiB pieces (segments), none flushed.
    for round in 0..64u64 {
        for (i, v) in vols.iter().enumerate() {
            let off = (rng.below(128)) * u64::from(CHUNK);
            let data = rng.bytes(usz(u64::from(CHUNK)));
            if round % 3 == 0 {
                for k in 0..16 {
                    let piece = data[k * 4096..(k + 1) * 4096].to_vec();
                    v.write(off + (k as u64) * 4096, piece.into(), false)
                        .await
                        .unwrap();
                }
            } else {
                v.write(off, data.clone().into(), false).await.unwrap();
            }
            models[i][usz(off)..usz(off) + data.len()].copy_from_slice(&data);
            peak = peak.max(budget.used());
        }
    }
    // Twice the mark, a share of up to 1 MiB each volume may keep without
    // writing back, and one request.
    let bound = 2 * MIB + VOLUMES * MIB + usz(u64::from(CHUNK));
    println!(
        "peak unsealed data of {VOLUMES} volumes: {peak} bytes (bound {bound}; 32 MiB written)"
    );
    assert!(
        peak <= bound,
        "unsealed data peaked at {peak} bytes, over {bound}"
    );
    assert!(peak > 0, "the budget counted nothing");
    for (v, m) in vols.iter().zip(&models) {
        assert!(read_all(v).await == *m, "a volume reads back differently");
        v.flush().await.unwrap();
    }
    assert_eq!(budget.used(), 0, "everything is sealed after the flushes");
}

#[tokio::test]
async fn a_fenced_volume_dropped_with_unsealed_data_gives_its_share_back() {
    let budget = Arc::new(MemoryBudget::new(64 * MIB, 4));
    let config = VolumeConfig {
        budget: Arc::clone(&budget),
        ..VolumeConfig::default()
    };
    let store = Rigged::new();
    let f = Fixture::new(CHUNK, 16).await;
    let v = f.open(&store, config).await;
    v.write(0, vec![5u8; 3 * 4096].into(), false).await.unwrap();
    v.write(
        u64::from(CHUNK),
        vec![6u8; usz(u64::from(CHUNK))].into(),
        false,
    )
    .await
    .unwrap();
    assert_eq!(budget.used(), 3 * 4096 + usz(u64::from(CHUNK)));
    v.fence();
    drop(v);
    assert_eq!(
        budget.used(),
        0,
        "a dropped volume's unsealed data is no longer counted"
    );
}

/// Work taken from a pace starts `bytes / rate` after the work before it,
/// and the pace is never faster than 1 MiB/s (the clock is tokio's paused
/// test clock: no time passes but what the pace waits).
#[tokio::test(start_paused = true)]
async fn a_pace_spaces_work_by_its_size_over_the_rate() {
    let pace = Pace::new(4 * MIB as u64);
    let t = tokio::time::Instant::now();
    for _ in 0..8 {
        pace.take(MIB).await;
    }
    // The first starts at once, the eighth 7 MiB / 4 MiB/s later.
    assert_eq!(t.elapsed().as_millis(), 1750);
    // A rate below the floor is the floor.
    let slow = Pace::new(1);
    let t = tokio::time::Instant::now();
    slow.take(MIB).await;
    slow.take(MIB).await;
    assert_eq!(t.elapsed().as_millis(), 1000);
}

/// While clients are busy the pace yields: work runs at an eighth of the
/// rate until no client I/O has been seen for the busy window, then at the
/// full rate again (paused test clock, as above).
#[tokio::test(start_paused = true)]
async fn a_pace_yields_to_client_io() {
    let pace = Pace::new(8 * MIB as u64);
    pace.client_io();
    let t = tokio::time::Instant::now();
    pace.take(MIB).await;
    pace.take(MIB).await;
    // The first starts at once; a client was busy, so the second waits
    // 1 MiB at 1 MiB/s.
    assert_eq!(t.elapsed().as_millis(), 1000);
    // The second's work done, and no client I/O for a second: the full
    // rate again.
    tokio::time::advance(std::time::Duration::from_secs(1)).await;
    let t = tokio::time::Instant::now();
    pace.take(MIB).await;
    pace.take(MIB).await;
    assert_eq!(t.elapsed().as_millis(), 125);
    // A client again, just inside the window.
    tokio::time::advance(std::time::Duration::from_millis(500)).await;
    pace.client_io();
    tokio::time::advance(Pace::BUSY_WINDOW - std::time::Duration::from_millis(1)).await;
    let t = tokio::time::Instant::now();
    pace.take(MIB).await;
    pace.take(MIB).await;
    assert_eq!(t.elapsed().as_millis(), 1000);
}
