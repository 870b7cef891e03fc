//! Tampered objects give the specific error that names what was wrong, at
//! the crypto layer (`open_chunk`, field by field of the header) and at the
//! volume layer (`VolumeError::Integrity` naming the chunk), and never data.

mod common;

use bytes::{Bytes, BytesMut};
use coffer_crypto::chunk::MAGIC;
use coffer_crypto::{ChunkKey, CryptoError, HEADER_LEN, SecretKey, open_chunk, seal_chunk};
use coffer_store::{ObjectStore, chunk_key};
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

/// One object per chunk of a volume, then each tampered a different way
/// through the store: each read of a tampered chunk fails with
/// `VolumeError::Integrity` naming that chunk and why; the others read back.
#[tokio::test]
async fn a_volume_reports_which_chunk_was_tampered_and_how() {
    const CS: u32 = 4096;
    const CHUNKS: u64 = 8;
    let f = Fixture::new(CS, CHUNKS).await;
    let cs = f.chunk;
    let store = Rigged::new();
    let v = f.open(&store, config(1 << 20)).await;
    for i in 0..CHUNKS {
        v.write(i * cs, Bytes::from(content(i, usz(cs))), false)
            .await
            .unwrap();
    }
    v.close().await.unwrap();
    // Which counter holds which chunk: read the headers.
    let mut key_of = vec![String::new(); usz(CHUNKS)];
    for k in store.list("chunks/").await.unwrap() {
        let obj = store.get(&k).await.unwrap();
        let h = coffer_crypto::ChunkHeader::decode(&obj).unwrap();
        assert_eq!(h.dek_id, f.dek_id.value());
        assert_eq!(k, chunk_key(h.dek_id, h.counter));
        key_of[usz(h.chunk_index)] = k;
    }
    assert!(key_of.iter().all(|k| !k.is_empty()), "one object per chunk");
    let get = |i: usize| {
        let store = store.clone();
        let k = key_of[i].clone();
        async move { store.get(&k).await.unwrap().to_vec() }
    };
    let (o1, o2) = (get(1).await, get(2).await);
    // Swap chunks 1 and 2.
    store.inner.tamper(&key_of[1], |b| *b = o2.clone());
    store.inner.tamper(&key_of[2], |b| *b = o1.clone());
    // Truncate chunk 4 by one byte, chunk 5 to less than a header.
    store.inner.tamper(&key_of[4], |b| {
        b.pop();
    });
    store.inner.tamper(&key_of[5], |b| b.truncate(10));
    // Flip a reserved header byte of chunk 6.
    store.inner.tamper(&key_of[6], |b| b[37] ^= 1);
    // Chunk 7's object is gone.
    store.inner.delete(&key_of[7]).await.unwrap();

    let v = f.open_fresh(&store).await;
    let expect: [(u64, &str); 6] = [
        (1, NOT_NAMED),
        (2, NOT_NAMED),
        (4, WRONG_LENGTH),
        (5, "shorter than a header"),
        (6, MODIFIED),
        (7, "its object is missing from the store"),
    ];
    for i in 0..CHUNKS {
        // A whole-chunk read, an unaligned one inside the chunk, and one
        // straddling into it from the chunk before if that one is intact.
        let tampered = |c: u64| expect.iter().find(|(t, _)| *t == c);
        let mut reads = vec![v.read(i * cs, cs).await, v.read(i * cs + 5, 100).await];
        if i > 0 && tampered(i - 1).is_none() {
            reads.push(v.read(i * cs - 10, 20).await);
        }
        match tampered(i) {
            None => {
                let want = content(i, usz(cs));
                assert_eq!(&reads[0].as_ref().unwrap()[..], &want[..], "chunk {i}");
                assert_eq!(&reads[1].as_ref().unwrap()[..], &want[5..105]);
                if let Some(r) = reads.get(2) {
                    assert_eq!(&r.as_ref().unwrap()[10..], &want[..10]);
                }
            }
            Some((_, why)) => {
                for r in reads {
                    match r {
                        Err(VolumeError::Integrity {
                            volume,
                            chunk,
                            reason,
                        }) => {
                            assert_eq!(volume, f.vol);
                            assert_eq!(chunk, i);
                            assert!(reason.contains(why), "chunk {i}: {reason}");
                        }
                        other => panic!("chunk {i}: expected an integrity error, got {other:?}"),
                    }
                }
            }
        }
    }
    // A partial write into a tampered chunk must read it to patch it: it
    // fails too, rather than sealing a patch over garbage.
    let r = v
        .write(2 * cs + 100, Bytes::from(vec![1u8; 10]), false)
        .await;
    assert!(
        matches!(r, Err(VolumeError::Integrity { chunk: 2, .. })),
        "{r:?}"
    );
    // A whole-chunk write needs nothing old: it replaces the tampered chunk.
    let fresh = content(100, usz(cs));
    v.write(2 * cs, Bytes::from(fresh.clone()), false)
        .await
        .unwrap();
    v.flush().await.unwrap();
    assert_eq!(&v.read(2 * cs, cs).await.unwrap()[..], &fresh[..]);
}
