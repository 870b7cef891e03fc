//! Consistency checks of the metadata alone (`coffer admin fsck` adds the
//! object store's side). Each check names a rule the rest of the crate
//! keeps; a finding means a bug or damage, never normal operation:
//! - no two chunk rows of one DEK name the same object (overwriting one
//!   would delete the other's data);
//! - every named object's counter was reserved before use (else a GCM
//!   nonce could repeat);
//! - nothing queued for deletion is still named by a chunk row;
//! - no chunk row lies beyond its volume's size, and a chunk's extents at
//!   one generation do not overlap;
//! - nothing queued for deletion is still named by an extent;
//! - every extent belongs to a volume that exists (on PostgreSQL no foreign
//!   key checks it, to keep commits cheap: schema version 18);
//! - every row and volume is seen by some view (else garbage collection
//!   missed it: a leak);
//! - disks use live volumes, and snapshots lie below their volume's head.

use crate::chunks::{backend_of, load_rows, views_tx, volume_tx};
use crate::extents::{Row, dead_rows};
use crate::{Meta, Result, parse_id, to_u64};
use coffer_types::Kind;

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable machine code, e.g. `ObjectNamedTwice`.
    pub code: &'static str,
    /// What and where.
    pub detail: String,
}

fn finding(code: &'static str, detail: String) -> Finding {
    Finding { code, detail }
}

impl Meta {
    /// Check the metadata's own invariants; an empty list means consistent.
    pub async fn fsck(&self) -> Result<Vec<Finding>> {
        let mut out = Vec::new();
        let mut tx = self.begin_read().await?;

        let twice: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT v.dek_id, c.counter, COUNT(*) FROM chunks c JOIN volumes v ON v.id = c.volume_id \
             WHERE c.counter IS NOT NULL GROUP BY v.dek_id, c.counter HAVING COUNT(*) > 1",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (dek, counter, n) in twice {
            out.push(finding(
                "ObjectNamedTwice",
                format!("object {counter} of {dek} is named by {n} chunk rows"),
            ));
        }

        let unreserved: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT v.dek_id, c.counter, d.next_counter FROM chunks c JOIN volumes v ON v.id = c.volume_id \
             JOIN deks d ON d.id = v.dek_id WHERE c.counter IS NOT NULL AND c.counter >= d.next_counter",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (dek, counter, next) in unreserved {
            out.push(finding(
                "CounterNotReserved",
                format!("object {counter} of {dek} was never reserved (next counter is {next})"),
            ));
        }

        let queued_live: Vec<(String, i64)> = sqlx::query_as(
            "SELECT q.dek_id, q.counter FROM gc_queue q JOIN volumes v ON v.dek_id = q.dek_id \
             JOIN chunks c ON c.volume_id = v.id AND c.counter = q.counter",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (dek, counter) in queued_live {
            out.push(finding(
                "QueuedObjectInUse",
                format!("object {counter} of {dek} is queued for deletion but still named"),
            ));
        }

        let beyond: Vec<(String, i64)> = sqlx::query_as(
            "SELECT c.volume_id, c.chunk_index FROM chunks c JOIN volumes v ON v.id = c.volume_id \
             WHERE c.chunk_index * v.chunk_size >= v.size",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (vol, idx) in beyond {
            out.push(finding(
                "ChunkBeyondSize",
                format!("chunk {idx} of {vol} lies beyond the volume's size"),
            ));
        }

        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM volumes ORDER BY id")
            .fetch_all(&mut *tx)
            .await?;
        for id in ids {
            let v = volume_tx(&mut tx, parse_id(&id, Kind::Volume)?).await?;
            let views = views_tx(&mut tx, &v).await?;
            if views.is_empty() {
                out.push(finding(
                    "VolumeNotCollected",
                    format!("volume {id} is needed by no disk, snapshot or child"),
                ));
            }
            let backend = backend_of(&tx);
            let rows = load_rows(&mut tx, backend, &v, None, None).await?;
            let dead: usize = rows.values().map(|rs| dead_rows(rs, &views).len()).sum();
            if dead > 0 && !views.is_empty() {
                out.push(finding(
                    "RowsNotCollected",
                    format!("{dead} chunk rows of volume {id} are seen by no view"),
                ));
            }
            if rows
                .values()
                .flatten()
                .any(|r| r.generation > v.head_generation)
            {
                out.push(finding(
                    "RowAboveHead",
                    format!("volume {id} has chunk rows above its head generation"),
                ));
            }
            let mut by_gen: std::collections::HashMap<(u64, u64), Vec<&Row>> =
                std::collections::HashMap::new();
            for (idx, rs) in &rows {
                for r in rs.iter().filter(|r| r.layer == 1) {
                    by_gen.entry((*idx, r.generation)).or_default().push(r);
                }
            }
            if by_gen
                .values()
                .any(|rs| rs.windows(2).any(|w| w[0].extent.end() > w[1].extent.first))
            {
                out.push(finding(
                    "ExtentsOverlap",
                    format!("volume {id} has overlapping extents at one generation"),
                ));
            }
        }

        let queued_v2: Vec<String> = sqlx::query_scalar(
            "SELECT q.object_id FROM gc_objects q WHERE EXISTS (SELECT 1 FROM extents x WHERE x.object_id = q.object_id)",
        )
        .fetch_all(&mut *tx)
        .await?;
        for o in queued_v2 {
            out.push(finding(
                "QueuedObjectInUse",
                format!("object {o} is queued for deletion but still named"),
            ));
        }
        let beyond_v2: Vec<(String, i64)> = sqlx::query_as(
            "SELECT DISTINCT x.volume_id, x.chunk_index FROM extents x JOIN volumes v ON v.id = x.volume_id \
             WHERE x.chunk_index * v.chunk_size >= v.size",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (vol, idx) in beyond_v2 {
            out.push(finding(
                "ChunkBeyondSize",
                format!("chunk {idx} of {vol} lies beyond the volume's size"),
            ));
        }

        let orphans: Vec<(String, i64)> = sqlx::query_as(
            "SELECT x.volume_id, COUNT(*) FROM extents x \
             WHERE NOT EXISTS (SELECT 1 FROM volumes v WHERE v.id = x.volume_id) GROUP BY x.volume_id",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (vol, n) in orphans {
            out.push(finding(
                "ExtentOfNoVolume",
                format!("{n} extent rows name volume {vol}, which does not exist"),
            ));
        }

        let dead_disks: Vec<String> = sqlx::query_scalar(
            "SELECT d.id FROM disks d JOIN volumes v ON v.id = d.volume_id WHERE v.live = 0",
        )
        .fetch_all(&mut *tx)
        .await?;
        for d in dead_disks {
            out.push(finding(
                "DiskOnDeadVolume",
                format!("disk {d} uses a volume marked not live"),
            ));
        }
        let bad_snaps: Vec<String> = sqlx::query_scalar(
            "SELECT s.id FROM snapshots s JOIN volumes v ON v.id = s.volume_id \
             WHERE s.generation >= v.head_generation",
        )
        .fetch_all(&mut *tx)
        .await?;
        for s in bad_snaps {
            out.push(finding(
                "SnapshotAtOrAboveHead",
                format!("snapshot {s} is not below its volume's head generation"),
            ));
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Every object some chunk row names, with the chunk index it holds:
    /// `(dek, counter, chunk index)`, for deep checks that open
    /// each object.
    pub async fn named_objects(&self) -> Result<Vec<(coffer_types::Id, u64, u64)>> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT v.dek_id, c.counter, c.chunk_index FROM chunks c JOIN volumes v ON v.id = c.volume_id \
             WHERE c.counter IS NOT NULL ORDER BY v.dek_id, c.counter",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(d, c, i)| Ok((parse_id(&d, Kind::Dek)?, to_u64(c)?, to_u64(i)?)))
            .collect()
    }
}
