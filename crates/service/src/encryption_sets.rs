//! Disk encryption sets (Azure's DiskEncryptionSet, the encryption scope of
//! seed 001): a customer key and a managed identity created with the set,
//! which must be given read, wrap and unwrap on the key (the role Key Vault
//! Crypto Service Encryption User, at the key or its vault). Creating a set
//! is refused unless the key's vault has soft delete and purge protection,
//! the key is usable, and it is in the set's region (seed 004's rules).
//! A `double` set adds a second, outer data layer under the region's
//! platform key (two DEKs per volume, one wrapped by each key).

use coffer_iam::{Action, Decision, Scope, authorize};
use coffer_meta::{EncryptionSetRow, PrincipalRow, VaultKeyRow};
use coffer_types::{EncryptionType, Id, Kind, PrincipalKind};
use coffer_wire::{ListParams, Page};

use crate::error::ErrorCode;
use crate::list;
use crate::model::*;
use crate::*;

impl Service {
    /// Whether the set's identity may read, wrap and unwrap with its key.
    pub(crate) async fn identity_has_key_access(&self, set: &EncryptionSetRow) -> Result<bool> {
        let Some(identity) = self.meta.principal(set.identity_id).await? else {
            return Ok(false);
        };
        let k = match self.meta.vault_key(set.key_id).await {
            Ok(k) => k,
            Err(coffer_meta::MetaError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let subject = self.subject_of(&identity).await?;
        let target = self.key_target(&k).await?;
        Ok([Action::KeysRead, Action::KeysWrap, Action::KeysUnwrap]
            .into_iter()
            .all(|a| matches!(authorize(&subject, a, &target), Decision::Allow(_))))
    }

    async fn set_dto(&self, s: &EncryptionSetRow) -> Result<EncryptionSet> {
        let key = self.meta.vault_key(s.key_id).await?;
        let key_version = Self::set_target(s, &key);
        let (data_keys, data_keys_current) =
            self.meta.set_dek_counts(s.id, key.id, key_version).await?;
        Ok(EncryptionSet {
            id: s.id.to_string(),
            name: s.name.clone(),
            account_id: s.account_id.to_string(),
            region: s.region.clone(),
            encryption_type: s.encryption_type,
            key_id: s.key_id.to_string(),
            key_version: s.key_version,
            identity_id: s.identity_id.to_string(),
            identity_has_key_access: self.identity_has_key_access(s).await?,
            rewrap: RewrapProgress {
                key_version,
                data_keys,
                data_keys_current,
                complete: data_keys == data_keys_current,
            },
            created_at: s.created_at.clone(),
        })
    }

    /// The set `id` if the caller may do `action` on it.
    async fn authorized_set(
        &self,
        caller: &Caller,
        id: &str,
        action: Action,
    ) -> Result<EncryptionSetRow> {
        let id = parse_id(id, Kind::EncryptionSet)?;
        let s = self.meta.encryption_set(id).await?.ok_or_else(|| {
            ServiceError::not_found(ErrorCode::EncryptionSetNotFound, "encryption set", id)
        })?;
        let target = self.resource_target(s.id, s.account_id).await?;
        self.check(caller, action, &target)?;
        Ok(s)
    }

    /// The key a set may use: readable by the caller, usable, in a vault
    /// with soft delete and purge protection; `version` must exist.
    async fn key_for_set(
        &self,
        caller: &Caller,
        key: &str,
        version: Option<u32>,
    ) -> Result<VaultKeyRow> {
        let (k, v) = self.authorized_key(caller, key, Action::KeysRead).await?;
        if !(v.soft_delete && v.purge_protection) {
            let missing = match (v.soft_delete, v.purge_protection) {
                (false, false) => "soft delete and purge protection",
                (false, true) => "soft delete",
                _ => "purge protection",
            };
            return Err(ServiceError::new(
                ErrorCode::VaultNotProtected,
                format!(
                    "key {} is in vault {}, which lacks {missing}: disk encryption needs both, so that a key cannot be lost by accident; turn them on with `coffer vault update {} --enable-soft-delete --enable-purge-protection`",
                    k.id, v.id, v.id
                ),
            ));
        }
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        if let Some(why) = coffer_keyvault::customer::unusable(&k, Some(&v), &now) {
            return Err(ServiceError::new(
                ErrorCode::KeyUnusable,
                format!("key {} is {why}", k.id),
            ));
        }
        if let Some(n) = version
            && (n == 0 || n > k.current_version)
        {
            return Err(ServiceError::new(
                ErrorCode::InvalidKeyOperation,
                format!(
                    "key {} has versions 1 to {}, not {n}",
                    k.id, k.current_version
                ),
            ));
        }
        Ok(k)
    }

    /// Create a disk encryption set and its managed identity.
    pub async fn create_encryption_set(
        &self,
        caller: &Caller,
        req: CreateEncryptionSet,
    ) -> Result<EncryptionSet> {
        let name = check_name(&req.name)?;
        let account = match &req.account_id {
            Some(a) => parse_id(a, Kind::Account)?,
            None => caller.principal.account_id,
        };
        self.check_scope(caller, Action::EncryptionSetsWrite, Scope::Id(account))
            .await?;
        let encryption_type = req.encryption_type.unwrap_or(EncryptionType::Customer);
        match encryption_type {
            EncryptionType::Customer => {}
            EncryptionType::Platform => {
                return Err(ServiceError::new(
                    ErrorCode::InvalidKeyOperation,
                    "an encryption set is `customer` or `double`; platform-key disks need no set",
                ));
            }
            EncryptionType::Double => {}
        }
        let k = self
            .key_for_set(caller, &req.key_id, req.key_version)
            .await?;
        let acct = self.meta.account(account).await?.ok_or_else(|| {
            ServiceError::not_found(ErrorCode::AccountNotFound, "account", account)
        })?;
        let at = coffer_meta::now();
        let identity = PrincipalRow {
            id: Id::random(Kind::Principal),
            account_id: acct.id,
            tenant_id: acct.tenant_id,
            name: name.to_string(),
            kind: PrincipalKind::Managed,
            created_at: at.clone(),
        };
        let row = EncryptionSetRow {
            id: Id::random(Kind::EncryptionSet),
            account_id: account,
            name: name.to_string(),
            region: k.region.clone(),
            key_id: k.id,
            key_version: req.key_version,
            encryption_type,
            identity_id: identity.id,
            created_at: at,
        };
        self.meta.insert_encryption_set(&row, &identity).await?;
        tracing::info!(set = %row.id, key = %k.id, identity = %identity.id, "disk encryption set created");
        self.set_dto(&row).await
    }

    /// A page of the sets the caller may see.
    pub async fn list_encryption_sets(
        &self,
        caller: &Caller,
        q: ListParams,
    ) -> Result<Page<EncryptionSet>> {
        let p = list::paging(&q)?;
        let size = p.size;
        let filter = self
            .owned_filter(
                caller,
                Action::EncryptionSetsRead,
                Kind::EncryptionSet,
                &q,
                p,
            )
            .await?;
        let rows = self.meta.list_encryption_sets_page(&filter).await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            items.push(self.set_dto(r).await?);
        }
        Ok(list::finish(items, size))
    }

    /// One set, with whether its identity can reach its key now.
    pub async fn get_encryption_set(&self, caller: &Caller, id: &str) -> Result<EncryptionSet> {
        let s = self
            .authorized_set(caller, id, Action::EncryptionSetsRead)
            .await?;
        self.set_dto(&s).await
    }

    /// Point a set at another key of its region, or pin or unpin a version.
    pub async fn update_encryption_set(
        &self,
        caller: &Caller,
        id: &str,
        req: UpdateEncryptionSet,
    ) -> Result<EncryptionSet> {
        let mut s = self
            .authorized_set(caller, id, Action::EncryptionSetsWrite)
            .await?;
        let version = match req.key_version {
            Some(0) => None,
            Some(n) => Some(n),
            None => s.key_version,
        };
        let key = req.key_id.unwrap_or_else(|| s.key_id.to_string());
        let k = self.key_for_set(caller, &key, version).await?;
        if k.region != s.region {
            return Err(ServiceError::new(
                ErrorCode::RegionMismatch,
                format!(
                    "key {} is in region {}, the set in {}: a set's key is in its region",
                    k.id, k.region, s.region
                ),
            ));
        }
        self.meta.update_encryption_set(s.id, k.id, version).await?;
        self.wake_rewrap();
        s.key_id = k.id;
        s.key_version = version;
        self.set_dto(&s).await
    }

    /// Delete a set and its managed identity.
    pub async fn delete_encryption_set(&self, caller: &Caller, id: &str) -> Result<EncryptionSet> {
        let s = self
            .authorized_set(caller, id, Action::EncryptionSetsDelete)
            .await?;
        let users = self.meta.encryption_set_users(s.id).await?;
        if users > 0 {
            return Err(ServiceError::new(
                ErrorCode::EncryptionSetInUse,
                format!(
                    "{users} disks and snapshots are under encryption set {}: delete them first",
                    s.id
                ),
            ));
        }
        let dto = self.set_dto(&s).await?;
        self.meta.delete_encryption_set(&s).await?;
        self.meta
            .delete_role_assignments_at(&s.id.to_string())
            .await?;
        tracing::info!(set = %s.id, "disk encryption set deleted");
        Ok(dto)
    }

    /// The set a new disk in `region` is to be encrypted through, with its
    /// key: the caller may read the set, the key is usable, and the set's
    /// identity can read, wrap and unwrap with it.
    pub(crate) async fn set_for_new_disk(
        &self,
        caller: &Caller,
        id: &str,
        region: &str,
    ) -> Result<(EncryptionSetRow, VaultKeyRow)> {
        let s = self
            .authorized_set(caller, id, Action::EncryptionSetsRead)
            .await?;
        if s.region != region {
            return Err(ServiceError::new(
                ErrorCode::RegionMismatch,
                format!(
                    "encryption set {} is in region {}, the disk in {region}: use a set of the disk's region",
                    s.id, s.region
                ),
            ));
        }
        let k = self.meta.vault_key(s.key_id).await?;
        if let Some(why) = self.key_unusable(&k).await? {
            return Err(ServiceError::new(
                ErrorCode::KeyUnusable,
                format!("key {} of encryption set {} is {why}", k.id, s.id),
            ));
        }
        if !self.identity_has_key_access(&s).await? {
            let why = "the set's identity may not wrap and unwrap with its key";
            self.audit_as_identity(
                caller.principal.id,
                &s,
                "key.wrap",
                k.current_version,
                s.id,
                Err(why),
            )
            .await?;
            return Err(ServiceError::new(
                ErrorCode::KeyUnusable,
                format!(
                    "the identity {} of encryption set {} may not read, wrap and unwrap with key {}: give it the role with `coffer role assignment create --principal {} --role 'Key Vault Crypto Service Encryption User' --scope {}`",
                    s.identity_id, s.id, k.id, s.identity_id, k.id
                ),
            ));
        }
        Ok((s, k))
    }

    /// Record a use of a set's key by its identity on behalf of the
    /// principal `acting_for`.
    pub(crate) async fn audit_as_identity(
        &self,
        acting_for: Id,
        set: &EncryptionSetRow,
        action: &str,
        version: u32,
        resource: Id,
        outcome: std::result::Result<(), &str>,
    ) -> Result<()> {
        self.vault
            .audit()
            .record(&coffer_meta::AuditRecord {
                principal: set.identity_id.to_string(),
                acting_for: acting_for.to_string(),
                action: action.into(),
                key: Some(set.key_id),
                key_version: Some(version),
                resource: resource.to_string(),
                outcome: if outcome.is_ok() { "allowed" } else { "denied" }.into(),
                detail: match outcome {
                    Ok(()) => format!("through encryption set {}", set.id),
                    Err(why) => format!("through encryption set {}: {why}", set.id),
                },
            })
            .await?;
        Ok(())
    }

    /// Before a volume under a set opens for `principal`: the set's
    /// identity must still reach the key; the unwrap is audited once per
    /// open, as the identity acting for `principal`.
    pub(crate) async fn authorize_open(
        &self,
        disk: &coffer_meta::DiskRow,
        principal: Id,
    ) -> Result<()> {
        let Some(set_id) = disk.encryption_set_id else {
            return Ok(());
        };
        lock(&self.customer_keyed).insert(disk.id);
        let Some(set) = self.meta.encryption_set(set_id).await? else {
            return Err(ServiceError::new(
                ErrorCode::KeyUnusable,
                format!(
                    "disk {} is under encryption set {set_id}, which was deleted",
                    disk.id
                ),
            ));
        };
        let dek = self
            .vault
            .dek_row(self.meta.volume(disk.volume_id).await?.dek_id)
            .await?;
        if let Some(why) = self
            .key_unusable(&self.meta.vault_key(dek.kek_id).await?)
            .await?
        {
            let why = format!("key {} is {why}", dek.kek_id);
            self.audit_as_identity(
                principal,
                &set,
                "key.unwrap",
                dek.kek_version,
                disk.id,
                Err(&why),
            )
            .await?;
            return Err(ServiceError::new(ErrorCode::KeyUnusable, why));
        }
        if !self.identity_has_key_access(&set).await? {
            let why = "the set's identity may no longer unwrap with its key";
            self.audit_as_identity(
                principal,
                &set,
                "key.unwrap",
                dek.kek_version,
                disk.id,
                Err(why),
            )
            .await?;
            return Err(ServiceError::new(
                ErrorCode::KeyUnusable,
                format!(
                    "key {} of disk {}: {why} (give identity {} the role Key Vault Crypto Service Encryption User on it)",
                    set.key_id, disk.id, set.identity_id
                ),
            ));
        }
        self.audit_as_identity(
            principal,
            &set,
            "key.unwrap",
            dek.kek_version,
            disk.id,
            Ok(()),
        )
        .await
    }
}
