//! Tampering with stored data, end to end: a real `coffer serve`, real NBD
//! clients (qemu-io, qemu-img), objects changed behind the server's back in
//! this run's object store (a directory, or an S3 bucket) and chunk-map
//! references changed in this run's metadata store (SQLite or PostgreSQL).
//!
//! Stored objects swapped, replayed (an older version of the same chunk put
//! back under the new key), truncated, and moved in from another disk (as
//! is, and with its header rewritten to name the victim's key, counter and
//! chunk); chunk-map entries pointed at another object of the same
//! generation, at another generation's object of another chunk, and at an
//! object that does not exist. Every read of a tampered chunk must fail with
//! EIO, never return data, and the server's log must name the chunk, the
//! volume and why; every other chunk must read back exactly.

mod common;

use std::collections::HashMap;
use std::process::Command;

use coffer_meta::{ChunkEntry, Meta};
use coffer_store::chunk_key;
use coffer_types::Id;
use common::*;

const CHUNK: u64 = 256 * 1024;
const CHUNKS: u64 = 16;

const NOT_NAMED: &str = "chunk object is not the one its reference names";
const MODIFIED: &str = "chunk object was modified or sealed under another key";
const WRONG_LENGTH: &str = "chunk object has the wrong length";
const TOO_SHORT: &str = "shorter than a header";
const MISSING: &str = "its object is missing from the store";

/// One stored object of a disk.
#[derive(Clone)]
struct Obj {
    key: String,
    bytes: Vec<u8>,
    counter: u64,
}

/// Byte offsets `a..b` as a slice range.
fn span(a: u64, b: u64) -> std::ops::Range<usize> {
    usize::try_from(a).unwrap()..usize::try_from(b).unwrap()
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// The disk's volume id and DEK id, and the objects its head names, by
/// chunk index (read through the metadata store and the object store).
fn current_objects(s: &Server, disk: &str) -> (Id, Id, HashMap<u64, Obj>) {
    let url = s.meta.url().to_string();
    let disk: Id = disk.parse().unwrap();
    let store = s.object_store();
    block_on(async move {
        let meta = Meta::open(&url).await.unwrap();
        let vol = meta.disk(disk).await.unwrap().unwrap().volume_id;
        let row = meta.volume(vol).await.unwrap();
        let mut out = HashMap::new();
        for (idx, entry) in meta.resolve_view(vol, row.head_generation).await.unwrap() {
            if let ChunkEntry::Object(counter) = entry {
                let key = chunk_key(row.dek_id.value(), counter);
                let bytes = store.get(&key).await.unwrap().to_vec();
                assert_eq!(be64(&bytes, 24), idx, "{key} holds chunk {idx}");
                out.insert(
                    idx,
                    Obj {
                        key,
                        bytes,
                        counter,
                    },
                );
            }
        }
        meta.close().await;
        (vol, row.dek_id, out)
    })
}

/// A qemu block-layer filename reading `len` bytes at `offset` of an NBD URI.
fn nbd_range(uri: &str, offset: u64, len: u64) -> String {
    let rest = uri.strip_prefix("nbd://").expect("an nbd:// URI");
    let (hostport, export) = rest.split_once('/').unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap();
    format!(
        r#"json:{{"driver":"raw","offset":{offset},"size":{len},"file":{{"driver":"nbd","server":{{"type":"inet","host":"{host}","port":"{port}"}},"export":"{export}"}}}}"#
    )
}

/// Read `len` bytes at `offset` with qemu-img; they must come back.
fn read_range(s: &Server, uri: &str, offset: u64, len: u64) -> Vec<u8> {
    let out = s.scratch().join(format!("read-{offset}-{len}.raw"));
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw"])
        .arg(nbd_range(uri, offset, len))
        .arg(&out));
    let data = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    data
}

fn log_len(s: &Server) -> usize {
    std::fs::read(s.dir.path().join("server.log"))
        .map(|l| l.len())
        .unwrap_or(0)
}

fn log_since(s: &Server, from: usize) -> String {
    let log = std::fs::read(s.dir.path().join("server.log")).unwrap();
    String::from_utf8_lossy(&log[from..]).to_string()
}

/// Run one qemu-io command on `uri` that must fail with EIO; the server's
/// log must name an integrity failure of chunk `chunk` of `vol` for `why`.
fn assert_tampered(s: &Server, uri: &str, cmd: &str, vol: Id, chunk: u64, why: &str) {
    let from = log_len(s);
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", cmd, uri])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("failed: Input/output error"),
        "`{cmd}` over tampered chunk {chunk} must fail with EIO: {text}"
    );
    assert!(
        !text.contains(" bytes at offset"),
        "`{cmd}` over tampered chunk {chunk} completed: {text}"
    );
    let log = log_since(s, from);
    let line = log
        .lines()
        .find(|l| {
            l.contains(&format!(
                "chunk {chunk} of volume {vol} failed its integrity check"
            ))
        })
        .unwrap_or_else(|| {
            panic!("the server's log does not name the integrity failure of chunk {chunk}:\n{log}")
        });
    assert!(
        line.contains("integrity check failed") && line.contains(why),
        "chunk {chunk}: expected '{why}' in: {line}"
    );
}

fn random_bytes(s: &Server, len: u64, seed: u64) -> Vec<u8> {
    let p = s.scratch().join(format!("random-{seed}.raw"));
    random_file(&p, len, seed);
    let d = std::fs::read(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    d
}

/// Write `data` at `offset` of `uri` with qemu-io.
fn write_at(s: &Server, uri: &str, offset: u64, data: &[u8]) {
    let p = s.scratch().join(format!("write-{offset}.raw"));
    std::fs::write(&p, data).unwrap();
    run(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        &format!("write -s {} {offset} {}", p.display(), data.len()),
        uri,
    ]));
}

/// Fill a new disk of CHUNKS chunks with `image` and detach it.
fn disk_with(s: &Server, name: &str, image: &[u8]) -> String {
    let disk = s.create_disk(name, &format!("{}MiB", (CHUNKS * CHUNK) >> 20), "local-a");
    let uri = s.attach(&disk);
    let src = s.scratch().join(format!("{name}.raw"));
    std::fs::write(&src, image).unwrap();
    qemu_img_in(&src, "raw", &uri);
    s.cli(&["disk", "detach", &disk]);
    disk
}

/// Read every chunk of `disk`: the chunks in `tampered` must fail as
/// described, every other must read back as `image`.
fn check_disk(s: &Server, disk: &str, vol: Id, image: &[u8], tampered: &[(u64, &str)]) {
    let uri = s.attach(disk);
    for i in 0..CHUNKS {
        let off = i * CHUNK;
        match tampered.iter().find(|(c, _)| *c == i) {
            Some((_, why)) => {
                assert_tampered(s, &uri, &format!("read {off} {CHUNK}"), vol, i, why);
                // A small unaligned read inside the chunk fails too, and so
                // does one straddling into it from an intact chunk before it.
                assert_tampered(s, &uri, &format!("read {} 1000", off + 1001), vol, i, why);
                if i > 0 && !tampered.iter().any(|(c, _)| *c == i - 1) {
                    let cmd = format!("read {} 1000", off - 509);
                    assert_tampered(s, &uri, &cmd, vol, i, why);
                }
            }
            None => {
                let got = read_range(s, &uri, off, CHUNK);
                assert!(
                    got[..] == image[span(off, off + CHUNK)],
                    "intact chunk {i} of {disk} did not read back"
                );
            }
        }
    }
    s.cli(&["disk", "detach", disk]);
}

#[test]
fn tampered_objects_fail_their_reads_and_nothing_else() {
    require("qemu-io", "qemu-utils");
    require("qemu-img", "qemu-utils");
    let s = Server::start();
    let mut image = random_bytes(&s, CHUNKS * CHUNK, 0x7a3e_0001);
    let other_image = random_bytes(&s, CHUNKS * CHUNK, 0x7a3e_0002);
    let disk = disk_with(&s, "victim", &image);
    let other = disk_with(&s, "other", &other_image);
    let (vol, dek, first) = current_objects(&s, &disk);
    let (other_vol, other_dek, theirs) = current_objects(&s, &other);
    assert_ne!(dek, other_dek, "two disks, two DEKs");
    assert_eq!(first.len() as u64, CHUNKS, "one object per chunk");

    // A second version of chunk 4; keep the first version's object bytes
    // (the server collects that object once nothing names it).
    let v2 = random_bytes(&s, CHUNK, 0x7a3e_0003);
    let uri = s.attach(&disk);
    write_at(&s, &uri, 4 * CHUNK, &v2);
    s.cli(&["disk", "detach", &disk]);
    image[span(4 * CHUNK, 5 * CHUNK)].copy_from_slice(&v2);
    let (_, _, now) = current_objects(&s, &disk);
    let stale = first[&4].clone();
    assert_ne!(
        now[&4].key, stale.key,
        "a rewritten chunk gets a new object"
    );

    // (a) swap chunks 1 and 2.
    s.overwrite_object(&now[&1].key, now[&2].bytes.clone());
    s.overwrite_object(&now[&2].key, now[&1].bytes.clone());
    // (b) replay: chunk 4's first version under its current key.
    s.overwrite_object(&now[&4].key, stale.bytes);
    // (c) truncate: chunk 6 loses its tag, chunk 7 all but 20 bytes.
    let b6 = &now[&6].bytes;
    s.overwrite_object(&now[&6].key, b6[..b6.len() - 16].to_vec());
    s.overwrite_object(&now[&7].key, now[&7].bytes[..20].to_vec());
    // (d) moved in from the other disk (another DEK): chunk 9 as is; chunk
    // 11 with its header rewritten to name this disk's DEK, the counter
    // its key names and chunk 11.
    s.overwrite_object(&now[&9].key, theirs[&9].bytes.clone());
    let mut forged = theirs[&11].bytes.clone();
    forged[8..16].copy_from_slice(&dek.value().to_be_bytes());
    forged[16..24].copy_from_slice(&now[&11].counter.to_be_bytes());
    forged[24..32].copy_from_slice(&11u64.to_be_bytes());
    s.overwrite_object(&now[&11].key, forged);

    let tampered: [(u64, &str); 7] = [
        (1, NOT_NAMED),
        (2, NOT_NAMED),
        (4, NOT_NAMED),
        (6, WRONG_LENGTH),
        (7, TOO_SHORT),
        (9, NOT_NAMED),
        (11, MODIFIED),
    ];
    check_disk(&s, &disk, vol, &image, &tampered);

    // A partial write into a tampered chunk must read it to patch it: it
    // fails too, and the chunk stays unreadable rather than half-replaced.
    let uri = s.attach(&disk);
    assert_tampered(
        &s,
        &uri,
        &format!("write -P 0x55 {} 4096", 2 * CHUNK + 512),
        vol,
        2,
        NOT_NAMED,
    );
    s.cli(&["disk", "detach", &disk]);
    check_disk(&s, &disk, vol, &image, &tampered);

    // The other disk, whose objects were copied, is untouched.
    check_disk(&s, &other, other_vol, &other_image, &[]);
}

#[test]
fn corrupted_chunk_map_references_fail_their_reads_and_nothing_else() {
    require("qemu-io", "qemu-utils");
    require("qemu-img", "qemu-utils");
    let s = Server::start();
    let first = random_bytes(&s, CHUNKS * CHUNK, 0x7a3e_0011);
    let disk = disk_with(&s, "victim", &first);
    let snap = s.cli(&["snapshot", "create", "--disk", &disk, "--name", "s0"]);
    let snap = snap["id"].as_str().unwrap().to_string();
    // Chunks 0..4 rewritten after the snapshot: the head has its own rows
    // for them, the snapshot's generation keeps the first objects.
    let mut image = first.clone();
    let second = random_bytes(&s, 4 * CHUNK, 0x7a3e_0012);
    let uri = s.attach(&disk);
    write_at(&s, &uri, 0, &second);
    s.cli(&["disk", "detach", &disk]);
    image[span(0, 4 * CHUNK)].copy_from_slice(&second);

    let (vol, dek, _) = current_objects(&s, &disk);
    let url = s.meta.url().to_string();
    block_on(async move {
        let meta = Meta::open(&url).await.unwrap();
        let head = meta.volume(vol).await.unwrap().head_generation;
        assert!(head > 0, "the snapshot moved the head on");
        let at_head = meta.resolve_view(vol, head).await.unwrap();
        let at_snap = meta.resolve_view(vol, head - 1).await.unwrap();
        let obj = |m: &HashMap<u64, ChunkEntry>, i: u64| match m[&i] {
            ChunkEntry::Object(c) => c,
            ChunkEntry::Zero => panic!("chunk {i} holds random data"),
        };
        assert_ne!(obj(&at_head, 0), obj(&at_snap, 0));
        // A counter never used for any object.
        let unused = meta.reserve_counters(dek, 1, None).await.unwrap().start;
        let entries = [
            // Another object of the same generation (chunk 2's).
            (1, ChunkEntry::Object(obj(&at_head, 2))),
            // Another generation's object of another chunk (chunk 0 as of
            // the snapshot).
            (3, ChunkEntry::Object(obj(&at_snap, 0))),
            // Another chunk's object, for a chunk the head had no row of.
            (8, ChunkEntry::Object(obj(&at_head, 9))),
            // An object that does not exist.
            (12, ChunkEntry::Object(unused)),
        ];
        meta.commit_chunks(vol, head, None, &entries).await.unwrap();
        meta.close().await;
    });
    let tampered: [(u64, &str); 4] = [
        (1, NOT_NAMED),
        (3, NOT_NAMED),
        (8, NOT_NAMED),
        (12, MISSING),
    ];
    check_disk(&s, &disk, vol, &image, &tampered);

    // The snapshot's view was not touched: a disk made from it reads back
    // as the disk was when it was taken.
    let copy = s.cli(&[
        "disk",
        "create",
        "--name",
        "copy",
        "--zone",
        "local-a",
        "--from-snapshot",
        &snap,
    ]);
    let copy = copy["id"].as_str().unwrap().to_string();
    let (copy_vol, _, _) = current_objects(&s, &copy);
    check_disk(&s, &copy, copy_vol, &first, &[]);
}
