//! A golden image launched into 50 disks in 3 accounts, all written at
//! once through NBD: each disk writes under a data key of its own (no
//! shared nonce counter or key row between them), and every disk reads
//! back the image with its own writes on top.

use crate::common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Instant;

use coffer_types::Id;
use common::*;

const DISKS: usize = 50;

#[test]
fn a_golden_image_launched_into_50_disks_in_3_accounts_written_at_once() {
    let s = Server::start();
    // The golden disk: 8 MiB of random bytes, imaged.
    let img = s.scratch().join("golden.raw");
    random_file(&img, 8 << 20, 50);
    let golden = std::fs::read(&img).unwrap();
    let disk = s.create_disk("golden", "8MiB", "local-a");
    let uri = s.attach(&disk);
    qemu_img_in(&img, "raw", &uri);
    s.cli(&["disk", "detach", &disk]);
    let image = s.cli(&["image", "create", "--name", "golden", "--disk", &disk])["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Three accounts; the admin launches into each (an account's Owner
    // would do the same with its own profile).
    let mut accounts = vec![
        s.cli(&["whoami"])["account_id"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    for n in ["a2", "a3"] {
        accounts.push(
            s.cli(&["account", "create", "--name", n])["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut disks = vec![];
    for i in 0..DISKS {
        let acct = &accounts[i % accounts.len()];
        let made = s.cli(&[
            "disk",
            "create",
            "--from-image",
            &image,
            "--zone",
            "local-b",
            "--name",
            &format!("vm{i}"),
            "--account",
            acct,
        ]);
        let d = made.as_array().unwrap()[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(made[0]["account_id"], acct.as_str());
        disks.push(d);
    }
    let uris: Vec<String> = disks.iter().map(|d| s.attach(d)).collect();

    // Every disk writes 1 MiB of its own pattern at 1 MiB, all at once.
    let started = Instant::now();
    let writers: Vec<_> = uris
        .iter()
        .enumerate()
        .map(|(i, u)| {
            Command::new("qemu-io")
                .args(["-f", "raw", "-c"])
                .arg(format!("write -q -P {} 1M 1M", pattern(i)))
                .arg("-c")
                .arg("flush")
                .arg(u)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut w in writers {
        assert!(w.wait().unwrap().success(), "a writer failed");
    }
    let took = started.elapsed();
    eprintln!(
        "{DISKS} disks from one image, in {} accounts, written at once through NBD: {:.2} s",
        accounts.len(),
        took.as_secs_f64()
    );

    // Each disk: the image, with its own MiB on top.
    for (i, (d, u)) in disks.iter().zip(&uris).enumerate() {
        let out = s.scratch().join(format!("{d}.raw"));
        qemu_img_out(u, &out);
        let got = std::fs::read(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        assert_eq!(got.len(), golden.len(), "{d}");
        assert!(
            got[..1 << 20] == golden[..1 << 20],
            "{d}: the image before its write"
        );
        assert!(
            got[1 << 20..2 << 20].iter().all(|b| *b == pattern(i)),
            "{d}: its own write"
        );
        assert!(
            got[2 << 20..] == golden[2 << 20..],
            "{d}: the image after its write"
        );
        s.cli(&["disk", "detach", d]);
    }

    // No counter row is shared: each disk's volume writes under a data key
    // of its own, none of them the image's.
    let (deks, image_dek) = block_on(async {
        let meta = coffer_meta::Meta::open(s.meta.url()).await.unwrap();
        let mut deks = HashSet::new();
        for d in &disks {
            let row = meta.disk(d.parse::<Id>().unwrap()).await.unwrap().unwrap();
            deks.insert(meta.volume(row.volume_id).await.unwrap().dek_id);
        }
        let golden_row = meta
            .disk(disk.parse::<Id>().unwrap())
            .await
            .unwrap()
            .unwrap();
        let image_dek = meta.volume(golden_row.volume_id).await.unwrap().dek_id;
        (deks, image_dek)
    });
    eprintln!("{} distinct write data keys for {DISKS} disks", deks.len());
    assert_eq!(deks.len(), DISKS, "two disks share a write data key");
    assert!(!deks.contains(&image_dek));
    s.cli(&["admin", "fsck", "--deep"]);
    s.assert_no_panic();
}

fn pattern(i: usize) -> u8 {
    u8::try_from(0x20 + i).unwrap()
}
