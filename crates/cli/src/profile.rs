//! CLI profiles: named endpoint + token pairs in
//! `$XDG_CONFIG_HOME/coffer/config.toml` (default `~/.config/coffer`), mode
//! 0600. Chosen by `--profile`, then `COFFER_PROFILE`, then `default`;
//! `COFFER_ENDPOINT` and `COFFER_TOKEN` override a profile's values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// One profile.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// API endpoint, e.g. `http://127.0.0.1:8787`.
    pub endpoint: Option<String>,
    /// API token (wiped from memory when dropped).
    pub token: Option<Zeroizing<String>>,
    /// The CA certificate (PEM) that the endpoint's TLS certificate must
    /// chain to (the deployment CA that `coffer serve` made); when set, the
    /// system's roots are not trusted for this profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

/// Never prints the token.
impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| coffer_wire::REDACTED))
            .field("ca_cert", &self.ca_cert.is_some())
            .finish()
    }
}

/// The config file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Profiles by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// The CLI's configuration directory.
pub fn config_dir() -> PathBuf {
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("coffer")
}

/// The profiles file.
pub fn config_path() -> PathBuf {
    config_dir().join("config.toml")
}

/// Read the profiles file (empty if missing).
pub fn load() -> anyhow::Result<ConfigFile> {
    let p = config_path();
    match std::fs::read_to_string(&p).map(Zeroizing::new) {
        Ok(s) => {
            toml::from_str(&s).with_context(|| format!("invalid profiles file {}", p.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

/// Write the profiles file, mode 0600.
pub fn save(cfg: &ConfigFile) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = config_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let p = config_path();
    let tmp = dir.join(".config.toml.tmp");
    let text = Zeroizing::new(toml::to_string(cfg)?);
    crate::files::write_private(&tmp, text.as_bytes())?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))?;
    Ok(())
}

/// Save a new deployment's admin token in a profile: `default` if there is
/// none yet, else the first free one of `admin`, `admin-2`, `admin-3`, …;
/// returns its name. The token is kept nowhere else.
pub fn save_admin(endpoint: &str, token: &str, ca_cert: Option<&str>) -> anyhow::Result<String> {
    let mut cfg = load()?;
    let name = std::iter::once("default".to_string())
        .chain(std::iter::once("admin".to_string()))
        .chain((2..).map(|n| format!("admin-{n}")))
        .find(|n| !cfg.profiles.contains_key(n))
        .expect("an unbounded list of names has a free one");
    cfg.profiles.insert(
        name.clone(),
        Profile {
            endpoint: Some(endpoint.to_string()),
            token: Some(Zeroizing::new(token.to_string())),
            ca_cert: ca_cert.map(str::to_string),
        },
    );
    save(&cfg)?;
    Ok(name)
}

/// Where and how to reach the API: from a profile and the environment.
pub struct Resolved {
    /// The API endpoint.
    pub endpoint: String,
    /// The token.
    pub token: Zeroizing<String>,
    /// The CA certificate (PEM) to trust, if the profile or COFFER_CA_CERT
    /// (a file) names one.
    pub ca_cert: Option<String>,
}

/// The endpoint, token and CA to use.
pub fn resolve(profile: Option<&str>) -> anyhow::Result<Resolved> {
    let cfg = load()?;
    let name = profile
        .map(str::to_string)
        .or_else(|| std::env::var("COFFER_PROFILE").ok())
        .unwrap_or_else(|| "default".into());
    let p = cfg.profiles.get(&name).cloned();
    if p.is_none() && name != "default" {
        bail!(
            "no profile named '{name}' in {}: create it with `coffer configure --profile {name} --endpoint URL --token-file FILE`",
            config_path().display()
        );
    }
    let p = p.unwrap_or_default();
    let endpoint = std::env::var("COFFER_ENDPOINT")
        .ok()
        .or(p.endpoint)
        .unwrap_or_else(|| "http://127.0.0.1:8787".into());
    let token = crate::secrets::get("COFFER_TOKEN")
        .map(|t| Zeroizing::new(t.to_string()))
        .or(p.token)
        .ok_or_else(|| {
        anyhow::anyhow!(
            "no token: a new deployment's `coffer serve` writes its admin token to the `default` profile; otherwise run `coffer configure --token-file FILE` with a token an Owner made for you (`coffer token create`), or set COFFER_TOKEN. Locked out? See `coffer admin recover --help`"
        )
    })?;
    let ca_cert = match std::env::var_os("COFFER_CA_CERT") {
        Some(f) => Some(std::fs::read_to_string(&f).with_context(|| {
            format!(
                "cannot read COFFER_CA_CERT {}",
                std::path::Path::new(&f).display()
            )
        })?),
        None => p.ca_cert,
    };
    Ok(Resolved {
        endpoint: endpoint.trim_end_matches('/').to_string(),
        token,
        ca_cert,
    })
}

/// `coffer configure`: set a profile's endpoint and/or token (read from a
/// file, never from the command line).
pub fn configure(
    profile: Option<&str>,
    endpoint: Option<&str>,
    token_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let name = profile
        .map(str::to_string)
        .or_else(|| std::env::var("COFFER_PROFILE").ok())
        .unwrap_or_else(|| "default".into());
    let mut cfg = load()?;
    let p = cfg.profiles.entry(name.clone()).or_default();
    if let Some(e) = endpoint {
        p.endpoint = Some(e.trim_end_matches('/').to_string());
    }
    if let Some(f) = token_file {
        let t = Zeroizing::new(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read token file {}", f.display()))?,
        );
        p.token = Some(Zeroizing::new(t.trim().to_string()));
    }
    save(&cfg)?;
    println!("Profile '{name}' saved in {}", config_path().display());
    Ok(())
}
