//! Revocation of open volumes: every half second this node re-checks each
//! open disk that is under a customer key — the key usable (enabled, not
//! deleted or purged, within its validity, its vault not deleted) and the
//! encryption set's identity still holding read, wrap and unwrap on it. A
//! disk that fails is cut off at once: its volume is fenced (reads and
//! writes fail with EIO, writes not yet written back are dropped, nothing
//! more is sealed under the key) and taken out of the open set, so the next
//! NBD connection opens it afresh, through the checks at open, and works
//! again once the key is back. Every node of a deployment runs this on the
//! shared metadata, so a key disabled through one node cuts off a disk open
//! on another within the same bound.
//!
//! A key kept in an external key store (an OpenBao transit engine) has no
//! state Coffer can see change: each re-check of a disk under one unwraps
//! the disk's DEK through the engine again, so a key the customer disabled
//! there (a policy that takes Coffer's permission away, the key deleted, or
//! the engine out of reach) cuts the disk off within one re-check plus the
//! request's time (at most 5 s when the engine does not answer).
//!
//! Platform keys are never disabled through the API, so platform-key disks
//! are not re-checked: only disks that went through an encryption set's
//! checks at open here, so a node without such disks does no work.

use std::sync::Arc;
use std::time::Duration;

use crate::*;

/// How often open customer-key disks are re-checked.
pub const KEY_RECHECK: Duration = Duration::from_millis(500);

impl Service {
    /// Re-check open customer-key disks every [`KEY_RECHECK`] and cut off
    /// those whose key may no longer be used.
    pub fn spawn_key_watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(KEY_RECHECK).await;
                if let Err(e) = me.recheck_open_keys().await {
                    tracing::warn!(error = %e.message, "cannot re-check the keys of open disks");
                }
            }
        })
    }

    /// One pass of [`Service::spawn_key_watch`]; returns the disks cut off.
    pub async fn recheck_open_keys(&self) -> Result<Vec<Id>> {
        let keyed = lock(&self.customer_keyed).clone();
        if keyed.is_empty() {
            return Ok(Vec::new());
        }
        let open: Vec<(Id, Arc<coffer_volume::Volume>)> = self
            .open
            .lock()
            .await
            .iter()
            .filter(|(d, _)| keyed.contains(d))
            .map(|(d, v)| (*d, v.clone()))
            .collect();
        let mut cut = Vec::new();
        for (disk_id, v) in open {
            let Some(disk) = self.meta.disk(disk_id).await? else {
                continue;
            };
            if disk.encryption_set_id.is_none() {
                continue;
            }
            let why = match self.key_allows(&disk).await {
                Ok(()) => continue,
                Err(e) => e.message,
            };
            let mut open = self.open.lock().await;
            if open.get(&disk_id).is_some_and(|o| Arc::ptr_eq(o, &v)) {
                open.remove(&disk_id);
                v.fence();
                drop(open);
                tracing::warn!(disk = %disk_id, reason = %why, "disk cut off: its key may no longer be used");
                self.audit_cut(&disk, &why).await?;
                cut.push(disk_id);
            }
        }
        Ok(cut)
    }

    /// Record a cut-off in the audit log: a denied use of the disk's key
    /// by its set's identity, acting for the revocation watch.
    async fn audit_cut(&self, disk: &coffer_meta::DiskRow, why: &str) -> Result<()> {
        let Some(set_id) = disk.encryption_set_id else {
            return Ok(());
        };
        let Some(set) = self.meta.encryption_set(set_id).await? else {
            return Ok(());
        };
        self.vault
            .audit()
            .record(&coffer_meta::AuditRecord {
                principal: set.identity_id.to_string(),
                acting_for: "revocation".into(),
                action: "key.unwrap".into(),
                key: Some(disk.kek_id),
                key_version: None,
                resource: disk.id.to_string(),
                outcome: "denied".into(),
                detail: format!("open disk cut off: {why}"),
            })
            .await?;
        Ok(())
    }

    /// Whether the key of a customer-key disk may be used now, by its
    /// set's identity.
    async fn key_allows(&self, disk: &coffer_meta::DiskRow) -> Result<()> {
        let vol = self.meta.volume(disk.volume_id).await?;
        let mut kek = None;
        // Both layers under double encryption: the customer key's and the
        // platform key's.
        for dek in std::iter::once(vol.dek_id).chain(vol.dek2_id) {
            let row = self.vault.dek_row(dek).await?;
            let k = self.meta.vault_key(row.kek_id).await?;
            if let Some(why) = self.key_unusable(&k).await? {
                return Err(ServiceError::new(
                    ErrorCode::KeyUnusable,
                    format!("key {} is {why}", k.id),
                ));
            }
            kek.get_or_insert(k);
        }
        let kek = kek.expect("a volume has a DEK");
        // A key in an external key store: its state is the engine's, which
        // Coffer learns only by asking. Unwrap the disk's DEK through it
        // again (the engine refuses once the customer disabled the key or
        // took Coffer's permission away, and an engine out of reach fails
        // closed): so what is cached in memory lives at most one re-check.
        if self.vault.transit_of(&kek).await?.is_some() {
            self.vault.dek(vol.dek_id).await?;
        }
        if let Some(set_id) = disk.encryption_set_id {
            let ok = match self.meta.encryption_set(set_id).await? {
                Some(set) => self.identity_has_key_access(&set).await?,
                None => false,
            };
            if !ok {
                return Err(ServiceError::new(
                    ErrorCode::KeyUnusable,
                    format!(
                        "the identity of encryption set {set_id} may no longer unwrap with key {}",
                        kek.id
                    ),
                ));
            }
        }
        Ok(())
    }
}
