//! Test support: which backends this test run uses, and a fresh, private
//! instance of each per test.
//!
//! The whole suite runs once per backend set (see `scripts/test.sh`):
//! - `COFFER_TEST_METADATA=sqlite` (default): a SQLite file in the test's
//!   directory;
//! - `COFFER_TEST_METADATA=postgres`: a new database on the PostgreSQL
//!   server at `COFFER_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`),
//!   created for the test and dropped when it ends.
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
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime")
            .block_on(f())
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
            MetadataBackend::Postgres => {
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
                on_own_runtime(move || {
                    Box::pin(async move {
                        let mut c = PgConnection::connect(&format!("{s}/postgres"))
                            .await
                            .unwrap_or_else(|e| {
                                panic!(
                                    "COFFER_TEST_METADATA=postgres but PostgreSQL at {s} is not reachable ({e}); \
                                     start it (.ci/run does) or set COFFER_TEST_PG"
                                )
                            });
                        c.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {n}")))
                            .await
                            .expect("create test database");
                    })
                });
                Self {
                    url: format!("{server}/{name}"),
                    database: Some(name),
                }
            }
        }
    }

    /// The URL to give `coffer serve --metadata` or `Meta::open`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the metadata lives outside the test's files (PostgreSQL).
    pub fn is_external(&self) -> bool {
        self.database.is_some()
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
        on_own_runtime(move || {
            Box::pin(async move {
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
        })
    }
}

impl Drop for TestMetadata {
    fn drop(&mut self) {
        if let Some(name) = self.database.take() {
            let server = pg_server();
            on_own_runtime(move || {
                Box::pin(async move {
                    if let Ok(mut c) = PgConnection::connect(&format!("{server}/postgres")).await {
                        let _ = c
                            .execute(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .await;
                    }
                })
            });
        }
    }
}
