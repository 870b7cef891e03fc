//! Browser sessions: a short-lived token a principal mints for itself by
//! signing in with a token it holds (the web console), and ends by signing
//! out. A session is an ordinary token of the principal (listed with its
//! tokens, only its hash stored, authorized as any token), so everything
//! that governs tokens governs sessions: expiry, revocation, and the rule
//! that no token begets one that outlives it.

use std::time::{Duration, SystemTime};

use coffer_crypto::{hash_token, new_token};

use crate::error::ErrorCode;
use crate::iam::token_dto;
use crate::model::*;
use crate::*;

/// The name every session token carries.
pub const SESSION_TOKEN_NAME: &str = "console-session";

/// How long a session lasts (at most: never past the signing token's expiry).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

impl Service {
    /// Start a session for the caller: a new token named
    /// [`SESSION_TOKEN_NAME`] that expires after [`SESSION_LIFETIME`], or
    /// with the caller's token if that expires sooner. Holding a token is
    /// the right to sign in with it: no permission is checked.
    pub async fn start_session(&self, caller: &Caller) -> Result<NewToken> {
        let p = &caller.principal;
        if p.kind == coffer_types::PrincipalKind::Managed {
            return Err(ServiceError::new(
                ErrorCode::ManagedIdentity,
                "a managed identity cannot sign in: the platform authenticates it",
            ));
        }
        let mut expires = SystemTime::now() + SESSION_LIFETIME;
        if let Some(cap) = caller.token_expires_at.as_deref() {
            let cap = humantime::parse_rfc3339(cap).map_err(ServiceError::internal)?;
            expires = expires.min(cap);
        }
        let expires_at = humantime::format_rfc3339_millis(expires).to_string();
        let secret = new_token();
        let row = self
            .meta
            .insert_token(
                p.id,
                &hash_token(&secret),
                SESSION_TOKEN_NAME,
                Some(&expires_at),
            )
            .await?;
        tracing::info!(token = %row.id, principal = %p.id, "session started");
        Ok(NewToken {
            token: token_dto(&row),
            secret,
        })
    }

    /// End the caller's session: its token stops working at once. Refused
    /// for a token that is not a session's (revoke those with
    /// `revoke_token`, which keeps an Owner).
    pub async fn end_session(&self, caller: &Caller) -> Result<()> {
        let t = self
            .meta
            .token(caller.token_id)
            .await?
            .filter(|t| t.principal_id == caller.principal.id && t.name == SESSION_TOKEN_NAME)
            .ok_or_else(|| {
                ServiceError::new(
                    ErrorCode::InvalidBody,
                    "this token is not a session's: revoke it with `coffer iam token revoke`",
                )
            })?;
        self.meta.revoke_token(t.id).await?;
        tracing::info!(token = %t.id, principal = %caller.principal.id, "session ended");
        Ok(())
    }
}
