//! The in-memory layers of an open volume, newest first: the dirty set
//! (written, not yet written back), the flushing set (being sealed), the
//! pending extents (sealed and put, not yet in the chunk map), the
//! committing extents (pending extents a commit transaction is writing to
//! the chunk map now) and the committed chunk map; and the lookup of where
//! a sector's content is now.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use coffer_meta::extents::{find, overlay};
use coffer_meta::{ChunkMap, Extent, Loc, ObjectRef};
use coffer_types::Id;

/// `ObjectRef::kind` of a segment.
pub(crate) const SEGMENT: u8 = coffer_crypto::object::Kind::Segment as u8;

/// Bytes per sector.
pub(crate) const SECTOR: usize = 4096;

/// One sector of new content.
#[derive(Clone)]
pub(crate) enum Sec {
    Data(Bytes),
    Zero,
}

/// New content of one chunk.
#[derive(Clone)]
pub(crate) enum Dirty {
    /// The whole chunk.
    Whole(Bytes),
    /// The whole chunk reads as zeroes.
    Zero,
    /// Some sectors; the others are unchanged.
    Sectors(BTreeMap<u32, Sec>),
}

impl Dirty {
    /// Memory it holds (sector slices of one buffer counted each).
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Dirty::Whole(b) => b.len(),
            Dirty::Zero => 0,
            Dirty::Sectors(m) => m.values().filter(|s| matches!(s, Sec::Data(_))).count() * SECTOR,
        }
    }

    /// Its sectors, `spc` of them (a whole chunk split without copying).
    fn into_sectors(self, spc: u32) -> BTreeMap<u32, Sec> {
        match self {
            Dirty::Sectors(m) => m,
            Dirty::Zero => (0..spc).map(|s| (s, Sec::Zero)).collect(),
            Dirty::Whole(b) => (0..spc)
                .map(|s| {
                    let at = s as usize * SECTOR;
                    (s, Sec::Data(b.slice(at..at + SECTOR)))
                })
                .collect(),
        }
    }

    /// `newer` laid over `self`.
    pub(crate) fn then(self, newer: Dirty, spc: u32) -> Dirty {
        match newer {
            Dirty::Sectors(new) => {
                let mut m = self.into_sectors(spc);
                m.extend(new);
                Dirty::Sectors(m)
            }
            whole => whole,
        }
    }

    /// Sector `s`, if this layer has it.
    fn sector(&self, s: u32) -> Option<Sec> {
        match self {
            Dirty::Whole(b) => {
                let at = s as usize * SECTOR;
                Some(Sec::Data(b.slice(at..at + SECTOR)))
            }
            Dirty::Zero => Some(Sec::Zero),
            Dirty::Sectors(m) => m.get(&s).cloned(),
        }
    }
}

/// Where a sector's current content is.
#[derive(Clone)]
pub(crate) enum Src {
    Mem(Bytes),
    Zero,
    V1 { dek: Id, counter: u64 },
    Obj { obj: Arc<ObjectRef>, slot: u32 },
}

impl Src {
    fn of(e: &Extent, s: u32) -> Src {
        match &e.loc {
            Loc::Zero => Src::Zero,
            Loc::V1 { dek, counter } => Src::V1 {
                dek: *dek,
                counter: *counter,
            },
            Loc::Obj { obj, first_slot } => Src::Obj {
                obj: Arc::clone(obj),
                slot: first_slot + (s - e.first),
            },
        }
    }

    /// Whether two sources name the same stored content.
    pub(crate) fn same(&self, other: &Src) -> bool {
        match (self, other) {
            (Src::Zero, Src::Zero) => true,
            (Src::Mem(a), Src::Mem(b)) => a.as_ptr() == b.as_ptr(),
            (Src::V1 { dek, counter }, Src::V1 { dek: d, counter: c }) => dek == d && counter == c,
            (Src::Obj { obj, slot }, Src::Obj { obj: o, slot: s }) => obj.id == o.id && slot == s,
            _ => false,
        }
    }
}

pub(crate) struct State {
    pub head: u64,
    pub map: ChunkMap,
    pub dirty: HashMap<u64, Dirty>,
    pub flushing: HashMap<u64, Dirty>,
    /// Sealed and put, not yet durable nor in the chunk map: per chunk,
    /// extents to lay over the map, in order.
    pub pending: HashMap<u64, Vec<Extent>>,
    /// Objects put since the last commit (the pending extents' objects and
    /// any they superseded): those no extent names after the commit are
    /// deleted then.
    pub uncommitted: Vec<Arc<ObjectRef>>,
    /// The pending extents a commit took (older than `pending`): in the
    /// chunk map once it succeeds, back under `pending` if it fails.
    pub committing: HashMap<u64, Vec<Extent>>,
    /// The objects that commit took from `uncommitted` (back there if it
    /// fails).
    pub committing_objects: Vec<Arc<ObjectRef>>,
    pub dirty_bytes: usize,
    /// Memory of the flushing set (what `dirty_bytes` was when taken).
    pub flushing_bytes: usize,
    /// What this volume counts against the shared memory budget now.
    pub charged: usize,
    /// Chunks to rewrite whole as one chunk object (compaction), found at
    /// commit time: at least half their sectors are in segments.
    pub compact: BTreeSet<u64>,
    /// Segments this volume committed at its head generation since it was
    /// opened, so no snapshot names them: each with the chunks its extents
    /// were laid on. Cleaned (their live sectors rewritten) once fewer than
    /// half their slots are live; forgotten at a snapshot.
    pub own_segments: HashMap<[u8; 16], OwnSegment>,
}

/// A segment of the volume's head (see [`State::own_segments`]).
pub(crate) struct OwnSegment {
    pub obj: Arc<ObjectRef>,
    /// Chunks whose extents name it (some perhaps no longer).
    pub chunks: BTreeSet<u64>,
    /// Its slots the chunk map still reads.
    pub live: u32,
}

impl State {
    pub(crate) fn new(head: u64, map: ChunkMap) -> Self {
        Self {
            head,
            map,
            dirty: HashMap::new(),
            flushing: HashMap::new(),
            pending: HashMap::new(),
            uncommitted: Vec::new(),
            committing: HashMap::new(),
            committing_objects: Vec::new(),
            dirty_bytes: 0,
            flushing_bytes: 0,
            charged: 0,
            compact: BTreeSet::new(),
            own_segments: HashMap::new(),
        }
    }

    /// Where sector `s` of chunk `idx` is now.
    pub(crate) fn source(&self, idx: u64, s: u32) -> Src {
        for layer in [&self.dirty, &self.flushing] {
            if let Some(sec) = layer.get(&idx).and_then(|d| d.sector(s)) {
                return match sec {
                    Sec::Data(b) => Src::Mem(b),
                    Sec::Zero => Src::Zero,
                };
            }
        }
        for layer in [&self.pending, &self.committing] {
            if let Some(e) = layer
                .get(&idx)
                .and_then(|es| es.iter().rev().find(|e| e.first <= s && s < e.end()))
            {
                return Src::of(e, s);
            }
        }
        match self.map.get(&idx).and_then(|stack| find(stack, s)) {
            Some(e) => Src::of(e, s),
            None => Src::Zero,
        }
    }

    /// Whether chunk `idx` surely reads as zeroes without an object (a
    /// hole); `false` when unsure.
    pub(crate) fn is_hole(&self, idx: u64, spc: u32) -> bool {
        for layer in [&self.dirty, &self.flushing] {
            match layer.get(&idx) {
                None => {}
                Some(Dirty::Zero) => return true,
                Some(Dirty::Whole(_)) => return false,
                Some(Dirty::Sectors(m)) => {
                    if m.values().any(|s| matches!(s, Sec::Data(_))) {
                        return false;
                    }
                    if m.len() == spc as usize {
                        return true;
                    }
                }
            }
        }
        for layer in [&self.pending, &self.committing] {
            if let Some(es) = layer.get(&idx) {
                if es.iter().any(|e| e.loc != Loc::Zero) {
                    return false;
                }
                if es.iter().any(|e| e.first == 0 && e.count == spc) {
                    return true;
                }
            }
        }
        !self.map.contains_key(&idx)
    }

    /// Whether chunk `idx`'s committed content involves its v1 object (a
    /// write to it then rewrites the whole chunk as format v2).
    pub(crate) fn has_v1(&self, idx: u64) -> bool {
        self.map
            .get(&idx)
            .is_some_and(|stack| stack.iter().any(|e| matches!(e.loc, Loc::V1 { .. })))
    }

    /// How many sectors of chunk `idx` the chunk map has in segments, or
    /// `None` while the chunk has newer content in memory or pending (it is
    /// judged again after that commits). A whole chunk in one run of a
    /// segment's slots (a packed write's) counts none: it reads as one
    /// ranged read already, as a chunk object would.
    pub(crate) fn segment_sectors(&self, idx: u64, spc: u32) -> Option<u32> {
        if self.dirty.contains_key(&idx)
            || self.flushing.contains_key(&idx)
            || self.pending.contains_key(&idx)
            || self.committing.contains_key(&idx)
        {
            return None;
        }
        Some(
            self.map
                .get(&idx)
                .into_iter()
                .flatten()
                .filter(|e| matches!(&e.loc, Loc::Obj { obj, .. } if obj.kind == SEGMENT))
                .filter(|e| !(e.first == 0 && e.count == spc))
                .map(|e| e.count)
                .sum(),
        )
    }

    /// Start a commit: the pending extents and their objects become the
    /// committing ones; returns the extents by chunk, in chunk order.
    /// Nothing may be committing already (one commit at a time).
    pub(crate) fn take_pending(&mut self) -> Vec<(u64, Vec<Extent>)> {
        debug_assert!(self.committing.is_empty() && self.committing_objects.is_empty());
        self.committing = std::mem::take(&mut self.pending);
        self.committing_objects = std::mem::take(&mut self.uncommitted);
        let mut changes: Vec<_> = self
            .committing
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        changes.sort_unstable_by_key(|(i, _)| *i);
        changes
    }

    /// A commit failed: its extents go back to pending, under what was
    /// sealed since, and its objects back to the uncommitted ones.
    pub(crate) fn restore_committing(&mut self) {
        for (idx, older) in std::mem::take(&mut self.committing) {
            let newer = self.pending.remove(&idx).unwrap_or_default();
            let mut stack = older;
            for e in newer {
                overlay(&mut stack, e);
            }
            self.pending.insert(idx, stack);
        }
        let mut objects = std::mem::take(&mut self.committing_objects);
        objects.append(&mut self.uncommitted);
        self.uncommitted = objects;
    }

    /// Whether chunk `idx` has content newer than the chunk map in memory
    /// (dirty, being sealed, pending or committing).
    pub(crate) fn has_newer(&self, idx: u64) -> bool {
        self.dirty.contains_key(&idx)
            || self.flushing.contains_key(&idx)
            || self.pending.contains_key(&idx)
            || self.committing.contains_key(&idx)
    }

    /// The runs of chunk `idx`'s sectors that the chunk map reads from
    /// object `id`: (first sector, count).
    pub(crate) fn runs_in(&self, idx: u64, id: &[u8; 16]) -> Vec<(u32, u32)> {
        self.map
            .get(&idx)
            .into_iter()
            .flatten()
            .filter(|e| matches!(&e.loc, Loc::Obj { obj, .. } if obj.id == *id))
            .map(|e| (e.first, e.count))
            .collect()
    }

    /// Own segments with fewer than half their slots live, each with the
    /// chunks that may hold its live sectors.
    pub(crate) fn segments_to_clean(&self) -> Vec<([u8; 16], Vec<u64>)> {
        self.own_segments
            .iter()
            .filter(|(_, g)| 2 * g.live < g.obj.slots)
            .map(|(id, g)| (*id, g.chunks.iter().copied().collect()))
            .collect()
    }

    /// Whether some own segment is due for cleaning.
    pub(crate) fn cleaning_due(&self) -> bool {
        self.own_segments.values().any(|g| 2 * g.live < g.obj.slots)
    }

    /// Add (or with `add` false, take away) the sectors chunk `idx` of the
    /// map reads from each tracked segment to its live count; a segment in
    /// `new` (committed just now) is tracked from here on. Segments of
    /// earlier opens or from before a snapshot are not tracked: rewriting
    /// their sectors would free nothing or only part of them.
    fn count_own(&mut self, idx: u64, me: Id, add: bool, new: &HashSet<[u8; 16]>) {
        let Some(stack) = self.map.get(&idx) else {
            return;
        };
        for e in stack {
            let Loc::Obj { obj, .. } = &e.loc else {
                continue;
            };
            if obj.kind != SEGMENT || obj.writer != me {
                continue;
            }
            if add {
                if !new.contains(&obj.id) && !self.own_segments.contains_key(&obj.id) {
                    continue;
                }
                let g = self
                    .own_segments
                    .entry(obj.id)
                    .or_insert_with(|| OwnSegment {
                        obj: Arc::clone(obj),
                        chunks: BTreeSet::new(),
                        live: 0,
                    });
                g.chunks.insert(idx);
                g.live += e.count;
            } else if let Some(g) = self.own_segments.get_mut(&obj.id) {
                g.live = g.live.saturating_sub(e.count);
            }
        }
    }

    /// Lay committed extents over the map, keeping the live counts of the
    /// volume's (`me`'s) own segments: a segment no chunk reads any more
    /// is forgotten (the commit queued it for deletion).
    pub(crate) fn commit_tracking(&mut self, changes: &[(u64, Vec<Extent>)], me: Id) {
        let new: HashSet<[u8; 16]> = changes
            .iter()
            .flat_map(|(_, es)| es)
            .filter_map(|e| match &e.loc {
                Loc::Obj { obj, .. } if obj.kind == SEGMENT && obj.writer == me => Some(obj.id),
                _ => None,
            })
            .collect();
        for (idx, _) in changes {
            self.count_own(*idx, me, false, &new);
        }
        self.commit_into_map(changes);
        for (idx, _) in changes {
            self.count_own(*idx, me, true, &new);
        }
        self.own_segments.retain(|_, g| g.live > 0);
    }

    /// Lay committed extents over the map.
    pub(crate) fn commit_into_map(&mut self, changes: &[(u64, Vec<Extent>)]) {
        for (idx, es) in changes {
            let stack = self.map.entry(*idx).or_default();
            for e in es {
                overlay(stack, e.clone());
            }
            stack.retain(|e| e.loc != Loc::Zero);
            if stack.is_empty() {
                self.map.remove(idx);
            }
        }
    }
}
