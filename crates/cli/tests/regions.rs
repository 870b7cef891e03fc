//! Regions as failure domains, on a real server: each region's disks keep
//! their objects in the region's own store (two directories, or two
//! buckets in the S3 pass); a region whose store becomes unreachable
//! answers `503 RegionUnavailable` while the other region's disks go on
//! serving I/O through NBD (across a restart too), and it comes back whole;
//! a snapshot copied to another region is re-encrypted into that region's
//! store, and refusals name what to do.

mod common;

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
/// entries), plus `extra` settings.
fn server_with(dir: &std::path::Path, regions: &str, extra: &str) -> Server {
    let config = dir.join("serve.toml");
    std::fs::write(&config, format!("{extra}\n{regions}")).unwrap();
    Server::start_with(&["--config", config.to_str().unwrap()], &[])
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
    let mut s = server_with(dir.path(), &regions, "");
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
    let s = server_with(dir.path(), &regions, "");

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
    assert_eq!(job["source_sha256"], job["target_sha256"], "{job}");
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
