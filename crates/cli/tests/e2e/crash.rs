//! Durability: a write acknowledged by a flush survives `kill -9` of the
//! server, again and again: while other (unflushed) writes are in flight,
//! and in the middle of a flush, a snapshot, garbage collection and a large
//! metadata commit, and amid 512-byte and 4 KiB writes at random sector
//! offsets while compaction rewrites chunks (checked sector by sector
//! against a model). After each kill the server restarts on the same data,
//! every flushed write reads back, nothing is torn, and fsck is clean.
//!
//! Kill points are random: each run draws a seed and prints it; set
//! `COFFER_CRASH_SEED` to that value to replay the same kill points.
//! Every kill is checked to have landed where it was meant to: the server
//! was running and had acknowledged writes just before, `kill -9` is what
//! ended it, and the operation it was meant to interrupt had not finished
//! (each test needs at least one such kill, retrying with shorter delays).

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const BLOCK: u64 = 64 * 1024;
const MIB: u64 = 1 << 20;

/// A small, seedable generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// This run's seed for `test`: `COFFER_CRASH_SEED` if set, else fresh from
/// the OS. Printed (the test's output is shown when it fails) so the run
/// can be replayed.
fn seeded(test: &str) -> (u64, Rng) {
    let seed = match std::env::var("COFFER_CRASH_SEED") {
        Ok(v) => {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            }
            .unwrap_or_else(|e| panic!("COFFER_CRASH_SEED={v}: not a number ({e})"))
        }
        Err(_) => {
            let mut b = [0u8; 8];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut b))
                .expect("read /dev/urandom");
            u64::from_le_bytes(b)
        }
    };
    println!(
        "{test}: seed {seed} (replay: COFFER_CRASH_SEED={seed} cargo test -p coffer-cli --test e2e crash::{test})"
    );
    // Each test its own stream from the one seed; never zero.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in test.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (seed, Rng((seed ^ h) | 1))
}

fn export_of(uri: &str) -> String {
    uri.rsplit('/').next().unwrap().to_string()
}

fn uri_of(s: &Server, export: &str) -> String {
    format!("nbd://{}/{export}", s.nbd)
}

/// The whole disk behind `uri`, read with qemu-img.
fn read_disk(s: &Server, uri: &str) -> Vec<u8> {
    let path = s.scratch().join("read.raw");
    qemu_img_out(uri, &path);
    let data = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    data
}

fn range(data: &[u8], off: u64, len: u64) -> &[u8] {
    let a = usize::try_from(off).unwrap();
    &data[a..a + usize::try_from(len).unwrap()]
}

/// The one byte `data` is made of, if it is uniform.
fn uniform(data: &[u8]) -> Option<u8> {
    let first = *data.first()?;
    data.iter().all(|&b| b == first).then_some(first)
}

/// fsck (deep: every named object fetched and authenticated) is clean.
fn assert_fsck_clean(s: &Server, when: &str) {
    let report = s.cli(&["admin", "fsck", "--deep"]);
    assert_eq!(report["ok"], true, "{when}: fsck: {report}");
    assert_eq!(report["objects_missing"], 0, "{when}: fsck: {report}");
}

/// Check that the server is running, kill -9 it (the harness checks that
/// the kill is what ended it and that its log shows no panic), and return
/// the instant of the kill.
fn kill_now(s: &mut Server, when: &str) -> Instant {
    assert!(
        s.is_running(),
        "{when}: the server was not running just before the kill"
    );
    let at = Instant::now();
    s.kill9();
    at
}

fn sleep_us(us: u64) {
    std::thread::sleep(Duration::from_micros(us));
}

#[test]
fn flushed_writes_survive_kill_9_twenty_times() {
    const TEST: &str = "flushed_writes_survive_kill_9_twenty_times";
    require("qemu-io", "qemu-utils");
    require("qemu-img", "qemu-utils");
    let (seed, mut rng) = seeded(TEST);
    let mut s = Server::start();
    let size = 32 * MIB;
    let blocks = size / BLOCK;
    let disk = s.create_disk("durable", "32MiB", "local-a");
    let export = export_of(&s.attach(&disk));
    // Twenty rounds whose kill lands mid-write. On a loaded machine the test
    // thread can be descheduled long enough for the writer to finish first;
    // such a round still checks every flushed write, but it is not counted,
    // and the test goes on (up to forty rounds) until twenty have landed.
    const WANTED: u64 = 20;
    const MAX_ROUNDS: u64 = 40;
    let mut mid_write = 0u64;
    let mut rounds = 0u64;
    let mut survived = 0usize;
    for round in 0..MAX_ROUNDS {
        if mid_write == WANTED {
            break;
        }
        rounds = round + 1;
        let when = format!("seed {seed}, round {round}");
        let mut io = QemuIo::open(&uri_of(&s, &export));
        // The acknowledged write: even block 2*round, pattern round+1,
        // flushed.
        io.run(&format!(
            "write -P {} {} {BLOCK}",
            round + 1,
            round * 2 * BLOCK
        ));
        io.run("flush");
        // Unflushed writes to odd blocks, all queued at once; the kill comes
        // once `acked` of them are acknowledged, with at least 32 to go.
        let n = 64 + rng.below(160);
        let acked = 1 + rng.below(n - 32);
        let first = io.sent;
        for _ in 0..n {
            let block = 2 * rng.below(blocks / 2) + 1;
            io.send(&format!("write -P 0xee {} {BLOCK}", block * BLOCK));
        }
        io.wait_for(first + usize::try_from(acked).unwrap());
        // Up to 2 ms more, so the kill lands anywhere in the next write's
        // round trip (a write takes about that long here).
        sleep_us(rng.below(2000));
        io.poll();
        let acked_before_kill = io.done.len() - first;
        assert!(
            io.done[first..].iter().all(|d| d.output.contains("wrote")),
            "{when}: a write before the kill failed: {:?}",
            io.done.last()
        );
        kill_now(&mut s, &when);

        // The writer: its writes up to the kill were acknowledged, the rest
        // failed (none hung), and it reports the failure.
        let status = io.finish(Duration::from_secs(60));
        let status = status.unwrap_or_else(|| panic!("{when}: qemu-io hung after the kill"));
        let n_writes = usize::try_from(n).unwrap();
        assert!(
            io.done.len() >= first + n_writes,
            "{when}: only {} of {n} writes were answered: {:?}",
            io.done.len() - first,
            io.done.last()
        );
        let results = &io.done[first..first + n_writes];
        let ok = results
            .iter()
            .filter(|d| d.output.contains("wrote 65536/65536"))
            .count();
        let failed = results.iter().filter(|d| d.failed()).count();
        assert!(
            ok >= acked_before_kill,
            "{when}: {ok} writes acknowledged, {acked_before_kill} seen before the kill"
        );
        assert_eq!(
            ok + failed,
            n_writes,
            "{when}: every write either acknowledged or failed: {results:?}"
        );
        if failed > 0 {
            mid_write += 1;
            assert!(
                !status.success(),
                "{when}: qemu-io exited {status} though its writes failed"
            );
        } else {
            eprintln!("{when}: the writer finished all {n} writes before the kill; not counted");
        }

        s.launch(&[]);
        let shown = s.cli(&["disk", "show", &disk]);
        assert_eq!(shown["size_bytes"], size, "{when}: disk metadata");
        assert_eq!(
            shown["state"], "attached",
            "{when}: the attachment survives a restart"
        );
        let data = read_disk(&s, &uri_of(&s, &export));
        for b in 0..blocks {
            let got = range(&data, b * BLOCK, BLOCK);
            if b % 2 == 0 {
                let r = b / 2;
                let want = if r <= round { r + 1 } else { 0 };
                assert_eq!(
                    uniform(got),
                    Some(u8::try_from(want).unwrap()),
                    "{when}: block {b} (flushed in round {r}) lost or torn"
                );
            } else {
                match uniform(got) {
                    Some(0) => {}
                    Some(0xee) => survived += 1,
                    _ => panic!("{when}: unflushed block {b} is torn: neither old nor new"),
                }
            }
        }
        assert_fsck_clean(&s, &when);
    }
    assert_eq!(
        mid_write, WANTED,
        "seed {seed}: only {mid_write} of {rounds} kills landed mid-write"
    );
    println!(
        "{mid_write} kill -9 rounds mid-write (of {rounds}): every flushed write present, \
         no block torn ({survived} unflushed blocks survived)"
    );
}

/// A disk written through one long qemu-io session, killed and restarted
/// around it: region A is written and flushed once and must never change;
/// region B is rewritten whole, with a new pattern, before each kill.
struct Scene {
    s: Server,
    disk: String,
    export: String,
    io: QemuIo,
    seed: u64,
}

const REGION_A: (u64, u64) = (0, 4 * MIB);
const REGION_B: (u64, u64) = (8 * MIB, 16 * MIB);

impl Scene {
    fn new(s: Server, name: &str, seed: u64) -> Self {
        let disk = s.create_disk(name, "32MiB", "local-a");
        let export = export_of(&s.attach(&disk));
        let mut io = QemuIo::open(&uri_of(&s, &export));
        io.run(&format!("write -P 0x11 {} {}", REGION_A.0, REGION_A.1));
        io.run("flush");
        Scene {
            s,
            disk,
            export,
            io,
            seed,
        }
    }

    /// Rewrite region B with `pattern`, 1 MiB per write, unflushed; wait
    /// until every write is acknowledged.
    fn dirty_region_b(&mut self, pattern: u8) {
        let first = self.io.sent;
        for m in 0..REGION_B.1 / MIB {
            self.io
                .send(&format!("write -P {pattern} {} 1M", REGION_B.0 + m * MIB));
        }
        self.io.wait_for(self.io.sent);
        assert!(
            self.io.done[first..]
                .iter()
                .all(|d| d.output.contains("wrote")),
            "seed {}: a write of region B failed: {:?}",
            self.seed,
            self.io.done.last()
        );
    }

    /// After a kill: the qemu-io session ends without hanging, the server
    /// restarts, a new session opens. Returns the ended session.
    fn restart(&mut self, when: &str) -> QemuIo {
        let status = self.io.finish(Duration::from_secs(60));
        assert!(status.is_some(), "{when}: qemu-io hung after the kill");
        self.s.launch(&[]);
        std::mem::replace(&mut self.io, QemuIo::open(&uri_of(&self.s, &self.export)))
    }

    /// Region A intact; region B uniformly one of `allowed`; returns which.
    fn check(&self, when: &str, allowed: &[u8]) -> u8 {
        check_regions(&self.s, &uri_of(&self.s, &self.export), when, allowed)
    }
}

fn check_regions(s: &Server, uri: &str, when: &str, allowed: &[u8]) -> u8 {
    let data = read_disk(s, uri);
    assert_eq!(
        uniform(range(&data, REGION_A.0, REGION_A.1)),
        Some(0x11),
        "{when}: region A, flushed before everything, lost or changed"
    );
    let b = uniform(range(&data, REGION_B.0, REGION_B.1));
    match b {
        Some(p) if allowed.contains(&p) => p,
        _ => panic!(
            "{when}: region B is {b:?} (None: mixed), expected all of one of {allowed:?}: \
             what a flush acknowledged before the kill committed is there, and what one cut \
             short commits, it commits whole or not at all"
        ),
    }
}

/// The kill delay for the next attempt, in microseconds: random below twice
/// `window` (the operation's measured length) plus 20 ms, so most kills land
/// inside the operation and some after its acknowledgement, where one
/// acknowledged too early (before the work it stands for) shows.
fn delay_below(rng: &mut Rng, window: Duration) -> u64 {
    rng.below(2 * u64::try_from(window.as_micros()).unwrap() + 20_000)
}

/// Flush region B's dirty data, kill -9 the server at a random point of the
/// flush, restart, and check: what was flushed before is intact, region B
/// is wholly as committed before or wholly new (new if the flush was
/// acknowledged), fsck is clean. `dirty(scene, committed)` makes the data
/// to flush from region B's committed pattern; it returns the pattern the
/// flush commits and region B's committed pattern before the flush.
/// Returns how many kills cut a flush short.
fn kill_during_flushes(
    sc: &mut Scene,
    rng: &mut Rng,
    test: &str,
    mut dirty: impl FnMut(&mut Scene, u8) -> (u8, u8),
) -> usize {
    // How long one such flush takes here, to aim the kills.
    let committed = sc.check("start", &[0]);
    let (pattern, _) = dirty(sc, committed);
    let t = Instant::now();
    sc.io.run("flush");
    let mut window = t.elapsed();
    let mut committed = sc.check("calibration", &[pattern]);
    println!("{test}: the flush takes {window:?}");

    let (mut cut, mut attempts) = (0, 0);
    while attempts < 8 && cut < 3 {
        attempts += 1;
        let when = format!("seed {}, attempt {attempts}", sc.seed);
        let (pattern, before) = dirty(sc, committed);
        let flush = sc.io.sent;
        sc.io.send("flush");
        let delay = delay_below(rng, window);
        sleep_us(delay);
        let kill_at = kill_now(&mut sc.s, &when);
        let old = sc.restart(&when);
        // qemu-io prints nothing for a flush, failed or not: whether it was
        // acknowledged before the kill is told by when it completed.
        let acked = old.done.get(flush).is_some_and(|d| d.at < kill_at);
        let allowed: &[u8] = if acked {
            &[pattern]
        } else {
            &[pattern, before]
        };
        committed = sc.check(&when, allowed);
        assert_fsck_clean(&sc.s, &when);
        println!(
            "{test}: attempt {attempts}: killed {delay} us into the flush; flush {}, region B {}",
            if acked { "acknowledged" } else { "cut short" },
            if committed == pattern {
                "committed"
            } else {
                "as before"
            }
        );
        if acked {
            // The flush beat the kill: aim earlier.
            window /= 2;
        } else {
            cut += 1;
        }
    }
    cut
}

#[test]
fn kill_9_during_a_flush_keeps_every_flushed_write() {
    const TEST: &str = "kill_9_during_a_flush_keeps_every_flushed_write";
    require("qemu-io", "qemu-utils");
    let (seed, mut rng) = seeded(TEST);
    let mut sc = Scene::new(Server::start(), "flushing", seed);
    // 16 MiB of new data in 64 chunks: the flush seals and puts them, syncs
    // and commits.
    let cut = kill_during_flushes(&mut sc, &mut rng, TEST, |sc, committed| {
        let pattern = committed % 200 + 1;
        sc.dirty_region_b(pattern);
        (pattern, committed)
    });
    assert!(
        cut > 0,
        "seed {seed}: no kill landed before its flush was acknowledged"
    );
}

/// A server whose new disks have small chunks, so 16 MiB is many objects
/// and chunk-map rows and collecting or committing them takes a while:
/// 4 KiB (4096 per 16 MiB) on a local store; `s3_chunk` on S3, where every
/// object is a request to a slow test server. Returns the server, its
/// config's directory, and the chunk size.
fn small_chunk_server(s3_chunk: u64) -> (Server, tempfile::TempDir, u64) {
    let chunk = if coffer_testkit::store_is_s3() {
        s3_chunk
    } else {
        4 << 10
    };
    let cfg = tempfile::tempdir().unwrap();
    let path = cfg.path().join("coffer.toml");
    std::fs::write(&path, format!("chunk_size = \"{}KiB\"\n", chunk >> 10)).unwrap();
    let s = Server::start_with(&["--config", path.to_str().unwrap()], &[]);
    (s, cfg, chunk)
}

#[test]
fn kill_9_during_a_large_metadata_commit_commits_all_or_nothing() {
    const TEST: &str = "kill_9_during_a_large_metadata_commit_commits_all_or_nothing";
    require("qemu-io", "qemu-utils");
    let (seed, mut rng) = seeded(TEST);
    let (s, _cfg, chunk) = small_chunk_server(16 << 10);
    println!("{TEST}: {} chunk-map rows per commit", REGION_B.1 / chunk);
    let mut sc = Scene::new(s, "committing", seed);
    // Each flush below zeroes region B when it holds data (4096 objects on
    // a local store): no object to seal or put, one commit that rewrites as
    // many chunk-map rows and queues as many objects for deletion. When a commit landed, region B
    // is filled again (and flushed) first.
    let cut = kill_during_flushes(&mut sc, &mut rng, TEST, |sc, committed| {
        let before = if committed == 0 {
            let pattern = 0x41;
            sc.dirty_region_b(pattern);
            sc.io.run("flush");
            pattern
        } else {
            committed
        };
        sc.io
            .run(&format!("write -z {} {}", REGION_B.0, REGION_B.1));
        (0, before)
    });
    assert!(
        cut > 0,
        "seed {seed}: no kill landed before its commit was acknowledged"
    );
}

fn admin_token(s: &Server) -> String {
    s.admin_token()
}

/// Send an HTTP request and wait for its answer on another thread: the
/// request is written before this returns; the thread returns the status
/// (or why none came) and when it came.
fn request_in_background(
    s: &Server,
    method: &str,
    path: &str,
    body: &str,
) -> std::thread::JoinHandle<(Result<u16, String>, Instant)> {
    let addr = s.api.trim_start_matches("http://").to_string();
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        admin_token(s),
        body.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    std::thread::spawn(move || {
        let mut resp = Vec::new();
        let r = c.read_to_end(&mut resp);
        let at = Instant::now();
        let text = String::from_utf8_lossy(&resp);
        let status = match r {
            Err(e) => Err(format!("{e} after {} bytes", resp.len())),
            Ok(_) => text
                .get(9..12)
                .and_then(|st| st.parse().ok())
                .ok_or_else(|| format!("no answer ({} bytes)", resp.len())),
        };
        (status, at)
    })
}

#[test]
fn kill_9_during_a_snapshot_keeps_every_flushed_write() {
    const TEST: &str = "kill_9_during_a_snapshot_keeps_every_flushed_write";
    require("qemu-io", "qemu-utils");
    require("qemu-img", "qemu-utils");
    let (seed, mut rng) = seeded(TEST);
    let mut sc = Scene::new(Server::start(), "snapping", seed);
    let snapshot = |sc: &Scene, name: &str| {
        request_in_background(
            &sc.s,
            "POST",
            "/v1/snapshots",
            &format!(r#"{{"disk_id":"{}","name":"{name}"}}"#, sc.disk),
        )
    };

    // How long a snapshot of a disk with 16 MiB unflushed takes here (it
    // writes them back and commits them first).
    sc.dirty_region_b(0x20);
    let t = Instant::now();
    let (status, _) = snapshot(&sc, "calibration").join().unwrap();
    assert_eq!(status, Ok(201), "calibration snapshot");
    let mut window = t.elapsed();
    let mut committed = sc.check("calibration", &[0x20]);
    println!("{TEST}: the snapshot takes {window:?}");

    let (mut cut, mut attempts, mut between) = (0, 0, 0);
    while attempts < 8 && cut < 3 {
        attempts += 1;
        let when = format!("seed {seed}, attempt {attempts}");
        let pattern = 0x30 + u8::try_from(attempts).unwrap();
        sc.dirty_region_b(pattern);
        let name = format!("crash-{attempts}");
        let answer = snapshot(&sc, &name);
        let delay = delay_below(&mut rng, window);
        sleep_us(delay);
        let kill_at = kill_now(&mut sc.s, &when);
        let (status, answered_at) = answer.join().unwrap();
        let answered = status.is_ok() && answered_at < kill_at;
        if answered {
            assert_eq!(status, Ok(201), "{when}: the snapshot call failed");
        }
        sc.restart(&when);

        // The disk: its write-back committed whole or not at all.
        let allowed: &[u8] = if answered {
            &[pattern]
        } else {
            &[pattern, committed]
        };
        committed = sc.check(&when, allowed);
        // The snapshot: there if it was answered; if there, it holds every
        // write acknowledged before it was asked for.
        let snaps = sc.s.cli(&["snapshot", "list"]);
        let snap = snaps
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name.as_str())
            .map(|v| v["id"].as_str().unwrap().to_string());
        assert!(
            snap.is_some() || !answered,
            "{when}: snapshot {name} was acknowledged but is gone after the restart"
        );
        if let Some(snap) = &snap {
            let copy = sc.s.cli(&[
                "disk",
                "create",
                "--name",
                &format!("restored-{attempts}"),
                "--from-snapshot",
                snap,
                "--zone",
                "local-b",
            ]);
            let copy = copy["id"].as_str().unwrap().to_string();
            let uri = sc.s.attach(&copy);
            check_regions(&sc.s, &uri, &format!("{when}: snapshot {name}"), &[pattern]);
            sc.s.cli(&["disk", "detach", &copy]);
            sc.s.cli(&["disk", "delete", &copy]);
        }
        assert_fsck_clean(&sc.s, &when);
        if !answered && snap.is_none() && committed == pattern {
            // Killed after the write-back committed, before the snapshot row.
            between += 1;
        }
        println!(
            "{TEST}: attempt {attempts}: killed {delay} us into the snapshot; {}, region B {}, snapshot {}",
            if answered { "answered" } else { "unanswered" },
            if committed == pattern {
                "committed"
            } else {
                "as before"
            },
            if snap.is_some() { "present" } else { "absent" }
        );
        if answered {
            window /= 2;
        } else {
            cut += 1;
        }
    }
    println!("{TEST}: {cut} snapshots cut short, {between} between write-back and record");
    assert!(
        cut > 0,
        "seed {seed}: no kill landed before its snapshot was answered"
    );
}

/// How many data objects (v1 and v2) the store holds.
fn objects_stored(s: &Server) -> usize {
    let store = s.object_store();
    block_on(async move {
        store.list("chunks/").await.unwrap().len() + store.list("objects/").await.unwrap().len()
    })
}

#[test]
fn kill_9_during_garbage_collection_loses_and_leaks_nothing() {
    const TEST: &str = "kill_9_during_garbage_collection_loses_and_leaks_nothing";
    require("qemu-io", "qemu-utils");
    require("qemu-img", "qemu-utils");
    let (seed, mut rng) = seeded(TEST);
    // 4,096 objects to collect, so the collection (in batches, with S3
    // DeleteObjects of up to 1,000 keys) runs long enough for a kill to
    // land in it.
    let (s, _cfg, chunk) = small_chunk_server(16 << 10);
    let victim_objects = 4096;
    let victim_size = format!("{}KiB", (victim_objects as u64 * chunk) >> 10);
    let mut sc = Scene::new(s, "keeper", seed);
    sc.dirty_region_b(0x22);
    sc.io.run("flush");

    // Each attempt deletes a detached disk of 4,096 chunk objects; the
    // delete wakes the collector, which deletes them from the store in
    // batches, and the kill comes at a random point after the delete.
    let mut window = Duration::from_millis(200);
    let (mut cut, mut attempts) = (0, 0);
    while attempts < 8 && cut < 3 {
        attempts += 1;
        let when = format!("seed {seed}, attempt {attempts}");
        let victim =
            sc.s.create_disk(&format!("victim-{attempts}"), &victim_size, "local-a");
        let uri = sc.s.attach(&victim);
        let mut io = QemuIo::open(&uri);
        io.run(&format!(
            "write -P 0x77 0 {}",
            victim_objects as u64 * chunk
        ));
        io.run("flush");
        assert!(
            io.finish(Duration::from_secs(60))
                .is_some_and(|st| st.success())
        );
        sc.s.cli(&["disk", "detach", &victim]);
        let before = objects_stored(&sc.s);
        let after = before - victim_objects;

        let answer = request_in_background(&sc.s, "DELETE", &format!("/v1/disks/{victim}"), "");
        let (status, _) = answer.join().unwrap();
        assert_eq!(status, Ok(200), "{when}: delete {victim}");
        let delay = delay_below(&mut rng, window);
        sleep_us(delay);
        kill_now(&mut sc.s, &when);
        let at_kill = objects_stored(&sc.s);
        sc.restart(&when);

        sc.check(&when, &[0x22]);
        assert_fsck_clean(&sc.s, &when);
        // Collection resumes (at start-up, or now): every object of the
        // deleted disk goes, nothing else does.
        sc.s.cli(&["admin", "gc"]);
        let report = sc.s.cli(&["admin", "fsck", "--deep"]);
        assert_eq!(report["ok"], true, "{when}: {report}");
        assert_eq!(report["objects_queued"], 0, "{when}: {report}");
        assert_eq!(report["objects_unreferenced"], 0, "{when}: {report}");
        assert_eq!(
            report["objects_stored"], report["objects_named"],
            "{when}: {report}"
        );
        assert_eq!(objects_stored(&sc.s), after, "{when}: {report}");
        println!(
            "{TEST}: attempt {attempts}: killed {delay} us after the delete, \
             {} of {victim_objects} objects collected",
            before.saturating_sub(at_kill)
        );
        match at_kill {
            n if n == before => window *= 2,
            n if n == after => window /= 2,
            n => {
                assert!(
                    (after..before).contains(&n),
                    "{when}: {n} objects at the kill, not between {after} and {before}"
                );
                cut += 1;
            }
        }
    }
    assert!(
        cut > 0,
        "seed {seed}: no kill in {attempts} attempts landed while the collection ran"
    );
}

/// The sector of the small-write model below.
const SECTOR: u64 = 512;

/// A qemu-io command of the small-write test: a write of `len` bytes of
/// `pattern` at `off`, or a flush.
#[derive(Clone, Copy, Debug)]
enum Cmd {
    Write { off: u64, len: u64, pattern: u8 },
    Flush,
}

impl Cmd {
    fn line(self) -> String {
        match self {
            Cmd::Write { off, len, pattern } => format!("write -P {pattern} {off} {len}"),
            Cmd::Flush => "flush".to_string(),
        }
    }
}

/// A small write: half 512 B, four in ten 4 KiB, one in ten 8-32 KiB
/// (crossing chunks); all at random 512-byte-aligned offsets of a disk of
/// `size` bytes.
fn small_write(rng: &mut Rng, size: u64, pattern: u8) -> Cmd {
    let len = match rng.below(10) {
        0..=4 => SECTOR,
        5..=8 => 4096,
        _ => (16 + rng.below(49)) * SECTOR,
    };
    let off = rng.below((size - len) / SECTOR + 1) * SECTOR;
    Cmd::Write { off, len, pattern }
}

/// What each 512-byte sector of a disk may hold after a crash: the value
/// its last write before an acknowledged flush left (`durable`), or that of
/// any write since (`since`): each sector whole, never torn.
struct SectorModel {
    durable: Vec<u8>,
    since: Vec<Vec<u8>>,
}

impl SectorModel {
    fn new(size: u64) -> Self {
        let n = usize::try_from(size / SECTOR).unwrap();
        SectorModel {
            durable: vec![0; n],
            since: vec![Vec::new(); n],
        }
    }

    fn sectors(off: u64, len: u64) -> std::ops::Range<usize> {
        usize::try_from(off / SECTOR).unwrap()..usize::try_from((off + len) / SECTOR).unwrap()
    }

    /// Replay one qemu-io session's commands with their outcomes: each
    /// acknowledged write may be there; an acknowledged flush makes every
    /// write before it durable. A command is acknowledged if it completed
    /// without error before `kill` (qemu-io prints nothing for a flush,
    /// failed or not, so only the time tells). qemu-io sends a command only
    /// once the one before completed, so of the commands not acknowledged
    /// only the first can have reached the server (it was in flight at the
    /// kill); the rest failed without being sent.
    fn replay(&mut self, cmds: &[Cmd], done: &[Done], kill: Option<Instant>) {
        for (i, cmd) in cmds.iter().enumerate() {
            let acked = done
                .get(i)
                .is_some_and(|d| !d.failed() && kill.is_none_or(|k| d.at < k));
            match *cmd {
                Cmd::Write { off, len, pattern } => {
                    for s in Self::sectors(off, len) {
                        self.since[s].push(pattern);
                    }
                }
                Cmd::Flush if acked => {
                    for (d, since) in self.durable.iter_mut().zip(&mut self.since) {
                        if let Some(&last) = since.last() {
                            *d = last;
                        }
                        since.clear();
                    }
                }
                Cmd::Flush => {}
            }
            if !acked {
                break;
            }
        }
    }

    /// Check a disk read after the restart against the model, and take it
    /// as the new durable state (nothing is cached after a restart).
    /// Returns how many sectors hold a write no flush had acknowledged.
    fn check(&mut self, data: &[u8], when: &str) -> usize {
        let mut unflushed = 0;
        for (s, got) in data.chunks(usize::try_from(SECTOR).unwrap()).enumerate() {
            let v = uniform(got).unwrap_or_else(|| {
                panic!(
                    "{when}: sector {s} (byte {}) is torn: {:?}...",
                    s * 512,
                    &got[..16]
                )
            });
            if v != self.durable[s] {
                assert!(
                    self.since[s].contains(&v),
                    "{when}: sector {s} (byte {}) holds {v:#x}: neither its flushed value {:#x} \
                     nor one written since ({:x?})",
                    s * 512,
                    self.durable[s],
                    self.since[s]
                );
                unflushed += 1;
            }
            self.durable[s] = v;
            self.since[s].clear();
        }
        unflushed
    }
}

#[test]
fn kill_9_amid_small_writes_and_compaction_keeps_every_flushed_sector() {
    const TEST: &str = "kill_9_amid_small_writes_and_compaction_keeps_every_flushed_sector";
    require("qemu-io", "qemu-utils");
    require("qemu-img", "qemu-utils");
    let (seed, mut rng) = seeded(TEST);
    // 16 KiB chunks: a 4 KiB or 512 B write is a partial-chunk write, which
    // goes to a segment, and a chunk is due for compaction once half its
    // 32 sectors are in segments. Compaction at 4 MiB/s (1/8 of it while
    // the writer is busy: 32 chunks/s) is still rewriting chunks when most
    // kills come; its log lines (debug and trace) tell where each kill
    // landed. A 128 KiB dirty mark makes unflushed writes reach the store
    // (written back and committed unasked) before the kill too.
    let cfg = tempfile::tempdir().unwrap();
    let path = cfg.path().join("coffer.toml");
    std::fs::write(
        &path,
        "chunk_size = \"16KiB\"\ncompaction_rate = \"4MiB\"\ndirty_high_water = \"128KiB\"\n",
    )
    .unwrap();
    let mut s = Server::start_with(
        &["--config", path.to_str().unwrap()],
        &[("COFFER_LOG", "info,coffer_volume=trace")],
    );
    let size = 4 * MIB;
    let disk = s.create_disk("small-writes", "4MiB", "local-a");
    let export = export_of(&s.attach(&disk));
    let mut model = SectorModel::new(size);
    // Each round is a few hundred requests to the store, and fsck --deep
    // fetches every object: seconds on the test S3 server, so fewer there.
    let rounds: u8 = if coffer_testkit::store_is_s3() { 8 } else { 32 };
    let (mut mid_compaction, mut unflushed_survived, mut log_at) = (0, 0, 0);
    for round in 0..rounds {
        let when = format!("seed {seed}, round {round}");
        let (flushed, then, last) = (3 * round + 1, 3 * round + 2, 3 * round + 3);
        let mut io = QemuIo::open(&uri_of(&s, &export));
        // Writes and a flush, all acknowledged before the kill can come;
        // then the disk read through a second connection matches the model
        // (what the server holds in memory is right before any kill).
        let mut cmds: Vec<Cmd> = (0..150)
            .map(|_| small_write(&mut rng, size, flushed))
            .collect();
        cmds.push(Cmd::Flush);
        for c in &cmds {
            io.send(&c.line());
        }
        io.wait_for(cmds.len());
        assert!(
            io.done.iter().all(|d| !d.failed()),
            "{when}: a write or flush before the kill failed: {:?}",
            io.done.iter().find(|d| d.failed())
        );
        model.replay(&cmds, &io.done, None);
        let live = read_disk(&s, &uri_of(&s, &export));
        model.check(&live, &format!("{when}, before the kill"));
        // Compaction (started by that flush's commit) runs alone for up to
        // 300 ms. Then writes, a flush, and more writes, all queued; the
        // kill comes once a random number of them are acknowledged, and up
        // to 2 ms after (a small write takes about a millisecond here).
        sleep_us(rng.below(300_000));
        let first = io.done.len();
        let mut cmds: Vec<Cmd> = (0..30 + rng.below(120))
            .map(|_| small_write(&mut rng, size, then))
            .collect();
        cmds.push(Cmd::Flush);
        cmds.extend((0..30 + rng.below(120)).map(|_| small_write(&mut rng, size, last)));
        for c in &cmds {
            io.send(&c.line());
        }
        let acked = rng.below(u64::try_from(cmds.len()).unwrap());
        io.wait_for(first + usize::try_from(acked).unwrap());
        sleep_us(rng.below(2000));
        let kill_at = kill_now(&mut s, &when);
        let status = io.finish(Duration::from_secs(60));
        assert!(status.is_some(), "{when}: qemu-io hung after the kill");
        assert!(
            io.done.len() >= first + cmds.len(),
            "{when}: only {} of {} commands answered (done or failed)",
            io.done.len() - first,
            cmds.len()
        );
        model.replay(&cmds, &io.done[first..], Some(kill_at));

        // Where the kill landed: a compaction pass started in this run of
        // the server and not finished.
        let log = s.log();
        let run = &log[log_at..];
        let started = run.matches("compaction started").count();
        let finished = run.matches("compaction finished").count();
        let rewritten = run.matches("chunk rewritten by compaction").count();
        if started > finished {
            mid_compaction += 1;
        }
        log_at = log.len();

        s.launch(&[]);
        let data = read_disk(&s, &uri_of(&s, &export));
        let survived = model.check(&data, &when);
        unflushed_survived += survived;
        assert_fsck_clean(&s, &when);
        println!(
            "{TEST}: round {round}: killed after {acked} of {} commands; compaction passes \
             {started} started, {finished} finished, {rewritten} chunks rewritten; \
             {survived} unflushed sectors survived",
            cmds.len()
        );
    }
    let rewritten = s.log().matches("chunk rewritten by compaction").count();
    assert!(
        rewritten > usize::from(rounds),
        "seed {seed}: compaction rewrote only {rewritten} chunks in {rounds} rounds"
    );
    assert!(
        mid_compaction >= usize::from(rounds) / 2,
        "seed {seed}: only {mid_compaction} of {rounds} kills landed while compaction ran"
    );
    println!(
        "{TEST}: {mid_compaction} of {rounds} kills mid-compaction, {rewritten} chunks rewritten; \
         every flushed sector present, none torn, nothing else changed \
         ({unflushed_survived} unflushed sectors survived)"
    );
}
