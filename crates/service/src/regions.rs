//! The deployment's regions as failure domains: each region's own object
//! store, whether it answers, and the watch that finds out.
//!
//! A volume's objects live in its region's store (`volumes.region`; a
//! lineage never leaves its region), so every store call of the service
//! goes through [`Service::store_of`]. A region whose store stops answering
//! is marked unavailable by the watch (a probe every
//! [`ServiceConfig::region_probe_interval`]): requests that need its store
//! get `503 RegionUnavailable` naming it, while other regions' disks,
//! collectors and sweeps go on. Metadata-only requests (list, show, tag,
//! share) work whatever the stores do.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use coffer_store::{ObjectStore, StoreError};

use crate::*;

/// One region's store and what the last probe found.
pub(crate) struct RegionStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    available: AtomicBool,
    problem: std::sync::Mutex<Option<String>>,
    /// A probe is under way (one at a time: a probe of a hung store is
    /// left to finish or time out, never piled up).
    probing: Arc<AtomicBool>,
    /// The region's marker as the store held it at the last probe that
    /// found it right: later probes compare against it without asking the
    /// metadata store, so a metadata pool busy with commits cannot make a
    /// store that answers look unavailable.
    marker: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
}

/// The stores of the deployment's regions.
pub(crate) struct RegionStores {
    /// The first configured region: rows from before regions had stores
    /// (region `''`) are its.
    first: String,
    map: HashMap<String, RegionStore>,
}

impl RegionStores {
    /// Every configured region on its store in `stores`, or on `fallback`
    /// when `stores` names none for it (one store for the whole deployment).
    pub(crate) fn new(
        regions: &Regions,
        mut stores: HashMap<String, Arc<dyn ObjectStore>>,
        fallback: Option<Arc<dyn ObjectStore>>,
    ) -> Result<Self> {
        let mut map = HashMap::new();
        for r in regions.all() {
            let store = match (stores.remove(&r.name), &fallback) {
                (Some(s), _) => s,
                (None, Some(f)) => f.clone(),
                (None, None) => {
                    return Err(ServiceError::internal(format!(
                        "no object store given for region {}",
                        r.name
                    )));
                }
            };
            map.insert(
                r.name.clone(),
                RegionStore {
                    store,
                    available: AtomicBool::new(true),
                    problem: std::sync::Mutex::new(None),
                    probing: Arc::new(AtomicBool::new(false)),
                    marker: Arc::default(),
                },
            );
        }
        if let Some(extra) = stores.keys().next() {
            return Err(ServiceError::internal(format!(
                "an object store was given for region {extra}, which is not configured"
            )));
        }
        Ok(Self {
            first: regions.all()[0].name.clone(),
            map,
        })
    }

    fn get(&self, region: &str) -> Result<&RegionStore> {
        let name = if region.is_empty() {
            &self.first
        } else {
            region
        };
        self.map.get(name).ok_or_else(|| {
            ServiceError::internal(format!(
                "region {name} holds data but is not in the configuration"
            ))
        })
    }
}

/// What a probe of one region's store found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionHealth {
    /// The region.
    pub region: String,
    /// Whether its store answered the last probe.
    pub available: bool,
    /// Why not (for the operator; callers see only the region's name).
    pub problem: Option<String>,
}

impl Service {
    /// The object store of `region` (`''`: the first region's), if it
    /// answered its last probe; else `503 RegionUnavailable` naming it.
    pub(crate) fn store_of(&self, region: &str) -> Result<Arc<dyn ObjectStore>> {
        let r = self.stores.get(region)?;
        if !r.available.load(Ordering::Acquire) {
            let name = if region.is_empty() {
                self.stores.first.as_str()
            } else {
                region
            };
            return Err(ServiceError::new(
                ErrorCode::RegionUnavailable,
                format!(
                    "region {name} is unavailable: its object store does not answer; other regions work as usual, retry this once it is back (`coffer region list` shows when)"
                ),
            ));
        }
        Ok(r.store.clone())
    }

    /// The regions in configuration order, each with its store.
    pub(crate) fn region_stores(&self) -> Vec<(String, Arc<dyn ObjectStore>)> {
        self.config
            .regions
            .all()
            .iter()
            .filter_map(|r| {
                self.stores
                    .map
                    .get(&r.name)
                    .map(|s| (r.name.clone(), s.store.clone()))
            })
            .collect()
    }

    /// The first configured region (where data from before regions had
    /// stores of their own lives).
    pub fn first_region(&self) -> &str {
        &self.stores.first
    }

    /// Probe every region's store now, all at once; returns what each
    /// answered. A region that stops or starts answering is logged once. A
    /// region whose previous probe has not ended yet keeps its state (and
    /// counts as unavailable once a probe has run longer than the interval).
    pub async fn probe_regions(&self) -> Vec<RegionHealth> {
        let probes = self.region_stores().into_iter().map(|(name, store)| async move {
            let r = self.stores.get(&name).ok()?;
            if r.probing.swap(true, Ordering::AcqRel) {
                return None;
            }
            // The probe runs as a task of its own that clears the flag when
            // it ends: one that outlives the timeout is not started again.
            let (st, flag, meta, region, marker) = (
                store.clone(),
                r.probing.clone(),
                self.meta.clone(),
                name.clone(),
                r.marker.clone(),
            );
            let task = tokio::spawn(async move {
                let known = lock(&marker).clone();
                let res = match known {
                    Some(want) => recheck_store(&meta, &region, st.as_ref(), want).await,
                    None => check_store(&meta, &region, st.as_ref()).await,
                };
                *lock(&marker) = res.as_ref().ok().cloned();
                flag.store(false, Ordering::Release);
                res.map(drop)
            });
            let probe = match tokio::time::timeout(self.config.region_probe_interval, task).await {
                Err(_) => Err("the probe timed out".to_string()),
                Ok(Err(e)) => Err(format!("the probe failed: {e}")),
                Ok(Ok(r)) => r,
            };
            let now_ok = probe.is_ok();
            let was_ok = r.available.swap(now_ok, Ordering::AcqRel);
            match (&probe, was_ok) {
                (Err(e), true) => {
                    tracing::error!(region = %name, store = %store.describe(), error = %e, "region unavailable: its object store does not answer; its disks get 503 until it does")
                }
                (Ok(()), false) => {
                    tracing::info!(region = %name, store = %store.describe(), "region available again")
                }
                _ => {}
            }
            *lock(&r.problem) = probe.as_ref().err().cloned();
            Some(RegionHealth {
                region: name,
                available: now_ok,
                problem: probe.err(),
            })
        });
        futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Each region's state as of its last probe.
    pub fn region_health(&self) -> Vec<RegionHealth> {
        self.config
            .regions
            .all()
            .iter()
            .filter_map(|r| {
                let s = self.stores.map.get(&r.name)?;
                Some(RegionHealth {
                    region: r.name.clone(),
                    available: s.available.load(Ordering::Acquire),
                    problem: lock(&s.problem).clone(),
                })
            })
            .collect()
    }

    /// Probe the regions' stores every `region_probe_interval` until the
    /// process ends.
    pub fn spawn_region_watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                me.probe_regions().await;
                tokio::time::sleep(me.config.region_probe_interval).await;
            }
        })
    }
}

/// The key of the marker that says a store is `region`'s, of this
/// deployment.
fn marker_key(region: &str) -> String {
    format!("coffer/regions/{region}")
}

/// Whether `store` answers and is `region`'s store of this deployment: it
/// holds the region's marker (written the first time, when the store is
/// new to the region: the region has no data yet, or the store holds an
/// object the region's volumes name). A store that answers but is empty
/// while the region has data — an unmounted directory, a wrong bucket — is
/// not taken for the region's: writes there would be lost to it.
/// Returns the marker's content.
async fn check_store(
    meta: &coffer_meta::Meta,
    region: &str,
    store: &dyn ObjectStore,
) -> std::result::Result<Vec<u8>, String> {
    store.probe().await.map_err(|e| e.to_string())?;
    let mut id = [0u8; 16];
    coffer_crypto::random_bytes(&mut id);
    let deployment = meta
        .setting_init("deployment_id", &hex::encode(id))
        .await
        .map_err(|e| format!("metadata: {e}"))?;
    let want = format!("coffer region store v1\nregion={region}\ndeployment={deployment}\n");
    let key = marker_key(region);
    match store.get(&key).await {
        Ok(found) if found[..] == *want.as_bytes() => return Ok(want.into_bytes()),
        Ok(found) => {
            return Err(format!(
                "the store is another region's or another deployment's (its marker {key} reads {:?})",
                String::from_utf8_lossy(&found).trim()
            ));
        }
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    if let Some(obj) = meta
        .region_object_sample(region)
        .await
        .map_err(|e| format!("metadata: {e}"))?
    {
        let sample = match obj {
            coffer_meta::StoredObject::V1 { dek, counter } => coffer_store::chunk_key(dek, counter),
            coffer_meta::StoredObject::V2 { writer, id } => coffer_store::object_key(writer, &id),
        };
        match store.get_range(&sample, 0..1).await {
            Ok(_) => {}
            Err(StoreError::NotFound(_)) => {
                return Err(format!(
                    "the store holds none of the region's data (no marker, and no {sample}, which the region's volumes name): is it mounted, or the right bucket?"
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    store
        .put(&key, bytes::Bytes::from(want.clone()))
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(region = %region, store = %store.describe(), "the store is marked as the region's");
    Ok(want.into_bytes())
}

/// A probe after one that found the store right: the store answers and
/// still holds the marker `want`, asked of the store alone; anything else
/// about the marker (gone, changed) gets the full check of
/// [`check_store`], as a first probe would.
async fn recheck_store(
    meta: &coffer_meta::Meta,
    region: &str,
    store: &dyn ObjectStore,
    want: Vec<u8>,
) -> std::result::Result<Vec<u8>, String> {
    store.probe().await.map_err(|e| e.to_string())?;
    match store.get(&marker_key(region)).await {
        Ok(found) if found[..] == want[..] => Ok(want),
        _ => check_store(meta, region, store).await,
    }
}
