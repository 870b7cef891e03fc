//! The sealed chunk object: how one chunk of disk data is stored.
//!
//! ```text
//! offset size field
//!      0    4 magic "CFRC"                      } never change: these bytes
//!      4    1 format version (1)                } identify the format
//!      5    1 cipher (1 = AES-256-GCM)
//!      6    2 reserved, zero
//!      8    8 DEK id (u64, big endian)
//!     16    8 counter: the object's serial under this DEK (u64 BE)
//!     24    8 chunk index in the disk's address space (u64 BE)
//!     32    4 plaintext length (u32 BE)
//!     36    4 reserved, zero
//!     40    n ciphertext
//!   40+n   16 GCM tag
//! ```
//!
//! The whole 40-byte header is the AEAD's associated data, so changing any
//! header field is detected exactly like changing the ciphertext. Binding the
//! chunk index stops a stored chunk from being replayed at another offset;
//! binding the counter (which also names the object) stops one object's
//! content from being swapped in for another's.
//!
//! **Nonce construction.** The 96-bit nonce is `00 00 00 01 || counter`. The
//! counter is a per-DEK serial handed out by the metadata store in reserved
//! ranges that are durably recorded *before* any value in them is used, and
//! never handed out twice (see docs/SECURITY.md). So under one DEK no two
//! objects ever share a nonce, by construction rather than by chance. The
//! constant prefix separates chunk nonces from any future use of the key.
//! A DEK seals at most [`MAX_COUNTER`] objects (2^32, NIST SP 800-38D's bound
//! for one key), after which sealing fails with [`CryptoError::NonceExhausted`].

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use bytes::{Buf, Bytes, BytesMut};

use crate::{CryptoError, SecretKey};

/// Magic bytes at the start of every chunk object. Never change.
pub const MAGIC: [u8; 4] = *b"CFRC";
/// Current format version.
pub const VERSION: u8 = 1;
/// Cipher id for AES-256-GCM.
pub const CIPHER_AES_256_GCM: u8 = 1;
/// Length of the header.
pub const HEADER_LEN: usize = 40;
/// Length of the GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Highest counter value a DEK may seal with (exclusive).
pub const MAX_COUNTER: u64 = 1 << 32;
const NONCE_DOMAIN_CHUNK: [u8; 4] = [0, 0, 0, 1];

/// The identity of a chunk object, bound into its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// The DEK it is sealed under.
    pub dek_id: u64,
    /// The object's serial under that DEK (also its nonce).
    pub counter: u64,
    /// Where in the disk the chunk belongs.
    pub chunk_index: u64,
    /// Plaintext length.
    pub plain_len: u32,
}

impl ChunkHeader {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4] = VERSION;
        h[5] = CIPHER_AES_256_GCM;
        h[8..16].copy_from_slice(&self.dek_id.to_be_bytes());
        h[16..24].copy_from_slice(&self.counter.to_be_bytes());
        h[24..32].copy_from_slice(&self.chunk_index.to_be_bytes());
        h[32..36].copy_from_slice(&self.plain_len.to_be_bytes());
        h
    }

    /// Parse a header (no authentication: use [`open_chunk`] for that).
    pub fn decode(h: &[u8]) -> Result<Self, CryptoError> {
        if h.len() < HEADER_LEN {
            return Err(CryptoError::Malformed(format!(
                "object of {} bytes is shorter than a header",
                h.len()
            )));
        }
        if h[0..4] != MAGIC {
            return Err(CryptoError::Malformed(
                "bad magic: not a Coffer chunk object".into(),
            ));
        }
        if h[4] != VERSION || h[5] != CIPHER_AES_256_GCM {
            return Err(CryptoError::Malformed(format!(
                "unknown format version {} / cipher {}",
                h[4], h[5]
            )));
        }
        let u64_at = |i: usize| u64::from_be_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        Ok(Self {
            dek_id: u64_at(8),
            counter: u64_at(16),
            chunk_index: u64_at(24),
            plain_len: u32::from_be_bytes(h[32..36].try_into().expect("4 bytes")),
        })
    }

    fn nonce(&self) -> Nonce {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&NONCE_DOMAIN_CHUNK);
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }
}

/// A DEK ready for sealing and opening chunks. Build once per lineage and
/// reuse: it holds the expanded AES key schedule.
pub struct ChunkKey {
    dek_id: u64,
    key: LessSafeKey,
}

impl std::fmt::Debug for ChunkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkKey(dek {:016x})", self.dek_id)
    }
}

impl ChunkKey {
    /// Prepare `dek` (whose id is `dek_id`) for chunk sealing.
    pub fn new(dek_id: u64, dek: &SecretKey) -> Result<Self, CryptoError> {
        let unbound = UnboundKey::new(&AES_256_GCM, dek.expose())
            .map_err(|_| CryptoError::Library("aes key"))?;
        Ok(Self {
            dek_id,
            key: LessSafeKey::new(unbound),
        })
    }

    /// The DEK id.
    pub fn dek_id(&self) -> u64 {
        self.dek_id
    }
}

/// Seal `plaintext` as chunk `chunk_index` with object serial `counter`.
/// `counter` must come from the DEK's reserved counter range (see module doc).
pub fn seal_chunk(
    key: &ChunkKey,
    counter: u64,
    chunk_index: u64,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if counter >= MAX_COUNTER {
        return Err(CryptoError::NonceExhausted);
    }
    let plain_len = u32::try_from(plaintext.len())
        .map_err(|_| CryptoError::Malformed("chunk larger than 4 GiB".into()))?;
    let header = ChunkHeader {
        dek_id: key.dek_id,
        counter,
        chunk_index,
        plain_len,
    };
    let h = header.encode();
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&h);
    out.extend_from_slice(plaintext);
    let tag = key
        .key
        .seal_in_place_separate_tag(header.nonce(), Aad::from(&h), &mut out[HEADER_LEN..])
        .map_err(|_| CryptoError::Library("seal"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Open a sealed chunk object, checking that it is the object `expected`
/// names (DEK, counter, index). Decrypts in place and returns the plaintext
/// without copying. Any modified byte gives [`CryptoError::Authentication`].
pub fn open_chunk(
    key: &ChunkKey,
    expected_counter: u64,
    expected_index: u64,
    object: BytesMut,
) -> Result<Bytes, CryptoError> {
    let mut object = object;
    let header = ChunkHeader::decode(&object)?;
    if header.dek_id != key.dek_id
        || header.counter != expected_counter
        || header.chunk_index != expected_index
    {
        return Err(CryptoError::Authentication(
            "chunk object is not the one its reference names",
        ));
    }
    let plain_len =
        usize::try_from(header.plain_len).map_err(|_| CryptoError::Malformed("length".into()))?;
    if object.len() != HEADER_LEN + plain_len + TAG_LEN {
        return Err(CryptoError::Authentication(
            "chunk object has the wrong length",
        ));
    }
    let h: [u8; HEADER_LEN] = object[..HEADER_LEN].try_into().expect("header length");
    let plain = key
        .key
        .open_in_place(header.nonce(), Aad::from(&h), &mut object[HEADER_LEN..])
        .map_err(|_| {
            CryptoError::Authentication("chunk object was modified or sealed under another key")
        })?
        .len();
    debug_assert_eq!(plain, plain_len);
    object.advance(HEADER_LEN);
    object.truncate(plain_len);
    Ok(object.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ChunkKey {
        ChunkKey::new(7, &SecretKey::generate()).unwrap()
    }

    #[test]
    fn round_trip() {
        let k = key();
        let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let sealed = seal_chunk(&k, 42, 3, &data).unwrap();
        assert_eq!(sealed.len(), data.len() + OVERHEAD);
        assert!(
            !sealed
                .windows(32)
                .any(|w| data.windows(32).take(1000).any(|d| d == w))
        );
        let plain = open_chunk(&k, 42, 3, BytesMut::from(&sealed[..])).unwrap();
        assert_eq!(&plain[..], &data[..]);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let k = key();
        let data = vec![0x5au8; 300];
        let sealed = seal_chunk(&k, 1, 0, &data).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                open_chunk(&k, 1, 0, BytesMut::from(&bad[..])).is_err(),
                "flip at {i} undetected"
            );
        }
        let mut short = sealed.clone();
        short.pop();
        assert!(open_chunk(&k, 1, 0, BytesMut::from(&short[..])).is_err());
    }

    #[test]
    fn wrong_identity_or_key_is_detected() {
        let k = key();
        let sealed = seal_chunk(&k, 9, 5, b"hello").unwrap();
        assert!(open_chunk(&k, 9, 6, BytesMut::from(&sealed[..])).is_err());
        assert!(open_chunk(&k, 10, 5, BytesMut::from(&sealed[..])).is_err());
        let other = ChunkKey::new(7, &SecretKey::generate()).unwrap();
        assert!(open_chunk(&other, 9, 5, BytesMut::from(&sealed[..])).is_err());
    }

    #[test]
    fn a_dek_seals_at_most_2_pow_32_objects() {
        // docs/SECURITY.md and NIST SP 800-38D: at most 2^32 invocations of
        // one key, so counters 0 ..= 2^32 - 1 and no more.
        let k = key();
        let last = (1u64 << 32) - 1;
        let sealed = seal_chunk(&k, last, 0, b"x").unwrap();
        assert_eq!(
            &open_chunk(&k, last, 0, BytesMut::from(&sealed[..])).unwrap()[..],
            b"x"
        );
        for counter in [1u64 << 32, (1 << 32) + 1, u64::MAX] {
            assert_eq!(
                seal_chunk(&k, counter, 0, b"x"),
                Err(CryptoError::NonceExhausted),
                "counter {counter}"
            );
        }
    }
}
