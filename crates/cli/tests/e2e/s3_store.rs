//! `coffer serve --store s3://…` against a real S3-compatible server (moto,
//! or `COFFER_TEST_S3_ENDPOINT`): the walk-through's data path, kill -9 and
//! restart, fsck --deep, and no plaintext in any stored object.

use crate::common;

use std::sync::Arc;

use coffer_store::{ObjectStore, S3Location, S3Store};
use coffer_testkit::{S3_TEST_KEY, TestS3};
use common::*;

#[test]
fn disks_and_snapshots_on_s3() {
    require("qemu-img", "qemu-utils");
    let s3 = TestS3::start();
    let url = s3.bucket();
    let mut s = Server::start_with(
        &["--store", &url],
        &[
            ("AWS_ACCESS_KEY_ID", S3_TEST_KEY.0),
            ("AWS_SECRET_ACCESS_KEY", S3_TEST_KEY.1),
        ],
    );
    let disk = s.create_disk("s3-disk", "64MiB", "local-a");
    let uri = s.attach(&disk);
    // Recognisable text, so the scan below can look for it.
    let src = s.scratch().join("src.raw");
    let line = b"COFFER-ON-S3-PLAINTEXT-MARKER-0123456789-abcdefghijklmnopqrstuvwxyz\n";
    std::fs::write(&src, line.repeat((48 << 20) / line.len())).unwrap();
    qemu_img_in(&src, "raw", &uri);
    let snap = s.cli(&["snapshot", "create", "--disk", &disk, "--name", "v1"]);
    let snap = snap["id"].as_str().unwrap().to_string();

    // kill -9 after the flush qemu-img sent; restart on the same bucket.
    s.kill9();
    s.launch(&[]);
    let export = uri.rsplit('/').next().unwrap().to_string();
    let uri = format!("nbd://{}/{export}", s.nbd);
    let back = s.scratch().join("back.raw");
    qemu_img_out(&uri, &back);
    let expect = {
        let mut e = std::fs::read(&src).unwrap();
        e.resize(64 << 20, 0);
        e
    };
    assert!(
        std::fs::read(&back).unwrap() == expect,
        "disk read back from S3 differs"
    );
    let restored = s.cli(&[
        "disk",
        "create",
        "--name",
        "from-s3",
        "--from-snapshot",
        &snap,
        "--zone",
        "local-c",
    ]);
    let ruri = s.attach(restored["id"].as_str().unwrap());
    let back2 = s.scratch().join("back2.raw");
    qemu_img_out(&ruri, &back2);
    assert!(
        std::fs::read(&back2).unwrap() == expect,
        "restore from S3 differs"
    );

    let report = s.cli(&["admin", "fsck", "--deep"]);
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        report["objects_verified"].as_u64().unwrap() >= 192,
        "{report}"
    );

    // Every object in the bucket is sealed: no 32-byte window of the text.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(
            S3Store::open_with(S3Location::parse(&url).unwrap(), Some(S3_TEST_KEY)).unwrap(),
        );
        let keys = store.list("").await.unwrap();
        assert!(keys.len() >= 192, "{} objects in the bucket", keys.len());
        let doubled = line.repeat(2);
        let windows: std::collections::HashSet<&[u8]> =
            (0..line.len()).map(|i| &doubled[i..i + 32]).collect();
        for k in keys {
            let obj = store.get(&k).await.unwrap();
            assert!(
                !obj.windows(32).any(|w| windows.contains(w)),
                "plaintext in S3 object {k}"
            );
        }
    });
}
