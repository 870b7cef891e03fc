//! Several nodes on one deployment: two `coffer serve` processes on one
//! PostgreSQL database and one object store (this pass's: a directory both
//! can reach, or an S3 bucket), the root key given to both.
//!
//! - a disk written through node 1 and detached reads back identically
//!   through node 2; while attached on one node it is refused on the other,
//!   and requests about it sent to the other node are answered by its holder;
//! - after kill -9 of the holder, the other node takes the disk over once the
//!   holder's lease has passed, not before, with every flushed write intact;
//! - snapshots, copies (disks from snapshots) and deletes racing on both
//!   nodes leave the deployment exact: fsck clean, and once everything but
//!   the source is deleted and collected, no object leaked.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, require};

const LEASE: &str = "5s";

fn qemu_io(uri: &str, cmds: &[String]) -> std::process::Output {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    c.arg(uri).output().expect("run qemu-io")
}

/// Write `pattern` over `len` bytes at `off`, flushed (qemu-io flushes on
/// exit): fails the test on error.
fn write(uri: &str, off: u64, len: u64, pattern: u8) {
    let out = qemu_io(
        uri,
        &[format!("write -P {pattern:#x} {off} {len}"), "flush".into()],
    );
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("failed"),
        "write through {uri}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Check that `len` bytes at `off` read as `pattern`.
fn check(uri: &str, off: u64, len: u64, pattern: u8) {
    let out = qemu_io(uri, &[format!("read -P {pattern:#x} {off} {len}")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("failed") && !text.contains("Pattern verification"),
        "read {off}+{len} through {uri} expecting {pattern:#x}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether an NBD client can open `uri` at all.
fn opens(uri: &str) -> bool {
    let out = qemu_io(uri, &["read 0 4k".into()]);
    out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("failed")
}

/// The names `coffer admin nodes` lists through `n`, and its whole answer.
fn node_names(n: &Server) -> (Vec<String>, serde_json::Value) {
    let nodes = n.cli(&["admin", "nodes"]);
    let names = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    (names, nodes)
}

fn two_nodes() -> (Server, Server) {
    require("qemu-io", "qemu-utils");
    let n1 = Server::start_first_node(&["--lease-ttl", LEASE, "--node-name", "node-one"]);
    let n2 = n1.start_peer(&["--lease-ttl", LEASE, "--node-name", "node-two"]);
    (n1, n2)
}

#[test]
fn written_on_one_node_read_on_the_other() {
    let (n1, n2) = two_nodes();
    let (names, nodes) = node_names(&n2);
    assert_eq!(names, ["node-one", "node-two"], "{nodes}");

    // Any node answers any call: created on node 2, attached on node 1.
    let disk = n2.create_disk("shared", "64MiB", "local-a");
    assert_eq!(n1.cli(&["disk", "show", &disk])["id"], disk.as_str());
    let uri1 = n1.attach(&disk);
    assert!(uri1.contains(&n1.nbd), "attach URI names node 1: {uri1}");
    write(&uri1, 0, 4 << 20, 0x61);
    write(&uri1, 40 << 20, 1 << 20, 0x62);

    // Held by node 1: node 2 refuses a second attachment and naming node 1,
    // and will not serve node 1's export either.
    let err = n2.cli_err(&["disk", "attach", &disk]);
    assert!(
        err.contains("already attached") && err.contains("node-one"),
        "{err}"
    );
    let token = uri1.rsplit('/').next().unwrap();
    assert!(
        !opens(&format!("nbd://{}/{token}", n2.nbd)),
        "node 2 must not serve a disk node 1 holds"
    );

    // A snapshot asked of node 2 is taken by node 1 (forwarded), so it holds
    // what node 1 has; detaching through node 2 detaches on node 1.
    let snap = n2.cli(&["snapshot", "create", "--disk", &disk, "--name", "s1"]);
    let snap = snap["id"].as_str().unwrap().to_string();
    n2.cli(&["disk", "detach", &disk]);
    assert!(!opens(&uri1), "a detached disk's export stops working");
    assert_eq!(n1.cli(&["disk", "show", &disk])["state"], "available");

    // Node 2 now attaches and reads exactly what node 1 wrote.
    let uri2 = n2.attach(&disk);
    assert!(uri2.contains(&n2.nbd), "{uri2}");
    check(&uri2, 0, 4 << 20, 0x61);
    check(&uri2, 4 << 20, 36 << 20, 0);
    check(&uri2, 40 << 20, 1 << 20, 0x62);
    write(&uri2, 1 << 20, 1 << 20, 0x63);

    // A copy of the snapshot made on node 1 holds the state at the snapshot.
    let copy = n1.cli(&[
        "disk",
        "create",
        "--name",
        "copy",
        "--zone",
        "local-b",
        "--from-snapshot",
        &snap,
    ]);
    let copy = copy["id"].as_str().unwrap().to_string();
    let curi = n1.attach(&copy);
    check(&curi, 0, 4 << 20, 0x61);
    check(&curi, 40 << 20, 1 << 20, 0x62);
    n1.cli(&["disk", "detach", &copy]);
    check(&uri2, 1 << 20, 1 << 20, 0x63);

    for n in [&n1, &n2] {
        let report = n.cli(&["admin", "fsck", "--deep"]);
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["objects_missing"], 0, "{report}");
    }
}

#[test]
fn a_dead_nodes_disk_is_taken_over_after_its_lease() {
    let (mut n1, n2) = two_nodes();
    let disk = n1.create_disk("survivor", "32MiB", "local-a");
    let uri1 = n1.attach(&disk);
    write(&uri1, 0, 8 << 20, 0x71);
    write(&uri1, 20 << 20, 2 << 20, 0x72);

    n1.kill9();
    // The lease (5 s, renewed every 1.25 s) outlives the process: node 2
    // cannot tell a dead node from a slow one, so right after the kill it
    // still refuses.
    let err = n2.cli_err(&["disk", "attach", &disk]);
    assert!(
        err.contains("already attached") && err.contains("node-one"),
        "attach right after the kill must be refused while the lease runs: {err}"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let uri2 = loop {
        let out = n2.cli_raw(&["disk", "attach", &disk, "--output", "json"]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            break v["uri"].as_str().unwrap().to_string();
        }
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains("already attached"), "unexpected error: {err}");
        assert!(Instant::now() < deadline, "node 2 never took the disk over");
        std::thread::sleep(Duration::from_millis(200));
    };
    check(&uri2, 0, 8 << 20, 0x71);
    check(&uri2, 8 << 20, 12 << 20, 0);
    check(&uri2, 20 << 20, 2 << 20, 0x72);

    // The dead node's export token died with its attachment.
    let token = uri1.rsplit('/').next().unwrap();
    assert!(!opens(&format!("nbd://{}/{token}", n2.nbd)));

    // Its node row is reaped at node 2's next lease tick, and after
    // collection nothing leaked.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (names, nodes) = node_names(&n2);
        if names == ["node-two"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dead node was never reaped: {nodes}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    n2.cli(&["disk", "detach", &disk]);
    n2.cli(&["admin", "gc"]);
    let report = n2.cli(&["admin", "fsck", "--deep"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["objects_unreferenced"], 0, "{report}");
    assert_eq!(
        report["objects_stored"], report["objects_named"],
        "{report}"
    );
}

/// One node's share of the race: snapshot the source, copy a snapshot to a
/// new disk, delete a snapshot (maybe the other node's), delete a copy.
/// Losing a race (the other node deleted the snapshot first) is a clean
/// 404; anything else must succeed. Returns the copies still alive and the
/// pattern each must read as.
fn race(
    n: &Server,
    source: &str,
    me: &str,
    rounds: usize,
    taken: &std::sync::atomic::AtomicUsize,
) -> Vec<String> {
    let mut copies = Vec::new();
    for i in 0..rounds {
        let snap = n.cli(&[
            "snapshot",
            "create",
            "--disk",
            source,
            "--name",
            &format!("{me}-{i}"),
        ]);
        let snap = snap["id"].as_str().unwrap().to_string();
        taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let snaps = n.cli(&["snapshot", "list"]);
        let all: Vec<String> = snaps
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect();
        // Copy the other node's newest snapshot if there is one (it may be
        // deleted under us), else our own.
        let from = all.iter().rev().find(|s| **s != snap).unwrap_or(&snap);
        let out = n.cli_raw(&[
            "disk",
            "create",
            "--name",
            &format!("{me}-copy-{i}"),
            "--zone",
            "local-a",
            "--from-snapshot",
            from,
            "--output",
            "json",
        ]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            copies.push(v["id"].as_str().unwrap().to_string());
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("not found"), "copy failed otherwise: {err}");
        }
        // Delete the oldest snapshot (racing the other node for it).
        if let Some(oldest) = all.first() {
            let out = n.cli_raw(&["snapshot", "delete", oldest]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() || err.contains("not found"),
                "delete failed otherwise: {err}"
            );
        }
        if i % 2 == 1
            && let Some(c) = copies.first().cloned()
        {
            n.cli(&["disk", "delete", &c]);
            copies.remove(0);
        }
    }
    copies
}

/// The source disk of the race: 16 MiB of 0x41, then the holder rewrites
/// one chunk (256 KiB) per round, in order, round `r` at MiB `r` with
/// pattern `0x50 + r`.
const ROUNDS: u64 = 8;
const UNIT: u64 = 256 << 10;

fn round_pattern(r: u64) -> u8 {
    0x50 + u8::try_from(r).unwrap()
}

/// How many of the rounds' writes `data` (a whole copy of the source)
/// holds, checking that it is the source at one instant: every write up to
/// some round and none after it (a snapshot that mixed chunks of two
/// moments would show a later write without an earlier one), and 0x41
/// everywhere else.
fn rounds_in(data: &[u8], what: &str) -> u64 {
    let mut k = None;
    for r in 0..ROUNDS {
        let at = usize::try_from(r << 20).unwrap();
        let unit = &data[at..at + usize::try_from(UNIT).unwrap()];
        let new = unit.iter().all(|&b| b == round_pattern(r));
        let old = unit.iter().all(|&b| b == 0x41);
        assert!(
            new || old,
            "{what}: round {r}'s chunk is neither before nor after its write"
        );
        match (new, k) {
            (true, Some(k)) => panic!(
                "{what}: holds round {r}'s write but not round {k}'s, written before it: \
                 not the disk at one instant"
            ),
            (false, None) => k = Some(r),
            _ => {}
        }
    }
    for (i, &b) in data.iter().enumerate() {
        let off = i as u64;
        if off >> 20 >= ROUNDS || off % (1 << 20) >= UNIT {
            assert_eq!(b, 0x41, "{what}: byte {off} changed, no round wrote it");
        }
    }
    k.unwrap_or(ROUNDS)
}

/// A whole disk read through `n`'s NBD port.
fn read_all(n: &Server, disk: &str) -> Vec<u8> {
    let uri = n.attach(disk);
    let path = n.scratch().join(format!("{disk}.raw"));
    common::qemu_img_out(&uri, &path);
    n.cli(&["disk", "detach", disk]);
    let data = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    data
}

#[test]
fn racing_snapshots_copies_and_deletes_on_two_nodes_stay_exact() {
    require("qemu-img", "qemu-utils");
    let (n1, n2) = two_nodes();
    let source = n1.create_disk("source", "16MiB", "local-a");
    let uri = n1.attach(&source);
    write(&uri, 0, 16 << 20, 0x41);

    let taken = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let a = scope.spawn(|| race(&n1, &source, "one", 8, &taken));
        let b = scope.spawn(|| race(&n2, &source, "two", 8, &taken));
        // Meanwhile the holder writes the source, one chunk per round, each
        // flushed, round r once 2r snapshots are taken (of the 16): new
        // generations under the snapshots being taken, copied and deleted,
        // the snapshots spread over the rounds.
        for r in 0..ROUNDS {
            let deadline = Instant::now() + Duration::from_secs(120);
            // (Unless both racers have ended: one that failed takes no more.)
            while taken.load(std::sync::atomic::Ordering::SeqCst) < usize::try_from(2 * r).unwrap()
                && !(a.is_finished() && b.is_finished())
            {
                assert!(
                    Instant::now() < deadline,
                    "the racers took no snapshot in 120 s"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            write(&uri, r << 20, UNIT, round_pattern(r));
        }
        let mut copies = a.join().unwrap();
        copies.extend(b.join().unwrap());
        // Every copy is the source at one instant: no chunk lost, none from
        // another moment.
        assert!(
            !copies.is_empty(),
            "the race left no copy to check (every copy lost its snapshot)"
        );
        let mut seen = Vec::new();
        for c in &copies {
            seen.push(rounds_in(&read_all(&n2, c), &format!("copy {c}")));
        }
        println!(
            "{} copies checked, holding the first {seen:?} of {ROUNDS} rounds",
            copies.len()
        );
    });

    // A snapshot asked of the node that does not hold the source, after the
    // last write: it holds every round.
    let last = n2.cli(&["snapshot", "create", "--disk", &source, "--name", "last"]);
    let copy = n2.cli(&[
        "disk",
        "create",
        "--name",
        "last-copy",
        "--zone",
        "local-b",
        "--from-snapshot",
        last["id"].as_str().unwrap(),
    ]);
    let copy = copy["id"].as_str().unwrap().to_string();
    assert_eq!(
        rounds_in(&read_all(&n2, &copy), "the last snapshot's copy"),
        ROUNDS
    );

    let report = n1.cli(&["admin", "fsck", "--deep"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["objects_missing"], 0, "{report}");

    // Delete everything but the source; once collected, the store holds
    // exactly what the source's chunk map names.
    for s in n2.cli(&["snapshot", "list"]).as_array().unwrap() {
        n2.cli(&["snapshot", "delete", s["id"].as_str().unwrap()]);
    }
    for d in n1.cli(&["disk", "list"]).as_array().unwrap() {
        let id = d["id"].as_str().unwrap();
        if id != source {
            n1.cli(&["disk", "delete", id]);
        }
    }
    n1.cli(&["disk", "detach", &source]);
    assert_eq!(rounds_in(&read_all(&n1, &source), "the source"), ROUNDS);
    n1.cli(&["admin", "gc"]);
    let report = n2.cli(&["admin", "fsck", "--deep"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["objects_unreferenced"], 0, "{report}");
    assert_eq!(report["objects_queued"], 0, "{report}");
    assert_eq!(
        report["objects_stored"], report["objects_named"],
        "{report}"
    );
    assert_eq!(
        report["objects_named"], 64,
        "16 MiB in 256 KiB chunks: {report}"
    );
}

/// The instant check itself: a copy holding a later round's write without
/// an earlier one's is refused, and so is a torn chunk.
#[test]
fn the_one_instant_check_refuses_a_mix_of_moments() {
    let mut data = vec![0x41u8; 16 << 20];
    let fill = |data: &mut Vec<u8>, r: u64, b: u8| {
        let at = usize::try_from(r << 20).unwrap();
        data[at..at + usize::try_from(UNIT).unwrap()].fill(b);
    };
    for r in 0..3 {
        fill(&mut data, r, round_pattern(r));
    }
    assert_eq!(rounds_in(&data, "a prefix"), 3);
    let mut mixed = data.clone();
    fill(&mut mixed, 5, round_pattern(5));
    let refused = |d: Vec<u8>| std::panic::catch_unwind(move || rounds_in(&d, "bad")).is_err();
    assert!(refused(mixed), "round 5 without rounds 3 and 4");
    let mut torn = data.clone();
    torn[(3 << 20) + 10] = round_pattern(3);
    assert!(refused(torn), "a chunk half old, half new");
    let mut stray = data;
    stray[(12 << 20) + 7] = 0;
    assert!(refused(stray), "a byte no round wrote");
}
