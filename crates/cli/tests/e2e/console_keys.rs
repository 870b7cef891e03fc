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
//! A second test makes everything in the console's forms: a vault (with
//! purge protection), a key, a secret (its page shows no value until
//! "Show value" is pressed; a new version; deleted and recovered), grants
//! on the key to a principal of another account (listed, one retired, one
//! revoked), an encryption set; the key and the vault deleted (a wrong
//! name refused first) and recovered, a purge refused under purge
//! protection. A user of another tenant gets `NotFound` for the secret's
//! page and for every change to the secret, the key's grants and a grant.
//!
//! Every page kept is checked with axe-core and saved as a PNG under
//! `CARGO_TARGET_TMPDIR/console` (docs/CONSOLE.md shows them).

use crate::common;

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

/// POST a form from the page the browser is on (with the page's CSRF
/// token, from the console's own origin, as its forms do); the status and
/// body of the answer.
async fn post_from_page(b: &Client, path: &str, fields: &str) -> (u64, String) {
    let r = b
        .execute_async(
            "const [path, fields, done] = arguments;
             const body = new URLSearchParams(fields);
             body.set('csrf', document.querySelector('input[name=csrf]').value);
             fetch(path, {method: 'POST', body, redirect: 'manual'})
               .then(async r => done([r.status, await r.text()]))
               .catch(e => done([0, String(e)]));",
            vec![path.into(), fields.into()],
        )
        .await
        .unwrap();
    (
        r[0].as_u64().unwrap(),
        r[1].as_str().unwrap_or_default().to_string(),
    )
}

/// The ids in the rows of the key's grants table.
fn grant_of(grants: &serde_json::Value, name: &str) -> String {
    grants
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no grant {name}: {grants}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_person_makes_a_vault_key_secret_grants_and_set_in_the_console() {
    use base64::Engine;
    let s = Server::start();
    let api = s.api.clone();
    let admin = s.admin_token();
    let id = |v: &serde_json::Value, p: &str| v.pointer(p).unwrap().as_str().unwrap().to_string();

    // A principal of another account of the admin's tenant, to grant to.
    let partner = id(&s.cli(&["account", "create", "--name", "partner"]), "/id");
    let dana = id(
        &s.cli(&[
            "principal",
            "create",
            "--name",
            "dana",
            "--account",
            &partner,
        ]),
        "/id",
    );
    // A user of another tenant.
    let (_, _, bob_token) = other_tenant_owner(&s, "globex", "bob");

    let value = "correct horse battery staple";
    let driver = Driver::start();
    block_on(async {
        let a = driver.browser().await;
        let b = driver.browser().await;
        sign_in(&a, &api, &admin).await;
        sign_in(&b, &api, &bob_token).await;

        // A vault, with purge protection and 7 days' retention.
        a.goto(&format!("{api}/console/vaults")).await.unwrap();
        fill(&a, "#v-name", "app-vault").await;
        fill(&a, "#v-retention", "7").await;
        click(&a, "#v-purge").await;
        submit(&a, "#create-vault").await;
        at(&a, "/console/vaults/kv-").await;
        let vault = text(&a, "#vault-id").await;
        let v = s.cli(&["vault", "show", &vault]);
        assert_eq!(v["name"], "app-vault", "{v}");
        assert_eq!(v["purge_protection"], true, "{v}");
        assert_eq!(v["soft_delete"], true, "{v}");
        assert_eq!(v["retention_days"], 7, "{v}");

        // A retention that is no number: 400, saying what to type.
        a.goto(&format!("{api}/console/vaults")).await.unwrap();
        fill(&a, "#v-name", "bad-vault").await;
        fill(&a, "#v-retention", "a week").await;
        submit(&a, "#create-vault").await;
        let refused = body(&a).await;
        assert!(
            refused.contains("InvalidRetention") && refused.contains("7 to 90"),
            "{refused}"
        );

        // A key in it, rotated every 90 days.
        a.goto(&format!("{api}/console/vaults/{vault}"))
            .await
            .unwrap();
        fill(&a, "#k-name", "app-key").await;
        fill(&a, "#k-rotation", "90").await;
        submit(&a, "#create-key").await;
        at(&a, "/console/keys/key-").await;
        let key = text(&a, "#key-id").await;
        let k = s.cli(&["key", "show", &key]);
        assert_eq!(k["name"], "app-key", "{k}");
        assert_eq!(k["key_type"], "AES256", "{k}");
        assert_eq!(k["rotation_days"], 90, "{k}");

        // A secret: its page shows no value until "Show value" is pressed.
        a.goto(&format!("{api}/console/vaults/{vault}"))
            .await
            .unwrap();
        fill(&a, "#sec-name", "db-password").await;
        fill(&a, "#sec-value", value).await;
        fill(&a, "#sec-type", "text/plain").await;
        submit(&a, "#set-secret").await;
        at(&a, "/console/secrets/sec-").await;
        let secret = text(&a, "#secret-id").await;
        assert_eq!(text(&a, "#secret-version").await, "1");
        assert_eq!(text(&a, "#secret-type").await, "text/plain");
        let page = body(&a).await;
        assert!(!page.contains(value), "{page}");
        let html = a.source().await.unwrap();
        assert!(!html.contains("battery"), "the value is in the page's HTML");
        shot(&a, "secret").await;
        let shown = s.cli(&["secret", "get", &secret]);
        assert_eq!(
            shown["value"],
            base64::engine::general_purpose::STANDARD.encode(value),
            "{shown}"
        );
        submit(&a, "#show-value").await;
        assert_eq!(text(&a, "#secret-value").await, value);
        assert_eq!(text(&a, "#value-version").await, "1");
        shot(&a, "secret-value").await;

        // The vault's page lists it, without its value.
        a.goto(&format!("{api}/console/vaults/{vault}"))
            .await
            .unwrap();
        let listed = text(&a, "#secrets").await;
        assert!(
            listed.contains("db-password") && listed.contains(&secret),
            "{listed}"
        );
        assert!(!listed.contains(value), "{listed}");
        shot(&a, "vault-secrets").await;

        // A new version; the first still shows.
        a.goto(&format!("{api}/console/secrets/{secret}"))
            .await
            .unwrap();
        fill(&a, "#sec-value", "second value").await;
        submit(&a, "#set-secret").await;
        assert_eq!(text(&a, "#secret-version").await, "2");
        submit(&a, "#show-value").await;
        assert_eq!(text(&a, "#secret-value").await, "second value");
        a.goto(&format!("{api}/console/secrets/{secret}"))
            .await
            .unwrap();
        submit(&a, "button[aria-label='Show value of version 1']").await;
        assert_eq!(text(&a, "#secret-value").await, value);

        // Delete: a wrong name is refused; the right one deletes (softly).
        a.goto(&format!("{api}/console/secrets/{secret}"))
            .await
            .unwrap();
        fill(&a, "#confirm-secret", "db-passw0rd").await;
        submit(&a, "#delete-secret").await;
        let refused = body(&a).await;
        assert!(refused.contains("Not deleted"), "{refused}");
        assert_eq!(s.cli(&["secret", "show", &secret])["state"], "active");
        a.goto(&format!("{api}/console/secrets/{secret}"))
            .await
            .unwrap();
        fill(&a, "#confirm-secret", "db-password").await;
        submit(&a, "#delete-secret").await;
        assert_eq!(text(&a, "#secret-state").await, "deleted");
        assert!(
            a.find(Locator::Css("#show-value")).await.is_err(),
            "no Show value on a deleted secret"
        );
        assert_eq!(s.cli(&["secret", "show", &secret])["state"], "deleted");
        shot(&a, "secret-deleted").await;
        submit(&a, "#recover-secret").await;
        assert_eq!(text(&a, "#secret-state").await, "active");
        assert_eq!(s.cli(&["secret", "show", &secret])["state"], "active");

        // Grants to dana (another account of the tenant): listed.
        for (name, ops) in [
            ("partner-read", &["Describe", "Decrypt"][..]),
            ("partner-wrap", &["WrapKey"][..]),
        ] {
            a.goto(&format!("{api}/console/keys/{key}")).await.unwrap();
            fill(&a, "#g-grantee", &dana).await;
            fill(&a, "#g-name", name).await;
            for op in ops {
                click(&a, &format!("input[name='op-{op}']")).await;
            }
            submit(&a, "#create-grant").await;
            at(&a, &format!("/console/keys/{key}")).await;
        }
        // No operation ticked: refused by the service, saying so.
        fill(&a, "#g-grantee", &dana).await;
        submit(&a, "#create-grant").await;
        let refused = body(&a).await;
        assert!(refused.contains("at least one operation"), "{refused}");
        a.goto(&format!("{api}/console/keys/{key}")).await.unwrap();
        let table = text(&a, "#grants").await;
        assert!(
            table.contains(&dana)
                && table.contains("Describe, Decrypt")
                && table.contains("partner-read")
                && table.contains("WrapKey"),
            "{table}"
        );
        let grants = s.cli(&["key", "grant", "list", &key]);
        assert_eq!(grants.as_array().unwrap().len(), 2, "{grants}");
        let read = grant_of(&grants, "partner-read");
        let wrap = grant_of(&grants, "partner-wrap");
        a.execute(
            "document.querySelector('#grants-h').scrollIntoView(); return null;",
            vec![],
        )
        .await
        .unwrap();
        shot(&a, "key-grants").await;

        // The other tenant's user: NotFound for the secret's page and for
        // every change to it, to the key's grants and to a grant.
        b.goto(&format!("{api}/console/secrets/{secret}"))
            .await
            .unwrap();
        let page = body(&b).await;
        assert!(page.contains("NotFound"), "{page}");
        assert!(!page.contains("db-password"), "{page}");
        for (path, fields) in [
            (format!("/console/secrets/{secret}/value"), String::new()),
            (
                format!("/console/secrets/{secret}/delete"),
                "confirm=db-password".to_string(),
            ),
            (format!("/console/secrets/{secret}/recover"), String::new()),
            (
                format!("/console/secrets/{secret}/purge"),
                "confirm=db-password".to_string(),
            ),
            (
                format!("/console/vaults/{vault}/secrets"),
                "name=db-password&value=stolen".to_string(),
            ),
            (
                format!("/console/keys/{key}/grants"),
                format!("grantee_id={dana}&op-Decrypt=on"),
            ),
            (format!("/console/grants/{read}/retire"), String::new()),
            (format!("/console/grants/{wrap}/revoke"), String::new()),
        ] {
            let (st, resp) = post_from_page(&b, &path, &fields).await;
            assert_eq!(st, 404, "{path}: {resp}");
            assert!(resp.contains("NotFound"), "{path}: {resp}");
            for n in ["db-password", "partner-read", "app-key", value] {
                assert!(!resp.contains(n), "{path} named {n}: {resp}");
            }
        }
        shot(&b, "other-tenant-secret").await;
        let sec = s.cli(&["secret", "show", &secret]);
        assert_eq!(sec["state"], "active", "{sec}");
        assert_eq!(sec["current_version"], 2, "{sec}");
        let grants = s.cli(&["key", "grant", "list", &key]);
        assert_eq!(grants.as_array().unwrap().len(), 2, "{grants}");

        // Retire one grant, revoke the other: each page says how it ended,
        // and the key's page lists neither.
        submit(
            &a,
            &format!("form[action='/console/grants/{read}/retire'] button"),
        )
        .await;
        assert_eq!(text(&a, "#grant-state").await, "retired");
        assert_eq!(text(&a, "#grant-id").await, read);
        shot(&a, "grant-retired").await;
        a.goto(&format!("{api}/console/keys/{key}")).await.unwrap();
        submit(
            &a,
            &format!("form[action='/console/grants/{wrap}/revoke'] button"),
        )
        .await;
        assert_eq!(text(&a, "#grant-state").await, "revoked");
        a.goto(&format!("{api}/console/keys/{key}")).await.unwrap();
        assert_eq!(text(&a, "#no-grants").await, "No active grants.");
        let grants = s.cli(&["key", "grant", "list", &key]);
        assert_eq!(grants.as_array().unwrap().len(), 0, "{grants}");

        // An encryption set on the key, from the key's page.
        submit(&a, "a[href^='/console/encryption-sets?key=']").await;
        assert_eq!(
            find(&a, "#es-key")
                .await
                .unwrap()
                .attr("value")
                .await
                .unwrap()
                .as_deref(),
            Some(key.as_str())
        );
        fill(&a, "#es-name", "app-set").await;
        shot(&a, "encryption-sets-create").await;
        submit(&a, "#create-set").await;
        at(&a, "/console/encryption-sets/des-").await;
        assert_eq!(text(&a, "#set-key").await, key);
        let set = text(&a, "#set-id").await;
        let es = s.cli(&["encryption-set", "show", &set]);
        assert_eq!(es["encryption_type"], "customer", "{es}");

        // The key: deleted after typing its name, a purge refused under
        // purge protection, recovered.
        a.goto(&format!("{api}/console/keys/{key}")).await.unwrap();
        fill(&a, "#confirm-delete", "app-key").await;
        submit(&a, "#delete-key").await;
        assert_eq!(text(&a, "#key-state").await, "deleted");
        assert_eq!(s.cli(&["key", "show", &key])["state"], "deleted");
        shot(&a, "key-deleted").await;
        fill(&a, "#confirm-purge", "app-key").await;
        submit(&a, "#purge-key").await;
        let refused = body(&a).await;
        assert!(refused.contains("PurgeProtected"), "{refused}");
        a.goto(&format!("{api}/console/keys/{key}")).await.unwrap();
        submit(&a, "#recover-key").await;
        assert_eq!(text(&a, "#key-state").await, "active");
        assert_eq!(s.cli(&["key", "show", &key])["state"], "active");

        // The vault: a wrong name refused; deleted; listed as deleted;
        // recovered.
        a.goto(&format!("{api}/console/vaults/{vault}"))
            .await
            .unwrap();
        fill(&a, "#confirm-vault", "app").await;
        submit(&a, "#delete-vault").await;
        let refused = body(&a).await;
        assert!(refused.contains("Not deleted"), "{refused}");
        assert_eq!(s.cli(&["vault", "show", &vault])["state"], "active");
        a.goto(&format!("{api}/console/vaults/{vault}"))
            .await
            .unwrap();
        fill(&a, "#confirm-vault", "app-vault").await;
        submit(&a, "#delete-vault").await;
        assert_eq!(text(&a, "#vault-state").await, "deleted");
        assert_eq!(s.cli(&["vault", "show", &vault])["state"], "deleted");
        shot(&a, "vault-deleted").await;
        a.goto(&format!("{api}/console/vaults")).await.unwrap();
        let deleted = text(&a, "#deleted-vaults").await;
        assert!(deleted.contains(&vault), "{deleted}");
        shot(&a, "vaults-create").await;
        a.goto(&format!("{api}/console/vaults/{vault}"))
            .await
            .unwrap();
        submit(&a, "#recover-vault").await;
        assert_eq!(text(&a, "#vault-state").await, "active");
        assert_eq!(s.cli(&["vault", "show", &vault])["state"], "active");

        a.close().await.unwrap();
        b.close().await.unwrap();
    });
    s.assert_no_panic();
}
