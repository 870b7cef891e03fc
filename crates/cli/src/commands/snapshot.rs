//! `coffer snapshot …`: create, list, show, delete, copy, permission.

use clap::Subcommand;
use coffer_types::Kind;
use coffer_wire::{CopyRequest, CreateSnapshot, Share, Snapshot, SnapshotQuery, UpdateShare};

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
    ("METHOD", "/creation_method"),
    ("CREATED", "/created_at"),
];

/// A permission's table columns (one row per account).
pub const PERMISSION_COLUMNS: &[(&str, &str)] = &[("ACCOUNT", "/principal"), ("STATUS", "/status")];

/// `KEY=VALUE` tags of a create or copy.
pub fn tag_map(tags: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut m = std::collections::BTreeMap::new();
    for t in tags {
        let Some((k, v)) = t.split_once('=') else {
            anyhow::bail!("tag '{t}' has no '=': write tags as KEY=VALUE, e.g. --tag app=web");
        };
        m.insert(k.to_string(), v.to_string());
    }
    Ok(m)
}

/// `coffer snapshot permission …` and `coffer image permission …`: who may
/// create disks from (launch) and copy it (AWS's create-volume and launch
/// permissions).
#[derive(Debug, Subcommand)]
pub enum PermissionCmd {
    /// Let accounts (or every account, --public) use it.
    Add {
        /// The snapshot or image (id or name).
        resource: String,
        /// Account ids or names (repeat or comma-separate).
        #[arg(long, value_delimiter = ',', required_unless_present = "public")]
        account: Vec<String>,
        /// Every account of the deployment (platform-key resources only).
        #[arg(long)]
        public: bool,
    },
    /// Take the permission back: the account no longer sees or uses it;
    /// what it made from it stays.
    Remove {
        /// The snapshot or image (id or name).
        resource: String,
        /// Account ids or names.
        #[arg(long, value_delimiter = ',', required_unless_present = "public")]
        account: Vec<String>,
        /// Every account.
        #[arg(long)]
        public: bool,
    },
    /// The accounts it is shared with.
    List {
        /// The snapshot or image (id or name).
        resource: String,
    },
}

/// Run a permission command on resources of `kind`.
pub async fn run_permission(
    c: &Client,
    out: &Output,
    kind: Kind,
    cmd: PermissionCmd,
) -> anyhow::Result<()> {
    let principals = |account: Vec<String>, public: bool| async move {
        let mut v = vec![];
        for a in account {
            v.push(resolve::id(c, Kind::Account, &a).await?);
        }
        if public {
            v.push("*".to_string());
        }
        anyhow::Ok(v)
    };
    let share: Share = match cmd {
        PermissionCmd::Add {
            resource,
            account,
            public,
        } => {
            let id = resolve::id(c, kind, &resource).await?;
            let body = UpdateShare {
                add_principals: principals(account, public).await?,
                ..UpdateShare::default()
            };
            c.patch(&format!("/v1/permissions/{}", seg(&id)), &body)
                .await?
        }
        PermissionCmd::Remove {
            resource,
            account,
            public,
        } => {
            let id = resolve::id(c, kind, &resource).await?;
            let body = UpdateShare {
                remove_principals: principals(account, public).await?,
                ..UpdateShare::default()
            };
            c.patch(&format!("/v1/permissions/{}", seg(&id)), &body)
                .await?
        }
        PermissionCmd::List { resource } => {
            let id = resolve::id(c, kind, &resource).await?;
            c.get(&format!("/v1/permissions/{}", seg(&id))).await?
        }
    };
    out.show(&share.principals, View::Columns(PERMISSION_COLUMNS))
}

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
        /// A tag, KEY=VALUE (repeat for more).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Copy a snapshot into your account (or --account): the copy is
    /// yours, and stays when the source is unshared or deleted. Under the
    /// same key it shares the source's ciphertext: nothing is rewritten.
    /// With --to-remote, copy it to another deployment instead: it pulls
    /// the data from this one and re-encrypts it under its own keys.
    Copy {
        /// The snapshot (id or name), yours or shared with you.
        snapshot: String,
        /// Name of the copy.
        #[arg(long)]
        name: String,
        /// The account that will own the copy (id or name).
        #[arg(long)]
        account: Option<String>,
        /// Re-encrypt under this disk encryption set's key (a job: see
        /// --wait).
        #[arg(long)]
        encryption_set: Option<String>,
        /// Re-encrypt under new data keys even where the copy could share
        /// the source's (under the platform key, or --encryption-set's).
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
        /// and show the copy (without: show the job).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        remote: super::export::ToRemote,
    },
    /// Who may create disks from it and copy it (AWS's create-volume
    /// permission).
    #[command(subcommand)]
    Permission(PermissionCmd),
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
        /// Only snapshots with this tag, KEY=VALUE.
        #[arg(long)]
        tag: Option<String>,
        /// Only snapshots other accounts share with yours.
        #[arg(long, conflicts_with = "owned")]
        shared_with_me: bool,
        /// Only snapshots you see other than through a share.
        #[arg(long)]
        owned: bool,
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
        SnapshotCmd::Create { disk, name, tags } => {
            let body = CreateSnapshot {
                disk_id: resolve::id(c, Kind::Disk, &disk).await?,
                name,
                tags: tag_map(&tags)?,
            };
            let s: Snapshot = c.post("/v1/snapshots", &body).await?;
            out.show(&s, View::Fields)
        }
        SnapshotCmd::Copy {
            snapshot,
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
                    Kind::Snapshot,
                    &snapshot,
                    to,
                    &remote,
                    copy,
                )
                .await;
            }
            let id = resolve::id(c, Kind::Snapshot, &snapshot).await?;
            let body = copy_request(
                c,
                name,
                account,
                encryption_set,
                rekey,
                target_region,
                &tags,
            )
            .await?;
            let j: coffer_wire::Job = c
                .post(&format!("/v1/snapshots/{}/copy", seg(&id)), &body)
                .await?;
            if j.state == "succeeded" {
                // Done at once: show the copy.
                let s: Snapshot = c
                    .get(&format!("/v1/snapshots/{}", seg(&j.target_id)))
                    .await?;
                return out.show(&s, View::Fields);
            }
            if wait {
                return super::job::wait(c, out, &j.id, 3600).await;
            }
            out.show(&j, View::Fields)
        }
        SnapshotCmd::Permission(cmd) => run_permission(c, out, Kind::Snapshot, cmd).await,
        SnapshotCmd::List {
            name,
            account,
            source_disk,
            tag,
            shared_with_me,
            owned,
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
                tag,
                shared: shared_flag(shared_with_me, owned),
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

/// The body of a snapshot or image copy, names resolved to ids.
pub async fn copy_request(
    c: &Client,
    name: String,
    account: Option<String>,
    encryption_set: Option<String>,
    rekey: bool,
    target_region: Option<String>,
    tags: &[String],
) -> anyhow::Result<CopyRequest> {
    Ok(CopyRequest {
        name,
        account_id: resolve::opt(c, Kind::Account, account.as_deref()).await?,
        encryption_set_id: resolve::opt(c, Kind::EncryptionSet, encryption_set.as_deref()).await?,
        rekey,
        target_region,
        tags: tag_map(tags)?,
    })
}

/// The `shared=` filter of `--shared-with-me` / `--owned`.
pub fn shared_flag(shared_with_me: bool, owned: bool) -> Option<String> {
    match (shared_with_me, owned) {
        (true, _) => Some("true".into()),
        (false, true) => Some("false".into()),
        _ => None,
    }
}
