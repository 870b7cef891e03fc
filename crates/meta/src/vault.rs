//! Rows of the built-in key vault (keys and their versions, material always
//! wrapped) and of DEKs (wrapped DEK, nonce counter).

use std::ops::Range;

use coffer_types::{Id, Kind};

use crate::nodes::{Holder, check_holder_tx, insert_reservation_tx};
use crate::{Meta, MetaError, Result, now, parse_id, to_i64, to_u64};

/// A vault key: a platform key (no vault) or a customer key of a vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultKeyRow {
    /// Id.
    pub id: Id,
    /// Region.
    pub region: String,
    /// `platform` or `customer`.
    pub purpose: String,
    /// The owning account (customer keys).
    pub account_id: Option<Id>,
    /// The vault (customer keys).
    pub vault_id: Option<Id>,
    /// Name.
    pub name: String,
    /// `AES256`, `RSA2048`, `RSA3072` or `RSA4096`.
    pub key_type: String,
    /// `enabled` or `disabled`.
    pub state: coffer_types::KeyState,
    /// Version used for new wraps.
    pub current_version: u32,
    /// Not usable before this time (RFC 3339).
    pub not_before: Option<String>,
    /// Not usable from this time (RFC 3339).
    pub expires_at: Option<String>,
    /// Rotate this many days after the newest version.
    pub rotation_days: Option<u32>,
    /// When it was soft-deleted.
    pub deleted_at: Option<String>,
    /// When a soft-deleted key may be purged (and is, at the latest).
    pub purge_after: Option<String>,
    /// When it was purged (its material is gone).
    pub purged_at: Option<String>,
    /// Created.
    pub created_at: String,
}

/// What [`Meta::region_root_samples`] finds.
#[derive(Debug, Clone, Default)]
pub struct RootSamples {
    /// Key material wrapped by the root key.
    pub material: Option<Vec<u8>>,
    /// An external key store's credential wrapped by the root key.
    pub external_token: Option<Vec<u8>>,
    /// A vault's import key wrapped by the root key.
    pub import_key: Option<Vec<u8>>,
    /// A secret's sealed value (its data key wrapped by the root key).
    pub secret: Option<Vec<u8>>,
}

/// A DEK: its wrapped bytes and the KEK version that wraps them.
#[derive(Debug, Clone)]
pub struct DekRow {
    /// Id.
    pub id: Id,
    /// Wrapping key.
    pub kek_id: Id,
    /// Wrapping key version.
    pub kek_version: u32,
    /// DEK wrapped under the KEK.
    pub wrapped: Vec<u8>,
    /// The disk encryption set it was made through (customer keys).
    pub encryption_set_id: Option<Id>,
}

pub(crate) const KEY_COLS: &str = "id, region, purpose, account_id, vault_id, name, key_type, state, current_version, not_before, expires_at, rotation_days, deleted_at, purge_after, purged_at, created_at";

pub(crate) type KeyTuple = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

fn to_u32(v: i64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| MetaError::Corrupt(format!("stored {what} {v}")))
}

pub(crate) fn key_row(t: KeyTuple) -> Result<VaultKeyRow> {
    Ok(VaultKeyRow {
        id: parse_id(&t.0, Kind::Key)?,
        region: t.1,
        purpose: t.2,
        account_id: t.3.map(|a| parse_id(&a, Kind::Account)).transpose()?,
        vault_id: t.4.map(|v| parse_id(&v, Kind::Vault)).transpose()?,
        name: t.5,
        key_type: t.6,
        state: crate::parse_word(&t.7)?,
        current_version: to_u32(t.8, "key version")?,
        not_before: t.9,
        expires_at: t.10,
        rotation_days: t.11.map(|d| to_u32(d, "rotation period")).transpose()?,
        deleted_at: t.12,
        purge_after: t.13,
        purged_at: t.14,
        created_at: t.15,
    })
}

impl Meta {
    /// The platform key of `region`, if created.
    pub async fn platform_key(&self, region: &str) -> Result<Option<VaultKeyRow>> {
        let row: Option<KeyTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLS} FROM vault_keys WHERE region = $1 AND purpose = 'platform'"
        )))
        .bind(region)
        .fetch_optional(&self.pool)
        .await?;
        row.map(key_row).transpose()
    }

    /// Samples of what a root key wraps for `region`, one of each kind the
    /// region has: key material (its platform key's, or a key's of one of
    /// its built-in vaults), an external key store's credential, a vault's
    /// import key, and a secret's sealed value (whose wrapped data key the
    /// vault finds in it). Empty for a region with none of them: a root key
    /// of its own may then be given to it.
    pub async fn region_root_samples(&self, region: &str) -> Result<RootSamples> {
        let one = |sql: &'static str| {
            let pool = self.pool.clone();
            let region = region.to_string();
            async move {
                let row: Option<(Vec<u8>,)> = sqlx::query_as(sql)
                    .bind(region)
                    .fetch_optional(&pool)
                    .await?;
                Ok::<_, MetaError>(row.map(|r| r.0))
            }
        };
        Ok(RootSamples {
            material: one(
                "SELECT v.wrapped_material FROM vault_key_versions v JOIN vault_keys k ON k.id = v.key_id \
                 LEFT JOIN vaults va ON va.id = k.vault_id \
                 WHERE k.region = $1 AND (k.purpose = 'platform' OR (va.id IS NOT NULL AND va.external_kind IS NULL)) \
                 AND LENGTH(v.wrapped_material) > 0 ORDER BY k.purpose DESC LIMIT 1",
            )
            .await?,
            external_token: one(
                "SELECT external_token FROM vaults WHERE region = $1 AND external_token IS NOT NULL \
                 AND LENGTH(external_token) > 0 LIMIT 1",
            )
            .await?,
            import_key: one(
                "SELECT import_key FROM vaults WHERE region = $1 AND import_key IS NOT NULL LIMIT 1",
            )
            .await?,
            secret: one(
                "SELECT s.wrapped_value FROM vault_secret_versions s JOIN vault_secrets x ON x.id = s.secret_id \
                 JOIN vaults va ON va.id = x.vault_id WHERE va.region = $1 AND LENGTH(s.wrapped_value) > 0 LIMIT 1",
            )
            .await?,
        })
    }

    /// A vault key by id.
    pub async fn vault_key(&self, id: Id) -> Result<VaultKeyRow> {
        let row: Option<KeyTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLS} FROM vault_keys WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(key_row)
            .transpose()?
            .ok_or_else(|| MetaError::NotFound(format!("key {id}")))
    }

    /// Create a platform key with its first version. Returns false (and
    /// stores nothing) if `region` already has one, e.g. created by another
    /// node at the same moment.
    pub async fn insert_platform_key(
        &self,
        id: Id,
        region: &str,
        wrapped_v1: &[u8],
    ) -> Result<bool> {
        let ts = now();
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO vault_keys (id, region, purpose, account_id, name, state, current_version, created_at) \
             VALUES ($1, $2, 'platform', NULL, $3, 'enabled', 1, $4) ON CONFLICT DO NOTHING",
        )
        .bind(id.to_string())
        .bind(region)
        .bind(format!("platform-{region}"))
        .bind(&ts)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO vault_key_versions (key_id, version, wrapped_material, created_at) VALUES ($1, 1, $2, $3)")
            .bind(id.to_string())
            .bind(wrapped_v1)
            .bind(&ts)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The wrapped material of one key version.
    pub async fn key_version_material(&self, key: Id, version: u32) -> Result<Vec<u8>> {
        sqlx::query_scalar(
            "SELECT wrapped_material FROM vault_key_versions WHERE key_id = $1 AND version = $2",
        )
        .bind(key.to_string())
        .bind(i64::from(version))
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| MetaError::NotFound(format!("key {key} version {version}")))
    }

    /// Store a new DEK (wrapped).
    pub async fn insert_dek(&self, dek: &DekRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO deks (id, kek_id, kek_version, wrapped, next_counter, created_at, encryption_set_id) VALUES ($1, $2, $3, $4, 0, $5, $6)",
        )
        .bind(dek.id.to_string())
        .bind(dek.kek_id.to_string())
        .bind(i64::from(dek.kek_version))
        .bind(&dek.wrapped)
        .bind(now())
        .bind(dek.encryption_set_id.map(|s| s.to_string()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Delete DEKs `ids` that no volume names (made for a resource whose
    /// creation then failed): their wrapped key material does not stay
    /// behind. Returns how many went.
    pub async fn forget_unused_deks(&self, ids: &[Id]) -> Result<u64> {
        let mut n = 0;
        for id in ids {
            n += sqlx::query(
                "DELETE FROM deks WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM volumes WHERE dek_id = $1 OR dek2_id = $1) AND NOT EXISTS (SELECT 1 FROM extents WHERE dek_id = $1 OR dek2_id = $1)",
            )
            .bind(id.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(n)
    }

    /// Move volume `vol` from write DEK `old` (of either layer) to `new`,
    /// if `old` is still one of its write DEKs; returns whether it moved.
    /// What the volume sealed under `old` stays readable: each extent names
    /// the DEK of its object.
    pub async fn replace_write_dek(&self, vol: Id, old: Id, new: Id) -> Result<bool> {
        let moved = sqlx::query(
            "UPDATE volumes SET \
             dek_id = CASE WHEN dek_id = $2 THEN $3 ELSE dek_id END, \
             dek2_id = CASE WHEN dek2_id = $2 THEN $3 ELSE dek2_id END \
             WHERE id = $1 AND (dek_id = $2 OR dek2_id = $2)",
        )
        .bind(vol.to_string())
        .bind(old.to_string())
        .bind(new.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(moved == 1)
    }

    /// How many objects have been sealed under DEK `id`
    /// (`deks.objects_sealed`, counted by commits).
    pub async fn dek_objects_sealed(&self, id: Id) -> Result<u64> {
        let n: Option<i64> = sqlx::query_scalar("SELECT objects_sealed FROM deks WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let n = n.ok_or_else(|| MetaError::NotFound(format!("data key {id}")))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// A DEK by id.
    pub async fn dek(&self, id: Id) -> Result<DekRow> {
        let row: Option<(String, i64, Vec<u8>, Option<String>)> = sqlx::query_as(
            "SELECT kek_id, kek_version, wrapped, encryption_set_id FROM deks WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let (kek, v, wrapped, set) =
            row.ok_or_else(|| MetaError::NotFound(format!("data key {id}")))?;
        Ok(DekRow {
            id,
            kek_id: parse_id(&kek, Kind::Key)?,
            kek_version: u32::try_from(v).map_err(|_| MetaError::Corrupt("kek version".into()))?,
            wrapped,
            encryption_set_id: set.map(|s| parse_id(&s, Kind::EncryptionSet)).transpose()?,
        })
    }

    /// Encryption sets with at least one DEK not wrapped by the set's key
    /// at the version it now names (its pinned version, or the key's
    /// newest): the sets a rotation or a repointing left to re-wrap.
    pub async fn sets_behind(&self) -> Result<Vec<Id>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT s.id FROM encryption_sets s JOIN vault_keys k ON k.id = s.key_id \
             JOIN deks d ON d.encryption_set_id = s.id \
             WHERE d.kek_id <> s.key_id OR d.kek_version <> COALESCE(s.key_version, k.current_version) \
             ORDER BY s.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|s| parse_id(s, Kind::EncryptionSet))
            .collect()
    }

    /// Up to `limit` DEKs of set `set` not wrapped by `key` at `version`.
    pub async fn deks_behind(
        &self,
        set: Id,
        key: Id,
        version: u32,
        limit: u32,
    ) -> Result<Vec<DekRow>> {
        let rows: Vec<(String, String, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, kek_id, kek_version, wrapped FROM deks \
             WHERE encryption_set_id = $1 AND (kek_id <> $2 OR kek_version <> $3) ORDER BY id LIMIT $4",
        )
        .bind(set.to_string())
        .bind(key.to_string())
        .bind(i64::from(version))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, kek, v, wrapped)| {
                Ok(DekRow {
                    id: parse_id(&id, Kind::Dek)?,
                    kek_id: parse_id(&kek, Kind::Key)?,
                    kek_version: u32::try_from(v)
                        .map_err(|_| MetaError::Corrupt("kek version".into()))?,
                    wrapped,
                    encryption_set_id: Some(set),
                })
            })
            .collect()
    }

    /// Replace the wraps of DEKs in one transaction: each of `rewrapped`
    /// (a DEK as read, and its new wrap) is now wrapped by `key` at
    /// `version`, if it is still wrapped as it was read (another node
    /// re-wrapping the same DEK at once is harmless: one wins, both wraps
    /// hold the same DEK). Returns how many rows changed.
    pub async fn rewrap_deks(
        &self,
        rewrapped: &[(DekRow, Vec<u8>)],
        key: Id,
        version: u32,
    ) -> Result<u64> {
        let mut tx = self.begin().await?;
        let mut n = 0;
        for (old, wrapped) in rewrapped {
            n += sqlx::query(
                "UPDATE deks SET kek_id = $1, kek_version = $2, wrapped = $3 \
                 WHERE id = $4 AND kek_id = $5 AND kek_version = $6",
            )
            .bind(key.to_string())
            .bind(i64::from(version))
            .bind(wrapped)
            .bind(old.id.to_string())
            .bind(old.kek_id.to_string())
            .bind(i64::from(old.kek_version))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    /// How many DEKs set `set` has, and how many of them `key` wraps at
    /// `version`.
    pub async fn set_dek_counts(&self, set: Id, key: Id, version: u32) -> Result<(u64, u64)> {
        let (total, current): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), SUM(CASE WHEN kek_id = $2 AND kek_version = $3 THEN 1 ELSE 0 END) \
             FROM deks WHERE encryption_set_id = $1",
        )
        .bind(set.to_string())
        .bind(key.to_string())
        .bind(i64::from(version))
        .fetch_one(&self.pool)
        .await?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok((n(total), n(current.unwrap_or(0))))
    }

    /// Reserve `n` nonce counter values of DEK `id`. The reservation is
    /// committed (durably) before this returns, and no value is ever handed
    /// out twice, by this node or any other: the increment is one atomic
    /// UPDATE. This is what makes GCM nonce reuse impossible. With
    /// `holder`, the range is recorded as possibly in flight (so the orphan
    /// sweep leaves its objects alone), and the reservation fails with
    /// [`MetaError::Fenced`] unless the holder still holds its attachment.
    pub async fn reserve_counters(
        &self,
        id: Id,
        n: u64,
        holder: Option<&Holder>,
    ) -> Result<Range<u64>> {
        let n_i = to_i64(n)?;
        let mut tx = self.begin().await?;
        if let Some(h) = holder {
            check_holder_tx(&mut tx, h).await?;
        }
        let end: Option<i64> = sqlx::query_scalar(
            "UPDATE deks SET next_counter = next_counter + $1 WHERE id = $2 RETURNING next_counter",
        )
        .bind(n_i)
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let end = to_u64(end.ok_or_else(|| MetaError::NotFound(format!("data key {id}")))?)?;
        let range = end - n..end;
        if let Some(h) = holder {
            insert_reservation_tx(&mut tx, id, &range, h).await?;
        }
        tx.commit().await?;
        Ok(range)
    }
}
