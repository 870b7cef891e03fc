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

/// A service on real SQLite or PostgreSQL and a real object directory, and
/// its bootstrap admin.
struct World {
    _dir: tempfile::TempDir,
    _db: TestMetadata,
    svc: Arc<Service>,
    admin: coffer_service::Caller,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = TestMetadata::new(dir.path());
        let svc = service(dir.path(), &db).await;
        let admin = svc
            .authenticate(&svc.bootstrap().await.unwrap().unwrap())
            .await
            .unwrap();
        Self {
            _dir: dir,
            _db: db,
            svc,
            admin,
        }
    }
}

async fn service(dir: &Path, db: &TestMetadata) -> Arc<Service> {
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
    svc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbd_access_ends_when_the_attaching_principal_loses_its_role() {
    let w = World::new().await;
    let (svc, admin) = (w.svc.clone(), w.admin.clone());
    let resolver = ExportResolverImpl::new(svc.clone());
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
                    encryption_set_id: None,
                    tags: Default::default(),
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
        assert_eq!(
            svc.get_disk(&admin, disk).await.unwrap().state.as_str(),
            "attached"
        );
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
    let w = World::new().await;
    let (svc, admin) = (w.svc.clone(), w.admin.clone());
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
                encryption_set_id: None,
                tags: Default::default(),
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
        .secret
        .to_string();
    let sees = |svc: Arc<Service>, secret: String, disk: String| async move {
        let me = svc.authenticate(&secret).await.unwrap();
        let listed = svc
            .list_disks(&me, Default::default())
            .await
            .unwrap()
            .items
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

/// A principal of `account` with `role` at `scope` (if any), authenticated
/// by a fresh token (with `expires_in` if given).
async fn member(
    svc: &Arc<Service>,
    admin: &coffer_service::Caller,
    name: &str,
    account: &str,
    role: Option<(&str, &str)>,
    expires_in: Option<&str>,
) -> (coffer_service::Caller, String) {
    let p = svc
        .create_principal(
            admin,
            CreatePrincipal {
                name: name.into(),
                account_id: Some(account.into()),
                kind: None,
            },
        )
        .await
        .unwrap();
    if let Some((role, scope)) = role {
        svc.create_role_assignment(
            admin,
            CreateRoleAssignment {
                principal_id: p.id.clone(),
                role: role.into(),
                scope: scope.into(),
            },
        )
        .await
        .unwrap();
    }
    let t = svc
        .create_token(
            admin,
            &p.id,
            CreateToken {
                name: None,
                expires_in: expires_in.map(str::to_string),
            },
        )
        .await
        .unwrap();
    (
        svc.authenticate(&t.secret).await.unwrap(),
        t.secret.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_escalation_through_principals_tokens_moves_or_explain() {
    use coffer_service::model::{CreateAccount, CreateFolder, ExplainRequest};
    let w = World::new().await;
    let (svc, admin) = (w.svc.clone(), w.admin.clone());
    let home = admin.principal.account_id.to_string();
    let admin_id = admin.principal.id.to_string();
    // The Owner of the admin's home account may not act as the admin.
    let (ops, _) = member(&svc, &admin, "ops", &home, Some(("Owner", &home)), None).await;
    for e in [
        svc.create_token(&ops, &admin_id, CreateToken::default())
            .await
            .map(|_| ())
            .unwrap_err(),
        svc.delete_principal(&ops, &admin_id)
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert_eq!(e.code, "AuthorizationFailed", "{e:?}");
        assert!(
            e.message.contains("a role at a scope you cannot see"),
            "{e:?}"
        );
    }
    let admin_token = svc
        .list_tokens(&admin, &admin_id, Default::default())
        .await
        .unwrap()
        .items[0]
        .id
        .clone();
    let e = svc.revoke_token(&ops, &admin_token).await.unwrap_err();
    assert_eq!(e.code, "AuthorizationFailed", "{e:?}");
    // Nor hand out roles at a principal's scope.
    let e = svc
        .create_role_assignment(
            &ops,
            CreateRoleAssignment {
                principal_id: ops.principal.id.to_string(),
                role: "Owner".into(),
                scope: admin_id.clone(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "InvalidScope", "{e:?}");
    // But it manages a principal whose every role it could grant.
    let (peer, _) = member(&svc, &admin, "peer", &home, Some(("Reader", &home)), None).await;
    let peer_id = peer.principal.id.to_string();
    svc.create_token(&ops, &peer_id, CreateToken::default())
        .await
        .unwrap();
    svc.delete_principal(&ops, &peer_id).await.unwrap();

    // A short-lived token cannot mint a longer one for its own principal.
    let (short, _) = member(&svc, &admin, "short", &home, None, Some("5m")).await;
    let me = short.principal.id.to_string();
    let e = svc
        .create_token(
            &short,
            &me,
            CreateToken {
                name: None,
                expires_in: Some("1h".into()),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "TokenOutlivesCaller", "{e:?}");
    let t = svc
        .create_token(&short, &me, CreateToken::default())
        .await
        .unwrap();
    assert_eq!(
        t.token.expires_at, short.token_expires_at,
        "inherits the expiry"
    );
    let t = svc
        .create_token(
            &short,
            &me,
            CreateToken {
                name: None,
                expires_in: Some("1m".into()),
            },
        )
        .await
        .unwrap();
    assert!(t.token.expires_at < short.token_expires_at);
    // Nor, for any other principal, one that outlives it: a short-lived
    // Owner token that creates a principal mints it nothing lasting.
    let (boss, _) = member(
        &svc,
        &admin,
        "boss",
        &home,
        Some(("Owner", &home)),
        Some("5m"),
    )
    .await;
    let minion = svc
        .create_principal(
            &boss,
            CreatePrincipal {
                name: "minion".into(),
                account_id: Some(home.clone()),
                kind: None,
            },
        )
        .await
        .unwrap();
    let e = svc
        .create_token(
            &boss,
            &minion.id,
            CreateToken {
                name: None,
                expires_in: Some("1h".into()),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "TokenOutlivesCaller", "{e:?}");
    let t = svc
        .create_token(&boss, &minion.id, CreateToken::default())
        .await
        .unwrap();
    assert_eq!(
        t.token.expires_at, boss.token_expires_at,
        "a token for another principal inherits the expiry too"
    );
    // A token's life is at least a minute.
    for short in ["1ns", "1s", "59s"] {
        let e = svc
            .create_token(
                &admin,
                &minion.id,
                CreateToken {
                    name: None,
                    expires_in: Some(short.into()),
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, "InvalidDuration", "{short}: {e:?}");
        assert!(e.message.contains("at least 1 minute"), "{e:?}");
    }

    // Moving an account out of a folder needs org/write where it is.
    let tenant = admin.principal.tenant_id.to_string();
    let folder = |name: &str| CreateFolder {
        name: name.into(),
        tenant_id: Some(tenant.clone()),
        parent_id: None,
    };
    let guarded = svc.create_folder(&admin, folder("guarded")).await.unwrap();
    let sandbox = svc.create_folder(&admin, folder("sandbox")).await.unwrap();
    let acct = svc
        .create_account(
            &admin,
            CreateAccount {
                name: "a2".into(),
                tenant_id: None,
                folder_id: Some(guarded.id.clone()),
            },
        )
        .await
        .unwrap();
    let (carol, _) = member(
        &svc,
        &admin,
        "carol",
        &acct.id,
        Some(("Owner", &acct.id)),
        None,
    )
    .await;
    svc.create_role_assignment(
        &admin,
        CreateRoleAssignment {
            principal_id: carol.principal.id.to_string(),
            role: "Owner".into(),
            scope: sandbox.id.clone(),
        },
    )
    .await
    .unwrap();
    let carol = svc
        .authenticate(
            &svc.create_token(
                &admin,
                &carol.principal.id.to_string(),
                CreateToken::default(),
            )
            .await
            .unwrap()
            .secret,
        )
        .await
        .unwrap();
    let e = svc
        .move_account(&carol, &acct.id, Some(&sandbox.id))
        .await
        .unwrap_err();
    assert_eq!(e.code, "AuthorizationFailed", "{e:?}");
    assert!(
        !e.message.contains(&guarded.id),
        "the hidden folder is not named: {e:?}"
    );
    // Her own account shows no folder she may not see.
    let shown = svc.get_account(&carol, &acct.id).await.unwrap();
    assert_eq!(shown.folder_id, None);
    let listed = svc
        .list_accounts(&carol, Default::default())
        .await
        .unwrap()
        .items;
    let ids: Vec<&str> = listed.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, [acct.id.as_str()], "only her account");
    assert_eq!(listed[0].folder_id, None);
    let folders = svc
        .list_folders(&carol, Default::default())
        .await
        .unwrap()
        .items;
    let names: Vec<&str> = folders.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["sandbox"], "only the folder she owns");
    assert_eq!(
        svc.get_account(&admin, &acct.id).await.unwrap().folder_id,
        Some(guarded.id.clone())
    );

    // Explain about oneself: hidden and missing read the same.
    let disk = svc
        .create_disk(
            &admin,
            CreateDisk {
                name: "secret".into(),
                zone: "local-a".into(),
                size: Some(ByteSize(1 << 20)),
                source_snapshot_id: None,
                account_id: None,
                encryption_set_id: None,
                tags: Default::default(),
            },
        )
        .await
        .unwrap();
    let explain = |who: Option<String>, resource: &str| ExplainRequest {
        principal_id: who,
        action: "disks/read".into(),
        resource_id: resource.into(),
    };
    let hidden = svc.explain(&carol, explain(None, &disk.id)).await.unwrap();
    let missing = svc
        .explain(&carol, explain(None, "disk-0123456789abcdef"))
        .await
        .unwrap();
    assert_eq!(hidden.status, 404);
    assert_eq!(
        hidden.reasons[0].replace(&disk.id, "ID"),
        missing.reasons[0].replace("disk-0123456789abcdef", "ID")
    );
    // Explain about another: a Reader of the account learns nothing of
    // assignments at scopes it cannot read, nor of the folder tree.
    let (auditor, _) = member(
        &svc,
        &admin,
        "auditor",
        &acct.id,
        Some(("Reader", &acct.id)),
        None,
    )
    .await;
    let e = svc
        .explain(
            &auditor,
            ExplainRequest {
                principal_id: Some(admin_id.clone()),
                action: "org/write".into(),
                resource_id: acct.id.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(e.decision.as_str(), "allow");
    assert_eq!(e.assignment_id, None, "{e:?}");
    let all = e.reasons.join(" ");
    // (Its home tenant it may see; the folder above its account it may not.)
    assert!(
        !all.contains(&guarded.id) && all.contains("(hidden)"),
        "{all}"
    );
    assert!(!all.contains("ra-"), "{all}");
    // And an assignment it cannot read does not exist for it.
    let ra = svc
        .list_role_assignments(
            &admin,
            coffer_wire::ListParams {
                principal: Some(admin_id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .items;
    let e = svc
        .delete_role_assignment(&auditor, &ra[0].id)
        .await
        .unwrap_err();
    assert_eq!(e.code, "RoleAssignmentNotFound", "{e:?}");
}
