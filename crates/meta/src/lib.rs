//! Coffer's metadata store. It owns every durable fact that is not sealed
//! data: the organisation (tenants, accounts, principals, token hashes), the
//! built-in vault's wrapped keys, DEKs and their nonce counters, volumes and
//! their chunk maps, disks, snapshots, attachments, the queue of objects
//! awaiting deletion, the audit log of key use (a hash chain whose hashes
//! the key vault computes) with the key-state epoch, samples of the storage each account uses, and the nodes sharing the deployment with their leases
//! (see `nodes` for how several nodes are kept from writing one disk).
//!
//! One implementation, [`Meta`], speaks portable SQL through sqlx's `Any`
//! driver to SQLite (the embedded default) or PostgreSQL (scale-out); only
//! the DDL differs per backend (`migrations/<backend>/`). Queries use `$N`
//! placeholders in ascending order, which both backends accept.
//!
//! No plaintext key material and no token is ever stored here: keys are
//! stored wrapped, tokens as SHA-256 hashes.
//!
//! ## Volumes, generations and views
//! A volume is one node of a disk lineage. Its chunk map is made of
//! extents of 4 KiB sectors (format v2, see [`extents`]):
//! `(chunk_index, generation, first_sector, sectors) → (object, first slot)`
//! or zeroes, and of v1 rows `(chunk_index, generation, counter)` for
//! chunks written before format v2, each covering its whole chunk.
//! The head of a live volume is at `head_generation`; taking a snapshot
//! records the head generation `G` in the snapshot and moves the head to
//! `G + 1`, so a snapshot costs one row whatever the disk's size. A *view*
//! `(volume, G)` sees, per sector, the row with the highest generation `<= G`
//! covering it, falling back to the parent view `(parent_id,
//! parent_generation)` when the volume has none. Views of a volume are its
//! live head, its snapshots and its child volumes' parent pointers; a row no
//! view sees is garbage and is removed (at commit, or by
//! [`Meta::gc_volume`]), its object queued in `gc_objects` (v1: `gc_queue`)
//! once nothing names it.

mod audit;
mod chunks;
mod exports;
pub mod extents;
mod fsck;
mod grants;
mod images;
mod jobs;
mod listing;
mod nodes;
mod org;
mod resources;
pub mod schema;
mod shares;
mod usage;
mod vault;
mod vaults;

use std::str::FromStr;
use std::time::SystemTime;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

pub use audit::{AuditEntry, AuditFilter, AuditHead, AuditRecord};
pub use chunks::{ChunkEntry, CommitStats, StoredObject, VolumeRow};
pub use exports::{ExportMemberRow, ExportRow};
pub use extents::{ChunkMap, Extent, Loc, ObjectRef};
pub use fsck::Finding;
pub use grants::GrantRow;
pub use images::{ImageRow, Member};
pub use jobs::JobRow;
pub use listing::{ListFilter, Visible};
pub use nodes::{Holder, NodeRow, SweepView, now_ms};
pub use org::{AccountRow, FolderRow, PrincipalRow, RoleAssignmentRow, TenantRow, TokenRow};
pub use resources::{AttachmentRow, DetachIf, DiskRow, Origin, SnapshotBy, SnapshotRow};
pub use shares::{PUBLIC, SharePrincipalRow, ShareRow, SharedRow, parse_principal};
pub use usage::UsageRow;
pub use vault::{DekRow, RootSamples, VaultKeyRow};
pub use vaults::{
    EncryptionSetRow, ExternalStore, KeyVersionRow, NewSecretVersion, SecretRow, VaultRow,
};

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The database failed or refused a statement.
    #[error("metadata database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A row that must exist does not.
    #[error("{0} not found")]
    NotFound(String),
    /// A uniqueness or state rule would be broken (e.g. a second attachment).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The account already has a resource of this kind with this name
    /// (names are unique per account and kind; the database enforces it).
    #[error("account {account} already has a {} named '{name}'", kind.noun())]
    NameTaken {
        /// The kind of resource.
        kind: coffer_types::Kind,
        /// The account.
        account: coffer_types::Id,
        /// The name.
        name: String,
    },
    /// A write on behalf of an attachment holder that no longer holds it
    /// (its lease passed, or the disk was detached or taken over).
    #[error("fenced: {0}")]
    Fenced(String),
    /// Stored data is not what this version understands.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// The database URL is not supported.
    #[error("unsupported metadata URL '{0}': use sqlite://PATH or postgres://...")]
    BadUrl(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, MetaError>;

/// Which SQL backend a [`Meta`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (embedded default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The metadata store.
#[derive(Clone, Debug)]
pub struct Meta {
    pool: AnyPool,
    backend: Backend,
    /// SQLite only: the node lease's own connection (see [`LeaseLane`]).
    lease: Option<LeaseLane>,
}

/// A priority lane for node-lease renewals on SQLite. The main pool has one
/// connection that every disk's commits queue for, in turn; with many busy
/// disks a renewal queued there waited seconds, and a node whose renewal
/// does not land in time fences its own disks. The lane is a second
/// connection used only for the renewal (one autocommit UPDATE, for which
/// SQLite's busy handler waits out a writer, snapshot included), and a gate
/// the main pool's `before_acquire` waits at while a renewal is pending: a
/// renewal waits for at most the one main transaction in progress, never
/// for the queue behind it.
#[derive(Clone, Debug)]
struct LeaseLane {
    pool: AnyPool,
    gate: std::sync::Arc<LeaseGate>,
}

#[derive(Debug, Default)]
struct LeaseGate {
    pending: std::sync::atomic::AtomicUsize,
    done: tokio::sync::Notify,
}

impl LeaseGate {
    /// Wait while a renewal is pending (the main pool's `before_acquire`).
    async fn pass(&self) {
        use std::sync::atomic::Ordering;
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.pending.load(Ordering::Acquire) == 0 {
                return;
            }
            done.await;
        }
    }
}

/// Marks a renewal pending for as long as it lives (also when the renewal
/// is cancelled by its caller's timeout).
struct LeasePending<'a>(&'a LeaseGate);

impl<'a> LeasePending<'a> {
    fn new(gate: &'a LeaseGate) -> Self {
        gate.pending
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self(gate)
    }
}

impl Drop for LeasePending<'_> {
    fn drop(&mut self) {
        self.0
            .pending
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        self.0.done.notify_waiters();
    }
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Meta {
    /// Begin a transaction. On SQLite with `BEGIN IMMEDIATE`: it takes the
    /// write lock at once. A deferred one reads first and upgrades at its
    /// first write, and if the lease lane's renewal (its own connection,
    /// [`LeaseLane`]) committed in between, SQLite refuses the upgrade at
    /// once ("database is locked") instead of waiting: the transaction
    /// failed where it should have waited. Holding the lock from the start,
    /// the renewal waits for it instead (SQLite's busy handler), as the
    /// lane means it to. The main pool's one connection runs one
    /// transaction at a time anyway, so nothing else waits longer.
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Begin a transaction that only reads: deferred on SQLite too. It
    /// never upgrades, so it is never refused, and it does not hold the
    /// write lock, so the lease lane's renewal need not wait for it (a
    /// long read, such as the orphan sweep's view, would otherwise keep a
    /// renewal waiting past its deadline).
    pub(crate) async fn begin_read(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(self.pool.begin().await?)
    }

    /// Open (creating and migrating if needed) the store at `url`:
    /// `sqlite://PATH` or `postgres://...`.
    pub async fn open(url: &str) -> Result<Self> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(MetaError::BadUrl(url.chars().take(60).collect()));
        };
        let (pool, lease) = match backend {
            Backend::Sqlite => {
                let url = if url.contains('?') {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                };
                let gate = std::sync::Arc::new(LeaseGate::default());
                let at_gate = gate.clone();
                // One connection: SQLite serialises writers anyway, and one
                // connection makes every transaction see the last commit
                // without BUSY retries (the lease lane's single statements
                // are the exception). Durability: WAL + synchronous=FULL.
                let pool = sqlite_options()
                    .before_acquire(move |_, _| {
                        let gate = at_gate.clone();
                        Box::pin(async move {
                            gate.pass().await;
                            Ok(true)
                        })
                    })
                    .connect(&url)
                    .await?;
                // The lane opens after the main pool, which created the
                // file and set WAL mode.
                let lane = sqlite_options().connect(&url).await?;
                (pool, Some(LeaseLane { pool: lane, gate }))
            }
            Backend::Postgres => (
                AnyPoolOptions::new()
                    .max_connections(16)
                    .connect(url)
                    .await?,
                None,
            ),
        };
        let meta = Self {
            pool,
            backend,
            lease,
        };
        schema::migrate(&meta).await?;
        Ok(meta)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Read a deployment setting.
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Set a setting unless it exists; returns the value now stored.
    pub async fn setting_init(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        self.setting(key)
            .await?
            .ok_or_else(|| MetaError::Corrupt(format!("setting {key} vanished")))
    }

    /// Close the pool (waits for connections to finish).
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(lane) = &self.lease {
            lane.pool.close().await;
        }
    }
}

/// One SQLite connection with Coffer's settings.
fn sqlite_options() -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(1)
        // A local file's connection does not drop: no ping per acquire.
        .test_before_acquire(false)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode=WAL").await?;
                conn.execute("PRAGMA synchronous=FULL").await?;
                conn.execute("PRAGMA foreign_keys=ON").await?;
                conn.execute("PRAGMA busy_timeout=10000").await?;
                conn.execute("PRAGMA secure_delete=ON").await?;
                // Temporary tables (a commit's ranges) stay in memory.
                conn.execute("PRAGMA temp_store=MEMORY").await?;
                Ok(())
            })
        })
}

/// A stored word (a state or kind) parsed, or a corruption error.
pub(crate) fn parse_word<T: std::str::FromStr>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| MetaError::Corrupt(format!("bad stored word '{s}'")))
}

pub(crate) fn parse_id(s: &str, kind: coffer_types::Kind) -> Result<coffer_types::Id> {
    coffer_types::Id::from_str(s)
        .ok()
        .filter(|id| id.kind() == kind)
        .ok_or_else(|| MetaError::Corrupt(format!("bad stored id '{s}'")))
}

pub(crate) fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| MetaError::Corrupt(format!("value {v} exceeds 63 bits")))
}

pub(crate) fn to_u64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| MetaError::Corrupt(format!("negative stored value {v}")))
}
