//! `coffer token …`: create, list, revoke. Tokens are never taken on the
//! command line; a new token's secret is printed once, or stored in a
//! profile with `--save-profile`.

use anyhow::bail;
use clap::Subcommand;
use coffer_types::Kind;
use coffer_wire::{CreateToken, NewToken, Token, TokenQuery};

use super::iam::me;
use crate::client::{Client, Paging, seg};
use crate::output::{Output, View};
use crate::{profile, resolve};

const COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("PRINCIPAL", "/principal_id"),
    ("STATE", "/state"),
    ("EXPIRES", "/expires_at"),
    ("REVOKED", "/revoked_at"),
    ("CREATED", "/created_at"),
];

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create an API token. Its secret is shown once (or, with
    /// --save-profile, stored in a profile and not shown).
    Create {
        /// Whose token, id or name (default: yours).
        #[arg(long)]
        principal: Option<String>,
        /// Label, e.g. ci.
        #[arg(long)]
        name: Option<String>,
        /// Lifetime, e.g. 30d, 12h or 90m (default: no expiry).
        #[arg(long)]
        expires_in: Option<String>,
        /// Store the secret in this profile (with the current endpoint)
        /// instead of printing it.
        #[arg(long, value_name = "PROFILE")]
        save_profile: Option<String>,
    },
    /// List a principal's tokens (never their secrets).
    List {
        /// Whose tokens, id or name (default: yours).
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        /// Token id (tok-…, not the secret).
        id: String,
    },
}

/// Run a token command.
pub async fn run(c: &Client, out: &Output, cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create {
            principal,
            name,
            expires_in,
            save_profile,
        } => {
            // Refuse before creating the token: a secret that cannot be
            // stored is lost.
            if let Some(p) = &save_profile {
                let cfg = profile::load()?;
                if cfg.profiles.get(p).is_some_and(|p| p.token.is_some()) {
                    bail!(
                        "profile '{p}' already holds a token in {}: choose another name for --save-profile (no token was created)",
                        profile::config_path().display()
                    );
                }
            }
            let principal = match principal {
                Some(p) => resolve::id(c, Kind::Principal, &p).await?,
                None => me(c).await?,
            };
            let new: NewToken = c
                .post(
                    &format!("/v1/principals/{}/tokens", seg(&principal)),
                    &CreateToken { name, expires_in },
                )
                .await?;
            match save_profile {
                Some(name) => {
                    let mut cfg = profile::load()?;
                    let p = cfg.profiles.entry(name.clone()).or_default();
                    p.endpoint = Some(c.endpoint().to_string());
                    p.token = Some(new.secret.clone());
                    if let Err(e) = profile::save(&cfg) {
                        // The token exists now: do not lose its secret.
                        out.show(&new, View::Fields)?;
                        eprintln!(
                            "warning: the profile could not be saved, so the token's secret is printed above, the only time it is shown; keep it safe or revoke the token with `coffer token revoke {}`",
                            new.token.id
                        );
                        return Err(e);
                    }
                    out.show(&new.token, View::Fields)?;
                    eprintln!(
                        "The token's secret is saved in profile '{name}' ({}); use it with `coffer --profile {name}`.",
                        profile::config_path().display()
                    );
                }
                None => {
                    out.show(&new, View::Fields)?;
                    eprintln!(
                        "warning: this is the only time the token's secret is shown; it cannot be shown again. Keep it safe (e.g. in a file for `coffer configure --token-file`)."
                    );
                }
            }
            Ok(())
        }
        TokenCmd::List { principal, paging } => {
            let principal = match principal {
                Some(p) => resolve::id(c, Kind::Principal, &p).await?,
                None => me(c).await?,
            };
            let l = c
                .list::<_, Token>(
                    &format!("/v1/principals/{}/tokens", seg(&principal)),
                    &TokenQuery::default(),
                    &paging,
                )
                .await?;
            out.show_list(&l, View::Columns(COLUMNS))
        }
        TokenCmd::Revoke { id } => {
            let t: Token = c.action(&format!("/v1/tokens/{}/revoke", seg(&id))).await?;
            out.show(&t, View::Fields)
        }
    }
}
