//! Snapshots: crash-consistent, of attached or detached disks; list, show,
//! delete; O(1) copies (a new row on the same view) into the caller's
//! account; what a recipient sees of a shared one.

use coffer_iam::Action;
use coffer_meta::{SnapshotBy, SnapshotRow, now_ms};
use coffer_types::{ByteSize, Id, Kind};

use crate::error::ErrorCode;
use crate::list;
use crate::model::*;
use crate::node::*;
use crate::*;
use coffer_meta::ListFilter;
use coffer_types::{CreationMethod, SnapshotState};
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
        creation_method: s.created_by,
        image_id: s.image.as_ref().map(|i| i.0.to_string()),
        image_role: s.image.as_ref().map(|i| i.1.clone()),
        source: origin_source(&s.origin),
        tags: origin_tags(s.created_by, &s.origin),
    }
}

/// The wire form of where a copy came from.
pub(crate) fn origin_source(o: &coffer_meta::Origin) -> Option<Source> {
    match (&o.account, &o.region) {
        (Some(a), Some(r)) => Some(Source {
            account_id: a.to_string(),
            region: r.clone(),
            id: o.id.map(|i| i.to_string()),
        }),
        _ => None,
    }
}

/// `coffer:copied-from = ACCOUNT:REGION:ID` on a copy.
pub(crate) fn origin_tags(
    by: CreationMethod,
    o: &coffer_meta::Origin,
) -> std::collections::BTreeMap<String, String> {
    let mut t = std::collections::BTreeMap::new();
    if by == CreationMethod::Copy
        && let (Some(a), Some(r), Some(i)) = (&o.account, &o.region, &o.id)
    {
        t.insert("coffer:copied-from".into(), format!("{a}:{r}:{i}"));
    }
    t
}

/// How a recipient sees a resource another account shares with it: made
/// by `shared`, from the owner (`coffer:shared-from = ACCOUNT:REGION:ID`,
/// Alibaba's `acs:ecs:sharedFrom` tag).
pub(crate) fn as_shared(
    method: &mut CreationMethod,
    source: &mut Option<Source>,
    tags: &mut std::collections::BTreeMap<String, String>,
    (account, region, id): (Id, &str, Id),
) {
    *method = CreationMethod::Shared;
    *source = Some(Source {
        account_id: account.to_string(),
        region: region.to_string(),
        id: Some(id.to_string()),
    });
    tags.insert(
        "coffer:shared-from".into(),
        format!("{account}:{region}:{id}"),
    );
}

impl Caller {
    /// Whether the caller sees `resource` of `owner` only because it is
    /// shared with its account.
    pub(crate) fn through_share(&self, resource: Id, owner: Id) -> bool {
        owner != self.principal.account_id
            && self.subject.shared.iter().any(|s| s.resource == resource)
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

    /// A snapshot as `caller` sees it (shared, when another account
    /// shares it with the caller's), with its tags.
    pub(crate) async fn snap_view(
        &self,
        caller: &Caller,
        rows: &[SnapshotRow],
    ) -> Result<Vec<Snapshot>> {
        let mut out: Vec<Snapshot> = rows.iter().map(snap_dto).collect();
        let owners: Vec<(Id, Id, &str)> = rows
            .iter()
            .map(|r| (r.id, r.account_id, r.region.as_str()))
            .collect();
        self.finish_view(caller, &mut out, &owners).await?;
        Ok(out)
    }

    /// Take a crash-consistent snapshot of a disk, attached or not.
    pub async fn create_snapshot(&self, caller: &Caller, req: CreateSnapshot) -> Result<Snapshot> {
        let name = check_name(&req.name)?;
        let tags = crate::tags::parse_tags(&req.tags)?;
        let d = self
            .authorized_disk(caller, &req.disk_id, Action::SnapshotsWrite)
            .await?;
        self.check_name_free(Kind::Snapshot, d.account_id, name.as_str())
            .await?;
        let row = self
            .take_snapshot(&d, name.as_str(), CreationMethod::Snapshot)
            .await?;
        if !tags.is_empty() {
            self.meta
                .tag_resource(row.id, &tags, coffer_types::tag::MAX_TAGS)
                .await?;
        }
        Ok(self.snap_view(caller, &[row]).await?.remove(0))
    }

    /// Take a crash-consistent snapshot of disk `d` named `name` (checked
    /// by the caller), through its open volume if this node has it open.
    pub(crate) async fn take_snapshot(
        &self,
        d: &coffer_meta::DiskRow,
        name: &str,
        created_by: CreationMethod,
    ) -> Result<SnapshotRow> {
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
            image: None,
            created_by,
            origin: Default::default(),
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
        Ok(row)
    }

    /// A page of the snapshots the caller may read, in every account
    /// (shared ones too; one query per page).
    pub async fn list_snapshots(&self, caller: &Caller, q: ListParams) -> Result<Page<Snapshot>> {
        let p = list::paging(&q)?;
        let filter = ListFilter {
            visible: self
                .visible_shared(
                    caller,
                    Action::SnapshotsRead,
                    Kind::Snapshot,
                    q.shared.as_deref(),
                )
                .await?,
            name: q.name.clone(),
            account: self.account_filter(caller, q.account.as_deref()).await?,
            zone: None,
            attached: None,
            source: list::id_filter("source_disk", q.source_disk.as_deref(), Kind::Disk)?,
            tag: crate::tags::tag_filter(q.tag.as_deref())?,
            state: None,
            after: p.after,
            limit: p.size + 1,
        };
        let rows = self.meta.list_snapshots_page(&filter).await?;
        Ok(list::finish(self.snap_view(caller, &rows).await?, p.size))
    }

    /// One snapshot.
    pub async fn get_snapshot(&self, caller: &Caller, id: &str) -> Result<Snapshot> {
        let s = self
            .authorized_snapshot(caller, id, Action::SnapshotsRead)
            .await?;
        Ok(self.snap_view(caller, &[s]).await?.remove(0))
    }

    /// Copy a snapshot into an account (the caller's by default): the
    /// copy is the caller's, independent of the source's sharing and
    /// deletion. Under the same key it shares the source's ciphertext (one
    /// row, no object written: O(1), done at once); under another key it
    /// is a re-encrypting job (`copies`); see `copy_mode` for which.
    pub async fn copy_snapshot(&self, caller: &Caller, id: &str, req: CopyRequest) -> Result<Job> {
        let src = self
            .authorized_snapshot(caller, id, Action::SnapshotsUse)
            .await?;
        let name = check_name(&req.name)?;
        let tags = crate::tags::parse_tags(&req.tags)?;
        let account = match &req.account_id {
            Some(a) => parse_id(a, Kind::Account)?,
            None => caller.principal.account_id,
        };
        self.check_scope(
            caller,
            Action::SnapshotsWrite,
            coffer_iam::Scope::Id(account),
        )
        .await?;
        self.check_name_free(Kind::Snapshot, account, name.as_str())
            .await?;
        let region = self.copy_region(&src.region, req.target_region.as_deref())?;
        if self.copy_mode(
            &src,
            account,
            &region,
            req.encryption_set_id.as_deref(),
            req.rekey,
        )? == CopyMode::Reencrypt
        {
            return self
                .start_copy_job(
                    caller,
                    &src,
                    account,
                    &region,
                    &name,
                    (req.encryption_set_id.as_deref(), req.rekey),
                    tags,
                )
                .await;
        }
        let row = SnapshotRow {
            id: Id::random(Kind::Snapshot),
            account_id: account,
            name: name.to_string(),
            created_at: coffer_meta::now(),
            image: None,
            created_by: CreationMethod::Copy,
            origin: coffer_meta::Origin {
                account: Some(src.account_id),
                region: Some(src.region.clone()),
                id: Some(src.id),
            },
            // The owner's disk id is theirs: a copy into another account
            // names no disk it cannot see.
            source_disk_id: src.source_disk_id.filter(|_| account == src.account_id),
            ..src.clone()
        };
        self.meta
            .copy_snapshot(&row, src.id, &tags)
            .await
            .map_err(|e| match e {
                coffer_meta::MetaError::NotFound(_) => {
                    ServiceError::not_found(ErrorCode::SnapshotNotFound, "snapshot", src.id)
                }
                other => other.into(),
            })?;
        tracing::info!(snapshot = %row.id, source = %src.id, account = %account, "snapshot copied (O(1), same key)");
        Ok(Job {
            id: String::new(),
            kind: "snapshot-copy".into(),
            state: "succeeded".into(),
            account_id: account.to_string(),
            source_id: src.id.to_string(),
            target_id: row.id.to_string(),
            source_region: src.region.clone(),
            target_region: src.region.clone(),
            base_id: None,
            bytes_copied: 0,
            image_id: None,
            bytes_total: src.size,
            bytes_done: src.size,
            message: Some("shares the source's encrypted data: nothing was copied".into()),
            source_hash: None,
            target_hash: None,
            created_at: row.created_at.clone(),
            updated_at: row.created_at.clone(),
            finished_at: Some(row.created_at.clone()),
        })
    }

    /// How a copy of `src` into `account` in `region` is made.
    ///
    /// It may share the source's ciphertext (O(1)) when its key and region
    /// do not change: a platform-key source (anywhere in the region), or a
    /// customer-key source copied within its own account. It is
    /// re-encrypted when the caller asks for another key (`--encryption-set`
    /// or `--rekey`) or another region (keys and stores are regional); a
    /// customer-key source going into another account, or into another
    /// region, must name a key there (else 422 `KeyRequired`).
    pub(crate) fn copy_mode(
        &self,
        src: &SnapshotRow,
        account: Id,
        region: &str,
        set: Option<&str>,
        rekey: bool,
    ) -> Result<CopyMode> {
        if region != src.region {
            if set.is_none() && src.encryption != coffer_types::EncryptionType::Platform {
                return Err(ServiceError::new(
                    ErrorCode::KeyRequired,
                    format!(
                        "snapshot {} is under customer-managed key {} of region {}, and keys never leave their region: a copy in region {region} must be encrypted under a key of that region: create an encryption set in {region} (over a key of a key vault there) and name it with --encryption-set",
                        src.id, src.kek_id, src.region
                    ),
                ));
            }
            return Ok(CopyMode::Reencrypt);
        }
        if rekey || set.is_some() {
            return Ok(CopyMode::Reencrypt);
        }
        if src.encryption != coffer_types::EncryptionType::Platform && src.account_id != account {
            return Err(ServiceError::new(
                ErrorCode::KeyRequired,
                format!(
                    "snapshot {} is under customer-managed key {} of account {}: a copy in account {account} must be encrypted under a key of its own: name one with --encryption-set",
                    src.id, src.kek_id, src.account_id
                ),
            ));
        }
        Ok(CopyMode::InPlace)
    }

    /// Delete a snapshot; disks made from it keep their data.
    pub async fn delete_snapshot(&self, caller: &Caller, id: &str) -> Result<Snapshot> {
        let s = self
            .authorized_snapshot(caller, id, Action::SnapshotsDelete)
            .await?;
        if let Some((image, role)) = &s.image {
            return Err(ServiceError::new(
                ErrorCode::SnapshotInUse,
                format!(
                    "snapshot {} is the {role} snapshot of image {image}: it goes with the image (`coffer image delete {image}`)",
                    s.id
                ),
            ));
        }
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

/// How a copy is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyMode {
    /// A new row on the same encrypted data (O(1)).
    InPlace,
    /// Every block re-encrypted under a new data key (a job).
    Reencrypt,
}
