//! The service's error: a stable code from the one list in `coffer-wire`
//! (which also fixes its HTTP status) and a message that says what went
//! wrong and what to do next. Internal failures never reach the caller in
//! detail: the caller gets a correlation id, the log gets the detail under
//! the same id.

use coffer_meta::MetaError;
use coffer_volume::VolumeError;
pub use coffer_wire::ErrorCode;

/// A service error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    /// Stable machine-readable code; it decides the HTTP status.
    pub code: ErrorCode,
    /// Human message.
    pub message: String,
    /// The API address of the node that can answer this request (a disk
    /// held by another node); the HTTP layer forwards the request there.
    pub forward_to: Option<String>,
}

impl ServiceError {
    /// Build an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            forward_to: None,
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// 503 that names the node holding the disk, at `api_url`: the HTTP
    /// layer forwards the request there (once) instead of returning it, so
    /// callers see this only when that node cannot be reached.
    pub fn elsewhere(node: &str, api_url: &str, what: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            ErrorCode::HeldByOtherNode,
            format!(
                "{what} is open on node {node}, which could not be reached: retry, or wait until its lease passes"
            ),
        );
        e.forward_to = Some(api_url.to_string());
        e
    }

    /// 404 for a resource of `noun` with id `id`.
    pub fn not_found(code: ErrorCode, noun: &str, id: impl std::fmt::Display) -> Self {
        Self::new(
            code,
            format!(
                "{noun} '{id}' not found (or you may not see it); list yours with `coffer {noun} list`"
            ),
        )
    }

    /// 409 `NameTaken`: `account` already has a `kind` named `name`.
    pub fn name_taken(
        kind: coffer_types::Kind,
        account: impl std::fmt::Display,
        name: &str,
    ) -> Self {
        let noun = kind.noun();
        Self::new(
            ErrorCode::NameTaken,
            format!(
                "account {account} already has a {noun} named '{name}': names are unique per account and kind, so that `coffer {noun} show {name}` is unambiguous; pick another name, or delete that {noun} first"
            ),
        )
    }

    /// 500: the detail goes to the log under a fresh correlation id, and
    /// the caller sees only that id.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::hidden(ErrorCode::InternalError, "internal error", detail)
    }

    /// An error whose detail is for the log only (`code`'s message names a
    /// correlation id to find it).
    fn hidden(code: ErrorCode, what: &str, detail: impl std::fmt::Display) -> Self {
        let mut raw = [0u8; 8];
        coffer_crypto::random_bytes(&mut raw);
        let id = hex::encode(raw);
        tracing::error!(correlation_id = %id, code = %code, error = %detail, "{what}");
        Self::new(
            code,
            format!(
                "{what} (correlation id {id}): nothing was changed by the failed step; retry, and if it persists give the operator this id"
            ),
        )
    }
}

impl From<MetaError> for ServiceError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Conflict(m) => Self::new(ErrorCode::Conflict, m),
            MetaError::NameTaken {
                kind,
                account,
                name,
            } => Self::name_taken(kind, account, &name),
            MetaError::Fenced(m) => Self::new(
                ErrorCode::NodeFenced,
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
                ErrorCode::KeyUnusable,
                format!(
                    "key {id} is {state}: data under it cannot be read or written until it is usable again"
                ),
            ),
            coffer_keyvault::VaultError::External(m) => Self::new(ErrorCode::KeyUnusable, m),
            other => Self::internal(other),
        }
    }
}

impl From<VolumeError> for ServiceError {
    fn from(e: VolumeError) -> Self {
        match e {
            VolumeError::Meta(m @ MetaError::NameTaken { .. }) => m.into(),
            VolumeError::Closed => Self::new(ErrorCode::DiskDetached, "the disk was detached"),
            VolumeError::Fenced(m) => Self::new(
                ErrorCode::NodeFenced,
                format!("this node no longer holds the disk ({m}); retry"),
            ),
            VolumeError::Integrity { .. } => Self::hidden(
                ErrorCode::IntegrityError,
                "stored data failed authentication (tampering or corruption)",
                e,
            ),
            other => Self::internal(other),
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, ServiceError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_shows_a_correlation_id_and_not_the_detail() {
        let e = ServiceError::internal("SELECT secret FROM deks WHERE id = 'dek-1'");
        assert_eq!(e.code, ErrorCode::InternalError);
        assert_eq!(e.status(), 500);
        assert!(!e.message.contains("SELECT"), "{}", e.message);
        assert!(!e.message.contains("dek-1"), "{}", e.message);
        let id = e
            .message
            .split("correlation id ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .unwrap();
        assert_eq!(id.len(), 16, "{}", e.message);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        let other = ServiceError::internal("x");
        assert_ne!(e.message, other.message, "every error gets its own id");
    }
}
