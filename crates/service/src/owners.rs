//! The deployment never loses its last Owner by one call. Deleting a role
//! assignment, deleting a principal or revoking a token is refused (409
//! `LastOwner`) when afterwards no principal holding Owner at `/` would
//! have an active token: a fuzzer, a typo or a compromised Owner could
//! otherwise lock every operator out. Tokens that simply expire can still
//! leave nobody able to sign in; the break-glass path for that is in
//! docs/SECURITY.md.
//!
//! The check reads, then the caller writes: two concurrent removals of the
//! last two Owners' access could both pass. That needs two calls by two
//! Owners at once, not one call; closing it needs the check inside the
//! metadata transaction (planned with the lockout issue's break-glass).

use coffer_iam::Role;
use coffer_types::{Id, TokenState};

use crate::error::ErrorCode;
use crate::iam::token_dto;
use crate::{Result, Service, ServiceError};

/// What a call is about to remove.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Removing {
    /// A role assignment.
    Assignment(Id),
    /// A principal with all its assignments and tokens.
    Principal(Id),
    /// One token.
    Token {
        /// The token.
        token: Id,
        /// Its principal.
        principal: Id,
    },
}

impl Service {
    /// Refuse `removing` if it would leave no Owner at `/` with an active
    /// token.
    pub(crate) async fn keep_an_owner(&self, removing: Removing) -> Result<()> {
        let owners: Vec<_> = self
            .meta
            .role_assignments_at("/")
            .await?
            .into_iter()
            .filter(|r| r.role == Role::Owner.as_str())
            .collect();
        let touches = owners.iter().any(|r| match removing {
            Removing::Assignment(a) => r.id == a,
            Removing::Principal(p) | Removing::Token { principal: p, .. } => r.principal_id == p,
        });
        if !touches {
            return Ok(());
        }
        for r in &owners {
            match removing {
                Removing::Assignment(a) if r.id == a => continue,
                Removing::Principal(p) if r.principal_id == p => continue,
                _ => {}
            }
            for t in self.meta.list_tokens(r.principal_id).await? {
                if matches!(removing, Removing::Token { token, .. } if token == t.id) {
                    continue;
                }
                if token_dto(&t).state == TokenState::Active {
                    return Ok(());
                }
            }
        }
        Err(ServiceError::new(
            ErrorCode::LastOwner,
            "refused: afterwards no Owner of the deployment (Owner at `/`) would have an active token, and nobody could administer it. Create another Owner first (`coffer principal create --name NAME --role Owner --scope /` and `coffer token create --principal ID`), then retry",
        ))
    }
}
