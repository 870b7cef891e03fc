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
    let t = Id::random(Kind::Tenant);
    let a = Id::random(Kind::Account);
    old_database(
        url,
        &migrations,
        vec![
            "INSERT INTO schema_version VALUES (2)".to_string(),
            format!("INSERT INTO tenants VALUES ('{t}', 'default', 'x')"),
            format!("INSERT INTO accounts VALUES ('{a}', '{t}', 'default', 'x')"),
            format!("INSERT INTO principals VALUES ('{admin}', '{a}', 'admin', 'user', 1, 'x')"),
            format!("INSERT INTO principals VALUES ('{user}', '{a}', 'user', 'user', 0, 'x')"),
        ],
    )
    .await;
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

#[tokio::test]
async fn version_4_duplicate_names_are_renamed_and_keks_come_from_deks_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("v4.sqlite").display());
    upgrade_v4(
        &format!("{url}?mode=rwc"),
        &url,
        [
            include_str!("../migrations/sqlite/0001_init.sql"),
            include_str!("../migrations/sqlite/0002_nodes.sql"),
            include_str!("../migrations/sqlite/0003_iam.sql"),
            include_str!("../migrations/sqlite/0004_lists.sql"),
        ],
    )
    .await;
}

#[tokio::test]
async fn version_4_duplicate_names_are_renamed_and_keks_come_from_deks_postgres() {
    let db = coffer_testkit::TestMetadata::postgres();
    upgrade_v4(
        db.url(),
        db.url(),
        [
            include_str!("../migrations/postgres/0001_init.sql"),
            include_str!("../migrations/postgres/0002_nodes.sql"),
            include_str!("../migrations/postgres/0003_iam.sql"),
            include_str!("../migrations/postgres/0004_lists.sql"),
        ],
    )
    .await;
}

/// A version-4 database where racing creates left three disks and two
/// snapshots of one name (version 4 checked names only before inserting):
/// after the upgrade the oldest keeps its name, the others are renamed
/// `<name>-<last 6 characters of the id>`, nothing else changes, the KEK a
/// row reports is its DEK's (the dropped column held a stale one here), and
/// the database now refuses a duplicate itself.
async fn upgrade_v4(url: &str, open_url: &str, migrations: [&str; 4]) {
    sqlx::any::install_default_drivers();
    let (t, a) = (Id::random(Kind::Tenant), Id::random(Kind::Account));
    let (kek, stale, dek) = (
        Id::random(Kind::Key),
        Id::random(Kind::Key),
        Id::random(Kind::Dek),
    );
    let vols: Vec<Id> = (0..4).map(|_| Id::random(Kind::Volume)).collect();
    let disks: Vec<Id> = (0..4).map(|_| Id::random(Kind::Disk)).collect();
    let snaps: Vec<Id> = (0..2).map(|_| Id::random(Kind::Snapshot)).collect();
    // A name of 80 characters, the limit: the renamed copies keep 80.
    let long = format!("n{}", "x".repeat(79));
    let mut stmts = vec![
        "INSERT INTO schema_version VALUES (4)".to_string(),
        format!("INSERT INTO tenants (id, name, created_at) VALUES ('{t}', 'default', 'x')"),
        format!(
            "INSERT INTO accounts (id, tenant_id, name, created_at) VALUES ('{a}', '{t}', 'default', 'x')"
        ),
        format!(
            "INSERT INTO vault_keys (id, region, purpose, account_id, name, state, current_version, created_at) VALUES ('{kek}', 'local', 'platform', NULL, 'platform', 'enabled', 1, 'x')"
        ),
        format!(
            "INSERT INTO deks (id, kek_id, kek_version, wrapped, next_counter, created_at) VALUES ('{dek}', '{kek}', 1, X'00', 0, 'x')"
        ),
    ];
    if url.starts_with("postgres") {
        let last = stmts.len() - 1;
        stmts[last] = stmts[last].replace("X'00'", "'\\x00'::bytea");
    }
    // Disks 0 and 1 are both "web", created in the same millisecond (the
    // id orders them); disks 2 and 3 both have the long name, 3 later.
    for (i, (v, d)) in vols.iter().zip(&disks).enumerate() {
        let name = if i < 2 { "web" } else { long.as_str() };
        let at = if i == 3 { "2026-01-02" } else { "2026-01-01" };
        stmts.push(format!("INSERT INTO volumes (id, dek_id, chunk_size, size, parent_id, parent_generation, head_generation, live, created_at) VALUES ('{v}', '{dek}', 65536, 65536, NULL, NULL, 1, 1, 'x')"));
        stmts.push(format!("INSERT INTO disks (id, account_id, name, region, zone, size, volume_id, encryption, kek_id, source_snapshot_id, created_at) VALUES ('{d}', '{a}', '{name}', 'local', 'local-a', 65536, '{v}', 'platform', '{stale}', NULL, '{at}')"));
    }
    for (i, s) in snaps.iter().enumerate() {
        stmts.push(format!("INSERT INTO snapshots (id, account_id, name, region, source_disk_id, volume_id, generation, size, encryption, kek_id, created_at) VALUES ('{s}', '{a}', 'nightly', 'local', '{}', '{}', 0, 65536, 'platform', '{stale}', '2026-01-0{}')", disks[0], vols[0], 3 + i));
    }
    old_database(url, &migrations, stmts).await;
    let meta = Meta::open(open_url).await.unwrap();
    let suffix = |id: &Id| {
        let s = id.to_string();
        s[s.len() - 6..].to_string()
    };
    let name_of = |d: Option<coffer_meta::DiskRow>| d.unwrap().name;
    // Of the two "web" disks of one millisecond, the smaller id keeps it.
    let (first, second) = if disks[0].to_string() < disks[1].to_string() {
        (disks[0], disks[1])
    } else {
        (disks[1], disks[0])
    };
    assert_eq!(name_of(meta.disk(first).await.unwrap()), "web");
    assert_eq!(
        name_of(meta.disk(second).await.unwrap()),
        format!("web-{}", suffix(&second))
    );
    // The older long-named disk keeps its name; the later one becomes its
    // first 73 characters, a dash and the suffix: 80 characters, valid.
    assert_eq!(name_of(meta.disk(disks[2]).await.unwrap()), long);
    let renamed = name_of(meta.disk(disks[3]).await.unwrap());
    assert_eq!(renamed, format!("{}-{}", &long[..73], suffix(&disks[3])));
    assert_eq!(renamed.len(), 80);
    coffer_types::Name::new(&renamed).expect("a renamed disk has a valid name");
    let s0 = meta.snapshot(snaps[0]).await.unwrap().unwrap();
    let s1 = meta.snapshot(snaps[1]).await.unwrap().unwrap();
    assert_eq!(s0.name, "nightly");
    assert_eq!(s1.name, format!("nightly-{}", suffix(&snaps[1])));
    for d in &disks {
        assert_eq!(meta.disk(*d).await.unwrap().unwrap().kek_id, kek);
    }
    assert_eq!(
        s1.kek_id, kek,
        "the KEK comes from the DEK, not the old column"
    );
    // The database itself now refuses a duplicate.
    let mut again = meta.disk(first).await.unwrap().unwrap();
    again.id = Id::random(Kind::Disk);
    let vol = coffer_meta::VolumeRow {
        dek2_id: None,
        id: Id::random(Kind::Volume),
        dek_id: dek,
        chunk_size: 65536,
        size: 65536,
        parent: None,
        head_generation: 0,
        live: true,
        region: "local".into(),
    };
    assert!(matches!(
        meta.create_disk(&again, &vol).await,
        Err(coffer_meta::MetaError::NameTaken { .. })
    ));
}

/// A database of an earlier schema at `url`: `migrations` applied by hand,
/// then `rows` (which record the schema version).
async fn old_database(url: &str, migrations: &[&str], rows: Vec<String>) {
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    pool.execute("CREATE TABLE schema_version (version BIGINT NOT NULL)")
        .await
        .unwrap();
    for sql in migrations {
        for stmt in coffer_meta::schema::statements(sql) {
            pool.execute(sqlx::AssertSqlSafe(stmt)).await.unwrap();
        }
    }
    for stmt in rows {
        pool.execute(sqlx::AssertSqlSafe(stmt)).await.unwrap();
    }
    pool.close().await;
}
