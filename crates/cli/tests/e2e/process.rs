//! What another process can learn from a running `coffer serve`: it is not
//! dumpable and may not dump core, and a secret given in its environment
//! (here the root passphrase) is gone from `/proc/PID/environ` once it has
//! started, while the server works with it; its key bytes are locked in
//! memory.

use crate::common;

use common::Server;

#[test]
fn serve_is_not_dumpable_and_its_environment_holds_no_secret() {
    let pass = "correct horse battery staple 7f3a";
    let s = Server::start_with(&[], &[("COFFER_ROOT_PASSPHRASE", pass)]);
    let pid = s.child.as_ref().unwrap().id();
    // The passphrase opened the root key: the server works.
    let d = s.create_disk("p", "1MiB", "local-a");
    assert!(d.starts_with("disk-"), "{d}");

    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        !environ.windows(pass.len()).any(|w| w == pass.as_bytes()),
        "the passphrase is still in /proc/{pid}/environ"
    );
    let vars: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).to_string())
        .collect();
    assert!(
        vars.iter().any(|v| v.starts_with("HOME=")),
        "the rest of the environment is kept: {vars:?}"
    );

    // No core file may be written: RLIMIT_CORE is 0, soft and hard.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
    // Its keys' bytes are locked out of swap (the test runs where mlock is
    // allowed: as root, or under a large enough RLIMIT_MEMLOCK).
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let locked_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        locked_kb >= 4,
        "no key page is locked: VmLck {locked_kb} kB"
    );
    // PR_SET_DUMPABLE 0, as the kernel reported it back to the server.
    assert!(
        s.log().contains("process hardened: not dumpable"),
        "{}",
        s.log_tail()
    );
    s.assert_no_panic();
}
