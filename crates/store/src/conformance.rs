//! The contract of [`ObjectStore`] as a test suite that
//! every backend runs (the local and memory ones here, S3 in its own crate).

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

    match store.get("chunks/01/aa/0002").await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("get of a missing key must be NotFound, got {other:?}"),
    }
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
}
