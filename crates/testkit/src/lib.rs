//! Test support: which backends this test run uses, and a fresh, private
//! instance of each per test.
//!
//! The whole suite runs once per backend set (see `scripts/test.sh`):
//! - `COFFER_TEST_METADATA=sqlite` (default): a SQLite file in the test's
//!   directory;
//! - `COFFER_TEST_METADATA=postgres`: a new database on the PostgreSQL
//!   server at `COFFER_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`),
//!   created for the test and dropped when it ends;
//! - `COFFER_TEST_STORE=local` (default) or `s3`: objects in the data dir,
//!   or in a new bucket on the S3 server at `COFFER_TEST_S3_ENDPOINT`, or
//!   on one of the pool at `COFFER_TEST_S3_ENDPOINTS` that no other test
//!   holds (see [`TestS3::start`]), else on a `moto_server` the test starts.
//!
//! Only tests use this crate (as a dev-dependency); it depends on no Coffer
//! crate, so any layer's tests can use it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, Executor, PgConnection};

/// The metadata backend of this test run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataBackend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// The metadata backend chosen by `COFFER_TEST_METADATA`.
///
/// # Panics
/// On a value other than `sqlite` or `postgres`: a typo must not silently
/// run the suite on the wrong backend.
pub fn metadata_backend() -> MetadataBackend {
    match std::env::var("COFFER_TEST_METADATA").as_deref() {
        Err(_) | Ok("" | "sqlite") => MetadataBackend::Sqlite,
        Ok("postgres") => MetadataBackend::Postgres,
        Ok(other) => panic!("COFFER_TEST_METADATA={other}: use sqlite or postgres"),
    }
}

fn pg_server() -> String {
    std::env::var("COFFER_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A metadata store for one test: its URL, and (for PostgreSQL) the
/// database to drop when the test ends.
#[derive(Debug)]
pub struct TestMetadata {
    url: String,
    database: Option<String>,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Run `f` on a runtime of its own in a thread of its own, so this works
/// from sync tests and from inside a tokio runtime alike.
fn on_own_runtime<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime")
            .block_on(f)
    })
    .join()
    .expect("test database helper panicked")
}

impl TestMetadata {
    /// A fresh, empty metadata store of this run's backend; a SQLite file
    /// goes in `dir`.
    ///
    /// # Panics
    /// If the PostgreSQL server cannot be reached, with what to do.
    pub fn new(dir: &Path) -> Self {
        match metadata_backend() {
            MetadataBackend::Sqlite => Self {
                url: format!("sqlite://{}", dir.join("meta.sqlite").display()),
                database: None,
            },
            MetadataBackend::Postgres => Self::postgres(),
        }
    }

    /// A fresh PostgreSQL database whatever this run's backend: for tests
    /// of several nodes, which share one metadata store over the network
    /// (SQLite serves one node).
    ///
    /// # Panics
    /// If the PostgreSQL server cannot be reached, with what to do.
    pub fn postgres() -> Self {
        let name = format!(
            "coffer_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let server = pg_server();
        let (n, s) = (name.clone(), server.clone());
        on_own_runtime(async move {
            let mut c = PgConnection::connect(&format!("{s}/postgres"))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "this test needs PostgreSQL, and the server at {s} is not reachable ({e}); \
                         start it (.ci/run does) or set COFFER_TEST_PG"
                    )
                });
            c.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {n}")))
                .await
                .expect("create test database");
        });
        Self {
            url: format!("{server}/{name}"),
            database: Some(name),
        }
    }

    /// Another handle on the store at `url` (e.g. a second node's view of
    /// a first node's PostgreSQL database); dropping it drops nothing.
    pub fn shared(url: &str) -> Self {
        Self {
            url: url.to_string(),
            database: None,
        }
    }

    /// The URL to give `coffer serve --metadata` or `Meta::open`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the metadata lives outside the test's files (PostgreSQL).
    pub fn is_external(&self) -> bool {
        !self.url.starts_with("sqlite:")
    }

    /// Everything a PostgreSQL test database stores, for at-rest scans:
    /// every column of every row of every table, text as UTF-8 and `bytea`
    /// as its raw bytes (a text dump would hex-encode those and hide
    /// plaintext). Empty for SQLite, whose file is under the data dir and
    /// scanned with it.
    pub fn contents(&self) -> Vec<u8> {
        let Some(name) = self.database.clone() else {
            return Vec::new();
        };
        let url = format!("{}/{name}", pg_server());
        on_own_runtime(async move {
            let mut c = PgConnection::connect(&url)
                .await
                .expect("connect test database");
            let cols: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
                     WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
                )
                .fetch_all(&mut c)
                .await
                .expect("list columns");
            let mut out = Vec::new();
            for (table, column, ty) in cols {
                if ty == "bytea" {
                    let rows: Vec<Option<Vec<u8>>> = sqlx::query_scalar(sqlx::AssertSqlSafe(
                        format!("SELECT \"{column}\" FROM \"{table}\""),
                    ))
                    .fetch_all(&mut c)
                    .await
                    .expect("read bytea column");
                    out.extend(rows.into_iter().flatten().flatten());
                } else {
                    let rows: Vec<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(
                        format!("SELECT \"{column}\"::text FROM \"{table}\""),
                    ))
                    .fetch_all(&mut c)
                    .await
                    .expect("read column");
                    for r in rows.into_iter().flatten() {
                        out.extend_from_slice(r.as_bytes());
                        out.push(b'\n');
                    }
                }
            }
            out
        })
    }
}

impl TestMetadata {
    /// Run one SQL statement on the store, as an operator with database
    /// access would (e.g. to put a token's expiry in the past, which the
    /// API refuses to do); returns the rows it changed.
    ///
    /// # Panics
    /// If the statement fails.
    pub fn execute(&self, sql: &str) -> u64 {
        let url = self.url.clone();
        let sql = sql.to_string();
        on_own_runtime(async move {
            if url.starts_with("sqlite:") {
                let mut c = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("open the SQLite metadata");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .expect("run the statement")
                    .rows_affected()
            } else {
                let mut c = PgConnection::connect(&url)
                    .await
                    .expect("connect test database");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .expect("run the statement")
                    .rows_affected()
            }
        })
    }

    /// How many rows each table holds now (SQLite or PostgreSQL alike): for
    /// tests that measure an operation's work in rows written.
    ///
    /// # Panics
    /// If the store cannot be read.
    pub fn row_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let url = self.url.clone();
        on_own_runtime(async move {
            let mut out = std::collections::BTreeMap::new();
            if url.starts_with("sqlite:") {
                let mut c = sqlx::SqliteConnection::connect(&format!("{url}?mode=ro"))
                    .await
                    .expect("open the SQLite metadata read-only");
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                )
                .fetch_all(&mut c)
                .await
                .expect("list tables");
                for t in tables {
                    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT count(*) FROM \"{t}\""
                    )))
                    .fetch_one(&mut c)
                    .await
                    .expect("count rows");
                    out.insert(t, u64::try_from(n).expect("a count is not negative"));
                }
            } else {
                let mut c = PgConnection::connect(&url)
                    .await
                    .expect("connect test database");
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
                )
                .fetch_all(&mut c)
                .await
                .expect("list tables");
                for t in tables {
                    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT count(*) FROM \"{t}\""
                    )))
                    .fetch_one(&mut c)
                    .await
                    .expect("count rows");
                    out.insert(t, u64::try_from(n).expect("a count is not negative"));
                }
            }
            out
        })
    }
}

impl Drop for TestMetadata {
    fn drop(&mut self) {
        if let Some(name) = self.database.take() {
            let server = pg_server();
            on_own_runtime(async move {
                if let Ok(mut c) = PgConnection::connect(&format!("{server}/postgres")).await {
                    let _ = c
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await;
                }
            });
        }
    }
}

/// The object store backend of this test run, from `COFFER_TEST_STORE`:
/// `local` (default, a directory) or `s3` (a fresh bucket per test on the
/// server [`TestS3`] finds or starts).
///
/// # Panics
/// On another value.
pub fn store_is_s3() -> bool {
    match std::env::var("COFFER_TEST_STORE").as_deref() {
        Err(_) | Ok("" | "local") => false,
        Ok("s3") => true,
        Ok(other) => panic!("COFFER_TEST_STORE={other}: use local or s3"),
    }
}

/// The object store of one test: `None` for the default directory, or a
/// fresh bucket (and the server holding it, kept alive as long as this).
#[derive(Debug)]
pub struct TestStore {
    s3: Option<(TestS3, String)>,
}

impl TestStore {
    /// A fresh store of this run's backend.
    pub fn new() -> Self {
        if store_is_s3() {
            let server = TestS3::start();
            let url = server.bucket();
            Self {
                s3: Some((server, url)),
            }
        } else {
            Self { s3: None }
        }
    }

    /// No store of its own: the server is given another's (`--store`).
    pub fn none() -> Self {
        Self { s3: None }
    }

    /// The `--store` URL, or `None` for the default directory.
    pub fn url(&self) -> Option<&str> {
        self.s3.as_ref().map(|(_, u)| u.as_str())
    }

    /// Environment a server needs to reach the store (S3 credentials).
    pub fn env(&self) -> Vec<(&'static str, &'static str)> {
        if self.s3.is_some() {
            vec![
                ("AWS_ACCESS_KEY_ID", S3_TEST_KEY.0),
                ("AWS_SECRET_ACCESS_KEY", S3_TEST_KEY.1),
            ]
        } else {
            Vec::new()
        }
    }
}

impl Default for TestStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Credentials every test S3 server accepts (moto checks none).
pub const S3_TEST_KEY: (&str, &str) = ("coffer-test", "coffer-test-secret");

/// A real S3-compatible server for tests: the one at
/// `COFFER_TEST_S3_ENDPOINT` if set, else one of a pool (below), else a
/// `moto_server` (PyPI `moto[server]`, installed by `.ci/run`) started on a
/// free loopback port and stopped when this is dropped. Each
/// [`TestS3::bucket`] is new and empty.
#[derive(Debug)]
pub struct TestS3 {
    endpoint: String,
    child: Option<std::process::Child>,
    /// The lease on a pooled server, released when this is dropped.
    _lease: Option<std::fs::File>,
}

impl TestS3 {
    /// Use or start the server.
    ///
    /// A pool is `COFFER_TEST_S3_ENDPOINTS` (comma-separated endpoints, which
    /// `scripts/test.sh` starts, one per concurrent test) with
    /// `COFFER_TEST_S3_LEASES`, a directory: a test takes the first server
    /// whose lease file it can lock, so no two tests share one
    /// single-threaded moto_server while another stands idle. When every
    /// server is leased (more tests at once than servers), it shares one.
    ///
    /// # Panics
    /// If `moto_server` is missing or does not come up, with what to do.
    pub fn start() -> Self {
        if let Ok(e) = std::env::var("COFFER_TEST_S3_ENDPOINT") {
            return Self {
                endpoint: e.trim_end_matches('/').to_string(),
                child: None,
                _lease: None,
            };
        }
        if let Ok(pool) = std::env::var("COFFER_TEST_S3_ENDPOINTS") {
            let endpoints: Vec<&str> = pool.split(',').filter(|e| !e.is_empty()).collect();
            if !endpoints.is_empty() {
                let (endpoint, lease) = lease_one(&endpoints);
                return Self {
                    endpoint: endpoint.trim_end_matches('/').to_string(),
                    child: None,
                    _lease: lease,
                };
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto_server ({e}): pip install 'moto[server]' (.ci/run does)")
            });
        let s = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            _lease: None,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        s
    }

    /// The endpoint URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Create a new, empty bucket; returns the store URL for it
    /// (`s3://BUCKET?endpoint=...`).
    ///
    /// # Panics
    /// If the server refuses.
    pub fn bucket(&self) -> String {
        let name = format!(
            "coffer-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // A moto_server that just opened its port may still drop the first
        // requests (status 0: no answer): retry those, for up to 5 s.
        let mut status = 0;
        for _ in 0..50 {
            status = http_status(&self.endpoint, "PUT", &format!("/{name}"));
            if status != 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(
            status == 200,
            "creating bucket {name} answered HTTP {status}"
        );
        format!("s3://{name}?endpoint={}", self.endpoint)
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The first pooled endpoint whose lease (a lock on a file of
/// `COFFER_TEST_S3_LEASES`) is free, with the lease; the search starts at
/// an index taken from the process id, so tests starting together try
/// different servers first. With no lease directory, or every lease taken,
/// one endpoint by process id, unleased.
fn lease_one<'a>(endpoints: &[&'a str]) -> (&'a str, Option<std::fs::File>) {
    let first = std::process::id() as usize % endpoints.len();
    if let Ok(dir) = std::env::var("COFFER_TEST_S3_LEASES") {
        for i in 0..endpoints.len() {
            let at = (first + i) % endpoints.len();
            let path = Path::new(&dir).join(format!("s3-{at}.lease"));
            let Ok(file) = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
            else {
                continue;
            };
            if file.try_lock().is_ok() {
                return (endpoints[at], Some(file));
            }
        }
    }
    (endpoints[first], None)
}

/// One unsigned HTTP/1.1 request to a test server; returns the status.
fn http_status(endpoint: &str, method: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(host).expect("connect to the test S3 server");
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Certificate authorities of nobody's deployment, for TLS tests: a CA and
/// the certificates it issues, as PEM.
pub mod tls {
    /// A private CA.
    pub struct TestCa {
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
        pem: String,
    }

    impl TestCa {
        /// A new CA named `name` (its common name: OpenSSL clients take a
        /// leaf whose subject equals its issuer for a self-signed
        /// certificate, so CA and leaves get names of their own).
        ///
        /// # Panics
        /// If rcgen fails.
        pub fn new(name: &str) -> Self {
            let key = rcgen::KeyPair::generate().expect("CA key");
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.distinguished_name
                .push(rcgen::DnType::CommonName, format!("{name} test CA"));
            let pem = p.self_signed(&key).expect("CA certificate").pem();
            Self {
                issuer: rcgen::Issuer::new(p, key),
                pem,
            }
        }

        /// The CA certificate.
        pub fn pem(&self) -> &str {
            &self.pem
        }

        /// A certificate for `names` (DNS names or IP addresses; the first
        /// is also its common name) and its private key: (cert, key) PEM.
        ///
        /// # Panics
        /// If rcgen fails.
        pub fn issue(&self, names: &[&str]) -> (String, String) {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut p = rcgen::CertificateParams::new(
                names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>(),
            )
            .expect("params");
            p.distinguished_name.push(
                rcgen::DnType::CommonName,
                names.first().copied().unwrap_or("leaf"),
            );
            let cert = p.signed_by(&key, &self.issuer).expect("certificate");
            (cert.pem(), key.serialize_pem())
        }
    }
}

/// SoftHSM2, a software PKCS#11 token, for tests of the HSM root key.
pub mod softhsm {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// The SoftHSM2 PKCS#11 module.
    ///
    /// # Panics
    /// If SoftHSM2 is not installed, with what to install.
    pub fn module() -> PathBuf {
        [
            "/usr/lib/softhsm/libsofthsm2.so",
            "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
            "/usr/lib64/softhsm/libsofthsm2.so",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("the SoftHSM2 PKCS#11 module is required by this test: apt-get install softhsm2")
    }

    /// A SoftHSM2 configuration whose token directory, `dir/tokens`, is
    /// empty (no token: an HSM that is not there); returns its path.
    ///
    /// # Panics
    /// If the files cannot be written.
    pub fn conf(dir: &Path) -> PathBuf {
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).expect("token directory");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("write softhsm2.conf");
        conf
    }

    /// A fresh token labelled `label` with user PIN `pin`, its files under
    /// `dir/tokens`; returns the configuration file to set as
    /// `SOFTHSM2_CONF` (for child processes only: tests run in parallel).
    ///
    /// # Panics
    /// If `softhsm2-util` is missing or fails.
    pub fn init_token(dir: &Path, label: &str, pin: &str) -> PathBuf {
        let conf = conf(dir);
        let init = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label, "--pin", pin])
            .args(["--so-pin", "5678-so"])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap_or_else(|e| {
                panic!("`softhsm2-util` is required by this test: apt-get install softhsm2 ({e})")
            });
        assert!(
            init.status.success(),
            "softhsm2-util --init-token failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        conf
    }
}
