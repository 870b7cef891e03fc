//! The console's identity, organisation and share pages in a real browser
//! (headless Chromium through chromedriver), against the real `coffer
//! serve`.
//!
//! The admin creates a principal and a token for it: the token is shown
//! once (the principal's page shows its id, never its secret), works
//! against the API, and once revoked the API refuses it (401). A role
//! assignment made on the Access page lets the principal list the
//! account's disks; removed, it no longer does. The principal is deleted
//! after its name is typed.
//!
//! In the organisation the admin creates a folder and an account, and
//! moves the account into the folder: the tree shows it there. A share
//! made on the Shares page gets a snapshot and an account of another
//! tenant, whose user sees the invitation. A wrong name does not delete
//! the share; the right one does.
//!
//! A user of another tenant gets `NotFound` for the admin's principal's
//! page, its account's principals and the share's page.
//!
//! Every page kept is checked with axe-core and saved as a PNG under
//! `CARGO_TARGET_TMPDIR/console` (docs/CONSOLE.md shows some).

use crate::common;

use common::browser::*;
use common::*;
use fantoccini::{Client, Locator};
use serde_json::Value;

fn id(v: &Value, p: &str) -> String {
    v.pointer(p)
        .unwrap_or_else(|| panic!("no {p} in {v}"))
        .as_str()
        .unwrap()
        .to_string()
}

/// Choose `value` in the select `css`.
async fn choose(b: &Client, css: &str, value: &str) {
    find(b, css)
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("{css} has no option {value}: {e}"));
}

/// The names of the disks a token lists.
fn disks_of(s: &Server, token: &str) -> Vec<String> {
    let (st, page) = http(s, "GET", "/v1/disks", Some(token), None);
    assert_eq!(st, 200, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_person_manages_principals_tokens_and_role_assignments() {
    let s = Server::start();
    let api = s.api.clone();
    let admin = s.admin_token();
    let me = s.cli(&["whoami"]);
    let account = id(&me, "/account_id");
    s.create_disk("team-disk", "8MiB", "local-a");
    let (_, _, bob_token) = other_tenant_owner(&s, "globex", "bob");

    let driver = Driver::start();
    block_on(async {
        let a = driver.browser().await;
        let b = driver.browser().await;
        sign_in(&a, &api, &admin).await;
        sign_in(&b, &api, &bob_token).await;

        // From the Access page to the principals of my account.
        a.goto(&format!("{api}/console/access")).await.unwrap();
        submit(&a, "#to-principals").await;
        assert_eq!(at(&a, "/console/principals").await, "/console/principals");
        assert!(text(&a, "#principals").await.contains("admin"));

        // Create a service principal: its page.
        fill(&a, "#p-name", "ci-bot").await;
        choose(&a, "#p-kind", "service").await;
        submit(&a, "#create-principal").await;
        at(&a, "/console/principals/prn-").await;
        let prn = text(&a, "#principal-id").await;
        let page = body(&a).await;
        assert!(
            page.contains("ci-bot") && page.contains("service"),
            "{page}"
        );
        assert!(page.contains("No tokens."), "{page}");
        shot(&a, "principal").await;

        // A token: shown once.
        fill(&a, "#t-name", "ci").await;
        fill(&a, "#t-expires", "1h").await;
        submit(&a, "#create-token").await;
        let secret = text(&a, "#new-token").await;
        let tok = text(&a, "#new-token-id").await;
        assert!(secret.starts_with("coffer_"), "{secret}");
        assert!(
            body(&a).await.contains("it will not be shown again"),
            "the page says the token is shown once"
        );
        // The picture kept for the docs shows no secret, even a dead one.
        a.execute(
            "document.querySelector('#new-token').textContent = 'coffer_…'; document.querySelectorAll('pre code').forEach(c => c.textContent = c.textContent.replace(arguments[0], 'coffer_…')); return null;",
            vec![Value::String(secret.clone())],
        )
        .await
        .unwrap();
        shot(&a, "token-created").await;

        // It works against the API, as the new principal.
        let (st, who) = http(&s, "GET", "/v1/whoami", Some(&secret), None);
        assert_eq!(st, 200, "{who}");
        assert_eq!(id(&who, "/principal_id"), prn);
        assert!(disks_of(&s, &secret).is_empty(), "no role yet");

        // The principal's page again: the token listed, its secret nowhere.
        a.goto(&format!("{api}/console/principals/{prn}"))
            .await
            .unwrap();
        let tokens = text(&a, "#tokens").await;
        assert!(
            tokens.contains(&tok) && tokens.contains("active"),
            "{tokens}"
        );
        let page = a.source().await.unwrap();
        assert!(!page.contains(&secret), "the secret was shown again");

        // A role on the Access page: Reader of my account.
        a.goto(&format!("{api}/console/access")).await.unwrap();
        fill(&a, "#ra-principal", &prn).await;
        choose(&a, "#ra-role", "Reader").await;
        fill(&a, "#ra-scope", &account).await;
        submit(&a, "#ra-assign").await;
        at(&a, "/console/access").await;
        let listed = text(&a, "#at-scope").await;
        assert!(
            listed.contains(&prn) && listed.contains("Reader"),
            "{listed}"
        );
        shot(&a, "access-roles").await;
        assert_eq!(disks_of(&s, &secret), ["team-disk"]);

        // Removed (after ticking the confirmation): the role is gone.
        let (st, ras) = http(
            &s,
            "GET",
            &format!("/v1/role-assignments?principal={prn}"),
            Some(&admin),
            None,
        );
        assert_eq!(st, 200, "{ras}");
        let ra = id(&ras, "/items/0/id");
        click(&a, &format!("#scope-ok-{ra}")).await;
        submit(
            &a,
            &format!(
                "#at-scope button[aria-label='Remove the role Reader at {account} from {prn}']"
            ),
        )
        .await;
        at(&a, "/console/access").await;
        assert!(!text(&a, "#at-scope").await.contains(&prn));
        assert!(disks_of(&s, &secret).is_empty(), "the role still applies");

        // Another tenant's user sees none of it.
        for path in [
            format!("/console/principals/{prn}"),
            format!("/console/principals?account={account}"),
        ] {
            b.goto(&format!("{api}{path}")).await.unwrap();
            let page = body(&b).await;
            assert!(page.contains("NotFound"), "{path}: {page}");
            assert!(!page.contains("ci-bot"), "{path}: {page}");
        }

        // Revoke the token (after ticking the confirmation): the API
        // refuses it.
        a.goto(&format!("{api}/console/principals/{prn}"))
            .await
            .unwrap();
        click(&a, &format!("#revoke-ok-{tok}")).await;
        submit(&a, &format!("#revoke-{tok}")).await;
        at(&a, "/console/principals/").await;
        assert_eq!(
            text(&a, &format!("#token-{tok} .token-state")).await,
            "revoked"
        );
        let (st, answer) = http(&s, "GET", "/v1/whoami", Some(&secret), None);
        assert_eq!(st, 401, "a revoked token worked: {answer}");

        // Delete the principal: a wrong name is refused, the right one not.
        fill(&a, "#confirm", "not-ci-bot").await;
        submit(&a, "#delete-principal").await;
        let refused = body(&a).await;
        assert!(refused.contains("Not deleted"), "{refused}");
        s.cli(&["principal", "show", &prn]);
        a.goto(&format!("{api}/console/principals/{prn}"))
            .await
            .unwrap();
        fill(&a, "#confirm", "ci-bot").await;
        submit(&a, "#delete-principal").await;
        at(&a, "/console/principals").await;
        assert!(!text(&a, "#principals").await.contains(&prn));
        shot(&a, "principals").await;
        let (st, _) = http(
            &s,
            "GET",
            &format!("/v1/principals/{prn}"),
            Some(&admin),
            None,
        );
        assert_eq!(st, 404);

        a.close().await.unwrap();
        b.close().await.unwrap();
    });
    s.assert_no_panic();
}

#[test]
fn a_person_changes_the_organisation_and_shares_a_snapshot() {
    let s = Server::start();
    let api = s.api.clone();
    let admin = s.admin_token();
    let me = s.cli(&["whoami"]);
    let tenant = id(&me, "/tenant_id");
    let (bob_acct, _, bob_token) = other_tenant_owner(&s, "globex", "bob");
    let disk = s.create_disk("golden", "8MiB", "local-a");
    let snap = id(
        &s.cli(&["snapshot", "create", "--disk", &disk, "--name", "golden-1"]),
        "/id",
    );
    // The one id of a kind with this name, as the admin sees it.
    let named = |route: &str, name: &str| {
        let (st, page) = http(
            &s,
            "GET",
            &format!("{route}?name={name}&tenant={tenant}"),
            Some(&admin),
            None,
        );
        assert_eq!(st, 200, "{page}");
        id(&page, "/items/0/id")
    };

    let driver = Driver::start();
    block_on(async {
        let a = driver.browser().await;
        let b = driver.browser().await;
        sign_in(&a, &api, &admin).await;
        sign_in(&b, &api, &bob_token).await;

        // A folder at my tenant's root, and an account beside it.
        a.goto(&format!("{api}/console/org")).await.unwrap();
        fill(&a, "#f-name", "eng").await;
        choose(&a, "#f-place", &tenant).await;
        submit(&a, "#create-folder").await;
        at(&a, "/console/org").await;
        let folder = named("/v1/folders", "eng");
        fill(&a, "#a-name", "build").await;
        choose(&a, "#a-place", &tenant).await;
        submit(&a, "#create-account").await;
        at(&a, "/console/org").await;
        let acct = named("/v1/accounts", "build");
        assert!(text(&a, &format!("#org-{tenant}")).await.contains("build"));
        assert!(!text(&a, &format!("#org-{folder}")).await.contains("build"));

        // Moved into the folder: the tree shows it there.
        choose(&a, &format!("#move-{acct}"), &folder).await;
        submit(&a, &format!("#move-go-{acct}")).await;
        at(&a, "/console/org").await;
        let eng = text(&a, &format!("#org-{folder}")).await;
        assert!(eng.contains("build") && eng.contains(&acct), "{eng}");
        assert_eq!(
            s.cli(&["account", "show", &acct])["folder_id"],
            folder.as_str()
        );
        shot(&a, "org-changes").await;

        // Bob sees none of my tenant's tree, nor its forms' places.
        b.goto(&format!("{api}/console/org")).await.unwrap();
        let tree = body(&b).await;
        assert!(!tree.contains(&folder) && !tree.contains(&tenant), "{tree}");

        // A share, then a snapshot and Bob's account added to it.
        a.goto(&format!("{api}/console/shares")).await.unwrap();
        fill(&a, "#sh-name", "team").await;
        choose(&a, "#sh-scope", "any").await;
        submit(&a, "#create-share").await;
        at(&a, "/console/shares/rs-").await;
        let share = text(&a, "#share-id").await;
        fill(&a, "#add-resources", &snap).await;
        submit(&a, "#add-resources-go").await;
        assert!(text(&a, "#share-resources").await.contains(&snap));
        fill(&a, "#add-principals", &bob_acct).await;
        submit(&a, "#add-principals-go").await;
        let principals = text(&a, "#share-principals").await;
        assert!(
            principals.contains(&bob_acct) && principals.contains("pending"),
            "{principals}"
        );
        shot(&a, "share-edit").await;

        // Bob sees the invitation, not the share's page.
        b.goto(&format!("{api}/console/shares")).await.unwrap();
        assert_eq!(text(&b, ".invitation-status").await, "pending");
        assert!(body(&b).await.contains("team"));
        b.goto(&format!("{api}/console/shares/{share}"))
            .await
            .unwrap();
        let page = body(&b).await;
        assert!(page.contains("NotFound") && !page.contains(&snap), "{page}");

        // A wrong name deletes nothing; the right one deletes the share.
        fill(&a, "#confirm", "not-team").await;
        submit(&a, "#delete-share").await;
        assert!(body(&a).await.contains("Not deleted"));
        s.cli(&["share", "show", &share]);
        a.goto(&format!("{api}/console/shares/{share}"))
            .await
            .unwrap();
        fill(&a, "#confirm", "team").await;
        submit(&a, "#delete-share").await;
        at(&a, "/console/shares").await;
        assert!(
            a.find(Locator::Css(&format!("a[href='/console/shares/{share}']")))
                .await
                .is_err()
        );
        let (st, _) = http(
            &s,
            "GET",
            &format!("/v1/shares/{share}"),
            Some(&admin),
            None,
        );
        assert_eq!(st, 404);

        a.close().await.unwrap();
        b.close().await.unwrap();
    });
    s.assert_no_panic();
}
