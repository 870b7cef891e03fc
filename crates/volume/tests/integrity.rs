//! Tampered objects give the specific error that names what was wrong, at
//! the crypto layer (`open_chunk`, field by field of the header) and at the
//! volume layer (`VolumeError::Integrity` naming the chunk), and never data;
//! and a disk stored in format v1 still reads.

mod common;

use bytes::{Bytes, BytesMut};
use coffer_crypto::chunk::MAGIC;
use coffer_crypto::object::{self, ObjectHeader};
use coffer_crypto::{ChunkKey, CryptoError, HEADER_LEN, SecretKey, open_chunk, seal_chunk};
use coffer_meta::ChunkEntry;
use coffer_store::{ObjectStore, chunk_key};
use coffer_types::{Id, Kind};
use coffer_volume::VolumeError;
use common::*;

const NOT_NAMED: &str = "chunk object is not the one its reference names";
const MODIFIED: &str = "chunk object was modified or sealed under another key";
const WRONG_LENGTH: &str = "chunk object has the wrong length";

/// What flipping bit 0 of header byte `i` must give.
fn expected_for_header_byte(i: usize) -> CryptoError {
    match i {
        0..4 => CryptoError::Malformed("bad magic: not a Coffer chunk object".into()),
        4 => CryptoError::Malformed("unknown format version 0 / cipher 1".into()),
        5 => CryptoError::Malformed("unknown format version 1 / cipher 0".into()),
        // Reserved bytes: parsed as nothing, but authenticated.
        6..8 | 36..40 => CryptoError::Authentication(MODIFIED),
        // DEK id, counter, chunk index: not the object the reference names.
        8..32 => CryptoError::Authentication(NOT_NAMED),
        32..36 => CryptoError::Authentication(WRONG_LENGTH),
        _ => unreachable!(),
    }
}

#[test]
fn each_header_field_flipped_gives_its_own_error() {
    let key = ChunkKey::new(0x0102_0304_0506_0708, &SecretKey::generate()).unwrap();
    let sealed = seal_chunk(&key, 77, 5, &[0xa5u8; 1000]).unwrap();
    assert_eq!(&sealed[..4], &MAGIC);
    for i in 0..HEADER_LEN {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        assert_eq!(
            open_chunk(&key, 77, 5, BytesMut::from(&bad[..])),
            Err(expected_for_header_byte(i)),
            "header byte {i}"
        );
    }
    // Ciphertext and tag.
    for i in [
        HEADER_LEN,
        HEADER_LEN + 500,
        sealed.len() - 16,
        sealed.len() - 1,
    ] {
        let mut bad = sealed.clone();
        bad[i] ^= 0x80;
        assert_eq!(
            open_chunk(&key, 77, 5, BytesMut::from(&bad[..])),
            Err(CryptoError::Authentication(MODIFIED)),
            "byte {i}"
        );
    }
    // Truncated: by one byte, to the header, to less than a header, to nothing.
    for (len, want) in [
        (sealed.len() - 1, CryptoError::Authentication(WRONG_LENGTH)),
        (HEADER_LEN, CryptoError::Authentication(WRONG_LENGTH)),
        (
            20,
            CryptoError::Malformed("object of 20 bytes is shorter than a header".into()),
        ),
        (
            0,
            CryptoError::Malformed("object of 0 bytes is shorter than a header".into()),
        ),
    ] {
        assert_eq!(
            open_chunk(&key, 77, 5, BytesMut::from(&sealed[..len])),
            Err(want),
            "truncated to {len}"
        );
    }
    // Extended by a byte.
    let mut long = sealed.clone();
    long.push(0);
    assert_eq!(
        open_chunk(&key, 77, 5, BytesMut::from(&long[..])),
        Err(CryptoError::Authentication(WRONG_LENGTH))
    );
    // Another object's identity, and another key with the same id.
    assert_eq!(
        open_chunk(&key, 78, 5, BytesMut::from(&sealed[..])),
        Err(CryptoError::Authentication(NOT_NAMED))
    );
    assert_eq!(
        open_chunk(&key, 77, 6, BytesMut::from(&sealed[..])),
        Err(CryptoError::Authentication(NOT_NAMED))
    );
    let other = ChunkKey::new(0x0102_0304_0506_0708, &SecretKey::generate()).unwrap();
    assert_eq!(
        open_chunk(&other, 77, 5, BytesMut::from(&sealed[..])),
        Err(CryptoError::Authentication(MODIFIED))
    );
    // The untouched object opens.
    assert_eq!(
        &open_chunk(&key, 77, 5, BytesMut::from(&sealed[..])).unwrap()[..],
        &[0xa5u8; 1000][..]
    );
}

const SLOT_MODIFIED: &str = "object slot was modified, moved, replayed or sealed under another key";
const TRUNCATED: &str = "truncated";

/// The store key of each chunk's v2 chunk object, read from the headers.
async fn chunk_objects(store: &Rigged, chunks: u64, except: &str) -> Vec<String> {
    let mut key_of = vec![String::new(); usz(chunks)];
    for k in store.list("objects/").await.unwrap() {
        if k == except {
            continue;
        }
        let obj = store.get(&k).await.unwrap();
        let h = ObjectHeader::decode(&obj).unwrap();
        if h.kind == object::Kind::Chunk {
            key_of[usz(h.index)] = k;
        }
    }
    key_of
}

/// One v2 chunk object per chunk of a volume, then each tampered a
/// different way through the store (flip, truncate, swap two objects,
/// swap two sectors, replay an old object, move a sector, delete): each
/// read of a tampered sector fails with `VolumeError::Integrity` naming
/// the chunk and why; every other sector reads back.
#[tokio::test]
async fn a_volume_reports_which_chunk_was_tampered_and_how() {
    const CS: u32 = 16 * 1024; // four sectors a chunk
    const CHUNKS: u64 = 10;
    let f = Fixture::new(CS, CHUNKS).await;
    let cs = f.chunk;
    let store = Rigged::new();
    let v = f.open(&store, config(1 << 20)).await;
    for i in 0..CHUNKS {
        v.write(i * cs, Bytes::from(content(i, usz(cs))), false)
            .await
            .unwrap();
    }
    v.flush().await.unwrap();
    let old_3 = chunk_objects(&store, CHUNKS, "").await[3].clone();
    let old_3_bytes = store.get(&old_3).await.unwrap().to_vec();
    // Chunk 3 rewritten: its old object is what a replay would bring back.
    v.write(3 * cs, Bytes::from(content(3, usz(cs))), false)
        .await
        .unwrap();
    v.close().await.unwrap();
    // The old object is queued for deletion, not yet deleted (no collector runs here).
    let key_of = chunk_objects(&store, CHUNKS, &old_3).await;
    assert!(key_of.iter().all(|k| !k.is_empty()), "one object per chunk");
    assert_ne!(key_of[3], old_3);
    let slot = |i: usize| object::HEADER_LEN + i * (object::SLOT + object::TAG_LEN);
    let get = |i: usize| {
        let store = store.clone();
        let k = key_of[i].clone();
        async move { store.get(&k).await.unwrap().to_vec() }
    };
    let (o1, o2) = (get(1).await, get(2).await);
    // Swap the objects of chunks 1 and 2.
    store.inner.tamper(&key_of[1], |b| *b = o2.clone());
    store.inner.tamper(&key_of[2], |b| *b = o1.clone());
    // Chunk 3: replay its old object in place of the current one.
    store.inner.tamper(&key_of[3], |b| *b = old_3_bytes.clone());
    // Truncate chunk 4 by one byte (its last sector), chunk 5 to less than a header.
    store.inner.tamper(&key_of[4], |b| {
        b.pop();
    });
    store.inner.tamper(&key_of[5], |b| b.truncate(10));
    // Flip a ciphertext bit of chunk 6's sector 1.
    store.inner.tamper(&key_of[6], |b| b[slot(1) + 100] ^= 1);
    // Chunk 7's object is gone.
    store.inner.delete(&key_of[7]).await.unwrap();
    // Chunk 8: swap sectors 0 and 1 inside the object.
    store.inner.tamper(&key_of[8], |b| {
        let s0 = b[slot(0)..slot(1)].to_vec();
        let s1 = b[slot(1)..slot(2)].to_vec();
        b[slot(0)..slot(1)].copy_from_slice(&s1);
        b[slot(1)..slot(2)].copy_from_slice(&s0);
    });
    // Chunk 9: sector 3 moved over sector 2 (a sector replayed at another offset).
    store.inner.tamper(&key_of[9], |b| {
        let s3 = b[slot(3)..slot(4)].to_vec();
        b[slot(2)..slot(3)].copy_from_slice(&s3);
    });

    let v = f.open_fresh(&store).await;
    // (chunk, sectors that fail, why)
    let expect: [(u64, &[u64], &str); 9] = [
        (1, &[0, 1, 2, 3], SLOT_MODIFIED),
        (2, &[0, 1, 2, 3], SLOT_MODIFIED),
        (3, &[0, 1, 2, 3], SLOT_MODIFIED),
        (4, &[3], TRUNCATED),
        (5, &[0, 1, 2, 3], TRUNCATED),
        (6, &[1], SLOT_MODIFIED),
        (7, &[0, 1, 2, 3], "its object is missing from the store"),
        (8, &[0, 1], SLOT_MODIFIED),
        (9, &[2], SLOT_MODIFIED),
    ];
    let sec = 4096u64;
    for i in 0..CHUNKS {
        let want = content(i, usz(cs));
        let bad = expect.iter().find(|(c, _, _)| *c == i);
        for s in 0..cs / sec {
            // The whole sector and an unaligned piece of it.
            for (off, len) in [(0, sec), (5, 100)] {
                let r = v.read(i * cs + s * sec + off, len).await;
                match bad.filter(|(_, secs, _)| secs.contains(&s)) {
                    None => {
                        let at = usz(s * sec + off);
                        assert_eq!(
                            &r.unwrap()[..],
                            &want[at..at + usz(len)],
                            "chunk {i} sector {s}"
                        );
                    }
                    Some((_, _, why)) => match r {
                        Err(VolumeError::Integrity {
                            volume,
                            chunk,
                            reason,
                        }) => {
                            assert_eq!(volume, f.vol);
                            assert_eq!(chunk, i);
                            assert!(reason.contains(why), "chunk {i} sector {s}: {reason}");
                        }
                        other => panic!(
                            "chunk {i} sector {s}: expected an integrity error, got {other:?}"
                        ),
                    },
                }
            }
        }
    }
    // A whole-chunk read of a chunk with one bad sector fails as a whole.
    assert!(matches!(
        v.read(6 * cs, cs).await,
        Err(VolumeError::Integrity { chunk: 6, .. })
    ));
    // A partial write into a tampered sector must read it to patch it: it
    // fails too, rather than sealing a patch over garbage.
    let r = v
        .write(2 * cs + 100, Bytes::from(vec![1u8; 10]), false)
        .await;
    assert!(
        matches!(r, Err(VolumeError::Integrity { chunk: 2, .. })),
        "{r:?}"
    );
    // A whole-sector write needs nothing old: it replaces the tampered sector.
    let fresh = content(100, usz(sec));
    v.write(6 * cs + sec, Bytes::from(fresh.clone()), false)
        .await
        .unwrap();
    v.flush().await.unwrap();
    assert_eq!(&v.read(6 * cs + sec, sec).await.unwrap()[..], &fresh[..]);
    let want6 = content(6, usz(cs));
    assert_eq!(&v.read(6 * cs, sec).await.unwrap()[..], &want6[..usz(sec)]);
}

/// A disk written in format v1 (before chunk format v2) still reads, and
/// the first write to a v1 chunk rewrites it whole as v2: its v1 row goes,
/// its v1 object is queued for deletion, and the content is exact.
#[tokio::test]
async fn a_v1_disk_still_reads_and_a_write_converts_its_chunk() {
    const CS: u32 = 16 * 1024;
    const CHUNKS: u64 = 4;
    let f = Fixture::new(CS, CHUNKS).await;
    let cs = f.chunk;
    let store = Rigged::new();
    // Write chunks 0..3 as v1 objects, as the v1 write path did.
    let key = ChunkKey::new(f.dek_id.value(), &f.dek).unwrap();
    let counters = f.meta.reserve_counters(f.dek_id, 3, None).await.unwrap();
    let mut entries = Vec::new();
    for (i, c) in (0..3u64).zip(counters) {
        let sealed = seal_chunk(&key, c, i, &content(i, usz(cs))).unwrap();
        store
            .put(&chunk_key(f.dek_id.value(), c), Bytes::from(sealed))
            .await
            .unwrap();
        entries.push((i, ChunkEntry::Object(c)));
    }
    f.meta
        .commit_chunks(f.vol, 0, None, &entries)
        .await
        .unwrap();
    assert_eq!(f.meta.fsck().await.unwrap(), vec![]);

    let v = f.open_fresh(&store).await;
    for i in 0..CHUNKS {
        let want = if i < 3 {
            content(i, usz(cs))
        } else {
            vec![0; usz(cs)]
        };
        assert_eq!(
            &v.read(i * cs, cs).await.unwrap()[..],
            &want[..],
            "chunk {i}"
        );
        assert_eq!(
            &v.read(i * cs + 4095, 3).await.unwrap()[..],
            &want[4095..4098]
        );
    }
    // A 512-byte write into chunk 1 converts it; chunk 0 stays v1.
    v.write(cs + 512, Bytes::from(vec![7u8; 512]), false)
        .await
        .unwrap();
    v.flush().await.unwrap();
    let mut want1 = content(1, usz(cs));
    want1[512..1024].fill(7);
    let v = f.open_fresh(&store).await;
    assert_eq!(&v.read(cs, cs).await.unwrap()[..], &want1[..]);
    assert_eq!(&v.read(0, cs).await.unwrap()[..], &content(0, usz(cs))[..]);
    let queued = f.meta.gc_queue_peek("local", false, 10).await.unwrap();
    assert_eq!(queued.len(), 1, "chunk 1's v1 object is queued: {queued:?}");
    assert_eq!(
        store.list("objects/").await.unwrap().len(),
        1,
        "one v2 object"
    );
    assert_eq!(f.meta.fsck().await.unwrap(), vec![]);
}

/// The metadata goes back in time (restored from a backup, or a lagging
/// replica promoted) while the store keeps the objects written since; the
/// disk is written again from the old metadata. No two stored objects may
/// have been sealed under the same key and nonce: every v2 object's key is
/// derived from its DEK and its random id, and each slot's nonce is its
/// index, so it is enough that no two objects under one DEK share an id.
/// (The property is the format's, not the backend's: this test keeps its
/// own SQLite file, which it copies as the backup.)
#[tokio::test]
async fn metadata_restored_from_a_backup_never_repeats_a_key_and_nonce() {
    const CS: u32 = 16 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta.sqlite");
    let url = format!("sqlite://{}", db.display());
    let meta = coffer_meta::Meta::open(&url).await.unwrap();
    let kek = Id::random(Kind::Key);
    assert!(meta.insert_platform_key(kek, "r1", b"w").await.unwrap());
    let dek_id = Id::random(Kind::Dek);
    meta.insert_dek(&coffer_meta::DekRow {
        id: dek_id,
        kek_id: kek,
        kek_version: 1,
        wrapped: b"w".to_vec(),
        encryption_set_id: None,
    })
    .await
    .unwrap();
    let vol = Id::random(Kind::Volume);
    meta.create_volume(&coffer_meta::VolumeRow {
        dek2_id: None,
        id: vol,
        dek_id,
        chunk_size: CS,
        size: 64 * u64::from(CS),
        parent: None,
        head_generation: 0,
        live: true,
        region: "local".into(),
    })
    .await
    .unwrap();
    let deks = || coffer_volume::StaticDeks::one(dek_id, SecretKey::from_bytes([7; 32]));
    let store = Rigged::new();
    let as_dyn = |s: &std::sync::Arc<Rigged>| -> std::sync::Arc<dyn ObjectStore> { s.clone() };
    // Write whole chunks and scattered sectors, flushing as we go.
    let write_round = |meta: coffer_meta::Meta, tag: u64| {
        let store = as_dyn(&store);
        async move {
            let v = coffer_volume::Volume::open(meta, store, vol, deks(), config(1 << 20), None)
                .await
                .unwrap();
            for i in 0..8u64 {
                v.write(
                    i * u64::from(CS),
                    Bytes::from(content(tag + i, usz(u64::from(CS)))),
                    false,
                )
                .await
                .unwrap();
                v.write(
                    (20 + i) * u64::from(CS) + 4096,
                    Bytes::from(content(tag, 4096)),
                    false,
                )
                .await
                .unwrap();
                v.flush().await.unwrap();
            }
            v.close().await.unwrap();
        }
    };
    write_round(meta.clone(), 1).await;
    meta.close().await;
    let backup = dir.path().join("backup.sqlite");
    std::fs::copy(&db, &backup).unwrap();
    // Later writes, then the restore: the metadata forgets them, the store
    // does not.
    let meta = coffer_meta::Meta::open(&url).await.unwrap();
    write_round(meta.clone(), 100).await;
    meta.close().await;
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    std::fs::copy(&backup, &db).unwrap();
    let meta = coffer_meta::Meta::open(&url).await.unwrap();
    write_round(meta.clone(), 200).await;

    let mut seen = std::collections::HashSet::new();
    let keys = store.list("objects/").await.unwrap();
    assert!(
        keys.len() >= 3 * 8 * 2,
        "every round stored its objects: {}",
        keys.len()
    );
    for k in &keys {
        let h = ObjectHeader::decode(&store.get(k).await.unwrap()).unwrap();
        assert!(
            seen.insert((h.deks, h.object_id)),
            "two objects under one DEK share id {:02x?}: their keys and nonces repeat",
            h.object_id
        );
    }
    println!(
        "{} objects stored across the restore, each under a key of its own",
        keys.len()
    );
    // And the disk reads what the last round wrote.
    let v = coffer_volume::Volume::open(meta, as_dyn(&store), vol, deks(), config(1 << 20), None)
        .await
        .unwrap();
    assert_eq!(
        &v.read(0, u64::from(CS)).await.unwrap()[..],
        &content(200, usz(u64::from(CS)))[..]
    );
}
