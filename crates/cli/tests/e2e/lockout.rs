//! No way in is lost for good, and no credential is left lying around: the
//! first start's admin token lives in the CLI profile only (the data dir
//! holds none), and `coffer admin recover` — the break-glass path — mints a
//! short-lived Owner token for an operator holding the root key, refusing a
//! wrong root key and a metadata store without a deployment.

use crate::common;

use std::process::Command;

use common::*;

/// `coffer admin recover` against this server's deployment, with HOME set
/// to a place holding no profile (a locked-out operator).
fn recover(s: &Server, extra: &[&str]) -> std::process::Output {
    let home = s.scratch().join("operator-home");
    std::fs::create_dir_all(&home).unwrap();
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["admin", "recover", "--data-dir"])
        .arg(s.data_dir())
        .args(["--metadata", s.meta.url()])
        .args(extra)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("COFFER_ROOT_PASSPHRASE")
        .env_remove("COFFER_TOKEN")
        .output()
        .unwrap()
}

/// A recovery with the deployment's root key that must succeed: its JSON.
fn recovered(s: &Server) -> serde_json::Value {
    let out = recover(
        s,
        &[
            "--root-key-file",
            s.root_key().to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn as_token(s: &Server, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .args(["--output", "json"])
        .env("HOME", s.scratch())
        .env("XDG_CONFIG_HOME", s.scratch().join("no-config"))
        .env("COFFER_ENDPOINT", &s.api)
        .env("COFFER_TOKEN", token)
        .output()
        .unwrap()
}

#[test]
fn the_first_admin_token_is_in_the_profile_only() {
    let s = Server::start();
    let token = s.admin_token();
    let profiles = std::fs::read_to_string(s.home().join(".config/coffer/config.toml")).unwrap();
    assert!(
        profiles.contains(&token),
        "the default profile holds the admin token"
    );
    for f in walk(&s.data_dir()) {
        let data = std::fs::read(&f).unwrap();
        assert!(
            !data.windows(token.len()).any(|w| w == token.as_bytes()),
            "the admin token is in {}",
            f.display()
        );
    }
    assert!(!s.data_dir().join("admin.token").exists());
    let out = std::fs::read_to_string(s.dir.path().join("server.out")).unwrap();
    assert!(!out.contains(&token), "the token was printed: {out}");
    assert!(
        out.contains("its token is in the CLI profile 'default'"),
        "{out}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn recover_mints_a_short_lived_owner_with_the_root_key_only() {
    let mut s = Server::start();
    // The running server records a usage sample per account in the
    // background, once soon after it starts (it may land between the two
    // counts): not a row of the recovery's.
    let counts = |s: &Server| {
        let mut c = s.meta.row_counts();
        c.remove("usage_samples");
        c
    };
    let before = counts(&s);

    // A wrong root key: refused, and nothing written.
    let wrong = s.scratch().join("wrong.key");
    std::fs::write(&wrong, format!("{}\n", "ab".repeat(32))).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = recover(&s, &["--root-key-file", wrong.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong root key was accepted");
    assert!(err.contains("no recovery token was made"), "{err}");
    assert_eq!(counts(&s), before, "a refused recovery wrote rows");

    // A data dir that holds no deployment: refused, and no key file made.
    let empty = s.scratch().join("empty-data");
    std::fs::create_dir_all(&empty).unwrap();
    let key = s.scratch().join("new.key");
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["admin", "recover", "--data-dir"])
        .arg(&empty)
        .arg("--root-key-file")
        .arg(&key)
        .env("HOME", s.scratch())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no deployment"), "{err}");
    assert!(!key.exists(), "a recovery on nothing created a root key");

    // Bounds on the token's life.
    let out = recover(
        &s,
        &[
            "--root-key-file",
            s.root_key().to_str().unwrap(),
            "--expires-in",
            "2d",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("24 hours"));

    // The right root key, with the server running: a new Owner of the
    // deployment whose token works at once and expires within the hour.
    let out = recover(
        &s,
        &[
            "--root-key-file",
            s.root_key().to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "recover failed: {err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    let id = v["principal_id"].as_str().unwrap().to_string();
    assert!(v["name"].as_str().unwrap().starts_with("recovery-"), "{v}");
    let expires = humantime::parse_rfc3339(v["expires_at"].as_str().unwrap()).unwrap();
    let left = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left.as_secs() <= 3600 && left.as_secs() > 3500, "{left:?}");
    assert!(err.contains("shown only now"), "{err}");

    let who = as_token(&s, &token, &["whoami"]);
    assert!(
        who.status.success(),
        "{}",
        String::from_utf8_lossy(&who.stderr)
    );
    let who: serde_json::Value = serde_json::from_slice(&who.stdout).unwrap();
    assert_eq!(who["principal_id"], id.as_str());
    assert_eq!(who["is_admin"], true, "{who}");
    // It can act as an Owner of the deployment: make a tenant.
    let t = as_token(
        &s,
        &token,
        &["tenant", "create", "--name", "after-recovery"],
    );
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    // The old admin sees the recovery Owner at `/`.
    let at_root = s.cli(&["role", "assignment", "list", "--scope", "/"]);
    assert!(
        at_root
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["principal_id"] == id.as_str() && a["role"] == "Owner"),
        "{at_root}"
    );
    assert!(!s.log().contains(&token));

    // Again at once (most likely in the same second): another recovery
    // Owner, not a name clash.
    let again = recovered(&s);
    assert_ne!(again["name"], v["name"]);

    // With the server stopped: the token minted then works once it is back.
    s.stop();
    let stopped = recovered(&s);
    s.launch(&[]);
    let who = as_token(&s, stopped["token"].as_str().unwrap(), &["whoami"]);
    assert!(
        who.status.success(),
        "{}",
        String::from_utf8_lossy(&who.stderr)
    );
    s.assert_no_panic();
}
