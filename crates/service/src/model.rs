//! The resources as the API shows them and the requests that create them.
//! These types are the wire format of the HTTP API (and so of the CLI); the
//! OpenAPI document is generated from them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a disk or snapshot is encrypted at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Encryption {
    /// `platform` (a platform-managed key of the region), later also
    /// `customer` and `double`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The key-encryption key that wraps the data key.
    pub key_id: String,
}

/// A disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Disk {
    /// Id, e.g. `disk-0123456789abcdef`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner account.
    pub account_id: String,
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Size for people, e.g. `10GiB`.
    pub size: String,
    /// `available` or `attached`.
    pub state: String,
    /// Encryption at rest.
    pub encryption: Encryption,
    /// Snapshot the disk was created from.
    pub source_snapshot_id: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// A snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    /// Id, e.g. `snap-0123456789abcdef`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner account.
    pub account_id: String,
    /// Region (snapshots are regional).
    pub region: String,
    /// Disk it was taken from (kept after that disk is deleted).
    pub source_disk_id: Option<String>,
    /// Size in bytes of the disk when taken.
    pub size_bytes: u64,
    /// Size for people.
    pub size: String,
    /// `completed` (snapshots are complete when the call returns).
    pub state: String,
    /// Encryption at rest.
    pub encryption: Encryption,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// An attachment: how a block client reaches a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attachment {
    /// Attachment id.
    pub id: String,
    /// The disk.
    pub disk_id: String,
    /// `nbd://HOST:PORT/EXPORT`: give it to qemu, qemu-img or an NBD client.
    /// The export name is a secret: whoever has it can read and write the
    /// disk until it is detached. Shown only in the attach response.
    pub uri: Option<String>,
    /// `rw`.
    pub mode: String,
    /// When.
    pub created_at: String,
}

/// Create a disk: empty (`size` required) or from a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDisk {
    /// Name (1-80 letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Zone, e.g. `local-a`.
    pub zone: String,
    /// Size: bytes, or a string like `"10GiB"`. A multiple of 1 MiB, from
    /// 1 MiB to 64 TiB. From a snapshot, defaults to the snapshot's size and
    /// may only be larger.
    #[schema(value_type = Option<String>, example = "10GiB")]
    pub size: Option<coffer_types::ByteSize>,
    /// Snapshot to copy (must be in the zone's region).
    pub source_snapshot_id: Option<String>,
}

/// Resize a disk (grow only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeDisk {
    /// New size, larger than the current one.
    #[schema(value_type = String, example = "20GiB")]
    pub size: coffer_types::ByteSize,
}

/// Take a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshot {
    /// The disk.
    pub disk_id: String,
    /// Name.
    pub name: String,
}

/// A region and its zones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Region {
    /// Name.
    pub name: String,
    /// Zones.
    pub zones: Vec<String>,
}

/// The caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// Principal id.
    pub principal_id: String,
    /// Principal name.
    pub name: String,
    /// Home account.
    pub account_id: String,
    /// Home tenant.
    pub tenant_id: String,
    /// Deployment administrator.
    pub is_admin: bool,
}

/// One broken rule found by the consistency checker.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FsckFinding {
    /// Stable code, e.g. `ObjectMissing`, `ObjectNamedTwice`.
    pub code: String,
    /// What and where.
    pub detail: String,
}

/// What `coffer admin fsck` found.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FsckReport {
    /// True when nothing is missing, damaged or inconsistent.
    pub ok: bool,
    /// Chunk objects in the object store.
    pub objects_stored: u64,
    /// Objects the chunk maps name.
    pub objects_named: u64,
    /// Named objects absent from the store (data loss: each is a finding).
    pub objects_missing: u64,
    /// Stored objects nothing names or queues: garbage from an interrupted
    /// write-back (swept at the next start) or a write-back in flight. Not
    /// an error.
    pub objects_unreferenced: u64,
    /// Objects queued for deletion, not yet deleted.
    pub objects_queued: u64,
    /// With `deep`: objects fetched and authenticated.
    pub objects_verified: Option<u64>,
    /// Every broken rule, metadata and store.
    pub findings: Vec<FsckFinding>,
}

/// What `coffer admin gc` did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GcReport {
    /// Objects deleted from the deletion queue.
    pub collected: u64,
    /// Unreferenced objects the orphan sweep deleted.
    pub orphans: u64,
}

/// A node of the deployment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Node {
    /// Id of the node's current run.
    pub id: String,
    /// The node's lasting name.
    pub name: String,
    /// Its API URL.
    pub api_url: String,
    /// Its NBD `host:port`.
    pub nbd_endpoint: String,
    /// When this run started.
    pub started_at: String,
    /// When its lease ends unless renewed (RFC 3339).
    pub lease_expires_at: String,
    /// Whether this is the node that answered.
    pub this_node: bool,
}
