//! The README's walk-through, run for real: serve, create a disk, attach,
//! write a raw and a qcow2 image with qemu-img, snapshot, restore into a
//! disk in another zone, read back, compare checksums.

use crate::common;

use std::process::Command;

use common::*;

#[test]
fn readme_walkthrough_raw_and_qcow2() {
    require("qemu-img", "qemu-utils");
    let s = Server::start();
    let who = s.cli(&["whoami"]);
    assert_eq!(who["is_admin"], true);

    let disk = s.create_disk("web", "64MiB", "local-a");
    let shown = s.cli(&["disk", "show", &disk]);
    assert_eq!(shown["size_bytes"], 64 << 20);
    assert_eq!(shown["zone"], "local-a");
    assert_eq!(shown["encryption"]["type"], "platform");
    assert_eq!(shown["state"], "available");

    let uri = s.attach(&disk);
    assert!(uri.starts_with(&format!("nbd://{}/", s.nbd)), "{uri}");
    assert_eq!(s.cli(&["disk", "show", &disk])["state"], "attached");

    let src = s.scratch().join("src.raw");
    random_file(&src, 40 << 20, 7);
    qemu_img_in(&src, "raw", &uri);

    let snap = s.cli(&["snapshot", "create", "--disk", &disk, "--name", "s1"]);
    let snap_id = snap["id"].as_str().unwrap().to_string();
    assert_eq!(snap["source_disk_id"], disk.as_str());

    // Overwrite the disk after the snapshot with a qcow2 image's content.
    let qcow = s.scratch().join("img.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&qcow)
        .arg("64M"));
    run(Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "write -P 0x5a 1M 3M",
            "-c",
            "write -P 0xa5 30M 512k",
        ])
        .arg(&qcow));
    qemu_img_in(&qcow, "qcow2", &uri);
    let back = s.scratch().join("back.raw");
    qemu_img_out(&uri, &back);
    let expect = s.scratch().join("expect.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(&qcow)
        .arg(&expect));
    assert_eq!(
        sha256(&back),
        sha256(&expect),
        "qcow2 content read back differs"
    );

    // Restore the snapshot into another zone: it holds the raw image.
    let restored = s.cli(&[
        "disk",
        "create",
        "--name",
        "web-b",
        "--from-snapshot",
        &snap_id,
        "--zone",
        "local-b",
    ]);
    let rid = restored["id"].as_str().unwrap().to_string();
    assert_ne!(rid, disk);
    assert_eq!(restored["zone"], "local-b");
    assert_eq!(restored["source_snapshot_id"], snap_id.as_str());
    let ruri = s.attach(&rid);
    let out = s.scratch().join("restored.raw");
    qemu_img_out(&ruri, &out);
    let expect_raw = s.scratch().join("expect2.raw");
    run(Command::new("cp").arg(&src).arg(&expect_raw));
    run(Command::new("truncate")
        .args(["-s", "64M"])
        .arg(&expect_raw));
    assert_eq!(
        sha256(&out),
        sha256(&expect_raw),
        "restored disk differs from the snapshot's content"
    );

    // Detach revokes the URI.
    s.cli(&["disk", "detach", &disk]);
    let fail = Command::new("qemu-img")
        .args(["info", &uri])
        .output()
        .unwrap();
    assert!(!fail.status.success(), "a detached disk's URI still works");
    // Snapshot and disk lists show them.
    let disks = s.cli(&["disk", "list"]);
    assert_eq!(disks.as_array().unwrap().len(), 2);
    let snaps = s.cli(&["snapshot", "list"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1);
}
