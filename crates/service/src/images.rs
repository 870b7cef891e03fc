//! Images: one or more snapshots (a root and data disks) that disks are
//! launched from, in any zone of the image's region (AWS AMIs, seed 002).
//! An image owns its snapshots (rows whose `image_id` names it, role
//! `root`, `data1`, ...): made from disks, it takes crash-consistent
//! snapshots of them; made from snapshots, it copies their views (O(1));
//! deleted, its snapshots go with it. Launching makes one disk per
//! snapshot; copying an image copies its snapshots.

use coffer_iam::{Action, Scope};
use coffer_meta::{ImageRow, Member, MetaError, Origin, SnapshotRow};
use coffer_types::{CreationMethod, Id, ImageState, Kind};

use crate::error::ErrorCode;
use crate::list;
use crate::model::*;
use crate::snapshots::{origin_source, origin_tags, snap_dto};
use crate::*;
use coffer_meta::ListFilter;
use coffer_wire::{ListParams, Page};

/// Most snapshots in one image (AWS allows a root and many data volumes;
/// 16 keeps a launch a bounded amount of work).
pub const MAX_IMAGE_SNAPSHOTS: usize = 16;

/// A snapshot's role in its image (`root` for one of no image).
pub(crate) fn role_in_image(s: &SnapshotRow) -> String {
    s.image
        .as_ref()
        .map_or_else(|| "root".to_string(), |r| r.1.clone())
}

fn role_of(i: usize) -> String {
    if i == 0 {
        "root".into()
    } else {
        format!("data{i}")
    }
}

fn image_dto(i: &ImageRow, snaps: &[SnapshotRow]) -> Image {
    Image {
        id: i.id.to_string(),
        name: i.name.clone(),
        account_id: i.account_id.to_string(),
        region: i.region.clone(),
        description: i.description.clone(),
        state: i.state,
        copy_jobs: vec![],
        snapshots: snaps
            .iter()
            .map(|s| {
                let d = snap_dto(s);
                ImageSnapshot {
                    role: s.image.as_ref().map_or_else(String::new, |r| r.1.clone()),
                    snapshot_id: d.id,
                    size_bytes: d.size_bytes,
                    encryption: d.encryption,
                }
            })
            .collect(),
        size_bytes: snaps.iter().map(|s| s.size).sum(),
        creation_method: i.created_by,
        source: origin_source(&i.origin),
        tags: origin_tags(i.created_by, &i.origin),
        created_at: i.created_at.clone(),
    }
}

impl Service {
    /// The image `id` if the caller may do `action` on it.
    pub(crate) async fn authorized_image(
        &self,
        caller: &Caller,
        id: &str,
        action: Action,
    ) -> Result<ImageRow> {
        let id = parse_id(id, Kind::Image)?;
        let i = self
            .meta
            .image(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(ErrorCode::ImageNotFound, "image", id))?;
        let target = self.resource_target(i.id, i.account_id).await?;
        self.check(caller, action, &target)?;
        Ok(i)
    }

    /// Images as `caller` sees them, with their snapshots and tags.
    async fn image_view(&self, caller: &Caller, rows: &[ImageRow]) -> Result<Vec<Image>> {
        let mut out = vec![];
        for i in rows {
            let snaps = self.meta.image_snapshots(i.id).await?;
            let mut dto = image_dto(i, &snaps);
            if i.state == ImageState::Pending {
                dto.copy_jobs = self
                    .meta
                    .jobs_of_image(i.id)
                    .await?
                    .into_iter()
                    .filter(|j| j.state == "running")
                    .map(|j| j.id.to_string())
                    .collect();
            }
            out.push(dto);
        }
        let owners: Vec<(Id, Id, &str)> = rows
            .iter()
            .map(|r| (r.id, r.account_id, r.region.as_str()))
            .collect();
        self.finish_view(caller, &mut out, &owners).await?;
        Ok(out)
    }

    /// Create an image from disks (crash-consistent snapshots of each are
    /// taken) or from snapshots (their views are copied, O(1)).
    pub async fn create_image(&self, caller: &Caller, req: CreateImage) -> Result<Image> {
        let name = check_name(&req.name)?;
        let tags = crate::tags::parse_tags(&req.tags)?;
        let n = req.disk_ids.len() + req.snapshot_ids.len();
        if (req.disk_ids.is_empty() == req.snapshot_ids.is_empty()) || n > MAX_IMAGE_SNAPSHOTS {
            return Err(ServiceError::new(
                ErrorCode::InvalidBody,
                format!(
                    "an image is made from disks or from snapshots (not both), 1 to {MAX_IMAGE_SNAPSHOTS}, the root first: give --disk ID... or --snapshot ID..."
                ),
            ));
        }
        let description = req.description.clone().unwrap_or_default();
        if description.chars().count() > 1024 {
            return Err(ServiceError::new(
                ErrorCode::InvalidBody,
                "an image description is at most 1024 characters",
            ));
        }
        let id = Id::random(Kind::Image);
        // The owning account first (as for disks: the caller's home by
        // default), then the sources, authorized: a disk is snapshotted
        // (snapshots/write on it), a snapshot copied (snapshots/use on it).
        let account = match &req.account_id {
            Some(a) => parse_id(a, Kind::Account)?,
            None => caller.principal.account_id,
        };
        self.check_scope(caller, Action::ImagesWrite, Scope::Id(account))
            .await?;
        let mut disks = vec![];
        for d in &req.disk_ids {
            disks.push(
                self.authorized_disk(caller, d, Action::SnapshotsWrite)
                    .await?,
            );
        }
        let mut snaps = vec![];
        for s in &req.snapshot_ids {
            snaps.push(
                self.authorized_snapshot(caller, s, Action::SnapshotsUse)
                    .await?,
            );
        }
        let regions: Vec<&str> = disks
            .iter()
            .map(|d| d.region.as_str())
            .chain(snaps.iter().map(|s| s.region.as_str()))
            .collect();
        let region = regions[0].to_string();
        if regions.iter().any(|r| *r != region) {
            return Err(ServiceError::new(
                ErrorCode::RegionMismatch,
                "an image is regional: its disks or snapshots must all be in one region",
            ));
        }
        for (what, owner, rid) in disks
            .iter()
            .map(|d| ("disk", d.account_id, d.id))
            .chain(snaps.iter().map(|s| ("snapshot", s.account_id, s.id)))
        {
            if owner != account {
                return Err(ServiceError::new(
                    ErrorCode::InvalidBody,
                    format!(
                        "{what} {rid} belongs to account {owner}, not {account}: an image is made from its own account's {what}s (copy the snapshot into account {account} first: `coffer snapshot copy`)"
                    ),
                ));
            }
        }
        self.check_name_free(Kind::Image, account, name.as_str())
            .await?;
        let image = ImageRow {
            id,
            account_id: account,
            name: name.to_string(),
            region,
            description,
            created_by: CreationMethod::Image,
            origin: Origin::default(),
            created_at: coffer_meta::now(),
            state: ImageState::Available,
        };
        let mut members = vec![];
        let mut taken = vec![];
        for (i, d) in disks.iter().enumerate() {
            let role = role_of(i);
            let snap_name = format!("{id}.{role}");
            match self
                .take_snapshot(d, &snap_name, CreationMethod::Image)
                .await
            {
                Ok(row) => {
                    taken.push(row.id);
                    members.push(Member::Adopt {
                        snapshot: row.id,
                        role,
                    });
                }
                Err(e) => {
                    self.drop_snapshots(&taken).await;
                    return Err(e);
                }
            }
        }
        for (i, s) in snaps.iter().enumerate() {
            let role = role_of(i);
            members.push(Member::Copy {
                row: Box::new(SnapshotRow {
                    id: Id::random(Kind::Snapshot),
                    name: format!("{id}.{role}"),
                    created_at: image.created_at.clone(),
                    image: Some((id, role)),
                    created_by: CreationMethod::Image,
                    origin: Origin {
                        account: Some(s.account_id),
                        region: Some(s.region.clone()),
                        id: Some(s.id),
                    },
                    ..s.clone()
                }),
                source: s.id,
            });
        }
        if let Err(e) = self.meta.create_image(&image, &members, &tags).await {
            self.drop_snapshots(&taken).await;
            return Err(match e {
                MetaError::NotFound(what) => ServiceError::new(
                    ErrorCode::Conflict,
                    format!("{what} was deleted while the image was made: retry"),
                ),
                other => other.into(),
            });
        }
        tracing::info!(image = %id, snapshots = members.len(), "image created");
        Ok(self.image_view(caller, &[image]).await?.remove(0))
    }

    /// Delete snapshots an image creation took before it failed.
    async fn drop_snapshots(&self, ids: &[Id]) {
        for s in ids {
            if let Err(e) = self.meta.delete_snapshot(*s).await {
                tracing::warn!(snapshot = %s, error = %e, "could not delete a snapshot of a failed image");
            }
        }
        self.gc_wake.notify_one();
    }

    /// A page of the images the caller may see (its own and shared ones).
    pub async fn list_images(&self, caller: &Caller, q: ListParams) -> Result<Page<Image>> {
        let p = list::paging(&q)?;
        let filter = ListFilter {
            visible: self
                .visible_shared(caller, Action::ImagesRead, Kind::Image, q.shared.as_deref())
                .await?,
            name: q.name.clone(),
            account: self.account_filter(caller, q.account.as_deref()).await?,
            zone: None,
            attached: None,
            source: None,
            tag: crate::tags::tag_filter(q.tag.as_deref())?,
            state: None,
            after: p.after,
            limit: p.size + 1,
        };
        let rows = self.meta.list_images_page(&filter).await?;
        Ok(list::finish(self.image_view(caller, &rows).await?, p.size))
    }

    /// One image.
    pub async fn get_image(&self, caller: &Caller, id: &str) -> Result<Image> {
        let i = self
            .authorized_image(caller, id, Action::ImagesRead)
            .await?;
        Ok(self.image_view(caller, &[i]).await?.remove(0))
    }

    /// Delete an image and its snapshots; disks launched from it keep
    /// their data, and so do copies.
    pub async fn delete_image(&self, caller: &Caller, id: &str) -> Result<Image> {
        let i = self
            .authorized_image(caller, id, Action::ImagesDelete)
            .await?;
        if i.state == ImageState::Pending {
            return Err(self.image_pending(&i, "deleted").await);
        }
        let shown = self
            .image_view(caller, std::slice::from_ref(&i))
            .await?
            .remove(0);
        self.meta.delete_image(i.id).await.map_err(|e| match e {
            MetaError::NotFound(_) => {
                ServiceError::not_found(ErrorCode::ImageNotFound, "image", i.id)
            }
            other => other.into(),
        })?;
        if let Some(p) = self.meta.permission_share(i.account_id, i.id).await? {
            self.meta.delete_share(p.id).await?;
        }
        self.meta
            .delete_role_assignments_at(&i.id.to_string())
            .await?;
        self.gc_wake.notify_one();
        tracing::info!(image = %i.id, "image deleted");
        Ok(shown)
    }

    /// Launch an image: one disk per snapshot, named `NAME-ROLE`, in one
    /// zone of the image's region. All or nothing: a failure deletes the
    /// disks already made.
    pub async fn launch_image(
        &self,
        caller: &Caller,
        id: &str,
        req: LaunchImage,
    ) -> Result<Vec<Disk>> {
        let image = self.authorized_image(caller, id, Action::ImagesUse).await?;
        self.image_ready(&image, "launched").await?;
        let prefix = req.name.clone().unwrap_or_else(|| image.name.clone());
        let snaps = self.meta.image_snapshots(image.id).await?;
        let mut made: Vec<Disk> = vec![];
        for s in snaps {
            let role = role_in_image(&s);
            let disk_req = CreateDisk {
                name: format!("{prefix}-{role}"),
                zone: req.zone.clone(),
                size: None,
                source_snapshot_id: Some(s.id.to_string()),
                account_id: req.account_id.clone(),
                encryption_set_id: req.encryption_set_id.clone(),
                tags: req.tags.clone(),
            };
            match self
                .create_disk_from(caller, disk_req, Some(s), Some(&image))
                .await
            {
                Ok(d) => made.push(d),
                Err(e) => {
                    for d in &made {
                        if let Ok(id) = d.id.parse::<Id>()
                            && let Err(e) = self.meta.delete_disk(id).await
                        {
                            tracing::warn!(disk = %id, error = %e, "could not delete a disk of a failed launch");
                        }
                    }
                    self.gc_wake.notify_one();
                    return Err(e);
                }
            }
        }
        self.fill_tags(&mut made).await?;
        tracing::info!(image = %image.id, disks = made.len(), zone = %req.zone, "image launched");
        Ok(made)
    }

    /// Copy an image into an account (the caller's by default): its
    /// snapshots are copied with it (O(1) under the same keys).
    pub async fn copy_image(&self, caller: &Caller, id: &str, req: CopyRequest) -> Result<Image> {
        let src = self.authorized_image(caller, id, Action::ImagesUse).await?;
        self.image_ready(&src, "copied").await?;
        let name = check_name(&req.name)?;
        let tags = crate::tags::parse_tags(&req.tags)?;
        let account = match &req.account_id {
            Some(a) => parse_id(a, Kind::Account)?,
            None => caller.principal.account_id,
        };
        self.check_scope(caller, Action::ImagesWrite, Scope::Id(account))
            .await?;
        self.check_name_free(Kind::Image, account, name.as_str())
            .await?;
        let snaps = self.meta.image_snapshots(src.id).await?;
        let region = self.copy_region(&src.region, req.target_region.as_deref())?;
        let mut reencrypt = false;
        for s in &snaps {
            reencrypt |= self.copy_mode(
                s,
                account,
                &region,
                req.encryption_set_id.as_deref(),
                req.rekey,
            )? == crate::snapshots::CopyMode::Reencrypt;
        }
        let mut image = ImageRow {
            id: Id::random(Kind::Image),
            account_id: account,
            name: name.to_string(),
            region: region.clone(),
            description: src.description.clone(),
            created_by: CreationMethod::Copy,
            origin: Origin {
                account: Some(src.account_id),
                region: Some(src.region.clone()),
                id: Some(src.id),
            },
            created_at: coffer_meta::now(),
            state: ImageState::Available,
        };
        if reencrypt {
            image.state = ImageState::Pending;
            return self
                .copy_image_reencrypting(caller, &src, image, &snaps, &req, tags)
                .await;
        }
        let members: Vec<Member> = snaps
            .iter()
            .map(|s| {
                let role = role_in_image(s);
                Member::Copy {
                    row: Box::new(SnapshotRow {
                        id: Id::random(Kind::Snapshot),
                        account_id: account,
                        name: format!("{}.{role}", image.id),
                        created_at: image.created_at.clone(),
                        image: Some((image.id, role)),
                        created_by: CreationMethod::Copy,
                        origin: Origin {
                            account: Some(s.account_id),
                            region: Some(s.region.clone()),
                            id: Some(s.id),
                        },
                        source_disk_id: s.source_disk_id.filter(|_| account == s.account_id),
                        ..s.clone()
                    }),
                    source: s.id,
                }
            })
            .collect();
        self.meta
            .create_image(&image, &members, &tags)
            .await
            .map_err(|e| match e {
                MetaError::NotFound(_) => {
                    ServiceError::not_found(ErrorCode::ImageNotFound, "image", src.id)
                }
                other => other.into(),
            })?;
        tracing::info!(image = %image.id, source = %src.id, account = %account, "image copied (O(1), same keys)");
        Ok(self.image_view(caller, &[image]).await?.remove(0))
    }

    /// Copy an image under another key: the image appears at once,
    /// pending, and one job per snapshot re-encrypts it (the image turns
    /// available in the transaction that ends the last; a failure or
    /// cancel of any fails it and stops the others).
    async fn copy_image_reencrypting(
        &self,
        caller: &Caller,
        src: &ImageRow,
        image: ImageRow,
        snaps: &[SnapshotRow],
        req: &CopyRequest,
        tags: Vec<coffer_types::Tag>,
    ) -> Result<Image> {
        let mut jobs = vec![];
        for s in snaps {
            let role = role_in_image(s);
            match self
                .plan_copy_job(
                    caller,
                    s,
                    image.account_id,
                    &image.region,
                    &format!("{}.{role}", image.id),
                    (req.encryption_set_id.as_deref(), req.rekey),
                    vec![],
                    Some((image.id, role)),
                )
                .await
            {
                Ok(j) => jobs.push(j),
                Err(e) => {
                    self.forget_job_keys(&jobs).await;
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.meta.create_image_copy(&image, &jobs, &tags).await {
            self.forget_job_keys(&jobs).await;
            return Err(match e {
                MetaError::NotFound(_) => {
                    ServiceError::not_found(ErrorCode::ImageNotFound, "image", src.id)
                }
                MetaError::NameTaken { .. } => {
                    ServiceError::name_taken(Kind::Image, image.account_id, &image.name)
                }
                other => other.into(),
            });
        }
        self.jobs_wake.notify_one();
        tracing::info!(image = %image.id, source = %src.id, account = %image.account_id, jobs = jobs.len(), "re-encrypting image copy started");
        Ok(self.image_view(caller, &[image]).await?.remove(0))
    }

    /// Refuse to use an image that is not available.
    async fn image_ready(&self, image: &ImageRow, what: &str) -> Result<()> {
        match image.state {
            ImageState::Available => Ok(()),
            ImageState::Pending => Err(self.image_pending(image, what).await),
            ImageState::Failed => Err(ServiceError::new(
                ErrorCode::Conflict,
                format!(
                    "image {} failed: its copy did not finish (`coffer job list` says why), so it cannot be {what}; delete it (`coffer image delete {}`) and copy again",
                    image.id, image.id
                ),
            )),
        }
    }

    /// The refusal for a pending image, naming its running jobs.
    async fn image_pending(&self, image: &ImageRow, what: &str) -> ServiceError {
        let jobs: Vec<String> = match self.meta.jobs_of_image(image.id).await {
            Ok(j) => j
                .into_iter()
                .filter(|j| j.state == "running")
                .map(|j| j.id.to_string())
                .collect(),
            Err(_) => vec![],
        };
        ServiceError::new(
            ErrorCode::Conflict,
            format!(
                "image {} is pending: its copy is still running (jobs {}), so it cannot be {what} yet; wait for it (`coffer job wait JOB`), or cancel the jobs (`coffer job cancel JOB`)",
                image.id,
                jobs.join(", ")
            ),
        )
    }
}
