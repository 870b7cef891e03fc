//! The root key file, end to end: a new deployment creates it; an existing
//! deployment whose key file is missing is refused before the server
//! listens, with a message that says the file is missing, where it looked
//! and what to do, and no key file is written; with the file restored the
//! same deployment starts and reads its data again.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;

/// Every file named `root.key` under `dir`.
fn key_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "root.key") {
                out.push(p);
            }
        }
    }
    out
}

fn server_log(s: &Server) -> String {
    std::fs::read_to_string(s.dir.path().join("server.log")).unwrap_or_default()
}

#[test]
fn a_new_data_dir_creates_the_root_key() {
    let s = Server::start();
    let key = s.root_key();
    let text = std::fs::read_to_string(&key).expect("the first start wrote the root key file");
    assert_eq!(text.trim().len(), 64, "64 hex digits");
    assert!(text.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        server_log(&s).matches("created a new root key").count(),
        1,
        "{}",
        server_log(&s)
    );
}

#[test]
fn an_existing_deployment_without_its_root_key_file_is_refused() {
    let mut s = Server::start();
    let disk = s.create_disk("kept", "16MiB", "local-a");
    s.stop();

    // The operator loses the key file (or points at the wrong path).
    let key = s.root_key();
    let backup = s.dir.path().join("backup.key");
    std::fs::rename(&key, &backup).unwrap();

    let stderr = expect_refused(&s, "refused", s.serve_command(&[]));
    // It says the file is missing, where it looked, and what to do.
    let looked = format!("the root key file {} is missing", key.display());
    assert!(stderr.contains(&looked), "no `{looked}` in:\n{stderr}");
    assert!(
        stderr.contains("this deployment already has keys")
            && stderr.contains("Restore the key file from your backup")
            && stderr.contains("--root-key-file"),
        "the message does not say what to do:\n{stderr}"
    );
    assert!(
        !stderr.contains("is not the one this deployment's keys were created with"),
        "refused only after making a new key:\n{stderr}"
    );
    // And it wrote no key, neither where it looked nor at the default path.
    assert!(!key.exists(), "a new root key file was written at {key:?}");
    assert_eq!(
        key_files(s.dir.path()),
        Vec::<PathBuf>::new(),
        "a root key file was written"
    );

    // The key restored: the deployment starts and its disk is there.
    std::fs::rename(&backup, &key).unwrap();
    s.launch(&[]);
    assert_eq!(s.cli(&["disk", "show", &disk])["id"], disk.as_str());
    assert_eq!(
        server_log(&s).matches("created a new root key").count(),
        1,
        "only the first start may create a key:\n{}",
        server_log(&s)
    );
}
