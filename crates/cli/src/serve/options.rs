//! The options of `coffer serve`, declared once for the command line and
//! the configuration file, and what they turn into (e.g. the HTTP
//! listener's limits).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use coffer_types::{ByteSize, RegionConfig};
use serde::{Deserialize, Serialize};

/// Options of `coffer serve`: the same fields on the command line and in
/// the configuration file (TOML, `--config`), so each is declared once. A
/// field given on the command line (or by its environment variable) wins
/// over the file. A few are command-line only (`#[serde(skip)]`) or file
/// only (`#[arg(skip)]`).
#[derive(Default, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeOptions {
    /// Configuration file (TOML); command-line options override it.
    #[arg(long, env = "COFFER_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Data directory (metadata, sealed objects, node name).
    #[arg(long, env = "COFFER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP API address (port 0 picks a free port).
    #[arg(long, env = "COFFER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// NBD address (port 0 picks a free port).
    #[arg(long, env = "COFFER_NBD_LISTEN")]
    pub nbd_listen: Option<SocketAddr>,
    /// Root key file (64 hex digits, mode 0600), created if missing. Keep it
    /// outside the data dir. Default: ~/.config/coffer/root.key. Ignored
    /// when COFFER_ROOT_PASSPHRASE is set; not combinable with --root-key-uri.
    #[arg(long, env = "COFFER_ROOT_KEY_FILE")]
    pub root_key_file: Option<PathBuf>,
    /// Root key held in an HSM: a PKCS#11 URI (RFC 7512), e.g.
    /// `pkcs11:token=coffer;object=coffer-root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/coffer/hsm.pin`.
    /// The key is generated in the token on first start. The PIN comes from
    /// the `pin-source` file (mode 0600) or COFFER_PKCS11_PIN, never from the
    /// URI. Ignored when COFFER_ROOT_PASSPHRASE is set.
    #[arg(long, env = "COFFER_ROOT_KEY_URI")]
    pub root_key_uri: Option<String>,
    /// Metadata database URL (default: sqlite in the data dir).
    #[arg(long, env = "COFFER_METADATA")]
    pub metadata: Option<String>,
    /// Object store for sealed chunks: a directory path, or
    /// `s3://BUCKET[/PREFIX]?endpoint=URL&region=R` for any S3-compatible
    /// service (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    /// or the usual AWS sources). Default: `objects` in the data dir.
    #[arg(long, env = "COFFER_STORE")]
    pub store: Option<String>,
    /// Do not write the `default` CLI profile.
    #[arg(long)]
    #[serde(skip)]
    pub no_profile: bool,
    /// This node's lasting name among the nodes of a deployment (default:
    /// the one kept in the data dir, made from the host name at first start).
    #[arg(long, env = "COFFER_NODE_NAME")]
    pub node_name: Option<String>,
    /// The URL other nodes reach this node's API at (default: http:// and
    /// the API address). Needed when several nodes listen on 0.0.0.0.
    #[arg(long, env = "COFFER_ADVERTISE_API")]
    pub advertise_api: Option<String>,
    /// The `host:port` clients reach this node's NBD listener at, named in
    /// attach URIs (default: the NBD address).
    #[arg(long, env = "COFFER_ADVERTISE_NBD")]
    pub advertise_nbd: Option<String>,
    /// How long this node's lease lasts (e.g. 15s): if it dies, other nodes
    /// may take its disks over this long after its last renewal.
    #[arg(long, env = "COFFER_LEASE_TTL", value_parser = check_duration)]
    pub lease_ttl: Option<String>,
    /// Chunk size of new disks (e.g. "256KiB"): a power of two from 4KiB
    /// to 4MiB. Configuration file only.
    #[arg(skip)]
    pub chunk_size: Option<ByteSize>,
    /// Write back once this much data is cached per disk (e.g. "64MiB").
    /// Configuration file only.
    #[arg(skip)]
    pub dirty_high_water: Option<ByteSize>,
    /// Write back once this much data is cached over all disks together
    /// (e.g. "128MiB"; writers wait at twice it). Configuration file only.
    #[arg(skip)]
    pub memory_budget: Option<ByteSize>,
    /// How much background compaction may rewrite per second over all
    /// disks together (e.g. "64MiB", the default; at least 1MiB).
    /// Configuration file only.
    #[arg(skip)]
    pub compaction_rate: Option<ByteSize>,
    /// Write a local object store's objects with `O_DIRECT`, bypassing
    /// the page cache (default false): faster sequential writes and flushes,
    /// slower reads of recently written data. Configuration file only.
    #[arg(skip)]
    pub direct_io: Option<bool>,
    /// Per-account limits of sharing (`[quotas]`: shares_per_account,
    /// principals_per_share, resources_per_share, principals_per_resource).
    /// Configuration file only.
    #[arg(skip)]
    pub quotas: Option<coffer_service::ShareQuotas>,
    /// How fast re-encrypting copies may go over all of this node's jobs
    /// (e.g. "256MiB", per second; default: unlimited). Configuration file
    /// only.
    #[arg(skip)]
    pub copy_rate: Option<ByteSize>,
    /// How often each account's storage use is sampled for the console's
    /// chart and `GET /v1/accounts/{id}/usage` (e.g. "1h", the default; at
    /// least 1s, at most 30days). Samples are kept 400 days.
    #[arg(long, env = "COFFER_USAGE_INTERVAL", value_parser = check_duration)]
    pub usage_interval: Option<String>,
    /// Serve the API and NBD over TLS even on loopback (TLS is on by
    /// default whenever a listener is not on loopback). Without
    /// --tls-cert, the certificate is issued at each start from the
    /// deployment's CA, which is made on the first start that needs it (its
    /// key kept wrapped by the root key) and written to the CLI profile and
    /// `<data dir>/tls/ca.pem`.
    #[arg(long)]
    #[serde(skip)]
    pub tls: bool,
    /// The operator's certificate chain (PEM) for both listeners, instead of
    /// one from the deployment CA (turns TLS on).
    #[arg(long, env = "COFFER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "COFFER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require NBD clients to present a certificate issued by one of the
    /// CAs in this PEM file (mutual TLS: the export name alone is then not
    /// enough to reach a disk). Turns TLS on.
    #[arg(long, env = "COFFER_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Allow a listener off loopback without TLS (warned at every start):
    /// tokens, export names and disk data then cross the network in clear.
    #[arg(long)]
    #[serde(skip)]
    pub insecure_plaintext: bool,
    /// Time a client has to send a request's headers, and how long an idle
    /// keep-alive connection stays open (default 10s).
    #[arg(long, env = "COFFER_HEADER_TIMEOUT", value_parser = check_duration)]
    pub header_timeout: Option<String>,
    /// Time a client has to send a request's body once its headers are in
    /// (default 30s).
    #[arg(long, env = "COFFER_BODY_TIMEOUT", value_parser = check_duration)]
    pub body_timeout: Option<String>,
    /// HTTP connections open at once (default 1024); more get 503.
    #[arg(long, env = "COFFER_MAX_CONNECTIONS", value_parser = at_least_one)]
    pub max_connections: Option<usize>,
    /// HTTP connections open at once from one client address (default
    /// 128); more get 429.
    #[arg(long, env = "COFFER_MAX_CONNECTIONS_PER_ADDRESS", value_parser = at_least_one)]
    pub max_connections_per_address: Option<usize>,
    /// Regions and zones; default: region `local`, zones `local-a/b/c`.
    /// Configuration file only.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionConfig>,
}

/// Prints the options with the passwords of the metadata and store URLs
/// left out.
impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        for key in ["metadata", "store"] {
            if let Some(serde_json::Value::String(url)) = v.get_mut(key) {
                *url = redact_url(url);
            }
        }
        write!(f, "ServeOptions {v}")
    }
}

/// `url` without a password: neither in its user info
/// (`postgres://user:PASSWORD@host`) nor in a query parameter whose name
/// says it is one (`?password=…`, `sslpassword`, `secret…`).
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority_end = before_query.find('/').unwrap_or(before_query.len());
    let (authority, path) = before_query.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{}@{host}", coffer_wire::REDACTED),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let mut out = format!("{scheme}{authority}{path}");
    if let Some(q) = query {
        let q: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _))
                    if ["password", "secret", "token"]
                        .iter()
                        .any(|w| k.to_ascii_lowercase().contains(w)) =>
                {
                    format!("{k}={}", coffer_wire::REDACTED)
                }
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&q.join("&"));
    }
    out
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}: give a whole number, e.g. 1024")),
    }
}

pub(crate) fn check_duration(s: &str) -> Result<String, String> {
    humantime::parse_duration(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{e}: use e.g. 15s or 1m"))
}

impl ServeOptions {
    /// The HTTP listener's limits: these options over the defaults.
    pub(crate) fn http_limits(&self) -> anyhow::Result<coffer_api::Limits> {
        let d = coffer_api::Limits::default();
        let dur = |s: &Option<String>, def: Duration| {
            s.as_deref()
                .and_then(|s| humantime::parse_duration(s).ok())
                .unwrap_or(def)
        };
        let positive = |v: Option<usize>, def: usize, name: &str| match v {
            Some(0) => anyhow::bail!("{name} must be at least 1"),
            v => Ok(v.unwrap_or(def)),
        };
        Ok(coffer_api::Limits {
            header_timeout: dur(&self.header_timeout, d.header_timeout),
            body_timeout: dur(&self.body_timeout, d.body_timeout),
            max_connections: positive(self.max_connections, d.max_connections, "max_connections")?,
            max_per_address: positive(
                self.max_connections_per_address,
                d.max_per_address,
                "max_connections_per_address",
            )?,
        })
    }

    /// These options (the command line) over those of `--config`'s file.
    pub(crate) fn with_file(self) -> anyhow::Result<Self> {
        let Some(path) = &self.config else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let file: ServeOptions = toml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        let mut merged = serde_json::to_value(&file)?;
        if let (serde_json::Value::Object(m), serde_json::Value::Object(cli)) =
            (&mut merged, serde_json::to_value(&self)?)
        {
            for (k, v) in cli {
                if !v.is_null() {
                    m.insert(k, v);
                }
            }
        }
        let mut out: ServeOptions = serde_json::from_value(merged)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        out.config = self.config;
        out.no_profile = self.no_profile;
        out.tls = self.tls;
        out.insecure_plaintext = self.insecure_plaintext;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("postgres://coffer:hunter2@db:5432/coffer?sslmode=verify-full"),
            "postgres://coffer:<redacted>@db:5432/coffer?sslmode=verify-full"
        );
        assert_eq!(
            redact_url("postgres://db/coffer?user=c&password=hunter2"),
            "postgres://db/coffer?user=c&password=<redacted>"
        );
        assert_eq!(redact_url("/var/lib/coffer"), "/var/lib/coffer");
        assert_eq!(
            redact_url("s3://bucket/p?endpoint=http://127.0.0.1:9000"),
            "s3://bucket/p?endpoint=http://127.0.0.1:9000"
        );
    }

    #[test]
    fn debug_shows_no_password() {
        let o = ServeOptions {
            metadata: Some("postgres://coffer:hunter2@db/coffer".into()),
            ..ServeOptions::default()
        };
        let d = format!("{o:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("postgres://coffer:<redacted>@db/coffer"), "{d}");
    }
}
