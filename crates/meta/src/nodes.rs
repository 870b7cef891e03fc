//! Nodes, leases and fencing: what lets several `coffer serve` processes
//! share one metadata database and one object store safely.
//!
//! - Every run of `coffer serve` registers a **node** row with a lease
//!   (`lease_expires_ms`, Unix milliseconds) that it renews; a node whose
//!   lease has passed is dead.
//! - An attachment is **held** by one node (`attachments.node_id`): only the
//!   holder opens the disk's volume, reserves nonce counters for it and
//!   commits its chunk map. Every such write checks the holder inside its
//!   transaction ([`Holder`]), so a node that lost its lease (paused,
//!   partitioned, presumed dead) can never change the disk again: it is
//!   **fenced**, whatever it believes.
//! - Nodes that missed their lease are reaped ([`Meta::fence_expired_nodes`]):
//!   their attachments lose their holder (a client reconnecting anywhere
//!   takes them over) and their rows go, so their renewals fail and they
//!   stop serving.
//! - Counter **reservations** record which nonce counters each holder may
//!   still be writing objects under; the orphan sweep leaves those objects
//!   alone while the reservation's attachment has a holder
//!   ([`Meta::sweep_view`]).

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use coffer_types::{Id, Kind};

use crate::{Meta, MetaError, Result, parse_id, to_i64, to_u64};

/// Milliseconds since the Unix epoch, by this machine's clock. Leases compare
/// clocks of several machines: keep them synchronised (NTP) to well within
/// a lease's length.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One run of `coffer serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Id of this run (new at every start).
    pub id: Id,
    /// The node's lasting name (kept in its data dir across restarts).
    pub name: String,
    /// Where its HTTP API answers (other nodes forward requests there).
    pub api_url: String,
    /// Where its NBD listener answers (`host:port`).
    pub nbd_endpoint: String,
    /// Start time.
    pub started_at: String,
    /// Lease end, Unix milliseconds.
    pub lease_expires_ms: i64,
}

/// Who may write a volume's head: one hold of an attachment by a node,
/// or of a running copy job (its target volume) by a node. Every take,
/// even by the node already holding it, is a new hold; writes made on
/// behalf of a holder fail with [`MetaError::Fenced`] once the attachment
/// (or job) has another hold, none, or is gone, or the job has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// The attachment, or the job (an id of kind `Job`).
    pub attachment: Id,
    /// The node holding it.
    pub node: Id,
    /// This hold.
    pub hold: Id,
}

/// What the orphan sweep must not delete, read in one consistent snapshot.
#[derive(Debug, Default)]
pub struct SweepView {
    /// Objects some chunk row names, as `(dek value, counter)`.
    pub referenced: HashSet<(u64, u64)>,
    /// Counter ranges, per DEK value, that a live holder may still be
    /// writing objects in.
    pub in_flight: HashMap<u64, Vec<Range<u64>>>,
    /// v2 objects some extent names, by object id.
    pub objects: HashSet<[u8; 16]>,
    /// Volumes (by id value) that a live holder may be writing v2 objects
    /// for: their disk is attached on a node, or a running copy job
    /// writes them.
    pub held_volumes: HashSet<u64>,
}

impl SweepView {
    /// Whether object `(dek, counter)` must be kept.
    pub fn keeps(&self, dek: u64, counter: u64) -> bool {
        self.referenced.contains(&(dek, counter))
            || self
                .in_flight
                .get(&dek)
                .is_some_and(|rs| rs.iter().any(|r| r.contains(&counter)))
    }

    /// Whether v2 object `id`, written by volume `writer` (its id value),
    /// must be kept.
    pub fn keeps_object(&self, writer: u64, id: &[u8; 16]) -> bool {
        self.objects.contains(id) || self.held_volumes.contains(&writer)
    }
}

type NodeTuple = (String, String, String, String, String, i64);
const NODE_COLS: &str = "id, name, api_url, nbd_endpoint, started_at, lease_expires_ms";

fn node_row(t: NodeTuple) -> Result<NodeRow> {
    Ok(NodeRow {
        id: parse_id(&t.0, Kind::Node)?,
        name: t.1,
        api_url: t.2,
        nbd_endpoint: t.3,
        started_at: t.4,
        lease_expires_ms: t.5,
    })
}

/// SQL condition: an attachment row may be taken by a new holder, given
/// the placeholder of "now" in ms.
fn holder_gone(now: &str) -> String {
    format!(
        "(node_id IS NULL OR node_id NOT IN (SELECT id FROM nodes WHERE lease_expires_ms > {now}))"
    )
}

impl Meta {
    /// Register a run of a node. Earlier runs under the same `name` are
    /// dead (a data dir serves one process at a time): their attachments
    /// lose their holder at once, so their disks can be reopened without
    /// waiting for their leases to pass.
    pub async fn register_node(&self, node: &NodeRow) -> Result<u64> {
        let mut tx = self.begin().await?;
        let released = sqlx::query(
            "UPDATE attachments SET node_id = NULL, hold_id = NULL WHERE node_id IN (SELECT id FROM nodes WHERE name = $1 AND id <> $2)",
        )
        .bind(&node.name)
        .bind(node.id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM nodes WHERE name = $1 AND id <> $2")
            .bind(&node.name)
            .bind(node.id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO nodes ({NODE_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"
        )))
        .bind(node.id.to_string())
        .bind(&node.name)
        .bind(&node.api_url)
        .bind(&node.nbd_endpoint)
        .bind(&node.started_at)
        .bind(node.lease_expires_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(released)
    }

    /// Extend node `id`'s lease to `until_ms`. Returns false if the node
    /// was reaped: it must then stop using every attachment it held. (A
    /// node whose lease passed but that nobody reaped yet may renew: any
    /// takeover of its disks meanwhile is fenced by the holds.)
    /// On SQLite the renewal takes the lease lane: it waits for the main
    /// connection's transaction in progress, not for the queue behind it.
    pub async fn renew_node_lease(&self, id: Id, until_ms: i64) -> Result<bool> {
        let update = sqlx::query("UPDATE nodes SET lease_expires_ms = $1 WHERE id = $2")
            .bind(until_ms)
            .bind(id.to_string());
        let n = match &self.lease {
            Some(lane) => {
                let _pending = crate::LeasePending::new(&lane.gate);
                update.execute(&lane.pool).await?
            }
            None => update.execute(&self.pool).await?,
        }
        .rows_affected();
        Ok(n == 1)
    }

    /// Reap nodes other than `except` whose lease passed before `now_ms`:
    /// their attachments lose their holder (fencing them) and their rows
    /// go. The expired rows are locked first, so a renewal racing the reap
    /// either lands before it (and the node is not reaped) or finds its row
    /// gone. Returns how many attachments were released.
    pub async fn fence_expired_nodes(&self, now_ms: i64, except: Option<Id>) -> Result<u64> {
        let mut tx = self.begin().await?;
        let lock = if self.backend == crate::Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let expired: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM nodes WHERE lease_expires_ms <= $1 AND id <> $2{lock}"
        )))
        .bind(now_ms)
        .bind(except.map_or_else(String::new, |e| e.to_string()))
        .fetch_all(&mut *tx)
        .await?;
        let mut released = 0;
        for id in expired {
            released += sqlx::query(
                "UPDATE attachments SET node_id = NULL, hold_id = NULL WHERE node_id = $1",
            )
            .bind(&id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM nodes WHERE id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        // Attachments naming a node that no longer exists hold nothing.
        released += sqlx::query(
            "UPDATE attachments SET node_id = NULL, hold_id = NULL WHERE node_id IS NOT NULL AND node_id NOT IN (SELECT id FROM nodes)",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(released)
    }

    /// A clean stop of node `id`: it closed its disks, so its attachments
    /// lose their holder and any node may reopen them at once.
    pub async fn deregister_node(&self, id: Id) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE attachments SET node_id = NULL, hold_id = NULL WHERE node_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A node by id, if registered.
    pub async fn node(&self, id: Id) -> Result<Option<NodeRow>> {
        let row: Option<NodeTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {NODE_COLS} FROM nodes WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(node_row).transpose()
    }

    /// Every registered node, by name.
    pub async fn list_nodes(&self) -> Result<Vec<NodeRow>> {
        let rows: Vec<NodeTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {NODE_COLS} FROM nodes ORDER BY name, started_at"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(node_row).collect()
    }

    /// Start a new hold of attachment `att` by `node`, if `node` is alive at
    /// `now_ms` and holds the attachment already or nobody live does (no
    /// holder, or one whose lease passed). Any earlier hold, of this node or
    /// another, is fenced from then on. Returns the new hold, or `None`.
    pub async fn take_attachment(&self, att: Id, node: Id, now_ms: i64) -> Result<Option<Holder>> {
        let hold = Id::random(Kind::Attachment);
        let n = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE attachments SET node_id = $1, hold_id = $2 WHERE id = $3 \
             AND EXISTS (SELECT 1 FROM nodes WHERE id = $1 AND lease_expires_ms > $4) \
             AND (node_id = $1 OR {})",
            holder_gone("$4")
        )))
        .bind(node.to_string())
        .bind(hold.to_string())
        .bind(att.to_string())
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((n == 1).then_some(Holder {
            attachment: att,
            node,
            hold,
        }))
    }

    /// Whether attachment `att` has no live holder at `now_ms`.
    pub async fn attachment_unheld(&self, att: Id, now_ms: i64) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM attachments WHERE id = $1 AND {}",
            holder_gone("$2")
        )))
        .bind(att.to_string())
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(n == 1)
    }

    /// What the orphan sweep must keep, read in one snapshot: the objects
    /// chunk rows name, and the counter ranges of reservations whose
    /// attachment has a holder. List the store *before* calling this: an
    /// object listed earlier was reserved earlier, so this snapshot shows it
    /// either still reserved, or named, or dead. The same holds for v2
    /// objects, kept while their writer volume's disk is attached on a node.
    pub async fn sweep_view(&self) -> Result<SweepView> {
        let mut tx = self.begin_read().await?;
        if self.backend == crate::Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await?;
        }
        let named: Vec<(String, i64)> = sqlx::query_as(
            "SELECT v.dek_id, c.counter FROM chunks c JOIN volumes v ON v.id = c.volume_id WHERE c.counter IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        let reserved: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT r.dek_id, r.start_counter, r.end_counter FROM counter_reservations r JOIN attachments a ON a.hold_id = r.hold_id WHERE a.node_id IS NOT NULL \
             UNION ALL SELECT r.dek_id, r.start_counter, r.end_counter FROM counter_reservations r JOIN jobs j ON j.hold_id = r.hold_id WHERE j.state = 'running'",
        )
        .fetch_all(&mut *tx)
        .await?;
        let objects: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT object_id FROM extents WHERE object_id IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut held: Vec<String> = sqlx::query_scalar(
            "SELECT d.volume_id FROM attachments a JOIN disks d ON d.id = a.disk_id WHERE a.node_id IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        // A running copy job holds its target volume (objects it put and
        // has not committed yet), attached or not.
        let copying: Vec<String> = sqlx::query_scalar(
            "SELECT target_volume FROM jobs WHERE state = 'running' AND target_volume IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        held.extend(copying);
        tx.commit().await?;
        let mut view = SweepView::default();
        for o in objects {
            view.objects.insert(crate::chunks::stored_hex_id(&o)?);
        }
        for v in held {
            view.held_volumes
                .insert(parse_id(&v, Kind::Volume)?.value());
        }
        for (dek, c) in named {
            view.referenced
                .insert((parse_id(&dek, Kind::Dek)?.value(), to_u64(c)?));
        }
        for (dek, s, e) in reserved {
            view.in_flight
                .entry(parse_id(&dek, Kind::Dek)?.value())
                .or_default()
                .push(to_u64(s)?..to_u64(e)?);
        }
        Ok(view)
    }

    /// Forget reservations whose hold is not current (its attachment is
    /// gone, has no holder, or another hold): no object in them can be
    /// committed any more. Returns how many.
    pub async fn drop_dead_reservations(&self) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM counter_reservations WHERE hold_id NOT IN (SELECT hold_id FROM attachments WHERE node_id IS NOT NULL AND hold_id IS NOT NULL) \
             AND hold_id NOT IN (SELECT hold_id FROM jobs WHERE state = 'running' AND hold_id IS NOT NULL)",
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

/// Inside a transaction: lock attachment (or job) `h.attachment` and check
/// `h.node` still holds it (a job: still running); [`MetaError::Fenced`] if
/// not. Taking the row lock first orders this write after any takeover,
/// detach or cancel.
pub(crate) async fn check_holder_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    h: &Holder,
) -> Result<()> {
    let sql = if h.attachment.kind() == Kind::Job {
        "UPDATE jobs SET node_id = node_id WHERE id = $1 AND node_id = $2 AND hold_id = $3 AND state = 'running'"
    } else {
        "UPDATE attachments SET node_id = node_id WHERE id = $1 AND node_id = $2 AND hold_id = $3"
    };
    let n = sqlx::query(sql)
        .bind(h.attachment.to_string())
        .bind(h.node.to_string())
        .bind(h.hold.to_string())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if n == 1 {
        Ok(())
    } else {
        Err(MetaError::Fenced(format!(
            "node {} no longer holds attachment {} (hold {})",
            h.node, h.attachment, h.hold
        )))
    }
}

/// Inside a transaction: record that `h` reserved counters `range` of `dek`.
pub(crate) async fn insert_reservation_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    dek: Id,
    range: &Range<u64>,
    h: &Holder,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO counter_reservations (dek_id, start_counter, end_counter, hold_id) VALUES ($1, $2, $3, $4)",
    )
    .bind(dek.to_string())
    .bind(to_i64(range.start)?)
    .bind(to_i64(range.end)?)
    .bind(h.hold.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inside a transaction: forget `h`'s reservations that end at or below
/// `below` (every counter under it is resolved: named or dead).
pub(crate) async fn release_reservations_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    h: &Holder,
    below: u64,
) -> Result<()> {
    sqlx::query("DELETE FROM counter_reservations WHERE hold_id = $1 AND end_counter <= $2")
        .bind(h.hold.to_string())
        .bind(to_i64(below)?)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use coffer_types::{Id, Kind};

    use super::*;

    /// A renewal on SQLite waits for the main connection's transaction in
    /// progress, not for the queue of transactions behind it.
    #[tokio::test]
    async fn a_renewal_overtakes_the_queue_for_the_sqlite_connection() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("meta.db").display());
        let meta = Meta::open(&url).await.unwrap();
        let node = Id::random(Kind::Node);
        meta.register_node(&NodeRow {
            id: node,
            name: "n1".into(),
            api_url: "http://127.0.0.1:1".into(),
            nbd_endpoint: "127.0.0.1:2".into(),
            started_at: crate::now(),
            lease_expires_ms: 1,
        })
        .await
        .unwrap();
        meta.setting_init("lane-test", "x").await.unwrap();

        // A write transaction in progress on the main connection...
        let mut tx = meta.begin().await.unwrap();
        sqlx::query("UPDATE settings SET value = value")
            .execute(&mut *tx)
            .await
            .unwrap();
        // ...eight more queued behind it, each holding the write lock a while...
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut queued = Vec::new();
        for i in 0..8 {
            let (meta, order) = (meta.clone(), order.clone());
            queued.push(tokio::spawn(async move {
                let mut tx = meta.begin().await.unwrap();
                sqlx::query("UPDATE settings SET value = value")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                tx.commit().await.unwrap();
                order.lock().unwrap().push(format!("queued {i}"));
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ...and a renewal asked for now.
        let renewal = {
            let (meta, order) = (meta.clone(), order.clone());
            tokio::spawn(async move {
                let renewed = meta.renew_node_lease(node, 42).await.unwrap();
                order.lock().unwrap().push("renewal".to_string());
                renewed
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.commit().await.unwrap();
        assert!(renewal.await.unwrap(), "the node's row is there");
        for q in queued {
            q.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(
            order.first().map(String::as_str),
            Some("renewal"),
            "the renewal came after queued transactions: {order:?}"
        );
        assert_eq!(order.len(), 9);
        assert_eq!(meta.node(node).await.unwrap().unwrap().lease_expires_ms, 42);
    }
}
