//! `coffer image …`: create (from disks or snapshots), list, show, delete,
//! copy, permission. Launch is `coffer disk create --from-image`.

use clap::Subcommand;
use coffer_types::ImageState;
use coffer_types::Kind;
use coffer_wire::{CreateImage, Image, ImageQuery};

use super::snapshot::{PermissionCmd, run_permission, shared_flag, tag_map};
use super::{Confirm, confirm_delete, disk::scope_dependants};
use crate::client::{Client, Paging, seg};
use crate::output::{Output, View};
use crate::resolve;

/// An image's table columns.
pub const COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("ACCOUNT", "/account_id"),
    ("REGION", "/region"),
    ("SIZE", "/size_bytes"),
    ("METHOD", "/creation_method"),
    ("CREATED", "/created_at"),
];

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Make an image from disks (crash-consistent snapshots of each are
    /// taken; they may stay attached) or from snapshots (copied at no
    /// cost). The first is the root, the others data1, data2, ...
    Create {
        /// Name (unique among the account's images).
        #[arg(long)]
        name: String,
        /// Disks (ids or names), root first (repeat or comma-separate).
        #[arg(
            long = "disk",
            value_delimiter = ',',
            required_unless_present = "snapshots",
            conflicts_with = "snapshots"
        )]
        disks: Vec<String>,
        /// Snapshots (ids or names), root first.
        #[arg(long = "snapshot", value_delimiter = ',')]
        snapshots: Vec<String>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        /// A tag, KEY=VALUE (repeat for more).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List the images you may see (yours and those shared with you).
    List {
        /// Only images with this exact name.
        #[arg(long)]
        name: Option<String>,
        /// Only images of this account (id or name).
        #[arg(long)]
        account: Option<String>,
        /// Only images with this tag, KEY=VALUE.
        #[arg(long)]
        tag: Option<String>,
        /// Only images other accounts share with yours.
        #[arg(long, conflicts_with = "owned")]
        shared_with_me: bool,
        /// Only images you see other than through a share.
        #[arg(long)]
        owned: bool,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show an image and its snapshots.
    Show {
        /// Image id or name.
        image: String,
    },
    /// Delete an image and its snapshots (disks launched from it and
    /// copies of it stay; asks first, unless --yes).
    Delete {
        /// Image id or name.
        image: String,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Copy an image (with its snapshots) into your account (or
    /// --account): the copy is yours, and stays when the source is
    /// unshared or deleted. With --to-remote, copy it to another
    /// deployment instead: it pulls the data from this one and
    /// re-encrypts it under its own keys.
    Copy {
        /// The image (id or name), yours or shared with you.
        image: String,
        /// Name of the copy.
        #[arg(long)]
        name: String,
        /// The account that will own the copy (id or name).
        #[arg(long)]
        account: Option<String>,
        /// Re-encrypt under this disk encryption set's key: the copy is
        /// pending while a job per snapshot runs (see --wait). Needed for
        /// another account's image under a customer-managed key.
        #[arg(long)]
        encryption_set: Option<String>,
        /// Re-encrypt under new data keys even where the copy could share
        /// the source's.
        #[arg(long)]
        rekey: bool,
        /// Make the copy in this region (default: the source's). A copy
        /// into another region is always re-encrypted, under that region's
        /// platform key or --encryption-set's (a set of that region).
        #[arg(long)]
        target_region: Option<String>,
        /// A tag of the copy, KEY=VALUE (repeat for more).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Wait for a re-encrypting copy to finish, with a progress bar,
        /// and show the image (without: show it pending, with its jobs).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        remote: super::export::ToRemote,
    },
    /// Who may launch and copy it (AWS's launch permission).
    #[command(subcommand)]
    Permission(PermissionCmd),
}

/// Run an image command.
pub async fn run(c: &Client, out: &Output, cmd: ImageCmd) -> anyhow::Result<()> {
    match cmd {
        ImageCmd::Create {
            name,
            disks,
            snapshots,
            description,
            tags,
        } => {
            let mut disk_ids = vec![];
            for d in &disks {
                disk_ids.push(resolve::id(c, Kind::Disk, d).await?);
            }
            let mut snapshot_ids = vec![];
            for s in &snapshots {
                snapshot_ids.push(resolve::id(c, Kind::Snapshot, s).await?);
            }
            let body = CreateImage {
                name,
                disk_ids,
                snapshot_ids,
                description,
                account_id: None,
                tags: tag_map(&tags)?,
            };
            let i: Image = c.post("/v1/images", &body).await?;
            out.show(&i, View::Fields)
        }
        ImageCmd::List {
            name,
            account,
            tag,
            shared_with_me,
            owned,
            paging,
        } => {
            let q = ImageQuery {
                name,
                account: resolve::opt(c, Kind::Account, account.as_deref()).await?,
                tag,
                shared: shared_flag(shared_with_me, owned),
                ..ImageQuery::default()
            };
            let l = c.list::<_, Image>("/v1/images", &q, &paging).await?;
            out.show_list(&l, View::Columns(COLUMNS))
        }
        ImageCmd::Show { image } => {
            let id = resolve::id(c, Kind::Image, &image).await?;
            let i: Image = c.get(&format!("/v1/images/{}", seg(&id))).await?;
            out.show(&i, View::Fields)
        }
        ImageCmd::Delete { image, confirm } => {
            let id = resolve::id(c, Kind::Image, &image).await?;
            if !confirm.yes {
                let i: Image = c.get(&format!("/v1/images/{}", seg(&id))).await?;
                let deps = scope_dependants(c, &id).await;
                confirm_delete(
                    c,
                    confirm,
                    "images/delete",
                    &id,
                    &format!(
                        "image {} ({id}) and its {} snapshot(s)",
                        i.name,
                        i.snapshots.len()
                    ),
                    deps,
                )
                .await?;
            }
            let i: Image = c.delete(&format!("/v1/images/{}", seg(&id))).await?;
            out.show(&i, View::Fields)
        }
        ImageCmd::Copy {
            image,
            name,
            account,
            encryption_set,
            rekey,
            target_region,
            tags,
            wait,
            remote,
        } => {
            if let Some(to) = &remote.to_remote {
                let copy = super::export::CopyTo {
                    name,
                    account,
                    encryption_set,
                    rekey,
                    target_region,
                    tags,
                    wait,
                };
                return super::export::copy_to_remote(
                    c,
                    out,
                    Kind::Image,
                    &image,
                    to,
                    &remote,
                    copy,
                )
                .await;
            }
            let id = resolve::id(c, Kind::Image, &image).await?;
            let body = super::snapshot::copy_request(
                c,
                name,
                account,
                encryption_set,
                rekey,
                target_region,
                &tags,
            )
            .await?;
            let i: Image = c
                .post(&format!("/v1/images/{}/copy", seg(&id)), &body)
                .await?;
            if wait && i.state == ImageState::Pending {
                return super::job::wait_image(c, out, &i, 3600).await;
            }
            out.show(&i, View::Fields)
        }
        ImageCmd::Permission(cmd) => run_permission(c, out, Kind::Image, cmd).await,
    }
}
