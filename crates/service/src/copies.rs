//! Copies that re-encrypt, as jobs (SPEC §5). A copy that must change the
//! key — `--encryption-set`, `--rekey`, or a customer-key snapshot copied
//! into another account — reads every allocated block of the source under
//! its data keys and writes it under a new data key wrapped by the target
//! key. It is a job (`coffer-meta::jobs`): created at once (the source's
//! view held by a reader volume from that moment, so deleting or
//! unsharing the source, or revoking its key, after the copy completes
//! changes nothing for it), run in the background by any node
//! ([`Service::spawn_jobs`]), resumed from its last committed offset after
//! a restart, verified end to end (BLAKE3 of the plaintext of the
//! source's allocated ranges and of the same ranges of the copy, read
//! back), and visible as a snapshot only once it succeeded. The copy
//! shares no object and no data key with its source.

use std::sync::Arc;
use std::time::Duration;

use coffer_crypto::Blake3;
use coffer_iam::Action;
use coffer_meta::{Holder, JobRow, Origin, SnapshotRow, VolumeRow, now_ms};
use coffer_types::{CreationMethod, EncryptionType, Id, Kind, Name, Tag};
use coffer_volume::Volume;

use crate::attach::VaultDeks;
use crate::error::ErrorCode;
use crate::model::*;
use crate::source::{
    CopySource, HASH_RANGE, LocalSource, hash_changed, hash_piece, hash_view, runs_within,
};
use crate::*;
use coffer_wire::{ListParams, Page};

/// How much a job copies between looks at whether it was cancelled.
const STEP: u64 = crate::source::WINDOW;
/// How many windows a copy's reader reads at once.
const READ_AHEAD: usize = 4;
/// How much a job copies between commits (the point it resumes from).
const COMMIT_EVERY: u64 = 64 << 20;
/// How many windows a whole copy writes through to the store at once.
const WRITES_IN_FLIGHT: usize = 4;
/// How often the runner looks for jobs to run, besides when woken.
const JOBS_INTERVAL: Duration = Duration::from_secs(1);
/// How often a running copy looks whether its job was cancelled (not at
/// every window: a look is a metadata query, ~10 ms on SQLite while the
/// copy commits; the cancel also drops the job's volumes, which fences the
/// target's next commit).
const CANCEL_CHECK: Duration = Duration::from_millis(250);
/// How often a `get_job` that waits looks at its job again, besides when
/// woken (a job another node runs: its end is seen this late, or when the
/// wait is up, whichever is first).
const JOB_WAIT_POLL: Duration = Duration::from_secs(1);

pub(crate) fn job_dto(j: &JobRow) -> Job {
    Job {
        id: j.id.to_string(),
        kind: j.kind.clone(),
        state: j.state.clone(),
        account_id: j.account_id.to_string(),
        source_id: j.source_id.to_string(),
        target_id: j.target_id.to_string(),
        source_region: j.source_region.clone(),
        target_region: j.target_region.clone(),
        base_id: j.base.map(|b| b.0.to_string()),
        bytes_copied: j.bytes_copied,
        image_id: j.image.as_ref().map(|i| i.0.to_string()),
        bytes_total: j.bytes_total,
        bytes_done: j.bytes_done,
        message: j.message.clone(),
        source_hash: j.source_hash.clone(),
        target_hash: j.target_hash.clone(),
        created_at: j.created_at.clone(),
        updated_at: j.updated_at.clone(),
        finished_at: j.finished_at.clone(),
    }
}

impl Service {
    /// Whether some principal of `account` holds a grant on `key` that
    /// allows decrypting with it (a key's owner lets another account use
    /// its customer-key data this way, SPEC §4).
    pub(crate) async fn account_may_decrypt(&self, key: Id, account: Id) -> Result<bool> {
        for g in self.meta.grants_on_key(key).await? {
            if crate::grants::actions_of(&g.operations).contains(&Action::KeysDecrypt)
                && let Some(p) = self.meta.principal(g.grantee_id).await?
                && p.account_id == account
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Refuse to read `src` for `account` unless its key allows: a
    /// platform-key snapshot, a customer-key one of `account` itself, or
    /// one whose key's owner granted `account` Decrypt (SPEC §4).
    pub(crate) async fn check_may_decrypt(&self, src: &SnapshotRow, account: Id) -> Result<()> {
        if src.encryption != EncryptionType::Platform
            && src.account_id != account
            && !self.account_may_decrypt(src.kek_id, account).await?
        {
            return Err(ServiceError::new(
                ErrorCode::KeyNotShared,
                format!(
                    "snapshot {} is under customer-managed key {} of account {}, and account {account} holds no grant on it: the key's owner first runs `coffer key grant create {} --grantee PRINCIPAL --operations Describe,Decrypt,ReEncrypt,CreateGrant,GenerateDataKey` for a principal of account {account}",
                    src.id, src.kek_id, src.account_id, src.kek_id
                ),
            ));
        }
        Ok(())
    }

    /// The region a copy asked for (`None`: the source's), checked.
    pub(crate) fn copy_region(&self, source: &str, asked: Option<&str>) -> Result<String> {
        match asked.map(str::trim) {
            None | Some("") => Ok(source.to_string()),
            Some(r) => {
                self.config
                    .regions
                    .check_region(r)
                    .map_err(|e| ServiceError::new(ErrorCode::UnknownRegion, e.to_string()))?;
                Ok(r.to_string())
            }
        }
    }

    /// Start a re-encrypting copy of `src` into `account` in `region` as a
    /// job: the new data key under `set`'s key (or the target region's
    /// platform key).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start_copy_job(
        &self,
        caller: &Caller,
        src: &SnapshotRow,
        account: Id,
        region: &str,
        name: &Name,
        (set, rekey): (Option<&str>, bool),
        tags: Vec<Tag>,
    ) -> Result<Job> {
        let (job, reader, target) = self
            .plan_copy_job(
                caller,
                src,
                account,
                region,
                name.as_str(),
                (set, rekey),
                tags,
                None,
            )
            .await?;
        if let Err(e) = self
            .meta
            .create_copy_job(&job, reader.as_ref(), &target)
            .await
        {
            self.forget_job_keys(&[(job, reader, target)]).await;
            return Err(match e {
                coffer_meta::MetaError::NotFound(_) => {
                    ServiceError::not_found(ErrorCode::SnapshotNotFound, "snapshot", src.id)
                }
                other => other.into(),
            });
        }
        tracing::info!(job = %job.id, source = %src.id, target = %job.target_id, account = %account, "re-encrypting copy started");
        self.jobs_wake.notify_one();
        Ok(job_dto(&job))
    }

    /// Forget the data keys made for jobs that were then not recorded.
    pub(crate) async fn forget_job_keys(&self, jobs: &[(JobRow, Option<VolumeRow>, VolumeRow)]) {
        let made: Vec<Id> = jobs
            .iter()
            .flat_map(|(_, r, t)| [r.as_ref().map(|r| r.dek_id), Some(t.dek_id), t.dek2_id])
            .flatten()
            .collect();
        if let Err(e) = self.meta.forget_unused_deks(&made).await {
            tracing::warn!(error = %e, "cannot forget the data keys of a copy job not made");
        }
    }

    /// Check and prepare a re-encrypting copy of `src` into `account` in
    /// `region` (named `name`; with `image`, that image's snapshot in that
    /// role) under `set`'s key or the region's platform key: the job and its
    /// volumes, with their new data keys (wrapped by keys of `region`), not
    /// recorded yet. With `rekey`, never built on an earlier copy (every
    /// block of it under new data keys).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn plan_copy_job(
        &self,
        caller: &Caller,
        src: &SnapshotRow,
        account: Id,
        region: &str,
        name: &str,
        (set, rekey): (Option<&str>, bool),
        tags: Vec<Tag>,
        image: Option<(Id, String)>,
    ) -> Result<(JobRow, Option<VolumeRow>, VolumeRow)> {
        self.check_may_decrypt(src, account).await?;
        let source_vol = self.meta.volume(src.volume_id).await?;
        let target_id = Id::random(Kind::Snapshot);
        // The data keys made below go again if a later step fails.
        let mut made = MadeKeys::new(self.meta.clone());
        // The job unwraps the source's data key under its set's customer
        // key: one audit record, as for a volume open.
        if let Some(set_id) = src.encryption_set_id
            && let Some(set) = self.meta.encryption_set(set_id).await?
        {
            let dek = self.vault.dek_row(source_vol.dek_id).await?;
            self.audit_as_identity(
                caller.principal.id,
                &set,
                "key.unwrap",
                dek.kek_version,
                src.id,
                Ok(()),
            )
            .await?;
        }
        let keys = self
            .plan_target_keys(caller, account, region, set, target_id, &mut made)
            .await?;
        let reader = self.plan_reader(src, &source_vol, &mut made).await?;
        let lineage = src.volume_id.to_string();
        let base = self
            .copy_base_for(
                account,
                region,
                (&lineage, src.generation),
                (keys.under, source_vol.chunk_size),
                rekey,
            )
            .await?;
        made.disarm();
        let (dek_id, dek2_id) = (keys.dek_id, keys.dek2_id);
        let target = VolumeRow {
            id: Id::random(Kind::Volume),
            dek_id,
            dek2_id,
            chunk_size: source_vol.chunk_size,
            size: src.size,
            parent: base.as_ref().map(|(b, _)| (b.volume_id, b.generation)),
            head_generation: 0,
            live: true,
            region: region.to_string(),
        };
        let now = coffer_meta::now();
        let job = JobRow {
            id: Id::random(Kind::Job),
            account_id: account,
            kind: if image.is_some() {
                "image-copy"
            } else {
                "snapshot-copy"
            }
            .into(),
            state: "running".into(),
            source_id: src.id,
            source_account: src.account_id,
            source_region: src.region.clone(),
            target_region: region.to_string(),
            target_id,
            name: name.to_string(),
            reader_volume: Some(reader.id),
            target_volume: Some(target.id),
            bytes_total: src.size,
            bytes_done: 0,
            message: Some("queued".into()),
            tags,
            created_by: caller.principal.id,
            created_at: now.clone(),
            updated_at: now,
            finished_at: None,
            node_id: None,
            source_hash: None,
            target_hash: None,
            image,
            source_view: Some((lineage, src.generation)),
            base: base.map(|(b, generation)| (b.id, generation)),
            bytes_copied: 0,
            remote: None,
        };
        Ok((job, Some(reader), target))
    }

    /// The new data keys of a copy's target `target_id` in `region`: under
    /// `set`'s key (a set of `account` in `region`, the wrap audited as its
    /// identity acting for the caller), or the region's platform key; a
    /// double-encryption set adds a platform-key data key. Each key made is
    /// recorded in `made`.
    pub(crate) async fn plan_target_keys(
        &self,
        caller: &Caller,
        account: Id,
        region: &str,
        set: Option<&str>,
        target_id: Id,
        made: &mut MadeKeys,
    ) -> Result<TargetKeys> {
        let Some(s) = set else {
            let kek = self.vault.platform_key(region).await?;
            return Ok(TargetKeys {
                dek_id: made.push(self.vault.new_dek(&kek).await?.0),
                dek2_id: None,
                under: (None, EncryptionType::Platform),
            });
        };
        let (s, kek) = self.set_for_new_disk(caller, s, region).await?;
        if s.account_id != account {
            return Err(ServiceError::new(
                ErrorCode::KeyRequired,
                format!(
                    "encryption set {} belongs to account {}: a copy in account {account} is encrypted under a set of that account",
                    s.id, s.account_id
                ),
            ));
        }
        let version = Self::set_target(&s, &kek);
        let (dek, _) = self.vault.new_dek_with(&kek, version, Some(s.id)).await?;
        made.push(dek);
        self.audit_as_identity(
            caller.principal.id,
            &s,
            "key.wrap",
            version,
            target_id,
            Ok(()),
        )
        .await?;
        let dek2_id = match s.encryption_type {
            EncryptionType::Double => {
                let kek = self.vault.platform_key(region).await?;
                Some(made.push(self.vault.new_dek(&kek).await?.0))
            }
            _ => None,
        };
        Ok(TargetKeys {
            dek_id: dek,
            dek2_id,
            under: (Some(s.id), s.encryption_type),
        })
    }

    /// A reader volume of snapshot `src` (whose volume is `source_vol`):
    /// a child of its view that a copy or an export reads through, so the
    /// view stays while it is read. It never writes; it gets a data key of
    /// its own (recorded in `made`) so that no two volumes share one.
    pub(crate) async fn plan_reader(
        &self,
        src: &SnapshotRow,
        source_vol: &VolumeRow,
        made: &mut MadeKeys,
    ) -> Result<VolumeRow> {
        let platform = self.vault.platform_key(&src.region).await?;
        Ok(VolumeRow {
            id: Id::random(Kind::Volume),
            dek_id: made.push(self.vault.new_dek(&platform).await?.0),
            dek2_id: None,
            chunk_size: source_vol.chunk_size,
            size: src.size,
            parent: Some((src.volume_id, src.generation)),
            head_generation: 0,
            live: true,
            // The reader is of the source's lineage, in its store.
            region: source_vol.region.clone(),
        })
    }

    /// The base of an incremental copy of `lineage` at `generation` into
    /// `account` in `region`: an earlier copy of the same lineage there,
    /// under the same key (`under`) and chunk size; never with `rekey`
    /// (every block under new data keys).
    pub(crate) async fn copy_base_for(
        &self,
        account: Id,
        region: &str,
        (lineage, generation): (&str, u64),
        (under, chunk_size): ((Option<Id>, EncryptionType), u32),
        rekey: bool,
    ) -> Result<Option<(SnapshotRow, u64)>> {
        if rekey {
            return Ok(None);
        }
        match self
            .meta
            .copy_base(account, region, lineage, generation)
            .await?
        {
            Some((b, generation))
                if b.account_id == account
                    && b.region == region
                    && (b.encryption_set_id, b.encryption) == under
                    && self.meta.volume(b.volume_id).await?.chunk_size == chunk_size =>
            {
                Ok(Some((b, generation)))
            }
            _ => Ok(None),
        }
    }

    /// A page of the jobs of the accounts the caller may see snapshots of,
    /// in creation order (`state=` filters: running, succeeded, failed,
    /// cancelled).
    pub async fn list_jobs(&self, caller: &Caller, q: ListParams) -> Result<Page<Job>> {
        let p = crate::list::paging(&q)?;
        let size = p.size;
        let state = match q.state.as_deref() {
            None => None,
            Some(s @ ("running" | "succeeded" | "failed" | "cancelled")) => Some(s.to_string()),
            Some(other) => {
                return Err(ServiceError::new(
                    ErrorCode::InvalidFilter,
                    format!(
                        "unknown job state '{other}': use running, succeeded, failed or cancelled"
                    ),
                ));
            }
        };
        let mut f = self
            .owned_filter(caller, Action::SnapshotsRead, Kind::Job, &q, p)
            .await?;
        f.state = state;
        let rows = self.meta.list_jobs_page(&f).await?;
        Ok(crate::list::finish(
            rows.iter().map(job_dto).collect(),
            size,
        ))
    }

    /// The job `id`, if the caller may do `action` in its account.
    async fn authorized_job(&self, caller: &Caller, id: &str, action: Action) -> Result<JobRow> {
        let jid = parse_id(id, Kind::Job)?;
        let missing = || ServiceError::not_found(ErrorCode::JobNotFound, "job", jid);
        let j = self.meta.job(jid).await?.ok_or_else(missing)?;
        let target = coffer_iam::Target::new(self.account_chain(j.account_id).await?);
        match coffer_iam::authorize(&caller.subject, action, &target) {
            coffer_iam::Decision::Allow(_) => Ok(j),
            coffer_iam::Decision::Deny(d) if d.visible && action != Action::SnapshotsRead => {
                Err(crate::access::forbidden(caller.principal.id, &d))
            }
            coffer_iam::Decision::Deny(_) => Err(missing()),
        }
    }

    /// One job; while it runs, waiting up to `wait_ms` milliseconds (at
    /// most [`coffer_wire::MAX_JOB_WAIT_MS`]) for it to end: woken when a
    /// job of this node ends or is cancelled here, and looking again every
    /// second (a job another node runs). Authorized at every look.
    pub async fn get_job(&self, caller: &Caller, id: &str, wait_ms: u64) -> Result<Job> {
        if wait_ms > coffer_wire::MAX_JOB_WAIT_MS {
            return Err(ServiceError::new(
                ErrorCode::InvalidQuery,
                format!(
                    "wait_ms is {wait_ms}: a job is waited for at most {} ms; poll again to wait longer",
                    coffer_wire::MAX_JOB_WAIT_MS
                ),
            ));
        }
        let until = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        loop {
            // Registered before the look, so an end between the two wakes it.
            let ended = self.jobs_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let j = self
                .authorized_job(caller, id, Action::SnapshotsRead)
                .await?;
            let now = tokio::time::Instant::now();
            if j.state != "running" || now >= until {
                return Ok(job_dto(&j));
            }
            let _ = tokio::time::timeout((until - now).min(JOB_WAIT_POLL), ended).await;
        }
    }

    /// Cancel a running job: it stops, and nothing of the copy stays.
    pub async fn cancel_job(&self, caller: &Caller, id: &str) -> Result<Job> {
        let j = self
            .authorized_job(caller, id, Action::SnapshotsWrite)
            .await?;
        // Cancelled and its volumes dropped in one transaction, whoever
        // runs it: a runner's later commits are fenced (its hold checks
        // that the job still runs), and what it stored and did not commit
        // is an orphan for the sweep.
        if self
            .meta
            .fail_job(j.id, None, "cancelled", "cancelled")
            .await?
            .is_none()
        {
            let now = self.meta.job(j.id).await?.unwrap_or(j);
            return Err(ServiceError::new(
                ErrorCode::Conflict,
                format!(
                    "job {} is {}: only a running job can be cancelled",
                    now.id, now.state
                ),
            ));
        }
        self.gc_wake.notify_one();
        self.jobs_ended.notify_waiters();
        tracing::info!(job = %j.id, by = %caller.principal.id, "job cancelled");
        let j = self.meta.job(j.id).await?.unwrap_or(j);
        Ok(job_dto(&j))
    }

    /// Run copy jobs in the background: those created here at once, and
    /// every second any running job no live node runs (one whose
    /// node died is resumed here from its last commit).
    pub fn spawn_jobs(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(JOBS_INTERVAL, me.jobs_wake.notified()).await;
                let Some(node) = me.my_node_id().await else {
                    continue;
                };
                let ids = match me.meta.runnable_jobs(node, now_ms()).await {
                    Ok(ids) => ids,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list copy jobs");
                        continue;
                    }
                };
                for id in ids {
                    if lock(&me.running_jobs).contains(&id)
                        || lock(&me.job_backoff)
                            .get(&id)
                            .is_some_and(|(_, at)| *at > std::time::Instant::now())
                    {
                        continue;
                    }
                    let holder = match me.meta.claim_job(id, node, now_ms()).await {
                        Ok(Some(h)) => h,
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::warn!(job = %id, error = %e, "cannot claim a copy job");
                            continue;
                        }
                    };
                    lock(&me.running_jobs).insert(id);
                    let svc = Arc::clone(&me);
                    tokio::spawn(async move {
                        let ran = svc.run_job(holder).await;
                        if ran.is_ok() {
                            lock(&svc.job_backoff).remove(&id);
                        }
                        if let Err(e) = ran
                            && !svc.waits_for_region(&holder, &e).await
                        {
                            lock(&svc.job_backoff).remove(&id);
                            // Failed only while it still runs under this
                            // node's hold: a job cancelled, or taken over
                            // by another node, is not this run's to fail.
                            match svc
                                .meta
                                .fail_job(id, Some(&holder), "failed", &e.message)
                                .await
                            {
                                Ok(Some(_)) => {
                                    tracing::warn!(job = %id, error = %e.message, "copy job failed");
                                }
                                Ok(None) => {
                                    tracing::info!(job = %id, why = %e.message, "copy job stopped: no longer this node's to run");
                                }
                                Err(e2) => {
                                    tracing::warn!(job = %id, error = %e2, "cannot record a failed job");
                                }
                            }
                            svc.gc_wake.notify_one();
                        }
                        lock(&svc.running_jobs).remove(&id);
                        svc.jobs_ended.notify_waiters();
                    });
                }
            }
        })
    }

    /// Whether job `id`, which stopped on `e`, stopped because a region it
    /// reads or writes does not answer (probed again now): it then stays
    /// running, and resumes from its last commit once the region is back.
    async fn waits_for_region(&self, holder: &Holder, e: &ServiceError) -> bool {
        let id = holder.attachment;
        let Ok(Some(job)) = self.meta.job(id).await else {
            return false;
        };
        // An import whose sender does not answer waits for it the same way
        // (until its export expires: the sender then refuses the token).
        if e.code == ErrorCode::RemoteUnavailable
            && let Some(remote) = &job.remote
        {
            // Past the export's expiry the sender refuses the token: the
            // job fails rather than waiting for ever.
            let now = u64::try_from(now_ms()).unwrap_or(0);
            if crate::exports::remote_expiry(remote).is_some_and(|x| now > x + 60_000) {
                return false;
            }
            // Tried again later and later: 5 s, doubling, at most 5 min.
            let delay = {
                let mut b = lock(&self.job_backoff);
                let tries = b.get(&id).map_or(0, |(n, _)| *n);
                let delay = Duration::from_secs((5u64 << tries.min(6)).min(300));
                b.insert(id, (tries + 1, std::time::Instant::now() + delay));
                delay
            };
            let why = format!(
                "waiting for the sending deployment (again in {} s): {}",
                delay.as_secs(),
                e.message
            );
            tracing::info!(job = %id, "copy job {why}");
            if let Err(e) = self
                .meta
                .job_progress(holder, job.bytes_done, Some(&why))
                .await
            {
                tracing::debug!(job = %id, error = %e, "cannot record why a job waits");
            }
            return true;
        }
        if e.code != ErrorCode::RegionUnavailable {
            self.probe_regions().await;
        }
        let down: Vec<String> = self
            .region_health()
            .into_iter()
            .filter(|h| {
                !h.available && (h.region == job.source_region || h.region == job.target_region)
            })
            .map(|h| h.region)
            .collect();
        if down.is_empty() {
            return false;
        }
        let why = format!(
            "waiting for region {} (its object store does not answer)",
            down.join(", ")
        );
        tracing::info!(job = %id, error = %e.message, "copy job {why}");
        if let Err(e) = self
            .meta
            .job_progress(holder, job.bytes_done, Some(&why))
            .await
        {
            tracing::debug!(job = %id, error = %e, "cannot record why a job waits");
        }
        true
    }

    /// Copy into `target` the chunks in `off..off + len` that changed in
    /// the source's lineage after generation `after`: their data, and their
    /// holes as zeroes. Returns the bytes of data copied.
    async fn copy_changed(
        &self,
        source: &dyn CopySource,
        target: &Arc<Volume>,
        after: u64,
        off: u64,
        len: u64,
    ) -> Result<u64> {
        let cs = u64::from(target.chunk_size());
        let total = target.size();
        let mut copied = 0;
        let changed = source
            .changed(after, off / cs, (off + len).div_ceil(cs))
            .await?;
        if changed.is_empty() {
            return Ok(0);
        }
        let runs = source.allocation(off, len).await?;
        for idx in changed {
            let start = idx * cs;
            for (pos, n, hole) in runs_within(&runs, off, start, (start + cs).min(total)) {
                if hole {
                    target.write_zeroes(pos, n, false).await?;
                } else {
                    if let Some(p) = &self.config.copy_pace {
                        p.take(usize::try_from(n).unwrap_or(usize::MAX)).await;
                    }
                    target.write(pos, source.read(pos, n).await?, false).await?;
                    copied += n;
                }
            }
        }
        Ok(copied)
    }

    /// Whether job `id` is still running (not cancelled meanwhile).
    async fn still_running(&self, id: Id) -> Result<bool> {
        Ok(self
            .meta
            .job(id)
            .await?
            .is_some_and(|j| j.state == "running"))
    }

    /// What job `job` reads: its reader volume, or another deployment's
    /// export for an import.
    async fn job_source(
        &self,
        job: &JobRow,
        deks: &Arc<VaultDeks>,
    ) -> Result<(Arc<dyn CopySource>, Option<Arc<Volume>>)> {
        if let Some(remote) = &job.remote {
            let (at, role) = self.open_remote(job.id, &job.target_region, remote).await?;
            let remotes = self.remotes.get().ok_or_else(crate::source::no_remotes)?;
            return Ok((remotes.source(&at, &role, job.bytes_total), None));
        }
        let Some(reader_vol) = job.reader_volume else {
            return Err(ServiceError::internal("a copy job without a reader volume"));
        };
        // The reader reads the source's region's store, streaming: what it
        // reads that is not cached already is not kept in the page cache.
        let store = self.store_of(&self.meta.volume(reader_vol).await?.region)?;
        let config = coffer_volume::VolumeConfig {
            streaming_io: true,
            ..self.config.volume.clone()
        };
        let reader = Volume::open(
            self.meta.clone(),
            store,
            reader_vol,
            deks.clone(),
            config,
            None,
        )
        .await?;
        let view = match &job.source_view {
            Some((v, g)) => Some((parse_id(v, Kind::Volume)?, *g)),
            None => None,
        };
        let source = Arc::new(LocalSource {
            vol: reader.clone(),
            meta: self.meta.clone(),
            view,
        });
        Ok((source, Some(reader)))
    }

    /// Copy, verify and finish one job, from where it was last committed,
    /// under the hold `holder` of this node's claim: if the job is
    /// cancelled, or another node takes it over, the next commit of its
    /// target volume is fenced and this run stops.
    async fn run_job(&self, holder: Holder) -> Result<()> {
        let id = holder.attachment;
        let Some(job) = self.meta.job(id).await? else {
            return Ok(());
        };
        let Some(target_vol) = job.target_volume else {
            return Ok(());
        };
        let deks = Arc::new(VaultDeks(self.vault.clone()));
        let (source, reader) = self.job_source(&job, &deks).await?;
        // The target writes its own region's store. It is written once,
        // whole chunks in order, and becomes a snapshot: its chunks are
        // packed, 4 MiB objects, written and read back streaming (kept out
        // of the page cache).
        let target_store = self.store_of(&self.meta.volume(target_vol).await?.region)?;
        let config = coffer_volume::VolumeConfig {
            pack_chunks: true,
            streaming_io: true,
            ..self.config.volume.clone()
        };
        let target = Volume::open(
            self.meta.clone(),
            target_store,
            target_vol,
            deks.clone(),
            config,
            Some(holder),
        )
        .await?;
        let total = job.bytes_total;
        let mut off = job.bytes_done - job.bytes_done % STEP;
        // When this run last looked whether the job was cancelled.
        let mut checked: Option<std::time::Instant> = None;
        if off > 0 {
            tracing::info!(job = %id, resumed_at = off, "copy job resumed");
        }
        // An incremental copy (one built on a base) copies the chunks of
        // the source's lineage changed since the base's source: its target
        // already reads the base's data everywhere else.
        let incremental = job.base.map(|(_, after)| after);
        let mut copied = job.bytes_copied;
        // A whole local copy is verified as it goes: a task reads the copy
        // back from the store (and hashes it) as far as it is stored, a
        // few windows behind the writing, and the source is hashed as it
        // is copied (the same windows and pieces), or, when this run
        // resumes one, by a task reading it again from the start. An
        // incremental copy, and the copy of a remote source (which hashes
        // its side itself), are verified at the end (`verify_copy`).
        let local_whole = incremental.is_none() && job.remote.is_none();
        // How far the target holds the copy in the store (`0..stored`).
        let (stored, stored_rx) = tokio::sync::watch::channel(off);
        let mut source_hash = (local_whole && off == 0).then(hash_sent);
        let source_again =
            (local_whole && off > 0).then(|| hash_windows(&source, &source, total, None));
        let read_back = local_whole.then(|| {
            let copy: Arc<dyn CopySource> = Arc::new(LocalSource {
                vol: target.clone(),
                meta: self.meta.clone(),
                view: None,
            });
            hash_windows(&copy, &source, total, Some(stored_rx))
        });
        // The source is read (and decrypted) by a task of its own,
        // [`READ_AHEAD`] windows at a time, while this one hands windows to
        // the writes (which seal) and the hashing, and the read-back reads
        // and decrypts: every core busy, and the disk reading while it
        // writes.
        let mut windows = incremental
            .is_none()
            .then(|| read_windows(&source, &source, (off, total), None));
        // A whole copy's windows are written through to the store
        // ([`Volume::write_through`]: sealed and put at once, not batched
        // by the write-back cache), up to [`WRITES_IN_FLIGHT`] at a time,
        // each by a task of its own; `stored` moves on as they end, in
        // order. An incremental copy writes through the write-back cache,
        // and its flushes store it.
        // Each write: where its window ends, its bytes of data, its task.
        let mut writes: std::collections::VecDeque<(u64, u64, Task<Result<()>>)> =
            std::collections::VecDeque::new();
        // Commits run in a task of their own, one at a time, while the
        // next windows are written.
        let mut committing: Option<Task<Result<()>>> = None;
        // The next point to commit at: every COMMIT_EVERY of what is
        // stored, and the end.
        let mut commit_at = (off / COMMIT_EVERY + 1) * COMMIT_EVERY;
        let stop = |e: ServiceError| async {
            if let Some(r) = &reader {
                let _ = r.close().await;
            }
            e
        };
        while off < total {
            if checked.is_none_or(|t| t.elapsed() >= CANCEL_CHECK) {
                checked = Some(std::time::Instant::now());
                if !self.still_running(id).await? {
                    return self.stop_cancelled(id, reader.as_deref(), &target).await;
                }
            }
            let len = STEP.min(total - off);
            let step = async {
                match (&mut windows, incremental) {
                    (Some(windows), _) => {
                        if let Some(p) = &self.config.copy_pace {
                            p.take(usize::try_from(len).unwrap_or(usize::MAX)).await;
                        }
                        let w = next_window(windows).await?;
                        if let Some((tx, hashing)) = &mut source_hash
                            && tx.send(w.clone()).await.is_err()
                        {
                            // The hashing ended before its sender: say why.
                            return Err(hashing.ended().await);
                        }
                        // Counted as copied once stored (below), so that a
                        // commit records the bytes of what it holds.
                        let bytes = w.iter().map(|(_, d)| d.len() as u64).sum::<u64>();
                        let target = target.clone();
                        writes.push_back((
                            off + len,
                            bytes,
                            Task(tokio::spawn(async move {
                                for (pos, data) in w {
                                    target.write_through(pos, data).await?;
                                }
                                Ok(())
                            })),
                        ));
                    }
                    (None, Some(after)) => {
                        copied += self
                            .copy_changed(source.as_ref(), &target, after, off, len)
                            .await?;
                    }
                    (None, None) => unreachable!("a job copies whole or incrementally"),
                }
                Ok::<_, ServiceError>(())
            };
            if let Err(e) = step.await {
                return Err(stop(e).await);
            }
            off += len;
            // What is stored: the writes that ended, in order, waiting for
            // the oldest once WRITES_IN_FLIGHT run (and for all at the
            // end); an incremental copy's writes are in the write-back
            // cache, stored by the commit's flush.
            let mut now_stored = if windows.is_some() {
                *stored.borrow()
            } else {
                off
            };
            while writes.len() >= WRITES_IN_FLIGHT
                || (off == total && !writes.is_empty())
                || writes.front().is_some_and(|(_, _, w)| w.0.is_finished())
            {
                let (end, bytes, w) = writes.pop_front().expect("not empty");
                if let Err(e) = w.join().await {
                    return Err(stop(e).await);
                }
                stored.send_replace(end);
                now_stored = end;
                copied += bytes;
            }
            if now_stored >= commit_at || (off == total && now_stored == total) {
                commit_at = (now_stored / COMMIT_EVERY + 1) * COMMIT_EVERY;
                if let Some(c) = committing.take() {
                    c.join().await?;
                }
                let (target, meta) = (target.clone(), self.meta.clone());
                let (at, copied) = (now_stored, copied);
                committing = Some(Task(tokio::spawn(async move {
                    target.flush().await?;
                    meta.job_progress_copied(&holder, at, Some(copied), Some("copying"))
                        .await?;
                    Ok(())
                })));
            }
        }
        if let Some(c) = committing.take() {
            c.join().await?;
        }
        drop(windows);
        self.meta
            .job_progress(&holder, total, Some("verifying"))
            .await?;
        let verified = async {
            let in_run = match (source_hash, source_again, read_back) {
                (Some((tx, s)), None, Some(b)) => {
                    drop(tx);
                    Some((s.join().await?, b.join().await?))
                }
                (None, Some(s), Some(b)) => Some((s.join().await?, b.join().await?)),
                _ => None,
            };
            self.verify_copy(&source, &target, incremental, in_run)
                .await
        }
        .await;
        if let Some(r) = &reader {
            r.close().await?;
        }
        target.close().await?;
        let (source_sha, target_sha) = verified?;
        let target_row = self.meta.volume(target_vol).await?;
        let dek = self.meta.dek(target_row.dek_id).await?;
        let encryption = match (dek.encryption_set_id, target_row.dek2_id) {
            (None, _) => EncryptionType::Platform,
            (Some(_), Some(_)) => EncryptionType::Double,
            (Some(_), None) => EncryptionType::Customer,
        };
        let snap = SnapshotRow {
            id: job.target_id,
            account_id: job.account_id,
            name: job.name.clone(),
            region: job.target_region.clone(),
            source_disk_id: None,
            volume_id: target_vol,
            generation: 0,
            size: total,
            encryption,
            kek_id: dek.kek_id,
            created_at: coffer_meta::now(),
            encryption_set_id: dek.encryption_set_id,
            image: job.image.clone(),
            created_by: CreationMethod::Copy,
            origin: Origin {
                account: Some(job.source_account),
                region: Some(job.source_region.clone()),
                id: Some(job.source_id),
            },
        };
        match self
            .meta
            .complete_copy(&holder, &snap, &source_sha, &target_sha, &job.tags)
            .await
        {
            Ok(()) => {}
            Err(coffer_meta::MetaError::Fenced(why)) => {
                // Cancelled (its canceller dropped the volumes), or another
                // node runs it now.
                tracing::info!(job = %id, why = %why, "copy job stopped: no longer this node's");
                return Ok(());
            }
            Err(coffer_meta::MetaError::NameTaken { .. }) => {
                return Err(ServiceError::name_taken(
                    Kind::Snapshot,
                    job.account_id,
                    &job.name,
                ));
            }
            Err(e) => return Err(e.into()),
        }
        self.gc_wake.notify_one();
        tracing::info!(job = %id, snapshot = %job.target_id, bytes = total, hash = %source_sha, "re-encrypting copy done and verified");
        Ok(())
    }

    /// Verify a copy: the source's hash and the copy's, read back at the
    /// source's allocated pieces, either computed as the copy ran
    /// (`in_run`: a whole local copy), or here: by the source's side for a
    /// remote source, range by range, and for an incremental copy
    /// (`Some(after)`) over the chunks changed since its base (the rest is
    /// the base's data, verified whole when the base was made and
    /// authenticated at every read). The copy must also hold no data where
    /// the source reads as zeroes (an incremental copy's base might).
    /// Returns the two hashes, equal.
    async fn verify_copy(
        &self,
        source: &Arc<dyn CopySource>,
        target: &Arc<Volume>,
        incremental: Option<u64>,
        in_run: Option<(String, String)>,
    ) -> Result<(String, String)> {
        let source = source.as_ref();
        let total = target.size();
        let copy = LocalSource {
            vol: target.clone(),
            meta: self.meta.clone(),
            view: None,
        };
        let geometry = (target.chunk_size(), total);
        let first = match in_run {
            Some(_) => None,
            None => {
                source
                    .own_hash(incremental, 0, HASH_RANGE.min(total))
                    .await?
            }
        };
        let (source_sha, target_sha) = match (in_run, first) {
            (Some(both), _) => both,
            // The source hashes its side (another deployment's export),
            // range by range: each range compared, the two recorded hashes
            // over the ranges' hashes.
            (None, Some(first)) => {
                let (mut a, mut b) = (Blake3::default(), Blake3::default());
                let mut off = 0;
                let mut theirs = Some(first);
                while off < total {
                    let len = HASH_RANGE.min(total - off);
                    let range = (off, off + len);
                    let src = match theirs.take() {
                        Some(h) => h,
                        None => source
                            .own_hash(incremental, off, len)
                            .await?
                            .ok_or_else(|| ServiceError::internal("a source stopped hashing"))?,
                    };
                    let dst = match incremental {
                        Some(after) => hash_changed(&copy, source, geometry, after, range).await?,
                        None => hash_view(&copy, source, range).await?,
                    };
                    if src != dst {
                        return Err(ServiceError::new(
                            ErrorCode::IntegrityError,
                            format!(
                                "copy verification failed: bytes {off}..{} of the source hash to {src} on its side, of the copy to {dst}",
                                off + len
                            ),
                        ));
                    }
                    a.update(src.as_bytes());
                    b.update(dst.as_bytes());
                    off += len;
                }
                (a.finish_tagged(), b.finish_tagged())
            }
            (None, None) => {
                let Some(after) = incremental else {
                    return Err(ServiceError::internal(
                        "a whole local copy is hashed as it runs",
                    ));
                };
                let whole = (0, total);
                let b = hash_changed(&copy, source, geometry, after, whole).await?;
                let a = hash_changed(source, source, geometry, after, whole).await?;
                (a, b)
            }
        };
        let mut off = 0;
        while off < total {
            let len = (1u64 << 30).min(total - off);
            let (src, dst) = (
                source.allocation(off, len).await?,
                target.allocation(off, len)?,
            );
            if let Some(at) = data_outside(&src, &dst) {
                return Err(ServiceError::new(
                    ErrorCode::IntegrityError,
                    format!(
                        "copy verification failed: the copy holds data at byte {}, where the source reads as zeroes",
                        off + at
                    ),
                ));
            }
            off += len;
        }
        if source_sha != target_sha {
            return Err(ServiceError::new(
                ErrorCode::IntegrityError,
                format!(
                    "copy verification failed: the source's data hashes to {source_sha}, the copy's to {target_sha}"
                ),
            ));
        }
        Ok((source_sha, target_sha))
    }

    /// Stop a run whose job was cancelled (its canceller dropped the
    /// volumes): the reader closes, the target writes nothing more.
    async fn stop_cancelled(&self, id: Id, reader: Option<&Volume>, target: &Volume) -> Result<()> {
        if let Some(r) = reader {
            let _ = r.close().await;
        }
        target.fence();
        self.gc_wake.notify_one();
        tracing::info!(job = %id, "copy job stopped: cancelled");
        Ok(())
    }
}

/// One window of a copy: the allocated pieces `(offset, bytes)` in order.
type Window = Vec<(u64, bytes::Bytes)>;

/// Read `from`'s data at the allocated pieces of `layout` (the source's
/// view), window by window of [`STEP`] over `start..total`, in a task of
/// its own that reads [`READ_AHEAD`] windows at once (so the store has
/// several reads to work on). Windows the receiver has not taken: two in
/// the channel, one being handed over, and up to [`READ_AHEAD`] read
/// meanwhile (7 × 8 MiB at most). With `ready`, it reads a window only
/// once `ready` has reached its end (the copy read back as it is
/// stored). It stops as soon as the receiver goes, aborting the reads
/// in flight.
///
/// Each window is read by a task of its own, not as a future the sending
/// task polls: that task waits whenever the receiver is behind, and a
/// read it stopped polling could hold what the receiver waits for. A
/// read may wait for the metadata store (a data key not cached yet), and
/// on SQLite its one connection is handed to the next waiter in turn,
/// polled or not: a read granted the connection while its task waited to
/// send held it, while the copy's loop waited for that connection to
/// commit before taking the next window. Nothing moved until the pool's
/// 30 s timeout failed the job (seen on this machine twice in about 80
/// copies).
fn read_windows(
    from: &Arc<dyn CopySource>,
    layout: &Arc<dyn CopySource>,
    (start, total): (u64, u64),
    ready: Option<tokio::sync::watch::Receiver<u64>>,
) -> tokio::sync::mpsc::Receiver<Result<Window>> {
    use futures::StreamExt as _;
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let (from, layout) = (Arc::clone(from), Arc::clone(layout));
    tokio::spawn(async move {
        let offsets = (start..total).step_by(usize::try_from(STEP).unwrap_or(usize::MAX));
        let mut windows = futures::stream::iter(offsets)
            .map(|off| {
                let (from, layout, mut ready) = (from.clone(), layout.clone(), ready.clone());
                Task(tokio::spawn(async move {
                    let len = STEP.min(total - off);
                    if let Some(r) = &mut ready {
                        r.wait_for(|&done| done >= off + len)
                            .await
                            .map_err(|_| ServiceError::internal("a copy stopped writing"))?;
                    }
                    let mut out = vec![];
                    let mut pos = off;
                    for (n, hole) in layout.allocation(off, len).await? {
                        if !hole {
                            out.push((pos, from.read(pos, n).await?));
                        }
                        pos += n;
                    }
                    Ok(out)
                }))
                .join()
            })
            .buffered(READ_AHEAD);
        loop {
            let window = tokio::select! {
                w = windows.next() => w,
                () = tx.closed() => return,
            };
            let Some(window) = window else { return };
            let failed = window.is_err();
            if tx.send(window).await.is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// The verification hash (`hash_view`'s) of `from`'s data at `layout`'s
/// allocated pieces over `0..total`, read a window or two ahead of the
/// hashing (gated by `ready` as in [`read_windows`]), in tasks of their
/// own.
fn hash_windows(
    from: &Arc<dyn CopySource>,
    layout: &Arc<dyn CopySource>,
    total: u64,
    ready: Option<tokio::sync::watch::Receiver<u64>>,
) -> Task<Result<String>> {
    let mut windows = read_windows(from, layout, (0, total), ready);
    Task(tokio::spawn(async move {
        let mut h = Blake3::default();
        let mut off = 0;
        while off < total {
            hash_window(&mut h, next_window(&mut windows).await?);
            off += STEP.min(total - off);
        }
        Ok(h.finish_tagged())
    }))
}

/// The verification hash (`hash_view`'s) of the windows sent to it, in
/// order, computed in a task of its own (off the copy's loop); it ends
/// when the sender is dropped.
fn hash_sent() -> (tokio::sync::mpsc::Sender<Window>, Task<Result<String>>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Window>(2);
    let task = Task(tokio::spawn(async move {
        let mut h = Blake3::default();
        while let Some(window) = rx.recv().await {
            hash_window(&mut h, window);
        }
        Ok(h.finish_tagged())
    }));
    (tx, task)
}

/// Add `window`'s pieces to the verification hash `h`.
fn hash_window(h: &mut Blake3, window: Window) {
    for (pos, data) in window {
        hash_piece(h, pos, &data);
    }
}

/// A spawned task that is aborted if its handle is dropped unjoined (a
/// copy run that stops early stops its helpers).
struct Task<T>(tokio::task::JoinHandle<T>);

impl<T> Task<Result<T>> {
    /// The task's result (an error if it panicked).
    async fn join(mut self) -> Result<T> {
        (&mut self.0)
            .await
            .map_err(|e| ServiceError::internal(format!("a copy's task failed: {e}")))?
    }

    /// Why a task that should still be running has ended: its error, or
    /// its panic. (It must have ended: this waits for it.)
    async fn ended(&mut self) -> ServiceError {
        match (&mut self.0).await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => ServiceError::internal("a copy's task ended early"),
            Err(e) => ServiceError::internal(format!("a copy's task failed: {e}")),
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The next window of `rx`.
async fn next_window(rx: &mut tokio::sync::mpsc::Receiver<Result<Window>>) -> Result<Window> {
    match rx.recv().await {
        Some(w) => w,
        None => Err(ServiceError::internal("a copy's reader stopped early")),
    }
}

/// The first byte that `copy` (runs of `(length, hole)`) holds as data
/// where `source` (runs over the same range) has a hole, if any.
fn data_outside(source: &[(u64, bool)], copy: &[(u64, bool)]) -> Option<u64> {
    let mut src = source.iter().scan(0u64, |at, &(n, hole)| {
        let start = *at;
        *at += n;
        Some((start, *at, hole))
    });
    let mut cur = src.next();
    let mut at = 0u64;
    for &(n, hole) in copy {
        let (start, end) = (at, at + n);
        at = end;
        if hole {
            continue;
        }
        // Every source run this data run overlaps must be data.
        let mut pos = start;
        while pos < end {
            while let Some((_, e, _)) = cur
                && e <= pos
            {
                cur = src.next();
            }
            match cur {
                Some((_, e, false)) => pos = e.min(end),
                _ => return Some(pos),
            }
        }
    }
    None
}

/// The data keys of a copy's target, and the key it is under.
pub(crate) struct TargetKeys {
    pub(crate) dek_id: Id,
    pub(crate) dek2_id: Option<Id>,
    pub(crate) under: (Option<Id>, EncryptionType),
}

/// Data keys made for a job being planned: forgotten (in the background)
/// if the plan is dropped before [`MadeKeys::disarm`], so a step that fails
/// after a key was made leaves no key row behind.
pub(crate) struct MadeKeys {
    meta: coffer_meta::Meta,
    ids: Vec<Id>,
}

impl MadeKeys {
    pub(crate) fn new(meta: coffer_meta::Meta) -> Self {
        Self { meta, ids: vec![] }
    }

    /// Record a key just made; returns it.
    pub(crate) fn push(&mut self, id: Id) -> Id {
        self.ids.push(id);
        id
    }

    /// The plan succeeded: its keys stay.
    pub(crate) fn disarm(&mut self) {
        self.ids.clear();
    }
}

impl Drop for MadeKeys {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        let (meta, ids) = (self.meta.clone(), std::mem::take(&mut self.ids));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = meta.forget_unused_deks(&ids).await {
                    tracing::warn!(error = %e, "cannot forget the data keys of a copy job not made");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source whose reads take turns at one permit (as the metadata
    /// store's one SQLite connection is handed out, to the next waiter in
    /// turn) and hold it for a while: each window is one 4 KiB piece.
    struct TakingTurns(Arc<tokio::sync::Semaphore>);

    #[async_trait::async_trait]
    impl CopySource for TakingTurns {
        async fn allocation(&self, _: u64, length: u64) -> Result<Vec<(u64, bool)>> {
            Ok(vec![(4096, false), (length - 4096, true)])
        }
        async fn read(&self, offset: u64, length: u64) -> Result<bytes::Bytes> {
            let _turn = self.0.acquire().await.expect("open");
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut b = offset.to_le_bytes().to_vec();
            b.resize(usize::try_from(length).expect("small"), 0);
            Ok(b.into())
        }
        async fn changed(&self, _: u64, _: u64, _: u64) -> Result<Vec<u64>> {
            Ok(vec![])
        }
        async fn own_hash(&self, _: Option<u64>, _: u64, _: u64) -> Result<Option<String>> {
            Ok(None)
        }
    }

    /// The copy's loop takes a turn (a commit) before it takes the next
    /// window. The windows read ahead while the loop has not taken them
    /// must go on without it: a read that got the turn while its reader
    /// waited to hand a window over held the turn the loop waited for, and
    /// nothing moved again (a copy job hung until the pool's timeout).
    #[tokio::test]
    async fn windows_read_ahead_finish_while_the_copy_waits_for_a_turn() {
        let turns = Arc::new(tokio::sync::Semaphore::new(1));
        let src: Arc<dyn CopySource> = Arc::new(TakingTurns(turns.clone()));
        let n = 12;
        let mut rx = read_windows(&src, &src, (0, n * STEP), None);
        let all = async {
            // Let the reader fill its channel and have its reads in flight.
            tokio::time::sleep(Duration::from_millis(200)).await;
            for i in 0..n {
                drop(turns.acquire().await.expect("open"));
                let w = next_window(&mut rx).await?;
                assert_eq!(w.len(), 1);
                assert_eq!(w[0].0, i * STEP);
                assert_eq!(w[0].1[..8], (i * STEP).to_le_bytes());
            }
            Ok::<_, ServiceError>(())
        };
        tokio::time::timeout(Duration::from_secs(20), all)
            .await
            .expect("every window arrives while the loop takes turns")
            .expect("reads");
    }

    #[test]
    fn data_outside_finds_the_first_copy_data_over_a_source_hole() {
        let src = [(4, false), (4, true), (8, false)];
        assert_eq!(data_outside(&src, &[(4, false), (12, true)]), None);
        assert_eq!(data_outside(&src, &src), None);
        assert_eq!(data_outside(&src, &[(16, true)]), None);
        assert_eq!(
            data_outside(&src, &[(2, true), (4, false), (10, true)]),
            Some(4)
        );
        assert_eq!(data_outside(&src, &[(16, false)]), Some(4));
        assert_eq!(data_outside(&src, &[(8, true), (8, false)]), None);
        assert_eq!(data_outside(&[(8, true)], &[(8, false)]), Some(0));
        assert_eq!(
            data_outside(&[(4, false)], &[(4, false), (4, false)]),
            Some(4)
        );
    }
}
