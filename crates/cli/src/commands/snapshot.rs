//! `coffer snapshot …`: create, list, show, delete.

use clap::Subcommand;
use coffer_types::Kind;
use coffer_wire::{CreateSnapshot, Snapshot, SnapshotQuery};

use super::{Confirm, confirm_delete, disk::scope_dependants};
use crate::client::{Client, Paging, seg};
use crate::output::{Output, View};
use crate::resolve;

/// A snapshot's table columns.
pub const COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("REGION", "/region"),
    ("SIZE", "/size"),
    ("SOURCE DISK", "/source_disk_id"),
    ("ENCRYPTION", "/encryption/type"),
    ("CREATED", "/created_at"),
];

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Take a crash-consistent snapshot of a disk (it may stay attached).
    Create {
        /// Disk id or name.
        #[arg(long)]
        disk: String,
        /// Name (unique among the account's snapshots).
        #[arg(long)]
        name: String,
    },
    /// List the snapshots you may see (yours and those shared with you).
    List {
        /// Only snapshots with this exact name.
        #[arg(long)]
        name: Option<String>,
        /// Only snapshots of this account (id or name).
        #[arg(long)]
        account: Option<String>,
        /// Only snapshots taken from this disk (id or name; an id also
        /// after the disk was deleted).
        #[arg(long)]
        source_disk: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a snapshot.
    Show {
        /// Snapshot id or name.
        snapshot: String,
    },
    /// Delete a snapshot (disks made from it are unaffected; role
    /// assignments at it, i.e. its shares, go with it: asks first, unless
    /// --yes).
    Delete {
        /// Snapshot id or name.
        snapshot: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

/// Run a snapshot command.
pub async fn run(c: &Client, out: &Output, cmd: SnapshotCmd) -> anyhow::Result<()> {
    match cmd {
        SnapshotCmd::Create { disk, name } => {
            let body = CreateSnapshot {
                disk_id: resolve::id(c, Kind::Disk, &disk).await?,
                name,
            };
            let s: Snapshot = c.post("/v1/snapshots", &body).await?;
            out.show(&s, View::Fields)
        }
        SnapshotCmd::List {
            name,
            account,
            source_disk,
            paging,
        } => {
            // A deleted disk has no name left: its id is taken as is.
            let source_disk = match source_disk {
                Some(d) if d.starts_with("disk-") => Some(d),
                other => resolve::opt(c, Kind::Disk, other.as_deref()).await?,
            };
            let q = SnapshotQuery {
                name,
                account: resolve::opt(c, Kind::Account, account.as_deref()).await?,
                source_disk,
                ..SnapshotQuery::default()
            };
            let l = c.list::<_, Snapshot>("/v1/snapshots", &q, &paging).await?;
            out.show_list(&l, View::Columns(COLUMNS))
        }
        SnapshotCmd::Show { snapshot } => {
            let id = resolve::id(c, Kind::Snapshot, &snapshot).await?;
            let s: Snapshot = c.get(&format!("/v1/snapshots/{}", seg(&id))).await?;
            out.show(&s, View::Fields)
        }
        SnapshotCmd::Delete { snapshot, confirm } => {
            let id = resolve::id(c, Kind::Snapshot, &snapshot).await?;
            if !confirm.yes {
                let s: Snapshot = c.get(&format!("/v1/snapshots/{}", seg(&id))).await?;
                let deps = scope_dependants(c, &id).await;
                confirm_delete(
                    c,
                    confirm,
                    "snapshots/delete",
                    &id,
                    &format!("snapshot {} ({id})", s.name),
                    deps,
                )
                .await?;
            }
            let s: Snapshot = c.delete(&format!("/v1/snapshots/{}", seg(&id))).await?;
            out.show(&s, View::Fields)
        }
    }
}
