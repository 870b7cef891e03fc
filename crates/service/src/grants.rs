//! Grants on keys (AWS KMS grants, seed 002 §3): a key administrator — a
//! holder of `keys/grant` on the key — lets one principal use the key for
//! some operations (`Describe`, `Encrypt`, `Decrypt`, `ReEncrypt`,
//! `GenerateDataKey`, `WrapKey`, `UnwrapKey`, `CreateGrant`), without a role
//! assignment. A grant is on one key only, never inherited. Its grantee may
//! pass on a subset of its operations if it holds `CreateGrant`; the
//! grantee, or a retiring principal named at creation, retires it; a key
//! administrator revokes it. Either ends it at once for every node: the
//! policy engine sees a principal's grants with its role assignments
//! (`Subject::key_grants`), and the key watch re-checks a set identity's
//! access every 500 ms, so a disk whose set identity held its key through
//! a revoked grant is cut off.
//!
//! Boundaries: the grantee may be any principal of the key's tenant (another
//! account's, as AWS lets a key be granted to another account). A principal
//! of another tenant only where the key's tenant allows it
//! (`coffer tenant update T --allow-cross-tenant-key-grants true`, AWS's
//! behaviour); off by default (Azure's), when such a grant is refused
//! (`CrossTenantGrant`). Turning the policy off later refuses new grants;
//! grants made meanwhile stay until revoked.

use coffer_iam::{Action, Allowed, Decision, authorize};
use coffer_meta::GrantRow;
use coffer_types::{Id, Kind};
use coffer_wire::Page;

use crate::error::ErrorCode;
use crate::model::*;
use crate::*;

/// Every grant operation and the key actions it allows.
pub(crate) const OPERATIONS: &[(&str, &[Action])] = &[
    ("Describe", &[Action::KeysRead]),
    ("Encrypt", &[Action::KeysEncrypt]),
    ("Decrypt", &[Action::KeysDecrypt]),
    // Coffer's re-encrypt decrypts and encrypts inside the vault; the
    // engine has no narrower action for it.
    ("ReEncrypt", &[Action::KeysDecrypt, Action::KeysEncrypt]),
    ("GenerateDataKey", &[Action::KeysEncrypt]),
    ("WrapKey", &[Action::KeysWrap]),
    ("UnwrapKey", &[Action::KeysUnwrap]),
    ("CreateGrant", &[Action::KeysGrant]),
];

/// Operations that take no encryption context: a grant with a context
/// constraint may not allow them.
const CONTEXT_FREE: &[&str] = &["WrapKey", "UnwrapKey", "CreateGrant"];

/// The key actions a grant's operations allow.
pub(crate) fn actions_of(ops: &[String]) -> Vec<Action> {
    let mut out = Vec::new();
    for op in ops {
        if let Some((_, actions)) = OPERATIONS.iter().find(|(n, _)| n == op) {
            for a in *actions {
                if !out.contains(a) {
                    out.push(*a);
                }
            }
        }
    }
    out
}

fn grant_dto(g: &GrantRow) -> KeyGrant {
    KeyGrant {
        id: g.id.to_string(),
        key_id: g.key_id.to_string(),
        grantee_id: g.grantee_id.to_string(),
        operations: g.operations.clone(),
        name: g.name.clone(),
        retiring_principal_id: g.retiring_id.map(|r| r.to_string()),
        created_by: g.created_by.to_string(),
        created_at: g.created_at.clone(),
        context_equals: g.context_equals.clone(),
        state: if g.revoked_at.is_some() {
            "revoked"
        } else if g.retired_at.is_some() {
            "retired"
        } else {
            "active"
        }
        .into(),
    }
}

/// The operations asked for, checked and in the table's order.
fn check_operations(ops: &[String]) -> Result<Vec<String>> {
    if ops.is_empty() {
        return Err(ServiceError::new(
            ErrorCode::InvalidKeyOperation,
            "a grant needs at least one operation",
        ));
    }
    for op in ops {
        if !OPERATIONS.iter().any(|(n, _)| n == op) {
            return Err(ServiceError::new(
                ErrorCode::InvalidKeyOperation,
                format!(
                    "'{op}' is not a grant operation: use {}",
                    OPERATIONS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(OPERATIONS
        .iter()
        .map(|(n, _)| (*n).to_string())
        .filter(|n| ops.contains(n))
        .collect())
}

impl Service {
    async fn principal_for_grant(&self, id: &str) -> Result<coffer_meta::PrincipalRow> {
        let pid = parse_id(id, Kind::Principal)?;
        self.meta
            .principal(pid)
            .await?
            .ok_or_else(|| ServiceError::not_found(ErrorCode::PrincipalNotFound, "principal", pid))
    }

    /// Create a grant on key `key`.
    pub async fn create_grant(
        &self,
        caller: &Caller,
        key: &str,
        req: CreateGrant,
    ) -> Result<KeyGrant> {
        let (k, v) = self.authorized_key(caller, key, Action::KeysGrant).await?;
        if v.deleted_at.is_some() || k.deleted_at.is_some() {
            return Err(ServiceError::new(
                ErrorCode::ResourceDeleted,
                format!("key {} or its vault is deleted: recover it first", k.id),
            ));
        }
        let ops = check_operations(&req.operations)?;
        if req.context_equals.is_some()
            && let Some(op) = ops.iter().find(|o| CONTEXT_FREE.contains(&o.as_str()))
        {
            return Err(ServiceError::new(
                ErrorCode::InvalidKeyOperation,
                format!(
                    "{op} takes no encryption context, so a grant constrained to one cannot allow it: grant it without --context-equals, separately"
                ),
            ));
        }
        // Allowed through a grant of its own (CreateGrant), not a role:
        // only what that grant allows may be passed on.
        let target = self.key_target(&k).await?;
        if let Decision::Allow(Allowed::KeyGrant { grant }) =
            authorize(&caller.subject, Action::KeysGrant, &target)
            && let Some(own) = self.meta.grant(grant).await?
            && let Some(extra) = ops.iter().find(|o| !own.operations.contains(o))
        {
            return Err(ServiceError::new(
                ErrorCode::AuthorizationFailed,
                format!(
                    "your grant {grant} on key {} does not allow {extra}, so you cannot grant it",
                    k.id
                ),
            ));
        }
        let grantee = self.principal_for_grant(&req.grantee_id).await?;
        let account = k
            .account_id
            .ok_or_else(|| ServiceError::internal("a customer key without an account"))?;
        let key_tenant = self
            .meta
            .account(account)
            .await?
            .ok_or_else(|| ServiceError::internal("a key's account is gone"))?
            .tenant_id;
        if grantee.tenant_id != key_tenant && !self.cross_tenant_keys(key_tenant).await? {
            self.audit(
                caller,
                "grant.create",
                Some((k.id, None)),
                k.id,
                "denied",
                &format!("grantee {} is of another tenant", grantee.id),
            )
            .await?;
            return Err(ServiceError::new(
                ErrorCode::CrossTenantGrant,
                format!(
                    "principal {} is of tenant {}, key {} of tenant {key_tenant}, whose policy does not allow grants across tenants: share a copy under the platform key instead (docs/workflows/000-azure-share-snapshot.md, W0.4), or have an Owner of tenant {key_tenant} allow them (`coffer tenant update {key_tenant} --allow-cross-tenant-key-grants true`)",
                    grantee.id, grantee.tenant_id, k.id
                ),
            ));
        }
        let retiring = match &req.retiring_principal_id {
            Some(r) => Some(self.principal_for_grant(r).await?.id),
            None => None,
        };
        let name = req
            .name
            .as_deref()
            .map(|n| check_name(n).map(|n| n.to_string()))
            .transpose()?;
        let row = GrantRow {
            id: Id::random(Kind::Grant),
            key_id: k.id,
            account_id: account,
            grantee_id: grantee.id,
            operations: ops,
            name,
            retiring_id: retiring,
            created_by: caller.principal.id,
            created_at: coffer_meta::now(),
            retired_at: None,
            revoked_at: None,
            context_equals: req.context_equals.clone(),
        };
        self.meta.insert_grant(&row).await?;
        self.audit(
            caller,
            "grant.create",
            Some((k.id, None)),
            row.id,
            "allowed",
            &format!("to {}: {}", grantee.id, row.operations.join(",")),
        )
        .await?;
        tracing::info!(grant = %row.id, key = %k.id, grantee = %grantee.id, "key grant created");
        Ok(grant_dto(&row))
    }

    /// The active grants on key `key`.
    pub async fn list_grants(&self, caller: &Caller, key: &str) -> Result<Page<KeyGrant>> {
        let (k, _) = self.authorized_key(caller, key, Action::KeysGrant).await?;
        let items: Vec<KeyGrant> = self
            .meta
            .grants_on_key(k.id)
            .await?
            .iter()
            .map(grant_dto)
            .collect();
        Ok(Page { items, next: None })
    }

    /// Revoke a grant (a key administrator: `keys/grant` on its key).
    pub async fn revoke_grant(&self, caller: &Caller, id: &str) -> Result<KeyGrant> {
        self.end_grant(caller, id, true).await
    }

    /// Retire a grant: its grantee, its retiring principal, or a key
    /// administrator.
    pub async fn retire_grant(&self, caller: &Caller, id: &str) -> Result<KeyGrant> {
        self.end_grant(caller, id, false).await
    }

    async fn end_grant(&self, caller: &Caller, id: &str, revoke: bool) -> Result<KeyGrant> {
        let gid = parse_id(id, Kind::Grant)?;
        let nf = || ServiceError::not_found(ErrorCode::GrantNotFound, "grant", gid);
        let mut g = self
            .meta
            .grant(gid)
            .await?
            .filter(|g| g.retired_at.is_none() && g.revoked_at.is_none())
            .ok_or_else(nf)?;
        let me = caller.principal.id;
        let party = g.grantee_id == me || g.retiring_id == Some(me);
        if revoke || !party {
            // A key administrator; to anyone else the grant does not exist
            // (or, for a party to it that may not revoke, is forbidden).
            match self
                .authorized_key(caller, &g.key_id.to_string(), Action::KeysGrant)
                .await
            {
                // `keys/grant` from a role: a grant's own CreateGrant lets
                // its holder make grants, not end other grants.
                Ok((k, _)) => {
                    let target = self.key_target(&k).await?;
                    if let Decision::Allow(Allowed::KeyGrant { grant }) =
                        authorize(&caller.subject, Action::KeysGrant, &target)
                    {
                        return Err(ServiceError::new(
                            ErrorCode::AuthorizationFailed,
                            format!(
                                "your grant {grant} lets you create grants on key {}, not end them: that takes keys/grant from a role (Owner, Key Vault Administrator){}",
                                k.id,
                                if party {
                                    format!(
                                        "; retire your own with `coffer key grant retire {gid}`"
                                    )
                                } else {
                                    String::new()
                                }
                            ),
                        ));
                    }
                }
                Err(e) if party && e.code == ErrorCode::KeyNotFound => {
                    return Err(ServiceError::new(
                        ErrorCode::AuthorizationFailed,
                        format!(
                            "revoking grant {gid} takes keys/grant on key {}; as its grantee or retiring principal, retire it instead: `coffer key grant retire {gid}`",
                            g.key_id
                        ),
                    ));
                }
                Err(e) if e.code == ErrorCode::KeyNotFound => return Err(nf()),
                Err(e) => return Err(e),
            }
        }
        let at = coffer_meta::now();
        self.meta
            .end_grant(g.id, revoke, &at)
            .await
            .map_err(|e| match e {
                coffer_meta::MetaError::NotFound(_) => nf(),
                other => other.into(),
            })?;
        if revoke {
            g.revoked_at = Some(at);
        } else {
            g.retired_at = Some(at);
        }
        let action = if revoke {
            "grant.revoke"
        } else {
            "grant.retire"
        };
        self.audit(caller, action, Some((g.key_id, None)), g.id, "allowed", "")
            .await?;
        tracing::info!(grant = %g.id, key = %g.key_id, action, "key grant ended");
        Ok(grant_dto(&g))
    }
}

impl Service {
    /// Whether tenant `tenant` lets its customer keys be granted to, and
    /// its customer-key resources be shared with, other tenants.
    pub(crate) async fn cross_tenant_keys(&self, tenant: Id) -> Result<bool> {
        Ok(self
            .meta
            .tenant(tenant)
            .await?
            .is_some_and(|t| t.allow_cross_tenant_key_grants))
    }
}
