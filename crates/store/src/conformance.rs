//! The contract of [`ObjectStore`] as a test suite that every backend runs
//! (the local, memory and faulty ones in their unit tests, S3 against a
//! real server in this crate's integration tests).

use bytes::Bytes;

use crate::{ObjectStore, StoreError};

/// Run every contract check against `store`, which must be empty. Panics on
/// the first violation, naming it.
pub async fn run(store: &dyn ObjectStore) {
    let data = Bytes::from(
        (0..100_000u32)
            .map(|i| (i % 253) as u8)
            .collect::<Vec<u8>>(),
    );
    store
        .put("chunks/01/aa/0001", data.clone())
        .await
        .expect("put");
    assert_eq!(
        &store.get("chunks/01/aa/0001").await.expect("get")[..],
        &data[..],
        "get returns what put stored"
    );

    match store
        .put("chunks/01/aa/0001", Bytes::from_static(b"other"))
        .await
    {
        Err(StoreError::AlreadyExists(_)) => {}
        other => panic!("second put of a key must be AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        &store.get("chunks/01/aa/0001").await.unwrap()[..],
        &data[..],
        "a refused put leaves the object"
    );

    ranged_reads(store, "chunks/01/aa/0001", &data, Read::Plain).await;

    // The streaming variants keep the same contract: create-only, whole
    // objects, clipped ranges; and each side reads what the other wrote.
    store
        .put_streaming("chunks/01/cc/0004", data.clone())
        .await
        .expect("put_streaming");
    assert_eq!(
        &store.get("chunks/01/cc/0004").await.expect("get")[..],
        &data[..],
        "get returns what put_streaming stored"
    );
    match store
        .put_streaming("chunks/01/cc/0004", Bytes::from_static(b"other"))
        .await
    {
        Err(StoreError::AlreadyExists(_)) => {}
        other => panic!("second put_streaming of a key must be AlreadyExists, got {other:?}"),
    }
    for how in [Read::Streaming, Read::Uncached] {
        ranged_reads(store, "chunks/01/cc/0004", &data, how).await;
        ranged_reads(store, "chunks/01/aa/0001", &data, how).await;
    }
    match store.get_range_streaming("chunks/01/aa/0002", 0..10).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("get_range_streaming of a missing key must be NotFound, got {other:?}"),
    }
    match store.get_range_uncached("chunks/01/aa/0002", 0..10).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("get_range_uncached of a missing key must be NotFound, got {other:?}"),
    }
    store.delete("chunks/01/cc/0004").await.expect("delete");

    match store.get("chunks/01/aa/0002").await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("get of a missing key must be NotFound, got {other:?}"),
    }
    match store.get_range("chunks/01/aa/0002", 0..10).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("get_range of a missing key must be NotFound, got {other:?}"),
    }
    assert!(
        store
            .get_range("chunks/01/aa/0002", 5..5)
            .await
            .expect("an empty range does not look the key up")
            .is_empty()
    );
    assert!(
        matches!(
            store.get_range("A/b", 0..10).await,
            Err(StoreError::InvalidKey(_))
        ),
        "get_range of a bad key must be InvalidKey"
    );
    for bad in ["", "../x", "A/b", "a//b"] {
        assert!(
            matches!(
                store.put(bad, Bytes::new()).await,
                Err(StoreError::InvalidKey(_))
            ),
            "{bad:?} accepted"
        );
    }

    store
        .put("chunks/01/bb/0003", Bytes::new())
        .await
        .expect("empty object");
    store
        .put("other/x", Bytes::from_static(b"x"))
        .await
        .unwrap();
    let mut listed = store.list("chunks/").await.expect("list");
    listed.sort();
    assert_eq!(
        listed,
        vec![
            "chunks/01/aa/0001".to_string(),
            "chunks/01/bb/0003".to_string()
        ]
    );
    assert_eq!(
        store.list("chunks/01/bb/").await.unwrap(),
        vec!["chunks/01/bb/0003".to_string()]
    );
    assert!(store.list("nothing/").await.unwrap().is_empty());
    for range in [0..10, 0..1, 3..4] {
        assert!(
            store
                .get_range("chunks/01/bb/0003", range.clone())
                .await
                .unwrap_or_else(|e| panic!("range {range:?} of an empty object: {e}"))
                .is_empty(),
            "any range of an empty object is empty"
        );
    }

    store.sync().await.expect("sync");
    store.delete("chunks/01/aa/0001").await.expect("delete");
    store
        .delete("chunks/01/aa/0001")
        .await
        .expect("delete is idempotent");
    assert!(matches!(
        store.get("chunks/01/aa/0001").await,
        Err(StoreError::NotFound(_))
    ));
    store
        .put("chunks/01/aa/0001", Bytes::from_static(b"again"))
        .await
        .expect("key reusable after delete");

    deletes_in_batches(store).await;
}

/// Which ranged read.
#[derive(Debug, Clone, Copy)]
enum Read {
    Plain,
    Streaming,
    Uncached,
}

/// `get_range` (or a variant) of the object `key`, which holds `data` (at
/// least 10,000 bytes).
async fn ranged_reads(store: &dyn ObjectStore, key: &str, data: &[u8], how: Read) {
    let len = data.len() as u64;
    let read = |range: std::ops::Range<u64>| async move {
        match how {
            Read::Plain => store.get_range(key, range.clone()).await,
            Read::Streaming => store.get_range_streaming(key, range.clone()).await,
            Read::Uncached => store.get_range_uncached(key, range.clone()).await,
        }
        .unwrap_or_else(|e| panic!("get_range ({how:?}) {range:?}: {e}"))
    };
    assert_eq!(&read(1000..5000).await[..], &data[1000..5000], "middle");
    assert_eq!(&read(0..1).await[..], &data[..1], "first byte");
    assert_eq!(&read(0..len).await[..], data, "whole object");
    assert_eq!(
        &read(len - 100..len + 1000).await[..],
        &data[data.len() - 100..],
        "a range past the end is clipped to the tail"
    );
    assert_eq!(
        &read(len - 1..len).await[..],
        &data[data.len() - 1..],
        "last byte"
    );
    for past in [
        len..len + 1,
        len..len + 10,
        len + 1..len + 2,
        2 * len..3 * len,
    ] {
        assert!(
            read(past.clone()).await.is_empty(),
            "{past:?}: a range at or past the end is empty"
        );
    }
    #[allow(clippy::reversed_empty_ranges)]
    for empty in [10..10, 20..10, 0..0] {
        assert!(
            read(empty.clone()).await.is_empty(),
            "{empty:?}: an empty range"
        );
    }
}

/// `delete_many`: every named key goes, missing keys are fine, other keys
/// stay, a bad key deletes nothing.
async fn deletes_in_batches(store: &dyn ObjectStore) {
    for k in ["batch/1", "batch/2", "batch/3", "batch/5"] {
        store
            .put(k, Bytes::from(k.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    let keys: Vec<String> = ["batch/1", "batch/2", "batch/3", "batch/4"]
        .map(String::from)
        .to_vec();
    store.delete_many(&keys).await.expect("delete_many");
    for k in &keys {
        assert!(
            matches!(store.get(k).await, Err(StoreError::NotFound(_))),
            "{k} survived delete_many"
        );
    }
    assert_eq!(
        &store.get("batch/5").await.expect("an unnamed key stays")[..],
        b"batch/5"
    );
    store
        .delete_many(&keys)
        .await
        .expect("delete_many is idempotent");
    store.delete_many(&[]).await.expect("an empty batch");

    match store
        .delete_many(&["batch/5".to_string(), "Bad/key".to_string()])
        .await
    {
        Err(StoreError::InvalidKey(_)) => {}
        other => panic!("delete_many with a bad key must be InvalidKey, got {other:?}"),
    }
    assert!(
        store.get("batch/5").await.is_ok(),
        "a batch with a bad key deletes nothing"
    );

    // More keys than the default runs at once.
    let many: Vec<String> = (0..2 * crate::DELETE_CONCURRENCY + 3)
        .map(|i| format!("batch/many/{i:04}"))
        .collect();
    for k in &many {
        store.put(k, Bytes::from_static(b"m")).await.unwrap();
    }
    store.delete_many(&many).await.expect("a large batch");
    assert!(store.list("batch/many/").await.unwrap().is_empty());
    store
        .delete_many(&["batch/5".to_string()])
        .await
        .expect("one key");
    assert!(store.list("batch/").await.unwrap().is_empty());
}
