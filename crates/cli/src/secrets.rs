//! Secrets the process may be given in its environment
//! (`COFFER_ROOT_PASSPHRASE`, `COFFER_PKCS11_PIN`, `COFFER_TOKEN`), and the
//! process hardening that keeps key material out of core dumps.
//!
//! [`take_from_env`] runs first thing in `main`, while the process has one
//! thread: it copies each secret into zeroizing memory, overwrites its bytes
//! in the environment block (so `/proc/PID/environ` and a child process
//! show none of it) and removes the variable. Later code asks for
//! a copy of a secret ([`get`], wiped when dropped) or whether one was
//! given ([`is_set`]).
//!
//! [`harden_process`] turns core dumps off for `coffer serve` and
//! `coffer admin recover`, which hold the root key: `PR_SET_DUMPABLE` 0
//! (also makes `/proc/PID/mem`, `environ` and ptrace root-only) and
//! `RLIMIT_CORE` 0.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use zeroize::Zeroizing;

/// The environment variables that may carry a secret.
pub const NAMES: [&str; 3] = [
    "COFFER_ROOT_PASSPHRASE",
    "COFFER_PKCS11_PIN",
    "COFFER_TOKEN",
];

static TAKEN: OnceLock<Mutex<HashMap<&'static str, Zeroizing<String>>>> = OnceLock::new();

fn taken() -> &'static Mutex<HashMap<&'static str, Zeroizing<String>>> {
    TAKEN.get_or_init(Mutex::default)
}

/// Move every secret of [`NAMES`] out of the environment into zeroizing
/// memory. Call it while the process has a single thread (before the async
/// runtime starts): the environment is not safe to change once other
/// threads may read it.
pub fn take_from_env() {
    let mut map = taken().lock().unwrap_or_else(|e| e.into_inner());
    for name in NAMES {
        let Some(value) = std::env::var_os(name) else {
            continue;
        };
        let value = Zeroizing::new(value.to_string_lossy().into_owned());
        scrub(name);
        map.insert(name, value);
    }
}

/// Overwrite the value of `name` in place in the environment block, then
/// remove the variable.
#[allow(unsafe_code)]
fn scrub(name: &str) {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return;
    };
    // SAFETY: called only from `take_from_env`, while the process has one
    // thread, so nothing reads or changes the environment concurrently.
    // `getenv` returns a pointer to the NUL-terminated value inside the
    // environment's own (writable) string, valid until the environment is
    // changed; `strlen` bytes from it belong to that value.
    unsafe {
        let p = libc::getenv(cname.as_ptr());
        if !p.is_null() {
            let len = libc::strlen(p);
            std::ptr::write_bytes(p, 0, len);
        }
        std::env::remove_var(name);
    }
}

/// A copy of the secret given as `name` (wiped when dropped).
pub fn get(name: &str) -> Option<Zeroizing<String>> {
    taken()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .cloned()
}

/// Whether the secret `name` was given.
pub fn is_set(name: &str) -> bool {
    taken()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(name)
}

/// No core dumps of this process, and no ptrace or `/proc/PID/mem` by
/// other processes of the same user. Returns what the kernel says after.
pub fn harden_process() -> std::io::Result<()> {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    if rustix::process::dumpable_behavior()? != DumpableBehavior::NotDumpable {
        return Err(std::io::Error::other("the process is still dumpable"));
    }
    Ok(())
}
