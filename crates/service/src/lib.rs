//! The service layer: Coffer's rules for disks, snapshots and attachments,
//! over the lower layers (metadata, object store, key vault, block engine).
//! The HTTP API and the NBD server call into it; it knows nothing of HTTP.
//!
//! It owns:
//! - authentication of API tokens and the visibility rule (a caller sees the
//!   resources of its own account; a deployment admin sees all; anything
//!   else is "not found", never "forbidden", so existence does not leak);
//! - validation of every input (names, sizes, zones, ids) with messages that
//!   say what to do next;
//! - the registry of open volumes (one per attached disk) and the NBD export
//!   resolver that maps a secret export token to one of them;
//! - this node's membership of the deployment: its lease, renewed in the
//!   background, and which attachments it holds (several nodes share one
//!   metadata store and one object store; a disk is open on one node at a
//!   time, and a request about a disk another node holds is answered by
//!   that node: see [`ServiceError::elsewhere`]);
//! - start-up recovery (finishing queued deletions, sweeping orphaned
//!   objects), the background garbage collector and orphan sweep.

mod error;
mod export;
mod fsck;
mod iam;
pub mod model;

use std::collections::HashMap;
use std::sync::Arc;

use coffer_crypto::{hash_token, new_token};
use coffer_keyvault::KeyVault;
use coffer_meta::{
    AttachmentRow, DetachIf, DiskRow, Meta, MetaError, NodeRow, PrincipalRow, SnapshotBy,
    SnapshotRow, VolumeRow, now_ms,
};
use coffer_store::{ObjectStore, chunk_key, parse_chunk_key};
use coffer_types::size::{MIB, TIB};
use coffer_types::{ByteSize, Id, Kind, Name, Regions};
use coffer_volume::{Volume, VolumeConfig};
use tokio::sync::{Mutex, Notify, RwLock};

use coffer_iam::{Action, Scope, Target};
pub use error::{ErrorKind, Result, ServiceError};
pub use export::{DiskDevice, ExportResolverImpl};
pub use iam::MAX_FOLDER_DEPTH;
use model::{Attachment, CreateDisk, CreateSnapshot, Disk, Encryption, Region, Snapshot, WhoAmI};

/// Smallest disk.
pub const MIN_DISK: u64 = MIB;
/// Largest disk.
pub const MAX_DISK: u64 = 64 * TIB;

/// How the service is put together.
#[derive(Clone)]
pub struct ServiceConfig {
    /// Regions and zones of the deployment.
    pub regions: Regions,
    /// Chunk size of new lineages.
    pub chunk_size: u32,
    /// Tuning of open volumes.
    pub volume: VolumeConfig,
    /// How long a node's lease lasts; it renews every quarter of this.
    /// Another node may take over a dead node's disks this long after its
    /// last renewal.
    pub lease_ttl: std::time::Duration,
    /// How often the orphan sweep runs after the one at start.
    pub sweep_interval: std::time::Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            regions: Regions::default(),
            chunk_size: coffer_volume::DEFAULT_CHUNK_SIZE,
            volume: VolumeConfig::default(),
            lease_ttl: std::time::Duration::from_secs(15),
            sweep_interval: std::time::Duration::from_secs(600),
        }
    }
}

/// Who is calling: the authenticated principal and, loaded with it, every
/// role assignment it holds (the policy engine's subject).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated principal.
    pub principal: PrincipalRow,
    /// The principal as the policy engine sees it.
    pub subject: coffer_iam::Subject,
    /// The token this request authenticated with.
    pub token_id: Id,
    /// That token's expiry (RFC 3339), if it has one: tokens a caller mints
    /// for itself never outlive it.
    pub token_expires_at: Option<String>,
}

/// The service.
pub struct Service {
    meta: Meta,
    store: Arc<dyn ObjectStore>,
    vault: KeyVault,
    config: ServiceConfig,
    /// Open volumes by disk id; the lock also serialises opening a volume
    /// with snapshotting a detached disk, so an engine never runs on a stale
    /// head generation.
    open: Mutex<HashMap<Id, Arc<Volume>>>,
    /// Disks being detached here: their volume is closing, so no export
    /// may reopen them (guarded by `open`'s lock).
    closing: std::sync::Mutex<std::collections::HashSet<Id>>,
    /// This node's current run, once it joined the deployment.
    node: RwLock<Option<NodeRow>>,
    gc_wake: Arc<Notify>,
}

/// Who holds an attachment, as seen from this node.
enum HeldBy {
    /// This node (its current run's id).
    Me(Id),
    /// Another live node.
    Other(NodeRow),
    /// Nobody live: any node may take it.
    Nobody,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("store", &self.store.describe())
            .finish_non_exhaustive()
    }
}

fn disk_dto(d: &DiskRow, attached: bool) -> Disk {
    Disk {
        id: d.id.to_string(),
        name: d.name.clone(),
        account_id: d.account_id.to_string(),
        region: d.region.clone(),
        zone: d.zone.clone(),
        size_bytes: d.size,
        size: ByteSize(d.size).to_string(),
        state: if attached { "attached" } else { "available" }.into(),
        encryption: Encryption {
            kind: d.encryption.clone(),
            key_id: d.kek_id.to_string(),
        },
        source_snapshot_id: d.source_snapshot_id.map(|s| s.to_string()),
        created_at: d.created_at.clone(),
    }
}

fn snap_dto(s: &SnapshotRow) -> Snapshot {
    Snapshot {
        id: s.id.to_string(),
        name: s.name.clone(),
        account_id: s.account_id.to_string(),
        region: s.region.clone(),
        source_disk_id: s.source_disk_id.map(|d| d.to_string()),
        size_bytes: s.size,
        size: ByteSize(s.size).to_string(),
        state: "completed".into(),
        encryption: Encryption {
            kind: s.encryption.clone(),
            key_id: s.kek_id.to_string(),
        },
        created_at: s.created_at.clone(),
    }
}

fn parse_id(s: &str, kind: Kind) -> Result<Id> {
    Id::parse_kind(s.trim(), kind).map_err(|e| ServiceError::invalid("InvalidId", e.to_string()))
}

fn check_name(s: &str) -> Result<Name> {
    Name::new(s).map_err(|e| ServiceError::invalid("InvalidName", e.to_string()))
}

fn check_size(size: u64) -> Result<()> {
    if size < MIN_DISK {
        return Err(ServiceError::invalid(
            "InvalidSize",
            format!("size {} is too small: the minimum is 1MiB", ByteSize(size)),
        ));
    }
    if size > MAX_DISK {
        return Err(ServiceError::invalid(
            "InvalidSize",
            format!("size {} is too large: the maximum is 64TiB", ByteSize(size)),
        ));
    }
    if !size.is_multiple_of(MIB) {
        return Err(ServiceError::invalid(
            "InvalidSize",
            format!("size {size} bytes is not a whole number of MiB: use e.g. 512MiB or 10GiB"),
        ));
    }
    Ok(())
}

impl Service {
    /// Assemble the service over its lower layers.
    pub fn new(
        meta: Meta,
        store: Arc<dyn ObjectStore>,
        vault: KeyVault,
        mut config: ServiceConfig,
    ) -> Arc<Self> {
        let gc_wake = Arc::new(Notify::new());
        config.volume.gc_notify = Some(gc_wake.clone());
        Arc::new(Self {
            meta,
            store,
            vault,
            config,
            open: Mutex::new(HashMap::new()),
            closing: std::sync::Mutex::new(std::collections::HashSet::new()),
            node: RwLock::new(None),
            gc_wake,
        })
    }

    /// The metadata store (for admin tools and tests).
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Join the deployment as node `name` (a lasting name, e.g. kept in the
    /// data dir), answering its API at `api_url` and NBD at `nbd_endpoint`
    /// (`host:port`, named in attach URIs). Earlier runs of the same node
    /// are dead: their attachments are released at once. Call before
    /// [`Service::recover`]; then [`Service::spawn_lease`] keeps it alive.
    pub async fn join(&self, name: &str, api_url: &str, nbd_endpoint: &str) -> Result<NodeRow> {
        let now = now_ms();
        let row = NodeRow {
            id: Id::random(Kind::Node),
            name: name.to_string(),
            api_url: api_url.to_string(),
            nbd_endpoint: nbd_endpoint.to_string(),
            started_at: coffer_meta::now(),
            lease_expires_ms: now + self.lease_ms(),
        };
        let released = self.meta.register_node(&row).await?;
        if released > 0 {
            tracing::info!(
                attachments = released,
                "released the attachments of this node's previous run"
            );
        }
        tracing::info!(node = %row.id, name, "joined the deployment");
        *self.node.write().await = Some(row.clone());
        Ok(row)
    }

    /// This node's current run, if it joined.
    pub async fn node(&self) -> Option<NodeRow> {
        self.node.read().await.clone()
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(i64::MAX)
    }

    async fn my_node_id(&self) -> Option<Id> {
        self.node.read().await.as_ref().map(|n| n.id)
    }

    /// Who holds `att` now.
    async fn held_by(&self, att: &AttachmentRow) -> Result<HeldBy> {
        let me = self.my_node_id().await;
        match att.node_id {
            Some(n) if Some(n) == me => Ok(HeldBy::Me(n)),
            Some(n) => match self.meta.node(n).await? {
                Some(row) if row.lease_expires_ms > now_ms() => Ok(HeldBy::Other(row)),
                _ => Ok(HeldBy::Nobody),
            },
            None => Ok(HeldBy::Nobody),
        }
    }

    /// Renew this node's lease every quarter of its length, and reap nodes
    /// whose lease passed. If the lease is lost (this process was paused or
    /// cut off for longer than the lease, and another node may have taken
    /// its disks), every open disk here is fenced at once and the node
    /// joins again as a new run.
    pub fn spawn_lease(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let tick = me.config.lease_ttl / 4;
            let mut last_ok = std::time::Instant::now();
            loop {
                tokio::time::sleep(tick).await;
                let Some(node) = me.node().await else {
                    continue;
                };
                let renew = tokio::time::timeout(
                    tick,
                    me.meta.renew_node_lease(node.id, now_ms() + me.lease_ms()),
                )
                .await;
                match renew {
                    Ok(Ok(true)) => last_ok = std::time::Instant::now(),
                    Ok(Ok(false)) => {
                        tracing::error!(node = %node.id, "this node was reaped (its lease passed): fencing its open disks and joining again");
                        me.fence_all().await;
                        if let Err(e) = me.join(&node.name, &node.api_url, &node.nbd_endpoint).await
                        {
                            tracing::error!(error = %e, "cannot join again; will retry");
                        }
                        last_ok = std::time::Instant::now();
                    }
                    failed => {
                        match failed {
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "cannot renew this node's lease");
                            }
                            _ => tracing::warn!("renewing this node's lease timed out"),
                        }
                        if last_ok.elapsed() > me.config.lease_ttl / 2 {
                            // Others may soon take these disks over: stop
                            // writing them before they can.
                            me.fence_all().await;
                        }
                    }
                }
                match me.meta.fence_expired_nodes(now_ms(), Some(node.id)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(
                        attachments = n,
                        "released the attachments of nodes whose lease passed"
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot reap dead nodes"),
                }
            }
        })
    }

    /// Close every open disk here without writing back (fencing).
    async fn fence_all(&self) {
        let vols: Vec<Arc<Volume>> = self.open.lock().await.drain().map(|(_, v)| v).collect();
        for v in vols {
            v.fence();
        }
    }

    /// On first start (no principal yet), create the admin principal in a
    /// first tenant and account, and return its token (shown once, never
    /// stored in plaintext by Coffer). `None` if already bootstrapped.
    pub async fn bootstrap(&self) -> Result<Option<zeroize::Zeroizing<String>>> {
        if self.meta.principal_count().await? > 0 {
            return Ok(None);
        }
        let p = self
            .meta
            .create_tenant_with_principal("default", "default", "admin", true)
            .await?;
        let token = new_token();
        self.meta
            .insert_token(p.id, &hash_token(&token), "bootstrap", None)
            .await?;
        for r in self.config.regions.all() {
            self.vault.platform_key(&r.name).await?;
        }
        Ok(Some(token))
    }

    /// Create a principal in a new tenant and account of its own, Owner of
    /// that tenant (and of the deployment if `is_admin`), with a token.
    /// For tests and tools.
    pub async fn create_principal_with_token(
        &self,
        tenant: &str,
        name: &str,
        is_admin: bool,
    ) -> Result<(PrincipalRow, zeroize::Zeroizing<String>)> {
        let p = self
            .meta
            .create_tenant_with_principal(tenant, tenant, name, is_admin)
            .await?;
        let token = new_token();
        self.meta
            .insert_token(p.id, &hash_token(&token), "", None)
            .await?;
        Ok((p, token))
    }

    /// The caller a bearer token belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<Caller> {
        let unauth = || {
            ServiceError::new(
                ErrorKind::Unauthenticated,
                "Unauthenticated",
                "missing, unknown, expired or revoked token: pass a valid token (coffer --profile, COFFER_TOKEN or Authorization: Bearer)",
            )
        };
        if token.is_empty() || token.len() > 256 {
            return Err(unauth());
        }
        let (p, token_id, token_expires_at) = self
            .meta
            .principal_by_token_hash(&hash_token(token))
            .await?
            .ok_or_else(unauth)?;
        let subject = self.subject_of(&p).await?;
        Ok(Caller {
            principal: p,
            subject,
            token_id,
            token_expires_at,
        })
    }

    /// Who the caller is: principal, home account and tenant, roles.
    pub async fn whoami(&self, caller: &Caller) -> Result<WhoAmI> {
        let p = &caller.principal;
        let account = self.meta.account(p.account_id).await?;
        let tenant = self.meta.tenant(p.tenant_id).await?;
        let assignments = self.meta.role_assignments_of(p.id).await?;
        Ok(WhoAmI {
            principal_id: p.id.to_string(),
            name: p.name.clone(),
            account_id: p.account_id.to_string(),
            account_name: account.map(|a| a.name).unwrap_or_default(),
            tenant_id: p.tenant_id.to_string(),
            tenant_name: tenant.map(|t| t.name).unwrap_or_default(),
            kind: p.kind.clone(),
            is_admin: caller
                .subject
                .grants
                .iter()
                .any(|g| g.scope == Scope::Deployment && g.role == coffer_iam::Role::Owner),
            role_assignments: assignments.iter().map(iam::assignment_dto).collect(),
        })
    }

    /// The deployment's regions.
    pub fn regions(&self) -> Vec<Region> {
        self.config
            .regions
            .all()
            .iter()
            .map(|r| Region {
                name: r.name.clone(),
                zones: r.zones.clone(),
            })
            .collect()
    }

    /// The disk `id` if the caller may do `action` on it (404 if missing or
    /// hidden from the caller, 403 if visible but not allowed).
    async fn authorized_disk(&self, caller: &Caller, id: &str, action: Action) -> Result<DiskRow> {
        let id = parse_id(id, Kind::Disk)?;
        let d = self
            .meta
            .disk(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("DiskNotFound", "disk", id))?;
        let target = self.resource_target(d.id, d.account_id).await?;
        self.check(caller, action, &target)?;
        Ok(d)
    }

    /// The snapshot `id` if the caller may do `action` on it.
    async fn authorized_snapshot(
        &self,
        caller: &Caller,
        id: &str,
        action: Action,
    ) -> Result<SnapshotRow> {
        let id = parse_id(id, Kind::Snapshot)?;
        let s = self
            .meta
            .snapshot(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("SnapshotNotFound", "snapshot", id))?;
        let target = self.resource_target(s.id, s.account_id).await?;
        self.check(caller, action, &target)?;
        Ok(s)
    }

    async fn is_attached(&self, disk: Id) -> Result<bool> {
        Ok(self.meta.attachment_of_disk(disk).await?.is_some())
    }

    /// Create a disk, empty or from a snapshot.
    pub async fn create_disk(&self, caller: &Caller, req: CreateDisk) -> Result<Disk> {
        let name = check_name(&req.name)?;
        let account = match &req.account_id {
            Some(a) => parse_id(a, Kind::Account)?,
            None => caller.principal.account_id,
        };
        self.check_scope(caller, Action::DisksWrite, Scope::Id(account))
            .await?;
        let region = self
            .config
            .regions
            .region_of_zone(&req.zone)
            .map_err(|e| ServiceError::invalid("UnknownZone", e.to_string()))?
            .to_string();
        let source = match &req.source_snapshot_id {
            Some(s) => Some(
                self.authorized_snapshot(caller, s, Action::SnapshotsRead)
                    .await?,
            ),
            None => None,
        };
        let size = match (&req.size, &source) {
            (Some(s), _) => s.bytes(),
            (None, Some(snap)) => snap.size,
            (None, None) => {
                return Err(ServiceError::invalid(
                    "MissingSize",
                    "an empty disk needs a size, e.g. --size 10GiB (or give --from-snapshot)",
                ));
            }
        };
        check_size(size)?;
        let id = Id::random(Kind::Disk);
        let now = coffer_meta::now();
        let (volume, kek_id, encryption) = match &source {
            Some(snap) => {
                if snap.region != region {
                    return Err(ServiceError::new(
                        ErrorKind::Unprocessable,
                        "RegionMismatch",
                        format!(
                            "snapshot {} is in region '{}' but zone '{}' is in region '{region}': copy the snapshot to that region first",
                            snap.id, snap.region, req.zone
                        ),
                    ));
                }
                if size < snap.size {
                    return Err(ServiceError::invalid(
                        "InvalidSize",
                        format!(
                            "size {} is smaller than the snapshot's {}: a disk from a snapshot is at least as large",
                            ByteSize(size),
                            ByteSize(snap.size)
                        ),
                    ));
                }
                let parent = self.meta.volume(snap.volume_id).await?;
                let vol = VolumeRow {
                    id: Id::random(Kind::Volume),
                    dek_id: parent.dek_id,
                    chunk_size: parent.chunk_size,
                    size,
                    parent: Some((snap.volume_id, snap.generation)),
                    head_generation: 0,
                    live: true,
                };
                (vol, snap.kek_id, snap.encryption.clone())
            }
            None => {
                let kek = self.vault.platform_key(&region).await?;
                let (dek_id, _dek) = self.vault.new_dek(&kek).await?;
                let vol = VolumeRow {
                    id: Id::random(Kind::Volume),
                    dek_id,
                    chunk_size: self.config.chunk_size,
                    size,
                    parent: None,
                    head_generation: 0,
                    live: true,
                };
                (vol, kek.id, "platform".to_string())
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
        };
        match &source {
            Some(snap) => self
                .meta
                .create_disk_from_snapshot(&row, &volume, snap.id)
                .await
                .map_err(|e| match e {
                    MetaError::NotFound(_) => {
                        ServiceError::not_found("SnapshotNotFound", "snapshot", snap.id)
                    }
                    other => other.into(),
                })?,
            None => self.meta.create_disk(&row, &volume).await?,
        }
        tracing::info!(disk = %id, size, zone = %row.zone, "disk created");
        Ok(disk_dto(&row, false))
    }

    /// Disks the caller may read, in every account.
    pub async fn list_disks(&self, caller: &Caller) -> Result<Vec<Disk>> {
        let r = self.readable(caller, Action::DisksRead).await?;
        let mut rows = if r.all {
            self.meta.list_disks(None).await?
        } else {
            let mut rows = vec![];
            for a in &r.accounts {
                rows.extend(self.meta.list_disks(Some(*a)).await?);
            }
            for id in r.resources.iter().filter(|i| i.kind() == Kind::Disk) {
                if let Some(d) = self.meta.disk(*id).await?
                    && !r.accounts.contains(&d.account_id)
                {
                    rows.push(d);
                }
            }
            rows.sort_by(|a, b| {
                (&a.created_at, a.id.to_string()).cmp(&(&b.created_at, b.id.to_string()))
            });
            rows
        };
        rows.dedup_by_key(|d| d.id);
        let mut out = Vec::with_capacity(rows.len());
        for d in rows {
            let attached = self.is_attached(d.id).await?;
            out.push(disk_dto(&d, attached));
        }
        Ok(out)
    }

    /// One disk.
    pub async fn get_disk(&self, caller: &Caller, id: &str) -> Result<Disk> {
        let d = self.authorized_disk(caller, id, Action::DisksRead).await?;
        let attached = self.is_attached(d.id).await?;
        Ok(disk_dto(&d, attached))
    }

    /// Delete a detached disk. Its snapshots, and disks made from them, stay.
    pub async fn delete_disk(&self, caller: &Caller, id: &str) -> Result<Disk> {
        let d = self
            .authorized_disk(caller, id, Action::DisksDelete)
            .await?;
        if self.is_attached(d.id).await? {
            return Err(ServiceError::conflict(
                "DiskAttached",
                format!(
                    "disk {} is attached: run `coffer disk detach {}` first",
                    d.id, d.id
                ),
            ));
        }
        self.meta.delete_disk(d.id).await?;
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
            return Err(ServiceError::invalid(
                "ShrinkNotAllowed",
                format!(
                    "disk {} is {}; disks only grow (shrinking would destroy data). To get a smaller disk, create one and copy what you need",
                    d.id,
                    ByteSize(d.size)
                ),
            ));
        }
        if self.is_attached(d.id).await? {
            return Err(ServiceError::conflict(
                "DiskAttached",
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

    /// Attach a disk read-write: returns the NBD URI (this node's NBD
    /// listener) with a fresh secret export token. One attachment per disk
    /// at a time; an attachment whose node died (its lease passed) is
    /// replaced, and its old token stops working.
    pub async fn attach_disk(&self, caller: &Caller, id: &str) -> Result<Attachment> {
        let d = self
            .authorized_disk(caller, id, Action::DisksAttach)
            .await?;
        let node = self.node().await.ok_or_else(|| {
            ServiceError::new(
                ErrorKind::Unavailable,
                "NbdUnavailable",
                "this server has no NBD listener",
            )
        })?;
        let mut replace = None;
        if let Some(a) = self.meta.attachment_of_disk(d.id).await? {
            match self.held_by(&a).await? {
                HeldBy::Nobody => replace = Some(a.id),
                held => {
                    let on = match held {
                        HeldBy::Other(n) => format!(" on node {} ({})", n.name, n.nbd_endpoint),
                        _ => String::new(),
                    };
                    return Err(ServiceError::conflict(
                        "DiskAttached",
                        format!(
                            "disk {} is already attached{on} ({} since {}): a disk has one read-write attachment at a time; run `coffer disk detach {}` first",
                            d.id, a.id, a.created_at, d.id
                        ),
                    ));
                }
            }
        }
        let token = new_token();
        let row = AttachmentRow {
            id: Id::random(Kind::Attachment),
            disk_id: d.id,
            token_hash: hash_token(&token),
            principal_id: caller.principal.id,
            mode: "rw".into(),
            created_at: coffer_meta::now(),
            node_id: Some(node.id),
            hold_id: None,
        };
        self.meta
            .insert_attachment(&row, replace, now_ms())
            .await
            .map_err(|e| match e {
                coffer_meta::MetaError::Conflict(_) => ServiceError::conflict(
                    "DiskAttached",
                    format!("disk {} is already attached", d.id),
                ),
                other => other.into(),
            })?;
        if let Some(old) = replace {
            tracing::warn!(disk = %d.id, old = %old, "took over the attachment of a node whose lease passed");
        }
        tracing::info!(disk = %d.id, attachment = %row.id, "disk attached");
        Ok(Attachment {
            id: row.id.to_string(),
            disk_id: d.id.to_string(),
            uri: Some(format!("nbd://{}/{}", node.nbd_endpoint, token.as_str())),
            mode: row.mode,
            created_at: row.created_at,
        })
    }

    /// Detach a disk: flush it, close its connections, revoke its token. A
    /// disk held by another live node is detached by that node (the API
    /// forwards the request); one whose node died is simply released.
    pub async fn detach_disk(&self, caller: &Caller, id: &str) -> Result<Disk> {
        let d = self
            .authorized_disk(caller, id, Action::DisksAttach)
            .await?;
        let Some(att) = self.meta.attachment_of_disk(d.id).await? else {
            return Err(ServiceError::conflict(
                "DiskNotAttached",
                format!("disk {} is not attached", d.id),
            ));
        };
        match self.held_by(&att).await? {
            HeldBy::Other(n) => {
                return Err(ServiceError::elsewhere(
                    &n.name,
                    &n.api_url,
                    format_args!("disk {}", d.id),
                ));
            }
            HeldBy::Me(me) => {
                // Stop new connections from reopening the disk, then flush
                // and close it (live connections get ESHUTDOWN), and only
                // then revoke the attachment: the flush commits as holder.
                let vol = {
                    let mut open = self.open.lock().await;
                    lock(&self.closing).insert(d.id);
                    open.remove(&d.id)
                };
                if let Some(v) = &vol
                    && let Err(e) = v.close().await
                {
                    // Nothing is dropped: the disk stays attached and open.
                    if !matches!(e, coffer_volume::VolumeError::Fenced(_)) {
                        self.open.lock().await.insert(d.id, v.clone());
                    }
                    lock(&self.closing).remove(&d.id);
                    return Err(e.into());
                }
                let deleted = self
                    .meta
                    .delete_attachment(att.id, DetachIf::HeldBy(me))
                    .await;
                lock(&self.closing).remove(&d.id);
                if !deleted? {
                    return Err(ServiceError::new(
                        ErrorKind::Unavailable,
                        "DiskMoved",
                        format!("disk {} moved to another node while detaching: retry", d.id),
                    ));
                }
            }
            HeldBy::Nobody => {
                if !self
                    .meta
                    .delete_attachment(att.id, DetachIf::Unheld(now_ms()))
                    .await?
                {
                    return Err(ServiceError::new(
                        ErrorKind::Unavailable,
                        "DiskMoved",
                        format!("disk {} was just opened by a node: retry the detach", d.id),
                    ));
                }
            }
        }
        tracing::info!(disk = %d.id, "disk detached");
        Ok(disk_dto(&d, false))
    }

    /// The open volume of an attached disk, opening it on first use. The
    /// attachment must be held by this node, or by no live node (then this
    /// node takes it over).
    pub(crate) async fn volume_for_export(
        &self,
        token: &str,
    ) -> Result<Option<(DiskRow, Arc<Volume>)>> {
        let Some(me) = self.my_node_id().await else {
            return Ok(None);
        };
        // Read the attachment under the lock, so two connections opening
        // one disk at once agree on one hold.
        let mut open = self.open.lock().await;
        let Some(att) = self
            .meta
            .attachment_by_token_hash(&hash_token(token))
            .await?
        else {
            return Ok(None);
        };
        let Some(disk) = self.meta.disk(att.disk_id).await? else {
            return Ok(None);
        };
        if lock(&self.closing).contains(&disk.id) {
            return Ok(None);
        }
        // Every NBD connection is authorised afresh: the principal that
        // attached the disk must still hold `disks/attach` on it (a revoked
        // role or a deleted principal ends access at the next connection).
        if !self.may_attach(att.principal_id, &disk).await? {
            tracing::info!(disk = %disk.id, principal = %att.principal_id, "export refused: the attaching principal may no longer attach this disk");
            return Ok(None);
        }
        if let Some(v) = open.get(&disk.id) {
            let current = v.holder().is_some_and(|h| {
                h.node == me && Some(h.hold) == att.hold_id && att.node_id == Some(me)
            });
            if current {
                return Ok(Some((disk, v.clone())));
            }
            // A volume of an earlier hold must not serve this one.
            if let Some(v) = open.remove(&disk.id) {
                v.fence();
            }
        }
        let Some(holder) = self.meta.take_attachment(att.id, me, now_ms()).await? else {
            tracing::info!(disk = %disk.id, "export refused: another live node holds the disk");
            return Ok(None);
        };
        if att.node_id != Some(me) {
            tracing::info!(disk = %disk.id, "took over an attachment no live node held");
        }
        let vol = self.meta.volume(disk.volume_id).await?;
        let dek = self.vault.dek(vol.dek_id).await?;
        let v = Volume::open(
            self.meta.clone(),
            self.store.clone(),
            disk.volume_id,
            &dek,
            self.config.volume.clone(),
            Some(holder),
        )
        .await?;
        open.insert(disk.id, v.clone());
        Ok(Some((disk, v)))
    }

    /// Whether `principal` may attach `disk` now.
    async fn may_attach(&self, principal: Id, disk: &DiskRow) -> Result<bool> {
        let Some(p) = self.meta.principal(principal).await? else {
            return Ok(false);
        };
        let subject = self.subject_of(&p).await?;
        let target: Target = self.resource_target(disk.id, disk.account_id).await?;
        Ok(coffer_iam::authorize(&subject, Action::DisksAttach, &target).is_allowed())
    }

    /// Take a crash-consistent snapshot of a disk, attached or not.
    pub async fn create_snapshot(&self, caller: &Caller, req: CreateSnapshot) -> Result<Snapshot> {
        let name = check_name(&req.name)?;
        let d = self
            .authorized_disk(caller, &req.disk_id, Action::SnapshotsWrite)
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
            encryption: d.encryption.clone(),
            kek_id: d.kek_id,
            created_at: coffer_meta::now(),
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

    /// Snapshots the caller may read, in every account (shared ones too).
    pub async fn list_snapshots(&self, caller: &Caller) -> Result<Vec<Snapshot>> {
        let r = self.readable(caller, Action::SnapshotsRead).await?;
        let mut rows = if r.all {
            self.meta.list_snapshots(None).await?
        } else {
            let mut rows = vec![];
            for a in &r.accounts {
                rows.extend(self.meta.list_snapshots(Some(*a)).await?);
            }
            for id in r.resources.iter().filter(|i| i.kind() == Kind::Snapshot) {
                if let Some(s) = self.meta.snapshot(*id).await?
                    && !r.accounts.contains(&s.account_id)
                {
                    rows.push(s);
                }
            }
            rows.sort_by(|a, b| {
                (&a.created_at, a.id.to_string()).cmp(&(&b.created_at, b.id.to_string()))
            });
            rows
        };
        rows.dedup_by_key(|s| s.id);
        Ok(rows.iter().map(snap_dto).collect())
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
        self.meta.delete_snapshot(s.id).await?;
        self.meta
            .delete_role_assignments_at(&s.id.to_string())
            .await?;
        self.gc_wake.notify_one();
        tracing::info!(snapshot = %s.id, "snapshot deleted");
        Ok(snap_dto(&s))
    }

    /// Flush and close every open volume, then leave the deployment: this
    /// node's attachments lose their holder, so any node (or this one,
    /// restarted) can reopen them at once.
    pub async fn shutdown(&self) {
        let vols: Vec<Arc<Volume>> = self.open.lock().await.drain().map(|(_, v)| v).collect();
        for v in vols {
            if let Err(e) = v.close().await {
                tracing::warn!(volume = %v.id(), error = %e, "flush at shutdown failed");
            }
        }
        if let Some(n) = self.node.write().await.take()
            && let Err(e) = self.meta.deregister_node(n.id).await
        {
            tracing::warn!(error = %e, "could not leave the deployment; its lease will pass");
        }
    }

    /// Delete the objects queued for deletion; returns how many.
    pub async fn collect_garbage(&self) -> Result<u64> {
        let mut total = 0u64;
        loop {
            let batch = self.meta.gc_queue_peek(512).await?;
            if batch.is_empty() {
                return Ok(total);
            }
            for (dek, counter) in &batch {
                self.store
                    .delete(&chunk_key(dek.value(), *counter))
                    .await
                    .map_err(ServiceError::internal)?;
            }
            self.meta.gc_queue_done(&batch).await?;
            total += batch.len() as u64;
        }
    }

    /// Start-up recovery: finish queued deletions, then sweep orphans.
    /// Returns (collected, orphans).
    pub async fn recover(&self) -> Result<(u64, u64)> {
        let collected = self.collect_garbage().await?;
        let orphans = self.sweep_orphans().await?;
        Ok((collected, orphans))
    }

    /// Delete objects no metadata names and no live writer may still name:
    /// left by a write-back that a crash (of any node) interrupted before
    /// its commit, or by a node fenced mid-write. Safe while other nodes
    /// write: nodes whose lease passed are fenced first, the store is
    /// listed before the metadata is read, and objects in counter ranges
    /// reserved by a live holder are kept. Returns how many were deleted.
    pub async fn sweep_orphans(&self) -> Result<u64> {
        self.meta
            .fence_expired_nodes(now_ms(), self.my_node_id().await)
            .await?;
        let listed = self
            .store
            .list("chunks/")
            .await
            .map_err(ServiceError::internal)?;
        let keep = self.meta.sweep_view().await?;
        let mut orphans = 0;
        for key in listed {
            if let Some((dek, counter)) = parse_chunk_key(&key)
                && keep.keeps(dek, counter)
            {
                continue;
            }
            self.store
                .delete(&key)
                .await
                .map_err(ServiceError::internal)?;
            orphans += 1;
        }
        self.meta.drop_dead_reservations().await?;
        Ok(orphans)
    }

    /// Run the garbage collector until the process ends: woken by deletes,
    /// and every 30 s; the orphan sweep runs every `sweep_interval`.
    pub fn spawn_gc(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut last_sweep = std::time::Instant::now();
            loop {
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(30), me.gc_wake.notified())
                        .await;
                match me.collect_garbage().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(objects = n, "garbage collected"),
                    Err(e) => tracing::warn!(error = %e, "garbage collection failed; will retry"),
                }
                if last_sweep.elapsed() >= me.config.sweep_interval {
                    last_sweep = std::time::Instant::now();
                    match me.sweep_orphans().await {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(objects = n, "orphan sweep deleted unreferenced objects")
                        }
                        Err(e) => tracing::warn!(error = %e, "orphan sweep failed; will retry"),
                    }
                }
            }
        })
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
