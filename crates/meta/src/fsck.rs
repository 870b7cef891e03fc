//! Consistency checks of the metadata alone (`coffer admin fsck` adds the
//! object store's side). Each check names a rule the rest of the crate
//! keeps; a finding means a bug or damage, never normal operation:
//! - no two chunk rows of one DEK name the same object (overwriting one
//!   would delete the other's data);
//! - every named object's counter was reserved before use (else a GCM
//!   nonce could repeat);
//! - nothing queued for deletion is still named by a chunk row;
//! - no chunk row lies beyond its volume's size;
//! - every row and volume is seen by some view (else garbage collection
//!   missed it: a leak);
//! - disks use live volumes, and snapshots lie below their volume's head.

use crate::chunks::{dead_rows, views_tx, volume_tx};
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
        let mut tx = self.pool.begin().await?;

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
            let rows: Vec<(i64, i64, Option<i64>)> = sqlx::query_as(
                "SELECT chunk_index, generation, counter FROM chunks WHERE volume_id = $1 \
                 ORDER BY chunk_index, generation",
            )
            .bind(&id)
            .fetch_all(&mut *tx)
            .await?;
            let dead = dead_rows(&rows, &views)?;
            if !dead.is_empty() && !views.is_empty() {
                out.push(finding(
                    "RowsNotCollected",
                    format!(
                        "{} chunk rows of volume {id} are seen by no view",
                        dead.len()
                    ),
                ));
            }
            if rows
                .iter()
                .any(|r| to_u64(r.1).is_ok_and(|g| g > v.head_generation))
            {
                out.push(finding(
                    "RowAboveHead",
                    format!("volume {id} has chunk rows above its head generation"),
                ));
            }
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
