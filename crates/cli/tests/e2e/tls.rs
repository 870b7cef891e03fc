//! TLS on the API and NBD listeners, driven by clients nobody here wrote:
//! the CLI over HTTPS trusting the deployment CA from its profile; qemu-io
//! with `tls-creds-x509` writing over `nbds://` and nbdcopy reading it back;
//! nbdinfo; a plaintext NBD client and a plaintext HTTP client refused; a
//! client trusting another CA refused; and an operator's own certificate.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use coffer_testkit::tls::TestCa;
use common::{Server, require, run};

/// (host:port, export) of an `nbds://HOST:PORT/EXPORT` URI.
fn parts(uri: &str) -> (String, String) {
    let rest = uri.strip_prefix("nbds://").expect("an nbds:// URI");
    let (hp, export) = rest.split_once('/').unwrap();
    (hp.to_string(), export.to_string())
}

/// A directory holding `ca-cert.pem`, as qemu and libnbd want it.
fn ca_dir(dir: &Path, pem: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca-cert.pem"), pem).unwrap();
    dir.to_path_buf()
}

/// A CA (and nothing else) of nobody's deployment.
fn stranger_ca(dir: &Path) -> PathBuf {
    ca_dir(dir, TestCa::new("stranger").pem())
}

fn qemu_io(ca: &Path, hostport: &str, export: &str, cmd: &str) -> std::process::Output {
    let (host, port) = hostport.rsplit_once(':').unwrap();
    Command::new("qemu-io")
        .arg("--object")
        .arg(format!(
            "tls-creds-x509,id=tls0,dir={},endpoint=client",
            ca.display()
        ))
        .arg("--image-opts")
        .arg(format!(
            "driver=nbd,server.type=inet,server.host={host},server.port={port},export={export},tls-creds=tls0"
        ))
        .args(["-c", cmd])
        .output()
        .unwrap()
}

fn pattern() -> Vec<u8> {
    (0..1 << 20).map(|i: u32| (i % 251) as u8).collect()
}

#[test]
fn api_and_nbd_over_tls_with_the_deployment_ca() {
    require("qemu-io", "qemu-utils");
    require("nbdinfo", "libnbd-bin");
    require("nbdcopy", "libnbd-bin");
    let s = Server::start_with(&["--tls"], &[]);
    assert!(s.api.starts_with("https://"), "{}", s.api);
    // The CLI trusts the CA that `coffer serve` put in its profile.
    let disk = s.create_disk("secure", "8MiB", "local-a");
    let uri = s.attach(&disk);
    let (hostport, export) = parts(&uri);
    let pem = std::fs::read_to_string(s.data_dir().join("tls/ca.pem")).unwrap();
    let ca = ca_dir(&s.scratch().join("ca"), &pem);

    // qemu writes over TLS; nbdcopy reads it back over TLS.
    let src = s.scratch().join("pattern.raw");
    std::fs::write(&src, pattern()).unwrap();
    let out = qemu_io(&ca, &hostport, &export, "write -P 0xa5 1M 1M");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("wrote"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tls_uri = format!("{uri}?tls-certificates={}", ca.display());
    let dst = s.scratch().join("back.raw");
    run(Command::new("nbdcopy").arg(&tls_uri).arg(&dst));
    let back = std::fs::read(&dst).unwrap();
    assert_eq!(back.len(), 8 << 20);
    assert!(back[1 << 20..2 << 20].iter().all(|b| *b == 0xa5));
    assert!(back[..1 << 20].iter().all(|b| *b == 0));
    let info = run(Command::new("nbdinfo").arg("--size").arg(&tls_uri));
    assert_eq!(info.trim(), (8u64 << 20).to_string());

    // A plaintext NBD client is refused (TLS is required).
    let out = Command::new("nbdinfo")
        .arg(format!("nbd://{hostport}/{export}"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "a plaintext NBD client was served");
    // A client trusting another CA refuses the server.
    let other = stranger_ca(&s.scratch().join("other"));
    let out = Command::new("nbdinfo")
        .arg(format!("{uri}?tls-certificates={}", other.display()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "a server of another CA was trusted");
    let out = qemu_io(&other, &hostport, &export, "read 0 4k");
    assert!(!out.status.success(), "qemu trusted a server of another CA");
    let out = s.cli_raw_env(
        &["disk", "list"],
        &[(
            "COFFER_CA_CERT",
            other.join("ca-cert.pem").to_str().unwrap(),
        )],
    );
    assert!(
        !out.status.success(),
        "the CLI trusted a server of another CA"
    );

    // A plaintext HTTP client gets no HTTP answer from the TLS listener.
    let mut c = TcpStream::connect(s.api.trim_start_matches("https://")).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = vec![];
    let _ = c.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/1.1 200"),
        "plaintext HTTP was served"
    );
    s.cli(&["disk", "detach", &disk]);
    s.assert_no_panic();
}

#[test]
fn an_operator_certificate_serves_instead() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("operator");
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
    let (cert_f, key_f, ca_f) = (
        dir.path().join("server.pem"),
        dir.path().join("server.key"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cert_f, cert).unwrap();
    std::fs::write(&key_f, key).unwrap();
    std::fs::write(&ca_f, ca.pem()).unwrap();
    let s = Server::start_with(
        &[
            "--tls-cert",
            cert_f.to_str().unwrap(),
            "--tls-key",
            key_f.to_str().unwrap(),
        ],
        &[],
    );
    assert!(s.api.starts_with("https://"), "{}", s.api);
    // No deployment CA was made: the profile trusts no CA of its own, so the
    // operator's CA is given to the CLI.
    assert!(!s.data_dir().join("tls/ca.pem").exists());
    let out = s.cli_raw_env(
        &["disk", "list", "--output", "json"],
        &[("COFFER_CA_CERT", ca_f.to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.assert_no_panic();
}

/// The commands `coffer disk attach` prints, and those its `--uri-file`
/// holds, work as printed against a TLS listener.
#[test]
fn attach_prints_commands_that_work_over_tls() {
    require("qemu-io", "qemu-utils");
    require("nbdinfo", "libnbd-bin");
    let s = Server::start_with(&["--tls"], &[]);
    let disk = s.create_disk("printed", "8MiB", "local-a");
    let out = s.cli_raw(&["disk", "attach", &disk]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |tool: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("{tool} ")))
            .unwrap_or_else(|| panic!("no {tool} line in:\n{text}"))
            .to_string()
    };
    let sh = |cmd: &str| {
        let o = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(s.scratch())
            .env("HOME", s.home())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd}\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(text.starts_with("nbds://"), "{text}");
    let info = sh(&line("nbdinfo"));
    assert!(info.contains("export-size: 8388608"), "{info}");
    // qemu-io as printed, with a write added before its read.
    let qemu = line("qemu-io").replace("-c 'read 0 4k'", "-c 'write -P 0x3c 0 64k'");
    assert!(sh(&qemu).contains("wrote 65536/65536"));
    let copy = line("qemu-img");
    std::fs::write(s.scratch().join("image.raw"), vec![0x7eu8; 8 << 20]).unwrap();
    sh(&copy);
    assert!(
        sh(&line("qemu-io").replace("-c 'read 0 4k'", "-c 'read -P 0x7e 0 8M'"))
            .contains("read 8388608/8388608")
    );
    s.cli(&["disk", "detach", &disk]);

    // With --uri-file the secret goes to a 0600 file, not to the terminal;
    // a file that was there, readable by all, is made private first.
    use std::os::unix::fs::PermissionsExt;
    let file = s.scratch().join("attach.env");
    std::fs::write(&file, "old").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.cli_raw(&[
        "disk",
        "attach",
        &disk,
        "--uri-file",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let env = std::fs::read_to_string(&file).unwrap();
    let export = env
        .lines()
        .find_map(|l| l.strip_prefix("COFFER_NBD_URI='nbds://"))
        .and_then(|u| u.split_once('/'))
        .and_then(|(_, e)| e.split('?').next())
        .unwrap()
        .to_string();
    assert!(export.len() >= 20, "{env}");
    assert!(
        !printed.contains(&export),
        "the secret was printed:\n{printed}"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the URI file is private");
    let f = file.display();
    let info = sh(&format!(". {f} && nbdinfo --size \"$COFFER_NBD_URI\""));
    assert_eq!(info.trim(), "8388608");
    let read = sh(&format!(
        ". {f} && qemu-io --object \"$COFFER_QEMU_TLS_OBJECT\" --image-opts \"$COFFER_QEMU_IMAGE_OPTS\" -c 'read -P 0x7e 0 1M'"
    ));
    assert!(read.contains("read 1048576/1048576"), "{read}");
    s.cli(&["disk", "detach", &disk]);
    s.assert_no_panic();
}

/// With `--tls-client-ca`, an NBD client needs a certificate of that CA:
/// the export name alone no longer reaches the disk.
#[test]
fn nbd_client_certificates_when_required() {
    require("nbdinfo", "libnbd-bin");
    require("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let client_ca = |name: &str| {
        let ca = TestCa::new(name);
        let (cert, key) = ca.issue(&[&format!("{name}.client")]);
        (ca.pem().to_string(), cert, key)
    };
    let (ca_pem, cert_pem, key_pem) = client_ca("good");
    let (stranger_ca, stranger_cert, stranger_key) = client_ca("stranger");
    let ca_file = dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let s = Server::start_with(&["--tls-client-ca", ca_file.to_str().unwrap()], &[]);
    let disk = s.create_disk("mtls", "4MiB", "local-a");
    let uri = s.attach(&disk);
    let (hostport, export) = parts(&uri);
    let server_ca = std::fs::read_to_string(s.data_dir().join("tls/ca.pem")).unwrap();
    // A credentials directory as qemu and libnbd read it: qemu checks its
    // own certificate against `ca-cert.pem` too, so that holds both CAs.
    let creds = |name: &str, cert: Option<(&str, &str, &str)>| {
        let d = ca_dir(&dir.path().join(name), &server_ca);
        if let Some((c, k, issuer)) = cert {
            std::fs::write(d.join("ca-cert.pem"), format!("{server_ca}{issuer}")).unwrap();
            std::fs::write(d.join("client-cert.pem"), c).unwrap();
            std::fs::write(d.join("client-key.pem"), k).unwrap();
        }
        d
    };
    let nbdinfo = |d: &Path| {
        Command::new("nbdinfo")
            .arg("--size")
            .arg(format!("{uri}?tls-certificates={}", d.display()))
            .output()
            .unwrap()
    };
    let good = creds("good", Some((&cert_pem, &key_pem, &ca_pem)));
    let out = nbdinfo(&good);
    assert!(
        out.status.success(),
        "a client with a certificate of the client CA: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4194304");
    let out = qemu_io(&good, &hostport, &export, "write -P 0x11 0 4k");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (what, d) in [
        ("no client certificate", creds("none", None)),
        (
            "a certificate of another CA",
            creds(
                "stranger",
                Some((&stranger_cert, &stranger_key, &stranger_ca)),
            ),
        ),
    ] {
        assert!(!nbdinfo(&d).status.success(), "served a client with {what}");
        let out = qemu_io(&d, &hostport, &export, "read 0 4k");
        assert!(!out.status.success(), "qemu with {what} was served");
    }
    s.cli(&["disk", "detach", &disk]);
    s.assert_no_panic();
}

/// Two nodes of one deployment, both under TLS: a request to node 2 about
/// a disk node 1 holds is forwarded to node 1 over HTTPS, verified against
/// the deployment CA both share.
#[test]
fn nodes_forward_to_each_other_over_tls() {
    require("qemu-io", "qemu-utils");
    let n1 = Server::start_first_node(&["--tls", "--node-name", "node-one"]);
    let n2 = n1.start_peer(&["--tls", "--node-name", "node-two"]);
    assert!(n1.api.starts_with("https://") && n2.api.starts_with("https://"));
    let nodes = n2.cli(&["admin", "nodes"]);
    for n in nodes.as_array().unwrap() {
        assert!(
            n["api_url"].as_str().unwrap().starts_with("https://"),
            "{nodes}"
        );
    }
    let disk = n2.create_disk("fwd", "8MiB", "local-a");
    let uri = n1.attach(&disk);
    let (hostport, export) = parts(&uri);
    let pem = std::fs::read_to_string(n1.data_dir().join("tls/ca.pem")).unwrap();
    let ca = ca_dir(&n1.scratch().join("ca"), &pem);
    let out = qemu_io(&ca, &hostport, &export, "write -P 0x42 0 1M");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both take their answer from node 1, which holds the disk.
    let snap = n2.cli(&["snapshot", "create", "--disk", &disk, "--name", "s"]);
    assert_eq!(snap["state"], "completed", "{snap}");
    n2.cli(&["disk", "detach", &disk]);
    assert_eq!(n1.cli(&["disk", "show", &disk])["state"], "available");
    let log = n2.log();
    assert!(
        !log.contains("cannot forward"),
        "node 2 failed to forward:\n{log}"
    );
    n1.assert_no_panic();
    n2.assert_no_panic();
}
