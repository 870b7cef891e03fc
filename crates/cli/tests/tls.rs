//! TLS on the API and NBD listeners, driven by clients nobody here wrote:
//! the CLI over HTTPS trusting the deployment CA from its profile; qemu-io
//! with `tls-creds-x509` writing over `nbds://` and nbdcopy reading it back;
//! nbdinfo; a plaintext NBD client and a plaintext HTTP client refused; a
//! client trusting another CA refused; and an operator's own certificate.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = p.self_signed(&key).unwrap();
    ca_dir(dir, &cert.pem())
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
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (cert_f, key_f, ca_f) = (
        dir.path().join("server.pem"),
        dir.path().join("server.key"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cert_f, cert.pem()).unwrap();
    std::fs::write(&key_f, key.serialize_pem()).unwrap();
    std::fs::write(&ca_f, ca_cert.pem()).unwrap();
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
