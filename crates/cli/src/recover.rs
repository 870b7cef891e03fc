//! `coffer admin recover`: the break-glass path. When no Owner of the
//! deployment can sign in any more (every Owner token expired or lost), an
//! operator who holds the root key and can reach the metadata mints a
//! short-lived Owner token without the API: proof of the root key is what
//! authorizes it, as possession of the root key already gives everything
//! the deployment protects. Runs on a node, with the server stopped or
//! running (it takes no data dir lock and joins no deployment).

use std::path::PathBuf;

use anyhow::{Context, bail};
use coffer_keyvault::KeyVault;
use coffer_service::{Service, ServiceConfig};
use serde_json::json;

use crate::output::{Output, View};
use crate::serve::{self, ServeOptions};

/// Options of `coffer admin recover`: where the deployment is, as for
/// `coffer serve`.
#[derive(Debug, clap::Args)]
pub struct RecoverArgs {
    /// The server's configuration file (TOML), for the options below.
    #[arg(long, env = "COFFER_CONFIG")]
    pub config: Option<PathBuf>,
    /// The node's data directory (its SQLite metadata unless --metadata).
    #[arg(long, env = "COFFER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Metadata database URL (default: sqlite in the data dir).
    #[arg(long, env = "COFFER_METADATA")]
    pub metadata: Option<String>,
    /// Root key file (as for `coffer serve`).
    #[arg(long, env = "COFFER_ROOT_KEY_FILE")]
    pub root_key_file: Option<PathBuf>,
    /// Root key in an HSM: a PKCS#11 URI (as for `coffer serve`).
    #[arg(long, env = "COFFER_ROOT_KEY_URI")]
    pub root_key_uri: Option<String>,
    /// How long the recovery token lasts (1m to 24h).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub expires_in: std::time::Duration,
}

/// Mint a recovery Owner and print its token once.
pub async fn run(args: RecoverArgs, out: &Output) -> anyhow::Result<()> {
    crate::secrets::harden_process()
        .context("cannot turn core dumps off for a process that holds the root key")?;
    let o = ServeOptions {
        config: args.config,
        data_dir: args.data_dir,
        metadata: args.metadata,
        root_key_file: args.root_key_file,
        root_key_uri: args.root_key_uri,
        ..ServeOptions::default()
    }
    .with_file()?;
    let data_dir = serve::data_dir_of(&o);
    if o.metadata.is_none() && !data_dir.join("meta.sqlite").exists() {
        bail!(
            "no deployment in {}: give the node's --data-dir, or --metadata for a deployment on PostgreSQL",
            data_dir.display()
        );
    }
    let meta = serve::open_meta(&o, &data_dir).await?;
    // Before the root key is touched: a metadata store without a
    // deployment must not get a new root key check (or a new key file).
    if meta.principal_count().await? == 0 {
        bail!(
            "the metadata store holds no deployment (no principal yet): check --metadata / --data-dir; a new deployment creates its admin at its first `coffer serve`"
        );
    }
    let root = serve::root_key(&meta, &serve::root_source(&o)?, &data_dir).await?;
    let vault = KeyVault::open(meta.clone(), root)
        .await
        .context("the root key does not open this deployment, so no recovery token was made")?;
    let store = serve::open_store(&o, &data_dir)?;
    let service = Service::new(meta, store, vault, ServiceConfig::default());
    let (p, token, expires_at) = service.break_glass(args.expires_in).await?;
    service.meta().close().await;
    let v = json!({
        "principal_id": p.id.to_string(),
        "name": p.name,
        "tenant_id": p.tenant_id.to_string(),
        "token": token.as_str(),
        "expires_at": expires_at,
    });
    out.show(&v, View::Fields)?;
    eprintln!(
        "A recovery Owner of the deployment was created. Its token, above, is shown only now and expires at {expires_at}.\n\
         Use it to restore lasting access, e.g.:\n  \
         COFFER_TOKEN=<token> coffer role assignment create --principal <your principal> --role Owner --scope /\n\
         then delete the recovery principal: COFFER_TOKEN=<token> coffer principal delete {} --yes",
        p.id
    );
    Ok(())
}
