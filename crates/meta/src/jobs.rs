//! Copy jobs: the background work of a copy that re-encrypts (a snapshot
//! copied under another key). A job reads through a *reader volume* whose
//! parent is the source's view (so the view, and the data, stay while the
//! job runs, even if the source is deleted or unshared) and writes a new
//! *target volume* under the target key. Its progress is committed as it
//! goes (`bytes_done`: the copy resumes there after a restart, on any
//! node); its snapshot appears only when the copy is complete and
//! verified, in the transaction that ends the job (never half-visible).
//! While a job runs, its target volume is held against the orphan sweep
//! (see [`crate::SweepView`]).

use coffer_types::{Id, ImageState, Kind, Tag};
use sqlx::AssertSqlSafe;

use crate::chunks::{VolumeRow, gc_volume_tx, insert_volume_tx, volume_tx};
use crate::images::{ImageRow, insert_image_tx};
use crate::listing::{ListFilter, bound, clause};
use crate::nodes::{Holder, check_holder_tx};
use crate::resources::insert_snapshot_tx;
use crate::{Meta, MetaError, Result, SnapshotRow, now, parse_id, to_i64, to_u64};

/// A job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// Id (`job-…`).
    pub id: Id,
    /// The account that will own the result.
    pub account_id: Id,
    /// `snapshot-copy`.
    pub kind: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// The snapshot copied.
    pub source_id: Id,
    /// Its account.
    pub source_account: Id,
    /// Its region.
    pub source_region: String,
    /// The snapshot the job makes.
    pub target_id: Id,
    /// Its name.
    pub name: String,
    /// The volume the job reads through (parent: the source's view).
    pub reader_volume: Option<Id>,
    /// The volume it writes.
    pub target_volume: Option<Id>,
    /// Bytes to copy (the source's size).
    pub bytes_total: u64,
    /// Bytes copied and committed.
    pub bytes_done: u64,
    /// Why it failed, or what it is doing.
    pub message: Option<String>,
    /// Tags of the result, `KEY=VALUE` lines.
    pub tags: Vec<Tag>,
    /// Who asked.
    pub created_by: Id,
    /// When.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// The node running it.
    pub node_id: Option<Id>,
    /// SHA-256 of the source's data (its allocated ranges), once verified.
    pub source_hash: Option<String>,
    /// SHA-256 of the copy's same ranges, read back.
    pub target_hash: Option<String>,
    /// The image (pending) whose snapshot in this role the job makes, when
    /// it copies one snapshot of an image.
    pub image: Option<(Id, String)>,
    /// The region the copy is made in (its source's, unless the job
    /// copies across regions).
    pub target_region: String,
    /// The view the job copies: the source's volume and generation (`None`
    /// on jobs from before incremental copies). For an import from another
    /// deployment, the volume is `DEPLOYMENT/VOLUME`, the sender's ids.
    pub source_view: Option<(String, u64)>,
    /// The earlier copy this one is built on (its target is a child of that
    /// copy's view, and only the chunks changed since are copied), and the
    /// generation of the source that copy was made from.
    pub base: Option<(Id, u64)>,
    /// Bytes of data read from the source and written to the copy so far.
    pub bytes_copied: u64,
    /// For an import from another deployment (no reader volume): where it
    /// reads, as the service recorded it (JSON, its pull token sealed).
    pub remote: Option<String>,
}

const JOB_COLS: &str = "id, account_id, kind, state, source_id, source_account, source_region, target_id, name, reader_volume, target_volume, bytes_total, bytes_done, message, tags, created_by, created_at, updated_at, finished_at, node_id, source_hash, target_hash, image_id, image_role, target_region, source_volume, source_generation, base_id, base_generation, bytes_copied, remote";

struct JobRec(JobRow);

impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for JobRec {
    fn from_row(r: &'r sqlx::any::AnyRow) -> sqlx::Result<Self> {
        use sqlx::Row;
        let s = |i: usize| -> sqlx::Result<String> { r.try_get(i) };
        let o = |i: usize| -> sqlx::Result<Option<String>> { r.try_get(i) };
        let (id, account, source, source_account, target) = (s(0)?, s(1)?, s(4)?, s(5)?, s(7)?);
        let (reader, tvol, node, tags) = (o(9)?, o(10)?, o(19)?, s(14)?);
        let (total, done): (i64, i64) = (r.try_get(11)?, r.try_get(12)?);
        let parse = || -> Result<JobRow> {
            let vol = |v: Option<String>| v.map(|v| parse_id(&v, Kind::Volume)).transpose();
            Ok(JobRow {
                id: parse_id(&id, Kind::Job)?,
                account_id: parse_id(&account, Kind::Account)?,
                kind: s(2)?,
                state: s(3)?,
                source_id: parse_id(&source, Kind::Snapshot)?,
                source_account: parse_id(&source_account, Kind::Account)?,
                source_region: s(6)?,
                target_id: parse_id(&target, Kind::Snapshot)?,
                name: s(8)?,
                reader_volume: vol(reader)?,
                target_volume: vol(tvol)?,
                bytes_total: to_u64(total)?,
                bytes_done: to_u64(done)?,
                message: o(13)?,
                tags: tags
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| Tag {
                        key: k.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                created_by: parse_id(&s(15)?, Kind::Principal)?,
                created_at: s(16)?,
                updated_at: s(17)?,
                finished_at: o(18)?,
                node_id: node.map(|n| parse_id(&n, Kind::Node)).transpose()?,
                source_hash: o(20)?,
                target_hash: o(21)?,
                image: match (o(22)?, o(23)?) {
                    (Some(i), Some(role)) => Some((parse_id(&i, Kind::Image)?, role)),
                    _ => None,
                },
                target_region: s(24)?,
                source_view: match (o(25)?, r.try_get::<Option<i64>, _>(26)?) {
                    (Some(v), Some(g)) => Some((v, to_u64(g)?)),
                    _ => None,
                },
                base: match (o(27)?, r.try_get::<Option<i64>, _>(28)?) {
                    (Some(b), Some(g)) => Some((parse_id(&b, Kind::Snapshot)?, to_u64(g)?)),
                    _ => None,
                },
                bytes_copied: to_u64(r.try_get::<i64, _>(29)?)?,
                remote: o(30)?,
            })
        };
        parse()
            .map(JobRec)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }
}

impl Meta {
    /// Record a copy job with its reader and target volumes, in one
    /// transaction that checks the source snapshot still exists and is the
    /// view the reader's parent names (a concurrent delete comes first, or
    /// sees the reader as a view to keep).
    pub async fn create_copy_job(
        &self,
        job: &JobRow,
        reader: Option<&VolumeRow>,
        target: &VolumeRow,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        insert_copy_job_tx(&mut tx, job, reader, target).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Record an image copied under another key: `image`, pending, and one
    /// job per snapshot of it (as [`Meta::create_copy_job`]), in one
    /// transaction. The image becomes available in the transaction that
    /// ends its last job.
    pub async fn create_image_copy(
        &self,
        image: &ImageRow,
        jobs: &[(JobRow, Option<VolumeRow>, VolumeRow)],
        tags: &[Tag],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        if image.state != ImageState::Pending {
            return Err(MetaError::Corrupt(
                "an image copied by jobs starts pending".into(),
            ));
        }
        insert_image_tx(&mut tx, image, tags).await?;
        for (job, reader, target) in jobs {
            insert_copy_job_tx(&mut tx, job, reader.as_ref(), target).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The jobs copying the snapshots of image `id`.
    pub async fn jobs_of_image(&self, id: Id) -> Result<Vec<JobRow>> {
        let rows: Vec<JobRec> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM jobs WHERE image_id = $1 ORDER BY image_role"
        )))
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// The copy a new copy of `volume` at `generation` into `account` in
    /// `region` can be built on: the target snapshot (still there) of the
    /// newest succeeded copy job of an earlier view of the same volume into
    /// the same account and region, and that view's generation.
    pub async fn copy_base(
        &self,
        account: Id,
        region: &str,
        volume: &str,
        generation: u64,
    ) -> Result<Option<(SnapshotRow, u64)>> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT j.target_id, j.source_generation FROM jobs j JOIN snapshots t ON t.id = j.target_id \
             WHERE j.state = 'succeeded' AND j.account_id = $1 AND j.target_region = $2 \
             AND j.source_volume = $3 AND j.source_generation < $4 \
             ORDER BY j.source_generation DESC LIMIT 1",
        )
        .bind(account.to_string())
        .bind(region)
        .bind(volume)
        .bind(to_i64(generation)?)
        .fetch_optional(&self.pool)
        .await?;
        let Some((target, base_generation)) = row else {
            return Ok(None);
        };
        let base_generation = to_u64(base_generation)?;
        let snap = self.snapshot(parse_id(&target, Kind::Snapshot)?).await?;
        Ok(snap.map(|s| (s, base_generation)))
    }

    /// The chunks of `volume` in `from..to` (chunk indexes, ascending)
    /// whose content may differ between its views at generations `after`
    /// and `upto` (`after < upto`): those with a row (of either format)
    /// written after `after` and up to `upto`. A view of a volume sees, per
    /// chunk, its newest row up to the view's generation, so a chunk with no
    /// such row reads the same in both. One bounded range at a time: the
    /// map is never read whole.
    pub async fn changed_chunks(
        &self,
        volume: Id,
        after: u64,
        upto: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<u64>> {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT chunk_index FROM extents WHERE volume_id = $1 AND chunk_index >= $2 AND chunk_index < $3 \
             AND generation > $4 AND generation <= $5 \
             UNION SELECT chunk_index FROM chunks WHERE volume_id = $1 AND chunk_index >= $2 AND chunk_index < $3 \
             AND generation > $4 AND generation <= $5 ORDER BY 1",
        )
        .bind(volume.to_string())
        .bind(to_i64(from)?)
        .bind(to_i64(to)?)
        .bind(to_i64(after)?)
        .bind(to_i64(upto)?)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(to_u64).collect()
    }

    /// A job by id.
    pub async fn job(&self, id: Id) -> Result<Option<JobRow>> {
        let row: Option<JobRec> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM jobs WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.0))
    }

    /// One page of jobs, in creation order (the filter's account, state
    /// and cursor; what the caller may see).
    pub async fn list_jobs_page(&self, f: &ListFilter) -> Result<Vec<JobRow>> {
        let mut binds = vec![];
        let Some(clause) = clause(f, &mut binds) else {
            return Ok(vec![]);
        };
        let cols: Vec<String> = JOB_COLS.split(", ").map(|c| format!("t.{c}")).collect();
        let sql = format!(
            "SELECT {} FROM jobs t {clause} ORDER BY t.created_at, t.id LIMIT {}",
            cols.join(", "),
            f.limit
        );
        let rows: Vec<JobRec> = bound(sqlx::query_as(AssertSqlSafe(sql)), &binds)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Take a running job for node `me` unless a live other node runs it:
    /// the new hold its target volume's writes and its end go under (any
    /// earlier hold, of a node that lost the job, is fenced).
    pub async fn claim_job(&self, id: Id, me: Id, now_ms: i64) -> Result<Option<Holder>> {
        let hold = Id::random(Kind::Attachment);
        let n = sqlx::query(
            "UPDATE jobs SET node_id = $1, hold_id = $4 WHERE id = $2 AND state = 'running' AND (node_id IS NULL OR node_id = $1 OR node_id NOT IN (SELECT id FROM nodes WHERE lease_expires_ms > $3))",
        )
        .bind(me.to_string())
        .bind(id.to_string())
        .bind(now_ms)
        .bind(hold.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((n == 1).then_some(Holder {
            attachment: id,
            node: me,
            hold,
        }))
    }

    /// Running jobs no live node other than `me` runs.
    pub async fn runnable_jobs(&self, me: Id, now_ms: i64) -> Result<Vec<Id>> {
        let v: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state = 'running' AND (node_id IS NULL OR node_id = $1 OR node_id NOT IN (SELECT id FROM nodes WHERE lease_expires_ms > $2)) ORDER BY created_at",
        )
        .bind(me.to_string())
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        v.iter().map(|s| parse_id(s, Kind::Job)).collect()
    }

    /// Record progress (bytes copied and committed) and what the job does.
    pub async fn job_progress(
        &self,
        holder: &Holder,
        done: u64,
        message: Option<&str>,
    ) -> Result<()> {
        self.job_progress_copied(holder, done, None, message).await
    }

    /// [`Meta::job_progress`], and, with `copied`, the bytes of data the
    /// job has read and written so far.
    pub async fn job_progress_copied(
        &self,
        holder: &Holder,
        done: u64,
        copied: Option<u64>,
        message: Option<&str>,
    ) -> Result<()> {
        let n = sqlx::query(
            "UPDATE jobs SET bytes_done = $1, message = $2, updated_at = $3, bytes_copied = COALESCE($7, bytes_copied) WHERE id = $4 AND node_id = $5 AND hold_id = $6 AND state = 'running'",
        )
        .bind(to_i64(done)?)
        .bind(message)
        .bind(now())
        .bind(holder.attachment.to_string())
        .bind(holder.node.to_string())
        .bind(holder.hold.to_string())
        .bind(copied.map(to_i64).transpose()?)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 1 {
            Ok(())
        } else {
            Err(MetaError::Fenced(format!(
                "job {} is no longer running under hold {}",
                holder.attachment, holder.hold
            )))
        }
    }

    /// End a running job that did not succeed: `failed`, or `cancelled`
    /// (a cancel). Its volumes are dropped (their objects queued for
    /// deletion) in the same transaction, so nothing of a half copy stays.
    /// With `holder` (its runner failing it), only while the job still
    /// runs under that hold: a node that lost the job changes nothing.
    /// Returns the objects queued, or `None` if the job was not running
    /// (ended already, or another hold's): nothing changed. A job that
    /// succeeded is never touched (its target volume is its snapshot's).
    ///
    /// A job copying a snapshot of an image fails the image (pending ->
    /// failed) and stops its sibling jobs (cancelled, their volumes
    /// dropped): an image is copied whole or not at all.
    pub async fn fail_job(
        &self,
        id: Id,
        holder: Option<&Holder>,
        state: &str,
        message: &str,
    ) -> Result<Option<u64>> {
        let image: Option<Option<String>> =
            sqlx::query_scalar("SELECT image_id FROM jobs WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        let Some(image) = image else {
            return Err(MetaError::NotFound(format!("job {id}")));
        };
        let image = image.map(|i| parse_id(&i, Kind::Image)).transpose()?;
        let mut tx = self.begin().await?;
        if let Some(image) = image {
            lock_image_tx(&mut tx, image).await?;
        }
        let Some(mut queued) = end_job_tx(&mut tx, id, holder, state, message).await? else {
            return Ok(None);
        };
        if let Some(image) = image {
            sqlx::query("UPDATE images SET state = 'failed' WHERE id = $1 AND state = 'pending'")
                .bind(image.to_string())
                .execute(&mut *tx)
                .await?;
            let siblings: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE image_id = $1 AND id <> $2 AND state = 'running'",
            )
            .bind(image.to_string())
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await?;
            let why = format!("another snapshot of image {image} could not be copied");
            for j in siblings {
                let j = parse_id(&j, Kind::Job)?;
                queued += end_job_tx(&mut tx, j, None, "cancelled", &why)
                    .await?
                    .unwrap_or(0);
            }
        }
        tx.commit().await?;
        Ok(Some(queued))
    }

    /// Finish a copy: `snap` (on the target volume's head, which moves on)
    /// appears, the job succeeds with its hashes, and the reader volume
    /// goes — in one transaction, under the job's hold `holder`: unless the
    /// job was cancelled or taken by another node meanwhile
    /// ([`MetaError::Fenced`]).
    pub async fn complete_copy(
        &self,
        holder: &Holder,
        snap: &SnapshotRow,
        source_hash: &str,
        target_hash: &str,
        tags: &[Tag],
    ) -> Result<()> {
        let id = holder.attachment;
        let mut tx = self.begin().await?;
        // The image first (siblings finishing at once take turns, and the
        // last sees every other one done), then the job's hold.
        if let Some((image, _)) = &snap.image {
            lock_image_tx(&mut tx, *image).await?;
        }
        check_holder_tx(&mut tx, holder).await?;
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT state, reader_volume FROM jobs WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let Some((state, reader)) = row else {
            return Err(MetaError::NotFound(format!("job {id}")));
        };
        if state != "running" {
            return Err(MetaError::Conflict(format!("job {id} is {state}")));
        }
        let v = volume_tx(&mut tx, snap.volume_id).await?;
        let mut snap = snap.clone();
        snap.generation = v.head_generation;
        insert_snapshot_tx(&mut tx, &snap).await?;
        sqlx::query("UPDATE volumes SET head_generation = $1, live = 0 WHERE id = $2")
            .bind(to_i64(snap.generation + 1)?)
            .bind(snap.volume_id.to_string())
            .execute(&mut *tx)
            .await?;
        for t in tags {
            sqlx::query("INSERT INTO tags (resource_id, tag_key, tag_value) VALUES ($1, $2, $3)")
                .bind(snap.id.to_string())
                .bind(&t.key)
                .bind(&t.value)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE jobs SET state = 'succeeded', message = NULL, bytes_done = bytes_total, source_hash = $1, target_hash = $2, updated_at = $3, finished_at = $3, reader_volume = NULL WHERE id = $4",
        )
        .bind(source_hash)
        .bind(target_hash)
        .bind(now())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if let Some(r) = reader {
            let r = parse_id(&r, Kind::Volume)?;
            sqlx::query("UPDATE volumes SET live = 0 WHERE id = $1")
                .bind(r.to_string())
                .execute(&mut *tx)
                .await?;
            gc_volume_tx(&mut tx, r).await?;
        }
        gc_volume_tx(&mut tx, snap.volume_id).await?;
        if let Some((image, _)) = &snap.image {
            sqlx::query(
                "UPDATE images SET state = 'available' WHERE id = $1 AND state = 'pending' AND NOT EXISTS (SELECT 1 FROM jobs WHERE image_id = $1 AND state <> 'succeeded')",
            )
            .bind(image.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Inside a transaction: a copy job with its reader and target volumes,
/// checking the source snapshot still exists and is the view the reader's
/// parent names. A job without a reader imports from another deployment
/// (its `remote` says where).
async fn insert_copy_job_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job: &JobRow,
    reader: Option<&VolumeRow>,
    target: &VolumeRow,
) -> Result<()> {
    match reader {
        Some(reader) => {
            insert_reader_tx(tx, job.source_id, reader).await?;
        }
        None if job.remote.is_some() => {}
        None => {
            return Err(MetaError::Corrupt(
                "a copy job reads a reader volume or a remote export".into(),
            ));
        }
    }
    insert_volume_tx(tx, target).await?;
    let tags: Vec<String> = job.tags.iter().map(Tag::to_string).collect();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO jobs ({JOB_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31)"
    )))
    .bind(job.id.to_string())
    .bind(job.account_id.to_string())
    .bind(&job.kind)
    .bind(&job.state)
    .bind(job.source_id.to_string())
    .bind(job.source_account.to_string())
    .bind(&job.source_region)
    .bind(job.target_id.to_string())
    .bind(&job.name)
    .bind(job.reader_volume.map(|v| v.to_string()))
    .bind(job.target_volume.map(|v| v.to_string()))
    .bind(to_i64(job.bytes_total)?)
    .bind(to_i64(job.bytes_done)?)
    .bind(job.message.clone())
    .bind(tags.join("\n"))
    .bind(job.created_by.to_string())
    .bind(&job.created_at)
    .bind(&job.updated_at)
    .bind(job.finished_at.clone())
    .bind(job.node_id.map(|n| n.to_string()))
    .bind(job.source_hash.clone())
    .bind(job.target_hash.clone())
    .bind(job.image.as_ref().map(|i| i.0.to_string()))
    .bind(job.image.as_ref().map(|i| i.1.clone()))
    .bind(&job.target_region)
    .bind(job.source_view.as_ref().map(|v| v.0.clone()))
    .bind(job.source_view.as_ref().map(|v| to_i64(v.1)).transpose()?)
    .bind(job.base.map(|b| b.0.to_string()))
    .bind(job.base.map(|b| to_i64(b.1)).transpose()?)
    .bind(to_i64(job.bytes_copied)?)
    .bind(job.remote.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inside a transaction: record `reader`, a volume whose parent is the
/// view of snapshot `source`, checking that the snapshot still exists and
/// is that view (a concurrent delete comes first, or sees the reader as a
/// view to keep).
pub(crate) async fn insert_reader_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    source: Id,
    reader: &VolumeRow,
) -> Result<()> {
    let Some((parent, generation)) = reader.parent else {
        return Err(MetaError::Corrupt("a reader volume needs a parent".into()));
    };
    volume_tx(tx, parent).await?;
    let found: Option<(String, i64)> =
        sqlx::query_as("SELECT volume_id, generation FROM snapshots WHERE id = $1")
            .bind(source.to_string())
            .fetch_optional(&mut **tx)
            .await?;
    match found {
        Some((v, g)) if v == parent.to_string() && to_u64(g)? == generation => {}
        _ => return Err(MetaError::NotFound(format!("snapshot {source}"))),
    }
    insert_volume_tx(tx, reader).await
}

/// Inside a transaction: lock image `id`'s row.
async fn lock_image_tx(tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: Id) -> Result<()> {
    sqlx::query("UPDATE images SET state = state WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Inside a transaction: end running job `id` (under `holder`'s hold, if
/// given) as `state`, dropping its volumes; `None` if it was not running
/// under it (see [`Meta::fail_job`]).
async fn end_job_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: Id,
    holder: Option<&Holder>,
    state: &str,
    message: &str,
) -> Result<Option<u64>> {
    let n = match holder {
        Some(h) => sqlx::query(
            "UPDATE jobs SET state = $1, message = $2, updated_at = $3, finished_at = $3 WHERE id = $4 AND state = 'running' AND node_id = $5 AND hold_id = $6",
        )
        .bind(state)
        .bind(message)
        .bind(now())
        .bind(id.to_string())
        .bind(h.node.to_string())
        .bind(h.hold.to_string()),
        None => sqlx::query(
            "UPDATE jobs SET state = $1, message = $2, updated_at = $3, finished_at = $3 WHERE id = $4 AND state = 'running'",
        )
        .bind(state)
        .bind(message)
        .bind(now())
        .bind(id.to_string()),
    }
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n != 1 {
        return Ok(None);
    }
    let (reader, target): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT reader_volume, target_volume FROM jobs WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(&mut **tx)
            .await?;
    sqlx::query("UPDATE jobs SET reader_volume = NULL, target_volume = NULL WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    let mut queued = 0;
    for v in [target, reader].into_iter().flatten() {
        let v = parse_id(&v, Kind::Volume)?;
        sqlx::query("UPDATE volumes SET live = 0 WHERE id = $1")
            .bind(v.to_string())
            .execute(&mut **tx)
            .await?;
        queued += gc_volume_tx(tx, v).await?;
    }
    Ok(Some(queued))
}
