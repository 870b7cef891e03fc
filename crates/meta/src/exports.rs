//! Exports: the sending side of a copy between two deployments. An export
//! lets the holder of its pull token (another deployment's copy job) read
//! one snapshot, or the snapshots of one image, until it expires or its
//! creator revokes it. Each exported snapshot is a *member* read through a
//! reader volume whose parent is the snapshot's view, so the export reads
//! what it was made of even if the snapshot is deleted or unshared
//! meanwhile. Only the token's SHA-256 is stored. Revoking, or the pass
//! that ends expired exports, drops the reader volumes in the same
//! transaction.

use coffer_types::{Id, Kind};
use sqlx::AssertSqlSafe;

use crate::chunks::{VolumeRow, gc_volume_tx};
use crate::jobs::insert_reader_tx;
use crate::{Meta, MetaError, Result, now, parse_id, to_i64, to_u64};

/// An export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    /// Id (`exp-…`).
    pub id: Id,
    /// The account whose snapshot or image it exports.
    pub account_id: Id,
    /// `snapshot` or `image`.
    pub kind: String,
    /// The snapshot or image exported.
    pub source_id: Id,
    /// SHA-256 (hex) of the pull token.
    pub token_hash: String,
    /// Unix milliseconds after which the token reads nothing.
    pub expires_at: u64,
    /// Who made it.
    pub created_by: Id,
    /// When.
    pub created_at: String,
    /// When it was revoked or ended (its readers dropped).
    pub revoked_at: Option<String>,
}

/// One exported snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportMemberRow {
    /// `root` for a snapshot export; the snapshot's role in an image.
    pub role: String,
    /// The snapshot.
    pub snapshot_id: Id,
    /// The volume the export reads through (`None` once dropped).
    pub reader_volume: Option<Id>,
    /// The snapshot's view: its volume and generation.
    pub source_view: (Id, u64),
    /// Its size in bytes.
    pub size: u64,
    /// Its chunk size in bytes.
    pub chunk_size: u32,
}

const EXPORT_COLS: &str =
    "id, account_id, kind, source_id, token_hash, expires_at, created_by, created_at, revoked_at";

type ExportTuple = (
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
);

fn export_row(t: ExportTuple) -> Result<ExportRow> {
    let kind = match t.2.as_str() {
        "image" => Kind::Image,
        _ => Kind::Snapshot,
    };
    Ok(ExportRow {
        id: parse_id(&t.0, Kind::Export)?,
        account_id: parse_id(&t.1, Kind::Account)?,
        source_id: parse_id(&t.3, kind)?,
        kind: t.2,
        token_hash: t.4,
        expires_at: to_u64(t.5)?,
        created_by: parse_id(&t.6, Kind::Principal)?,
        created_at: t.7,
        revoked_at: t.8,
    })
}

impl Meta {
    /// Record `export` with its members, each with its reader volume, in
    /// one transaction that checks every member's snapshot still exists
    /// and is the view its reader's parent names.
    pub async fn create_export(
        &self,
        export: &ExportRow,
        members: &[(ExportMemberRow, VolumeRow)],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO exports ({EXPORT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )))
        .bind(export.id.to_string())
        .bind(export.account_id.to_string())
        .bind(&export.kind)
        .bind(export.source_id.to_string())
        .bind(&export.token_hash)
        .bind(to_i64(export.expires_at)?)
        .bind(export.created_by.to_string())
        .bind(&export.created_at)
        .bind(export.revoked_at.clone())
        .execute(&mut *tx)
        .await?;
        for (m, reader) in members {
            if m.reader_volume != Some(reader.id) {
                return Err(MetaError::Corrupt(
                    "an export member reads through its own reader volume".into(),
                ));
            }
            insert_reader_tx(&mut tx, m.snapshot_id, reader).await?;
            sqlx::query(
                "INSERT INTO export_members (export_id, role, snapshot_id, reader_volume, source_volume, source_generation, size, chunk_size) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(export.id.to_string())
            .bind(&m.role)
            .bind(m.snapshot_id.to_string())
            .bind(reader.id.to_string())
            .bind(m.source_view.0.to_string())
            .bind(to_i64(m.source_view.1)?)
            .bind(to_i64(m.size)?)
            .bind(i64::from(m.chunk_size))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// An export by id.
    pub async fn export(&self, id: Id) -> Result<Option<ExportRow>> {
        let row: Option<ExportTuple> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {EXPORT_COLS} FROM exports WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(export_row).transpose()
    }

    /// The exports of `account`, newest first.
    pub async fn exports_of(&self, account: Id) -> Result<Vec<ExportRow>> {
        let rows: Vec<ExportTuple> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {EXPORT_COLS} FROM exports WHERE account_id = $1 ORDER BY created_at DESC, id"
        )))
        .bind(account.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(export_row).collect()
    }

    /// The members of export `id`, by role.
    pub async fn export_members(&self, id: Id) -> Result<Vec<ExportMemberRow>> {
        type T = (String, String, Option<String>, String, i64, i64, i64);
        let rows: Vec<T> = sqlx::query_as(
            "SELECT role, snapshot_id, reader_volume, source_volume, source_generation, size, chunk_size FROM export_members WHERE export_id = $1 ORDER BY role",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(role, snap, reader, vol, generation, size, cs)| {
                Ok(ExportMemberRow {
                    role,
                    snapshot_id: parse_id(&snap, Kind::Snapshot)?,
                    reader_volume: reader.map(|r| parse_id(&r, Kind::Volume)).transpose()?,
                    source_view: (parse_id(&vol, Kind::Volume)?, to_u64(generation)?),
                    size: to_u64(size)?,
                    chunk_size: u32::try_from(cs)
                        .map_err(|_| MetaError::Corrupt(format!("chunk size {cs}")))?,
                })
            })
            .collect()
    }

    /// End export `id` (revoked by its creator, or expired): its token reads
    /// nothing more and its reader volumes go, in one transaction. `false`
    /// if it had already ended.
    pub async fn end_export(&self, id: Id) -> Result<bool> {
        let mut tx = self.begin().await?;
        let n =
            sqlx::query("UPDATE exports SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        let readers: Vec<Option<String>> =
            sqlx::query_scalar("SELECT reader_volume FROM export_members WHERE export_id = $1")
                .bind(id.to_string())
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query("UPDATE export_members SET reader_volume = NULL WHERE export_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        for r in readers.into_iter().flatten() {
            let r = parse_id(&r, Kind::Volume)?;
            sqlx::query("UPDATE volumes SET live = 0 WHERE id = $1")
                .bind(r.to_string())
                .execute(&mut *tx)
                .await?;
            gc_volume_tx(&mut tx, r).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The exports that expired by `now_ms` and still hold their readers.
    pub async fn expired_exports(&self, now_ms: u64) -> Result<Vec<Id>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM exports WHERE revoked_at IS NULL AND expires_at <= $1 ORDER BY expires_at",
        )
        .bind(to_i64(now_ms)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| parse_id(r, Kind::Export)).collect()
    }
}
