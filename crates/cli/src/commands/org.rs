//! The organisation: `coffer tenant …`, `coffer folder …`, `coffer account …`.

use clap::Subcommand;
use coffer_types::Kind;
use coffer_wire::{
    Account, AccountQuery, AccountUsage, CreateAccount, CreateFolder, CreateTenant, Folder,
    FolderQuery, MoveAccount, Tenant, TenantQuery, UpdateTenant, UsageQuery, WhoAmI,
};

use crate::client::{Client, Paging, seg};
use crate::output::{Output, View, table};
use crate::resolve;

const TENANT_COLUMNS: &[(&str, &str)] =
    &[("ID", "/id"), ("NAME", "/name"), ("CREATED", "/created_at")];

const FOLDER_COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("TENANT", "/tenant_id"),
    ("PARENT", "/parent_id"),
    ("CREATED", "/created_at"),
];

const ACCOUNT_COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("TENANT", "/tenant_id"),
    ("FOLDER", "/folder_id"),
    ("CREATED", "/created_at"),
];

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant (Owners of the deployment).
    Create {
        /// Name.
        #[arg(long)]
        name: String,
    },
    /// List the tenants you may see.
    List {
        /// Only the tenant with this exact name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a tenant.
    Show {
        /// Tenant id or name.
        tenant: String,
    },
    /// Change a tenant's policy (org/write on the tenant).
    Update {
        /// Tenant id or name.
        tenant: String,
        /// Let the tenant's customer-managed keys be granted to principals
        /// of other tenants, and its customer-key snapshots and images be
        /// shared with their accounts (each holding a grant): AWS's
        /// behaviour. Off by default (Azure's). Grants made while on stay
        /// until revoked.
        #[arg(long, value_name = "true|false")]
        allow_cross_tenant_key_grants: Option<bool>,
    },
}

#[derive(Debug, Subcommand)]
pub enum FolderCmd {
    /// Create a folder at a tenant's root or in a folder.
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// Tenant id or name (default: yours, or the parent folder's).
        #[arg(long)]
        tenant: Option<String>,
        /// Parent folder id or name (default: the tenant's root).
        #[arg(long)]
        parent: Option<String>,
    },
    /// List the folders of a tenant.
    List {
        /// Tenant id or name (default: yours).
        #[arg(long)]
        tenant: Option<String>,
        /// Only folders with this exact name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a folder.
    Show {
        /// Folder id or name.
        folder: String,
    },
    /// Delete an empty folder.
    Delete {
        /// Folder id or name.
        folder: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Create an account at a tenant's root or in a folder.
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// Tenant id or name (default: yours, or the folder's).
        #[arg(long)]
        tenant: Option<String>,
        /// Folder id or name (default: the tenant's root).
        #[arg(long)]
        folder: Option<String>,
    },
    /// List the accounts you may see.
    List {
        /// Only this tenant's (id or name).
        #[arg(long)]
        tenant: Option<String>,
        /// Only the account with this exact name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show an account.
    Show {
        /// Account id or name.
        account: String,
    },
    /// Storage an account uses: its disks, snapshots and images, and the
    /// data they keep stored, now and as sampled over time (hourly by
    /// default).
    Usage {
        /// Account id or name (default: your own).
        account: Option<String>,
        /// Only samples at or after this time (RFC 3339, e.g.
        /// 2027-01-31T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
    },
    /// Move an account to another folder of its tenant, or to its root.
    #[command(group(clap::ArgGroup::new("destination").required(true).args(["folder", "root"])))]
    Move {
        /// Account id or name.
        account: String,
        /// Destination folder (id or name).
        #[arg(long)]
        folder: Option<String>,
        /// Move to the tenant's root.
        #[arg(long)]
        root: bool,
    },
}

/// Run a tenant command.
pub async fn tenant(c: &Client, out: &Output, cmd: TenantCmd) -> anyhow::Result<()> {
    match cmd {
        TenantCmd::Create { name } => {
            let t: Tenant = c.post("/v1/tenants", &CreateTenant { name }).await?;
            out.show(&t, View::Fields)
        }
        TenantCmd::List { name, paging } => {
            let q = TenantQuery {
                name,
                ..TenantQuery::default()
            };
            let l = c.list::<_, Tenant>("/v1/tenants", &q, &paging).await?;
            out.show_list(&l, View::Columns(TENANT_COLUMNS))
        }
        TenantCmd::Show { tenant } => {
            let id = resolve::id(c, Kind::Tenant, &tenant).await?;
            let t: Tenant = c.get(&format!("/v1/tenants/{}", seg(&id))).await?;
            out.show(&t, View::Fields)
        }
        TenantCmd::Update {
            tenant,
            allow_cross_tenant_key_grants,
        } => {
            if allow_cross_tenant_key_grants.is_none() {
                anyhow::bail!("nothing to change: give --allow-cross-tenant-key-grants true|false");
            }
            let id = resolve::id(c, Kind::Tenant, &tenant).await?;
            let t: Tenant = c
                .patch(
                    &format!("/v1/tenants/{}", seg(&id)),
                    &UpdateTenant {
                        allow_cross_tenant_key_grants,
                    },
                )
                .await?;
            out.show(&t, View::Fields)
        }
    }
}

/// Run a folder command.
pub async fn folder(c: &Client, out: &Output, cmd: FolderCmd) -> anyhow::Result<()> {
    match cmd {
        FolderCmd::Create {
            name,
            tenant,
            parent,
        } => {
            let body = CreateFolder {
                name,
                tenant_id: resolve::opt(c, Kind::Tenant, tenant.as_deref()).await?,
                parent_id: resolve::opt(c, Kind::Folder, parent.as_deref()).await?,
            };
            let f: Folder = c.post("/v1/folders", &body).await?;
            out.show(&f, View::Fields)
        }
        FolderCmd::List {
            tenant,
            name,
            paging,
        } => {
            let q = FolderQuery {
                tenant: resolve::opt(c, Kind::Tenant, tenant.as_deref()).await?,
                name,
                ..FolderQuery::default()
            };
            let l = c.list::<_, Folder>("/v1/folders", &q, &paging).await?;
            out.show_list(&l, View::Columns(FOLDER_COLUMNS))
        }
        FolderCmd::Show { folder } => {
            let id = resolve::id(c, Kind::Folder, &folder).await?;
            let f: Folder = c.get(&format!("/v1/folders/{}", seg(&id))).await?;
            out.show(&f, View::Fields)
        }
        FolderCmd::Delete { folder } => {
            let id = resolve::id(c, Kind::Folder, &folder).await?;
            let f: Folder = c.delete(&format!("/v1/folders/{}", seg(&id))).await?;
            out.show(&f, View::Fields)
        }
    }
}

/// Run an account command.
pub async fn account(c: &Client, out: &Output, cmd: AccountCmd) -> anyhow::Result<()> {
    match cmd {
        AccountCmd::Create {
            name,
            tenant,
            folder,
        } => {
            let body = CreateAccount {
                name,
                tenant_id: resolve::opt(c, Kind::Tenant, tenant.as_deref()).await?,
                folder_id: resolve::opt(c, Kind::Folder, folder.as_deref()).await?,
            };
            let a: Account = c.post("/v1/accounts", &body).await?;
            out.show(&a, View::Fields)
        }
        AccountCmd::List {
            tenant,
            name,
            paging,
        } => {
            let q = AccountQuery {
                tenant: resolve::opt(c, Kind::Tenant, tenant.as_deref()).await?,
                name,
                ..AccountQuery::default()
            };
            let l = c.list::<_, Account>("/v1/accounts", &q, &paging).await?;
            out.show_list(&l, View::Columns(ACCOUNT_COLUMNS))
        }
        AccountCmd::Show { account } => {
            let id = resolve::id(c, Kind::Account, &account).await?;
            let a: Account = c.get(&format!("/v1/accounts/{}", seg(&id))).await?;
            out.show(&a, View::Fields)
        }
        AccountCmd::Usage { account, since } => {
            let id = match account {
                Some(a) => resolve::id(c, Kind::Account, &a).await?,
                None => c.get::<WhoAmI>("/v1/whoami").await?.account_id,
            };
            let u: AccountUsage = c
                .get_with(
                    &format!("/v1/accounts/{}/usage", seg(&id)),
                    &UsageQuery { since },
                )
                .await?;
            out.show(&u, View::Text(&usage_text))
        }
        AccountCmd::Move {
            account,
            folder,
            root,
        } => {
            let id = resolve::id(c, Kind::Account, &account).await?;
            // clap's group makes exactly one of --folder and --root present.
            let folder_id = if root {
                None
            } else {
                resolve::opt(c, Kind::Folder, folder.as_deref()).await?
            };
            let a: Account = c
                .post(
                    &format!("/v1/accounts/{}/move", seg(&id)),
                    &MoveAccount { folder_id },
                )
                .await?;
            out.show(&a, View::Fields)
        }
    }
}

/// `coffer account usage` for people: one row per sample, then now.
fn usage_text(v: &serde_json::Value) -> String {
    let Ok(u) = serde_json::from_value::<AccountUsage>(v.clone()) else {
        return v.to_string();
    };
    let size = coffer_types::size::approx;
    let rows = u
        .samples
        .iter()
        .chain(std::iter::once(&u.current))
        .map(|s| {
            vec![
                s.at.clone(),
                size(s.stored_bytes),
                s.disks.to_string(),
                size(s.disk_bytes),
                s.snapshots.to_string(),
                size(s.snapshot_bytes),
                s.images.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "AT",
            "STORED",
            "DISKS",
            "PROVISIONED",
            "SNAPSHOTS",
            "SNAPSHOT SIZE",
            "IMAGES",
        ],
        rows,
    )
}
