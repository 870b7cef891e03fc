//! Encryption at rest, checked from outside: no plaintext of written data,
//! no token, anywhere under the data dir; a flipped byte in any stored
//! object fails the read of that chunk (EIO) and nothing else.

use crate::common;

use std::collections::HashSet;
use std::process::Command;

use common::*;

const CHUNK: u64 = 256 * 1024;

/// A 4 KiB block of recognisable text with a counter: the plaintext pattern.
fn pattern_block() -> Vec<u8> {
    let mut b = Vec::with_capacity(4096);
    let mut i = 0u32;
    while b.len() < 4096 {
        b.extend_from_slice(format!("COFFER-PLAINTEXT-MARKER-{i:06}|").as_bytes());
        i += 1;
    }
    b.truncate(4096);
    b
}

#[test]
fn no_plaintext_or_token_at_rest() {
    require("qemu-img", "qemu-utils");
    let s = Server::start();
    let disk = s.create_disk("secret", "16MiB", "local-a");
    let uri = s.attach(&disk);
    let block = pattern_block();
    let src = s.scratch().join("pattern.raw");
    std::fs::write(&src, block.repeat(2048)).unwrap(); // 8 MiB
    qemu_img_in(&src, "raw", &uri);
    let export = uri.rsplit('/').next().unwrap().to_string();
    s.cli(&["snapshot", "create", "--disk", &disk, "--name", "s"]);
    s.cli(&["disk", "detach", &disk]);

    // Every 32-byte window of the pattern's 4 KiB period (the data repeats).
    let doubled = block.repeat(2);
    let windows: HashSet<&[u8]> = (0..4096).map(|i| &doubled[i..i + 32]).collect();
    let token = s.admin_token().into_bytes();
    let mut scanned = 0u64;
    for f in files_under(&s.data_dir()) {
        let data = std::fs::read(&f).unwrap();
        scanned += data.len() as u64;
        if let Some(pos) = data.windows(32).position(|w| windows.contains(w)) {
            panic!(
                "plaintext of disk data found in {} at offset {pos}",
                f.display()
            );
        }
        assert!(
            !data.windows(export.len()).any(|w| w == export.as_bytes()),
            "the NBD export token is stored in plaintext in {}",
            f.display()
        );
        // No file of the data dir holds the admin token, not even one of
        // its own: the token lives in the operator's CLI profile only.
        assert!(
            !data.windows(token.len()).any(|w| w == &token[..]),
            "the admin token is stored in plaintext in {}",
            f.display()
        );
    }
    // With an S3 store, every object in the bucket too.
    if s.store.url().is_some() {
        for (key, data) in s.objects() {
            assert!(
                !data.windows(32).any(|w| windows.contains(w)),
                "plaintext of disk data found in S3 object {key}"
            );
            scanned += data.len() as u64;
        }
    }
    // With PostgreSQL metadata, every row of the database too.
    let db = s.meta.contents();
    if s.meta.is_external() {
        assert!(db.len() > 1000, "the metadata database must hold rows");
    }
    assert!(
        !db.windows(32).any(|w| windows.contains(w)),
        "plaintext of disk data found in the metadata database"
    );
    assert!(
        !db.windows(token.len()).any(|w| w == &token[..])
            && !db.windows(export.len()).any(|w| w == export.as_bytes()),
        "a token is stored in plaintext in the metadata database"
    );
    scanned += db.len() as u64;
    assert!(
        scanned > 8 << 20,
        "scanned only {scanned} bytes: the data must be somewhere"
    );
    let log = std::fs::read(s.dir.path().join("server.log")).unwrap();
    assert!(
        !log.windows(token.len()).any(|w| w == &token[..]),
        "admin token in the server log"
    );
    assert!(
        !log.windows(export.len()).any(|w| w == export.as_bytes()),
        "export token in the server log"
    );
    println!("scanned {scanned} bytes under the data dir: no plaintext, no token");
}

/// Chunk index bound in a stored object's header (bytes 24..32, big endian).
fn chunk_index(object: &[u8]) -> u64 {
    // A v2 chunk object: the chunk index is at 40 of the header.
    assert_eq!(&object[..5], b"CFRC\x02", "a format v2 object");
    u64::from_be_bytes(object[40..48].try_into().unwrap())
}

#[test]
fn a_flipped_byte_fails_that_chunk_only() {
    require("qemu-io", "qemu-utils");
    let s = Server::start();
    let disk = s.create_disk("victim", "4MiB", "local-a");
    let uri = s.attach(&disk);
    // 16 chunks, chunk i filled with byte i+1.
    let mut cmds = vec!["-f".to_string(), "raw".to_string()];
    for i in 0..16u64 {
        cmds.push("-c".into());
        cmds.push(format!("write -P {} {} {}", i + 1, i * CHUNK, CHUNK));
    }
    cmds.push(uri.clone());
    run(Command::new("qemu-io").args(&cmds));
    s.cli(&["disk", "detach", &disk]);
    let clean = s.cli(&["admin", "fsck", "--deep"]);
    assert_eq!(clean["ok"], true, "{clean}");
    assert_eq!(clean["objects_verified"], 16, "{clean}");

    let objects = s.objects();
    assert_eq!(objects.len(), 16, "one object per written chunk");
    let (victim, original) = objects
        .iter()
        .find(|(_, d)| chunk_index(d) == 5)
        .expect("object of chunk 5");
    let mut bytes = original.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    s.overwrite_object(victim, bytes);

    let uri = s.attach(&disk);
    for i in 0..16u64 {
        let out = Command::new("qemu-io")
            .args([
                "-f",
                "raw",
                "-c",
                &format!("read -P {} {} {}", i + 1, i * CHUNK, CHUNK),
                &uri,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if i == 5 {
            assert!(
                text.contains("Input/output error") || !out.status.success(),
                "tampered chunk 5 was returned as data: {text}"
            );
            assert!(
                !text.contains("read 262144/262144 bytes"),
                "tampered chunk read succeeded: {text}"
            );
        } else {
            assert!(
                text.contains("read 262144/262144 bytes")
                    && !text.contains("Pattern verification failed"),
                "chunk {i}: {text}"
            );
        }
    }
    // A read that merely overlaps the tampered sector (from the sector
    // before it) fails too.
    let slot_len = 4096 + 16;
    let sector = ((at - 64) / slot_len) as u64;
    let out = Command::new("qemu-io")
        .args([
            "-f",
            "raw",
            "-c",
            &format!("read {} 8192", 5 * CHUNK + sector * 4096 - 2048),
            &uri,
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("Input/output error"),
        "overlapping read of a tampered chunk: {text}"
    );
    let log = std::fs::read_to_string(s.dir.path().join("server.log")).unwrap();
    assert!(log.contains("integrity"), "the integrity failure is logged");

    // fsck: the plain check sees all objects present; the deep one finds
    // exactly the tampered object, and the command fails.
    let plain = s.cli(&["admin", "fsck"]);
    assert_eq!(plain["ok"], true, "{plain}");
    let out = s.cli_raw(&["admin", "fsck", "--deep", "--output", "json"]);
    assert!(
        !out.status.success(),
        "fsck --deep must fail on a tampered object"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report}");
    assert_eq!(findings[0]["code"], "ObjectNotAuthentic");
    assert!(
        findings[0]["detail"]
            .as_str()
            .unwrap()
            .contains("(chunk 5)"),
        "{report}"
    );
    // A missing object is found without --deep.
    s.delete_object(victim);
    let err = s.cli_err(&["admin", "fsck"]);
    assert!(err.contains("fsck found problems"), "{err}");
    let out = s.cli_raw(&["admin", "fsck", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["objects_missing"], 1, "{report}");
}
