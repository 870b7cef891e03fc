//! Rows of the audit log of key use (one hash chain per deployment) and of
//! the key-state epoch. This module stores and pages entries and serialises
//! appends; what an entry's hash and the head's MAC are is decided by the
//! caller (`coffer-keyvault`'s audit module), which passes a sealing
//! function to [`Meta::append_audit`].

use coffer_types::{Id, Kind};

use crate::{Meta, MetaError, Result, now, parse_id, to_i64, to_u64};

/// What one audit entry says (everything but its place in the chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The principal that used the key (for a disk under an encryption
    /// set, the set's managed identity).
    pub principal: String,
    /// Who the principal acted for: the human or service principal whose
    /// request it was, or the node that opened the volume; equal to
    /// `principal` when it acted for itself.
    pub acting_for: String,
    /// What was done: `wrap`, `unwrap`, `encrypt`, `decrypt`, `generate`,
    /// `re-encrypt`, `grant`, `rotate`, `enable`, `disable`, `delete`,
    /// `recover`, `purge`, ...
    pub action: String,
    /// The key used, if any.
    pub key: Option<Id>,
    /// The key version used, if known.
    pub key_version: Option<u32>,
    /// The resource the use was for (a disk, snapshot, volume, vault...).
    pub resource: String,
    /// `allowed`, `denied` or `failed`.
    pub outcome: String,
    /// Free text: the reason of a denial or failure. Never a secret.
    pub detail: String,
}

/// One entry of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Place in the chain, from 1.
    pub seq: u64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// What.
    pub record: AuditRecord,
    /// Hex hash chaining this entry to the previous one.
    pub hash: String,
}

/// The head of the chain: the last entry's seq and hash, and the MAC over
/// both (empty before the first append).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// Seq of the last entry (0 for an empty log).
    pub seq: u64,
    /// Hash of the last entry (64 zeroes for an empty log).
    pub hash: String,
    /// MAC over `seq` and `hash`.
    pub mac: String,
}

/// Which entries [`Meta::audit_entries`] returns.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries about this key.
    pub key: Option<Id>,
    /// Only entries by, or on behalf of, this principal.
    pub principal: Option<String>,
    /// Only entries about this resource.
    pub resource: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only entries before this time (RFC 3339).
    pub until: Option<String>,
}

type EntryTuple = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    String,
    String,
    String,
    String,
);

const COLUMNS: &str = "seq, at, principal_id, acting_for, action, key_id, key_version, resource, outcome, detail, hash";

fn entry(t: EntryTuple) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: to_u64(t.0)?,
        at: t.1,
        record: AuditRecord {
            principal: t.2,
            acting_for: t.3,
            action: t.4,
            key: t.5.map(|k| parse_id(&k, Kind::Key)).transpose()?,
            key_version: t
                .6
                .map(|v| u32::try_from(v).map_err(|_| MetaError::Corrupt("key version".into())))
                .transpose()?,
            resource: t.7,
            outcome: t.8,
            detail: t.9,
        },
        hash: t.10,
    })
}

impl Meta {
    /// Append `record` to the chain. In one transaction: take the next seq
    /// and the previous hash from the head (locking it, so appends from
    /// every node serialise), call `seal(seq, at, previous hash)` for this
    /// entry's hash and the new head's MAC, insert the entry, move the head.
    pub async fn append_audit(
        &self,
        record: &AuditRecord,
        seal: impl FnOnce(u64, &str, &str) -> (String, String) + Send,
    ) -> Result<AuditEntry> {
        let at = now();
        let mut tx = self.begin().await?;
        let (seq, prev): (i64, String) =
            sqlx::query_as("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
                .fetch_one(&mut *tx)
                .await?;
        let seq = to_u64(seq)?;
        let (hash, mac) = seal(seq, &at, &prev);
        sqlx::query(
            "INSERT INTO audit_log (seq, at, principal_id, acting_for, action, key_id, key_version, resource, outcome, detail, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(to_i64(seq)?)
        .bind(&at)
        .bind(&record.principal)
        .bind(&record.acting_for)
        .bind(&record.action)
        .bind(record.key.map(|k| k.to_string()))
        .bind(record.key_version.map(i64::from))
        .bind(&record.resource)
        .bind(&record.outcome)
        .bind(&record.detail)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE audit_head SET hash = $1, mac = $2 WHERE id = 1")
            .bind(&hash)
            .bind(&mac)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(AuditEntry {
            seq,
            at,
            record: record.clone(),
            hash,
        })
    }

    /// The chain's head.
    pub async fn audit_head(&self) -> Result<AuditHead> {
        let (seq, hash, mac): (i64, String, String) =
            sqlx::query_as("SELECT seq, hash, mac FROM audit_head WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| MetaError::Corrupt("the audit log has no head row".into()))?;
        Ok(AuditHead {
            seq: to_u64(seq)?,
            hash,
            mac,
        })
    }

    /// Up to `limit` entries of the whole chain with seq greater than
    /// `after`, in seq order: for verifying it page by page.
    pub async fn audit_chain(&self, after: u64, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows: Vec<EntryTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(to_i64(after)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(entry).collect()
    }

    /// Up to `limit` entries matching `filter` with seq greater than
    /// `after`, in seq order.
    pub async fn audit_entries(
        &self,
        filter: &AuditFilter,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        // Every condition is always present, matching anything when its
        // filter is unset, so the statement text is fixed.
        let rows: Vec<EntryTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 \
             AND ($2 IS NULL OR key_id = $2) \
             AND ($3 IS NULL OR principal_id = $3 OR acting_for = $3) \
             AND ($4 IS NULL OR resource = $4) \
             AND ($5 IS NULL OR at >= $5) \
             AND ($6 IS NULL OR at < $6) \
             ORDER BY seq LIMIT $7"
        )))
        .bind(to_i64(after)?)
        .bind(filter.key.map(|k| k.to_string()))
        .bind(filter.principal.clone())
        .bind(filter.resource.clone())
        .bind(filter.since.clone())
        .bind(filter.until.clone())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(entry).collect()
    }

    /// The key-state epoch: bumped by every change that can revoke a key.
    pub async fn key_epoch(&self) -> Result<u64> {
        let e: i64 = sqlx::query_scalar("SELECT epoch FROM key_epoch WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        to_u64(e)
    }
}
