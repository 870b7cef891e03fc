//! Paginated lists. Every `GET` of a collection answers one [`Page`] of at
//! most `limit` items in a stable order (creation time, then id) with a
//! `next` token while more remain; pass it back as `next=` to get the
//! following page. Tokens are opaque to clients: today they encode the last
//! item's sort key, so a page never repeats or skips an item that existed
//! when the listing began, whatever is created or deleted in between.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The most items one page holds (and the default).
pub const MAX_PAGE: u32 = 1000;

/// The default page size.
pub const DEFAULT_PAGE: u32 = 100;

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// The items of this page, in creation order.
    pub items: Vec<T>,
    /// Pass as `next=` to get the following page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// A page holding all of `items` (a list that is never long).
    pub fn all(items: Vec<T>) -> Self {
        Self { items, next: None }
    }
}

/// The query of every paginated list, as the service takes it: paging and
/// the union of every kind's filters. Each route declares (and the API
/// decodes) only the filters its kind has: see the `list_query!` macro below.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListParams {
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` token of the previous page.
    pub next: Option<String>,
    /// Only items with this exact name.
    pub name: Option<String>,
    /// Only items of this account.
    pub account: Option<String>,
    /// Only items in this zone.
    pub zone: Option<String>,
    /// Only items in this state.
    pub state: Option<String>,
    /// Only items of this tenant.
    pub tenant: Option<String>,
    /// Only items of this principal.
    pub principal: Option<String>,
    /// Only items at this scope.
    pub scope: Option<String>,
    /// Only disks made from this snapshot.
    pub source_snapshot: Option<String>,
    /// Only snapshots taken from this disk.
    pub source_disk: Option<String>,
    /// Only disks launched from this image.
    pub source_image: Option<String>,
    /// Only items with this tag, `KEY=VALUE`.
    pub tag: Option<String>,
    /// Only images or snapshots shared with the caller's account by other
    /// accounts (`true`), or only the caller's own (`false`).
    pub shared: Option<String>,
}

impl ListParams {
    /// The page size asked for (default 100), or `None` if out of range.
    pub fn page_size(&self) -> Option<u32> {
        match self.limit {
            None => Some(DEFAULT_PAGE),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Some(n),
            Some(_) => None,
        }
    }
}

/// Declare the query of one kind's list: `limit`, `next` and the named
/// filters (each an optional string of [`ListParams`]), decoded with
/// unknown parameters refused, documented as query parameters, and
/// converted into [`ListParams`].
#[macro_export]
macro_rules! list_query {
    ($(#[$m:meta])* $name:ident { $($(#[doc = $doc:literal])* $field:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::IntoParams)]
        #[serde(deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            /// Items per page, 1 to 1000 (default 100).
            #[param(minimum = 1, maximum = 1000)]
            pub limit: Option<u32>,
            /// The `next` token of the previous page.
            pub next: Option<String>,
            $($(#[doc = $doc])* pub $field: Option<String>,)*
        }

        impl From<$name> for $crate::ListParams {
            fn from(q: $name) -> Self {
                $crate::ListParams {
                    limit: q.limit,
                    next: q.next,
                    $($field: q.$field,)*
                    ..Default::default()
                }
            }
        }
    };
}

list_query! {
    /// Query of `GET /v1/disks`.
    DiskQuery {
        /// Only disks with this exact name.
        name,
        /// Only disks of this account.
        account,
        /// Only disks in this zone.
        zone,
        /// Only disks in this state: `available` or `attached`.
        state,
        /// Only disks made from this snapshot.
        source_snapshot,
        /// Only disks launched from this image.
        source_image,
        /// Only disks with this tag, `KEY=VALUE`.
        tag,
    }
}

list_query! {
    /// Query of `GET /v1/snapshots`.
    SnapshotQuery {
        /// Only snapshots with this exact name.
        name,
        /// Only snapshots of this account.
        account,
        /// Only snapshots taken from this disk (also after it was deleted).
        source_disk,
        /// Only snapshots with this tag, `KEY=VALUE`.
        tag,
        /// `true`: only snapshots other accounts share with the caller's;
        /// `false`: only the caller's own.
        shared,
    }
}

list_query! {
    /// Query of `GET /v1/images`.
    ImageQuery {
        /// Only images with this exact name.
        name,
        /// Only images of this account.
        account,
        /// Only images with this tag, `KEY=VALUE`.
        tag,
        /// `true`: only images other accounts share with the caller's;
        /// `false`: only the caller's own.
        shared,
    }
}

list_query! {
    /// Query of `GET /v1/jobs`.
    JobQuery {
        /// Only jobs making a snapshot of this exact name.
        name,
        /// Only jobs of this account (the account that gets the copy).
        account,
        /// Only jobs in this state: `running`, `succeeded`, `failed` or
        /// `cancelled`.
        state,
    }
}

list_query! {
    /// Query of `GET /v1/invitations`.
    InvitationQuery {
        /// The invited account (default: the caller's).
        account,
    }
}

list_query! {
    /// Query of `GET /v1/shares`.
    ShareQuery {
        /// Only shares with this exact name.
        name,
        /// Only shares of this account.
        account,
        /// `true`: the shares other accounts share with the caller's
        /// account (in force or invited); default: the caller's own.
        shared,
    }
}

list_query! {
    /// Query of `GET /v1/tenants`.
    TenantQuery {
        /// Only the tenant with this exact name.
        name,
    }
}

list_query! {
    /// Query of `GET /v1/folders`.
    FolderQuery {
        /// The tenant (default: the caller's).
        tenant,
        /// Only folders with this exact name.
        name,
    }
}

list_query! {
    /// Query of `GET /v1/accounts`.
    AccountQuery {
        /// Only accounts of this tenant (default: every tenant the caller sees).
        tenant,
        /// Only the account with this exact name.
        name,
    }
}

list_query! {
    /// Query of `GET /v1/principals`.
    PrincipalQuery {
        /// The account (default: the caller's).
        account,
        /// Only principals with this exact name.
        name,
    }
}

list_query! {
    /// Query of `GET /v1/role-assignments`.
    AssignmentQuery {
        /// Only this principal's.
        principal,
        /// Only those made at this scope (`/` or an id).
        scope,
    }
}

list_query! {
    /// Query of `GET /v1/principals/{id}/tokens`.
    TokenQuery {}
}

list_query! {
    /// Query of `GET /v1/vaults`.
    VaultQuery {
        /// Only vaults with this exact name.
        name,
        /// Only vaults of this account.
        account,
        /// `active` (default) or `deleted` (soft-deleted, recoverable).
        state,
    }
}

list_query! {
    /// Query of `GET /v1/vaults/{id}/keys`.
    KeyQuery {
        /// `active` (default) or `deleted` (soft-deleted, recoverable).
        state,
    }
}

/// Query of `GET /v1/audit`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next` token of the previous page.
    pub next: Option<String>,
    /// Only entries about this key.
    pub key: Option<String>,
    /// Only entries by, or on behalf of, this principal.
    pub principal: Option<String>,
    /// Only entries about this resource id.
    pub resource: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only entries before this time (RFC 3339).
    pub until: Option<String>,
}

list_query! {
    /// Query of `GET /v1/vaults/{id}/secrets`.
    SecretQuery {
        /// `active` (default) or `deleted` (soft-deleted, recoverable).
        state,
    }
}

/// Query of `GET /v1/accounts/{id}/usage`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Only samples at or after this time (RFC 3339).
    pub since: Option<String>,
}

/// The longest a `GET /v1/jobs/{id}` may wait (`wait_ms`): 30 s.
pub const MAX_JOB_WAIT_MS: u64 = 30_000;

/// Query of `GET /v1/jobs/{id}`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobWaitQuery {
    /// While the job is running, hold the answer up to this many
    /// milliseconds (at most 30000): it comes as soon as the job is no
    /// longer running, or when the time is up, with the job as it is then
    /// (its progress). Default 0: at once. A client waiting for a job
    /// polls with it instead of sleeping between polls.
    #[param(minimum = 0, maximum = 30000)]
    pub wait_ms: Option<u64>,
}

/// Query of `GET /v1/secrets/{id}/value`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SecretValueQuery {
    /// The version (default: the newest).
    #[param(minimum = 1)]
    pub version: Option<u32>,
}

list_query! {
    /// Query of `GET /v1/encryption-sets`.
    EncryptionSetQuery {
        /// Only sets with this exact name.
        name,
        /// Only sets of this account.
        account,
    }
}
