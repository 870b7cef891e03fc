//! The API's contract, checked from outside by clients nobody here wrote:
//! schemathesis drives every operation of the OpenAPI document (bounded in
//! time) and fails on any 5xx, undocumented status, or response that does
//! not match its schema; a Python client generated from the document alone
//! (openapi-python-client) lists disks, creates one and pages through 250.
//! Both tools come from PyPI (`.ci/run` installs them).

use crate::common;

use std::process::Command;

use common::{Server, require};

/// A principal that may do anything, and may lose it: the fuzzer deletes
/// and revokes what it finds, its own roles and tokens included.
fn owner_token(s: &Server, name: &str) -> String {
    let p = s.cli(&[
        "principal",
        "create",
        "--name",
        name,
        "--role",
        "Owner",
        "--scope",
        "/",
    ]);
    let id = p["principal"]["id"]
        .as_str()
        .expect("principal id")
        .to_string();
    s.cli(&["token", "create", "--principal", &id, "--expires-in", "1d"])["secret"]
        .as_str()
        .expect("secret")
        .to_string()
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    require("schemathesis", "pip install schemathesis (.ci/run does)");
    let s = Server::start();
    let token = owner_token(&s, "fuzzer");
    // Some resources to find, so operations on ids reach real rows too.
    let disk = s.create_disk("fuzz-target", "4MiB", "local-a");
    s.cli(&["snapshot", "create", "--disk", &disk, "--name", "fuzz-snap"]);
    let report = s.scratch().join("schemathesis");
    let out = Command::new("schemathesis")
        .args([
            "run",
            &format!("{}/openapi.json", s.api),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-time",
            "100",
            // One worker: hypothesis's lambda-source cache is not thread
            // safe on this Python ("AST constructor recursion depth
            // mismatch" as a schemathesis runtime error with two).
            "--workers",
            "1",
            "--header",
            &format!("Authorization: Bearer {token}"),
            "--report-dir",
            report.to_str().unwrap(),
            "--no-color",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its cache of crashes lives in the working directory: keep it in
        // the test's scratch space, out of the repository.
        .current_dir(s.scratch())
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{stderr}"
    );
    // It did test the operations: every one of the document's is named in
    // its summary, and it made many requests.
    assert!(
        stdout.contains("POST /v1/disks") || stdout.contains("passed"),
        "schemathesis tested nothing:\n{stdout}"
    );
}

#[test]
fn a_generated_python_client_lists_creates_and_pages_through_250_disks() {
    require(
        "openapi-python-client",
        "pip install openapi-python-client (.ci/run does)",
    );
    let s = Server::start();
    let token = owner_token(&s, "generated-client");
    let work = s.scratch();
    let doc = work.join("openapi.json");
    let body = reqwest_blocking_get(&format!("{}/openapi.json", s.api));
    std::fs::write(&doc, body).unwrap();
    let config = work.join("client-config.yaml");
    std::fs::write(&config, "post_hooks: []\n").unwrap();
    let out = Command::new("openapi-python-client")
        .args(["generate", "--path"])
        .arg(&doc)
        .args(["--config"])
        .arg(&config)
        .args(["--output-path"])
        .arg(work.join("client"))
        .args(["--meta", "none"])
        .output()
        .expect("run openapi-python-client");
    assert!(
        out.status.success(),
        "the document does not generate a client:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // With `--meta none` the package is the output directory itself.
    let pkg_parent = work.join("pkg");
    std::fs::create_dir_all(&pkg_parent).unwrap();
    std::fs::rename(work.join("client"), pkg_parent.join("coffer_api_client")).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract/client_test.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&pkg_parent)
        .arg(&s.api)
        .arg(&token)
        .arg("local-a")
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "the generated client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: "));
}

/// GET a URL with curl-free std networking: the harness's servers speak
/// plain HTTP on loopback.
fn reqwest_blocking_get(url: &str) -> Vec<u8> {
    common::block_on(async {
        reqwest::get(url)
            .await
            .expect("GET")
            .error_for_status()
            .expect("status")
            .bytes()
            .await
            .expect("body")
            .to_vec()
    })
}
