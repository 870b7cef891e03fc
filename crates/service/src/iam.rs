//! Identity and access management: the built-in roles, principals, API
//! tokens, role assignments, and `iam explain`.

/// The longest token lifetime `expires_in` accepts.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 366 * 24 * 3600);
/// The shortest: a token must be usable by the one it is made for.
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

use std::time::{Duration, SystemTime};

use coffer_crypto::{hash_token, new_token};
use coffer_iam::{Action, Decision, Role, Scope, Target, authorize};
use coffer_meta::{PrincipalRow, RoleAssignmentRow, TokenRow};
use coffer_types::Kind;

use crate::access::*;
use crate::error::ErrorCode;
use crate::list;
use crate::model::*;
use crate::owners::Removing;
use crate::*;
use coffer_types::{PrincipalKind, TokenState};
use coffer_wire::{ListParams, Page};

pub(crate) fn principal_dto(p: &PrincipalRow) -> Principal {
    Principal {
        id: p.id.to_string(),
        name: p.name.clone(),
        kind: p.kind,
        account_id: p.account_id.to_string(),
        tenant_id: p.tenant_id.to_string(),
        created_at: p.created_at.clone(),
    }
}

pub(crate) fn token_dto(t: &TokenRow) -> Token {
    let expired = t
        .expires_at
        .as_deref()
        .is_some_and(|e| humantime::parse_rfc3339(e).map_or(true, |at| at <= SystemTime::now()));
    let state = if t.revoked_at.is_some() {
        TokenState::Revoked
    } else if expired {
        TokenState::Expired
    } else {
        TokenState::Active
    };
    Token {
        id: t.id.to_string(),
        principal_id: t.principal_id.to_string(),
        name: t.name.clone(),
        state,
        created_at: t.created_at.clone(),
        expires_at: t.expires_at.clone(),
        revoked_at: t.revoked_at.clone(),
    }
}

pub(crate) fn assignment_dto(r: &RoleAssignmentRow) -> RoleAssignment {
    RoleAssignment {
        id: r.id.to_string(),
        principal_id: r.principal_id.to_string(),
        role: r.role.clone(),
        scope: r.scope.clone(),
        created_by: r.created_by.map(|c| c.to_string()),
        created_at: r.created_at.clone(),
    }
}

impl Service {
    /// The built-in roles and what they grant.
    pub fn roles(&self) -> Vec<RoleDefinition> {
        Role::ALL
            .into_iter()
            .map(|r| RoleDefinition {
                name: r.as_str().into(),
                description: r.description().into(),
                actions: r.actions().iter().map(|a| a.as_str().to_string()).collect(),
            })
            .collect()
    }

    /// Create a user or service principal in an account (default: the
    /// caller's). It holds no role until one is assigned.
    pub async fn create_principal(
        &self,
        caller: &Caller,
        req: CreatePrincipal,
    ) -> Result<Principal> {
        let name = check_name(&req.name)?;
        let kind = match req.kind.as_deref().map(str::parse::<PrincipalKind>) {
            None => PrincipalKind::User,
            Some(Ok(k)) => k,
            Some(Err(_)) => {
                return Err(ServiceError::new(
                    ErrorCode::InvalidKind,
                    format!(
                        "unknown principal kind '{}': use user or service",
                        req.kind
                            .as_deref()
                            .unwrap_or_default()
                            .chars()
                            .take(40)
                            .collect::<String>()
                    ),
                ));
            }
        };
        match kind {
            PrincipalKind::User | PrincipalKind::Service => {}
            PrincipalKind::Managed => {
                return Err(ServiceError::new(
                    ErrorCode::ManagedIdentity,
                    "managed identities are created by the platform with the resource that uses them (a disk encryption set): create a `user` or `service` principal",
                ));
            }
        }
        let account = match &req.account_id {
            Some(a) => parse_id(a, Kind::Account)?,
            None => caller.principal.account_id,
        };
        self.check_scope(caller, Action::IamWrite, Scope::Id(account))
            .await?;
        let a = self
            .meta
            .account(account)
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(account)))?;
        let p = self.meta.create_principal(&a, name.as_str(), kind).await?;
        tracing::info!(principal = %p.id, account = %a.id, by = %caller.principal.id, "principal created");
        Ok(principal_dto(&p))
    }

    /// The principals of an account (default: the caller's) the caller may see.
    pub async fn list_principals(&self, caller: &Caller, q: ListParams) -> Result<Page<Principal>> {
        let account = match q.account.as_deref() {
            Some(a) => parse_id(a, Kind::Account)?,
            None => caller.principal.account_id,
        };
        let chain = self
            .resolve(Scope::Id(account))
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(account)))?;
        self.check(caller, Action::OrgRead, &chain)?;
        let mut out = vec![];
        for p in self.meta.list_principals(account).await? {
            let mut c = vec![Scope::Id(p.id)];
            c.extend(chain.chain().iter().copied());
            if authorize(&caller.subject, Action::IamRead, &Target::new(c)).is_allowed() {
                out.push(principal_dto(&p));
            }
        }
        list::page_in_memory(out, &q, |p| &p.name)
    }

    async fn visible_principal(
        &self,
        caller: &Caller,
        id: &str,
        action: Action,
    ) -> Result<PrincipalRow> {
        let id = parse_id(id, Kind::Principal)?;
        self.check_scope(caller, Action::IamRead, Scope::Id(id))
            .await?;
        if action != Action::IamRead {
            self.check_scope(caller, action, Scope::Id(id)).await?;
        }
        let p = self
            .meta
            .principal(id)
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(id)))?;
        if action != Action::IamRead && p.id != caller.principal.id {
            self.check_controls(caller, &p, action).await?;
        }
        Ok(p)
    }

    /// Managing another principal's credentials or existence is acting as
    /// it: allowed only to a caller that could grant every role it holds
    /// (`iam/write` at each of its assignments' scopes). Otherwise the Owner
    /// of an account could mint a token for a deployment Owner homed there.
    async fn check_controls(
        &self,
        caller: &Caller,
        p: &PrincipalRow,
        action: Action,
    ) -> Result<()> {
        for r in self.meta.role_assignments_of(p.id).await? {
            let scope = parse_scope(&r.scope)?;
            let target = self.resolve(scope).await?;
            let may = target
                .as_ref()
                .is_some_and(|t| authorize(&caller.subject, Action::IamWrite, t).is_allowed());
            if may {
                continue;
            }
            let seen = target
                .as_ref()
                .is_some_and(|t| authorize(&caller.subject, Action::IamRead, t).is_allowed());
            let what = if seen {
                format!("{} at {} ({})", r.role, scope.describe(), r.id)
            } else {
                "a role at a scope you cannot see".to_string()
            };
            return Err(ServiceError::new(
                ErrorCode::AuthorizationFailed,
                format!(
                    "'{action}' on principal {} needs 'iam/write' wherever it holds a role, and it holds {what}: only a principal that could grant every role of {} may manage its tokens or delete it; ask an Owner of that scope",
                    p.id, p.id
                ),
            ));
        }
        Ok(())
    }

    /// One principal.
    pub async fn get_principal(&self, caller: &Caller, id: &str) -> Result<Principal> {
        Ok(principal_dto(
            &self.visible_principal(caller, id, Action::IamRead).await?,
        ))
    }

    /// Delete a principal, its tokens and its role assignments.
    pub async fn delete_principal(&self, caller: &Caller, id: &str) -> Result<Principal> {
        let p = self.visible_principal(caller, id, Action::IamWrite).await?;
        if p.id == caller.principal.id {
            return Err(ServiceError::new(
                ErrorCode::CannotDeleteSelf,
                "a principal cannot delete itself: ask another Owner, or revoke your tokens with `coffer token revoke`",
            ));
        }
        if p.kind == PrincipalKind::Managed {
            return Err(ServiceError::new(
                ErrorCode::ManagedIdentity,
                format!(
                    "principal {} is the managed identity of a disk encryption set: it goes when the set is deleted (`coffer encryption-set delete`)",
                    p.id
                ),
            ));
        }
        self.keep_an_owner(Removing::Principal(p.id)).await?;
        self.meta.delete_principal(p.id).await?;
        tracing::info!(principal = %p.id, by = %caller.principal.id, "principal deleted");
        Ok(principal_dto(&p))
    }

    /// Create an API token for a principal (itself, or one the caller may
    /// manage). The secret is returned once; only its hash is stored.
    pub async fn create_token(
        &self,
        caller: &Caller,
        principal: &str,
        req: CreateToken,
    ) -> Result<NewToken> {
        let p = self
            .visible_principal(caller, principal, Action::TokensWrite)
            .await?;
        if p.kind == PrincipalKind::Managed {
            return Err(ServiceError::new(
                ErrorCode::ManagedIdentity,
                format!(
                    "principal {} is a managed identity: the platform authenticates it, it has no API tokens",
                    p.id
                ),
            ));
        }
        let name = match req.name.as_deref() {
            Some(n) => check_name(n)?.to_string(),
            None => String::new(),
        };
        let expires_at = match req.expires_in.as_deref() {
            None => None,
            Some(s) => {
                let d = humantime::parse_duration(s.trim()).map_err(|e| {
                    ServiceError::new(
                        ErrorCode::InvalidDuration,
                        format!(
                            "expires_in '{}' is not a duration ({e}): use e.g. 30d, 12h or 90m",
                            s.chars().take(40).collect::<String>()
                        ),
                    )
                })?;
                if d < MIN_TOKEN_LIFETIME || d > MAX_TOKEN_LIFETIME {
                    return Err(ServiceError::new(
                        ErrorCode::InvalidDuration,
                        "expires_in must be at least 1 minute (1m) and at most 10 years (3650d)",
                    ));
                }
                Some(humantime::format_rfc3339_millis(SystemTime::now() + d).to_string())
            }
        };
        // A token never begets one, for any principal, that outlives it: a
        // leaked short-lived token must not become a lasting credential,
        // directly or through a principal it creates and mints a token for.
        let expires_at = match (&caller.token_expires_at, expires_at) {
            (Some(cap), wanted) => {
                let at = |t: &str| humantime::parse_rfc3339(t).map_err(ServiceError::internal);
                match wanted {
                    None => Some(cap.clone()),
                    Some(w) if at(&w)? <= at(cap)? => Some(w),
                    Some(_) => {
                        return Err(ServiceError::new(
                            ErrorCode::TokenOutlivesCaller,
                            format!(
                                "the token you call with expires at {cap}, and a token it creates (for any principal) cannot outlive it: ask for a shorter expires_in, or leave it out to expire with this one"
                            ),
                        ));
                    }
                }
            }
            (None, wanted) => wanted,
        };
        // A token made with a session (the console) hangs off the token the
        // session came from: revoking that one ends this one too.
        let parent = self.meta.token_parent(caller.token_id).await?;
        let secret = new_token();
        let row = self
            .meta
            .insert_child_token(
                p.id,
                &hash_token(&secret),
                &name,
                expires_at.as_deref(),
                parent,
            )
            .await?;
        tracing::info!(token = %row.id, principal = %p.id, by = %caller.principal.id, "token created");
        Ok(NewToken {
            token: token_dto(&row),
            secret,
        })
    }

    /// The tokens of a principal (public facts only).
    pub async fn list_tokens(
        &self,
        caller: &Caller,
        principal: &str,
        q: ListParams,
    ) -> Result<Page<Token>> {
        let p = self
            .visible_principal(caller, principal, Action::IamRead)
            .await?;
        let tokens = self.meta.list_tokens(p.id).await?;
        list::page_in_memory(tokens.iter().map(token_dto).collect(), &q, |t| &t.name)
    }

    /// Revoke a token: it stops working at once.
    pub async fn revoke_token(&self, caller: &Caller, id: &str) -> Result<Token> {
        let id = parse_id(id, Kind::Token)?;
        let t = self
            .meta
            .token(id)
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(id)))?;
        let owner = t.principal_id.to_string();
        self.visible_principal(caller, &owner, Action::TokensWrite)
            .await
            .map_err(|e| {
                if e.status() == 404 {
                    not_found_of(Scope::Id(id))
                } else {
                    e
                }
            })?;
        if t.revoked_at.is_none() {
            self.keep_an_owner(Removing::Token {
                token: id,
                principal: t.principal_id,
            })
            .await?;
        }
        self.meta.revoke_token(id).await?;
        tracing::info!(token = %id, by = %caller.principal.id, "token revoked");
        let t = self
            .meta
            .token(id)
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(id)))?;
        Ok(token_dto(&t))
    }

    /// Assign a role at a scope to a principal of any account or tenant.
    /// The caller needs `iam/write` at the scope.
    pub async fn create_role_assignment(
        &self,
        caller: &Caller,
        req: CreateRoleAssignment,
    ) -> Result<RoleAssignment> {
        let role: Role = req.role.parse().map_err(|e: coffer_iam::UnknownRole| {
            ServiceError::new(ErrorCode::UnknownRole, e.to_string())
        })?;
        let scope = parse_scope(&req.scope)?;
        if let Scope::Id(id) = scope
            && matches!(id.kind(), Kind::RoleAssignment | Kind::Principal)
        {
            return Err(ServiceError::new(
                ErrorCode::InvalidScope,
                format!(
                    "a role cannot be assigned at a {}: assign it at '/', a tenant, folder, account, disk, snapshot or key",
                    id.kind().noun()
                ),
            ));
        }
        let principal = parse_id(&req.principal_id, Kind::Principal)?;
        self.check_scope(caller, Action::IamWrite, scope).await?;
        // The principal may belong to another tenant: its id is enough (as an
        // Azure guest's object id is); its existence is all this reveals.
        let Some(grantee) = self.meta.principal(principal).await? else {
            return Err(not_found_of(Scope::Id(principal)));
        };
        self.customer_key_boundary(scope, &grantee).await?;
        let row = self
            .meta
            .create_role_assignment(
                principal,
                role.as_str(),
                &scope.to_string(),
                Some(caller.principal.id),
            )
            .await
            .map_err(|e| match e {
                coffer_meta::MetaError::Conflict(m) => {
                    ServiceError::new(ErrorCode::RoleAssignmentExists, m)
                }
                other => other.into(),
            })?;
        tracing::info!(assignment = %row.id, principal = %principal, role = %role, scope = %scope, by = %caller.principal.id, "role assigned");
        Ok(assignment_dto(&row))
    }

    /// A disk, snapshot or image under a customer-managed key is not
    /// shared with another tenant (Azure's rule for customer-key snapshots,
    /// seed 000): its key stays in its account, and the other tenant could
    /// not use it — unless the owner's tenant allows cross-tenant key
    /// grants and the grantee's account holds a grant on every key under
    /// it (as a share requires). An image is shared once available.
    async fn customer_key_boundary(
        &self,
        scope: Scope,
        grantee: &coffer_meta::PrincipalRow,
    ) -> Result<()> {
        let Scope::Id(id) = scope else {
            return Ok(());
        };
        let (account, sets, what) = match id.kind() {
            Kind::Snapshot => match self.meta.snapshot(id).await? {
                Some(s) => (s.account_id, vec![s.encryption_set_id], "snapshot"),
                None => return Ok(()),
            },
            Kind::Disk => match self.meta.disk(id).await? {
                Some(d) => (d.account_id, vec![d.encryption_set_id], "disk"),
                None => return Ok(()),
            },
            Kind::Image => match self.meta.image(id).await? {
                Some(i) => {
                    if i.state != coffer_types::ImageState::Available {
                        return Err(ServiceError::new(
                            ErrorCode::Conflict,
                            format!(
                                "image {id} is {}: an image is shared once its copy has finished and it is available",
                                i.state
                            ),
                        ));
                    }
                    let sets = self
                        .meta
                        .image_snapshots(id)
                        .await?
                        .into_iter()
                        .map(|s| s.encryption_set_id)
                        .collect();
                    (i.account_id, sets, "image")
                }
                None => return Ok(()),
            },
            _ => return Ok(()),
        };
        let sets: Vec<Id> = sets.into_iter().flatten().collect();
        let Some(&first) = sets.first() else {
            return Ok(());
        };
        let Some(acct) = self.meta.account(account).await? else {
            return Ok(());
        };
        if acct.tenant_id == grantee.tenant_id {
            return Ok(());
        }
        if self.cross_tenant_keys(acct.tenant_id).await? {
            for set in &sets {
                let Some(set) = self.meta.encryption_set(*set).await? else {
                    continue;
                };
                if !self
                    .account_may_decrypt(set.key_id, grantee.account_id)
                    .await?
                {
                    return Err(ServiceError::new(
                        ErrorCode::KeyNotShared,
                        format!(
                            "{what} {id} is under customer-managed key {}, and account {} holds no grant on it: the key's owner first runs `coffer key grant create {} --grantee {} --operations Describe,Decrypt,ReEncrypt,CreateGrant,GenerateDataKey`",
                            set.key_id, grantee.account_id, set.key_id, grantee.id
                        ),
                    ));
                }
            }
            return Ok(());
        }
        Err(ServiceError::new(
            ErrorCode::CustomerKeyBoundary,
            format!(
                "{what} {id} is under a customer-managed key (encryption set {first}), which cannot be shared with another tenant ({} is of tenant {}): share a copy under the platform key instead — a platform-key disk filled from this one, and its snapshot (docs/workflows/000-azure-share-snapshot.md, W0.4)",
                grantee.id, grantee.tenant_id
            ),
        ))
    }

    /// Role assignments: those made at `scope` (caller needs `iam/read`
    /// there), or those of `principal` whose scope the caller may read (all
    /// of them for the principal itself), or, with neither, the caller's own.
    pub async fn list_role_assignments(
        &self,
        caller: &Caller,
        q: ListParams,
    ) -> Result<Page<RoleAssignment>> {
        let rows = match (q.principal.as_deref(), q.scope.as_deref()) {
            (_, Some(s)) => {
                let scope = parse_scope(s)?;
                self.check_scope(caller, Action::IamRead, scope).await?;
                let mut rows = self.meta.role_assignments_at(&scope.to_string()).await?;
                if let Some(p) = q.principal.as_deref() {
                    let p = parse_id(p, Kind::Principal)?;
                    rows.retain(|r| r.principal_id == p);
                }
                rows
            }
            (Some(p), None) => {
                let p = parse_id(p, Kind::Principal)?;
                let rows = self.meta.role_assignments_of(p).await?;
                if p == caller.principal.id {
                    rows
                } else {
                    let mut out = vec![];
                    for r in rows {
                        if let Some(t) = self.resolve(parse_scope(&r.scope)?).await?
                            && authorize(&caller.subject, Action::IamRead, &t).is_allowed()
                        {
                            out.push(r);
                        }
                    }
                    out
                }
            }
            (None, None) => self.meta.role_assignments_of(caller.principal.id).await?,
        };
        list::page_in_memory(rows.iter().map(assignment_dto).collect(), &q, |r| &r.role)
    }

    /// Delete a role assignment (caller needs `iam/write` at its scope).
    pub async fn delete_role_assignment(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<RoleAssignment> {
        let id = parse_id(id, Kind::RoleAssignment)?;
        let row = self
            .meta
            .role_assignment(id)
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(id)))?;
        let scope = parse_scope(&row.scope)?;
        let mine = row.principal_id == caller.principal.id;
        // An assignment is visible to those who may read role assignments
        // at its scope, and to its principal: to anyone else it does not
        // exist, whatever they may otherwise see of the scope.
        let target = self.resolve(scope).await?;
        let readable = target
            .as_ref()
            .is_some_and(|t| authorize(&caller.subject, Action::IamRead, t).is_allowed());
        if !readable && !mine {
            return Err(not_found_of(Scope::Id(id)));
        }
        if let Some(t) = &target
            && let Decision::Deny(d) = authorize(&caller.subject, Action::IamWrite, t)
        {
            let reason = if d.visible {
                d.reason(caller.principal.id)
            } else {
                format!(
                    "removing role assignment {id} needs 'iam/write' at its scope, which you cannot see: ask an Owner of that scope"
                )
            };
            return Err(ServiceError::new(ErrorCode::AuthorizationFailed, reason));
        }
        self.keep_an_owner(Removing::Assignment(id)).await?;
        self.meta.delete_role_assignment(id).await?;
        tracing::info!(assignment = %id, by = %caller.principal.id, "role assignment deleted");
        Ok(assignment_dto(&row))
    }
}
