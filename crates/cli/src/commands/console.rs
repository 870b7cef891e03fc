//! `coffer console login`: a one-time link that signs a browser in to the
//! web console as the profile's principal, so nobody copies a token into
//! a browser.

use clap::Subcommand;
use coffer_wire::ConsoleLink;
use serde::Serialize;
use serde_json::Value;

use crate::client::Client;
use crate::output::{Output, View};

#[derive(Debug, Subcommand)]
pub enum ConsoleCmd {
    /// Print a link that signs a browser in to the web console as you. It
    /// works once, within 5 minutes; the session it opens lasts 8 hours
    /// (never past your token). Treat it as a secret until it is used.
    Login,
}

/// What `console login` prints.
#[derive(Serialize)]
struct Login {
    url: String,
    expires_at: String,
}

fn login_text(v: &Value) -> String {
    format!(
        "Open this link in your browser within 5 minutes (it works once):\n{}\n",
        v["url"].as_str().unwrap_or_default()
    )
}

/// Run a console command.
pub async fn run(c: &Client, out: &Output, cmd: ConsoleCmd) -> anyhow::Result<()> {
    match cmd {
        ConsoleCmd::Login => {
            let link: ConsoleLink = c.post("/v1/console/links", &serde_json::json!({})).await?;
            let login = Login {
                url: format!("{}{}", c.endpoint().trim_end_matches('/'), link.path),
                expires_at: link.expires_at,
            };
            out.show(&login, View::Text(&login_text))
        }
    }
}
