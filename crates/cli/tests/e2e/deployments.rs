//! Copies between two deployments, on real servers: two `coffer serve` on
//! loopback, each with its own data dir, metadata, object store and root
//! key, under TLS with their own CAs. An image of deployment A is copied to
//! deployment B (`--to-remote`), launched there with the same data; a later
//! image of the same disks moves only the chunks changed since. The pull
//! token of an export reads that export and nothing else, and nothing else
//! reads an export.

use crate::common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

/// A directory holding the deployment CA of `s` as `ca-cert.pem`, as qemu
/// and libnbd want it (the NBD server speaks TLS only).
fn ca_dir(s: &Server) -> std::path::PathBuf {
    let dir = s.scratch().join("nbd-ca");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(s.dir.path().join("ca.pem"), dir.join("ca-cert.pem")).unwrap();
    dir
}

/// The libnbd URI of an attachment's `nbds://` URI, trusting `s`'s CA.
fn tls_uri(s: &Server, uri: &str) -> String {
    assert!(uri.starts_with("nbds://"), "{uri}");
    format!("{uri}?tls-certificates={}", ca_dir(s).display())
}

/// qemu-io commands over TLS against disk `disk` of `s` (attached and
/// detached around them), expected to succeed.
fn qemu_io(s: &Server, disk: &str, cmds: &[&str]) {
    let uri = s.attach(disk);
    let rest = uri.strip_prefix("nbds://").expect("an nbds:// URI");
    let (hostport, export) = rest.split_once('/').unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap();
    let mut c = Command::new("qemu-io");
    c.arg("--object")
        .arg(format!(
            "tls-creds-x509,id=tls0,dir={},endpoint=client",
            ca_dir(s).display()
        ))
        .arg("--image-opts")
        .arg(format!(
            "driver=nbd,server.type=inet,server.host={host},server.port={port},export={export},tls-creds=tls0"
        ));
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = c.output().expect("run qemu-io");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("failed"),
        "qemu-io {cmds:?}: {text}"
    );
    s.cli(&["disk", "detach", disk]);
}

/// SHA-256 of disk `disk` of `s`, read over TLS by nbdcopy.
fn tls_sum(s: &Server, disk: &str) -> String {
    let uri = s.attach(disk);
    let out = s.scratch().join(format!("{disk}.raw"));
    run(Command::new("nbdcopy").arg(tls_uri(s, &uri)).arg(&out));
    s.cli(&["disk", "detach", disk]);
    let sum = sha256(&out);
    std::fs::remove_file(&out).unwrap();
    sum
}

/// A disk of `size` bytes on `s` holding random data (seed `seed`),
/// written over TLS by nbdcopy.
fn disk_with_data(s: &Server, name: &str, size: u64, seed: u64) -> String {
    let img = s.scratch().join(format!("{name}.raw"));
    random_file(&img, size, seed);
    let disk = s.create_disk(name, &format!("{}MiB", size >> 20), "local-a");
    let uri = s.attach(&disk);
    run(Command::new("nbdcopy").arg(&img).arg(tls_uri(s, &uri)));
    s.cli(&["disk", "detach", &disk]);
    std::fs::remove_file(&img).unwrap();
    disk
}

/// Launch image `image` on `s` in `zone` as disks `NAME-root` and
/// `NAME-data1`, check their data against `sums`; returns the root disk.
fn launched(s: &Server, image: &str, zone: &str, name: &str, sums: (&str, &str)) -> String {
    s.cli(&[
        "disk",
        "create",
        "--from-image",
        image,
        "--zone",
        zone,
        "--name",
        name,
    ]);
    let root = id_of(&s.cli(&["disk", "show", &format!("{name}-root")]));
    let data = id_of(&s.cli(&["disk", "show", &format!("{name}-data1")]));
    assert_eq!(tls_sum(s, &root), sums.0);
    assert_eq!(tls_sum(s, &data), sums.1);
    root
}

/// B's jobs that made image `image`'s snapshots, by role.
fn jobs_of(b: &Server, image: &str) -> Vec<Value> {
    let mut jobs: Vec<Value> = b
        .cli(&["job", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["image_id"] == image)
        .cloned()
        .collect();
    jobs.sort_by_key(|j| j["target_id"].as_str().unwrap_or_default().to_string());
    jobs
}

#[test]
fn an_image_copied_to_another_deployment_launches_there_and_a_later_copy_moves_only_the_change() {
    require("qemu-io", "qemu-utils");
    require("nbdcopy", "libnbd-bin");
    let a = Server::start_with(&["--tls"], &[]);
    let b = Server::start_with(&["--tls"], &[]);
    const ROOT: u64 = 64 << 20;
    const DATA: u64 = 16 << 20;
    let root = disk_with_data(&a, "root", ROOT, 21);
    let data = disk_with_data(&a, "data", DATA, 22);
    let (root_sum, data_sum) = (tls_sum(&a, &root), tls_sum(&a, &data));
    let img1 = id_of(&a.cli(&[
        "image", "create", "--name", "web-v1", "--disk", &root, "--disk", &data,
    ]));

    // A knows B as a remote: B's endpoint, a token of B's, B's CA.
    let b_token = b.dir.path().join("admin.token");
    let b_ca = b.dir.path().join("ca.pem");
    let added = a.cli_raw(&[
        "remote",
        "add",
        "site-b",
        "--endpoint",
        &b.api,
        "--token-file",
        b_token.to_str().unwrap(),
        "--ca-file",
        b_ca.to_str().unwrap(),
    ]);
    assert!(added.status.success(), "{added:?}");
    let remotes = a.cli(&["remote", "list"]);
    assert!(
        !remotes.to_string().contains(&b.admin_token()),
        "a remote list never shows its token: {remotes}"
    );

    // The copy: exported by A, imported by B, re-encrypted under B's keys.
    let copy1 = a.cli(&[
        "image",
        "copy",
        &img1,
        "--name",
        "web-v1",
        "--to-remote",
        "site-b",
        "--wait",
    ]);
    let c1 = id_of(&copy1);
    let shown = b.cli(&["image", "show", &c1]);
    assert_eq!(shown["state"], "available", "{shown}");
    assert_eq!(shown["name"], "web-v1", "{shown}");
    let jobs1 = jobs_of(&b, &c1);
    assert_eq!(jobs1.len(), 2, "{jobs1:?}");
    for j in &jobs1 {
        assert_eq!(j["kind"], "image-import", "{j}");
        assert_eq!(j["state"], "succeeded", "{j}");
        assert_eq!(j["source_hash"], j["target_hash"], "{j}");
        assert!(j["base_id"].is_null(), "the first copy is whole: {j}");
    }
    let moved1: u64 = jobs1
        .iter()
        .map(|j| j["bytes_copied"].as_u64().unwrap())
        .sum();
    assert_eq!(moved1, ROOT + DATA, "{jobs1:?}");

    // Launched on B: the same data, in disks of B.
    let b_root = launched(&b, &c1, "local-b", "web", (&root_sum, &data_sum));
    // B's store holds none of the plaintext: the first 64 KiB of A's root
    // disk appear nowhere in B's objects.
    let probe = {
        let uri = b.attach(&b_root);
        let out = b.scratch().join("probe.raw");
        run(Command::new("nbdcopy").arg(tls_uri(&b, &uri)).arg(&out));
        b.cli(&["disk", "detach", &b_root]);
        let bytes = std::fs::read(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        bytes[..64 << 10].to_vec()
    };
    for (key, obj) in b.objects() {
        assert!(
            !obj.windows(64).any(|w| w == &probe[4096..4160]),
            "B's object {key} holds plaintext of the image"
        );
    }

    // 1% of the root disk changes on A; a second image of the same disks
    // is copied: built on the first copy, it moves only the change.
    let cmds: Vec<String> = (0..3)
        .map(|k| format!("write -P 0x5a {}M 256k", 3 + k * 20))
        .chain(["flush".to_string()])
        .collect();
    qemu_io(
        &a,
        &root,
        &cmds.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let root_sum2 = tls_sum(&a, &root);
    assert_ne!(root_sum2, root_sum);
    let img2 = id_of(&a.cli(&[
        "image", "create", "--name", "web-v2", "--disk", &root, "--disk", &data,
    ]));
    let copy2 = a.cli(&[
        "image",
        "copy",
        &img2,
        "--name",
        "web-v2",
        "--to-remote",
        "site-b",
        "--wait",
    ]);
    let c2 = id_of(&copy2);
    let jobs2 = jobs_of(&b, &c2);
    assert_eq!(jobs2.len(), 2, "{jobs2:?}");
    let first_targets: Vec<&str> = jobs1
        .iter()
        .map(|j| j["target_id"].as_str().unwrap())
        .collect();
    for j in &jobs2 {
        assert_eq!(j["state"], "succeeded", "{j}");
        assert_eq!(j["source_hash"], j["target_hash"], "{j}");
        assert!(
            first_targets.contains(&j["base_id"].as_str().unwrap_or("none")),
            "each member builds on the first copy of its disk: {j}"
        );
    }
    let moved2: u64 = jobs2
        .iter()
        .map(|j| j["bytes_copied"].as_u64().unwrap())
        .sum();
    eprintln!(
        "copy between deployments: the first moved {moved1} bytes, the second {moved2} ({:.2}% of {}; 3 chunks of 256 KiB changed)",
        moved2 as f64 * 100.0 / (ROOT + DATA) as f64,
        ROOT + DATA
    );
    assert!(
        (3 * (256 << 10)..=(ROOT + DATA) / 50).contains(&moved2),
        "an incremental copy after 1% changed moved {moved2} bytes"
    );
    launched(&b, &c2, "local-a", "web2", (&root_sum2, &data_sum));

    // A's exports are listed for A, without their tokens; each was read by
    // B, and the reads are in A's audit log.
    // A copy that ended revoked its export: its pull token reads nothing.
    let exports = a.cli(&["export", "list"]);
    assert_eq!(exports.as_array().unwrap().len(), 2, "{exports}");
    for e in exports.as_array().unwrap() {
        assert!(e["token"].is_null(), "{e}");
        assert_eq!(e["state"], "revoked", "{e}");
    }
    let audit = a.cli(&["audit", "list"]).to_string();
    assert!(audit.contains("export.read"), "{audit}");

    // An import with a wrong token is refused by B, naming the sender's
    // refusal, and leaves nothing behind.
    let e = &exports[0];
    let body = serde_json::json!({
        "name": "stolen",
        "endpoint": a.api,
        "export_id": e["id"],
        "token": "coffer_pull_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "ca_pem": std::fs::read_to_string(a.dir.path().join("ca.pem")).unwrap(),
    });
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(b.dir.path().join("ca.pem"))
        .args(["-H", &format!("Authorization: Bearer {}", b.admin_token())])
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{}/v1/imports", b.api))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.ends_with("404"), "{text}");
    assert!(text.contains("ExportNotFound"), "{text}");
    let names: Vec<String> = b
        .cli(&["image", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!names.contains(&"stolen".to_string()), "{names:?}");

    // The two-party flow: A's owner exports to a token file and hands it
    // over; B's owner imports. A snapshot of the same root disk builds on
    // the last import of it: nothing changed since, nothing moves.
    let snap = id_of(&a.cli(&["snapshot", "create", "--disk", &root, "--name", "handoff"]));
    let token_file = a.scratch().join("pull.token");
    let e = a.cli(&[
        "export",
        "create",
        "--snapshot",
        &snap,
        "--hours",
        "1",
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(e["token"].is_null(), "the token went to the file: {e}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let a_ca = a.dir.path().join("ca.pem");
    let got = b.cli(&[
        "import",
        "create",
        "--name",
        "handoff",
        "--endpoint",
        &a.api,
        "--export",
        &id_of(&e),
        "--token-file",
        token_file.to_str().unwrap(),
        "--ca-file",
        a_ca.to_str().unwrap(),
        "--wait",
    ]);
    assert_eq!(got["name"], "handoff", "{got}");
    let jobs = b.cli(&["job", "list"]);
    let job = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["target_id"] == got["id"])
        .unwrap_or_else(|| panic!("no job made {got}: {jobs}"));
    assert_eq!(job["kind"], "snapshot-import", "{job}");
    assert!(
        job["base_id"].is_string(),
        "built on the last import: {job}"
    );
    assert_eq!(job["bytes_copied"], 0, "{job}");
    let disk = id_of(&b.cli(&[
        "disk",
        "create",
        "--name",
        "handoff",
        "--zone",
        "local-a",
        "--from-snapshot",
        &id_of(&got),
    ]));
    assert_eq!(tls_sum(&b, &disk), root_sum2);

    let fsck = b.cli(&["admin", "fsck", "--deep"]);
    assert_eq!(fsck["ok"], true, "{fsck}");
    a.assert_no_panic();
    b.assert_no_panic();
}

/// `curl` of `path` on `s` with `token`: (status, body bytes).
fn curl(s: &Server, path: &str, token: &str) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "-H", &format!("Authorization: Bearer {token}")])
        .args(["-w", "%{http_code}"])
        .arg(format!("{}{path}", s.api))
        .output()
        .unwrap();
    let mut body = out.stdout;
    let code = body.split_off(body.len() - 3);
    (String::from_utf8_lossy(&code).parse().unwrap(), body)
}

#[test]
fn a_pull_token_reads_its_export_and_nothing_else_until_revoked() {
    let a = Server::start();
    let disk = a.create_disk("src", "8MiB", "local-a");
    let img = a.scratch().join("src.raw");
    random_file(&img, 8 << 20, 5);
    qemu_img_in(&img, "raw", &a.attach(&disk));
    a.cli(&["disk", "detach", &disk]);
    let want = std::fs::read(&img).unwrap();
    let snap = id_of(&a.cli(&["snapshot", "create", "--disk", &disk, "--name", "s"]));
    let admin = a.admin_token();
    let (st, e) = http(
        &a,
        "POST",
        &format!("/v1/snapshots/{snap}/exports"),
        Some(&admin),
        Some(r#"{"expires_in_hours": 2}"#),
    );
    assert_eq!(st, 201, "{e}");
    let (id, token) = (
        e["id"].as_str().unwrap().to_string(),
        e["token"].as_str().unwrap().to_string(),
    );
    assert!(token.starts_with("coffer_pull_"), "{e}");
    assert_eq!(e["members"][0]["role"], "root", "{e}");

    // The export is read with its pull token, and only with it.
    let (st, d) = http(&a, "GET", &format!("/v1/pull/{id}"), Some(&token), None);
    assert_eq!((st, d["id"].as_str()), (200, Some(id.as_str())), "{d}");
    let (st, v) = http(&a, "GET", &format!("/v1/pull/{id}"), Some(&admin), None);
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (401, Some("Unauthenticated")),
        "{v}"
    );
    let (st, v) = http(&a, "GET", &format!("/v1/pull/{id}"), None, None);
    assert_eq!(st, 401, "{v}");
    let wrong = format!("coffer_pull_{}", "B".repeat(43));
    let (st, v) = http(&a, "GET", &format!("/v1/pull/{id}"), Some(&wrong), None);
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("ExportNotFound")),
        "{v}"
    );
    // A pull token is no principal's token: the rest of the API refuses it.
    for path in ["/v1/disks", "/v1/whoami", &format!("/v1/exports/{id}")] {
        let (st, v) = http(&a, "GET", path, Some(&token), None);
        assert_eq!(st, 401, "{path}: {v}");
    }
    // The data, as the sender reads it, with its limits.
    let (st, bytes) = curl(
        &a,
        &format!("/v1/pull/{id}/members/root/data?offset=1048576&length=65536"),
        &token,
    );
    assert_eq!(st, 200);
    assert_eq!(bytes, want[1 << 20..(1 << 20) + 65536]);
    for q in [
        "offset=0&length=16777216",
        "offset=8388608&length=1",
        "offset=0&length=0",
        "offset=18446744073709551615&length=2",
    ] {
        let (st, v) = http(
            &a,
            "GET",
            &format!("/v1/pull/{id}/members/root/data?{q}"),
            Some(&token),
            None,
        );
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (400, Some("InvalidRange")),
            "{q}: {v}"
        );
    }
    let (st, v) = http(
        &a,
        "GET",
        &format!("/v1/pull/{id}/members/data9/map?offset=0&length=4096"),
        Some(&token),
        None,
    );
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("ExportNotFound")),
        "{v}"
    );

    // The export reads what it was made of, even after the snapshot goes.
    a.cli(&["snapshot", "delete", &snap, "--yes"]);
    a.cli(&["admin", "gc"]);
    let (st, bytes) = curl(
        &a,
        &format!("/v1/pull/{id}/members/root/data?offset=0&length=8388608"),
        &token,
    );
    assert_eq!(st, 200);
    assert!(
        bytes == want,
        "the export's data after its snapshot was deleted"
    );
    let (st, h) = http(
        &a,
        "GET",
        &format!("/v1/pull/{id}/members/root/hash?offset=0&length=8388608"),
        Some(&token),
        None,
    );
    assert_eq!(st, 200, "{h}");
    let hash = h["hash"].as_str().unwrap();
    assert!(
        hash.strip_prefix("blake3:")
            .is_some_and(|x| x.len() == 64 && x.bytes().all(|b| b.is_ascii_hexdigit())),
        "{h}"
    );

    // An import reads only from an endpoint it may: never plain http off
    // loopback (the token and data would cross in clear), never a
    // link-local address (instance metadata), never with user information.
    // Each is refused before any connection is made.
    for (endpoint, why) in [
        ("http://192.0.2.1:7070", "plain http"),
        ("https://169.254.169.254", "link-local"),
        ("https://user:pw@127.0.0.1:1", "user information"),
        ("ftp://127.0.0.1/", "http(s)"),
    ] {
        let body = serde_json::json!({
            "name": "x", "endpoint": endpoint, "export_id": id, "token": "coffer_pull_x",
        });
        let (st, v) = http(
            &a,
            "POST",
            "/v1/imports",
            Some(&admin),
            Some(&body.to_string()),
        );
        assert_eq!(st, 400, "{endpoint}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(why),
            "{endpoint}: {v}"
        );
    }

    // Revoked: the token reads nothing more, and the export's data goes.
    let revoked = a.cli(&["export", "revoke", &id]);
    assert_eq!(revoked["state"], "revoked", "{revoked}");
    let (st, v) = http(&a, "GET", &format!("/v1/pull/{id}"), Some(&token), None);
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("ExportNotFound")),
        "{v}"
    );
    a.cli(&["admin", "gc"]);
    let fsck = a.cli(&["admin", "fsck"]);
    assert_eq!(fsck["ok"], true, "{fsck}");
    // No token in the server's log or its data dir.
    assert!(!a.log().contains(&token));
    for f in files_under(&a.data_dir()) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "{} holds the pull token",
            f.display()
        );
    }
    a.assert_no_panic();
}

#[test]
fn an_import_resumes_after_the_receiver_is_killed_and_waits_out_the_senders_outage() {
    require("qemu-io", "qemu-utils");
    let a = Server::start();
    // The receiver's copies paced (64 MiB/s for 256 MiB), so that the kill
    // and the outage land mid-way.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, "copy_rate = \"64MiB\"\n").unwrap();
    let mut b = Server::start_with(&["--config", config.to_str().unwrap()], &[]);
    let disk = a.create_disk("big", "256MiB", "local-a");
    let uri = a.attach(&disk);
    let mut io = vec!["-f".to_string(), "raw".into()];
    for i in 0..4u64 {
        io.push("-c".into());
        io.push(format!("write -q -P {} {}M 60M", 0x30 + i, i * 64));
    }
    assert!(
        Command::new("qemu-io")
            .args(&io)
            .arg(&uri)
            .status()
            .unwrap()
            .success()
    );
    a.cli(&["disk", "detach", &disk]);
    let want = disk_sum(&a, &disk);
    let snap = id_of(&a.cli(&["snapshot", "create", "--disk", &disk, "--name", "s"]));

    // B reaches A through a proxy that the test can cut.
    let mut proxy = Cut::start(a.api.trim_start_matches("http://"));
    let token = b.dir.path().join("admin.token");
    let added = a.cli_raw(&[
        "remote",
        "add",
        "site-b",
        "--endpoint",
        &b.api,
        "--token-file",
        token.to_str().unwrap(),
    ]);
    assert!(added.status.success(), "{added:?}");
    let imp = a.cli(&[
        "snapshot",
        "copy",
        &snap,
        "--name",
        "c",
        "--to-remote",
        "site-b",
        "--source-endpoint",
        &format!("http://{}", proxy.addr),
    ]);
    assert_eq!(imp["kind"], "snapshot", "{imp}");
    let job = imp["jobs"][0].as_str().unwrap().to_string();
    let progress = |b: &Server, at_least: u64| {
        let started = std::time::Instant::now();
        loop {
            let j = b.cli(&["job", "show", &job]);
            assert_eq!(j["state"], "running", "the import ended early: {j}");
            if j["bytes_done"].as_u64().unwrap() >= at_least {
                return j;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(120),
                "no progress: {j}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };

    // Killed mid-way, B resumes the import from its last commit.
    let at_kill = progress(&b, 64 << 20)["bytes_done"].as_u64().unwrap();
    b.kill9();
    b.launch(&[]);
    let listed = b.cli(&["snapshot", "list", "--name", "c"]);
    assert!(
        listed.as_array().unwrap().is_empty(),
        "not visible while incomplete: {listed}"
    );

    // The sender goes away: the import waits, saying why, and goes on
    // once it is back.
    progress(&b, 128 << 20);
    proxy.close();
    let started = std::time::Instant::now();
    let waiting = loop {
        let j = b.cli(&["job", "show", &job]);
        assert_eq!(j["state"], "running", "the import failed on an outage: {j}");
        if j["message"]
            .as_str()
            .is_some_and(|m| m.contains("waiting for the sending deployment"))
        {
            break j;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the import does not say it waits: {j}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    proxy.reopen();
    let copy = b.cli(&["job", "wait", &job, "--timeout", "300"]);
    let j = b.cli(&["job", "show", &job]);
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["source_hash"], j["target_hash"], "{j}");
    let log = b.log();
    assert!(
        log.lines()
            .any(|l| l.contains("copy job resumed") && l.contains(&job)),
        "the import did not resume after the restart:\n{log}"
    );
    eprintln!(
        "killed at {at_kill} bytes; waited with: {}",
        waiting["message"]
    );
    let restored = id_of(&b.cli(&[
        "disk",
        "create",
        "--name",
        "r",
        "--zone",
        "local-a",
        "--from-snapshot",
        &id_of(&copy),
    ]));
    assert_eq!(disk_sum(&b, &restored), want);
    let fsck = b.cli(&["admin", "fsck", "--deep"]);
    assert_eq!(fsck["ok"], true, "{fsck}");
    a.assert_no_panic();
    b.assert_no_panic();
}
