//! Garbage: the deletion queue, the orphan sweep (objects a crash left
//! behind), start-up recovery, the background collector, and shutdown.

use std::sync::Arc;

use coffer_meta::now_ms;
use coffer_store::{ObjectStore, chunk_key, object_key, parse_chunk_key, parse_object_key};
use coffer_volume::Volume;

use crate::*;

impl Service {
    /// Flush and close every open volume, then leave the deployment: this
    /// node's attachments lose their holder, so any node (or this one,
    /// restarted) can reopen them at once.
    pub async fn shutdown(&self) {
        let vols: Vec<Arc<Volume>> = self.open.lock().await.drain().map(|(_, v)| v).collect();
        for v in vols {
            if let Err(e) = v.close().await {
                tracing::warn!(volume = %v.id(), error = %e, "flush at shutdown failed");
            }
        }
        if let Some(n) = self.node.write().await.take()
            && let Err(e) = self.meta.deregister_node(n.id).await
        {
            tracing::warn!(error = %e, "could not leave the deployment; its lease will pass");
        }
    }

    /// Delete the objects queued for deletion, region by region; returns
    /// how many. A region whose store fails is logged and left for the
    /// next pass: the other regions' deletions go on.
    pub async fn collect_garbage(&self) -> Result<u64> {
        let mut total = 0u64;
        let (mut failed, mut ok) = (None, false);
        for (region, _) in self.region_stores() {
            // A region whose store does not answer waits for the next pass
            // (a call to it could hang in retries, holding the others up).
            let store = match self.store_of(&region) {
                Ok(s) => s,
                Err(e) => {
                    failed.get_or_insert(e);
                    continue;
                }
            };
            match self.collect_region(&region, store.as_ref()).await {
                Ok(n) => (total, ok) = (total + n, true),
                Err(e) => {
                    tracing::warn!(region = %region, error = %e, "garbage collection of a region failed; will retry");
                    failed.get_or_insert(e);
                }
            }
        }
        // Only when no region could be collected is it an error.
        match failed {
            Some(e) if !ok => Err(e),
            _ => Ok(total),
        }
    }

    async fn collect_region(&self, region: &str, store: &dyn ObjectStore) -> Result<u64> {
        let mut total = 0u64;
        loop {
            // Rows a node from before regions had stores queued (region
            // '', during a rolling upgrade) are the first region's.
            let legacy = region == self.first_region();
            let v1 = self.meta.gc_queue_peek(region, legacy, 1000).await?;
            let v2 = self.meta.gc_objects_peek(region, legacy, 1000).await?;
            if v1.is_empty() && v2.is_empty() {
                return Ok(total);
            }
            let keys: Vec<String> = v1
                .iter()
                .map(|(dek, counter)| chunk_key(dek.value(), *counter))
                .chain(v2.iter().map(|(w, id)| object_key(w.value(), id)))
                .collect();
            store
                .delete_many(&keys)
                .await
                .map_err(ServiceError::internal)?;
            self.meta.gc_queue_done(&v1).await?;
            self.meta.gc_objects_done(&v2).await?;
            total += keys.len() as u64;
        }
    }

    /// Start-up recovery: record the first region on data from before
    /// regions had stores, finish queued deletions, then sweep orphans.
    /// Returns (collected, orphans).
    pub async fn recover(&self) -> Result<(u64, u64)> {
        let adopted = self.meta.adopt_region(self.first_region()).await?;
        if adopted > 0 {
            tracing::info!(volumes = adopted, region = %self.first_region(), "volumes from before regions had stores of their own are the first region's");
        }
        self.probe_regions().await;
        let collected = self.collect_garbage().await?;
        let orphans = self.sweep_orphans().await?;
        Ok((collected, orphans))
    }

    /// Delete objects no metadata names and no live writer may still name,
    /// in every region's store: left by a write-back that a crash (of any
    /// node) interrupted before its commit, or by a node fenced mid-write.
    /// Safe while other nodes write: nodes whose lease passed are fenced
    /// first, each store is listed before the metadata is read, and objects
    /// in counter ranges reserved by a live holder are kept. A region whose
    /// store fails is logged and skipped. Returns how many were deleted.
    pub async fn sweep_orphans(&self) -> Result<u64> {
        self.meta
            .fence_expired_nodes(now_ms(), self.my_node_id().await)
            .await?;
        let mut orphans = 0;
        let (mut failed, mut ok) = (None, false);
        let mut swept: Vec<Arc<dyn ObjectStore>> = Vec::new();
        for (region, _) in self.region_stores() {
            let store = match self.store_of(&region) {
                Ok(s) => s,
                Err(e) => {
                    failed.get_or_insert(e);
                    continue;
                }
            };
            // Regions that share one store: sweep it once.
            if swept.iter().any(|s| Arc::ptr_eq(s, &store)) {
                continue;
            }
            swept.push(store.clone());
            match self.sweep_region(store.as_ref()).await {
                Ok(n) => (orphans, ok) = (orphans + n, true),
                Err(e) => {
                    tracing::warn!(region = %region, error = %e, "orphan sweep of a region failed; will retry");
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed
            && !ok
        {
            return Err(e);
        }
        self.meta.drop_dead_reservations().await?;
        Ok(orphans)
    }

    async fn sweep_region(&self, store: &dyn ObjectStore) -> Result<u64> {
        let mut listed = store
            .list("chunks/")
            .await
            .map_err(ServiceError::internal)?;
        listed.extend(
            store
                .list("objects/")
                .await
                .map_err(ServiceError::internal)?,
        );
        let keep = self.meta.sweep_view().await?;
        let doomed: Vec<String> = listed
            .into_iter()
            .filter(|key| {
                if let Some((dek, counter)) = parse_chunk_key(key) {
                    !keep.keeps(dek, counter)
                } else if let Some((writer, id)) = parse_object_key(key) {
                    !keep.keeps_object(writer, &id)
                } else {
                    true
                }
            })
            .collect();
        store
            .delete_many(&doomed)
            .await
            .map_err(ServiceError::internal)?;
        Ok(doomed.len() as u64)
    }

    /// Run the garbage collector until the process ends: woken by deletes,
    /// and every 30 s (ending expired exports first); the orphan sweep runs
    /// every `sweep_interval`.
    pub fn spawn_gc(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut last_sweep = std::time::Instant::now();
            loop {
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(30), me.gc_wake.notified())
                        .await;
                // Expired exports first: their readers' data goes below.
                if let Err(e) = me.end_expired_exports().await {
                    tracing::warn!(error = %e, "cannot end expired exports; will retry");
                }
                match me.collect_garbage().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(objects = n, "garbage collected"),
                    Err(e) => tracing::warn!(error = %e, "garbage collection failed; will retry"),
                }
                if last_sweep.elapsed() >= me.config.sweep_interval {
                    last_sweep = std::time::Instant::now();
                    match me.sweep_orphans().await {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(objects = n, "orphan sweep deleted unreferenced objects")
                        }
                        Err(e) => tracing::warn!(error = %e, "orphan sweep failed; will retry"),
                    }
                }
            }
        })
    }
}
