//! The CLI as `az` and `aws` users expect it, driven as a user would:
//! JMESPath `--query`, every output format, names for ids (and the errors
//! when a name is unknown or ambiguous), list filters, paging with
//! `--max-items`/`--starting-token`, shell completion, the size rule, and
//! deletes that ask before removing dependants unless `--yes`.

use crate::common;

use common::*;

fn text(out: &std::process::Output) -> (bool, String, String) {
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim_end().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Run the CLI, expect success, return stdout.
fn ok(s: &Server, args: &[&str]) -> String {
    let (good, out, err) = text(&s.cli_raw(args));
    assert!(good, "coffer {args:?} failed: {err}");
    out
}

#[test]
fn queries_formats_names_filters_and_paging() {
    let s = Server::start();
    let web = s.create_disk("web", "4MiB", "local-a");
    let db = s.create_disk("db", "8MiB", "local-b");

    // JMESPath: a field, a nested field, a projection, a filter, a function.
    assert_eq!(ok(&s, &["disk", "show", "web", "--query", "id"]), web);
    assert_eq!(
        ok(&s, &["disk", "show", &db, "--query", "encryption.type"]),
        "platform"
    );
    let ids = ok(&s, &["disk", "list", "--query", "[].id"]);
    assert_eq!(
        ids.lines().collect::<Vec<_>>(),
        vec![web.as_str(), db.as_str()]
    );
    assert_eq!(
        ok(&s, &["disk", "list", "--query", "[?zone=='local-b'].name"]),
        "db"
    );
    assert_eq!(ok(&s, &["disk", "list", "--query", "length(@)"]), "2");
    assert_eq!(
        ok(
            &s,
            &[
                "disk",
                "list",
                "--query",
                "[].{n: name, z: zone}",
                "-o",
                "json"
            ]
        ),
        serde_json::to_string_pretty(&serde_json::json!([
            {"n": "web", "z": "local-a"}, {"n": "db", "z": "local-b"}
        ]))
        .unwrap()
    );
    // A plain field on a list says to project; a bad expression is refused
    // before any request.
    let e = s.cli_err(&["disk", "list", "--query", "id"]);
    assert!(e.contains("'[].id'"), "{e}");
    let e = s.cli_err(&["disk", "list", "--query", "[?"]);
    assert!(e.contains("invalid --query"), "{e}");

    // Formats: tsv for scripts, yaml, and table for people.
    let tsv = ok(&s, &["disk", "list", "-o", "tsv"]);
    let first: Vec<&str> = tsv.lines().next().unwrap().split('\t').collect();
    assert_eq!(&first[..3], &[web.as_str(), "web", "local-a"], "{tsv}");
    let yaml = ok(&s, &["disk", "show", "db", "-o", "yaml"]);
    assert!(
        yaml.contains(&format!("id: {db}")) && yaml.contains("zone: local-b"),
        "{yaml}"
    );
    let table = ok(&s, &["disk", "list"]);
    assert!(
        table.starts_with("ID ") && table.contains("web") && table.contains("db"),
        "{table}"
    );

    // Names everywhere an id goes: show, snapshot --disk, --from-snapshot.
    let snap = ok(
        &s,
        &[
            "snapshot", "create", "--disk", "web", "--name", "web-v1", "--query", "id",
        ],
    );
    assert!(snap.starts_with("snap-"), "{snap}");
    let copy = ok(
        &s,
        &[
            "disk",
            "create",
            "--name",
            "web-copy",
            "--from-snapshot",
            "web-v1",
            "--zone",
            "local-c",
            "--query",
            "source_snapshot_id",
        ],
    );
    assert_eq!(copy, snap);
    assert_eq!(
        ok(
            &s,
            &["snapshot", "show", "web-v1", "--query", "source_disk_id"]
        ),
        web
    );
    // Unknown names and ids of the wrong kind are clear errors.
    let e = s.cli_err(&["disk", "show", "nosuch"]);
    assert!(
        e.contains("no disk named 'nosuch'") && e.contains("coffer disk list"),
        "{e}"
    );
    let e = s.cli_err(&["disk", "show", &snap]);
    assert!(e.contains("is a snapshot id, not a disk id"), "{e}");
    let e = s.cli_err(&["disk", "show", "not a name"]);
    assert!(e.contains("neither a disk id"), "{e}");
    // Names are unique per account: a second `web` is refused.
    let e = s.cli_err(&[
        "disk", "create", "--name", "web", "--size", "1MiB", "--zone", "local-a",
    ]);
    assert!(e.contains("NameTaken"), "{e}");

    // The same name in two accounts is ambiguous to a caller seeing both.
    let other = ok(
        &s,
        &["account", "create", "--name", "other", "--query", "id"],
    );
    ok(
        &s,
        &[
            "disk",
            "create",
            "--name",
            "web",
            "--size",
            "1MiB",
            "--zone",
            "local-a",
            "--account",
            "other",
        ],
    );
    let e = s.cli_err(&["disk", "show", "web"]);
    assert!(
        e.contains("matches several disks") && e.contains(&other),
        "{e}"
    );

    // Filters.
    assert_eq!(
        ok(
            &s,
            &["disk", "list", "--zone", "local-b", "--query", "[].name"]
        ),
        "db"
    );
    assert_eq!(
        ok(
            &s,
            &[
                "disk",
                "list",
                "--account",
                "other",
                "--query",
                "[].account_id"
            ]
        ),
        other
    );
    assert_eq!(
        ok(
            &s,
            &[
                "disk",
                "list",
                "--source-snapshot",
                "web-v1",
                "--query",
                "[].name"
            ]
        ),
        "web-copy"
    );
    assert_eq!(
        ok(
            &s,
            &[
                "snapshot",
                "list",
                "--source-disk",
                &web,
                "--query",
                "[].id"
            ]
        ),
        snap
    );
    let uri = ok(&s, &["disk", "attach", "db", "--query", "uri"]);
    assert!(uri.starts_with("nbd://"), "{uri}");
    assert_eq!(
        ok(
            &s,
            &["disk", "list", "--state", "attached", "--query", "[].name"]
        ),
        "db"
    );
    let e = s.cli_err(&["disk", "list", "--state", "sleeping"]);
    assert!(e.contains("InvalidFilter"), "{e}");
    ok(&s, &["disk", "detach", "db"]);

    // Paging: the CLI pages through by default; --max-items stops and
    // prints where to go on from; --starting-token goes on.
    for i in 0..7 {
        s.create_disk(&format!("p{i}"), "1MiB", "local-a");
    }
    let all = ok(
        &s,
        &["disk", "list", "--page-size", "2", "--query", "[].name"],
    );
    assert_eq!(all.lines().count(), 11, "{all}");
    let out = s.cli_raw(&[
        "disk",
        "list",
        "--max-items",
        "3",
        "--page-size",
        "2",
        "--query",
        "[].name",
    ]);
    let (good, first3, err) = text(&out);
    assert!(good, "{err}");
    assert_eq!(first3.lines().count(), 3, "{first3}");
    let token = err
        .lines()
        .find_map(|l| l.strip_prefix("NextToken: "))
        .unwrap_or_else(|| panic!("no NextToken in {err}"))
        .to_string();
    let rest = ok(
        &s,
        &[
            "disk",
            "list",
            "--starting-token",
            &token,
            "--query",
            "[].name",
        ],
    );
    let joined: Vec<&str> = first3.lines().chain(rest.lines()).collect();
    assert_eq!(joined, all.lines().collect::<Vec<_>>());
    s.assert_no_panic();
}

#[test]
fn sizes_follow_one_rule() {
    let s = Server::start();
    let e = s.cli_err(&[
        "disk", "create", "--name", "d", "--size", "1GB", "--zone", "local-a",
    ]);
    assert!(e.contains("ambiguous") && e.contains("1GiB"), "{e}");
    assert_eq!(
        ok(
            &s,
            &[
                "disk",
                "create",
                "--name",
                "d",
                "--size",
                "64M",
                "--zone",
                "local-a",
                "--query",
                "size_bytes"
            ]
        ),
        (64u64 << 20).to_string()
    );
    // The API applies the same rule.
    let t = s.admin_token();
    let (st, v) = http(
        &s,
        "POST",
        "/v1/disks",
        Some(t.trim()),
        Some(r#"{"name":"e","zone":"local-a","size":"2GB"}"#),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("2GiB"),
        "{v}"
    );
}

#[test]
fn deletes_with_dependants_ask_unless_yes() {
    let s = Server::start();
    let disk = s.create_disk("shared", "1MiB", "local-a");
    let snap = ok(
        &s,
        &[
            "snapshot",
            "create",
            "--disk",
            "shared",
            "--name",
            "shared-v1",
            "--query",
            "id",
        ],
    );
    let bob = ok(
        &s,
        &["principal", "create", "--name", "bob", "--query", "id"],
    );
    let ra = ok(
        &s,
        &[
            "role",
            "assignment",
            "create",
            "--principal",
            "bob",
            "--role",
            "Reader",
            "--scope",
            &snap,
            "--query",
            "id",
        ],
    );
    // Without a terminal and without --yes: refused, naming the dependant,
    // and nothing is deleted.
    let e = s.cli_err(&["snapshot", "delete", "shared-v1"]);
    assert!(
        e.contains(&ra) && e.contains("--yes") && e.contains("Nothing was deleted"),
        "{e}"
    );
    assert_eq!(ok(&s, &["snapshot", "show", &snap, "--query", "id"]), snap);
    assert_eq!(
        ok(
            &s,
            &[
                "role",
                "assignment",
                "list",
                "--scope",
                &snap,
                "--query",
                "[].id"
            ]
        ),
        ra
    );
    // A principal's tokens and assignments are its dependants too.
    ok(
        &s,
        &["token", "create", "--principal", "bob", "--name", "ci"],
    );
    let e = s.cli_err(&["principal", "delete", "bob"]);
    assert!(
        e.contains("active token") && e.contains("role assignment"),
        "{e}"
    );
    // With --yes it goes, with its dependants.
    ok(&s, &["snapshot", "delete", "shared-v1", "--yes"]);
    assert!(s.cli_err(&["snapshot", "show", &snap]).contains("404"));
    ok(&s, &["principal", "delete", &bob, "--yes"]);
    // A delete without dependants does not ask.
    ok(&s, &["disk", "delete", &disk]);
    assert!(s.cli_err(&["disk", "show", &disk]).contains("404"));
}

#[test]
fn shell_completion_scripts() {
    let s = Server::start();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef coffer"),
        ("fish", "complete -c coffer"),
    ] {
        let script = ok(&s, &["completion", shell]);
        assert!(
            script.contains(marker),
            "{shell}: {}",
            &script[..script.len().min(300)]
        );
        assert!(
            script.contains("snapshot") && script.contains("query"),
            "{shell}"
        );
    }
    // bash accepts the script and completes a subcommand from it.
    let bash = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <({} completion bash) && COMP_WORDS=(coffer sna) && COMP_CWORD=1 && _coffer coffer sna coffer && echo \"${{COMPREPLY[@]}}\"",
            env!("CARGO_BIN_EXE_coffer")
        ))
        .output()
        .unwrap();
    let (good, out, err) = text(&bash);
    assert!(
        good && out.split_whitespace().any(|w| w == "snapshot"),
        "{out} {err}"
    );
    let e = s.cli_err(&["completion", "powershell-ish"]);
    assert!(e.contains("invalid value"), "{e}");
}
