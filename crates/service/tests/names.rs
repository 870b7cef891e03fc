//! Names are unique per account and kind on every create path, racing
//! creates included: an empty disk, a disk from a snapshot, a snapshot of a
//! disk nobody has open, and a snapshot of an open disk (taken by its
//! volume). A refused create answers 409 `NameTaken` naming the account
//! and the name and what to do, and leaves nothing behind.

use std::sync::Arc;

use coffer_keyvault::{FileRootKey, KeyVault};
use coffer_meta::Meta;
use coffer_nbd::ExportResolver;
use coffer_service::model::{CreateDisk, CreateSnapshot};
use coffer_service::{Caller, ErrorCode, ExportResolverImpl, Service, ServiceConfig};
use coffer_store::{LocalStore, ObjectStore};
use coffer_testkit::TestMetadata;
use coffer_types::ByteSize;
use coffer_wire::ListParams;

async fn world() -> (tempfile::TempDir, TestMetadata, Arc<Service>, Caller) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let meta = Meta::open(db.url()).await.unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::open(dir.path().join("objects")).unwrap());
    let root = Arc::new(FileRootKey::load_or_create(&dir.path().join("root.key")).unwrap());
    let vault = KeyVault::open(meta.clone(), root).await.unwrap();
    let config = ServiceConfig {
        lease_ttl: std::time::Duration::from_secs(3600),
        ..ServiceConfig::default()
    };
    let svc = Service::new(meta, store, vault, config);
    svc.join("names", "http://127.0.0.1:1", "127.0.0.1:10809")
        .await
        .unwrap();
    let admin = svc
        .authenticate(&svc.bootstrap().await.unwrap().unwrap())
        .await
        .unwrap();
    (dir, db, svc, admin)
}

fn disk(name: &str, from: Option<&str>) -> CreateDisk {
    CreateDisk {
        name: name.into(),
        zone: "local-a".into(),
        size: from.is_none().then_some(ByteSize(1 << 20)),
        source_snapshot_id: from.map(str::to_string),
        account_id: None,
        encryption_set_id: None,
        tags: Default::default(),
    }
}

fn snapshot(disk: &str, name: &str) -> CreateSnapshot {
    CreateSnapshot {
        disk_id: disk.into(),
        name: name.into(),
        tags: Default::default(),
    }
}

/// `e` is the 409 for `name` in the caller's account.
fn assert_taken(e: &coffer_service::ServiceError, caller: &Caller, name: &str) {
    assert_eq!(e.code, ErrorCode::NameTaken, "{e:?}");
    assert_eq!(e.status(), 409);
    let account = caller.principal.account_id.to_string();
    assert!(
        e.message.contains(&account) && e.message.contains(&format!("'{name}'")),
        "the message names the account and the name: {}",
        e.message
    );
    assert!(e.message.contains("pick another name"), "{}", e.message);
}

async fn count_disks(svc: &Service, who: &Caller, name: &str) -> usize {
    let q = ListParams {
        name: Some(name.into()),
        ..Default::default()
    };
    svc.list_disks(who, q).await.unwrap().items.len()
}

async fn count_snapshots(svc: &Service, who: &Caller, name: &str) -> usize {
    let q = ListParams {
        name: Some(name.into()),
        ..Default::default()
    };
    svc.list_snapshots(who, q).await.unwrap().items.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_create_path_refuses_a_taken_name_with_409() {
    let (_dir, _db, svc, admin) = world().await;
    let d = svc.create_disk(&admin, disk("web", None)).await.unwrap();
    let e = svc
        .create_disk(&admin, disk("web", None))
        .await
        .unwrap_err();
    assert_taken(&e, &admin, "web");

    let s = svc
        .create_snapshot(&admin, snapshot(&d.id, "base"))
        .await
        .unwrap();
    let e = svc
        .create_snapshot(&admin, snapshot(&d.id, "base"))
        .await
        .unwrap_err();
    assert_taken(&e, &admin, "base");

    let e = svc
        .create_disk(&admin, disk("web", Some(&s.id)))
        .await
        .unwrap_err();
    assert_taken(&e, &admin, "web");
    assert_eq!(count_disks(&svc, &admin, "web").await, 1);
    assert_eq!(count_snapshots(&svc, &admin, "base").await, 1);

    // A snapshot of an open disk goes through its volume: same answer.
    let a = svc.attach_disk(&admin, &d.id).await.unwrap();
    let export = a.uri.unwrap().rsplit('/').next().unwrap().to_string();
    let resolver = ExportResolverImpl::new(svc.clone());
    let dev = resolver.open(&export).await.unwrap();
    dev.write(0, bytes::Bytes::from(vec![7u8; 4096]), false)
        .await
        .unwrap();
    let e = svc
        .create_snapshot(&admin, snapshot(&d.id, "base"))
        .await
        .unwrap_err();
    assert_taken(&e, &admin, "base");
    svc.create_snapshot(&admin, snapshot(&d.id, "after-write"))
        .await
        .unwrap();

    // A deleted snapshot's name is free again.
    svc.delete_snapshot(&admin, &s.id).await.unwrap();
    svc.create_snapshot(&admin, snapshot(&d.id, "base"))
        .await
        .unwrap();
    drop(dev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_of_one_name_make_one_resource() {
    let (_dir, _db, svc, admin) = world().await;
    let mut tasks = vec![];
    for _ in 0..8 {
        let (svc, admin) = (svc.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            svc.create_disk(&admin, disk("race", None)).await
        }));
    }
    let mut won = vec![];
    for t in tasks {
        match t.await.unwrap() {
            Ok(d) => won.push(d.id),
            Err(e) => assert_taken(&e, &admin, "race"),
        }
    }
    assert_eq!(won.len(), 1, "one create of the name wins: {won:?}");
    assert_eq!(count_disks(&svc, &admin, "race").await, 1);

    // Racing snapshots of an open disk, which its volume records.
    let a = svc.attach_disk(&admin, &won[0]).await.unwrap();
    let export = a.uri.unwrap().rsplit('/').next().unwrap().to_string();
    let dev = ExportResolverImpl::new(svc.clone())
        .open(&export)
        .await
        .unwrap();
    let mut tasks = vec![];
    for _ in 0..8 {
        let (svc, admin, id) = (svc.clone(), admin.clone(), won[0].clone());
        tasks.push(tokio::spawn(async move {
            svc.create_snapshot(&admin, snapshot(&id, "race-snap"))
                .await
        }));
    }
    let mut made = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => made += 1,
            Err(e) => assert_taken(&e, &admin, "race-snap"),
        }
    }
    assert_eq!(made, 1);
    assert_eq!(count_snapshots(&svc, &admin, "race-snap").await, 1);
    drop(dev);
}
