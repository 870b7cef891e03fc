//! The foundation's acceptance figures, measured and printed (run with
//! `--nocapture` to see them); the assertions are on data and on storage,
//! never on time.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn one_gib_random_image_round_trips_bit_identical() {
    require("qemu-img", "qemu-utils");
    let s = Server::start();
    let disk = s.create_disk("big", "1GiB", "local-a");
    let uri = s.attach(&disk);
    let src = s.scratch().join("src.raw");
    random_file(&src, 1 << 30, 1234);
    let t = Instant::now();
    qemu_img_in(&src, "raw", &uri);
    let w = t.elapsed();
    let back = s.scratch().join("back.raw");
    let t = Instant::now();
    qemu_img_out(&uri, &back);
    let r = t.elapsed();
    assert_eq!(sha256(&back), sha256(&src), "1 GiB image read back differs");
    println!("1 GiB via qemu-img convert (debug build, cold store): write {w:.2?}, read {r:.2?}");
    std::fs::remove_file(&back).unwrap();

    // The same from a qcow2 source into a second disk, and out of it into a
    // qcow2 image again: both compare equal to the raw original.
    let qcow = s.scratch().join("src.qcow2");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&src)
        .arg(&qcow));
    let disk2 = s.create_disk("big-qcow2", "1GiB", "local-b");
    let uri2 = s.attach(&disk2);
    qemu_img_in(&qcow, "qcow2", &uri2);
    let out = s.scratch().join("back.qcow2");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2", &uri2])
        .arg(&out));
    run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "qcow2"])
        .arg(&src)
        .arg(&out));
    let back2 = s.scratch().join("back2.raw");
    qemu_img_out(&uri2, &back2);
    assert_eq!(
        sha256(&back2),
        sha256(&src),
        "1 GiB qcow2 source read back differs"
    );
}

#[test]
fn qemu_io_random_unaligned_io_matches_a_reference_file() {
    require("qemu-io", "qemu-utils");
    require("nbdinfo", "libnbd-bin");
    require("nbdcopy", "libnbd-bin");
    let s = Server::start();
    let size: u64 = 64 << 20;
    let disk = s.create_disk("rand", "64MiB", "local-a");
    let uri = s.attach(&disk);
    let reference = s.scratch().join("ref.raw");
    std::fs::File::create(&reference)
        .unwrap()
        .set_len(size)
        .unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut cmds = Vec::new();
    for i in 0..300 {
        let len = 4096 + rand() % ((1 << 20) - 4096);
        let off = rand() % (size - len);
        match i % 5 {
            4 => cmds.push(format!("write -z {off} {len}")),
            _ => cmds.push(format!("write -P {} {off} {len}", rand() % 255 + 1)),
        }
        if i % 7 == 0 {
            let rl = 1 + rand() % (1 << 20);
            cmds.push(format!("read {} {rl}", rand() % (size - rl)));
        }
    }
    let args = |target: &str, fmt: &str| {
        let mut a = vec!["-f".to_string(), fmt.to_string()];
        for c in &cmds {
            a.push("-c".into());
            a.push(c.clone());
        }
        a.push(target.to_string());
        a
    };
    run(Command::new("qemu-io").args(args(&uri, "raw")));
    run(Command::new("qemu-io").args(args(reference.to_str().unwrap(), "raw")));
    let back = s.scratch().join("back.raw");
    qemu_img_out(&uri, &back);
    assert_eq!(
        sha256(&back),
        sha256(&reference),
        "disk differs from the reference after random I/O"
    );
    let copied = s.scratch().join("nbdcopy.raw");
    run(Command::new("nbdcopy").arg(&uri).arg(&copied));
    assert_eq!(sha256(&copied), sha256(&reference), "nbdcopy out differs");
    // And nbdcopy in: write the reference reversed-in-halves, read it back.
    let src2 = s.scratch().join("src2.raw");
    random_file(&src2, size, 77);
    run(Command::new("nbdcopy").arg(&src2).arg(&uri));
    let back2 = s.scratch().join("back2.raw");
    qemu_img_out(&uri, &back2);
    assert_eq!(sha256(&back2), sha256(&src2), "nbdcopy in differs");
    let info: serde_json::Value =
        serde_json::from_str(&run(Command::new("nbdinfo").args(["--json", &uri]))).unwrap();
    assert_eq!(info["exports"][0]["export-size"], size, "{info}");
    assert_eq!(info["exports"][0]["is_read_only"], false, "{info}");
    // What nbdinfo reads off the export's flags: several connections (a
    // flush on one covers all), cache and fast zero.
    for flag in ["can_multi_conn", "can_cache", "can_fast_zero", "can_df"] {
        assert_eq!(info["exports"][0][flag], true, "{flag}: {info}");
    }
}

#[test]
fn storage_grows_by_what_changed_since_the_last_snapshot() {
    require("qemu-io", "qemu-utils");
    let s = Server::start();
    let size: u64 = 2 << 30;
    let disk = s.create_disk("grow", "2GiB", "local-a");
    let uri = s.attach(&disk);
    let src = s.scratch().join("fill.raw");
    random_file(&src, size, 5);
    qemu_img_in(&src, "raw", &uri);
    std::fs::remove_file(&src).unwrap();
    s.cli(&["snapshot", "create", "--disk", &disk, "--name", "full"]);
    let before = s.stored_bytes();
    // Rewrite 1%: 20 distinct 1 MiB-aligned extents of 1 MiB (and 0.5 MiB more).
    let mut x: u64 = 99;
    let mut picked = std::collections::BTreeSet::new();
    while picked.len() < 20 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        picked.insert((x >> 33) % 2048);
    }
    let mut a = vec!["-f".to_string(), "raw".to_string()];
    for (i, m) in picked.iter().enumerate() {
        a.push("-c".into());
        a.push(format!("write -P {} {} 1M", i + 1, m << 20));
    }
    a.push("-c".into());
    a.push(format!("write -P 7 {} 512k", 2047u64 << 20));
    a.push(uri.clone());
    run(Command::new("qemu-io").args(&a));
    let t = Instant::now();
    s.cli(&[
        "snapshot",
        "create",
        "--disk",
        &disk,
        "--name",
        "one-percent",
    ]);
    let snap_time = t.elapsed();
    let after = s.stored_bytes();
    let grown = after - before;
    let pct = 100.0 * grown as f64 / size as f64;
    println!(
        "2 GiB disk, 1% rewritten since its last snapshot: storage {before} -> {after} bytes, grew {grown} bytes = {pct:.2}% of the disk (snapshot call {snap_time:.2?})"
    );
    assert!(
        (0.5..2.0).contains(&pct),
        "storage grew by {pct:.2}%, expected about 1%"
    );
    assert!(before >= size, "the full disk is stored ({before} bytes)");

    // Then 1% again as scattered 4 KiB writes at distinct 4 KiB-aligned
    // offsets (5,243 of them, under one chunk in 256 KiB on average): they
    // go to segments, so storage grows by about what was written, not by
    // a rewritten 256 KiB chunk per write.
    let sectors = size / 4096;
    let want = usize::try_from(sectors / 100).unwrap();
    let mut picked = std::collections::BTreeSet::new();
    while picked.len() < want {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        picked.insert((x >> 20) % sectors);
    }
    let cmds: String = picked
        .iter()
        .enumerate()
        .map(|(i, sec)| format!("write -P {} {} 4k\n", i % 250 + 1, sec * 4096))
        .chain(["flush\n".to_string()])
        .collect();
    let mut io = Command::new("qemu-io")
        .args(["-f", "raw", &uri])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut io.stdin.take().unwrap(), cmds.as_bytes()).unwrap();
    assert!(io.wait().unwrap().success(), "qemu-io failed");
    s.cli(&["snapshot", "create", "--disk", &disk, "--name", "scattered"]);
    let last = s.stored_bytes();
    let grown = last - after;
    let pct = 100.0 * grown as f64 / size as f64;
    println!(
        "2 GiB disk, then {want} scattered 4 KiB writes (1%): storage {after} -> {last} bytes, grew {grown} bytes = {pct:.2}% of the disk"
    );
    assert!(
        (0.9..=1.5).contains(&pct),
        "storage grew by {pct:.2}% after 1% scattered 4 KiB writes, expected 1% to 1.5%"
    );
}

#[test]
fn snapshot_while_writing_is_the_disk_at_one_instant() {
    require("qemu-io", "qemu-utils");
    require("qemu-img", "qemu-utils");
    let s = Server::start();
    let blocks = 1000u64;
    // The last blocks are written only once the snapshot has been answered.
    let reserve = 50u64;
    let disk = s.create_disk("live", "64MiB", "local-a");
    let uri = s.attach(&disk);
    let pattern = |i: u64| i % 250 + 1;
    let write = |io: &mut QemuIo, i: u64| {
        io.send(&format!("write -P {} {} 64k", pattern(i), i * 65536));
    };
    // One NBD connection writes block after block in order, each write sent
    // once the one before is acknowledged (writes stay unflushed).
    let mut io = QemuIo::open(&uri);
    let lead = 20u64;
    for i in 0..lead {
        write(&mut io, i);
    }
    io.wait_for(usize::try_from(lead).unwrap());
    // Asked for after `lead` writes were acknowledged; writes go on while it
    // runs.
    let snapshot = {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"));
        cmd.args(["snapshot", "create", "--disk", &disk, "--name", "mid"])
            .args(["--output", "json"])
            .env("HOME", s.home())
            .env("XDG_CONFIG_HOME", s.home().join(".config"))
            .env_remove("COFFER_PROFILE")
            .env_remove("COFFER_TOKEN")
            .env_remove("COFFER_ENDPOINT");
        std::thread::spawn(move || cmd.output().unwrap())
    };
    let mut next = lead;
    while !snapshot.is_finished() && next < blocks - reserve {
        write(&mut io, next);
        next += 1;
        io.wait_for(usize::try_from(next).unwrap());
    }
    let out = snapshot.join().unwrap();
    // Every write sent from here on started after the snapshot was taken.
    let sent_before_answer = next;
    assert!(
        out.status.success(),
        "snapshot create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    while next < blocks {
        write(&mut io, next);
        next += 1;
    }
    io.wait_for(usize::try_from(blocks).unwrap());
    assert!(
        io.done
            .iter()
            .all(|d| d.output.contains("wrote 65536/65536")),
        "a write failed: {:?}",
        io.done.iter().find(|d| !d.output.contains("wrote"))
    );
    assert!(
        io.finish(Duration::from_secs(60))
            .is_some_and(|st| st.success())
    );

    let restored = s.cli(&[
        "disk",
        "create",
        "--name",
        "at-instant",
        "--from-snapshot",
        snap["id"].as_str().unwrap(),
        "--zone",
        "local-c",
    ]);
    let ruri = s.attach(restored["id"].as_str().unwrap());
    let out = s.scratch().join("snap.raw");
    qemu_img_out(&ruri, &out);
    let data = std::fs::read(&out).unwrap();
    // Prefix property: blocks 0..k hold their patterns, k.. are all zero.
    let at = |i: u64| usize::try_from(i * 65536).unwrap();
    let block = |i: u64| &data[at(i)..at(i + 1)];
    let k = (0..blocks)
        .take_while(|&i| block(i).iter().all(|&b| u64::from(b) == pattern(i)))
        .count() as u64;
    for i in k..blocks {
        assert!(
            block(i).iter().all(|&b| b == 0),
            "block {i} after the prefix of {k} written blocks is not empty: not one instant"
        );
    }
    // And that instant fell between the writes: after every write
    // acknowledged before the snapshot was asked for, before every write
    // sent after it was answered; so some of the writes are in it, not all.
    assert!(
        (lead..=sent_before_answer).contains(&k),
        "the snapshot holds the first {k} writes; {lead} were acknowledged before it was asked \
         for and {sent_before_answer} sent before it was answered"
    );
    assert!(0 < k && k < blocks, "{k} of {blocks}");
    println!(
        "snapshot asked for after {lead} writes, answered after {sent_before_answer} of {blocks}: \
         holds a consistent prefix of {k}"
    );
    // The disk itself has everything.
    let full = s.scratch().join("full.raw");
    qemu_img_out(&uri, &full);
    let d = std::fs::read(&full).unwrap();
    assert!((0..blocks).all(|i| u64::from(d[at(i)]) == pattern(i)));
}

/// A snapshot's cost is a few metadata rows whatever the disk's size: no
/// object is written and no chunk-map row copied, for a 1 GiB disk written
/// in full (4096 chunks) as for a 1 TiB sparse one. Counted, not timed (the
/// times are printed).
#[test]
fn snapshot_work_does_not_grow_with_disk_size() {
    require("qemu-img", "qemu-utils");
    let s = Server::start();
    let small = s.create_disk("gib", "1GiB", "local-a");
    let uri = s.attach(&small);
    let src = s.scratch().join("src.raw");
    random_file(&src, 1 << 30, 3);
    qemu_img_in(&src, "raw", &uri);
    let huge = s.create_disk("tib", "1TiB", "local-a");
    let huri = s.attach(&huge);
    run(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        "write -P 1 0 1M",
        "-c",
        "write -P 2 1023G 1M",
        &huri,
    ]));
    let objects = |s: &Server| {
        let store = s.object_store();
        block_on(async move {
            store.list("chunks/").await.unwrap().len() + store.list("objects/").await.unwrap().len()
        })
    };
    let token = s.admin_token();
    let mut rows = vec![s.meta.row_counts()];
    let mut stored = vec![objects(&s)];
    let mut times = Vec::new();
    for (k, (name, d)) in [("1 GiB written", &small), ("1 TiB sparse", &huge)]
        .into_iter()
        .enumerate()
    {
        let mut best = std::time::Duration::MAX;
        for i in 0..5 {
            // Snapshot names are unique per account.
            let body = format!(r#"{{"disk_id":"{d}","name":"t{k}-{i}"}}"#);
            let t = Instant::now();
            let (status, v) = http(&s, "POST", "/v1/snapshots", Some(token.trim()), Some(&body));
            best = best.min(t.elapsed());
            assert_eq!(status, 201, "{v}");
        }
        times.push((name, best));
        rows.push(s.meta.row_counts());
        stored.push(objects(&s));
    }
    for (name, t) in &times {
        println!(
            "snapshot of a {name} disk (attached, open, via the HTTP API): best of 5 = {t:.2?}"
        );
    }
    let delta = |a: &std::collections::BTreeMap<String, u64>,
                 b: &std::collections::BTreeMap<String, u64>| {
        b.iter()
            .map(|(t, n)| (t.clone(), i128::from(*n) - i128::from(a[t])))
            .filter(|(_, d)| *d != 0)
            .collect::<std::collections::BTreeMap<String, i128>>()
    };
    let (gib, tib) = (delta(&rows[0], &rows[1]), delta(&rows[1], &rows[2]));
    println!("rows written by 5 snapshots: of the 1 GiB disk {gib:?}, of the 1 TiB disk {tib:?}");
    assert!(
        rows[0]["chunks"] + rows[0]["extents"] >= 4096,
        "the 1 GiB disk's chunk map is in the metadata: {:?}",
        rows[0]
    );
    assert_eq!(
        stored[1], stored[0],
        "snapshots of the 1 GiB disk wrote objects"
    );
    assert_eq!(
        stored[2], stored[1],
        "snapshots of the 1 TiB disk wrote objects"
    );
    for (name, d) in [("1 GiB", &gib), ("1 TiB", &tib)] {
        assert_eq!(d.get("snapshots"), Some(&5), "{name}: {d:?}");
        for table in ["chunks", "extents"] {
            assert_eq!(
                d.get(table),
                None,
                "{name}: a snapshot copied or rewrote chunk-map rows: {d:?}"
            );
        }
        assert!(
            d.values().map(|n| n.unsigned_abs()).sum::<u128>() <= 5 * 8,
            "{name}: a snapshot is a few rows, not work in proportion to the disk: {d:?}"
        );
    }
    assert_eq!(s.cli(&["snapshot", "list"]).as_array().unwrap().len(), 10);
}
