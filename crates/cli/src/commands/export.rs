//! `coffer export …`: the exports of your account's snapshots and images to
//! other deployments (list, show, revoke), and the copy to a remote that
//! makes them (`coffer snapshot copy --to-remote`, `coffer image copy
//! --to-remote`): an export here, then an import on the remote, whose copy
//! jobs pull the data from this deployment with the export's pull token
//! and re-encrypt it under the remote's keys.

use clap::Subcommand;
use coffer_types::Kind;
use coffer_wire::{CreateExport, CreateImport, Export, Image, Import};
use serde::Serialize;
use zeroize::{Zeroize, Zeroizing};

use super::snapshot::tag_map;
use crate::client::{Client, seg};
use crate::output::{Output, View};
use crate::{profile, resolve};

/// An export's table columns.
pub const COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("KIND", "/kind"),
    ("SOURCE", "/source_id"),
    ("STATE", "/state"),
    ("EXPIRES", "/expires_at"),
];

#[derive(Debug, Subcommand)]
pub enum ExportCmd {
    /// Export a snapshot or an image for another deployment to import
    /// (`coffer import create` there): its pull token is shown once, or
    /// written to --token-file. `copy --to-remote` does both sides at once
    /// when you hold a token of the other deployment.
    Create {
        /// The snapshot (id or name).
        #[arg(long, conflicts_with = "image", required_unless_present = "image")]
        snapshot: Option<String>,
        /// The image (id or name).
        #[arg(long)]
        image: Option<String>,
        /// Hours the pull token works, 1 to 168 (default: the server's, 24).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=168))]
        hours: Option<u32>,
        /// Write the pull token to this file (mode 0600) instead of
        /// showing it.
        #[arg(long, value_name = "FILE")]
        token_file: Option<std::path::PathBuf>,
    },
    /// Your account's exports.
    List,
    /// Show an export and the snapshots it exports.
    Show {
        /// Export id (exp-…).
        export: String,
    },
    /// Revoke an export: its pull token stops working at once (a copy
    /// still pulling it fails).
    Revoke {
        /// Export id (exp-…).
        export: String,
    },
}

/// Run an export command.
pub async fn run(c: &Client, out: &Output, cmd: ExportCmd) -> anyhow::Result<()> {
    match cmd {
        ExportCmd::Create {
            snapshot,
            image,
            hours,
            token_file,
        } => {
            let (kind, route, source) = match (snapshot, image) {
                (Some(s), _) => (Kind::Snapshot, "snapshots", s),
                (None, Some(i)) => (Kind::Image, "images", i),
                (None, None) => anyhow::bail!("name what to export: --snapshot or --image"),
            };
            if let Some(f) = &token_file
                && f.exists()
            {
                anyhow::bail!(
                    "{} exists: give --token-file a new file (no export was made)",
                    f.display()
                );
            }
            let id = resolve::id(c, kind, &source).await?;
            let mut e: Export = c
                .post(
                    &format!("/v1/{route}/{}/exports", seg(&id)),
                    &CreateExport {
                        expires_in_hours: hours,
                    },
                )
                .await?;
            if let Some(f) = &token_file {
                let token = Zeroizing::new(e.token.take().unwrap_or_default());
                crate::files::write_private(f, token.as_bytes())?;
                eprintln!("the pull token is in {} (mode 0600)", f.display());
            }
            let endpoint = c.endpoint().to_string();
            out.show(&e, View::Fields)?;
            forget_token(&mut e);
            eprintln!(
                "on the receiving deployment: coffer import create --endpoint {endpoint} --export {} --token-file FILE --name NAME [--ca-file THIS-DEPLOYMENT-CA]",
                e.id
            );
            Ok(())
        }
        ExportCmd::List => {
            let mut l: Vec<Export> = c.get("/v1/exports").await?;
            l.iter_mut().for_each(forget_token);
            out.show(&l, View::Columns(COLUMNS))
        }
        ExportCmd::Show { export } => {
            let id = export_id(&export)?;
            let mut e: Export = c.get(&format!("/v1/exports/{}", seg(&id))).await?;
            forget_token(&mut e);
            out.show(&e, View::Fields)
        }
        ExportCmd::Revoke { export } => {
            let id = export_id(&export)?;
            let mut e: Export = c.delete(&format!("/v1/exports/{}", seg(&id))).await?;
            forget_token(&mut e);
            out.show(&e, View::Fields)
        }
    }
}

/// An export's id, checked (exports have no names).
fn export_id(given: &str) -> anyhow::Result<String> {
    let given = given.trim();
    match given.parse::<coffer_types::Id>() {
        Ok(id) if id.kind() == Kind::Export => Ok(id.to_string()),
        _ => anyhow::bail!(
            "'{}' is not an export id: export ids start with 'exp-' (`coffer export list` shows them)",
            given.chars().take(80).collect::<String>()
        ),
    }
}

/// Wipe an export's pull token, should an answer carry one: it is never
/// printed.
fn forget_token(e: &mut Export) {
    if let Some(mut t) = e.token.take() {
        t.zeroize();
    }
}

/// The options of `copy` that send it to another deployment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ToRemote {
    /// Copy to another Coffer deployment (a remote: `coffer remote add`):
    /// it pulls the data from this one and re-encrypts it under its own
    /// keys. --account, --encryption-set and --target-region are then the
    /// remote's.
    #[arg(long, value_name = "NAME")]
    pub to_remote: Option<String>,
    /// How the remote reaches this deployment's API (default: this
    /// profile's endpoint).
    #[arg(long, value_name = "URL", requires = "to_remote")]
    pub source_endpoint: Option<String>,
    /// Hours the remote may pull the data, 1 to 168 (default: the
    /// server's, 24).
    #[arg(
        long,
        value_name = "N",
        requires = "to_remote",
        value_parser = clap::value_parser!(u32).range(1..=168)
    )]
    pub export_hours: Option<u32>,
}

/// What a copy to a remote makes, as the remote names it.
pub struct CopyTo {
    /// Name of the copy.
    pub name: String,
    /// The remote's account that will own it (id or name).
    pub account: Option<String>,
    /// The remote's encryption set to encrypt it under (id or name).
    pub encryption_set: Option<String>,
    /// Also re-encrypt under new data keys (refused: always so).
    pub rekey: bool,
    /// The remote's region to make it in.
    pub target_region: Option<String>,
    /// `KEY=VALUE` tags.
    pub tags: Vec<String>,
    /// Wait for the remote's jobs and show the copy.
    pub wait: bool,
}

/// `coffer import …`: the receiving side of a copy between two
/// deployments, for an export made with `coffer export create` there.
#[derive(Debug, Subcommand)]
pub enum ImportCmd {
    /// Import another deployment's export: copy jobs here pull its data
    /// over HTTPS and re-encrypt it under this deployment's keys (a later
    /// export of the same disks imports only what changed).
    Create {
        /// Name of the copy (a snapshot, or an image).
        #[arg(long)]
        name: String,
        /// The sending deployment's API, e.g. `https://coffer.site-a:7070`.
        #[arg(long, value_name = "URL")]
        endpoint: String,
        /// The export's id (exp-…).
        #[arg(long, value_name = "EXPORT")]
        export: String,
        /// File holding the export's pull token.
        #[arg(long, value_name = "FILE")]
        token_file: std::path::PathBuf,
        /// The CA certificate (PEM) of the sending deployment, when it is
        /// not one the system trusts.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<std::path::PathBuf>,
        /// The account that will own the copy (id or name).
        #[arg(long)]
        account: Option<String>,
        /// Encrypt under this encryption set's key (id or name).
        #[arg(long)]
        encryption_set: Option<String>,
        /// The region to make the copy in (default: the first).
        #[arg(long)]
        target_region: Option<String>,
        /// A tag of the copy, KEY=VALUE (repeat for more).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Wait for the copy, with a progress bar, and show it.
        #[arg(long)]
        wait: bool,
    },
}

/// Run an import command.
pub async fn run_import(c: &Client, out: &Output, cmd: ImportCmd) -> anyhow::Result<()> {
    let ImportCmd::Create {
        name,
        endpoint,
        export,
        token_file,
        ca_file,
        account,
        encryption_set,
        target_region,
        tags,
        wait,
    } = cmd;
    let export_id = export_id(&export)?;
    let token = Zeroizing::new(std::fs::read_to_string(&token_file).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the pull token file {}: {e}",
            token_file.display()
        )
    })?);
    let ca_pem = match &ca_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("cannot read the CA file {}: {e}", f.display()))?,
        ),
        None => None,
    };
    let mut body = CreateImport {
        name,
        endpoint: profile::check_endpoint(&endpoint)?,
        export_id,
        token: token.trim().to_string(),
        ca_pem,
        account_id: resolve::opt(c, Kind::Account, account.as_deref()).await?,
        target_region,
        encryption_set_id: resolve::opt(c, Kind::EncryptionSet, encryption_set.as_deref()).await?,
        tags: tag_map(&tags)?,
    };
    drop(token);
    let made = c.post::<_, Import>("/v1/imports", &body).await;
    body.token.zeroize();
    let import = made?;
    if wait {
        return wait_import(c, out, &import).await;
    }
    show_import(out, &import)?;
    eprintln!(
        "follow it with: coffer job wait {}",
        import.jobs.first().map_or("", |j| j.id.as_str())
    );
    Ok(())
}

/// Wait for `import`'s jobs on `c` (its deployment), then show the copy.
async fn wait_import(c: &Client, out: &Output, import: &Import) -> anyhow::Result<()> {
    if import.kind == "image" {
        let image: Image = c
            .get(&format!("/v1/images/{}", seg(&import.target_id)))
            .await?;
        return super::job::wait_image(c, out, &image, 3600).await;
    }
    match import.jobs.first() {
        Some(job) => super::job::wait(c, out, &job.id, 3600).await,
        None => Ok(()),
    }
}

/// Show an import: what it makes and its jobs.
fn show_import(out: &Output, import: &Import) -> anyhow::Result<()> {
    out.show(
        &ImportView {
            kind: &import.kind,
            target_id: &import.target_id,
            jobs: import.jobs.iter().map(|j| j.id.as_str()).collect(),
        },
        View::Fields,
    )
}

/// An import as the CLI shows it: what it makes and its jobs' ids.
#[derive(Serialize)]
struct ImportView<'a> {
    kind: &'a str,
    target_id: &'a str,
    jobs: Vec<&'a str>,
}

/// Copy snapshot or image `source` (`kind`, an id or a name) of this
/// deployment to remote `remote`: export it with `c`, then import it on
/// the remote; if the import fails, revoke the export. The pull token is
/// never printed.
pub async fn copy_to_remote(
    c: &Client,
    out: &Output,
    kind: Kind,
    source: &str,
    remote: &str,
    to: &ToRemote,
    copy: CopyTo,
) -> anyhow::Result<()> {
    if copy.rekey {
        anyhow::bail!(
            "--rekey does not apply to --to-remote: a copy to another deployment is always re-encrypted, under the remote's keys; run it again without --rekey"
        );
    }
    let route = match kind {
        Kind::Snapshot => "snapshots",
        Kind::Image => "images",
        other => anyhow::bail!("a {} cannot be copied to a remote", other.noun()),
    };
    let source_endpoint = match &to.source_endpoint {
        Some(e) => profile::check_endpoint(e)?,
        None => c.endpoint().to_string(),
    };
    // Everything the import needs is checked before the export is made.
    let tags = tag_map(&copy.tags)?;
    let r = Client::for_remote(remote)?;
    let source_id = resolve::id(c, kind, source).await?;
    let account_id = resolve::opt(&r, Kind::Account, copy.account.as_deref())
        .await
        .map_err(|e| e.context(format!("--account on remote {remote}")))?;
    let encryption_set_id = resolve::opt(&r, Kind::EncryptionSet, copy.encryption_set.as_deref())
        .await
        .map_err(|e| e.context(format!("--encryption-set on remote {remote}")))?;

    let mut export: Export = c
        .post(
            &format!("/v1/{route}/{}/exports", seg(&source_id)),
            &CreateExport {
                expires_in_hours: to.export_hours,
            },
        )
        .await?;
    let export_id = export.id.clone();
    let Some(token) = export.token.take().map(Zeroizing::new) else {
        let revoked = revoke(c, &export_id).await;
        anyhow::bail!(
            "the API made export {export_id} without a pull token (is the server a different version?){revoked}"
        );
    };
    let mut body = CreateImport {
        name: copy.name,
        endpoint: source_endpoint,
        export_id: export_id.clone(),
        token: token.to_string(),
        ca_pem: c.ca_cert().map(str::to_string),
        account_id,
        target_region: copy.target_region,
        encryption_set_id,
        tags,
    };
    drop(token);
    let made = r.post::<_, Import>("/v1/imports", &body).await;
    body.token.zeroize();
    let import = match made {
        Ok(i) => i,
        Err(e) => {
            let revoked = revoke(c, &export_id).await;
            return Err(e.context(format!("the import on remote {remote} failed{revoked}")));
        }
    };
    if copy.wait {
        let waited = wait_import(&r, out, &import).await;
        // Copied (or failed for good): the pull token has nothing more to
        // do, so it stops working now rather than when it expires.
        if waited.is_ok() {
            let revoked = revoke(c, &export_id).await;
            if revoked.contains("failed") {
                eprintln!("warning: export {export_id} stays open until it expires{revoked}");
            }
        }
        return waited;
    }
    show_import(out, &import)?;
    eprintln!(
        "the copy runs on remote {remote}: watch it with its own profile, or run again with --wait"
    );
    Ok(())
}

/// Revoke export `id` after a failed import, so that no pull token is
/// left open; what to add to the error (the revocation's own failure).
async fn revoke(c: &Client, id: &str) -> String {
    match c
        .delete::<Export>(&format!("/v1/exports/{}", seg(id)))
        .await
    {
        Ok(mut e) => {
            forget_token(&mut e);
            format!(" (export {id} was revoked)")
        }
        Err(e) => format!(
            " (and revoking export {id} failed: {e:#}; revoke it with `coffer export revoke {id}`)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_named_by_their_ids_only() {
        assert_eq!(
            export_id(" exp-0123456789abcdef ").unwrap(),
            "exp-0123456789abcdef"
        );
        for bad in ["snap-0123456789abcdef", "my-export", ""] {
            let e = export_id(bad).unwrap_err().to_string();
            assert!(e.contains("is not an export id"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_listed_export_never_carries_its_pull_token() {
        let mut e = Export {
            id: "exp-0123456789abcdef".into(),
            kind: "snapshot".into(),
            source_id: "snap-0123456789abcdef".into(),
            account_id: "acct-0123456789abcdef".into(),
            deployment_id: "dep".into(),
            state: "active".into(),
            expires_at: "2030-01-01T00:00:00Z".into(),
            created_at: "2030-01-01T00:00:00Z".into(),
            members: vec![],
            token: Some("pull-secret".into()),
        };
        forget_token(&mut e);
        assert!(!serde_json::to_string(&e).unwrap().contains("pull-secret"));
    }
}
