//! Benchmark (not a test): re-wrapping the DEKs of an encryption set after
//! its key is rotated — issue 16's "rotation re-wrap of 10,000 DEKs" (target
//! under 5 s on the embedded backend). Builds a set with `DEKS` data keys
//! (default 10,000) on this run's metadata backend (SQLite by default;
//! `COFFER_TEST_METADATA=postgres` for PostgreSQL, as the tests choose it),
//! rotates the key, and times one re-wrap pass — unwrap under the old
//! version, wrap under the new, rows replaced 500 per transaction, one audit
//! record per batch — then checks every DEK moved. Prints one markdown row.
//!
//! `cargo bench -p coffer-service --bench rewrap` (bench/keys.sh runs it on
//! both backends and prints the table for docs/PERFORMANCE.md).

use std::sync::Arc;
use std::time::Instant;

use coffer_keyvault::{FileRootKey, KeyVault};
use coffer_meta::Meta;
use coffer_service::model::{
    CreateEncryptionSet, CreateKey, CreateRoleAssignment, CreateVault, RotateKey,
};
use coffer_service::{Service, ServiceConfig};
use coffer_store::{LocalStore, ObjectStore};
use coffer_testkit::TestMetadata;
use coffer_types::{Id, Kind};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; a plain `cargo test --benches` run
    // passes nothing and should not spend a minute here.
    if !std::env::args().any(|a| a == "--bench") {
        println!("rewrap: run with `cargo bench` to measure");
        return;
    }
    let n: usize = std::env::var("DEKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let backend = if db.url().starts_with("sqlite") {
        "SQLite (embedded)"
    } else {
        "PostgreSQL"
    };
    let meta = Meta::open(db.url()).await.unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::open(dir.path().join("objects")).unwrap());
    let root = Arc::new(FileRootKey::load_or_create(&dir.path().join("root.key")).unwrap());
    let vault = KeyVault::open(meta.clone(), root).await.unwrap();
    let svc = Service::new(meta.clone(), store, vault.clone(), ServiceConfig::default());
    let admin = svc
        .authenticate(&svc.bootstrap().await.unwrap().unwrap())
        .await
        .unwrap();
    let v = svc
        .create_vault(
            &admin,
            CreateVault {
                name: "bench".into(),
                region: None,
                account_id: None,
                soft_delete: None,
                retention_days: Some(7),
                purge_protection: Some(true),
                external: None,
            },
        )
        .await
        .unwrap();
    let k = svc
        .create_key(
            &admin,
            &v.id,
            CreateKey {
                name: "k".into(),
                key_type: None,
                material: None,
                wrapped_material: None,
                disabled: None,
                not_before: None,
                expires_at: None,
                rotation_days: None,
            },
        )
        .await
        .unwrap();
    let set = svc
        .create_encryption_set(
            &admin,
            CreateEncryptionSet {
                name: "scope".into(),
                key_id: k.id.clone(),
                key_version: None,
                encryption_type: None,
                account_id: None,
            },
        )
        .await
        .unwrap();
    svc.create_role_assignment(
        &admin,
        CreateRoleAssignment {
            principal_id: set.identity_id.clone(),
            role: "Key Vault Crypto Service Encryption User".into(),
            scope: k.id.clone(),
        },
    )
    .await
    .unwrap();
    // The data keys of `n` disks under the set, made as disk creation
    // makes them (wrapped under the key's version 1).
    let key = meta
        .vault_key(Id::parse_kind(&k.id, Kind::Key).unwrap())
        .await
        .unwrap();
    let set_id = Id::parse_kind(&set.id, Kind::EncryptionSet).unwrap();
    let made = Instant::now();
    for _ in 0..n {
        vault.new_dek_with(&key, 1, Some(set_id)).await.unwrap();
    }
    eprintln!(
        "{n} data keys made in {:.1} s",
        made.elapsed().as_secs_f64()
    );

    svc.rotate_key(&admin, &k.id, RotateKey::default())
        .await
        .unwrap();
    let t = Instant::now();
    let moved = svc.rewrap_pass().await.unwrap();
    let took = t.elapsed();
    assert_eq!(moved, n as u64, "every data key re-wrapped");
    let after = svc.get_encryption_set(&admin, &set.id).await.unwrap();
    assert!(after.rewrap.complete && after.rewrap.key_version == 2);
    println!(
        "| {backend} | {n} | {:.2} s | {:.0} |",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
}
