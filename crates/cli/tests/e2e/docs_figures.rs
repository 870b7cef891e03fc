//! Every figure table in docs/PERFORMANCE.md names the script that printed
//! it and the commit it measured: a line `script: bench/NAME, commit: C`
//! above the table in the same section (the bench scripts print it above
//! their tables; bench/lib.sh). The script must exist, and the commit must
//! be a clean one (`git describe --always --dirty` without `-dirty`).

use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Why the tables of `doc` (markdown) fail the rule, one line each, with
/// `root` the directory scripts are looked up from.
fn problems(doc: &str, root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    // The provenance line in force: (line number, script, commit), reset by
    // every heading.
    let mut source: Option<(usize, String, String)> = None;
    let mut in_table = false;
    let mut in_code = false;
    for (i, line) in doc.lines().enumerate() {
        let n = i + 1;
        let t = line.trim();
        if t.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if t.starts_with('#') {
            source = None;
        }
        if let Some(rest) = t.strip_prefix("script: ") {
            let fields: Vec<&str> = rest.split(", ").collect();
            let script = fields[0].trim_matches('`').to_string();
            let commit = fields
                .iter()
                .find_map(|f| f.strip_prefix("commit: "))
                .map(|c| c.trim_matches('`').to_string());
            match commit {
                Some(c) => source = Some((n, script, c)),
                None => out.push(format!("line {n}: a script line without `commit: …`")),
            }
        }
        let is_row = t.starts_with('|');
        if is_row && !in_table {
            match &source {
                None => out.push(format!(
                    "line {n}: a table with no `script: bench/…, commit: …` line above it in its section"
                )),
                Some((at, script, commit)) => {
                    if !script.starts_with("bench/") || !root.join(script).is_file() {
                        out.push(format!(
                            "line {n}: the table's script `{script}` (line {at}) is not a file under bench/"
                        ));
                    }
                    let clean = commit.len() >= 7
                        && commit
                            .rsplit("-g")
                            .next()
                            .is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
                    if !clean {
                        out.push(format!(
                            "line {n}: the table's commit `{commit}` (line {at}) is not a clean commit (dirty, unknown or malformed)"
                        ));
                    }
                }
            }
        }
        in_table = is_row;
    }
    out
}

#[test]
fn every_figure_table_names_its_script_and_a_clean_commit() {
    let root = repo_root();
    let doc = std::fs::read_to_string(root.join("docs/PERFORMANCE.md")).unwrap();
    let tables = doc
        .lines()
        .zip(std::iter::once("").chain(doc.lines()))
        .filter(|(l, prev)| l.trim().starts_with('|') && !prev.trim().starts_with('|'))
        .count();
    assert!(
        tables > 0,
        "docs/PERFORMANCE.md has no tables: parser broken?"
    );
    let p = problems(&doc, &root);
    assert!(p.is_empty(), "docs/PERFORMANCE.md:\n{}", p.join("\n"));
}

/// The check itself: each way a table can lack its provenance is caught.
#[test]
fn the_check_catches_tables_without_provenance() {
    let root = repo_root();
    let good = "# A\n\nscript: bench/nbd_throughput.sh, commit: 1a2b3c4, run: 2026-01-01\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n| c |\n|---|\n";
    assert_eq!(problems(good, &root), Vec::<String>::new());
    let described = good.replace("1a2b3c4", "v0.1-3-g1a2b3c4");
    assert_eq!(problems(&described, &root), Vec::<String>::new());
    let cases = [
        ("no line", "# A\n\n| a |\n|---|\n"),
        (
            "line in an earlier section",
            "# A\nscript: bench/nbd_throughput.sh, commit: 1a2b3c4\n# B\n| a |\n",
        ),
        (
            "missing script",
            "script: bench/no_such_script.sh, commit: 1a2b3c4\n| a |\n",
        ),
        (
            "not under bench/",
            "script: crates/cli/tests/e2e/figures.rs, commit: 1a2b3c4\n| a |\n",
        ),
        (
            "dirty",
            "script: bench/nbd_throughput.sh, commit: 1a2b3c4-dirty\n| a |\n",
        ),
        (
            "dirty, marked",
            "script: bench/nbd_throughput.sh, commit: 1a2b3c4-dirty (DIRTY: uncommitted changes, not for the docs)\n| a |\n",
        ),
        (
            "unknown",
            "script: bench/nbd_throughput.sh, commit: unknown\n| a |\n",
        ),
        ("no commit", "script: bench/nbd_throughput.sh\n| a |\n"),
    ];
    for (what, doc) in cases {
        assert!(!problems(doc, &root).is_empty(), "not caught: {what}");
    }
}
