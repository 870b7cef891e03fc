//! Write-back in format v2: the flushing set becomes chunk objects (for
//! chunks written whole) and segments (every other sector, packed in
//! chunk and sector order, up to 1,024 per object), sealed under the
//! volume's write DEK with keys of their own, and the extents that name
//! them. A volume that packs (a copy job's target) puts its whole chunks
//! into segments too, several whole chunks an object.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use coffer_crypto::SecretKey;
use coffer_crypto::object::{self, Dek, ObjectHeader, ObjectKeys, Target};
use coffer_meta::{Extent, Loc, ObjectRef};
use coffer_store::BufPool;
use coffer_types::Id;

use crate::state::{Dirty, SECTOR, Sec};
use crate::{Result, VolumeError};

/// Alignment of a sealed object's first byte in memory (a page: what
/// direct I/O needs).
const OBJECT_ALIGN: usize = 4096;

/// What one object will hold before it is sealed.
pub(crate) struct ObjectPlan {
    pub kind: object::Kind,
    pub index: u64,
    pub slots: Vec<(Target, Bytes)>,
}

/// A write-back, planned: extents that need no object (zeroes), and the
/// objects to seal with the sectors each holds.
#[derive(Default)]
pub(crate) struct WritePlan {
    pub zeroes: Vec<(u64, Extent)>,
    pub objects: Vec<ObjectPlan>,
}

fn is_zero(b: &[u8]) -> bool {
    b.chunks(64).all(|c| c.iter().fold(0u8, |a, &x| a | x) == 0)
}

fn push_zero(zeroes: &mut Vec<(u64, Extent)>, idx: u64, s: u32) {
    if let Some((i, e)) = zeroes.last_mut()
        && *i == idx
        && e.end() == s
    {
        e.count += 1;
        return;
    }
    zeroes.push((
        idx,
        Extent {
            first: s,
            count: 1,
            loc: Loc::Zero,
        },
    ));
}

/// Plan the write-back of `entries` (chunk → new content) for chunks of
/// `spc` sectors; `serial` names this write-back's segments. With `pack`,
/// whole chunks are not one object each but go, whole and in chunk order,
/// into segments of up to [`object::MAX_SLOTS`] slots (16 chunks of
/// 256 KiB): fewer, larger objects, for writers whose chunks are not
/// overwritten one by one afterwards (a chunk of a packed segment keeps
/// the whole segment stored until every chunk in it is superseded).
pub(crate) fn plan(mut entries: Vec<(u64, Dirty)>, spc: u32, serial: u64, pack: bool) -> WritePlan {
    entries.sort_unstable_by_key(|e| e.0);
    let whole = |idx: u64, b: Bytes| ObjectPlan {
        kind: object::Kind::Chunk,
        index: idx,
        slots: (0..spc)
            .map(|s| {
                let at = s as usize * SECTOR;
                (
                    Target {
                        chunk: idx,
                        sector: sector16(s),
                    },
                    b.slice(at..at + SECTOR),
                )
            })
            .collect(),
    };
    let mut p = WritePlan::default();
    let mut loose: Vec<(Target, Bytes)> = Vec::new();
    let mut serial = serial;
    let mut packed: Vec<(Target, Bytes)> = Vec::new();
    let mut add_whole = |p: &mut WritePlan, idx: u64, b: Bytes| {
        let chunk = whole(idx, b);
        if !pack {
            p.objects.push(chunk);
            return;
        }
        if packed.len() + chunk.slots.len() > object::MAX_SLOTS as usize {
            p.objects.push(ObjectPlan {
                kind: object::Kind::Segment,
                index: serial,
                slots: std::mem::take(&mut packed),
            });
            serial += 1;
        }
        packed.extend(chunk.slots);
    };
    for (idx, d) in entries {
        match d {
            Dirty::Whole(b) if !is_zero(&b) => add_whole(&mut p, idx, b),
            Dirty::Whole(_) | Dirty::Zero => p.zeroes.push((
                idx,
                Extent {
                    first: 0,
                    count: spc,
                    loc: Loc::Zero,
                },
            )),
            Dirty::Sectors(m) => {
                let data = m
                    .values()
                    .filter(|s| matches!(s, Sec::Data(b) if !is_zero(b)))
                    .count();
                if m.len() == spc as usize && data > 0 {
                    let mut buf = BytesMut::zeroed(spc as usize * SECTOR);
                    for (s, sec) in &m {
                        if let Sec::Data(b) = sec {
                            let at = *s as usize * SECTOR;
                            buf[at..at + SECTOR].copy_from_slice(b);
                        }
                    }
                    add_whole(&mut p, idx, buf.freeze());
                    continue;
                }
                for (s, sec) in m {
                    match sec {
                        Sec::Data(b) if !is_zero(&b) => loose.push((
                            Target {
                                chunk: idx,
                                sector: sector16(s),
                            },
                            b,
                        )),
                        _ => push_zero(&mut p.zeroes, idx, s),
                    }
                }
            }
        }
    }
    if !packed.is_empty() {
        p.objects.push(ObjectPlan {
            kind: object::Kind::Segment,
            index: serial,
            slots: packed,
        });
        serial += 1;
    }
    for (i, part) in loose.chunks(object::MAX_SLOTS as usize).enumerate() {
        p.objects.push(ObjectPlan {
            kind: object::Kind::Segment,
            index: serial + i as u64,
            slots: part.to_vec(),
        });
    }
    p
}

/// A sector index as the crypto layer's u16 (chunks have at most 1,024).
pub(crate) fn sector16(s: u32) -> u16 {
    u16::try_from(s).expect("at most 1,024 sectors a chunk")
}

/// The header of a stored object.
pub(crate) fn header(obj: &ObjectRef) -> Result<ObjectHeader> {
    let kind = match obj.kind {
        1 => object::Kind::Chunk,
        2 => object::Kind::Segment,
        k => {
            return Err(VolumeError::Crypto(coffer_crypto::CryptoError::Malformed(
                format!("the chunk map names an object of unknown kind {k}"),
            )));
        }
    };
    Ok(ObjectHeader {
        kind,
        deks: (obj.dek.value(), obj.dek2.map(|d| d.value())),
        object_id: obj.id,
        index: obj.index,
        slots: obj.slots,
    })
}

/// The keys of `obj`, from its DEK(s).
///
/// # Errors
/// An object of unknown kind, or DEKs that are not its.
pub fn keys(obj: &ObjectRef, dek: &SecretKey, dek2: Option<&SecretKey>) -> Result<ObjectKeys> {
    let l2 = match (obj.dek2, dek2) {
        (Some(id), Some(k)) => Some(Dek {
            id: id.value(),
            key: k,
        }),
        _ => None,
    };
    Ok(ObjectKeys::derive(
        header(obj)?,
        &Dek {
            id: obj.dek.value(),
            key: dek,
        },
        l2.as_ref(),
    )?)
}

/// Seal `plan` as a fresh object of `writer` under `dek` (and under
/// double encryption a second, outer layer under `dek2`), returning its
/// reference and bytes, in a buffer of `pool` (back there once the bytes
/// are dropped). A fresh 128-bit id every call.
pub(crate) fn seal(
    plan: &ObjectPlan,
    writer: Id,
    dek: (Id, &SecretKey),
    dek2: Option<(Id, &SecretKey)>,
    pool: &Arc<BufPool>,
) -> Result<(Arc<ObjectRef>, Bytes)> {
    let obj = ObjectRef {
        id: object::new_object_id(),
        writer,
        kind: plan.kind as u8,
        index: plan.index,
        slots: u32::try_from(plan.slots.len()).expect("at most MAX_SLOTS"),
        dek: dek.0,
        dek2: dek2.map(|d| d.0),
    };
    let k = keys(&obj, dek.1, dek2.map(|d| d.1))?;
    let slots: Vec<(Target, &[u8])> = plan.slots.iter().map(|(t, b)| (*t, &b[..])).collect();
    // Sealed where it will stay, from a page-aligned address: a store
    // that writes with O_DIRECT writes it from there, without staging.
    let len = usize::try_from(k.header().object_len()).expect("objects are a few MiB");
    // A pooled buffer (or a new one), empty: sealing appends within its
    // capacity, so it is not reallocated.
    let mut buf = pool.take_empty(len + OBJECT_ALIGN);
    let pad = buf.as_ptr().align_offset(OBJECT_ALIGN);
    buf.resize(pad, 0);
    if let Err(e) = k.seal_object_into(&slots, &mut buf) {
        pool.give(buf);
        return Err(e.into());
    }
    Ok((Arc::new(obj), pool.bytes(buf, pad, len)))
}

/// The extents naming what `plan` sealed as `obj`: runs of consecutive
/// sectors of one chunk in consecutive slots.
pub(crate) fn extents_of(plan: &ObjectPlan, obj: &Arc<ObjectRef>) -> Vec<(u64, Extent)> {
    let mut out: Vec<(u64, Extent)> = Vec::new();
    for (slot, (t, _)) in plan.slots.iter().enumerate() {
        let slot = u32::try_from(slot).expect("at most MAX_SLOTS");
        let s = u32::from(t.sector);
        if let Some((c, e)) = out.last_mut()
            && *c == t.chunk
            && e.end() == s
            && matches!(&e.loc, Loc::Obj { first_slot, .. } if first_slot + e.count == slot)
        {
            e.count += 1;
            continue;
        }
        out.push((
            t.chunk,
            Extent {
                first: s,
                count: 1,
                loc: Loc::Obj {
                    obj: Arc::clone(obj),
                    first_slot: slot,
                },
            },
        ));
    }
    out
}

/// Group extents per chunk, keeping their order.
pub(crate) fn by_chunk(list: Vec<(u64, Extent)>) -> HashMap<u64, Vec<Extent>> {
    let mut m: HashMap<u64, Vec<Extent>> = HashMap::new();
    for (idx, e) in list {
        m.entry(idx).or_default().push(e);
    }
    m
}
