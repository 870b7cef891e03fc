//! A real Linux guest on a Coffer disk: an ext4 filesystem made on the host
//! and written into a disk over NBD (qemu-img), then a Linux kernel booted
//! by qemu-system-x86_64 (TCG, no network) with that disk as its virtio
//! block device `/dev/vda`, over the same NBD export. The guest reads the
//! host's file (content and SHA-256 as the guest's own tools see them),
//! writes one of its own and syncs; read back out over NBD after qemu has
//! exited, the disk holds the guest's file. See `common/guest.rs` for the
//! harness and `.ci/guest-setup.sh` for what it needs.
//!
//! The second guest boots from a disk an account of *another tenant* made
//! from an image shared with it under the owner's customer-managed key,
//! re-encrypted under the recipient's own key (seed 002's W2.3 and W2.4
//! across tenants, under a tenant policy that allows cross-tenant key
//! grants), and reads the files the owner wrote.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::guest::{boot, make_ext4, require_guest};
use common::{Server, qemu_img_in, qemu_img_out, require, run, sha256};
use serde_json::Value;

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

fn id_of(v: &Value, field: &str) -> String {
    v.pointer(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .to_string()
}

/// `coffer --profile P ARGS --output json`.
fn cli_as(s: &Server, profile: &str, args: &[&str]) -> Value {
    let mut a = vec!["--profile", profile];
    a.extend_from_slice(args);
    s.cli(&a)
}

/// A vault with purge protection, a key, and a disk encryption set whose
/// identity may use the key, made by `profile`; returns (key id, set name).
fn customer_key(s: &Server, profile: &str, prefix: &str) -> (String, String) {
    let vault = format!("{prefix}-keys");
    cli_as(
        s,
        profile,
        &[
            "vault",
            "create",
            "--name",
            &vault,
            "--purge-protection",
            "--retention-days",
            "7",
        ],
    );
    let key = id_of(
        &cli_as(
            s,
            profile,
            &["key", "create", "--vault", &vault, "--name", "k"],
        ),
        "/id",
    );
    let set = format!("{prefix}-des");
    let made = cli_as(
        s,
        profile,
        &["encryption-set", "create", "--name", &set, "--key", &key],
    );
    cli_as(
        s,
        profile,
        &[
            "role",
            "assignment",
            "create",
            "--principal",
            &id_of(&made, "/identity_id"),
            "--role",
            "Key Vault Crypto Service Encryption User",
            "--scope",
            &key,
        ],
    );
    (key, set)
}

#[test]
fn guest_boots_from_another_tenants_image_reencrypted_under_its_own_key() {
    require_guest();
    require("qemu-img", "qemu-utils");
    let token = random_token();
    let hello = format!("golden image of the owner\n{token}\n");
    let s = Server::start();

    // The owner (the admin's account, tenant 1): a golden image under its
    // customer-managed key, its filesystem written over NBD.
    let (owner_key, owner_set) = customer_key(&s, "default", "owner");
    let disk = id_of(
        &s.cli(&[
            "disk",
            "create",
            "--name",
            "golden",
            "--size",
            "64MiB",
            "--zone",
            "local-a",
            "--encryption-set",
            &owner_set,
        ]),
        "/id",
    );
    let uri = s.attach(&disk);
    let img = s.scratch().join("fs.img");
    make_ext4(&img, 64, &[("hello.txt", hello.as_bytes())]);
    qemu_img_in(&img, "raw", &uri);
    s.cli(&["disk", "detach", &disk]);
    let hello_file = s.scratch().join("hello.txt");
    std::fs::write(&hello_file, &hello).unwrap();
    let hello_sha = sha256(&hello_file);
    let image = id_of(
        &s.cli(&["image", "create", "--name", "golden", "--disk", &disk]),
        "/id",
    );
    let my_tenant = id_of(&s.cli(&["whoami"]), "/tenant_id");

    // The recipient: Bob, Owner of an account of another tenant.
    let t2 = id_of(&s.cli(&["tenant", "create", "--name", "globex"]), "/id");
    let acct_b = id_of(
        &s.cli(&["account", "create", "--name", "g-main", "--tenant", &t2]),
        "/id",
    );
    let bob = id_of(
        &s.cli(&[
            "principal",
            "create",
            "--name",
            "bob",
            "--account",
            &acct_b,
            "--role",
            "Owner",
            "--scope",
            &acct_b,
        ]),
        "/principal/id",
    );
    s.cli(&[
        "token",
        "create",
        "--principal",
        &bob,
        "--expires-in",
        "1d",
        "--save-profile",
        "bob",
    ]);

    // Across tenants, by default: no grant of the key, no share.
    let grant = [
        "key",
        "grant",
        "create",
        &owner_key,
        "--grantee",
        &bob,
        "--operations",
        "Describe,Decrypt,ReEncrypt,CreateGrant,GenerateDataKey",
    ];
    let err = s.cli_err(&grant);
    assert!(
        err.contains("CrossTenantGrant") && err.contains("tenant update"),
        "{err}"
    );
    let err = s.cli_err(&["image", "permission", "add", &image, "--account", &acct_b]);
    assert!(err.contains("CustomerKeyBoundary"), "{err}");

    // The owner's tenant allows cross-tenant key grants (AWS's behaviour);
    // then the grant, then the launch permission.
    let t = s.cli(&[
        "tenant",
        "update",
        &my_tenant,
        "--allow-cross-tenant-key-grants",
        "true",
    ]);
    assert_eq!(t["allow_cross_tenant_key_grants"], true, "{t}");
    s.cli(&grant);
    s.cli(&["image", "permission", "add", &image, "--account", &acct_b]);
    let seen = cli_as(&s, "bob", &["image", "show", &image]);
    assert_eq!(seen["creation_method"], "shared", "{seen}");

    // Bob's copy under his own key, and a disk of his from it.
    let (bob_key, bob_set) = customer_key(&s, "bob", "bob");
    let copy = cli_as(
        &s,
        "bob",
        &[
            "image",
            "copy",
            &image,
            "--name",
            "golden-mine",
            "--encryption-set",
            &bob_set,
            "--wait",
        ],
    );
    assert_eq!(copy["state"], "available", "{copy}");
    assert_eq!(copy["account_id"], acct_b.as_str());
    assert_eq!(
        copy["snapshots"][0]["encryption"]["key_id"],
        bob_key.as_str()
    );
    cli_as(
        &s,
        "bob",
        &[
            "disk",
            "create",
            "--from-image",
            &id_of(&copy, "/id"),
            "--zone",
            "local-a",
            "--name",
            "vm",
        ],
    );
    let vm = cli_as(&s, "bob", &["disk", "show", "vm-root"]);
    assert_eq!(vm["account_id"], acct_b.as_str());
    assert_eq!(vm["encryption"]["key_id"], bob_key.as_str(), "{vm}");
    let vm_id = id_of(&vm, "/id");

    // The guest boots from Bob's disk (attached by Bob) and reads the
    // owner's file.
    let uri = id_of(&cli_as(&s, "bob", &["disk", "attach", &vm_id]), "/uri");
    let started = Instant::now();
    let out = boot(&uri, "cat hello.txt\nsha256sum hello.txt\n", BOOT_TIMEOUT);
    eprintln!(
        "guest (another tenant's re-encrypted copy): booted and read in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(out, format!("{hello}{hello_sha}  hello.txt\n"));
    cli_as(&s, "bob", &["disk", "detach", &vm_id]);
    for (key, bytes) in s.objects() {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "object {key} holds the token in the clear"
        );
    }
    s.assert_no_panic();
}
