//! Identity and access in the service: turning a caller and a resource into
//! the policy engine's [`Subject`] and [`Target`] (loading role assignments
//! and the chain of scopes above a resource from the metadata store), the
//! one check every operation goes through ([`Service::check`]), and what a
//! caller may read across the deployment, for lists.
//!
//! Errors follow the engine's rule: a target the caller may not see is
//! answered exactly as a missing one (404); a visible one the caller may
//! not act on is 403 `AuthorizationFailed`, naming the missing action.

use std::collections::{HashMap, HashSet};

use coffer_iam::{Action, Allowed, Decision, Grant, Role, Scope, Subject, Target, authorize};
use coffer_meta::{AccountRow, FolderRow, PrincipalRow, RoleAssignmentRow};
use coffer_types::{Id, Kind};

use crate::error::ErrorCode;
use crate::*;
use coffer_meta::Visible;

/// A tenant's folder tree in memory, for building many chains at once.
pub(crate) struct Tree {
    tenant: Id,
    parents: HashMap<Id, Option<Id>>,
}

impl Tree {
    pub(crate) fn new(tenant: Id, folders: Vec<FolderRow>) -> Self {
        Self {
            tenant,
            parents: folders.into_iter().map(|f| (f.id, f.parent_id)).collect(),
        }
    }

    /// The scopes from `folder` (or the tenant's root) up to the tenant.
    pub(crate) fn chain(&self, folder: Option<Id>) -> Vec<Scope> {
        let mut chain = vec![];
        let mut cur = folder;
        while let Some(f) = cur {
            if chain.len() > 64 {
                break;
            }
            chain.push(Scope::Id(f));
            cur = self.parents.get(&f).copied().flatten();
        }
        chain.push(Scope::Id(self.tenant));
        chain
    }
}

/// What a caller may read of one kind, across the deployment.
#[derive(Debug, Default)]
pub(crate) struct Readable {
    /// Everything (a grant at the deployment).
    pub all: bool,
    /// Every resource of these accounts.
    pub accounts: HashSet<Id>,
    /// These single resources.
    pub resources: HashSet<Id>,
}

pub(crate) fn forbidden(principal: Id, d: &coffer_iam::Denied) -> ServiceError {
    ServiceError::new(ErrorCode::AuthorizationFailed, d.reason(principal))
}

pub(crate) fn not_found_of(scope: Scope) -> ServiceError {
    match scope {
        Scope::Deployment => ServiceError::internal("the deployment cannot be missing"),
        Scope::Id(id) => {
            let code = match id.kind() {
                Kind::Disk => ErrorCode::DiskNotFound,
                Kind::Snapshot => ErrorCode::SnapshotNotFound,
                Kind::Tenant => ErrorCode::TenantNotFound,
                Kind::Folder => ErrorCode::FolderNotFound,
                Kind::Account => ErrorCode::AccountNotFound,
                Kind::Principal => ErrorCode::PrincipalNotFound,
                Kind::RoleAssignment => ErrorCode::RoleAssignmentNotFound,
                Kind::Token => ErrorCode::TokenNotFound,
                Kind::Key => ErrorCode::KeyNotFound,
                Kind::Vault => ErrorCode::VaultNotFound,
                Kind::Secret => ErrorCode::SecretNotFound,
                Kind::EncryptionSet => ErrorCode::EncryptionSetNotFound,
                Kind::Attachment => ErrorCode::AttachmentNotFound,
                Kind::Node => ErrorCode::NodeNotFound,
                Kind::Grant => ErrorCode::GrantNotFound,
                Kind::Image => ErrorCode::ImageNotFound,
                Kind::Share => ErrorCode::ShareNotFound,
                Kind::Job => ErrorCode::JobNotFound,
                Kind::Invitation => ErrorCode::InvitationNotFound,
                Kind::Export => ErrorCode::ExportNotFound,
                // Never scopes (`Scope::of` refuses them); exhaustive so a
                // new kind must choose its code here.
                Kind::Volume | Kind::Dek => ErrorCode::RouteNotFound,
            };
            ServiceError::not_found(code, id.kind().noun(), id)
        }
    }
}

pub(crate) fn grant_of(r: &RoleAssignmentRow) -> Result<Grant> {
    let role: Role = r
        .role
        .parse()
        .map_err(|e| ServiceError::internal(format!("stored role assignment {}: {e}", r.id)))?;
    let scope: Scope = r
        .scope
        .parse()
        .map_err(|e| ServiceError::internal(format!("stored role assignment {}: {e}", r.id)))?;
    Ok(Grant {
        id: r.id,
        role,
        scope,
    })
}

pub(crate) fn parse_scope(s: &str) -> Result<Scope> {
    s.parse().map_err(|e: coffer_iam::BadScope| {
        ServiceError::new(ErrorCode::InvalidScope, e.to_string())
    })
}

impl Service {
    /// The policy engine's view of a principal: its home and every role
    /// assignment it holds.
    pub(crate) async fn subject_of(&self, p: &PrincipalRow) -> Result<Subject> {
        let grants = self
            .meta
            .role_assignments_of(p.id)
            .await?
            .iter()
            .map(grant_of)
            .collect::<Result<Vec<_>>>()?;
        let key_grants = self
            .meta
            .grants_of(p.id)
            .await?
            .iter()
            .map(|g| coffer_iam::KeyGrant {
                id: g.id,
                key: g.key_id,
                actions: crate::grants::actions_of(&g.operations),
            })
            .collect();
        Ok(Subject {
            principal: p.id,
            home_account: p.account_id,
            home_tenant: p.tenant_id,
            grants,
            key_grants,
            shared: self.shared_with_account(p.account_id).await?,
        })
    }

    /// Every resource shared, in force, with `account` (through its own
    /// id, its folders or its tenant, or publicly): read at every request,
    /// so a folder move or an unshare counts at once.
    pub(crate) async fn shared_with_account(&self, account: Id) -> Result<Vec<coffer_iam::Shared>> {
        let scopes: Vec<Id> = match self.meta.account(account).await? {
            Some(a) => self
                .account_row_chain(&a)
                .await?
                .into_iter()
                .filter_map(|s| match s {
                    Scope::Id(i) => Some(i),
                    Scope::Deployment => None,
                })
                .collect(),
            None => return Ok(vec![]),
        };
        Ok(self
            .meta
            .shared_with(account, &scopes)
            .await?
            .into_iter()
            .map(|r| coffer_iam::Shared {
                share: r.share_id,
                how: match r.kind {
                    coffer_types::ShareKind::Share => coffer_iam::ShareHow::ResourceShare,
                    coffer_types::ShareKind::Permission => coffer_iam::ShareHow::Permission,
                },
                resource: r.resource,
            })
            .collect())
    }

    /// The scopes from a folder up: the folder, its ancestors, the tenant.
    async fn folder_chain(&self, f: &FolderRow) -> Result<Vec<Scope>> {
        let mut chain: Vec<Scope> = self
            .meta
            .ancestors_of_folder(f.id)
            .await?
            .into_iter()
            .map(Scope::Id)
            .collect();
        chain.push(Scope::Id(f.tenant_id));
        Ok(chain)
    }

    /// The scopes from an account up: the account, its folders, the tenant.
    pub(crate) async fn account_chain(&self, account: Id) -> Result<Vec<Scope>> {
        let a = self
            .meta
            .account(account)
            .await?
            .ok_or_else(|| ServiceError::internal(format!("account {account} vanished")))?;
        self.account_row_chain(&a).await
    }

    async fn account_row_chain(&self, a: &AccountRow) -> Result<Vec<Scope>> {
        let mut chain = vec![Scope::Id(a.id)];
        if let Some(f) = a.folder_id {
            let folders = self.meta.ancestors_of_folder(f).await?;
            chain.extend(folders.into_iter().map(Scope::Id));
        }
        chain.push(Scope::Id(a.tenant_id));
        Ok(chain)
    }

    /// A resource owned by `account`, as a target.
    pub(crate) async fn resource_target(&self, id: Id, account: Id) -> Result<Target> {
        let mut chain = vec![Scope::Id(id)];
        chain.extend(self.account_chain(account).await?);
        Ok(Target::new(chain))
    }

    /// The target a scope names, or `None` if nothing has that id.
    pub(crate) async fn resolve(&self, scope: Scope) -> Result<Option<Target>> {
        let Scope::Id(id) = scope else {
            return Ok(Some(Target::deployment()));
        };
        let chain = match id.kind() {
            Kind::Tenant => self.meta.tenant(id).await?.map(|_| vec![scope]),
            Kind::Folder => match self.meta.folder(id).await? {
                Some(f) => Some(self.folder_chain(&f).await?),
                None => None,
            },
            Kind::Account => match self.meta.account(id).await? {
                Some(a) => Some(self.account_row_chain(&a).await?),
                None => None,
            },
            Kind::Disk
            | Kind::Snapshot
            | Kind::Principal
            | Kind::EncryptionSet
            | Kind::Image
            | Kind::Share => {
                let owner = match id.kind() {
                    Kind::Disk => self.meta.disk(id).await?.map(|d| d.account_id),
                    Kind::Snapshot => self.meta.snapshot(id).await?.map(|s| s.account_id),
                    Kind::Image => self.meta.image(id).await?.map(|s| s.account_id),
                    Kind::Share => self.meta.share(id).await?.map(|s| s.account_id),
                    Kind::EncryptionSet => {
                        self.meta.encryption_set(id).await?.map(|s| s.account_id)
                    }
                    _ => self.meta.principal(id).await?.map(|p| p.account_id),
                };
                match owner {
                    Some(account) => {
                        Some(self.resource_target(id, account).await?.chain().to_vec())
                    }
                    None => None,
                }
            }
            Kind::Vault => match self.meta.vault(id).await? {
                Some(v) if v.purged_at.is_none() => Some(
                    self.resource_target(v.id, v.account_id)
                        .await?
                        .chain()
                        .to_vec(),
                ),
                _ => None,
            },
            Kind::Key => match self.meta.vault_key(id).await {
                Ok(k) if k.vault_id.is_some() && k.purged_at.is_none() => {
                    Some(self.key_target(&k).await?.chain().to_vec())
                }
                Ok(_) | Err(coffer_meta::MetaError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            },
            Kind::Secret => match self.meta.secret(id).await? {
                Some(s) if s.purged_at.is_none() => {
                    let mut c = vec![scope, Scope::Id(s.vault_id)];
                    c.extend(self.account_chain(s.account_id).await?);
                    Some(c)
                }
                _ => None,
            },
            Kind::RoleAssignment => match self.meta.role_assignment(id).await? {
                Some(r) => {
                    let inner = Box::pin(self.resolve(parse_scope(&r.scope)?)).await?;
                    inner.map(|t| {
                        let mut c = vec![scope];
                        c.extend(t.chain().iter().copied());
                        c
                    })
                }
                None => None,
            },
            _ => None,
        };
        Ok(chain.map(Target::new))
    }

    /// The one authorization check: allowed, or 403 naming what is missing,
    /// or (target hidden from the caller) 404 exactly as if it did not exist.
    pub(crate) fn check(
        &self,
        caller: &Caller,
        action: Action,
        target: &Target,
    ) -> Result<Allowed> {
        match authorize(&caller.subject, action, target) {
            Decision::Allow(why) => Ok(why),
            Decision::Deny(d) if d.visible => {
                tracing::info!(principal = %caller.principal.id, action = %action, target = %target.scope(), "denied");
                Err(forbidden(caller.principal.id, &d))
            }
            Decision::Deny(_) => Err(not_found_of(target.scope())),
        }
    }

    /// Resolve `scope` and check `action` on it (404 if missing or hidden).
    pub(crate) async fn check_scope(
        &self,
        caller: &Caller,
        action: Action,
        scope: Scope,
    ) -> Result<Target> {
        let target = self
            .resolve(scope)
            .await?
            .ok_or_else(|| not_found_of(scope))?;
        self.check(caller, action, &target)?;
        Ok(target)
    }

    /// The accounts under a tenant or folder scope.
    async fn accounts_under(&self, scope: Scope) -> Result<Vec<Id>> {
        let Scope::Id(id) = scope else {
            return Ok(self
                .meta
                .list_accounts(None)
                .await?
                .into_iter()
                .map(|a| a.id)
                .collect());
        };
        match id.kind() {
            Kind::Tenant => Ok(self
                .meta
                .list_accounts(Some(id))
                .await?
                .into_iter()
                .map(|a| a.id)
                .collect()),
            Kind::Folder => {
                let Some(f) = self.meta.folder(id).await? else {
                    return Ok(vec![]);
                };
                let tree = Tree::new(f.tenant_id, self.meta.list_folders(f.tenant_id).await?);
                Ok(self
                    .meta
                    .list_accounts(Some(f.tenant_id))
                    .await?
                    .into_iter()
                    .filter(|a| tree.chain(a.folder_id).contains(&scope))
                    .map(|a| a.id)
                    .collect())
            }
            Kind::Account => Ok(vec![id]),
            _ => Ok(vec![]),
        }
    }

    /// Where the caller may do `action` (a read), for listing.
    pub(crate) async fn readable(&self, caller: &Caller, action: Action) -> Result<Readable> {
        let mut r = Readable::default();
        for g in &caller.subject.grants {
            if !g.role.grants(action) {
                continue;
            }
            match g.scope {
                Scope::Deployment => r.all = true,
                Scope::Id(id) => match id.kind() {
                    Kind::Tenant | Kind::Folder | Kind::Account => {
                        r.accounts.extend(self.accounts_under(g.scope).await?);
                    }
                    _ => {
                        r.resources.insert(id);
                    }
                },
            }
        }
        for sh in &caller.subject.shared {
            let kind = coffer_iam::TargetKind::of(sh.resource.kind());
            if kind.is_some_and(|k| coffer_iam::Shared::actions(k).contains(&action)) {
                r.resources.insert(sh.resource);
            }
        }
        Ok(r)
    }

    /// What the caller may see of `kind`, narrowed by a `shared=` filter:
    /// `true`, only what other accounts share with the caller's; `false`,
    /// nothing that is seen only through a share.
    pub(crate) async fn visible_shared(
        &self,
        caller: &Caller,
        action: Action,
        kind: Kind,
        shared: Option<&str>,
    ) -> Result<Visible> {
        let through: Vec<Id> = caller
            .subject
            .shared
            .iter()
            .map(|s| s.resource)
            .filter(|r| r.kind() == kind)
            .collect();
        match shared {
            None => self.visible(caller, action, kind).await,
            Some("true") => Ok(Visible::Some {
                accounts: vec![],
                ids: through,
            }),
            Some("false") => {
                let mut v = self.visible(caller, action, kind).await?;
                if let Visible::Some { ids, .. } = &mut v {
                    ids.retain(|i| !through.contains(i));
                }
                Ok(v)
            }
            Some(other) => Err(ServiceError::new(
                ErrorCode::InvalidFilter,
                format!("invalid shared filter '{other}': use shared=true or shared=false"),
            )),
        }
    }

    /// Whether `subject` may see `target` at all (else it is "not found").
    pub(crate) fn sees(&self, subject: &Subject, target: &Target) -> bool {
        match authorize(subject, Action::read_of(target.scope().kind()), target) {
            Decision::Allow(_) => true,
            Decision::Deny(d) => d.visible,
        }
    }

    /// What the caller may see of `kind` for `action`, for a list query.
    pub(crate) async fn visible(
        &self,
        caller: &Caller,
        action: Action,
        kind: Kind,
    ) -> Result<Visible> {
        let r = self.readable(caller, action).await?;
        if r.all {
            return Ok(Visible::All);
        }
        let accounts: Vec<Id> = r.accounts.into_iter().collect();
        let ids: Vec<Id> = r
            .resources
            .into_iter()
            .filter(|i| i.kind() == kind)
            .collect();
        Ok(Visible::Some { accounts, ids })
    }

    /// Fail with the scope's not-found error unless the caller may see it
    /// (hidden and missing answer alike).
    pub(crate) async fn require_visible(&self, caller: &Caller, scope: Scope) -> Result<Target> {
        match self.resolve(scope).await? {
            Some(t) if self.sees(&caller.subject, &t) => Ok(t),
            _ => Err(not_found_of(scope)),
        }
    }

    /// An `account=` list filter: the account, if the caller may see it.
    pub(crate) async fn account_filter(
        &self,
        caller: &Caller,
        account: Option<&str>,
    ) -> Result<Option<Id>> {
        let Some(a) = account else {
            return Ok(None);
        };
        let id = parse_id(a, Kind::Account)?;
        self.require_visible(caller, Scope::Id(id)).await?;
        Ok(Some(id))
    }
}
