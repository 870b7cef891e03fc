//! The consistency checker behind `coffer admin fsck`: the metadata's own
//! invariants ([`coffer_meta::Meta::fsck`]) plus the object store's side —
//! every named object present (and, with `deep`, authentic under its DEK),
//! and how much unreferenced garbage there is.

use std::collections::{HashMap, HashSet};

use coffer_crypto::{ChunkKey, open_chunk};
use coffer_store::{StoreError, chunk_key, parse_chunk_key};

use crate::model::{FsckFinding, FsckReport, GcReport, Node};
use coffer_iam::{Action, Target};

use crate::{Caller, Result, Service, ServiceError};

/// Report at most this many findings of one code in full.
const MAX_PER_CODE: usize = 20;

/// Deployment operations need `deployment/operate` at the deployment scope
/// (an Owner assignment at `/`); others get 403 naming it.
fn admin_only(service: &Service, caller: &Caller) -> Result<()> {
    service
        .check(caller, Action::DeploymentOperate, &Target::deployment())
        .map(|_| ())
}

impl Service {
    /// Collect queued deletions and sweep orphaned objects now (deployment
    /// admins only); both also run in the background.
    pub async fn admin_gc(&self, caller: &Caller) -> Result<GcReport> {
        admin_only(self, caller)?;
        let collected = self.collect_garbage().await?;
        let orphans = self.sweep_orphans().await?;
        Ok(GcReport { collected, orphans })
    }

    /// The nodes of the deployment (deployment admins only).
    pub async fn list_nodes(&self, caller: &Caller) -> Result<Vec<Node>> {
        admin_only(self, caller)?;
        let me = self.node().await.map(|n| n.id);
        Ok(self
            .meta
            .list_nodes()
            .await?
            .into_iter()
            .map(|n| Node {
                id: n.id.to_string(),
                this_node: Some(n.id) == me,
                name: n.name,
                api_url: n.api_url,
                nbd_endpoint: n.nbd_endpoint,
                started_at: n.started_at,
                lease_expires_at: humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_millis(
                            u64::try_from(n.lease_expires_ms).unwrap_or(0),
                        ),
                )
                .to_string(),
            })
            .collect())
    }

    /// Check the deployment's consistency (deployment admins only). With
    /// `deep`, also fetch and authenticate every named object.
    pub async fn fsck(&self, caller: &Caller, deep: bool) -> Result<FsckReport> {
        admin_only(self, caller)?;
        let mut findings: Vec<FsckFinding> = self
            .meta
            .fsck()
            .await?
            .into_iter()
            .map(|f| FsckFinding {
                code: f.code.into(),
                detail: f.detail,
            })
            .collect();
        // Metadata first, then the listing: an object written meanwhile is
        // then merely unreferenced (counted, not an error). An object can
        // still look missing if it was overwritten and collected between
        // the two reads, so a candidate counts only if it is still named
        // after the listing.
        let named = self.meta.named_objects().await?;
        let referenced = self.meta.referenced_objects().await?; // named + queued
        let stored: HashSet<(u64, u64)> = self
            .store
            .list("chunks/")
            .await
            .map_err(ServiceError::internal)?
            .iter()
            .filter_map(|k| parse_chunk_key(k))
            .collect();
        let named_set: HashSet<(u64, u64)> =
            named.iter().map(|(d, c, _)| (d.value(), *c)).collect();
        let queued = referenced.difference(&named_set).count() as u64;
        let still_named: HashSet<(u64, u64)> = if named_set.is_subset(&stored) {
            HashSet::new()
        } else {
            self.meta
                .named_objects()
                .await?
                .iter()
                .map(|(d, c, _)| (d.value(), *c))
                .collect()
        };

        let mut missing = 0usize;
        for key in named_set
            .difference(&stored)
            .filter(|k| still_named.contains(k))
        {
            missing += 1;
            if missing <= MAX_PER_CODE {
                findings.push(FsckFinding {
                    code: "ObjectMissing".into(),
                    detail: format!(
                        "{} is named by a chunk map but not in the store",
                        chunk_key(key.0, key.1)
                    ),
                });
            }
        }
        if missing > MAX_PER_CODE {
            findings.push(FsckFinding {
                code: "ObjectMissing".into(),
                detail: format!("… and {} more missing objects", missing - MAX_PER_CODE),
            });
        }
        let unreferenced = stored.difference(&referenced).count() as u64;

        let verified = if deep {
            let mut keys: HashMap<coffer_types::Id, ChunkKey> = HashMap::new();
            let mut n = 0u64;
            let mut bad = 0usize;
            for (dek, counter, idx) in &named {
                if !stored.contains(&(dek.value(), *counter)) {
                    continue; // already reported missing
                }
                if !keys.contains_key(dek) {
                    let secret = self.vault.dek(*dek).await?;
                    let k = ChunkKey::new(dek.value(), &secret).map_err(ServiceError::internal)?;
                    keys.insert(*dek, k);
                }
                let key = &keys[dek];
                let name = chunk_key(dek.value(), *counter);
                let problem = match self.store.get(&name).await {
                    Ok(obj) => open_chunk(key, *counter, *idx, obj)
                        .err()
                        .map(|e| e.to_string()),
                    // Rewritten and collected since the listing: no longer named.
                    Err(StoreError::NotFound(_)) => continue,
                    Err(e) => return Err(ServiceError::internal(e)),
                };
                n += 1;
                if let Some(p) = problem {
                    bad += 1;
                    if bad <= MAX_PER_CODE {
                        findings.push(FsckFinding {
                            code: "ObjectNotAuthentic".into(),
                            detail: format!("{name} (chunk {idx}) fails authentication: {p}"),
                        });
                    }
                }
            }
            Some(n)
        } else {
            None
        };

        Ok(FsckReport {
            ok: findings.is_empty(),
            objects_stored: stored.len() as u64,
            objects_named: named_set.len() as u64,
            objects_missing: missing as u64,
            objects_unreferenced: unreferenced,
            objects_queued: queued,
            objects_verified: verified,
            findings,
        })
    }
}
