//! Rows of key vaults and of the customer keys in them: create, read, list,
//! settings, soft delete, recover, purge, versions. Every change that can
//! take a key out of use (a state change, a delete, a purge, a vault
//! delete) bumps the key-state epoch in the same transaction, so every node
//! notices it at its next poll. Rules (who may, retention, purge
//! protection) are the service's; this module keeps the rows consistent.

use coffer_types::{Id, KeyState, Kind};
use sqlx::AssertSqlSafe;

use crate::listing::{ListFilter, bound, clause};
use crate::vault::{KEY_COLS, KeyTuple, VaultKeyRow, key_row};
use crate::{Meta, MetaError, Result, parse_id};

/// A key vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultRow {
    /// Id.
    pub id: Id,
    /// Owning account.
    pub account_id: Id,
    /// Name, unique in the account until purged.
    pub name: String,
    /// Region.
    pub region: String,
    /// Deletes are soft (recoverable for `retention_days`).
    pub soft_delete: bool,
    /// Days a deleted vault or key stays recoverable (7-90).
    pub retention_days: u32,
    /// No purge before the retention period ends.
    pub purge_protection: bool,
    /// When it was soft-deleted.
    pub deleted_at: Option<String>,
    /// When it may be purged.
    pub purge_after: Option<String>,
    /// When it was purged.
    pub purged_at: Option<String>,
    /// Created.
    pub created_at: String,
    /// Where the vault's keys live when not in Coffer: an external
    /// key store (`None`: the built-in backend).
    pub external: Option<ExternalStore>,
}

/// An external key store a vault's keys live in: an OpenBao/HashiCorp Vault
/// transit engine the customer runs. Coffer holds only the address and the
/// customer's token, wrapped by the root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalStore {
    /// `transit`.
    pub kind: String,
    /// Base URL, e.g. `http://127.0.0.1:8200`.
    pub address: String,
    /// Mount path of the transit engine, e.g. `transit`.
    pub mount: String,
    /// The token, wrapped by the root key.
    pub token: Vec<u8>,
}

/// A secret of a vault (its value is in its versions, wrapped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// Id.
    pub id: Id,
    /// The vault.
    pub vault_id: Id,
    /// The vault's account.
    pub account_id: Id,
    /// Name, unique in the vault until purged.
    pub name: String,
    /// The newest version.
    pub current_version: u32,
    /// What the value is, e.g. `text/plain` (the caller's label).
    pub content_type: String,
    /// Created.
    pub created_at: String,
    /// Last set.
    pub updated_at: String,
    /// When it was soft-deleted.
    pub deleted_at: Option<String>,
    /// When it may be purged.
    pub purge_after: Option<String>,
    /// When it was purged.
    pub purged_at: Option<String>,
}

const SECRET_COLS: &str = "id, vault_id, account_id, name, current_version, content_type, created_at, updated_at, deleted_at, purge_after, purged_at";

type SecretTuple = (
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn secret_row(t: SecretTuple) -> Result<SecretRow> {
    Ok(SecretRow {
        id: parse_id(&t.0, Kind::Secret)?,
        vault_id: parse_id(&t.1, Kind::Vault)?,
        account_id: parse_id(&t.2, Kind::Account)?,
        name: t.3,
        current_version: u32::try_from(t.4)
            .map_err(|_| MetaError::Corrupt("secret version".into()))?,
        content_type: t.5,
        created_at: t.6,
        updated_at: t.7,
        deleted_at: t.8,
        purge_after: t.9,
        purged_at: t.10,
    })
}

/// A disk encryption set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionSetRow {
    /// Id.
    pub id: Id,
    /// Owning account.
    pub account_id: Id,
    /// Name, unique in the account.
    pub name: String,
    /// Region (the key's).
    pub region: String,
    /// The customer key.
    pub key_id: Id,
    /// A pinned version, or `None` for the key's current version.
    pub key_version: Option<u32>,
    /// `customer` or `double`.
    pub encryption_type: coffer_types::EncryptionType,
    /// The managed identity created with the set.
    pub identity_id: Id,
    /// Created.
    pub created_at: String,
}

const SET_COLS: &str = "t.id, t.account_id, t.name, t.region, t.key_id, t.key_version, t.encryption_type, t.identity_id, t.created_at";

type SetTuple = (
    String,
    String,
    String,
    String,
    String,
    Option<i64>,
    String,
    String,
    String,
);

fn set_row(t: SetTuple) -> Result<EncryptionSetRow> {
    Ok(EncryptionSetRow {
        id: parse_id(&t.0, Kind::EncryptionSet)?,
        account_id: parse_id(&t.1, Kind::Account)?,
        name: t.2,
        region: t.3,
        key_id: parse_id(&t.4, Kind::Key)?,
        key_version: t
            .5
            .map(|v| u32::try_from(v).map_err(|_| MetaError::Corrupt("key version".into())))
            .transpose()?,
        encryption_type: crate::parse_word(&t.6)?,
        identity_id: parse_id(&t.7, Kind::Principal)?,
        created_at: t.8,
    })
}

/// A version of a secret to store (see [`Meta::set_secret`]).
#[derive(Debug)]
pub struct NewSecretVersion<'a> {
    /// The vault.
    pub vault: Id,
    /// The vault's account.
    pub account: Id,
    /// The secret's id (a fresh one for a new secret).
    pub id: Id,
    /// The version this will be.
    pub version: u32,
    /// The secret's name.
    pub name: &'a str,
    /// Its content type.
    pub content_type: &'a str,
    /// The sealed value.
    pub wrapped: &'a [u8],
    /// Now (RFC 3339).
    pub at: &'a str,
}

/// One version of a key, without its material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersionRow {
    /// Version number, from 1.
    pub version: u32,
    /// `generated` or `imported`.
    pub origin: String,
    /// The public key (SubjectPublicKeyInfo DER) of an RSA version.
    pub public_key: Option<Vec<u8>>,
    /// Created.
    pub created_at: String,
}

const VAULT_COLS: &str = "t.id, t.account_id, t.name, t.region, t.soft_delete, t.retention_days, t.purge_protection, t.deleted_at, t.purge_after, t.purged_at, t.created_at, t.external_kind, t.external_address, t.external_mount, t.external_token";

type VaultTuple = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
);

fn vault_row(t: VaultTuple) -> Result<VaultRow> {
    Ok(VaultRow {
        id: parse_id(&t.0, Kind::Vault)?,
        account_id: parse_id(&t.1, Kind::Account)?,
        name: t.2,
        region: t.3,
        soft_delete: t.4 != 0,
        retention_days: u32::try_from(t.5)
            .map_err(|_| MetaError::Corrupt("vault retention".into()))?,
        purge_protection: t.6 != 0,
        deleted_at: t.7,
        purge_after: t.8,
        purged_at: t.9,
        created_at: t.10,
        external: match (t.11, t.12, t.13, t.14) {
            (Some(kind), Some(address), Some(mount), Some(token)) => Some(ExternalStore {
                kind,
                address,
                mount,
                token,
            }),
            (None, None, None, None) => None,
            _ => return Err(MetaError::Corrupt("half an external key store".into())),
        },
    })
}

async fn bump_epoch(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
    sqlx::query("UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn one(done: sqlx::any::AnyQueryResult, what: String) -> Result<()> {
    if done.rows_affected() == 0 {
        Err(MetaError::NotFound(what))
    } else {
        Ok(())
    }
}

impl Meta {
    /// Create a vault ([`MetaError::NameTaken`] if the account has one of
    /// that name, deleted but not purged included).
    pub async fn insert_vault(&self, v: &VaultRow) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO vaults (id, account_id, name, region, soft_delete, retention_days, purge_protection, created_at, \
             external_kind, external_address, external_mount, external_token) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
        )
        .bind(v.id.to_string())
        .bind(v.account_id.to_string())
        .bind(&v.name)
        .bind(&v.region)
        .bind(i64::from(v.soft_delete))
        .bind(i64::from(v.retention_days))
        .bind(i64::from(v.purge_protection))
        .bind(&v.created_at)
        .bind(v.external.as_ref().map(|e| e.kind.clone()))
        .bind(v.external.as_ref().map(|e| e.address.clone()))
        .bind(v.external.as_ref().map(|e| e.mount.clone()))
        .bind(v.external.as_ref().map(|e| e.token.clone()))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(MetaError::NameTaken {
                kind: Kind::Vault,
                account: v.account_id,
                name: v.name.clone(),
            })
        }
    }

    /// A vault by id (purged ones too: they are tombstones).
    pub async fn vault(&self, id: Id) -> Result<Option<VaultRow>> {
        let row: Option<VaultTuple> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {VAULT_COLS} FROM vaults t WHERE t.id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(vault_row).transpose()
    }

    /// One page of vaults: live ones, or (`deleted`) soft-deleted ones;
    /// purged vaults are never listed.
    pub async fn list_vaults_page(&self, f: &ListFilter, deleted: bool) -> Result<Vec<VaultRow>> {
        let mut binds = vec![];
        let Some(clause) = clause(f, &mut binds) else {
            return Ok(vec![]);
        };
        let state = if deleted {
            "t.deleted_at IS NOT NULL AND t.purged_at IS NULL"
        } else {
            "t.deleted_at IS NULL"
        };
        let clause = if clause.is_empty() {
            format!("WHERE {state}")
        } else {
            format!("{clause} AND {state}")
        };
        let sql = format!(
            "SELECT {VAULT_COLS} FROM vaults t {clause} ORDER BY t.created_at, t.id LIMIT {}",
            f.limit
        );
        let rows: Vec<VaultTuple> = bound(sqlx::query_as(AssertSqlSafe(sql)), &binds)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(vault_row).collect()
    }

    /// Change a vault's protection settings.
    pub async fn set_vault_protection(
        &self,
        id: Id,
        soft_delete: bool,
        purge_protection: bool,
        retention_days: u32,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE vaults SET soft_delete = $1, purge_protection = $2, retention_days = $3 WHERE id = $4 AND purged_at IS NULL",
        )
        .bind(i64::from(soft_delete))
        .bind(i64::from(purge_protection))
        .bind(i64::from(retention_days))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        one(done, format!("key vault {id}"))
    }

    /// Replace the stored (root-wrapped) token of a vault's external key
    /// store.
    pub async fn set_vault_external_token(&self, id: Id, token: &[u8]) -> Result<()> {
        let done = sqlx::query(
            "UPDATE vaults SET external_token = $1 WHERE id = $2 AND external_kind IS NOT NULL AND purged_at IS NULL",
        )
        .bind(token)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        one(done, format!("external key store of vault {id}"))
    }

    /// Mark a vault deleted (its keys become unusable with it) or, with
    /// `None`, recovered.
    pub async fn set_vault_deleted(&self, id: Id, deleted: Option<(&str, &str)>) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE vaults SET deleted_at = $1, purge_after = $2 WHERE id = $3 AND purged_at IS NULL",
        )
        .bind(deleted.map(|d| d.0))
        .bind(deleted.map(|d| d.1))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        one(done, format!("key vault {id}"))?;
        bump_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Purge a vault and every key in it: the vault and keys stay as
    /// tombstones, the keys' material is destroyed, the vault's name is
    /// free again.
    pub async fn purge_vault(&self, id: Id, at: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE vaults SET purged_at = $1, import_key = NULL WHERE id = $2 AND purged_at IS NULL",
        )
        .bind(at)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        one(done, format!("key vault {id}"))?;
        sqlx::query(
            "UPDATE vault_key_versions SET wrapped_material = $1 WHERE key_id IN (SELECT id FROM vault_keys WHERE vault_id = $2)",
        )
        .bind(Vec::<u8>::new())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE vault_keys SET purged_at = $1, deleted_at = COALESCE(deleted_at, $1) WHERE vault_id = $2 AND purged_at IS NULL",
        )
        .bind(at)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE vault_secret_versions SET wrapped_value = $1 WHERE secret_id IN (SELECT id FROM vault_secrets WHERE vault_id = $2)",
        )
        .bind(Vec::<u8>::new())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE vault_secrets SET purged_at = $1, deleted_at = COALESCE(deleted_at, $1) WHERE vault_id = $2 AND purged_at IS NULL",
        )
        .bind(at)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        bump_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The vault's wrapped BYOK import key: `fresh` is stored unless the
    /// vault has one already; returns the one that is stored.
    pub async fn vault_import_key(&self, id: Id, fresh: &[u8]) -> Result<Vec<u8>> {
        sqlx::query("UPDATE vaults SET import_key = $1 WHERE id = $2 AND import_key IS NULL")
            .bind(fresh)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        sqlx::query_scalar::<_, Option<Vec<u8>>>("SELECT import_key FROM vaults WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .flatten()
            .ok_or_else(|| MetaError::NotFound(format!("key vault {id}")))
    }

    /// Create a customer key with its version 1 ([`MetaError::NameTaken`]
    /// if the vault has a key of that name, deleted but not purged
    /// included).
    pub async fn insert_customer_key(
        &self,
        k: &VaultKeyRow,
        wrapped_v1: &[u8],
        v1: &KeyVersionRow,
    ) -> Result<()> {
        let vault = k
            .vault_id
            .ok_or_else(|| MetaError::Corrupt("a customer key needs a vault".into()))?;
        let account = k
            .account_id
            .ok_or_else(|| MetaError::Corrupt("a customer key needs an account".into()))?;
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "INSERT INTO vault_keys (id, region, purpose, account_id, vault_id, name, key_type, state, current_version, not_before, expires_at, rotation_days, created_at) \
             VALUES ($1, $2, 'customer', $3, $4, $5, $6, $7, 1, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
        )
        .bind(k.id.to_string())
        .bind(&k.region)
        .bind(account.to_string())
        .bind(vault.to_string())
        .bind(&k.name)
        .bind(&k.key_type)
        .bind(k.state.as_str())
        .bind(&k.not_before)
        .bind(&k.expires_at)
        .bind(k.rotation_days.map(i64::from))
        .bind(&k.created_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(MetaError::NameTaken {
                kind: Kind::Key,
                account,
                name: k.name.clone(),
            });
        }
        insert_version_tx(&mut tx, k.id, 1, wrapped_v1, v1).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One page of a vault's keys after `after` (created_at, id): live
    /// ones, or (`deleted`) soft-deleted ones.
    pub async fn list_keys_page(
        &self,
        vault: Id,
        deleted: bool,
        after: Option<(String, String)>,
        limit: u32,
    ) -> Result<Vec<VaultKeyRow>> {
        let state = if deleted {
            "deleted_at IS NOT NULL AND purged_at IS NULL"
        } else {
            "deleted_at IS NULL"
        };
        let (at, id) = after.unwrap_or_default();
        let rows: Vec<KeyTuple> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {KEY_COLS} FROM vault_keys WHERE vault_id = $1 AND {state} \
             AND (created_at > $2 OR (created_at = $2 AND id > $3)) ORDER BY created_at, id LIMIT {limit}"
        )))
        .bind(vault.to_string())
        .bind(at)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(key_row).collect()
    }

    /// A key's versions, oldest first, without material.
    pub async fn key_versions(&self, key: Id) -> Result<Vec<KeyVersionRow>> {
        let rows: Vec<(i64, String, Option<Vec<u8>>, String)> = sqlx::query_as(
            "SELECT version, origin, public_key, created_at FROM vault_key_versions WHERE key_id = $1 ORDER BY version",
        )
        .bind(key.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(KeyVersionRow {
                    version: u32::try_from(r.0)
                        .map_err(|_| MetaError::Corrupt("key version".into()))?,
                    origin: r.1,
                    public_key: r.2,
                    created_at: r.3,
                })
            })
            .collect()
    }

    /// Add a version to a live key and make it current; returns its number.
    pub async fn add_key_version(&self, key: Id, wrapped: &[u8], v: &KeyVersionRow) -> Result<u32> {
        let mut tx = self.begin().await?;
        let n: Option<i64> = sqlx::query_scalar(
            "UPDATE vault_keys SET current_version = current_version + 1 WHERE id = $1 AND deleted_at IS NULL RETURNING current_version",
        )
        .bind(key.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let n = n.ok_or_else(|| MetaError::NotFound(format!("key {key}")))?;
        let n = u32::try_from(n).map_err(|_| MetaError::Corrupt("key version".into()))?;
        insert_version_tx(&mut tx, key, n, wrapped, v).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Keys with a rotation period that are usable as far as their own row
    /// says (enabled, not deleted or purged): each with its period in days
    /// and when its newest version was made (RFC 3339). The caller decides
    /// which are due.
    pub async fn keys_with_rotation(&self) -> Result<Vec<(VaultKeyRow, u32, String)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT k.id, v.created_at FROM vault_keys k \
             JOIN vault_key_versions v ON v.key_id = k.id AND v.version = k.current_version \
             WHERE k.rotation_days IS NOT NULL AND k.deleted_at IS NULL AND k.purged_at IS NULL \
             AND k.state = 'enabled' ORDER BY k.id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, at) in rows {
            let k = self.vault_key(parse_id(&id, Kind::Key)?).await?;
            if let Some(days) = k.rotation_days {
                out.push((k, days, at));
            }
        }
        Ok(out)
    }

    /// Add version `expected + 1` of `key` if its current version is still
    /// `expected` (a rotation policy run by several nodes at once adds one
    /// version, not one per node). Returns the new version, or `None` if
    /// another rotation came first.
    pub async fn add_key_version_if(
        &self,
        key: Id,
        expected: u32,
        wrapped: &[u8],
        v: &KeyVersionRow,
    ) -> Result<Option<u32>> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE vault_keys SET current_version = current_version + 1 WHERE id = $1 AND current_version = $2 AND deleted_at IS NULL",
        )
        .bind(key.to_string())
        .bind(i64::from(expected))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        insert_version_tx(&mut tx, key, expected + 1, wrapped, v).await?;
        tx.commit().await?;
        Ok(Some(expected + 1))
    }

    /// Change a key's state and validity settings.
    pub async fn update_key(
        &self,
        key: Id,
        state: KeyState,
        not_before: Option<&str>,
        expires_at: Option<&str>,
        rotation_days: Option<u32>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE vault_keys SET state = $1, not_before = $2, expires_at = $3, rotation_days = $4 WHERE id = $5 AND purged_at IS NULL",
        )
        .bind(state.as_str())
        .bind(not_before)
        .bind(expires_at)
        .bind(rotation_days.map(i64::from))
        .bind(key.to_string())
        .execute(&mut *tx)
        .await?;
        one(done, format!("key {key}"))?;
        bump_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Mark a key deleted (`Some((deleted_at, purge_after))`) or recovered.
    pub async fn set_key_deleted(&self, key: Id, deleted: Option<(&str, &str)>) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE vault_keys SET deleted_at = $1, purge_after = $2 WHERE id = $3 AND purged_at IS NULL",
        )
        .bind(deleted.map(|d| d.0))
        .bind(deleted.map(|d| d.1))
        .bind(key.to_string())
        .execute(&mut *tx)
        .await?;
        one(done, format!("key {key}"))?;
        bump_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Purge a key: its material is destroyed, its row stays as a
    /// tombstone so references to it fail with "purged".
    pub async fn purge_key(&self, key: Id, at: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE vault_keys SET purged_at = $1, deleted_at = COALESCE(deleted_at, $1) WHERE id = $2 AND purged_at IS NULL",
        )
        .bind(at)
        .bind(key.to_string())
        .execute(&mut *tx)
        .await?;
        one(done, format!("key {key}"))?;
        sqlx::query("UPDATE vault_key_versions SET wrapped_material = $1 WHERE key_id = $2")
            .bind(Vec::<u8>::new())
            .bind(key.to_string())
            .execute(&mut *tx)
            .await?;
        bump_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn insert_version_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    key: Id,
    version: u32,
    wrapped: &[u8],
    v: &KeyVersionRow,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO vault_key_versions (key_id, version, wrapped_material, created_at, public_key, origin) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(key.to_string())
    .bind(i64::from(version))
    .bind(wrapped)
    .bind(&v.created_at)
    .bind(v.public_key.clone())
    .bind(&v.origin)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Meta {
    /// Store version `v.version` of the secret `v.name` of a vault: a new
    /// secret (version 1, id `v.id`) or the next version of the live one of
    /// that name. [`MetaError::Conflict`], with nothing stored, if the
    /// version stored would not be `(v.id, v.version)` (a concurrent set
    /// won, or a soft-deleted secret holds the name).
    pub async fn set_secret(&self, v: &NewSecretVersion<'_>) -> Result<SecretRow> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO vault_secrets (id, vault_id, account_id, name, current_version, content_type, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $6, $6) ON CONFLICT DO NOTHING",
        )
        .bind(v.id.to_string())
        .bind(v.vault.to_string())
        .bind(v.account.to_string())
        .bind(v.name)
        .bind(v.content_type)
        .bind(v.at)
        .execute(&mut *tx)
        .await?;
        let row: Option<SecretTuple> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE vault_secrets SET current_version = current_version + 1, content_type = $1, updated_at = $2 \
             WHERE vault_id = $3 AND name = $4 AND purged_at IS NULL AND deleted_at IS NULL RETURNING {SECRET_COLS}"
        )))
        .bind(v.content_type)
        .bind(v.at)
        .bind(v.vault.to_string())
        .bind(v.name)
        .fetch_optional(&mut *tx)
        .await?;
        let row = row.map(secret_row).transpose()?;
        let Some(row) = row.filter(|r| (r.id, r.current_version) == (v.id, v.version)) else {
            return Err(MetaError::Conflict(format!(
                "the secret '{}' changed while it was being set: set it again",
                v.name
            )));
        };
        sqlx::query(
            "INSERT INTO vault_secret_versions (secret_id, version, wrapped_value, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(row.id.to_string())
        .bind(i64::from(row.current_version))
        .bind(v.wrapped)
        .bind(v.at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// The live or soft-deleted (not purged) secret of a vault named `name`.
    pub async fn secret_by_name(&self, vault: Id, name: &str) -> Result<Option<SecretRow>> {
        let row: Option<SecretTuple> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {SECRET_COLS} FROM vault_secrets WHERE vault_id = $1 AND name = $2 AND purged_at IS NULL"
        )))
        .bind(vault.to_string())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(secret_row).transpose()
    }

    /// A secret by id (purged ones too: tombstones).
    pub async fn secret(&self, id: Id) -> Result<Option<SecretRow>> {
        let row: Option<SecretTuple> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {SECRET_COLS} FROM vault_secrets WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(secret_row).transpose()
    }

    /// One page of a vault's secrets after `after` (created_at, id): live
    /// ones, or (`deleted`) soft-deleted ones.
    pub async fn list_secrets_page(
        &self,
        vault: Id,
        deleted: bool,
        after: Option<(String, String)>,
        limit: u32,
    ) -> Result<Vec<SecretRow>> {
        let state = if deleted {
            "deleted_at IS NOT NULL AND purged_at IS NULL"
        } else {
            "deleted_at IS NULL"
        };
        let (at, id) = after.unwrap_or_default();
        let rows: Vec<SecretTuple> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {SECRET_COLS} FROM vault_secrets WHERE vault_id = $1 AND {state} \
             AND (created_at > $2 OR (created_at = $2 AND id > $3)) ORDER BY created_at, id LIMIT {limit}"
        )))
        .bind(vault.to_string())
        .bind(at)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(secret_row).collect()
    }

    /// The wrapped value of one version of a secret (empty once purged).
    pub async fn secret_value(&self, id: Id, version: u32) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(
            "SELECT wrapped_value FROM vault_secret_versions WHERE secret_id = $1 AND version = $2",
        )
        .bind(id.to_string())
        .bind(i64::from(version))
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Mark a secret deleted (`Some((deleted_at, purge_after))`) or
    /// recovered.
    pub async fn set_secret_deleted(&self, id: Id, deleted: Option<(&str, &str)>) -> Result<()> {
        let done = sqlx::query(
            "UPDATE vault_secrets SET deleted_at = $1, purge_after = $2 WHERE id = $3 AND purged_at IS NULL",
        )
        .bind(deleted.map(|d| d.0))
        .bind(deleted.map(|d| d.1))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        one(done, format!("secret {id}"))
    }

    /// Purge a secret: every version's value is destroyed, the row stays.
    pub async fn purge_secret(&self, id: Id, at: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE vault_secrets SET purged_at = $1, deleted_at = COALESCE(deleted_at, $1) WHERE id = $2 AND purged_at IS NULL",
        )
        .bind(at)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        one(done, format!("secret {id}"))?;
        sqlx::query("UPDATE vault_secret_versions SET wrapped_value = $1 WHERE secret_id = $2")
            .bind(Vec::<u8>::new())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Meta {
    /// Create a disk encryption set and its managed identity (a principal
    /// of kind `managed` in the set's account) in one transaction.
    pub async fn insert_encryption_set(
        &self,
        set: &EncryptionSetRow,
        identity: &crate::PrincipalRow,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO principals (id, account_id, name, kind, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(identity.id.to_string())
        .bind(identity.account_id.to_string())
        .bind(&identity.name)
        .bind(identity.kind.as_str())
        .bind(&identity.created_at)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "INSERT INTO encryption_sets (id, account_id, name, region, key_id, key_version, encryption_type, identity_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(set.id.to_string())
        .bind(set.account_id.to_string())
        .bind(&set.name)
        .bind(&set.region)
        .bind(set.key_id.to_string())
        .bind(set.key_version.map(i64::from))
        .bind(set.encryption_type.as_str())
        .bind(set.identity_id.to_string())
        .bind(&set.created_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(MetaError::NameTaken {
                kind: Kind::EncryptionSet,
                account: set.account_id,
                name: set.name.clone(),
            });
        }
        tx.commit().await?;
        Ok(())
    }

    /// A disk encryption set by id.
    pub async fn encryption_set(&self, id: Id) -> Result<Option<EncryptionSetRow>> {
        let row: Option<SetTuple> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {SET_COLS} FROM encryption_sets t WHERE t.id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(set_row).transpose()
    }

    /// One page of disk encryption sets.
    pub async fn list_encryption_sets_page(&self, f: &ListFilter) -> Result<Vec<EncryptionSetRow>> {
        let mut binds = vec![];
        let Some(clause) = clause(f, &mut binds) else {
            return Ok(vec![]);
        };
        let sql = format!(
            "SELECT {SET_COLS} FROM encryption_sets t {clause} ORDER BY t.created_at, t.id LIMIT {}",
            f.limit
        );
        let rows: Vec<SetTuple> = bound(sqlx::query_as(AssertSqlSafe(sql)), &binds)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(set_row).collect()
    }

    /// How many disks and snapshots are under the set (through their
    /// volumes' DEKs).
    pub async fn encryption_set_users(&self, id: Id) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM disks t JOIN volumes v ON v.id = t.volume_id JOIN deks k ON k.id = v.dek_id WHERE k.encryption_set_id = $1) \
             + (SELECT COUNT(*) FROM snapshots t JOIN volumes v ON v.id = t.volume_id JOIN deks k ON k.id = v.dek_id WHERE k.encryption_set_id = $1)",
        )
        .bind(id.to_string())
        .fetch_one(&self.pool)
        .await?;
        crate::to_u64(n)
    }

    /// Point a set at another key or version.
    pub async fn update_encryption_set(&self, id: Id, key: Id, version: Option<u32>) -> Result<()> {
        let done =
            sqlx::query("UPDATE encryption_sets SET key_id = $1, key_version = $2 WHERE id = $3")
                .bind(key.to_string())
                .bind(version.map(i64::from))
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
        one(done, format!("encryption set {id}"))
    }

    /// Delete a set, its managed identity and the identity's role
    /// assignments, in one transaction.
    pub async fn delete_encryption_set(&self, set: &EncryptionSetRow) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM encryption_sets WHERE id = $1")
            .bind(set.id.to_string())
            .execute(&mut *tx)
            .await?;
        one(done, format!("encryption set {}", set.id))?;
        for sql in [
            "DELETE FROM role_assignments WHERE principal_id = $1",
            "DELETE FROM principals WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(set.identity_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        bump_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
