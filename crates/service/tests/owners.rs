//! No single call locks the deployment's owners out: the last Owner at `/`
//! who can sign in cannot lose its assignment, be deleted, or have its last
//! active token revoked (409 `LastOwner`), and nothing is changed by the
//! refused call. Once a second Owner with a token exists, each of those is
//! allowed again.

mod common;

use common::world;

use coffer_service::model::{CreatePrincipal, CreateRoleAssignment, CreateToken};
use coffer_service::{Caller, ErrorCode, Service};
use coffer_wire::ListParams;

async fn root_owner_assignment(svc: &Service, who: &Caller) -> String {
    svc.list_role_assignments(
        who,
        ListParams {
            principal: Some(who.principal.id.to_string()),
            scope: Some("/".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .items
    .into_iter()
    .find(|r| r.role == "Owner")
    .expect("the bootstrap admin is Owner at /")
    .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_owner_who_can_sign_in_cannot_be_removed_by_one_call() {
    let (_dir, _db, svc, admin) = world().await;
    let me = admin.principal.id.to_string();
    let ra = root_owner_assignment(&svc, &admin).await;

    // Its own Owner assignment at /.
    let e = svc.delete_role_assignment(&admin, &ra).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LastOwner, "{e:?}");
    // Its only token.
    let e = svc
        .revoke_token(&admin, &admin.token_id.to_string())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LastOwner, "{e:?}");
    // Nothing changed: it still signs in and is still Owner at /.
    svc.whoami(&admin).await.unwrap();
    assert_eq!(root_owner_assignment(&svc, &admin).await, ra);

    // A second Owner whose only token is revoked does not count.
    let bob = svc
        .create_principal(
            &admin,
            CreatePrincipal {
                name: "bob".into(),
                account_id: None,
                kind: None,
            },
        )
        .await
        .unwrap();
    svc.create_role_assignment(
        &admin,
        CreateRoleAssignment {
            principal_id: bob.id.clone(),
            role: "Owner".into(),
            scope: "/".into(),
        },
    )
    .await
    .unwrap();
    let e = svc.delete_role_assignment(&admin, &ra).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LastOwner, "bob has no token yet: {e:?}");
    let bob_token = svc
        .create_token(&admin, &bob.id, CreateToken::default())
        .await
        .unwrap();
    svc.revoke_token(&admin, &bob_token.token.id).await.unwrap();
    let e = svc.delete_role_assignment(&admin, &ra).await.unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::LastOwner,
        "bob's token is revoked: {e:?}"
    );

    // With a second Owner who can sign in, each removal is allowed.
    let bob_token = svc
        .create_token(&admin, &bob.id, CreateToken::default())
        .await
        .unwrap();
    let bob_caller = svc.authenticate(bob_token.secret.as_str()).await.unwrap();
    svc.revoke_token(&admin, &admin.token_id.to_string())
        .await
        .expect("bob can still sign in");
    // Now bob is the last: he cannot delete himself out of the role, and
    // cannot delete the (tokenless) admin's assignment either — that one
    // does not matter to sign-in, so it is allowed.
    let bob_ra = root_owner_assignment(&svc, &bob_caller).await;
    let e = svc
        .delete_role_assignment(&bob_caller, &bob_ra)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LastOwner, "{e:?}");
    svc.delete_role_assignment(&bob_caller, &ra)
        .await
        .expect("an Owner without tokens can lose its role");
    let e = svc.delete_principal(&bob_caller, &me).await;
    assert!(e.is_ok(), "deleting a principal that is no Owner: {e:?}");
}

/// Moving the account the last Owner lives in (into a folder, and back to
/// the tenant's root) cannot take the deployment from it: its Owner role
/// is at `/`, which no move touches, and it keeps signing in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_last_owners_account_keeps_it_owner() {
    use coffer_service::model::CreateFolder;
    let (_dir, _db, svc, admin) = world().await;
    let ra = root_owner_assignment(&svc, &admin).await;
    let account = admin.principal.account_id.to_string();
    let folder = svc
        .create_folder(
            &admin,
            CreateFolder {
                name: "elsewhere".into(),
                tenant_id: None,
                parent_id: None,
            },
        )
        .await
        .unwrap();
    let moved = svc
        .move_account(&admin, &account, Some(&folder.id))
        .await
        .unwrap();
    assert_eq!(moved.folder_id.as_deref(), Some(folder.id.as_str()));
    svc.whoami(&admin).await.expect("the Owner still signs in");
    assert_eq!(root_owner_assignment(&svc, &admin).await, ra);
    // Still Owner of everything: it can move the account back and delete
    // the folder.
    svc.move_account(&admin, &account, None).await.unwrap();
    svc.delete_folder(&admin, &folder.id).await.unwrap();
    assert_eq!(root_owner_assignment(&svc, &admin).await, ra);
}
