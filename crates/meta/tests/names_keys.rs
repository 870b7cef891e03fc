//! Names are unique per account and kind in the database itself, and a
//! disk's or snapshot's KEK is read through its DEK, on this pass's backend:
//! a second disk or snapshot of a name fails with `NameTaken` and changes
//! nothing, racing creates of one name leave exactly one row, a deleted
//! resource's name can be used again, another account may use the same
//! name, and the KEK a row reports is the one its DEK names.

use coffer_meta::{DekRow, DiskRow, Meta, MetaError, SnapshotBy, SnapshotRow, VolumeRow};
use coffer_testkit::TestMetadata;
use coffer_types::{EncryptionType, Id, Kind};

struct Fixture {
    meta: Meta,
    account: Id,
    other_account: Id,
    kek: Id,
    dek: Id,
}

async fn fixture(db: &TestMetadata) -> Fixture {
    let meta = Meta::open(db.url()).await.unwrap();
    let p = meta
        .create_tenant_with_principal("t", "a", "p", true)
        .await
        .unwrap();
    let q = meta
        .create_tenant_with_principal("u", "b", "q", false)
        .await
        .unwrap();
    let kek = Id::random(Kind::Key);
    meta.insert_platform_key(kek, "local", b"wrapped")
        .await
        .unwrap();
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
    Fixture {
        meta,
        account: p.account_id,
        other_account: q.account_id,
        kek,
        dek,
    }
}

fn volume(dek: Id) -> VolumeRow {
    VolumeRow {
        dek2_id: None,
        id: Id::random(Kind::Volume),
        dek_id: dek,
        chunk_size: 65536,
        size: 65536,
        parent: None,
        head_generation: 0,
        live: true,
        region: "local".into(),
    }
}

/// A disk row; its `kek_id` is deliberately a key that does not exist, to
/// show that the stored fact is the DEK's.
fn disk(account: Id, name: &str, vol: &VolumeRow) -> DiskRow {
    DiskRow {
        id: Id::random(Kind::Disk),
        account_id: account,
        name: name.into(),
        region: "local".into(),
        zone: "local-a".into(),
        size: vol.size,
        volume_id: vol.id,
        encryption: EncryptionType::Platform,
        kek_id: Id::random(Kind::Key),
        source_snapshot_id: None,
        created_at: coffer_meta::now(),
        encryption_set_id: None,
        source_image_id: None,
        origin: Default::default(),
    }
}

fn snapshot(d: &DiskRow, name: &str, generation: u64) -> SnapshotRow {
    SnapshotRow {
        id: Id::random(Kind::Snapshot),
        account_id: d.account_id,
        name: name.into(),
        region: d.region.clone(),
        source_disk_id: Some(d.id),
        volume_id: d.volume_id,
        generation,
        size: d.size,
        encryption: d.encryption,
        kek_id: Id::random(Kind::Key),
        created_at: coffer_meta::now(),
        encryption_set_id: None,
        image: None,
        created_by: coffer_types::CreationMethod::Snapshot,
        origin: Default::default(),
    }
}

fn not_open() -> SnapshotBy<'static> {
    SnapshotBy::NotOpen {
        me: None,
        now_ms: coffer_meta::now_ms(),
    }
}

fn assert_taken(e: MetaError, kind: Kind, account: Id, name: &str) {
    match e {
        MetaError::NameTaken {
            kind: k,
            account: a,
            name: n,
        } => assert_eq!((k, a, n.as_str()), (kind, account, name)),
        other => panic!("expected NameTaken, got {other:?}"),
    }
}

#[tokio::test]
async fn a_second_disk_of_a_name_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let f = fixture(&db).await;
    let v1 = volume(f.dek);
    let d1 = disk(f.account, "web", &v1);
    f.meta.create_disk(&d1, &v1).await.unwrap();

    let v2 = volume(f.dek);
    let e = f
        .meta
        .create_disk(&disk(f.account, "web", &v2), &v2)
        .await
        .unwrap_err();
    assert_taken(e, Kind::Disk, f.account, "web");
    // Nothing of the refused create is left: not its disk, not its volume.
    assert_eq!(f.meta.list_disks(Some(f.account)).await.unwrap().len(), 1);
    assert!(f.meta.volume(v2.id).await.is_err(), "the volume was kept");

    // Another account may use the name; a deleted disk's name is free again.
    let v3 = volume(f.dek);
    f.meta
        .create_disk(&disk(f.other_account, "web", &v3), &v3)
        .await
        .unwrap();
    f.meta.delete_disk(d1.id).await.unwrap();
    let v4 = volume(f.dek);
    f.meta
        .create_disk(&disk(f.account, "web", &v4), &v4)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_second_snapshot_of_a_name_is_refused_and_the_head_stays() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let f = fixture(&db).await;
    let v = volume(f.dek);
    let d = disk(f.account, "db", &v);
    f.meta.create_disk(&d, &v).await.unwrap();
    let s1 = snapshot(&d, "nightly", 0);
    f.meta.create_snapshot(&s1, not_open()).await.unwrap();
    let e = f
        .meta
        .create_snapshot(&snapshot(&d, "nightly", 1), not_open())
        .await
        .unwrap_err();
    assert_taken(e, Kind::Snapshot, f.account, "nightly");
    assert_eq!(
        f.meta.volume(v.id).await.unwrap().head_generation,
        1,
        "a refused snapshot must not move the head"
    );
    // A disk may share a snapshot's name (names are per kind), and the
    // snapshot's name is free once it is deleted.
    let v2 = volume(f.dek);
    f.meta
        .create_disk(&disk(f.account, "nightly", &v2), &v2)
        .await
        .unwrap();
    f.meta.delete_snapshot(s1.id).await.unwrap();
    f.meta
        .create_snapshot(&snapshot(&d, "nightly", 1), not_open())
        .await
        .unwrap();
}

#[tokio::test]
async fn racing_creates_of_one_name_leave_one_disk() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let f = fixture(&db).await;
    let mut tasks = vec![];
    for _ in 0..8 {
        let meta = f.meta.clone();
        let (account, dek) = (f.account, f.dek);
        tasks.push(tokio::spawn(async move {
            let v = volume(dek);
            meta.create_disk(&disk(account, "race", &v), &v).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(e) => assert_taken(e, Kind::Disk, f.account, "race"),
        }
    }
    assert_eq!(won, 1, "exactly one create of the name may win");
    assert_eq!(f.meta.list_disks(Some(f.account)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_kek_of_a_disk_and_its_snapshots_is_read_through_the_dek() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let f = fixture(&db).await;
    let v = volume(f.dek);
    let d = disk(f.account, "d", &v);
    f.meta.create_disk(&d, &v).await.unwrap();
    let s = snapshot(&d, "s", 0);
    f.meta.create_snapshot(&s, not_open()).await.unwrap();
    assert_eq!(f.meta.disk(d.id).await.unwrap().unwrap().kek_id, f.kek);
    assert_eq!(f.meta.snapshot(s.id).await.unwrap().unwrap().kek_id, f.kek);
    let listed = f.meta.list_disks(None).await.unwrap();
    assert_eq!(listed[0].kek_id, f.kek);
    let page = f
        .meta
        .list_snapshots_page(&coffer_meta::ListFilter {
            visible: coffer_meta::Visible::All,
            name: None,
            account: None,
            zone: None,
            attached: None,
            source: None,
            tag: None,
            state: None,
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(page[0].kek_id, f.kek);
}

#[tokio::test]
async fn racing_tag_changes_keep_the_limit_and_a_deleted_resource_gets_none() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let f = fixture(&db).await;
    let v = volume(f.dek);
    let d = disk(f.account, "tagged", &v);
    f.meta.create_disk(&d, &v).await.unwrap();
    let tag = |k: &str| coffer_types::Tag::new(k, "v").unwrap();
    let first: Vec<_> = (0..49).map(|i| tag(&format!("k{i}"))).collect();
    f.meta.tag_resource(d.id, &first, 50).await.unwrap();
    // Eight writers add one new key each at once: one fits.
    let mut tasks = vec![];
    for i in 0..8 {
        let meta = f.meta.clone();
        let t = tag(&format!("new{i}"));
        tasks.push(tokio::spawn(async move {
            meta.tag_resource(d.id, &[t], 50).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(MetaError::Conflict(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1, "exactly one tag fits under the limit");
    let tags = f.meta.tags_of(&[d.id]).await.unwrap();
    assert_eq!(tags[&d.id].len(), 50);
    // A resource that is gone gets no tag.
    let gone = Id::random(Kind::Disk);
    assert!(matches!(
        f.meta.tag_resource(gone, &[tag("x")], 50).await,
        Err(MetaError::NotFound(_))
    ));
    assert!(f.meta.tags_of(&[gone]).await.unwrap().is_empty());
}
