//! The console's key pages in a real browser (headless Chromium through
//! chromedriver), against the real `coffer serve`.
//!
//! The admin makes, with the CLI, a key vault, a key, a disk encryption
//! set on it (its identity given the role it needs on the key), a disk
//! under the set and a snapshot of it, and a disk under a platform key.
//! In the console: the vaults page lists the vault; the vault's page its
//! key; the key's page shows what it protects (the set, the disk and the
//! snapshot, not the other disk); rotating adds a version; disabling
//! names what becomes unreadable, is refused when the name typed is not
//! the key's, and with the right name disables it; enabling brings it
//! back. The set's page shows the disk under it. A user of another tenant
//! gets `NotFound` for each of those pages.
//!
//! Every page kept is checked with axe-core and saved as a PNG under
//! `CARGO_TARGET_TMPDIR/console` (docs/CONSOLE.md shows them).

mod common;

use common::browser::*;
use common::*;
use fantoccini::{Client, Locator};

/// The role a set's identity needs on its key.
const ROLE: &str = "Key Vault Crypto Service Encryption User";

/// How many rows the key's versions table has.
async fn versions(b: &Client) -> usize {
    find(b, "#versions").await.expect("the versions table");
    b.find_all(Locator::Css("#versions tbody tr"))
        .await
        .unwrap()
        .len()
}

#[test]
fn a_person_sees_what_a_key_protects_rotates_disables_and_enables_it() {
    let s = Server::start();
    let api = s.api.clone();
    let admin = s.admin_token();
    let id = |v: &serde_json::Value, p: &str| v.pointer(p).unwrap().as_str().unwrap().to_string();

    // The admin's vault, key, set, and a disk and snapshot under the set.
    let vault = id(
        &s.cli(&[
            "vault",
            "create",
            "--name",
            "cmk-vault",
            "--purge-protection",
            "--retention-days",
            "7",
        ]),
        "/id",
    );
    let key = id(
        &s.cli(&["key", "create", "--vault", &vault, "--name", "disk-key"]),
        "/id",
    );
    let set = s.cli(&["encryption-set", "create", "--name", "des", "--key", &key]);
    let set_id = id(&set, "/id");
    s.cli(&[
        "role",
        "assignment",
        "create",
        "--principal",
        &id(&set, "/identity_id"),
        "--role",
        ROLE,
        "--scope",
        &key,
    ]);
    let disk = id(
        &s.cli(&[
            "disk",
            "create",
            "--name",
            "secret-data",
            "--size",
            "16MiB",
            "--zone",
            "local-a",
            "--encryption-set",
            &set_id,
        ]),
        "/id",
    );
    let snap = id(
        &s.cli(&[
            "snapshot",
            "create",
            "--disk",
            &disk,
            "--name",
            "secret-data-snap",
        ]),
        "/id",
    );
    let plain = s.create_disk("plain-data", "16MiB", "local-a");

    // A user of another tenant.
    let (_, _, bob_token) = other_tenant_owner(&s, "globex", "bob");

    let driver = Driver::start();
    block_on(async {
        let a = driver.browser().await;
        let b = driver.browser().await;
        sign_in(&a, &api, &admin).await;
        sign_in(&b, &api, &bob_token).await;

        // The vaults page lists the vault; the navigation leads there.
        submit(&a, "nav a[href='/console/vaults']").await;
        assert_eq!(at(&a, "/console/vaults").await, "/console/vaults");
        let listed = text(&a, "#vaults").await;
        assert!(
            listed.contains("cmk-vault") && listed.contains(&vault),
            "{listed}"
        );
        shot(&a, "vaults").await;

        // The vault's page lists its key.
        submit(&a, &format!("a[href='/console/vaults/{vault}']")).await;
        assert_eq!(text(&a, "#vault-id").await, vault);
        let keys = text(&a, "#keys").await;
        assert!(keys.contains("disk-key") && keys.contains(&key), "{keys}");
        shot(&a, "vault").await;

        // The key's page: what it protects.
        submit(&a, &format!("a[href='/console/keys/{key}']")).await;
        assert_eq!(text(&a, "#key-id").await, key);
        assert_eq!(text(&a, "#key-enabled").await, "enabled");
        let protects = text(&a, "#protects").await;
        for want in [&set_id, &disk, &snap] {
            assert!(protects.contains(want.as_str()), "{want}: {protects}");
        }
        assert!(!protects.contains(&plain), "{protects}");
        let unreadable = text(&a, "#unreadable").await;
        assert!(
            unreadable.contains("secret-data") && unreadable.contains(&disk),
            "{unreadable}"
        );
        assert!(unreadable.contains(&snap), "{unreadable}");
        assert!(!unreadable.contains(&plain), "{unreadable}");

        // Rotate: one more version, the new one current.
        let before = versions(&a).await;
        assert_eq!(before, 1);
        submit(&a, "#rotate").await;
        assert_eq!(
            at(&a, "/console/keys/").await,
            format!("/console/keys/{key}")
        );
        assert_eq!(versions(&a).await, before + 1);
        assert_eq!(text(&a, "#key-version").await, "2");
        // The picture kept (docs/CONSOLE.md) shows what it protects and
        // the disable form.
        a.execute(
            "document.querySelector('section.danger').scrollIntoView({block: 'end'}); return null;",
            vec![],
        )
        .await
        .unwrap();
        shot(&a, "key").await;

        // Disable with a wrong name: refused, the key stays enabled.
        fill(&a, "#confirm", "not-the-key").await;
        submit(&a, "#disable").await;
        let refused = body(&a).await;
        assert!(
            refused.contains("Not disabled") && refused.contains("disk-key"),
            "{refused}"
        );
        a.goto(&format!("{api}/console/keys/{key}")).await.unwrap();
        assert_eq!(text(&a, "#key-enabled").await, "enabled");
        let k = s.cli(&["key", "show", &key]);
        assert_eq!(k["enabled"], "enabled", "{k}");

        // With the right name: disabled.
        fill(&a, "#confirm", "disk-key").await;
        submit(&a, "#disable").await;
        assert_eq!(text(&a, "#key-enabled").await, "disabled");
        let k = s.cli(&["key", "show", &key]);
        assert_eq!(k["enabled"], "disabled", "{k}");
        assert!(
            a.find(Locator::Css("#disable")).await.is_err(),
            "no disable form on a disabled key"
        );

        // Enable again.
        submit(&a, "#enable").await;
        assert_eq!(text(&a, "#key-enabled").await, "enabled");
        let k = s.cli(&["key", "show", &key]);
        assert_eq!(k["enabled"], "enabled", "{k}");

        // The encryption sets, and the set's page with its disk.
        a.goto(&format!("{api}/console/encryption-sets"))
            .await
            .unwrap();
        submit(&a, &format!("a[href='/console/encryption-sets/{set_id}']")).await;
        assert_eq!(text(&a, "#set-id").await, set_id);
        assert_eq!(text(&a, "#set-key").await, key);
        let page = body(&a).await;
        assert!(page.contains(&disk) && page.contains(&vault), "{page}");
        assert!(!page.contains(&plain), "{page}");
        shot(&a, "encryption-set").await;

        // The other tenant's user sees none of it.
        b.goto(&format!("{api}/console/vaults")).await.unwrap();
        let listed = body(&b).await;
        assert!(
            !listed.contains("cmk-vault") && !listed.contains(&vault),
            "{listed}"
        );
        for path in [
            format!("/console/keys/{key}"),
            format!("/console/vaults/{vault}"),
            format!("/console/encryption-sets/{set_id}"),
        ] {
            b.goto(&format!("{api}{path}")).await.unwrap();
            let page = body(&b).await;
            assert!(page.contains("NotFound"), "{path}: {page}");
            assert!(!page.contains("disk-key"), "{path}: {page}");
            assert!(!page.contains("secret-data"), "{path}: {page}");
        }

        a.close().await.unwrap();
        b.close().await.unwrap();
    });
    s.assert_no_panic();
}
