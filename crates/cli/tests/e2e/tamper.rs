//! Tampering with stored data, end to end: a real `coffer serve`, real NBD
//! clients (qemu-io, qemu-img), objects changed behind the server's back in
//! this run's object store (a directory, or an S3 bucket) and chunk-map
//! references changed in this run's metadata store (SQLite or PostgreSQL).
//!
//! The disks are written a whole chunk at a time, so each chunk is one
//! format v2 chunk object: 4 KiB slots, each sealed under the object's own
//! key for its chunk, sector and slot. Whole objects swapped, replayed (an
//! older version of the same chunk put back under the new key), truncated,
//! deleted, and moved in from another disk (as is, and with its header
//! rewritten to the victim's); slots flipped, swapped and moved inside an
//! object; chunk-map extents pointed at another object of the same
//! generation, at another generation's object of another chunk, at an
//! object that does not exist, and at the right object from the wrong
//! slot. Every read of a tampered sector must fail with EIO, never return
//! data, and the server's log must name the chunk, the volume and why;
//! every other sector must read back exactly.

use crate::common;

use std::collections::HashMap;
use std::ops::Range;
use std::process::Command;
use std::sync::Arc;

use coffer_crypto::object::{self, HEADER_LEN, ObjectHeader};
use coffer_meta::{ChunkMap, Extent, Loc, Meta, ObjectRef};
use coffer_store::{object_key, parse_object_key};
use coffer_types::Id;
use common::*;

const CHUNK: u64 = 256 * 1024;
const CHUNKS: u64 = 16;
const SECTOR: u64 = 4096;
/// Sectors (and so slots of a chunk object) per chunk.
const SECTORS: u32 = 64;
const _: () = assert!(SECTORS as u64 * SECTOR == CHUNK);

const MODIFIED: &str = "object slot was modified, moved, replayed or sealed under another key";
const TRUNCATED: &str = "object is shorter than the chunk map says: truncated";
const MISSING: &str = "its object is missing from the store";

/// One stored chunk object of a disk.
#[derive(Clone)]
struct Obj {
    key: String,
    bytes: Vec<u8>,
    reference: Arc<ObjectRef>,
}

impl Obj {
    /// Where slot `i` lies in the object's bytes.
    fn slot(&self, i: u32) -> Range<usize> {
        let h = ObjectHeader::decode(&self.bytes).unwrap();
        span(h.slot_offset(i), h.slot_offset(i + 1))
    }
}

/// `(chunk, sectors, why)`: those sectors of the chunk were tampered with;
/// every read touching one must fail, and the server's log must say why.
type Tampered<'a> = (u64, Range<u32>, &'a str);

/// All of chunk `chunk` tampered with, for `why`.
fn whole(chunk: u64, why: &str) -> Tampered<'_> {
    (chunk, 0..SECTORS, why)
}

/// Byte offsets `a..b` as a slice range.
fn span(a: u64, b: u64) -> Range<usize> {
    usize::try_from(a).unwrap()..usize::try_from(b).unwrap()
}

/// The chunk object that holds chunk `idx` in view `map`. Written whole, a
/// chunk is one extent: all its sectors, in order, in the slots of one
/// chunk object of its own.
fn chunk_object(map: &ChunkMap, idx: u64) -> Arc<ObjectRef> {
    let extents = map
        .get(&idx)
        .unwrap_or_else(|| panic!("chunk {idx} holds random data, not zeroes"));
    let [
        Extent {
            first: 0,
            count: SECTORS,
            loc: Loc::Obj { obj, first_slot: 0 },
        },
    ] = &extents[..]
    else {
        panic!("chunk {idx} is not one whole chunk object: {extents:?}");
    };
    assert!(
        obj.kind == object::Kind::Chunk as u8 && obj.index == idx && obj.slots == SECTORS,
        "chunk {idx} is not a chunk object of its own: {obj:?}"
    );
    Arc::clone(obj)
}

/// The disk's volume id and DEK id, and the objects its head names, by
/// chunk index (read through the metadata store and the object store;
/// every stored object checked against its reference).
fn current_objects(s: &Server, disk: &str) -> (Id, Id, HashMap<u64, Obj>) {
    let url = s.meta.url().to_string();
    let disk: Id = disk.parse().unwrap();
    let store = s.object_store();
    block_on(async move {
        let meta = Meta::open(&url).await.unwrap();
        let vol = meta.disk(disk).await.unwrap().unwrap().volume_id;
        let row = meta.volume(vol).await.unwrap();
        let map = meta.resolve_view(vol, row.head_generation).await.unwrap();
        let mut out = HashMap::new();
        for &idx in map.keys() {
            let reference = chunk_object(&map, idx);
            let key = object_key(reference.writer.value(), &reference.id);
            assert_eq!(
                parse_object_key(&key),
                Some((reference.writer.value(), reference.id))
            );
            let bytes = store.get(&key).await.unwrap().to_vec();
            let want = ObjectHeader {
                kind: object::Kind::Chunk,
                deks: (reference.dek.value(), reference.dek2.map(|d| d.value())),
                object_id: reference.id,
                index: idx,
                slots: SECTORS,
            };
            assert_eq!(
                ObjectHeader::decode(&bytes).unwrap(),
                want,
                "{key} is chunk {idx}'s object"
            );
            assert_eq!(bytes.len() as u64, want.object_len(), "{key} is whole");
            out.insert(
                idx,
                Obj {
                    key,
                    bytes,
                    reference,
                },
            );
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
        .find(|l| l.contains("integrity check failed"))
        .unwrap_or_else(|| {
            panic!("`{cmd}`: the server's log names no integrity failure (chunk {chunk}):\n{log}")
        });
    assert!(
        line.contains(&format!(
            "chunk {chunk} of volume {vol} failed its integrity check"
        )) && line.contains(why),
        "`{cmd}`: expected chunk {chunk} of volume {vol} to fail for '{why}' in: {line}"
    );
}

fn random_bytes(s: &Server, len: u64, seed: u64) -> Vec<u8> {
    let p = s.scratch().join(format!("random-{seed}.raw"));
    random_file(&p, len, seed);
    let d = std::fs::read(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    d
}

/// Write `data` at `offset` of `uri` with qemu-io (one request).
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

/// Read every sector of `disk`: each read touching a sector of `tampered`
/// must fail as described (naming its chunk), every other sector must
/// read back as `image`.
fn check_disk(s: &Server, disk: &str, vol: Id, image: &[u8], tampered: &[Tampered<'_>]) {
    // Whether absolute sector `abs` was tampered with.
    let bad = |abs: u64| {
        let (c, sec) = (abs / u64::from(SECTORS), abs % u64::from(SECTORS));
        tampered
            .iter()
            .any(|(tc, r, _)| *tc == c && r.contains(&u32::try_from(sec).unwrap()))
    };
    let uri = s.attach(disk);
    for i in 0..CHUNKS {
        let off = i * CHUNK;
        let mine: Vec<&Tampered<'_>> = tampered.iter().filter(|t| t.0 == i).collect();
        if mine.is_empty() {
            let got = read_range(s, &uri, off, CHUNK);
            assert!(
                got[..] == image[span(off, off + CHUNK)],
                "intact chunk {i} of {disk} did not read back"
            );
            continue;
        }
        let why = mine[0].2;
        assert!(
            mine.iter()
                .all(|t| t.2 == why && !t.1.is_empty() && t.1.end <= SECTORS),
            "chunk {i}: one reason, sectors in the chunk"
        );
        assert_tampered(s, &uri, &format!("read {off} {CHUNK}"), vol, i, why);
        for (_, r, _) in mine {
            let (a, b) = (
                off + u64::from(r.start) * SECTOR,
                off + u64::from(r.end) * SECTOR,
            );
            // All of it, a small unaligned read inside it, and reads
            // straddling into it and out of it from intact sectors
            // (of this chunk, or of the chunks either side).
            assert_tampered(s, &uri, &format!("read {a} {}", b - a), vol, i, why);
            assert_tampered(s, &uri, &format!("read {} 1000", a + 1001), vol, i, why);
            let first = a / SECTOR;
            if first > 0 && !bad(first - 1) {
                let cmd = format!("read {} 1000", a - 509);
                assert_tampered(s, &uri, &cmd, vol, i, why);
            }
            let after = b / SECTOR;
            if after < CHUNKS * u64::from(SECTORS) && !bad(after) {
                let cmd = format!("read {} 1000", b - 491);
                assert_tampered(s, &uri, &cmd, vol, i, why);
            }
        }
        // Every intact run of sectors of the chunk reads back.
        let mut sec = 0;
        while sec < SECTORS {
            if bad(i * u64::from(SECTORS) + u64::from(sec)) {
                sec += 1;
                continue;
            }
            let start = sec;
            while sec < SECTORS && !bad(i * u64::from(SECTORS) + u64::from(sec)) {
                sec += 1;
            }
            let (a, b) = (
                off + u64::from(start) * SECTOR,
                off + u64::from(sec) * SECTOR,
            );
            let got = read_range(s, &uri, a, b - a);
            assert!(
                got[..] == image[span(a, b)],
                "intact sectors {start}..{sec} of tampered chunk {i} of {disk} did not read back"
            );
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
    assert_eq!(theirs.len() as u64, CHUNKS, "one object per chunk");
    assert!(
        first
            .values()
            .all(|o| o.reference.writer == vol && o.reference.dek == dek),
        "the disk's own volume wrote its objects under its DEK"
    );

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
    for i in (0..CHUNKS).filter(|i| *i != 4) {
        assert_eq!(now[&i].key, first[&i].key, "chunk {i} was not rewritten");
    }

    // Whole objects. (a) Swap chunks 1 and 2.
    s.overwrite_object(&now[&1].key, now[&2].bytes.clone());
    s.overwrite_object(&now[&2].key, now[&1].bytes.clone());
    // (b) Replay: chunk 4's first version under its current key.
    s.overwrite_object(&now[&4].key, stale.bytes);
    // (c) Truncate: chunk 6 by one byte (only its last slot is short),
    // chunk 7 to less than a header.
    let b6 = &now[&6].bytes;
    s.overwrite_object(&now[&6].key, b6[..b6.len() - 1].to_vec());
    s.overwrite_object(&now[&7].key, now[&7].bytes[..20].to_vec());
    // (d) Moved in from the other disk (another DEK): chunk 9 as is; chunk
    // 11 with its header rewritten to be this disk's chunk 11's header.
    s.overwrite_object(&now[&9].key, theirs[&9].bytes.clone());
    let mut forged = theirs[&11].bytes.clone();
    forged[..HEADER_LEN].copy_from_slice(&now[&11].bytes[..HEADER_LEN]);
    s.overwrite_object(&now[&11].key, forged);
    // (e) Deleted: chunk 15.
    s.delete_object(&now[&15].key);

    // Slots inside an object. (f) Chunk 12: one ciphertext bit of slot 5.
    let o = &now[&12];
    let mut b = o.bytes.clone();
    b[o.slot(5).start + 100] ^= 0x01;
    s.overwrite_object(&o.key, b);
    // (g) Chunk 13: slots 10 and 40 swapped.
    let o = &now[&13];
    let mut b = o.bytes.clone();
    b[o.slot(10)].copy_from_slice(&o.bytes[o.slot(40)]);
    b[o.slot(40)].copy_from_slice(&o.bytes[o.slot(10)]);
    s.overwrite_object(&o.key, b);
    // (h) Chunk 14: slot 20 copied over slot 21 (sector 20's data, sealed
    // where sector 21's belongs).
    let o = &now[&14];
    let mut b = o.bytes.clone();
    b[o.slot(21)].copy_from_slice(&o.bytes[o.slot(20)]);
    s.overwrite_object(&o.key, b);

    let mut tampered: Vec<Tampered<'_>> = vec![
        whole(1, MODIFIED),
        whole(2, MODIFIED),
        whole(4, MODIFIED),
        (6, SECTORS - 1..SECTORS, TRUNCATED),
        whole(7, TRUNCATED),
        whole(9, MODIFIED),
        whole(11, MODIFIED),
        (12, 5..6, MODIFIED),
        (13, 10..11, MODIFIED),
        (13, 40..41, MODIFIED),
        (14, 21..22, MODIFIED),
        whole(15, MISSING),
    ];
    check_disk(&s, &disk, vol, &image, &tampered);

    let uri = s.attach(&disk);
    // A write covering part of a tampered sector must read that sector to
    // patch it: it fails too, and changes nothing.
    assert_tampered(
        &s,
        &uri,
        &format!("write -P 0x55 {} 4096", 2 * CHUNK + 512),
        vol,
        2,
        MODIFIED,
    );
    // One covering parts of intact sectors next to a tampered one reads
    // only those, and succeeds.
    let at = 12 * CHUNK + 6 * SECTOR + 512;
    let patch = random_bytes(&s, SECTOR, 0x7a3e_0004);
    write_at(&s, &uri, at, &patch);
    image[span(at, at + SECTOR)].copy_from_slice(&patch);
    // One covering a whole tampered sector needs nothing of it: the sector
    // reads back as written from then on.
    let at = 14 * CHUNK + 21 * SECTOR;
    let patch = random_bytes(&s, SECTOR, 0x7a3e_0005);
    write_at(&s, &uri, at, &patch);
    image[span(at, at + SECTOR)].copy_from_slice(&patch);
    tampered.retain(|t| t.0 != 14);
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
        let obj = chunk_object;
        for i in 0..CHUNKS {
            assert_eq!(
                obj(&at_head, i) != obj(&at_snap, i),
                i < 4,
                "chunk {i}: only chunks 0..4 have new objects"
            );
        }
        let whole_chunk = |o: Arc<ObjectRef>| {
            vec![Extent {
                first: 0,
                count: SECTORS,
                loc: Loc::Obj {
                    obj: o,
                    first_slot: 0,
                },
            }]
        };
        // An object that was never stored: a fresh id under this volume.
        let nowhere = Arc::new(ObjectRef {
            id: object::new_object_id(),
            writer: vol,
            kind: object::Kind::Chunk as u8,
            index: 12,
            slots: SECTORS,
            dek,
            dek2: None,
        });
        let changes = vec![
            // Another object of the same generation (chunk 2's).
            (1, whole_chunk(obj(&at_head, 2))),
            // Another generation's object of another chunk (chunk 0 as of
            // the snapshot).
            (3, whole_chunk(obj(&at_snap, 0))),
            // Another chunk's object, for a chunk the head had no row of.
            (8, whole_chunk(obj(&at_head, 9))),
            // An object that does not exist.
            (12, whole_chunk(nowhere)),
            // The right object from the wrong slot: chunk 0's sectors 1..
            // one slot early, chunk 5's (no row at the head) 8..24 one late.
            (
                0,
                vec![Extent {
                    first: 1,
                    count: SECTORS - 1,
                    loc: Loc::Obj {
                        obj: obj(&at_head, 0),
                        first_slot: 0,
                    },
                }],
            ),
            (
                5,
                vec![Extent {
                    first: 8,
                    count: 16,
                    loc: Loc::Obj {
                        obj: obj(&at_head, 5),
                        first_slot: 9,
                    },
                }],
            ),
        ];
        meta.commit_extents(vol, head, None, &changes)
            .await
            .unwrap();
        // The head names them now; the snapshot's view is as it was.
        let now = meta.resolve_view(vol, head).await.unwrap();
        for (i, es) in &changes {
            if es[0].count == SECTORS {
                assert_eq!(&now[i], es, "chunk {i} at the head");
            }
        }
        assert_eq!(meta.resolve_view(vol, head - 1).await.unwrap(), at_snap);
        meta.close().await;
    });
    let tampered: [Tampered<'_>; 6] = [
        (0, 1..SECTORS, MODIFIED),
        whole(1, MODIFIED),
        whole(3, MODIFIED),
        (5, 8..24, MODIFIED),
        whole(8, MODIFIED),
        whole(12, MISSING),
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
    let (copy_vol, _, theirs) = current_objects(&s, &copy);
    assert_eq!(
        theirs.len() as u64,
        CHUNKS,
        "the copy names every first object"
    );
    check_disk(&s, &copy, copy_vol, &first, &[]);
}
