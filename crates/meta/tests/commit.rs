//! Format v2 commits on this pass's backend: a commit reads the rows its
//! new extents overlap, not the volume's whole map (so a commit of scattered
//! 4 KiB writes costs what it writes, however large the disk), and what it
//! records is still exactly right — checked against a per-sector model over
//! seeded random writes, zeroings, snapshots and snapshot deletions, with
//! every kept snapshot's view compared and the consistency checker finding
//! no row that no view sees (also once the disk is deleted, and then its
//! snapshots).

use std::collections::HashMap;
use std::sync::Arc;

use coffer_meta::{
    DekRow, DiskRow, Extent, Loc, Meta, ObjectRef, SnapshotBy, SnapshotRow, VolumeRow,
};
use coffer_testkit::TestMetadata;
use coffer_types::{EncryptionType, Id, Kind};

struct Fixture {
    meta: Meta,
    disk: DiskRow,
    vol: VolumeRow,
    serial: u64,
}

impl Fixture {
    async fn new(db: &TestMetadata, chunk_size: u32, chunks: u64) -> Self {
        let meta = Meta::open(db.url()).await.unwrap();
        let p = meta
            .create_tenant_with_principal("t", "a", "p", true)
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
        let vol = VolumeRow {
            dek2_id: None,
            id: Id::random(Kind::Volume),
            dek_id: dek,
            chunk_size,
            size: u64::from(chunk_size) * chunks,
            parent: None,
            head_generation: 0,
            live: true,
            region: "local".into(),
        };
        let disk = DiskRow {
            id: Id::random(Kind::Disk),
            account_id: p.account_id,
            name: "d".into(),
            region: "local".into(),
            zone: "local-a".into(),
            size: vol.size,
            volume_id: vol.id,
            encryption: EncryptionType::Platform,
            kek_id: kek,
            source_snapshot_id: None,
            created_at: coffer_meta::now(),
            encryption_set_id: None,
            source_image_id: None,
            origin: Default::default(),
        };
        meta.create_disk(&disk, &vol).await.unwrap();
        Fixture {
            meta,
            disk,
            vol,
            serial: 0,
        }
    }

    fn sectors(&self) -> u32 {
        self.vol.chunk_size / 4096
    }

    /// A fresh segment object, one slot per sector of a chunk.
    fn object(&mut self) -> Arc<ObjectRef> {
        self.serial += 1;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.serial.to_be_bytes());
        Arc::new(ObjectRef {
            id,
            writer: self.vol.id,
            kind: 2,
            index: self.serial,
            slots: self.sectors(),
            dek: self.vol.dek_id,
            dek2: None,
        })
    }

    async fn head(&self) -> u64 {
        self.meta.volume(self.vol.id).await.unwrap().head_generation
    }

    async fn snapshot(&self) -> SnapshotRow {
        let head = self.head().await;
        let s = SnapshotRow {
            id: Id::random(Kind::Snapshot),
            account_id: self.disk.account_id,
            name: format!("s{head}"),
            region: "local".into(),
            source_disk_id: Some(self.disk.id),
            volume_id: self.vol.id,
            generation: head,
            size: self.vol.size,
            encryption: EncryptionType::Platform,
            kek_id: self.disk.kek_id,
            created_at: coffer_meta::now(),
            encryption_set_id: None,
            image: None,
            created_by: coffer_types::CreationMethod::Snapshot,
            origin: Default::default(),
        };
        let by = SnapshotBy::NotOpen {
            me: None,
            now_ms: coffer_meta::now_ms(),
        };
        self.meta.create_snapshot(&s, by).await.unwrap();
        s
    }
}

/// A sector's content in the model: (object serial, slot), or zeroes.
type Model = HashMap<(u64, u32), (u64, u32)>;

fn data(obj: &Arc<ObjectRef>, first: u32, count: u32) -> Extent {
    Extent {
        first,
        count,
        loc: Loc::Obj {
            obj: obj.clone(),
            first_slot: first,
        },
    }
}

fn zero(first: u32, count: u32) -> Extent {
    Extent {
        first,
        count,
        loc: Loc::Zero,
    }
}

fn apply(model: &mut Model, changes: &[(u64, Vec<Extent>)]) {
    for (idx, es) in changes {
        for e in es {
            for s in e.first..e.end() {
                match &e.loc {
                    Loc::Obj { obj, first_slot } => {
                        model.insert((*idx, s), (obj.index, first_slot + s - e.first));
                    }
                    _ => {
                        model.remove(&(*idx, s));
                    }
                }
            }
        }
    }
}

async fn view(meta: &Meta, vol: Id, generation: u64) -> Model {
    let mut out = Model::new();
    for (idx, es) in meta.resolve_view(vol, generation).await.unwrap() {
        for e in es {
            let Loc::Obj { obj, first_slot } = &e.loc else {
                panic!("a resolved view holds data extents only, got {e:?}");
            };
            for s in e.first..e.end() {
                assert!(
                    out.insert((idx, s), (obj.index, first_slot + s - e.first))
                        .is_none(),
                    "sector {s} of chunk {idx} resolved twice"
                );
            }
        }
    }
    out
}

async fn commit(f: &Fixture, changes: &[(u64, Vec<Extent>)]) -> u64 {
    let head = f.head().await;
    f.meta
        .commit_extents(f.vol.id, head, None, changes)
        .await
        .unwrap()
        .read
}

#[tokio::test]
async fn a_commit_reads_the_rows_its_extents_overlap_not_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    // 256 chunks of 64 sectors, each holding 32 one-sector extents (every
    // even sector): a map of 8,192 rows.
    let mut f = Fixture::new(&db, 256 * 1024, 256).await;
    let mut model = Model::new();
    let dense: Vec<(u64, Vec<Extent>)> = (0..256u64)
        .map(|idx| {
            let o = f.object();
            (idx, (0..32).map(|i| data(&o, 2 * i, 1)).collect())
        })
        .collect();
    apply(&mut model, &dense);
    commit(&f, &dense).await;

    // Sixteen scattered one-sector writes, each over one stored extent.
    let scattered = |f: &mut Fixture, at: u32| -> Vec<(u64, Vec<Extent>)> {
        let o = f.object();
        (0..16u64)
            .map(|i| (i * 16 + 3, vec![data(&o, at, 1)]))
            .collect()
    };
    let w = scattered(&mut f, 10);
    apply(&mut model, &w);
    let read = commit(&f, &w).await;
    assert_eq!(
        read, 16,
        "16 one-sector writes over one extent each read {read} rows (the chunks hold 512)"
    );
    assert_eq!(view(&f.meta, f.vol.id, f.head().await).await, model);

    // Below a snapshot: the snapshot's rows they overlap, nothing more.
    let snap = f.snapshot().await;
    let at_snap = model.clone();
    let w = scattered(&mut f, 12);
    apply(&mut model, &w);
    let read = commit(&f, &w).await;
    assert_eq!(read, 16, "over a snapshot: read {read} rows");
    // Writing the same sectors again replaces the head's extents.
    let w = scattered(&mut f, 12);
    apply(&mut model, &w);
    let read = commit(&f, &w).await;
    assert_eq!(read, 32, "rewriting the head: read {read} rows");
    assert_eq!(view(&f.meta, f.vol.id, f.head().await).await, model);
    assert_eq!(view(&f.meta, f.vol.id, snap.generation).await, at_snap);

    // Once the snapshot is gone its rows are seen by the head alone, and a
    // write may hide one together with rows it does not overlap: those
    // chunks are read whole, and the hidden rows go.
    f.meta.delete_snapshot(snap.id).await.unwrap();
    let o = f.object();
    let w: Vec<(u64, Vec<Extent>)> = (0..16u64)
        .map(|i| (i * 16 + 3, vec![data(&o, 14, 2)]))
        .collect();
    apply(&mut model, &w);
    let read = commit(&f, &w).await;
    assert!(
        (16 * 32..=16 * 34).contains(&read),
        "after a snapshot's deletion: read {read} rows, expected the 16 chunks whole"
    );
    assert_eq!(view(&f.meta, f.vol.id, f.head().await).await, model);
    let findings = f.meta.fsck().await.unwrap();
    assert!(findings.is_empty(), "{findings:?}");
    f.meta.close().await;
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Every kept snapshot reads as its model, and the consistency checker
/// finds nothing (no row that no view sees).
async fn views_and_fsck_hold(f: &Fixture, snaps: &[(SnapshotRow, Model)], at: &str) {
    for (s, m) in snaps {
        assert_eq!(
            &view(&f.meta, f.vol.id, s.generation).await,
            m,
            "{at}: snapshot at generation {}",
            s.generation
        );
    }
    let findings = f.meta.fsck().await.unwrap();
    assert!(findings.is_empty(), "{at}: {findings:?}");
}

#[tokio::test]
async fn random_commits_snapshots_and_deletions_match_a_model() {
    let seed = std::env::var("COFFER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()));
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    // Six chunks of sixteen sectors: small, so writes overlap often.
    let mut f = Fixture::new(&db, 64 * 1024, 6).await;
    let sectors = f.sectors();
    let mut model = Model::new();
    let mut snaps: Vec<(SnapshotRow, Model)> = Vec::new();
    let mut reads = 0;
    for step in 0..120 {
        let at = format!("seed {seed}, step {step}");
        match rng.below(10) {
            0..=6 => {
                let o = f.object();
                let mut changes: Vec<(u64, Vec<Extent>)> = Vec::new();
                for _ in 0..=rng.below(4) {
                    let idx = rng.below(6);
                    let first = u32::try_from(rng.below(u64::from(sectors))).unwrap();
                    let count = 1 + u32::try_from(rng.below(u64::from(sectors - first))).unwrap();
                    let e = if rng.below(4) == 0 {
                        zero(first, count)
                    } else {
                        data(&o, first, count)
                    };
                    match changes.iter_mut().find(|c| c.0 == idx) {
                        Some(c) => c.1.push(e),
                        None => changes.push((idx, vec![e])),
                    }
                }
                apply(&mut model, &changes);
                reads += commit(&f, &changes).await;
            }
            7 => {
                let s = f.snapshot().await;
                snaps.push((s, model.clone()));
            }
            _ if !snaps.is_empty() => {
                let i = usize::try_from(rng.below(snaps.len() as u64)).unwrap();
                let (s, _) = snaps.remove(i);
                f.meta.delete_snapshot(s.id).await.unwrap();
            }
            _ => {}
        }
        assert_eq!(
            view(&f.meta, f.vol.id, f.head().await).await,
            model,
            "{at}: the head"
        );
        views_and_fsck_hold(&f, &snaps, &at).await;
    }
    assert!(reads > 0, "the commits read rows");
    // The disk goes while snapshots stay: the rows only its head saw (a
    // chunk's one row above every snapshot included) are dead, the
    // snapshots' views unchanged.
    f.meta.delete_disk(f.disk.id).await.unwrap();
    views_and_fsck_hold(&f, &snaps, &format!("seed {seed}, after the disk went")).await;
    for (s, _) in snaps {
        f.meta.delete_snapshot(s.id).await.unwrap();
    }
    let findings = f.meta.fsck().await.unwrap();
    assert!(
        findings.is_empty(),
        "seed {seed}, after every snapshot went: {findings:?}"
    );
    assert!(
        f.meta.volume(f.vol.id).await.is_err(),
        "seed {seed}: the volume went with its last view"
    );
    f.meta.close().await;
}
