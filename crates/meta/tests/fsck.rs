//! The metadata consistency checker finds each kind of damage it claims to:
//! a clean lineage passes, then each rule is broken on purpose (by SQL, as
//! a bug or a bad restore would) and must be reported by its code.

use coffer_meta::{ChunkEntry, DekRow, Meta, VolumeRow};
use coffer_testkit::TestMetadata;
use coffer_types::{Id, Kind};

async fn codes(meta: &Meta) -> Vec<&'static str> {
    let mut c: Vec<&'static str> = meta.fsck().await.unwrap().iter().map(|f| f.code).collect();
    c.sort_unstable();
    c.dedup();
    c
}

#[tokio::test]
async fn fsck_reports_each_broken_rule() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let meta = Meta::open(db.url()).await.unwrap();
    let kek = Id::random(Kind::Key);
    assert!(
        meta.insert_platform_key(kek, "local", b"wrapped")
            .await
            .unwrap()
    );
    let dek = Id::random(Kind::Dek);
    meta.insert_dek(&DekRow {
        id: dek,
        kek_id: kek,
        kek_version: 1,
        wrapped: b"wrapped-dek".to_vec(),
        encryption_set_id: None,
    })
    .await
    .unwrap();
    let vol = Id::random(Kind::Volume);
    meta.create_volume(&VolumeRow {
        dek2_id: None,
        id: vol,
        dek_id: dek,
        chunk_size: 65536,
        size: 4 * 65536,
        parent: None,
        head_generation: 0,
        live: true,
        region: "local".into(),
    })
    .await
    .unwrap();
    let counters = meta.reserve_counters(dek, 3, None).await.unwrap();
    let entries: Vec<(u64, ChunkEntry)> = (0..3u64)
        .zip(counters)
        .map(|(i, c)| (i, ChunkEntry::Object(c)))
        .collect();
    meta.commit_chunks(vol, 0, None, &entries).await.unwrap();
    assert_eq!(
        codes(&meta).await,
        Vec::<&str>::new(),
        "a clean lineage passes"
    );

    // Each break below is done through a raw connection to the same database.
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(db.url()).await.unwrap();
    let v = vol.to_string();
    let exec = |sql: String| {
        let raw = raw.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&raw)
                .await
                .unwrap();
        }
    };
    // A second row naming chunk 0's object, at chunk 3.
    exec(format!(
        "INSERT INTO chunks (volume_id, chunk_index, generation, counter) SELECT volume_id, 3, 0, counter FROM chunks WHERE volume_id = '{v}' AND chunk_index = 0"
    ))
    .await;
    assert_eq!(codes(&meta).await, vec!["ObjectNamedTwice"]);
    exec(format!(
        "DELETE FROM chunks WHERE volume_id = '{v}' AND chunk_index = 3"
    ))
    .await;

    // An object whose counter was never reserved.
    exec(format!(
        "INSERT INTO chunks (volume_id, chunk_index, generation, counter) VALUES ('{v}', 3, 0, 1000)"
    ))
    .await;
    assert_eq!(codes(&meta).await, vec!["CounterNotReserved"]);
    exec(format!(
        "DELETE FROM chunks WHERE volume_id = '{v}' AND chunk_index = 3"
    ))
    .await;

    // A named object queued for deletion.
    exec(format!(
        "INSERT INTO gc_queue (dek_id, counter, enqueued_at) SELECT '{dek}', counter, 'now' FROM chunks WHERE volume_id = '{v}' AND chunk_index = 1"
    ))
    .await;
    assert_eq!(codes(&meta).await, vec!["QueuedObjectInUse"]);
    exec("DELETE FROM gc_queue".into()).await;

    // A chunk beyond the volume's size.
    exec(format!(
        "UPDATE chunks SET chunk_index = 9 WHERE volume_id = '{v}' AND chunk_index = 2"
    ))
    .await;
    assert_eq!(codes(&meta).await, vec!["ChunkBeyondSize"]);
    exec(format!(
        "UPDATE chunks SET chunk_index = 2 WHERE volume_id = '{v}' AND chunk_index = 9"
    ))
    .await;

    // A row above the head, and (no disk uses the head: not live) a volume
    // nothing needs.
    exec(format!(
        "UPDATE chunks SET generation = 5 WHERE volume_id = '{v}' AND chunk_index = 2"
    ))
    .await;
    // (The head's view cannot see it either.)
    assert_eq!(codes(&meta).await, vec!["RowAboveHead", "RowsNotCollected"]);
    exec(format!(
        "UPDATE chunks SET generation = 0 WHERE volume_id = '{v}' AND chunk_index = 2"
    ))
    .await;
    exec(format!("UPDATE volumes SET live = 0 WHERE id = '{v}'")).await;
    assert_eq!(codes(&meta).await, vec!["VolumeNotCollected"]);
    exec(format!("UPDATE volumes SET live = 1 WHERE id = '{v}'")).await;
    // Extent rows of a volume that does not exist. PostgreSQL has no
    // foreign key to refuse them since schema version 18; SQLite's is
    // switched off on this connection, as a bad restore might have it.
    let ghost = Id::random(Kind::Volume);
    {
        use sqlx::Connection;
        let mut c = sqlx::AnyConnection::connect(db.url()).await.unwrap();
        if c.backend_name() != "PostgreSQL" {
            sqlx::query("PRAGMA foreign_keys=OFF")
                .execute(&mut c)
                .await
                .unwrap();
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO extents (volume_id, chunk_index, generation, first_sector, sectors, obj_kind, obj_index, obj_slots, first_slot) \
             VALUES ('{ghost}', 0, 0, 0, 1, 0, 0, 0, 0), ('{ghost}', 1, 0, 0, 1, 0, 0, 0, 0)"
        )))
        .execute(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
    }
    let found = meta.fsck().await.unwrap();
    assert_eq!(codes(&meta).await, vec!["ExtentOfNoVolume"]);
    assert!(
        found[0]
            .detail
            .contains(&format!("2 extent rows name volume {ghost}")),
        "{found:?}"
    );
    exec(format!("DELETE FROM extents WHERE volume_id = '{ghost}'")).await;
    assert_eq!(codes(&meta).await, Vec::<&str>::new(), "repaired");
    raw.close().await;
    meta.close().await;
}
