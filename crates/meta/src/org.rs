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
    /// Creation time.
    pub created_at: String,
    /// Whether its customer keys may be granted to principals of other
    /// tenants (off by default).
    pub allow_cross_tenant_key_grants: bool,
}

type TenantTuple = (String, String, String, i64);

fn tenant_row((id, name, created_at, cross): TenantTuple) -> Result<TenantRow> {
    Ok(TenantRow {
        id: parse_id(&id, Kind::Tenant)?,
        name,
        created_at,
        allow_cross_tenant_key_grants: cross != 0,
    })
}

/// An account.
#[derive(Debug, Clone)]
pub struct AccountRow {
    /// Id.
    pub id: Id,
    /// Owning tenant.
    pub tenant_id: Id,
    /// The folder it sits in (`None`: the tenant's root).
    pub folder_id: Option<Id>,
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_at: String,
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
    pub kind: coffer_types::PrincipalKind,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// A folder of a tenant's tree.
#[derive(Debug, Clone)]
pub struct FolderRow {
    /// Id.
    pub id: Id,
    /// Owning tenant.
    pub tenant_id: Id,
    /// Parent folder (`None`: the tenant's root).
    pub parent_id: Option<Id>,
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_at: String,
}

/// An API token's public facts (never the token, never its hash).
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// Id.
    pub id: Id,
    /// Whose token it is.
    pub principal_id: Id,
    /// Label.
    pub name: String,
    /// Creation time.
    pub created_at: String,
    /// Expiry, if any.
    pub expires_at: Option<String>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<String>,
}

/// A role assignment as stored: the role's name and the scope's text
/// (`/` or an id); the policy engine gives them meaning.
#[derive(Debug, Clone)]
pub struct RoleAssignmentRow {
    /// Id.
    pub id: Id,
    /// The principal given the role.
    pub principal_id: Id,
    /// Role name.
    pub role: String,
    /// Scope text.
    pub scope: String,
    /// Who created it (`None`: the platform).
    pub created_by: Option<Id>,
    /// Creation time.
    pub created_at: String,
}

/// id, account, tenant, name, kind, created_at, expires_at, revoked_at, token id.
type TokenPrincipalTuple = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
);

const PRINCIPAL_COLS: &str = "p.id, p.account_id, a.tenant_id, p.name, p.kind, p.created_at FROM principals p JOIN accounts a ON a.id = p.account_id";

type PrincipalTuple = (String, String, String, String, String, String);

fn principal_row(t: PrincipalTuple) -> Result<PrincipalRow> {
    Ok(PrincipalRow {
        id: parse_id(&t.0, Kind::Principal)?,
        account_id: parse_id(&t.1, Kind::Account)?,
        tenant_id: parse_id(&t.2, Kind::Tenant)?,
        name: t.3,
        kind: crate::parse_word(&t.4)?,
        created_at: t.5,
    })
}

type AccountTuple = (String, String, Option<String>, String, String);

fn account_row(t: AccountTuple) -> Result<AccountRow> {
    Ok(AccountRow {
        id: parse_id(&t.0, Kind::Account)?,
        tenant_id: parse_id(&t.1, Kind::Tenant)?,
        folder_id: t.2.map(|f| parse_id(&f, Kind::Folder)).transpose()?,
        name: t.3,
        created_at: t.4,
    })
}

type FolderTuple = (String, String, Option<String>, String, String);

fn folder_row(t: FolderTuple) -> Result<FolderRow> {
    Ok(FolderRow {
        id: parse_id(&t.0, Kind::Folder)?,
        tenant_id: parse_id(&t.1, Kind::Tenant)?,
        parent_id: t.2.map(|f| parse_id(&f, Kind::Folder)).transpose()?,
        name: t.3,
        created_at: t.4,
    })
}

type TokenTuple = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

fn token_row(t: TokenTuple) -> Result<TokenRow> {
    Ok(TokenRow {
        id: parse_id(&t.0, Kind::Token)?,
        principal_id: parse_id(&t.1, Kind::Principal)?,
        name: t.2,
        created_at: t.3,
        expires_at: t.4,
        revoked_at: t.5,
    })
}

type AssignmentTuple = (String, String, String, String, Option<String>, String);

fn assignment_row(t: AssignmentTuple) -> Result<RoleAssignmentRow> {
    Ok(RoleAssignmentRow {
        id: parse_id(&t.0, Kind::RoleAssignment)?,
        principal_id: parse_id(&t.1, Kind::Principal)?,
        role: t.2,
        scope: t.3,
        created_by: t.4.map(|c| parse_id(&c, Kind::Principal)).transpose()?,
        created_at: t.5,
    })
}

const ASSIGNMENT_COLS: &str =
    "SELECT id, principal_id, role, scope, created_by, created_at FROM role_assignments";

impl Meta {
    /// Create a tenant with one account and one principal in it, atomically,
    /// the principal Owner of the tenant, and of the whole deployment if
    /// `deployment_owner` (first start, and tests).
    pub async fn create_tenant_with_principal(
        &self,
        tenant_name: &str,
        account_name: &str,
        principal_name: &str,
        deployment_owner: bool,
    ) -> Result<PrincipalRow> {
        let t = Id::random(Kind::Tenant);
        let a = Id::random(Kind::Account);
        let p = Id::random(Kind::Principal);
        let ts = now();
        let mut tx = self.begin().await?;
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
            "INSERT INTO principals (id, account_id, name, kind, created_at) VALUES ($1, $2, $3, 'user', $4)",
        )
        .bind(p.to_string())
        .bind(a.to_string())
        .bind(principal_name)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        let mut scopes = vec![t.to_string()];
        if deployment_owner {
            scopes.push("/".into());
        }
        for scope in scopes {
            sqlx::query(
                "INSERT INTO role_assignments (id, principal_id, role, scope, created_by, created_at) VALUES ($1, $2, 'Owner', $3, NULL, $4)",
            )
            .bind(Id::random(Kind::RoleAssignment).to_string())
            .bind(p.to_string())
            .bind(scope)
            .bind(&ts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(PrincipalRow {
            id: p,
            account_id: a,
            tenant_id: t,
            name: principal_name.to_string(),
            kind: coffer_types::PrincipalKind::User,
            created_at: ts,
        })
    }

    /// Create a tenant.
    pub async fn create_tenant(&self, name: &str) -> Result<TenantRow> {
        let row = TenantRow {
            id: Id::random(Kind::Tenant),
            name: name.to_string(),
            created_at: now(),
            allow_cross_tenant_key_grants: false,
        };
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(row.id.to_string())
            .bind(&row.name)
            .bind(&row.created_at)
            .execute(&self.pool)
            .await?;
        Ok(row)
    }

    /// A tenant.
    pub async fn tenant(&self, id: Id) -> Result<Option<TenantRow>> {
        let r: Option<TenantTuple> = sqlx::query_as(
            "SELECT id, name, created_at, allow_cross_tenant_key_grants FROM tenants WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        r.map(tenant_row).transpose()
    }

    /// Every tenant, oldest first.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRow>> {
        let rows: Vec<TenantTuple> = sqlx::query_as(
            "SELECT id, name, created_at, allow_cross_tenant_key_grants FROM tenants ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(tenant_row).collect()
    }

    /// Set whether tenant `id`'s customer keys may be granted across
    /// tenants; false if there is no such tenant.
    pub async fn set_tenant_cross_grants(&self, id: Id, allow: bool) -> Result<bool> {
        let n = sqlx::query("UPDATE tenants SET allow_cross_tenant_key_grants = $1 WHERE id = $2")
            .bind(i64::from(allow))
            .bind(id.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Create a folder in `tenant`, under `parent` (or at the root).
    pub async fn create_folder(
        &self,
        tenant: Id,
        parent: Option<Id>,
        name: &str,
    ) -> Result<FolderRow> {
        let row = FolderRow {
            id: Id::random(Kind::Folder),
            tenant_id: tenant,
            parent_id: parent,
            name: name.to_string(),
            created_at: now(),
        };
        sqlx::query(
            "INSERT INTO folders (id, tenant_id, parent_id, name, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(row.id.to_string())
        .bind(tenant.to_string())
        .bind(parent.map(|p| p.to_string()))
        .bind(&row.name)
        .bind(&row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(row)
    }

    /// A folder.
    pub async fn folder(&self, id: Id) -> Result<Option<FolderRow>> {
        let r: Option<FolderTuple> = sqlx::query_as(
            "SELECT id, tenant_id, parent_id, name, created_at FROM folders WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        r.map(folder_row).transpose()
    }

    /// The folders of `tenant`, oldest first.
    pub async fn list_folders(&self, tenant: Id) -> Result<Vec<FolderRow>> {
        let rows: Vec<FolderTuple> = sqlx::query_as(
            "SELECT id, tenant_id, parent_id, name, created_at FROM folders WHERE tenant_id = $1 ORDER BY created_at, id",
        )
        .bind(tenant.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(folder_row).collect()
    }

    /// Delete an empty folder (no folders or accounts in it, no role
    /// assignments at it); `Conflict` otherwise.
    pub async fn delete_folder(&self, id: Id) -> Result<()> {
        let mut tx = self.begin().await?;
        let used: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM folders WHERE parent_id = $1) + (SELECT COUNT(*) FROM accounts WHERE folder_id = $1) + (SELECT COUNT(*) FROM role_assignments WHERE scope = $1)",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if used > 0 {
            return Err(MetaError::Conflict(format!(
                "folder {id} is not empty: move or delete its folders and accounts, and delete the role assignments at it, first"
            )));
        }
        let n = sqlx::query("DELETE FROM folders WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        if n == 0 {
            return Err(MetaError::NotFound(format!("folder {id}")));
        }
        Ok(())
    }

    /// The folders above an account (or above a folder), nearest first,
    /// then the tenant: the scopes a role is inherited from.
    pub async fn ancestors_of_folder(&self, folder: Id) -> Result<Vec<Id>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "WITH RECURSIVE up(id, parent_id, depth) AS (\
               SELECT id, parent_id, 0 FROM folders WHERE id = $1 \
               UNION ALL SELECT f.id, f.parent_id, up.depth + 1 FROM folders f JOIN up ON f.id = up.parent_id WHERE up.depth < 64) \
             SELECT id FROM up ORDER BY depth",
        )
        .bind(folder.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id,)| parse_id(&id, Kind::Folder))
            .collect()
    }

    /// Create an account in `tenant`, in `folder` (or at the root).
    pub async fn create_account(
        &self,
        tenant: Id,
        folder: Option<Id>,
        name: &str,
    ) -> Result<AccountRow> {
        let row = AccountRow {
            id: Id::random(Kind::Account),
            tenant_id: tenant,
            folder_id: folder,
            name: name.to_string(),
            created_at: now(),
        };
        sqlx::query(
            "INSERT INTO accounts (id, tenant_id, folder_id, name, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(row.id.to_string())
        .bind(tenant.to_string())
        .bind(folder.map(|f| f.to_string()))
        .bind(&row.name)
        .bind(&row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(row)
    }

    /// An account.
    pub async fn account(&self, id: Id) -> Result<Option<AccountRow>> {
        let r: Option<AccountTuple> = sqlx::query_as(
            "SELECT id, tenant_id, folder_id, name, created_at FROM accounts WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        r.map(account_row).transpose()
    }

    /// The accounts of `tenant` (every account if `None`), oldest first.
    pub async fn list_accounts(&self, tenant: Option<Id>) -> Result<Vec<AccountRow>> {
        let rows: Vec<AccountTuple> = sqlx::query_as(
            "SELECT id, tenant_id, folder_id, name, created_at FROM accounts WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY created_at, id",
        )
        .bind(tenant.map(|t| t.to_string()))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(account_row).collect()
    }

    /// Move an account to `folder` (or the root) of its tenant.
    pub async fn move_account(&self, id: Id, folder: Option<Id>) -> Result<()> {
        let n = sqlx::query("UPDATE accounts SET folder_id = $1 WHERE id = $2")
            .bind(folder.map(|f| f.to_string()))
            .bind(id.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(MetaError::NotFound(format!("account {id}")));
        }
        Ok(())
    }

    /// Create a principal homed in `account`.
    pub async fn create_principal(
        &self,
        account: &AccountRow,
        name: &str,
        kind: coffer_types::PrincipalKind,
    ) -> Result<PrincipalRow> {
        let row = PrincipalRow {
            id: Id::random(Kind::Principal),
            account_id: account.id,
            tenant_id: account.tenant_id,
            name: name.to_string(),
            kind,
            created_at: now(),
        };
        sqlx::query(
            "INSERT INTO principals (id, account_id, name, kind, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(row.id.to_string())
        .bind(account.id.to_string())
        .bind(&row.name)
        .bind(row.kind.as_str())
        .bind(&row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(row)
    }

    /// A principal.
    pub async fn principal(&self, id: Id) -> Result<Option<PrincipalRow>> {
        let r: Option<PrincipalTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PRINCIPAL_COLS} WHERE p.id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        r.map(principal_row).transpose()
    }

    /// The principals homed in `account`, oldest first.
    pub async fn list_principals(&self, account: Id) -> Result<Vec<PrincipalRow>> {
        let rows: Vec<PrincipalTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PRINCIPAL_COLS} WHERE p.account_id = $1 ORDER BY p.created_at, p.id"
        )))
        .bind(account.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(principal_row).collect()
    }

    /// Delete a principal with its tokens, the role assignments it holds and
    /// those made at it.
    pub async fn delete_principal(&self, id: Id) -> Result<()> {
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM role_assignments WHERE principal_id = $1",
            "DELETE FROM role_assignments WHERE scope = $1",
            "DELETE FROM tokens WHERE principal_id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let n = sqlx::query("DELETE FROM principals WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        if n == 0 {
            return Err(MetaError::NotFound(format!("principal {id}")));
        }
        Ok(())
    }

    /// Store a token hash for `principal`, with a label and an optional
    /// expiry (RFC 3339).
    pub async fn insert_token(
        &self,
        principal: Id,
        hash: &str,
        name: &str,
        expires_at: Option<&str>,
    ) -> Result<TokenRow> {
        self.insert_child_token(principal, hash, name, expires_at, None)
            .await
    }

    /// Record a token minted from token `parent` (a console session or a
    /// sign-in link): it stops authenticating once `parent` is revoked.
    pub async fn insert_child_token(
        &self,
        principal: Id,
        hash: &str,
        name: &str,
        expires_at: Option<&str>,
        parent: Option<Id>,
    ) -> Result<TokenRow> {
        let row = TokenRow {
            id: Id::random(Kind::Token),
            principal_id: principal,
            name: name.to_string(),
            created_at: now(),
            expires_at: expires_at.map(str::to_string),
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO tokens (id, principal_id, hash, name, created_at, expires_at, parent_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(row.id.to_string())
        .bind(principal.to_string())
        .bind(hash)
        .bind(&row.name)
        .bind(&row.created_at)
        .bind(&row.expires_at)
        .bind(parent.map(|p| p.to_string()))
        .execute(&self.pool)
        .await?;
        Ok(row)
    }

    /// A token's public facts.
    pub async fn token(&self, id: Id) -> Result<Option<TokenRow>> {
        let r: Option<TokenTuple> = sqlx::query_as(
            "SELECT id, principal_id, name, created_at, expires_at, revoked_at FROM tokens WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        r.map(token_row).transpose()
    }

    /// The tokens of `principal`, oldest first.
    pub async fn list_tokens(&self, principal: Id) -> Result<Vec<TokenRow>> {
        let rows: Vec<TokenTuple> = sqlx::query_as(
            "SELECT id, principal_id, name, created_at, expires_at, revoked_at FROM tokens WHERE principal_id = $1 ORDER BY created_at, id",
        )
        .bind(principal.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(token_row).collect()
    }

    /// Revoke a token (idempotent: the first revocation time stays).
    pub async fn revoke_token(&self, id: Id) -> Result<()> {
        let n =
            sqlx::query("UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
                .bind(now())
                .bind(id.to_string())
                .execute(&self.pool)
                .await?
                .rows_affected();
        if n == 0 {
            return Err(MetaError::NotFound(format!("token {id}")));
        }
        // The sessions and links minted from it go with it (they would not
        // authenticate anyway: see `principal_by_token_hash`).
        sqlx::query("UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE parent_id = $2")
            .bind(now())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The token `id` was minted from, if any.
    pub async fn token_parent(&self, id: Id) -> Result<Option<Id>> {
        let parent: Option<Option<String>> =
            sqlx::query_scalar("SELECT parent_id FROM tokens WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        parent
            .flatten()
            .map(|p| parse_id(&p, Kind::Token))
            .transpose()
    }

    /// Revoke a token that is not revoked yet: `true` for the one caller
    /// that revoked it, `false` if it already was (a one-time token spent
    /// twice at once is spent by one of them only).
    pub async fn revoke_token_once(&self, id: Id) -> Result<bool> {
        let n =
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now())
                .bind(id.to_string())
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(n == 1)
    }

    /// The principal whose live (not revoked, not expired, and not minted
    /// from a token since revoked) token hashes to `hash`, with that
    /// token's id and expiry.
    pub async fn principal_by_token_hash(
        &self,
        hash: &str,
    ) -> Result<Option<(PrincipalRow, Id, Option<String>)>> {
        let row: Option<TokenPrincipalTuple> = sqlx::query_as(
            "SELECT p.id, p.account_id, a.tenant_id, p.name, p.kind, p.created_at, t.expires_at, \
             COALESCE(t.revoked_at, pt.revoked_at), t.id \
             FROM tokens t JOIN principals p ON p.id = t.principal_id JOIN accounts a ON a.id = p.account_id \
             LEFT JOIN tokens pt ON pt.id = t.parent_id \
             WHERE t.hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, account, tenant, name, kind, created_at, expires, revoked, token)) = row
        else {
            return Ok(None);
        };
        if revoked.is_some() {
            return Ok(None);
        }
        if let Some(exp) = &expires {
            let at = humantime::parse_rfc3339(exp)
                .map_err(|_| MetaError::Corrupt("token expiry".into()))?;
            if at <= std::time::SystemTime::now() {
                return Ok(None);
            }
        }
        let p = principal_row((id, account, tenant, name, kind, created_at))?;
        Ok(Some((p, parse_id(&token, Kind::Token)?, expires)))
    }

    /// Number of principals (0 before first start).
    pub async fn principal_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM principals")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Assign `role` at `scope` to `principal`; `Conflict` if it already is.
    pub async fn create_role_assignment(
        &self,
        principal: Id,
        role: &str,
        scope: &str,
        created_by: Option<Id>,
    ) -> Result<RoleAssignmentRow> {
        let row = RoleAssignmentRow {
            id: Id::random(Kind::RoleAssignment),
            principal_id: principal,
            role: role.to_string(),
            scope: scope.to_string(),
            created_by,
            created_at: now(),
        };
        let r = sqlx::query(
            "INSERT INTO role_assignments (id, principal_id, role, scope, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (principal_id, role, scope) DO NOTHING",
        )
        .bind(row.id.to_string())
        .bind(principal.to_string())
        .bind(&row.role)
        .bind(&row.scope)
        .bind(created_by.map(|c| c.to_string()))
        .bind(&row.created_at)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(MetaError::Conflict(format!(
                "principal {principal} already has role {role} at {scope}"
            )));
        }
        Ok(row)
    }

    /// A role assignment.
    pub async fn role_assignment(&self, id: Id) -> Result<Option<RoleAssignmentRow>> {
        let r: Option<AssignmentTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{ASSIGNMENT_COLS} WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        r.map(assignment_row).transpose()
    }

    /// The role assignments of `principal`.
    pub async fn role_assignments_of(&self, principal: Id) -> Result<Vec<RoleAssignmentRow>> {
        let rows: Vec<AssignmentTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{ASSIGNMENT_COLS} WHERE principal_id = $1 ORDER BY created_at, id"
        )))
        .bind(principal.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(assignment_row).collect()
    }

    /// The role assignments made at `scope` (exactly; not inherited ones).
    pub async fn role_assignments_at(&self, scope: &str) -> Result<Vec<RoleAssignmentRow>> {
        let rows: Vec<AssignmentTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{ASSIGNMENT_COLS} WHERE scope = $1 ORDER BY created_at, id"
        )))
        .bind(scope)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(assignment_row).collect()
    }

    /// Delete a role assignment.
    pub async fn delete_role_assignment(&self, id: Id) -> Result<()> {
        let n = sqlx::query("DELETE FROM role_assignments WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(MetaError::NotFound(format!("role assignment {id}")));
        }
        Ok(())
    }

    /// Delete every role assignment made at `scope` (its resource is gone).
    pub async fn delete_role_assignments_at(&self, scope: &str) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM role_assignments WHERE scope = $1")
            .bind(scope)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
