//! Regions as failure domains, on a real server: each region's disks keep
//! their objects in the region's own store (two directories, or two
//! buckets in the S3 pass); a region whose store becomes unreachable
//! answers `503 RegionUnavailable` while the other region's disks go on
//! serving I/O through NBD (across a restart too), and it comes back whole;
//! a snapshot copied to another region is re-encrypted into that region's
//! store, and refusals name what to do.

use crate::common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// qemu-io commands against `uri`; fails the test on an error or a pattern
/// mismatch, returns its output.
fn qemu_io(uri: &str, cmds: &[&str]) -> String {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = c.arg(uri).output().expect("run qemu-io");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.contains("failed") && !text.contains("error"),
        "qemu-io {cmds:?} on {uri}: {text}"
    );
    text
}

/// A server whose config file names `regions` (TOML `[[regions]]`
/// entries), plus `extra` settings; `first` is the first region's store,
/// which is then the deployment's `--store` too.
fn server_with(
    dir: &std::path::Path,
    regions: &str,
    extra: &str,
    first: Option<&RegionStore>,
) -> Server {
    let config = dir.join("serve.toml");
    std::fs::write(&config, format!("{extra}\n{regions}")).unwrap();
    let mut args = vec!["--config", config.to_str().unwrap()];
    if let Some(f) = first {
        args.extend(["--store", f.url.as_str()]);
    }
    let env = if coffer_testkit::store_is_s3() {
        vec![
            ("AWS_ACCESS_KEY_ID", coffer_testkit::S3_TEST_KEY.0),
            ("AWS_SECRET_ACCESS_KEY", coffer_testkit::S3_TEST_KEY.1),
        ]
    } else {
        vec![]
    };
    Server::start_with(&args, &env)
}

fn region_entry(name: &str, zones: &[&str], store: Option<&str>) -> String {
    let zones: Vec<String> = zones.iter().map(|z| format!("\"{z}\"")).collect();
    let mut s = format!(
        "[[regions]]\nname = \"{name}\"\nzones = [{}]\n",
        zones.join(", ")
    );
    if let Some(store) = store {
        s.push_str(&format!("store = \"{store}\"\n"));
    }
    s + "\n"
}

/// The status of `region` in `coffer region list`.
fn region_status(s: &Server, region: &str) -> String {
    let list = s.cli(&["region", "list"]);
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == region)
        .unwrap_or_else(|| panic!("no region {region} in {list}"))["status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Wait (up to 60 s: the watch probes every 5 s, a probe of a dead S3
/// endpoint gives up after 5 s) until `region` has `status`.
fn wait_status(s: &Server, region: &str, status: &str) {
    let start = Instant::now();
    while region_status(s, region) != status {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "region {region} is not {status} after 60 s:\n{}",
            s.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn id_of(v: &serde_json::Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

#[test]
fn a_region_whose_store_is_down_answers_503_while_the_other_keeps_serving_io() {
    require("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let mut one = RegionStore::new(&dir.path().join("store-one"), true);
    let two = RegionStore::new(&dir.path().join("store-two"), false);
    let regions = region_entry("one", &["one-a"], Some(&one.url))
        + &region_entry("two", &["two-a", "two-b"], Some(&two.url));
    let mut s = server_with(dir.path(), &regions, "", Some(&one));
    assert_eq!(region_status(&s, "one"), "available");

    // One disk in each region, each written through NBD: each region's
    // objects are in its own store.
    let d1 = s.create_disk("d1", "16MiB", "one-a");
    let d2 = s.create_disk("d2", "16MiB", "two-a");
    let uri1 = s.attach(&d1);
    qemu_io(&uri1, &["write -P 0x11 0 4M", "flush"]);
    s.cli(&["disk", "detach", &d1]);
    let uri2 = s.attach(&d2);
    qemu_io(&uri2, &["write -P 0x22 0 4M", "flush"]);
    let (k1, k2): (BTreeSet<String>, BTreeSet<String>) = (
        one.object_keys().into_iter().collect(),
        two.object_keys().into_iter().collect(),
    );
    assert!(!k1.is_empty() && !k2.is_empty(), "one: {k1:?}, two: {k2:?}");
    assert!(
        k1.is_disjoint(&k2),
        "a region's objects in the other's store"
    );

    // Region one's store goes away.
    one.cut();
    wait_status(&s, "one", "unavailable");
    assert_eq!(region_status(&s, "two"), "available");
    let err = s.cli_err(&["disk", "attach", &d1]);
    assert!(
        err.contains("[503 RegionUnavailable]") && err.contains("region one"),
        "{err}"
    );
    // Metadata-only requests work.
    assert_eq!(s.cli(&["disk", "show", &d1])["id"], d1.as_str());

    // Region two serves I/O: the attached disk over a new connection, a
    // snapshot of it, and a new disk from that snapshot.
    qemu_io(
        &uri2,
        &[
            "read -P 0x22 0 4M",
            "write -P 0x23 4M 4M",
            "flush",
            "read -P 0x23 4M 4M",
        ],
    );
    let snap = id_of(&s.cli(&["snapshot", "create", "--disk", &d2, "--name", "s2"]));
    let d3 = id_of(&s.cli(&[
        "disk",
        "create",
        "--name",
        "d3",
        "--zone",
        "two-b",
        "--from-snapshot",
        &snap,
    ]));
    let uri3 = s.attach(&d3);
    qemu_io(
        &uri3,
        &[
            "read -P 0x22 0 4M",
            "read -P 0x23 4M 4M",
            "write -P 0x33 8M 1M",
            "flush",
        ],
    );
    s.cli(&["disk", "detach", &d3]);

    // A restart while region one is down: the server starts, region one
    // unavailable, region two's disks serve.
    s.stop();
    s.launch(&[]);
    wait_status(&s, "one", "unavailable");
    let err = s.cli_err(&["disk", "attach", &d1]);
    assert!(err.contains("[503 RegionUnavailable]"), "{err}");
    s.cli(&["disk", "detach", &d2]);
    let uri2 = s.attach(&d2);
    qemu_io(&uri2, &["read -P 0x22 0 4M", "read -P 0x23 4M 4M"]);
    s.cli(&["disk", "detach", &d2]);

    // Back: region one's disk reads what it held.
    one.restore();
    wait_status(&s, "one", "available");
    let uri1 = s.attach(&d1);
    qemu_io(&uri1, &["read -P 0x11 0 4M", "read -P 0 4M 12M"]);
    s.cli(&["disk", "detach", &d1]);
    let fsck = s.cli(&["admin", "fsck", "--deep"]);
    assert_eq!(fsck["ok"], true, "{fsck}");
    s.assert_no_panic();
}

#[test]
fn a_snapshot_copied_to_another_region_is_reencrypted_into_that_regions_store() {
    require("qemu-img", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let one = RegionStore::new(&dir.path().join("store-one"), false);
    let two = RegionStore::new(&dir.path().join("store-two"), false);
    let regions = region_entry("one", &["one-a"], Some(&one.url))
        + &region_entry("two", &["two-a"], Some(&two.url));
    let s = server_with(dir.path(), &regions, "", Some(&one));

    let img = s.scratch().join("img.raw");
    random_file(&img, 24 << 20, 7);
    let want = sha256(&img);
    let disk = s.create_disk("src", "24MiB", "one-a");
    let uri = s.attach(&disk);
    qemu_img_in(&img, "raw", &uri);
    s.cli(&["disk", "detach", &disk]);
    let snap = id_of(&s.cli(&["snapshot", "create", "--disk", &disk, "--name", "s"]));
    let before_one: BTreeSet<String> = one.object_keys().into_iter().collect();
    assert!(two.object_keys().is_empty());

    // Refusals first: nothing is made.
    let err = s.cli_err(&[
        "snapshot",
        "copy",
        &snap,
        "--name",
        "x",
        "--target-region",
        "mars",
    ]);
    assert!(
        err.contains("[400 UnknownRegion]") && err.contains("one, two"),
        "{err}"
    );

    // The copy: a job that re-encrypts into region two's store.
    let copy = s.cli(&[
        "snapshot",
        "copy",
        &snap,
        "--name",
        "far",
        "--target-region",
        "two",
        "--wait",
    ]);
    assert_eq!(copy["region"], "two", "{copy}");
    let jobs = s.cli(&["job", "list"]);
    let job = &jobs.as_array().unwrap()[0];
    assert_eq!(
        (job["source_region"].as_str(), job["target_region"].as_str()),
        (Some("one"), Some("two")),
        "{job}"
    );
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["source_hash"], job["target_hash"], "{job}");
    let after_one: BTreeSet<String> = one.object_keys().into_iter().collect();
    let in_two: BTreeSet<String> = two.object_keys().into_iter().collect();
    assert!(!in_two.is_empty(), "nothing in region two's store");
    assert!(
        after_one.is_subset(&before_one) && in_two.is_disjoint(&before_one),
        "the copy wrote into region one's store, or shares objects with it"
    );

    // Launched in region two, it reads back the source's data; it cannot be
    // launched in region one.
    let err = s.cli_err(&[
        "disk",
        "create",
        "--name",
        "wrong",
        "--zone",
        "one-a",
        "--from-snapshot",
        &id_of(&copy),
    ]);
    assert!(err.contains("Region"), "{err}");
    let far = id_of(&s.cli(&[
        "disk",
        "create",
        "--name",
        "far",
        "--zone",
        "two-a",
        "--from-snapshot",
        &id_of(&copy),
    ]));
    let uri = s.attach(&far);
    let back = s.scratch().join("back.raw");
    qemu_img_out(&uri, &back);
    s.cli(&["disk", "detach", &far]);
    assert_eq!(sha256(&back), want);

    // The source goes; the copy in region two does not need it.
    s.cli(&["snapshot", "delete", &snap, "--yes"]);
    s.cli(&["disk", "delete", &disk, "--yes"]);
    s.cli(&["admin", "gc"]);
    assert!(
        one.object_keys().is_empty(),
        "region one's store still holds {:?}",
        one.object_keys()
    );
    let uri = s.attach(&far);
    qemu_img_out(&uri, &back);
    s.cli(&["disk", "detach", &far]);
    assert_eq!(sha256(&back), want);
    let fsck = s.cli(&["admin", "fsck", "--deep"]);
    assert_eq!(fsck["ok"], true, "{fsck}");
    s.assert_no_panic();
}

#[test]
fn a_region_with_its_own_root_key_starts_only_with_that_key() {
    require("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("keys/two.key");
    let regions = region_entry("one", &["one-a"], None)
        + &region_entry("two", &["two-a"], None)
        + &format!("root_key_file = \"{}\"\n", key.display());
    // The root_key_file line belongs to region two's entry: make it so.
    let regions = regions.replace("\n\nroot_key_file", "\nroot_key_file");
    let mut s = server_with(dir.path(), &regions, "", None);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "region two's root key file is private");
    assert_ne!(
        std::fs::read(&key).unwrap(),
        std::fs::read(s.root_key()).unwrap(),
        "region two has a key of its own"
    );
    let disk = s.create_disk("d", "8MiB", "two-a");
    let uri = s.attach(&disk);
    qemu_io(&uri, &["write -P 0x5a 0 2M", "flush"]);
    s.cli(&["disk", "detach", &disk]);
    s.stop();

    // Without region two's key file: refused, naming the region, and no
    // new key is made in its place.
    let away = dir.path().join("two.key.away");
    std::fs::rename(&key, &away).unwrap();
    let err = expect_refused(&s, "no-region-key", s.serve_command(&[]));
    assert!(
        err.contains("region two") && err.contains("is missing"),
        "{err}"
    );
    assert!(!key.exists(), "a new key was written for region two");
    // With another key in its place: refused, naming the region.
    std::fs::copy(s.root_key(), &key).unwrap();
    let err = expect_refused(&s, "wrong-region-key", s.serve_command(&[]));
    assert!(
        err.contains("region two") && err.contains("is not the one"),
        "{err}"
    );
    // With the entry's root_key_file dropped: refused too.
    let config = dir.path().join("serve.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.lines()
            .filter(|l| !l.starts_with("root_key_file"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let err = expect_refused(&s, "dropped-region-key", s.serve_command(&[]));
    assert!(
        err.contains("region two") && err.contains("root key of its own"),
        "{err}"
    );
    // The right key back: the disk reads what it held.
    std::fs::write(&config, text).unwrap();
    std::fs::rename(&away, &key).unwrap();
    s.launch(&[]);
    let uri = s.attach(&disk);
    qemu_io(&uri, &["read -P 0x5a 0 2M"]);
    s.cli(&["disk", "detach", &disk]);
    s.assert_no_panic();
}

/// A disk made from `snapshot` in `zone`, read whole: its SHA-256.
fn restored_sum(s: &Server, name: &str, zone: &str, snapshot: &str) -> String {
    let disk = id_of(&s.cli(&[
        "disk",
        "create",
        "--name",
        name,
        "--zone",
        zone,
        "--from-snapshot",
        snapshot,
    ]));
    disk_sum(s, &disk)
}

#[test]
fn a_second_copy_of_the_same_disk_moves_only_the_chunks_changed_since_the_first() {
    require("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let one = RegionStore::new(&dir.path().join("store-one"), false);
    let two = RegionStore::new(&dir.path().join("store-two"), false);
    let regions = region_entry("one", &["one-a"], Some(&one.url))
        + &region_entry("two", &["two-a"], Some(&two.url));
    let s = server_with(dir.path(), &regions, "", Some(&one));
    const SIZE: u64 = 256 << 20;
    let img = s.scratch().join("img.raw");
    random_file(&img, SIZE, 11);
    let disk = s.create_disk("src", "256MiB", "one-a");
    let uri = s.attach(&disk);
    qemu_img_in(&img, "raw", &uri);
    s.cli(&["disk", "detach", &disk]);
    std::fs::remove_file(&img).unwrap();
    let first_sum = disk_sum(&s, &disk);
    let s1 = id_of(&s.cli(&["snapshot", "create", "--disk", &disk, "--name", "s1"]));
    let copy = |snap: &str, name: &str| {
        let c = s.cli(&[
            "snapshot",
            "copy",
            snap,
            "--name",
            name,
            "--target-region",
            "two",
            "--wait",
        ]);
        let jobs = s.cli(&["job", "list"]);
        let job = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["target_id"] == c["id"])
            .unwrap_or_else(|| panic!("no job made {c} in {jobs}"))
            .clone();
        assert_eq!(job["state"], "succeeded", "{job}");
        assert_eq!(job["source_hash"], job["target_hash"], "{job}");
        (id_of(&c), job)
    };
    let (c1, job1) = copy(&s1, "c1");
    assert!(job1["base_id"].is_null(), "the first copy is whole: {job1}");
    assert_eq!(job1["bytes_copied"], SIZE, "{job1}");

    // 1% of the disk changes: ten chunks written, one trimmed.
    let uri = s.attach(&disk);
    let mut cmds: Vec<String> = (0..10)
        .map(|k| format!("write -P 0x77 {}M 256k", 1 + k * 25))
        .collect();
    cmds.push("discard 200M 256k".into());
    cmds.push("flush".into());
    let cmds: Vec<&str> = cmds.iter().map(String::as_str).collect();
    qemu_io(&uri, &cmds);
    s.cli(&["disk", "detach", &disk]);
    let second_sum = disk_sum(&s, &disk);
    assert_ne!(first_sum, second_sum);
    let s2 = id_of(&s.cli(&["snapshot", "create", "--disk", &disk, "--name", "s2"]));
    let (c2, job2) = copy(&s2, "c2");
    assert_eq!(
        job2["base_id"],
        c1.as_str(),
        "built on the first copy: {job2}"
    );
    let moved = job2["bytes_copied"].as_u64().unwrap();
    eprintln!(
        "incremental copy: {moved} of {SIZE} bytes moved ({:.2}%; 1.0% of the disk changed), the first copy moved {}",
        moved as f64 * 100.0 / SIZE as f64,
        job1["bytes_copied"]
    );
    assert!(
        (10 * (256 << 10)..=SIZE / 50).contains(&moved),
        "an incremental copy after 1% changed moved {moved} bytes"
    );

    // Each copy reads back its own source's data; the second outlives the
    // first (whose data it builds on).
    assert_eq!(restored_sum(&s, "r2", "two-a", &c2), second_sum);
    assert_eq!(restored_sum(&s, "r1", "two-a", &c1), first_sum);
    s.cli(&["snapshot", "delete", &c1, "--yes"]);
    s.cli(&["admin", "gc"]);
    assert_eq!(restored_sum(&s, "r2b", "two-a", &c2), second_sum);
    let fsck = s.cli(&["admin", "fsck", "--deep"]);
    assert_eq!(fsck["ok"], true, "{fsck}");
    s.assert_no_panic();
}
