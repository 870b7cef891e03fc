//! The resources as the API shows them and the requests that create them.
//! These types are the wire format of the HTTP API (and so of the CLI); the
//! OpenAPI document is generated from them. States and kinds are the
//! enums of `coffer_types::state`, so the document lists their values.

use coffer_types::{Decision, DiskState, EncryptionType, PrincipalKind, SnapshotState, TokenState};
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
    /// another account or tenant that gave the caller `snapshots/read` on it.
    pub source_snapshot_id: Option<String>,
    /// The account that will own the disk (default: the caller's home
    /// account). The caller needs `disks/write` there.
    #[serde(default)]
    pub account_id: Option<String>,
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
