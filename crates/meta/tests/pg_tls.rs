//! PostgreSQL over TLS, verified: a private PostgreSQL server (its own
//! cluster, started by this test as the `postgres` user, on a loopback
//! port) that accepts only TLS connections, with a certificate from a
//! private CA. `sslmode=verify-full&sslrootcert=CA` opens the metadata;
//! another CA, or plaintext, does not.

use std::path::{Path, PathBuf};
use std::process::Command;

use coffer_meta::Meta;
use coffer_testkit::tls::TestCa;

/// The PostgreSQL server programs (Debian's layout).
fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server programs (apt-get install postgresql; .ci/run does)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .collect();
    dirs.sort();
    dirs.pop().map(|d| d.join(name)).unwrap()
}

/// Run `cmd` as the `postgres` user when this test runs as root (the
/// server refuses to run as root).
fn as_postgres(cmd: &str) -> std::process::Output {
    let root = rustix_is_root();
    let out = if root {
        Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c", cmd])
            .output()
    } else {
        Command::new("sh").args(["-c", cmd]).output()
    }
    .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        .unwrap()
}

fn private_ca(name: &str) -> (String, String, String) {
    let ca = TestCa::new(name);
    let (cert, key) = ca.issue(&["127.0.0.1", "localhost"]);
    (ca.pem().to_string(), cert, key)
}

/// A running private cluster; stopped on drop.
struct Cluster {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c"])
            .arg(format!(
                "{} -D {} -m immediate stop",
                pg_bin("pg_ctl").display(),
                self.dir.display()
            ))
            .output();
    }
}

fn start_cluster(cert: &str, key: &str, port: u16) -> Cluster {
    let tmp = tempfile::Builder::new()
        .prefix("coffer-pg-tls")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path().join("cluster");
    let chown = |p: &Path| {
        if rustix_is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(p)
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
    };
    chown(tmp.path());
    as_postgres(&format!(
        "{} -D {} -A trust -U postgres >/dev/null",
        pg_bin("initdb").display(),
        dir.display()
    ));
    std::fs::write(dir.join("server.crt"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
    // TLS connections only: no `host` line, so plaintext is refused.
    std::fs::write(
        dir.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    chown(&dir);
    as_postgres(&format!(
        "{} -D {d} -l {d}/log -w -o \"-p {port} -k {d} -c listen_addresses=127.0.0.1 -c ssl=on\" start >/dev/null",
        pg_bin("pg_ctl").display(),
        d = dir.display()
    ));
    Cluster { dir, _tmp: tmp }
}

#[tokio::test]
async fn metadata_over_verified_tls_only() {
    let (ca, cert, key) = private_ca("postgres");
    let (stranger, _, _) = private_ca("stranger");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let cluster = start_cluster(&cert, &key, port);
    let files = tempfile::tempdir().unwrap();
    let ca_f = files.path().join("ca.pem");
    let stranger_f = files.path().join("stranger.pem");
    std::fs::write(&ca_f, &ca).unwrap();
    std::fs::write(&stranger_f, &stranger).unwrap();
    let url = |q: &str| format!("postgres://postgres@127.0.0.1:{port}/postgres?{q}");

    let meta = Meta::open(&url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        ca_f.display()
    )))
    .await
    .expect("metadata over TLS verified against the private CA");
    meta.setting_init("tls-test", "over tls").await.unwrap();
    assert_eq!(
        meta.setting("tls-test").await.unwrap().as_deref(),
        Some("over tls")
    );
    meta.close().await;

    for (what, q) in [
        (
            "a server of another CA",
            format!("sslmode=verify-full&sslrootcert={}", stranger_f.display()),
        ),
        ("plaintext", "sslmode=disable".to_string()),
    ] {
        assert!(
            Meta::open(&url(&q)).await.is_err(),
            "opened the metadata with {what}"
        );
    }
    drop(cluster);
}
