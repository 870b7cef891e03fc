//! Sharing: the one engine behind every way a snapshot or image reaches
//! another account. A share names resources and principals (accounts,
//! folders, a tenant, or every account); [`Service::shared_with_account`]
//! turns the shares in force into what the policy engine lets a
//! recipient do (see `coffer_iam::Shared`: see, launch, copy; never
//! change or delete). The AWS way — a snapshot's create-volume or an
//! image's launch permission — is one share per resource, kind
//! `permission`, needing no invitation (`permission add|remove|list`).
//!
//! Encryption rules (SPEC §4): a platform-key resource shares freely; a
//! customer-key resource is shared with another account only if that
//! account holds a grant on its key, and never with every account; with
//! another tenant never, unless the tenant allows cross-tenant key grants
//! (not yet: the error names the workaround).

use coffer_iam::{Action, Scope};
use coffer_meta::{PUBLIC, SharePrincipalRow, ShareRow};
use coffer_types::{EncryptionType, Id, ImageState, Kind, PrincipalScope, ShareKind, ShareStatus};

use crate::error::ErrorCode;
use crate::model::*;
use crate::*;

/// Per-account limits of sharing (seed 003's quotas), set in the serve
/// configuration's `[quotas]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShareQuotas {
    /// Resource shares one account may own.
    pub shares_per_account: u64,
    /// Principals one share may name.
    pub principals_per_share: u64,
    /// Resources one share may hold.
    pub resources_per_share: u64,
    /// Accounts (and other principals) one resource may be shared with,
    /// over all its shares and permissions.
    pub principals_per_resource: u64,
}

impl Default for ShareQuotas {
    fn default() -> Self {
        Self {
            shares_per_account: 20,
            principals_per_share: 100,
            resources_per_share: 100,
            principals_per_resource: 50,
        }
    }
}

fn quota(what: &str, limit: u64, fix: &str) -> ServiceError {
    ServiceError::new(
        ErrorCode::QuotaExceeded,
        format!(
            "{what}: the limit is {limit} ({fix}; an operator can raise it in the serve configuration's [quotas])"
        ),
    )
}

pub(crate) fn share_dto(
    s: &ShareRow,
    resources: Vec<Id>,
    principals: &[SharePrincipalRow],
) -> Share {
    Share {
        id: s.id.to_string(),
        name: s.name.clone(),
        account_id: s.account_id.to_string(),
        region: s.region.clone(),
        kind: s.kind,
        principal_scope: s.principal_scope,
        resources: resources.iter().map(Id::to_string).collect(),
        principals: principals
            .iter()
            .map(|p| SharePrincipal {
                principal: p.principal.clone(),
                status: p.status,
                invitation_id: p.invitation_id.map(|i| i.to_string()),
            })
            .collect(),
        created_at: s.created_at.clone(),
    }
}

/// What a share of a resource needs to know about it.
struct Shareable {
    id: Id,
    account: Id,
    region: String,
    /// The customer keys under it (key id, encryption set), if any.
    customer_keys: Vec<(Id, Option<Id>)>,
    /// An image not yet available (its copy runs, or failed): its keys are
    /// not all known, so it is shared with no one yet.
    not_ready: Option<ImageState>,
}

/// A share's principal: an account, folder or tenant id (`None`: every
/// account), and whether it is outside the owner's tenant.
struct Principal {
    id: Option<Id>,
    outside: bool,
}

impl Service {
    /// The snapshot or image `id` as something to share, if the caller may
    /// change who it is shared with (`shares/write` on it).
    async fn shareable(&self, caller: &Caller, id: &str) -> Result<Shareable> {
        let rid: Id = id.trim().parse().map_err(|e: coffer_types::IdError| {
            ServiceError::new(ErrorCode::InvalidId, e.to_string())
        })?;
        let mut not_ready = None;
        let (account, region, snaps) = match rid.kind() {
            Kind::Snapshot => {
                let s = self
                    .authorized_snapshot(caller, id, Action::SnapshotsRead)
                    .await?;
                (s.account_id, s.region.clone(), vec![s])
            }
            Kind::Image => {
                let i = self
                    .authorized_image(caller, id, Action::ImagesRead)
                    .await?;
                not_ready = (i.state != ImageState::Available).then_some(i.state);
                (
                    i.account_id,
                    i.region.clone(),
                    self.meta.image_snapshots(i.id).await?,
                )
            }
            _ => {
                return Err(ServiceError::new(
                    ErrorCode::NotShareable,
                    format!(
                        "{rid} is a {}: only snapshots and images are shared",
                        rid.kind().noun()
                    ),
                ));
            }
        };
        let target = self.resource_target(rid, account).await?;
        self.check(caller, Action::SharesWrite, &target)?;
        let customer_keys = snaps
            .iter()
            .filter(|s| s.encryption != EncryptionType::Platform)
            .map(|s| (s.kek_id, s.encryption_set_id))
            .collect();
        Ok(Shareable {
            id: rid,
            account,
            region,
            customer_keys,
            not_ready,
        })
    }

    /// Whether resource `r` may be shared with `principal` (an account,
    /// folder or tenant id, or every account), by the encryption rules.
    async fn key_rules(&self, r: &Shareable, principal: Option<Id>) -> Result<()> {
        if let Some(state) = r.not_ready {
            return Err(ServiceError::new(
                ErrorCode::Conflict,
                format!(
                    "image {} is {state}: an image is shared once its copy has finished and it is available (`coffer image show {}`)",
                    r.id, r.id
                ),
            ));
        }
        let Some(&(key, _)) = r.customer_keys.first() else {
            return Ok(());
        };
        let Some(p) = principal else {
            return Err(ServiceError::new(
                ErrorCode::NotShareable,
                format!(
                    "{} is under customer-managed key {key}: it cannot be shared with every account; share it with named accounts that hold a grant on the key, or share a platform-key copy",
                    r.id
                ),
            ));
        };
        if p.kind() != Kind::Account {
            return Err(ServiceError::new(
                ErrorCode::NotShareable,
                format!(
                    "{} is under customer-managed key {key}: it is shared only with named accounts, each holding a grant on the key, not with a {}",
                    r.id,
                    p.kind().noun()
                ),
            ));
        }
        // Any account not of the owner's tenant (existing or not: the
        // answer is the same) is across the tenant boundary.
        let owner_tenant = self.owner_tenant(r.account).await?;
        let inside = self
            .meta
            .account(p)
            .await?
            .is_some_and(|t| t.tenant_id == owner_tenant);
        if !inside && !self.cross_tenant_keys(owner_tenant).await? {
            return Err(ServiceError::new(
                ErrorCode::CustomerKeyBoundary,
                format!(
                    "{} is under customer-managed key {key}, which cannot be shared outside tenant {owner_tenant} (account {p} is not of it): share a copy under the platform key instead (docs/workflows/000-azure-share-snapshot.md, W0.4), or have an Owner of tenant {owner_tenant} allow cross-tenant key grants (`coffer tenant update {owner_tenant} --allow-cross-tenant-key-grants true`) and grant account {p} the key",
                    r.id
                ),
            ));
        }
        for &(key, _) in &r.customer_keys {
            let mut granted = false;
            for g in self.meta.grants_on_key(key).await? {
                if crate::grants::actions_of(&g.operations).contains(&Action::KeysDecrypt)
                    && let Some(grantee) = self.meta.principal(g.grantee_id).await?
                    && grantee.account_id == p
                {
                    granted = true;
                    break;
                }
            }
            if !granted {
                return Err(ServiceError::new(
                    ErrorCode::KeyNotShared,
                    format!(
                        "{} is under customer-managed key {key}, and account {p} holds no grant on it: the key's owner first runs `coffer key grant create {key} --grantee PRINCIPAL --operations Describe,Decrypt,ReEncrypt,CreateGrant,GenerateDataKey` for a principal of account {p}",
                        r.id
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The stored name of a principal being removed: `*`, or an id as
    /// given (no lookup: a principal since deleted can still be removed).
    fn principal_name(p: &str) -> Result<String> {
        let p = p.trim();
        if p == PUBLIC || p.eq_ignore_ascii_case("public") {
            return Ok(PUBLIC.to_string());
        }
        let id: Id = p.parse().map_err(|e: coffer_types::IdError| {
            ServiceError::new(ErrorCode::InvalidId, e.to_string())
        })?;
        Ok(id.to_string())
    }

    /// Parse a principal of a share owned in tenant `owner_tenant`: `*`
    /// (every account), an account, or a folder or the tenant itself.
    ///
    /// The answer never tells whether an id outside the owner's tenant
    /// exists: any well-formed account id that is not one of the tenant's
    /// is "outside" (it gets an invitation, or a permission entry nobody
    /// else can use), and every folder or tenant that is not the owner's
    /// gets one refusal, existing or not.
    async fn share_principal(&self, p: &str, owner_tenant: Id) -> Result<Principal> {
        let name = Self::principal_name(p)?;
        if name == PUBLIC {
            return Ok(Principal {
                id: None,
                outside: false,
            });
        }
        let id: Id = name.parse().map_err(|e: coffer_types::IdError| {
            ServiceError::new(ErrorCode::InvalidId, e.to_string())
        })?;
        let inside = match id.kind() {
            Kind::Account => self
                .meta
                .account(id)
                .await?
                .is_some_and(|a| a.tenant_id == owner_tenant),
            Kind::Folder => self
                .meta
                .folder(id)
                .await?
                .is_some_and(|f| f.tenant_id == owner_tenant),
            Kind::Tenant => id == owner_tenant,
            _ => {
                return Err(ServiceError::new(
                    ErrorCode::InvalidPrincipal,
                    format!(
                        "{id} is a {}: a share's principals are accounts, folders or tenants",
                        id.kind().noun()
                    ),
                ));
            }
        };
        if !inside && id.kind() != Kind::Account {
            return Err(ServiceError::new(
                ErrorCode::InvalidPrincipal,
                format!(
                    "{} {id} is not of tenant {owner_tenant}: a share names its own tenant, folders of it, or accounts (other tenants' accounts one by one)",
                    id.kind().noun()
                ),
            ));
        }
        Ok(Principal {
            id: Some(id),
            outside: !inside,
        })
    }

    /// The tenant of a resource's owning account.
    async fn owner_tenant(&self, account: Id) -> Result<Id> {
        Ok(self
            .meta
            .account(account)
            .await?
            .ok_or_else(|| ServiceError::internal("a share's account is gone"))?
            .tenant_id)
    }

    /// The permission share of a resource, made on first use.
    async fn permission_share_of(&self, r: &Shareable) -> Result<ShareRow> {
        if let Some(s) = self.meta.permission_share(r.account, r.id).await? {
            return Ok(s);
        }
        let s = ShareRow {
            id: Id::random(Kind::Share),
            account_id: r.account,
            name: r.id.to_string(),
            region: r.region.clone(),
            kind: ShareKind::Permission,
            principal_scope: PrincipalScope::Any,
            created_at: coffer_meta::now(),
        };
        match self.meta.create_share(&s).await {
            Ok(()) => {
                self.meta.add_share_resources(s.id, &[r.id]).await?;
                Ok(s)
            }
            // A racing first use made it.
            Err(coffer_meta::MetaError::NameTaken { .. }) => self
                .meta
                .permission_share(r.account, r.id)
                .await?
                .ok_or_else(|| ServiceError::internal("a permission share vanished")),
            Err(e) => Err(e.into()),
        }
    }

    /// A snapshot's create-volume or an image's launch permission (AWS):
    /// the accounts it is shared with, `*` for every account.
    pub async fn permissions(&self, caller: &Caller, id: &str) -> Result<Share> {
        let rid: Id = id.trim().parse().map_err(|e: coffer_types::IdError| {
            ServiceError::new(ErrorCode::InvalidId, e.to_string())
        })?;
        let account = match rid.kind() {
            Kind::Snapshot => {
                self.authorized_snapshot(caller, id, Action::SnapshotsRead)
                    .await?
                    .account_id
            }
            Kind::Image => {
                self.authorized_image(caller, id, Action::ImagesRead)
                    .await?
                    .account_id
            }
            _ => {
                return Err(ServiceError::new(
                    ErrorCode::NotShareable,
                    format!("{rid} is not a snapshot or image"),
                ));
            }
        };
        let target = self.resource_target(rid, account).await?;
        self.check(caller, Action::SharesRead, &target)?;
        match self.meta.permission_share(account, rid).await? {
            Some(s) => {
                let principals = self.meta.share_principals(s.id).await?;
                Ok(share_dto(&s, vec![rid], &principals))
            }
            None => Ok(Share {
                id: String::new(),
                name: rid.to_string(),
                account_id: account.to_string(),
                region: String::new(),
                kind: ShareKind::Permission,
                principal_scope: PrincipalScope::Any,
                resources: vec![rid.to_string()],
                principals: vec![],
                created_at: String::new(),
            }),
        }
    }

    /// Add or remove accounts (or `*`) in a resource's permission.
    pub async fn update_permissions(
        &self,
        caller: &Caller,
        id: &str,
        req: UpdateShare,
    ) -> Result<Share> {
        if !req.add_resources.is_empty() || !req.remove_resources.is_empty() {
            return Err(ServiceError::new(
                ErrorCode::InvalidBody,
                "a permission names accounts only: use add_principals and remove_principals",
            ));
        }
        let r = self.shareable(caller, id).await?;
        let owner_tenant = self.owner_tenant(r.account).await?;
        // Everything is checked before anything changes: a refused request
        // leaves the permission as it was.
        let removes: Vec<String> = req
            .remove_principals
            .iter()
            .map(|p| Self::principal_name(p))
            .collect::<Result<_>>()?;
        let mut adds: Vec<String> = vec![];
        for p in &req.add_principals {
            let pid = self.share_principal(p, owner_tenant).await?.id;
            if let Some(pid) = pid
                && pid.kind() != Kind::Account
            {
                return Err(ServiceError::new(
                    ErrorCode::InvalidPrincipal,
                    format!(
                        "a permission names accounts (or every account, `*`), not a {}: use a resource share (`coffer share create`) to share with a folder or tenant",
                        pid.kind().noun()
                    ),
                ));
            }
            if pid == Some(r.account) {
                continue;
            }
            self.key_rules(&r, pid).await?;
            let principal = pid.map_or_else(|| PUBLIC.to_string(), |i| i.to_string());
            if !adds.contains(&principal) {
                adds.push(principal);
            }
        }
        let mut after = self.meta.principals_of_resource(r.id).await?;
        let before = after.len();
        after.retain(|p| !removes.contains(p) || adds.contains(p));
        for a in &adds {
            if !after.contains(a) {
                after.push(a.clone());
            }
        }
        if after.len() > before && after.len() as u64 > self.config.quotas.principals_per_resource {
            return Err(quota(
                &format!(
                    "{} is shared with {before} principals; this change would make {}",
                    r.id,
                    after.len()
                ),
                self.config.quotas.principals_per_resource,
                "remove one first, or share with every account",
            ));
        }
        let share = self.permission_share_of(&r).await?;
        for principal in &removes {
            self.meta
                .remove_share_principal(share.id, principal)
                .await?;
        }
        for principal in adds {
            self.meta
                .add_share_principal(&SharePrincipalRow {
                    share_id: share.id,
                    principal,
                    status: ShareStatus::Associated,
                    invitation_id: None,
                    added_at: coffer_meta::now(),
                    responded_at: None,
                })
                .await?;
        }
        tracing::info!(resource = %r.id, by = %caller.principal.id, "permissions changed");
        let principals = self.meta.share_principals(share.id).await?;
        Ok(share_dto(&share, vec![r.id], &principals))
    }
}

impl Service {
    /// The share `id` if the caller may do `action` on it (its owner's
    /// side).
    async fn authorized_share(
        &self,
        caller: &Caller,
        id: &str,
        action: Action,
    ) -> Result<ShareRow> {
        let id = parse_id(id, Kind::Share)?;
        let s = self
            .meta
            .share(id)
            .await?
            .filter(|s| s.kind == ShareKind::Share)
            .ok_or_else(|| {
                ServiceError::not_found(ErrorCode::ShareNotFound, "resource share", id)
            })?;
        let target = self.resource_target(s.id, s.account_id).await?;
        self.check(caller, action, &target)?;
        Ok(s)
    }

    async fn share_view(&self, s: &ShareRow) -> Result<Share> {
        let resources = self.meta.share_resources(s.id).await?;
        let principals = self.meta.share_principals(s.id).await?;
        Ok(share_dto(s, resources, &principals))
    }

    /// Create a resource share (Alibaba / AWS RAM), optionally with its
    /// first resources and principals.
    pub async fn create_share(&self, caller: &Caller, req: CreateShare) -> Result<Share> {
        let name = check_name(&req.name)?;
        let account = match &req.account_id {
            Some(a) => parse_id(a, Kind::Account)?,
            None => caller.principal.account_id,
        };
        self.check_scope(caller, Action::SharesWrite, Scope::Id(account))
            .await?;
        self.check_name_free(Kind::Share, account, name.as_str())
            .await?;
        let q = self.config.quotas;
        if self.meta.count_shares(account).await? >= q.shares_per_account {
            return Err(quota(
                &format!(
                    "account {account} owns {} resource shares already",
                    q.shares_per_account
                ),
                q.shares_per_account,
                "delete one first (`coffer share delete`), or add to an existing share",
            ));
        }
        let region = self
            .config
            .regions
            .all()
            .first()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let s = ShareRow {
            id: Id::random(Kind::Share),
            account_id: account,
            name: name.to_string(),
            region,
            kind: ShareKind::Share,
            principal_scope: req.principal_scope.unwrap_or(PrincipalScope::Any),
            created_at: coffer_meta::now(),
        };
        // Check every resource and principal before anything is stored.
        let update = UpdateShare {
            add_resources: req.resources.clone(),
            add_principals: req.principals.clone(),
            ..UpdateShare::default()
        };
        let plan = self.plan_update(caller, &s, &update, true).await?;
        self.meta.create_share(&s).await.map_err(|e| match e {
            coffer_meta::MetaError::NameTaken { .. } => {
                ServiceError::name_taken(Kind::Share, account, name.as_str())
            }
            other => other.into(),
        })?;
        self.apply_update(&s, plan).await?;
        tracing::info!(share = %s.id, by = %caller.principal.id, "resource share created");
        self.share_view(&s).await
    }

    /// The caller's resource shares, or (shared=true) those shared with its
    /// account, in force or invited.
    pub async fn list_shares(
        &self,
        caller: &Caller,
        q: coffer_wire::ListParams,
    ) -> Result<coffer_wire::Page<Share>> {
        if q.shared.as_deref() == Some("true") {
            let scopes: Vec<Id> = self
                .account_chain(caller.principal.account_id)
                .await?
                .into_iter()
                .filter_map(|s| match s {
                    Scope::Id(i) => Some(i),
                    Scope::Deployment => None,
                })
                .collect();
            let mut items = vec![];
            for (s, p) in self
                .meta
                .shares_naming(caller.principal.account_id, &scopes)
                .await?
            {
                // A recipient sees the share, its own standing, and the
                // resources only once it is in force.
                let resources = if p.status == ShareStatus::Associated {
                    self.meta.share_resources(s.id).await?
                } else {
                    vec![]
                };
                items.push(share_dto(&s, resources, std::slice::from_ref(&p)));
            }
            // Paged (and filtered by name) like the owner's list.
            return crate::list::page_in_memory(items, &q, |s| &s.name);
        }
        let p = crate::list::paging(&q)?;
        let size = p.size;
        let filter = self
            .owned_filter(caller, Action::SharesRead, Kind::Share, &q, p)
            .await?;
        let rows = self.meta.list_shares_page(&filter).await?;
        let mut items = vec![];
        for s in &rows {
            items.push(self.share_view(s).await?);
        }
        Ok(crate::list::finish(items, size))
    }

    /// One resource share.
    pub async fn get_share(&self, caller: &Caller, id: &str) -> Result<Share> {
        let s = self
            .authorized_share(caller, id, Action::SharesRead)
            .await?;
        self.share_view(&s).await
    }

    /// Delete a resource share: its principals lose what it shared (what
    /// they made from it stays).
    pub async fn delete_share(&self, caller: &Caller, id: &str) -> Result<Share> {
        let s = self
            .authorized_share(caller, id, Action::SharesWrite)
            .await?;
        let shown = self.share_view(&s).await?;
        self.meta.delete_share(s.id).await?;
        self.meta
            .delete_role_assignments_at(&s.id.to_string())
            .await?;
        tracing::info!(share = %s.id, by = %caller.principal.id, "resource share deleted");
        Ok(shown)
    }

    /// Add or remove resources and principals of a resource share.
    pub async fn update_share(&self, caller: &Caller, id: &str, req: UpdateShare) -> Result<Share> {
        let s = self
            .authorized_share(caller, id, Action::SharesWrite)
            .await?;
        let plan = self.plan_update(caller, &s, &req, false).await?;
        self.apply_update(&s, plan).await?;
        tracing::info!(share = %s.id, by = %caller.principal.id, "resource share changed");
        self.share_view(&s).await
    }

    /// Check a change of a share against the sharing and encryption rules
    /// and the quotas, before anything changes.
    async fn plan_update(
        &self,
        caller: &Caller,
        s: &ShareRow,
        req: &UpdateShare,
        new: bool,
    ) -> Result<SharePlan> {
        let q = self.config.quotas;
        let (mut resources, mut principals) = if new {
            (vec![], vec![])
        } else {
            (
                self.meta.share_resources(s.id).await?,
                self.meta.share_principals(s.id).await?,
            )
        };
        let mut plan = SharePlan::default();
        for r in &req.remove_resources {
            let rid = parse_any_id(r)?;
            resources.retain(|x| *x != rid);
            plan.remove_resources.push(rid);
        }
        for p in &req.remove_principals {
            let name = Self::principal_name(p)?;
            principals.retain(|x| x.principal != name);
            plan.remove_principals.push(name);
        }
        let owner_tenant = self.owner_tenant(s.account_id).await?;
        // Resources: snapshots or images of the share's account, which the
        // caller may share.
        let mut added = vec![];
        for r in &req.add_resources {
            let sh = self.shareable(caller, r).await?;
            if sh.account != s.account_id {
                return Err(ServiceError::new(
                    ErrorCode::NotShareable,
                    format!(
                        "{} belongs to account {}, share {} to account {}: a share holds its own account's resources",
                        sh.id, sh.account, s.id, s.account_id
                    ),
                ));
            }
            if !resources.contains(&sh.id) {
                resources.push(sh.id);
                plan.add_resources.push(sh.id);
            }
            added.push(sh);
        }
        if resources.len() as u64 > q.resources_per_share {
            return Err(quota(
                &format!("share {} would hold {} resources", s.id, resources.len()),
                q.resources_per_share,
                "make another share",
            ));
        }
        // Principals: accounts, folders, the tenant; outside the owner's
        // tenant only accounts, and only in an `any` share, invited.
        let mut new_principals = vec![];
        for p in &req.add_principals {
            let Principal { id: pid, outside } = self.share_principal(p, owner_tenant).await?;
            let Some(pid) = pid else {
                return Err(ServiceError::new(
                    ErrorCode::InvalidPrincipal,
                    "a resource share names accounts, folders or tenants; to share with every account use a permission (`coffer snapshot permission add --public`)",
                ));
            };
            if pid == s.account_id || principals.iter().any(|x| x.principal == pid.to_string()) {
                continue;
            }
            if outside && s.principal_scope == PrincipalScope::Tenant {
                return Err(ServiceError::new(
                    ErrorCode::InvalidPrincipal,
                    format!(
                        "account {pid} is not of tenant {owner_tenant}, and share {} shares within the tenant only (principal scope `tenant`): make a share with principal scope `any` for other tenants' accounts",
                        s.id
                    ),
                ));
            }
            new_principals.push((pid, outside));
        }
        // The encryption rules, for every resource with every principal.
        let all_resources: Vec<Shareable> = {
            let mut v = added;
            for r in &resources {
                if !v.iter().any(|x| x.id == *r) {
                    v.push(self.shareable_stored(*r, s).await?);
                }
            }
            v
        };
        let all_principals: Vec<Option<Id>> = principals
            .iter()
            .filter(|p| p.status != ShareStatus::Rejected)
            .map(|p| coffer_meta::parse_principal(&p.principal))
            .chain(new_principals.iter().map(|(p, _)| Ok(Some(*p))))
            .collect::<std::result::Result<_, _>>()?;
        for r in &all_resources {
            for p in &all_principals {
                self.key_rules(r, *p).await?;
            }
        }
        if (principals.len() + new_principals.len()) as u64 > q.principals_per_share {
            return Err(quota(
                &format!(
                    "share {} would name {} principals",
                    s.id,
                    principals.len() + new_principals.len()
                ),
                q.principals_per_share,
                "share with a folder or the tenant instead of each account",
            ));
        }
        for r in &all_resources {
            let already = self.meta.principals_of_resource(r.id).await?;
            let more = new_principals
                .iter()
                .filter(|(p, _)| !already.contains(&p.to_string()))
                .count();
            let total = already.len()
                + more
                + if plan.add_resources.contains(&r.id) {
                    principals.len()
                } else {
                    0
                };
            if total as u64 > q.principals_per_resource {
                return Err(quota(
                    &format!("{} would be shared with {total} principals", r.id),
                    q.principals_per_resource,
                    "remove principals from its shares first",
                ));
            }
        }
        plan.add_principals = new_principals;
        Ok(plan)
    }

    /// A resource already in share `s`, for the encryption rules.
    async fn shareable_stored(&self, id: Id, s: &ShareRow) -> Result<Shareable> {
        let snaps = match id.kind() {
            Kind::Snapshot => self.meta.snapshot(id).await?.into_iter().collect(),
            Kind::Image => self.meta.image_snapshots(id).await?,
            _ => vec![],
        };
        let not_ready = match id.kind() {
            Kind::Image => self
                .meta
                .image(id)
                .await?
                .map(|i| i.state)
                .filter(|st| *st != ImageState::Available),
            _ => None,
        };
        Ok(Shareable {
            id,
            account: s.account_id,
            region: s.region.clone(),
            customer_keys: snaps
                .iter()
                .filter(|x| x.encryption != EncryptionType::Platform)
                .map(|x| (x.kek_id, x.encryption_set_id))
                .collect(),
            not_ready,
        })
    }

    async fn apply_update(&self, s: &ShareRow, plan: SharePlan) -> Result<()> {
        self.meta
            .add_share_resources(s.id, &plan.add_resources)
            .await?;
        self.meta
            .remove_share_resources(s.id, &plan.remove_resources)
            .await?;
        for p in &plan.remove_principals {
            self.meta.remove_share_principal(s.id, p).await?;
        }
        for (p, outside) in plan.add_principals {
            self.meta
                .add_share_principal(&SharePrincipalRow {
                    share_id: s.id,
                    principal: p.to_string(),
                    status: if outside {
                        ShareStatus::Pending
                    } else {
                        ShareStatus::Associated
                    },
                    invitation_id: outside.then(|| Id::random(Kind::Invitation)),
                    added_at: coffer_meta::now(),
                    responded_at: None,
                })
                .await?;
        }
        Ok(())
    }

    /// The invitations of the caller's account (or `account`, with
    /// `shares/read` there).
    pub async fn list_invitations(
        &self,
        caller: &Caller,
        account: Option<&str>,
    ) -> Result<Vec<Invitation>> {
        let account = match account {
            Some(a) => parse_id(a, Kind::Account)?,
            None => caller.principal.account_id,
        };
        self.check_scope(caller, Action::SharesRead, Scope::Id(account))
            .await?;
        let mut out = vec![];
        for p in self.meta.invitations_of(account).await? {
            if let Some(s) = self.meta.share(p.share_id).await? {
                out.push(invitation_dto(&s, &p));
            }
        }
        Ok(out)
    }

    /// Accept or reject an invitation addressed to an account the caller
    /// may manage shares of.
    pub async fn answer_invitation(
        &self,
        caller: &Caller,
        id: &str,
        accept: bool,
    ) -> Result<Invitation> {
        let iid = parse_id(id, Kind::Invitation)?;
        let missing = || ServiceError::not_found(ErrorCode::InvitationNotFound, "invitation", iid);
        let p = self.meta.invitation(iid).await?.ok_or_else(missing)?;
        let account = coffer_meta::parse_principal(&p.principal)?.ok_or_else(missing)?;
        // Only the invited account's side may see or answer it.
        let target = self
            .resolve(Scope::Id(account))
            .await?
            .ok_or_else(missing)?;
        if !self.sees(&caller.subject, &target) {
            return Err(missing());
        }
        self.check(caller, Action::SharesWrite, &target)?;
        let status = if accept {
            ShareStatus::Associated
        } else {
            ShareStatus::Rejected
        };
        if !self.meta.answer_invitation(iid, status).await? {
            return Err(ServiceError::new(
                ErrorCode::InvitationAnswered,
                format!(
                    "invitation {iid} was already answered ({}); the share's owner can invite again by removing and adding the account",
                    p.status
                ),
            ));
        }
        let s = self.meta.share(p.share_id).await?.ok_or_else(missing)?;
        let p = self.meta.invitation(iid).await?.ok_or_else(missing)?;
        tracing::info!(invitation = %iid, share = %s.id, accepted = accept, by = %caller.principal.id, "invitation answered");
        Ok(invitation_dto(&s, &p))
    }
}

fn invitation_dto(s: &ShareRow, p: &SharePrincipalRow) -> Invitation {
    Invitation {
        id: p.invitation_id.map(|i| i.to_string()).unwrap_or_default(),
        share_id: s.id.to_string(),
        share_name: s.name.clone(),
        sender_account_id: s.account_id.to_string(),
        account_id: p.principal.clone(),
        status: p.status,
        created_at: p.added_at.clone(),
    }
}

fn parse_any_id(s: &str) -> Result<Id> {
    s.trim()
        .parse()
        .map_err(|e: coffer_types::IdError| ServiceError::new(ErrorCode::InvalidId, e.to_string()))
}

/// What a change of a share does, checked.
#[derive(Default)]
struct SharePlan {
    add_resources: Vec<Id>,
    remove_resources: Vec<Id>,
    /// With whether each is outside the owner's tenant (invited).
    add_principals: Vec<(Id, bool)>,
    remove_principals: Vec<String>,
}
