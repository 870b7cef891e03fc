//! Rows of grants on keys (AWS KMS grants): who may use which key for
//! which operations, until retired or revoked. The rules (who may create,
//! retire or revoke one, which operations, across which boundaries) are the
//! service's; a retire or revoke bumps the key-state epoch like any change
//! that can take a key out of use.

use coffer_types::{Id, Kind};

use crate::{Meta, MetaError, Result, parse_id};

/// A grant on a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    /// Id (`grant-…`).
    pub id: Id,
    /// The key.
    pub key_id: Id,
    /// The key's account.
    pub account_id: Id,
    /// Who may use the key.
    pub grantee_id: Id,
    /// The operations allowed (AWS names, e.g. `Decrypt`).
    pub operations: Vec<String>,
    /// An optional name.
    pub name: Option<String>,
    /// A principal that may retire the grant besides its grantee.
    pub retiring_id: Option<Id>,
    /// Who created it.
    pub created_by: Id,
    /// When (RFC 3339).
    pub created_at: String,
    /// When it was retired, if it was.
    pub retired_at: Option<String>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
    /// The encryption context the grant's operations must name exactly
    /// (`None`: any).
    pub context_equals: Option<String>,
}

const GRANT_COLS: &str = "id, key_id, account_id, grantee_id, operations, name, retiring_id, created_by, created_at, retired_at, revoked_at, context_equals";

type GrantTuple = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn grant_row(t: GrantTuple) -> Result<GrantRow> {
    Ok(GrantRow {
        id: parse_id(&t.0, Kind::Grant)?,
        key_id: parse_id(&t.1, Kind::Key)?,
        account_id: parse_id(&t.2, Kind::Account)?,
        grantee_id: parse_id(&t.3, Kind::Principal)?,
        operations: t
            .4
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        name: t.5,
        retiring_id: t.6.map(|r| parse_id(&r, Kind::Principal)).transpose()?,
        created_by: parse_id(&t.7, Kind::Principal)?,
        created_at: t.8,
        retired_at: t.9,
        revoked_at: t.10,
        context_equals: t.11,
    })
}

impl Meta {
    /// Store a new grant.
    pub async fn insert_grant(&self, g: &GrantRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO key_grants (id, key_id, account_id, grantee_id, operations, name, retiring_id, created_by, created_at, context_equals) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(g.id.to_string())
        .bind(g.key_id.to_string())
        .bind(g.account_id.to_string())
        .bind(g.grantee_id.to_string())
        .bind(g.operations.join(","))
        .bind(&g.name)
        .bind(g.retiring_id.map(|r| r.to_string()))
        .bind(g.created_by.to_string())
        .bind(&g.created_at)
        .bind(&g.context_equals)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A grant by id (retired and revoked ones too).
    pub async fn grant(&self, id: Id) -> Result<Option<GrantRow>> {
        let row: Option<GrantTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLS} FROM key_grants WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(grant_row).transpose()
    }

    /// The active grants on `key`, oldest first.
    pub async fn grants_on_key(&self, key: Id) -> Result<Vec<GrantRow>> {
        let rows: Vec<GrantTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLS} FROM key_grants WHERE key_id = $1 AND retired_at IS NULL AND revoked_at IS NULL ORDER BY created_at, id"
        )))
        .bind(key.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(grant_row).collect()
    }

    /// The active grants whose grantee is `principal`.
    pub async fn grants_of(&self, principal: Id) -> Result<Vec<GrantRow>> {
        let rows: Vec<GrantTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLS} FROM key_grants WHERE grantee_id = $1 AND retired_at IS NULL AND revoked_at IS NULL ORDER BY created_at, id"
        )))
        .bind(principal.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(grant_row).collect()
    }

    /// End an active grant: `revoked` (by a key administrator) or retired
    /// (by its grantee or retiring principal), at `at`. `NotFound` if it is
    /// not active.
    pub async fn end_grant(&self, id: Id, revoked: bool, at: &str) -> Result<()> {
        let col = if revoked { "revoked_at" } else { "retired_at" };
        let mut tx = self.begin().await?;
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE key_grants SET {col} = $1 WHERE id = $2 AND retired_at IS NULL AND revoked_at IS NULL"
        )))
        .bind(at)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::NotFound(format!("grant {id}")));
        }
        sqlx::query("UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
