//! Authentication and the caller's view of itself: the first start's
//! bootstrap admin, turning a bearer token into a [`Caller`], `whoami`, and
//! the deployment's regions.

use coffer_crypto::{hash_token, new_token};
use coffer_iam::Scope;
use coffer_meta::PrincipalRow;

use crate::error::ErrorCode;
use crate::model::*;
use crate::*;

impl Service {
    /// On first start (no principal yet), create the admin principal in a
    /// first tenant and account, and return its token (shown once, never
    /// stored in plaintext by Coffer). `None` if already bootstrapped.
    pub async fn bootstrap(&self) -> Result<Option<zeroize::Zeroizing<String>>> {
        if self.meta.principal_count().await? > 0 {
            return Ok(None);
        }
        let p = self
            .meta
            .create_tenant_with_principal("default", "default", "admin", true)
            .await?;
        let token = new_token();
        self.meta
            .insert_token(p.id, &hash_token(&token), "bootstrap", None)
            .await?;
        for r in self.config.regions.all() {
            self.vault.platform_key(&r.name).await?;
        }
        Ok(Some(token))
    }

    /// Break-glass access (`coffer admin recover`), for an operator who
    /// holds the root key and the metadata but no working Owner token: a
    /// new principal `recovery-<UTC time>` in a tenant of its own, Owner at
    /// `/`, with one token that expires after `ttl` (1 minute to 24 hours).
    /// The caller has proved possession of the root key by opening the
    /// vault before this runs, and checked that the metadata holds a
    /// deployment (a wrong metadata URL must not become a new one).
    pub async fn break_glass(
        &self,
        ttl: std::time::Duration,
    ) -> Result<(PrincipalRow, zeroize::Zeroizing<String>, String)> {
        if !(60..=86_400).contains(&ttl.as_secs()) {
            return Err(ServiceError::new(
                ErrorCode::InvalidDuration,
                "a recovery token lasts from 1 minute to 24 hours: create lasting Owners with it, then let it expire",
            ));
        }
        let now = std::time::SystemTime::now();
        let stamp: String = humantime::format_rfc3339_seconds(now)
            .to_string()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        // A random tail: two recoveries in the same second get two names.
        let mut tail = [0u8; 3];
        coffer_crypto::random_bytes(&mut tail);
        let name = format!("recovery-{stamp}-{}", hex::encode(tail));
        let p = self
            .meta
            .create_tenant_with_principal(&name, &name, &name, true)
            .await?;
        let token = new_token();
        let expires_at = humantime::format_rfc3339_millis(now + ttl).to_string();
        self.meta
            .insert_token(p.id, &hash_token(&token), "break-glass", Some(&expires_at))
            .await?;
        tracing::warn!(
            principal = %p.id,
            expires_at = %expires_at,
            "break-glass: a recovery Owner of the deployment was created"
        );
        Ok((p, token, expires_at))
    }

    /// Create a principal in a new tenant and account of its own, Owner of
    /// that tenant (and of the deployment if `is_admin`), with a token.
    /// For tests and tools.
    pub async fn create_principal_with_token(
        &self,
        tenant: &str,
        name: &str,
        is_admin: bool,
    ) -> Result<(PrincipalRow, zeroize::Zeroizing<String>)> {
        let p = self
            .meta
            .create_tenant_with_principal(tenant, tenant, name, is_admin)
            .await?;
        let token = new_token();
        self.meta
            .insert_token(p.id, &hash_token(&token), "", None)
            .await?;
        Ok((p, token))
    }

    /// The caller a bearer token belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<Caller> {
        if token.starts_with(crate::sessions::SIGN_IN_LINK_PREFIX) {
            return Err(ServiceError::new(
                ErrorCode::Unauthenticated,
                "a sign-in link's code opens the console once, and is no API token: open the link in a browser",
            ));
        }
        self.caller_of_token(token).await
    }

    /// The caller whose live token this is (any kind of token).
    pub(crate) async fn caller_of_token(&self, token: &str) -> Result<Caller> {
        let unauth = || {
            ServiceError::new(
                ErrorCode::Unauthenticated,
                "missing, unknown, expired or revoked token: pass a valid token (coffer --profile, COFFER_TOKEN or Authorization: Bearer)",
            )
        };
        if token.is_empty() || token.len() > 256 {
            return Err(unauth());
        }
        let (p, token_id, token_expires_at) = self
            .meta
            .principal_by_token_hash(&hash_token(token))
            .await?
            .ok_or_else(unauth)?;
        let subject = self.subject_of(&p).await?;
        Ok(Caller {
            principal: p,
            subject,
            token_id,
            token_expires_at,
        })
    }

    /// Who the caller is: principal, home account and tenant, roles.
    pub async fn whoami(&self, caller: &Caller) -> Result<WhoAmI> {
        let p = &caller.principal;
        let account = self.meta.account(p.account_id).await?;
        let tenant = self.meta.tenant(p.tenant_id).await?;
        let assignments = self.meta.role_assignments_of(p.id).await?;
        Ok(WhoAmI {
            principal_id: p.id.to_string(),
            name: p.name.clone(),
            account_id: p.account_id.to_string(),
            account_name: account.map(|a| a.name).unwrap_or_default(),
            tenant_id: p.tenant_id.to_string(),
            tenant_name: tenant.map(|t| t.name).unwrap_or_default(),
            kind: p.kind,
            is_admin: caller
                .subject
                .grants
                .iter()
                .any(|g| g.scope == Scope::Deployment && g.role == coffer_iam::Role::Owner),
            role_assignments: assignments.iter().map(iam::assignment_dto).collect(),
        })
    }

    /// The deployment's regions, and whether each one's store answers.
    pub fn regions(&self) -> Vec<Region> {
        let health = self.region_health();
        self.config
            .regions
            .all()
            .iter()
            .map(|r| Region {
                name: r.name.clone(),
                zones: r.zones.clone(),
                status: if health.iter().any(|h| h.region == r.name && !h.available) {
                    "unavailable"
                } else {
                    "available"
                }
                .into(),
            })
            .collect()
    }
}
