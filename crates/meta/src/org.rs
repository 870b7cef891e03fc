//! Tenants, accounts, principals and API token hashes: who can call Coffer.

use coffer_types::{Id, Kind};

use crate::{Meta, MetaError, Result, now, parse_id};

/// A tenant.
#[derive(Debug, Clone)]
pub struct TenantRow {
    /// Id.
    pub id: Id,
    /// Name.
    pub name: String,
}

/// An account.
#[derive(Debug, Clone)]
pub struct AccountRow {
    /// Id.
    pub id: Id,
    /// Owning tenant.
    pub tenant_id: Id,
    /// Name.
    pub name: String,
}

/// A principal.
#[derive(Debug, Clone)]
pub struct PrincipalRow {
    /// Id.
    pub id: Id,
    /// Home account.
    pub account_id: Id,
    /// Home tenant.
    pub tenant_id: Id,
    /// Name.
    pub name: String,
    /// `user`, `service` or `managed`.
    pub kind: String,
    /// Deployment administrator.
    pub is_admin: bool,
}

/// id, account, tenant, name, kind, is_admin, expires_at, revoked_at.
type TokenPrincipalTuple = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
);

impl Meta {
    /// Create a tenant with one account and one principal in it, atomically
    /// (first start, and tests).
    pub async fn create_tenant_with_principal(
        &self,
        tenant_name: &str,
        account_name: &str,
        principal_name: &str,
        is_admin: bool,
    ) -> Result<PrincipalRow> {
        let t = Id::random(Kind::Tenant);
        let a = Id::random(Kind::Account);
        let p = Id::random(Kind::Principal);
        let ts = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(t.to_string())
            .bind(tenant_name)
            .bind(&ts)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO accounts (id, tenant_id, name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(a.to_string())
        .bind(t.to_string())
        .bind(account_name)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO principals (id, account_id, name, kind, is_admin, created_at) VALUES ($1, $2, $3, 'user', $4, $5)",
        )
        .bind(p.to_string())
        .bind(a.to_string())
        .bind(principal_name)
        .bind(i64::from(is_admin))
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(PrincipalRow {
            id: p,
            account_id: a,
            tenant_id: t,
            name: principal_name.to_string(),
            kind: "user".into(),
            is_admin,
        })
    }

    /// Store a token hash for `principal`.
    pub async fn insert_token(&self, principal: Id, hash: &str) -> Result<Id> {
        let id = Id::random(Kind::Token);
        sqlx::query(
            "INSERT INTO tokens (id, principal_id, hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(principal.to_string())
        .bind(hash)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// The principal whose live (not revoked, not expired) token hashes to `hash`.
    pub async fn principal_by_token_hash(&self, hash: &str) -> Result<Option<PrincipalRow>> {
        let row: Option<TokenPrincipalTuple> = sqlx::query_as(
            "SELECT p.id, p.account_id, a.tenant_id, p.name, p.kind, p.is_admin, t.expires_at, t.revoked_at \
             FROM tokens t JOIN principals p ON p.id = t.principal_id JOIN accounts a ON a.id = p.account_id \
             WHERE t.hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, account, tenant, name, kind, is_admin, expires, revoked)) = row else {
            return Ok(None);
        };
        if revoked.is_some() {
            return Ok(None);
        }
        if let Some(exp) = expires {
            let exp = humantime::parse_rfc3339(&exp)
                .map_err(|_| MetaError::Corrupt("token expiry".into()))?;
            if exp <= std::time::SystemTime::now() {
                return Ok(None);
            }
        }
        Ok(Some(PrincipalRow {
            id: parse_id(&id, Kind::Principal)?,
            account_id: parse_id(&account, Kind::Account)?,
            tenant_id: parse_id(&tenant, Kind::Tenant)?,
            name,
            kind,
            is_admin: is_admin != 0,
        }))
    }

    /// Number of principals (0 before first start).
    pub async fn principal_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM principals")
            .fetch_one(&self.pool)
            .await?)
    }
}
