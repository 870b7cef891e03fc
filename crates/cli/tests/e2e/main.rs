//! Coffer's end-to-end tests: the real `coffer` binary as a server, driven
//! by its CLI and by clients nobody here wrote (qemu-img, qemu-io, nbdinfo,
//! nbdcopy, fio, a browser, a booting guest). One module per subject.
//!
//! They are one test binary, not one per file: each file linked the whole
//! stack and compiled the shared harness (`common`) again, and the 30
//! binaries took 7 minutes to build on two cores. cargo-nextest still runs
//! every test in a process of its own (`.config/nextest.toml`); a subject's
//! tests are selected by their module path, e.g. `cargo nextest run -E
//! 'test(/^crash::/)'` or `cargo test -p coffer-cli --test e2e crash::`.

mod common;

mod at_rest;
mod cli_ux;
mod console;
mod console_identity;
mod console_keys;
mod console_sweep;
mod contract;
mod copies;
mod crash;
mod deployments;
mod docs_figures;
mod errors;
mod figures;
mod fuzz_corpus;
mod golden;
mod guest;
mod hostile;
mod hsm;
mod iam;
mod lockout;
mod nodes;
mod process;
mod regions;
mod revocation;
mod root_key;
mod s3_store;
mod scripts;
mod sparse;
mod tamper;
mod tls;
mod walkthrough;
mod workflows;
