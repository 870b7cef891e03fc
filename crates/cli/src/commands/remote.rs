//! `coffer remote …`: other Coffer deployments this user can reach (add,
//! list, remove), kept in the profiles file as `[remotes.NAME]` with a
//! profile's fields (endpoint, token, CA). `coffer snapshot copy
//! --to-remote NAME` and `coffer image copy --to-remote NAME` copy to them.
//! These commands make no API call.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::output::{Output, View, table};
use crate::profile::{self, Profile};

#[derive(Debug, Subcommand)]
pub enum RemoteCmd {
    /// Save another deployment as a remote (or replace the one of that
    /// name): its endpoint, a token of an account there (read from a file,
    /// never from the command line) and the CA its TLS certificate chains
    /// to.
    Add {
        /// The remote's name (letters, digits, '-' and '_').
        name: String,
        /// Its API endpoint, e.g. `https://coffer.site-b:8787`.
        #[arg(long, value_name = "URL")]
        endpoint: String,
        /// File holding a token of the remote deployment (never pass
        /// tokens on the command line).
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        /// File holding the CA certificate (PEM) that its TLS certificate
        /// chains to (its deployment CA); then the system's roots are not
        /// trusted for it.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
    /// List the remotes (never their tokens).
    List,
    /// Forget a remote.
    Remove {
        /// The remote's name.
        name: String,
    },
}

/// One remote as `coffer remote list` shows it: no token.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    endpoint: Option<String>,
    ca: bool,
}

/// The rows of `coffer remote list`.
fn rows(cfg: &profile::ConfigFile) -> Vec<Row> {
    cfg.remotes
        .iter()
        .map(|(name, r)| Row {
            name: name.clone(),
            endpoint: r.endpoint.clone(),
            ca: r.ca_cert.is_some(),
        })
        .collect()
}

/// A remote from `--endpoint`, `--token-file` and `--ca-file`.
fn from_files(
    endpoint: &str,
    token_file: &Path,
    ca_file: Option<&Path>,
) -> anyhow::Result<Profile> {
    let endpoint = profile::check_endpoint(endpoint)?;
    let text = Zeroizing::new(
        std::fs::read_to_string(token_file)
            .with_context(|| format!("cannot read token file {}", token_file.display()))?,
    );
    let token = Zeroizing::new(text.trim().to_string());
    if token.is_empty() {
        bail!("token file {} is empty", token_file.display());
    }
    let ca_cert = match ca_file {
        None => None,
        Some(f) => {
            let pem = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read CA file {}", f.display()))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----")
                || reqwest::Certificate::from_pem(pem.as_bytes()).is_err()
            {
                bail!(
                    "CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    f.display()
                );
            }
            Some(pem)
        }
    };
    Ok(Profile {
        endpoint: Some(endpoint),
        token: Some(token),
        ca_cert,
    })
}

/// Run a remote command.
pub fn run(out: &Output, cmd: RemoteCmd) -> anyhow::Result<()> {
    match cmd {
        RemoteCmd::Add {
            name,
            endpoint,
            token_file,
            ca_file,
        } => {
            profile::check_remote_name(&name)?;
            let remote = from_files(&endpoint, &token_file, ca_file.as_deref())?;
            let mut cfg = profile::load()?;
            let replaced = cfg.add_remote(&name, remote)?;
            profile::save(&cfg)?;
            let path = profile::config_path();
            if replaced {
                println!("Remote '{name}' replaced in {}", path.display());
            } else {
                println!("Remote '{name}' saved in {}", path.display());
            }
            Ok(())
        }
        RemoteCmd::List => {
            let cfg = profile::load()?;
            let text = |v: &serde_json::Value| {
                let rows = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        let yes = r.get("ca").and_then(serde_json::Value::as_bool) == Some(true);
                        vec![
                            crate::output::at(r, "/name"),
                            crate::output::at(r, "/endpoint"),
                            if yes { "yes" } else { "no" }.to_string(),
                        ]
                    })
                    .collect();
                table(&["NAME", "ENDPOINT", "CA"], rows)
            };
            out.show(&rows(&cfg), View::Text(&text))
        }
        RemoteCmd::Remove { name } => {
            let mut cfg = profile::load()?;
            cfg.remove_remote(&name)?;
            profile::save(&cfg)?;
            println!(
                "Remote '{name}' removed from {}",
                profile::config_path().display()
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_is_read_from_files_and_listed_without_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("token");
        std::fs::write(&tok, "  secret-token-b\n").unwrap();
        let r = from_files("https://b.example:7070/", &tok, None).unwrap();
        assert_eq!(r.endpoint.as_deref(), Some("https://b.example:7070"));
        assert_eq!(
            r.token.as_deref().map(String::as_str),
            Some("secret-token-b")
        );
        assert!(r.ca_cert.is_none());

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = from_files("https://b.example", &empty, None).unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
        let e = from_files("b.example", &tok, None).unwrap_err();
        assert!(e.to_string().contains("invalid endpoint"), "{e}");
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let e = from_files("https://b.example", &tok, Some(&not_pem)).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");

        let mut cfg = profile::ConfigFile::default();
        cfg.add_remote("site-b", r).unwrap();
        let json = serde_json::to_string(&rows(&cfg)).unwrap();
        assert_eq!(
            json,
            r#"[{"name":"site-b","endpoint":"https://b.example:7070","ca":false}]"#
        );
        assert!(!json.contains("secret"));
    }
}
