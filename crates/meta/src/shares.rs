//! The sharing engine's facts: shares (resource shares, and the one share
//! behind each snapshot's or image's permissions), the resources each
//! shares, the principals it shares them with (accounts, folders, tenants,
//! or `*` for every account) and where each stands (associated, or an
//! invitation pending or rejected). Who may see what is decided from these
//! at every request ([`Meta::shared_with`]), so an account moved into or
//! out of a shared folder gains or loses access at once.

use coffer_types::{Id, Kind, PrincipalScope, ShareKind, ShareStatus};
use sqlx::AssertSqlSafe;

use crate::listing::{ListFilter, bound, clause};
use crate::{Meta, MetaError, Result, now, parse_id};

/// The principal that stands for every account (public).
pub const PUBLIC: &str = "*";

/// A share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRow {
    /// Id (`rs-…`).
    pub id: Id,
    /// Owner account.
    pub account_id: Id,
    /// Name (unique per account; a permission share is named after its
    /// resource's id).
    pub name: String,
    /// Region.
    pub region: String,
    /// Resource share or permission.
    pub kind: ShareKind,
    /// Who may be a principal.
    pub principal_scope: PrincipalScope,
    /// Creation time.
    pub created_at: String,
}

/// A principal of a share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePrincipalRow {
    /// The share.
    pub share_id: Id,
    /// An account, folder or tenant id, or [`PUBLIC`].
    pub principal: String,
    /// Where it stands.
    pub status: ShareStatus,
    /// The invitation, for an account that had to accept.
    pub invitation_id: Option<Id>,
    /// When it was added.
    pub added_at: String,
    /// When the invitation was answered.
    pub responded_at: Option<String>,
}

/// A resource shared with an account, and through what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRow {
    /// The share.
    pub share_id: Id,
    /// Its kind.
    pub kind: ShareKind,
    /// The resource.
    pub resource: Id,
}

type ShareTuple = (String, String, String, String, String, String, String);
const SHARE_COLS: &str = "id, account_id, name, region, kind, principal_scope, created_at";

fn share_row(t: ShareTuple) -> Result<ShareRow> {
    Ok(ShareRow {
        id: parse_id(&t.0, Kind::Share)?,
        account_id: parse_id(&t.1, Kind::Account)?,
        name: t.2,
        region: t.3,
        kind: crate::parse_word(&t.4)?,
        principal_scope: crate::parse_word(&t.5)?,
        created_at: t.6,
    })
}

type PrincipalTuple = (
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
);

fn principal_row(t: PrincipalTuple) -> Result<SharePrincipalRow> {
    Ok(SharePrincipalRow {
        share_id: parse_id(&t.0, Kind::Share)?,
        principal: t.1,
        status: crate::parse_word(&t.2)?,
        invitation_id: t.3.map(|i| parse_id(&i, Kind::Invitation)).transpose()?,
        added_at: t.4,
        responded_at: t.5,
    })
}

fn ids(v: Vec<String>) -> Result<Vec<Id>> {
    v.into_iter()
        .map(|s| {
            s.parse::<Id>()
                .map_err(|e| MetaError::Corrupt(format!("shared resource '{s}': {e}")))
        })
        .collect()
}

impl Meta {
    /// Create a share (409 on a taken name).
    pub async fn create_share(&self, s: &ShareRow) -> Result<()> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO shares ({SHARE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
        )))
        .bind(s.id.to_string())
        .bind(s.account_id.to_string())
        .bind(&s.name)
        .bind(&s.region)
        .bind(s.kind.as_str())
        .bind(s.principal_scope.as_str())
        .bind(&s.created_at)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() != 1 {
            return Err(MetaError::NameTaken {
                kind: Kind::Share,
                account: s.account_id,
                name: s.name.clone(),
            });
        }
        Ok(())
    }

    /// A share by id.
    pub async fn share(&self, id: Id) -> Result<Option<ShareRow>> {
        let row: Option<ShareTuple> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {SHARE_COLS} FROM shares WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(share_row).transpose()
    }

    /// The permission share of a resource, if it has one.
    pub async fn permission_share(&self, account: Id, resource: Id) -> Result<Option<ShareRow>> {
        let row: Option<ShareTuple> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {SHARE_COLS} FROM shares WHERE account_id = $1 AND name = $2 AND kind = 'permission'"
        )))
        .bind(account.to_string())
        .bind(resource.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(share_row).transpose()
    }

    /// One page of shares (resource shares only: permissions are shown
    /// with their resource).
    pub async fn list_shares_page(&self, f: &ListFilter) -> Result<Vec<ShareRow>> {
        let mut binds = vec![];
        let Some(clause) = clause(f, &mut binds) else {
            return Ok(vec![]);
        };
        let cols: Vec<String> = SHARE_COLS.split(", ").map(|c| format!("t.{c}")).collect();
        let clause = if clause.is_empty() {
            "WHERE t.kind = 'share'".to_string()
        } else {
            format!("{clause} AND t.kind = 'share'")
        };
        let sql = format!(
            "SELECT {} FROM shares t {clause} ORDER BY t.created_at, t.id LIMIT {}",
            cols.join(", "),
            f.limit
        );
        let rows: Vec<ShareTuple> = bound(sqlx::query_as(AssertSqlSafe(sql)), &binds)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(share_row).collect()
    }

    /// Delete a share with its resources and principals.
    pub async fn delete_share(&self, id: Id) -> Result<()> {
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM share_resources WHERE share_id = $1",
            "DELETE FROM share_principals WHERE share_id = $1",
            "DELETE FROM shares WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Add resources to a share (present ones are kept).
    pub async fn add_share_resources(&self, share: Id, resources: &[Id]) -> Result<()> {
        let mut tx = self.begin().await?;
        for r in resources {
            sqlx::query(
                "INSERT INTO share_resources (share_id, resource_id, added_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(share.to_string())
            .bind(r.to_string())
            .bind(now())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Remove resources from a share; how many were there.
    pub async fn remove_share_resources(&self, share: Id, resources: &[Id]) -> Result<u64> {
        let mut n = 0;
        for r in resources {
            n +=
                sqlx::query("DELETE FROM share_resources WHERE share_id = $1 AND resource_id = $2")
                    .bind(share.to_string())
                    .bind(r.to_string())
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
        }
        Ok(n)
    }

    /// The resources of a share, in the order they were added.
    pub async fn share_resources(&self, share: Id) -> Result<Vec<Id>> {
        let v: Vec<String> = sqlx::query_scalar(
            "SELECT resource_id FROM share_resources WHERE share_id = $1 ORDER BY added_at, resource_id",
        )
        .bind(share.to_string())
        .fetch_all(&self.pool)
        .await?;
        ids(v)
    }

    /// Add a principal to a share (one already there keeps its row).
    pub async fn add_share_principal(&self, p: &SharePrincipalRow) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO share_principals (share_id, principal, status, invitation_id, added_at, responded_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(p.share_id.to_string())
        .bind(&p.principal)
        .bind(p.status.as_str())
        .bind(p.invitation_id.map(|i| i.to_string()))
        .bind(&p.added_at)
        .bind(p.responded_at.clone())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Remove a principal from a share; whether it was there.
    pub async fn remove_share_principal(&self, share: Id, principal: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM share_principals WHERE share_id = $1 AND principal = $2")
            .bind(share.to_string())
            .bind(principal)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// The principals of a share, in the order they were added.
    pub async fn share_principals(&self, share: Id) -> Result<Vec<SharePrincipalRow>> {
        let rows: Vec<PrincipalTuple> = sqlx::query_as(
            "SELECT share_id, principal, status, invitation_id, added_at, responded_at FROM share_principals WHERE share_id = $1 ORDER BY added_at, principal",
        )
        .bind(share.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(principal_row).collect()
    }

    /// Every invitation of an account (any status), oldest first.
    pub async fn invitations_of(&self, account: Id) -> Result<Vec<SharePrincipalRow>> {
        let rows: Vec<PrincipalTuple> = sqlx::query_as(
            "SELECT share_id, principal, status, invitation_id, added_at, responded_at FROM share_principals WHERE principal = $1 AND invitation_id IS NOT NULL ORDER BY added_at, share_id",
        )
        .bind(account.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(principal_row).collect()
    }

    /// An invitation by id.
    pub async fn invitation(&self, id: Id) -> Result<Option<SharePrincipalRow>> {
        let row: Option<PrincipalTuple> = sqlx::query_as(
            "SELECT share_id, principal, status, invitation_id, added_at, responded_at FROM share_principals WHERE invitation_id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(principal_row).transpose()
    }

    /// Answer a pending invitation: false if it was not pending.
    pub async fn answer_invitation(&self, id: Id, status: ShareStatus) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE share_principals SET status = $1, responded_at = $2 WHERE invitation_id = $3 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(now())
        .bind(id.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Every resource shared, in force, with an account whose scopes
    /// (itself, its folders, its tenant) are `scopes`, by shares of other
    /// accounts.
    pub async fn shared_with(&self, account: Id, scopes: &[Id]) -> Result<Vec<SharedRow>> {
        let mut names: Vec<String> = scopes.iter().map(Id::to_string).collect();
        names.push(PUBLIC.to_string());
        let params: Vec<String> = (2..names.len() + 2).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT DISTINCT s.id, s.kind, r.resource_id FROM share_principals p \
             JOIN shares s ON s.id = p.share_id JOIN share_resources r ON r.share_id = s.id \
             WHERE p.status = 'associated' AND s.account_id <> $1 AND p.principal IN ({}) \
             ORDER BY s.id, r.resource_id",
            params.join(", ")
        );
        let mut q = sqlx::query_as::<_, (String, String, String)>(AssertSqlSafe(sql))
            .bind(account.to_string());
        for n in &names {
            q = q.bind(n.clone());
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|(s, k, r)| {
                Ok(SharedRow {
                    share_id: parse_id(&s, Kind::Share)?,
                    kind: crate::parse_word(&k)?,
                    resource: r
                        .parse()
                        .map_err(|e| MetaError::Corrupt(format!("shared resource '{r}': {e}")))?,
                })
            })
            .collect()
    }

    /// The resource shares (not permissions) naming any of `scopes` or
    /// every account as a principal, in force or invited, of accounts
    /// other than `account`.
    pub async fn shares_naming(
        &self,
        account: Id,
        scopes: &[Id],
    ) -> Result<Vec<(ShareRow, SharePrincipalRow)>> {
        let mut out = vec![];
        let mut names: Vec<String> = scopes.iter().map(Id::to_string).collect();
        names.push(PUBLIC.to_string());
        for n in names {
            let rows: Vec<PrincipalTuple> = sqlx::query_as(
                "SELECT p.share_id, p.principal, p.status, p.invitation_id, p.added_at, p.responded_at FROM share_principals p JOIN shares s ON s.id = p.share_id WHERE p.principal = $1 AND s.account_id <> $2 AND s.kind = 'share' ORDER BY p.added_at",
            )
            .bind(&n)
            .bind(account.to_string())
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                let p = principal_row(r)?;
                if let Some(s) = self.share(p.share_id).await? {
                    out.push((s, p));
                }
            }
        }
        Ok(out)
    }

    /// How many resource shares an account owns.
    pub async fn count_shares(&self, account: Id) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM shares WHERE account_id = $1 AND kind = 'share'",
        )
        .bind(account.to_string())
        .fetch_one(&self.pool)
        .await?;
        crate::to_u64(n)
    }

    /// The accounts (and other principals) a resource is shared with, over
    /// every share naming it.
    pub async fn principals_of_resource(&self, resource: Id) -> Result<Vec<String>> {
        let v: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT p.principal FROM share_resources r JOIN share_principals p ON p.share_id = r.share_id WHERE r.resource_id = $1 AND p.status <> 'rejected' ORDER BY p.principal",
        )
        .bind(resource.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(v)
    }
}

/// Parse a stored principal of a share: [`PUBLIC`] or an id.
pub fn parse_principal(s: &str) -> Result<Option<Id>> {
    if s == PUBLIC {
        return Ok(None);
    }
    s.parse::<Id>()
        .map(Some)
        .map_err(|e| MetaError::Corrupt(format!("share principal '{s}': {e}")))
}
