//! Every seed of the fuzz corpus and every input the fuzzer ever saved as a
//! crash or hang (`fuzz/corpus/api_bodies`, `fuzz/regressions/api_bodies`) replayed
//! through the harness the fuzzer runs (`coffer_wire::fuzz::bodies`): none may panic.

use std::path::Path;

#[test]
fn the_api_bodies_corpus_and_regressions_pass() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut n = 0;
    for dir in ["corpus/api_bodies", "regressions/api_bodies"] {
        for entry in std::fs::read_dir(fuzz.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let input = std::fs::read(&path).unwrap();
            coffer_wire::fuzz::bodies(&input);
            n += 1;
        }
    }
    assert!(n >= 5, "the seed corpus is missing ({n} inputs)");
}
