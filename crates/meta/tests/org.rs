//! The organisation's rules in the metadata store: deleting a principal
//! removes its tokens, the role assignments it holds and those made at it;
//! a folder with anything in it cannot be deleted; folder ancestry.

use coffer_meta::{Meta, MetaError};
use coffer_testkit::TestMetadata;

#[tokio::test]
async fn deleting_a_principal_leaves_no_assignment_behind() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let meta = Meta::open(db.url()).await.unwrap();
    let a = meta
        .create_tenant_with_principal("t", "a", "alice", false)
        .await
        .unwrap();
    let account = meta.account(a.account_id).await.unwrap().unwrap();
    let b = meta
        .create_principal(&account, "bob", coffer_types::PrincipalKind::User)
        .await
        .unwrap();
    meta.insert_token(b.id, "hash-of-bob", "", None)
        .await
        .unwrap();
    let held = meta
        .create_role_assignment(b.id, "Reader", &account.id.to_string(), None)
        .await
        .unwrap();
    let at_b = meta
        .create_role_assignment(a.id, "Reader", &b.id.to_string(), None)
        .await
        .unwrap();
    assert!(matches!(
        meta.create_role_assignment(a.id, "Reader", &b.id.to_string(), None)
            .await,
        Err(MetaError::Conflict(_))
    ));
    meta.delete_principal(b.id).await.unwrap();
    assert!(meta.role_assignment(held.id).await.unwrap().is_none());
    assert!(meta.role_assignment(at_b.id).await.unwrap().is_none());
    assert!(
        meta.principal_by_token_hash("hash-of-bob")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        meta.role_assignments_of(a.id).await.unwrap().len(),
        1,
        "alice keeps Owner of her tenant"
    );
    assert!(matches!(
        meta.delete_principal(b.id).await,
        Err(MetaError::NotFound(_))
    ));
}

#[tokio::test]
async fn folders_nest_and_only_empty_ones_go() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let meta = Meta::open(db.url()).await.unwrap();
    let p = meta
        .create_tenant_with_principal("t", "a", "alice", false)
        .await
        .unwrap();
    let top = meta.create_folder(p.tenant_id, None, "top").await.unwrap();
    let mid = meta
        .create_folder(p.tenant_id, Some(top.id), "mid")
        .await
        .unwrap();
    let low = meta
        .create_folder(p.tenant_id, Some(mid.id), "low")
        .await
        .unwrap();
    assert_eq!(
        meta.ancestors_of_folder(low.id).await.unwrap(),
        vec![low.id, mid.id, top.id]
    );
    meta.move_account(p.account_id, Some(low.id)).await.unwrap();
    assert!(matches!(
        meta.delete_folder(low.id).await,
        Err(MetaError::Conflict(_))
    ));
    assert!(matches!(
        meta.delete_folder(mid.id).await,
        Err(MetaError::Conflict(_))
    ));
    meta.move_account(p.account_id, None).await.unwrap();
    meta.delete_folder(low.id).await.unwrap();
    assert!(meta.folder(low.id).await.unwrap().is_none());
    assert_eq!(meta.list_folders(p.tenant_id).await.unwrap().len(), 2);
}
