//! Storage used per account over time: measuring what each account holds
//! now (a handful of grouped queries over every account at once), and the
//! samples the usage sampler keeps of it, one row per account per interval.

use std::collections::BTreeMap;

use coffer_types::{Id, Kind};

use crate::extents::SECTOR;
use crate::{Meta, Result, parse_id, to_i64, to_u64};

/// What one account holds at one time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRow {
    /// The account.
    pub account_id: Option<Id>,
    /// When (RFC 3339 UTC); empty for a measurement not yet recorded.
    pub at: String,
    /// Its disks.
    pub disks: u64,
    /// Their provisioned bytes.
    pub disk_bytes: u64,
    /// Its snapshots, image members included.
    pub snapshots: u64,
    /// Their sizes.
    pub snapshot_bytes: u64,
    /// Its images.
    pub images: u64,
    /// Data its disks and snapshots keep in the object store: 4 KiB
    /// sectors written and still kept (each generation a snapshot keeps
    /// counted), and chunks of format v1, before sealing overhead; a
    /// volume counts for one account (see `ACCOUNT_VOLUMES`).
    pub stored_bytes: u64,
}

type SampleTuple = (String, String, i64, i64, i64, i64, i64, i64);

fn sample_row(t: SampleTuple) -> Result<UsageRow> {
    Ok(UsageRow {
        account_id: Some(parse_id(&t.0, Kind::Account)?),
        at: t.1,
        disks: to_u64(t.2)?,
        disk_bytes: to_u64(t.3)?,
        snapshots: to_u64(t.4)?,
        snapshot_bytes: to_u64(t.5)?,
        images: to_u64(t.6)?,
        stored_bytes: to_u64(t.7)?,
    })
}

/// Each volume with the one account its data counts for: the account of
/// the disk writing it, else of its oldest snapshot. An O(1) copy names
/// its source's volume, and is never charged for it (nor shown its
/// writes) while the source's disk or an older snapshot holds it.
const ACCOUNT_VOLUMES: &str = "SELECT v.id AS volume_id, COALESCE(\
     (SELECT d.account_id FROM disks d WHERE d.volume_id = v.id LIMIT 1), \
     (SELECT s.account_id FROM snapshots s WHERE s.volume_id = v.id ORDER BY s.created_at, s.id LIMIT 1)\
     ) AS account_id FROM volumes v";

impl Meta {
    /// What every account holds now, or only `account`'s (`at` left
    /// empty). Accounts holding nothing are listed with zeroes.
    pub async fn measure_usage(&self, account: Option<Id>) -> Result<Vec<UsageRow>> {
        let only = account.map(|a| a.to_string());
        // `$1 IS NULL OR account_id = $1` in every query: one shape for
        // both uses, bound once each.
        let accounts: Vec<String> =
            sqlx::query_scalar("SELECT id FROM accounts WHERE CAST($1 AS TEXT) IS NULL OR id = $1")
                .bind(only.clone())
                .fetch_all(&self.pool)
                .await?;
        let mut rows: BTreeMap<String, UsageRow> = BTreeMap::new();
        for a in accounts {
            let id = parse_id(&a, Kind::Account)?;
            rows.insert(
                a,
                UsageRow {
                    account_id: Some(id),
                    ..UsageRow::default()
                },
            );
        }
        let counted = |sql: &'static str| {
            let only = only.clone();
            async move {
                sqlx::query_as::<_, (String, i64, i64)>(sql)
                    .bind(only)
                    .fetch_all(&self.pool)
                    .await
            }
        };
        for (a, n, bytes) in counted(
            "SELECT account_id, COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM disks \
             WHERE CAST($1 AS TEXT) IS NULL OR account_id = $1 GROUP BY account_id",
        )
        .await?
        {
            if let Some(r) = rows.get_mut(&a) {
                r.disks = to_u64(n)?;
                r.disk_bytes = to_u64(bytes)?;
            }
        }
        for (a, n, bytes) in counted(
            "SELECT account_id, COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM snapshots \
             WHERE CAST($1 AS TEXT) IS NULL OR account_id = $1 GROUP BY account_id",
        )
        .await?
        {
            if let Some(r) = rows.get_mut(&a) {
                r.snapshots = to_u64(n)?;
                r.snapshot_bytes = to_u64(bytes)?;
            }
        }
        for (a, n, _) in counted(
            "SELECT account_id, COUNT(*), CAST(0 AS BIGINT) FROM images \
             WHERE CAST($1 AS TEXT) IS NULL OR account_id = $1 GROUP BY account_id",
        )
        .await?
        {
            if let Some(r) = rows.get_mut(&a) {
                r.images = to_u64(n)?;
            }
        }
        // v2 extents naming an object (zero extents keep nothing), and v1
        // chunks (a whole chunk each).
        let sectors_sql = format!(
            "SELECT o.account_id, CAST(0 AS BIGINT), CAST(COALESCE(SUM(e.sectors), 0) AS BIGINT) \
             FROM extents e JOIN ({ACCOUNT_VOLUMES}) o ON o.volume_id = e.volume_id \
             WHERE e.object_id IS NOT NULL AND (CAST($1 AS TEXT) IS NULL OR o.account_id = $1) \
             GROUP BY o.account_id"
        );
        let v1_sql = format!(
            "SELECT o.account_id, CAST(0 AS BIGINT), CAST(COALESCE(SUM(v.chunk_size), 0) AS BIGINT) \
             FROM chunks c JOIN ({ACCOUNT_VOLUMES}) o ON o.volume_id = c.volume_id \
             JOIN volumes v ON v.id = c.volume_id \
             WHERE c.counter IS NOT NULL AND (CAST($1 AS TEXT) IS NULL OR o.account_id = $1) \
             GROUP BY o.account_id"
        );
        for (sql, unit) in [(sectors_sql, SECTOR), (v1_sql, 1)] {
            let found = sqlx::query_as::<_, (String, i64, i64)>(sqlx::AssertSqlSafe(sql))
                .bind(only.clone())
                .fetch_all(&self.pool)
                .await?;
            for (a, _, n) in found {
                if let Some(r) = rows.get_mut(&a) {
                    r.stored_bytes = r
                        .stored_bytes
                        .saturating_add(to_u64(n)?.saturating_mul(unit));
                }
            }
        }
        Ok(rows.into_values().collect())
    }

    /// Whether any account was sampled at `at` (by another node, this
    /// interval): the sampler then skips measuring.
    pub async fn usage_sampled(&self, at: &str) -> Result<bool> {
        let n: Option<String> =
            sqlx::query_scalar("SELECT account_id FROM usage_samples WHERE at = $1 LIMIT 1")
                .bind(at)
                .fetch_optional(&self.pool)
                .await?;
        Ok(n.is_some())
    }

    /// Keep `rows` as the samples at `at` (an account already sampled at
    /// `at` keeps its first sample: nodes sampling in the same interval
    /// write one row), and delete samples from before `keep_from`.
    pub async fn record_usage(&self, at: &str, rows: &[UsageRow], keep_from: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        for r in rows {
            let Some(a) = r.account_id else { continue };
            sqlx::query(
                "INSERT INTO usage_samples (account_id, at, disks, disk_bytes, snapshots, snapshot_bytes, images, stored_bytes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (account_id, at) DO NOTHING",
            )
            .bind(a.to_string())
            .bind(at)
            .bind(to_i64(r.disks)?)
            .bind(to_i64(r.disk_bytes)?)
            .bind(to_i64(r.snapshots)?)
            .bind(to_i64(r.snapshot_bytes)?)
            .bind(to_i64(r.images)?)
            .bind(to_i64(r.stored_bytes)?)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM usage_samples WHERE at < $1")
            .bind(keep_from)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// `account`'s samples from `since` on (RFC 3339; all when `None`),
    /// oldest first, at most the newest `limit`.
    pub async fn usage_samples(
        &self,
        account: Id,
        since: Option<&str>,
        limit: u32,
    ) -> Result<Vec<UsageRow>> {
        let mut rows: Vec<UsageRow> = sqlx::query_as::<_, SampleTuple>(
            "SELECT account_id, at, disks, disk_bytes, snapshots, snapshot_bytes, images, stored_bytes \
             FROM usage_samples WHERE account_id = $1 AND at >= $2 ORDER BY at DESC LIMIT $3",
        )
        .bind(account.to_string())
        .bind(since.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(sample_row)
        .collect::<Result<_>>()?;
        rows.reverse();
        Ok(rows)
    }
}
