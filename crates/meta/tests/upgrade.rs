//! Upgrading a version-2 database, on both backends: the deployment admins
//! of version 2 (the `is_admin` flag) become Owners of the deployment under
//! random assignment ids, and nobody else gains a role.

use coffer_meta::Meta;
use coffer_types::{Id, Kind};
use sqlx::Executor;

#[tokio::test]
async fn version_2_admins_become_deployment_owners_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("v2.sqlite").display());
    upgrade(
        &format!("{url}?mode=rwc"),
        &url,
        [
            include_str!("../migrations/sqlite/0001_init.sql"),
            include_str!("../migrations/sqlite/0002_nodes.sql"),
        ],
    )
    .await;
}

#[tokio::test]
async fn version_2_admins_become_deployment_owners_postgres() {
    let db = coffer_testkit::TestMetadata::postgres();
    upgrade(
        db.url(),
        db.url(),
        [
            include_str!("../migrations/postgres/0001_init.sql"),
            include_str!("../migrations/postgres/0002_nodes.sql"),
        ],
    )
    .await;
}

/// Build a version-2 database at `url` by hand, then open it with this
/// version's [`Meta`] (which migrates it) at `open_url`.
async fn upgrade(url: &str, open_url: &str, migrations: [&str; 2]) {
    sqlx::any::install_default_drivers();
    let admin = Id::random(Kind::Principal);
    let user = Id::random(Kind::Principal);
    {
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        pool.execute("CREATE TABLE schema_version (version BIGINT NOT NULL)")
            .await
            .unwrap();
        for sql in migrations {
            for stmt in coffer_meta::schema::statements(sql) {
                pool.execute(sqlx::AssertSqlSafe(stmt)).await.unwrap();
            }
        }
        let t = Id::random(Kind::Tenant);
        let a = Id::random(Kind::Account);
        for stmt in [
            "INSERT INTO schema_version VALUES (2)".to_string(),
            format!("INSERT INTO tenants VALUES ('{t}', 'default', 'x')"),
            format!("INSERT INTO accounts VALUES ('{a}', '{t}', 'default', 'x')"),
            format!("INSERT INTO principals VALUES ('{admin}', '{a}', 'admin', 'user', 1, 'x')"),
            format!("INSERT INTO principals VALUES ('{user}', '{a}', 'user', 'user', 0, 'x')"),
        ] {
            pool.execute(sqlx::AssertSqlSafe(stmt)).await.unwrap();
        }
        pool.close().await;
    }
    let meta = Meta::open(open_url).await.unwrap();
    let ra = meta.role_assignments_of(admin).await.unwrap();
    assert_eq!(ra.len(), 1, "{ra:?}");
    assert_eq!((ra[0].role.as_str(), ra[0].scope.as_str()), ("Owner", "/"));
    assert_eq!(ra[0].id.kind(), Kind::RoleAssignment);
    assert_ne!(
        ra[0].id.value(),
        admin.value(),
        "the assignment id must not be derived from the principal's"
    );
    assert!(meta.role_assignments_of(user).await.unwrap().is_empty());
    let p = meta.principal(admin).await.unwrap().unwrap();
    assert_eq!(p.name, "admin");
    let acct = meta.account(p.account_id).await.unwrap().unwrap();
    assert_eq!(acct.folder_id, None);
}
