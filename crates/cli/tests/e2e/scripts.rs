//! The repository's scripts do what the README says they do:
//! - `scripts/quickstart.sh`, the README's third command, runs to the end
//!   twice in a row in one folder (the first run leaving its server up, as
//!   for a user), stops its server when asked, and finds the binary in the
//!   target directory cargo uses (`CARGO_TARGET_DIR` honoured);
//! - `.ci/run` runs the README's test command with the variables that narrow
//!   the suite to one backend pass cleared.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::require;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The quickstart, with none of the caller's Coffer or cargo settings, and
/// `home` as HOME if given (not when it runs cargo, which rustup finds
/// through HOME).
fn quickstart(home: Option<&Path>) -> Command {
    let mut c = Command::new(repo().join("scripts/quickstart.sh"));
    if let Some(home) = home {
        c.env("HOME", home);
    }
    c.env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("COFFER_BIN")
        .env_remove("COFFER_QUICKSTART_STOP")
        .env_remove("COFFER_PROFILE")
        .env_remove("COFFER_TOKEN")
        .env_remove("COFFER_ENDPOINT")
        .env_remove("COFFER_ROOT_PASSPHRASE")
        .env_remove("COFFER_CONFIG")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR");
    c
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Kills the servers a failed test would leave running.
struct Reaper(Vec<u32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            if alive(*pid) {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }
    }
}

fn server_pid(work: &Path) -> u32 {
    std::fs::read_to_string(work.join("serve.pid"))
        .expect("the quickstart records its server's pid")
        .trim()
        .parse()
        .unwrap()
}

fn assert_ran_to_the_end(o: &Output, run: &str) {
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{run}: {}", text(o));
    // Both restores compared equal to the image written, and the partner
    // (Reader on the snapshot alone) was denied deleting it.
    assert_eq!(
        out.matches("Images are identical.").count(),
        2,
        "{run}: {}",
        text(o)
    );
    assert!(out.contains("Done."), "{run}: {}", text(o));
}

#[test]
fn quickstart_runs_twice_in_a_row_in_one_folder() {
    require("qemu-img", "qemu-utils");
    require("qemu-io", "qemu-utils");
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let work = tmp.path().join("work");
    let bin = env!("CARGO_BIN_EXE_coffer");
    let mut reaper = Reaper(Vec::new());

    // First run, as a user runs it: the server is left running.
    let t = Instant::now();
    let first = quickstart(Some(&home))
        .arg(&work)
        .env("COFFER_BIN", bin)
        .output()
        .unwrap();
    let first_pid = if work.join("serve.pid").exists() {
        server_pid(&work)
    } else {
        0
    };
    reaper.0.push(first_pid);
    assert_ran_to_the_end(&first, "first run");
    assert!(
        alive(first_pid),
        "the first run leaves its server running: {}",
        text(&first)
    );
    assert!(
        String::from_utf8_lossy(&first.stdout).contains(&format!("kill {first_pid}")),
        "it says how to stop it: {}",
        text(&first)
    );
    let first_time = t.elapsed();

    // Second run in the same folder: it stops that server, starts afresh
    // (a new root key, config and data), and, asked to, stops its own.
    let t = Instant::now();
    let second = quickstart(Some(&home))
        .arg(&work)
        .env("COFFER_BIN", bin)
        .env("COFFER_QUICKSTART_STOP", "1")
        .output()
        .unwrap();
    let second_pid = server_pid(&work);
    reaper.0.push(second_pid);
    assert_ran_to_the_end(&second, "second run");
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(
        out.contains(&format!(
            "stopping the server a previous run left running (pid {first_pid})"
        )),
        "{}",
        text(&second)
    );
    assert!(
        out.contains("The server stopped cleanly"),
        "{}",
        text(&second)
    );
    assert_ne!(first_pid, second_pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (alive(first_pid) || alive(second_pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(first_pid), "the first run's server still runs");
    assert!(!alive(second_pid), "the second run's server still runs");
    let log = std::fs::read_to_string(work.join("serve.log")).unwrap();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    // Nothing of the caller's: the profile and root key are in the folder.
    assert!(work.join("config/coffer/root.key").exists());
    assert!(!home.join(".config/coffer").exists());
    println!(
        "quickstart twice in one folder: {first_time:.1?} then {:.1?}",
        t.elapsed()
    );
}

#[test]
fn quickstart_refuses_a_folder_it_did_not_make() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("mine");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("precious.txt"), "keep me").unwrap();
    let out = quickstart(Some(tmp.path()))
        .arg(&work)
        .env("COFFER_BIN", env!("CARGO_BIN_EXE_coffer"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a previous quickstart's directory"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(work.join("precious.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn quickstart_builds_in_the_target_dir_cargo_uses() {
    // What the script would run when it builds: CARGO_TARGET_DIR's release
    // binary, a relative CARGO_TARGET_DIR taken from where it was called.
    let tmp = tempfile::tempdir().unwrap();
    let print = |cwd: &Path, target: Option<&str>| {
        let mut c = quickstart(None);
        c.arg("--print-binary").current_dir(cwd);
        if let Some(t) = target {
            c.env("CARGO_TARGET_DIR", t);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
    };
    let custom = tmp.path().join("custom-target");
    assert_eq!(
        print(&repo(), Some(custom.to_str().unwrap())),
        custom.join("release/coffer")
    );
    assert_eq!(
        print(tmp.path(), Some("relative-target")),
        tmp.path().join("relative-target/release/coffer")
    );
    // Unset: cargo's own default, the workspace's target/.
    assert_eq!(
        print(tmp.path(), None),
        repo().canonicalize().unwrap().join("target/release/coffer")
    );
    // COFFER_BIN, when given, is what runs.
    let o = quickstart(None)
        .arg("--print-binary")
        .env("COFFER_BIN", "/opt/coffer/bin/coffer")
        .env("CARGO_TARGET_DIR", &custom)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "/opt/coffer/bin/coffer",
        "{}",
        text(&o)
    );
}

#[test]
fn ci_runs_the_readme_test_command_on_both_backend_passes() {
    // .ci/run in a copy of the repository whose README's test command
    // records the environment it gets, with every tool it calls stubbed
    // (nothing is installed, built or started).
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    std::fs::create_dir_all(root.join(".ci")).unwrap();
    std::fs::copy(repo().join(".ci/run"), root.join(".ci/run")).unwrap();
    std::fs::write(
        root.join("README.md"),
        "**Test it**:\n\n```sh\nenv | grep '^COFFER_TEST' | sort > test-env.txt\n```\n",
    )
    .unwrap();
    // The guest's setup and the bounded fuzz run are stubbed too.
    write_script(&root.join(".ci/guest-setup.sh"), "exit 0");
    std::fs::create_dir_all(root.join("fuzz")).unwrap();
    write_script(&root.join("fuzz/run.sh"), "exit 0");
    let stubs = tmp.path().join("bin");
    std::fs::create_dir_all(&stubs).unwrap();
    for tool in [
        "cargo-afl",
        "dpkg",
        "apt-get",
        "qemu-img",
        "qemu-io",
        "nbdinfo",
        "nbdcopy",
        "softhsm2-util",
        "pg_isready",
        "psql",
        "su",
        "service",
        "moto_server",
        "chromium",
        "chromedriver",
        "cargo",
    ] {
        write_script(&stubs.join(tool), "exit 0");
    }
    write_script(
        &stubs.join("rustup"),
        "echo clippy-x86_64-unknown-linux-gnu",
    );
    let path = format!("{}:{}", stubs.display(), std::env::var("PATH").unwrap());
    // axe-core as if installed (.ci/run installs it with npm when missing).
    let axe = tmp.path().join("axe");
    std::fs::create_dir_all(axe.join("node_modules/axe-core")).unwrap();
    std::fs::write(axe.join("node_modules/axe-core/axe.min.js"), "").unwrap();
    let out = Command::new("bash")
        .arg(root.join(".ci/run"))
        .env("PATH", path)
        .env("COFFER_AXE_DIR", &axe)
        // A narrowed suite, as a developer's shell might have it.
        .env("COFFER_TEST_METADATA", "postgres")
        .env("COFFER_TEST_STORE", "s3")
        .env("COFFER_TEST_S3_ENDPOINT", "http://127.0.0.1:1")
        .env("COFFER_TEST_S3_ENDPOINTS", "http://127.0.0.1:1")
        .env_remove("COFFER_TEST_PG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let env = std::fs::read_to_string(root.join("test-env.txt")).unwrap();
    for var in [
        "COFFER_TEST_METADATA",
        "COFFER_TEST_STORE",
        "COFFER_TEST_S3_ENDPOINT",
        "COFFER_TEST_S3_ENDPOINTS",
    ] {
        assert!(
            !env.contains(&format!("{var}=")),
            "{var} reached the README's test command, which then runs one pass:\n{env}"
        );
    }
    assert!(
        env.contains("COFFER_TEST_PG="),
        "the PostgreSQL .ci/run set up is passed on:\n{env}"
    );
}

fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
