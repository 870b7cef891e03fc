//! The workflow documents of `docs/workflows/`, run exactly as written.
//!
//! Each document's ```` ```sh ```` blocks become one bash script whose line
//! numbers are the document's (every other line is blank; line 1, the
//! title, carries the prologue: `set -eEuo pipefail`, an ERR trap naming the
//! failing line, `set -x`). The script runs against a fresh real `coffer
//! serve`, whose `default` profile is the admin, in an empty working
//! directory with the built `coffer` first on PATH. It must exit 0. The
//! index `docs/workflows/README.md` must list every document, and every
//! document must have a test here.

use crate::common;

use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// How long one document may run.
const TIMEOUT: Duration = Duration::from_secs(600);

macro_rules! workflow {
    ($test:ident, $doc:literal) => {
        #[test]
        fn $test() {
            run_document($doc);
        }
    };
}

workflow!(w000_azure_share_snapshot, "000-azure-share-snapshot.md");
workflow!(w001_azure_encryption, "001-azure-encryption-layers.md");
workflow!(w002_aws_ami_sharing, "002-aws-ami-sharing.md");
workflow!(w003_alibaba_shares, "003-alibaba-resource-shares.md");
workflow!(w004_azure_customer_keys, "004-azure-customer-keys.md");

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/workflows")
}

fn read_doc(name: &str) -> String {
    let path = docs_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The document turned into a bash script, line for line: the lines of its
/// `sh` blocks in place, every other line blank, line 1 the prologue.
/// Panics on a fence the runner would silently skip or cannot close, and on
/// shell that cannot fail under `set -e`.
fn script_of(name: &str, doc: &str) -> String {
    const SKIPPED_SHELLS: &[&str] = &["bash", "shell", "console", "zsh", "shell-session"];
    let mut out: Vec<String> = Vec::new();
    // None: prose; Some(true): inside an sh block; Some(false): another block.
    let mut block: Option<bool> = None;
    let mut sh_blocks = 0;
    for (i, line) in doc.lines().enumerate() {
        let at = format!("docs/workflows/{name}:{}", i + 1);
        let fence = line.trim_start().strip_prefix("```");
        match (block, fence) {
            (None, Some(info)) => {
                let info = info.trim();
                assert!(
                    !info.is_empty(),
                    "{at}: a code block needs a language: `sh` to run it, `text` to show it"
                );
                assert!(
                    !SKIPPED_SHELLS.contains(&info),
                    "{at}: ```{info} would not be run: use ```sh (run) or ```text (shown only)"
                );
                let is_sh = info == "sh";
                sh_blocks += usize::from(is_sh);
                block = Some(is_sh);
                out.push(String::new());
            }
            (Some(_), Some(rest)) if rest.trim().is_empty() => {
                block = None;
                out.push(String::new());
            }
            (Some(true), _) => {
                let code = line.trim_start();
                assert!(
                    !code.starts_with("! "),
                    "{at}: `! command` never fails a `set -e` script: test the status with `if` \
                     or a helper (see `refused` in 000-azure-share-snapshot.md)"
                );
                assert!(
                    !line.contains("-z \"$("),
                    "{at}: `test -z \"$(command)\"` passes when the command fails: assign \
                     `X=$(command)` first, then `test -z \"$X\"`"
                );
                out.push(line.to_string());
            }
            _ => out.push(String::new()),
        }
    }
    assert!(
        block.is_none(),
        "docs/workflows/{name}: a code block is not closed"
    );
    assert!(
        sh_blocks > 0,
        "docs/workflows/{name} has no ```sh block: nothing would run"
    );
    assert!(
        out.first().is_some_and(String::is_empty),
        "docs/workflows/{name}:1 must be prose (the title): the runner's prologue goes there"
    );
    // On a failure: the failing line and command, then the call sites of
    // the helpers it failed in, innermost first.
    let at = format!("docs/workflows/{name}");
    out[0] = format!(
        "set -eEuo pipefail; shopt -s inherit_errexit; \
         __wf_failed() {{ {{ set +x; }} 2>/dev/null; local i; \
         echo \"WORKFLOW FAILED at {at}:$1: $2\" >&2; \
         for ((i = 1; i < ${{#FUNCNAME[@]}} - 1; i++)); do \
         echo \"WORKFLOW FAILED in ${{FUNCNAME[i]}}, called at {at}:${{BASH_LINENO[i]}}\" >&2; \
         done; }}; \
         trap '__wf_failed \"$LINENO\" \"$BASH_COMMAND\"' ERR; \
         PS4='+ {name}:$LINENO: '; set -x"
    );
    let mut script = out.join("\n");
    script.push('\n');
    script
}

/// The server configuration a document asks for: the body of a ```toml
/// block whose first line is `# coffer serve --config` (shown to readers,
/// given to the document's server as its `--config` file).
fn serve_config_of(doc: &str) -> Option<String> {
    let mut lines = doc.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "```toml" {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            if body
                .first()
                .is_some_and(|f| f.trim() == "# coffer serve --config")
            {
                return Some(body.join("\n") + "\n");
            }
        }
    }
    None
}

/// Run one document against a fresh server; panic with the failing line
/// and the whole output if it does not exit 0.
fn run_document(name: &str) {
    require("qemu-img", "qemu-utils");
    require("qemu-io", "qemu-utils");
    require("sha256sum", "coreutils");
    let doc = read_doc(name);
    let script = script_of(name, &doc);
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("serve.toml");
    let s = match serve_config_of(&doc) {
        Some(c) => {
            std::fs::write(&config, c).unwrap();
            Server::start_with(&["--config", config.to_str().unwrap()], &[])
        }
        None => Server::start(),
    };
    let script_path = s.dir.path().join(format!("{name}.sh"));
    std::fs::write(&script_path, &script).unwrap();
    let work = s.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let log_path = s.dir.path().join("workflow.log");
    let log = std::fs::File::create(&log_path).unwrap();

    let bin_dir = Path::new(env!("CARGO_BIN_EXE_coffer")).parent().unwrap();
    let path = match std::env::var_os("PATH") {
        Some(p) => {
            let mut dirs = vec![bin_dir.to_path_buf()];
            dirs.extend(std::env::split_paths(&p));
            std::env::join_paths(dirs).unwrap()
        }
        None => bin_dir.as_os_str().to_owned(),
    };
    let started = Instant::now();
    let mut cmd = Command::new("bash");
    // Where the server keeps its data, in the variables `coffer serve`
    // reads them from (a document that checks what is stored needs them):
    // the data dir and metadata URL always, and in the S3 pass the store
    // URL and the credentials the server got.
    cmd.env("COFFER_DATA_DIR", s.data_dir())
        .env("COFFER_METADATA", s.meta.url())
        .env_remove("COFFER_STORE")
        .envs(s.store.env());
    if let Some(store) = s.store.url() {
        cmd.env("COFFER_STORE", store);
    }
    let mut child = cmd
        .arg(&script_path)
        .current_dir(&work)
        .env("PATH", path)
        .env("HOME", s.home())
        .env("XDG_CONFIG_HOME", s.home().join(".config"))
        .env_remove("COFFER_PROFILE")
        .env_remove("COFFER_TOKEN")
        .env_remove("COFFER_ENDPOINT")
        .env_remove("COFFER_OUTPUT")
        .env_remove("BASH_ENV")
        .env_remove("ENV")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        // Its own process group, so a timeout ends qemu-img and coffer too.
        .process_group(0)
        .spawn()
        .expect("run bash");
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if started.elapsed() > TIMEOUT {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(format!("-{}", child.id()))
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    eprintln!("docs/workflows/{name}: {:.1}s", took.as_secs_f64());
    if status.is_some_and(|st| st.success()) {
        return;
    }

    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let doc_lines: Vec<&str> = doc.lines().collect();
    let mut summary = String::new();
    match status {
        None => writeln!(summary, "timed out after {}s", TIMEOUT.as_secs()).unwrap(),
        Some(st) => writeln!(summary, "exited with {st}").unwrap(),
    }
    // The ERR trap's lines, each with the document's line it names.
    let at = format!("docs/workflows/{name}:");
    for line in output.lines().filter(|l| l.starts_with("WORKFLOW FAILED ")) {
        let text = line
            .split_once(&at)
            .map(|(_, rest)| {
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| doc_lines.get(n.wrapping_sub(1)))
            .map_or("", |l| l.trim());
        writeln!(summary, "  {line}\n      | {text}").unwrap();
    }
    let server_log = std::fs::read_to_string(s.dir.path().join("server.log")).unwrap_or_default();
    let server_tail: Vec<&str> = server_log.lines().rev().take(40).collect();
    let server_tail: Vec<&str> = server_tail.into_iter().rev().collect();
    panic!(
        "workflow docs/workflows/{name} failed after {:.1}s: {summary}\n\
         ---- output (stdout and stderr, traced with the document's line numbers) ----\n\
         {output}\n\
         ---- end of the server's log ----\n{}\n\
         ---- docs/workflows/{name} failed: {summary}",
        took.as_secs_f64(),
        server_tail.join("\n"),
    );
}

/// Every `*.md` of docs/workflows but the index.
fn documents_on_disk() -> Vec<String> {
    let mut docs: Vec<String> = std::fs::read_dir(docs_dir())
        .expect("docs/workflows")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md") && n != "README.md")
        .collect();
    docs.sort();
    docs
}

#[test]
fn every_document_has_a_test() {
    // The `workflow!(name, "doc.md");` lines of this file.
    let this = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/workflows.rs"),
    )
    .unwrap();
    let mut tested: Vec<String> = this
        .lines()
        .filter(|l| l.starts_with("workflow!("))
        .filter_map(|l| l.split('"').nth(1))
        .map(str::to_string)
        .collect();
    tested.sort();
    assert_eq!(
        documents_on_disk(),
        tested,
        "docs/workflows/*.md and the `workflow!` tests of crates/cli/tests/e2e/workflows.rs \
         differ: each document needs exactly one `workflow!(test_name, \"NNN-….md\");`"
    );
}

#[test]
fn every_document_runs_something_and_is_indexed() {
    let index = read_doc("README.md");
    let rows: Vec<&str> = index.lines().filter(|l| l.starts_with('|')).collect();
    for name in documents_on_disk() {
        let doc = read_doc(&name);
        // Parses the fences, and asserts at least one sh block.
        script_of(&name, &doc);
        let link = format!("]({name}");
        assert!(
            rows.iter().any(|r| r.contains(&link)),
            "docs/workflows/README.md: no index row links {name}"
        );
        let ids: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("## W"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(
            !ids.is_empty(),
            "docs/workflows/{name}: no `## Wn.m — …` workflow section"
        );
        for id in ids {
            let id = format!("W{id}");
            assert!(
                rows.iter()
                    .any(|r| r.starts_with(&format!("| {id} ")) && r.contains(&link)),
                "docs/workflows/README.md: no index row for {id} linking {name}"
            );
        }
    }
    // No row links a document that does not exist.
    for row in rows {
        for part in row.split("](").skip(1) {
            let target = part.split([')', '#']).next().unwrap_or("");
            if target.ends_with(".md") {
                assert!(
                    docs_dir().join(target).exists(),
                    "docs/workflows/README.md links {target}, which does not exist"
                );
            }
        }
    }
}

#[test]
fn the_runner_catches_what_set_e_would_miss() {
    // A negated command and `test -z "$(…)"` are refused when the script is
    // built; a plain failing command fails the script (checked by running
    // a tiny document through bash, no server needed).
    let neg = "# t\n\n```sh\n! false\n```\n";
    assert!(std::panic::catch_unwind(|| script_of("neg.md", neg)).is_err());
    let z = "# t\n\n```sh\ntest -z \"$(false)\"\n```\n";
    assert!(std::panic::catch_unwind(|| script_of("z.md", z)).is_err());
    let skipped = "# t\n\n```bash\ntrue\n```\n";
    assert!(std::panic::catch_unwind(|| script_of("bash.md", skipped)).is_err());

    // A failure inside `$(…)` fails the script at the document's line.
    let doc = "# t\n\nprose\n```sh\nX=$(echo a; false; echo b)\necho \"$X\"\n```\n\n```text\nfalse\n```\n";
    let (ok, out, err) = run_tiny(doc);
    assert!(!ok, "a failure inside $(…) must fail the script");
    assert!(
        err.contains("WORKFLOW FAILED at docs/workflows/t.md:5: X=$(echo a; false; echo b)"),
        "the failing line is the document's: {err}"
    );
    assert!(!out.contains('b'), "{out}");

    // A failure inside a helper names the helper's line and its caller's.
    let doc = "# t\n```sh\ncheck() {\n  test \"$1\" = 2\n}\ncheck 2\ncheck 3\necho after\n```\n";
    let (ok, out, err) = run_tiny(doc);
    assert!(!ok);
    assert!(
        err.contains("WORKFLOW FAILED at docs/workflows/t.md:4: test \"$1\" = 2")
            && err.contains("WORKFLOW FAILED in check, called at docs/workflows/t.md:7"),
        "{err}"
    );
    assert!(!out.contains("after"), "{out}");

    // And a document whose commands all succeed passes.
    let (ok, _, err) = run_tiny("# t\n```sh\ntrue\n```\n");
    assert!(ok, "{err}");
}

/// Build a tiny document's script and run it with bash: (success, stdout,
/// stderr).
fn run_tiny(doc: &str) -> (bool, String, String) {
    let script = script_of("t.md", doc);
    assert_eq!(script.lines().count(), doc.lines().count());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.sh");
    std::fs::write(&p, script).unwrap();
    let out = Command::new("bash").arg(&p).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
