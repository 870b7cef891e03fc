//! The consistency checker behind `coffer admin fsck`: the metadata's own
//! invariants ([`coffer_meta::Meta::fsck`]) plus the object store's side —
//! every named object present (and, with `deep`, authentic under its DEK),
//! and how much unreferenced garbage there is.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::BytesMut;
use coffer_crypto::{ChunkKey, open_chunk};
use coffer_meta::ObjectRef;
use coffer_store::{
    ObjectStore, StoreError, chunk_key, object_key, parse_chunk_key, parse_object_key,
};
use coffer_types::Id;
use coffer_volume::object_keys;

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
        // after the listing. Objects are compared by store key: v1 chunk
        // objects and v2 objects alike.
        let named = self.named_keys().await?;
        let mut referenced: HashSet<String> = self
            .meta
            .referenced_objects()
            .await?
            .into_iter()
            .map(|(d, c)| chunk_key(d, c))
            .collect();
        referenced.extend(
            self.meta
                .referenced_v2_objects()
                .await?
                .into_iter()
                .map(|(w, id)| object_key(w.value(), &id)),
        );
        // Every region's store (once, when regions share one), and which
        // store holds each object found.
        let mut stored: HashSet<String> = HashSet::new();
        let mut holder: HashMap<String, Arc<dyn ObjectStore>> = HashMap::new();
        let mut listed: Vec<Arc<dyn ObjectStore>> = Vec::new();
        for (region, _) in self.region_stores() {
            // Every region's store must answer (503 naming the one that
            // does not): its objects would otherwise count as missing.
            let store = self.store_of(&region)?;
            if listed.iter().any(|s| Arc::ptr_eq(s, &store)) {
                continue;
            }
            listed.push(store.clone());
            for prefix in ["chunks/", "objects/"] {
                for k in store
                    .list(prefix)
                    .await
                    .map_err(ServiceError::internal)?
                    .into_iter()
                    .filter(|k| parse_chunk_key(k).is_some() || parse_object_key(k).is_some())
                {
                    holder.insert(k.clone(), store.clone());
                    stored.insert(k);
                }
            }
        }
        let named_set: HashSet<String> = named.keys().cloned().collect();
        let queued = referenced.difference(&named_set).count() as u64;
        let still_named: HashSet<String> = if named_set.is_subset(&stored) {
            HashSet::new()
        } else {
            self.named_keys().await?.into_keys().collect()
        };

        let mut missing = 0usize;
        for key in named_set
            .difference(&stored)
            .filter(|k| still_named.contains(*k))
        {
            missing += 1;
            if missing <= MAX_PER_CODE {
                findings.push(FsckFinding {
                    code: "ObjectMissing".into(),
                    detail: format!("{key} is named by a chunk map but not in the store"),
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
            let mut n = 0u64;
            let mut bad = 0usize;
            let mut sorted: Vec<(&String, &Named)> = named.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            for (name, what) in sorted {
                if !stored.contains(name) {
                    continue; // already reported missing
                }
                let Some(store) = holder.get(name) else {
                    continue;
                };
                let obj = match store.get(name).await {
                    Ok(obj) => obj,
                    // Rewritten and collected since the listing: no longer named.
                    Err(StoreError::NotFound(_)) => continue,
                    Err(e) => return Err(ServiceError::internal(e)),
                };
                let problem = self.check_object(what, obj).await?;
                n += 1;
                if let Some(p) = problem {
                    bad += 1;
                    if bad <= MAX_PER_CODE {
                        findings.push(FsckFinding {
                            code: "ObjectNotAuthentic".into(),
                            detail: format!("{name} ({}) fails authentication: {p}", what.label()),
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

    /// Every object a chunk map names, by store key.
    async fn named_keys(&self) -> Result<HashMap<String, Named>> {
        let mut out: HashMap<String, Named> = self
            .meta
            .named_objects()
            .await?
            .into_iter()
            .map(|(dek, counter, idx)| {
                (
                    chunk_key(dek.value(), counter),
                    Named::V1 {
                        dek,
                        counter,
                        chunk: idx,
                    },
                )
            })
            .collect();
        for o in self.meta.named_v2_objects().await? {
            out.insert(object_key(o.writer.value(), &o.id), Named::V2(o));
        }
        Ok(out)
    }

    /// Open a whole stored object as what the chunk map says it is; the
    /// problem, if it fails.
    async fn check_object(&self, what: &Named, mut obj: BytesMut) -> Result<Option<String>> {
        Ok(match what {
            Named::V1 {
                dek,
                counter,
                chunk,
            } => {
                let secret = self.vault.dek(*dek).await?;
                let k = ChunkKey::new(dek.value(), &secret).map_err(ServiceError::internal)?;
                open_chunk(&k, *counter, *chunk, obj)
                    .err()
                    .map(|e| e.to_string())
            }
            Named::V2(o) => {
                let secret = self.vault.dek(o.dek).await?;
                let secret2 = match o.dek2 {
                    Some(d) => Some(self.vault.dek(d).await?),
                    None => None,
                };
                match object_keys(o, &secret, secret2.as_ref()) {
                    Ok(k) => k.open_object(&mut obj).err().map(|e| e.to_string()),
                    Err(e) => Some(e.to_string()),
                }
            }
        })
    }
}

/// What a chunk map says a stored object is.
enum Named {
    V1 { dek: Id, counter: u64, chunk: u64 },
    V2(ObjectRef),
}

impl Named {
    /// What the object holds, for a finding.
    fn label(&self) -> String {
        match self {
            Named::V1 { chunk, .. } => format!("chunk {chunk}"),
            Named::V2(o) if o.kind == 1 => format!("chunk {}", o.index),
            Named::V2(o) => format!("a segment of volume {}", o.writer),
        }
    }
}
