//! Every seed of the fuzz corpus and every input the fuzzer ever saved as a
//! crash or hang (`fuzz/corpus/TARGET`, `fuzz/regressions/TARGET`) replayed
//! through the harness the fuzzer runs for that target: none may panic.

use std::path::Path;

/// A fuzz harness: panics only on a bug.
type Harness = fn(&[u8]);

/// The fuzz targets (fuzz/Cargo.toml) and their harnesses.
const TARGETS: &[(&str, Harness)] = &[
    ("nbd_session", coffer_nbd::fuzz::session),
    ("chunk_open", coffer_crypto::fuzz::open),
    ("api_bodies", coffer_wire::fuzz::bodies),
];

#[test]
fn every_corpus_and_regression_input_passes_its_harness() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    for (target, harness) in TARGETS {
        let mut n = 0;
        for dir in ["corpus", "regressions"] {
            for entry in std::fs::read_dir(fuzz.join(dir).join(target)).unwrap() {
                let path = entry.unwrap().path();
                if path
                    .file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with('.'))
                {
                    continue;
                }
                harness(&std::fs::read(&path).unwrap());
                n += 1;
            }
        }
        assert!(n >= 5, "the {target} seed corpus is missing ({n} inputs)");
    }
}

#[test]
fn every_fuzz_target_is_replayed() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/Cargo.toml"),
    )
    .unwrap();
    let declared = manifest.matches("[[bin]]").count();
    assert_eq!(declared, TARGETS.len(), "a fuzz target has no replay here");
}
