//! This node's membership of the deployment: joining, the lease renewed in
//! the background (and fencing every open volume when it cannot be), and
//! who holds an attachment as seen from here.

use std::sync::Arc;

use coffer_meta::{AttachmentRow, NodeRow, now_ms};
use coffer_types::{Id, Kind};
use coffer_volume::Volume;

use crate::*;

/// Who holds an attachment, as seen from this node.
pub(crate) enum HeldBy {
    /// This node (its current run's id).
    Me(Id),
    /// Another live node.
    Other(NodeRow),
    /// Nobody live: any node may take it.
    Nobody,
}

impl Service {
    /// Join the deployment as node `name` (a lasting name, e.g. kept in the
    /// data dir), answering its API at `api_url` and NBD at `nbd_endpoint`
    /// (`host:port`, named in attach URIs). Earlier runs of the same node
    /// are dead: their attachments are released at once. Call before
    /// [`Service::recover`]; then [`Service::spawn_lease`] keeps it alive.
    pub async fn join(&self, name: &str, api_url: &str, nbd_endpoint: &str) -> Result<NodeRow> {
        let now = now_ms();
        let row = NodeRow {
            id: Id::random(Kind::Node),
            name: name.to_string(),
            api_url: api_url.to_string(),
            nbd_endpoint: nbd_endpoint.to_string(),
            started_at: coffer_meta::now(),
            lease_expires_ms: now + self.lease_ms(),
        };
        let released = self.meta.register_node(&row).await?;
        if released > 0 {
            tracing::info!(
                attachments = released,
                "released the attachments of this node's previous run"
            );
        }
        tracing::info!(node = %row.id, name, "joined the deployment");
        *self.node.write().await = Some(row.clone());
        Ok(row)
    }

    /// This node's current run, if it joined.
    pub async fn node(&self) -> Option<NodeRow> {
        self.node.read().await.clone()
    }

    pub(crate) fn lease_ms(&self) -> i64 {
        i64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(i64::MAX)
    }

    pub(crate) async fn my_node_id(&self) -> Option<Id> {
        self.node.read().await.as_ref().map(|n| n.id)
    }

    /// Who holds `att` now.
    pub(crate) async fn held_by(&self, att: &AttachmentRow) -> Result<HeldBy> {
        let me = self.my_node_id().await;
        match att.node_id {
            Some(n) if Some(n) == me => Ok(HeldBy::Me(n)),
            Some(n) => match self.meta.node(n).await? {
                Some(row) if row.lease_expires_ms > now_ms() => Ok(HeldBy::Other(row)),
                _ => Ok(HeldBy::Nobody),
            },
            None => Ok(HeldBy::Nobody),
        }
    }

    /// Renew this node's lease every quarter of its length, and reap nodes
    /// whose lease passed. If the lease is lost (this process was paused or
    /// cut off for longer than the lease, and another node may have taken
    /// its disks), every open disk here is fenced at once and the node
    /// joins again as a new run.
    ///
    /// A renewal that is only slow (a busy database: long commits of many
    /// busy disks ahead of it, a full connection pool) is waited for until
    /// a sixteenth of the lease before it would end, and the node fences
    /// its disks only then, when another node could soon take them over —
    /// not at the first slow renewal, which would drop every disk's
    /// unflushed writes on a node that merely works hard. (Fencing is the
    /// early stop; what guarantees that a node which lost its hold commits
    /// nothing is the hold check inside every commit's transaction.)
    pub fn spawn_lease(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let ttl = me.config.lease_ttl;
            let tick = ttl / 4;
            // When the lease last written ends, by this process's clock
            // (measured from when that renewal was sent).
            let mut expires = tokio::time::Instant::now() + ttl;
            // Renewals start a tick apart, counted from the start of the
            // last one: after a slow renewal the next starts at once.
            let mut next = tokio::time::Instant::now() + tick;
            loop {
                tokio::time::sleep_until(next).await;
                let sent = tokio::time::Instant::now();
                next = sent + tick;
                let Some(node) = me.node().await else {
                    continue;
                };
                let margin = tick / 4;
                let deadline = expires
                    .checked_sub(margin)
                    .unwrap_or(sent)
                    .max(sent + margin);
                let renew = tokio::time::timeout_at(
                    deadline,
                    me.meta.renew_node_lease(node.id, now_ms() + me.lease_ms()),
                )
                .await;
                match renew {
                    Ok(Ok(true)) => expires = sent + ttl,
                    Ok(Ok(false)) => {
                        tracing::error!(node = %node.id, "this node was reaped (its lease passed): fencing its open disks and joining again");
                        me.fence_all().await;
                        if let Err(e) = me.join(&node.name, &node.api_url, &node.nbd_endpoint).await
                        {
                            tracing::error!(error = %e, "cannot join again; will retry");
                        }
                        expires = tokio::time::Instant::now() + ttl;
                    }
                    failed => {
                        match failed {
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "cannot renew this node's lease");
                            }
                            _ => tracing::warn!(
                                waited = ?sent.elapsed(),
                                "renewing this node's lease timed out"
                            ),
                        }
                        if tokio::time::Instant::now() + margin >= expires {
                            // Others may soon take these disks over: stop
                            // writing them before they can.
                            me.fence_all().await;
                        }
                    }
                }
                match me.meta.fence_expired_nodes(now_ms(), Some(node.id)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(
                        attachments = n,
                        "released the attachments of nodes whose lease passed"
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot reap dead nodes"),
                }
            }
        })
    }

    /// Close every open disk here without writing back (fencing).
    async fn fence_all(&self) {
        let vols: Vec<Arc<Volume>> = self.open.lock().await.drain().map(|(_, v)| v).collect();
        for v in vols {
            v.fence();
        }
    }
}
