//! Every seed of the fuzz corpus and every input the fuzzer ever saved as a
//! crash or hang (`fuzz/corpus/chunk_open`, `fuzz/regressions/chunk_open`) replayed
//! through the harness the fuzzer runs (`coffer_crypto::fuzz::open`): none may panic.

use std::path::Path;

#[test]
fn the_chunk_open_corpus_and_regressions_pass() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut n = 0;
    for dir in ["corpus/chunk_open", "regressions/chunk_open"] {
        for entry in std::fs::read_dir(fuzz.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let input = std::fs::read(&path).unwrap();
            coffer_crypto::fuzz::open(&input);
            n += 1;
        }
    }
    assert!(n >= 5, "the seed corpus is missing ({n} inputs)");
}
