//! The service layer: Coffer's rules for disks, snapshots and attachments,
//! over the lower layers (metadata, object store, key vault, block engine).
//! The HTTP API and the NBD server call into it; it knows nothing of HTTP.
//!
//! One module per resource kind owns that kind's operations (`disks`,
//! `snapshots`, `attach`, `org` for tenants, folders and accounts,
//! `iam` for principals, tokens and role assignments, `vaults` for key
//! vaults, customer keys and the audit log, `fsck` and `gc` for
//! administration); `access` holds the one authorization check they
//! all call, and `node` this node's lease. This file holds only the
//! [`Service`] value they share.
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

mod access;
mod attach;
mod auth;
mod copies;
mod disks;
mod encryption_sets;
mod error;
mod explain;
mod export;
mod exports;
mod fsck;
mod gc;
mod grants;
mod iam;
mod images;
mod keyops;
mod list;
mod node;
mod org;
mod owners;
mod regions;
mod revoke;
mod rewrap;
mod secrets;
mod sessions;
mod shares;
mod snapshots;
pub mod source;
mod tags;
mod usage;
mod vaults;

/// The API's resources and requests (the wire format, shared with clients).
pub use coffer_wire::model;

use std::collections::HashMap;
use std::sync::Arc;

use coffer_keyvault::KeyVault;
use coffer_meta::{Meta, NodeRow, PrincipalRow};
use coffer_store::ObjectStore;
use coffer_types::size::{MIB, TIB};
use coffer_types::{Id, Kind, Name, Regions};
use coffer_volume::{Volume, VolumeConfig};
use tokio::sync::{Mutex, Notify, RwLock};

pub use error::{ErrorCode, Result, ServiceError};
pub use export::{DiskDevice, ExportResolverImpl};
pub use exports::PULL_TOKEN_PREFIX;
pub use images::MAX_IMAGE_SNAPSHOTS;
pub use org::MAX_FOLDER_DEPTH;
pub use regions::RegionHealth;
pub use revoke::KEY_RECHECK;
pub use rewrap::REWRAP_INTERVAL;
pub use sessions::{
    SESSION_LIFETIME, SESSION_TOKEN_NAME, SIGN_IN_LINK_LIFETIME, SIGN_IN_LINK_NAME,
    SIGN_IN_LINK_PREFIX,
};
pub use shares::ShareQuotas;
pub use usage::MAX_USAGE_SAMPLES;

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
    /// Whether NBD clients must use TLS (attach URIs are then `nbds://`).
    /// Every node of a deployment serves NBD the same way.
    pub nbd_tls: bool,
    /// Per-account limits of sharing.
    pub quotas: ShareQuotas,
    /// How fast re-encrypting copies may read and write, over all the
    /// jobs of this node (`None`: as fast as they go).
    pub copy_pace: Option<Arc<coffer_volume::Pace>>,
    /// How often each region's object store is probed (a region whose
    /// store does not answer is unavailable until it does).
    pub region_probe_interval: std::time::Duration,
    /// How often each account's storage use is sampled (at the start of
    /// each such interval, UTC).
    pub usage_interval: std::time::Duration,
    /// How long usage samples are kept.
    pub usage_retention: std::time::Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            regions: Regions::default(),
            chunk_size: coffer_volume::DEFAULT_CHUNK_SIZE,
            volume: VolumeConfig::default(),
            lease_ttl: std::time::Duration::from_secs(15),
            sweep_interval: std::time::Duration::from_secs(600),
            nbd_tls: false,
            quotas: ShareQuotas::default(),
            copy_pace: None,
            region_probe_interval: std::time::Duration::from_secs(5),
            usage_interval: std::time::Duration::from_secs(3600),
            usage_retention: std::time::Duration::from_secs(400 * 86_400),
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
    /// Each region's object store.
    stores: regions::RegionStores,
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
    /// Disks opened here under a customer key (through an encryption set):
    /// the ones the key watch re-checks (`revoke`).
    customer_keyed: std::sync::Mutex<std::collections::HashSet<Id>>,
    gc_wake: Arc<Notify>,
    /// Wakes the re-wrap task (`rewrap`) after a rotation or set update.
    rewrap_wake: Notify,
    /// Wakes the copy-job runner (`copies`) when a job is created.
    jobs_wake: Notify,
    /// Wakes the callers waiting for a job (`get_job`) when a job this
    /// node ran ends, or a job is cancelled here.
    jobs_ended: Notify,
    /// Jobs this node is running now.
    running_jobs: std::sync::Mutex<std::collections::HashSet<Id>>,
    /// The client of other deployments' exports, for imports (`serve`
    /// sets it).
    remotes: std::sync::OnceLock<Arc<dyn source::Remotes>>,
    /// Reader volumes of exports open here, by volume id, with their last
    /// use (closed after a while unused).
    export_readers: std::sync::Mutex<HashMap<Id, (Arc<Volume>, std::time::Instant)>>,
    /// Import jobs waiting for an unreachable sender: tries so far, and
    /// when to try again.
    job_backoff: std::sync::Mutex<HashMap<Id, (u32, std::time::Instant)>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field(
                "stores",
                &self
                    .region_stores()
                    .iter()
                    .map(|(r, s)| format!("{r}: {}", s.describe()))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

pub(crate) fn parse_id(s: &str, kind: Kind) -> Result<Id> {
    Id::parse_kind(s.trim(), kind)
        .map_err(|e| ServiceError::new(ErrorCode::InvalidId, e.to_string()))
}

pub(crate) fn check_name(s: &str) -> Result<Name> {
    Name::new(s).map_err(|e| ServiceError::new(ErrorCode::InvalidName, e.to_string()))
}

impl Service {
    /// Assemble the service over its lower layers, every region's data in
    /// the one object store `store`.
    pub fn new(
        meta: Meta,
        store: Arc<dyn ObjectStore>,
        vault: KeyVault,
        config: ServiceConfig,
    ) -> Arc<Self> {
        let stores = regions::RegionStores::new(&config.regions, HashMap::new(), Some(store))
            .expect("a fallback store serves every region");
        Self::assemble(meta, stores, vault, config)
    }

    /// Assemble the service with each region's own object store: `stores`
    /// must name one for every configured region, and no other.
    pub fn with_stores(
        meta: Meta,
        stores: HashMap<String, Arc<dyn ObjectStore>>,
        vault: KeyVault,
        config: ServiceConfig,
    ) -> Result<Arc<Self>> {
        let stores = regions::RegionStores::new(&config.regions, stores, None)?;
        Ok(Self::assemble(meta, stores, vault, config))
    }

    fn assemble(
        meta: Meta,
        stores: regions::RegionStores,
        vault: KeyVault,
        mut config: ServiceConfig,
    ) -> Arc<Self> {
        let gc_wake = Arc::new(Notify::new());
        config.volume.gc_notify = Some(gc_wake.clone());
        Arc::new(Self {
            meta,
            stores,
            vault,
            config,
            open: Mutex::new(HashMap::new()),
            closing: std::sync::Mutex::new(std::collections::HashSet::new()),
            node: RwLock::new(None),
            customer_keyed: std::sync::Mutex::new(std::collections::HashSet::new()),
            gc_wake,
            rewrap_wake: Notify::new(),
            jobs_wake: Notify::new(),
            jobs_ended: Notify::new(),
            running_jobs: std::sync::Mutex::new(std::collections::HashSet::new()),
            remotes: std::sync::OnceLock::new(),
            export_readers: std::sync::Mutex::new(HashMap::new()),
            job_backoff: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The metadata store (for admin tools and tests).
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The object store of the first region (of every region, when the
    /// deployment has one store).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.region_stores()
            .into_iter()
            .next()
            .map(|(_, s)| s)
            .expect("a deployment has a region")
    }
}

pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
