//! Disks, snapshots and attachments: the user-visible resources, each bound
//! to volumes of the chunk layer.

use coffer_types::{Id, Kind};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::chunks::{VolumeRow, gc_volume_tx, insert_volume_tx, volume_tx};
use crate::nodes::{Holder, check_holder_tx};
use crate::{Meta, MetaError, Result, parse_id, to_i64, to_u64};

/// A disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskRow {
    /// Id.
    pub id: Id,
    /// Owner account.
    pub account_id: Id,
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: String,
    /// Size in bytes.
    pub size: u64,
    /// Its volume.
    pub volume_id: Id,
    /// Encryption type (`platform`).
    pub encryption: coffer_types::EncryptionType,
    /// The KEK that wraps its volume's DEK. Not stored with the disk: read
    /// through the DEK in the same `SELECT` (one fact, one place), and
    /// ignored on insert.
    pub kek_id: Id,
    /// Snapshot it was created from.
    pub source_snapshot_id: Option<Id>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// The disk encryption set its DEK was made through, read through the
    /// DEK like `kek_id` and ignored on insert.
    pub encryption_set_id: Option<Id>,
    /// Image it was launched from.
    pub source_image_id: Option<Id>,
    /// The account and region of the snapshot or image it came from
    /// (kept after that is gone).
    pub origin: Origin,
}

/// Where a resource came from, kept after its source is gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The source's owner account.
    pub account: Option<Id>,
    /// The source's region.
    pub region: Option<String>,
    /// The source's id (a snapshot or image; disks keep theirs in their
    /// own columns and leave this `None`).
    pub id: Option<Id>,
}

/// A snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    /// Id.
    pub id: Id,
    /// Owner account.
    pub account_id: Id,
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Disk it was taken from.
    pub source_disk_id: Option<Id>,
    /// Volume whose view it is.
    pub volume_id: Id,
    /// Generation of that view.
    pub generation: u64,
    /// Size in bytes.
    pub size: u64,
    /// Encryption type.
    pub encryption: coffer_types::EncryptionType,
    /// KEK wrapping the lineage DEK: read through the DEK like
    /// [`DiskRow::kek_id`], ignored on insert.
    pub kek_id: Id,
    /// Creation time.
    pub created_at: String,
    /// The disk encryption set of its DEK, read through the DEK.
    pub encryption_set_id: Option<Id>,
    /// The image that owns it, and its role there (`root`, `data1`, ...).
    pub image: Option<(Id, String)>,
    /// How it was made: `snapshot`, `image` or `copy`.
    pub created_by: coffer_types::CreationMethod,
    /// What it was copied from.
    pub origin: Origin,
}

/// An attachment of a disk to a block client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRow {
    /// Id.
    pub id: Id,
    /// Disk.
    pub disk_id: Id,
    /// SHA-256 of the export token (the token itself is never stored).
    pub token_hash: String,
    /// Who attached it.
    pub principal_id: Id,
    /// `rw` or `ro`.
    pub mode: String,
    /// When.
    pub created_at: String,
    /// The node holding it (the only one that may open the disk), if any.
    pub node_id: Option<Id>,
    /// The current hold (see [`Holder`]), once the holder opened the disk.
    pub hold_id: Option<Id>,
}

/// When [`Meta::delete_attachment`] may delete.
#[derive(Debug, Clone, Copy)]
pub enum DetachIf {
    /// `node` holds it (and has closed the disk).
    HeldBy(Id),
    /// No live node holds it at this time (Unix ms).
    Unheld(i64),
}

/// On whose behalf [`Meta::create_snapshot`] records a snapshot.
#[derive(Debug, Clone, Copy)]
pub enum SnapshotBy<'a> {
    /// The holder of the disk's attachment, from its open volume.
    Holder(&'a Holder),
    /// Nobody has the disk open: refused if a live node other than `me`
    /// holds its attachment at `now_ms`. The attachment row is locked
    /// first, so a takeover racing the snapshot opens the volume after it.
    NotOpen {
        /// The node asking, which may hold the attachment without having
        /// the disk open.
        me: Option<Id>,
        /// Now, Unix ms.
        now_ms: i64,
    },
}

/// The stored columns of a disk.
const DISK_STORED: &str = "id, account_id, name, region, zone, size, volume_id, encryption, source_snapshot_id, created_at, source_image_id, source_account, source_region";
/// A disk's columns ([`DiskRec`]) selected from [`DISK_FROM`].
pub(crate) const DISK_SELECT: &str = "t.id, t.account_id, t.name, t.region, t.zone, t.size, t.volume_id, t.encryption, k.kek_id, t.source_snapshot_id, t.created_at, k.encryption_set_id, t.source_image_id, t.source_account, t.source_region";
/// Disks `t` with the DEK `k` of their volume (whose `kek_id` they report).
pub(crate) const DISK_FROM: &str =
    "disks t JOIN volumes v ON v.id = t.volume_id JOIN deks k ON k.id = v.dek_id";

/// A disk decoded from the columns of [`DISK_SELECT`] (then any others).
pub(crate) struct DiskRec(pub DiskRow);

/// A snapshot decoded from the columns of [`SNAP_SELECT`].
pub(crate) struct SnapRec(pub SnapshotRow);

fn decode<T>(r: Result<T>) -> sqlx::Result<T> {
    r.map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

impl<'r> sqlx::FromRow<'r, AnyRow> for DiskRec {
    fn from_row(r: &'r AnyRow) -> sqlx::Result<Self> {
        let opt = |i: usize| -> sqlx::Result<Option<String>> { r.try_get(i) };
        let s = |i: usize| -> sqlx::Result<String> { r.try_get(i) };
        let (id, account, volume, kek) = (s(0)?, s(1)?, s(6)?, s(8)?);
        let (source, set, image, src_account) = (opt(9)?, opt(11)?, opt(12)?, opt(13)?);
        decode((|| {
            Ok(DiskRec(DiskRow {
                id: parse_id(&id, Kind::Disk)?,
                account_id: parse_id(&account, Kind::Account)?,
                name: s(2)?,
                region: s(3)?,
                zone: s(4)?,
                size: to_u64(r.try_get::<i64, _>(5)?)?,
                volume_id: parse_id(&volume, Kind::Volume)?,
                encryption: crate::parse_word(&s(7)?)?,
                kek_id: parse_id(&kek, Kind::Key)?,
                source_snapshot_id: source.map(|s| parse_id(&s, Kind::Snapshot)).transpose()?,
                created_at: s(10)?,
                encryption_set_id: set.map(|s| parse_id(&s, Kind::EncryptionSet)).transpose()?,
                source_image_id: image.map(|s| parse_id(&s, Kind::Image)).transpose()?,
                origin: Origin {
                    account: src_account
                        .map(|s| parse_id(&s, Kind::Account))
                        .transpose()?,
                    region: opt(14)?,
                    id: None,
                },
            }))
        })())
    }
}

/// The stored columns of a snapshot.
pub(crate) const SNAP_STORED: &str = "id, account_id, name, region, source_disk_id, volume_id, generation, size, encryption, created_at, image_id, image_role, created_by, source_account, source_region, source_id";
/// A snapshot's columns ([`SnapRec`]) selected from [`SNAP_FROM`].
pub(crate) const SNAP_SELECT: &str = "t.id, t.account_id, t.name, t.region, t.source_disk_id, t.volume_id, t.generation, t.size, t.encryption, k.kek_id, t.created_at, k.encryption_set_id, t.image_id, t.image_role, t.created_by, t.source_account, t.source_region, t.source_id";
/// Snapshots `t` with the DEK `k` of their volume.
pub(crate) const SNAP_FROM: &str =
    "snapshots t JOIN volumes v ON v.id = t.volume_id JOIN deks k ON k.id = v.dek_id";

impl<'r> sqlx::FromRow<'r, AnyRow> for SnapRec {
    fn from_row(r: &'r AnyRow) -> sqlx::Result<Self> {
        let opt = |i: usize| -> sqlx::Result<Option<String>> { r.try_get(i) };
        let s = |i: usize| -> sqlx::Result<String> { r.try_get(i) };
        let (id, account, volume, kek) = (s(0)?, s(1)?, s(5)?, s(9)?);
        let (disk, set, image, role) = (opt(4)?, opt(11)?, opt(12)?, opt(13)?);
        let (by, src_account, src_id) = (s(14)?, opt(15)?, opt(17)?);
        decode((|| {
            let image = match (image, role) {
                (Some(i), Some(role)) => Some((parse_id(&i, Kind::Image)?, role)),
                _ => None,
            };
            Ok(SnapRec(SnapshotRow {
                id: parse_id(&id, Kind::Snapshot)?,
                account_id: parse_id(&account, Kind::Account)?,
                name: s(2)?,
                region: s(3)?,
                source_disk_id: disk.map(|s| parse_id(&s, Kind::Disk)).transpose()?,
                volume_id: parse_id(&volume, Kind::Volume)?,
                generation: to_u64(r.try_get::<i64, _>(6)?)?,
                size: to_u64(r.try_get::<i64, _>(7)?)?,
                encryption: crate::parse_word(&s(8)?)?,
                kek_id: parse_id(&kek, Kind::Key)?,
                created_at: s(10)?,
                encryption_set_id: set.map(|s| parse_id(&s, Kind::EncryptionSet)).transpose()?,
                image,
                created_by: crate::parse_word(&by)?,
                origin: Origin {
                    account: src_account
                        .map(|s| parse_id(&s, Kind::Account))
                        .transpose()?,
                    region: opt(16)?,
                    id: src_id
                        .map(|s| s.parse::<Id>())
                        .transpose()
                        .map_err(|e| MetaError::Corrupt(format!("snapshot source id: {e}")))?,
                },
            }))
        })())
    }
}

type AttTuple = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);
const ATT_COLS: &str = "id, disk_id, token_hash, principal_id, mode, created_at, node_id, hold_id";

fn att_row(t: AttTuple) -> Result<AttachmentRow> {
    Ok(AttachmentRow {
        id: parse_id(&t.0, Kind::Attachment)?,
        disk_id: parse_id(&t.1, Kind::Disk)?,
        token_hash: t.2,
        principal_id: parse_id(&t.3, Kind::Principal)?,
        mode: t.4,
        created_at: t.5,
        node_id: t.6.map(|n| parse_id(&n, Kind::Node)).transpose()?,
        hold_id: t.7.map(|n| parse_id(&n, Kind::Attachment)).transpose()?,
    })
}

/// [`MetaError::NameTaken`] unless an insert guarded by `ON CONFLICT DO
/// NOTHING` added its row: the only unique key a random id can meet is
/// (account_id, name).
fn inserted(done: sqlx::any::AnyQueryResult, kind: Kind, account: Id, name: &str) -> Result<()> {
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(MetaError::NameTaken {
            kind,
            account,
            name: name.to_string(),
        })
    }
}

async fn insert_disk_tx(tx: &mut sqlx::Transaction<'_, sqlx::Any>, disk: &DiskRow) -> Result<()> {
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO disks ({DISK_STORED}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING"
    )))
    .bind(disk.id.to_string())
    .bind(disk.account_id.to_string())
    .bind(&disk.name)
    .bind(&disk.region)
    .bind(&disk.zone)
    .bind(to_i64(disk.size)?)
    .bind(disk.volume_id.to_string())
    .bind(disk.encryption.as_str())
    .bind(disk.source_snapshot_id.map(|s| s.to_string()))
    .bind(&disk.created_at)
    .bind(disk.source_image_id.map(|s| s.to_string()))
    .bind(disk.origin.account.map(|s| s.to_string()))
    .bind(disk.origin.region.clone())
    .execute(&mut **tx)
    .await?;
    inserted(done, Kind::Disk, disk.account_id, &disk.name)
}

/// Insert a snapshot row (its view must be kept by the caller's
/// transaction: a new generation, or the view of an existing row).
pub(crate) async fn insert_snapshot_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    snap: &SnapshotRow,
) -> Result<()> {
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO snapshots ({SNAP_STORED}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT DO NOTHING"
    )))
    .bind(snap.id.to_string())
    .bind(snap.account_id.to_string())
    .bind(&snap.name)
    .bind(&snap.region)
    .bind(snap.source_disk_id.map(|d| d.to_string()))
    .bind(snap.volume_id.to_string())
    .bind(to_i64(snap.generation)?)
    .bind(to_i64(snap.size)?)
    .bind(snap.encryption.as_str())
    .bind(&snap.created_at)
    .bind(snap.image.as_ref().map(|i| i.0.to_string()))
    .bind(snap.image.as_ref().map(|i| i.1.clone()))
    .bind(snap.created_by.as_str())
    .bind(snap.origin.account.map(|s| s.to_string()))
    .bind(snap.origin.region.clone())
    .bind(snap.origin.id.map(|s| s.to_string()))
    .execute(&mut **tx)
    .await?;
    inserted(done, Kind::Snapshot, snap.account_id, &snap.name)
}

impl Meta {
    /// Create a disk and its (new) volume atomically.
    pub async fn create_disk(&self, disk: &DiskRow, volume: &VolumeRow) -> Result<()> {
        let mut tx = self.begin().await?;
        insert_volume_tx(&mut tx, volume).await?;
        insert_disk_tx(&mut tx, disk).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A disk by id.
    pub async fn disk(&self, id: Id) -> Result<Option<DiskRow>> {
        let row: Option<DiskRec> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DISK_SELECT} FROM {DISK_FROM} WHERE t.id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.0))
    }

    /// Disks of an account (all disks with `None`), oldest first.
    pub async fn list_disks(&self, account: Option<Id>) -> Result<Vec<DiskRow>> {
        let rows: Vec<DiskRec> =
            match account {
                Some(a) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {DISK_SELECT} FROM {DISK_FROM} WHERE t.account_id = $1 ORDER BY t.created_at, t.id"
                )))
                .bind(a.to_string())
                .fetch_all(&self.pool)
                .await?,
                None => {
                    sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT {DISK_SELECT} FROM {DISK_FROM} ORDER BY t.created_at, t.id"
                    )))
                    .fetch_all(&self.pool)
                    .await?
                }
            };
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Grow a disk (and its volume) to `size` bytes. The caller checks that
    /// it grows and that the disk is not attached.
    pub async fn resize_disk(&self, id: Id, size: u64) -> Result<()> {
        let mut tx = self.begin().await?;
        let vol: Option<String> = sqlx::query_scalar("SELECT volume_id FROM disks WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let vol = vol.ok_or_else(|| MetaError::NotFound(format!("disk {id}")))?;
        let s = to_i64(size)?;
        sqlx::query("UPDATE disks SET size = $1 WHERE id = $2")
            .bind(s)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE volumes SET size = $1 WHERE id = $2")
            .bind(s)
            .bind(&vol)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Delete a disk that is not attached; its volume's head stops being a
    /// view, and what no other view needs is collected. Returns the number of
    /// objects queued for deletion.
    pub async fn delete_disk(&self, id: Id) -> Result<u64> {
        let mut tx = self.begin().await?;
        let att: Option<String> =
            sqlx::query_scalar("SELECT id FROM attachments WHERE disk_id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if att.is_some() {
            return Err(MetaError::Conflict(format!("disk {id} is attached")));
        }
        let vol: Option<String> = sqlx::query_scalar("SELECT volume_id FROM disks WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let vol = parse_id(
            &vol.ok_or_else(|| MetaError::NotFound(format!("disk {id}")))?,
            Kind::Volume,
        )?;
        sqlx::query("DELETE FROM disks WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE volumes SET live = 0 WHERE id = $1")
            .bind(vol.to_string())
            .execute(&mut *tx)
            .await?;
        crate::images::forget_resource_tx(&mut tx, id).await?;
        let n = gc_volume_tx(&mut tx, vol).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Record snapshot `snap` of the head of its volume, which must be at
    /// generation `snap.generation`; the head moves to the next generation.
    /// Costs a few rows whatever the disk's size. With `holder`, fails with
    /// [`MetaError::Fenced`] unless it still holds the disk's attachment.
    pub async fn create_snapshot(&self, snap: &SnapshotRow, by: SnapshotBy<'_>) -> Result<()> {
        let mut tx = self.begin().await?;
        match by {
            SnapshotBy::Holder(h) => check_holder_tx(&mut tx, h).await?,
            SnapshotBy::NotOpen { me, now_ms } => {
                if let Some(disk) = snap.source_disk_id {
                    // Lock the attachment row (if any) before the volume's.
                    sqlx::query("UPDATE attachments SET node_id = node_id WHERE disk_id = $1")
                        .bind(disk.to_string())
                        .execute(&mut *tx)
                        .await?;
                    let held: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM attachments WHERE disk_id = $1 AND node_id IS NOT NULL AND node_id <> $2 AND node_id IN (SELECT id FROM nodes WHERE lease_expires_ms > $3)",
                    )
                    .bind(disk.to_string())
                    .bind(me.map_or_else(String::new, |m| m.to_string()))
                    .bind(now_ms)
                    .fetch_one(&mut *tx)
                    .await?;
                    if held > 0 {
                        return Err(MetaError::Conflict(format!(
                            "disk {disk} was just opened by another node: retry the snapshot"
                        )));
                    }
                }
            }
        }
        let v = volume_tx(&mut tx, snap.volume_id).await?;
        if v.head_generation != snap.generation {
            return Err(MetaError::Conflict(format!(
                "volume {} head is at generation {}, not {}",
                v.id, v.head_generation, snap.generation
            )));
        }
        insert_snapshot_tx(&mut tx, snap).await?;
        sqlx::query("UPDATE volumes SET head_generation = $1 WHERE id = $2")
            .bind(to_i64(snap.generation + 1)?)
            .bind(snap.volume_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A snapshot by id.
    pub async fn snapshot(&self, id: Id) -> Result<Option<SnapshotRow>> {
        let row: Option<SnapRec> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SNAP_SELECT} FROM {SNAP_FROM} WHERE t.id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.0))
    }

    /// Snapshots of an account (all with `None`), oldest first.
    pub async fn list_snapshots(&self, account: Option<Id>) -> Result<Vec<SnapshotRow>> {
        let rows: Vec<SnapRec> = match account {
            Some(a) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SNAP_SELECT} FROM {SNAP_FROM} WHERE t.account_id = $1 ORDER BY t.created_at, t.id"
            )))
            .bind(a.to_string())
            .fetch_all(&self.pool)
            .await?,
            None => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {SNAP_SELECT} FROM {SNAP_FROM} ORDER BY t.created_at, t.id"
                )))
                .fetch_all(&self.pool)
                .await?
            }
        };
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Delete a snapshot; disks created from it keep working (their volumes
    /// keep the view they need). Returns the number of objects queued.
    pub async fn delete_snapshot(&self, id: Id) -> Result<u64> {
        let mut tx = self.begin().await?;
        let vol: Option<String> =
            sqlx::query_scalar("SELECT volume_id FROM snapshots WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let vol = parse_id(
            &vol.ok_or_else(|| MetaError::NotFound(format!("snapshot {id}")))?,
            Kind::Volume,
        )?;
        sqlx::query("DELETE FROM snapshots WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        crate::images::forget_resource_tx(&mut tx, id).await?;
        let n = gc_volume_tx(&mut tx, vol).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Create a disk whose new volume starts from snapshot `snap`'s view,
    /// in one transaction that locks the snapshot's volume and checks the
    /// snapshot still exists: a concurrent delete of the snapshot (on any
    /// node) either comes first (then this fails with NotFound) or sees the
    /// new volume as a view to keep.
    pub async fn create_disk_from_snapshot(
        &self,
        disk: &DiskRow,
        volume: &VolumeRow,
        snap: Id,
    ) -> Result<()> {
        let Some((parent, generation)) = volume.parent else {
            return Err(MetaError::Corrupt("a cloned volume needs a parent".into()));
        };
        let mut tx = self.begin().await?;
        volume_tx(&mut tx, parent).await?;
        let found: Option<(String, i64)> =
            sqlx::query_as("SELECT volume_id, generation FROM snapshots WHERE id = $1")
                .bind(snap.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        match found {
            Some((v, g)) if v == parent.to_string() && to_u64(g)? == generation => {}
            Some(_) => {
                return Err(MetaError::Corrupt(format!(
                    "snapshot {snap} is not the view the new volume names"
                )));
            }
            None => return Err(MetaError::NotFound(format!("snapshot {snap}"))),
        }
        insert_volume_tx(&mut tx, volume).await?;
        insert_disk_tx(&mut tx, disk).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Record an attachment; fails with [`MetaError::Conflict`] if the disk
    /// already has one, unless that one is `replace` and still has no live
    /// holder at `now_ms` (its node died): then it is replaced, in the same
    /// transaction, and its token stops working.
    pub async fn insert_attachment(
        &self,
        a: &AttachmentRow,
        replace: Option<Id>,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM attachments WHERE disk_id = $1")
                .bind(a.disk_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(e) = existing {
            let replaceable = replace.is_some_and(|r| r.to_string() == e);
            let gone = replaceable
                && sqlx::query(
                    "DELETE FROM attachments WHERE id = $1 AND (node_id IS NULL OR node_id NOT IN (SELECT id FROM nodes WHERE lease_expires_ms > $2))",
                )
                .bind(&e)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
            if !gone {
                return Err(MetaError::Conflict(format!(
                    "disk {} is already attached ({e})",
                    a.disk_id
                )));
            }
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO attachments ({ATT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(a.id.to_string())
        .bind(a.disk_id.to_string())
        .bind(&a.token_hash)
        .bind(a.principal_id.to_string())
        .bind(&a.mode)
        .bind(&a.created_at)
        .bind(a.node_id.map(|n| n.to_string()))
        .bind(a.hold_id.map(|n| n.to_string()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The attachment whose export token hashes to `hash`.
    pub async fn attachment_by_token_hash(&self, hash: &str) -> Result<Option<AttachmentRow>> {
        let row: Option<AttTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ATT_COLS} FROM attachments WHERE token_hash = $1"
        )))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(att_row).transpose()
    }

    /// The attachment of a disk.
    pub async fn attachment_of_disk(&self, disk: Id) -> Result<Option<AttachmentRow>> {
        let row: Option<AttTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ATT_COLS} FROM attachments WHERE disk_id = $1"
        )))
        .bind(disk.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(att_row).transpose()
    }

    /// Remove attachment `att` (and the counter reservations of its hold:
    /// its writer has closed, so nothing of it is in flight) if `cond`
    /// holds; returns whether it was removed.
    pub async fn delete_attachment(&self, att: Id, cond: DetachIf) -> Result<bool> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "DELETE FROM counter_reservations WHERE hold_id IN (SELECT hold_id FROM attachments WHERE id = $1)",
        )
        .bind(att.to_string())
        .execute(&mut *tx)
        .await?;
        let n = match cond {
            DetachIf::HeldBy(node) => {
                sqlx::query("DELETE FROM attachments WHERE id = $1 AND node_id = $2")
                    .bind(att.to_string())
                    .bind(node.to_string())
                    .execute(&mut *tx)
                    .await?
            }
            DetachIf::Unheld(now) => {
                sqlx::query(
                    "DELETE FROM attachments WHERE id = $1 AND (node_id IS NULL OR node_id NOT IN (SELECT id FROM nodes WHERE lease_expires_ms > $2))",
                )
                .bind(att.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?
            }
        }
        .rows_affected();
        if n == 0 {
            // Not removed: keep its reservations too.
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }
}
