//! The root key in an HSM, end to end: a SoftHSM2 token made in the test's
//! temp dir, `coffer serve --root-key-uri pkcs11:…` with the PIN in a file,
//! data written through NBD that reads back after a restart; then the token
//! removed, the wrong key, the wrong PIN and a key file given as well, each
//! refused before the server listens with a message that says what to do;
//! and no root key file, PIN or plaintext anywhere in the data.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const PIN: &str = "HsmPin-7c1e-4b2a";

fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn uri(module: &Path, object: &str, pin_file: &Path) -> String {
    format!(
        "pkcs11:token=coffer;object={object}?module-path={}&pin-source=file:{}",
        module.display(),
        pin_file.display()
    )
}

/// Point every later launch of `s` at another root key URI.
fn set_uri(s: &mut Server, uri: &str) {
    let at = s
        .fixed_args
        .iter()
        .position(|a| a == "--root-key-uri")
        .unwrap();
    s.fixed_args[at + 1] = uri.to_string();
}

/// Stop the server with SIGTERM and wait for a clean exit.
fn stop(s: &mut Server) {
    let mut child = s.child.take().expect("a running server");
    run(Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "server exited with {status} on SIGTERM");
            return;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn qemu_io(uri: &str, cmds: &[&str]) -> String {
    let mut args = vec!["-f", "raw"];
    for c in cmds {
        args.extend(["-c", c]);
    }
    args.push(uri);
    let out = run(Command::new("qemu-io").args(&args));
    assert!(!out.contains("Pattern verification failed"), "{out}");
    out
}

fn read_back(s: &Server, disk: &str) {
    let uri = s.attach(disk);
    let out = qemu_io(&uri, &["read -P 0x5a 0 1M", "read -P 0xa5 3M 512k"]);
    assert!(
        out.contains("read 1048576/1048576 bytes") && out.contains("read 524288/524288 bytes"),
        "{out}"
    );
    s.cli(&["disk", "detach", disk]);
}

#[test]
fn root_key_in_softhsm() {
    require("softhsm2-util", "softhsm2");
    require("qemu-io", "qemu-utils");
    let module = coffer_testkit::softhsm::module();
    // The HSM's own directory, apart from the server's data dir.
    let hsm = tempfile::tempdir().unwrap();
    let conf = coffer_testkit::softhsm::init_token(&hsm.path().join("softhsm"), "coffer", PIN);
    let pin_file = hsm.path().join("pin");
    private_file(&pin_file, &format!("{PIN}\n"));
    let good = uri(&module, "coffer-root", &pin_file);

    let mut s = Server::start_with(
        &["--root-key-uri", &good],
        &[("SOFTHSM2_CONF", conf.to_str().unwrap())],
    );
    let log = std::fs::read_to_string(s.dir.path().join("server.log")).unwrap();
    assert!(
        log.contains("created a new root key in the PKCS#11 token"),
        "first start generates the key in the token:\n{log}"
    );

    let disk = s.create_disk("vault", "16MiB", "local-a");
    let uri_nbd = s.attach(&disk);
    qemu_io(&uri_nbd, &["write -P 0x5a 0 1M", "write -P 0xa5 3M 512k"]);
    s.cli(&["disk", "detach", &disk]);

    // Restart: the key is found in the token again and the data reads back.
    stop(&mut s);
    s.launch(&[]);
    let log = std::fs::read_to_string(s.dir.path().join("server.log")).unwrap();
    assert_eq!(
        log.matches("created a new root key").count(),
        1,
        "a restart must find the key, not make another:\n{log}"
    );
    read_back(&s, &disk);
    stop(&mut s);

    // The token removed (an empty token directory): refused before listening,
    // naming the token and what to check.
    let empty = coffer_testkit::softhsm::conf(&hsm.path().join("empty"));
    let mut cmd = s.serve_command(&[]);
    cmd.env("SOFTHSM2_CONF", &empty);
    let err = expect_refused(&s, "token-removed", cmd);
    assert!(
        err.contains("PKCS#11 token `coffer` not found in module")
            && err.contains("(tokens present: none)")
            && err.contains("check that the HSM is connected")
            && err.contains("SOFTHSM2_CONF"),
        "token removed: {err}"
    );

    // Another key of the same token: the metadata's wrapped keys are bound
    // to the one key, so this is refused too.
    set_uri(&mut s, &uri(&module, "another-root", &pin_file));
    let err = expect_refused(&s, "other-key", s.serve_command(&[]));
    assert!(
        err.contains("is not the one this deployment's keys were created with"),
        "another key: {err}"
    );

    // The wrong PIN.
    let wrong = hsm.path().join("wrong-pin");
    private_file(&wrong, "0000");
    set_uri(&mut s, &uri(&module, "coffer-root", &wrong));
    let err = expect_refused(&s, "wrong-pin", s.serve_command(&[]));
    assert!(
        err.contains("PKCS#11 token `coffer`") && err.contains("the PIN was rejected"),
        "wrong PIN: {err}"
    );

    // A key file as well as the URI: refused, and no key file is made.
    set_uri(&mut s, &good);
    let key_file = s.root_key();
    let err = expect_refused(
        &s,
        "both",
        s.serve_command(&["--root-key-file", key_file.to_str().unwrap()]),
    );
    assert!(
        err.contains("--root-key-uri") && err.contains("use one"),
        "URI and key file: {err}"
    );

    // No root key file anywhere: not the harness's path, not the default.
    let key_files: Vec<PathBuf> = files_under(s.dir.path())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "root.key"))
        .collect();
    assert!(
        key_files.is_empty(),
        "a root key file was created: {key_files:?}"
    );
    assert!(!s.root_key().exists());

    // The failed starts changed nothing: the data still reads back.
    s.launch(&[]);
    read_back(&s, &disk);

    // Neither the PIN nor plaintext in the data dir, the objects, the
    // metadata or the server's log.
    let pattern = [0x5au8; 64];
    let mut scanned = 0usize;
    let mut check = |what: &str, data: &[u8]| {
        scanned += data.len();
        assert!(
            !data.windows(PIN.len()).any(|w| w == PIN.as_bytes()),
            "the PIN is in {what}"
        );
        assert!(
            !data.windows(pattern.len()).any(|w| w == pattern),
            "plaintext of the disk is in {what}"
        );
    };
    for f in files_under(&s.data_dir()) {
        check(&f.display().to_string(), &std::fs::read(&f).unwrap());
    }
    for (key, data) in s.objects() {
        check(&format!("object {key}"), &data);
    }
    check("the metadata", &s.meta.contents());
    check(
        "the server log",
        &std::fs::read(s.dir.path().join("server.log")).unwrap(),
    );
    assert!(scanned > 1 << 20, "scanned only {scanned} bytes");
}

/// Customer keys kept in a PKCS#11 token (the third key backend): a vault
/// created on a SoftHSM2 token, its keys generated in the token (each
/// version an AES-256 key that never leaves it), a disk under a set of
/// such a key written and read, a rotation that makes the next version in
/// the token and re-wraps the disk's data key, a restart that finds the
/// keys in the token again, and the rules: no import, no encryption
/// context, no PIN in the data dir.
#[test]
fn customer_keys_in_softhsm() {
    require("softhsm2-util", "softhsm2");
    require("qemu-io", "qemu-utils");
    let module = coffer_testkit::softhsm::module();
    let hsm = tempfile::tempdir().unwrap();
    let conf = coffer_testkit::softhsm::init_token(&hsm.path().join("softhsm"), "keys", PIN);
    let pin_file = hsm.path().join("pin");
    private_file(&pin_file, &format!("{PIN}\n"));
    let token_uri = format!(
        "pkcs11:token=keys?module-path={}&pin-source=file:{}",
        module.display(),
        pin_file.display()
    );
    let mut s = Server::start_with(&[], &[("SOFTHSM2_CONF", conf.to_str().unwrap())]);
    let v = s.cli(&[
        "vault",
        "create",
        "--name",
        "hsm",
        "--purge-protection",
        "--retention-days",
        "7",
        "--pkcs11-uri",
        &token_uri,
    ]);
    assert_eq!(v["external"]["kind"], "pkcs11", "{v}");
    let key = s.cli(&["key", "create", "--vault", "hsm", "--name", "disk-key"]);
    let key = key["id"].as_str().unwrap().to_string();
    // Material is the token's: no import, and no export to find.
    let material = s.scratch().join("aes.key");
    std::fs::write(&material, [7u8; 32]).unwrap();
    let err = s.cli_err(&[
        "key",
        "import",
        "--vault",
        "hsm",
        "--name",
        "imported",
        "--type",
        "AES256",
        "--material-file",
        material.to_str().unwrap(),
    ]);
    assert!(err.contains("PKCS#11 token"), "{err}");
    // Key operations through the token, without a context only.
    let ct = s.cli(&["key", "encrypt", &key, "--plaintext", "hello"]);
    let ct = ct["ciphertext"].as_str().unwrap().to_string();
    let pt = s.cli(&["key", "decrypt", &key, "--ciphertext", &ct]);
    assert_eq!(pt["plaintext"], "aGVsbG8=", "{pt}");
    let err = s.cli_err(&[
        "key",
        "encrypt",
        &key,
        "--plaintext",
        "hello",
        "--context",
        "c",
    ]);
    assert!(err.contains("no encryption context"), "{err}");

    let set = s.cli(&["encryption-set", "create", "--name", "des", "--key", &key]);
    let identity = set["identity_id"].as_str().unwrap().to_string();
    s.cli(&[
        "role",
        "assignment",
        "create",
        "--principal",
        &identity,
        "--role",
        "Key Vault Crypto Service Encryption User",
        "--scope",
        &key,
    ]);
    let disk = s.cli(&[
        "disk",
        "create",
        "--name",
        "data",
        "--size",
        "16MiB",
        "--zone",
        "local-a",
        "--encryption-set",
        "des",
    ]);
    let disk = disk["id"].as_str().unwrap().to_string();
    let uri_nbd = s.attach(&disk);
    qemu_io(&uri_nbd, &["write -P 0x5a 0 1M", "write -P 0xa5 3M 512k"]);
    s.cli(&["disk", "detach", &disk]);
    read_back(&s, &disk);

    // A rotation makes version 2 in the token and re-wraps the data key.
    assert_eq!(s.cli(&["key", "rotate", &key])["current_version"], 2);
    let waited = s.cli(&["encryption-set", "wait", "des", "--timeout", "60"]);
    assert_eq!(waited["rewrap"]["key_version"], 2, "{waited}");
    read_back(&s, &disk);

    let log = s.log();
    assert_eq!(
        log.matches("generated a customer key version in the PKCS#11 token")
            .count(),
        2,
        "versions 1 and 2 made in the token:\n{log}"
    );
    assert!(
        !log.contains("created a new root key in the PKCS#11 token"),
        "{log}"
    );

    // A restart finds every key version in the token again.
    stop(&mut s);
    s.launch(&[]);
    read_back(&s, &disk);
    let pt = s.cli(&["key", "decrypt", &key, "--ciphertext", &ct]);
    assert_eq!(
        pt["plaintext"], "aGVsbG8=",
        "version 1 still decrypts: {pt}"
    );

    // The PIN is nowhere in the data dir (it stays in its own file).
    for f in files_under(&s.data_dir()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(PIN.len()).any(|w| w == PIN.as_bytes()),
            "the PIN is in {}",
            f.display()
        );
    }
    s.assert_no_panic();
}
