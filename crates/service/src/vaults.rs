//! Key vaults and the customer keys in them: create, list, show, settings,
//! soft delete, recover, purge; keys generated or imported (BYOK), rotated,
//! enabled and disabled; and the audit log of key use (list, verify).
//!
//! Rules, after Azure Key Vault and AWS KMS:
//! - a vault's soft delete and purge protection can be turned on, never
//!   off; its retention is 7-90 days (default 90);
//! - deleting a vault or key with soft delete on marks it deleted: it is
//!   recoverable until `purge_after`, listed with `state=deleted`, and
//!   unusable meanwhile; without soft delete a delete is a purge;
//! - purge destroys key material (the row stays as a tombstone, so
//!   references fail with "purged") and is refused under purge protection
//!   until the retention period has passed;
//! - every change and every use is recorded in the audit log, denials too.
//!
//! A key's authorization target is the key, then its vault, then the
//! vault's account and up: a role at the vault applies to its keys.

use std::time::{Duration, SystemTime};

use base64::Engine;
use coffer_crypto::keys::{KeyAlgorithm, pem};
use coffer_iam::{Action, Scope, Target};
use coffer_meta::{AuditFilter, AuditRecord, KeyVersionRow, VaultKeyRow, VaultRow};
use coffer_types::{Id, KeyState, Kind, Lifecycle};
use coffer_wire::{AuditQuery, ListParams, Page};

use crate::error::ErrorCode;
use crate::list;
use crate::model::*;
use crate::*;

const DEFAULT_RETENTION: u32 = 90;

fn lifecycle(deleted: &Option<String>, purged: &Option<String>) -> Lifecycle {
    match (deleted, purged) {
        (_, Some(_)) => Lifecycle::Purged,
        (Some(_), None) => Lifecycle::Deleted,
        (None, None) => Lifecycle::Active,
    }
}

pub(crate) fn vault_dto(v: &VaultRow) -> Vault {
    Vault {
        id: v.id.to_string(),
        name: v.name.clone(),
        account_id: v.account_id.to_string(),
        region: v.region.clone(),
        soft_delete: v.soft_delete,
        retention_days: v.retention_days,
        purge_protection: v.purge_protection,
        state: lifecycle(&v.deleted_at, &v.purged_at),
        deleted_at: v.deleted_at.clone(),
        purge_after: v.purge_after.clone(),
        external: v.external.as_ref().map(|e| ExternalStoreInfo {
            kind: e.kind.clone(),
            address: e.address.clone(),
            mount: e.mount.clone(),
        }),
        created_at: v.created_at.clone(),
    }
}

/// The version row of a key version kept in an external key store (no
/// material here).
pub(crate) fn external_version() -> KeyVersionRow {
    KeyVersionRow {
        version: 0,
        origin: "external".into(),
        public_key: None,
        created_at: coffer_meta::now(),
    }
}

/// A PKCS#11 token's failure as the API reports it: the key cannot be
/// made or used there.
pub(crate) fn token_error(e: coffer_keyvault::VaultError) -> ServiceError {
    match e {
        coffer_keyvault::VaultError::Root(m) => ServiceError::new(ErrorCode::KeyUnusable, m),
        other => external_error(other),
    }
}

/// An external key store's failure as the API reports it.
pub(crate) fn external_error(e: coffer_keyvault::VaultError) -> ServiceError {
    match e {
        coffer_keyvault::VaultError::External(m) => ServiceError::new(ErrorCode::KeyUnusable, m),
        other => other.into(),
    }
}

pub(crate) fn key_dto(k: &VaultKeyRow) -> Key {
    Key {
        id: k.id.to_string(),
        name: k.name.clone(),
        vault_id: k.vault_id.map(|v| v.to_string()).unwrap_or_default(),
        account_id: k.account_id.map(|a| a.to_string()).unwrap_or_default(),
        region: k.region.clone(),
        key_type: k.key_type.clone(),
        enabled: k.state,
        state: lifecycle(&k.deleted_at, &k.purged_at),
        current_version: k.current_version,
        not_before: k.not_before.clone(),
        expires_at: k.expires_at.clone(),
        rotation_days: k.rotation_days,
        deleted_at: k.deleted_at.clone(),
        purge_after: k.purge_after.clone(),
        created_at: k.created_at.clone(),
    }
}

fn version_dto(v: &KeyVersionRow) -> KeyVersion {
    KeyVersion {
        version: v.version,
        origin: v.origin.clone(),
        public_key: v.public_key.as_deref().map(|der| pem("PUBLIC KEY", der)),
        created_at: v.created_at.clone(),
    }
}

fn audit_dto(e: coffer_meta::AuditEntry) -> AuditEntry {
    AuditEntry {
        seq: e.seq,
        at: e.at,
        principal_id: e.record.principal,
        acting_for: e.record.acting_for,
        action: e.record.action,
        key_id: e.record.key.map(|k| k.to_string()),
        key_version: e.record.key_version,
        resource: e.record.resource,
        outcome: e.record.outcome,
        detail: e.record.detail,
        hash: e.hash,
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

fn check_retention(days: u32) -> Result<u32> {
    if (7..=90).contains(&days) {
        Ok(days)
    } else {
        Err(ServiceError::new(
            ErrorCode::InvalidRetention,
            format!("retention of {days} days is out of range: give 7 to 90 (the default is 90)"),
        ))
    }
}

/// A time given by a client, normalised to the stored form (RFC 3339,
/// UTC, milliseconds); "" clears it.
fn check_time(what: &str, t: Option<&str>) -> Result<Option<String>> {
    match t.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => humantime::parse_rfc3339_weak(s)
            .map(|t| Some(rfc3339(t)))
            .map_err(|e| {
                ServiceError::new(
                    ErrorCode::InvalidKeyOperation,
                    format!(
                        "{what} '{}' is not a time ({e}): give RFC 3339, e.g. 2027-01-31T00:00:00Z",
                        s.chars().take(40).collect::<String>()
                    ),
                )
            }),
    }
}

fn check_rotation(d: Option<u32>) -> Result<Option<u32>> {
    match d {
        None | Some(0) => Ok(None),
        Some(n @ 1..=3650) => Ok(Some(n)),
        Some(n) => Err(ServiceError::new(
            ErrorCode::InvalidKeyOperation,
            format!("a rotation period of {n} days is out of range: give 1 to 3650, or 0 for none"),
        )),
    }
}

fn b64(what: &str, s: &str) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map(zeroize::Zeroizing::new)
        .map_err(|e| {
            ServiceError::new(
                ErrorCode::InvalidKeyMaterial,
                format!("{what} is not base64 ({e})"),
            )
        })
}

fn key_type(s: Option<&str>) -> Result<KeyAlgorithm> {
    match s {
        None => Ok(KeyAlgorithm::Aes256),
        Some(t) => KeyAlgorithm::parse(t)
            .map_err(|e| ServiceError::new(ErrorCode::InvalidKeyType, e.to_string())),
    }
}

fn material_error(e: coffer_keyvault::VaultError) -> ServiceError {
    match e {
        coffer_keyvault::VaultError::Crypto(c) => {
            ServiceError::new(ErrorCode::InvalidKeyMaterial, c.to_string())
        }
        other => other.into(),
    }
}

fn deleted_error(noun: &str, id: Id) -> ServiceError {
    ServiceError::new(
        ErrorCode::ResourceDeleted,
        format!("{noun} {id} is deleted: recover it first with `coffer {noun} recover {id}`"),
    )
}

/// The `state` filter of vault, key and secret lists: `active` (default)
/// or `deleted`.
pub(crate) fn deleted_filter(state: Option<&str>) -> Result<bool> {
    match state {
        None | Some("active") => Ok(false),
        Some("deleted") => Ok(true),
        Some(s) => Err(ServiceError::new(
            ErrorCode::InvalidFilter,
            format!(
                "invalid state filter '{}': use active or deleted",
                s.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// Whether `noun` `id`, soft-deleted until `purge_after` in vault `v`, may
/// be purged now: the time now (RFC 3339), or `NotDeleted`, or
/// `PurgeProtected` (whose denial the caller records in the audit log).
pub(crate) fn purge_gate(
    noun: &str,
    id: Id,
    purge_after: Option<&str>,
    v: &VaultRow,
) -> Result<String> {
    let Some(after) = purge_after else {
        return Err(ServiceError::new(
            ErrorCode::NotDeleted,
            format!("{noun} {id} is not deleted: delete it first (`coffer {noun} delete {id}`)"),
        ));
    };
    let now = rfc3339(SystemTime::now());
    if v.purge_protection && now.as_str() < after {
        return Err(ServiceError::new(
            ErrorCode::PurgeProtected,
            format!(
                "vault {} has purge protection: {noun} {id} can be purged only after {after}, when its retention period ends",
                v.id
            ),
        ));
    }
    Ok(now)
}

impl Service {
    /// Record one audit entry for `caller`; a failure to record is an
    /// error of the operation (a key use that cannot be audited must not
    /// happen silently).
    pub(crate) async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        key: Option<(Id, Option<u32>)>,
        resource: Id,
        outcome: &str,
        detail: &str,
    ) -> Result<()> {
        let p = caller.principal.id.to_string();
        self.vault
            .audit()
            .record(&AuditRecord {
                principal: p.clone(),
                acting_for: p,
                action: action.into(),
                key: key.map(|k| k.0),
                key_version: key.and_then(|k| k.1),
                resource: resource.to_string(),
                outcome: outcome.into(),
                detail: detail.into(),
            })
            .await?;
        Ok(())
    }

    /// Why the customer key `k` may not be used now (disabled, deleted,
    /// purged, outside its validity, its vault deleted), or `None`.
    pub(crate) async fn key_unusable(&self, k: &VaultKeyRow) -> Result<Option<String>> {
        let vault = match k.vault_id {
            Some(v) => self.meta.vault(v).await?,
            None => None,
        };
        let now = rfc3339(SystemTime::now());
        Ok(coffer_keyvault::customer::unusable(k, vault.as_ref(), &now))
    }

    async fn vault_target(&self, v: &VaultRow) -> Result<Target> {
        self.resource_target(v.id, v.account_id).await
    }

    pub(crate) async fn key_target(&self, k: &VaultKeyRow) -> Result<Target> {
        let (Some(vault), Some(account)) = (k.vault_id, k.account_id) else {
            return Err(ServiceError::not_found(ErrorCode::KeyNotFound, "key", k.id));
        };
        let mut chain = vec![Scope::Id(k.id), Scope::Id(vault)];
        chain.extend(self.account_chain(account).await?);
        Ok(Target::new(chain))
    }

    /// The vault `id` (purged ones are gone) if the caller may do `action`
    /// on it (a key action on a vault applies to its keys: a role at the
    /// vault that grants key actions but not `vaults/read` still reaches
    /// its keys).
    pub(crate) async fn authorized_vault(
        &self,
        caller: &Caller,
        id: &str,
        action: Action,
    ) -> Result<VaultRow> {
        let id = parse_id(id, Kind::Vault)?;
        let v = self
            .meta
            .vault(id)
            .await?
            .filter(|v| v.purged_at.is_none())
            .ok_or_else(|| ServiceError::not_found(ErrorCode::VaultNotFound, "vault", id))?;
        let target = self.vault_target(&v).await?;
        self.check(caller, action, &target)?;
        Ok(v)
    }

    /// The customer key `id` and its vault if the caller may do `action`
    /// (audited when denied). Platform keys are not customer keys.
    pub(crate) async fn authorized_key(
        &self,
        caller: &Caller,
        id: &str,
        action: Action,
    ) -> Result<(VaultKeyRow, VaultRow)> {
        let id = parse_id(id, Kind::Key)?;
        let nf = || ServiceError::not_found(ErrorCode::KeyNotFound, "key", id);
        let k = match self.meta.vault_key(id).await {
            Ok(k) if k.vault_id.is_some() => k,
            Ok(_) | Err(coffer_meta::MetaError::NotFound(_)) => return Err(nf()),
            Err(e) => return Err(e.into()),
        };
        let vault_id = k.vault_id.ok_or_else(nf)?;
        let v = self.meta.vault(vault_id).await?.ok_or_else(nf)?;
        let target = self.key_target(&k).await?;
        if let Err(e) = self.check(caller, action, &target) {
            if e.code == ErrorCode::AuthorizationFailed {
                self.audit(
                    caller,
                    action.as_str(),
                    Some((k.id, None)),
                    k.id,
                    "denied",
                    &e.message,
                )
                .await?;
            }
            return Err(e);
        }
        if k.purged_at.is_some() && action != Action::KeysRead {
            return Err(ServiceError::new(
                ErrorCode::KeyUnusable,
                format!("key {} was purged: its material is destroyed", k.id),
            ));
        }
        Ok((k, v))
    }

    /// Check a new vault's external key store (a transit engine that
    /// answers with the token given) and seal its token.
    /// The external key store `e` of a vault of `region`, its credential
    /// sealed under the region's root key.
    async fn external_store(
        &self,
        region: &str,
        e: &ExternalStore,
    ) -> Result<coffer_meta::ExternalStore> {
        if e.kind == "pkcs11" {
            // The token named by a PKCS#11 URI without an object; the PIN
            // from its pin-source (read by the server), or given here.
            coffer_keyvault::token_key_uri(&e.address, Id::random(Kind::Key), 1).map_err(
                |err| ServiceError::new(ErrorCode::InvalidKeyOperation, err.to_string()),
            )?;
            let token = if e.token.trim().is_empty() {
                Vec::new()
            } else {
                self.vault.seal_token(region, e.token.trim()).await?
            };
            return Ok(coffer_meta::ExternalStore {
                kind: "pkcs11".into(),
                address: e.address.trim().to_string(),
                mount: String::new(),
                token,
            });
        }
        if e.kind != "transit" {
            return Err(ServiceError::new(
                ErrorCode::InvalidKeyOperation,
                format!(
                    "external key store kind '{}' is not known: use `transit` (OpenBao or HashiCorp Vault) or `pkcs11` (an HSM or token)",
                    e.kind
                ),
            ));
        }
        let mount = e.mount.as_deref().unwrap_or("transit");
        let invalid = |e: coffer_keyvault::VaultError| {
            ServiceError::new(ErrorCode::InvalidKeyOperation, e.to_string())
        };
        let (address, mount) =
            coffer_keyvault::transit::check_address(&e.address, mount).map_err(invalid)?;
        if e.token.trim().is_empty() {
            return Err(ServiceError::new(
                ErrorCode::InvalidKeyOperation,
                "the external key store needs a token",
            ));
        }
        Ok(coffer_meta::ExternalStore {
            kind: e.kind.clone(),
            address,
            mount,
            token: self.vault.seal_token(region, e.token.trim()).await?,
        })
    }

    /// Create a key vault.
    pub async fn create_vault(&self, caller: &Caller, req: CreateVault) -> Result<Vault> {
        let name = check_name(&req.name)?;
        let account = match &req.account_id {
            Some(a) => parse_id(a, Kind::Account)?,
            None => caller.principal.account_id,
        };
        self.check_scope(caller, Action::VaultsWrite, Scope::Id(account))
            .await?;
        let region = match &req.region {
            Some(r) => {
                self.config
                    .regions
                    .check_region(r)
                    .map_err(|e| ServiceError::new(ErrorCode::UnknownRegion, e.to_string()))?;
                r.clone()
            }
            None => self
                .config
                .regions
                .all()
                .first()
                .map(|r| r.name.clone())
                .ok_or_else(|| ServiceError::internal("no regions configured"))?,
        };
        let external = match &req.external {
            Some(e) => Some(self.external_store(&region, e).await?),
            None => None,
        };
        let row = VaultRow {
            external,
            id: Id::random(Kind::Vault),
            account_id: account,
            name: name.to_string(),
            region,
            soft_delete: req.soft_delete.unwrap_or(true),
            retention_days: check_retention(req.retention_days.unwrap_or(DEFAULT_RETENTION))?,
            purge_protection: req.purge_protection.unwrap_or(false),
            deleted_at: None,
            purge_after: None,
            purged_at: None,
            created_at: coffer_meta::now(),
        };
        if row.purge_protection && !row.soft_delete {
            return Err(ServiceError::new(
                ErrorCode::Irreversible,
                "purge protection needs soft delete: leave soft delete on",
            ));
        }
        self.meta.insert_vault(&row).await?;
        self.audit(caller, "vault.create", None, row.id, "allowed", "")
            .await?;
        tracing::info!(vault = %row.id, "key vault created");
        Ok(vault_dto(&row))
    }

    /// A page of the vaults the caller may see (`state=deleted`: the
    /// soft-deleted ones).
    pub async fn list_vaults(&self, caller: &Caller, q: ListParams) -> Result<Page<Vault>> {
        let p = list::paging(&q)?;
        let deleted = deleted_filter(q.state.as_deref())?;
        let size = p.size;
        let filter = self
            .owned_filter(caller, Action::VaultsRead, Kind::Vault, &q, p)
            .await?;
        let rows = self.meta.list_vaults_page(&filter, deleted).await?;
        Ok(list::finish(rows.iter().map(vault_dto).collect(), size))
    }

    /// One vault.
    pub async fn get_vault(&self, caller: &Caller, id: &str) -> Result<Vault> {
        Ok(vault_dto(
            &self
                .authorized_vault(caller, id, Action::VaultsRead)
                .await?,
        ))
    }

    /// Change a vault's protection: soft delete and purge protection only
    /// turn on.
    pub async fn update_vault(&self, caller: &Caller, id: &str, req: UpdateVault) -> Result<Vault> {
        let mut v = self
            .authorized_vault(caller, id, Action::VaultsWrite)
            .await?;
        if v.deleted_at.is_some() {
            return Err(deleted_error("vault", v.id));
        }
        if req.soft_delete == Some(false) && v.soft_delete {
            return Err(ServiceError::new(
                ErrorCode::Irreversible,
                "soft delete cannot be turned off once on",
            ));
        }
        if req.purge_protection == Some(false) && v.purge_protection {
            return Err(ServiceError::new(
                ErrorCode::Irreversible,
                "purge protection cannot be turned off once on",
            ));
        }
        v.soft_delete |= req.soft_delete.unwrap_or(false);
        v.purge_protection |= req.purge_protection.unwrap_or(false);
        if v.purge_protection && !v.soft_delete {
            return Err(ServiceError::new(
                ErrorCode::Irreversible,
                "purge protection needs soft delete: turn soft delete on too",
            ));
        }
        if let Some(d) = req.retention_days {
            v.retention_days = check_retention(d)?;
        }
        if let Some(token) = &req.transit_token {
            if v.external.as_ref().is_none_or(|e| e.kind != "transit") {
                return Err(ServiceError::new(
                    ErrorCode::InvalidKeyOperation,
                    format!("vault {} has no transit engine to give a token to", v.id),
                ));
            }
            if token.trim().is_empty() {
                return Err(ServiceError::new(
                    ErrorCode::InvalidKeyOperation,
                    "the transit token is empty",
                ));
            }
            let sealed = self.vault.seal_token(&v.region, token.trim()).await?;
            self.meta.set_vault_external_token(v.id, &sealed).await?;
        }
        self.meta
            .set_vault_protection(v.id, v.soft_delete, v.purge_protection, v.retention_days)
            .await?;
        self.audit(caller, "vault.update", None, v.id, "allowed", "")
            .await?;
        Ok(vault_dto(&v))
    }

    /// Delete a vault: soft (recoverable) if it has soft delete, else a
    /// purge of it and its keys.
    pub async fn delete_vault(&self, caller: &Caller, id: &str) -> Result<Vault> {
        let mut v = self
            .authorized_vault(caller, id, Action::VaultsDelete)
            .await?;
        if v.deleted_at.is_some() {
            return Err(deleted_error("vault", v.id));
        }
        let now = SystemTime::now();
        if v.soft_delete {
            let at = rfc3339(now);
            let after = rfc3339(now + days(v.retention_days));
            self.meta
                .set_vault_deleted(v.id, Some((&at, &after)))
                .await?;
            v.deleted_at = Some(at);
            v.purge_after = Some(after);
            self.audit(caller, "vault.delete", None, v.id, "allowed", "soft delete")
                .await?;
        } else {
            let at = rfc3339(now);
            self.meta.purge_vault(v.id, &at).await?;
            self.meta
                .delete_role_assignments_at(&v.id.to_string())
                .await?;
            v.deleted_at = Some(at.clone());
            v.purged_at = Some(at);
            self.audit(
                caller,
                "vault.purge",
                None,
                v.id,
                "allowed",
                "delete without soft delete",
            )
            .await?;
        }
        tracing::info!(vault = %v.id, "key vault deleted");
        Ok(vault_dto(&v))
    }

    /// Recover a soft-deleted vault (its keys with it).
    pub async fn recover_vault(&self, caller: &Caller, id: &str) -> Result<Vault> {
        let mut v = self
            .authorized_vault(caller, id, Action::VaultsDelete)
            .await?;
        if v.deleted_at.is_none() {
            return Err(ServiceError::new(
                ErrorCode::NotDeleted,
                format!("vault {} is not deleted: nothing to recover", v.id),
            ));
        }
        self.meta.set_vault_deleted(v.id, None).await?;
        v.deleted_at = None;
        v.purge_after = None;
        self.audit(caller, "vault.recover", None, v.id, "allowed", "")
            .await?;
        Ok(vault_dto(&v))
    }

    /// Purge a soft-deleted vault and every key in it: their material is
    /// destroyed. Refused under purge protection before `purge_after`.
    pub async fn purge_vault(&self, caller: &Caller, id: &str) -> Result<Vault> {
        let mut v = self
            .authorized_vault(caller, id, Action::VaultsDelete)
            .await?;
        let now = match purge_gate("vault", v.id, v.purge_after.as_deref(), &v) {
            Ok(now) => now,
            Err(e) => {
                if e.code == ErrorCode::PurgeProtected {
                    self.audit(caller, "vault.purge", None, v.id, "denied", &e.message)
                        .await?;
                }
                return Err(e);
            }
        };
        self.meta.purge_vault(v.id, &now).await?;
        self.meta
            .delete_role_assignments_at(&v.id.to_string())
            .await?;
        v.purged_at = Some(now);
        self.audit(caller, "vault.purge", None, v.id, "allowed", "")
            .await?;
        tracing::info!(vault = %v.id, "key vault purged");
        Ok(vault_dto(&v))
    }

    /// The public part of a vault's import key (for BYOK).
    pub async fn vault_import_key(&self, caller: &Caller, id: &str) -> Result<ImportKey> {
        let v = self.authorized_vault(caller, id, Action::KeysWrite).await?;
        if v.deleted_at.is_some() {
            return Err(deleted_error("vault", v.id));
        }
        Ok(ImportKey {
            vault_id: v.id.to_string(),
            key_type: KeyAlgorithm::Rsa3072.name().into(),
            public_key: self.vault.import_public_key(v.id).await?,
        })
    }

    async fn new_version(
        &self,
        vault: &VaultRow,
        alg: KeyAlgorithm,
        material: Option<&str>,
        wrapped: Option<&str>,
    ) -> Result<coffer_keyvault::customer::NewVersion> {
        match (material, wrapped) {
            (Some(_), Some(_)) => Err(ServiceError::new(
                ErrorCode::InvalidKeyMaterial,
                "give material or wrapped_material, not both",
            )),
            (Some(m), None) => {
                let raw = if m.trim_start().starts_with("-----BEGIN") {
                    zeroize::Zeroizing::new(m.as_bytes().to_vec())
                } else {
                    b64("material", m)?
                };
                self.vault
                    .import_version(&vault.region, alg, &raw)
                    .await
                    .map_err(material_error)
            }
            (None, Some(w)) => {
                let blob = b64("wrapped_material", w)?;
                self.vault
                    .import_wrapped_version(vault.id, alg, &blob)
                    .await
                    .map_err(material_error)
            }
            (None, None) => Ok(self.vault.generate_version(&vault.region, alg).await?),
        }
    }

    /// Create a key in a vault: generated there, or imported.
    pub async fn create_key(&self, caller: &Caller, vault: &str, req: CreateKey) -> Result<Key> {
        let name = check_name(&req.name)?;
        let v = self
            .authorized_vault(caller, vault, Action::KeysWrite)
            .await?;
        if v.deleted_at.is_some() {
            return Err(deleted_error("vault", v.id));
        }
        let alg = key_type(req.key_type.as_deref())?;
        let row = VaultKeyRow {
            id: Id::random(Kind::Key),
            region: v.region.clone(),
            purpose: "customer".into(),
            account_id: Some(v.account_id),
            vault_id: Some(v.id),
            name: name.to_string(),
            key_type: alg.name().into(),
            state: if req.disabled == Some(true) {
                KeyState::Disabled
            } else {
                KeyState::Enabled
            },
            current_version: 1,
            not_before: check_time("not_before", req.not_before.as_deref())?,
            expires_at: check_time("expires_at", req.expires_at.as_deref())?,
            rotation_days: check_rotation(req.rotation_days)?,
            deleted_at: None,
            purge_after: None,
            purged_at: None,
            created_at: coffer_meta::now(),
        };
        let transit = self.vault.transit(&v).await?;
        let in_token = v.external.as_ref().is_some_and(|e| e.kind == "pkcs11");
        let mut latest = 1;
        if in_token
            && (req.material.is_some()
                || req.wrapped_material.is_some()
                || alg != KeyAlgorithm::Aes256)
        {
            return Err(ServiceError::new(
                ErrorCode::InvalidKeyOperation,
                format!(
                    "vault {} keeps its keys in a PKCS#11 token: a key there is AES256, generated in the token and never extractable, not imported",
                    v.id
                ),
            ));
        }
        let nv = match &transit {
            Some(t) => {
                if req.material.is_some()
                    || req.wrapped_material.is_some()
                    || alg != KeyAlgorithm::Aes256
                {
                    return Err(ServiceError::new(
                        ErrorCode::InvalidKeyOperation,
                        format!(
                            "vault {} keeps its keys in the transit engine at {}: a key there is AES256, made (or already kept) by the engine, never imported through Coffer",
                            v.id,
                            t.address()
                        ),
                    ));
                }
                latest = t.ensure_key(&row.name).await.map_err(external_error)?;
                coffer_keyvault::customer::NewVersion {
                    wrapped: Vec::new(),
                    row: external_version(),
                }
            }
            None if in_token => {
                self.vault
                    .token_key(&v, row.id, 1)
                    .await
                    .map_err(token_error)?;
                coffer_keyvault::customer::NewVersion {
                    wrapped: Vec::new(),
                    row: external_version(),
                }
            }
            None => {
                self.new_version(
                    &v,
                    alg,
                    req.material.as_deref(),
                    req.wrapped_material.as_deref(),
                )
                .await?
            }
        };
        let origin = nv.row.origin.clone();
        self.meta
            .insert_customer_key(&row, &nv.wrapped, &nv.row)
            .await
            .map_err(|e| match e {
                coffer_meta::MetaError::NameTaken { name, .. } => ServiceError::new(
                    ErrorCode::NameTaken,
                    format!(
                        "vault {} already has a key named '{name}' (perhaps deleted: list those with `coffer key list --vault {} --deleted`); pick another name",
                        v.id, v.id
                    ),
                ),
                other => other.into(),
            })?;
        // A transit key that already had versions: Coffer's numbering is
        // the engine's.
        let mut row = row;
        while row.current_version < latest {
            row.current_version = self
                .meta
                .add_key_version(row.id, &[], &external_version())
                .await?;
        }
        let action = if origin == "imported" {
            "key.import"
        } else {
            "key.create"
        };
        self.audit(caller, action, Some((row.id, Some(1))), v.id, "allowed", "")
            .await?;
        tracing::info!(key = %row.id, vault = %v.id, "key created");
        Ok(key_dto(&row))
    }

    /// A page of a vault's keys (`state=deleted`: the soft-deleted ones).
    pub async fn list_keys(
        &self,
        caller: &Caller,
        vault: &str,
        q: ListParams,
    ) -> Result<Page<Key>> {
        let p = list::paging(&q)?;
        let v = self
            .authorized_vault(caller, vault, Action::KeysRead)
            .await?;
        let deleted = deleted_filter(q.state.as_deref())?;
        let rows = self
            .meta
            .list_keys_page(v.id, deleted, p.after, p.size + 1)
            .await?;
        Ok(list::finish(rows.iter().map(key_dto).collect(), p.size))
    }

    /// One key.
    pub async fn get_key(&self, caller: &Caller, id: &str) -> Result<Key> {
        let (k, _) = self.authorized_key(caller, id, Action::KeysRead).await?;
        if k.purged_at.is_some() {
            return Err(ServiceError::new(
                ErrorCode::KeyUnusable,
                format!("key {} was purged: its material is destroyed", k.id),
            ));
        }
        Ok(key_dto(&k))
    }

    /// A key's versions (public keys of RSA versions included).
    pub async fn key_versions(&self, caller: &Caller, id: &str) -> Result<Page<KeyVersion>> {
        let (k, _) = self.authorized_key(caller, id, Action::KeysRead).await?;
        let rows = self.meta.key_versions(k.id).await?;
        Ok(Page::all(rows.iter().map(version_dto).collect()))
    }

    /// Enable or disable a key, or change its validity and rotation.
    pub async fn update_key(&self, caller: &Caller, id: &str, req: UpdateKey) -> Result<Key> {
        let (mut k, _) = self.authorized_key(caller, id, Action::KeysWrite).await?;
        if k.deleted_at.is_some() {
            return Err(deleted_error("key", k.id));
        }
        if let Some(e) = req.enabled {
            k.state = if e {
                KeyState::Enabled
            } else {
                KeyState::Disabled
            };
        }
        if req.not_before.is_some() {
            k.not_before = check_time("not_before", req.not_before.as_deref())?;
        }
        if req.expires_at.is_some() {
            k.expires_at = check_time("expires_at", req.expires_at.as_deref())?;
        }
        if req.rotation_days.is_some() {
            k.rotation_days = check_rotation(req.rotation_days)?;
        }
        self.meta
            .update_key(
                k.id,
                k.state,
                k.not_before.as_deref(),
                k.expires_at.as_deref(),
                k.rotation_days,
            )
            .await?;
        let action = match req.enabled {
            Some(true) => "key.enable",
            Some(false) => "key.disable",
            None => "key.update",
        };
        self.audit(caller, action, Some((k.id, None)), k.id, "allowed", "")
            .await?;
        Ok(key_dto(&k))
    }

    /// Add a version (generated, or imported) and make it current.
    pub async fn rotate_key(&self, caller: &Caller, id: &str, req: RotateKey) -> Result<Key> {
        let (mut k, v) = self.authorized_key(caller, id, Action::KeysWrite).await?;
        if k.deleted_at.is_some() {
            return Err(deleted_error("key", k.id));
        }
        if v.deleted_at.is_some() {
            return Err(deleted_error("vault", v.id));
        }
        let alg = key_type(Some(&k.key_type))?;
        if let Some(t) = self.vault.transit(&v).await? {
            if req.material.is_some() || req.wrapped_material.is_some() {
                return Err(ServiceError::new(
                    ErrorCode::InvalidKeyOperation,
                    format!(
                        "key {} lives in the transit engine at {}: its new version is made there, not imported",
                        k.id,
                        t.address()
                    ),
                ));
            }
            let latest = t.rotate(&k.name).await.map_err(external_error)?;
            while k.current_version < latest {
                k.current_version = self
                    .meta
                    .add_key_version(k.id, &[], &external_version())
                    .await?;
            }
        } else if v.external.as_ref().is_some_and(|e| e.kind == "pkcs11") {
            if req.material.is_some() || req.wrapped_material.is_some() {
                return Err(ServiceError::new(
                    ErrorCode::InvalidKeyOperation,
                    format!(
                        "key {} lives in a PKCS#11 token: its new version is generated there, not imported",
                        k.id
                    ),
                ));
            }
            self.vault
                .token_key(&v, k.id, k.current_version + 1)
                .await
                .map_err(token_error)?;
            k.current_version = self
                .meta
                .add_key_version(k.id, &[], &external_version())
                .await?;
        } else {
            let nv = self
                .new_version(
                    &v,
                    alg,
                    req.material.as_deref(),
                    req.wrapped_material.as_deref(),
                )
                .await?;
            k.current_version = self
                .meta
                .add_key_version(k.id, &nv.wrapped, &nv.row)
                .await?;
        }
        self.audit(
            caller,
            "key.rotate",
            Some((k.id, Some(k.current_version))),
            k.id,
            "allowed",
            "",
        )
        .await?;
        tracing::info!(key = %k.id, version = k.current_version, "key rotated");
        self.wake_rewrap();
        Ok(key_dto(&k))
    }

    /// Delete a key: soft (recoverable) if its vault has soft delete, else
    /// a purge.
    pub async fn delete_key(&self, caller: &Caller, id: &str) -> Result<Key> {
        let (mut k, v) = self.authorized_key(caller, id, Action::KeysDelete).await?;
        if k.deleted_at.is_some() {
            return Err(deleted_error("key", k.id));
        }
        let now = SystemTime::now();
        let at = rfc3339(now);
        if v.soft_delete {
            let after = rfc3339(now + days(v.retention_days));
            self.meta.set_key_deleted(k.id, Some((&at, &after))).await?;
            k.deleted_at = Some(at);
            k.purge_after = Some(after);
            self.audit(
                caller,
                "key.delete",
                Some((k.id, None)),
                k.id,
                "allowed",
                "soft delete",
            )
            .await?;
        } else {
            self.meta.purge_key(k.id, &at).await?;
            self.meta
                .delete_role_assignments_at(&k.id.to_string())
                .await?;
            self.vault.forget_key(k.id).await;
            k.deleted_at = Some(at.clone());
            k.purged_at = Some(at);
            self.audit(
                caller,
                "key.purge",
                Some((k.id, None)),
                k.id,
                "allowed",
                "delete without soft delete",
            )
            .await?;
        }
        tracing::info!(key = %k.id, "key deleted");
        Ok(key_dto(&k))
    }

    /// Recover a soft-deleted key.
    pub async fn recover_key(&self, caller: &Caller, id: &str) -> Result<Key> {
        let (mut k, v) = self.authorized_key(caller, id, Action::KeysDelete).await?;
        if k.deleted_at.is_none() || k.purged_at.is_some() {
            return Err(ServiceError::new(
                ErrorCode::NotDeleted,
                format!("key {} is not deleted: nothing to recover", k.id),
            ));
        }
        if v.deleted_at.is_some() {
            return Err(deleted_error("vault", v.id));
        }
        self.meta.set_key_deleted(k.id, None).await?;
        k.deleted_at = None;
        k.purge_after = None;
        self.audit(
            caller,
            "key.recover",
            Some((k.id, None)),
            k.id,
            "allowed",
            "",
        )
        .await?;
        Ok(key_dto(&k))
    }

    /// Purge a soft-deleted key: its material is destroyed, for good.
    /// Refused under purge protection before `purge_after`.
    pub async fn purge_key(&self, caller: &Caller, id: &str) -> Result<Key> {
        let (mut k, v) = self.authorized_key(caller, id, Action::KeysDelete).await?;
        if k.purged_at.is_some() {
            return Err(ServiceError::new(
                ErrorCode::KeyUnusable,
                format!("key {} was purged already", k.id),
            ));
        }
        let now = match purge_gate("key", k.id, k.purge_after.as_deref(), &v) {
            Ok(now) => now,
            Err(e) => {
                if e.code == ErrorCode::PurgeProtected {
                    self.audit(
                        caller,
                        "key.purge",
                        Some((k.id, None)),
                        k.id,
                        "denied",
                        &e.message,
                    )
                    .await?;
                }
                return Err(e);
            }
        };
        self.meta.purge_key(k.id, &now).await?;
        self.meta
            .delete_role_assignments_at(&k.id.to_string())
            .await?;
        self.vault.forget_key(k.id).await;
        k.purged_at = Some(now);
        self.audit(caller, "key.purge", Some((k.id, None)), k.id, "allowed", "")
            .await?;
        tracing::info!(key = %k.id, "key purged");
        Ok(key_dto(&k))
    }

    /// Entries of the audit log. The deployment's operators see every
    /// entry; anyone else must name a key (`key=`) it may read, and sees
    /// that key's entries.
    pub async fn list_audit(&self, caller: &Caller, q: AuditQuery) -> Result<Page<AuditEntry>> {
        let size = ListParams {
            limit: q.limit,
            ..Default::default()
        }
        .page_size()
        .ok_or_else(|| {
            ServiceError::new(
                ErrorCode::InvalidPage,
                format!(
                    "limit {} is out of range: give 1 to {}",
                    q.limit.unwrap_or_default(),
                    coffer_wire::MAX_PAGE
                ),
            )
        })?;
        let after = match q.next.as_deref() {
            None => 0,
            Some(t) => t.parse::<u64>().map_err(|_| {
                ServiceError::new(
                    ErrorCode::InvalidPage,
                    "the next token is not one this list gave: pass a page's `next` unchanged",
                )
            })?,
        };
        let key = match q.key.as_deref() {
            Some(k) => Some(self.authorized_key(caller, k, Action::KeysRead).await?.0.id),
            None => {
                self.check(caller, Action::DeploymentOperate, &Target::deployment())?;
                None
            }
        };
        let principal = list::id_filter("principal", q.principal.as_deref(), Kind::Principal)?;
        let resource = match q.resource.as_deref() {
            None => None,
            Some(r) => Some(r.trim().parse::<Id>().map_err(|e| {
                ServiceError::new(
                    ErrorCode::InvalidFilter,
                    format!("invalid resource filter: {e}"),
                )
            })?),
        };
        let filter = AuditFilter {
            key,
            principal: principal.map(|p| p.to_string()),
            resource: resource.map(|r| r.to_string()),
            since: check_time("since", q.since.as_deref())?,
            until: check_time("until", q.until.as_deref())?,
        };
        let mut rows = self.vault.audit().list(&filter, after, size + 1).await?;
        let next = if rows.len() > size as usize {
            rows.truncate(size as usize);
            rows.last().map(|e| e.seq.to_string())
        } else {
            None
        };
        Ok(Page {
            items: rows.into_iter().map(audit_dto).collect(),
            next,
        })
    }

    /// Verify the whole audit log (deployment operators).
    pub async fn verify_audit(&self, caller: &Caller) -> Result<AuditVerification> {
        self.check(caller, Action::DeploymentOperate, &Target::deployment())?;
        let r = self.vault.audit().verify().await?;
        Ok(AuditVerification {
            ok: r.problem.is_none(),
            entries: r.entries,
            head_seq: r.head.seq,
            head_hash: r.head.hash,
            problem: r.problem.map(|p| p.to_string()),
        })
    }
}
