//! The fuzzing entry point of the chunk object decoder (used by `fuzz/` with
//! AFL++ and by the corpus replay test). Random bytes almost never pass
//! AES-GCM, so most inputs edit a valid sealed object instead: the first
//! byte chooses raw (even) or edited (odd); an edited object is sealed from
//! a plaintext whose length is the second byte, then each further triple
//! `(position hi, position lo, xor)` flips bits, and a final odd byte count
//! truncates. The rule checked: an object opens only if it is exactly the
//! object sealed, and then gives back exactly the plaintext sealed; every
//! other object is refused with an error, never a panic. A first byte of 3
//! mod 4 does the same to a v2 object (a two-slot segment, double encrypted
//! when the second byte is odd); raw inputs are also tried as v2 objects.

use bytes::BytesMut;

use crate::object::{Dek, Kind, ObjectHeader, ObjectKeys, SLOT, Target};
use crate::{ChunkHeader, ChunkKey, SecretKey, open_chunk, seal_chunk, unwrap_key};

/// `sealed` with `edits` applied: each triple `(position hi, position lo,
/// xor)` flips bits (or appends past the end), and a final odd byte
/// truncates to that many `cut_step`s.
fn edited(sealed: &[u8], edits: &[u8], cut_step: usize) -> Vec<u8> {
    let mut object = sealed.to_vec();
    let mut triples = edits.chunks_exact(3);
    for t in triples.by_ref() {
        let pos = usize::from(u16::from_be_bytes([t[0], t[1]]));
        if let Some(b) = object.get_mut(pos) {
            *b ^= t[2];
        } else {
            object.push(t[2]);
        }
    }
    if let [cut] = triples.remainder() {
        object.truncate(usize::from(*cut) * cut_step);
    }
    object
}

/// Apply `edits` as in [`open`] to a sealed v2 segment of two slots (double
/// encryption when `layers` is odd); it opens only if unchanged.
fn edit_v2(dek: &SecretKey, layers: u8, edits: &[u8]) {
    let h = ObjectHeader {
        kind: Kind::Segment,
        deks: (42, (layers % 2 == 1).then_some(43)),
        object_id: [9; 16],
        index: 1,
        slots: 2,
    };
    let d2 = Dek { id: 43, key: dek };
    let keys =
        ObjectKeys::derive(h, &Dek { id: 42, key: dek }, h.deks.1.map(|_| &d2)).expect("keys");
    let plain: Vec<u8> = (0..SLOT)
        .map(|i| u8::try_from(i % 253).expect("< 253"))
        .collect();
    let t = [
        (
            Target {
                chunk: 5,
                sector: 1,
            },
            &plain[..],
        ),
        (
            Target {
                chunk: 2,
                sector: 0,
            },
            &plain[..],
        ),
    ];
    let sealed = keys.seal_object(&t).expect("seal");
    // A v2 object is over 8 KiB: a cut byte counts 37-byte steps.
    let changed = edited(&sealed, edits, 37);
    let mut object = changed.clone();
    match keys.open_object(&mut object) {
        Ok(got) => {
            assert_eq!(changed, sealed, "an edited v2 object opened");
            assert_eq!(got[1].0, t[1].0);
            assert_eq!(got[1].1, plain);
        }
        Err(_) => assert_ne!(changed, sealed, "the sealed v2 object did not open"),
    }
}

/// Decode and open `input` (see the module docs). Panics only on a bug.
pub fn open(input: &[u8]) {
    let dek = SecretKey::from_bytes([7; 32]);
    let key = ChunkKey::new(42, &dek).expect("key");
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let (counter, index) = ChunkHeader::decode(rest)
            .map(|h| (h.counter, h.chunk_index))
            .unwrap_or((0, 0));
        assert!(
            open_chunk(&key, counter, index, BytesMut::from(rest)).is_err(),
            "an object nobody sealed opened"
        );
        // The same bytes as a wrapped key: refused, never a panic.
        let _ = unwrap_key(&dek, rest);
        // And as a v2 object, opened under keys of the DEK ids it names.
        if let Ok(h) = ObjectHeader::decode(rest) {
            let d2 = h.deks.1.map(|id| Dek { id, key: &dek });
            let keys = ObjectKeys::derive(
                h,
                &Dek {
                    id: h.deks.0,
                    key: &dek,
                },
                d2.as_ref(),
            )
            .expect("the header's own DEK ids");
            let mut obj = rest.to_vec();
            assert!(
                keys.open_object(&mut obj).is_err(),
                "a v2 object nobody sealed opened"
            );
        }
        return;
    }
    let Some((&len, edits)) = rest.split_first() else {
        return;
    };
    if mode % 4 == 3 {
        return edit_v2(&dek, len, edits);
    }
    let plain: Vec<u8> = (0..len).map(|i| i.wrapping_mul(31)).collect();
    let sealed = seal_chunk(&key, 9, 3, &plain).expect("seal");
    let object = edited(&sealed, edits, 1);
    match open_chunk(&key, 9, 3, BytesMut::from(&object[..])) {
        Ok(got) => {
            assert_eq!(object, sealed, "an edited object opened");
            assert_eq!(&got[..], &plain[..]);
        }
        Err(_) => assert_ne!(object, sealed, "the sealed object did not open"),
    }
}
