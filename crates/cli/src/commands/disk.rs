//! `coffer disk …`: create, list, show, resize, attach, detach, delete.

use clap::Subcommand;
use coffer_types::{ByteSize, Kind};
use coffer_wire::{
    AssignmentQuery, Attachment, CreateDisk, Disk, DiskQuery, ResizeDisk, RoleAssignment,
};

use super::{Confirm, confirm_delete, count_of};
use crate::client::{Client, Paging, seg};
use crate::output::{Output, View};
use crate::resolve;

/// A disk's table columns.
pub const COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("ZONE", "/zone"),
    ("SIZE", "/size"),
    ("STATE", "/state"),
    ("ENCRYPTION", "/encryption/type"),
    ("CREATED", "/created_at"),
];

#[derive(Debug, Subcommand)]
pub enum DiskCmd {
    /// Create a disk, empty (--size), from a snapshot (--from-snapshot), or
    /// disks from an image (--from-image: one per image snapshot, named
    /// NAME-ROLE, e.g. web-root, web-data1).
    Create {
        /// Name (unique among the account's disks).
        #[arg(long)]
        name: String,
        /// Size, e.g. 10GiB or 10G (binary units: K/M/G/T = KiB/MiB/GiB/TiB;
        /// a multiple of 1MiB).
        #[arg(long)]
        size: Option<ByteSize>,
        /// Zone, e.g. local-a.
        #[arg(long)]
        zone: String,
        /// Snapshot (id or name) to create the disk from (it may belong to
        /// another account or tenant that lets you use it: `snapshots/use`).
        #[arg(long, conflicts_with = "from_image")]
        from_snapshot: Option<String>,
        /// Image (id or name) to launch: one disk per image snapshot.
        #[arg(long, conflicts_with = "size")]
        from_image: Option<String>,
        /// Account (id or name) that will own the disk (default: your home
        /// account).
        #[arg(long)]
        account: Option<String>,
        /// Encrypt it under this disk encryption set's customer key (id or
        /// name; an empty disk only).
        #[arg(long)]
        encryption_set: Option<String>,
        /// A tag, KEY=VALUE (repeat for more).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List the disks you may see.
    List {
        /// Only disks with this exact name.
        #[arg(long)]
        name: Option<String>,
        /// Only disks of this account (id or name).
        #[arg(long)]
        account: Option<String>,
        /// Only disks in this zone.
        #[arg(long)]
        zone: Option<String>,
        /// Only disks in this state: available or attached.
        #[arg(long)]
        state: Option<String>,
        /// Only disks made from this snapshot (id or name).
        #[arg(long)]
        source_snapshot: Option<String>,
        /// Only disks launched from this image (id).
        #[arg(long)]
        source_image: Option<String>,
        /// Only disks with this tag, KEY=VALUE.
        #[arg(long)]
        tag: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a disk.
    Show {
        /// Disk id or name.
        disk: String,
    },
    /// Grow a detached disk.
    Resize {
        /// Disk id or name.
        disk: String,
        /// New size, e.g. 20GiB.
        #[arg(long)]
        size: ByteSize,
    },
    /// Attach a disk: prints its NBD URI (a secret: it grants read-write
    /// access) and the qemu and nbdinfo arguments that use it.
    Attach {
        /// Disk id or name.
        disk: String,
        /// Write the URI and qemu's image options to this file (created
        /// with mode 0600) instead of printing them, so the secret stays
        /// off the terminal and out of shell history.
        #[arg(long, value_name = "FILE")]
        uri_file: Option<std::path::PathBuf>,
    },
    /// Detach a disk: flushes it and revokes its NBD URI.
    Detach {
        /// Disk id or name.
        disk: String,
    },
    /// Delete a detached disk and its data. Snapshots taken from it stay;
    /// role assignments at it go with it (asks first, unless --yes).
    Delete {
        /// Disk id or name.
        disk: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

/// Run a disk command.
pub async fn run(c: &Client, out: &Output, cmd: DiskCmd) -> anyhow::Result<()> {
    match cmd {
        DiskCmd::Create {
            name,
            size,
            zone,
            from_snapshot,
            from_image,
            account,
            encryption_set,
            tags,
        } => {
            if let Some(image) = from_image {
                let id = resolve::id(c, Kind::Image, &image).await?;
                let body = coffer_wire::LaunchImage {
                    zone,
                    name: Some(name),
                    account_id: resolve::opt(c, Kind::Account, account.as_deref()).await?,
                    encryption_set_id: resolve::opt(
                        c,
                        Kind::EncryptionSet,
                        encryption_set.as_deref(),
                    )
                    .await?,
                    tags: super::snapshot::tag_map(&tags)?,
                };
                let disks: Vec<Disk> = c
                    .post(&format!("/v1/images/{}/disks", seg(&id)), &body)
                    .await?;
                return out.show(&disks, View::Columns(COLUMNS));
            }
            let body = CreateDisk {
                name,
                zone,
                size,
                source_snapshot_id: resolve::opt(c, Kind::Snapshot, from_snapshot.as_deref())
                    .await?,
                account_id: resolve::opt(c, Kind::Account, account.as_deref()).await?,
                encryption_set_id: resolve::opt(c, Kind::EncryptionSet, encryption_set.as_deref())
                    .await?,
                tags: super::snapshot::tag_map(&tags)?,
            };
            let d: Disk = c.post("/v1/disks", &body).await?;
            out.show(&d, View::Fields)
        }
        DiskCmd::List {
            name,
            account,
            zone,
            state,
            source_snapshot,
            source_image,
            tag,
            paging,
        } => {
            let q = DiskQuery {
                name,
                account: resolve::opt(c, Kind::Account, account.as_deref()).await?,
                zone,
                state,
                source_snapshot: resolve::opt(c, Kind::Snapshot, source_snapshot.as_deref())
                    .await?,
                source_image: resolve::opt(c, Kind::Image, source_image.as_deref()).await?,
                tag,
                ..DiskQuery::default()
            };
            let l = c.list::<_, Disk>("/v1/disks", &q, &paging).await?;
            out.show_list(&l, View::Columns(COLUMNS))
        }
        DiskCmd::Show { disk } => {
            let id = resolve::id(c, Kind::Disk, &disk).await?;
            let d: Disk = c.get(&format!("/v1/disks/{}", seg(&id))).await?;
            out.show(&d, View::Fields)
        }
        DiskCmd::Resize { disk, size } => {
            let id = resolve::id(c, Kind::Disk, &disk).await?;
            let d: Disk = c
                .post(
                    &format!("/v1/disks/{}/resize", seg(&id)),
                    &ResizeDisk { size },
                )
                .await?;
            out.show(&d, View::Fields)
        }
        DiskCmd::Attach { disk, uri_file } => {
            let id = resolve::id(c, Kind::Disk, &disk).await?;
            let a: Attachment = c.action(&format!("/v1/disks/{}/attach", seg(&id))).await?;
            super::attach::show(c, out, a, uri_file.as_deref())
        }
        DiskCmd::Detach { disk } => {
            let id = resolve::id(c, Kind::Disk, &disk).await?;
            let d: Disk = c.action(&format!("/v1/disks/{}/detach", seg(&id))).await?;
            out.show(&d, View::Fields)
        }
        DiskCmd::Delete { disk, confirm } => {
            let id = resolve::id(c, Kind::Disk, &disk).await?;
            if !confirm.yes {
                let d: Disk = c.get(&format!("/v1/disks/{}", seg(&id))).await?;
                let deps = scope_dependants(c, &id).await;
                confirm_delete(
                    c,
                    confirm,
                    "disks/delete",
                    &id,
                    &format!("disk {} ({id})", d.name),
                    deps,
                )
                .await?;
            }
            let d: Disk = c.delete(&format!("/v1/disks/{}", seg(&id))).await?;
            out.show(&d, View::Fields)
        }
    }
}

/// Role assignments at a disk or snapshot (they are deleted with it), as a
/// line for a confirmation; none if the caller may not list them.
pub async fn scope_dependants(c: &Client, id: &str) -> Vec<String> {
    let q = AssignmentQuery {
        scope: Some(id.to_string()),
        ..AssignmentQuery::default()
    };
    match c
        .list::<_, RoleAssignment>("/v1/role-assignments", &q, &Paging::default())
        .await
    {
        Ok(l) if !l.items.is_empty() => vec![count_of(
            l.items.len(),
            "role assignment",
            "at it, deleted with it (whoever it was shared with loses access)",
            l.items
                .iter()
                .map(|r| format!("{} to {} ({})", r.role, r.principal_id, r.id)),
        )],
        _ => vec![],
    }
}
