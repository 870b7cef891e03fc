//! The HTTP API's wire format, shared by the server (`coffer-api`, which
//! derives the OpenAPI document from these types) and the client (the
//! `coffer` CLI, which decodes responses into them): the resources and the
//! requests that create them ([`model`]), the one list of error codes with
//! their HTTP statuses ([`error`]), and the page every list returns
//! ([`page`]).
//!
//! This crate sits beside `coffer-types` at the bottom of the workspace: it
//! knows nothing of storage, keys or HTTP servers, so a client can use it
//! without pulling in the server.

pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod model;
pub mod page;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use model::*;
pub use page::{
    AccountQuery, AssignmentQuery, AuditQuery, DiskQuery, EncryptionSetQuery, FolderQuery,
    ImageQuery, InvitationQuery, JobQuery, JobWaitQuery, KeyQuery, ListParams, MAX_JOB_WAIT_MS,
    MAX_PAGE, Page, PrincipalQuery, SecretQuery, SecretValueQuery, ShareQuery, SnapshotQuery,
    TenantQuery, TokenQuery, UsageQuery, VaultQuery,
};
