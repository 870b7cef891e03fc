//! The S3 backend against a real S3-compatible server (moto, or the one at
//! `COFFER_TEST_S3_ENDPOINT`): the object store contract, prefixes, and
//! errors that name the problem.

use bytes::Bytes;
use coffer_store::{ObjectStore, S3Location, S3Store, StoreError, conformance};
use coffer_testkit::{S3_TEST_KEY, TestS3};

fn store(url: &str) -> S3Store {
    S3Store::open_with(S3Location::parse(url).unwrap(), Some(S3_TEST_KEY)).unwrap()
}

#[tokio::test]
async fn s3_store_passes_the_contract() {
    let server = TestS3::start();
    conformance::run(&store(&server.bucket())).await;
}

#[tokio::test]
async fn prefixes_keep_deployments_apart() {
    let server = TestS3::start();
    let bucket = server.bucket();
    let (path, query) = bucket.split_once('?').unwrap();
    let a = store(&format!("{path}/site-a?{query}"));
    let b = store(&format!("{path}/site-b?{query}"));
    conformance::run(&a).await;
    assert!(b.list("").await.unwrap().is_empty(), "b sees nothing of a");
    b.put("chunks/01/aa/0001", Bytes::from_static(b"b's"))
        .await
        .unwrap();
    assert_ne!(&a.get("chunks/01/aa/0001").await.unwrap()[..], b"b's");
    assert!(a.describe().contains("/site-a"), "{}", a.describe());
}

#[tokio::test]
async fn a_missing_bucket_is_a_clear_error() {
    let server = TestS3::start();
    let s = store(&format!(
        "s3://no-such-bucket?endpoint={}",
        server.endpoint()
    ));
    match s.put("chunks/01/aa/0001", Bytes::from_static(b"x")).await {
        Err(StoreError::Io { key, cause }) => {
            assert_eq!(key, "chunks/01/aa/0001");
            assert!(
                cause
                    .to_string()
                    .contains("bucket 'no-such-bucket' does not exist"),
                "{cause}"
            );
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_bucket_fails_listing_with_what_to_do() {
    let server = TestS3::start();
    let s = store(&format!(
        "s3://no-such-bucket?endpoint={}",
        server.endpoint()
    ));
    let e = s
        .list("chunks/")
        .await
        .expect_err("listing a missing bucket");
    assert!(e.to_string().contains("the bucket does not exist"), "{e}");
}
