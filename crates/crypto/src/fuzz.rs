//! The fuzzing entry point of the chunk object decoder (used by `fuzz/` with
//! AFL++ and by the corpus replay test). Random bytes almost never pass
//! AES-GCM, so most inputs edit a valid sealed object instead: the first
//! byte chooses raw (even) or edited (odd); an edited object is sealed from
//! a plaintext whose length is the second byte, then each further triple
//! `(position hi, position lo, xor)` flips bits, and a final odd byte count
//! truncates. The rule checked: an object opens only if it is exactly the
//! object sealed, and then gives back exactly the plaintext sealed; every
//! other object is refused with an error, never a panic.

use bytes::BytesMut;

use crate::{ChunkHeader, ChunkKey, SecretKey, open_chunk, seal_chunk, unwrap_key};

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
        return;
    }
    let Some((&len, edits)) = rest.split_first() else {
        return;
    };
    let plain: Vec<u8> = (0..len).map(|i| i.wrapping_mul(31)).collect();
    let sealed = seal_chunk(&key, 9, 3, &plain).expect("seal");
    let mut object = sealed.clone();
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
        object.truncate(usize::from(*cut));
    }
    match open_chunk(&key, 9, 3, BytesMut::from(&object[..])) {
        Ok(got) => {
            assert_eq!(object, sealed, "an edited object opened");
            assert_eq!(&got[..], &plain[..]);
        }
        Err(_) => assert_ne!(object, sealed, "the sealed object did not open"),
    }
}
