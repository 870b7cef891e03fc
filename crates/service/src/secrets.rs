//! Secrets of a key vault (Azure Key Vault secrets): small values such as
//! the passphrase of a LUKS volume a guest encrypts itself (seed 001's
//! in-guest encryption). Set (each set is a new version), list, show, read
//! a value (`secrets/get`, audited, never logged), delete softly, recover,
//! purge, under the vault's rules. A value is stored sealed under a data
//! key of its own that the root key wraps, bound to its secret and version.

use std::time::{Duration, SystemTime};

use base64::Engine;
use coffer_iam::{Action, Scope, Target};
use coffer_meta::{SecretRow, VaultRow};
use coffer_types::{Id, Kind, Lifecycle};
use coffer_wire::{ListParams, Page, SecretValueQuery};

use crate::error::ErrorCode;
use crate::list;
use crate::model::*;
use crate::*;

const MAX_SECRET: usize = 25 * 1024;

fn secret_dto(s: &SecretRow) -> Secret {
    Secret {
        id: s.id.to_string(),
        name: s.name.clone(),
        vault_id: s.vault_id.to_string(),
        account_id: s.account_id.to_string(),
        current_version: s.current_version,
        content_type: s.content_type.clone(),
        state: match (&s.deleted_at, &s.purged_at) {
            (_, Some(_)) => Lifecycle::Purged,
            (Some(_), None) => Lifecycle::Deleted,
            (None, None) => Lifecycle::Active,
        },
        deleted_at: s.deleted_at.clone(),
        purge_after: s.purge_after.clone(),
        created_at: s.created_at.clone(),
        updated_at: s.updated_at.clone(),
    }
}

fn context(id: Id, version: u32) -> String {
    format!("coffer secret {id} v{version}")
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Service {
    /// The secret `id` and its vault if the caller may do `action` on it.
    async fn authorized_secret(
        &self,
        caller: &Caller,
        id: &str,
        action: Action,
    ) -> Result<(SecretRow, VaultRow)> {
        let id = parse_id(id, Kind::Secret)?;
        let nf = || ServiceError::not_found(ErrorCode::SecretNotFound, "secret", id);
        let s = self
            .meta
            .secret(id)
            .await?
            .filter(|s| s.purged_at.is_none())
            .ok_or_else(nf)?;
        let v = self.meta.vault(s.vault_id).await?.ok_or_else(nf)?;
        let mut chain = vec![Scope::Id(s.id), Scope::Id(v.id)];
        chain.extend(self.account_chain(v.account_id).await?);
        if let Err(e) = self.check(caller, action, &Target::new(chain)) {
            if e.code == ErrorCode::AuthorizationFailed {
                self.audit(caller, action.as_str(), None, s.id, "denied", &e.message)
                    .await?;
            }
            return Err(e);
        }
        Ok((s, v))
    }

    /// Set a secret: new, or a new version of the live one of that name.
    pub async fn set_secret(&self, caller: &Caller, vault: &str, req: SetSecret) -> Result<Secret> {
        let name = check_name(&req.name)?;
        let v = self
            .authorized_vault(caller, vault, Action::SecretsWrite)
            .await?;
        if v.deleted_at.is_some() {
            return Err(ServiceError::new(
                ErrorCode::ResourceDeleted,
                format!(
                    "vault {} is deleted: recover it first with `coffer vault recover {}`",
                    v.id, v.id
                ),
            ));
        }
        let value = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(req.value.trim())
                .map_err(|e| {
                    ServiceError::new(
                        ErrorCode::InvalidSecret,
                        format!("the value is not base64 ({e})"),
                    )
                })?,
        );
        if value.is_empty() || value.len() > MAX_SECRET {
            return Err(ServiceError::new(
                ErrorCode::InvalidSecret,
                format!(
                    "a secret's value is 1 byte to 25 KiB, not {} bytes",
                    value.len()
                ),
            ));
        }
        let content_type = req
            .content_type
            .unwrap_or_else(|| "application/octet-stream".into());
        if content_type.len() > 255 || content_type.chars().any(char::is_control) {
            return Err(ServiceError::new(
                ErrorCode::InvalidSecret,
                "a content type is at most 255 printable characters",
            ));
        }
        // The value is sealed for the secret and version it becomes; the
        // store refuses (and keeps nothing) if a concurrent set took that
        // version first.
        let existing = self.meta.secret_by_name(v.id, name.as_str()).await?;
        let (id, version) = match &existing {
            Some(s) if s.deleted_at.is_some() => {
                return Err(ServiceError::new(
                    ErrorCode::ResourceDeleted,
                    format!(
                        "secret '{name}' ({}) is deleted: recover it with `coffer secret recover {}`, or purge it first",
                        s.id, s.id
                    ),
                ));
            }
            Some(s) => (s.id, s.current_version + 1),
            None => (Id::random(Kind::Secret), 1),
        };
        let sealed = self
            .vault
            .seal_secret(&v.region, &value, context(id, version).as_bytes())
            .await?;
        let at = now();
        let row = self
            .meta
            .set_secret(&coffer_meta::NewSecretVersion {
                vault: v.id,
                account: v.account_id,
                id,
                version,
                name: name.as_str(),
                content_type: &content_type,
                wrapped: &sealed,
                at: &at,
            })
            .await?;
        self.audit(caller, "secret.set", None, row.id, "allowed", "")
            .await?;
        Ok(secret_dto(&row))
    }

    /// A page of a vault's secrets (`state=deleted`: the soft-deleted ones).
    pub async fn list_secrets(
        &self,
        caller: &Caller,
        vault: &str,
        q: ListParams,
    ) -> Result<Page<Secret>> {
        let p = list::paging(&q)?;
        let v = self
            .authorized_vault(caller, vault, Action::SecretsRead)
            .await?;
        let deleted = crate::vaults::deleted_filter(q.state.as_deref())?;
        let rows = self
            .meta
            .list_secrets_page(v.id, deleted, p.after, p.size + 1)
            .await?;
        Ok(list::finish(rows.iter().map(secret_dto).collect(), p.size))
    }

    /// One secret (not its value).
    pub async fn get_secret(&self, caller: &Caller, id: &str) -> Result<Secret> {
        let (s, _) = self
            .authorized_secret(caller, id, Action::SecretsRead)
            .await?;
        Ok(secret_dto(&s))
    }

    /// A secret's value (the newest version, or `version`).
    pub async fn get_secret_value(
        &self,
        caller: &Caller,
        id: &str,
        q: SecretValueQuery,
    ) -> Result<SecretValue> {
        let (s, v) = self
            .authorized_secret(caller, id, Action::SecretsGet)
            .await?;
        if s.deleted_at.is_some() || v.deleted_at.is_some() {
            let what = if s.deleted_at.is_some() {
                "secret"
            } else {
                "vault"
            };
            let which = if s.deleted_at.is_some() { s.id } else { v.id };
            return Err(ServiceError::new(
                ErrorCode::ResourceDeleted,
                format!(
                    "{what} {which} is deleted: recover it first with `coffer {what} recover {which}`"
                ),
            ));
        }
        let version = q.version.unwrap_or(s.current_version);
        let stored = match self.meta.secret_value(s.id, version).await? {
            Some(b) if !b.is_empty() => b,
            _ => {
                return Err(ServiceError::new(
                    ErrorCode::SecretNotFound,
                    format!(
                        "secret {} has no version {version}: it has versions 1 to {}",
                        s.id, s.current_version
                    ),
                ));
            }
        };
        let value = self
            .vault
            .open_secret(&v.region, &stored, context(s.id, version).as_bytes())
            .await
            .map_err(|e| match e {
                coffer_keyvault::VaultError::Crypto(c) => ServiceError::new(
                    ErrorCode::IntegrityError,
                    format!(
                        "secret {} version {version} failed authentication: {c}",
                        s.id
                    ),
                ),
                other => other.into(),
            })?;
        self.audit(
            caller,
            "secret.get",
            None,
            s.id,
            "allowed",
            &format!("version {version}"),
        )
        .await?;
        Ok(SecretValue {
            secret_id: s.id.to_string(),
            name: s.name,
            version,
            content_type: s.content_type,
            value: base64::engine::general_purpose::STANDARD.encode(&value[..]),
        })
    }

    /// Delete a secret: soft when the vault has soft delete, else a purge.
    pub async fn delete_secret(&self, caller: &Caller, id: &str) -> Result<Secret> {
        let (mut s, v) = self
            .authorized_secret(caller, id, Action::SecretsDelete)
            .await?;
        if s.deleted_at.is_some() {
            return Err(ServiceError::new(
                ErrorCode::ResourceDeleted,
                format!("secret {} is deleted already", s.id),
            ));
        }
        let at = now();
        if v.soft_delete {
            let after = humantime::format_rfc3339_millis(
                SystemTime::now() + Duration::from_secs(u64::from(v.retention_days) * 86_400),
            )
            .to_string();
            self.meta
                .set_secret_deleted(s.id, Some((&at, &after)))
                .await?;
            s.deleted_at = Some(at);
            s.purge_after = Some(after);
            self.audit(
                caller,
                "secret.delete",
                None,
                s.id,
                "allowed",
                "soft delete",
            )
            .await?;
        } else {
            self.meta.purge_secret(s.id, &at).await?;
            s.deleted_at = Some(at.clone());
            s.purged_at = Some(at);
            self.audit(
                caller,
                "secret.purge",
                None,
                s.id,
                "allowed",
                "delete without soft delete",
            )
            .await?;
        }
        Ok(secret_dto(&s))
    }

    /// Recover a soft-deleted secret.
    pub async fn recover_secret(&self, caller: &Caller, id: &str) -> Result<Secret> {
        let (mut s, _) = self
            .authorized_secret(caller, id, Action::SecretsDelete)
            .await?;
        if s.deleted_at.is_none() {
            return Err(ServiceError::new(
                ErrorCode::NotDeleted,
                format!("secret {} is not deleted: nothing to recover", s.id),
            ));
        }
        self.meta.set_secret_deleted(s.id, None).await?;
        s.deleted_at = None;
        s.purge_after = None;
        self.audit(caller, "secret.recover", None, s.id, "allowed", "")
            .await?;
        Ok(secret_dto(&s))
    }

    /// Purge a soft-deleted secret: its values are destroyed. Refused under
    /// purge protection before `purge_after`.
    pub async fn purge_secret(&self, caller: &Caller, id: &str) -> Result<Secret> {
        let (mut s, v) = self
            .authorized_secret(caller, id, Action::SecretsDelete)
            .await?;
        let at = match crate::vaults::purge_gate("secret", s.id, s.purge_after.as_deref(), &v) {
            Ok(now) => now,
            Err(e) => {
                if e.code == ErrorCode::PurgeProtected {
                    self.audit(caller, "secret.purge", None, s.id, "denied", &e.message)
                        .await?;
                }
                return Err(e);
            }
        };
        self.meta.purge_secret(s.id, &at).await?;
        self.meta
            .delete_role_assignments_at(&s.id.to_string())
            .await?;
        s.purged_at = Some(at);
        self.audit(caller, "secret.purge", None, s.id, "allowed", "")
            .await?;
        Ok(secret_dto(&s))
    }
}
