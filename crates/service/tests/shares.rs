//! A share's principals are no existence oracle: an Owner of one account,
//! naming ids outside its tenant as principals of its share, gets the same
//! answer whether the id exists (another tenant's account, folder or
//! tenant) or not — an invitation for any account id, one refusal for any
//! foreign folder or tenant, with the same words. Real SQLite or
//! PostgreSQL (`COFFER_TEST_METADATA`), a real object directory and vault.

mod common;

use common::world;

use coffer_service::ErrorCode;
use coffer_service::model::{
    CreateAccount, CreateFolder, CreatePrincipal, CreateRoleAssignment, CreateShare, CreateTenant,
    CreateToken,
};
use coffer_types::{Id, Kind, PrincipalScope, ShareStatus};

/// `message` with `id` replaced by `ID`, and share ids (each attempt makes
/// a new one) by `SHARE`.
fn masked(message: &str, id: &str) -> String {
    message
        .replace(id, "ID")
        .split(' ')
        .map(|w| if w.starts_with("rs-") { "SHARE" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_principal_answers_alike_whether_a_foreign_id_exists_or_not() {
    let (_dir, _db, svc, admin) = world().await;
    // Alice: Owner of one account of the first tenant, nothing more.
    let acct = svc
        .create_account(
            &admin,
            CreateAccount {
                name: "alice-acct".into(),
                tenant_id: None,
                folder_id: None,
            },
        )
        .await
        .unwrap();
    let alice = svc
        .create_principal(
            &admin,
            CreatePrincipal {
                name: "alice".into(),
                account_id: Some(acct.id.clone()),
                kind: None,
            },
        )
        .await
        .unwrap();
    svc.create_role_assignment(
        &admin,
        CreateRoleAssignment {
            principal_id: alice.id.clone(),
            role: "Owner".into(),
            scope: acct.id.clone(),
        },
    )
    .await
    .unwrap();
    let t = svc
        .create_token(&admin, &alice.id, CreateToken::default())
        .await
        .unwrap();
    let alice = svc.authenticate(t.secret.as_str()).await.unwrap();

    // Another tenant, with an account and a folder.
    let t2 = svc
        .create_tenant(
            &admin,
            CreateTenant {
                name: "globex".into(),
            },
        )
        .await
        .unwrap();
    let a2 = svc
        .create_account(
            &admin,
            CreateAccount {
                name: "g-main".into(),
                tenant_id: Some(t2.id.clone()),
                folder_id: None,
            },
        )
        .await
        .unwrap();
    let f2 = svc
        .create_folder(
            &admin,
            CreateFolder {
                name: "g-folder".into(),
                tenant_id: Some(t2.id.clone()),
                parent_id: None,
            },
        )
        .await
        .unwrap();

    let share = |name: &str, scope: PrincipalScope, p: &str| CreateShare {
        name: name.into(),
        principal_scope: Some(scope),
        account_id: None,
        resources: vec![],
        principals: vec![p.to_string()],
    };
    let nowhere = |k: Kind| Id::random(k).to_string();

    // Accounts: an invitation either way.
    for (i, p) in [a2.id.clone(), nowhere(Kind::Account)].iter().enumerate() {
        let s = svc
            .create_share(&alice, share(&format!("any{i}"), PrincipalScope::Any, p))
            .await
            .unwrap_or_else(|e| panic!("{p}: {e:?}"));
        assert_eq!(s.principals.len(), 1, "{s:?}");
        assert_eq!(s.principals[0].status, ShareStatus::Pending, "{p}: {s:?}");
        assert!(s.principals[0].invitation_id.is_some(), "{s:?}");
    }
    // Folders, tenants, and accounts in a within-tenant share: one refusal
    // each, the same for an id that exists and one that does not.
    for (scope, real, fake) in [
        (PrincipalScope::Any, f2.id.clone(), nowhere(Kind::Folder)),
        (PrincipalScope::Any, t2.id.clone(), nowhere(Kind::Tenant)),
        (
            PrincipalScope::Tenant,
            a2.id.clone(),
            nowhere(Kind::Account),
        ),
    ] {
        let mut answers = vec![];
        for (i, p) in [&real, &fake].into_iter().enumerate() {
            let e = svc
                .create_share(&alice, share(&format!("x{i}"), scope, p))
                .await
                .expect_err(p);
            assert_eq!(e.code, ErrorCode::InvalidPrincipal, "{p}: {e:?}");
            answers.push(masked(&e.message, p));
        }
        assert_eq!(answers[0], answers[1], "{real} vs {fake}");
    }
}
