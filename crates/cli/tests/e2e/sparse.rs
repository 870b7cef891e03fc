//! Sparse-aware NBD, checked with clients nobody here wrote: structured
//! replies and `base:allocation` block status let `nbdinfo --map` and
//! `qemu-img map` list exactly the written extents of a disk (answered
//! from the chunk map, no object read), and `nbdcopy` and `qemu-img
//! convert` still read every byte right. The same written extents are
//! what `coffer account usage` counts as stored.

use crate::common;

use std::process::Command;

use common::{Server, require, run};

/// (offset, length, hole) runs, merged, from `nbdinfo --map` output.
fn nbdinfo_map(uri: &str) -> Vec<(u64, u64, bool)> {
    let out = run(Command::new("nbdinfo").arg("--map").arg(uri));
    let mut runs: Vec<(u64, u64, bool)> = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (off, len, ty): (u64, u64, u32) = (
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
        );
        push(&mut runs, off, len, ty & 1 == 1);
    }
    runs
}

fn push(runs: &mut Vec<(u64, u64, bool)>, off: u64, len: u64, hole: bool) {
    match runs.last_mut() {
        Some((o, l, h)) if *h == hole && *o + *l == off => *l += len,
        _ => runs.push((off, len, hole)),
    }
}

/// The same from `qemu-img map --output=json`.
fn qemu_img_map(uri: &str) -> Vec<(u64, u64, bool)> {
    let out = run(Command::new("qemu-img")
        .args(["map", "--output=json", "-f", "raw"])
        .arg(uri));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut runs = Vec::new();
    for e in v.as_array().unwrap() {
        let hole = !e["data"].as_bool().unwrap();
        push(
            &mut runs,
            e["start"].as_u64().unwrap(),
            e["length"].as_u64().unwrap(),
            hole,
        );
    }
    runs
}

#[test]
fn maps_list_exactly_the_written_extents() {
    require("nbdinfo", "libnbd-bin");
    require("qemu-img", "qemu-utils");
    require("qemu-io", "qemu-utils");
    let s = Server::start();
    let disk = s.create_disk("sparse", "64MiB", "local-a");
    let uri = s.attach(&disk);
    // 1 MiB at 0, 256 KiB (one chunk) at 40 MiB, and a chunk written with
    // zeroes at 8 MiB (a hole: zeroes cost no object).
    let out = run(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        "write -P 0x61 0 1M",
        "-c",
        "write -P 0x62 40M 256k",
        "-c",
        "write -z 8M 256k",
        "-c",
        "flush",
        &uri,
    ]));
    assert!(out.contains("wrote"), "{out}");
    let mib = 1u64 << 20;
    let expected = vec![
        (0, mib, false),
        (mib, 39 * mib, true),
        (40 * mib, mib / 4, false),
        (40 * mib + mib / 4, 24 * mib - mib / 4, true),
    ];
    assert_eq!(nbdinfo_map(&uri), expected, "nbdinfo --map");
    assert_eq!(qemu_img_map(&uri), expected, "qemu-img map");

    // Reading out through both still gives every byte.
    let dst = s.scratch().join("out.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw", &uri])
        .arg(&dst));
    let back = std::fs::read(&dst).unwrap();
    let m = 1usize << 20;
    assert_eq!(back.len() as u64, 64 * mib);
    assert!(back[..m].iter().all(|b| *b == 0x61));
    assert!(back[40 * m..40 * m + m / 4].iter().all(|b| *b == 0x62));
    assert!(back[m..40 * m].iter().all(|b| *b == 0));
    let dst2 = s.scratch().join("out2.raw");
    run(Command::new("nbdcopy").arg(&uri).arg(&dst2));
    assert_eq!(std::fs::read(&dst2).unwrap(), back);
    s.cli(&["disk", "detach", &disk]);
    s.assert_no_panic();
}

/// `coffer account usage` counts exactly the sectors written (zeroes cost
/// nothing), the disks and snapshots with their sizes, and the sampler
/// records one sample per interval.
#[test]
fn account_usage_counts_written_data_and_is_sampled_each_interval() {
    require("qemu-io", "qemu-utils");
    let s = Server::start_with(&["--usage-interval", "1s"], &[]);
    let disk = s.create_disk("used", "64MiB", "local-a");
    let uri = s.attach(&disk);
    let out = run(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        "write -P 0x61 0 1M",
        "-c",
        "write -P 0x62 40M 256k",
        "-c",
        "write -z 8M 256k",
        "-c",
        "flush",
        &uri,
    ]));
    assert!(out.contains("wrote"), "{out}");
    s.cli(&["disk", "detach", &disk]);
    s.cli(&["snapshot", "create", "--disk", &disk, "--name", "used-1"]);
    let mib = 1u64 << 20;
    let u = s.cli(&["account", "usage"]);
    let now = &u["current"];
    assert_eq!(now["disks"], 1, "{u}");
    assert_eq!(now["disk_bytes"], 64 * mib, "{u}");
    assert_eq!(now["snapshots"], 1, "{u}");
    assert_eq!(now["snapshot_bytes"], 64 * mib, "{u}");
    assert_eq!(now["images"], 0, "{u}");
    // 1 MiB and 256 KiB of data; the zeroed 256 KiB keeps nothing.
    assert_eq!(now["stored_bytes"], mib + mib / 4, "{u}");
    assert_eq!(u["interval_seconds"], 1, "{u}");

    // Samples at whole seconds, one per interval, oldest first.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let u = s.cli(&["account", "usage"]);
    let samples = u["samples"].as_array().unwrap();
    assert!(samples.len() >= 2, "two intervals passed: {u}");
    let ats: Vec<&str> = samples.iter().map(|x| x["at"].as_str().unwrap()).collect();
    assert!(ats.windows(2).all(|w| w[0] < w[1]), "{ats:?}");
    let last = samples.last().unwrap();
    assert_eq!(last["stored_bytes"], mib + mib / 4, "{u}");
    assert_eq!(last["snapshots"], 1, "{u}");

    // A range in the future holds no sample; a time that is no time is
    // refused, naming what to give.
    let later = s.cli(&["account", "usage", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(later["samples"], serde_json::json!([]), "{later}");
    let err = s.cli_err(&["account", "usage", "--since", "yesterday"]);
    assert!(
        err.contains("InvalidFilter") && err.contains("RFC 3339"),
        "{err}"
    );
    // Another tenant's O(1) copy of the snapshot names the same volume:
    // it is not charged for the disk's data, nor shown the disk's writes.
    let (bob_acct, _, bob) = common::other_tenant_owner(&s, "globex", "bob");
    let snap = s.cli(&["snapshot", "list", "--name", "used-1"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.cli(&[
        "snapshot",
        "permission",
        "add",
        &snap,
        "--account",
        &bob_acct,
    ]);
    let as_bob = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let out = s.cli_raw_env(&a, &[("COFFER_TOKEN", &bob), ("COFFER_ENDPOINT", &s.api)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    as_bob(&["snapshot", "copy", &snap, "--name", "bobs-copy"]);
    let before = as_bob(&["account", "usage"]);
    assert_eq!(before["current"]["snapshots"], 1, "{before}");
    assert_eq!(before["current"]["stored_bytes"], 0, "{before}");
    let uri = s.attach(&disk);
    run(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        "write -P 0x63 16M 1M",
        "-c",
        "flush",
        &uri,
    ]));
    s.cli(&["disk", "detach", &disk]);
    let after = as_bob(&["account", "usage"]);
    assert_eq!(after["current"]["stored_bytes"], 0, "{after}");
    let mine = s.cli(&["account", "usage"]);
    assert_eq!(mine["current"]["stored_bytes"], 2 * mib + mib / 4, "{mine}");

    // For people: a table, a row per sample and one for now.
    let table = s.cli_raw(&["account", "usage", "--output", "table"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("STORED") && text.contains("PROVISIONED"),
        "{text}"
    );
    assert!(
        text.lines().filter(|l| l.contains("64.0 MiB")).count() >= 3,
        "{text}"
    );
}
