//! Volumes and their chunk maps: creation, view resolution through parent
//! volumes, committing written chunks at the head generation, and garbage
//! collection of rows no view sees (see the crate docs for the model).

use std::collections::{BTreeSet, HashMap};

use coffer_types::{Id, Kind};
use sqlx::{Any, Transaction};

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
    fn from_db(c: Option<i64>) -> Result<Self> {
        c.map(|c| to_u64(c).map(ChunkEntry::Object))
            .unwrap_or(Ok(ChunkEntry::Zero))
    }
    fn to_db(self) -> Result<Option<i64>> {
        match self {
            ChunkEntry::Zero => Ok(None),
            ChunkEntry::Object(c) => to_i64(c).map(Some),
        }
    }
}

/// What a commit changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    /// Rows inserted.
    pub inserted: u64,
    /// Rows updated in place (same generation).
    pub updated: u64,
    /// Objects queued for deletion.
    pub queued_for_gc: u64,
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
    })
}

const VOL_COLS: &str =
    "id, dek_id, chunk_size, size, parent_id, parent_generation, head_generation, live";

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
        "INSERT INTO volumes ({VOL_COLS}, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )))
    .bind(v.id.to_string())
    .bind(v.dek_id.to_string())
    .bind(i64::from(v.chunk_size))
    .bind(to_i64(v.size)?)
    .bind(v.parent.map(|p| p.0.to_string()))
    .bind(v.parent.map(|p| to_i64(p.1)).transpose()?)
    .bind(to_i64(v.head_generation)?)
    .bind(i64::from(v.live))
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

async fn enqueue_gc_tx(tx: &mut Transaction<'_, Any>, dek: Id, counter: i64) -> Result<()> {
    sqlx::query("INSERT INTO gc_queue (dek_id, counter, enqueued_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(dek.to_string())
        .bind(counter)
        .bind(now())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Meta {
    /// Create a volume.
    pub async fn create_volume(&self, v: &VolumeRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_volume_tx(&mut tx, v).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A volume by id.
    pub async fn volume(&self, id: Id) -> Result<VolumeRow> {
        let mut tx = self.pool.begin().await?;
        let v = volume_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(v)
    }

    /// The chunk map of view `(vol, generation)`, resolved through parent
    /// volumes: chunk index → entry. Chunks absent from the map read as zeroes.
    pub async fn resolve_view(&self, vol: Id, generation: u64) -> Result<HashMap<u64, ChunkEntry>> {
        let mut chain = vec![(vol, generation)];
        let mut cur = self.volume(vol).await?;
        while let Some((p, g)) = cur.parent {
            chain.push((p, g));
            cur = self.volume(p).await?;
        }
        let mut map = HashMap::new();
        for (v, g) in chain.into_iter().rev() {
            let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
                "SELECT chunk_index, counter FROM chunks WHERE volume_id = $1 AND generation <= $2 ORDER BY chunk_index, generation",
            )
            .bind(v.to_string())
            .bind(to_i64(g)?)
            .fetch_all(&self.pool)
            .await?;
            for (idx, counter) in rows {
                map.insert(to_u64(idx)?, ChunkEntry::from_db(counter)?);
            }
        }
        Ok(map)
    }

    /// Volume `id`, read with a lock on its row (waits for any transaction
    /// changing it), for opening its head.
    pub async fn volume_for_open(&self, id: Id) -> Result<VolumeRow> {
        let mut tx = self.pool.begin().await?;
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
        let mut tx = self.pool.begin().await?;
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
                        enqueue_gc_tx(&mut tx, v.dek_id, c).await?;
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
                            enqueue_gc_tx(&mut tx, v.dek_id, c).await?;
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

    /// Remove rows of `vol` that no view sees any more, and the volume itself
    /// (then its parent, and so on) when nothing needs it. Their objects go
    /// to the GC queue. Returns the number of objects queued.
    pub async fn gc_volume(&self, vol: Id) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let n = gc_volume_tx(&mut tx, vol).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Up to `limit` objects awaiting deletion, as `(dek, counter)`.
    pub async fn gc_queue_peek(&self, limit: u32) -> Result<Vec<(Id, u64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT dek_id, counter FROM gc_queue ORDER BY enqueued_at LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(d, c)| Ok((parse_id(&d, Kind::Dek)?, to_u64(c)?)))
            .collect()
    }

    /// Forget queued objects once they are deleted from the store.
    pub async fn gc_queue_done(&self, done: &[(Id, u64)]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (d, c) in done {
            sqlx::query("DELETE FROM gc_queue WHERE dek_id = $1 AND counter = $2")
                .bind(d.to_string())
                .bind(to_i64(*c)?)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
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

/// The rows of one volume (sorted by chunk index, then generation) that no
/// view in `views` sees: a row at generation `g` is seen by the views in
/// `[g, next row's generation)`.
pub(crate) fn dead_rows(
    rows: &[(i64, i64, Option<i64>)],
    views: &BTreeSet<u64>,
) -> Result<Vec<(i64, i64, Option<i64>)>> {
    let mut dead = Vec::new();
    for (i, &(idx, g, counter)) in rows.iter().enumerate() {
        let until = match rows.get(i + 1) {
            Some(&(nidx, ng, _)) if nidx == idx => to_u64(ng)?,
            _ => u64::MAX,
        };
        if !any_view_in(views, to_u64(g)?, until) {
            dead.push((idx, g, counter));
        }
    }
    Ok(dead)
}

pub(crate) async fn gc_volume_tx(tx: &mut Transaction<'_, Any>, vol: Id) -> Result<u64> {
    let mut queued = 0;
    let mut next = Some(vol);
    while let Some(vol) = next.take() {
        let v = volume_tx(tx, vol).await?;
        let views = views_tx(tx, &v).await?;
        let vid = vol.to_string();
        let rows: Vec<(i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT chunk_index, generation, counter FROM chunks WHERE volume_id = $1 ORDER BY chunk_index, generation",
        )
        .bind(&vid)
        .fetch_all(&mut **tx)
        .await?;
        for (idx, g, counter) in dead_rows(&rows, &views)? {
            sqlx::query(
                "DELETE FROM chunks WHERE volume_id = $1 AND chunk_index = $2 AND generation = $3",
            )
            .bind(&vid)
            .bind(idx)
            .bind(g)
            .execute(&mut **tx)
            .await?;
            if let Some(c) = counter {
                enqueue_gc_tx(tx, v.dek_id, c).await?;
                queued += 1;
            }
        }
        if views.is_empty() {
            sqlx::query("DELETE FROM volumes WHERE id = $1")
                .bind(&vid)
                .execute(&mut **tx)
                .await?;
            next = v.parent.map(|p| p.0);
        }
    }
    Ok(queued)
}
