//! `coffer encryption-set …`: disk encryption sets (create, list, show,
//! update, delete).

use clap::Subcommand;
use coffer_types::{EncryptionType, Kind};
use coffer_wire::{CreateEncryptionSet, EncryptionSet, EncryptionSetQuery, UpdateEncryptionSet};

use crate::client::{Client, Paging, seg};
use crate::output::{Output, View};
use crate::resolve;

/// A set's table columns.
pub const COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("REGION", "/region"),
    ("TYPE", "/encryption_type"),
    ("KEY", "/key_id"),
    ("VERSION", "/key_version"),
    ("IDENTITY", "/identity_id"),
    ("KEY ACCESS", "/identity_has_key_access"),
    ("DATA KEYS", "/rewrap/data_keys"),
    ("RE-WRAPPED", "/rewrap/data_keys_current"),
];

#[derive(Debug, Subcommand)]
pub enum EncryptionSetCmd {
    /// Create a disk encryption set for a customer key; then give its
    /// managed identity (`identity_id`) the role Key Vault Crypto Service
    /// Encryption User on the key.
    Create {
        /// Name (unique among the account's sets).
        #[arg(long)]
        name: String,
        /// The key (id); its vault needs soft delete and purge protection.
        #[arg(long)]
        key: String,
        /// Pin this key version (default: always the newest).
        #[arg(long)]
        key_version: Option<u32>,
        /// customer (default), or double: every disk under the set gets a
        /// second, outer data layer under the region's platform key, so
        /// its data is readable only while both keys are usable.
        #[arg(long = "type", default_value = "customer")]
        encryption_type: EncryptionType,
        /// Owning account, id or name (default: yours).
        #[arg(long)]
        account: Option<String>,
    },
    /// List the sets you may see.
    List {
        /// Only sets with this exact name.
        #[arg(long)]
        name: Option<String>,
        /// Only sets of this account (id or name).
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a set, with whether its identity can reach its key.
    Show {
        /// Set id or name.
        set: String,
    },
    /// Wait until every data key of the set is wrapped under the key
    /// version it uses (after `coffer key rotate` or `encryption-set
    /// update`, the server re-wraps them in the background; no data is
    /// rewritten), with a progress bar; then show the set.
    Wait {
        /// Set id or name.
        set: String,
        /// Give up after this many seconds (exit status 1).
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Point a set at another key of its region, or pin a version (0
    /// unpins).
    Update {
        /// Set id or name.
        set: String,
        /// The new key (id).
        #[arg(long)]
        key: Option<String>,
        /// Pin this version; 0: always the newest.
        #[arg(long)]
        key_version: Option<u32>,
    },
    /// Delete a set and its managed identity.
    Delete {
        /// Set id or name.
        set: String,
    },
}

/// Run an encryption-set command.
pub async fn run(c: &Client, out: &Output, cmd: EncryptionSetCmd) -> anyhow::Result<()> {
    match cmd {
        EncryptionSetCmd::Create {
            name,
            key,
            key_version,
            encryption_type,
            account,
        } => {
            let body = CreateEncryptionSet {
                name,
                key_id: resolve::id(c, Kind::Key, &key).await?,
                key_version,
                encryption_type: Some(encryption_type),
                account_id: resolve::opt(c, Kind::Account, account.as_deref()).await?,
            };
            let s: EncryptionSet = c.post("/v1/encryption-sets", &body).await?;
            out.show(&s, View::Fields)
        }
        EncryptionSetCmd::List {
            name,
            account,
            paging,
        } => {
            let q = EncryptionSetQuery {
                name,
                account: resolve::opt(c, Kind::Account, account.as_deref()).await?,
                ..EncryptionSetQuery::default()
            };
            let l = c
                .list::<_, EncryptionSet>("/v1/encryption-sets", &q, &paging)
                .await?;
            out.show_list(&l, View::Columns(COLUMNS))
        }
        EncryptionSetCmd::Show { set } => {
            let id = resolve::id(c, Kind::EncryptionSet, &set).await?;
            let s: EncryptionSet = c.get(&format!("/v1/encryption-sets/{}", seg(&id))).await?;
            out.show(&s, View::Fields)
        }
        EncryptionSetCmd::Wait { set, timeout } => {
            let id = resolve::id(c, Kind::EncryptionSet, &set).await?;
            let path = format!("/v1/encryption-sets/{}", seg(&id));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "re-wrapping data keys under version {msg} [{bar:30}] {pos}/{len}",
                )?
                .progress_chars("=> "),
            );
            loop {
                let s: EncryptionSet = c.get(&path).await?;
                bar.set_length(s.rewrap.data_keys);
                bar.set_position(s.rewrap.data_keys_current);
                bar.set_message(s.rewrap.key_version.to_string());
                if s.rewrap.complete {
                    bar.finish_and_clear();
                    return out.show(&s, View::Fields);
                }
                if std::time::Instant::now() >= deadline {
                    bar.abandon();
                    anyhow::bail!(
                        "{} of {} data keys of set {id} are under key version {} after {timeout} s; \
                         if `identity_has_key_access` is false, give the set's identity its role back \
                         (re-wrapping resumes by itself)",
                        s.rewrap.data_keys_current,
                        s.rewrap.data_keys,
                        s.rewrap.key_version
                    );
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        }
        EncryptionSetCmd::Update {
            set,
            key,
            key_version,
        } => {
            let id = resolve::id(c, Kind::EncryptionSet, &set).await?;
            let body = UpdateEncryptionSet {
                key_id: resolve::opt(c, Kind::Key, key.as_deref()).await?,
                key_version,
            };
            let s: EncryptionSet = c
                .patch(&format!("/v1/encryption-sets/{}", seg(&id)), &body)
                .await?;
            out.show(&s, View::Fields)
        }
        EncryptionSetCmd::Delete { set } => {
            let id = resolve::id(c, Kind::EncryptionSet, &set).await?;
            let s: EncryptionSet = c
                .delete(&format!("/v1/encryption-sets/{}", seg(&id)))
                .await?;
            out.show(&s, View::Fields)
        }
    }
}
