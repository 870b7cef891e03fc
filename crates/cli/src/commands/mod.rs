//! The client commands, one module per group of resources. Each module
//! owns its clap subcommands and turns each into API calls with the
//! API's wire types; printing goes through [`crate::output`].

pub mod admin;
mod attach;
pub mod audit;
pub mod console;
pub mod disk;
pub mod encryption_set;
pub mod export;
pub mod iam;
pub mod image;
pub mod job;
pub mod org;
pub mod remote;
pub mod share;
pub mod snapshot;
pub mod tag;
pub mod token;
pub mod vault;

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use coffer_types::Decision;
use coffer_wire::{ExplainRequest, Explanation};

use crate::client::Client;

/// `--yes`: skip the confirmation of a delete that affects other resources.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Confirm {
    /// Do not ask for confirmation (needed without a terminal when the
    /// resource has dependants).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Ask before deleting `what` when it has `dependants` (each a line such
/// as "2 snapshots taken from it: snap-…"), unless `--yes`. A caller who
/// may not delete it is not asked: the API's refusal is the answer.
/// Without a terminal, refuse and say to pass `--yes`.
pub async fn confirm_delete(
    c: &Client,
    confirm: Confirm,
    action: &str,
    id: &str,
    what: &str,
    dependants: Vec<String>,
) -> anyhow::Result<()> {
    if confirm.yes || dependants.is_empty() {
        return Ok(());
    }
    let may: Explanation = c
        .post(
            "/v1/iam/explain",
            &ExplainRequest {
                principal_id: None,
                action: action.to_string(),
                resource_id: id.to_string(),
            },
        )
        .await?;
    if may.decision != Decision::Allow {
        return Ok(());
    }
    let list = dependants
        .iter()
        .map(|d| format!("  - {d}"))
        .collect::<Vec<_>>()
        .join("\n");
    if !std::io::stdin().is_terminal() {
        bail!(
            "{what} has dependants:\n{list}\nNothing was deleted. Run the command again with --yes to delete it anyway."
        );
    }
    let mut err = std::io::stderr().lock();
    write!(
        err,
        "Delete {what}? It has dependants:\n{list}\nDelete it [y/N]? "
    )?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        bail!("not deleted")
    }
}

/// "N things what: a, b, …" for a confirmation (the first few items).
pub fn count_of(n: usize, noun: &str, what: &str, items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.take(5).collect();
    let more = if n > items.len() { ", …" } else { "" };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} {noun}{plural} {what}: {}{more}", items.join(", "))
}
