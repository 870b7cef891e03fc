//! `coffer share …` (resource shares, Alibaba / AWS RAM) and `coffer
//! invitation …` (an account's answer to a share of another tenant).

use clap::Subcommand;
use coffer_types::{Kind, PrincipalScope};
use coffer_wire::{CreateShare, Invitation, InvitationQuery, Share, ShareQuery, UpdateShare};

use super::Confirm;
use crate::client::{Client, Paging, seg};
use crate::output::{Output, View};
use crate::resolve;

/// A share's table columns.
pub const COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("ACCOUNT", "/account_id"),
    ("SCOPE", "/principal_scope"),
    ("CREATED", "/created_at"),
];

/// An invitation's table columns.
pub const INVITATION_COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("SHARE", "/share_id"),
    ("SHARE NAME", "/share_name"),
    ("FROM ACCOUNT", "/sender_account_id"),
    ("STATUS", "/status"),
    ("SENT", "/created_at"),
];

#[derive(Debug, Subcommand)]
pub enum ShareCmd {
    /// Create a resource share of snapshots and images with accounts,
    /// folders or your tenant. Accounts of other tenants are invited and
    /// see nothing until they accept.
    Create {
        /// Name (unique among the account's shares).
        #[arg(long)]
        name: String,
        /// Who may be a principal: any (accounts anywhere; default) or
        /// tenant (only your tenant, its folders and accounts).
        #[arg(long, default_value = "any")]
        principal_scope: PrincipalScope,
        /// Snapshots or images (ids) to share.
        #[arg(long = "resource", value_delimiter = ',')]
        resources: Vec<String>,
        /// Accounts, folders or tenants (ids) to share with.
        #[arg(long = "principal", value_delimiter = ',')]
        principals: Vec<String>,
    },
    /// Your resource shares, or those shared with your account.
    List {
        /// Only shares with this exact name.
        #[arg(long)]
        name: Option<String>,
        /// The shares other accounts share with yours (in force or invited).
        #[arg(long)]
        shared_with_me: bool,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a resource share.
    Show {
        /// Share id.
        share: String,
    },
    /// Add snapshots or images to a share (principals that accepted see
    /// them at once, with no new invitation).
    AddResource {
        /// Share id.
        share: String,
        /// Snapshots or images (ids).
        #[arg(long = "resource", value_delimiter = ',', required = true)]
        resources: Vec<String>,
    },
    /// Remove resources from a share (its principals lose them; what they
    /// made from them stays).
    RemoveResource {
        /// Share id.
        share: String,
        /// Snapshots or images (ids).
        #[arg(long = "resource", value_delimiter = ',', required = true)]
        resources: Vec<String>,
    },
    /// Share with more accounts, folders or your tenant.
    AddPrincipal {
        /// Share id.
        share: String,
        /// Accounts, folders or tenants (ids).
        #[arg(long = "principal", value_delimiter = ',', required = true)]
        principals: Vec<String>,
    },
    /// Stop sharing with accounts, folders or the tenant.
    RemovePrincipal {
        /// Share id.
        share: String,
        /// Accounts, folders or tenants (ids).
        #[arg(long = "principal", value_delimiter = ',', required = true)]
        principals: Vec<String>,
    },
    /// Delete a share: its principals lose its resources.
    Delete {
        /// Share id.
        share: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

#[derive(Debug, Subcommand)]
pub enum InvitationCmd {
    /// Invitations to other tenants' shares, of your account (or --account).
    List {
        /// The invited account (id or name).
        #[arg(long)]
        account: Option<String>,
    },
    /// Accept: the share's resources become visible to the account.
    Accept {
        /// Invitation id.
        invitation: String,
    },
    /// Reject: nothing is shared.
    Reject {
        /// Invitation id.
        invitation: String,
    },
}

/// Resolve principal arguments: account names are looked up, ids kept.
async fn principal_ids(c: &Client, given: Vec<String>) -> anyhow::Result<Vec<String>> {
    let mut out = vec![];
    for p in given {
        if p.parse::<coffer_types::Id>().is_ok() || p == "*" {
            out.push(p);
        } else {
            out.push(resolve::id(c, Kind::Account, &p).await?);
        }
    }
    Ok(out)
}

/// Run a share command.
pub async fn run(c: &Client, out: &Output, cmd: ShareCmd) -> anyhow::Result<()> {
    let update = |id: String, body: UpdateShare| async move {
        let s: Share = c.patch(&format!("/v1/shares/{}", seg(&id)), &body).await?;
        anyhow::Ok(s)
    };
    match cmd {
        ShareCmd::Create {
            name,
            principal_scope,
            resources,
            principals,
        } => {
            let body = CreateShare {
                name,
                principal_scope: Some(principal_scope),
                account_id: None,
                resources,
                principals: principal_ids(c, principals).await?,
            };
            let s: Share = c.post("/v1/shares", &body).await?;
            out.show(&s, View::Fields)
        }
        ShareCmd::List {
            name,
            shared_with_me,
            paging,
        } => {
            let q = ShareQuery {
                name,
                shared: shared_with_me.then(|| "true".to_string()),
                ..ShareQuery::default()
            };
            let l = c.list::<_, Share>("/v1/shares", &q, &paging).await?;
            out.show_list(&l, View::Columns(COLUMNS))
        }
        ShareCmd::Show { share } => {
            let s: Share = c.get(&format!("/v1/shares/{}", seg(&share))).await?;
            out.show(&s, View::Fields)
        }
        ShareCmd::AddResource { share, resources } => {
            let s = update(
                share,
                UpdateShare {
                    add_resources: resources,
                    ..UpdateShare::default()
                },
            )
            .await?;
            out.show(&s, View::Fields)
        }
        ShareCmd::RemoveResource { share, resources } => {
            let s = update(
                share,
                UpdateShare {
                    remove_resources: resources,
                    ..UpdateShare::default()
                },
            )
            .await?;
            out.show(&s, View::Fields)
        }
        ShareCmd::AddPrincipal { share, principals } => {
            let s = update(
                share,
                UpdateShare {
                    add_principals: principal_ids(c, principals).await?,
                    ..UpdateShare::default()
                },
            )
            .await?;
            out.show(&s, View::Fields)
        }
        ShareCmd::RemovePrincipal { share, principals } => {
            let s = update(
                share,
                UpdateShare {
                    remove_principals: principal_ids(c, principals).await?,
                    ..UpdateShare::default()
                },
            )
            .await?;
            out.show(&s, View::Fields)
        }
        ShareCmd::Delete { share, confirm } => {
            if !confirm.yes {
                let s: Share = c.get(&format!("/v1/shares/{}", seg(&share))).await?;
                super::confirm_delete(
                    c,
                    confirm,
                    "shares/write",
                    &share,
                    &format!(
                        "resource share {} ({share}): {} principal(s) lose {} resource(s)",
                        s.name,
                        s.principals.len(),
                        s.resources.len()
                    ),
                    vec![],
                )
                .await?;
            }
            let s: Share = c.delete(&format!("/v1/shares/{}", seg(&share))).await?;
            out.show(&s, View::Fields)
        }
    }
}

/// Run an invitation command.
pub async fn run_invitation(c: &Client, out: &Output, cmd: InvitationCmd) -> anyhow::Result<()> {
    match cmd {
        InvitationCmd::List { account } => {
            let q = InvitationQuery {
                account: resolve::opt(c, Kind::Account, account.as_deref()).await?,
                ..InvitationQuery::default()
            };
            let l = c
                .list::<_, Invitation>("/v1/invitations", &q, &Paging::default())
                .await?;
            out.show_list(&l, View::Columns(INVITATION_COLUMNS))
        }
        InvitationCmd::Accept { invitation } => {
            let i: Invitation = c
                .action(&format!("/v1/invitations/{}/accept", seg(&invitation)))
                .await?;
            out.show(&i, View::Fields)
        }
        InvitationCmd::Reject { invitation } => {
            let i: Invitation = c
                .action(&format!("/v1/invitations/{}/reject", seg(&invitation)))
                .await?;
            out.show(&i, View::Fields)
        }
    }
}
