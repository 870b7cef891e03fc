//! The sealed object, format v2: 4 KiB slots, each its own AEAD message
//! under a key of the object's own, so that a 4 KiB read reads and opens
//! 4 KiB, and no nonce depends on any state that can go back in time.
//!
//! ```text
//! offset size field
//!      0    4 magic "CFRC"                       (as v1)
//!      4    1 format version (2)
//!      5    1 suite (1 = AES-256-GCM, per-object keys by HKDF-SHA256)
//!      6    1 layers (1, or 2 = double encryption)
//!      7    1 kind (1 = chunk object, 2 = segment)
//!      8    8 DEK id of layer 1 (u64 BE)
//!     16    8 DEK id of layer 2 (0 with one layer)
//!     24   16 object id: 128 random bits, also its store key
//!     40    8 chunk index (chunk object) or segment serial (segment)
//!     48    4 slots in the object, n (u32 BE)
//!     52   12 reserved, zero
//!     64      n slots of SLOT + 16 × layers bytes: ciphertext ‖ tag(s)
//!      …      segment only: the slot table, one more sealed message of
//!             n × (chunk index u64, sector u16, zero u16) ‖ tag(s)
//! ```
//!
//! **Keys.** Layer L's object key is HKDF-SHA256 with the layer's DEK as
//! input key material, the object id as salt, and
//! `"coffer v2 object" ‖ L ‖ DEK id` as info; it is expanded straight into
//! an AES-256-GCM key inside AWS-LC. **Nonce** of slot i: `i` (u32 BE) ‖
//! eight zero bytes; the slot table uses slot number `0xFFFF_FFFF`.
//! **Associated data** of slot i: the 64-byte header, then the slot's
//! target `(chunk index u64, sector u16)`, then `i` (u32). Under double
//! encryption, layer 2 seals layer 1's ciphertext and tag again.
//!
//! So: each object key seals at most `n + 1` messages, each with its own
//! nonce, once (objects are immutable); two objects share a key only if
//! they draw the same 128-bit id under one DEK. A slot cannot be flipped,
//! truncated, swapped with another slot, moved to another target, or
//! replayed from another object (another id: another key), and a reader
//! that knows the object's identity from the chunk map opens one slot
//! without reading the header (see docs/design/format-v2-and-keys.md).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};

use crate::{CryptoError, SecretKey};

/// Format version of this module's objects.
pub const VERSION: u8 = 2;
/// Suite id: AES-256-GCM with per-object keys from HKDF-SHA256.
pub const SUITE_GCM_HKDF: u8 = 1;
/// Plaintext bytes per slot.
pub const SLOT: usize = 4096;
/// Header length.
pub const HEADER_LEN: usize = 64;
/// GCM tag length (per layer, per message).
pub const TAG_LEN: usize = 16;
/// Most slots in one object (a 4 MiB segment).
pub const MAX_SLOTS: u32 = 1024;
/// Bytes per entry of a segment's slot table.
pub const TABLE_ENTRY: usize = 12;
const TABLE_SLOT: u32 = u32::MAX;
const INFO: &[u8] = b"coffer v2 object";

/// What an object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The slots of one chunk, in order: slot i is sector i.
    Chunk = 1,
    /// Sectors from anywhere in a volume, with a slot table.
    Segment = 2,
}

/// Where a slot's data belongs in the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Chunk index in the disk's address space.
    pub chunk: u64,
    /// 4 KiB sector within the chunk.
    pub sector: u16,
}

/// The identity of an object: everything its header says, which a reader
/// also knows from the chunk map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectHeader {
    /// Chunk object or segment.
    pub kind: Kind,
    /// DEK ids: layer 1, and layer 2 under double encryption.
    pub deks: (u64, Option<u64>),
    /// 128 random bits, fresh for each object; also its store key.
    pub object_id: [u8; 16],
    /// Chunk index (chunk object) or segment serial (segment).
    pub index: u64,
    /// Slots in the object.
    pub slots: u32,
}

impl ObjectHeader {
    /// Layers of encryption: 1 or 2.
    pub fn layers(&self) -> usize {
        if self.deks.1.is_some() { 2 } else { 1 }
    }

    /// Stored bytes per slot.
    pub fn slot_len(&self) -> usize {
        SLOT + TAG_LEN * self.layers()
    }

    /// Where slot `i` starts in the object.
    pub fn slot_offset(&self, i: u32) -> u64 {
        HEADER_LEN as u64 + u64::from(i) * self.slot_len() as u64
    }

    /// Stored length of the whole object.
    pub fn object_len(&self) -> u64 {
        let table = match self.kind {
            Kind::Chunk => 0,
            Kind::Segment => self.slots as usize * TABLE_ENTRY + TAG_LEN * self.layers(),
        };
        self.slot_offset(self.slots) + table as u64
    }

    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&crate::chunk::MAGIC);
        h[4] = VERSION;
        h[5] = SUITE_GCM_HKDF;
        h[6] = u8::try_from(self.layers()).expect("1 or 2");
        h[7] = self.kind as u8;
        h[8..16].copy_from_slice(&self.deks.0.to_be_bytes());
        h[16..24].copy_from_slice(&self.deks.1.unwrap_or(0).to_be_bytes());
        h[24..40].copy_from_slice(&self.object_id);
        h[40..48].copy_from_slice(&self.index.to_be_bytes());
        h[48..52].copy_from_slice(&self.slots.to_be_bytes());
        h
    }

    /// Parse a header (no authentication: every slot's tag covers it).
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] naming what is wrong.
    pub fn decode(h: &[u8]) -> Result<Self, CryptoError> {
        let bad = |why: String| Err(CryptoError::Malformed(why));
        if h.len() < HEADER_LEN {
            return bad(format!(
                "object of {} bytes is shorter than a v2 header",
                h.len()
            ));
        }
        if h[0..4] != crate::chunk::MAGIC {
            return bad("bad magic: not a Coffer object".into());
        }
        if h[4] != VERSION || h[5] != SUITE_GCM_HKDF {
            return bad(format!(
                "not a v2 object (version {}, suite {})",
                h[4], h[5]
            ));
        }
        let u64_at = |i: usize| u64::from_be_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        let kind = match h[7] {
            1 => Kind::Chunk,
            2 => Kind::Segment,
            k => return bad(format!("unknown object kind {k}")),
        };
        let deks = match (h[6], u64_at(16)) {
            (1, 0) => (u64_at(8), None),
            (2, d2) if d2 != 0 => (u64_at(8), Some(d2)),
            (l, _) => return bad(format!("inconsistent layers ({l})")),
        };
        let slots = u32::from_be_bytes(h[48..52].try_into().expect("4 bytes"));
        if slots == 0 || slots > MAX_SLOTS || h[52..64].iter().any(|b| *b != 0) {
            return bad(format!("bad slot count {slots} or reserved bytes"));
        }
        Ok(Self {
            kind,
            deks,
            object_id: h[24..40].try_into().expect("16 bytes"),
            index: u64_at(40),
            slots,
        })
    }

    fn aad(&self, slot: u32, target: Option<Target>) -> [u8; HEADER_LEN + 14] {
        let mut a = [0u8; HEADER_LEN + 14];
        a[..HEADER_LEN].copy_from_slice(&self.encode());
        if let Some(t) = target {
            a[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&t.chunk.to_be_bytes());
            a[HEADER_LEN + 8..HEADER_LEN + 10].copy_from_slice(&t.sector.to_be_bytes());
        }
        a[HEADER_LEN + 10..].copy_from_slice(&slot.to_be_bytes());
        a
    }
}

fn nonce(slot: u32) -> Nonce {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&slot.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// A DEK and its id, for deriving object keys.
pub struct Dek<'a> {
    /// The DEK's id (bound into every object it seals).
    pub id: u64,
    /// The key.
    pub key: &'a SecretKey,
}

/// The keys of one object, derived from its DEK(s) and id. Derive once per
/// object and reuse for its slots.
pub struct ObjectKeys {
    header: ObjectHeader,
    layers: Vec<LessSafeKey>,
}

impl std::fmt::Debug for ObjectKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectKeys({:?})", self.header)
    }
}

fn derive(layer: u8, dek: &Dek<'_>, object_id: &[u8; 16]) -> Result<LessSafeKey, CryptoError> {
    let info = [INFO, &[layer], &dek.id.to_be_bytes()];
    let prk = Salt::new(HKDF_SHA256, object_id).extract(dek.key.expose());
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .map_err(|_| CryptoError::Library("hkdf"))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

impl ObjectKeys {
    /// The keys of the object `header` names, from its DEK(s): `layer1`,
    /// and `layer2` under double encryption. The DEK ids must be the
    /// header's.
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] if the DEKs do not match the header.
    pub fn derive(
        header: ObjectHeader,
        layer1: &Dek<'_>,
        layer2: Option<&Dek<'_>>,
    ) -> Result<Self, CryptoError> {
        if layer1.id != header.deks.0 || layer2.map(|d| d.id) != header.deks.1 {
            return Err(CryptoError::Malformed(
                "the DEKs given are not the object's".into(),
            ));
        }
        let mut layers = vec![derive(1, layer1, &header.object_id)?];
        if let Some(d2) = layer2 {
            layers.push(derive(2, d2, &header.object_id)?);
        }
        Ok(Self { header, layers })
    }

    /// The object these keys are for.
    pub fn header(&self) -> &ObjectHeader {
        &self.header
    }

    /// Seal `buf[at..]` (plaintext) in place as message `slot`, appending
    /// the tag(s): `buf[at..]` becomes plaintext ‖ tag(s) encrypted.
    fn seal_tail(
        &self,
        slot: u32,
        target: Option<Target>,
        buf: &mut Vec<u8>,
        at: usize,
    ) -> Result<(), CryptoError> {
        let aad = self.header.aad(slot, target);
        for key in &self.layers {
            let tag = key
                .seal_in_place_separate_tag(nonce(slot), Aad::from(&aad[..]), &mut buf[at..])
                .map_err(|_| CryptoError::Library("seal"))?;
            buf.extend_from_slice(tag.as_ref());
        }
        Ok(())
    }

    fn open<'b>(
        &self,
        slot: u32,
        target: Option<Target>,
        sealed: &'b mut [u8],
    ) -> Result<&'b mut [u8], CryptoError> {
        let aad = self.header.aad(slot, target);
        let mut len = sealed.len();
        for key in self.layers.iter().rev() {
            len = key
                .open_in_place(nonce(slot), Aad::from(&aad[..]), &mut sealed[..len])
                .map_err(|_| {
                    CryptoError::Authentication(
                        "object slot was modified, moved, replayed or sealed under another key",
                    )
                })?
                .len();
        }
        Ok(&mut sealed[..len])
    }

    /// Seal a whole object: `slots` are (target, 4 KiB plaintext) in slot
    /// order; for a chunk object slot i must target (the header's chunk, i).
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] if the slots do not fit the header.
    pub fn seal_object(&self, slots: &[(Target, &[u8])]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(usize::try_from(self.header.object_len()).unwrap_or(0));
        self.seal_object_into(slots, &mut out)?;
        Ok(out)
    }

    /// [`ObjectKeys::seal_object`], appending the object to `out` (which
    /// the caller may have placed, e.g. aligned for direct I/O): each
    /// slot's plaintext is copied into place once and sealed there.
    ///
    /// # Errors
    /// As [`ObjectKeys::seal_object`]; `out` then holds a partial object.
    pub fn seal_object_into(
        &self,
        slots: &[(Target, &[u8])],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let h = &self.header;
        if slots.len() != h.slots as usize {
            return Err(CryptoError::Malformed(format!(
                "{} slots given for an object of {}",
                slots.len(),
                h.slots
            )));
        }
        out.reserve(usize::try_from(h.object_len()).unwrap_or(0));
        out.extend_from_slice(&h.encode());
        let mut table = Vec::with_capacity(slots.len() * TABLE_ENTRY + TAG_LEN * 2);
        for (i, (target, plain)) in slots.iter().enumerate() {
            let i = u32::try_from(i).expect("at most MAX_SLOTS");
            if plain.len() != SLOT {
                return Err(CryptoError::Malformed(format!(
                    "slot {i} holds {} bytes, not {SLOT}",
                    plain.len()
                )));
            }
            if h.kind == Kind::Chunk && (target.chunk != h.index || u32::from(target.sector) != i) {
                return Err(CryptoError::Malformed(format!(
                    "slot {i} of chunk object {} targets chunk {} sector {}",
                    h.index, target.chunk, target.sector
                )));
            }
            let at = out.len();
            out.extend_from_slice(plain);
            self.seal_tail(i, Some(*target), out, at)?;
            table.extend_from_slice(&target.chunk.to_be_bytes());
            table.extend_from_slice(&target.sector.to_be_bytes());
            table.extend_from_slice(&[0, 0]);
        }
        if h.kind == Kind::Segment {
            let at = out.len();
            out.extend_from_slice(&table);
            self.seal_tail(TABLE_SLOT, None, out, at)?;
        }
        Ok(())
    }

    /// Open slot `slot`, stored as `sealed` (exactly its stored bytes, e.g.
    /// from a ranged read at [`ObjectHeader::slot_offset`]), which the
    /// reader expects to hold `target`'s data. Decrypts in place and
    /// returns the 4 KiB plaintext.
    ///
    /// # Errors
    /// [`CryptoError::Authentication`] for any modified, moved, swapped or
    /// replayed byte; [`CryptoError::Malformed`] for a wrong length.
    pub fn open_slot<'b>(
        &self,
        slot: u32,
        target: Target,
        sealed: &'b mut [u8],
    ) -> Result<&'b mut [u8], CryptoError> {
        if slot >= self.header.slots {
            return Err(CryptoError::Malformed(format!(
                "slot {slot} of an object of {}",
                self.header.slots
            )));
        }
        if sealed.len() != self.header.slot_len() {
            return Err(CryptoError::Authentication(
                "object slot has the wrong length",
            ));
        }
        self.open(slot, Some(target), sealed)
    }

    /// [`ObjectKeys::open_slot`] into `out` (4 KiB), leaving `sealed` as
    /// it is: one pass from the stored bytes to the caller's buffer. On
    /// failure `out` is zeroed: no unauthenticated byte is left in it.
    ///
    /// # Errors
    /// As [`ObjectKeys::open_slot`].
    pub fn open_slot_into(
        &self,
        slot: u32,
        target: Target,
        sealed: &[u8],
        out: &mut [u8],
    ) -> Result<(), CryptoError> {
        if slot >= self.header.slots {
            return Err(CryptoError::Malformed(format!(
                "slot {slot} of an object of {}",
                self.header.slots
            )));
        }
        if sealed.len() != self.header.slot_len() || out.len() != SLOT {
            return Err(CryptoError::Authentication(
                "object slot has the wrong length",
            ));
        }
        let res = match &self.layers[..] {
            [key] => {
                let aad = self.header.aad(slot, Some(target));
                let (ct, tag) = sealed.split_at(SLOT);
                key.open_separate_gather(nonce(slot), Aad::from(&aad[..]), ct, tag, out)
                    .map_err(|_| {
                        CryptoError::Authentication(
                            "object slot was modified, moved, replayed or sealed under another key",
                        )
                    })
            }
            // Double encryption: open a copy in place, layer by layer.
            _ => {
                let mut copy = sealed.to_vec();
                let res = self
                    .open(slot, Some(target), &mut copy)
                    .map(|plain| out.copy_from_slice(plain));
                zeroize::Zeroize::zeroize(&mut copy);
                res
            }
        };
        if res.is_err() {
            out.fill(0);
        }
        res
    }

    /// Open a whole object: checks that its header is the one these keys
    /// are for, opens every slot (and a segment's table) and returns the
    /// targets and plaintext of each slot, in order.
    ///
    /// # Errors
    /// As [`ObjectKeys::open_slot`]; also if the header or length differ.
    pub fn open_object(&self, object: &mut [u8]) -> Result<Vec<(Target, Vec<u8>)>, CryptoError> {
        let h = &self.header;
        if ObjectHeader::decode(object)? != *h {
            return Err(CryptoError::Authentication(
                "object is not the one its reference names",
            ));
        }
        if object.len() as u64 != h.object_len() {
            return Err(CryptoError::Authentication("object has the wrong length"));
        }
        let slot_len = h.slot_len();
        let (slots_part, table_part) =
            object[HEADER_LEN..].split_at_mut(slot_len * h.slots as usize);
        let targets: Vec<Target> = match h.kind {
            Kind::Chunk => (0..h.slots)
                .map(|i| Target {
                    chunk: h.index,
                    sector: u16::try_from(i).expect("at most MAX_SLOTS"),
                })
                .collect(),
            Kind::Segment => {
                let table = self.open(TABLE_SLOT, None, table_part)?;
                table
                    .chunks_exact(TABLE_ENTRY)
                    .map(|e| Target {
                        chunk: u64::from_be_bytes(e[..8].try_into().expect("8 bytes")),
                        sector: u16::from_be_bytes(e[8..10].try_into().expect("2 bytes")),
                    })
                    .collect()
            }
        };
        let mut out = Vec::with_capacity(targets.len());
        for (i, (t, sealed)) in targets
            .iter()
            .zip(slots_part.chunks_exact_mut(slot_len))
            .enumerate()
        {
            let i = u32::try_from(i).expect("at most MAX_SLOTS");
            out.push((*t, self.open_slot(i, *t, sealed)?.to_vec()));
        }
        Ok(out)
    }
}

/// A fresh object id: 128 bits from the system CSPRNG.
pub fn new_object_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    crate::random_bytes(&mut id);
    id
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn sector(seed: u8) -> Vec<u8> {
        (0..SLOT)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    fn chunk_header(deks: (u64, Option<u64>), slots: u32) -> ObjectHeader {
        ObjectHeader {
            kind: Kind::Chunk,
            deks,
            object_id: new_object_id(),
            index: 9,
            slots,
        }
    }

    fn sealed_chunk(k: &ObjectKeys) -> (Vec<Vec<u8>>, Vec<u8>) {
        let n = k.header().slots;
        let data: Vec<Vec<u8>> = (0..n).map(|i| sector(i as u8)).collect();
        let slots: Vec<(Target, &[u8])> = data
            .iter()
            .enumerate()
            .map(|(i, d)| {
                (
                    Target {
                        chunk: 9,
                        sector: i as u16,
                    },
                    &d[..],
                )
            })
            .collect();
        (data.clone(), k.seal_object(&slots).unwrap())
    }

    #[test]
    fn a_chunk_round_trips_whole_and_slot_by_slot() {
        let dek = SecretKey::generate();
        let h = chunk_header((3, None), 4);
        let k = ObjectKeys::derive(h, &Dek { id: 3, key: &dek }, None).unwrap();
        let (data, mut obj) = sealed_chunk(&k);
        assert_eq!(obj.len() as u64, h.object_len());
        assert_eq!(ObjectHeader::decode(&obj).unwrap(), h);
        // No plaintext sector appears in the object.
        for d in &data {
            assert!(!obj.windows(64).any(|w| w == &d[..64]));
        }
        // One slot alone, as a ranged read gives it.
        let off = h.slot_offset(2) as usize;
        let mut slot = obj[off..off + h.slot_len()].to_vec();
        let plain = k
            .open_slot(
                2,
                Target {
                    chunk: 9,
                    sector: 2,
                },
                &mut slot,
            )
            .unwrap();
        assert_eq!(&plain[..], &data[2][..]);
        let all = k.open_object(&mut obj).unwrap();
        assert_eq!(all.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(), data);
    }

    #[test]
    fn a_slot_opens_into_a_buffer_of_its_own_with_one_or_two_layers() {
        let (d1, d2) = (SecretKey::generate(), SecretKey::generate());
        let one =
            ObjectKeys::derive(chunk_header((3, None), 3), &Dek { id: 3, key: &d1 }, None).unwrap();
        let two = ObjectKeys::derive(
            chunk_header((3, Some(4)), 3),
            &Dek { id: 3, key: &d1 },
            Some(&Dek { id: 4, key: &d2 }),
        )
        .unwrap();
        let t = |sector| Target { chunk: 9, sector };
        for k in [&one, &two] {
            let h = *k.header();
            let (data, obj) = sealed_chunk(k);
            let off = h.slot_offset(1) as usize;
            let stored = &obj[off..off + h.slot_len()];
            let mut out = vec![0xAA; SLOT];
            k.open_slot_into(1, t(1), stored, &mut out).unwrap();
            assert_eq!(out, data[1]);
            // The stored bytes are left as they were.
            assert_eq!(stored, &obj[off..off + h.slot_len()]);
            // Another target, another slot number, a flipped byte or a
            // short buffer: refused, and nothing unauthenticated is left.
            let mut flipped = stored.to_vec();
            flipped[100] ^= 1;
            for (slot, target, sealed) in [
                (1, t(2), stored),
                (2, t(1), stored),
                (1, t(1), &flipped[..]),
                (1, t(1), &stored[..stored.len() - 1]),
            ] {
                let mut out = vec![0xAA; SLOT];
                assert!(k.open_slot_into(slot, target, sealed, &mut out).is_err());
                assert!(out.iter().all(|&b| b == 0 || b == 0xAA));
            }
            let mut out = vec![0u8; SLOT];
            assert!(k.open_slot_into(3, t(3), stored, &mut out).is_err());
        }
    }

    #[test]
    fn a_segment_round_trips_with_its_table() {
        let dek = SecretKey::generate();
        let h = ObjectHeader {
            kind: Kind::Segment,
            deks: (5, None),
            object_id: new_object_id(),
            index: 77,
            slots: 3,
        };
        let k = ObjectKeys::derive(h, &Dek { id: 5, key: &dek }, None).unwrap();
        let data = [sector(1), sector(2), sector(3)];
        let targets = [
            Target {
                chunk: 1000,
                sector: 7,
            },
            Target {
                chunk: 3,
                sector: 0,
            },
            Target {
                chunk: 1000,
                sector: 8,
            },
        ];
        let slots: Vec<(Target, &[u8])> = targets
            .iter()
            .zip(&data)
            .map(|(t, d)| (*t, &d[..]))
            .collect();
        let mut obj = k.seal_object(&slots).unwrap();
        assert_eq!(obj.len() as u64, h.object_len());
        let back = k.open_object(&mut obj).unwrap();
        for (i, (t, d)) in back.iter().enumerate() {
            assert_eq!(*t, targets[i]);
            assert_eq!(d, &data[i]);
        }
    }

    #[test]
    fn every_way_of_tampering_fails_and_leaves_other_slots_readable() {
        let dek = SecretKey::generate();
        let h = chunk_header((3, None), 4);
        let k = ObjectKeys::derive(h, &Dek { id: 3, key: &dek }, None).unwrap();
        let (data, obj) = sealed_chunk(&k);
        let slot = |o: &[u8], i: u32| {
            let off = h.slot_offset(i) as usize;
            o[off..off + h.slot_len()].to_vec()
        };
        let t = |s: u16| Target {
            chunk: 9,
            sector: s,
        };
        // A flipped bit in slot 1: slot 1 fails, slot 0 still opens.
        let mut flipped = obj.clone();
        flipped[h.slot_offset(1) as usize + 100] ^= 1;
        assert!(k.open_slot(1, t(1), &mut slot(&flipped, 1)).is_err());
        assert_eq!(
            &k.open_slot(0, t(0), &mut slot(&flipped, 0)).unwrap()[..],
            &data[0][..]
        );
        // A flipped tag byte.
        let mut s = slot(&obj, 1);
        let last = s.len() - 1;
        s[last] ^= 0x80;
        assert!(k.open_slot(1, t(1), &mut s).is_err());
        // Truncated.
        let mut s = slot(&obj, 1);
        s.pop();
        assert!(k.open_slot(1, t(1), &mut s).is_err());
        // Two slots swapped: each read where the other belongs.
        assert!(k.open_slot(1, t(1), &mut slot(&obj, 2)).is_err());
        // A slot moved to another target (the right slot number, another
        // sector or chunk of the disk).
        assert!(k.open_slot(1, t(2), &mut slot(&obj, 1)).is_err());
        assert!(
            k.open_slot(
                1,
                Target {
                    chunk: 10,
                    sector: 1
                },
                &mut slot(&obj, 1)
            )
            .is_err()
        );
        // Replayed from an older object of the same chunk, same DEK: that
        // object has another id, so another key.
        let old_h = chunk_header((3, None), 4);
        let old = ObjectKeys::derive(old_h, &Dek { id: 3, key: &dek }, None).unwrap();
        let (_, old_obj) = sealed_chunk(&old);
        assert!(k.open_slot(1, t(1), &mut slot(&old_obj, 1)).is_err());
        let mut whole = old_obj.clone();
        assert!(
            k.open_object(&mut whole).is_err(),
            "a whole older object replayed"
        );
        // Another DEK with the same id.
        let other = SecretKey::generate();
        let wrong = ObjectKeys::derive(h, &Dek { id: 3, key: &other }, None).unwrap();
        assert!(wrong.open_slot(1, t(1), &mut slot(&obj, 1)).is_err());
        // Every byte of the header, for a whole-object read.
        for i in 0..HEADER_LEN {
            let mut bad = obj.clone();
            bad[i] ^= 1;
            assert!(k.open_object(&mut bad).is_err(), "header byte {i}");
        }
    }

    #[test]
    fn double_encryption_needs_both_keys() {
        let (d1, d2) = (SecretKey::generate(), SecretKey::generate());
        let h = chunk_header((3, Some(4)), 2);
        let both = ObjectKeys::derive(h, &Dek { id: 3, key: &d1 }, Some(&Dek { id: 4, key: &d2 }))
            .unwrap();
        let (data, mut obj) = sealed_chunk(&both);
        assert_eq!(h.slot_len(), SLOT + 2 * TAG_LEN);
        let off = h.slot_offset(1) as usize;
        let stored = obj[off..off + h.slot_len()].to_vec();
        let aad = h.aad(
            1,
            Some(Target {
                chunk: 9,
                sector: 1,
            }),
        );
        // The inner layer's key alone (customer key) opens nothing: the
        // stored bytes are the outer layer's ciphertext.
        let inner_key = derive(1, &Dek { id: 3, key: &d1 }, &h.object_id).unwrap();
        let mut s = stored[..SLOT + TAG_LEN].to_vec();
        assert!(
            inner_key
                .open_in_place(nonce(1), Aad::from(&aad[..]), &mut s)
                .is_err()
        );
        assert!(!stored.windows(64).any(|w| w == &data[1][..64]));
        // The outer layer alone (platform key) leaves ciphertext, not data.
        let outer = derive(2, &Dek { id: 4, key: &d2 }, &h.object_id).unwrap();
        let mut s = stored.clone();
        let inner = outer
            .open_in_place(nonce(1), Aad::from(&aad[..]), &mut s)
            .unwrap();
        assert_eq!(inner.len(), SLOT + TAG_LEN);
        assert_ne!(&inner[..SLOT], &data[1][..]);
        assert!(!inner.windows(64).any(|w| w == &data[1][..64]));
        // Both keys: the data.
        let all = both.open_object(&mut obj).unwrap();
        assert_eq!(all[1].1, data[1]);
    }

    #[test]
    fn headers_that_do_not_parse_are_refused() {
        let h = chunk_header((3, None), 4).encode();
        let mut v1 = h;
        v1[4] = 1;
        assert!(ObjectHeader::decode(&v1).is_err());
        let mut layers = h;
        layers[6] = 2; // says two layers, names no second DEK
        assert!(ObjectHeader::decode(&layers).is_err());
        let mut slots = h;
        slots[48..52].copy_from_slice(&(MAX_SLOTS + 1).to_be_bytes());
        assert!(ObjectHeader::decode(&slots).is_err());
        assert!(ObjectHeader::decode(&h[..63]).is_err());
        let dek = SecretKey::generate();
        let hd = ObjectHeader::decode(&h).unwrap();
        assert!(ObjectKeys::derive(hd, &Dek { id: 4, key: &dek }, None).is_err());
    }

    #[test]
    fn object_keys_differ_per_object_and_per_layer() {
        // The same DEK, two objects: the same plaintext seals differently.
        let dek = SecretKey::generate();
        let d = Dek { id: 1, key: &dek };
        let a = ObjectKeys::derive(chunk_header((1, None), 1), &d, None).unwrap();
        let b = ObjectKeys::derive(chunk_header((1, None), 1), &d, None).unwrap();
        let p = sector(0);
        let t = [(
            Target {
                chunk: 9,
                sector: 0,
            },
            &p[..],
        )];
        let (sa, sb) = (a.seal_object(&t).unwrap(), b.seal_object(&t).unwrap());
        assert_ne!(sa[HEADER_LEN..], sb[HEADER_LEN..]);
    }
}
