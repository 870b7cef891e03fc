//! The organisation: tenants, their folder tree, and accounts.

/// Folders nest at most this deep (as AWS organisational units do).
pub const MAX_FOLDER_DEPTH: usize = 5;

use std::collections::HashMap;

use coffer_iam::{Action, Scope, Target, authorize};
use coffer_meta::{AccountRow, FolderRow, TenantRow};
use coffer_types::{Id, Kind};

use crate::access::*;
use crate::error::ErrorCode;
use crate::list;
use crate::model::*;
use crate::*;
use coffer_wire::{ListParams, Page};

pub(crate) fn tenant_dto(t: &TenantRow) -> Tenant {
    Tenant {
        id: t.id.to_string(),
        name: t.name.clone(),
        allow_cross_tenant_key_grants: t.allow_cross_tenant_key_grants,
        created_at: t.created_at.clone(),
    }
}

pub(crate) fn folder_dto(f: &FolderRow) -> Folder {
    Folder {
        id: f.id.to_string(),
        name: f.name.clone(),
        tenant_id: f.tenant_id.to_string(),
        parent_id: f.parent_id.map(|p| p.to_string()),
        created_at: f.created_at.clone(),
    }
}

pub(crate) fn account_dto(a: &AccountRow) -> Account {
    Account {
        id: a.id.to_string(),
        name: a.name.clone(),
        tenant_id: a.tenant_id.to_string(),
        folder_id: a.folder_id.map(|f| f.to_string()),
        created_at: a.created_at.clone(),
    }
}

impl Service {
    /// Create a tenant (deployment Owners).
    pub async fn create_tenant(&self, caller: &Caller, req: CreateTenant) -> Result<Tenant> {
        let name = check_name(&req.name)?;
        self.check(caller, Action::OrgWrite, &Target::deployment())?;
        let t = self.meta.create_tenant(name.as_str()).await?;
        tracing::info!(tenant = %t.id, by = %caller.principal.id, "tenant created");
        Ok(tenant_dto(&t))
    }

    /// The tenants the caller may see.
    pub async fn list_tenants(&self, caller: &Caller, q: ListParams) -> Result<Page<Tenant>> {
        let mut out = vec![];
        for t in self.meta.list_tenants().await? {
            let target = Target::new(vec![Scope::Id(t.id)]);
            if authorize(&caller.subject, Action::OrgRead, &target).is_allowed() {
                out.push(tenant_dto(&t));
            }
        }
        list::page_in_memory(out, &q, |t| &t.name)
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

    /// Change a tenant's policy (`org/write` on the tenant).
    pub async fn update_tenant(
        &self,
        caller: &Caller,
        id: &str,
        req: UpdateTenant,
    ) -> Result<Tenant> {
        let id = parse_id(id, Kind::Tenant)?;
        self.check_scope(caller, Action::OrgWrite, Scope::Id(id))
            .await?;
        if let Some(allow) = req.allow_cross_tenant_key_grants
            && !self.meta.set_tenant_cross_grants(id, allow).await?
        {
            return Err(not_found_of(Scope::Id(id)));
        }
        let t = self
            .meta
            .tenant(id)
            .await?
            .ok_or_else(|| not_found_of(Scope::Id(id)))?;
        tracing::info!(tenant = %t.id, by = %caller.principal.id, allow_cross_tenant_key_grants = t.allow_cross_tenant_key_grants, "tenant policy changed");
        Ok(tenant_dto(&t))
    }

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
                return Err(ServiceError::new(
                    ErrorCode::FolderTooDeep,
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
                    return Err(ServiceError::new(
                        ErrorCode::TenantMismatch,
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
    pub async fn list_folders(&self, caller: &Caller, q: ListParams) -> Result<Page<Folder>> {
        let tenant = match q.tenant.as_deref() {
            Some(t) => parse_id(t, Kind::Tenant)?,
            None => caller.principal.tenant_id,
        };
        self.check_scope(caller, Action::OrgRead, Scope::Id(tenant))
            .await?;
        let folders = self.meta.list_folders(tenant).await?;
        let tree = Tree::new(tenant, folders.clone());
        let out = folders
            .iter()
            .filter(|f| {
                let target = Target::new(tree.chain(Some(f.id)));
                authorize(&caller.subject, Action::OrgRead, &target).is_allowed()
            })
            .map(folder_dto)
            .collect();
        list::page_in_memory(out, &q, |f| &f.name)
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
            coffer_meta::MetaError::Conflict(m) => ServiceError::new(ErrorCode::FolderNotEmpty, m),
            other => other.into(),
        })?;
        tracing::info!(folder = %id, by = %caller.principal.id, "folder deleted");
        Ok(folder_dto(&f))
    }

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
    pub async fn list_accounts(&self, caller: &Caller, q: ListParams) -> Result<Page<Account>> {
        let tenant = q
            .tenant
            .as_deref()
            .map(|t| parse_id(t, Kind::Tenant))
            .transpose()?;
        if let Some(t) = tenant {
            // A tenant the caller cannot see answers as one that does not
            // exist, as every filtered list does.
            self.require_visible(caller, Scope::Id(t)).await?;
        }
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
        list::page_in_memory(out, &q, |a| &a.name)
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
                ErrorCode::AuthorizationFailed,
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
}
