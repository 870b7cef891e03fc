//! Identity and access in the service: turning a caller and a resource into
//! the policy engine's [`Subject`] and [`Target`] (loading role assignments
//! and the chain of scopes above a resource from the metadata store), the
//! one check every operation goes through ([`Service::check`]), and the
//! organisation and IAM operations themselves: tenants, folders, accounts,
//! principals, tokens, role assignments and `iam explain`.
//!
//! Errors follow the engine's rule: a target the caller may not see is
//! answered exactly as a missing one (404); a visible one the caller may
//! not act on is 403 `AuthorizationFailed`, naming the missing action.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use coffer_crypto::{hash_token, new_token};
use coffer_iam::{Action, Allowed, Decision, Grant, Role, Scope, Subject, Target, authorize};
use coffer_meta::{AccountRow, FolderRow, PrincipalRow, RoleAssignmentRow, TenantRow, TokenRow};
use coffer_types::{Id, Kind};

use crate::model::{
    Account, CreateAccount, CreateFolder, CreatePrincipal, CreateRoleAssignment, CreateTenant,
    CreateToken, ExplainRequest, Explanation, Folder, NewToken, Principal, RoleAssignment,
    RoleDefinition, Tenant, Token,
};
use crate::{Caller, ErrorKind, Result, Service, ServiceError, check_name, parse_id};

/// Folders nest at most this deep (as AWS organisational units do).
pub const MAX_FOLDER_DEPTH: usize = 5;

/// The longest token lifetime `expires_in` accepts.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// A tenant's folder tree in memory, for building many chains at once.
struct Tree {
    tenant: Id,
    parents: HashMap<Id, Option<Id>>,
}

impl Tree {
    fn new(tenant: Id, folders: Vec<FolderRow>) -> Self {
        Self {
            tenant,
            parents: folders.into_iter().map(|f| (f.id, f.parent_id)).collect(),
        }
    }

    /// The scopes from `folder` (or the tenant's root) up to the tenant.
    fn chain(&self, folder: Option<Id>) -> Vec<Scope> {
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

fn forbidden(principal: Id, d: &coffer_iam::Denied) -> ServiceError {
    ServiceError::new(
        ErrorKind::Forbidden,
        "AuthorizationFailed",
        d.reason(principal),
    )
}

fn not_found_of(scope: Scope) -> ServiceError {
    match scope {
        Scope::Deployment => ServiceError::internal("the deployment cannot be missing"),
        Scope::Id(id) => {
            let code = match id.kind() {
                Kind::Disk => "DiskNotFound",
                Kind::Snapshot => "SnapshotNotFound",
                Kind::Tenant => "TenantNotFound",
                Kind::Folder => "FolderNotFound",
                Kind::Account => "AccountNotFound",
                Kind::Principal => "PrincipalNotFound",
                Kind::RoleAssignment => "RoleAssignmentNotFound",
                Kind::Token => "TokenNotFound",
                Kind::Key => "KeyNotFound",
                _ => "NotFound",
            };
            ServiceError::not_found(code, id.kind().noun(), id)
        }
    }
}

fn tenant_dto(t: &TenantRow) -> Tenant {
    Tenant {
        id: t.id.to_string(),
        name: t.name.clone(),
        created_at: t.created_at.clone(),
    }
}

fn folder_dto(f: &FolderRow) -> Folder {
    Folder {
        id: f.id.to_string(),
        name: f.name.clone(),
        tenant_id: f.tenant_id.to_string(),
        parent_id: f.parent_id.map(|p| p.to_string()),
        created_at: f.created_at.clone(),
    }
}

fn account_dto(a: &AccountRow) -> Account {
    Account {
        id: a.id.to_string(),
        name: a.name.clone(),
        tenant_id: a.tenant_id.to_string(),
        folder_id: a.folder_id.map(|f| f.to_string()),
        created_at: a.created_at.clone(),
    }
}

fn principal_dto(p: &PrincipalRow) -> Principal {
    Principal {
        id: p.id.to_string(),
        name: p.name.clone(),
        kind: p.kind.clone(),
        account_id: p.account_id.to_string(),
        tenant_id: p.tenant_id.to_string(),
        created_at: p.created_at.clone(),
    }
}

fn token_dto(t: &TokenRow) -> Token {
    let expired = t
        .expires_at
        .as_deref()
        .is_some_and(|e| humantime::parse_rfc3339(e).map_or(true, |at| at <= SystemTime::now()));
    let state = if t.revoked_at.is_some() {
        "revoked"
    } else if expired {
        "expired"
    } else {
        "active"
    };
    Token {
        id: t.id.to_string(),
        principal_id: t.principal_id.to_string(),
        name: t.name.clone(),
        state: state.into(),
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

fn grant_of(r: &RoleAssignmentRow) -> Result<Grant> {
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

fn parse_scope(s: &str) -> Result<Scope> {
    s.parse()
        .map_err(|e: coffer_iam::BadScope| ServiceError::invalid("InvalidScope", e.to_string()))
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
        Ok(Subject {
            principal: p.id,
            home_account: p.account_id,
            home_tenant: p.tenant_id,
            grants,
        })
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
            Kind::Disk | Kind::Snapshot | Kind::Principal => {
                let owner = match id.kind() {
                    Kind::Disk => self.meta.disk(id).await?.map(|d| d.account_id),
                    Kind::Snapshot => self.meta.snapshot(id).await?.map(|s| s.account_id),
                    _ => self.meta.principal(id).await?.map(|p| p.account_id),
                };
                match owner {
                    Some(account) => {
                        Some(self.resource_target(id, account).await?.chain().to_vec())
                    }
                    None => None,
                }
            }
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
        Ok(r)
    }

    // ---- roles -------------------------------------------------------

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

    // ---- tenants -----------------------------------------------------

    /// Create a tenant (deployment Owners).
    pub async fn create_tenant(&self, caller: &Caller, req: CreateTenant) -> Result<Tenant> {
        let name = check_name(&req.name)?;
        self.check(caller, Action::OrgWrite, &Target::deployment())?;
        let t = self.meta.create_tenant(name.as_str()).await?;
        tracing::info!(tenant = %t.id, by = %caller.principal.id, "tenant created");
        Ok(tenant_dto(&t))
    }

    /// The tenants the caller may see.
    pub async fn list_tenants(&self, caller: &Caller) -> Result<Vec<Tenant>> {
        let mut out = vec![];
        for t in self.meta.list_tenants().await? {
            let target = Target::new(vec![Scope::Id(t.id)]);
            if authorize(&caller.subject, Action::OrgRead, &target).is_allowed() {
                out.push(tenant_dto(&t));
            }
        }
        Ok(out)
    }

    /// One tenant.
    pub async fn get_tenant(&self, caller: &Caller, id: &str) -> Result<Tenant> {
        let id = parse_id(id, Kind::Tenant)?;
        self.check_scope(caller, Action::OrgRead, Scope::Id(id))
            .await?;
        let t = self
            .meta
            .tenant(id)
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(id)))?;
        Ok(tenant_dto(&t))
    }

    // ---- folders -----------------------------------------------------

    /// Create a folder at a tenant's root or under a folder.
    pub async fn create_folder(&self, caller: &Caller, req: CreateFolder) -> Result<Folder> {
        let name = check_name(&req.name)?;
        let (tenant, parent) = self
            .place(
                caller,
                req.tenant_id.as_deref(),
                req.parent_id.as_deref(),
                "parent_id",
            )
            .await?;
        if let Some(p) = parent {
            let depth = self.meta.ancestors_of_folder(p).await?.len();
            if depth >= MAX_FOLDER_DEPTH {
                return Err(ServiceError::invalid(
                    "FolderTooDeep",
                    format!(
                        "folders nest at most {MAX_FOLDER_DEPTH} deep: folder {p} is already at depth {depth}"
                    ),
                ));
            }
        }
        let f = self
            .meta
            .create_folder(tenant, parent, name.as_str())
            .await?;
        tracing::info!(folder = %f.id, tenant = %tenant, by = %caller.principal.id, "folder created");
        Ok(folder_dto(&f))
    }

    /// Resolve where a folder or account goes (a tenant's root, or a folder
    /// of it), checking `org/write` there.
    async fn place(
        &self,
        caller: &Caller,
        tenant: Option<&str>,
        folder: Option<&str>,
        folder_field: &str,
    ) -> Result<(Id, Option<Id>)> {
        let tenant = tenant.map(|t| parse_id(t, Kind::Tenant)).transpose()?;
        match folder {
            Some(f) => {
                let f = parse_id(f, Kind::Folder)?;
                self.check_scope(caller, Action::OrgWrite, Scope::Id(f))
                    .await?;
                let row = self
                    .meta
                    .folder(f)
                    .await?
                    .ok_or_else(|| not_found_of(Scope::Id(f)))?;
                if let Some(t) = tenant
                    && t != row.tenant_id
                {
                    return Err(ServiceError::invalid(
                        "TenantMismatch",
                        format!(
                            "{folder_field} {f} belongs to tenant {}, not {t}: leave tenant_id out or pick a folder of that tenant",
                            row.tenant_id
                        ),
                    ));
                }
                Ok((row.tenant_id, Some(f)))
            }
            None => {
                let t = tenant.unwrap_or(caller.principal.tenant_id);
                self.check_scope(caller, Action::OrgWrite, Scope::Id(t))
                    .await?;
                Ok((t, None))
            }
        }
    }

    /// The folders the caller may see, of one tenant (default: home).
    pub async fn list_folders(&self, caller: &Caller, tenant: Option<&str>) -> Result<Vec<Folder>> {
        let tenant = match tenant {
            Some(t) => parse_id(t, Kind::Tenant)?,
            None => caller.principal.tenant_id,
        };
        self.check_scope(caller, Action::OrgRead, Scope::Id(tenant))
            .await?;
        let folders = self.meta.list_folders(tenant).await?;
        let tree = Tree::new(tenant, folders.clone());
        Ok(folders
            .iter()
            .filter(|f| {
                let target = Target::new(tree.chain(Some(f.id)));
                authorize(&caller.subject, Action::OrgRead, &target).is_allowed()
            })
            .map(folder_dto)
            .collect())
    }

    /// One folder.
    pub async fn get_folder(&self, caller: &Caller, id: &str) -> Result<Folder> {
        let id = parse_id(id, Kind::Folder)?;
        self.check_scope(caller, Action::OrgRead, Scope::Id(id))
            .await?;
        let f = self
            .meta
            .folder(id)
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(id)))?;
        Ok(folder_dto(&f))
    }

    /// Delete an empty folder.
    pub async fn delete_folder(&self, caller: &Caller, id: &str) -> Result<Folder> {
        let id = parse_id(id, Kind::Folder)?;
        self.check_scope(caller, Action::OrgWrite, Scope::Id(id))
            .await?;
        let f = self
            .meta
            .folder(id)
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(id)))?;
        self.meta.delete_folder(id).await.map_err(|e| match e {
            coffer_meta::MetaError::Conflict(m) => ServiceError::conflict("FolderNotEmpty", m),
            other => other.into(),
        })?;
        tracing::info!(folder = %id, by = %caller.principal.id, "folder deleted");
        Ok(folder_dto(&f))
    }

    // ---- accounts ----------------------------------------------------

    /// Create an account at a tenant's root or in a folder.
    pub async fn create_account(&self, caller: &Caller, req: CreateAccount) -> Result<Account> {
        let name = check_name(&req.name)?;
        let (tenant, folder) = self
            .place(
                caller,
                req.tenant_id.as_deref(),
                req.folder_id.as_deref(),
                "folder_id",
            )
            .await?;
        let a = self
            .meta
            .create_account(tenant, folder, name.as_str())
            .await?;
        tracing::info!(account = %a.id, tenant = %tenant, by = %caller.principal.id, "account created");
        Ok(account_dto(&a))
    }

    /// The accounts the caller may see, of one tenant (default: all).
    pub async fn list_accounts(
        &self,
        caller: &Caller,
        tenant: Option<&str>,
    ) -> Result<Vec<Account>> {
        let tenant = tenant.map(|t| parse_id(t, Kind::Tenant)).transpose()?;
        // One folder query per tenant, chains built in memory: a list costs
        // two queries per tenant, not several per account.
        let mut trees: HashMap<Id, Tree> = HashMap::new();
        let mut out = vec![];
        for a in self.meta.list_accounts(tenant).await? {
            let tree = match trees.entry(a.tenant_id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(Tree::new(
                    a.tenant_id,
                    self.meta.list_folders(a.tenant_id).await?,
                )),
            };
            let mut chain = vec![Scope::Id(a.id)];
            chain.extend(tree.chain(a.folder_id));
            if authorize(&caller.subject, Action::OrgRead, &Target::new(chain)).is_allowed() {
                let mut dto = account_dto(&a);
                let folder_seen = a
                    .folder_id
                    .is_none_or(|f| self.sees(&caller.subject, &Target::new(tree.chain(Some(f)))));
                if !folder_seen {
                    dto.folder_id = None;
                }
                out.push(dto);
            }
        }
        Ok(out)
    }

    /// One account.
    pub async fn get_account(&self, caller: &Caller, id: &str) -> Result<Account> {
        let id = parse_id(id, Kind::Account)?;
        self.check_scope(caller, Action::OrgRead, Scope::Id(id))
            .await?;
        let a = self
            .meta
            .account(id)
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(id)))?;
        self.account_view(caller, &a).await
    }

    /// Move an account to another folder of its tenant (or its root). The
    /// roles it inherited from the old place stop applying; those of the new
    /// place start.
    pub async fn move_account(
        &self,
        caller: &Caller,
        id: &str,
        folder: Option<&str>,
    ) -> Result<Account> {
        let id = parse_id(id, Kind::Account)?;
        self.check_scope(caller, Action::OrgWrite, Scope::Id(id))
            .await?;
        let a = self
            .meta
            .account(id)
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(id)))?;
        // Moving an account out of a folder takes it away from everyone
        // holding roles there: it needs `org/write` at its current place too.
        let from = Scope::Id(a.folder_id.unwrap_or(a.tenant_id));
        let from_target = self.resolve(from).await?.unwrap_or_else(Target::deployment);
        if !authorize(&caller.subject, Action::OrgWrite, &from_target).is_allowed() {
            let named = if authorize(&caller.subject, Action::OrgRead, &from_target).is_allowed() {
                from.describe()
            } else {
                "its current folder".to_string()
            };
            return Err(ServiceError::new(
                ErrorKind::Forbidden,
                "AuthorizationFailed",
                format!(
                    "moving account {id} needs 'org/write' where it is now ({named}) as well as where it goes: ask an Owner of {named}"
                ),
            ));
        }
        let tenant = a.tenant_id.to_string();
        let (_, dest) = self
            .place(caller, Some(&tenant), folder, "folder_id")
            .await?;
        self.meta.move_account(id, dest).await?;
        tracing::info!(account = %id, folder = ?dest, by = %caller.principal.id, "account moved");
        let a = self
            .meta
            .account(id)
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(id)))?;
        self.account_view(caller, &a).await
    }

    // ---- principals --------------------------------------------------

    /// Create a user or service principal in an account (default: the
    /// caller's). It holds no role until one is assigned.
    pub async fn create_principal(
        &self,
        caller: &Caller,
        req: CreatePrincipal,
    ) -> Result<Principal> {
        let name = check_name(&req.name)?;
        let kind = req.kind.as_deref().unwrap_or("user");
        match kind {
            "user" | "service" => {}
            "managed" => {
                return Err(ServiceError::invalid(
                    "ManagedIdentity",
                    "managed identities are created by the platform with the resource that uses them (a disk encryption set): create a `user` or `service` principal",
                ));
            }
            other => {
                return Err(ServiceError::invalid(
                    "InvalidKind",
                    format!(
                        "unknown principal kind '{}': use user or service",
                        other.chars().take(40).collect::<String>()
                    ),
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
    pub async fn list_principals(
        &self,
        caller: &Caller,
        account: Option<&str>,
    ) -> Result<Vec<Principal>> {
        let account = match account {
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
        Ok(out)
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
                ErrorKind::Forbidden,
                "AuthorizationFailed",
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
            return Err(ServiceError::conflict(
                "CannotDeleteSelf",
                "a principal cannot delete itself: ask another Owner, or revoke your tokens with `coffer token revoke`",
            ));
        }
        self.meta.delete_principal(p.id).await?;
        tracing::info!(principal = %p.id, by = %caller.principal.id, "principal deleted");
        Ok(principal_dto(&p))
    }

    // ---- tokens ------------------------------------------------------

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
        if p.kind == "managed" {
            return Err(ServiceError::invalid(
                "ManagedIdentity",
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
                    ServiceError::invalid(
                        "InvalidDuration",
                        format!(
                            "expires_in '{}' is not a duration ({e}): use e.g. 30d, 12h or 90m",
                            s.chars().take(40).collect::<String>()
                        ),
                    )
                })?;
                if d.is_zero() || d > MAX_TOKEN_LIFETIME {
                    return Err(ServiceError::invalid(
                        "InvalidDuration",
                        "expires_in must be more than 0 and at most 10 years",
                    ));
                }
                Some(humantime::format_rfc3339_millis(SystemTime::now() + d).to_string())
            }
        };
        // A token never begets one of its own principal that outlives it: a
        // leaked short-lived token must not become a lasting one.
        let expires_at = match (&caller.token_expires_at, expires_at) {
            (Some(cap), wanted) if p.id == caller.principal.id => {
                let at = |t: &str| humantime::parse_rfc3339(t).map_err(ServiceError::internal);
                match wanted {
                    None => Some(cap.clone()),
                    Some(w) if at(&w)? <= at(cap)? => Some(w),
                    Some(_) => {
                        return Err(ServiceError::invalid(
                            "TokenOutlivesCaller",
                            format!(
                                "the token you call with expires at {cap}, and a token you create for yourself cannot outlive it: ask for a shorter expires_in, or leave it out to expire with this one"
                            ),
                        ));
                    }
                }
            }
            (_, wanted) => wanted,
        };
        let secret = new_token();
        let row = self
            .meta
            .insert_token(p.id, &hash_token(&secret), &name, expires_at.as_deref())
            .await?;
        tracing::info!(token = %row.id, principal = %p.id, by = %caller.principal.id, "token created");
        Ok(NewToken {
            token: token_dto(&row),
            secret,
        })
    }

    /// The tokens of a principal (public facts only).
    pub async fn list_tokens(&self, caller: &Caller, principal: &str) -> Result<Vec<Token>> {
        let p = self
            .visible_principal(caller, principal, Action::IamRead)
            .await?;
        Ok(self
            .meta
            .list_tokens(p.id)
            .await?
            .iter()
            .map(token_dto)
            .collect())
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
                if e.kind == ErrorKind::NotFound {
                    not_found_of(Scope::Id(id))
                } else {
                    e
                }
            })?;
        self.meta.revoke_token(id).await?;
        tracing::info!(token = %id, by = %caller.principal.id, "token revoked");
        let t = self
            .meta
            .token(id)
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(id)))?;
        Ok(token_dto(&t))
    }

    // ---- role assignments ----------------------------------------------

    /// Assign a role at a scope to a principal of any account or tenant.
    /// The caller needs `iam/write` at the scope.
    pub async fn create_role_assignment(
        &self,
        caller: &Caller,
        req: CreateRoleAssignment,
    ) -> Result<RoleAssignment> {
        let role: Role = req.role.parse().map_err(|e: coffer_iam::UnknownRole| {
            ServiceError::invalid("UnknownRole", e.to_string())
        })?;
        let scope = parse_scope(&req.scope)?;
        if let Scope::Id(id) = scope
            && matches!(id.kind(), Kind::RoleAssignment | Kind::Principal)
        {
            return Err(ServiceError::invalid(
                "InvalidScope",
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
        if self.meta.principal(principal).await?.is_none() {
            return Err(not_found_of(Scope::Id(principal)));
        }
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
                    ServiceError::conflict("RoleAssignmentExists", m)
                }
                other => other.into(),
            })?;
        tracing::info!(assignment = %row.id, principal = %principal, role = %role, scope = %scope, by = %caller.principal.id, "role assigned");
        Ok(assignment_dto(&row))
    }

    /// Role assignments: those made at `scope` (caller needs `iam/read`
    /// there), or those of `principal` whose scope the caller may read (all
    /// of them for the principal itself), or, with neither, the caller's own.
    pub async fn list_role_assignments(
        &self,
        caller: &Caller,
        principal: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Vec<RoleAssignment>> {
        let rows = match (principal, scope) {
            (_, Some(s)) => {
                let scope = parse_scope(s)?;
                self.check_scope(caller, Action::IamRead, scope).await?;
                let mut rows = self.meta.role_assignments_at(&scope.to_string()).await?;
                if let Some(p) = principal {
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
        Ok(rows.iter().map(assignment_dto).collect())
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
            return Err(ServiceError::new(
                ErrorKind::Forbidden,
                "AuthorizationFailed",
                reason,
            ));
        }
        self.meta.delete_role_assignment(id).await?;
        tracing::info!(assignment = %id, by = %caller.principal.id, "role assignment deleted");
        Ok(assignment_dto(&row))
    }

    // ---- explain -----------------------------------------------------

    /// Why a principal may or may not do an action on a resource. The
    /// caller needs `iam/read` on the resource, unless it asks about
    /// itself; a resource it may not see is "not found" whether it exists
    /// or not.
    pub async fn explain(&self, caller: &Caller, req: ExplainRequest) -> Result<Explanation> {
        let action: Action = req.action.parse().map_err(|e: coffer_iam::UnknownAction| {
            ServiceError::invalid("UnknownAction", e.to_string())
        })?;
        let scope = parse_scope(&req.resource_id)?;
        let principal = match &req.principal_id {
            Some(p) => parse_id(p, Kind::Principal)?,
            None => caller.principal.id,
        };
        let myself = principal == caller.principal.id;
        let target = self.resolve(scope).await?;
        let base = |decision: &str, status: u16, reasons: Vec<String>, assignment: Option<Id>| {
            Explanation {
                principal_id: principal.to_string(),
                action: action.to_string(),
                resource_id: scope.to_string(),
                decision: decision.into(),
                status,
                reasons,
                assignment_id: assignment.map(|a| a.to_string()),
            }
        };
        if myself {
            // About oneself: a resource one may not see is answered exactly
            // as one that does not exist.
            let visible = target
                .as_ref()
                .is_some_and(|t| self.sees(&caller.subject, t));
            if !visible {
                return Ok(base(
                    "deny",
                    404,
                    vec![format!(
                        "no {} {scope} is visible to principal {principal}: it does not exist, or no role of {principal} lets it see it",
                        scope.noun()
                    )],
                    None,
                ));
            }
        } else {
            // About someone else: needs iam/read on the resource.
            let t = target.as_ref().ok_or_else(|| not_found_of(scope))?;
            self.check(caller, Action::IamRead, t)?;
        }
        let p = self
            .meta
            .principal(principal)
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(principal)))?;
        let subject = self.subject_of(&p).await?;
        let target = target.ok_or_else(|| not_found_of(scope))?;
        // What the caller may learn of the principal's assignments: those at
        // scopes where it may read role assignments (all, about itself).
        let mut shown = HashSet::new();
        for g in &subject.grants {
            let ok = myself || {
                let t = self.resolve(g.scope).await?;
                t.is_some_and(|t| authorize(&caller.subject, Action::IamRead, &t).is_allowed())
            };
            if ok {
                shown.insert(g.id);
            }
        }
        Ok(match authorize(&subject, action, &target) {
            Decision::Allow(why) => {
                let (why, assignment) = match &why {
                    Allowed::Assignment { grant, .. } if !shown.contains(&grant.id) => (
                        "an assignment at a scope above, which you may not see, grants it"
                            .to_string(),
                        None,
                    ),
                    Allowed::Assignment { grant, .. } => (why.to_string(), Some(grant.id)),
                    other => (other.to_string(), None),
                };
                // The scopes the caller may see of the chain (a folder tree
                // above the resource may be hidden from it).
                let chain = target.chain();
                let names: Vec<String> = (0..chain.len())
                    .map(|i| {
                        let above = Target::new(chain[i..].to_vec());
                        if myself || i == 0 || self.sees(&caller.subject, &above) {
                            chain[i].to_string()
                        } else {
                            "(hidden)".to_string()
                        }
                    })
                    .collect();
                base(
                    "allow",
                    200,
                    vec![
                        format!("allowed: {why}"),
                        format!("scopes checked, the resource first: {}", names.join(" < ")),
                    ],
                    assignment,
                )
            }
            Decision::Deny(mut d) => {
                let status = if d.visible { 403 } else { 404 };
                let before = d.held.len();
                d.held.retain(|g| shown.contains(&g.id));
                let mut reason = d.reason(principal);
                if d.held.len() < before {
                    reason.push_str(&format!(
                        " ({} more assignment(s) of {principal} apply here at scopes you may not see; none grants '{action}')",
                        before - d.held.len()
                    ));
                }
                base("deny", status, vec![reason], None)
            }
        })
    }

    /// An account as `caller` may see it: its folder only if the caller may
    /// see that folder (the tree above an account is not its owner's to
    /// know).
    async fn account_view(&self, caller: &Caller, a: &AccountRow) -> Result<Account> {
        let mut dto = account_dto(a);
        if let Some(f) = a.folder_id {
            let seen = self
                .resolve(Scope::Id(f))
                .await?
                .is_some_and(|t| self.sees(&caller.subject, &t));
            if !seen {
                dto.folder_id = None;
            }
        }
        Ok(dto)
    }

    /// Whether `subject` may see `target` at all (else it is "not found").
    fn sees(&self, subject: &Subject, target: &Target) -> bool {
        match authorize(subject, Action::read_of(target.scope().kind()), target) {
            Decision::Allow(_) => true,
            Decision::Deny(d) => d.visible,
        }
    }
}
