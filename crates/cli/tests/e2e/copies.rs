//! Copies of snapshots, through the CLI on a real server: an O(1) copy
//! writes no object; a re-encrypting copy shares no object with its
//! source and reads after the source's key is purged; a copy job killed
//! (kill -9) in the middle resumes after the restart and verifies (a
//! copy into another region, whose store is the target's own).

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;

/// Write `path` (a raw image of `mib` MiB) into `disk` over NBD.
fn fill(s: &Server, disk: &str, path: &std::path::Path) {
    let uri = s.attach(disk);
    qemu_img_in(path, "raw", &uri);
    s.cli(&["disk", "detach", disk]);
}

fn object_keys(s: &Server) -> BTreeSet<String> {
    s.objects().into_iter().map(|(k, _)| k).collect()
}

fn str_of(v: &serde_json::Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .to_string()
}

#[test]
fn a_copy_under_the_same_key_writes_no_object() {
    let s = Server::start();
    let img = s.scratch().join("img.raw");
    random_file(&img, 16 << 20, 7);
    let want = sha256(&img);
    let disk = s.create_disk("src", "16MiB", "local-a");
    fill(&s, &disk, &img);
    let snap = str_of(
        &s.cli(&["snapshot", "create", "--disk", &disk, "--name", "s"]),
        "id",
    );
    s.cli(&["admin", "gc"]);
    let before = object_keys(&s);
    assert!(!before.is_empty());

    // Into the same account, and into another one (platform key: O(1)).
    let copy = s.cli(&["snapshot", "copy", &snap, "--name", "c1"]);
    assert_eq!(copy["creation_method"], "copy");
    let other = str_of(&s.cli(&["account", "create", "--name", "other"]), "id");
    let copy2 = s.cli(&[
        "snapshot",
        "copy",
        &snap,
        "--name",
        "c2",
        "--account",
        &other,
    ]);
    assert_eq!(copy2["account_id"], other.as_str());
    let after = object_keys(&s);
    assert_eq!(before, after, "an O(1) copy wrote or removed objects");

    // The copy outlives its source and reads the data.
    s.cli(&["snapshot", "delete", &snap, "--yes"]);
    s.cli(&["disk", "delete", &disk, "--yes"]);
    s.cli(&["admin", "gc"]);
    let restored = str_of(
        &s.cli(&[
            "disk",
            "create",
            "--name",
            "r",
            "--zone",
            "local-b",
            "--from-snapshot",
            &str_of(&copy2, "id"),
        ]),
        "id",
    );
    assert_eq!(disk_sum(&s, &restored), want);
}

#[test]
fn a_reencrypting_copy_shares_nothing_with_its_source_and_outlives_its_key() {
    let s = Server::start();
    // The source: a disk under a customer key (vault, key, set, identity).
    s.cli(&[
        "vault",
        "create",
        "--name",
        "kv",
        "--purge-protection",
        "--retention-days",
        "7",
    ]);
    let key = str_of(
        &s.cli(&["key", "create", "--vault", "kv", "--name", "a"]),
        "id",
    );
    let set = s.cli(&["encryption-set", "create", "--name", "des", "--key", &key]);
    s.cli(&[
        "role",
        "assignment",
        "create",
        "--principal",
        &str_of(&set, "identity_id"),
        "--role",
        "Key Vault Crypto Service Encryption User",
        "--scope",
        &key,
    ]);
    let img = s.scratch().join("img.raw");
    random_file(&img, 24 << 20, 11);
    let want = sha256(&img);
    let disk = str_of(
        &s.cli(&[
            "disk",
            "create",
            "--name",
            "cmk",
            "--size",
            "24MiB",
            "--zone",
            "local-a",
            "--encryption-set",
            "des",
        ]),
        "id",
    );
    fill(&s, &disk, &img);
    let snap = str_of(
        &s.cli(&["snapshot", "create", "--disk", &disk, "--name", "s"]),
        "id",
    );
    s.cli(&["admin", "gc"]);
    let source_objects = object_keys(&s);

    // A copy under new data keys wrapped by the platform key: a job.
    let copy = s.cli(&[
        "snapshot", "copy", &snap, "--name", "plain", "--rekey", "--wait",
    ]);
    let copy_id = str_of(&copy, "id");
    assert_eq!(copy["encryption"]["type"], "platform");
    assert_ne!(copy["encryption"]["key_id"], key.as_str());
    assert_eq!(copy["creation_method"], "copy");
    assert_eq!(copy["source"]["id"], snap.as_str());
    let jobs = s.cli(&["job", "list"]);
    let job = &jobs.as_array().unwrap()[0];
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["source_hash"], job["target_hash"], "{job}");
    assert_eq!(job["target_id"], copy_id.as_str());

    // It references none of the source's objects: they are all deleted
    // from the store, and the key is deleted and purged (its retention
    // moved into the past, as time would: its vault has purge
    // protection); the source no longer reads, the copy does, byte for
    // byte.
    for k in &source_objects {
        s.delete_object(k);
    }
    s.cli(&["key", "delete", &key, "--yes"]);
    s.meta.execute(&format!(
        "UPDATE vault_keys SET purge_after = '2000-01-01T00:00:00.000Z' WHERE id = '{key}'"
    ));
    s.cli(&["key", "purge", &key, "--yes"]);
    let err = s.cli_err(&["key", "show", &key]);
    assert!(err.contains("purged"), "{err}");
    let from_copy = str_of(
        &s.cli(&[
            "disk",
            "create",
            "--name",
            "from-copy",
            "--zone",
            "local-b",
            "--from-snapshot",
            &copy_id,
        ]),
        "id",
    );
    assert_eq!(disk_sum(&s, &from_copy), want);
    let uri = s.attach(&disk);
    let read = std::process::Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw", &uri])
        .arg(s.scratch().join("source.raw"))
        .output()
        .unwrap();
    assert!(
        !read.status.success(),
        "the source read with its key disabled"
    );
    s.cli(&["disk", "detach", &disk]);

    // Copies that need another key without naming one, or a grant, are
    // refused before anything is made.
    let other = str_of(&s.cli(&["account", "create", "--name", "other"]), "id");
    let err = s.cli_err(&[
        "snapshot",
        "copy",
        &snap,
        "--name",
        "x",
        "--account",
        &other,
    ]);
    assert!(
        err.contains("KeyRequired") && err.contains("--encryption-set"),
        "{err}"
    );
    assert_eq!(s.cli(&["job", "list"]).as_array().unwrap().len(), 1);
}

#[test]
fn a_copy_job_killed_mid_way_resumes_after_the_restart_and_verifies() {
    // A paced copy (256 MiB/s) of 1 GiB, so that the kill lands mid-way,
    // from region `local` into region `far`, whose store is its own (a
    // directory, or a bucket in the S3 pass).
    let dir = tempfile::tempdir().unwrap();
    let far = RegionStore::new(&dir.path().join("far"), false);
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "copy_rate = \"256MiB\"\n\n[[regions]]\nname = \"local\"\nzones = [\"local-a\", \"local-b\"]\n\n\
             [[regions]]\nname = \"far\"\nzones = [\"far-a\"]\nstore = \"{}\"\n",
            far.url
        ),
    )
    .unwrap();
    let mut s = Server::start_with(&["--config", config.to_str().unwrap()], &[]);
    let disk = s.create_disk("big", "1GiB", "local-a");
    let uri = s.attach(&disk);
    let mut io = vec!["-f".to_string(), "raw".into()];
    for i in 0..16u64 {
        io.push("-c".into());
        io.push(format!("write -q -P {} {}M 60M", 0x10 + i, i * 64));
    }
    let status = std::process::Command::new("qemu-io")
        .args(&io)
        .arg(&uri)
        .status()
        .unwrap();
    assert!(status.success());
    s.cli(&["disk", "detach", &disk]);
    let want = disk_sum(&s, &disk);
    let snap = str_of(
        &s.cli(&["snapshot", "create", "--disk", &disk, "--name", "s"]),
        "id",
    );

    let job = s.cli(&[
        "snapshot",
        "copy",
        &snap,
        "--name",
        "c",
        "--target-region",
        "far",
    ]);
    assert_eq!(job["state"], "running", "{job}");
    let id = str_of(&job, "id");
    let started = Instant::now();
    let done_at_kill = loop {
        let j = s.cli(&["job", "show", &id]);
        let done = j["bytes_done"].as_u64().unwrap();
        assert_eq!(j["state"], "running", "the copy ended before the kill: {j}");
        if done >= 128 << 20 {
            break done;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress: {j}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    s.kill9();
    // Not visible while incomplete.
    s.launch(&[]);
    let listed = s.cli(&["snapshot", "list", "--name", "c"]);
    assert!(listed.as_array().unwrap().is_empty(), "{listed}");

    let copy = s.cli(&["job", "wait", &id, "--timeout", "300"]);
    let j = s.cli(&["job", "show", &id]);
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["source_hash"], j["target_hash"], "{j}");
    // Counted once though the run before the kill wrote past its last
    // commit: 16 runs of 60 MiB of data.
    assert_eq!(j["bytes_copied"], 960u64 << 20, "{j}");
    let log = s.log();
    let resumed = log
        .lines()
        .find(|l| l.contains("copy job resumed") && l.contains(&id))
        .unwrap_or_else(|| panic!("the job did not resume after the restart:\n{log}"));
    eprintln!("killed at {done_at_kill} bytes; {resumed}");
    assert_eq!(copy["region"], "far", "{copy}");
    assert!(
        far.object_keys().len() >= 240,
        "the 960 MiB written are 240 packed objects of 4 MiB in region far's store"
    );
    let restored = str_of(
        &s.cli(&[
            "disk",
            "create",
            "--name",
            "r",
            "--zone",
            "far-a",
            "--from-snapshot",
            &str_of(&copy, "id"),
        ]),
        "id",
    );
    assert_eq!(disk_sum(&s, &restored), want);
    s.cli(&["admin", "fsck", "--deep"]);
    s.assert_no_panic();
}

#[test]
fn an_image_copied_under_another_key_is_pending_until_its_last_job_and_fails_whole() {
    // Paced (4 MiB/s for 24 MiB of two snapshots: ~6 s), so that the
    // image is still pending while the test acts on it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, "copy_rate = \"4MiB\"\n").unwrap();
    let s = Server::start_with(&["--config", config.to_str().unwrap()], &[]);
    let (root_img, data_img) = (s.scratch().join("root.raw"), s.scratch().join("data.raw"));
    random_file(&root_img, 16 << 20, 21);
    random_file(&data_img, 8 << 20, 22);
    let root = s.create_disk("root", "16MiB", "local-a");
    let data = s.create_disk("data", "8MiB", "local-a");
    fill(&s, &root, &root_img);
    fill(&s, &data, &data_img);
    let img = str_of(
        &s.cli(&[
            "image", "create", "--name", "m", "--disk", &root, "--disk", &data,
        ]),
        "id",
    );
    s.cli(&["admin", "gc"]);
    let before = object_keys(&s);

    // A re-encrypting copy: pending at once, one job per snapshot.
    let pending = s.cli(&["image", "copy", &img, "--name", "doomed", "--rekey"]);
    assert_eq!(pending["state"], "pending", "{pending}");
    let doomed = str_of(&pending, "id");
    let jobs = s.cli(&["job", "list"]);
    let mine: Vec<&serde_json::Value> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["image_id"] == doomed.as_str())
        .collect();
    assert_eq!(mine.len(), 2, "{jobs}");
    assert!(mine.iter().all(|j| j["kind"] == "image-copy"), "{jobs}");
    // Neither launched, copied nor deleted while pending; each refusal
    // names the jobs.
    for args in [
        vec![
            "disk",
            "create",
            "--from-image",
            &doomed,
            "--zone",
            "local-a",
            "--name",
            "early",
        ],
        vec!["image", "copy", &doomed, "--name", "early"],
        vec!["image", "delete", &doomed, "--yes"],
    ] {
        let err = s.cli_err(&args);
        assert!(
            err.contains("409") && err.contains("pending") && err.contains("job wait"),
            "{args:?}: {err}"
        );
    }

    // Nor shared: its keys are not all known until its copy ends.
    let err = s.cli_err(&["image", "permission", "add", &doomed, "--public"]);
    assert!(err.contains("409") && err.contains("pending"), "{err}");

    // Cancelling one job fails the image and stops the other: an image is
    // copied whole or not at all.
    let running = |id: &str| s.cli(&["job", "show", id])["state"] == "running";
    let first = mine
        .iter()
        .map(|j| str_of(j, "id"))
        .find(|id| running(id))
        .expect("both jobs ended within a second at 4 MiB/s");
    s.cli(&["job", "cancel", &first]);
    let failed = s.cli(&["image", "show", &doomed]);
    assert_eq!(failed["state"], "failed", "{failed}");
    let deadline = Instant::now() + Duration::from_secs(30);
    for j in &mine {
        let id = str_of(j, "id");
        let st = s.cli(&["job", "show", &id]);
        assert!(
            st["state"] == "cancelled" || (st["state"] == "succeeded" && id != first),
            "{st}"
        );
        // Its runner has stopped (a paced step ends first).
        while st["state"] == "cancelled"
            && !s.log().lines().any(|l| {
                l.contains(&id) && (l.contains("copy job stopped") || l.contains("copy job failed"))
            })
        {
            assert!(Instant::now() < deadline, "the runner of {id} goes on");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let err = s.cli_err(&[
        "disk",
        "create",
        "--from-image",
        &doomed,
        "--zone",
        "local-a",
        "--name",
        "late",
    ]);
    assert!(
        err.contains("failed") && err.contains("image delete"),
        "{err}"
    );
    s.cli(&["image", "delete", &doomed, "--yes"]);
    // Nothing of it stays: the runners have stopped, and once the sweep has
    // run the store holds what it held before.
    s.cli(&["admin", "gc"]);
    assert_eq!(object_keys(&s), before, "a failed image copy left objects");

    // A copy that runs to its end: available, its snapshots in their
    // roles, under keys of their own, launching the same data.
    let ok = s.cli(&["image", "copy", &img, "--name", "ok", "--rekey", "--wait"]);
    assert_eq!(ok["state"], "available", "{ok}");
    assert_eq!(ok["snapshots"][0]["role"], "root");
    assert_eq!(ok["snapshots"][1]["role"], "data1");
    let src = s.cli(&["image", "show", &img]);
    for i in 0..2 {
        assert_ne!(
            ok["snapshots"][i]["snapshot_id"], src["snapshots"][i]["snapshot_id"],
            "{ok}"
        );
    }
    s.cli(&[
        "disk",
        "create",
        "--from-image",
        &str_of(&ok, "id"),
        "--zone",
        "local-b",
        "--name",
        "vm",
    ]);
    let vm_root = str_of(&s.cli(&["disk", "show", "vm-root"]), "id");
    let vm_data = str_of(&s.cli(&["disk", "show", "vm-data1"]), "id");
    assert_eq!(disk_sum(&s, &vm_root), sha256(&root_img));
    assert_eq!(disk_sum(&s, &vm_data), sha256(&data_img));
    s.cli(&["admin", "fsck", "--deep"]);
    s.assert_no_panic();
}

/// `GET /v1/jobs/{id}?wait_ms=N` (what `--wait` polls with): while the job
/// runs, the answer waits up to N ms and shows it running; it comes as
/// soon as the job ends, not when the time is up; past 30 s it is refused.
#[test]
fn a_job_is_waited_for_on_the_server_and_answered_when_it_ends() {
    // Paced: 16 MiB at 4 MiB/s, ~4 s of copying.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, "copy_rate = \"4MiB\"\n").unwrap();
    let s = Server::start_with(&["--config", config.to_str().unwrap()], &[]);
    let img = s.scratch().join("src.raw");
    random_file(&img, 16 << 20, 31);
    let disk = s.create_disk("d", "16MiB", "local-a");
    fill(&s, &disk, &img);
    let snap = str_of(
        &s.cli(&["snapshot", "create", "--disk", &disk, "--name", "s"]),
        "id",
    );
    let job = s.cli(&["snapshot", "copy", &snap, "--name", "c", "--rekey"]);
    let id = str_of(&job, "id");
    let t = s.admin_token();
    let get = |q: &str| http(&s, "GET", &format!("/v1/jobs/{id}{q}"), Some(&t), None);

    // Out of range, or not a number: refused, saying why.
    let (st, v) = get("?wait_ms=30001");
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "InvalidQuery", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 30000 ms"),
        "{v}"
    );
    let (st, v) = get("?wait_ms=soon");
    assert_eq!(st, 400, "{v}");

    // A short wait while it runs: the job as it is, still running.
    let (st, v) = get("?wait_ms=300");
    assert_eq!((st, v["state"].as_str()), (200, Some("running")), "{v}");

    // The longest wait: answered when the job ends (seconds), not after
    // the 30 s allowed; the copy is there.
    let asked = Instant::now();
    let (st, v) = get("?wait_ms=30000");
    assert_eq!((st, v["state"].as_str()), (200, Some("succeeded")), "{v}");
    assert!(
        asked.elapsed() < Duration::from_secs(25),
        "answered at the end of the wait, not when the job ended: {:?}",
        asked.elapsed()
    );
    let copy = s.cli(&["snapshot", "show", &str_of(&v, "target_id")]);
    assert_eq!(copy["size_bytes"], 16 << 20, "{copy}");
    // Ended: any wait answers at once with the final state.
    let (st, v) = get("?wait_ms=30000");
    assert_eq!((st, v["state"].as_str()), (200, Some("succeeded")), "{v}");
}
