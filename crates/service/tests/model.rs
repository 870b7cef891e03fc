//! Model-based tests of the whole storage path (service, volume, metadata on
//! real SQLite, objects in a real directory): random sequences of writes,
//! zeroes, trims, flushes, snapshots, restores, deletions, re-attachments and
//! garbage collection, each checked against a plain byte-vector model.
//!
//! Invariants checked:
//! - every read of every disk equals the model (nothing lost, nothing mixed);
//! - every snapshot restores alone to exactly what the disk held when it was
//!   taken, whatever was deleted since;
//! - after garbage collection every object the metadata names exists (no
//!   lost chunk), and once all is flushed the store holds exactly the
//!   objects the metadata names (no leaked chunk);
//! - a failing object store fails flushes and snapshots loudly but loses no
//!   acknowledged write, and the data is intact once it heals;
//! - a restart (new service over the same files) sees exactly the flushed
//!   state.
//!
//! The seed of each run is printed; set `COFFER_MODEL_SEED` to replay one.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use coffer_keyvault::{FileRootKey, KeyVault};
use coffer_meta::Meta;
use coffer_nbd::{BlockDevice, ExportResolver};
use coffer_service::model::{CreateDisk, CreateSnapshot};
use coffer_service::{Caller, ExportResolverImpl, Service, ServiceConfig};
use coffer_store::{FaultyStore, LocalStore, ObjectStore, S3Location, S3Store, chunk_key};
use coffer_testkit::{S3_TEST_KEY, TestMetadata, TestStore};
use coffer_types::ByteSize;
use coffer_volume::VolumeConfig;

const MIB: u64 = 1 << 20;
const DISK: u64 = 2 * MIB;
const ZONES: [&str; 3] = ["local-a", "local-b", "local-c"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        // Runs of one byte value, so some chunks compress the model's
        // intent (and a zero run now and then makes all-zero chunks).
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            let run = usize::try_from(1 + self.below(70_000))
                .unwrap()
                .min(n - v.len());
            let b = if self.below(6) == 0 {
                0
            } else {
                u8::try_from(self.below(256)).unwrap()
            };
            if self.below(2) == 0 {
                v.extend(std::iter::repeat_n(b, run));
            } else {
                v.extend((0..run).map(|_| self.next().to_le_bytes()[0]));
            }
        }
        v
    }
}

fn us(v: u64) -> usize {
    usize::try_from(v).unwrap()
}

/// One assembled service over files in `dir`.
struct World {
    svc: Arc<Service>,
    faulty: Arc<FaultyStore>,
    resolver: ExportResolverImpl,
    caller: Caller,
}

async fn open_world(
    dir: &Path,
    db: &TestMetadata,
    objects: &TestStore,
    admin_token: Option<&str>,
) -> (World, String) {
    let meta = Meta::open(db.url()).await.unwrap();
    let local: Arc<dyn ObjectStore> = match objects.url() {
        Some(url) => Arc::new(
            S3Store::open_with(S3Location::parse(url).unwrap(), Some(S3_TEST_KEY)).unwrap(),
        ),
        None => Arc::new(LocalStore::open(dir.join("objects")).unwrap()),
    };
    let faulty = Arc::new(FaultyStore::new(local));
    let root = Arc::new(FileRootKey::load_or_create(&dir.join("keys/root.key")).unwrap());
    let vault = KeyVault::open(meta.clone(), root).await.unwrap();
    let config = ServiceConfig {
        chunk_size: 64 * 1024,
        volume: VolumeConfig {
            dirty_high_water: 256 * 1024,
            io_parallelism: 4,
            gc_notify: None,
            ..VolumeConfig::default()
        },
        // No lease loop runs here: a lease longer than the test keeps this
        // node alive (a restart below is a new run of the same node).
        lease_ttl: std::time::Duration::from_secs(3600),
        ..ServiceConfig::default()
    };
    let svc = Service::new(meta, faulty.clone() as Arc<dyn ObjectStore>, vault, config);
    svc.join("model", "http://127.0.0.1:1", "127.0.0.1:10809")
        .await
        .unwrap();
    svc.recover().await.unwrap();
    let token = match admin_token {
        Some(t) => t.to_string(),
        None => svc.bootstrap().await.unwrap().unwrap().to_string(),
    };
    let caller = svc.authenticate(&token).await.unwrap();
    let resolver = ExportResolverImpl::new(svc.clone());
    (
        World {
            svc,
            faulty,
            resolver,
            caller,
        },
        token,
    )
}

struct ModelDisk {
    id: String,
    export: String,
    dev: Arc<dyn BlockDevice>,
    data: Vec<u8>,
}

struct ModelSnap {
    id: String,
    data: Vec<u8>,
}

impl World {
    async fn attach(&self, id: &str) -> (String, Arc<dyn BlockDevice>) {
        let a = self.svc.attach_disk(&self.caller, id).await.unwrap();
        let uri = a.uri.unwrap();
        let export = uri.rsplit('/').next().unwrap().to_string();
        let dev = self
            .resolver
            .open(&export)
            .await
            .expect("fresh export opens");
        (export, dev)
    }

    async fn new_disk(&self, rng: &mut Rng, source: Option<&ModelSnap>) -> ModelDisk {
        let zone = ZONES[us(rng.below(3))];
        let d = self
            .svc
            .create_disk(
                &self.caller,
                CreateDisk {
                    name: format!("d{}", rng.below(1_000_000)),
                    zone: zone.into(),
                    size: source.is_none().then_some(ByteSize(DISK)),
                    source_snapshot_id: source.map(|s| s.id.clone()),
                    account_id: None,
                    encryption_set_id: None,
                    tags: Default::default(),
                },
            )
            .await
            .unwrap();
        // Every volume writes under a DEK of its own, also one made from a
        // snapshot (the snapshot's volume keeps its DEK).
        let meta = self.svc.meta();
        let row = meta.disk(d.id.parse().unwrap()).await.unwrap().unwrap();
        let dek = meta.volume(row.volume_id).await.unwrap().dek_id;
        if let Some(s) = source {
            let snap = meta.snapshot(s.id.parse().unwrap()).await.unwrap().unwrap();
            let parent = meta.volume(snap.volume_id).await.unwrap();
            assert_ne!(
                dek, parent.dek_id,
                "a disk from a snapshot has a DEK of its own"
            );
        }
        let (export, dev) = self.attach(&d.id).await;
        let data = source.map_or_else(|| vec![0; us(DISK)], |s| s.data.clone());
        ModelDisk {
            id: d.id,
            export,
            dev,
            data,
        }
    }

    /// Read a whole disk through its device and compare with the model.
    async fn check_disk(&self, d: &ModelDisk, what: &str) {
        let step = 256 * 1024u32;
        for off in (0..DISK).step_by(us(u64::from(step))) {
            let got = d.dev.read(off, step).await.unwrap();
            let o = us(off);
            assert!(
                got[..] == d.data[o..o + us(u64::from(step))],
                "{what}: disk {} differs from the model at {off}",
                d.id
            );
        }
    }

    /// Restore a snapshot into a new disk, compare, and delete that disk.
    async fn check_snapshot(&self, rng: &mut Rng, s: &ModelSnap) {
        let d = self.new_disk(rng, Some(s)).await;
        self.check_disk(&d, &format!("restore of snapshot {}", s.id))
            .await;
        self.drop_disk(&d).await;
    }

    async fn drop_disk(&self, d: &ModelDisk) {
        self.svc.detach_disk(&self.caller, &d.id).await.unwrap();
        self.svc.delete_disk(&self.caller, &d.id).await.unwrap();
    }

    /// The object keys the metadata names, and the chunk objects in the store.
    async fn objects(&self) -> (HashSet<String>, HashSet<String>) {
        let named = self
            .svc
            .meta()
            .referenced_objects()
            .await
            .unwrap()
            .into_iter()
            .map(|(d, c)| chunk_key(d, c))
            .chain(
                self.svc
                    .meta()
                    .referenced_v2_objects()
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(w, id)| coffer_store::object_key(w.value(), &id)),
            )
            .collect();
        let mut stored: HashSet<String> = HashSet::new();
        for prefix in ["chunks/", "objects/"] {
            stored.extend(self.svc.store().list(prefix).await.unwrap());
        }
        (named, stored)
    }

    /// No lost chunk: after GC, everything named exists.
    async fn check_nothing_lost(&self) {
        self.svc.collect_garbage().await.unwrap();
        let (named, stored) = self.objects().await;
        let lost: Vec<_> = named.difference(&stored).collect();
        assert!(lost.is_empty(), "objects named but missing: {lost:?}");
    }

    /// No leaked chunk: with everything flushed and collected, the store
    /// holds exactly what the metadata names.
    async fn check_exact(&self, disks: &[ModelDisk]) {
        for d in disks {
            d.dev.flush().await.unwrap();
        }
        self.svc.collect_garbage().await.unwrap();
        let (named, stored) = self.objects().await;
        let leaked: Vec<_> = stored.difference(&named).collect();
        let lost: Vec<_> = named.difference(&stored).collect();
        assert!(lost.is_empty(), "objects named but missing: {lost:?}");
        assert!(
            leaked.is_empty(),
            "objects stored but named by nothing: {leaked:?}"
        );
    }
}

fn range(rng: &mut Rng, max_len: u64) -> (u64, u32) {
    let len = 1 + rng.below(max_len);
    let off = rng.below(DISK - len + 1);
    (off, u32::try_from(len).unwrap())
}

async fn run_model(seed: u64, steps: usize) {
    println!("model seed {seed} ({steps} steps); replay with COFFER_MODEL_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let objects = TestStore::new();
    let (w, token) = open_world(dir.path(), &db, &objects, None).await;
    let mut rng = Rng(seed | 1);
    let mut disks = vec![w.new_disk(&mut rng, None).await];
    let mut snaps: Vec<ModelSnap> = Vec::new();
    let mut counts = [0usize; 12];

    for step in 0..steps {
        let op = rng.below(100);
        let di = us(rng.below(disks.len() as u64));
        match op {
            0..=34 => {
                counts[0] += 1;
                let (off, len) = range(&mut rng, 300_000);
                let data = rng.bytes(us(u64::from(len)));
                let fua = rng.below(8) == 0;
                let d = &mut disks[di];
                d.dev
                    .write(off, Bytes::from(data.clone()), fua)
                    .await
                    .unwrap();
                d.data[us(off)..us(off) + data.len()].copy_from_slice(&data);
            }
            35..=41 => {
                counts[1] += 1;
                let (off, len) = range(&mut rng, 400_000);
                let d = &mut disks[di];
                if rng.below(2) == 0 {
                    d.dev.write_zeroes(off, len, true, false).await.unwrap();
                } else {
                    d.dev.trim(off, len, false).await.unwrap();
                }
                d.data[us(off)..us(off) + us(u64::from(len))].fill(0);
            }
            42..=46 => {
                counts[2] += 1;
                disks[di].dev.flush().await.unwrap();
            }
            47..=61 => {
                counts[3] += 1;
                let (off, len) = range(&mut rng, 300_000);
                let d = &disks[di];
                let got = d.dev.read(off, len).await.unwrap();
                assert!(
                    got[..] == d.data[us(off)..us(off) + us(u64::from(len))],
                    "step {step}: read {off}+{len} of disk {} differs from the model",
                    d.id
                );
            }
            62..=69 if snaps.len() < 6 => {
                counts[4] += 1;
                let s = w
                    .svc
                    .create_snapshot(
                        &w.caller,
                        CreateSnapshot {
                            disk_id: disks[di].id.clone(),
                            name: format!("s{step}"),
                            tags: Default::default(),
                        },
                    )
                    .await
                    .unwrap();
                snaps.push(ModelSnap {
                    id: s.id,
                    data: disks[di].data.clone(),
                });
            }
            70..=74 if !snaps.is_empty() && disks.len() < 5 => {
                counts[5] += 1;
                let si = us(rng.below(snaps.len() as u64));
                let d = w.new_disk(&mut rng, Some(&snaps[si])).await;
                disks.push(d);
            }
            75..=79 if !snaps.is_empty() => {
                counts[6] += 1;
                let si = us(rng.below(snaps.len() as u64));
                let s = snaps.swap_remove(si);
                w.svc.delete_snapshot(&w.caller, &s.id).await.unwrap();
            }
            80..=83 if disks.len() > 1 => {
                counts[7] += 1;
                let d = disks.swap_remove(di);
                w.drop_disk(&d).await;
            }
            84..=89 => {
                // Detach (flushes and closes) and attach again: the volume
                // is reopened from the metadata alone.
                counts[8] += 1;
                let id = disks[di].id.clone();
                w.svc.detach_disk(&w.caller, &id).await.unwrap();
                assert!(
                    w.resolver.open(&disks[di].export).await.is_none(),
                    "a detached disk's export token must stop working"
                );
                let (export, dev) = w.attach(&id).await;
                disks[di].export = export;
                disks[di].dev = dev;
                w.check_disk(&disks[di], &format!("step {step}, after re-attach"))
                    .await;
            }
            90..=94 => {
                counts[9] += 1;
                w.check_nothing_lost().await;
            }
            95..=97 if !snaps.is_empty() => {
                counts[10] += 1;
                let si = us(rng.below(snaps.len() as u64));
                w.check_snapshot(&mut rng, &snaps[si]).await;
            }
            _ => {
                counts[11] += 1;
                let d = &disks[di];
                w.check_disk(d, &format!("step {step}")).await;
            }
        }
    }
    println!(
        "ops: write {} zero/trim {} flush {} read {} snapshot {} restore {} delete-snap {} delete-disk {} reattach {} gc {} check-snap {} check-disk {}",
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4],
        counts[5],
        counts[6],
        counts[7],
        counts[8],
        counts[9],
        counts[10],
        counts[11]
    );

    for d in &disks {
        w.check_disk(d, "end").await;
    }
    for s in &snaps {
        w.check_snapshot(&mut rng, s).await;
    }
    w.check_exact(&disks).await;
    let report = w.svc.fsck(&w.caller, true).await.unwrap();
    assert!(report.ok, "fsck after the run: {:?}", report.findings);
    assert_eq!(report.objects_verified, Some(report.objects_named));
    assert_eq!(
        (report.objects_missing, report.objects_unreferenced),
        (0, 0)
    );

    // Restart: a new service over the same files sees the flushed state;
    // attachments (and their export tokens) survive.
    w.svc.shutdown().await;
    w.svc.meta().close().await;
    drop(w);
    let (w2, _) = open_world(dir.path(), &db, &objects, Some(&token)).await;
    for d in &mut disks {
        d.dev = w2
            .resolver
            .open(&d.export)
            .await
            .expect("attachments survive a restart");
        w2.check_disk(d, "after restart").await;
    }
    for s in &snaps {
        w2.check_snapshot(&mut rng, s).await;
    }
    // Deleting everything leaves no object behind.
    for d in &disks {
        w2.drop_disk(d).await;
    }
    for s in &snaps {
        w2.svc.delete_snapshot(&w2.caller, &s.id).await.unwrap();
    }
    w2.svc.collect_garbage().await.unwrap();
    let (named, stored) = w2.objects().await;
    assert!(
        named.is_empty() && stored.is_empty(),
        "{} named, {} stored after deleting everything",
        named.len(),
        stored.len()
    );
}

fn seeds() -> Vec<u64> {
    match std::env::var("COFFER_MODEL_SEED") {
        Ok(s) => vec![s.parse().expect("COFFER_MODEL_SEED is a number")],
        Err(_) => {
            // Two fixed seeds (repeatable) and one new each run.
            let fresh = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            vec![
                0x5eed_0001,
                0x5eed_0002,
                u64::try_from(fresh % u128::from(u64::MAX)).unwrap(),
            ]
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_agree_with_the_model() {
    for seed in seeds() {
        run_model(seed, 400).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let objects = TestStore::new();
    let (w, _) = open_world(dir.path(), &db, &objects, None).await;
    let mut rng = Rng(0xfa17);
    let mut d = w.new_disk(&mut rng, None).await;
    // Some committed data first.
    let first = rng.bytes(us(DISK));
    d.dev
        .write(0, Bytes::from(first.clone()), true)
        .await
        .unwrap();
    d.data.copy_from_slice(&first);
    let snaps_before = w
        .svc
        .list_snapshots(&w.caller, Default::default())
        .await
        .unwrap()
        .items
        .len();

    // Every put fails from now on.
    w.faulty.fail_puts_after(1);
    // Writes within six 64 KiB chunks: 384 KiB of dirty data, past the
    // 256 KiB high-water mark (so the background write-back runs and fails)
    // but under the 512 KiB at which writers wait for write-back.
    let window = 6 * 64 * 1024;
    for _ in 0..20 {
        let len = 1 + rng.below(100_000);
        let off = rng.below(window - len);
        let data = rng.bytes(us(len));
        // Acknowledged: the data is in the write-back cache.
        d.dev
            .write(off, Bytes::from(data.clone()), false)
            .await
            .unwrap();
        d.data[us(off)..us(off) + data.len()].copy_from_slice(&data);
    }
    // Past twice the mark a writer must wait for write-back, which fails:
    // the write is refused (EIO) and changes nothing, instead of caching
    // without bound. Write 256 KiB pieces of the second MiB until one is.
    let mut refused = None;
    for i in 0..8u64 {
        let off = MIB + (i % 4) * 256 * 1024;
        let piece = rng.bytes(256 * 1024);
        match d.dev.write(off, Bytes::from(piece.clone()), false).await {
            Ok(()) => d.data[us(off)..us(off) + piece.len()].copy_from_slice(&piece),
            Err(_) => {
                refused = Some((off, piece));
                break;
            }
        }
    }
    let (refused_off, refused_piece) =
        refused.expect("writes must be refused once the cache is full and the store is down");
    let err = d
        .dev
        .flush()
        .await
        .expect_err("a flush must fail when puts fail");
    assert!(format!("{err}").contains("injected"), "{err}");
    let snap = w
        .svc
        .create_snapshot(
            &w.caller,
            CreateSnapshot {
                disk_id: d.id.clone(),
                name: "during-outage".into(),
                tags: Default::default(),
            },
        )
        .await;
    assert!(
        snap.is_err(),
        "a snapshot must fail while its data cannot be stored"
    );
    assert_eq!(
        w.svc
            .list_snapshots(&w.caller, Default::default())
            .await
            .unwrap()
            .items
            .len(),
        snaps_before,
        "a failed snapshot leaves no snapshot behind"
    );
    // Reads still see every acknowledged write.
    w.check_disk(&d, "during the outage").await;

    // Reads of stored data fail loudly (EIO), never return wrong data.
    w.faulty.fail_gets(true);
    // At 512 KiB: stored before the outage, not in the cache.
    let e = d.dev.read(512 * 1024, 4096).await;
    assert!(
        matches!(e, Err(coffer_nbd::DeviceError::Io(_))),
        "a read the store cannot serve is an I/O error: {e:?}"
    );
    w.faulty.fail_gets(false);

    // Heal: the next flush stores everything; re-open from metadata.
    w.faulty.fail_puts_after(0);
    // The client retries the refused write.
    d.dev
        .write(refused_off, Bytes::from(refused_piece.clone()), false)
        .await
        .unwrap();
    d.data[us(refused_off)..us(refused_off) + refused_piece.len()].copy_from_slice(&refused_piece);
    d.dev.flush().await.unwrap();
    w.svc.detach_disk(&w.caller, &d.id).await.unwrap();
    let (export, dev) = w.attach(&d.id).await;
    d.export = export;
    d.dev = dev;
    w.check_disk(&d, "after the outage and a re-attach").await;
    // Objects put before the outage began but never committed are garbage
    // for the start-up sweep; once swept the store is exact.
    w.svc.recover().await.unwrap();
    w.check_exact(std::slice::from_ref(&d)).await;
}
