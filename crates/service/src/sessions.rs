//! Browser sessions: a short-lived token a principal mints for itself by
//! signing in with a token it holds (the web console), and ends by signing
//! out. A session is an ordinary token of the principal (listed with its
//! tokens, only its hash stored, authorized as any token), so everything
//! that governs tokens governs sessions: expiry, revocation, and the rule
//! that no token begets one that outlives it. A session or link also
//! records the token it was minted from, and stops working when that token
//! is revoked: revoking a leaked token ends what was signed in with it.

use std::time::{Duration, SystemTime};

use coffer_crypto::{hash_token, new_token};

use crate::error::ErrorCode;
use crate::iam::token_dto;
use crate::model::*;
use crate::*;

/// The name every session token carries.
pub const SESSION_TOKEN_NAME: &str = "console-session";

/// The name of a one-time sign-in link's token.
pub const SIGN_IN_LINK_NAME: &str = "console-link";

/// The prefix of a sign-in link's code. Only the console's sign-in takes
/// such a code ([`Service::authenticate_link`]); [`Service::authenticate`]
/// refuses it, so a link is no bearer token of the API, and it cannot be
/// passed off as a plain token to open a session without being spent.
pub const SIGN_IN_LINK_PREFIX: &str = "coffer_link_";

/// How long a sign-in link works (once).
pub const SIGN_IN_LINK_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// How long a session lasts (at most: never past the signing token's expiry).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

impl Service {
    /// Start a session for the caller: a new token named
    /// [`SESSION_TOKEN_NAME`] that expires after [`SESSION_LIFETIME`], or
    /// with the caller's token if that expires sooner. Holding a token is
    /// the right to sign in with it: no permission is checked.
    pub async fn start_session(&self, caller: &Caller) -> Result<NewToken> {
        let parent = self.root_token(caller).await?;
        self.mint_own(
            caller,
            SESSION_TOKEN_NAME,
            SESSION_LIFETIME,
            caller.token_expires_at.as_deref(),
            parent,
        )
        .await
    }

    /// Start a session with a sign-in link (the caller authenticated with
    /// it): the link is spent (revoked) first, and the session lasts
    /// [`SESSION_LIFETIME`] but never past the expiry of the token that
    /// made the link. Refused for a token that is not a link.
    pub async fn start_session_from_link(&self, caller: &Caller) -> Result<NewToken> {
        let t = self
            .revoke_own(caller, SIGN_IN_LINK_NAME, "a sign-in link")
            .await?;
        let cap = t
            .name
            .strip_prefix(SIGN_IN_LINK_NAME)
            .and_then(|rest| rest.strip_prefix('@'));
        // The session hangs off the token that made the link: revoking
        // that token ends it.
        let parent = self.meta.token_parent(t.id).await?.unwrap_or(t.id);
        self.mint_own(caller, SESSION_TOKEN_NAME, SESSION_LIFETIME, cap, parent)
            .await
    }

    /// A one-time sign-in link's token for the caller (`coffer console
    /// login`): it lasts [`SIGN_IN_LINK_LIFETIME`] (or less, with the
    /// caller's token) and opens one session
    /// ([`Service::start_session_from_link`]). Its name is
    /// [`SIGN_IN_LINK_NAME`], followed by `@` and the caller's token's
    /// expiry when it has one: the session it opens must not outlive that
    /// token either.
    pub async fn sign_in_link(&self, caller: &Caller) -> Result<NewToken> {
        let cap = caller.token_expires_at.as_deref();
        let name = match cap {
            Some(at) => format!("{SIGN_IN_LINK_NAME}@{at}"),
            None => SIGN_IN_LINK_NAME.to_string(),
        };
        let parent = self.root_token(caller).await?;
        self.mint_own(caller, &name, SIGN_IN_LINK_LIFETIME, cap, parent)
            .await
    }

    /// The token the caller's token was minted from, or the caller's own
    /// when it was minted from none: a token minted with a session (a
    /// session pasted into the sign-in form, a link or a token made in the
    /// console) hangs off the session's root, so a parent is never itself
    /// a child and one revocation reaches every descendant.
    pub(crate) async fn root_token(&self, caller: &Caller) -> Result<coffer_types::Id> {
        Ok(self
            .meta
            .token_parent(caller.token_id)
            .await?
            .unwrap_or(caller.token_id))
    }

    /// The caller a sign-in link's code belongs to (the code must carry
    /// [`SIGN_IN_LINK_PREFIX`]); spend it with
    /// [`Service::start_session_from_link`].
    pub async fn authenticate_link(&self, code: &str) -> Result<Caller> {
        if !code.starts_with(SIGN_IN_LINK_PREFIX) {
            return Err(ServiceError::new(
                ErrorCode::Unauthenticated,
                "not a sign-in link's code: run `coffer console login` for a link",
            ));
        }
        self.caller_of_token(code).await
    }

    /// A token of the caller's own principal, named `name`, lasting
    /// `lifetime` or until `cap` (RFC 3339), whichever is sooner, and no
    /// longer than token `parent` is not revoked.
    async fn mint_own(
        &self,
        caller: &Caller,
        name: &str,
        lifetime: Duration,
        cap: Option<&str>,
        parent: coffer_types::Id,
    ) -> Result<NewToken> {
        let p = &caller.principal;
        if p.kind == coffer_types::PrincipalKind::Managed {
            return Err(ServiceError::new(
                ErrorCode::ManagedIdentity,
                "a managed identity cannot sign in: the platform authenticates it",
            ));
        }
        let mut expires = SystemTime::now() + lifetime;
        if let Some(cap) = cap {
            let cap = humantime::parse_rfc3339(cap).map_err(ServiceError::internal)?;
            expires = expires.min(cap);
        }
        let expires_at = humantime::format_rfc3339_millis(expires).to_string();
        let secret = new_token();
        let secret = if name.starts_with(SIGN_IN_LINK_NAME) {
            zeroize::Zeroizing::new(format!(
                "{SIGN_IN_LINK_PREFIX}{}",
                &secret[coffer_crypto::secret::TOKEN_PREFIX.len()..]
            ))
        } else {
            secret
        };
        let row = self
            .meta
            .insert_child_token(
                p.id,
                &hash_token(&secret),
                name,
                Some(&expires_at),
                Some(parent),
            )
            .await?;
        tracing::info!(token = %row.id, principal = %p.id, name, "console token minted");
        Ok(NewToken {
            token: token_dto(&row),
            secret,
        })
    }

    /// End the caller's session: its token stops working at once. Refused
    /// for a token that is not a session's (revoke those with
    /// `revoke_token`, which keeps an Owner).
    pub async fn end_session(&self, caller: &Caller) -> Result<()> {
        self.revoke_own(caller, SESSION_TOKEN_NAME, "a session")
            .await
            .map(drop)
    }

    /// Revoke the caller's token if it is named `name` (or `name@…`);
    /// `what` it is, for the refusal. The token as it was.
    async fn revoke_own(
        &self,
        caller: &Caller,
        name: &str,
        what: &str,
    ) -> Result<coffer_meta::TokenRow> {
        let t = self
            .meta
            .token(caller.token_id)
            .await?
            .filter(|t| {
                t.principal_id == caller.principal.id
                    && t.revoked_at.is_none()
                    && (t.name == name || t.name.strip_prefix(name).is_some_and(|r| r.starts_with('@')))
            })
            .ok_or_else(|| {
                ServiceError::new(
                    ErrorCode::Unauthenticated,
                    format!("this token is not {what}'s: sign in with a token of yours, or get a new link with `coffer console login`"),
                )
            })?;
        if !self.meta.revoke_token_once(t.id).await? {
            return Err(ServiceError::new(
                ErrorCode::Unauthenticated,
                format!("{what} works once, and was used: get a new one"),
            ));
        }
        tracing::info!(token = %t.id, principal = %caller.principal.id, name, "console token revoked");
        Ok(t)
    }
}
