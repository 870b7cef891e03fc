//! Every error code the API can return, in one place: its HTTP status and
//! what it means. The server builds errors only from these codes, the API
//! maps each to its status here (nowhere else), the OpenAPI document lists
//! them per operation, and the CLI decodes them.
//!
//! A code is part of the API's contract: never rename or reuse one; add new
//! ones at the end of their status group.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The error body of every failed request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a human message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine code, e.g. `DiskNotFound`.
    pub code: ErrorCode,
    /// What went wrong and what to do next.
    pub message: String,
}

macro_rules! codes {
    ($($(#[doc = $doc:literal])+ $name:ident = $status:literal,)+) => {
        /// A stable, machine-readable error code. Each has one HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $name,)+
        }

        impl ErrorCode {
            /// Every code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),+];

            /// The HTTP status of this code.
            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$name => $status,)+
                }
            }

            /// The code as sent, e.g. `DiskNotFound`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => stringify!($name),)+
                }
            }

            /// What the code means (its doc line).
            pub fn doc(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => concat!($($doc),+).trim_ascii(),)+
                }
            }
        }
    };
}

codes! {
    // 400: the request is malformed or invalid; nothing changed.
    /// A request body that does not match the operation's schema.
    InvalidBody = 400,
    /// A request body that is not JSON.
    MalformedJson = 400,
    /// A body without `Content-Type: application/json` (415).
    UnsupportedMediaType = 415,
    /// A request body over the size limit (413).
    BodyTooLarge = 413,
    /// A request target (path and query) over the length limit (414).
    UriTooLong = 414,
    /// The request's body did not arrive within the body timeout (408); the
    /// connection is closed.
    RequestTimeout = 408,
    /// This client address has as many connections open as the server
    /// allows one address (429); the connection is closed.
    TooManyConnections = 429,
    /// A query string the operation does not take.
    InvalidQuery = 400,
    /// A malformed id, or an id of the wrong kind.
    InvalidId = 400,
    /// A name that breaks the naming rule (1-80 letters, digits, `.`, `_`, `-`).
    InvalidName = 400,
    /// A size out of range or not a whole number of MiB.
    InvalidSize = 400,
    /// A disk from nothing needs a size.
    MissingSize = 400,
    /// Disks only grow.
    ShrinkNotAllowed = 400,
    /// No such zone in this deployment.
    UnknownZone = 400,
    /// No such built-in role.
    UnknownRole = 400,
    /// No such action.
    UnknownAction = 400,
    /// A scope that is not `/` or an id of a tenant, folder, account or resource.
    InvalidScope = 400,
    /// A principal kind that cannot be created this way.
    InvalidKind = 400,
    /// Managed identities are created by the platform, not by callers.
    ManagedIdentity = 400,
    /// The tenant named does not match the folder's or account's.
    TenantMismatch = 400,
    /// Folders nest at most a few levels deep.
    FolderTooDeep = 400,
    /// A duration that does not parse, or is out of range (a token lives
    /// 1 minute to 10 years).
    InvalidDuration = 400,
    /// A token may not outlive the token that creates it (for any principal).
    TokenOutlivesCaller = 400,
    /// A `limit` out of range, or a `next` token this list did not issue.
    InvalidPage = 400,
    /// A list filter this resource kind does not have, or a bad filter value.
    InvalidFilter = 400,
    /// A name that matches several resources: use the id.
    AmbiguousName = 400,
    /// A soft-delete retention outside 7-90 days.
    InvalidRetention = 400,
    /// A key type other than AES256, RSA2048, RSA3072 or RSA4096.
    InvalidKeyType = 400,
    /// Imported key material that is not a key of the type given.
    InvalidKeyMaterial = 400,
    /// A ciphertext or wrapped key that this key did not make, was
    /// modified, or was made with another context.
    InvalidCiphertext = 400,
    /// A key operation this key type does not do, or a bad time or
    /// period setting.
    InvalidKeyOperation = 400,
    /// No such region in this deployment.
    UnknownRegion = 400,
    /// A secret value that is empty, over 25 KiB, or not what its
    /// encoding says.
    InvalidSecret = 400,
    /// A tag that is not `KEY=VALUE` within the limits, a reserved key, or
    /// more than 50 tags on one resource.
    InvalidTag = 400,
    /// A byte or chunk range outside the resource, or over a request's
    /// limit.
    InvalidRange = 400,
    // 401
    /// No token, or a token that is unknown, expired or revoked.
    Unauthenticated = 401,
    // 403
    /// The caller may see the resource but not do this to it.
    AuthorizationFailed = 403,
    /// A grant to a principal of another tenant, which the key's tenant
    /// does not allow.
    CrossTenantGrant = 403,
    /// The resource is under a customer key the caller's account holds no
    /// grant on: ask the key's owner for a grant.
    KeyNotShared = 403,
    // 404: absent, or hidden from the caller (the two look the same).
    /// No such API route.
    RouteNotFound = 404,
    /// No such disk (or you may not see it).
    DiskNotFound = 404,
    /// No such snapshot (or you may not see it).
    SnapshotNotFound = 404,
    /// No such tenant (or you may not see it).
    TenantNotFound = 404,
    /// No such folder (or you may not see it).
    FolderNotFound = 404,
    /// No such account (or you may not see it).
    AccountNotFound = 404,
    /// No such principal (or you may not see it).
    PrincipalNotFound = 404,
    /// No such token (or you may not see it).
    TokenNotFound = 404,
    /// No such role assignment (or you may not see it).
    RoleAssignmentNotFound = 404,
    /// No such key (or you may not see it).
    KeyNotFound = 404,
    /// No such attachment (or you may not see it).
    AttachmentNotFound = 404,
    /// No such node.
    NodeNotFound = 404,
    /// No such key vault (or you may not see it).
    VaultNotFound = 404,
    /// No such secret, or no such version of it (or you may not see it).
    SecretNotFound = 404,
    /// No such disk encryption set (or you may not see it).
    EncryptionSetNotFound = 404,
    /// No such grant, or it was retired or revoked (or you may not see it).
    GrantNotFound = 404,
    /// No such image (or you may not see it).
    ImageNotFound = 404,
    /// No such resource share (or you may not see it).
    ShareNotFound = 404,
    /// No such invitation (or it is not addressed to your account).
    InvitationNotFound = 404,
    /// No such job (or you may not see it).
    JobNotFound = 404,
    /// No such export, or a pull token that does not open it (wrong,
    /// expired or revoked): ask the sender for a new export.
    ExportNotFound = 404,
    // 405
    /// The route does not take that method.
    MethodNotAllowed = 405,
    // 409: the resource's state forbids the operation now.
    /// The disk is attached: detach it first.
    DiskAttached = 409,
    /// The disk is not attached.
    DiskNotAttached = 409,
    /// The disk was detached while the operation ran.
    DiskDetached = 409,
    /// A folder with folders or accounts in it cannot be deleted.
    FolderNotEmpty = 409,
    /// The principal already holds that role at that scope.
    RoleAssignmentExists = 409,
    /// A principal cannot delete itself.
    CannotDeleteSelf = 409,
    /// A resource of this kind with that name already exists in the account.
    NameTaken = 409,
    /// A concurrent change won: retry.
    Conflict = 409,
    /// The operation would leave the deployment without an Owner.
    LastOwner = 409,
    /// The vault or key is soft-deleted: recover it first.
    ResourceDeleted = 409,
    /// Only a soft-deleted vault or key can be recovered or purged.
    NotDeleted = 409,
    /// Purge protection forbids purging before the retention period ends.
    PurgeProtected = 409,
    /// Soft delete and purge protection, once on, stay on.
    Irreversible = 409,
    /// Disks or snapshots are under this encryption set: delete them first.
    EncryptionSetInUse = 409,
    /// The snapshot belongs to an image: delete the image instead.
    SnapshotInUse = 409,
    /// The invitation was already answered.
    InvitationAnswered = 409,
    /// An account limit (shares, principals or resources per share, accounts
    /// a resource is shared with) would be passed.
    QuotaExceeded = 409,
    // 422
    /// A snapshot of another region: copy it there first.
    RegionMismatch = 422,
    /// The key protecting the data is disabled or deleted.
    KeyUnusable = 422,
    /// The key's vault lacks soft delete or purge protection, which disk
    /// encryption requires.
    VaultNotProtected = 422,
    /// The data is under a customer-managed key of one account: it cannot
    /// be shared with another tenant or made into a disk of another account
    /// (share a copy under the platform key instead).
    CustomerKeyBoundary = 422,
    /// A disk made from, or a copy of, another account's customer-key
    /// resource must name a key of the caller's own (an encryption set).
    KeyRequired = 422,
    /// The principal cannot be named by this share (outside the tenant of
    /// a tenant-scoped share, or not an account, folder or tenant).
    InvalidPrincipal = 422,
    /// The resource cannot be shared this way (a kind a share does not
    /// take, another region, or a customer-key resource shared publicly).
    NotShareable = 422,
    // 500
    /// A bug or an unexpected failure: the message carries a correlation id
    /// to find the detail in the server's log.
    InternalError = 500,
    /// Stored data failed authentication (tampering or corruption).
    IntegrityError = 500,
    // 503: retry later.
    /// The disk is open on another node that could not be reached.
    HeldByOtherNode = 503,
    /// This server has no NBD listener.
    NbdUnavailable = 503,
    /// The disk moved to another node during the operation: retry.
    DiskMoved = 503,
    /// This node lost the disk to another (its lease passed): attach again.
    NodeFenced = 503,
    /// The listener has as many connections open as it allows: retry later.
    ServerBusy = 503,
    /// The object store of the region the request needs does not answer:
    /// other regions go on working; retry once it is back.
    RegionUnavailable = 503,
    /// The other deployment of an import did not answer, or answered
    /// something that is not an export: check the endpoint and its CA.
    RemoteUnavailable = 503,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_status_an_http_client_understands_and_a_doc() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert!(
                matches!(c.status(), 400..=599),
                "{c}: {} is not an error status",
                c.status()
            );
            assert!(!c.doc().is_empty(), "{c} has no doc");
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert_eq!(ErrorCode::DiskNotFound.status(), 404);
        assert_eq!(ErrorCode::DiskAttached.status(), 409);
    }
}
