//! A real Linux guest on a Coffer disk: an ext4 filesystem made on the host
//! and written into a disk over NBD (qemu-img), then a Linux kernel booted
//! by qemu-system-x86_64 (TCG, no network) with that disk as its virtio
//! block device `/dev/vda`, over the same NBD export. The guest reads the
//! host's file (content and SHA-256 as the guest's own tools see them),
//! writes one of its own and syncs; read back out over NBD after qemu has
//! exited, the disk holds the guest's file. See `common/guest.rs` for the
//! harness and `.ci/guest-setup.sh` for what it needs.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::guest::{boot, make_ext4, require_guest};
use common::{Server, qemu_img_in, qemu_img_out, require, run, sha256};

/// A boot takes ~10 s here; this bounds a hang, not a slow machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// 16 random bytes, as hex.
fn random_token() -> String {
    let mut b = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
    hex::encode(b)
}

#[test]
fn guest_boots_from_a_coffer_disk() {
    require_guest();
    require("qemu-img", "qemu-utils");
    let token = random_token();
    let hello = format!("hello from the host\n{token}\n");
    let written = format!("written by the guest {token}\n");

    let s = Server::start();
    let disk = s.create_disk("guest-root", "64MiB", "local-a");
    let uri = s.attach(&disk);

    // The filesystem, made on the host and written into the disk.
    let img = s.scratch().join("fs.img");
    make_ext4(&img, 64, &[("hello.txt", hello.as_bytes())]);
    qemu_img_in(&img, "raw", &uri);
    let hello_file = s.scratch().join("hello.txt");
    std::fs::write(&hello_file, &hello).unwrap();
    let hello_sha = sha256(&hello_file);

    // The guest, on the same export: reads the host's file, writes its own.
    let script = format!(
        "cat hello.txt\n\
         sha256sum hello.txt\n\
         printf '%s\\n' 'written by the guest {token}' > written.txt\n\
         sync\n"
    );
    let started = Instant::now();
    let out = boot(&uri, &script, BOOT_TIMEOUT);
    eprintln!(
        "guest: booted, ran the script and powered off in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        out,
        format!("{hello}{hello_sha}  hello.txt\n"),
        "what the guest read from the Coffer disk"
    );

    // The guest's file, read back out of the disk over NBD.
    let back = s.scratch().join("back.img");
    qemu_img_out(&uri, &back);
    let got = run(Command::new("debugfs")
        .args(["-R", "cat /written.txt"])
        .arg(&back));
    assert_eq!(got, written, "the file the guest wrote, read back");

    // And nowhere in the store in the clear.
    for (key, bytes) in s.objects() {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "object {key} holds the token in the clear"
        );
    }

    s.cli(&["disk", "detach", &disk]);
    s.assert_no_panic();
}
