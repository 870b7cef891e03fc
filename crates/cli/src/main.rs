//! `coffer`: the server (`coffer serve`) and the command-line client of its
//! HTTP API, in the style of `az` and `aws`: noun-verb commands, named
//! profiles, `--output json|table`, and errors that say what to do next.
//! This is the binary edge: `anyhow` lives here and nowhere below.

mod iam;
mod profile;
mod serve;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

/// Coffer: encrypted block storage — disks, snapshots, attachments over NBD.
#[derive(Debug, Parser)]
#[command(name = "coffer", version, propagate_version = true)]
struct Cli {
    /// Profile to use (default: $COFFER_PROFILE or `default`).
    #[arg(long, global = true)]
    profile: Option<String>,
    /// Output format.
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        env = "COFFER_OUTPUT",
        default_value = "table"
    )]
    output: Output,
    /// Print only this field of the result, as plain text (a dotted path,
    /// e.g. `id` or `encryption.key_id`; on a list, the field of each item).
    #[arg(long, global = true)]
    query: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Coffer server (API + NBD) on embedded defaults.
    Serve(Box<serve::ServeArgs>),
    /// Save an endpoint and token as a named profile.
    Configure {
        /// API endpoint, e.g. http://127.0.0.1:8787.
        #[arg(long)]
        endpoint: Option<String>,
        /// File holding the token (never pass tokens on the command line).
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
    },
    /// Show who the current token belongs to: principal, account, tenant
    /// and role assignments.
    Whoami,
    /// Tenants: create, list, show.
    #[command(subcommand)]
    Tenant(iam::TenantCmd),
    /// Folders of a tenant: create, list, show, delete.
    #[command(subcommand)]
    Folder(iam::FolderCmd),
    /// Accounts: create, list, show, move.
    #[command(subcommand)]
    Account(iam::AccountCmd),
    /// Principals (users and services): create, list, show, delete.
    #[command(subcommand)]
    Principal(iam::PrincipalCmd),
    /// API tokens: create, list, revoke.
    #[command(subcommand)]
    Token(iam::TokenCmd),
    /// Built-in roles, and role assignments.
    #[command(subcommand)]
    Role(iam::RoleCmd),
    /// Access: explain why a principal may or may not do an action.
    #[command(subcommand)]
    Iam(iam::IamCmd),
    /// Regions and zones.
    #[command(subcommand)]
    Region(RegionCmd),
    /// Disks: create, list, show, resize, attach, detach, delete.
    #[command(subcommand)]
    Disk(DiskCmd),
    /// Snapshots: create, list, show, delete.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Deployment administration (deployment admins only).
    #[command(subcommand)]
    Admin(AdminCmd),
}

#[derive(Debug, Subcommand)]
enum AdminCmd {
    /// Check the consistency of metadata and stored objects; exits 1 if
    /// anything is missing, damaged or inconsistent.
    Fsck {
        /// Also fetch and authenticate every stored object (reads all data).
        #[arg(long)]
        deep: bool,
    },
    /// Delete queued objects and sweep orphaned ones now (both also run in
    /// the background).
    Gc,
    /// List the nodes serving this deployment and their leases.
    Nodes,
}

#[derive(Debug, Subcommand)]
enum RegionCmd {
    /// List regions and their zones.
    List,
}

#[derive(Debug, Subcommand)]
enum DiskCmd {
    /// Create a disk, empty (--size) or from a snapshot (--from-snapshot).
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// Size, e.g. 10GiB (a multiple of 1MiB).
        #[arg(long)]
        size: Option<String>,
        /// Zone, e.g. local-a.
        #[arg(long)]
        zone: String,
        /// Snapshot to create the disk from (it may belong to another
        /// account or tenant that gave you `snapshots/read` on it).
        #[arg(long)]
        from_snapshot: Option<String>,
        /// Account that will own the disk (default: your home account).
        #[arg(long)]
        account: Option<String>,
    },
    /// List disks.
    List,
    /// Show a disk.
    Show {
        /// Disk id.
        id: String,
    },
    /// Grow a detached disk.
    Resize {
        /// Disk id.
        id: String,
        /// New size, e.g. 20GiB.
        #[arg(long)]
        size: String,
    },
    /// Attach a disk: prints its NBD URI (a secret: it grants read-write access).
    Attach {
        /// Disk id.
        id: String,
    },
    /// Detach a disk: flushes it and revokes its NBD URI.
    Detach {
        /// Disk id.
        id: String,
    },
    /// Delete a detached disk.
    Delete {
        /// Disk id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum SnapshotCmd {
    /// Take a crash-consistent snapshot of a disk (it may stay attached).
    Create {
        /// Disk id.
        #[arg(long)]
        disk: String,
        /// Name.
        #[arg(long)]
        name: String,
    },
    /// List snapshots.
    List,
    /// Show a snapshot.
    Show {
        /// Snapshot id.
        id: String,
    },
    /// Delete a snapshot (disks made from it are unaffected).
    Delete {
        /// Snapshot id.
        id: String,
    },
}

/// An API failure, shown to the user with its code.
#[derive(Debug)]
struct ApiFailure {
    status: u16,
    code: String,
    message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{} {}]", self.message, self.status, self.code)
    }
}

impl std::error::Error for ApiFailure {}

struct Client {
    http: reqwest::Client,
    endpoint: String,
    token: zeroize::Zeroizing<String>,
}

impl Client {
    fn new(profile: Option<&str>) -> anyhow::Result<Self> {
        let (endpoint, token) = profile::resolve(profile)?;
        Ok(Self {
            http: reqwest::Client::new(),
            endpoint,
            token: zeroize::Zeroizing::new(token),
        })
    }

    /// Call the API; a paginated list (`{"items", "next"}`) is followed
    /// page by page and returned as one array.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let first = self.call_once(method.clone(), path, body).await?;
        if method != reqwest::Method::GET {
            return Ok(first);
        }
        let Some(Value::Array(mut items)) = first.get("items").cloned() else {
            return Ok(first);
        };
        let mut next = first
            .get("next")
            .and_then(Value::as_str)
            .map(str::to_string);
        while let Some(token) = next {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page = self
                .call_once(
                    reqwest::Method::GET,
                    &format!("{path}{sep}next={token}"),
                    None,
                )
                .await?;
            if let Some(Value::Array(more)) = page.get("items") {
                items.extend(more.iter().cloned());
            }
            next = page.get("next").and_then(Value::as_str).map(str::to_string);
        }
        Ok(Value::Array(items))
    }

    async fn call_once(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.endpoint);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(self.token.as_str());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the Coffer API at {}: {e}. Is `coffer serve` running? Check the endpoint of your profile (`coffer configure`) or COFFER_ENDPOINT",
                self.endpoint
            )
        })?;
        let status = resp.status();
        let text = resp.text().await.context("reading the API's response")?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(v);
        }
        let code = v
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("Error")
            .to_string();
        let message = v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        Err(ApiFailure {
            status: status.as_u16(),
            code,
            message,
        }
        .into())
    }
}

/// An `az`-style table: padded columns, a dashed rule under the header.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.push(line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

fn s(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// A table of `list` with one column per (header, JSON pointer).
fn rows(list: &[Value], columns: &[(&str, &str)]) -> String {
    let headers: Vec<&str> = columns.iter().map(|c| c.0).collect();
    let body = list
        .iter()
        .map(|v| columns.iter().map(|c| s(v, c.1)).collect())
        .collect();
    table(&headers, body)
}

fn disk_rows(list: &[Value]) -> String {
    rows(
        list,
        &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("ZONE", "/zone"),
            ("SIZE", "/size"),
            ("STATE", "/state"),
            ("ENCRYPTION", "/encryption/type"),
            ("CREATED", "/created_at"),
        ],
    )
}

fn snapshot_rows(list: &[Value]) -> String {
    rows(
        list,
        &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("REGION", "/region"),
            ("SIZE", "/size"),
            ("SOURCE DISK", "/source_disk_id"),
            ("ENCRYPTION", "/encryption/type"),
            ("CREATED", "/created_at"),
        ],
    )
}

fn kv(v: &Value) -> String {
    let mut rows = Vec::new();
    if let Value::Object(m) = v {
        let mut fields: Vec<(&String, &Value)> = m.iter().collect();
        fields.sort_by_key(|(k, _)| match k.as_str() {
            "id" => 0,
            "name" => 1,
            _ => 2,
        });
        for (k, val) in fields {
            let text = match val {
                Value::String(s) => s.clone(),
                Value::Null => "-".into(),
                Value::Object(o) => o
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{k}={}",
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                other => other.to_string(),
            };
            rows.push(vec![k.clone(), text]);
        }
    }
    table(&["FIELD", "VALUE"], rows)
}

fn print(output: Output, v: &Value, render: impl FnOnce(&Value) -> String) {
    if let Some(q) = QUERY.get().and_then(Option::as_deref) {
        let ptr = format!("/{}", q.replace('.', "/"));
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for item in items {
            if item.pointer(&ptr).is_none() {
                // A typo must not pass for an empty value in a script.
                let fields: Vec<&str> = item
                    .as_object()
                    .map(|o| o.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                eprintln!(
                    "error: --query {q}: the result has no such field; its fields are: {}",
                    fields.join(", ")
                );
                std::process::exit(1);
            }
            println!("{}", s(item, &ptr));
        }
        return;
    }
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        Output::Table => println!("{}", render(v)),
    }
}

fn list_of(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn size_value(s: &str) -> anyhow::Result<Value> {
    let b: coffer_types::ByteSize = s.parse()?;
    Ok(json!(b.bytes()))
}

static QUERY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

async fn run(cli: Cli) -> anyhow::Result<()> {
    use reqwest::Method;
    let _ = QUERY.set(cli.query.clone());
    let out = cli.output;
    if let Command::Serve(args) = cli.command {
        return serve::run(*args).await;
    }
    if let Command::Configure {
        endpoint,
        token_file,
    } = &cli.command
    {
        let name = cli
            .profile
            .clone()
            .or_else(|| std::env::var("COFFER_PROFILE").ok())
            .unwrap_or_else(|| "default".into());
        let mut cfg = profile::load()?;
        let p = cfg.profiles.entry(name.clone()).or_default();
        if let Some(e) = endpoint {
            p.endpoint = Some(e.trim_end_matches('/').to_string());
        }
        if let Some(f) = token_file {
            let t = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read token file {}", f.display()))?;
            p.token = Some(t.trim().to_string());
        }
        profile::save(&cfg)?;
        println!(
            "Profile '{name}' saved in {}",
            profile::config_path().display()
        );
        return Ok(());
    }
    let c = Client::new(cli.profile.as_deref())?;
    match cli.command {
        Command::Serve(_) | Command::Configure { .. } => unreachable!("handled above"),
        Command::Whoami => print(
            out,
            &c.call(Method::GET, "/v1/whoami", None).await?,
            iam::whoami_text,
        ),
        Command::Tenant(cmd) => iam::tenant(&c, out, cmd).await?,
        Command::Folder(cmd) => iam::folder(&c, out, cmd).await?,
        Command::Account(cmd) => iam::account(&c, out, cmd).await?,
        Command::Principal(cmd) => iam::principal(&c, out, cmd).await?,
        Command::Token(cmd) => iam::token(&c, out, cmd).await?,
        Command::Role(cmd) => iam::role(&c, out, cmd).await?,
        Command::Iam(cmd) => iam::iam(&c, out, cmd).await?,
        Command::Region(RegionCmd::List) => {
            let v = c.call(Method::GET, "/v1/regions", None).await?;
            print(out, &v, |v| {
                table(
                    &["REGION", "ZONES"],
                    list_of(v)
                        .iter()
                        .map(|r| {
                            vec![
                                s(r, "/name"),
                                r["zones"]
                                    .as_array()
                                    .map(|z| {
                                        z.iter()
                                            .filter_map(Value::as_str)
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    })
                                    .unwrap_or_default(),
                            ]
                        })
                        .collect(),
                )
            });
        }
        Command::Disk(cmd) => match cmd {
            DiskCmd::Create {
                name,
                size,
                zone,
                from_snapshot,
                account,
            } => {
                let mut body = json!({"name": name, "zone": zone});
                if let Some(a) = account {
                    body["account_id"] = json!(a);
                }
                if let Some(sz) = size {
                    body["size"] = size_value(&sz)?;
                }
                if let Some(snap) = from_snapshot {
                    body["source_snapshot_id"] = json!(snap);
                }
                print(
                    out,
                    &c.call(Method::POST, "/v1/disks", Some(body)).await?,
                    kv,
                );
            }
            DiskCmd::List => print(out, &c.call(Method::GET, "/v1/disks", None).await?, |v| {
                disk_rows(list_of(v))
            }),
            DiskCmd::Show { id } => print(
                out,
                &c.call(Method::GET, &format!("/v1/disks/{}", enc(&id)), None)
                    .await?,
                kv,
            ),
            DiskCmd::Resize { id, size } => {
                let body = json!({"size": size_value(&size)?});
                print(
                    out,
                    &c.call(
                        Method::POST,
                        &format!("/v1/disks/{}/resize", enc(&id)),
                        Some(body),
                    )
                    .await?,
                    kv,
                );
            }
            DiskCmd::Attach { id } => {
                let v = c
                    .call(
                        Method::POST,
                        &format!("/v1/disks/{}/attach", enc(&id)),
                        None,
                    )
                    .await?;
                print(out, &v, |v| {
                    format!(
                        "{}\n\nThe URI above grants read-write access to the disk until `coffer disk detach {}`.\nExample: qemu-img convert -n -O raw image.raw '{}'",
                        s(v, "/uri"),
                        s(v, "/disk_id"),
                        s(v, "/uri")
                    )
                });
            }
            DiskCmd::Detach { id } => print(
                out,
                &c.call(
                    Method::POST,
                    &format!("/v1/disks/{}/detach", enc(&id)),
                    None,
                )
                .await?,
                kv,
            ),
            DiskCmd::Delete { id } => print(
                out,
                &c.call(Method::DELETE, &format!("/v1/disks/{}", enc(&id)), None)
                    .await?,
                kv,
            ),
        },
        Command::Snapshot(cmd) => match cmd {
            SnapshotCmd::Create { disk, name } => {
                let body = json!({"disk_id": disk, "name": name});
                print(
                    out,
                    &c.call(Method::POST, "/v1/snapshots", Some(body)).await?,
                    kv,
                );
            }
            SnapshotCmd::List => print(
                out,
                &c.call(Method::GET, "/v1/snapshots", None).await?,
                |v| snapshot_rows(list_of(v)),
            ),
            SnapshotCmd::Show { id } => print(
                out,
                &c.call(Method::GET, &format!("/v1/snapshots/{}", enc(&id)), None)
                    .await?,
                kv,
            ),
            SnapshotCmd::Delete { id } => print(
                out,
                &c.call(Method::DELETE, &format!("/v1/snapshots/{}", enc(&id)), None)
                    .await?,
                kv,
            ),
        },
        Command::Admin(AdminCmd::Gc) => {
            print(out, &c.call(Method::POST, "/v1/admin/gc", None).await?, kv)
        }
        Command::Admin(AdminCmd::Nodes) => print(
            out,
            &c.call(Method::GET, "/v1/admin/nodes", None).await?,
            |v| {
                rows(
                    list_of(v),
                    &[
                        ("NAME", "/name"),
                        ("API", "/api_url"),
                        ("NBD", "/nbd_endpoint"),
                        ("LEASE UNTIL", "/lease_expires_at"),
                        ("THIS", "/this_node"),
                    ],
                )
            },
        ),
        Command::Admin(AdminCmd::Fsck { deep }) => {
            let v = c
                .call(Method::GET, &format!("/v1/admin/fsck?deep={deep}"), None)
                .await?;
            print(out, &v, fsck_text);
            if v["ok"] != Value::Bool(true) {
                anyhow::bail!(
                    "fsck found problems (listed above); see docs/DEPLOYMENT.md on restoring from a backup"
                );
            }
        }
    }
    Ok(())
}

/// A fsck report for people: the counts, then each finding.
fn fsck_text(v: &Value) -> String {
    let counts = table(
        &["OBJECTS", "COUNT"],
        [
            ("stored", "/objects_stored"),
            ("named by chunk maps", "/objects_named"),
            ("missing", "/objects_missing"),
            ("unreferenced (garbage)", "/objects_unreferenced"),
            ("queued for deletion", "/objects_queued"),
            ("verified (deep)", "/objects_verified"),
        ]
        .iter()
        .map(|(label, ptr)| vec![(*label).to_string(), s(v, ptr)])
        .collect(),
    );
    let findings = list_of(&v["findings"]);
    if findings.is_empty() {
        format!("{counts}\nNo problems found.")
    } else {
        format!(
            "{counts}\n{}",
            rows(findings, &[("PROBLEM", "/code"), ("DETAIL", "/detail")])
        )
    }
}

/// Percent-encode a path segment (ids are plain, but user input may not be).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if matches!(cli.command, Command::Serve(_)) {
            "info"
        } else {
            "warn"
        })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
