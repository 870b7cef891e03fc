//! Deployment administration and deployment facts: `coffer admin fsck|gc|nodes`
//! and `coffer region list`.

use clap::Subcommand;
use coffer_wire::{FsckReport, GcReport, Node, Region};
use serde_json::Value;

use crate::client::Client;
use crate::output::{Output, View, at, columns_table, table};

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Check the consistency of metadata and stored objects; exits 1 if
    /// anything is missing, damaged or inconsistent.
    Fsck {
        /// Also fetch and authenticate every stored object (reads all data).
        #[arg(long)]
        deep: bool,
    },
    /// Delete queued objects and sweep orphaned ones now (both also run in
    /// the background).
    Gc,
    /// List the nodes serving this deployment and their leases.
    Nodes,
    /// Break-glass: mint a short-lived token for a new Owner of the
    /// deployment, without the API, for an operator locked out (no Owner
    /// token left). Needs the root key and the metadata (the node's data
    /// dir, or --metadata); the server may be stopped or running.
    Recover(crate::recover::RecoverArgs),
}

#[derive(Debug, Subcommand)]
pub enum RegionCmd {
    /// List regions and their zones.
    List,
}

const NODE_COLUMNS: &[(&str, &str)] = &[
    ("NAME", "/name"),
    ("API", "/api_url"),
    ("NBD", "/nbd_endpoint"),
    ("LEASE UNTIL", "/lease_expires_at"),
    ("THIS", "/this_node"),
];

const REGION_COLUMNS: &[(&str, &str)] = &[
    ("REGION", "/name"),
    ("ZONES", "/zones"),
    ("STATUS", "/status"),
];

/// A fsck report for people: the counts, then each finding.
fn fsck_text(v: &Value) -> String {
    let counts = table(
        &["OBJECTS", "COUNT"],
        [
            ("stored", "/objects_stored"),
            ("named by chunk maps", "/objects_named"),
            ("missing", "/objects_missing"),
            ("unreferenced (garbage)", "/objects_unreferenced"),
            ("queued for deletion", "/objects_queued"),
            ("verified (deep)", "/objects_verified"),
        ]
        .iter()
        .map(|(label, ptr)| vec![(*label).to_string(), at(v, ptr)])
        .collect(),
    );
    match v["findings"].as_array() {
        Some(f) if !f.is_empty() => format!(
            "{counts}\n{}",
            columns_table(
                &v["findings"],
                &[("PROBLEM", "/code"), ("DETAIL", "/detail")]
            )
        ),
        _ => format!("{counts}\nNo problems found."),
    }
}

/// Run an admin command.
pub async fn run(c: &Client, out: &Output, cmd: AdminCmd) -> anyhow::Result<()> {
    match cmd {
        AdminCmd::Fsck { deep } => {
            let r: FsckReport = c.get(&format!("/v1/admin/fsck?deep={deep}")).await?;
            out.show(&r, View::Text(&fsck_text))?;
            if !r.ok {
                anyhow::bail!(
                    "fsck found problems (listed above); see docs/DEPLOYMENT.md on restoring from a backup"
                );
            }
            Ok(())
        }
        AdminCmd::Gc => {
            let r: GcReport = c.action("/v1/admin/gc").await?;
            out.show(&r, View::Fields)
        }
        AdminCmd::Recover(_) => unreachable!("runs without a client: see main"),
        AdminCmd::Nodes => {
            let n: Vec<Node> = c.get("/v1/admin/nodes").await?;
            out.show(&n, View::Columns(NODE_COLUMNS))
        }
    }
}

/// Run a region command.
pub async fn region(c: &Client, out: &Output, cmd: RegionCmd) -> anyhow::Result<()> {
    match cmd {
        RegionCmd::List => {
            let r: Vec<Region> = c.get("/v1/regions").await?;
            out.show(&r, View::Columns(REGION_COLUMNS))
        }
    }
}
