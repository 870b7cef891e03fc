//! Authorization of block access: every NBD connection to an attachment is
//! authorised afresh against the principal that attached the disk, so
//! taking its role away (or deleting it) ends block access at the next
//! connection, while the attachment itself stays for an Owner to detach.
//! And inheritance follows an account as it moves between folders.

use std::path::Path;
use std::sync::Arc;

use coffer_keyvault::{FileRootKey, KeyVault};
use coffer_meta::Meta;
use coffer_nbd::ExportResolver;
use coffer_service::model::{CreateDisk, CreatePrincipal, CreateRoleAssignment, CreateToken};
use coffer_service::{ExportResolverImpl, Service, ServiceConfig};
use coffer_store::{LocalStore, ObjectStore};
use coffer_testkit::TestMetadata;
use coffer_types::ByteSize;

async fn service(dir: &Path, db: &TestMetadata) -> (Arc<Service>, ExportResolverImpl) {
    let meta = Meta::open(db.url()).await.unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.join("objects")).unwrap());
    let root = Arc::new(FileRootKey::load_or_create(&dir.join("root.key")).unwrap());
    let vault = KeyVault::open(meta.clone(), root).await.unwrap();
    let config = ServiceConfig {
        lease_ttl: std::time::Duration::from_secs(3600),
        ..ServiceConfig::default()
    };
    let svc = Service::new(meta, store, vault, config);
    svc.join("iam", "http://iam.invalid", "127.0.0.1:10809")
        .await
        .unwrap();
    let resolver = ExportResolverImpl::new(svc.clone());
    (svc, resolver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbd_access_ends_when_the_attaching_principal_loses_its_role() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let (svc, resolver) = service(dir.path(), &db).await;
    let admin = svc
        .authenticate(&svc.bootstrap().await.unwrap().unwrap())
        .await
        .unwrap();
    let account = admin.principal.account_id.to_string();
    let mut ops = Vec::new();
    for name in ["op1", "op2"] {
        let p = svc
            .create_principal(
                &admin,
                CreatePrincipal {
                    name: name.into(),
                    account_id: None,
                    kind: Some("service".into()),
                },
            )
            .await
            .unwrap();
        let ra = svc
            .create_role_assignment(
                &admin,
                CreateRoleAssignment {
                    principal_id: p.id.clone(),
                    role: "Contributor".into(),
                    scope: account.clone(),
                },
            )
            .await
            .unwrap();
        let t = svc
            .create_token(&admin, &p.id, CreateToken::default())
            .await
            .unwrap();
        let caller = svc.authenticate(&t.secret).await.unwrap();
        ops.push((p, ra, caller, t.secret));
    }
    let mut exports = Vec::new();
    for (i, (_, _, caller, _)) in ops.iter().enumerate() {
        let disk = svc
            .create_disk(
                caller,
                CreateDisk {
                    name: format!("d{i}"),
                    zone: "local-a".into(),
                    size: Some(ByteSize(1 << 20)),
                    source_snapshot_id: None,
                    account_id: None,
                },
            )
            .await
            .unwrap();
        let att = svc.attach_disk(caller, &disk.id).await.unwrap();
        let export = att.uri.unwrap().rsplit('/').next().unwrap().to_string();
        assert!(
            resolver.open(&export).await.is_some(),
            "the attaching principal connects"
        );
        exports.push((disk.id, export));
    }
    // op1 loses its role; op2 is deleted.
    svc.delete_role_assignment(&admin, &ops[0].1.id)
        .await
        .unwrap();
    svc.delete_principal(&admin, &ops[1].0.id).await.unwrap();
    for (disk, export) in &exports {
        assert!(
            resolver.open(export).await.is_none(),
            "{disk}: a connection must be refused once the attaching principal may not attach"
        );
        // The attachment stays; an Owner detaches it.
        assert_eq!(svc.get_disk(&admin, disk).await.unwrap().state, "attached");
        svc.detach_disk(&admin, disk).await.unwrap();
    }
    // The role back: a new attachment works again.
    svc.create_role_assignment(
        &admin,
        CreateRoleAssignment {
            principal_id: ops[0].0.id.clone(),
            role: "Contributor".into(),
            scope: account.clone(),
        },
    )
    .await
    .unwrap();
    // (A caller's roles are read when it authenticates: once per request.)
    let op1 = svc.authenticate(&ops[0].3).await.unwrap();
    let att = svc.attach_disk(&op1, &exports[0].0).await.unwrap();
    let export = att.uri.unwrap().rsplit('/').next().unwrap().to_string();
    assert!(resolver.open(&export).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_an_account_changes_what_it_inherits() {
    use coffer_service::model::{CreateAccount, CreateFolder};
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let (svc, _resolver) = service(dir.path(), &db).await;
    let admin = svc
        .authenticate(&svc.bootstrap().await.unwrap().unwrap())
        .await
        .unwrap();
    let tenant = admin.principal.tenant_id.to_string();
    let folder = |name: &str, parent: Option<String>| CreateFolder {
        name: name.into(),
        tenant_id: Some(tenant.clone()),
        parent_id: parent,
    };
    let prod = svc
        .create_folder(&admin, folder("prod", None))
        .await
        .unwrap();
    let eu = svc
        .create_folder(&admin, folder("eu", Some(prod.id.clone())))
        .await
        .unwrap();
    let account = svc
        .create_account(
            &admin,
            CreateAccount {
                name: "shop".into(),
                tenant_id: None,
                folder_id: None,
            },
        )
        .await
        .unwrap();
    let disk = svc
        .create_disk(
            &admin,
            CreateDisk {
                name: "db".into(),
                zone: "local-a".into(),
                size: Some(ByteSize(1 << 20)),
                source_snapshot_id: None,
                account_id: Some(account.id.clone()),
            },
        )
        .await
        .unwrap();
    // An auditor with Reader on the `prod` folder.
    let auditor = svc
        .create_principal(
            &admin,
            CreatePrincipal {
                name: "auditor".into(),
                account_id: None,
                kind: None,
            },
        )
        .await
        .unwrap();
    svc.create_role_assignment(
        &admin,
        CreateRoleAssignment {
            principal_id: auditor.id.clone(),
            role: "Reader".into(),
            scope: prod.id.clone(),
        },
    )
    .await
    .unwrap();
    let secret = svc
        .create_token(&admin, &auditor.id, CreateToken::default())
        .await
        .unwrap()
        .secret;
    let sees = |svc: Arc<Service>, secret: String, disk: String| async move {
        let me = svc.authenticate(&secret).await.unwrap();
        let listed = svc
            .list_disks(&me)
            .await
            .unwrap()
            .iter()
            .any(|d| d.id == disk);
        let shown = svc.get_disk(&me, &disk).await;
        assert_eq!(listed, shown.is_ok(), "list and show disagree");
        if let Err(e) = &shown {
            assert_eq!(e.code, "DiskNotFound", "{e:?}");
        }
        listed
    };
    assert!(
        !sees(svc.clone(), secret.clone(), disk.id.clone()).await,
        "at the root"
    );
    svc.move_account(&admin, &account.id, Some(&eu.id))
        .await
        .unwrap();
    assert!(
        sees(svc.clone(), secret.clone(), disk.id.clone()).await,
        "in prod/eu: inherits Reader from prod"
    );
    let me = svc.authenticate(&secret).await.unwrap();
    let e = svc.delete_disk(&me, &disk.id).await.unwrap_err();
    assert_eq!(
        e.code, "AuthorizationFailed",
        "a Reader may see, not delete: {e:?}"
    );
    assert!(e.message.contains("'disks/delete'"), "{e:?}");
    svc.move_account(&admin, &account.id, None).await.unwrap();
    assert!(
        !sees(svc.clone(), secret.clone(), disk.id.clone()).await,
        "moved out again"
    );
    // A folder with an account in it cannot be deleted; an empty one can.
    svc.move_account(&admin, &account.id, Some(&eu.id))
        .await
        .unwrap();
    let e = svc.delete_folder(&admin, &eu.id).await.unwrap_err();
    assert_eq!(e.code, "FolderNotEmpty", "{e:?}");
    svc.move_account(&admin, &account.id, None).await.unwrap();
    svc.delete_folder(&admin, &eu.id).await.unwrap();
}
