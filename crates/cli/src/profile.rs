//! CLI profiles: named endpoint + token pairs in
//! `$XDG_CONFIG_HOME/coffer/config.toml` (default `~/.config/coffer`), mode
//! 0600. Chosen by `--profile`, then `COFFER_PROFILE`, then `default`;
//! `COFFER_ENDPOINT` and `COFFER_TOKEN` override a profile's values.
//!
//! The same file keeps *remotes* (`[remotes.NAME]`, the fields of a
//! profile): other Coffer deployments this user can reach, which
//! `coffer snapshot copy --to-remote NAME` copies to (`coffer remote …`).
//! The environment overrides no remote's values.

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
    /// Remotes (other deployments, for copies to them) by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remotes: BTreeMap<String, Profile>,
}

impl ConfigFile {
    /// Add remote `name`, or replace the one of that name; true if it
    /// replaced one.
    pub fn add_remote(&mut self, name: &str, remote: Profile) -> anyhow::Result<bool> {
        check_remote_name(name)?;
        Ok(self.remotes.insert(name.to_string(), remote).is_some())
    }

    /// Remove remote `name`; an error naming the known remotes if there is
    /// none of that name.
    pub fn remove_remote(&mut self, name: &str) -> anyhow::Result<Profile> {
        match self.remotes.remove(name) {
            Some(r) => Ok(r),
            None if self.remotes.is_empty() => {
                bail!("no remote named {name}: there are no remotes (`coffer remote add` adds one)")
            }
            None => bail!(
                "no remote named {name}; the remotes are: {}",
                self.remotes.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// Check a remote's name: letters, digits, `-` and `_`, 1 to 63 of them.
pub fn check_remote_name(name: &str) -> anyhow::Result<()> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        bail!(
            "invalid remote name '{}': use 1 to 63 letters, digits, '-' and '_', e.g. site-b",
            name.chars().take(80).collect::<String>()
        );
    }
    Ok(())
}

/// Check an API endpoint (`http://` or `https://`, with a host); returns
/// it without a trailing `/`.
pub fn check_endpoint(endpoint: &str) -> anyhow::Result<String> {
    let e = endpoint.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(e).with_context(|| {
        format!("invalid endpoint '{e}': write a URL such as https://coffer.example:8787")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        bail!(
            "invalid endpoint '{e}': it must start with http:// or https:// and name a host, e.g. https://coffer.example:8787"
        );
    }
    Ok(e.to_string())
}

/// Remote `name`: its endpoint, token and CA (no environment overrides).
pub fn remote(name: &str) -> anyhow::Result<Profile> {
    load()?.remotes.get(name).cloned().ok_or_else(|| {
        anyhow::anyhow!(
            "no remote named {name}: add it with `coffer remote add {name} --endpoint URL --token-file FILE`"
        )
    })
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
    load_from(&config_path())
}

/// Read the profiles file at `p` (empty if missing).
fn load_from(p: &std::path::Path) -> anyhow::Result<ConfigFile> {
    match std::fs::read_to_string(p).map(Zeroizing::new) {
        Ok(s) => {
            toml::from_str(&s).with_context(|| format!("invalid profiles file {}", p.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

/// Write the profiles file, mode 0600.
pub fn save(cfg: &ConfigFile) -> anyhow::Result<()> {
    save_to(&config_dir(), cfg)
}

/// Write `config.toml` in `dir`, mode 0600.
fn save_to(dir: &std::path::Path, cfg: &ConfigFile) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let p = dir.join("config.toml");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(endpoint: &str, token: &str, ca: Option<&str>) -> Profile {
        Profile {
            endpoint: Some(endpoint.to_string()),
            token: Some(Zeroizing::new(token.to_string())),
            ca_cert: ca.map(str::to_string),
        }
    }

    #[test]
    fn the_profiles_file_keeps_remotes_beside_profiles() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("coffer");
        let mut cfg = ConfigFile::default();
        cfg.profiles.insert(
            "default".into(),
            remote("http://127.0.0.1:8787", "tok-a", None),
        );
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert!(
            !cfg.add_remote(
                "site-b",
                remote("https://b.example:7070", "tok-b", Some(pem))
            )
            .unwrap()
        );
        assert!(
            !cfg.add_remote("site_c2", remote("http://c.example", "tok-c", None))
                .unwrap()
        );
        save_to(&conf, &cfg).unwrap();
        let path = conf.join("config.toml");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[remotes.site-b]"), "{text}");

        let back = load_from(&path).unwrap();
        assert_eq!(back.profiles.len(), 1);
        assert_eq!(
            back.remotes.keys().collect::<Vec<_>>(),
            ["site-b", "site_c2"]
        );
        let b = &back.remotes["site-b"];
        assert_eq!(b.endpoint.as_deref(), Some("https://b.example:7070"));
        assert_eq!(b.token.as_deref().map(String::as_str), Some("tok-b"));
        assert_eq!(b.ca_cert.as_deref(), Some(pem));
        assert_eq!(back.remotes["site_c2"].ca_cert, None);
        // Debug output never shows a remote's token.
        assert!(!format!("{back:?}").contains("tok-b"));

        // Replacing says so; removing an unknown one names the known ones.
        let mut back = back;
        assert!(
            back.add_remote("site-b", remote("https://b2.example", "tok-b2", None))
                .unwrap()
        );
        let e = back.remove_remote("nope").unwrap_err().to_string();
        assert!(
            e.contains("no remote named nope") && e.contains("site-b, site_c2"),
            "{e}"
        );
        back.remove_remote("site-b").unwrap();
        back.remove_remote("site_c2").unwrap();
        let e = back.remove_remote("site-b").unwrap_err().to_string();
        assert!(e.contains("there are no remotes"), "{e}");

        // Without remotes the file has no remotes table, and a file from
        // before remotes existed reads as it did.
        save_to(&conf, &back).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("remotes"), "{text}");
        let old = load_from(&path).unwrap();
        assert!(old.remotes.is_empty());
        assert_eq!(old.profiles.len(), 1);
        // A missing file is an empty one.
        assert!(
            load_from(&dir.path().join("none.toml"))
                .unwrap()
                .remotes
                .is_empty()
        );
    }

    #[test]
    fn remote_names_are_short_and_plain() {
        for ok in ["a", "site-b", "SITE_2", &"x".repeat(63)] {
            check_remote_name(ok).unwrap();
        }
        for bad in ["", "a b", "a.b", "a/b", "é", "[x]", &"x".repeat(64)] {
            let e = check_remote_name(bad).unwrap_err().to_string();
            assert!(e.contains("invalid remote name"), "{bad}: {e}");
        }
        let mut cfg = ConfigFile::default();
        assert!(cfg.add_remote("a.b", Profile::default()).is_err());
        assert!(cfg.remotes.is_empty());
    }

    #[test]
    fn endpoints_are_http_or_https_urls() {
        assert_eq!(
            check_endpoint("https://b.example:7070/").unwrap(),
            "https://b.example:7070"
        );
        assert_eq!(
            check_endpoint("http://127.0.0.1:8787").unwrap(),
            "http://127.0.0.1:8787"
        );
        for bad in [
            "b.example:7070",
            "ftp://b.example",
            "https://",
            "",
            "http//x",
        ] {
            let e = check_endpoint(bad).unwrap_err().to_string();
            assert!(e.contains("invalid endpoint"), "{bad}: {e}");
        }
    }
}
