//! Copies between two deployments (SPEC §5): the sender's *exports* and the
//! receiver's *imports*.
//!
//! The sending deployment makes an export of a snapshot or an image: a
//! reader volume per snapshot (a child of its view, so the export reads
//! what it was made of whatever happens to the snapshot meanwhile) and a
//! pull token, shown once, stored as its SHA-256, that expires (24 hours
//! by default, at most 7 days). The pull token is a credential of its own
//! kind: it opens the routes of its one export and nothing else, and no
//! principal's token opens those routes. A reader of the export decrypts
//! under the sender's keys; what crosses is plaintext inside TLS.
//!
//! The receiving deployment imports it: a copy job per snapshot that reads
//! the export (a [`crate::source::CopySource`] over HTTPS, made by the API
//! layer) and writes a new volume under its own keys, then verifies the
//! copy read back against the hash the sender computed on its side. The
//! pull token is kept on the job sealed under the deployment's root key.
//! Neither side ever holds the other's keys. An import of a later view of
//! the same lineage (the same sender deployment and volume) into the same
//! account, region and key moves only the chunks changed since.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use coffer_crypto::hash_token;
use coffer_iam::{Action, Scope};
use coffer_meta::{
    AuditRecord, ExportMemberRow, ExportRow, ImageRow, JobRow, Origin, SnapshotRow, VolumeRow,
    now_ms,
};
use coffer_types::{CreationMethod, EncryptionType, Id, ImageState, Kind};
use coffer_volume::Volume;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::attach::VaultDeks;
use crate::copies::{MadeKeys, job_dto};
use crate::error::ErrorCode;
use crate::model::*;
use crate::source::{LocalSource, RemoteExport, hash_changed, hash_view};
use crate::*;

/// The prefix of every pull token (a secret scanner finds them as it finds
/// `coffer_` API tokens).
pub const PULL_TOKEN_PREFIX: &str = "coffer_pull_";
/// How long an export lasts unless asked otherwise.
const DEFAULT_HOURS: u32 = 24;
/// The longest an export may last.
const MAX_HOURS: u32 = 168;
/// Largest range of one allocation map answer.
pub const MAX_MAP: u64 = 1 << 30;
/// Largest range of one changed-chunks answer, in chunks.
pub const MAX_CHANGED: u64 = 1 << 16;
/// How long an export's reader volume stays open unused.
const READER_IDLE: Duration = Duration::from_secs(120);

/// Where an import reads, as its job records it (the token sealed).
#[derive(Serialize, Deserialize)]
struct RemoteRecord {
    endpoint: String,
    export_id: String,
    role: String,
    #[serde(default)]
    ca_pem: Option<String>,
    /// The pull token sealed under the target region's root key, the job
    /// id and the fields above as context (base64).
    token: String,
    /// When the export expires (unix ms): past it, the sender refuses the
    /// token, so a job that cannot reach the sender fails instead of
    /// waiting.
    #[serde(default)]
    expires_at_ms: u64,
}

impl RemoteRecord {
    /// What the sealed token is bound to: its job, and where it is sent.
    fn context(&self, job: Id) -> Vec<u8> {
        let ca = self.ca_pem.as_deref().map(hash_token).unwrap_or_default();
        format!(
            "coffer import token\njob={job}\nendpoint={}\nexport={}\nrole={}\nca={ca}",
            self.endpoint, self.export_id, self.role
        )
        .into_bytes()
    }
}

/// When the export an import job reads expires (unix ms), if recorded.
pub(crate) fn remote_expiry(remote: &str) -> Option<u64> {
    serde_json::from_str::<RemoteRecord>(remote)
        .ok()
        .map(|r| r.expires_at_ms)
        .filter(|e| *e > 0)
}

/// Now, in unix milliseconds.
fn now_u64() -> u64 {
    u64::try_from(now_ms()).unwrap_or(0)
}

fn ms_rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn not_open(id: &str) -> ServiceError {
    ServiceError::new(
        ErrorCode::ExportNotFound,
        format!(
            "export {id} does not exist, or this pull token does not open it (wrong, expired or revoked): ask the sending deployment for a new export"
        ),
    )
}

impl Service {
    /// The client of other deployments' exports (set once by `serve`).
    pub fn set_remotes(&self, remotes: Arc<dyn crate::source::Remotes>) {
        let _ = self.remotes.set(remotes);
    }

    async fn export_dto(&self, e: &ExportRow, members: &[ExportMemberRow]) -> Result<Export> {
        // Revoked before it expired, or ended by the collector after.
        let ended_by_expiry = e
            .revoked_at
            .as_deref()
            .and_then(|r| humantime::parse_rfc3339(r).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .is_some_and(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX) >= e.expires_at);
        let state = if e.revoked_at.is_some() {
            if ended_by_expiry {
                "expired"
            } else {
                "revoked"
            }
        } else if e.expires_at <= now_u64() {
            "expired"
        } else {
            "active"
        };
        Ok(Export {
            id: e.id.to_string(),
            kind: e.kind.clone(),
            source_id: e.source_id.to_string(),
            account_id: e.account_id.to_string(),
            deployment_id: self.deployment_id().await?,
            state: state.into(),
            expires_at: ms_rfc3339(e.expires_at),
            created_at: e.created_at.clone(),
            members: members
                .iter()
                .map(|m| ExportMember {
                    role: m.role.clone(),
                    snapshot_id: m.snapshot_id.to_string(),
                    size: m.size,
                    chunk_size: m.chunk_size,
                    lineage: m.source_view.0.to_string(),
                    generation: m.source_view.1,
                })
                .collect(),
            token: None,
        })
    }

    /// This deployment's id (random, written once).
    pub(crate) async fn deployment_id(&self) -> Result<String> {
        let mut id = [0u8; 16];
        coffer_crypto::random_bytes(&mut id);
        Ok(self
            .meta
            .setting_init("deployment_id", &hex::encode(id))
            .await?)
    }

    /// Make an export of snapshot `id` for another deployment.
    pub async fn export_snapshot(
        &self,
        caller: &Caller,
        id: &str,
        req: CreateExport,
    ) -> Result<Export> {
        // Data leaves the deployment: its owner's decision, as sharing is
        // (`snapshots/write` on the snapshot), never a mere user's.
        let src = self
            .authorized_snapshot(caller, id, Action::SnapshotsWrite)
            .await?;
        let account = src.account_id;
        self.create_export(
            caller,
            ("snapshot", src.id, account),
            vec![("root".into(), src)],
            &req,
        )
        .await
    }

    /// Make an export of image `id` (all its snapshots) for another
    /// deployment.
    pub async fn export_image(
        &self,
        caller: &Caller,
        id: &str,
        req: CreateExport,
    ) -> Result<Export> {
        let image = self
            .authorized_image(caller, id, Action::ImagesWrite)
            .await?;
        if image.state != ImageState::Available {
            return Err(ServiceError::new(
                ErrorCode::Conflict,
                format!(
                    "image {} is {}: only an available image can be exported",
                    image.id,
                    image.state.as_str()
                ),
            ));
        }
        let snaps = self
            .meta
            .image_snapshots(image.id)
            .await?
            .into_iter()
            .map(|s| (crate::images::role_in_image(&s), s))
            .collect();
        self.create_export(caller, ("image", image.id, image.account_id), snaps, &req)
            .await
    }

    async fn create_export(
        &self,
        caller: &Caller,
        (kind, source_id, account): (&str, Id, Id),
        snaps: Vec<(String, SnapshotRow)>,
        req: &CreateExport,
    ) -> Result<Export> {
        let hours = req.expires_in_hours.unwrap_or(DEFAULT_HOURS);
        if !(1..=MAX_HOURS).contains(&hours) {
            return Err(ServiceError::new(
                ErrorCode::InvalidDuration,
                format!("an export lasts 1 to {MAX_HOURS} hours (7 days); asked {hours}"),
            ));
        }
        // The export is the owner account's (its Owners see and revoke it).
        // Data under a customer key leaves only with the key owner's
        // consent: the account holds a decrypt grant on it (SPEC §4).
        for (_, s) in &snaps {
            self.check_may_decrypt(s, account).await?;
        }
        let id = Id::random(Kind::Export);
        let mut made = MadeKeys::new(self.meta.clone());
        let mut members = vec![];
        for (role, s) in &snaps {
            let vol = self.meta.volume(s.volume_id).await?;
            let reader = self.plan_reader(s, &vol, &mut made).await?;
            members.push((
                ExportMemberRow {
                    role: role.clone(),
                    snapshot_id: s.id,
                    reader_volume: Some(reader.id),
                    source_view: (s.volume_id, s.generation),
                    size: s.size,
                    chunk_size: vol.chunk_size,
                },
                reader,
            ));
        }
        // 256 random bits, as an API token's, under a prefix of its own.
        let random = coffer_crypto::new_token();
        let token = Zeroizing::new(format!(
            "{PULL_TOKEN_PREFIX}{}",
            &random[coffer_crypto::secret::TOKEN_PREFIX.len()..]
        ));
        let row = ExportRow {
            id,
            account_id: account,
            kind: kind.into(),
            source_id,
            token_hash: hash_token(&token),
            expires_at: now_u64() + u64::from(hours) * 3_600_000,
            created_by: caller.principal.id,
            created_at: coffer_meta::now(),
            revoked_at: None,
        };
        self.meta
            .create_export(&row, &members)
            .await
            .map_err(|e| match e {
                coffer_meta::MetaError::NotFound(what) => ServiceError::new(
                    ErrorCode::SnapshotNotFound,
                    format!("{what} is gone: it was deleted while the export was made"),
                ),
                other => other.into(),
            })?;
        made.disarm();
        for (_, s) in &snaps {
            self.audit_export(
                &row,
                s,
                "export.create",
                &format!("by {}", caller.principal.id),
            )
            .await?;
        }
        tracing::info!(export = %id, source = %source_id, by = %caller.principal.id, hours, "export made");
        let members: Vec<ExportMemberRow> = members.into_iter().map(|(m, _)| m).collect();
        let mut dto = self.export_dto(&row, &members).await?;
        dto.token = Some(token.to_string());
        Ok(dto)
    }

    /// One audit entry of an export's use of snapshot `s`'s data, under
    /// its key when that is a customer key (its owner sees that the data
    /// left, when, and by which export).
    async fn audit_export(
        &self,
        e: &ExportRow,
        s: &SnapshotRow,
        action: &str,
        detail: &str,
    ) -> Result<()> {
        let key = (s.encryption != EncryptionType::Platform).then_some(s.kek_id);
        self.audit_export_of(e, (s.id, key), action, detail).await
    }

    /// One audit entry of export `e`'s use of member `m` (its snapshot may
    /// be gone: the export still reads it).
    async fn audit_member(&self, e: &ExportRow, m: &ExportMemberRow, detail: &str) -> Result<()> {
        match self.meta.snapshot(m.snapshot_id).await? {
            Some(s) => self.audit_export(e, &s, "export.read", detail).await,
            None => {
                self.audit_export_of(e, (m.snapshot_id, None), "export.read", detail)
                    .await
            }
        }
    }

    async fn audit_export_of(
        &self,
        e: &ExportRow,
        (resource, key): (Id, Option<Id>),
        action: &str,
        detail: &str,
    ) -> Result<()> {
        self.vault
            .audit()
            .record(&AuditRecord {
                principal: e.id.to_string(),
                acting_for: e.created_by.to_string(),
                action: action.into(),
                key,
                key_version: None,
                resource: resource.to_string(),
                outcome: "allowed".into(),
                detail: format!("export {}: {detail}", e.id),
            })
            .await?;
        Ok(())
    }

    /// The export `id` if the caller may manage it (`snapshots/write` in
    /// its account); "not found" otherwise.
    async fn authorized_export(&self, caller: &Caller, id: &str) -> Result<ExportRow> {
        let eid = parse_id(id, Kind::Export)?;
        let missing = || ServiceError::not_found(ErrorCode::ExportNotFound, "export", eid);
        let e = self.meta.export(eid).await?.ok_or_else(missing)?;
        let target = coffer_iam::Target::new(self.account_chain(e.account_id).await?);
        match coffer_iam::authorize(&caller.subject, Action::SnapshotsWrite, &target) {
            coffer_iam::Decision::Allow(_) => Ok(e),
            coffer_iam::Decision::Deny(d) if d.visible => {
                Err(crate::access::forbidden(caller.principal.id, &d))
            }
            coffer_iam::Decision::Deny(_) => Err(missing()),
        }
    }

    /// One export, as its creator's account sees it (no token).
    pub async fn get_export(&self, caller: &Caller, id: &str) -> Result<Export> {
        let e = self.authorized_export(caller, id).await?;
        let members = self.meta.export_members(e.id).await?;
        self.export_dto(&e, &members).await
    }

    /// The exports of the caller's account, newest first (none unless
    /// the caller may manage them: `snapshots/write` there).
    pub async fn list_exports(&self, caller: &Caller) -> Result<Vec<Export>> {
        let account = caller.principal.account_id;
        let mut out = vec![];
        if self
            .check_scope(caller, Action::SnapshotsWrite, Scope::Id(account))
            .await
            .is_err()
        {
            return Ok(out);
        }
        for e in self.meta.exports_of(account).await? {
            let members = self.meta.export_members(e.id).await?;
            out.push(self.export_dto(&e, &members).await?);
        }
        Ok(out)
    }

    /// Revoke an export: its pull token reads nothing more (a running
    /// import of it fails at its next request) and its readers go.
    pub async fn revoke_export(&self, caller: &Caller, id: &str) -> Result<Export> {
        let e = self.authorized_export(caller, id).await?;
        let members = self.meta.export_members(e.id).await?;
        self.end_export(&e, &members).await?;
        tracing::info!(export = %e.id, by = %caller.principal.id, "export revoked");
        let e = self.meta.export(e.id).await?.unwrap_or(e);
        self.export_dto(&e, &members).await
    }

    async fn end_export(&self, e: &ExportRow, members: &[ExportMemberRow]) -> Result<()> {
        if self.meta.end_export(e.id).await? {
            let mut open = lock(&self.export_readers);
            for m in members {
                if let Some(r) = m.reader_volume {
                    open.remove(&r);
                }
            }
            self.gc_wake.notify_one();
        }
        Ok(())
    }

    /// End the exports that expired (their readers go); run by the GC.
    pub(crate) async fn end_expired_exports(&self) -> Result<()> {
        for id in self.meta.expired_exports(now_u64()).await? {
            if let Some(e) = self.meta.export(id).await? {
                let members = self.meta.export_members(id).await?;
                self.end_export(&e, &members).await?;
                tracing::info!(export = %id, "export expired");
            }
        }
        Ok(())
    }

    /// The export `id` if `token` is its pull token and it is active.
    async fn pulled(&self, id: &str, token: &str) -> Result<ExportRow> {
        let Ok(eid) = Id::parse_kind(id.trim(), Kind::Export) else {
            return Err(not_open(id));
        };
        let Some(e) = self.meta.export(eid).await? else {
            return Err(not_open(id));
        };
        // A token carries 256 random bits: comparing hashes leaks nothing
        // a forger could use.
        if !token.starts_with(PULL_TOKEN_PREFIX)
            || hash_token(token) != e.token_hash
            || e.revoked_at.is_some()
            || e.expires_at <= now_u64()
        {
            return Err(not_open(id));
        }
        Ok(e)
    }

    /// The member `role` of export `e`, and its reader volume (opened, or
    /// kept open from an earlier request).
    async fn pulled_member(
        &self,
        e: &ExportRow,
        role: &str,
    ) -> Result<(ExportMemberRow, Arc<Volume>)> {
        let m = self
            .meta
            .export_members(e.id)
            .await?
            .into_iter()
            .find(|m| m.role == role)
            .ok_or_else(|| {
                ServiceError::new(
                    ErrorCode::ExportNotFound,
                    format!("export {} has no member '{role}'", e.id),
                )
            })?;
        let Some(rv) = m.reader_volume else {
            return Err(not_open(&e.id.to_string()));
        };
        {
            // A reader volume has nothing to flush: one unused for a while
            // is only forgotten here (a request still reading it holds
            // its own handle, and the volume goes with the last).
            let mut open = lock(&self.export_readers);
            let now = Instant::now();
            open.retain(|_, (_, t)| now.duration_since(*t) <= READER_IDLE);
            if let Some((v, t)) = open.get_mut(&rv) {
                *t = now;
                return Ok((m, v.clone()));
            }
        }
        let row = self.meta.volume(rv).await?;
        let v = Volume::open(
            self.meta.clone(),
            self.store_of(&row.region)?,
            rv,
            Arc::new(VaultDeks(self.vault.clone())),
            self.config.volume.clone(),
            None,
        )
        .await?;
        let v = lock(&self.export_readers)
            .entry(rv)
            .or_insert((v, Instant::now()))
            .0
            .clone();
        // Ended meanwhile (revoked, expired): read nothing more.
        if self
            .meta
            .export(e.id)
            .await?
            .is_none_or(|x| x.revoked_at.is_some())
        {
            lock(&self.export_readers).remove(&rv);
            return Err(not_open(&e.id.to_string()));
        }
        // A read session starts (its reader opened here): audited, so even
        // a pull token used for data alone leaves a trace.
        self.audit_member(e, &m, "its data read by its pull token's holder")
            .await?;
        Ok((m, v))
    }

    /// The export, as its pull token's holder sees it. Audited: a receiver
    /// describes it once per run of its copy job.
    pub async fn pull_describe(&self, id: &str, token: &str) -> Result<Export> {
        let e = self.pulled(id, token).await?;
        let members = self.meta.export_members(e.id).await?;
        for m in &members {
            self.audit_member(&e, m, "described to its pull token's holder")
                .await?;
        }
        self.export_dto(&e, &members).await
    }

    fn check_range(m: &ExportMemberRow, offset: u64, length: u64, max: u64) -> Result<()> {
        if length == 0 || length > max || offset.checked_add(length).is_none_or(|end| end > m.size)
        {
            return Err(ServiceError::new(
                ErrorCode::InvalidRange,
                format!(
                    "the range {offset}+{length} is not within the {} bytes of member '{}', or is over {max} bytes",
                    m.size, m.role
                ),
            ));
        }
        Ok(())
    }

    /// The runs of data and holes of `offset..offset + length` of member
    /// `role` (at most 1 GiB).
    pub async fn pull_map(
        &self,
        id: &str,
        token: &str,
        role: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<ExportRun>> {
        let e = self.pulled(id, token).await?;
        let (m, v) = self.pulled_member(&e, role).await?;
        Self::check_range(&m, offset, length, MAX_MAP)?;
        Ok(v.allocation(offset, length)?
            .into_iter()
            .map(|(length, hole)| ExportRun { length, hole })
            .collect())
    }

    /// The plaintext of `offset..offset + length` of member `role` (at
    /// most 8 MiB).
    pub async fn pull_data(
        &self,
        id: &str,
        token: &str,
        role: &str,
        offset: u64,
        length: u64,
    ) -> Result<Bytes> {
        let e = self.pulled(id, token).await?;
        let (m, v) = self.pulled_member(&e, role).await?;
        Self::check_range(&m, offset, length, crate::source::WINDOW)?;
        Ok(v.read(offset, length).await?)
    }

    /// The chunks of member `role` in `from..to` changed since generation
    /// `after` of its lineage.
    pub async fn pull_changed(
        &self,
        id: &str,
        token: &str,
        role: &str,
        after: u64,
        (from, to): (u64, u64),
    ) -> Result<ExportChanged> {
        let e = self.pulled(id, token).await?;
        let (m, _) = self.pulled_member(&e, role).await?;
        let (volume, upto) = m.source_view;
        if after >= upto || from >= to || to - from > MAX_CHANGED {
            return Err(ServiceError::new(
                ErrorCode::InvalidRange,
                format!(
                    "changed chunks: `after` must be below the member's generation {upto}, and `from..to` a range of 1 to {MAX_CHANGED} chunks"
                ),
            ));
        }
        Ok(ExportChanged {
            chunks: self
                .meta
                .changed_chunks(volume, after, upto, from, to)
                .await?,
        })
    }

    /// The sender's hash of `offset..offset + length` of member `role`
    /// (see [`crate::source`]): whole, or of its chunks changed since
    /// `changed_after`; `offset` a multiple of 8 MiB, `length` at most
    /// 1 GiB. Audited.
    pub async fn pull_hash(
        &self,
        id: &str,
        token: &str,
        role: &str,
        changed_after: Option<u64>,
        (offset, length): (u64, u64),
    ) -> Result<ExportHash> {
        let e = self.pulled(id, token).await?;
        let (m, v) = self.pulled_member(&e, role).await?;
        Self::check_range(&m, offset, length, crate::source::HASH_RANGE)?;
        if !offset.is_multiple_of(crate::source::WINDOW) {
            return Err(ServiceError::new(
                ErrorCode::InvalidRange,
                format!("a hash starts at a multiple of 8 MiB, not at {offset}"),
            ));
        }
        let src = LocalSource {
            vol: v.clone(),
            meta: self.meta.clone(),
            view: Some(m.source_view),
        };
        let range = (offset, offset + length);
        let hash = match changed_after {
            Some(after) if after < m.source_view.1 => {
                hash_changed(&src, &src, (v.chunk_size(), m.size), after, range).await?
            }
            Some(after) => {
                return Err(ServiceError::new(
                    ErrorCode::InvalidRange,
                    format!(
                        "changed_after {after} is not below the member's generation {}",
                        m.source_view.1
                    ),
                ));
            }
            None => hash_view(&src, &src, range).await?,
        };
        if offset == 0 {
            self.audit_member(&e, &m, "its data hashed for a receiver's verification")
                .await?;
        }
        Ok(ExportHash { hash })
    }

    /// Import a snapshot or image another deployment exported: one copy
    /// job per snapshot, reading the export and writing under this
    /// deployment's keys (see the module's doc).
    pub async fn create_import(&self, caller: &Caller, req: CreateImport) -> Result<Import> {
        let name = check_name(&req.name)?;
        let tags = crate::tags::parse_tags(&req.tags)?;
        let account = match &req.account_id {
            Some(a) => parse_id(a, Kind::Account)?,
            None => caller.principal.account_id,
        };
        let region = self.copy_region(self.first_region(), req.target_region.as_deref())?;
        let endpoint = req.endpoint.trim().trim_end_matches('/').to_string();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(ServiceError::new(
                ErrorCode::InvalidBody,
                format!(
                    "endpoint '{endpoint}' is not an http(s) URL, e.g. https://coffer.site-a:7070"
                ),
            ));
        }
        parse_id(&req.export_id, Kind::Export)?;
        let at = RemoteExport {
            endpoint: endpoint.clone(),
            export_id: req.export_id.trim().to_string(),
            token: Zeroizing::new(req.token.trim().to_string()),
            ca_pem: req.ca_pem.clone().filter(|c| !c.trim().is_empty()),
        };
        self.check_scope(caller, Action::SnapshotsWrite, Scope::Id(account))
            .await?;
        let remotes = self.remotes.get().ok_or_else(crate::source::no_remotes)?;
        let export = remotes.describe(&at).await?;
        let image_kind = match export.kind.as_str() {
            "snapshot" => None,
            "image" => {
                self.check_scope(caller, Action::ImagesWrite, Scope::Id(account))
                    .await?;
                Some(Kind::Image)
            }
            other => {
                return Err(ServiceError::new(
                    ErrorCode::RemoteUnavailable,
                    format!(
                        "the sender describes an export of kind '{other}': this deployment imports snapshots and images"
                    ),
                ));
            }
        };
        self.check_name_free(image_kind.unwrap_or(Kind::Snapshot), account, name.as_str())
            .await?;
        if export.members.is_empty() || export.members.len() > MAX_IMAGE_SNAPSHOTS {
            return Err(ServiceError::new(
                ErrorCode::RemoteUnavailable,
                format!("the sender's export has {} snapshots", export.members.len()),
            ));
        }
        let source_account = parse_id(&export.account_id, Kind::Account)?;
        let expires_at_ms = humantime::parse_rfc3339(&export.expires_at)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let image = image_kind.map(|_| ImageRow {
            id: Id::random(Kind::Image),
            account_id: account,
            name: name.to_string(),
            region: region.clone(),
            description: format!("imported from {endpoint}"),
            created_by: CreationMethod::Copy,
            origin: Origin {
                account: Some(source_account),
                region: Some(endpoint.clone()),
                id: Id::parse_kind(&export.source_id, Kind::Image).ok(),
            },
            created_at: coffer_meta::now(),
            state: ImageState::Pending,
        });
        let mut made = MadeKeys::new(self.meta.clone());
        let mut jobs: Vec<(JobRow, Option<VolumeRow>, VolumeRow)> = vec![];
        for m in &export.members {
            let size_ok = m.size > 0 && m.size <= MAX_DISK;
            let cs_ok =
                m.chunk_size.is_power_of_two() && (4096..=(16 << 20)).contains(&m.chunk_size);
            if !size_ok || !cs_ok {
                return Err(ServiceError::new(
                    ErrorCode::RemoteUnavailable,
                    format!(
                        "the sender's export member '{}' has size {} and chunk size {}, which this deployment does not take",
                        m.role, m.size, m.chunk_size
                    ),
                ));
            }
            let source_id = parse_id(&m.snapshot_id, Kind::Snapshot)?;
            let target_id = Id::random(Kind::Snapshot);
            let keys = self
                .plan_target_keys(
                    caller,
                    account,
                    &region,
                    req.encryption_set_id.as_deref(),
                    target_id,
                    &mut made,
                )
                .await?;
            // The sender's lineage, told apart from this deployment's own
            // and from other senders' by the sender's deployment id.
            let lineage = format!("{}/{}", export.deployment_id, m.lineage);
            let base = self
                .copy_base_for(
                    account,
                    &region,
                    (&lineage, m.generation),
                    (keys.under, m.chunk_size),
                    false,
                )
                .await?;
            let target = VolumeRow {
                id: Id::random(Kind::Volume),
                dek_id: keys.dek_id,
                dek2_id: keys.dek2_id,
                chunk_size: m.chunk_size,
                size: m.size,
                parent: base.as_ref().map(|(b, _)| (b.volume_id, b.generation)),
                head_generation: 0,
                live: true,
                region: region.clone(),
            };
            let job_id = Id::random(Kind::Job);
            let mut remote = RemoteRecord {
                endpoint: endpoint.clone(),
                export_id: at.export_id.clone(),
                role: m.role.clone(),
                ca_pem: at.ca_pem.clone(),
                token: String::new(),
                expires_at_ms,
            };
            let sealed = self
                .vault
                .seal_secret(&region, at.token.as_bytes(), &remote.context(job_id))
                .await?;
            remote.token = base64::engine::general_purpose::STANDARD.encode(sealed);
            let now = coffer_meta::now();
            let job = JobRow {
                id: job_id,
                account_id: account,
                kind: if image.is_some() {
                    "image-import"
                } else {
                    "snapshot-import"
                }
                .into(),
                state: "running".into(),
                source_id,
                source_account,
                source_region: endpoint.clone(),
                target_region: region.clone(),
                target_id,
                name: match &image {
                    Some(i) => format!("{}.{}", i.id, m.role),
                    None => name.to_string(),
                },
                reader_volume: None,
                target_volume: Some(target.id),
                bytes_total: m.size,
                bytes_done: 0,
                message: Some("queued".into()),
                tags: if image.is_some() {
                    vec![]
                } else {
                    tags.clone()
                },
                created_by: caller.principal.id,
                created_at: now.clone(),
                updated_at: now,
                finished_at: None,
                node_id: None,
                source_hash: None,
                target_hash: None,
                image: image.as_ref().map(|i| (i.id, m.role.clone())),
                source_view: Some((lineage, m.generation)),
                base: base.map(|(b, generation)| (b.id, generation)),
                bytes_copied: 0,
                remote: Some(serde_json::to_string(&remote).map_err(|e| {
                    ServiceError::internal(format!("cannot record an import: {e}"))
                })?),
            };
            jobs.push((job, None, target));
        }
        made.disarm();
        let created = match &image {
            Some(i) => self.meta.create_image_copy(i, &jobs, &tags).await,
            None => {
                let (job, _, target) = &jobs[0];
                self.meta.create_copy_job(job, None, target).await
            }
        };
        if let Err(e) = created {
            self.forget_job_keys(&jobs).await;
            return Err(match e {
                coffer_meta::MetaError::NameTaken { .. } => ServiceError::name_taken(
                    image_kind.unwrap_or(Kind::Snapshot),
                    account,
                    name.as_str(),
                ),
                other => other.into(),
            });
        }
        self.jobs_wake.notify_one();
        tracing::info!(export = %at.export_id, from = %endpoint, account = %account, jobs = jobs.len(), "import started");
        Ok(Import {
            kind: export.kind.clone(),
            target_id: match &image {
                Some(i) => i.id.to_string(),
                None => jobs[0].0.target_id.to_string(),
            },
            jobs: jobs.iter().map(|(j, _, _)| job_dto(j)).collect(),
        })
    }

    /// Where import job `job` reads, its pull token unsealed.
    pub(crate) async fn open_remote(
        &self,
        job: Id,
        region: &str,
        remote: &str,
    ) -> Result<(RemoteExport, String)> {
        let r: RemoteRecord = serde_json::from_str(remote).map_err(|e| {
            ServiceError::internal(format!("job {job}: unreadable import record: {e}"))
        })?;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&r.token)
            .map_err(|e| {
                ServiceError::internal(format!("job {job}: unreadable sealed token: {e}"))
            })?;
        let token = self
            .vault
            .open_secret(region, &sealed, &r.context(job))
            .await?;
        let token = String::from_utf8(token.to_vec()).map_err(|_| {
            ServiceError::internal(format!("job {job}: the sealed token is not text"))
        })?;
        Ok((
            RemoteExport {
                endpoint: r.endpoint,
                export_id: r.export_id,
                token: Zeroizing::new(token),
                ca_pem: r.ca_pem,
            },
            r.role,
        ))
    }
}
