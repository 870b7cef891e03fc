//! The resources as the API shows them and the requests that create them.
//! These types are the wire format of the HTTP API (and so of the CLI); the
//! OpenAPI document is generated from them. States and kinds are the
//! enums of `coffer_types::state`, so the document lists their values.

use std::collections::BTreeMap;

use coffer_types::{
    CreationMethod, Decision, DiskState, EncryptionType, ImageState, KeyState, Lifecycle,
    PrincipalKind, PrincipalScope, ShareKind, ShareStatus, SnapshotState, TokenState,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a disk or snapshot is encrypted at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Encryption {
    /// `platform` (a platform-managed key of the region), later also
    /// `customer` and `double`.
    #[serde(rename = "type")]
    pub kind: EncryptionType,
    /// The key-encryption key that wraps the data key.
    pub key_id: String,
    /// The disk encryption set (customer keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_set_id: Option<String>,
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
    pub state: DiskState,
    /// Encryption at rest.
    pub encryption: Encryption,
    /// Snapshot the disk was created from.
    pub source_snapshot_id: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Image the disk was launched from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_image_id: Option<String>,
    /// How it was made: `empty`, `from-snapshot` or `from-image`.
    pub creation_method: CreationMethod,
    /// Where its content came from (kept after the source is gone), when
    /// that was another account's snapshot or image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Tags (`KEY: VALUE`); keys starting with `coffer:` are Coffer's own
    /// (provenance).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Where a copy, a shared resource or a disk from one came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Source {
    /// The source's owner account.
    pub account_id: String,
    /// The source's region.
    pub region: String,
    /// The source's id (a snapshot or image), kept after it is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
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
    pub state: SnapshotState,
    /// Encryption at rest.
    pub encryption: Encryption,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// How it was made: `snapshot` (of a disk), `image` (for an image),
    /// `copy`; `shared` when it belongs to another account that shares it
    /// with the caller's.
    pub creation_method: CreationMethod,
    /// The image that owns it (its snapshots go with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Its role in that image: `root`, `data1`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_role: Option<String>,
    /// What it was copied from, or (shared) who shares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Tags; `coffer:` keys are Coffer's own (`coffer:shared-from`,
    /// `coffer:copied-from`: `ACCOUNT:REGION:ID`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// An image: snapshots (a root and data disks) to launch disks from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Image {
    /// Id, e.g. `img-0123456789abcdef`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner account.
    pub account_id: String,
    /// Region (images are regional; launch in any zone of it).
    pub region: String,
    /// Free text.
    pub description: String,
    /// `available`; `pending` while its copy under another key runs
    /// (launches wait; `copy_jobs` are the jobs); `failed` if one failed or
    /// was cancelled (delete it).
    pub state: ImageState,
    /// While pending: the jobs copying its snapshots (`coffer job wait`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copy_jobs: Vec<String>,
    /// Its snapshots, root first (while pending: those copied so far).
    pub snapshots: Vec<ImageSnapshot>,
    /// Total size of its snapshots.
    pub size_bytes: u64,
    /// `image`, `copy`, or `shared` (another account's, shared with the
    /// caller's).
    pub creation_method: CreationMethod,
    /// What it was copied from, or (shared) who shares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// One snapshot of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageSnapshot {
    /// `root`, `data1`, `data2`, ...
    pub role: String,
    /// The snapshot's id.
    pub snapshot_id: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Its encryption.
    pub encryption: Encryption,
}

/// Create an image from disks (crash-consistent snapshots are taken) or
/// from snapshots (O(1) copies): one of the two lists, the first is the
/// root.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateImage {
    /// Name.
    pub name: String,
    /// Disks: root first, then data disks.
    #[serde(default)]
    pub disk_ids: Vec<String>,
    /// Snapshots: root first, then data disks.
    #[serde(default)]
    pub snapshot_ids: Vec<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// The owning account (default: the caller's home account); its
    /// disks or snapshots only.
    #[serde(default)]
    pub account_id: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Launch disks from an image: one per image snapshot, in one zone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchImage {
    /// Zone (of the image's region).
    pub zone: String,
    /// Disk names are `NAME-ROLE` (`web-root`, `web-data1`); default: the
    /// image's name.
    #[serde(default)]
    pub name: Option<String>,
    /// The account that will own the disks (default: the caller's home).
    #[serde(default)]
    pub account_id: Option<String>,
    /// Encrypt the disks under this set (required for another account's
    /// customer-key image).
    #[serde(default)]
    pub encryption_set_id: Option<String>,
    /// Tags for every disk.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Copy a snapshot or image into an account (default: the caller's).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyRequest {
    /// Name of the copy.
    pub name: String,
    /// The account that will own the copy (default: the caller's home).
    #[serde(default)]
    pub account_id: Option<String>,
    /// Re-encrypt under this encryption set's key.
    #[serde(default)]
    pub encryption_set_id: Option<String>,
    /// Re-encrypt even where the copy could share the source's ciphertext.
    #[serde(default)]
    pub rekey: bool,
    /// The region the copy is made in (default: the source's). A copy into
    /// another region is always re-encrypted, under that region's platform
    /// key or the key of `encryption_set_id` (a set of that region).
    #[serde(default)]
    pub target_region: Option<String>,
    /// Tags of the copy (the source's are not copied).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A background job: a copy that re-encrypts (or, done at once, one that
/// shares ciphertext).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Id, e.g. `job-0123456789abcdef` (empty for a copy done at once).
    pub id: String,
    /// `snapshot-copy`, or `image-copy` (one snapshot of an image).
    pub kind: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// The account that will own the result.
    pub account_id: String,
    /// What is copied.
    pub source_id: String,
    /// What the job makes (it exists once the job succeeded).
    pub target_id: String,
    /// The region of the source.
    #[serde(default)]
    pub source_region: String,
    /// The region the copy is made in.
    #[serde(default)]
    pub target_region: String,
    /// The earlier copy (a snapshot) this one is built on: an incremental
    /// copy moves only the chunks changed since the source of that copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_id: Option<String>,
    /// Bytes of data read from the source and written so far (an
    /// incremental copy's are only the changed chunks').
    #[serde(default)]
    pub bytes_copied: u64,
    /// The image this job copies a snapshot of (`image-copy` jobs: the
    /// image is pending until its last job succeeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Bytes to copy.
    pub bytes_total: u64,
    /// Bytes copied and committed so far (a restarted job resumes there).
    pub bytes_done: u64,
    /// Why it failed, or what it is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The hash of the source's data and of the copy's, read back, as
    /// `blake3:<hex>` (`sha256:<hex>` for jobs verified before BLAKE3):
    /// equal when the job succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_hash: Option<String>,
    /// See `source_hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hash: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// A resource's tags (`PATCH /v1/tags/{id}`'s answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceTags {
    /// The disk, snapshot or image.
    pub resource_id: String,
    /// Its tags after the change (`coffer:` ones included).
    pub tags: BTreeMap<String, String>,
}

/// Add or remove tags of a disk, snapshot or image (`PATCH
/// /v1/tags/{id}`): the keys in `remove` go first, then `set` is added or
/// replaces, in one transaction.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    /// Tags to add (or replace).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Tag keys to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A resource share (or a snapshot's or image's permissions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Share {
    /// Id, e.g. `rs-0123456789abcdef`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner account.
    pub account_id: String,
    /// Region.
    pub region: String,
    /// `share` or `permission`.
    pub kind: ShareKind,
    /// `any` or `tenant`.
    pub principal_scope: PrincipalScope,
    /// The shared resources (those the caller may know of).
    pub resources: Vec<String>,
    /// The principals and where each stands.
    pub principals: Vec<SharePrincipal>,
    /// Creation time.
    pub created_at: String,
}

/// A principal of a share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SharePrincipal {
    /// An account, folder or tenant id, or `*` (every account).
    pub principal: String,
    /// `associated`, `pending` (invited) or `rejected`.
    pub status: ShareStatus,
    /// The invitation, for an account outside the owner's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation_id: Option<String>,
}

/// Create a resource share.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShare {
    /// Name.
    pub name: String,
    /// `any` (default) or `tenant`.
    #[serde(default)]
    pub principal_scope: Option<PrincipalScope>,
    /// The owning account (default: the caller's home).
    #[serde(default)]
    pub account_id: Option<String>,
    /// Resources to share (snapshots, images).
    #[serde(default)]
    pub resources: Vec<String>,
    /// Principals: account, folder or tenant ids.
    #[serde(default)]
    pub principals: Vec<String>,
}

/// Change a share: resources and principals to add and remove.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateShare {
    /// Resources to add.
    #[serde(default)]
    pub add_resources: Vec<String>,
    /// Resources to remove.
    #[serde(default)]
    pub remove_resources: Vec<String>,
    /// Principals to add (account, folder or tenant ids; `*` for every
    /// account, in permissions only).
    #[serde(default)]
    pub add_principals: Vec<String>,
    /// Principals to remove.
    #[serde(default)]
    pub remove_principals: Vec<String>,
}

/// An invitation of an account to a resource share of another tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Invitation {
    /// Id, e.g. `inv-0123456789abcdef`.
    pub id: String,
    /// The share.
    pub share_id: String,
    /// The share's name.
    pub share_name: String,
    /// The account that shares.
    pub sender_account_id: String,
    /// The invited account.
    pub account_id: String,
    /// `pending`, `associated` (accepted) or `rejected`.
    pub status: ShareStatus,
    /// When it was sent.
    pub created_at: String,
}

/// An attachment: how a block client reaches a disk.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attachment {
    /// Attachment id.
    pub id: String,
    /// The disk.
    pub disk_id: String,
    /// `nbd://HOST:PORT/EXPORT` (`nbds://` when the deployment's NBD
    /// requires TLS): give it to qemu, qemu-img or an NBD client.
    /// The export name is a secret: whoever has it can read and write the
    /// disk until it is detached. Shown only in the attach response.
    pub uri: Option<String>,
    /// The same export as qemu's `--image-opts` (or `-drive`) options:
    /// `driver=nbd,server.type=inet,server.host=H,server.port=P,export=E`,
    /// and `,tls-creds=tls0` under TLS, for a client object
    /// `--object tls-creds-x509,id=tls0,dir=DIR,endpoint=client` whose
    /// DIR holds the deployment CA as `ca-cert.pem`. A secret, as `uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_opts: Option<String>,
    /// `rw`.
    pub mode: String,
    /// When.
    pub created_at: String,
}

/// Never prints the export name (a credential): logs and panics stay clean.
impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("id", &self.id)
            .field("disk_id", &self.disk_id)
            .field("uri", &self.uri.as_ref().map(|_| REDACTED))
            .field("image_opts", &self.image_opts.as_ref().map(|_| REDACTED))
            .field("mode", &self.mode)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A one-time link that signs a browser in to the web console as the
/// caller (`coffer console login`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsoleLink {
    /// The path to open on this API's address, e.g.
    /// `/console/sign-in?code=…`. It works once (the first sign-in spends
    /// it) and until `expires_at`; its code is a secret.
    pub path: String,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
}

/// Never prints the link's code.
impl std::fmt::Debug for ConsoleLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleLink")
            .field("path", &REDACTED)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What a redacting `Debug` prints in place of a secret.
pub const REDACTED: &str = "<redacted>";

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
    /// Snapshot to copy (must be in the zone's region). It may belong to
    /// another account or tenant that gave the caller `snapshots/use` on it
    /// (a role such as Disk Snapshot User, a create-volume permission, or a
    /// resource share).
    pub source_snapshot_id: Option<String>,
    /// The account that will own the disk (default: the caller's home
    /// account). The caller needs `disks/write` there.
    #[serde(default)]
    pub account_id: Option<String>,
    /// Encrypt the disk under this disk encryption set's customer key (an
    /// empty disk only; a disk from a snapshot keeps the snapshot's key).
    /// The set's identity must be able to wrap and unwrap with the key.
    #[serde(default)]
    pub encryption_set_id: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
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
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A region and its zones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Region {
    /// Name.
    pub name: String,
    /// Zones.
    pub zones: Vec<String>,
    /// `available`, or `unavailable` while the region's object store does
    /// not answer (its disks get `503 RegionUnavailable`; other regions
    /// work as usual).
    #[serde(default)]
    pub status: String,
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
    /// Home account's name.
    pub account_name: String,
    /// Home tenant.
    pub tenant_id: String,
    /// Home tenant's name.
    pub tenant_name: String,
    /// `user`, `service` or `managed`.
    pub kind: PrincipalKind,
    /// Owner of the whole deployment (an Owner assignment at `/`).
    pub is_admin: bool,
    /// The principal's role assignments.
    pub role_assignments: Vec<RoleAssignment>,
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

/// A tenant: an organisation, holding folders and accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    /// Id, e.g. `tnt-0123456789abcdef`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Whether the tenant's customer keys may be granted to principals of
    /// other tenants (and its customer-key snapshots and images shared with
    /// their accounts, each holding a grant). Off by default.
    #[serde(default)]
    pub allow_cross_tenant_key_grants: bool,
    /// Creation time.
    pub created_at: String,
}

/// A folder of a tenant's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Folder {
    /// Id, e.g. `fld-0123456789abcdef`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Parent folder (absent: at the tenant's root).
    pub parent_id: Option<String>,
    /// Creation time.
    pub created_at: String,
}

/// An account: resources belong to one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    /// Id, e.g. `acct-0123456789abcdef`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The folder it sits in (absent: the tenant's root, or a folder the
    /// caller may not see).
    pub folder_id: Option<String>,
    /// Creation time.
    pub created_at: String,
}

/// What an account holds at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageSample {
    /// When (RFC 3339 UTC): the start of the sampling interval, or now
    /// for the current figures.
    pub at: String,
    /// Disks.
    pub disks: u64,
    /// The disks' provisioned bytes.
    pub disk_bytes: u64,
    /// Snapshots, the members of images included.
    pub snapshots: u64,
    /// The snapshots' sizes, in bytes.
    pub snapshot_bytes: u64,
    /// Images.
    pub images: u64,
    /// Bytes of data the account's disks and snapshots keep in the object
    /// store: 4 KiB sectors written and still kept (overwritten data a
    /// snapshot keeps counts too), before sealing overhead. Data a disk
    /// shares with the snapshot or image it was made from counts for the
    /// account that wrote it.
    pub stored_bytes: u64,
}

/// Storage an account uses: now, and sampled over time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountUsage {
    /// The account.
    pub account_id: String,
    /// Seconds between two samples (the server's `usage_interval`).
    pub interval_seconds: u64,
    /// The figures now.
    pub current: UsageSample,
    /// Samples from `since` on, oldest first (at most 1,000, the newest).
    pub samples: Vec<UsageSample>,
}

/// A principal: who calls Coffer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Principal {
    /// Id, e.g. `prn-0123456789abcdef`.
    pub id: String,
    /// Name.
    pub name: String,
    /// `user`, `service` or `managed` (created by the platform).
    pub kind: PrincipalKind,
    /// Home account.
    pub account_id: String,
    /// Home tenant.
    pub tenant_id: String,
    /// Creation time.
    pub created_at: String,
}

/// An API token's public facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Token {
    /// Id, e.g. `tok-0123456789abcdef` (not the secret).
    pub id: String,
    /// Whose token.
    pub principal_id: String,
    /// Label.
    pub name: String,
    /// `active`, `expired` or `revoked`.
    pub state: TokenState,
    /// Creation time.
    pub created_at: String,
    /// Expiry, if any.
    pub expires_at: Option<String>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<String>,
}

/// A token just created: the only time its secret is shown.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct NewToken {
    /// The token's public facts.
    #[serde(flatten)]
    pub token: Token,
    /// The secret: pass it as `Authorization: Bearer <secret>`. Coffer keeps
    /// only its hash; it cannot be shown again. Wiped from memory when this
    /// value is dropped.
    #[schema(value_type = String)]
    pub secret: zeroize::Zeroizing<String>,
}

/// Never prints the secret.
impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("token", &self.token)
            .field("secret", &REDACTED)
            .finish()
    }
}

/// A role assignment: principal + role + scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoleAssignment {
    /// Id, e.g. `ra-0123456789abcdef`.
    pub id: String,
    /// The principal given the role.
    pub principal_id: String,
    /// The role's name, e.g. `Reader`.
    pub role: String,
    /// Where: `/` (the deployment) or a tenant, folder, account or resource id.
    pub scope: String,
    /// Who created it (absent: the platform).
    pub created_by: Option<String>,
    /// Creation time.
    pub created_at: String,
}

/// A built-in role.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleDefinition {
    /// Name, e.g. `Contributor`.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// The actions it grants, e.g. `disks/read`.
    pub actions: Vec<String>,
}

/// Body of `POST /v1/tenants`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Name.
    pub name: String,
}

/// Body of `PATCH /v1/tenants/{id}`: the tenant's policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// Allow (or stop allowing) grants of the tenant's customer keys to
    /// principals of other tenants. Grants made while allowed stay until
    /// revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_cross_tenant_key_grants: Option<bool>,
}

/// Body of `POST /v1/folders`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFolder {
    /// Name.
    pub name: String,
    /// Tenant (default: the caller's home tenant, or the parent's).
    pub tenant_id: Option<String>,
    /// Parent folder (absent: the tenant's root).
    pub parent_id: Option<String>,
}

/// Body of `POST /v1/accounts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// Name.
    pub name: String,
    /// Tenant (default: the caller's home tenant, or the folder's).
    pub tenant_id: Option<String>,
    /// Folder (absent: the tenant's root).
    pub folder_id: Option<String>,
}

/// Body of `POST /v1/accounts/{id}/move`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveAccount {
    /// The destination folder of the account's tenant (absent or null: the
    /// tenant's root).
    pub folder_id: Option<String>,
}

/// Body of `POST /v1/principals`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePrincipal {
    /// Name.
    pub name: String,
    /// Home account (default: the caller's).
    pub account_id: Option<String>,
    /// `user` (default) or `service`. Managed identities are created by the
    /// platform with the resource that uses them.
    pub kind: Option<String>,
}

/// Body of `POST /v1/principals/{id}/tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Label, e.g. `ci`.
    pub name: Option<String>,
    /// Lifetime, e.g. `30d`, `12h` (absent: no expiry).
    pub expires_in: Option<String>,
}

/// Body of `POST /v1/role-assignments`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleAssignment {
    /// The principal to give the role (of any account or tenant).
    pub principal_id: String,
    /// Role name, e.g. `Reader`.
    pub role: String,
    /// `/` or a tenant, folder, account, disk or snapshot id.
    pub scope: String,
}

/// A grant on a key (AWS KMS grants): a principal may use the key for the
/// operations listed, until the grant is retired or revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyGrant {
    /// Id, e.g. `grant-0123456789abcdef`.
    pub id: String,
    /// The key.
    pub key_id: String,
    /// Who may use it (a principal of the key's tenant).
    pub grantee_id: String,
    /// The operations allowed: `Describe`, `Encrypt`, `Decrypt`,
    /// `ReEncrypt`, `GenerateDataKey`, `WrapKey`, `UnwrapKey`,
    /// `CreateGrant`.
    pub operations: Vec<String>,
    /// An optional name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A principal that may retire the grant besides its grantee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_principal_id: Option<String>,
    /// Who created it.
    pub created_by: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// `active`, `retired` or `revoked`.
    pub state: String,
    /// The encryption context the grant's operations must name exactly
    /// (absent: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_equals: Option<String>,
}

/// Body of `POST /v1/keys/{id}/grants`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGrant {
    /// The principal to allow (of the key's tenant; another tenant's only
    /// where the key's tenant allows it, which none does yet).
    pub grantee_id: String,
    /// The operations to allow (at least one; see [`KeyGrant::operations`]).
    pub operations: Vec<String>,
    /// A name, to find it again.
    #[serde(default)]
    pub name: Option<String>,
    /// A principal that may retire the grant besides its grantee.
    #[serde(default)]
    pub retiring_principal_id: Option<String>,
    /// Allow the operations only with exactly this encryption context (AWS
    /// `EncryptionContextEquals`). Only `Describe`, `Encrypt`, `Decrypt`,
    /// `ReEncrypt` and `GenerateDataKey` may then be granted.
    #[serde(default)]
    pub context_equals: Option<String>,
}

/// Body of `POST /v1/iam/explain`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// Whose access to explain (default: the caller).
    pub principal_id: Option<String>,
    /// The action, e.g. `disks/delete`.
    pub action: String,
    /// `/` or the id of a tenant, folder, account, disk, snapshot,
    /// principal or role assignment.
    pub resource_id: String,
}

/// The answer of `iam explain`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Explanation {
    /// The principal.
    pub principal_id: String,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource_id: String,
    /// `allow` or `deny`.
    pub decision: Decision,
    /// The HTTP status the principal gets for this action: 200 (allowed),
    /// 403 (it may see the resource, not do this) or 404 (hidden).
    pub status: u16,
    /// The chain of reasons, most decisive first.
    pub reasons: Vec<String>,
    /// The assignment that allows it, if one does.
    pub assignment_id: Option<String>,
}

/// A key vault: keys of one account and region, with its delete rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Vault {
    /// Id, e.g. `kv-0123456789abcdef`.
    pub id: String,
    /// Name, unique in the account until purged.
    pub name: String,
    /// Owner account.
    pub account_id: String,
    /// Region (a vault's keys are used in its region only).
    pub region: String,
    /// Deletes of the vault and its keys are soft (recoverable).
    pub soft_delete: bool,
    /// Days a deleted vault or key stays recoverable.
    pub retention_days: u32,
    /// No purge before the retention period ends.
    pub purge_protection: bool,
    /// `active`, `deleted` (recoverable) or `purged`.
    pub state: Lifecycle,
    /// When it was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    /// When a deleted vault may be (and will at the latest be) purged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_after: Option<String>,
    /// The external key store the vault's keys live in (absent: Coffer's
    /// built-in backend). Its token is never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStoreInfo>,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// An external key store a vault's keys live in, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExternalStoreInfo {
    /// `transit`: an OpenBao or HashiCorp Vault transit engine.
    pub kind: String,
    /// The engine's base URL.
    pub address: String,
    /// Where the transit engine is mounted.
    pub mount: String,
}

/// An external key store for a new vault: `transit`, the vault's keys are
/// the transit keys of the same names in the customer's OpenBao (or
/// HashiCorp Vault), reached with the customer's token; or `pkcs11`, each
/// key version is an AES-256 key generated in a PKCS#11 token (an HSM),
/// never extractable. Either way the key material never enters Coffer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalStore {
    /// `transit` or `pkcs11`.
    pub kind: String,
    /// The engine's base URL, e.g. `http://127.0.0.1:8200`; for `pkcs11`,
    /// a PKCS#11 URI naming module and token, without an object.
    pub address: String,
    /// Where the transit engine is mounted (default `transit`).
    #[serde(default)]
    pub mount: Option<String>,
    /// A token allowed to read, create and rotate the vault's transit keys
    /// and to encrypt and decrypt with them; for `pkcs11`, the token's user
    /// PIN (empty when the URI has a `pin-source` the server reads). Stored
    /// wrapped by the root key, never shown.
    #[serde(default)]
    pub token: String,
}

/// Body of `POST /v1/vaults`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVault {
    /// Name (1-80 letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Region (default: the deployment's first region).
    #[serde(default)]
    pub region: Option<String>,
    /// The owning account (default: the caller's home account).
    #[serde(default)]
    pub account_id: Option<String>,
    /// Soft delete (default true). Required for disk encryption.
    #[serde(default)]
    pub soft_delete: Option<bool>,
    /// Days a deleted vault or key stays recoverable, 7-90 (default 90).
    #[serde(default)]
    #[schema(minimum = 7, maximum = 90)]
    pub retention_days: Option<u32>,
    /// Purge protection (default false; once on, it stays on). Required
    /// for disk encryption.
    #[serde(default)]
    pub purge_protection: Option<bool>,
    /// Keep the vault's keys in this external key store instead of in
    /// Coffer.
    #[serde(default)]
    pub external: Option<ExternalStore>,
}

/// Body of `PATCH /v1/vaults/{id}`: soft delete and purge protection can
/// only be turned on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVault {
    /// Turn soft delete on.
    #[serde(default)]
    pub soft_delete: Option<bool>,
    /// Days a deleted vault or key stays recoverable, 7-90.
    #[serde(default)]
    #[schema(minimum = 7, maximum = 90)]
    pub retention_days: Option<u32>,
    /// Turn purge protection on.
    #[serde(default)]
    pub purge_protection: Option<bool>,
    /// A new token for the vault's transit engine (the old one expiring or
    /// revoked); stored wrapped by the root key, never shown.
    #[serde(default)]
    pub transit_token: Option<String>,
}

/// A key in a vault (never its material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Key {
    /// Id, e.g. `key-0123456789abcdef`.
    pub id: String,
    /// Name, unique in the vault until purged.
    pub name: String,
    /// The vault.
    pub vault_id: String,
    /// Owner account.
    pub account_id: String,
    /// Region.
    pub region: String,
    /// `AES256`, `RSA2048`, `RSA3072` or `RSA4096`.
    pub key_type: String,
    /// `enabled` or `disabled`.
    pub enabled: KeyState,
    /// `active`, `deleted` (recoverable) or `purged`.
    pub state: Lifecycle,
    /// The version new wraps and encryptions use.
    pub current_version: u32,
    /// Not usable before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Not usable from this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Rotated automatically this many days after its newest version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_days: Option<u32>,
    /// When it was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    /// When a deleted key may be (and will at the latest be) purged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_after: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyVersion {
    /// Version number, from 1.
    pub version: u32,
    /// `generated` (in the vault) or `imported`.
    pub origin: String,
    /// The public key (PEM) of an RSA version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// Body of `POST /v1/vaults/{id}/keys`: generate a key in the vault, or
/// import one (`material`, or `wrapped_material` under the vault's import
/// key).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Name (1-80 letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// `AES256` (default), `RSA2048`, `RSA3072` or `RSA4096`.
    #[serde(default)]
    pub key_type: Option<String>,
    /// Key material to import, base64: 32 raw bytes for AES256, an RSA
    /// private key as PKCS#8 DER (or its PEM text) for RSA.
    #[serde(default)]
    pub material: Option<String>,
    /// Key material wrapped under the vault's import key (see `GET
    /// /v1/vaults/{id}/import-key`), base64.
    #[serde(default)]
    pub wrapped_material: Option<String>,
    /// Create it disabled.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Not usable before this time (RFC 3339).
    #[serde(default)]
    pub not_before: Option<String>,
    /// Not usable from this time (RFC 3339).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Rotate automatically this many days after the newest version
    /// (1-3650).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    pub rotation_days: Option<u32>,
}

/// Body of `PATCH /v1/keys/{id}`; an empty string clears a time or period.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    /// Enable (true) or disable (false) the key: a disabled key wraps,
    /// unwraps, encrypts and decrypts nothing.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Not usable before this time (RFC 3339, or "" to clear).
    #[serde(default)]
    pub not_before: Option<String>,
    /// Not usable from this time (RFC 3339, or "" to clear).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Rotation period in days (1-3650, or 0 to turn automatic rotation off).
    #[serde(default)]
    #[schema(maximum = 3650)]
    pub rotation_days: Option<u32>,
}

/// Body of `POST /v1/keys/{id}/rotate`: a new version, generated or
/// imported.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// Material of the new version to import (as for creating a key).
    #[serde(default)]
    pub material: Option<String>,
    /// Material of the new version wrapped under the vault's import key.
    #[serde(default)]
    pub wrapped_material: Option<String>,
}

/// The public part of a vault's import key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportKey {
    /// The vault.
    pub vault_id: String,
    /// `RSA3072`.
    pub key_type: String,
    /// The public key (PEM). Wrap material for import as a random AES-256
    /// key under RSA-OAEP-SHA-256 followed by the material under that key
    /// with AES-KWP (RFC 5649), the whole prefixed `rsa-aes-kwp1:`
    /// (`coffer key import --wrap` does this for you).
    pub public_key: String,
}

/// One entry of the audit log of key use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Place in the log's hash chain, from 1.
    pub seq: u64,
    /// Time (RFC 3339).
    pub at: String,
    /// The principal that used the key.
    pub principal_id: String,
    /// Whose request it was (the principal itself, a human behind a
    /// managed identity, or a node).
    pub acting_for: String,
    /// What was done: `create`, `rotate`, `wrap`, `unwrap`, ...
    pub action: String,
    /// The key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The key version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u32>,
    /// What it was for.
    pub resource: String,
    /// `allowed`, `denied` or `failed`.
    pub outcome: String,
    /// Why, for a denial or failure.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The entry's hash in the chain (hex).
    pub hash: String,
}

/// The answer of `POST /v1/audit/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditVerification {
    /// Whether the whole chain verifies.
    pub ok: bool,
    /// Entries checked (up to the first problem).
    pub entries: u64,
    /// The head's seq.
    pub head_seq: u64,
    /// The head's hash: keep it elsewhere to detect a rollback later.
    pub head_hash: String,
    /// The first problem found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Body of `POST /v1/keys/{id}/encrypt`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptRequest {
    /// The data, base64: at most 4 KiB for an AES key (encrypt more under a
    /// data key), at most what RSA-OAEP-SHA-256 takes for an RSA key.
    pub plaintext: String,
    /// Encryption context: any text, bound to the ciphertext; decrypt must
    /// give the same.
    #[serde(default)]
    pub context: Option<String>,
}

/// Body of `POST /v1/keys/{id}/decrypt`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecryptRequest {
    /// A ciphertext from encrypt or generate-data-key of this key
    /// (`coffer:vN:…`).
    pub ciphertext: String,
    /// The encryption context it was made with.
    #[serde(default)]
    pub context: Option<String>,
}

/// Body of `POST /v1/keys/{id}/wrap`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WrapRequest {
    /// The key to wrap, base64 (16 to 512 bytes; an RSA key wraps at most
    /// what RSA-OAEP-SHA-256 takes).
    pub key: String,
}

/// Body of `POST /v1/keys/{id}/unwrap`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnwrapRequest {
    /// A wrapped key from wrap of this key (`coffer:vN:…`).
    pub ciphertext: String,
}

/// Body of `POST /v1/keys/{id}/generate-data-key`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateDataKeyRequest {
    /// Encryption context bound to the encrypted copy.
    #[serde(default)]
    pub context: Option<String>,
}

/// Body of `POST /v1/keys/{id}/re-encrypt`: decrypt under this key and
/// encrypt under another, in the vault, without the plaintext leaving it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReEncryptRequest {
    /// A ciphertext of this key.
    pub ciphertext: String,
    /// Its encryption context.
    #[serde(default)]
    pub context: Option<String>,
    /// The key to encrypt under (`keys/encrypt` needed there).
    pub destination_key_id: String,
    /// The encryption context of the new ciphertext.
    #[serde(default)]
    pub destination_context: Option<String>,
}

/// What a key operation returns. Ciphertexts read `coffer:vN:BASE64`, N
/// the key version that made them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyOperationResult {
    /// The key used.
    pub key_id: String,
    /// Its version used.
    pub version: u32,
    /// The ciphertext or wrapped key made (encrypt, wrap,
    /// generate-data-key, re-encrypt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<String>,
    /// The plaintext or key recovered (decrypt, unwrap), or the new data
    /// key (generate-data-key), base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<String>,
}

impl std::fmt::Debug for KeyOperationResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyOperationResult")
            .field("key_id", &self.key_id)
            .field("version", &self.version)
            .field("ciphertext", &self.ciphertext)
            .field("plaintext", &self.plaintext.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// A secret of a key vault (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Secret {
    /// Id, e.g. `sec-0123456789abcdef`.
    pub id: String,
    /// Name, unique in the vault until purged.
    pub name: String,
    /// The vault.
    pub vault_id: String,
    /// The vault's account.
    pub account_id: String,
    /// The newest version (what `value` returns by default).
    pub current_version: u32,
    /// The caller's label of what the value is, e.g. `text/plain`.
    pub content_type: String,
    /// `active`, `deleted` (recoverable) or `purged`.
    pub state: Lifecycle,
    /// When it was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    /// When a deleted secret may be (and will at the latest be) purged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_after: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// When the newest version was set.
    pub updated_at: String,
}

/// Body of `POST /v1/vaults/{id}/secrets`: a new secret, or a new version
/// of the one of that name.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSecret {
    /// Name (1-80 letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// The value, base64 (1 byte to 25 KiB once decoded).
    pub value: String,
    /// A label of what the value is (default `application/octet-stream`).
    #[serde(default)]
    pub content_type: Option<String>,
}

impl std::fmt::Debug for SetSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetSecret")
            .field("name", &self.name)
            .field("value", &REDACTED)
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// A secret's value, as `GET /v1/secrets/{id}/value` returns it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretValue {
    /// The secret.
    pub secret_id: String,
    /// Its name.
    pub name: String,
    /// The version returned.
    pub version: u32,
    /// Its content type.
    pub content_type: String,
    /// The value, base64.
    pub value: String,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValue")
            .field("secret_id", &self.secret_id)
            .field("version", &self.version)
            .field("value", &REDACTED)
            .finish()
    }
}

/// A disk encryption set: the customer key that protects the disks and
/// snapshots made with it, and the managed identity that reaches the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EncryptionSet {
    /// Id, e.g. `des-0123456789abcdef`.
    pub id: String,
    /// Name, unique in the account.
    pub name: String,
    /// Owner account.
    pub account_id: String,
    /// Region (the key's).
    pub region: String,
    /// `customer` (the customer key alone) or `double` (a platform layer
    /// too).
    pub encryption_type: EncryptionType,
    /// The customer key.
    pub key_id: String,
    /// The key version it uses: pinned, or absent for always the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u32>,
    /// The managed identity created with the set (a principal of kind
    /// `managed`): give it the role Key Vault Crypto Service Encryption
    /// User on the key (or the vault).
    pub identity_id: String,
    /// Whether the identity may now read, wrap and unwrap with the key (if
    /// not, disks under the set cannot be created or opened).
    pub identity_has_key_access: bool,
    /// How far the set's data keys follow its key: after a rotation (or
    /// the set pointed at another key or version) they are re-wrapped in
    /// the background, without rewriting any data.
    pub rewrap: RewrapProgress,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// Progress of re-wrapping a set's data keys under the key version it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RewrapProgress {
    /// The key version the data keys are (being) wrapped under.
    pub key_version: u32,
    /// Data keys made through the set (one per disk and per disk made from
    /// its snapshots).
    pub data_keys: u64,
    /// How many of them that version already wraps.
    pub data_keys_current: u64,
    /// Whether every data key is wrapped under `key_version`.
    pub complete: bool,
}

/// Body of `POST /v1/encryption-sets`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEncryptionSet {
    /// Name (1-80 letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// The customer key (its vault needs soft delete and purge protection).
    pub key_id: String,
    /// Pin this key version (default: always the key's newest).
    #[serde(default)]
    pub key_version: Option<u32>,
    /// `customer` (default), or `double`: disks under the set get a second,
    /// outer data layer under the region's platform key.
    #[serde(default)]
    pub encryption_type: Option<EncryptionType>,
    /// The owning account (default: the caller's home account).
    #[serde(default)]
    pub account_id: Option<String>,
}

/// Body of `PATCH /v1/encryption-sets/{id}`: point the set at another key
/// of the region, or pin or unpin a version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEncryptionSet {
    /// The key (default: the set's current one).
    #[serde(default)]
    pub key_id: Option<String>,
    /// Pin this version; 0 unpins (always the newest).
    #[serde(default)]
    pub key_version: Option<u32>,
}

/// Make an export: another deployment's read access to a snapshot or an
/// image, by a pull token (a copy between two deployments, read by the
/// receiving deployment's import).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExport {
    /// Hours the pull token works, 1 to 168 (default 24).
    #[serde(default)]
    pub expires_in_hours: Option<u32>,
}

/// An export, as its creator sees it; its pull token only in the answer
/// that made it (never in its `Debug` form).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Export {
    /// Id, e.g. `exp-0123456789abcdef`.
    pub id: String,
    /// `snapshot` or `image`.
    pub kind: String,
    /// The snapshot or image exported.
    pub source_id: String,
    /// Its account.
    pub account_id: String,
    /// The exporting deployment's id (a receiver tells two senders'
    /// lineages apart with it).
    pub deployment_id: String,
    /// `active`, `expired` or `revoked`.
    pub state: String,
    /// When the pull token stops working (RFC 3339).
    pub expires_at: String,
    /// Creation time.
    pub created_at: String,
    /// The exported snapshots.
    pub members: Vec<ExportMember>,
    /// The pull token: shown once, in the answer that made the export.
    /// Give it to the receiving deployment's import; it reads this export
    /// and nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// One exported snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExportMember {
    /// `root` for a snapshot export; the snapshot's role in an image.
    pub role: String,
    /// The snapshot.
    pub snapshot_id: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its chunk size in bytes.
    pub chunk_size: u32,
    /// Its lineage (the sender's volume): two exports of views of one
    /// lineage name the same, so a receiver's copy can be incremental.
    pub lineage: String,
    /// The view's generation in its lineage.
    pub generation: u64,
}

/// A stretch of an exported snapshot: data, or a hole that reads as zeroes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExportRun {
    /// Bytes.
    pub length: u64,
    /// `true` for a hole.
    pub hole: bool,
}

/// The chunks of an exported snapshot that changed since an earlier view of
/// its lineage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExportChanged {
    /// Chunk indexes, ascending.
    pub chunks: Vec<u64>,
}

/// The sender's BLAKE3 hash of an exported snapshot's data (its allocated
/// pieces, each prefixed by its offset as 8 little-endian bytes), computed
/// on its side: whole, or over the chunks changed since a generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExportHash {
    /// `blake3:<64 hex digits>`.
    pub hash: String,
}

/// Import a snapshot or image another deployment exported: a copy job here
/// reads it over HTTPS with the export's pull token and re-encrypts it
/// under this deployment's keys.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateImport {
    /// Name of the copy (a snapshot, or an image).
    pub name: String,
    /// The sending deployment's API, e.g. `https://coffer.site-a:7070`.
    pub endpoint: String,
    /// The export's id.
    pub export_id: String,
    /// The export's pull token.
    pub token: String,
    /// The CA certificate (PEM) that signs the sender's TLS certificate,
    /// when it is not one the system trusts.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// The account that will own the copy (default: the caller's home).
    #[serde(default)]
    pub account_id: Option<String>,
    /// The region the copy is made in (default: the first region).
    #[serde(default)]
    pub target_region: Option<String>,
    /// Encrypt under this encryption set's key (default: the region's
    /// platform key).
    #[serde(default)]
    pub encryption_set_id: Option<String>,
    /// Tags of the copy.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// An import started: its jobs, and what they make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Import {
    /// `snapshot` or `image`.
    pub kind: String,
    /// The snapshot, or the image (pending until its jobs succeed), made.
    pub target_id: String,
    /// The copy jobs, one per snapshot.
    pub jobs: Vec<Job>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("source_id", &self.source_id)
            .field("account_id", &self.account_id)
            .field("state", &self.state)
            .field("expires_at", &self.expires_at)
            .field("members", &self.members)
            .field("token", &self.token.as_ref().map(|_| REDACTED))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for CreateImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateImport")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("export_id", &self.export_id)
            .field("token", &REDACTED)
            .field("target_region", &self.target_region)
            .finish_non_exhaustive()
    }
}
