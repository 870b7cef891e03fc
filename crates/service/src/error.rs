//! The service's error: a stable machine code, a kind that decides the HTTP
//! status (mapped in exactly one place, the API crate), and a message that
//! says what went wrong and what to do next.

use coffer_meta::MetaError;
use coffer_volume::VolumeError;

/// What class of failure; the API maps each to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed or invalid input (400).
    InvalidArgument,
    /// No or bad credentials (401).
    Unauthenticated,
    /// Authenticated but not allowed (403).
    Forbidden,
    /// No such resource, or not visible to the caller (404).
    NotFound,
    /// The resource's state forbids the operation (409).
    Conflict,
    /// Well-formed but semantically refused (422).
    Unprocessable,
    /// A dependency is unavailable (503).
    Unavailable,
    /// A bug or an unexpected failure (500).
    Internal,
}

/// A service error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    /// Class.
    pub kind: ErrorKind,
    /// Stable machine-readable code, e.g. `DiskNotFound`.
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// The API address of the node that can answer this request (a disk
    /// held by another node); the HTTP layer forwards the request there.
    pub forward_to: Option<String>,
}

impl ServiceError {
    /// Build an error.
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
            forward_to: None,
        }
    }

    /// 503 that names the node holding the disk, at `api_url`: the HTTP
    /// layer forwards the request there (once) instead of returning it, so
    /// callers see this only when that node cannot be reached.
    pub fn elsewhere(node: &str, api_url: &str, what: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            ErrorKind::Unavailable,
            "HeldByOtherNode",
            format!(
                "{what} is open on node {node}, which could not be reached: retry, or wait until its lease passes"
            ),
        );
        e.forward_to = Some(api_url.to_string());
        e
    }

    /// 400 with `code`.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, code, message)
    }

    /// 404 for a resource of `noun` with id `id`.
    pub fn not_found(code: &'static str, noun: &str, id: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorKind::NotFound,
            code,
            format!(
                "{noun} '{id}' not found (or you may not see it); list yours with `coffer {noun} list`"
            ),
        )
    }

    /// 409 with `code`.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    /// 500; the detail is logged, the caller sees a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            ErrorKind::Internal,
            "InternalError",
            format!("internal error: {detail}"),
        )
    }
}

impl From<MetaError> for ServiceError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Conflict(m) => Self::conflict("Conflict", m),
            MetaError::Fenced(m) => Self::conflict(
                "NodeFenced",
                format!(
                    "{m}: this node lost the disk to another (its lease passed); attach the disk again"
                ),
            ),
            other => Self::internal(other),
        }
    }
}

impl From<coffer_keyvault::VaultError> for ServiceError {
    fn from(e: coffer_keyvault::VaultError) -> Self {
        match e {
            coffer_keyvault::VaultError::KeyUnusable(id, state) => Self::new(
                ErrorKind::Unprocessable,
                "KeyUnusable",
                format!(
                    "key {id} is {state}: data under it cannot be read or written until it is usable again"
                ),
            ),
            other => Self::internal(other),
        }
    }
}

impl From<VolumeError> for ServiceError {
    fn from(e: VolumeError) -> Self {
        match e {
            VolumeError::Closed => Self::conflict("DiskDetached", "the disk was detached"),
            VolumeError::Fenced(m) => Self::new(
                ErrorKind::Unavailable,
                "NodeFenced",
                format!("this node no longer holds the disk ({m}); retry"),
            ),
            VolumeError::Integrity { .. } => {
                Self::new(ErrorKind::Internal, "IntegrityError", e.to_string())
            }
            other => Self::internal(other),
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, ServiceError>;
