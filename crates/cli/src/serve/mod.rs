//! `coffer serve`: one process with embedded defaults — SQLite metadata and
//! a local object directory under the data dir, the built-in key vault with
//! its root key kept outside the data dir, the HTTP API and the NBD listener
//! on loopback.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use coffer_keyvault::{
    FileRootKey, KeyVault, PassphraseRootKey, Pkcs11RootKey, Pkcs11Uri, RootKey, RootKeys,
};
use coffer_meta::Meta;
use coffer_service::{ExportResolverImpl, Service, ServiceConfig};
use coffer_store::{LazyStore, LocalStore, ObjectStore, S3Location, S3Store, StoreError};
use coffer_types::Regions;

use crate::files::set_private;
use crate::profile;

mod options;
mod tls;
pub use options::ServeOptions;
use options::redact_url;

fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("coffer")
}

fn default_root_key() -> PathBuf {
    profile::config_dir().join("root.key")
}

/// Where the root key comes from, unless COFFER_ROOT_PASSPHRASE is set
/// (which takes precedence over both).
pub(crate) enum RootSource {
    /// A key file (explicit or the default one).
    File(PathBuf),
    /// A key in a PKCS#11 token, named by a `pkcs11:` URI.
    Pkcs11(String),
}

pub(crate) async fn root_key(
    meta: &Meta,
    source: &RootSource,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn RootKey>> {
    if let Some(pass) = crate::secrets::get("COFFER_ROOT_PASSPHRASE") {
        if matches!(source, RootSource::Pkcs11(_)) {
            tracing::warn!(
                "COFFER_ROOT_PASSPHRASE is set: it takes precedence over --root-key-uri, whose HSM key is not used"
            );
        }
        if pass.len() < 12 {
            bail!("COFFER_ROOT_PASSPHRASE is too short: use at least 12 characters");
        }
        let mut salt = [0u8; 16];
        coffer_crypto::random_bytes(&mut salt);
        let salt = meta
            .setting_init("root_passphrase_salt", &hex::encode(salt))
            .await?;
        let salt = hex::decode(salt).context("stored passphrase salt is not hex")?;
        return Ok(Arc::new(PassphraseRootKey::new(pass.as_bytes(), &salt)));
    }
    let file = match source {
        RootSource::Pkcs11(uri) => {
            // Never echo the URI in an error: it might hold a PIN (refused).
            let uri = Pkcs11Uri::parse(uri).context("bad --root-key-uri")?;
            let pin = crate::secrets::get("COFFER_PKCS11_PIN");
            let key = Pkcs11RootKey::open(uri, pin)
                .await
                .context("cannot open the root key in the HSM (--root-key-uri)")?;
            return Ok(Arc::new(key));
        }
        RootSource::File(file) => file,
    };
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if let Some(parent) = file.parent()
        && abs(parent).starts_with(abs(data_dir))
    {
        tracing::warn!(
            "the root key file is inside the data dir: anyone with a copy of the data dir can read the data. Move it elsewhere (see docs/SECURITY.md)"
        );
        eprintln!(
            "warning: root key {} is inside the data dir {}; keep it apart (see docs/SECURITY.md)",
            file.display(),
            data_dir.display()
        );
    }
    Ok(Arc::new(FileRootKey::open_for(file, meta).await?))
}

/// The deployment's root key `root` with the root keys of the regions
/// that name their own (`root_key_file`, made on the region's first start,
/// or `root_key_uri`, a PKCS#11 key).
pub(crate) async fn region_roots(
    meta: &Meta,
    regions: &Regions,
    root: Arc<dyn RootKey>,
) -> anyhow::Result<RootKeys> {
    let mut roots = RootKeys::new(root);
    for r in regions.all() {
        let key: Arc<dyn RootKey> = match (&r.root_key_file, &r.root_key_uri) {
            (Some(file), _) => Arc::new(
                FileRootKey::open_for_region(file, meta, &r.name)
                    .await
                    .with_context(|| format!("cannot open the root key of region {}", r.name))?,
            ),
            (None, Some(uri)) => {
                let uri = Pkcs11Uri::parse(uri)
                    .with_context(|| format!("bad root_key_uri of region {}", r.name))?;
                let pin = crate::secrets::get("COFFER_PKCS11_PIN");
                Arc::new(Pkcs11RootKey::open(uri, pin).await.with_context(|| {
                    format!("cannot open the root key of region {} in the HSM", r.name)
                })?)
            }
            (None, None) => {
                if meta
                    .setting(&coffer_keyvault::region_root_check(&r.name))
                    .await?
                    .is_some()
                {
                    bail!(
                        "region {} has keys under a root key of its own, and its [[regions]] entry names none: give its root_key_file or root_key_uri again",
                        r.name
                    );
                }
                continue;
            }
        };
        roots = roots.with_region(r.name.clone(), key);
    }
    Ok(roots)
}

/// Where the root key comes from, by the options.
pub(crate) fn root_source(o: &ServeOptions) -> anyhow::Result<RootSource> {
    Ok(match (o.root_key_uri.clone(), o.root_key_file.clone()) {
        (Some(_), Some(key_file)) => bail!(
            "both a PKCS#11 root key URI (--root-key-uri) and a root key file ({}) are given: \
             use one. With an HSM, drop --root-key-file, COFFER_ROOT_KEY_FILE or root_key_file \
             from the config",
            key_file.display()
        ),
        (Some(uri), None) => RootSource::Pkcs11(uri),
        (None, key_file) => RootSource::File(key_file.unwrap_or_else(default_root_key)),
    })
}

/// The data dir the options name (or the default one).
pub(crate) fn data_dir_of(o: &ServeOptions) -> PathBuf {
    o.data_dir.clone().unwrap_or_else(default_data_dir)
}

/// Open (migrating if needed) the metadata store the options name.
pub(crate) async fn open_meta(o: &ServeOptions, data_dir: &Path) -> anyhow::Result<Meta> {
    let url = o
        .metadata
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("meta.sqlite").display()));
    Meta::open(&url)
        .await
        .with_context(|| "cannot open the metadata store")
}

/// Open the object store the options name.
pub(crate) fn open_store(
    o: &ServeOptions,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn ObjectStore>> {
    open_store_at(
        o.direct_io.unwrap_or(false),
        o.store.as_deref(),
        &data_dir.join("objects"),
    )
}

/// Open the store at `url` (a directory, or `s3://…`), or the directory
/// `default` if none is named.
fn open_store_at(
    direct_io: bool,
    url: Option<&str>,
    default: &Path,
) -> anyhow::Result<Arc<dyn ObjectStore>> {
    Ok(match url {
        Some(url) if url.starts_with("s3://") => {
            let loc = S3Location::parse(url)?;
            Arc::new(S3Store::open(loc).with_context(|| format!("cannot use object store {url}"))?)
        }
        Some(dir) => Arc::new(
            LocalStore::open(PathBuf::from(dir.trim_start_matches("file://")))?
                .with_direct_io(direct_io),
        ),
        None => Arc::new(LocalStore::open(default)?.with_direct_io(direct_io)),
    })
}

/// The store `regions/NAME` under the deployment's store `store` (a
/// directory, or an `s3://` URL whose prefix gets it).
fn beside_store(store: &str, name: &str) -> String {
    let (path, query) = match store.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (store, None),
    };
    let mut out = format!("{}/regions/{name}", path.trim_end_matches('/'));
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Each region's object store: the one its `store` names; else, for the
/// first region, the deployment's (`--store`, or `DATA_DIR/objects`: where
/// a deployment from before regions had stores keeps its objects), and
/// for the others `regions/NAME` under the deployment's `--store` (so every
/// node of a deployment on a shared store finds it), or
/// `DATA_DIR/regions/NAME/objects`. Two regions never share a store; a
/// region meant as its own failure domain names a store of its own.
pub(crate) fn open_region_stores(
    o: &ServeOptions,
    data_dir: &Path,
    regions: &Regions,
) -> anyhow::Result<HashMap<String, Arc<dyn ObjectStore>>> {
    let mut out = HashMap::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, r) in regions.all().iter().enumerate() {
        let beside = o.store.as_deref().map(|s| beside_store(s, &r.name));
        let url = match (&r.store, i) {
            (Some(u), _) => Some(u.as_str()),
            (None, 0) => o.store.as_deref(),
            (None, _) => beside.as_deref(),
        };
        let default = if i == 0 {
            data_dir.join("objects")
        } else {
            data_dir.join("regions").join(&r.name).join("objects")
        };
        // A store that cannot be opened now keeps only its own region
        // down (when there are others): it is opened again at each use
        // until it opens.
        let direct_io = o.direct_io.unwrap_or(false);
        let store: Arc<dyn ObjectStore> = match open_store_at(direct_io, url, &default) {
            Ok(s) => s,
            Err(e) if regions.all().len() > 1 => {
                tracing::error!(region = %r.name, error = %format!("{e:#}"), "cannot open the region's object store; the region stays unavailable until it can be");
                let (url, default) = (url.map(str::to_string), default.clone());
                let described = url
                    .clone()
                    .unwrap_or_else(|| format!("local:{}", default.display()));
                Arc::new(LazyStore::new(described, move || {
                    open_store_at(direct_io, url.as_deref(), &default).map_err(|e| StoreError::Io {
                        key: "<store>".into(),
                        cause: std::io::Error::other(format!("{e:#}")),
                    })
                }))
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open the object store of region {}", r.name));
            }
        };
        let described = store.describe();
        if i == 0
            && let (Some(own), Some(deployment)) = (&r.store, &o.store)
            && own != deployment
        {
            bail!(
                "region {} names the store {} and --store names {}: the first region's store is the deployment's, where data from before regions had stores lives; give one of them",
                r.name,
                redact_url(own),
                redact_url(deployment)
            );
        }
        if let Some(other) = seen.insert(described.clone(), r.name.clone()) {
            bail!(
                "regions {other} and {} both use the object store {described}: give each region a store of its own (`store = ...` in its [[regions]] entry)",
                r.name
            );
        }
        out.insert(r.name.clone(), store);
    }
    Ok(out)
}

/// Run the server until Ctrl-C or SIGTERM.
pub async fn run(args: ServeOptions) -> anyhow::Result<()> {
    crate::secrets::harden_process()
        .context("cannot turn core dumps off for a process that holds the root key")?;
    tracing::info!("process hardened: not dumpable, core dumps off");
    let o = args.with_file()?;
    let data_dir = data_dir_of(&o);
    let limits = o.http_limits()?;
    let listen = o
        .listen
        .unwrap_or_else(|| "127.0.0.1:8787".parse().expect("addr"));
    let nbd_listen = o
        .nbd_listen
        .unwrap_or_else(|| "127.0.0.1:10809".parse().expect("addr"));
    let root_source = root_source(&o)?;
    let regions = if o.regions.is_empty() {
        Regions::default()
    } else {
        Regions::new(o.regions.clone())?
    };
    let chunk_size = match o.chunk_size {
        Some(c) => {
            let c = c.bytes();
            if !c.is_power_of_two() || !(4096..=4 << 20).contains(&c) {
                bail!("chunk_size must be a power of two from 4KiB to 4MiB");
            }
            u32::try_from(c)?
        }
        None => coffer_volume::DEFAULT_CHUNK_SIZE,
    };
    let mut volume = coffer_volume::VolumeConfig::default();
    if let Some(h) = o.dirty_high_water {
        volume.dirty_high_water = usize::try_from(h.bytes())?;
    }
    if let Some(b) = o.memory_budget {
        volume.budget = std::sync::Arc::new(coffer_volume::MemoryBudget::new(
            usize::try_from(b.bytes())?,
            volume.io_parallelism,
        ));
    }
    if let Some(r) = o.compaction_rate {
        volume.compaction = std::sync::Arc::new(coffer_volume::Pace::new(r.bytes()));
    }
    // A duration option, or its default.
    let duration = |v: &Option<String>, name: &str, example: &str, default| match v {
        Some(t) => humantime::parse_duration(t)
            .with_context(|| format!("invalid {name} '{t}': use e.g. \"{example}\"")),
        None => Ok(default),
    };
    let lease_ttl = duration(
        &o.lease_ttl,
        "lease_ttl",
        "15s",
        ServiceConfig::default().lease_ttl,
    )?;
    let usage_interval = duration(
        &o.usage_interval,
        "usage_interval",
        "1h",
        ServiceConfig::default().usage_interval,
    )?;
    if usage_interval < std::time::Duration::from_secs(1)
        || usage_interval > std::time::Duration::from_secs(30 * 86_400)
    {
        bail!(
            "usage_interval must be from 1s to 30days (got {}): usage is sampled once per interval",
            humantime::format_duration(usage_interval)
        );
    }
    if lease_ttl < std::time::Duration::from_secs(1) {
        bail!("the lease must last at least 1s (got {lease_ttl:?})");
    }

    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    set_private(&data_dir)?;
    let _lock = lock_data_dir(&data_dir)?;
    let node_name = match o.node_name.clone() {
        Some(n) => check_node_name(&n)?,
        None => node_name(&data_dir)?,
    };
    let meta = open_meta(&o, &data_dir).await?;
    // A region dropped from the configuration while it holds data or keys
    // would leave them unreachable: refuse, naming what it holds.
    let mut orphaned: Vec<String> = Vec::new();
    for (region, what, n) in meta.regions_in_use().await? {
        if !region.is_empty() && regions.check_region(&region).is_err() {
            orphaned.push(format!("region {region} holds {n} {what}"));
        }
    }
    if !orphaned.is_empty() {
        bail!(
            "{}, but it is not in the configuration: put its [[regions]] entry back (with its store and root key), or delete what it holds first",
            orphaned.join("; ")
        );
    }
    let stores = open_region_stores(&o, &data_dir, &regions)?;
    for r in regions.all() {
        tracing::info!(region = %r.name, store = %stores[&r.name].describe(), "object store");
    }
    let root = root_key(&meta, &root_source, &data_dir).await?;
    let root_banner = match &root_source {
        RootSource::File(path) if !crate::secrets::is_set("COFFER_ROOT_PASSPHRASE") => {
            path.display().to_string()
        }
        _ => root.describe(),
    };
    let tls = if tls::wanted(&o, listen, nbd_listen) {
        Some(tls::setup(&o, &meta, &*root, [listen, nbd_listen], &data_dir).await?)
    } else {
        None
    };
    let vault =
        KeyVault::open_with(meta.clone(), region_roots(&meta, &regions, root).await?).await?;
    let service = Service::with_stores(
        meta,
        stores,
        vault,
        ServiceConfig {
            regions,
            chunk_size,
            volume,
            lease_ttl,
            usage_interval,
            nbd_tls: tls.is_some(),
            quotas: o.quotas.unwrap_or_default(),
            copy_pace: o
                .copy_rate
                .map(|r| std::sync::Arc::new(coffer_volume::Pace::new(r.bytes()))),
            ..ServiceConfig::default()
        },
    )?;
    // Imports read other deployments' exports over HTTP(S).
    service.set_remotes(coffer_api::HttpRemotes::new());

    let api = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen} (HTTP API); pick another address with --listen")
        })?;
    let nbd = tokio::net::TcpListener::bind(nbd_listen)
        .await
        .with_context(|| {
            format!("cannot listen on {nbd_listen} (NBD); pick another address with --nbd-listen")
        })?;
    let api_addr = api.local_addr()?;
    let nbd_addr = nbd.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = format!("{scheme}://{api_addr}");
    let api_url = match o.advertise_api.clone() {
        Some(u) => check_advertise_api(&u)?,
        None => endpoint.clone(),
    };
    let nbd_endpoint = match o.advertise_nbd.clone() {
        Some(e) => check_advertise_nbd(&e)?,
        None => nbd_addr.to_string(),
    };
    if api_addr.ip().is_unspecified() && api_url == endpoint {
        eprintln!(
            "warning: the API listens on {api_addr}, which other nodes cannot reach: give --advertise-api http://HOST:PORT"
        );
    }
    service
        .join(&node_name, &api_url, &nbd_endpoint)
        .await
        .context("cannot join the deployment")?;
    // Renew the lease from now on: recovery below may take longer than it.
    service.spawn_lease();
    service.spawn_key_watch();
    service.spawn_rewrap();
    service.spawn_jobs();
    service.spawn_region_watch();

    let (collected, orphans) = service.recover().await.with_context(|| {
        format!(
            "start-up recovery failed: check that the object stores ({}) are reachable",
            o.store.as_deref().unwrap_or("the data dir's")
        )
    })?;
    if collected + orphans > 0 {
        tracing::info!(collected, orphans, "recovery removed unreferenced objects");
    }

    if let Some(token) = service.bootstrap().await? {
        // The token goes to the operator's CLI profile (outside the data
        // dir) and nowhere else: a copy of the data dir or a backup holds
        // no credential.
        let saved = if o.no_profile {
            None
        } else {
            let ca = tls.as_ref().and_then(|t| t.ca_pem.as_deref());
            match profile::save_admin(&endpoint, &token, ca) {
                Ok(name) => Some(name),
                Err(e) => {
                    eprintln!("warning: could not write the CLI profile: {e:#}");
                    None
                }
            }
        };
        match saved {
            Some(name) => println!(
                "Created the admin principal (Owner of the deployment); its token is in the CLI profile '{name}' ({}) and nowhere else.",
                profile::config_path().display()
            ),
            None => {
                println!(
                    "Created the admin principal (Owner of the deployment). Its token, shown only now:"
                );
                println!("{}", token.as_str());
                eprintln!(
                    "warning: keep the admin token above safe (e.g. in a file for `coffer configure --token-file`); Coffer keeps only its hash"
                );
            }
        }
    }
    // Catch SIGTERM and SIGINT before saying we are ready: a signal that
    // arrives after the banner must shut down cleanly, not kill.
    let signals = ShutdownSignals::register()?;
    println!("Coffer API listening on {endpoint}");
    println!(
        "Console: {}/console/ (sign in with a token)",
        endpoint.trim_end_matches('/')
    );
    println!("NBD listening on {nbd_addr}");
    println!("Data dir: {}  Root key: {root_banner}", data_dir.display());
    println!(
        "Node: {node_name} (lease {})",
        humantime::format_duration(lease_ttl)
    );
    use std::io::Write as _;
    std::io::stdout().flush()?;

    service.spawn_gc();
    service.spawn_usage();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let nbd_task = {
        let resolver = Arc::new(ExportResolverImpl::new(service.clone()));
        let mut rx = stop_rx.clone();
        tokio::spawn(coffer_nbd::serve(
            nbd,
            resolver,
            coffer_nbd::ServerConfig {
                tls: tls.as_ref().map(|t| t.nbd.clone()),
                ..coffer_nbd::ServerConfig::default()
            },
            async move {
                let _ = rx.changed().await;
            },
        ))
    };
    let app = coffer_api::router(
        service.clone(),
        &limits,
        tls.as_ref().and_then(|t| t.ca_pem.as_deref()),
    )
    .merge(coffer_console::router(
        service.clone(),
        tls.is_some(),
        limits.body_timeout,
    ));
    let mut rx = stop_rx.clone();
    let api_tls = tls.as_ref().map(|t| t.api.clone());
    let http_task = tokio::spawn(coffer_api::serve(api, app, limits, api_tls, async move {
        let _ = rx.changed().await;
    }));
    signals.wait().await;
    println!("Shutting down: flushing open disks...");
    let _ = stop_tx.send(true);
    service.shutdown().await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), http_task).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), nbd_task).await;
    service.meta().close().await;
    Ok(())
}

/// SIGTERM and SIGINT, caught from the moment they are registered.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn register() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("catching SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("catching SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Hold an exclusive lock on the data dir for the life of the process: a
/// data dir (its node name, SQLite file, objects) serves one server at a
/// time, which is also what lets a restarted node release its previous
/// run's disks at once.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "data dir {} is in use by another `coffer serve`: stop it, or give this one its own --data-dir",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// A node name given by `--node-name` or the config file: a resource name
/// (1-80 letters, digits, `.`, `_`, `-`), as it appears in `admin nodes`.
fn check_node_name(n: &str) -> anyhow::Result<String> {
    coffer_types::Name::new(n.trim())
        .map(|n| n.to_string())
        .map_err(|e| anyhow::anyhow!("invalid --node-name: {e}"))
}

/// `--advertise-api`: the URL other nodes reach this node's API at.
fn check_advertise_api(u: &str) -> anyhow::Result<String> {
    let u = u.trim().trim_end_matches('/');
    let ok = reqwest::Url::parse(u).ok().filter(|url| {
        matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some_and(|h| !h.is_empty())
            && url.path() == "/"
            && url.query().is_none()
    });
    match ok {
        Some(_) => Ok(u.to_string()),
        None => bail!(
            "invalid --advertise-api '{}': give the URL other nodes reach this API at, e.g. http://10.0.0.5:8787",
            u.chars().take(80).collect::<String>()
        ),
    }
}

/// `--advertise-nbd`: the `host:port` NBD clients reach this node at.
fn check_advertise_nbd(e: &str) -> anyhow::Result<String> {
    let e = e.trim();
    let ok = e.rsplit_once(':').is_some_and(|(host, port)| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        !host.is_empty()
            && !host.contains('/')
            && !host.contains(char::is_whitespace)
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if ok {
        Ok(e.to_string())
    } else {
        bail!(
            "invalid --advertise-nbd '{}': give HOST:PORT as NBD clients reach this node, e.g. 10.0.0.5:10809 (no nbd:// prefix)",
            e.chars().take(80).collect::<String>()
        )
    }
}

/// The node's lasting name, kept in the data dir (`node-name`), made at
/// first start from the host name and a random suffix.
fn node_name(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("node-name");
    match std::fs::read_to_string(&path) {
        Ok(n) if !n.trim().is_empty() => Ok(n.trim().to_string()),
        Ok(_) => bail!("{} is empty: delete it or give --node-name", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "node".into());
            let mut suffix = [0u8; 3];
            coffer_crypto::random_bytes(&mut suffix);
            let name = format!("{host}-{}", hex::encode(suffix));
            std::fs::write(&path, format!("{name}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(name)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_flags_are_checked() {
        assert_eq!(check_node_name(" n1 ").unwrap(), "n1");
        for bad in ["", "   ", "a b", "x/y", &"n".repeat(81)] {
            assert!(check_node_name(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            check_advertise_api("http://10.0.0.5:8787/").unwrap(),
            "http://10.0.0.5:8787"
        );
        assert!(check_advertise_api("https://node-a.internal").is_ok());
        for bad in [
            "",
            "10.0.0.5:8787",
            "ftp://h:1",
            "http://",
            "http://h:1/v1",
            "nbd://h:1",
        ] {
            let e = check_advertise_api(bad).unwrap_err().to_string();
            assert!(e.contains("--advertise-api"), "{bad:?}: {e}");
        }
        assert!(check_advertise_nbd("10.0.0.5:10809").is_ok());
        assert!(check_advertise_nbd("[::1]:10809").is_ok());
        assert!(check_advertise_nbd("node-a:10809").is_ok());
        for bad in [
            "",
            "10.0.0.5",
            ":10809",
            "h:0",
            "h:99999",
            "nbd://h:10809",
            "h :1",
        ] {
            let e = check_advertise_nbd(bad).unwrap_err().to_string();
            assert!(e.contains("HOST:PORT"), "{bad:?}: {e}");
        }
    }
}
