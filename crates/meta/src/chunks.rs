//! Volumes and their chunk maps: creation, view resolution through parent
//! volumes, committing written chunks at the head generation, and garbage
//! collection of rows no view sees (see the crate docs for the model).

use std::collections::{BTreeSet, HashMap, HashSet};

use coffer_types::{Id, Kind};
use sqlx::{Any, AnyConnection, Transaction};

use crate::Backend;
use crate::extents::{
    ChunkMap, Col, EXTENT_COLS, Extent, ExtentTuple, J, Loc, ObjectRef, Row, RowList, RowReader,
    apply_rows, data_only, dead_rows, extent_values, hex_id, overlay, parse_hex_id,
    sectors_per_chunk, v1_row,
};

use crate::nodes::{Holder, check_holder_tx, release_reservations_tx};
use crate::{Meta, MetaError, Result, now, parse_id, to_i64, to_u64};

/// A volume: one node of a disk lineage.
#[derive(Debug, Clone)]
pub struct VolumeRow {
    /// Id.
    pub id: Id,
    /// The lineage's DEK.
    pub dek_id: Id,
    /// Bytes per chunk (fixed for the volume's life).
    pub chunk_size: u32,
    /// Size in bytes.
    pub size: u64,
    /// The parent view this volume starts from, if any.
    pub parent: Option<(Id, u64)>,
    /// Generation of the head.
    pub head_generation: u64,
    /// Whether a disk uses the head (a volume only snapshots keep alive is not live).
    pub live: bool,
    /// Under double encryption, the outer layer's write DEK (platform
    /// key); `dek_id` is then the inner, customer-key layer.
    pub dek2_id: Option<Id>,
    /// The region whose object store holds the objects this volume writes
    /// (a lineage never leaves its region; empty on rows from before
    /// regions had stores, until the service adopts them).
    pub region: String,
}

/// An object of the store, named as its key is made (`chunk_key` and
/// `object_key` of coffer-store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredObject {
    /// A format v1 chunk object: DEK id value and counter.
    V1 {
        /// The DEK's id value.
        dek: u64,
        /// The chunk's counter.
        counter: u64,
    },
    /// A format v2 object: writer volume's id value and object id.
    V2 {
        /// The writer volume's id value.
        writer: u64,
        /// The object id.
        id: [u8; 16],
    },
}

/// What a chunk of a view holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkEntry {
    /// Zeroes (trimmed, or written as zeroes).
    Zero,
    /// The sealed object with this counter under the lineage's DEK.
    Object(u64),
}

impl ChunkEntry {
    fn to_db(self) -> Result<Option<i64>> {
        match self {
            ChunkEntry::Zero => Ok(None),
            ChunkEntry::Object(c) => to_i64(c).map(Some),
        }
    }
}

/// Add the objects `changes` names (new objects, each counted once) to
/// the count of each DEK they were sealed under (both layers' under
/// double encryption); returns the DEKs' new totals. One statement per
/// DEK: one or two per commit.
async fn count_sealed(
    tx: &mut Transaction<'_, Any>,
    changes: &[(u64, Vec<Extent>)],
) -> Result<Vec<(Id, u64)>> {
    let mut seen = HashSet::new();
    let mut per_dek: HashMap<Id, u64> = HashMap::new();
    for e in changes.iter().flat_map(|(_, es)| es) {
        if let Loc::Obj { obj, .. } = &e.loc
            && seen.insert(obj.id)
        {
            for dek in std::iter::once(obj.dek).chain(obj.dek2) {
                *per_dek.entry(dek).or_default() += 1;
            }
        }
    }
    let mut per_dek: Vec<(Id, u64)> = per_dek.into_iter().collect();
    // A fixed order: two commits never lock DEK rows in opposite orders.
    per_dek.sort_by_key(|(d, _)| d.to_string());
    let mut out = Vec::with_capacity(per_dek.len());
    for (dek, n) in per_dek {
        let total: Option<i64> = sqlx::query_scalar(
            "UPDATE deks SET objects_sealed = objects_sealed + $1 WHERE id = $2 RETURNING objects_sealed",
        )
        .bind(to_i64(n)?)
        .bind(dek.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        let total = total.ok_or_else(|| {
            MetaError::NotFound(format!("DEK {dek}, named by an object being committed"))
        })?;
        out.push((dek, u64::try_from(total).unwrap_or(0)));
    }
    Ok(out)
}

/// What a commit changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CommitStats {
    /// Rows inserted.
    pub inserted: u64,
    /// Rows updated in place (same generation).
    pub updated: u64,
    /// Objects queued for deletion.
    pub queued_for_gc: u64,
    /// Rows read to plan the commit: of format v2 commits, the rows the new
    /// extents overlap (and, rarely, whole chunks; see
    /// [`Meta::commit_extents`]), not the volume's map.
    pub read: u64,
    /// For each DEK the commit's new objects were sealed under: how many
    /// objects it has sealed in all, this commit's included
    /// (`deks.objects_sealed`; a volume moves to a fresh write DEK once
    /// its own reaches its budget).
    pub sealed: Vec<(Id, u64)>,
}

type VolTuple = (
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<i64>,
    i64,
    i64,
    Option<String>,
    String,
);

fn volume_row(t: VolTuple) -> Result<VolumeRow> {
    let parent = match (t.4, t.5) {
        (Some(p), Some(g)) => Some((parse_id(&p, Kind::Volume)?, to_u64(g)?)),
        (None, None) => None,
        _ => return Err(MetaError::Corrupt("half a parent pointer".into())),
    };
    Ok(VolumeRow {
        id: parse_id(&t.0, Kind::Volume)?,
        dek_id: parse_id(&t.1, Kind::Dek)?,
        chunk_size: u32::try_from(t.2).map_err(|_| MetaError::Corrupt("chunk size".into()))?,
        size: to_u64(t.3)?,
        parent,
        head_generation: to_u64(t.6)?,
        live: t.7 != 0,
        dek2_id: t.8.map(|d| parse_id(&d, Kind::Dek)).transpose()?,
        region: t.9,
    })
}

const VOL_COLS: &str = "id, dek_id, chunk_size, size, parent_id, parent_generation, head_generation, live, dek2_id, region";

/// Read volume `id` inside a transaction, locking its row until the
/// transaction ends (PostgreSQL; SQLite has one writer at a time anyway).
/// Every transaction that changes a volume's chunk map or its views takes
/// this lock first, so two nodes' changes to one volume never interleave.
pub(crate) async fn volume_tx(tx: &mut Transaction<'_, Any>, id: Id) -> Result<VolumeRow> {
    let lock = if tx.backend_name() == "PostgreSQL" {
        " FOR UPDATE"
    } else {
        ""
    };
    let row: Option<VolTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {VOL_COLS} FROM volumes WHERE id = $1{lock}"
    )))
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(volume_row)
        .transpose()?
        .ok_or_else(|| MetaError::NotFound(format!("volume {id}")))
}

pub(crate) async fn insert_volume_tx(tx: &mut Transaction<'_, Any>, v: &VolumeRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO volumes ({VOL_COLS}, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    )))
    .bind(v.id.to_string())
    .bind(v.dek_id.to_string())
    .bind(i64::from(v.chunk_size))
    .bind(to_i64(v.size)?)
    .bind(v.parent.map(|p| p.0.to_string()))
    .bind(v.parent.map(|p| to_i64(p.1)).transpose()?)
    .bind(to_i64(v.head_generation)?)
    .bind(i64::from(v.live))
    .bind(v.dek2_id.map(|d| d.to_string()))
    .bind(&v.region)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Generations of `vol` that some view needs: its snapshots, its children's
/// parent pointers, and its head if live.
pub(crate) async fn views_tx(
    tx: &mut Transaction<'_, Any>,
    vol: &VolumeRow,
) -> Result<BTreeSet<u64>> {
    let id = vol.id.to_string();
    let mut gens: Vec<i64> =
        sqlx::query_scalar("SELECT generation FROM snapshots WHERE volume_id = $1")
            .bind(&id)
            .fetch_all(&mut **tx)
            .await?;
    let children: Vec<i64> =
        sqlx::query_scalar("SELECT parent_generation FROM volumes WHERE parent_id = $1")
            .bind(&id)
            .fetch_all(&mut **tx)
            .await?;
    gens.extend(children);
    let mut set = gens
        .into_iter()
        .map(to_u64)
        .collect::<Result<BTreeSet<u64>>>()?;
    if vol.live {
        set.insert(vol.head_generation);
    }
    Ok(set)
}

fn any_view_in(views: &BTreeSet<u64>, from: u64, until: u64) -> bool {
    views.range(from..until).next().is_some()
}

async fn enqueue_gc_tx(
    tx: &mut Transaction<'_, Any>,
    dek: Id,
    counter: i64,
    region: &str,
) -> Result<()> {
    sqlx::query("INSERT INTO gc_queue (dek_id, counter, enqueued_at, region) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
        .bind(dek.to_string())
        .bind(counter)
        .bind(now())
        .bind(region)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Meta {
    /// Create a volume.
    pub async fn create_volume(&self, v: &VolumeRow) -> Result<()> {
        let mut tx = self.begin().await?;
        insert_volume_tx(&mut tx, v).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A volume by id.
    pub async fn volume(&self, id: Id) -> Result<VolumeRow> {
        let mut tx = self.begin_read().await?;
        let v = volume_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(v)
    }

    /// The chunk map of view `(vol, generation)`, resolved through parent
    /// volumes: chunk index → its data extents. Sectors and chunks absent
    /// from the map read as zeroes.
    pub async fn resolve_view(&self, vol: Id, generation: u64) -> Result<ChunkMap> {
        let mut chain = vec![(self.volume(vol).await?, generation)];
        while let Some((p, g)) = chain.last().and_then(|c| c.0.parent) {
            chain.push((self.volume(p).await?, g));
        }
        let mut conn = self.pool.acquire().await?;
        let mut map: ChunkMap = HashMap::new();
        for (v, g) in chain.into_iter().rev() {
            for (idx, rows) in load_rows(&mut conn, self.backend, &v, None, Some(g)).await? {
                apply_rows(map.entry(idx).or_default(), &rows, g);
            }
        }
        map.retain(|_, stack| {
            data_only(stack);
            !stack.is_empty()
        });
        Ok(map)
    }

    /// Volume `id`, read with a lock on its row (waits for any transaction
    /// changing it), for opening its head.
    pub async fn volume_for_open(&self, id: Id) -> Result<VolumeRow> {
        let mut tx = self.begin_read().await?;
        let v = volume_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(v)
    }

    /// Record that chunks now hold `entries` at the head of `vol`, whose
    /// head generation the caller believes is `head`. Atomic: all entries
    /// or none. Objects no view can see any more are queued for deletion.
    /// The objects named must already be durable in the object store.
    ///
    /// With `holder`, fails with [`MetaError::Fenced`] unless it still holds
    /// its attachment, and forgets its counter reservations that end at or
    /// below `resolved` (the caller has nothing in flight under them).
    pub async fn commit_chunks(
        &self,
        vol: Id,
        head: u64,
        holder: Option<(&Holder, u64)>,
        entries: &[(u64, ChunkEntry)],
    ) -> Result<CommitStats> {
        let mut stats = CommitStats::default();
        let mut tx = self.begin().await?;
        if let Some((h, resolved)) = holder {
            check_holder_tx(&mut tx, h).await?;
            release_reservations_tx(&mut tx, h, resolved).await?;
        }
        let v = volume_tx(&mut tx, vol).await?;
        if v.head_generation != head {
            return Err(MetaError::Conflict(format!(
                "volume {vol} head is at generation {}, not {head}",
                v.head_generation
            )));
        }
        let views = views_tx(&mut tx, &v).await?;
        let vid = vol.to_string();
        let h = to_i64(head)?;
        for &(idx, entry) in entries {
            let idx_i = to_i64(idx)?;
            let new = entry.to_db()?;
            let last: Option<(i64, Option<i64>)> = sqlx::query_as(
                "SELECT generation, counter FROM chunks WHERE volume_id = $1 AND chunk_index = $2 ORDER BY generation DESC LIMIT 1",
            )
            .bind(&vid)
            .bind(idx_i)
            .fetch_optional(&mut *tx)
            .await?;
            match last {
                Some((g, old)) if g == h => {
                    if old == new {
                        continue;
                    }
                    sqlx::query("UPDATE chunks SET counter = $1 WHERE volume_id = $2 AND chunk_index = $3 AND generation = $4")
                        .bind(new)
                        .bind(&vid)
                        .bind(idx_i)
                        .bind(g)
                        .execute(&mut *tx)
                        .await?;
                    stats.updated += 1;
                    if let Some(c) = old {
                        enqueue_gc_tx(&mut tx, v.dek_id, c, &v.region).await?;
                        stats.queued_for_gc += 1;
                    }
                    continue;
                }
                Some((g, _)) if g > h => {
                    return Err(MetaError::Corrupt(format!("chunk row above head in {vol}")));
                }
                Some((g, old)) => {
                    if !any_view_in(&views, to_u64(g)?, head) {
                        sqlx::query("DELETE FROM chunks WHERE volume_id = $1 AND chunk_index = $2 AND generation = $3")
                            .bind(&vid)
                            .bind(idx_i)
                            .bind(g)
                            .execute(&mut *tx)
                            .await?;
                        if let Some(c) = old {
                            enqueue_gc_tx(&mut tx, v.dek_id, c, &v.region).await?;
                            stats.queued_for_gc += 1;
                        }
                    }
                }
                None => {
                    if new.is_none() && v.parent.is_none() {
                        // Zeroes over nothing: nothing to record.
                        continue;
                    }
                }
            }
            sqlx::query("INSERT INTO chunks (volume_id, chunk_index, generation, counter) VALUES ($1, $2, $3, $4)")
                .bind(&vid)
                .bind(idx_i)
                .bind(h)
                .bind(new)
                .execute(&mut *tx)
                .await?;
            stats.inserted += 1;
        }
        tx.commit().await?;
        Ok(stats)
    }

    /// Record format v2 writes at the head of `vol`, whose head generation
    /// the caller believes is `head`: per chunk, extents laid over its
    /// head content in the order given (zero extents trim). Atomic, and a
    /// constant number of round trips however many chunks change. Rows no
    /// view sees any more are removed, and objects no row names any more
    /// are queued for deletion. The objects named must already be durable.
    ///
    /// It reads only the rows the new extents overlap: a row no new extent
    /// overlaps is neither cut nor newly hidden. A row below the head that
    /// no view but the head sees (left by a deleted snapshot) may die of
    /// rows that do not overlap a new extent, so the chunks holding such a
    /// row are read whole; so are chunks with a format v1 row at the head.
    ///
    /// With `holder`, fails with [`MetaError::Fenced`] unless it still
    /// holds its attachment.
    pub async fn commit_extents(
        &self,
        vol: Id,
        head: u64,
        holder: Option<&Holder>,
        changes: &[(u64, Vec<Extent>)],
    ) -> Result<CommitStats> {
        let mut tx = self.begin().await?;
        if let Some(h) = holder {
            check_holder_tx(&mut tx, h).await?;
        }
        let v = volume_tx(&mut tx, vol).await?;
        if v.head_generation != head {
            return Err(MetaError::Conflict(format!(
                "volume {vol} head is at generation {}, not {head}",
                v.head_generation
            )));
        }
        let sectors = sectors_per_chunk(v.chunk_size);
        if let Some((idx, e)) = changes
            .iter()
            .flat_map(|(i, es)| es.iter().map(move |e| (i, e)))
            .find(|(_, e)| {
                e.end() > sectors
                    || e.count == 0
                    || matches!(&e.loc, Loc::Obj { obj, first_slot } if first_slot + e.count > obj.slots)
            })
        {
            return Err(MetaError::Conflict(format!(
                "extent {}+{} of chunk {idx} does not fit a chunk of {sectors} sectors or its object's slots",
                e.first, e.count
            )));
        }
        let views = views_tx(&mut tx, &v).await?;
        // The last view below the head: rows at or below it are seen by it,
        // and what a commit at the head does cannot hide them from it.
        let floor = views.range(..head).next_back().copied();
        let is_head = |r: &Row| r.generation == head && r.layer == 1;
        let mut rows =
            load_overlapping(&mut tx, self.backend, &v, &covered_ranges(changes)).await?;
        let whole: Vec<u64> = rows
            .iter()
            .filter(|(_, rs)| {
                rs.iter()
                    .any(|r| !is_head(r) && floor.is_none_or(|f| r.generation > f))
            })
            .map(|(idx, _)| *idx)
            .collect();
        if !whole.is_empty() {
            rows.extend(load_rows(&mut tx, self.backend, &v, Some(&whole), None).await?);
        }
        let read = rows.values().map(|rs| rs.len() as u64).sum();
        let mut plan = Plan::default();
        for (idx, news) in changes {
            let old = rows.remove(idx).unwrap_or_default();
            let old_head: Vec<Extent> = old
                .iter()
                .filter(|r| is_head(r))
                .map(|r| r.extent.clone())
                .collect();
            let mut new_head = old_head.clone();
            for e in news {
                overlay(&mut new_head, e.clone());
                let below =
                    |r: &Row| !is_head(r) && r.extent.first < e.end() && e.first < r.extent.end();
                if e.loc == Loc::Zero && v.parent.is_none() && !old.iter().any(below) {
                    // Zeroes over nothing: nothing to record.
                    new_head.retain(|x| x != e);
                }
            }
            if new_head == old_head {
                continue;
            }
            let mut all: Vec<Row> = old.iter().filter(|r| !is_head(r)).cloned().collect();
            all.extend(new_head.iter().map(|e| Row {
                generation: head,
                layer: 1,
                extent: e.clone(),
            }));
            all.sort_by_key(|r| (r.generation, r.layer, r.extent.first));
            let dead = dead_rows(&all, &views);
            // Old head extents not kept as they are go; new ones not
            // already stored (and not dead on arrival) come.
            for e in &old_head {
                let kept = new_head.contains(e)
                    && !dead
                        .iter()
                        .any(|&i| is_head(&all[i]) && all[i].extent == *e);
                if !kept {
                    plan.remove(
                        *idx,
                        &Row {
                            generation: head,
                            layer: 1,
                            extent: e.clone(),
                        },
                    );
                }
            }
            for (i, r) in all.iter().enumerate() {
                let is_dead = dead.contains(&i);
                if is_head(r) {
                    if !is_dead && !old_head.contains(&r.extent) {
                        plan.insert(*idx, head, r.extent.clone());
                    }
                } else if is_dead {
                    plan.remove(*idx, r);
                }
            }
        }
        let (inserted, queued) = plan.apply(&mut tx, self.backend, vol).await?;
        let sealed = count_sealed(&mut tx, changes).await?;
        tx.commit().await?;
        Ok(CommitStats {
            inserted,
            updated: 0,
            queued_for_gc: queued,
            read,
            sealed,
        })
    }

    /// Every v2 object some extent names, once each; for the consistency
    /// checker, which opens each.
    pub async fn named_v2_objects(&self) -> Result<Vec<ObjectRef>> {
        type T = (String, String, i64, i64, i64, String, Option<String>);
        let rows: Vec<T> = sqlx::query_as(
            "SELECT DISTINCT object_id, object_volume, obj_kind, obj_index, obj_slots, dek_id, dek2_id \
             FROM extents WHERE object_id IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let bad = |what: &str| MetaError::Corrupt(format!("extent row: bad {what}"));
        rows.into_iter()
            .map(|t| {
                Ok(ObjectRef {
                    id: parse_hex_id(&t.0).ok_or_else(|| bad("object id"))?,
                    writer: parse_id(&t.1, Kind::Volume)?,
                    kind: u8::try_from(t.2).map_err(|_| bad("kind"))?,
                    index: to_u64(t.3)?,
                    slots: u32::try_from(t.4).map_err(|_| bad("slots"))?,
                    dek: parse_id(&t.5, Kind::Dek)?,
                    dek2: t.6.as_deref().map(|d| parse_id(d, Kind::Dek)).transpose()?,
                })
            })
            .collect()
    }

    /// Record `region` (the deployment's first region, whose store holds
    /// every object written before regions had stores of their own) on
    /// the volumes and queued deletions that name no region yet, and each
    /// copy job's target region as its source's. Returns the volumes
    /// adopted.
    pub async fn adopt_region(&self, region: &str) -> Result<u64> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("UPDATE volumes SET region = $1 WHERE region = ''")
            .bind(region)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for table in ["gc_queue", "gc_objects"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET region = $1 WHERE region = ''"
            )))
            .bind(region)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE jobs SET target_region = source_region WHERE target_region = ''")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// One object that a volume of `region` names, if any does: a store
    /// that lacks it is not that region's.
    pub async fn region_object_sample(&self, region: &str) -> Result<Option<StoredObject>> {
        let v2: Option<(String, String)> = sqlx::query_as(
            "SELECT e.object_volume, e.object_id FROM extents e JOIN volumes v ON v.id = e.volume_id \
             WHERE v.region = $1 AND e.object_id IS NOT NULL LIMIT 1",
        )
        .bind(region)
        .fetch_optional(&self.pool)
        .await?;
        if let Some((w, o)) = v2 {
            let (w, id) = stored_object(&w, &o)?;
            return Ok(Some(StoredObject::V2 {
                writer: w.value(),
                id,
            }));
        }
        let v1: Option<(String, i64)> = sqlx::query_as(
            "SELECT v.dek_id, c.counter FROM chunks c JOIN volumes v ON v.id = c.volume_id \
             WHERE v.region = $1 AND c.counter IS NOT NULL LIMIT 1",
        )
        .bind(region)
        .fetch_optional(&self.pool)
        .await?;
        v1.map(|(d, c)| {
            Ok(StoredObject::V1 {
                dek: parse_id(&d, Kind::Dek)?.value(),
                counter: to_u64(c)?,
            })
        })
        .transpose()
    }

    /// The regions that hold something (empty: rows not adopted yet),
    /// each with what: volumes, key vaults, keys, or objects queued for
    /// deletion, and how many.
    pub async fn regions_in_use(&self) -> Result<Vec<(String, String, u64)>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT region, 'volumes', COUNT(*) FROM volumes GROUP BY region \
             UNION ALL SELECT region, 'key vaults', COUNT(*) FROM vaults WHERE purged_at IS NULL GROUP BY region \
             UNION ALL SELECT region, 'customer keys', COUNT(*) FROM vault_keys WHERE purpose = 'customer' AND purged_at IS NULL GROUP BY region \
             UNION ALL SELECT region, 'objects awaiting deletion', COUNT(*) FROM gc_objects GROUP BY region \
             UNION ALL SELECT region, 'chunks awaiting deletion', COUNT(*) FROM gc_queue GROUP BY region \
             ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(r, what, n)| Ok((r, what, to_u64(n)?)))
            .collect()
    }

    /// Up to `limit` v2 objects of `region`'s store awaiting deletion, as
    /// `(writer volume, object id)`; with `legacy`, also those queued by a
    /// node from before regions had stores (region `''`: the first
    /// region's).
    pub async fn gc_objects_peek(
        &self,
        region: &str,
        legacy: bool,
        limit: u32,
    ) -> Result<Vec<(Id, [u8; 16])>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT object_volume, object_id FROM gc_objects WHERE region = $2 OR region = $3 ORDER BY enqueued_at LIMIT $1",
        )
        .bind(i64::from(limit))
        .bind(region)
        .bind(if legacy { "" } else { region })
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(w, o)| stored_object(&w, &o))
            .collect()
    }

    /// Forget queued v2 objects once they are deleted from the store.
    pub async fn gc_objects_done(&self, done: &[(Id, [u8; 16])]) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let list = RowList::of(
            self.backend,
            &[Col::Text, Col::Text],
            done.iter()
                .map(|(w, id)| vec![J::S(w.to_string()), J::S(hex_id(id))]),
        );
        let sql = format!(
            "DELETE FROM gc_objects WHERE (object_volume, object_id) IN (SELECT c0, c1 FROM ({}) AS j)",
            list.select(1)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in list.binds() {
            q = q.bind(b);
        }
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// Every v2 object some extent names or the deletion queue holds, as
    /// `(writer volume, object id)`; for the consistency checker.
    pub async fn referenced_v2_objects(&self) -> Result<HashSet<(Id, [u8; 16])>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT object_volume, object_id FROM extents WHERE object_id IS NOT NULL \
             UNION SELECT object_volume, object_id FROM gc_objects",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(w, o)| stored_object(&w, &o))
            .collect()
    }

    /// Remove rows of `vol` that no view sees any more, and the volume itself
    /// (then its parent, and so on) when nothing needs it. Their objects go
    /// to the GC queue. Returns the number of objects queued.
    pub async fn gc_volume(&self, vol: Id) -> Result<u64> {
        let mut tx = self.begin().await?;
        let n = gc_volume_tx(&mut tx, vol).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Up to `limit` objects of `region`'s store awaiting deletion, as
    /// `(dek, counter)`; `legacy` as for [`Meta::gc_objects_peek`].
    pub async fn gc_queue_peek(
        &self,
        region: &str,
        legacy: bool,
        limit: u32,
    ) -> Result<Vec<(Id, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT dek_id, counter FROM gc_queue WHERE region = $2 OR region = $3 ORDER BY enqueued_at LIMIT $1",
        )
        .bind(i64::from(limit))
        .bind(region)
        .bind(if legacy { "" } else { region })
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(d, c)| Ok((parse_id(&d, Kind::Dek)?, to_u64(c)?)))
            .collect()
    }

    /// Forget queued objects once they are deleted from the store.
    pub async fn gc_queue_done(&self, done: &[(Id, u64)]) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let list = RowList::of(
            self.backend,
            &[Col::Text, Col::Int],
            done.iter()
                .map(|(d, c)| Ok(vec![J::S(d.to_string()), J::I(to_i64(*c)?)]))
                .collect::<Result<Vec<_>>>()?,
        );
        let sql = format!(
            "DELETE FROM gc_queue WHERE (dek_id, counter) IN (SELECT c0, c1 FROM ({}) AS j)",
            list.select(1)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in list.binds() {
            q = q.bind(b);
        }
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// Every object some chunk row names, as `(dek, counter)`; for the orphan
    /// sweep and the consistency checker.
    pub async fn referenced_objects(&self) -> Result<std::collections::HashSet<(u64, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT v.dek_id, c.counter FROM chunks c JOIN volumes v ON v.id = c.volume_id WHERE c.counter IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut set = std::collections::HashSet::with_capacity(rows.len());
        for (d, c) in rows {
            set.insert((parse_id(&d, Kind::Dek)?.value(), to_u64(c)?));
        }
        let queued: Vec<(String, i64)> = sqlx::query_as("SELECT dek_id, counter FROM gc_queue")
            .fetch_all(&self.pool)
            .await?;
        for (d, c) in queued {
            set.insert((parse_id(&d, Kind::Dek)?.value(), to_u64(c)?));
        }
        Ok(set)
    }

    /// Number of chunk rows of a volume (tests and statistics).
    pub async fn chunk_row_count(&self, vol: Id) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chunks WHERE volume_id = $1")
            .bind(vol.to_string())
            .fetch_one(&self.pool)
            .await?;
        to_u64(n)
    }
}

/// A stored `(writer volume, object id)` pair, parsed.
fn stored_object(writer: &str, id: &str) -> Result<(Id, [u8; 16])> {
    Ok((parse_id(writer, Kind::Volume)?, stored_hex_id(id)?))
}

/// A stored object id, parsed.
pub(crate) fn stored_hex_id(id: &str) -> Result<[u8; 16]> {
    parse_hex_id(id).ok_or_else(|| MetaError::Corrupt(format!("bad object id '{id}'")))
}

/// The backend a connection talks to.
pub(crate) fn backend_of(conn: &AnyConnection) -> Backend {
    if conn.backend_name() == "PostgreSQL" {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

/// Per chunk, the sector ranges `changes` cover, merged: `(chunk, first,
/// end)`, sorted.
fn covered_ranges(changes: &[(u64, Vec<Extent>)]) -> Vec<(u64, u32, u32)> {
    let mut all: Vec<(u64, u32, u32)> = changes
        .iter()
        .flat_map(|(idx, es)| es.iter().map(move |e| (*idx, e.first, e.end())))
        .collect();
    all.sort_unstable();
    let mut out: Vec<(u64, u32, u32)> = Vec::with_capacity(all.len());
    for (idx, a, b) in all {
        match out.last_mut() {
            Some(last) if last.0 == idx && a <= last.2 => last.2 = last.2.max(b),
            _ => out.push((idx, a, b)),
        }
    }
    out
}

/// The rows of `v` that overlap `ranges` (`(chunk, first, end)`, disjoint
/// within a chunk), per chunk, sorted as [`load_rows`] sorts them: the v1
/// rows of every chunk named (a v1 row covers its chunk) and the extents
/// that overlap a range, each once. Two round trips on PostgreSQL; six
/// statements on SQLite (in process, no round trips).
async fn load_overlapping(
    conn: &mut AnyConnection,
    backend: Backend,
    v: &VolumeRow,
    ranges: &[(u64, u32, u32)],
) -> Result<HashMap<u64, Vec<Row>>> {
    if ranges.is_empty() {
        return Ok(HashMap::new());
    }
    let vid = v.id.to_string();
    let mut chunks: Vec<u64> = ranges.iter().map(|r| r.0).collect();
    chunks.dedup();
    let list = RowList::of(
        backend,
        &[Col::Int],
        chunks
            .iter()
            .map(|&i| Ok(vec![J::I(to_i64(i)?)]))
            .collect::<Result<Vec<_>>>()?,
    );
    let sql = format!(
        "SELECT chunk_index, generation, counter FROM chunks WHERE volume_id = $1 AND chunk_index IN (SELECT c0 FROM ({}) AS j)",
        list.select(2)
    );
    let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&vid);
    for b in list.binds() {
        q = q.bind(b);
    }
    let v1: Vec<(i64, i64, Option<i64>)> = q.fetch_all(&mut *conn).await?;
    let cols = [Col::Int, Col::Int, Col::Int];
    let list = RowList::of(
        backend,
        &cols,
        ranges
            .iter()
            .map(|&(c, a, b)| {
                Ok(vec![
                    J::I(to_i64(c)?),
                    J::I(i64::from(a)),
                    J::I(i64::from(b)),
                ])
            })
            .collect::<Result<Vec<_>>>()?,
    );
    let v2: Vec<ExtentTuple> = match backend {
        // The JSON list drives the join; each range then reads its chunk's
        // rows by the primary key.
        Backend::Postgres => {
            let sql = format!(
                "SELECT {EXTENT_COLS} FROM ({}) AS j CROSS JOIN extents \
                 WHERE volume_id = $1 AND chunk_index = j.c0 AND first_sector < j.c2 AND first_sector + sectors > j.c1",
                list.select(2)
            );
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&vid);
            for b in list.binds() {
                q = q.bind(b);
            }
            q.fetch_all(&mut *conn).await?
        }
        // SQLite would evaluate the JSON of a range once per row of its
        // chunk, and visit a chunk's rows once per range: with tens of
        // thousands of ranges that is seconds. So the ranges go to an
        // indexed temporary table (in memory) once, each chunk's rows are
        // visited once, and a row is kept when the last range starting
        // before its end ends after its start (the ranges of a chunk are
        // disjoint and sorted, so that range is the only one to check).
        Backend::Sqlite => {
            sqlx::query(
                "CREATE TEMP TABLE IF NOT EXISTS commit_ranges (c0 INTEGER NOT NULL, \
                 c1 INTEGER NOT NULL, c2 INTEGER NOT NULL, PRIMARY KEY (c0, c1)) WITHOUT ROWID",
            )
            .execute(&mut *conn)
            .await?;
            sqlx::query("DELETE FROM temp.commit_ranges")
                .execute(&mut *conn)
                .await?;
            let sql = format!(
                "INSERT INTO temp.commit_ranges (c0, c1, c2) SELECT c0, c1, c2 FROM ({}) AS j",
                list.select(1)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for b in list.binds() {
                q = q.bind(b);
            }
            q.execute(&mut *conn).await?;
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {EXTENT_COLS} FROM (SELECT DISTINCT c0 FROM temp.commit_ranges) AS c \
                 CROSS JOIN extents AS e WHERE e.volume_id = $1 AND e.chunk_index = c.c0 \
                 AND (SELECT r.c2 FROM temp.commit_ranges AS r WHERE r.c0 = e.chunk_index \
                      AND r.c1 < e.first_sector + e.sectors ORDER BY r.c1 DESC LIMIT 1) > e.first_sector"
            )))
            .bind(&vid)
            .fetch_all(&mut *conn)
            .await?;
            sqlx::query("DELETE FROM temp.commit_ranges")
                .execute(&mut *conn)
                .await?;
            rows
        }
    };
    rows_by_chunk(v, v1, v2)
}

/// Stored v1 rows and extents of `v` as rows per chunk, each chunk's
/// sorted by generation, layer and first sector; an extent met twice (a
/// join may return one per range it overlaps) is kept once.
fn rows_by_chunk(
    v: &VolumeRow,
    v1: Vec<(i64, i64, Option<i64>)>,
    v2: Vec<ExtentTuple>,
) -> Result<HashMap<u64, Vec<Row>>> {
    let sectors = sectors_per_chunk(v.chunk_size);
    let mut out: HashMap<u64, Vec<Row>> = HashMap::new();
    for (idx, g, counter) in v1 {
        out.entry(to_u64(idx)?)
            .or_default()
            .push(v1_row(to_u64(g)?, counter, v.dek_id, sectors)?);
    }
    let mut seen = HashSet::new();
    let mut reader = RowReader::default();
    for t in v2 {
        if !seen.insert((t.0, t.1, t.2)) {
            continue;
        }
        let (idx, row) = reader.extent(t)?;
        if row.extent.end() > sectors || row.extent.count == 0 {
            return Err(MetaError::Corrupt(format!(
                "extent {}+{} of chunk {idx} of {} does not fit a chunk of {sectors} sectors",
                row.extent.first, row.extent.count, v.id
            )));
        }
        out.entry(idx).or_default().push(row);
    }
    for rows in out.values_mut() {
        rows.sort_by_key(|r| (r.generation, r.layer, r.extent.first));
    }
    Ok(out)
}

/// The rows of `v` (its v1 rows and its extents) per chunk, each chunk's
/// sorted by generation, layer and first sector; only the chunks in
/// `only` and the generations up to `upto` when given. Two round trips.
pub(crate) async fn load_rows(
    conn: &mut AnyConnection,
    backend: Backend,
    v: &VolumeRow,
    only: Option<&[u64]>,
    upto: Option<u64>,
) -> Result<HashMap<u64, Vec<Row>>> {
    let upto = upto.map_or(Ok(i64::MAX), to_i64)?;
    let (filter, binds) = match only {
        Some(c) => {
            let list = RowList::of(
                backend,
                &[Col::Int],
                c.iter()
                    .map(|&i| Ok(vec![J::I(to_i64(i)?)]))
                    .collect::<Result<Vec<_>>>()?,
            );
            (
                format!(
                    " AND chunk_index IN (SELECT c0 FROM ({}) AS j)",
                    list.select(3)
                ),
                list.binds(),
            )
        }
        None => (String::new(), Vec::new()),
    };
    let vid = v.id.to_string();
    let q1 = format!(
        "SELECT chunk_index, generation, counter FROM chunks WHERE volume_id = $1 AND generation <= $2{filter}"
    );
    let mut q = sqlx::query_as::<_, (i64, i64, Option<i64>)>(sqlx::AssertSqlSafe(q1))
        .bind(&vid)
        .bind(upto);
    for b in &binds {
        q = q.bind(b);
    }
    let v1 = q.fetch_all(&mut *conn).await?;
    let q2 = format!(
        "SELECT {EXTENT_COLS} FROM extents WHERE volume_id = $1 AND generation <= $2{filter}"
    );
    let mut q = sqlx::query_as::<_, ExtentTuple>(sqlx::AssertSqlSafe(q2))
        .bind(&vid)
        .bind(upto);
    for b in &binds {
        q = q.bind(b);
    }
    let v2 = q.fetch_all(&mut *conn).await?;
    rows_by_chunk(v, v1, v2)
}

/// Row changes of one transaction, applied in a constant number of
/// statements whatever their count.
#[derive(Default)]
pub(crate) struct Plan {
    del_ext: Vec<(u64, u64, u32)>,
    del_v1: Vec<(u64, u64)>,
    ins: Vec<(u64, u64, Extent)>,
    gc_v1: Vec<(Id, u64)>,
    candidates: Vec<(Id, [u8; 16])>,
}

impl Plan {
    /// Delete `row` of chunk `idx`, queueing its object if nothing else
    /// names it.
    pub(crate) fn remove(&mut self, idx: u64, row: &Row) {
        match (row.layer, &row.extent.loc) {
            (0, loc) => {
                self.del_v1.push((idx, row.generation));
                if let Loc::V1 { dek, counter } = loc {
                    self.gc_v1.push((*dek, *counter));
                }
            }
            (_, loc) => {
                self.del_ext.push((idx, row.generation, row.extent.first));
                if let Loc::Obj { obj, .. } = loc {
                    self.candidates.push((obj.writer, obj.id));
                }
            }
        }
    }

    /// Insert extent `e` of chunk `idx` at `generation`.
    pub(crate) fn insert(&mut self, idx: u64, generation: u64, e: Extent) {
        self.ins.push((idx, generation, e));
    }

    /// Run it: deletes first, then inserts, then the deletion queue (an
    /// object is queued only when no extent names it any more; an object
    /// named by an inserted row is no candidate, and each candidate is
    /// checked once). Returns `(rows inserted, objects queued)`.
    pub(crate) async fn apply(
        mut self,
        conn: &mut AnyConnection,
        backend: Backend,
        vol: Id,
    ) -> Result<(u64, u64)> {
        let vid = vol.to_string();
        let mut queued = 0;
        let named: HashSet<[u8; 16]> = self
            .ins
            .iter()
            .filter_map(|(_, _, e)| match &e.loc {
                Loc::Obj { obj, .. } => Some(obj.id),
                _ => None,
            })
            .collect();
        let mut seen = HashSet::new();
        self.candidates
            .retain(|c| !named.contains(&c.1) && seen.insert(*c));
        if !self.del_ext.is_empty() {
            let list = RowList::of(
                backend,
                &[Col::Int, Col::Int, Col::Int],
                self.del_ext
                    .iter()
                    .map(|&(c, g, f)| {
                        Ok(vec![J::I(to_i64(c)?), J::I(to_i64(g)?), J::I(i64::from(f))])
                    })
                    .collect::<Result<Vec<_>>>()?,
            );
            let sql = format!(
                "DELETE FROM extents WHERE volume_id = $1 AND (chunk_index, generation, first_sector) IN (SELECT c0, c1, c2 FROM ({}) AS j)",
                list.select(2)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&vid);
            for b in list.binds() {
                q = q.bind(b);
            }
            q.execute(&mut *conn).await?;
        }
        if !self.del_v1.is_empty() {
            let list = RowList::of(
                backend,
                &[Col::Int, Col::Int],
                self.del_v1
                    .iter()
                    .map(|&(c, g)| Ok(vec![J::I(to_i64(c)?), J::I(to_i64(g)?)]))
                    .collect::<Result<Vec<_>>>()?,
            );
            let sql = format!(
                "DELETE FROM chunks WHERE volume_id = $1 AND (chunk_index, generation) IN (SELECT c0, c1 FROM ({}) AS j)",
                list.select(2)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&vid);
            for b in list.binds() {
                q = q.bind(b);
            }
            q.execute(&mut *conn).await?;
        }
        let inserted = self.ins.len() as u64;
        if !self.ins.is_empty() {
            use Col::{Int, Text};
            let cols = [
                Int, Int, Int, Int, Text, Text, Int, Int, Int, Int, Text, Text,
            ];
            let mut list = RowList::new(backend, &cols);
            for (c, g, e) in &self.ins {
                list.push(&extent_values(*c, *g, e)?);
            }
            let sql = format!(
                "INSERT INTO extents (volume_id, {EXTENT_COLS}) SELECT $1, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11 FROM ({}) AS j",
                list.select(2)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&vid);
            for b in list.binds() {
                q = q.bind(b);
            }
            q.execute(&mut *conn).await?;
        }
        if !self.gc_v1.is_empty() {
            let list = RowList::of(
                backend,
                &[Col::Text, Col::Int],
                self.gc_v1
                    .iter()
                    .map(|(d, c)| Ok(vec![J::S(d.to_string()), J::I(to_i64(*c)?)]))
                    .collect::<Result<Vec<_>>>()?,
            );
            let sql = format!(
                "INSERT INTO gc_queue (dek_id, counter, enqueued_at, region) SELECT c0, c1, $1, (SELECT region FROM volumes WHERE id = $2) FROM ({}) AS j WHERE true ON CONFLICT DO NOTHING",
                list.select(3)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now()).bind(&vid);
            for b in list.binds() {
                q = q.bind(b);
            }
            queued += q.execute(&mut *conn).await?.rows_affected();
        }
        if !self.candidates.is_empty() {
            let list = RowList::of(
                backend,
                &[Col::Text, Col::Text],
                self.candidates
                    .iter()
                    .map(|(w, id)| vec![J::S(w.to_string()), J::S(hex_id(id))]),
            );
            let sql = format!(
                "INSERT INTO gc_objects (object_volume, object_id, enqueued_at, region) SELECT DISTINCT c0, c1, $1, (SELECT region FROM volumes WHERE id = $2) FROM ({}) AS j \
                 WHERE NOT EXISTS (SELECT 1 FROM extents x WHERE x.object_id = j.c1) ON CONFLICT DO NOTHING",
                list.select(3)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now()).bind(&vid);
            for b in list.binds() {
                q = q.bind(b);
            }
            queued += q.execute(&mut *conn).await?.rows_affected();
        }
        Ok((inserted, queued))
    }
}

/// The chunks of `v` that may hold a row no view sees, given `top`, its
/// highest view: those with more than one row (a later generation, or a
/// higher layer of the same one, may cover a row), and those with a row
/// above `top` (no view at or above it). A chunk's only row, at or below
/// `top`, is seen by the first view at or above its generation.
async fn chunks_maybe_dead_tx(
    tx: &mut Transaction<'_, Any>,
    v: &VolumeRow,
    top: u64,
) -> Result<Vec<u64>> {
    let idx: Vec<i64> = sqlx::query_scalar(
        "SELECT chunk_index FROM (SELECT chunk_index, generation FROM chunks WHERE volume_id = $1 \
         UNION ALL SELECT chunk_index, generation FROM extents WHERE volume_id = $1) AS r \
         GROUP BY chunk_index HAVING COUNT(*) > 1 OR MAX(generation) > $2",
    )
    .bind(v.id.to_string())
    .bind(to_i64(top)?)
    .fetch_all(&mut **tx)
    .await?;
    idx.into_iter().map(to_u64).collect()
}

pub(crate) async fn gc_volume_tx(tx: &mut Transaction<'_, Any>, vol: Id) -> Result<u64> {
    let backend = backend_of(tx);
    let mut queued = 0;
    let mut next = Some(vol);
    while let Some(vol) = next.take() {
        let v = volume_tx(tx, vol).await?;
        let views = views_tx(tx, &v).await?;
        // Only the chunks that may hold a dead row are loaded: a volume of
        // a fully written GiB has 4096 rows, which took 10-40 ms to load
        // on SQLite inside the transaction that ends a copy (twice: its
        // reader's parent and its target), and a chunk of one row at or
        // below a view has none.
        let rows = match views.last() {
            Some(&top) => {
                let maybe = chunks_maybe_dead_tx(tx, &v, top).await?;
                if maybe.is_empty() {
                    HashMap::new()
                } else {
                    load_rows(tx, backend, &v, Some(&maybe), None).await?
                }
            }
            None => load_rows(tx, backend, &v, None, None).await?,
        };
        let mut plan = Plan::default();
        for (idx, rs) in &rows {
            for i in dead_rows(rs, &views) {
                plan.remove(*idx, &rs[i]);
            }
        }
        queued += plan.apply(tx, backend, vol).await?.1;
        if views.is_empty() {
            sqlx::query("DELETE FROM volumes WHERE id = $1")
                .bind(vol.to_string())
                .execute(&mut **tx)
                .await?;
            next = v.parent.map(|p| p.0);
        }
    }
    Ok(queued)
}
