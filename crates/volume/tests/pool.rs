//! Pooled buffers (`VolumeConfig::buffers`): a large read reads into a
//! buffer that an earlier read (or a sealed object) used, and must show
//! none of what that use left in it: holes read as zeroes, partial
//! sectors at both ends hold only this read's bytes, and a read that
//! failed leaves nothing behind for the next.

mod common;

use bytes::Bytes;
use coffer_store::{BufPool, ObjectStore};
use coffer_volume::{VolumeConfig, VolumeError};
use common::*;

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn a_reused_read_buffer_shows_nothing_of_its_last_use() {
    // 16 chunks of 256 KiB: the first 2 MiB written and sealed, the rest
    // a hole but for two sectors still dirty (in memory).
    let f = Fixture::new(256 << 10, 16).await;
    let store = Rigged::new();
    let pool = BufPool::new(64 << 20, 1 << 20);
    let config = VolumeConfig {
        buffers: pool.clone(),
        ..config(64 << 20)
    };
    let v = f.open(&store, config).await;
    let written = content(1, usz(2 * MIB));
    v.write(0, Bytes::from(written.clone()), false)
        .await
        .unwrap();
    v.flush().await.unwrap();
    let dirty_at = 3 * MIB + 4096;
    let dirty = content(2, 8192);
    v.write(dirty_at, Bytes::from(dirty.clone()), false)
        .await
        .unwrap();

    // A pooled read of the written half, dropped: its buffer (full of
    // plaintext) goes back to the pool.
    let first = v.read(0, 2 * MIB).await.unwrap();
    assert_eq!(&first[..], &written[..]);
    drop(first);
    let idle = pool.idle_bytes();
    assert!(idle >= usz(2 * MIB), "the read's buffer is back: {idle}");

    // The other half, from an offset inside a sector to one inside
    // another: it takes that buffer again (the pool's idle bytes drop by
    // it) and reads zeroes but for the dirty sectors.
    let (at, len) = (2 * MIB + 100, 2 * MIB - 200);
    let second = v.read(at, len).await.unwrap();
    assert!(
        pool.idle_bytes() <= idle - usz(2 * MIB),
        "the second read reused the first one's buffer"
    );
    let mut want = vec![0u8; usz(len)];
    let d = usz(dirty_at - at);
    want[d..d + dirty.len()].copy_from_slice(&dirty);
    assert!(second[..] == want[..], "only this read's bytes");
    drop(second);

    // The written half again, from inside its first sector to inside its
    // last: the slots at both ends only partly inside, in a buffer that
    // held the zeroes just read.
    let third = v.read(100, 2 * MIB - 200).await.unwrap();
    assert!(
        third[..] == written[100..usz(2 * MIB) - 100],
        "only this read's bytes"
    );
    drop(third);

    // A read that fails (every stored object tampered with) gives its
    // buffer back too; the next read of the hole still reads zeroes.
    for key in store.inner.list("").await.unwrap() {
        store.inner.tamper(&key, |b| {
            let at = b.len() / 2;
            b[at] ^= 1;
        });
    }
    let fresh = f.open_fresh(&store).await;
    drop(v);
    let err = fresh.read(0, 2 * MIB).await.unwrap_err();
    assert!(matches!(err, VolumeError::Integrity { .. }), "{err}");
    let hole = fresh.read(2 * MIB, 2 * MIB).await.unwrap();
    assert!(hole.iter().all(|&b| b == 0), "a hole reads as zeroes");
}
