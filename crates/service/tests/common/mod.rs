//! What several service test files share: a service on this pass's
//! metadata backend (`COFFER_TEST_METADATA`), a real object directory and
//! the built-in key vault, with its bootstrap admin signed in.

use std::sync::Arc;

use coffer_keyvault::{FileRootKey, KeyVault};
use coffer_meta::Meta;
use coffer_service::{Caller, Service, ServiceConfig};
use coffer_store::{LocalStore, ObjectStore};
use coffer_testkit::TestMetadata;

/// A fresh service (default configuration) and its admin; keep the
/// directory and database for the test's length.
pub async fn world() -> (tempfile::TempDir, TestMetadata, Arc<Service>, Caller) {
    world_with(ServiceConfig::default()).await
}

/// The same with `config`.
pub async fn world_with(
    config: ServiceConfig,
) -> (tempfile::TempDir, TestMetadata, Arc<Service>, Caller) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let meta = Meta::open(db.url()).await.unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::open(dir.path().join("objects")).unwrap());
    let root = Arc::new(FileRootKey::load_or_create(&dir.path().join("root.key")).unwrap());
    let vault = KeyVault::open(meta.clone(), root).await.unwrap();
    let svc = Service::new(meta, store, vault, config);
    let admin = svc
        .authenticate(&svc.bootstrap().await.unwrap().unwrap())
        .await
        .unwrap();
    (dir, db, svc, admin)
}
