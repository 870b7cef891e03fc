//! Two nodes in one process (two services over one metadata store and one
//! object store) to drive what processes cannot be made to do on cue: a
//! holder that stops renewing its lease (paused, cut off) while its client
//! keeps writing. Once another node takes the disk over, the old holder's
//! writes, flushes and snapshots are refused ([`ServiceError`] `NodeFenced`
//! at the volume), nothing it does reaches the chunk map, and the orphan
//! sweep of either node never deletes an object a live holder may still
//! commit.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use coffer_keyvault::{FileRootKey, KeyVault};
use coffer_meta::Meta;
use coffer_nbd::{DeviceError, ExportResolver};
use coffer_service::model::{CreateDisk, CreateSnapshot};
use coffer_service::{Caller, ExportResolverImpl, Service, ServiceConfig};
use coffer_store::{LocalStore, ObjectStore, S3Location, S3Store};
use coffer_testkit::{S3_TEST_KEY, TestMetadata, TestStore};
use coffer_types::ByteSize;
use coffer_volume::VolumeConfig;

const MIB: u64 = 1 << 20;
/// One MiB as a buffer length.
const M: usize = 1 << 20;
const LEASE: Duration = Duration::from_secs(3);

async fn node(
    dir: &Path,
    db: &TestMetadata,
    objects: &TestStore,
    name: &str,
) -> (Arc<Service>, ExportResolverImpl) {
    let meta = Meta::open(db.url()).await.unwrap();
    let store: Arc<dyn ObjectStore> = match objects.url() {
        Some(url) => Arc::new(
            S3Store::open_with(S3Location::parse(url).unwrap(), Some(S3_TEST_KEY)).unwrap(),
        ),
        None => Arc::new(LocalStore::open(dir.join("objects")).unwrap()),
    };
    let root = Arc::new(FileRootKey::load_or_create(&dir.join("keys/root.key")).unwrap());
    let vault = KeyVault::open(meta.clone(), root).await.unwrap();
    let config = ServiceConfig {
        chunk_size: 64 * 1024,
        volume: VolumeConfig {
            dirty_high_water: 1 << 20,
            io_parallelism: 4,
            gc_notify: None,
            ..VolumeConfig::default()
        },
        lease_ttl: LEASE,
        ..ServiceConfig::default()
    };
    let svc = Service::new(meta, store, vault, config);
    svc.join(name, &format!("http://{name}.invalid"), "127.0.0.1:10809")
        .await
        .unwrap();
    svc.recover().await.unwrap();
    let resolver = ExportResolverImpl::new(svc.clone());
    (svc, resolver)
}

fn export_of(uri: &str) -> String {
    uri.rsplit('/').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_is_fenced_once_another_node_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    // Several nodes share a network database: PostgreSQL in every pass.
    let db = TestMetadata::postgres();
    let objects = TestStore::new();
    let (a, ra) = node(dir.path(), &db, &objects, "a").await;
    let token = a.bootstrap().await.unwrap().unwrap();
    let caller: Caller = a.authenticate(&token).await.unwrap();
    let (b, rb) = node(dir.path(), &db, &objects, "b").await;
    // Both renew their leases until node a is "paused" below.
    let lease_a = a.spawn_lease();
    b.spawn_lease();

    let disk = a
        .create_disk(
            &caller,
            CreateDisk {
                name: "d".into(),
                zone: "local-a".into(),
                size: Some(ByteSize(4 * MIB)),
                source_snapshot_id: None,
                account_id: None,
                encryption_set_id: None,
                tags: Default::default(),
            },
        )
        .await
        .unwrap();
    let att = a.attach_disk(&caller, &disk.id).await.unwrap();
    let export = export_of(att.uri.as_deref().unwrap());
    let dev_a = ra.open(&export).await.expect("holder opens its export");
    assert!(
        rb.open(&export).await.is_none(),
        "another node must not open a disk a live node holds"
    );
    dev_a
        .write(0, Bytes::from(vec![0xa1; M]), false)
        .await
        .unwrap();
    dev_a.flush().await.unwrap();
    // Written back but never flushed: objects in flight under a's
    // reservation, which b's sweep must leave while a holds the disk.
    // 16 chunks of 64 KiB flushed. The next MiB reaches the high-water
    // mark, so it is written back in the background but not committed:
    // 16 objects in flight under a's reservation.
    dev_a
        .write(MIB, Bytes::from(vec![0xa2; M]), false)
        .await
        .unwrap();
    let stored = || async { b.store().list("objects/").await.unwrap().len() };
    for _ in 0..200 {
        if stored().await >= 32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = b.fsck(&caller, false).await.unwrap();
    assert_eq!(
        (report.objects_named, report.objects_unreferenced),
        (16, 16),
        "16 flushed, 16 in flight: {report:?}"
    );
    b.sweep_orphans().await.unwrap();
    assert_eq!(
        stored().await,
        32,
        "the sweep must keep what a live holder has in flight"
    );

    // Node a stops renewing; its lease passes, b reaps it and takes the
    // disk over.
    lease_a.abort();
    tokio::time::sleep(LEASE + LEASE / 2).await;
    let dev_b = rb
        .open(&export)
        .await
        .expect("b takes over an unheld attachment");

    // The zombie keeps going: its writes, flushes and snapshots are refused.
    let w = dev_a
        .write(2 * MIB, Bytes::from(vec![0xee; M]), false)
        .await;
    let f = dev_a.flush().await;
    assert!(
        matches!(f, Err(DeviceError::Shutdown(_)) | Err(DeviceError::Io(_)))
            && (w.is_err() || f.is_err()),
        "a fenced holder's flush must fail: write {w:?}, flush {f:?}"
    );
    assert!(
        dev_a.read(0, 4096).await.is_err(),
        "a fenced volume is closed"
    );
    // The dead node cannot take the disk back (a reconnecting client).
    assert!(
        ra.open(&export).await.is_none(),
        "a node whose lease passed must not take an attachment"
    );
    let snap = a
        .create_snapshot(
            &caller,
            CreateSnapshot {
                disk_id: disk.id.clone(),
                name: "zombie".into(),
                tags: Default::default(),
            },
        )
        .await;
    assert_eq!(
        snap.map(|s| s.id).map_err(|e| e.code.as_str()),
        Err("HeldByOtherNode"),
        "a snapshot asked of the old holder goes to the new one"
    );

    // b sees exactly what a flushed: the first MiB; nothing of the zombie.
    let got = dev_b
        .read(0, u32::try_from(3 * MIB).unwrap())
        .await
        .unwrap();
    assert!(got[..M].iter().all(|&x| x == 0xa1));
    assert!(
        got[M..2 * M].iter().all(|&x| x == 0),
        "what the zombie wrote back but never committed is not on the disk"
    );
    assert!(
        got[2 * M..].iter().all(|&x| x == 0),
        "the zombie's write must not reach the disk"
    );
    dev_b
        .write(3 * MIB, Bytes::from(vec![0xb3; M]), false)
        .await
        .unwrap();
    dev_b.flush().await.unwrap();

    // With the zombie fenced, its in-flight objects are garbage: b's sweep
    // removes them and the store matches the chunk maps exactly.
    b.detach_disk(&caller, &disk.id).await.unwrap();
    b.collect_garbage().await.unwrap();
    b.sweep_orphans().await.unwrap();
    let report = b.fsck(&caller, true).await.unwrap();
    assert!(report.ok, "{:?}", report.findings);
    assert_eq!(report.objects_unreferenced, 0, "{report:?}");
    assert_eq!(report.objects_stored, report.objects_named, "{report:?}");
}
