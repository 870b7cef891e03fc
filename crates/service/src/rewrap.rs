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
            for row in behind {
                match self.vault.rewrap(&row, &key, version).await {
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

    /// Wake the re-wrap task (after a rotation or a set update here).
    pub(crate) fn wake_rewrap(&self) {
        self.rewrap_wake.notify_one();
    }
}
