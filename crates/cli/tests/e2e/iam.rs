//! Identity and access through the real `coffer` binary against a real
//! `coffer serve`: tenants are isolated (another tenant's resources are
//! "not found", exactly as missing ones are), a role on one snapshot shares
//! that snapshot and nothing else, tokens expire and are revoked at once and
//! their secrets appear nowhere but where they are handed out, and profiles
//! and the environment select who the CLI acts as.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::Value;

const FAKE_DISK: &str = "disk-0123456789abcdef";
const FAKE_SNAP: &str = "snap-0123456789abcdef";

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

fn with_profile<'a>(profile: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["--profile", profile];
    a.extend_from_slice(args);
    a
}

/// `coffer --profile P ARGS --output json`, expecting success.
fn cli_as(s: &Server, profile: &str, args: &[&str]) -> Value {
    s.cli(&with_profile(profile, args))
}

/// `coffer --profile P ARGS`, expecting failure; returns stderr.
fn err_as(s: &Server, profile: &str, args: &[&str]) -> String {
    s.cli_err(&with_profile(profile, args))
}

/// The API status and code the CLI printed: `... [404 DiskNotFound]`.
fn api_error(stderr: &str) -> (u16, String) {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with(']'))
        .unwrap_or_else(|| panic!("no API error in: {stderr}"));
    let inner = &line[line.rfind('[').unwrap() + 1..line.trim_end().len() - 1];
    let (status, code) = inner
        .split_once(' ')
        .unwrap_or_else(|| panic!("no status and code in: {stderr}"));
    (status.parse().unwrap(), code.to_string())
}

/// The CLI with the server's HOME and exactly the `COFFER_*` variables
/// given (others removed).
fn cli_env(s: &Server, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.args(args)
        .env("HOME", s.home())
        .env("XDG_CONFIG_HOME", s.home().join(".config"))
        .env_remove("COFFER_PROFILE")
        .env_remove("COFFER_TOKEN")
        .env_remove("COFFER_ENDPOINT")
        .env_remove("COFFER_OUTPUT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run coffer")
}

/// `whoami` with the given environment: the principal's name.
fn whoami_name(s: &Server, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut a = args.to_vec();
    a.extend(["whoami", "--output", "json"]);
    let out = cli_env(s, &a, env);
    assert!(
        out.status.success(),
        "whoami {args:?} {env:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["name"].as_str().unwrap().to_string()
}

fn config_path(s: &Server) -> std::path::PathBuf {
    s.home().join(".config/coffer/config.toml")
}

/// The token stored in profile `name`.
fn profile_token(s: &Server, name: &str) -> String {
    let text = std::fs::read_to_string(config_path(s)).unwrap();
    let cfg: toml::Value = toml::from_str(&text).unwrap();
    cfg["profiles"][name]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in profile {name}: {text}"))
        .to_string()
}

/// `principal create --role R [--scope S]` then `token create
/// --save-profile`: the principal's id.
fn principal_with_profile(
    s: &Server,
    name: &str,
    account: &str,
    role: &str,
    scope: Option<&str>,
    profile: &str,
) -> String {
    let mut args = vec![
        "principal",
        "create",
        "--name",
        name,
        "--account",
        account,
        "--role",
        role,
    ];
    if let Some(sc) = scope {
        args.extend(["--scope", sc]);
    }
    let created = s.cli(&args);
    let p = id(&created["principal"]);
    assert_eq!(created["principal"]["account_id"], account, "{created}");
    assert_eq!(created["role_assignment"]["principal_id"], p.as_str());
    assert_eq!(created["role_assignment"]["role"], role);
    assert_eq!(
        created["role_assignment"]["scope"],
        scope.unwrap_or(account),
        "--scope defaults to the principal's home account: {created}"
    );
    let tok = s.cli(&[
        "token",
        "create",
        "--principal",
        &p,
        "--save-profile",
        profile,
    ]);
    assert!(
        tok.get("secret").is_none(),
        "--save-profile must not print the secret: {tok}"
    );
    assert_eq!(tok["principal_id"], p.as_str());
    assert_eq!(tok["state"], "active");
    let secret = profile_token(s, profile);
    assert!(secret.starts_with("coffer_"), "{secret}");
    assert!(!tok.to_string().contains(&secret));
    p
}

/// Runs `template` (with `{}` for the id) against a real hidden id and a
/// made-up one as `profile`: both fail alike, 404 with `code`.
fn hidden_like_missing(
    s: &Server,
    profile: &str,
    template: &[&str],
    real: &str,
    fake: &str,
    code: &str,
) {
    let fill = |id: &str| -> Vec<String> {
        template
            .iter()
            .map(|a| {
                if *a == "{}" {
                    id.to_string()
                } else {
                    a.to_string()
                }
            })
            .collect()
    };
    let real_args = fill(real);
    let fake_args = fill(fake);
    let hidden = err_as(
        s,
        profile,
        &real_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let missing = err_as(
        s,
        profile,
        &fake_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(hidden.contains("not found"), "{template:?}: {hidden}");
    assert_eq!(
        api_error(&hidden),
        (404, code.to_string()),
        "{template:?}: {hidden}"
    );
    assert_eq!(
        api_error(&hidden),
        api_error(&missing),
        "{template:?}: a hidden id and a missing one must fail alike"
    );
    assert_eq!(
        hidden.replace(real, "ID"),
        missing.replace(fake, "ID"),
        "{template:?}: the messages differ beyond the id"
    );
}

#[test]
fn two_tenants_are_isolated() {
    let s = Server::start();
    let admin = s.cli(&["whoami"]);
    let admin_account = admin["account_id"].as_str().unwrap().to_string();
    let admin_tenant = admin["tenant_id"].as_str().unwrap().to_string();
    assert_eq!(admin["is_admin"], true);

    // Tenant T2 with an account and an Owner of the whole tenant.
    let t2 = id(&s.cli(&["tenant", "create", "--name", "t2"]));
    assert_ne!(t2, admin_tenant);
    assert_eq!(s.cli(&["tenant", "show", &t2])["name"], "t2");
    let acct2 = s.cli(&["account", "create", "--name", "t2-main", "--tenant", &t2]);
    assert_eq!(acct2["tenant_id"], t2.as_str());
    let acct2 = id(&acct2);
    let p2 = principal_with_profile(&s, "t2-owner", &acct2, "Owner", Some(&t2), "t2");
    let who = cli_as(&s, "t2", &["whoami"]);
    assert_eq!(who["principal_id"], p2.as_str());
    assert_eq!(who["name"], "t2-owner");
    assert_eq!(who["tenant_id"], t2.as_str());
    assert_eq!(who["tenant_name"], "t2");
    assert_eq!(who["account_id"], acct2.as_str());
    assert_eq!(who["account_name"], "t2-main");
    assert_eq!(who["is_admin"], false);
    assert_eq!(who["role_assignments"][0]["scope"], t2.as_str());
    // The profiles file holds secrets: owner-only.
    let mode = std::fs::metadata(config_path(&s))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "profiles file mode {mode:o}");

    // The admin's disk and snapshot, in its default account.
    let disk = s.create_disk("admin-d", "8MiB", "local-a");
    let snap = id(&s.cli(&["snapshot", "create", "--disk", &disk, "--name", "admin-s"]));

    // T2 sees none of it...
    assert_eq!(cli_as(&s, "t2", &["disk", "list"]), serde_json::json!([]));
    assert_eq!(
        cli_as(&s, "t2", &["snapshot", "list"]),
        serde_json::json!([])
    );
    assert_eq!(
        cli_as(&s, "t2", &["tenant", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(id)
            .collect::<Vec<_>>(),
        vec![t2.clone()],
        "T2 sees its own tenant only"
    );
    // ...and every operation on it fails as on an id that does not exist.
    for (template, real, fake, code) in [
        (
            &["disk", "show", "{}"][..],
            &disk,
            FAKE_DISK,
            "DiskNotFound",
        ),
        (&["disk", "attach", "{}"], &disk, FAKE_DISK, "DiskNotFound"),
        (&["disk", "detach", "{}"], &disk, FAKE_DISK, "DiskNotFound"),
        (&["disk", "delete", "{}"], &disk, FAKE_DISK, "DiskNotFound"),
        (
            &["disk", "resize", "{}", "--size", "16MiB"],
            &disk,
            FAKE_DISK,
            "DiskNotFound",
        ),
        (
            &["snapshot", "create", "--disk", "{}", "--name", "x"],
            &disk,
            FAKE_DISK,
            "DiskNotFound",
        ),
        (
            &["snapshot", "show", "{}"],
            &snap,
            FAKE_SNAP,
            "SnapshotNotFound",
        ),
        (
            &["snapshot", "delete", "{}"],
            &snap,
            FAKE_SNAP,
            "SnapshotNotFound",
        ),
        (
            &[
                "disk",
                "create",
                "--name",
                "x",
                "--zone",
                "local-a",
                "--from-snapshot",
                "{}",
            ],
            &snap,
            FAKE_SNAP,
            "SnapshotNotFound",
        ),
    ] {
        hidden_like_missing(&s, "t2", template, real, fake, code);
    }
    // Nor may it put a disk in the admin's account.
    let e = err_as(
        &s,
        "t2",
        &[
            "disk",
            "create",
            "--name",
            "x",
            "--size",
            "8MiB",
            "--zone",
            "local-a",
            "--account",
            &admin_account,
        ],
    );
    assert_eq!(api_error(&e), (404, "AccountNotFound".into()), "{e}");
    // All that changed nothing: the admin's disk and snapshot are intact.
    let d = s.cli(&["disk", "show", &disk]);
    assert_eq!(
        (d["size"].as_str(), d["state"].as_str()),
        (Some("8MiB"), Some("available"))
    );
    assert_eq!(
        s.cli(&["snapshot", "show", &snap])["source_disk_id"],
        disk.as_str()
    );
    assert_eq!(s.cli(&["snapshot", "list"]).as_array().unwrap().len(), 1);

    // The reverse: T2's own disk.
    let d2 = cli_as(
        &s,
        "t2",
        &[
            "disk", "create", "--name", "t2-d", "--size", "8MiB", "--zone", "local-a",
        ],
    );
    assert_eq!(d2["account_id"], acct2.as_str());
    let d2 = id(&d2);
    let listed: Vec<String> = cli_as(&s, "t2", &["disk", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    assert_eq!(listed, vec![d2.clone()]);
    // The deployment admin puts one in T2's account with --account.
    let placed = s.cli(&[
        "disk",
        "create",
        "--name",
        "placed",
        "--size",
        "8MiB",
        "--zone",
        "local-a",
        "--account",
        &acct2,
    ]);
    assert_eq!(placed["account_id"], acct2.as_str());
    assert_eq!(
        cli_as(&s, "t2", &["disk", "show", &id(&placed)])["name"],
        "placed"
    );

    // A principal of T1 that owns only another, new account (not the
    // deployment) sees neither T2's disk nor the admin's.
    let other = s.cli(&["account", "create", "--name", "t1-other"]);
    assert_eq!(other["tenant_id"], admin_tenant.as_str());
    let other = id(&other);
    principal_with_profile(&s, "t1-owner", &other, "Owner", None, "t1");
    let who = cli_as(&s, "t1", &["whoami"]);
    assert_eq!(
        (who["name"].as_str(), who["is_admin"].as_bool()),
        (Some("t1-owner"), Some(false))
    );
    hidden_like_missing(
        &s,
        "t1",
        &["disk", "show", "{}"],
        &d2,
        FAKE_DISK,
        "DiskNotFound",
    );
    hidden_like_missing(
        &s,
        "t1",
        &["disk", "delete", "{}"],
        &d2,
        FAKE_DISK,
        "DiskNotFound",
    );
    hidden_like_missing(
        &s,
        "t1",
        &["disk", "show", "{}"],
        &disk,
        FAKE_DISK,
        "DiskNotFound",
    );
    assert_eq!(cli_as(&s, "t1", &["disk", "list"]), serde_json::json!([]));
    // Its own account works.
    let mine = cli_as(
        &s,
        "t1",
        &[
            "disk", "create", "--name", "t1-d", "--size", "8MiB", "--zone", "local-a",
        ],
    );
    assert_eq!(mine["account_id"], other.as_str());
    hidden_like_missing(
        &s,
        "t2",
        &["disk", "show", "{}"],
        &id(&mine),
        FAKE_DISK,
        "DiskNotFound",
    );
    // T2's disk is still there for T2.
    assert_eq!(cli_as(&s, "t2", &["disk", "show", &d2])["name"], "t2-d");
    // Saving profiles kept the file owner-only.
    let mode = std::fs::metadata(config_path(&s))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "profiles file mode {mode:o}");
}

#[test]
fn reader_on_one_snapshot_across_tenants() {
    let s = Server::start();
    let disk = s.create_disk("src", "8MiB", "local-a");
    let s1 = id(&s.cli(&["snapshot", "create", "--disk", &disk, "--name", "s1"]));
    let s2 = id(&s.cli(&["snapshot", "create", "--disk", &disk, "--name", "s2"]));

    let t2 = id(&s.cli(&["tenant", "create", "--name", "t2"]));
    let acct2 = id(&s.cli(&["account", "create", "--name", "t2-main", "--tenant", &t2]));
    let p = principal_with_profile(&s, "t2-owner", &acct2, "Owner", Some(&t2), "p");
    // Before any sharing, S1 is hidden.
    hidden_like_missing(
        &s,
        "p",
        &["snapshot", "show", "{}"],
        &s1,
        FAKE_SNAP,
        "SnapshotNotFound",
    );

    // The admin shares S1, and only S1, with P.
    let ra = s.cli(&[
        "role",
        "assignment",
        "create",
        "--principal",
        &p,
        "--role",
        "Reader",
        "--scope",
        &s1,
    ]);
    assert_eq!(
        (
            ra["role"].as_str(),
            ra["scope"].as_str(),
            ra["principal_id"].as_str()
        ),
        (Some("Reader"), Some(s1.as_str()), Some(p.as_str()))
    );
    let ra = id(&ra);
    let listed = s.cli(&["role", "assignment", "list", "--principal", &p]);
    let ids: Vec<String> = listed.as_array().unwrap().iter().map(id).collect();
    assert!(ids.contains(&ra), "{listed}");
    let at_s1 = s.cli(&["role", "assignment", "list", "--scope", &s1]);
    assert_eq!(
        at_s1.as_array().unwrap().iter().map(id).collect::<Vec<_>>(),
        vec![ra.clone()]
    );

    assert_eq!(cli_as(&s, "p", &["snapshot", "show", &s1])["name"], "s1");
    let snaps: Vec<String> = cli_as(&s, "p", &["snapshot", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    assert_eq!(
        snaps,
        vec![s1.clone()],
        "P lists exactly the shared snapshot"
    );
    hidden_like_missing(
        &s,
        "p",
        &["snapshot", "show", "{}"],
        &s2,
        FAKE_SNAP,
        "SnapshotNotFound",
    );
    hidden_like_missing(
        &s,
        "p",
        &["disk", "show", "{}"],
        &disk,
        FAKE_DISK,
        "DiskNotFound",
    );
    assert_eq!(cli_as(&s, "p", &["disk", "list"]), serde_json::json!([]));
    // It may see S1 but not delete it: 403 naming the action.
    let e = err_as(&s, "p", &["snapshot", "delete", &s1]);
    assert_eq!(api_error(&e), (403, "AuthorizationFailed".into()), "{e}");
    assert!(e.contains("snapshots/delete"), "{e}");
    assert!(!e.contains("not found"), "{e}");
    assert_eq!(s.cli(&["snapshot", "show", &s1])["id"], s1.as_str());
    // Reader only sees it: a disk from it needs `snapshots/use` (403, not
    // 404: P sees it), which Disk Snapshot User gives.
    let e = err_as(
        &s,
        "p",
        &[
            "disk",
            "create",
            "--from-snapshot",
            &s1,
            "--zone",
            "local-a",
            "--name",
            "x",
        ],
    );
    assert_eq!(api_error(&e), (403, "AuthorizationFailed".into()), "{e}");
    assert!(
        e.contains("snapshots/use") && e.contains("Disk Snapshot User"),
        "{e}"
    );
    let user = id(&s.cli(&[
        "role",
        "assignment",
        "create",
        "--principal",
        &p,
        "--role",
        "Disk Snapshot User",
        "--scope",
        &s1,
    ]));
    // Sharing lets P make a disk of S1 in its own account.
    let copy = cli_as(
        &s,
        "p",
        &[
            "disk",
            "create",
            "--from-snapshot",
            &s1,
            "--zone",
            "local-a",
            "--name",
            "x",
        ],
    );
    assert_eq!(copy["account_id"], acct2.as_str());
    assert_eq!(copy["source_snapshot_id"], s1.as_str());
    assert_eq!(copy["size_bytes"], 8 << 20);
    let copy = id(&copy);
    assert_eq!(
        cli_as(&s, "p", &["disk", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(id)
            .collect::<Vec<_>>(),
        vec![copy.clone()]
    );

    // The admin asks why.
    let why = s.cli(&[
        "iam",
        "explain",
        "--principal",
        &p,
        "--action",
        "snapshots/read",
        "--resource",
        &s1,
    ]);
    assert_eq!(why["decision"], "allow", "{why}");
    assert_eq!(why["status"], 200, "{why}");
    assert_eq!(why["assignment_id"], ra.as_str(), "{why}");
    let reasons = why["reasons"].to_string();
    assert!(
        reasons.contains(&ra),
        "the reason names the assignment: {why}"
    );
    let why = s.cli(&[
        "iam",
        "explain",
        "--principal",
        &p,
        "--action",
        "snapshots/delete",
        "--resource",
        &s1,
    ]);
    assert_eq!(
        (why["decision"].as_str(), why["status"].as_u64()),
        (Some("deny"), Some(403)),
        "{why}"
    );
    assert!(
        why["reasons"].to_string().contains("snapshots/delete"),
        "{why}"
    );
    let why = s.cli(&[
        "iam",
        "explain",
        "--principal",
        &p,
        "--action",
        "disks/read",
        "--resource",
        &disk,
    ]);
    assert_eq!(
        (why["decision"].as_str(), why["status"].as_u64()),
        (Some("deny"), Some(404)),
        "{why}"
    );
    // In a table, a denial is data: exit 0, the decision, the status, and
    // each reason on its own line.
    let out = s.cli_raw(&[
        "iam",
        "explain",
        "--principal",
        &p,
        "--action",
        "snapshots/delete",
        "--resource",
        &s1,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Decision:") && l.ends_with("deny")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Status:") && l.ends_with("403")),
        "{text}"
    );
    let reason_lines = lines.iter().filter(|l| l.starts_with("  - ")).count();
    let reasons = why_reasons(&s, &p, "snapshots/delete", &s1);
    assert_eq!(reason_lines, reasons, "{text}");
    assert!(reason_lines >= 1);
    // P may ask about itself (no --principal).
    let mine = cli_as(
        &s,
        "p",
        &[
            "iam",
            "explain",
            "--action",
            "snapshots/read",
            "--resource",
            &s1,
        ],
    );
    assert_eq!(
        (mine["principal_id"].as_str(), mine["decision"].as_str()),
        (Some(p.as_str()), Some("allow"))
    );

    // Deleting the assignment takes the share back.
    s.cli(&["role", "assignment", "delete", &ra]);
    s.cli(&["role", "assignment", "delete", &user]);
    hidden_like_missing(
        &s,
        "p",
        &["snapshot", "show", "{}"],
        &s1,
        FAKE_SNAP,
        "SnapshotNotFound",
    );
    assert_eq!(
        cli_as(&s, "p", &["snapshot", "list"]),
        serde_json::json!([])
    );
    // The disk P made from it is P's and stays.
    assert_eq!(cli_as(&s, "p", &["disk", "show", &copy])["name"], "x");
}

/// The number of reasons `iam explain` gives (JSON).
fn why_reasons(s: &Server, p: &str, action: &str, resource: &str) -> usize {
    s.cli(&[
        "iam",
        "explain",
        "--principal",
        p,
        "--action",
        action,
        "--resource",
        resource,
    ])["reasons"]
        .as_array()
        .unwrap()
        .len()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn parse_time(t: &Value) -> SystemTime {
    humantime::parse_rfc3339(t.as_str().unwrap_or_else(|| panic!("not a time: {t}"))).unwrap()
}

/// Assert no secret is in the server's log, stdout, data dir or metadata,
/// and that the token ids are (so the scans see what the server wrote).
fn scan(s: &Server, when: &str, secrets: &[String], token_ids: &[String]) {
    let log = std::fs::read(s.dir.path().join("server.log")).unwrap();
    let out = std::fs::read(s.dir.path().join("server.out")).unwrap();
    // The scans see what the server wrote: the token ids are there.
    for t in token_ids {
        assert!(
            contains(&log, t),
            "{when}: token {t} is not in the debug log: is it the log?"
        );
    }
    assert!(
        contains(&out, "Coffer API listening on"),
        "{when}: server stdout not captured"
    );
    let mut db = s.meta.contents();
    let mut files = 0;
    for f in files_under(&s.data_dir()) {
        let data = std::fs::read(&f).unwrap();
        for secret in secrets {
            assert!(
                !contains(&data, secret),
                "{when}: a token secret is stored in {}",
                f.display()
            );
        }
        if f.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("meta.sqlite")
        {
            files += 1;
            db.extend_from_slice(&data);
        }
    }
    assert!(
        files >= 1 || s.meta.is_external(),
        "{when}: no SQLite file under {}",
        s.data_dir().display()
    );
    for t in token_ids {
        assert!(
            contains(&db, t),
            "{when}: token {t} is not in the metadata: is it the database?"
        );
    }
    for secret in secrets {
        assert!(
            !contains(&log, secret),
            "{when}: a token secret is in the server log"
        );
        assert!(
            !contains(&out, secret),
            "{when}: a token secret is in the server's stdout"
        );
        assert!(
            !contains(&db, secret),
            "{when}: a token secret is in the metadata"
        );
    }
}

#[test]
fn tokens_expire_revoke_and_never_leak() {
    let s = Server::start_with(&[], &[("COFFER_LOG", "debug")]);
    let p = id(&s.cli(&["principal", "create", "--name", "ci", "--kind", "service"]));
    let mut secrets: Vec<String> = vec![];
    let mut token_ids: Vec<String> = vec![];
    // Everything the CLI printed on failure.
    let mut cli_errors = String::new();
    let whoami_with = |secret: &str| {
        cli_env(
            &s,
            &["whoami", "--output", "json"],
            &[("COFFER_TOKEN", secret)],
        )
    };

    // A token lives at least a minute.
    let e = s.cli_err(&["token", "create", "--principal", &p, "--expires-in", "2s"]);
    assert!(
        e.contains("InvalidDuration") && e.contains("at least 1 minute"),
        "{e}"
    );
    cli_errors += &e;
    // A token that lives 2 minutes: the CLI passes --expires-in through.
    let out = s.cli_raw(&[
        "token",
        "create",
        "--principal",
        &p,
        "--name",
        "short",
        "--expires-in",
        "2m",
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let warning = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        warning.contains("cannot be shown again"),
        "the CLI warns the secret is shown once: {warning}"
    );
    let short: Value = serde_json::from_slice(&out.stdout).unwrap();
    let short_secret = short["secret"].as_str().unwrap().to_string();
    assert!(!warning.contains(&short_secret));
    secrets.push(short_secret.clone());
    token_ids.push(id(&short));
    let expires = parse_time(&short["expires_at"]);
    let lifetime = expires
        .duration_since(parse_time(&short["created_at"]))
        .unwrap();
    assert!(
        lifetime >= Duration::from_millis(119_900) && lifetime <= Duration::from_millis(120_100),
        "--expires-in 2m gave a lifetime of {lifetime:?}: {short}"
    );
    let out = whoami_with(&short_secret);
    assert!(
        out.status.success(),
        "a fresh token works: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let who: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (who["name"].as_str(), who["kind"].as_str()),
        (Some("ci"), Some("service"))
    );

    // A token to revoke.
    let doomed = s.cli(&["token", "create", "--principal", &p, "--name", "doomed"]);
    let doomed_secret = doomed["secret"].as_str().unwrap().to_string();
    assert!(doomed["expires_at"].is_null(), "{doomed}");
    secrets.push(doomed_secret.clone());
    token_ids.push(id(&doomed));
    assert!(whoami_with(&doomed_secret).status.success());
    let revoked = s.cli(&["token", "revoke", &id(&doomed)]);
    assert_eq!(revoked["state"], "revoked", "{revoked}");
    assert!(!revoked["revoked_at"].is_null(), "{revoked}");
    let out = whoami_with(&doomed_secret);
    assert!(!out.status.success(), "a revoked token still works");
    let e = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(api_error(&e), (401, "Unauthenticated".into()), "{e}");
    cli_errors += &e;
    cli_errors += &String::from_utf8_lossy(&out.stdout);

    // A token kept in a profile (the principal's own token, made by itself).
    s.cli(&[
        "token",
        "create",
        "--principal",
        &p,
        "--name",
        "kept",
        "--save-profile",
        "kept",
    ]);
    let kept_secret = profile_token(&s, "kept");
    secrets.push(kept_secret.clone());
    assert_eq!(cli_as(&s, "kept", &["whoami"])["name"], "ci");
    let own = cli_as(&s, "kept", &["token", "create", "--name", "self"]);
    assert_eq!(
        own["principal_id"],
        p.as_str(),
        "default --principal is the caller"
    );
    secrets.push(own["secret"].as_str().unwrap().to_string());
    token_ids.push(id(&own));
    // Refused before a token is made: the profile holds one already.
    let e = s.cli_err(&[
        "token",
        "create",
        "--principal",
        &p,
        "--save-profile",
        "kept",
    ]);
    assert!(e.contains("already holds a token"), "{e}");
    cli_errors += &e;
    assert_eq!(profile_token(&s, "kept"), kept_secret);

    // The 2-minute token expires: its expiry is put in the past in the
    // database, as if the minutes had passed.
    assert!(expires > SystemTime::now());
    assert_eq!(
        s.meta.execute(&format!(
            "UPDATE tokens SET expires_at = '2000-01-01T00:00:00.000Z' WHERE id = '{}'",
            id(&short)
        )),
        1
    );
    let out = whoami_with(&short_secret);
    assert!(!out.status.success(), "an expired token still works");
    let e = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(api_error(&e), (401, "Unauthenticated".into()), "{e}");
    cli_errors += &e;
    let out = cli_env(&s, &["disk", "list"], &[("COFFER_TOKEN", &short_secret)]);
    assert!(!out.status.success());
    cli_errors += &String::from_utf8_lossy(&out.stderr);
    // The others are unaffected.
    assert_eq!(cli_as(&s, "kept", &["whoami"])["name"], "ci");

    // token list: the states, never a secret.
    let list = s.cli(&["token", "list", "--principal", &p]);
    let state = |name: &str| -> String {
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no token {name} in {list}"))["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state("short"), "expired", "{list}");
    assert_eq!(state("doomed"), "revoked", "{list}");
    assert_eq!(state("kept"), "active", "{list}");
    assert_eq!(state("self"), "active", "{list}");
    let table = s.cli_raw(&["token", "list", "--principal", &p]);
    assert!(table.status.success());
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        table.contains("expired") && table.contains("revoked") && table.contains("active"),
        "{table}"
    );
    for secret in &secrets {
        assert!(
            !list.to_string().contains(secret.as_str()),
            "token list shows a secret"
        );
        assert!(
            !table.contains(secret.as_str()),
            "token list shows a secret"
        );
        assert!(
            !cli_errors.contains(secret.as_str()),
            "a CLI error shows a secret: {cli_errors}"
        );
    }

    // Where the secrets must not be: the server's output, its data dir
    // (SQLite and its WAL), the metadata database. Scanned while the server
    // runs (WAL pages) and after it stopped (checkpointed).
    scan(&s, "running", &secrets, &token_ids);
    let mut s = s;
    s.stop();
    scan(&s, "stopped", &secrets, &token_ids);
}

#[test]
fn profiles_and_env_select_identity() {
    let s = Server::start();
    let me = s.cli(&["whoami"]);
    let account = me["account_id"].as_str().unwrap().to_string();
    principal_with_profile(&s, "alice", &account, "Reader", None, "alice");
    principal_with_profile(&s, "bob", &account, "Reader", None, "bob");
    let carol = id(&s.cli(&["principal", "create", "--name", "carol"]));
    let carol_secret = s.cli(&["token", "create", "--principal", &carol])["secret"]
        .as_str()
        .unwrap()
        .to_string();

    // The profile: --profile, then COFFER_PROFILE, then `default`.
    assert_eq!(whoami_name(&s, &[], &[]), "admin");
    assert_eq!(whoami_name(&s, &["--profile", "alice"], &[]), "alice");
    assert_eq!(whoami_name(&s, &[], &[("COFFER_PROFILE", "bob")]), "bob");
    assert_eq!(
        whoami_name(&s, &["--profile", "alice"], &[("COFFER_PROFILE", "bob")]),
        "alice",
        "--profile wins over COFFER_PROFILE"
    );
    // COFFER_TOKEN overrides the profile's token.
    assert_eq!(
        whoami_name(&s, &[], &[("COFFER_TOKEN", &carol_secret)]),
        "carol"
    );
    assert_eq!(
        whoami_name(
            &s,
            &["--profile", "alice"],
            &[("COFFER_TOKEN", &carol_secret)]
        ),
        "carol"
    );
    // COFFER_ENDPOINT overrides the profile's endpoint: a profile made with
    // `configure` pointing nowhere works with it, and not without it.
    let token_file = s.scratch().join("carol.token");
    std::fs::write(&token_file, format!("{carol_secret}\n")).unwrap();
    let out = cli_env(
        &s,
        &[
            "configure",
            "--profile",
            "away",
            "--endpoint",
            "http://127.0.0.1:9",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&carol_secret));
    assert_eq!(
        whoami_name(&s, &["--profile", "away"], &[("COFFER_ENDPOINT", &s.api)]),
        "carol"
    );
    let out = cli_env(&s, &["--profile", "away", "whoami"], &[]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("cannot reach the Coffer API at http://127.0.0.1:9"),
        "{e}"
    );
    let out = cli_env(
        &s,
        &["whoami"],
        &[("COFFER_ENDPOINT", "http://127.0.0.1:9")],
    );
    assert!(!out.status.success(), "COFFER_ENDPOINT is ignored");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("http://127.0.0.1:9"), "{e}");

    // An unknown profile says how to create it, whichever way it is named.
    for (args, env) in [
        (&["--profile", "nosuch", "whoami"][..], &[][..]),
        (&["whoami"][..], &[("COFFER_PROFILE", "nosuch")][..]),
    ] {
        let out = cli_env(&s, args, env);
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("no profile named 'nosuch'"), "{e}");
        assert!(
            e.contains("coffer configure --profile nosuch --endpoint URL --token-file FILE"),
            "{e}"
        );
    }
    // Tokens are never command-line arguments.
    for args in [
        &["whoami", "--token", "coffer_x"][..],
        &["token", "create", "--secret", "coffer_x"],
        &["configure", "--token", "coffer_x"],
    ] {
        let out = cli_env(&s, args, &[]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} must be refused by the parser"
        );
    }

    // whoami's table names the principal, account, tenant and roles.
    let out = cli_env(&s, &["--profile", "alice", "whoami"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "alice",
        account.as_str(),
        me["account_name"].as_str().unwrap(),
        me["tenant_id"].as_str().unwrap(),
        "Reader @",
    ] {
        assert!(text.contains(needle), "whoami table lacks {needle}: {text}");
    }
}
