//! Disks: create (empty or from a snapshot), list, show, resize, delete.

use coffer_iam::{Action, Scope};
use coffer_meta::{DiskRow, MetaError, SnapshotRow, VolumeRow};
use coffer_types::{ByteSize, Id, Kind};

use crate::error::ErrorCode;
use crate::list;
use crate::model::*;
use crate::*;
use coffer_meta::ListFilter;
use coffer_types::{CreationMethod, DiskState, EncryptionType};
use coffer_wire::{ListParams, Page};

pub(crate) fn disk_dto(d: &DiskRow, attached: bool) -> Disk {
    Disk {
        id: d.id.to_string(),
        name: d.name.clone(),
        account_id: d.account_id.to_string(),
        region: d.region.clone(),
        zone: d.zone.clone(),
        size_bytes: d.size,
        size: ByteSize(d.size).to_string(),
        state: if attached {
            DiskState::Attached
        } else {
            DiskState::Available
        },
        encryption: Encryption {
            kind: d.encryption,
            key_id: d.kek_id.to_string(),
            encryption_set_id: d.encryption_set_id.map(|s| s.to_string()),
        },
        source_snapshot_id: d.source_snapshot_id.map(|s| s.to_string()),
        created_at: d.created_at.clone(),
        source_image_id: d.source_image_id.map(|s| s.to_string()),
        creation_method: if d.source_image_id.is_some() {
            CreationMethod::FromImage
        } else if d.source_snapshot_id.is_some() {
            CreationMethod::FromSnapshot
        } else {
            CreationMethod::Empty
        },
        source: match (&d.origin.account, &d.origin.region) {
            (Some(a), Some(r)) => Some(Source {
                account_id: a.to_string(),
                region: r.clone(),
                id: d
                    .source_image_id
                    .or(d.source_snapshot_id)
                    .map(|s| s.to_string()),
            }),
            _ => None,
        },
        tags: Default::default(),
    }
}

pub(crate) fn check_size(size: u64) -> Result<()> {
    if size < MIN_DISK {
        return Err(ServiceError::new(
            ErrorCode::InvalidSize,
            format!("size {} is too small: the minimum is 1MiB", ByteSize(size)),
        ));
    }
    if size > MAX_DISK {
        return Err(ServiceError::new(
            ErrorCode::InvalidSize,
            format!("size {} is too large: the maximum is 64TiB", ByteSize(size)),
        ));
    }
    if !size.is_multiple_of(MIB) {
        return Err(ServiceError::new(
            ErrorCode::InvalidSize,
            format!("size {size} bytes is not a whole number of MiB: use e.g. 512MiB or 10GiB"),
        ));
    }
    Ok(())
}

impl Service {
    /// A new DEK for the outer layer of a double-encryption volume,
    /// wrapped by the region's platform key (the inner layer's DEK is
    /// wrapped by the customer key, so neither key alone opens a slot).
    async fn platform_layer(&self, region: &str) -> Result<Id> {
        let kek = self.vault.platform_key(region).await?;
        Ok(self.vault.new_dek(&kek).await?.0)
    }

    /// The disk `id` if the caller may do `action` on it (404 if missing or
    /// hidden from the caller, 403 if visible but not allowed).
    pub(crate) async fn authorized_disk(
        &self,
        caller: &Caller,
        id: &str,
        action: Action,
    ) -> Result<DiskRow> {
        let id = parse_id(id, Kind::Disk)?;
        let d = self
            .meta
            .disk(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(ErrorCode::DiskNotFound, "disk", id))?;
        let target = self.resource_target(d.id, d.account_id).await?;
        self.check(caller, action, &target)?;
        Ok(d)
    }

    pub(crate) async fn is_attached(&self, disk: Id) -> Result<bool> {
        Ok(self.meta.attachment_of_disk(disk).await?.is_some())
    }

    /// Create a disk, empty or from a snapshot.
    pub async fn create_disk(&self, caller: &Caller, req: CreateDisk) -> Result<Disk> {
        // Seeing a snapshot is not launching it: `snapshots/use`.
        let source = match &req.source_snapshot_id {
            Some(s) => Some(
                self.authorized_snapshot(caller, s, Action::SnapshotsUse)
                    .await?,
            ),
            None => None,
        };
        let mut d = self.create_disk_from(caller, req, source, None).await?;
        self.fill_tags(std::slice::from_mut(&mut d)).await?;
        Ok(d)
    }

    /// Create a disk, empty or from `source` (which the caller may use,
    /// directly or through `image`, the image it belongs to).
    pub(crate) async fn create_disk_from(
        &self,
        caller: &Caller,
        req: CreateDisk,
        source: Option<SnapshotRow>,
        image: Option<&coffer_meta::ImageRow>,
    ) -> Result<Disk> {
        let name = check_name(&req.name)?;
        let tags = crate::tags::parse_tags(&req.tags)?;
        let account = match &req.account_id {
            Some(a) => parse_id(a, Kind::Account)?,
            None => caller.principal.account_id,
        };
        self.check_scope(caller, Action::DisksWrite, Scope::Id(account))
            .await?;
        self.check_name_free(Kind::Disk, account, name.as_str())
            .await?;
        let region = self
            .config
            .regions
            .region_of_zone(&req.zone)
            .map_err(|e| ServiceError::new(ErrorCode::UnknownZone, e.to_string()))?
            .to_string();
        let size = match (&req.size, &source) {
            (Some(s), _) => s.bytes(),
            (None, Some(snap)) => snap.size,
            (None, None) => {
                return Err(ServiceError::new(
                    ErrorCode::MissingSize,
                    "an empty disk needs a size, e.g. --size 10GiB (or give --from-snapshot)",
                ));
            }
        };
        check_size(size)?;
        let id = Id::random(Kind::Disk);
        let now = coffer_meta::now();
        let set = match &req.encryption_set_id {
            Some(_) if source.is_some() => {
                return Err(ServiceError::new(
                    ErrorCode::InvalidKeyOperation,
                    "a disk from a snapshot keeps the snapshot's encryption: leave out the encryption set",
                ));
            }
            Some(s) => Some(self.set_for_new_disk(caller, s, &region).await?),
            None => None,
        };
        let (volume, kek_id, encryption) = match &source {
            Some(snap) => {
                if snap.region != region {
                    return Err(ServiceError::new(
                        ErrorCode::RegionMismatch,
                        format!(
                            "snapshot {} is in region '{}' but zone '{}' is in region '{region}': copy the snapshot to that region first",
                            snap.id, snap.region, req.zone
                        ),
                    ));
                }
                if size < snap.size {
                    return Err(ServiceError::new(
                        ErrorCode::InvalidSize,
                        format!(
                            "size {} is smaller than the snapshot's {}: a disk from a snapshot is at least as large",
                            ByteSize(size),
                            ByteSize(snap.size)
                        ),
                    ));
                }
                let parent = self.meta.volume(snap.volume_id).await?;
                // The new disk writes under a DEK of its own, wrapped by
                // the key that wraps its parent's: it reads what it shares
                // with the snapshot under the DEK each extent names, and
                // never writes under a DEK another volume uses (one nonce
                // budget per volume, and a DEK that can move or be
                // re-wrapped without touching the snapshot's).
                let parent_dek = self.meta.dek(parent.dek_id).await?;
                if let Some(set_id) = parent_dek.encryption_set_id
                    && let Some(s) = self.meta.encryption_set(set_id).await?
                    && s.account_id != account
                {
                    // A disk of another account is under a key of its own
                    // (SPEC §4): its data is re-encrypted by a copy first.
                    let from = match image {
                        Some(i) => format!(
                            "`coffer image copy {} --name NAME --encryption-set SET --wait`, then launch the copy",
                            i.id
                        ),
                        None => format!(
                            "`coffer snapshot copy {} --name NAME --encryption-set SET --wait`, then create the disk from the copy",
                            snap.id
                        ),
                    };
                    if self.account_may_decrypt(s.key_id, account).await? {
                        return Err(ServiceError::new(
                            ErrorCode::KeyRequired,
                            format!(
                                "snapshot {} is under customer-managed key {} of account {}: a disk of account {account} is encrypted under a key of its own, so copy it first under an encryption set SET of account {account}: {from}",
                                snap.id, s.key_id, s.account_id
                            ),
                        ));
                    }
                    return Err(ServiceError::new(
                        ErrorCode::CustomerKeyBoundary,
                        format!(
                            "snapshot {} is under customer-managed key {} of account {} (encryption set {}), which account {account} holds no grant on: ask its owner to share a copy under the platform key (docs/workflows/000-azure-share-snapshot.md, W0.4), or, within the tenant, to grant account {account} the key; then {from}",
                            snap.id, s.key_id, s.account_id, s.id
                        ),
                    ));
                }
                let (dek_id, _dek) = match parent_dek.encryption_set_id {
                    // Under a set: its key at the version it names now, by
                    // its identity (checked and audited as at create).
                    Some(set_id) => {
                        let (s, kek) = self
                            .set_for_new_disk(caller, &set_id.to_string(), &region)
                            .await?;
                        let version = Self::set_target(&s, &kek);
                        let made = self.vault.new_dek_with(&kek, version, Some(s.id)).await?;
                        self.audit_as_identity(
                            caller.principal.id,
                            &s,
                            "key.wrap",
                            version,
                            id,
                            Ok(()),
                        )
                        .await?;
                        made
                    }
                    None => {
                        let kek = self.meta.vault_key(parent_dek.kek_id).await?;
                        self.vault
                            .new_dek_with(&kek, kek.current_version, None)
                            .await?
                    }
                };
                // Double encryption carries over: the child's outer layer
                // gets a platform DEK of its own too.
                let dek2_id = match parent.dek2_id {
                    Some(_) => Some(self.platform_layer(&region).await?),
                    None => None,
                };
                let vol = VolumeRow {
                    dek2_id,
                    id: Id::random(Kind::Volume),
                    dek_id,
                    chunk_size: parent.chunk_size,
                    size,
                    parent: Some((snap.volume_id, snap.generation)),
                    head_generation: 0,
                    live: true,
                    // A lineage stays in its region's store.
                    region: parent.region.clone(),
                };
                (vol, snap.kek_id, snap.encryption)
            }
            None => {
                let (kek, dek_id) = match &set {
                    Some((s, kek)) => {
                        let version = Self::set_target(s, kek);
                        let (dek_id, _dek) =
                            self.vault.new_dek_with(kek, version, Some(s.id)).await?;
                        self.audit_as_identity(
                            caller.principal.id,
                            s,
                            "key.wrap",
                            version,
                            id,
                            Ok(()),
                        )
                        .await?;
                        (kek.clone(), dek_id)
                    }
                    None => {
                        let kek = self.vault.platform_key(&region).await?;
                        let (dek_id, _dek) = self.vault.new_dek(&kek).await?;
                        (kek, dek_id)
                    }
                };
                let encryption = match &set {
                    Some((s, _)) => s.encryption_type,
                    None => EncryptionType::Platform,
                };
                let dek2_id = match encryption {
                    EncryptionType::Double => Some(self.platform_layer(&region).await?),
                    _ => None,
                };
                let vol = VolumeRow {
                    dek2_id,
                    id: Id::random(Kind::Volume),
                    dek_id,
                    chunk_size: self.config.chunk_size,
                    size,
                    parent: None,
                    head_generation: 0,
                    live: true,
                    region: region.clone(),
                };
                (vol, kek.id, encryption)
            }
        };
        let row = DiskRow {
            id,
            account_id: account,
            name: name.to_string(),
            region,
            zone: req.zone.clone(),
            size,
            volume_id: volume.id,
            encryption,
            kek_id,
            source_snapshot_id: source.as_ref().map(|s| s.id),
            created_at: now,
            encryption_set_id: set.as_ref().map(|(s, _)| s.id),
            source_image_id: image.map(|i| i.id),
            // Provenance of content from another account (a shared
            // snapshot or image), kept after the source is gone.
            origin: match (&source, image) {
                (_, Some(i)) if i.account_id != account => coffer_meta::Origin {
                    account: Some(i.account_id),
                    region: Some(i.region.clone()),
                    id: None,
                },
                (Some(s), None) if s.account_id != account => coffer_meta::Origin {
                    account: Some(s.account_id),
                    region: Some(s.region.clone()),
                    id: None,
                },
                _ => Default::default(),
            },
        };
        let made = match &source {
            Some(snap) => self
                .meta
                .create_disk_from_snapshot(&row, &volume, snap.id)
                .await
                .map_err(|e| match e {
                    MetaError::NotFound(_) => {
                        ServiceError::not_found(ErrorCode::SnapshotNotFound, "snapshot", snap.id)
                    }
                    other => other.into(),
                }),
            None => self
                .meta
                .create_disk(&row, &volume)
                .await
                .map_err(Into::into),
        };
        if let Err(e) = made {
            // The data keys made for it go too (a lost race on the name, or
            // the source deleted meanwhile).
            let deks: Vec<Id> = [Some(volume.dek_id), volume.dek2_id]
                .into_iter()
                .flatten()
                .collect();
            if let Err(e2) = self.meta.forget_unused_deks(&deks).await {
                tracing::warn!(error = %e2, "cannot forget the data keys of a disk not made");
            }
            return Err(e);
        }
        if !tags.is_empty() {
            self.meta
                .tag_resource(row.id, &tags, coffer_types::tag::MAX_TAGS)
                .await?;
        }
        tracing::info!(disk = %id, size, zone = %row.zone, "disk created");
        Ok(disk_dto(&row, false))
    }

    /// A page of the disks the caller may read, in every account (one
    /// query per page).
    pub async fn list_disks(&self, caller: &Caller, q: ListParams) -> Result<Page<Disk>> {
        let p = list::paging(&q)?;
        let attached = match q.state.as_deref() {
            None => None,
            Some(s) => Some(
                s.parse::<DiskState>()
                    .map_err(|e| ServiceError::new(ErrorCode::InvalidFilter, e.to_string()))?
                    == DiskState::Attached,
            ),
        };
        let filter = ListFilter {
            visible: self.visible(caller, Action::DisksRead, Kind::Disk).await?,
            name: q.name.clone(),
            account: self.account_filter(caller, q.account.as_deref()).await?,
            zone: q.zone.clone(),
            attached,
            source: match &q.source_image {
                Some(_) => list::id_filter("source_image", q.source_image.as_deref(), Kind::Image)?,
                None => list::id_filter(
                    "source_snapshot",
                    q.source_snapshot.as_deref(),
                    Kind::Snapshot,
                )?,
            },
            tag: crate::tags::tag_filter(q.tag.as_deref())?,
            state: None,
            after: p.after,
            limit: p.size + 1,
        };
        let rows = self.meta.list_disks_page(&filter).await?;
        let mut items: Vec<Disk> = rows.iter().map(|(d, a)| disk_dto(d, *a)).collect();
        self.fill_tags(&mut items).await?;
        Ok(list::finish(items, p.size))
    }

    /// One disk.
    pub async fn get_disk(&self, caller: &Caller, id: &str) -> Result<Disk> {
        let d = self.authorized_disk(caller, id, Action::DisksRead).await?;
        let attached = self.is_attached(d.id).await?;
        let mut d = disk_dto(&d, attached);
        self.fill_tags(std::slice::from_mut(&mut d)).await?;
        Ok(d)
    }

    /// Delete a detached disk. Its snapshots, and disks made from them, stay.
    pub async fn delete_disk(&self, caller: &Caller, id: &str) -> Result<Disk> {
        let d = self
            .authorized_disk(caller, id, Action::DisksDelete)
            .await?;
        if self.is_attached(d.id).await? {
            return Err(ServiceError::new(
                ErrorCode::DiskAttached,
                format!(
                    "disk {} is attached: run `coffer disk detach {}` first",
                    d.id, d.id
                ),
            ));
        }
        self.meta.delete_disk(d.id).await.map_err(|e| match e {
            coffer_meta::MetaError::NotFound(_) => {
                ServiceError::not_found(ErrorCode::DiskNotFound, "disk", d.id)
            }
            other => other.into(),
        })?;
        self.meta
            .delete_role_assignments_at(&d.id.to_string())
            .await?;
        self.gc_wake.notify_one();
        tracing::info!(disk = %d.id, "disk deleted");
        Ok(disk_dto(&d, false))
    }

    /// Grow a detached disk.
    pub async fn resize_disk(&self, caller: &Caller, id: &str, size: ByteSize) -> Result<Disk> {
        let mut d = self.authorized_disk(caller, id, Action::DisksWrite).await?;
        let size = size.bytes();
        check_size(size)?;
        if size < d.size {
            return Err(ServiceError::new(
                ErrorCode::ShrinkNotAllowed,
                format!(
                    "disk {} is {}; disks only grow (shrinking would destroy data). To get a smaller disk, create one and copy what you need",
                    d.id,
                    ByteSize(d.size)
                ),
            ));
        }
        if self.is_attached(d.id).await? {
            return Err(ServiceError::new(
                ErrorCode::DiskAttached,
                format!(
                    "disk {} is attached: detach it, resize, and attach again",
                    d.id
                ),
            ));
        }
        if size != d.size {
            self.meta.resize_disk(d.id, size).await?;
            d.size = size;
        }
        Ok(disk_dto(&d, false))
    }
}
