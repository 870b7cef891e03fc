//! Snapshots: crash-consistent, of attached or detached disks; list, show,
//! delete.

use coffer_iam::Action;
use coffer_meta::{SnapshotBy, SnapshotRow, now_ms};
use coffer_types::{ByteSize, Id, Kind};

use crate::error::ErrorCode;
use crate::list;
use crate::model::*;
use crate::node::*;
use crate::*;
use coffer_meta::ListFilter;
use coffer_types::SnapshotState;
use coffer_wire::{ListParams, Page};

pub(crate) fn snap_dto(s: &SnapshotRow) -> Snapshot {
    Snapshot {
        id: s.id.to_string(),
        name: s.name.clone(),
        account_id: s.account_id.to_string(),
        region: s.region.clone(),
        source_disk_id: s.source_disk_id.map(|d| d.to_string()),
        size_bytes: s.size,
        size: ByteSize(s.size).to_string(),
        state: SnapshotState::Completed,
        encryption: Encryption {
            kind: s.encryption,
            key_id: s.kek_id.to_string(),
            encryption_set_id: s.encryption_set_id.map(|s| s.to_string()),
        },
        created_at: s.created_at.clone(),
    }
}

impl Service {
    /// The snapshot `id` if the caller may do `action` on it.
    pub(crate) async fn authorized_snapshot(
        &self,
        caller: &Caller,
        id: &str,
        action: Action,
    ) -> Result<SnapshotRow> {
        let id = parse_id(id, Kind::Snapshot)?;
        let s =
            self.meta.snapshot(id).await?.ok_or_else(|| {
                ServiceError::not_found(ErrorCode::SnapshotNotFound, "snapshot", id)
            })?;
        let target = self.resource_target(s.id, s.account_id).await?;
        self.check(caller, action, &target)?;
        Ok(s)
    }

    /// Take a crash-consistent snapshot of a disk, attached or not.
    pub async fn create_snapshot(&self, caller: &Caller, req: CreateSnapshot) -> Result<Snapshot> {
        let name = check_name(&req.name)?;
        let d = self
            .authorized_disk(caller, &req.disk_id, Action::SnapshotsWrite)
            .await?;
        self.check_name_free(Kind::Snapshot, d.account_id, name.as_str())
            .await?;
        let mut row = SnapshotRow {
            id: Id::random(Kind::Snapshot),
            account_id: d.account_id,
            name: name.to_string(),
            region: d.region.clone(),
            source_disk_id: Some(d.id),
            volume_id: d.volume_id,
            generation: 0,
            size: d.size,
            encryption: d.encryption,
            kek_id: d.kek_id,
            created_at: coffer_meta::now(),
            encryption_set_id: d.encryption_set_id,
        };
        if let Some(att) = self.meta.attachment_of_disk(d.id).await?
            && let HeldBy::Other(n) = self.held_by(&att).await?
        {
            // Its writes cached on that node belong in the snapshot.
            return Err(ServiceError::elsewhere(
                &n.name,
                &n.api_url,
                format_args!("disk {}", d.id),
            ));
        }
        let open = self.open.lock().await;
        if let Some(v) = open.get(&d.id).cloned() {
            drop(open);
            row = v.snapshot(row).await?;
        } else {
            row.generation = self.meta.volume(d.volume_id).await?.head_generation;
            self.meta
                .create_snapshot(
                    &row,
                    SnapshotBy::NotOpen {
                        me: self.my_node_id().await,
                        now_ms: now_ms(),
                    },
                )
                .await?;
            drop(open);
        }
        tracing::info!(snapshot = %row.id, disk = %d.id, "snapshot created");
        Ok(snap_dto(&row))
    }

    /// A page of the snapshots the caller may read, in every account
    /// (shared ones too; one query per page).
    pub async fn list_snapshots(&self, caller: &Caller, q: ListParams) -> Result<Page<Snapshot>> {
        let p = list::paging(&q)?;
        let filter = ListFilter {
            visible: self
                .visible(caller, Action::SnapshotsRead, Kind::Snapshot)
                .await?,
            name: q.name.clone(),
            account: self.account_filter(caller, q.account.as_deref()).await?,
            zone: None,
            attached: None,
            source: list::id_filter("source_disk", q.source_disk.as_deref(), Kind::Disk)?,
            after: p.after,
            limit: p.size + 1,
        };
        let rows = self.meta.list_snapshots_page(&filter).await?;
        Ok(list::finish(rows.iter().map(snap_dto).collect(), p.size))
    }

    /// One snapshot.
    pub async fn get_snapshot(&self, caller: &Caller, id: &str) -> Result<Snapshot> {
        Ok(snap_dto(
            &self
                .authorized_snapshot(caller, id, Action::SnapshotsRead)
                .await?,
        ))
    }

    /// Delete a snapshot; disks made from it keep their data.
    pub async fn delete_snapshot(&self, caller: &Caller, id: &str) -> Result<Snapshot> {
        let s = self
            .authorized_snapshot(caller, id, Action::SnapshotsDelete)
            .await?;
        // A delete that another caller (or node) won answers as that
        // snapshot being gone, not as an internal error.
        self.meta.delete_snapshot(s.id).await.map_err(|e| match e {
            coffer_meta::MetaError::NotFound(_) => {
                ServiceError::not_found(ErrorCode::SnapshotNotFound, "snapshot", s.id)
            }
            other => other.into(),
        })?;
        self.meta
            .delete_role_assignments_at(&s.id.to_string())
            .await?;
        self.gc_wake.notify_one();
        tracing::info!(snapshot = %s.id, "snapshot deleted");
        Ok(snap_dto(&s))
    }
}
