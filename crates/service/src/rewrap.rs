//! Rotation re-wraps, never rewrites (seed 001's encryption scope, W1.5).
//! When a key is rotated, or an encryption set is pointed at another key or
//! version, every DEK made through a set whose key (pinned version, or the
//! key's newest) no longer wraps it is re-wrapped in the background: its
//! plaintext is unwrapped under the old version and wrapped under the new,
//! and the row's wrap replaced in one transaction per batch (compare and
//! swap on the old wrap, so several nodes doing it at once is harmless).
//! The DEK itself does not change, so no data object is read or rewritten,
//! open volumes keep their unwrapped DEKs, and old versions keep unwrapping
//! until nothing depends on them.
//!
//! The re-wrap acts as the set's managed identity, which must still reach
//! both keys; a set whose identity or key may not be used is skipped and
//! retried on the next pass (`coffer encryption-set show` reports its
//! progress). Each batch leaves one audit record per set (`key.rewrap`,
//! the identity, the target version, how many DEKs). A pass runs at once
//! when this node rotates a key or updates a set, and every
//! [`REWRAP_INTERVAL`] otherwise (so a rotation through another node, or one
//! interrupted by a crash, is finished by whichever node runs next).
//!
//! The same task applies keys' **rotation policies** (`rotation_days`):
//! a key whose newest version is that old gets a new one, by compare and
//! swap on its current version so that nodes running the policy at once
//! add one version between them.

use std::sync::Arc;
use std::time::Duration;

use coffer_meta::{AuditRecord, EncryptionSetRow};

use crate::*;

/// How often a node looks for DEKs left to re-wrap, besides right after a
/// rotation or set update of its own.
pub const REWRAP_INTERVAL: Duration = Duration::from_secs(5);

/// DEKs re-wrapped per transaction.
const REWRAP_BATCH: u32 = 500;

impl Service {
    /// Re-wrap in the background: a pass when woken, and every
    /// [`REWRAP_INTERVAL`].
    pub fn spawn_rewrap(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(REWRAP_INTERVAL, me.rewrap_wake.notified()).await;
                if let Err(e) = me.rotate_due_keys().await {
                    tracing::warn!(error = %e.message, "cannot apply key rotation policies");
                }
                if let Err(e) = me.rewrap_pass().await {
                    tracing::warn!(error = %e.message, "cannot re-wrap data keys");
                }
            }
        })
    }

    /// One pass of [`Service::spawn_rewrap`]: re-wrap every DEK whose set's
    /// key now names another key or version. Returns how many were
    /// re-wrapped (by this pass; a set that cannot be served is skipped).
    pub async fn rewrap_pass(&self) -> Result<u64> {
        let mut done = 0;
        for set_id in self.meta.sets_behind().await? {
            let Some(set) = self.meta.encryption_set(set_id).await? else {
                continue;
            };
            match self.rewrap_set(&set).await {
                Ok(n) => done += n,
                Err(e) => {
                    tracing::warn!(set = %set.id, error = %e.message, "encryption set not re-wrapped; retried on the next pass");
                }
            }
        }
        Ok(done)
    }

    /// The key version a set's DEKs should be wrapped under now.
    pub(crate) fn set_target(set: &EncryptionSetRow, key: &coffer_meta::VaultKeyRow) -> u32 {
        set.key_version.unwrap_or(key.current_version)
    }

    async fn rewrap_set(&self, set: &EncryptionSetRow) -> Result<u64> {
        let key = self.meta.vault_key(set.key_id).await?;
        let version = Self::set_target(set, &key);
        if let Some(why) = self.key_unusable(&key).await? {
            return Err(ServiceError::new(
                ErrorCode::KeyUnusable,
                format!("key {} is {why}", key.id),
            ));
        }
        if !self.identity_has_key_access(set).await? {
            return Err(ServiceError::new(
                ErrorCode::KeyUnusable,
                format!(
                    "the identity {} of encryption set {} may not use key {}",
                    set.identity_id, set.id, key.id
                ),
            ));
        }
        let mut total = 0;
        loop {
            let behind = self
                .meta
                .deks_behind(set.id, key.id, version, REWRAP_BATCH)
                .await?;
            if behind.is_empty() {
                break;
            }
            let mut rewrapped = Vec::with_capacity(behind.len());
            let mut failed = None;
            for (row, wrapped) in self.vault.rewrap_many(behind, &key, version).await? {
                match wrapped {
                    Ok(w) => rewrapped.push((row, w)),
                    // The old key gone or disabled: this DEK cannot move
                    // until it is back; the others still can.
                    Err(e) => failed = Some((row.id, row.kek_id, e)),
                }
            }
            let n = self.meta.rewrap_deks(&rewrapped, key.id, version).await?;
            total += n;
            if n > 0 {
                self.vault
                    .audit()
                    .record(&AuditRecord {
                        principal: set.identity_id.to_string(),
                        acting_for: "rotation".into(),
                        action: "key.rewrap".into(),
                        key: Some(key.id),
                        key_version: Some(version),
                        resource: set.id.to_string(),
                        outcome: "allowed".into(),
                        detail: format!(
                            "{n} data keys of encryption set {} re-wrapped; no data rewritten",
                            set.id
                        ),
                    })
                    .await?;
            }
            if let Some((dek, kek, e)) = failed {
                return Err(ServiceError::new(
                    ErrorCode::KeyUnusable,
                    format!(
                        "data key {dek} cannot be unwrapped under key {kek} to re-wrap it: {e}"
                    ),
                ));
            }
            if n == 0 {
                // Another node got there first; its rows are no longer
                // behind, so the next query moves on.
                tokio::task::yield_now().await;
            }
        }
        if total > 0 {
            tracing::info!(set = %set.id, key = %key.id, version, deks = total, "data keys re-wrapped");
        }
        Ok(total)
    }

    /// Apply rotation policies: every usable key whose newest version is
    /// `rotation_days` old or older gets a new version (made in the vault,
    /// or by its external transit engine), recorded as done by the policy;
    /// the re-wrap that follows moves the data keys of sets that follow
    /// the key. Returns the keys rotated.
    pub async fn rotate_due_keys(&self) -> Result<Vec<Id>> {
        let now = std::time::SystemTime::now();
        let mut rotated = Vec::new();
        for (k, days, made) in self.meta.keys_with_rotation().await? {
            let Ok(made) = humantime::parse_rfc3339_weak(&made) else {
                continue;
            };
            let due = made + Duration::from_secs(u64::from(days) * 86_400);
            if due > now {
                continue;
            }
            match self.rotate_by_policy(&k, days).await {
                Ok(Some(version)) => {
                    tracing::info!(key = %k.id, version, days, "key rotated by its rotation policy");
                    rotated.push(k.id);
                }
                Ok(None) => {}
                // One key's engine or token out of reach does not hold up
                // the others; it is retried on the next pass.
                Err(e) => {
                    tracing::warn!(key = %k.id, error = %e.message, "rotation policy not applied; retried on the next pass");
                }
            }
        }
        if !rotated.is_empty() {
            self.wake_rewrap();
        }
        Ok(rotated)
    }

    /// Rotate key `k` for its policy of `days`: a new version, audited.
    /// `None` if another node rotated it first, or it may not be rotated
    /// now (its vault deleted).
    async fn rotate_by_policy(
        &self,
        k: &coffer_meta::VaultKeyRow,
        days: u32,
    ) -> Result<Option<u32>> {
        let Some(vault) = (match k.vault_id {
            Some(v) => self.meta.vault(v).await?,
            None => None,
        }) else {
            return Ok(None);
        };
        if vault.deleted_at.is_some() || vault.purged_at.is_some() {
            return Ok(None);
        }
        let version = if let Some(t) = self.vault.transit(&vault).await? {
            let latest = t.rotate(&k.name).await?;
            let mut current = k.current_version;
            while current < latest {
                current = self
                    .meta
                    .add_key_version(k.id, &[], &crate::vaults::external_version())
                    .await?;
            }
            Some(current)
        } else if vault.external.as_ref().is_some_and(|e| e.kind == "pkcs11") {
            self.vault
                .token_key(&vault, k.id, k.current_version + 1)
                .await?;
            self.meta
                .add_key_version_if(
                    k.id,
                    k.current_version,
                    &[],
                    &crate::vaults::external_version(),
                )
                .await?
        } else {
            let alg = coffer_crypto::keys::KeyAlgorithm::parse(&k.key_type)
                .map_err(|e| ServiceError::internal(format!("key {}: {e}", k.id)))?;
            let nv = self.vault.generate_version(&k.region, alg).await?;
            self.meta
                .add_key_version_if(k.id, k.current_version, &nv.wrapped, &nv.row)
                .await?
        };
        let Some(version) = version else {
            return Ok(None);
        };
        self.vault
            .audit()
            .record(&AuditRecord {
                principal: "rotation-policy".into(),
                acting_for: "rotation-policy".into(),
                action: "key.rotate".into(),
                key: Some(k.id),
                key_version: Some(version),
                resource: k.id.to_string(),
                outcome: "allowed".into(),
                detail: format!("the key's rotation period of {days} days had passed"),
            })
            .await?;
        Ok(Some(version))
    }

    /// Wake the re-wrap task (after a rotation or a set update here).
    pub(crate) fn wake_rewrap(&self) {
        self.rewrap_wake.notify_one();
    }
}
