//! Nodes, leases, holders and fencing at the metadata level, on this pass's
//! backend: each rule the service relies on for several nodes, checked
//! directly (clocks are passed in, so lease expiry needs no waiting).

use coffer_meta::{
    AttachmentRow, ChunkEntry, DekRow, DetachIf, DiskRow, Meta, MetaError, NodeRow, SnapshotBy,
    SnapshotRow, VolumeRow,
};
use coffer_testkit::TestMetadata;
use coffer_types::{Id, Kind};

const LEASE: i64 = 10_000;

struct Fixture {
    meta: Meta,
    dek: Id,
    vol: Id,
    disk: DiskRow,
    principal: Id,
}

async fn fixture(db: &TestMetadata) -> Fixture {
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
    let vol = Id::random(Kind::Volume);
    let disk = DiskRow {
        id: Id::random(Kind::Disk),
        account_id: p.account_id,
        name: "d".into(),
        region: "local".into(),
        zone: "local-a".into(),
        size: 4 * 65536,
        volume_id: vol,
        encryption: coffer_types::EncryptionType::Platform,
        kek_id: kek,
        source_snapshot_id: None,
        created_at: coffer_meta::now(),
        encryption_set_id: None,
        source_image_id: None,
        origin: Default::default(),
    };
    meta.create_disk(
        &disk,
        &VolumeRow {
            dek2_id: None,
            id: vol,
            dek_id: dek,
            chunk_size: 65536,
            size: 4 * 65536,
            parent: None,
            head_generation: 0,
            live: true,
            region: "local".into(),
        },
    )
    .await
    .unwrap();
    Fixture {
        meta,
        dek,
        vol,
        disk,
        principal: p.id,
    }
}

async fn node(meta: &Meta, name: &str, now: i64) -> Id {
    let id = Id::random(Kind::Node);
    meta.register_node(&NodeRow {
        id,
        name: name.into(),
        api_url: format!("http://{name}"),
        nbd_endpoint: format!("{name}:10809"),
        started_at: coffer_meta::now(),
        lease_expires_ms: now + LEASE,
    })
    .await
    .unwrap();
    id
}

/// The node holding the disk's attachment.
async fn holder_of(m: &Meta, f: &Fixture) -> Option<Id> {
    m.attachment_of_disk(f.disk.id)
        .await
        .unwrap()
        .expect("the disk is attached")
        .node_id
}

fn attachment(f: &Fixture, node: Option<Id>) -> AttachmentRow {
    AttachmentRow {
        id: Id::random(Kind::Attachment),
        disk_id: f.disk.id,
        token_hash: format!("hash-{}", Id::random(Kind::Token)),
        principal_id: f.principal,
        mode: "rw".into(),
        created_at: coffer_meta::now(),
        node_id: node,
        hold_id: None,
    }
}

#[tokio::test]
async fn leases_holders_and_takeover() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let f = fixture(&db).await;
    let m = &f.meta;
    let t0 = 1_000_000;
    let a = node(m, "a", t0).await;
    let b = node(m, "b", t0).await;
    let att = attachment(&f, Some(a));
    m.insert_attachment(&att, None, t0).await.unwrap();

    // A second attachment is refused while a is alive, even if asked to
    // replace the first.
    let second = attachment(&f, Some(b));
    assert!(matches!(
        m.insert_attachment(&second, Some(att.id), t0 + 1).await,
        Err(MetaError::Conflict(_))
    ));
    // b cannot take it over while a's lease runs; a can (a new hold).
    assert!(
        m.take_attachment(att.id, b, t0 + 1)
            .await
            .unwrap()
            .is_none()
    );
    let h1 = m.take_attachment(att.id, a, t0 + 1).await.unwrap().unwrap();
    let h2 = m.take_attachment(att.id, a, t0 + 2).await.unwrap().unwrap();
    assert_ne!(h1.hold, h2.hold, "every take is a new hold");
    assert!(!m.attachment_unheld(att.id, t0 + 1).await.unwrap());

    // Renewal works while the node's row exists.
    assert!(m.renew_node_lease(a, t0 + 5 + LEASE).await.unwrap());

    // Once a's lease passed, b may take the attachment over; a, dead, may
    // not take it back.
    let later = t0 + 5 + 2 * LEASE + 1;
    assert!(m.renew_node_lease(b, later + LEASE).await.unwrap());
    assert!(m.attachment_unheld(att.id, later).await.unwrap());
    assert!(m.take_attachment(att.id, a, later).await.unwrap().is_none());
    assert!(m.take_attachment(att.id, b, later).await.unwrap().is_some());
    assert_eq!(holder_of(m, &f).await, Some(b));

    // Reaping: a's row goes; b's attachment stays held by b.
    assert_eq!(m.fence_expired_nodes(later, Some(b)).await.unwrap(), 0);
    let names: Vec<String> = m
        .list_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["b"]);
    assert!(
        !m.renew_node_lease(a, later + LEASE).await.unwrap(),
        "a was reaped"
    );

    // b dies too: reaping releases its attachment, and a new attachment may
    // then replace the dead one.
    let dead = later + 2 * LEASE;
    assert_eq!(
        m.fence_expired_nodes(dead, Some(b)).await.unwrap(),
        0,
        "a node never reaps itself"
    );
    assert_eq!(m.fence_expired_nodes(dead, None).await.unwrap(), 1);
    assert_eq!(holder_of(m, &f).await, None);
    let c = node(m, "c", dead).await;
    let third = attachment(&f, Some(c));
    m.insert_attachment(&third, Some(att.id), dead)
        .await
        .unwrap();
    assert_eq!(
        m.attachment_of_disk(f.disk.id).await.unwrap().unwrap().id,
        third.id
    );

    // A restart of c (same name) releases what its previous run held.
    let c2 = node(m, "c", dead + 1).await;
    assert_ne!(c, c2);
    assert_eq!(holder_of(m, &f).await, None);
    assert!(
        m.take_attachment(third.id, c2, dead + 2)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_fenced_holder_changes_nothing_and_the_sweep_keeps_live_reservations() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let f = fixture(&db).await;
    let m = &f.meta;
    let t0 = coffer_meta::now_ms();
    let a = node(m, "a", t0).await;
    let att = attachment(&f, Some(a));
    m.insert_attachment(&att, None, t0).await.unwrap();
    let h = m.take_attachment(att.id, a, t0).await.unwrap().unwrap();

    let r1 = m.reserve_counters(f.dek, 4, Some(&h)).await.unwrap();
    let r2 = m.reserve_counters(f.dek, 4, Some(&h)).await.unwrap();
    let view = m.sweep_view().await.unwrap();
    for c in r1.clone().chain(r2.clone()) {
        assert!(
            view.keeps(f.dek.value(), c),
            "reserved counter {c} in flight"
        );
    }
    assert!(
        !view.keeps(f.dek.value(), r2.end),
        "beyond every reservation"
    );

    // Commit two objects of r1, resolving everything below r2: r1's
    // reservation goes, r2's stays.
    let entries = [
        (0, ChunkEntry::Object(r1.start)),
        (1, ChunkEntry::Object(r1.start + 1)),
    ];
    m.commit_chunks(f.vol, 0, Some((&h, r2.start)), &entries)
        .await
        .unwrap();
    let view = m.sweep_view().await.unwrap();
    assert!(view.keeps(f.dek.value(), r1.start), "named");
    assert!(
        !view.keeps(f.dek.value(), r1.start + 2),
        "resolved, unnamed: garbage"
    );
    assert!(view.keeps(f.dek.value(), r2.start), "still reserved");

    // Another node takes the disk over (a's holder is gone): every write of
    // a is refused and changes nothing.
    m.fence_expired_nodes(t0 + 2 * LEASE, None).await.unwrap();
    let b = node(m, "b", t0 + 2 * LEASE).await;
    let hb = m
        .take_attachment(att.id, b, t0 + 2 * LEASE)
        .await
        .unwrap()
        .unwrap();
    // a's reservations died with its hold; b's are live.
    let view = m.sweep_view().await.unwrap();
    assert!(!view.keeps(f.dek.value(), r2.start), "a's hold is over");
    let rb = m.reserve_counters(f.dek, 2, Some(&hb)).await.unwrap();
    assert!(m.sweep_view().await.unwrap().keeps(f.dek.value(), rb.start));
    let next = m.reserve_counters(f.dek, 1, None).await.unwrap().start;
    assert!(matches!(
        m.reserve_counters(f.dek, 4, Some(&h)).await,
        Err(MetaError::Fenced(_))
    ));
    assert_eq!(
        m.reserve_counters(f.dek, 1, None).await.unwrap().start,
        next + 1,
        "a fenced reservation does not advance the counter"
    );
    assert!(matches!(
        m.commit_chunks(
            f.vol,
            0,
            Some((&h, 0)),
            &[(2, ChunkEntry::Object(r2.start))]
        )
        .await,
        Err(MetaError::Fenced(_))
    ));
    let snap = snapshot_row(&f, "s");
    assert!(matches!(
        m.create_snapshot(&snap, SnapshotBy::Holder(&h)).await,
        Err(MetaError::Fenced(_))
    ));
    assert_eq!(m.chunk_row_count(f.vol).await.unwrap(), 2);
    assert_eq!(m.volume(f.vol).await.unwrap().head_generation, 0);

    // Detached (only by its holder): its reservations go with it, and
    // dropping dead ones leaves only named objects to keep.
    assert!(
        !m.delete_attachment(att.id, DetachIf::HeldBy(a))
            .await
            .unwrap()
    );
    assert!(
        m.delete_attachment(att.id, DetachIf::HeldBy(b))
            .await
            .unwrap()
    );
    m.drop_dead_reservations().await.unwrap();
    let view = m.sweep_view().await.unwrap();
    assert!(view.in_flight.is_empty(), "{:?}", view.in_flight);
    assert!(view.keeps(f.dek.value(), r1.start + 1));
    assert!(!view.keeps(f.dek.value(), r2.start));

    // A snapshot deleted before a copy of it commits: the copy fails and
    // nothing is created.
    m.create_snapshot(
        &snap,
        SnapshotBy::NotOpen {
            me: None,
            now_ms: t0,
        },
    )
    .await
    .unwrap();
    m.delete_snapshot(snap.id).await.unwrap();
    let copy_vol = VolumeRow {
        dek2_id: None,
        id: Id::random(Kind::Volume),
        dek_id: f.dek,
        chunk_size: 65536,
        size: f.disk.size,
        parent: Some((f.vol, 0)),
        head_generation: 0,
        live: true,
        region: "local".into(),
    };
    let copy = DiskRow {
        id: Id::random(Kind::Disk),
        volume_id: copy_vol.id,
        source_snapshot_id: Some(snap.id),
        ..f.disk.clone()
    };
    assert!(matches!(
        m.create_disk_from_snapshot(&copy, &copy_vol, snap.id).await,
        Err(MetaError::NotFound(_))
    ));
    assert!(m.disk(copy.id).await.unwrap().is_none());
    assert!(m.fsck().await.unwrap().is_empty());
}

/// A new snapshot row of the fixture's disk's head, not recorded yet.
fn snapshot_row(f: &Fixture, name: &str) -> SnapshotRow {
    SnapshotRow {
        id: Id::random(Kind::Snapshot),
        account_id: f.disk.account_id,
        name: name.into(),
        region: "local".into(),
        source_disk_id: Some(f.disk.id),
        volume_id: f.vol,
        generation: 0,
        size: f.disk.size,
        encryption: coffer_types::EncryptionType::Platform,
        kek_id: f.disk.kek_id,
        created_at: coffer_meta::now(),
        encryption_set_id: None,
        image: None,
        created_by: coffer_types::CreationMethod::Snapshot,
        origin: Default::default(),
    }
}

/// A snapshot of the fixture's disk, recorded, as a copy's source.
async fn snapshot_of(f: &Fixture, name: &str) -> SnapshotRow {
    let snap = snapshot_row(f, name);
    f.meta
        .create_snapshot(
            &snap,
            SnapshotBy::NotOpen {
                me: None,
                now_ms: 0,
            },
        )
        .await
        .unwrap();
    // It names the generation it froze; the head moved on.
    f.meta.snapshot(snap.id).await.unwrap().unwrap()
}

/// A copy job of `src` (with its reader and target volumes), for `image`
/// in a role if given.
fn copy_job(
    f: &Fixture,
    src: &SnapshotRow,
    image: Option<(Id, &str)>,
) -> (coffer_meta::JobRow, Option<VolumeRow>, VolumeRow) {
    let vol = |parent| VolumeRow {
        dek2_id: None,
        id: Id::random(Kind::Volume),
        dek_id: f.dek,
        chunk_size: 65536,
        size: src.size,
        parent,
        head_generation: 0,
        live: true,
        region: "local".into(),
    };
    let reader = vol(Some((src.volume_id, src.generation)));
    let target = vol(None);
    let now = coffer_meta::now();
    let job = coffer_meta::JobRow {
        id: Id::random(Kind::Job),
        account_id: src.account_id,
        kind: "snapshot-copy".into(),
        state: "running".into(),
        source_id: src.id,
        source_account: src.account_id,
        source_region: "local".into(),
        target_region: "local".into(),
        source_view: None,
        base: None,
        bytes_copied: 0,
        remote: None,
        target_id: Id::random(Kind::Snapshot),
        name: format!("copy-{}", Id::random(Kind::Snapshot)),
        reader_volume: Some(reader.id),
        target_volume: Some(target.id),
        bytes_total: src.size,
        bytes_done: 0,
        message: None,
        tags: vec![],
        created_by: f.principal,
        created_at: now.clone(),
        updated_at: now,
        finished_at: None,
        node_id: None,
        source_hash: None,
        target_hash: None,
        image: image.map(|(i, r)| (i, r.to_string())),
    };
    (job, Some(reader), target)
}

/// The snapshot a job makes, as its runner records it.
fn made_by(job: &coffer_meta::JobRow, target: &VolumeRow) -> SnapshotRow {
    SnapshotRow {
        id: job.target_id,
        account_id: job.account_id,
        name: job.name.clone(),
        region: "local".into(),
        source_disk_id: None,
        volume_id: target.id,
        generation: 0,
        size: job.bytes_total,
        encryption: coffer_types::EncryptionType::Platform,
        kek_id: Id::random(Kind::Key),
        created_at: coffer_meta::now(),
        encryption_set_id: None,
        image: job.image.clone(),
        created_by: coffer_types::CreationMethod::Copy,
        origin: Default::default(),
    }
}

#[tokio::test]
async fn a_node_that_lost_a_copy_job_can_neither_advance_end_nor_fail_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let f = fixture(&db).await;
    let m = &f.meta;
    let src = snapshot_of(&f, "src").await;
    let (job, reader, target) = copy_job(&f, &src, None);
    m.create_copy_job(&job, reader.as_ref(), &target)
        .await
        .unwrap();

    // Node A claims it, pauses past its lease; node B takes it over.
    let a = node(m, "a", 0).await;
    let ha = m.claim_job(job.id, a, 0).await.unwrap().expect("A claims");
    let b = node(m, "b", LEASE + 1).await;
    assert!(
        m.claim_job(job.id, b, 1).await.unwrap().is_none(),
        "A's lease still runs"
    );
    let hb = m
        .claim_job(job.id, b, LEASE + 1)
        .await
        .unwrap()
        .expect("B takes over once A's lease passed");
    assert_ne!(ha.hold, hb.hold);

    // A, waking up: fenced everywhere, and its failure changes nothing.
    assert!(matches!(
        m.job_progress(&ha, 65536, Some("copying")).await,
        Err(MetaError::Fenced(_))
    ));
    assert!(matches!(
        m.complete_copy(&ha, &made_by(&job, &target), "x", "x", &[])
            .await,
        Err(MetaError::Fenced(_))
    ));
    assert_eq!(
        m.fail_job(job.id, Some(&ha), "failed", "A lost it")
            .await
            .unwrap(),
        None
    );
    let now = m.job(job.id).await.unwrap().unwrap();
    assert_eq!(now.state, "running");
    assert_eq!(now.target_volume, Some(target.id));

    // B advances and finishes; then neither A nor a cancel touch the copy.
    m.job_progress(&hb, 65536, Some("copying")).await.unwrap();
    m.complete_copy(&hb, &made_by(&job, &target), "h", "h", &[])
        .await
        .unwrap();
    assert_eq!(
        m.fail_job(job.id, Some(&ha), "failed", "late")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        m.fail_job(job.id, None, "cancelled", "cancelled")
            .await
            .unwrap(),
        None
    );
    let done = m.job(job.id).await.unwrap().unwrap();
    assert_eq!(done.state, "succeeded");
    assert!(m.snapshot(job.target_id).await.unwrap().is_some());
    assert_eq!(m.volume(target.id).await.unwrap().id, target.id);
}

#[tokio::test]
async fn an_image_copy_becomes_available_with_its_last_job_and_fails_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let f = fixture(&db).await;
    let m = &f.meta;
    let src = snapshot_of(&f, "src").await;
    let me = node(m, "a", 0).await;
    let image = |name: &str| coffer_meta::ImageRow {
        id: Id::random(Kind::Image),
        account_id: f.disk.account_id,
        name: name.into(),
        region: "local".into(),
        description: String::new(),
        created_by: coffer_types::CreationMethod::Copy,
        origin: Default::default(),
        created_at: coffer_meta::now(),
        state: coffer_types::ImageState::Pending,
    };

    // Two jobs; the image is available only when both have ended.
    let ok = image("ok");
    let jobs = vec![
        copy_job(&f, &src, Some((ok.id, "root"))),
        copy_job(&f, &src, Some((ok.id, "data1"))),
    ];
    m.create_image_copy(&ok, &jobs, &[]).await.unwrap();
    for (i, (job, _, target)) in jobs.iter().enumerate() {
        let h = m.claim_job(job.id, me, 1).await.unwrap().unwrap();
        m.complete_copy(&h, &made_by(job, target), "h", "h", &[])
            .await
            .unwrap();
        let st = m.image(ok.id).await.unwrap().unwrap().state;
        let want = if i == 0 { "pending" } else { "available" };
        assert_eq!(st.as_str(), want, "after job {i}");
    }
    assert_eq!(m.image_snapshots(ok.id).await.unwrap().len(), 2);

    // A cancel of one fails the image and stops the other, volumes gone.
    let bad = image("bad");
    let jobs = vec![
        copy_job(&f, &src, Some((bad.id, "root"))),
        copy_job(&f, &src, Some((bad.id, "data1"))),
    ];
    m.create_image_copy(&bad, &jobs, &[]).await.unwrap();
    assert!(
        m.fail_job(jobs[0].0.id, None, "cancelled", "cancelled")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        m.image(bad.id).await.unwrap().unwrap().state.as_str(),
        "failed"
    );
    for (job, _, _) in &jobs {
        let j = m.job(job.id).await.unwrap().unwrap();
        assert_eq!(j.state, "cancelled", "{j:?}");
        assert_eq!(j.target_volume, None);
        assert_eq!(j.reader_volume, None);
    }
    // The sibling's runner, if it still tried to finish, is fenced.
    let h = coffer_meta::Holder {
        attachment: jobs[1].0.id,
        node: me,
        hold: Id::random(Kind::Attachment),
    };
    assert!(matches!(
        m.complete_copy(&h, &made_by(&jobs[1].0, &jobs[1].2), "h", "h", &[])
            .await,
        Err(MetaError::Fenced(_))
    ));
}
