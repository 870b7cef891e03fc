//! Format v2 chunk maps: what each 4 KiB sector of a chunk holds, as a
//! stack of extents (see docs/design/format-v2-and-keys.md §2).
//!
//! A chunk's rows at one generation are disjoint extents `(first sector,
//! count) → location`, where the location is a slot range of a v2 object
//! (a chunk object or a segment of the small-write log), zeroes, or — for
//! chunks written before format v2 — the chunk's whole v1 object (a row of
//! `chunks`, which covers every sector). A view `(volume, G)` sees, per
//! sector, the row of the highest generation `<= G` covering it; at one
//! generation v2 extents lie above the v1 row (they were written after it).
//!
//! This module owns the extent arithmetic (overlaying, slicing, which rows
//! no view sees) shared by view resolution, commits, garbage collection
//! and `fsck`, and the row lists (`RowList`) that let one statement insert or
//! delete any number of rows, so a commit costs a constant number of round
//! trips however many chunks it touches.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use coffer_types::{Id, Kind};

use crate::{Backend, MetaError, Result, parse_id, to_i64, to_u64};

/// Bytes per sector: the unit of a v2 slot.
pub const SECTOR: u64 = 4096;

/// The identity of a v2 object: everything bound into its keys and
/// associated data, which a reader needs to open one of its slots.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// 128 random bits, fresh per object.
    pub id: [u8; 16],
    /// The volume that wrote it (its store key lies under it, which is
    /// how the orphan sweep knows a live writer may still commit it).
    pub writer: Id,
    /// 1 = chunk object, 2 = segment (`coffer_crypto::object::Kind`).
    pub kind: u8,
    /// Chunk index (chunk object) or segment serial (segment).
    pub index: u64,
    /// Slots in the object.
    pub slots: u32,
    /// DEK of layer 1.
    pub dek: Id,
    /// DEK of layer 2 (double encryption).
    pub dek2: Option<Id>,
}

/// Lowercase hex of an object id.
pub fn hex_id(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse 32 lowercase hex digits.
pub fn parse_hex_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Where a run of sectors is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loc {
    /// Zeroes (never written, trimmed, or written as zeroes).
    Zero,
    /// The chunk's v1 object: counter `counter` under DEK `dek`. Sector
    /// `s` of the extent is sector `s` of that object's plaintext.
    V1 {
        /// The DEK (the v1 row's volume's).
        dek: Id,
        /// The object's counter.
        counter: u64,
    },
    /// Slots of a v2 object: the extent's first sector is slot `first_slot`.
    Obj {
        /// The object.
        obj: Arc<ObjectRef>,
        /// Slot holding the extent's first sector.
        first_slot: u32,
    },
}

/// A run of sectors of one chunk and where they are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extent {
    /// First sector (in the chunk).
    pub first: u32,
    /// Sectors.
    pub count: u32,
    /// Where.
    pub loc: Loc,
}

impl Extent {
    /// One past the last sector.
    pub fn end(&self) -> u32 {
        self.first + self.count
    }

    /// The part of this extent in sectors `[from, to)` (within it).
    pub fn sub(&self, from: u32, to: u32) -> Extent {
        debug_assert!(self.first <= from && from < to && to <= self.end());
        let loc = match &self.loc {
            Loc::Obj { obj, first_slot } => Loc::Obj {
                obj: Arc::clone(obj),
                first_slot: first_slot + (from - self.first),
            },
            other => other.clone(),
        };
        Extent {
            first: from,
            count: to - from,
            loc,
        }
    }
}

/// Lay `new` over the disjoint, sorted extents `stack`: what it covers is
/// cut out of the others, which stay sorted and disjoint.
pub fn overlay(stack: &mut Vec<Extent>, new: Extent) {
    let (a, b) = (new.first, new.end());
    if a >= b {
        return;
    }
    let mut out = Vec::with_capacity(stack.len() + 2);
    for e in stack.drain(..) {
        if e.end() <= a || e.first >= b {
            out.push(e);
            continue;
        }
        if e.first < a {
            out.push(e.sub(e.first, a));
        }
        if e.end() > b {
            out.push(e.sub(b, e.end()));
        }
    }
    let at = out.partition_point(|e| e.first < a);
    out.insert(at, new);
    *stack = out;
}

/// The extent of `stack` (sorted, disjoint) that covers `sector`.
pub fn find(stack: &[Extent], sector: u32) -> Option<&Extent> {
    let i = stack.partition_point(|e| e.end() <= sector);
    stack.get(i).filter(|e| e.first <= sector)
}

/// A resolved view: chunk index → its data extents, sorted and disjoint
/// (sectors in no extent, and chunks absent, read as zeroes).
pub type ChunkMap = HashMap<u64, Vec<Extent>>;

/// A stored row of a chunk: a v1 row (whole chunk) or a v2 extent.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub generation: u64,
    /// 0: a v1 row of `chunks`; 1: an extent. At one generation, extents
    /// lie above the v1 row.
    pub layer: u8,
    pub extent: Extent,
}

/// Which of one chunk's rows (sorted by generation, layer, first sector)
/// no view in `views` sees. A row at generation `g` can be seen only by
/// views `>= g`, and what hides it from one view hides it from every later
/// one, so it is dead when there is no such view, or when every sector of
/// it is covered at the first such view `v` by rows above it (generations
/// in `(g, v]`, or its own generation's upper layer).
pub(crate) fn dead_rows(rows: &[Row], views: &BTreeSet<u64>) -> Vec<usize> {
    let mut dead = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let Some(&v) = views.range(r.generation..).next() else {
            dead.push(i);
            continue;
        };
        let (a, b) = (r.extent.first, r.extent.end());
        let mut covered = vec![false; (b - a) as usize];
        for o in rows {
            let above = (o.generation > r.generation && o.generation <= v)
                || (o.generation == r.generation && o.layer > r.layer);
            if !above {
                continue;
            }
            for s in o.extent.first.max(a)..o.extent.end().min(b) {
                covered[(s - a) as usize] = true;
            }
        }
        if covered.iter().all(|c| *c) {
            dead.push(i);
        }
    }
    dead
}

/// Apply one chunk's rows (sorted by generation, layer, first sector) at
/// or below `generation` over `stack`.
pub(crate) fn apply_rows(stack: &mut Vec<Extent>, rows: &[Row], generation: u64) {
    for r in rows.iter().filter(|r| r.generation <= generation) {
        overlay(stack, r.extent.clone());
    }
}

/// Drop zero extents: what remains is the data of a resolved view.
pub(crate) fn data_only(stack: &mut Vec<Extent>) {
    stack.retain(|e| e.loc != Loc::Zero);
}

/// Column types of a row list.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Col {
    Int,
    Text,
}

/// One value of a row of a [`RowList`].
pub(crate) enum J {
    I(i64),
    S(String),
    Null,
}

/// Any number of rows bound as statement parameters, so one statement
/// inserts, deletes or joins them all: a commit costs a constant number of
/// round trips however many chunks it touches.
///
/// On SQLite the rows are one JSON array of arrays, read by `json_each`.
/// On PostgreSQL each column is one typed array literal, read by `unnest`:
/// PostgreSQL parsed a 16,384-row extent list in 55–63 ms this way against
/// 90–137 ms as one `jsonb` document (docs/PERFORMANCE.md, "PostgreSQL
/// commits"). Strings are ids and hex digits, checked to need no escaping
/// in either form.
pub(crate) struct RowList {
    backend: Backend,
    cols: Vec<Col>,
    /// SQLite: the JSON text. PostgreSQL: one array literal per column.
    bufs: Vec<String>,
    rows: usize,
}

impl RowList {
    /// An empty list of rows with columns `cols`.
    pub(crate) fn new(backend: Backend, cols: &[Col]) -> Self {
        let n = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => cols.len(),
        };
        RowList {
            backend,
            cols: cols.to_vec(),
            bufs: vec![String::new(); n],
            rows: 0,
        }
    }

    /// A list of `rows`.
    pub(crate) fn of(
        backend: Backend,
        cols: &[Col],
        rows: impl IntoIterator<Item = Vec<J>>,
    ) -> Self {
        let mut l = Self::new(backend, cols);
        for r in rows {
            l.push(&r);
        }
        l
    }

    /// Append one row; it has one value per column.
    pub(crate) fn push(&mut self, row: &[J]) {
        use std::fmt::Write as _;
        debug_assert_eq!(row.len(), self.cols.len());
        let first = self.rows == 0;
        self.rows += 1;
        match self.backend {
            Backend::Sqlite => {
                let out = &mut self.bufs[0];
                out.push(if first { '[' } else { ',' });
                out.push('[');
                for (j, v) in row.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    push_value(out, v, "null");
                }
                out.push(']');
            }
            Backend::Postgres => {
                for (out, v) in self.bufs.iter_mut().zip(row) {
                    out.push(if first { '{' } else { ',' });
                    push_value(out, v, "NULL");
                }
            }
        }
        fn push_value(out: &mut String, v: &J, null: &str) {
            match v {
                J::I(n) => {
                    let _ = write!(out, "{n}");
                }
                J::S(s) => {
                    debug_assert!(s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
                    out.push('"');
                    out.push_str(s);
                    out.push('"');
                }
                J::Null => out.push_str(null),
            }
        }
    }

    /// A sub-select of the rows as columns `c0, c1, ...` of the given
    /// types, reading the parameters from `$param` on.
    pub(crate) fn select(&self, param: usize) -> String {
        let cols = self.cols.iter().enumerate();
        match self.backend {
            Backend::Sqlite => format!(
                "SELECT {} FROM json_each(${param})",
                cols.map(|(i, _)| format!("json_extract(value, '$[{i}]') AS c{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Backend::Postgres => {
                let (arrays, names): (Vec<String>, Vec<String>) = cols
                    .map(|(i, c)| {
                        let t = match c {
                            Col::Int => "bigint",
                            Col::Text => "text",
                        };
                        (format!("${}::{t}[]", param + i), format!("c{i}"))
                    })
                    .unzip();
                format!(
                    "SELECT {} FROM unnest({}) AS u({})",
                    names.join(", "),
                    arrays.join(", "),
                    names.join(", ")
                )
            }
        }
    }

    /// The parameter values, in order from the `$param` given to
    /// [`RowList::select`].
    pub(crate) fn binds(mut self) -> Vec<String> {
        let close = match self.backend {
            Backend::Sqlite => ("[]", ']'),
            Backend::Postgres => ("{}", '}'),
        };
        for b in &mut self.bufs {
            if self.rows == 0 {
                b.push_str(close.0);
            } else {
                b.push(close.1);
            }
        }
        self.bufs
    }
}

/// The columns of `extents` after `volume_id`, as stored.
pub(crate) const EXTENT_COLS: &str = "chunk_index, generation, first_sector, sectors, object_id, object_volume, obj_kind, obj_index, obj_slots, first_slot, dek_id, dek2_id";

/// A stored extent row (`EXTENT_COLS`).
pub(crate) type ExtentTuple = (
    i64,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
);

/// Parses stored extents, sharing one [`ObjectRef`] per object.
#[derive(Default)]
pub(crate) struct RowReader {
    objects: HashMap<[u8; 16], Arc<ObjectRef>>,
}

impl RowReader {
    /// `(chunk, row)` of a stored extent.
    pub fn extent(&mut self, t: ExtentTuple) -> Result<(u64, Row)> {
        let bad = |what: &str| MetaError::Corrupt(format!("extent row: bad {what}"));
        let first = u32::try_from(t.2).map_err(|_| bad("first sector"))?;
        let count = u32::try_from(t.3).map_err(|_| bad("sector count"))?;
        let loc = match t.4 {
            None => Loc::Zero,
            Some(hex) => {
                let id = parse_hex_id(&hex).ok_or_else(|| bad("object id"))?;
                let obj = match self.objects.get(&id) {
                    Some(o) => Arc::clone(o),
                    None => {
                        let o = Arc::new(ObjectRef {
                            id,
                            writer: parse_id(
                                t.5.as_deref().ok_or_else(|| bad("writer"))?,
                                Kind::Volume,
                            )?,
                            kind: u8::try_from(t.6).map_err(|_| bad("kind"))?,
                            index: to_u64(t.7)?,
                            slots: u32::try_from(t.8).map_err(|_| bad("slots"))?,
                            dek: parse_id(t.10.as_deref().ok_or_else(|| bad("dek"))?, Kind::Dek)?,
                            dek2: t
                                .11
                                .as_deref()
                                .map(|d| parse_id(d, Kind::Dek))
                                .transpose()?,
                        });
                        self.objects.insert(id, Arc::clone(&o));
                        o
                    }
                };
                Loc::Obj {
                    obj,
                    first_slot: u32::try_from(t.9).map_err(|_| bad("slot"))?,
                }
            }
        };
        Ok((
            to_u64(t.0)?,
            Row {
                generation: to_u64(t.1)?,
                layer: 1,
                extent: Extent { first, count, loc },
            },
        ))
    }
}

/// A v1 row of `chunks` as a row covering all `sectors` of its chunk.
pub(crate) fn v1_row(generation: u64, counter: Option<i64>, dek: Id, sectors: u32) -> Result<Row> {
    let loc = match counter {
        None => Loc::Zero,
        Some(c) => Loc::V1 {
            dek,
            counter: to_u64(c)?,
        },
    };
    Ok(Row {
        generation,
        layer: 0,
        extent: Extent {
            first: 0,
            count: sectors,
            loc,
        },
    })
}

/// The JSON values of an extent row (`EXTENT_COLS`) for `chunk` at `generation`.
pub(crate) fn extent_values(chunk: u64, generation: u64, e: &Extent) -> Result<Vec<J>> {
    let (obj, slot) = match &e.loc {
        Loc::Obj { obj, first_slot } => (Some(obj), *first_slot),
        Loc::Zero => (None, 0),
        Loc::V1 { .. } => {
            return Err(MetaError::Corrupt(
                "a v1 object cannot be stored as an extent".into(),
            ));
        }
    };
    Ok(vec![
        J::I(to_i64(chunk)?),
        J::I(to_i64(generation)?),
        J::I(i64::from(e.first)),
        J::I(i64::from(e.count)),
        obj.map_or(J::Null, |o| J::S(hex_id(&o.id))),
        obj.map_or(J::Null, |o| J::S(o.writer.to_string())),
        J::I(obj.map_or(0, |o| i64::from(o.kind))),
        J::I(obj.map_or(Ok(0), |o| to_i64(o.index))?),
        J::I(obj.map_or(0, |o| i64::from(o.slots))),
        J::I(i64::from(slot)),
        obj.map_or(J::Null, |o| J::S(o.dek.to_string())),
        obj.and_then(|o| o.dek2)
            .map_or(J::Null, |d| J::S(d.to_string())),
    ])
}

/// Sectors per chunk of a volume.
pub(crate) fn sectors_per_chunk(chunk_size: u32) -> u32 {
    (chunk_size / 4096).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(n: u8) -> Arc<ObjectRef> {
        Arc::new(ObjectRef {
            id: [n; 16],
            writer: Id::from_parts(Kind::Volume, 1),
            kind: 2,
            index: 0,
            slots: 64,
            dek: Id::from_parts(Kind::Dek, 1),
            dek2: None,
        })
    }

    fn ext(first: u32, count: u32, o: Option<(u8, u32)>) -> Extent {
        Extent {
            first,
            count,
            loc: match o {
                None => Loc::Zero,
                Some((n, s)) => Loc::Obj {
                    obj: obj(n),
                    first_slot: s,
                },
            },
        }
    }

    #[test]
    fn overlay_cuts_and_keeps_slots_aligned() {
        let mut s = vec![ext(0, 64, Some((1, 0)))];
        overlay(&mut s, ext(10, 4, Some((2, 7))));
        assert_eq!(
            s,
            vec![
                ext(0, 10, Some((1, 0))),
                ext(10, 4, Some((2, 7))),
                ext(14, 50, Some((1, 14)))
            ]
        );
        overlay(&mut s, ext(8, 10, None));
        assert_eq!(
            s,
            vec![
                ext(0, 8, Some((1, 0))),
                ext(8, 10, None),
                ext(18, 46, Some((1, 18)))
            ]
        );
        assert_eq!(find(&s, 9), Some(&ext(8, 10, None)));
        assert_eq!(find(&s, 63).map(|e| e.first), Some(18));
        assert_eq!(find(&[], 3), None);
    }

    fn row(generation: u64, layer: u8, e: Extent) -> Row {
        Row {
            generation,
            layer,
            extent: e,
        }
    }

    #[test]
    fn dead_rows_follow_the_views() {
        let rows = vec![
            row(0, 0, ext(0, 64, Some((9, 0)))), // a v1-like whole row
            row(0, 1, ext(0, 8, Some((1, 0)))),
            row(1, 1, ext(0, 64, None)),
            row(2, 1, ext(4, 4, Some((2, 0)))),
        ];
        // Only the head (2) is a view: gen 0 rows are covered by gen 1's
        // zeroes; gen 1 is partly visible at 2.
        let views: BTreeSet<u64> = [2].into();
        assert_eq!(dead_rows(&rows, &views), vec![0, 1]);
        // A snapshot at 0: the whole row is partly visible (sectors 8..)
        // and the small extent fully.
        let views: BTreeSet<u64> = [0, 2].into();
        assert_eq!(dead_rows(&rows, &views), Vec::<usize>::new());
        // No view at all: everything is dead.
        assert_eq!(dead_rows(&rows, &BTreeSet::new()), vec![0, 1, 2, 3]);
    }

    #[test]
    fn hex_ids_round_trip() {
        let id = [0xab; 16];
        assert_eq!(parse_hex_id(&hex_id(&id)), Some(id));
        assert_eq!(parse_hex_id("AB"), None);
        assert_eq!(parse_hex_id(&"g".repeat(32)), None);
    }

    #[test]
    fn row_lists_bind_json_on_sqlite_and_arrays_on_postgres() {
        let rows = || {
            vec![
                vec![J::I(1), J::S("vol-00ff".into()), J::Null],
                vec![J::I(-2), J::S("x".into()), J::Null],
            ]
        };
        let cols = [Col::Int, Col::Text, Col::Text];
        let l = RowList::of(Backend::Sqlite, &cols, rows());
        assert_eq!(
            l.select(2),
            "SELECT json_extract(value, '$[0]') AS c0, json_extract(value, '$[1]') AS c1, json_extract(value, '$[2]') AS c2 FROM json_each($2)"
        );
        assert_eq!(l.binds(), vec![r#"[[1,"vol-00ff",null],[-2,"x",null]]"#]);
        let l = RowList::of(Backend::Postgres, &cols, rows());
        assert_eq!(
            l.select(2),
            "SELECT c0, c1, c2 FROM unnest($2::bigint[], $3::text[], $4::text[]) AS u(c0, c1, c2)"
        );
        assert_eq!(
            l.binds(),
            vec!["{1,-2}", r#"{"vol-00ff","x"}"#, "{NULL,NULL}"]
        );
        // An empty list is an empty array in either form.
        assert_eq!(RowList::new(Backend::Sqlite, &cols).binds(), vec!["[]"]);
        assert_eq!(
            RowList::new(Backend::Postgres, &[Col::Int]).binds(),
            vec!["{}"]
        );
    }
}
