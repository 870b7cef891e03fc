//! Images (one or more snapshots an image owns, to launch disks from), the
//! O(1) copy of a snapshot's view into another snapshot row, and tags.
//!
//! An image owns its snapshots: they are ordinary snapshot rows whose
//! `image_id` names it (role `root`, `data1`, ...), so every rule about
//! views (what the garbage collector keeps) holds for images unchanged.
//! A copy that shares ciphertext is one more snapshot row on the same view
//! `(volume, generation)`: it writes no object, and keeps the view (and so
//! its data) alive after its source is deleted.

use std::collections::HashMap;

use coffer_types::{CreationMethod, Id, ImageState, Kind, Tag};
use sqlx::{Any, AssertSqlSafe, Transaction};

use crate::chunks::{gc_volume_tx, volume_tx};
use crate::listing::{ListFilter, bound, clause};
use crate::resources::{Origin, SNAP_FROM, SNAP_SELECT, SnapRec, insert_snapshot_tx};
use crate::{Meta, MetaError, Result, SnapshotRow, parse_id};

/// An image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    /// Id (`img-…`).
    pub id: Id,
    /// Owner account.
    pub account_id: Id,
    /// Name (unique per account).
    pub name: String,
    /// Region.
    pub region: String,
    /// Free text.
    pub description: String,
    /// `image` (made from disks or snapshots) or `copy`.
    pub created_by: CreationMethod,
    /// What it was copied from.
    pub origin: Origin,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Available, or pending while its copy jobs run, or failed.
    pub state: ImageState,
}

/// One snapshot of a new image.
#[derive(Debug, Clone)]
pub enum Member {
    /// A snapshot just taken for the image (its row exists, owned by the
    /// image's account): the image adopts it.
    Adopt {
        /// The snapshot.
        snapshot: Id,
        /// Its role in the image.
        role: String,
    },
    /// A new snapshot row on the view of `source` (an O(1) copy; `row`
    /// names the same volume and generation, and its image and role).
    Copy {
        /// The new row.
        row: Box<SnapshotRow>,
        /// The snapshot whose view it shares, which must still exist.
        source: Id,
    },
}

type ImageTuple = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
);
const IMAGE_COLS: &str = "id, account_id, name, region, description, created_by, source_account, source_region, source_id, created_at, state";

fn image_row(t: ImageTuple) -> Result<ImageRow> {
    Ok(ImageRow {
        id: parse_id(&t.0, Kind::Image)?,
        account_id: parse_id(&t.1, Kind::Account)?,
        name: t.2,
        region: t.3,
        description: t.4,
        created_by: crate::parse_word(&t.5)?,
        origin: Origin {
            account: t.6.map(|s| parse_id(&s, Kind::Account)).transpose()?,
            region: t.7,
            id: t
                .8
                .map(|s| s.parse::<Id>())
                .transpose()
                .map_err(|e| MetaError::Corrupt(format!("image source id: {e}")))?,
        },
        created_at: t.9,
        state: crate::parse_word(&t.10)?,
    })
}

/// Insert `row` as a copy of snapshot `source`'s view, checking (with the
/// view's volume locked, so a concurrent delete of the source either comes
/// first or sees the copy as a view to keep) that the source still exists
/// and names that view.
async fn insert_copy_tx(
    tx: &mut Transaction<'_, Any>,
    row: &SnapshotRow,
    source: Id,
) -> Result<()> {
    volume_tx(tx, row.volume_id).await?;
    let found: Option<(String, i64)> =
        sqlx::query_as("SELECT volume_id, generation FROM snapshots WHERE id = $1")
            .bind(source.to_string())
            .fetch_optional(&mut **tx)
            .await?;
    match found {
        Some((v, g)) if v == row.volume_id.to_string() && crate::to_u64(g)? == row.generation => {}
        Some(_) => {
            return Err(MetaError::Corrupt(format!(
                "snapshot {source} is not the view its copy names"
            )));
        }
        None => return Err(MetaError::NotFound(format!("snapshot {source}"))),
    }
    insert_snapshot_tx(tx, row).await
}

/// Inside a transaction: insert image `image` (its name free in its
/// account) with its tags.
pub(crate) async fn insert_image_tx(
    tx: &mut Transaction<'_, Any>,
    image: &ImageRow,
    tags: &[Tag],
) -> Result<()> {
    let done = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO images ({IMAGE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING"
    )))
    .bind(image.id.to_string())
    .bind(image.account_id.to_string())
    .bind(&image.name)
    .bind(&image.region)
    .bind(&image.description)
    .bind(image.created_by.as_str())
    .bind(image.origin.account.map(|a| a.to_string()))
    .bind(image.origin.region.clone())
    .bind(image.origin.id.map(|a| a.to_string()))
    .bind(&image.created_at)
    .bind(image.state.as_str())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        return Err(MetaError::NameTaken {
            kind: Kind::Image,
            account: image.account_id,
            name: image.name.clone(),
        });
    }
    set_tags_tx(tx, image.id, tags).await
}

async fn set_tags_tx(tx: &mut Transaction<'_, Any>, resource: Id, tags: &[Tag]) -> Result<()> {
    for t in tags {
        sqlx::query(
            "INSERT INTO tags (resource_id, tag_key, tag_value) VALUES ($1, $2, $3) \
             ON CONFLICT (resource_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
        )
        .bind(resource.to_string())
        .bind(&t.key)
        .bind(&t.value)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Forget a resource's tags and its place in every share (it is being
/// deleted).
pub(crate) async fn forget_resource_tx(tx: &mut Transaction<'_, Any>, id: Id) -> Result<()> {
    for sql in [
        "DELETE FROM tags WHERE resource_id = $1",
        "DELETE FROM share_resources WHERE resource_id = $1",
    ] {
        sqlx::query(sql)
            .bind(id.to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Meta {
    /// Create an image and its snapshots in one transaction (all or
    /// nothing), with its tags.
    pub async fn create_image(
        &self,
        image: &ImageRow,
        members: &[Member],
        tags: &[Tag],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        insert_image_tx(&mut tx, image, tags).await?;
        for m in members {
            match m {
                Member::Adopt { snapshot, role } => {
                    let n = sqlx::query(
                        "UPDATE snapshots SET image_id = $1, image_role = $2 WHERE id = $3 AND image_id IS NULL AND account_id = $4",
                    )
                    .bind(image.id.to_string())
                    .bind(role)
                    .bind(snapshot.to_string())
                    .bind(image.account_id.to_string())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n != 1 {
                        return Err(MetaError::NotFound(format!("snapshot {snapshot}")));
                    }
                }
                Member::Copy { row, source } => insert_copy_tx(&mut tx, row, *source).await?,
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// An image by id.
    pub async fn image(&self, id: Id) -> Result<Option<ImageRow>> {
        let row: Option<ImageTuple> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {IMAGE_COLS} FROM images WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(image_row).transpose()
    }

    /// One page of images.
    pub async fn list_images_page(&self, f: &ListFilter) -> Result<Vec<ImageRow>> {
        let mut binds = vec![];
        let Some(clause) = clause(f, &mut binds) else {
            return Ok(vec![]);
        };
        let cols: Vec<String> = IMAGE_COLS.split(", ").map(|c| format!("t.{c}")).collect();
        let sql = format!(
            "SELECT {} FROM images t {clause} ORDER BY t.created_at, t.id LIMIT {}",
            cols.join(", "),
            f.limit
        );
        let rows: Vec<ImageTuple> = bound(sqlx::query_as(AssertSqlSafe(sql)), &binds)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(image_row).collect()
    }

    /// The snapshots of an image, root first.
    pub async fn image_snapshots(&self, image: Id) -> Result<Vec<SnapshotRow>> {
        let rows: Vec<SnapRec> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {SNAP_SELECT} FROM {SNAP_FROM} WHERE t.image_id = $1 ORDER BY t.image_role"
        )))
        .bind(image.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut v: Vec<SnapshotRow> = rows.into_iter().map(|r| r.0).collect();
        // `root` first, then `data1`, `data2`, ... in number order.
        v.sort_by_key(|s| {
            let role = s.image.as_ref().map_or("", |i| i.1.as_str());
            match role.strip_prefix("data") {
                Some(n) => (1, n.parse::<u32>().unwrap_or(u32::MAX)),
                None => (0, 0),
            }
        });
        Ok(v)
    }

    /// Delete an image and its snapshots (their views' data stays while
    /// any other view needs it). Returns the number of objects queued.
    pub async fn delete_image(&self, id: Id) -> Result<u64> {
        let mut tx = self.begin().await?;
        let snaps: Vec<(String, String)> =
            sqlx::query_as("SELECT id, volume_id FROM snapshots WHERE image_id = $1")
                .bind(id.to_string())
                .fetch_all(&mut *tx)
                .await?;
        // Snapshot rows reference the image: delete them first.
        sqlx::query("DELETE FROM snapshots WHERE image_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM images WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone != 1 {
            return Err(MetaError::NotFound(format!("image {id}")));
        }
        forget_resource_tx(&mut tx, id).await?;
        let mut queued = 0;
        for (snap, vol) in snaps {
            forget_resource_tx(&mut tx, parse_id(&snap, Kind::Snapshot)?).await?;
            queued += gc_volume_tx(&mut tx, parse_id(&vol, Kind::Volume)?).await?;
        }
        tx.commit().await?;
        Ok(queued)
    }

    /// Record an O(1) copy of snapshot `source`: `row` on the same view,
    /// with its tags.
    pub async fn copy_snapshot(&self, row: &SnapshotRow, source: Id, tags: &[Tag]) -> Result<()> {
        let mut tx = self.begin().await?;
        insert_copy_tx(&mut tx, row, source).await?;
        set_tags_tx(&mut tx, row.id, tags).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Add or replace tags of a resource, keeping at most `max` in all:
    /// [`MetaError::Conflict`] if it would hold more.
    pub async fn tag_resource(&self, resource: Id, tags: &[Tag], max: usize) -> Result<()> {
        self.retag_resource(resource, tags, &[], max).await
    }

    /// Remove tags of a resource by key (absent keys are ignored), then add
    /// or replace `tags`, in one transaction, keeping at most `max` in all
    /// ([`MetaError::Conflict`] if it would hold more: nothing changes).
    pub async fn retag_resource(
        &self,
        resource: Id,
        tags: &[Tag],
        remove: &[String],
        max: usize,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        // The resource's row first: concurrent changes of its tags take
        // turns (the count below sees every other's), and a resource
        // deleted meanwhile gets no tag.
        let table = match resource.kind() {
            Kind::Disk => "disks",
            Kind::Snapshot => "snapshots",
            Kind::Image => "images",
            k => return Err(MetaError::Corrupt(format!("a {} has no tags", k.noun()))),
        };
        let found = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {table} SET id = id WHERE id = $1"
        )))
        .bind(resource.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if found != 1 {
            return Err(MetaError::NotFound(format!("{resource}")));
        }
        for k in remove {
            sqlx::query("DELETE FROM tags WHERE resource_id = $1 AND tag_key = $2")
                .bind(resource.to_string())
                .bind(k)
                .execute(&mut *tx)
                .await?;
        }
        set_tags_tx(&mut tx, resource, tags).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tags WHERE resource_id = $1")
            .bind(resource.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if usize::try_from(n).unwrap_or(usize::MAX) > max {
            return Err(MetaError::Conflict(format!(
                "{resource} would hold {n} tags; the limit is {max}"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    /// The tags of some resources, by resource (key order).
    pub async fn tags_of(&self, ids: &[Id]) -> Result<HashMap<Id, Vec<Tag>>> {
        let mut out: HashMap<Id, Vec<Tag>> = HashMap::new();
        for chunk in ids.chunks(500) {
            if chunk.is_empty() {
                continue;
            }
            let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT resource_id, tag_key, tag_value FROM tags WHERE resource_id IN ({}) ORDER BY resource_id, tag_key",
                params.join(", ")
            );
            let mut q = sqlx::query_as::<_, (String, String, String)>(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id.to_string());
            }
            for (r, key, value) in q.fetch_all(&self.pool).await? {
                let id: Id = r
                    .parse()
                    .map_err(|e| MetaError::Corrupt(format!("tag of '{r}': {e}")))?;
                out.entry(id).or_default().push(Tag { key, value });
            }
        }
        Ok(out)
    }
}
