//! The S3 backend over HTTPS to a server whose certificate comes from a
//! private CA (`ca_cert=PATH` in the store URL): trusted with that CA,
//! refused without it or with another.

use bytes::Bytes;
use coffer_store::{ObjectStore, S3Location, S3Store};
use coffer_testkit::S3_TEST_KEY;
use coffer_testkit::tls::TestCa;

/// A CA and a certificate it issued for 127.0.0.1: (CA PEM, cert PEM, key PEM).
fn private_ca(name: &str) -> (String, String, String) {
    let ca = TestCa::new(name);
    let (cert, key) = ca.issue(&["127.0.0.1", "localhost"]);
    (ca.pem().to_string(), cert, key)
}

struct Moto(std::process::Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn https_endpoint_verified_against_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca("s3");
    let (stranger, _, _) = private_ca("stranger");
    let f = |name: &str, pem: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let (ca_f, cert_f, key_f, stranger_f) = (
        f("ca.pem", &ca),
        f("cert.pem", &cert),
        f("key.pem", &key),
        f("stranger.pem", &stranger),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let _moto = Moto(
        std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .arg("-c")
            .arg(&cert_f)
            .arg("-k")
            .arg(&key_f)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]'; .ci/run does)"),
    );
    let endpoint = format!("https://127.0.0.1:{port}");
    // The bucket, made over HTTPS by curl trusting the private CA (moto may
    // drop requests for a moment after it opens its port).
    // moto starts slowly on a busy machine: up to 60 s.
    let mut last = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = std::process::Command::new("curl")
            .args(["-sSf", "-X", "PUT", "--cacert"])
            .arg(&ca_f)
            .arg(format!("{endpoint}/tls-bucket"))
            .output()
            .expect("curl");
        if out.status.success() {
            break;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            std::time::Instant::now() < deadline,
            "could not create the bucket over HTTPS: {last}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(last);

    let open = |ca: Option<&std::path::Path>| {
        let mut url = format!("s3://tls-bucket?endpoint={endpoint}");
        if let Some(ca) = ca {
            url.push_str(&format!("&ca_cert={}", ca.display()));
        }
        S3Store::open_with(S3Location::parse(&url).unwrap(), Some(S3_TEST_KEY)).unwrap()
    };
    let trusted = open(Some(&ca_f));
    trusted
        .put("chunks/00/00/0001", Bytes::from_static(b"sealed"))
        .await
        .unwrap();
    assert_eq!(
        &trusted.get("chunks/00/00/0001").await.unwrap()[..],
        b"sealed"
    );
    // The system's roots do not know the private CA, nor does another CA.
    for (what, store) in [
        ("the system roots", open(None)),
        ("another CA", open(Some(&stranger_f))),
    ] {
        let e = store.get("chunks/00/00/0001").await;
        assert!(e.is_err(), "trusted the server through {what}");
    }
    // A CA file that holds no certificate is refused when the store opens.
    let empty = f("empty.pem", "");
    let e = S3Store::open_with(
        S3Location::parse(&format!(
            "s3://tls-bucket?endpoint={endpoint}&ca_cert={}",
            empty.display()
        ))
        .unwrap(),
        Some(S3_TEST_KEY),
    )
    .unwrap_err();
    assert!(e.to_string().contains("no certificate"), "{e}");
}
