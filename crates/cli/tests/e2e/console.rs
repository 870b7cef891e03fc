//! The web console in a real browser: Debian's headless Chromium driven by
//! chromedriver over WebDriver (the fantoccini crate), against the real
//! `coffer serve`.
//!
//! One person signs in with a token, creates a disk, attaches it and reads
//! the NBD URI off the page, writes to the disk with qemu-img, snapshots
//! it, restores the snapshot into another zone, reads the restored disk
//! back through a second attach (the same bytes), and sees the lineage
//! drawn. A user of another tenant, signed in at the same time in a second
//! browser, sees none of it. A change posted from another origin is
//! refused, and so are forms without the session's CSRF token. Signing out
//! ends the session: its cookie no longer opens a page.
//!
//! Every page visited is checked with axe-core and saved as a PNG under
//! `CARGO_TARGET_TMPDIR/console` (docs/CONSOLE.md shows them).

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::browser::*;
use common::*;
use fantoccini::Locator;

/// A raw request to the console; returns the status and the whole answer.
fn raw(api: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let addr = api.trim_start_matches("http://");
    let mut c = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += &format!(
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    (resp[9..12].parse().unwrap(), resp)
}

/// A page on another origin (another loopback port) whose form posts to
/// the console as soon as it loads: a cross-site request forgery.
fn serve_forgery(target: &str) -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let page = format!(
        "<!doctype html><html><body><form id=f method=post action=\"{target}/console/disks\">\
         <input name=name value=forged><input name=zone value=local-a><input name=size value=1MiB>\
         <input name=csrf value=guess></form><script>document.getElementById('f').submit()</script></body></html>"
    );
    let h = std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    (format!("http://{addr}"), h)
}

#[test]
fn a_person_manages_disks_in_the_console_and_another_tenant_sees_none_of_it() {
    require("qemu-img", "qemu-utils");
    let s = Server::start();
    let api = s.api.clone();
    let admin = s.admin_token();

    // A user of another tenant.
    let (_, _, bob_token) = other_tenant_owner(&s, "globex", "bob");

    let scratch = s.scratch();
    let written = scratch.join("written.raw");
    random_file(&written, 4 << 20, 7);
    let written_sha = sha256(&written);

    let driver = Driver::start();
    block_on(async {
        let a = driver.browser().await;
        let b = driver.browser().await;

        // The sign-in page, then a wrong token: refused, and said so.
        a.goto(&format!("{api}/console/disks")).await.unwrap();
        assert_eq!(a.current_url().await.unwrap().path(), "/console/sign-in");
        shot(&a, "sign-in").await;
        fill(&a, "#token", "coffer_not-a-token").await;
        submit(&a, "button[type=submit]").await;
        let page = body(&a).await;
        assert!(page.contains("unknown, expired or revoked"), "{page}");

        sign_in(&a, &api, &admin).await;
        sign_in(&b, &api, &bob_token).await;
        assert!(text(&a, "#who").await.contains("admin"));
        assert!(text(&b, "#who").await.contains("bob"));
        let cookie_a = session_cookie(&a).await;
        shot(&a, "overview").await;

        // Create a disk.
        a.goto(&format!("{api}/console/disks")).await.unwrap();
        fill(&a, "#d-name", "web-data").await;
        a.find(Locator::Css("#d-zone"))
            .await
            .unwrap()
            .select_by_value("local-a")
            .await
            .unwrap();
        fill(&a, "#d-size", "64MiB").await;
        submit(&a, "form.stack button[type=submit]").await;
        let disk = text(&a, "#disk-id").await;
        assert!(disk.starts_with("disk-"), "{disk}");
        assert_eq!(text(&a, "#disk-state").await, "available");

        // Attach it: the page shows the URI and the qemu command.
        submit(&a, "#attach").await;
        let uri = text(&a, "#nbd-uri").await;
        assert!(uri.starts_with("nbd://127.0.0.1:"), "{uri}");
        assert!(body(&a).await.contains("qemu-system-x86_64"));
        // The picture kept (docs/CONSOLE.md) shows no export name.
        a.execute(
            "for (const e of document.querySelectorAll('code')) e.textContent = e.textContent.replace(/coffer_[A-Za-z0-9_-]+/g, 'EXPORT-NAME'); return null;",
            vec![],
        )
        .await
        .unwrap();
        shot(&a, "disk-attached").await;
        qemu_img_in(&written, "raw", &uri);

        // Detach (flushes), then snapshot.
        a.goto(&format!("{api}/console/disks/{disk}"))
            .await
            .unwrap();
        assert_eq!(text(&a, "#disk-state").await, "attached");
        submit(&a, "#detach").await;
        assert_eq!(text(&a, "#disk-state").await, "available");
        fill(&a, "#snap-name", "web-data-snap").await;
        submit(&a, "#snapshot").await;
        let snap = text(&a, "#snapshot-id").await;
        assert!(snap.starts_with("snap-"), "{snap}");
        shot(&a, "snapshot").await;

        // Restore it into another zone.
        fill(&a, "#r-name", "web-data-b").await;
        a.find(Locator::Css("#r-zone"))
            .await
            .unwrap()
            .select_by_value("local-b")
            .await
            .unwrap();
        submit(&a, "#restore").await;
        let restored = text(&a, "#disk-id").await;
        assert_ne!(restored, disk);
        assert!(body(&a).await.contains("local-b"));

        // The lineage: disk -> snapshot -> restored disk, this one marked.
        let nodes = a
            .find_all(Locator::Css("#lineage-graph g.node"))
            .await
            .unwrap();
        let mut ids = Vec::new();
        for n in &nodes {
            ids.push(n.attr("data-id").await.unwrap().unwrap());
        }
        assert_eq!(ids, vec![disk.clone(), snap.clone(), restored.clone()]);
        let current = a
            .find(Locator::Css("#lineage-graph g.node.current"))
            .await
            .unwrap();
        assert_eq!(current.attr("data-id").await.unwrap().unwrap(), restored);
        assert_eq!(
            a.find_all(Locator::Css("#lineage-graph path.edge"))
                .await
                .unwrap()
                .len(),
            2
        );
        a.execute(
            "document.getElementById('lineage-h').scrollIntoView(); return null;",
            vec![],
        )
        .await
        .unwrap();
        shot(&a, "disk-lineage").await;

        // The restored disk holds what was written.
        submit(&a, "#attach").await;
        let uri_b = text(&a, "#nbd-uri").await;
        let back = scratch.join("back.raw");
        qemu_img_out(&uri_b, &back);
        let mut f = std::fs::File::open(&back).unwrap();
        let mut head = vec![0u8; 4 << 20];
        f.read_exact(&mut head).unwrap();
        std::fs::write(scratch.join("head.raw"), &head).unwrap();
        assert_eq!(sha256(&scratch.join("head.raw")), written_sha);
        a.goto(&format!("{api}/console/disks/{restored}"))
            .await
            .unwrap();
        submit(&a, "#detach").await;

        // A re-encrypting copy of the snapshot: a job whose page follows it
        // (the console's one script) until it succeeds.
        a.goto(&format!("{api}/console/snapshots/{snap}"))
            .await
            .unwrap();
        fill(&a, "#c-name", "web-data-copy").await;
        click(&a, "#c-rekey").await;
        submit(&a, "#copy").await;
        at(&a, "/console/jobs/").await;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(e) = a.find(Locator::Css("#job-state")).await
                && e.text().await.unwrap_or_default() == "succeeded"
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the copy job did not succeed: {}",
                body(&a).await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(text(&a, "#job-progress").await.contains("100%"));
        shot(&a, "job").await;
        submit(&a, "#job-target").await;
        assert!(text(&a, "#snapshot-id").await.starts_with("snap-"));
        a.goto(&format!("{api}/console/jobs")).await.unwrap();
        shot(&a, "jobs").await;

        a.goto(&format!("{api}/console/disks")).await.unwrap();
        shot(&a, "disks").await;
        a.goto(&format!("{api}/console/snapshots")).await.unwrap();
        shot(&a, "snapshots").await;

        // Storage used: on the overview (4 MiB written, and the copy's),
        // and over a longer range on the account's usage page.
        a.goto(&format!("{api}/console/")).await.unwrap();
        let stored = text(&a, "#usage-stored").await;
        assert!(stored.ends_with(" MiB"), "{stored}");
        find(&a, "#usage-chart").await.expect("the storage chart");
        shot(&a, "overview-usage").await;
        let account = s.cli(&["whoami"])["account_id"]
            .as_str()
            .unwrap()
            .to_string();
        let usage = format!("/console/accounts/{account}/usage?range=all");
        a.goto(&format!("{api}{usage}")).await.unwrap();
        assert_eq!(text(&a, "#usage-account").await, account);
        assert!(text(&a, "#usage-stored").await.ends_with(" MiB"));
        shot(&a, "usage").await;

        // The other tenant's user sees none of it.
        b.goto(&format!("{api}/console/")).await.unwrap();
        assert_eq!(text(&b, "#count-disks").await, "0");
        assert_eq!(text(&b, "#count-snapshots").await, "0");
        b.goto(&format!("{api}/console/disks")).await.unwrap();
        let listed = body(&b).await;
        assert!(
            !listed.contains("web-data") && !listed.contains(&disk),
            "{listed}"
        );
        for path in [
            format!("/console/disks/{disk}"),
            format!("/console/snapshots/{snap}"),
            format!("/console/disks/{restored}"),
            usage.clone(),
        ] {
            b.goto(&format!("{api}{path}")).await.unwrap();
            let page = body(&b).await;
            assert!(page.contains("NotFound"), "{path}: {page}");
            assert!(!page.contains("web-data"), "{path}: {page}");
        }
        shot(&b, "other-tenant").await;

        // A forged form on another origin, in the signed-in browser.
        let (evil, h) = serve_forgery(&api);
        a.goto(&evil).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while a.current_url().await.unwrap().as_str().starts_with(&evil) {
            assert!(Instant::now() < deadline, "the forged form was not sent");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let refused = body(&a).await;
        assert!(
            refused.contains("Refused: not from this console"),
            "{refused}"
        );
        h.join().unwrap();
        // And by hand: another Origin, or no CSRF token, with a real session.
        let (st, _) = raw(
            &api,
            "POST",
            "/console/disks",
            &[("Cookie", &cookie_a), ("Origin", "http://evil.example")],
            "name=forged&zone=local-a&size=1MiB&csrf=x",
        );
        assert_eq!(st, 403);
        let (st, _) = raw(
            &api,
            "POST",
            "/console/disks",
            &[("Cookie", &cookie_a)],
            "name=forged&zone=local-a&size=1MiB",
        );
        assert_eq!(st, 403);
        let listed = s.cli(&["disk", "list", "--name", "forged"]);
        assert_eq!(
            listed.as_array().map(Vec::len),
            Some(0),
            "no forged disk: {listed}"
        );

        // Sign out: the session's cookie opens nothing any more.
        let (st, _) = raw(&api, "GET", "/console/disks", &[("Cookie", &cookie_a)], "");
        assert_eq!(st, 200);
        a.goto(&format!("{api}/console/")).await.unwrap();
        submit(&a, "#sign-out").await;
        at(&a, "/console/sign-in").await;
        assert!(body(&a).await.contains("You are signed out."));
        let (st, resp) = raw(&api, "GET", "/console/disks", &[("Cookie", &cookie_a)], "");
        assert_eq!(st, 303, "{resp}");
        assert!(resp.contains("location: /console/sign-in"), "{resp}");
        // B is still signed in.
        b.goto(&format!("{api}/console/disks")).await.unwrap();
        assert_eq!(b.current_url().await.unwrap().path(), "/console/disks");

        a.close().await.unwrap();
        b.close().await.unwrap();
    });
    s.assert_no_panic();
}

#[test]
fn a_share_is_accepted_explained_and_audited_in_the_console() {
    let s = Server::start();
    let api = s.api.clone();
    let admin = s.admin_token();
    let id = |v: &serde_json::Value, p: &str| v.pointer(p).unwrap().as_str().unwrap().to_string();

    // Another tenant's account and its Owner, Bob.
    let (acct, bob, bob_token) = other_tenant_owner(&s, "globex", "bob");
    // The admin shares a snapshot with Bob's account: an invitation.
    let disk = s.create_disk("golden", "8MiB", "local-a");
    let snap = id(
        &s.cli(&["snapshot", "create", "--disk", &disk, "--name", "golden-1"]),
        "/id",
    );
    let share = id(
        &s.cli(&[
            "share",
            "create",
            "--name",
            "golden",
            "--principal-scope",
            "any",
            "--resource",
            &snap,
            "--principal",
            &acct,
        ]),
        "/id",
    );

    let driver = Driver::start();
    block_on(async {
        let a = driver.browser().await;
        let b = driver.browser().await;
        sign_in(&a, &api, &admin).await;
        sign_in(&b, &api, &bob_token).await;

        // Bob sees the invitation, not yet the snapshot; accepts; sees it.
        b.goto(&format!("{api}/console/snapshots?shared=true"))
            .await
            .unwrap();
        assert!(!body(&b).await.contains(&snap));
        b.goto(&format!("{api}/console/shares")).await.unwrap();
        assert_eq!(text(&b, ".invitation-status").await, "pending");
        shot(&b, "shares").await;
        submit(&b, "button[aria-label='Accept the share golden']").await;
        assert_eq!(text(&b, ".invitation-status").await, "associated");
        b.goto(&format!("{api}/console/snapshots?shared=true"))
            .await
            .unwrap();
        let listed = body(&b).await;
        assert!(
            listed.contains(&snap) && listed.contains("golden-1"),
            "{listed}"
        );
        // The share's own page is its owner's.
        a.goto(&format!("{api}/console/shares/{share}"))
            .await
            .unwrap();
        let page = body(&a).await;
        assert!(page.contains(&snap) && page.contains(&acct), "{page}");
        shot(&a, "share").await;

        // The admin asks why Bob may use the snapshot, and why not delete it.
        a.goto(&format!("{api}/console/access")).await.unwrap();
        fill(&a, "#x-action", "snapshots/use").await;
        fill(&a, "#x-resource", &snap).await;
        fill(&a, "#x-principal", &bob).await;
        submit(&a, "#explain").await;
        assert_eq!(text(&a, "#decision").await, "allow");
        shot(&a, "access").await;
        fill(&a, "#x-action", "snapshots/delete").await;
        submit(&a, "#explain").await;
        assert_eq!(text(&a, "#decision").await, "deny");

        // The audit log, and its chain verified.
        a.goto(&format!("{api}/console/audit")).await.unwrap();
        shot(&a, "audit").await;
        submit(&a, "#verify").await;
        let verified = text(&a, "#verified").await;
        assert!(verified.starts_with("The chain holds"), "{verified}");

        // The organisation: the admin sees both tenants; Bob not the admin's.
        let my_tenant = id(&s.cli(&["whoami"]), "/tenant_id");
        a.goto(&format!("{api}/console/org")).await.unwrap();
        let tree = body(&a).await;
        assert!(
            tree.contains("globex") && tree.contains(&acct) && tree.contains(&my_tenant),
            "{tree}"
        );
        shot(&a, "org").await;
        b.goto(&format!("{api}/console/org")).await.unwrap();
        let tree = body(&b).await;
        assert!(!tree.contains(&my_tenant), "{tree}");

        a.close().await.unwrap();
        b.close().await.unwrap();
    });
    s.assert_no_panic();
}

#[test]
fn a_sign_in_link_from_the_cli_signs_in_once() {
    let s = Server::start();
    let link = s.cli(&["console", "login"]);
    let url = link["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("{}/console/sign-in?code=", s.api)),
        "{link}"
    );
    let driver = Driver::start();
    block_on(async {
        let a = driver.browser().await;
        let b = driver.browser().await;
        // Opening the link (a previewer, say) spends nothing.
        b.goto(&url).await.unwrap();
        a.goto(&url).await.unwrap();
        let whose = text(&a, "#link-whose").await;
        assert!(whose.contains("admin"), "{whose}");
        shot(&a, "sign-in-link").await;
        submit(&a, "#use-link").await;
        at(&a, "/console/").await;
        assert!(text(&a, "#who").await.contains("admin"));
        // Used once: the second browser's click is refused.
        submit(&b, "#use-link").await;
        let page = body(&b).await;
        assert!(page.contains("used, expired or unknown"), "{page}");
        b.goto(&format!("{}/console/disks", s.api)).await.unwrap();
        at(&b, "/console/sign-in").await;
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
    // The spent code opens nothing.
    let code = url.split("code=").nth(1).unwrap();
    let (st, _) = http(&s, "GET", "/v1/whoami", Some(code), None);
    assert_eq!(st, 401);

    // An unspent code is no API token either, and pasted as a token into
    // the sign-in form it is spent as a link, once.
    let url2 = s.cli(&["console", "login"])["url"]
        .as_str()
        .unwrap()
        .to_string();
    let code2 = url2.split("code=").nth(1).unwrap().to_string();
    for path in ["/v1/whoami", "/v1/disks"] {
        let (st, answer) = http(&s, "GET", path, Some(&code2), None);
        assert_eq!(st, 401, "{path} took an unspent link's code: {answer}");
    }
    let (st, answer) = http(&s, "POST", "/v1/console/links", Some(&code2), None);
    assert_eq!(st, 401, "a link made a link: {answer}");
    block_on(async {
        let c = driver.browser().await;
        c.goto(&format!("{}/console/sign-in", s.api)).await.unwrap();
        fill(&c, "#token", &code2).await;
        submit(&c, "button[type=submit]").await;
        at(&c, "/console/").await;
        c.delete_all_cookies().await.unwrap();
        c.goto(&format!("{}/console/sign-in", s.api)).await.unwrap();
        fill(&c, "#token", &code2).await;
        submit(&c, "button[type=submit]").await;
        let page = body(&c).await;
        assert!(page.contains("used, expired or unknown"), "{page}");
        c.close().await.unwrap();
    });

    // Revoking a token ends the sessions signed in with it and the links
    // it made (a leaked token's sessions go with it).
    let (_, bob, bob_token) = other_tenant_owner(&s, "globex", "bob");
    let admin = s.admin_token();
    let tokens = |who: &str| {
        let (st, t) = http(
            &s,
            "GET",
            &format!("/v1/principals/{bob}/tokens"),
            Some(who),
            None,
        );
        assert_eq!(st, 200, "{t}");
        t["items"].as_array().unwrap().clone()
    };
    let bob_token_id = tokens(&admin)[0]["id"].as_str().unwrap().to_string();
    let (st, link) = http(&s, "POST", "/v1/console/links", Some(&bob_token), None);
    assert_eq!(st, 201, "{link}");
    let link = format!("{}{}", s.api, link["path"].as_str().unwrap());
    block_on(async {
        let d = driver.browser().await;
        sign_in(&d, &s.api, &bob_token).await;
        // A session signed in with a session (its token pasted) hangs off
        // the same root.
        let cookie = session_cookie(&d).await;
        let session = cookie.trim_start_matches("coffer_session=");
        let f = driver.browser().await;
        sign_in(&f, &s.api, session).await;
        let (st, answer) = http(
            &s,
            "POST",
            &format!("/v1/tokens/{bob_token_id}/revoke"),
            Some(&admin),
            None,
        );
        assert_eq!(st, 200, "{answer}");
        d.goto(&format!("{}/console/disks", s.api)).await.unwrap();
        at(&d, "/console/sign-in").await;
        f.goto(&format!("{}/console/disks", s.api)).await.unwrap();
        at(&f, "/console/sign-in").await;
        f.close().await.unwrap();
        let e = driver.browser().await;
        e.goto(&link).await.unwrap();
        let page = body(&e).await;
        assert!(page.contains("used, expired or unknown"), "{page}");
        d.close().await.unwrap();
        e.close().await.unwrap();
    });
    let all = tokens(&admin);
    assert!(
        all.len() >= 3,
        "the token, its session and its link: {all:?}"
    );
    assert!(
        all.iter().all(|t| !t["revoked_at"].is_null()),
        "every one listed as revoked: {all:?}"
    );
    s.assert_no_panic();
}

/// Images made and deleted, a snapshot's permission, exports and an
/// import, and the deployment's page, in the console.
#[test]
fn images_permissions_exports_and_the_deployment_in_the_console() {
    let s = Server::start();
    let api = s.api.clone();
    let admin = s.admin_token();
    let id = |v: &serde_json::Value, p: &str| v.pointer(p).unwrap().as_str().unwrap().to_string();
    let (bob_acct, _, bob_token) = other_tenant_owner(&s, "globex", "bob");
    let disk = s.create_disk("base", "8MiB", "local-a");
    let snap = id(
        &s.cli(&["snapshot", "create", "--disk", &disk, "--name", "base-1"]),
        "/id",
    );

    let driver = Driver::start();
    block_on(async {
        let a = driver.browser().await;
        let b = driver.browser().await;
        sign_in(&a, &api, &admin).await;
        sign_in(&b, &api, &bob_token).await;

        // An image from the snapshot, made on the images page.
        a.goto(&format!("{api}/console/images")).await.unwrap();
        shot(&a, "images-create").await;
        fill(&a, "#im-name", "golden").await;
        find(&a, "#im-root")
            .await
            .unwrap()
            .select_by_value(&snap)
            .await
            .unwrap();
        submit(&a, "#create-image").await;
        at(&a, "/console/images/img-").await;
        let image = text(&a, "#image-id").await;
        assert_eq!(s.cli(&["image", "show", &image])["name"], "golden");
        shot(&a, "image").await;

        // The snapshot's permission: Bob's account may create disks from it.
        a.goto(&format!("{api}/console/snapshots/{snap}"))
            .await
            .unwrap();
        find(&a, "#perm-none").await.expect("no account yet");
        fill(&a, "#perm-add", &bob_acct).await;
        submit(&a, "#perm-grant").await;
        assert!(text(&a, "#permission").await.contains(&bob_acct));
        shot(&a, "snapshot-permission").await;
        let (st, shared) = http(
            &s,
            "GET",
            "/v1/snapshots?shared=true",
            Some(&bob_token),
            None,
        );
        assert_eq!(st, 200, "{shared}");
        assert!(shared.to_string().contains(&snap), "{shared}");
        submit(&a, "#permission button[type=submit]").await;
        find(&a, "#perm-none").await.expect("removed");
        let (_, shared) = http(
            &s,
            "GET",
            "/v1/snapshots?shared=true",
            Some(&bob_token),
            None,
        );
        assert!(!shared.to_string().contains(&snap), "{shared}");

        // Tags: set one, see it, remove it.
        fill(&a, "#tag-key", "env").await;
        fill(&a, "#tag-value", "prod").await;
        submit(&a, "#tag-set").await;
        assert!(text(&a, "#tags").await.contains("prod"));
        assert_eq!(s.cli(&["snapshot", "show", &snap])["tags"]["env"], "prod");
        submit(&a, "#tags button[type=submit]").await;
        find(&a, "#tags-none").await.expect("the tag removed");

        // An export: its pull token shown once, then revoked.
        fill(&a, "#x-hours", "2").await;
        submit(&a, "#export").await;
        let token = text(&a, "#export-token").await;
        assert!(token.starts_with("coffer_pull_"), "{token}");
        let export = text(&a, "#export-id").await;
        assert_eq!(text(&a, "#export-state").await, "active");
        shot(&a, "export").await;
        a.goto(&format!("{api}/console/exports/{export}"))
            .await
            .unwrap();
        assert!(!body(&a).await.contains(&token), "the token is shown once");
        submit(&a, "#revoke").await;
        assert_eq!(text(&a, "#export-state").await, "revoked");
        // Bob reaches neither the export nor its revocation.
        b.goto(&format!("{api}/console/exports/{export}"))
            .await
            .unwrap();
        assert!(body(&b).await.contains("NotFound"));

        // Another export, imported back through the import form: a copy
        // job that ends with the same data.
        a.goto(&format!("{api}/console/images/{image}"))
            .await
            .unwrap();
        submit(&a, "#export").await;
        let token = text(&a, "#export-token").await;
        let export = text(&a, "#export-id").await;
        a.goto(&format!("{api}/console/exports")).await.unwrap();
        assert!(text(&a, "#exports").await.contains(&export));
        shot(&a, "exports").await;
        fill(&a, "#i-name", "golden-imported").await;
        fill(&a, "#i-endpoint", &api).await;
        fill(&a, "#i-export", &export).await;
        fill(&a, "#i-token", &token).await;
        submit(&a, "#import").await;
        at(&a, "/console/jobs/job-").await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !text(&a, "#job-progress").await.contains("100%") {
            assert!(Instant::now() < deadline, "{}", body(&a).await);
            tokio::time::sleep(Duration::from_millis(500)).await;
            a.refresh().await.unwrap();
        }

        // The image deleted after typing its name (a wrong name: kept).
        a.goto(&format!("{api}/console/images/{image}"))
            .await
            .unwrap();
        fill(&a, "#confirm", "not-golden").await;
        submit(&a, ".danger button[type=submit]").await;
        assert!(body(&a).await.contains("does not match"));
        a.goto(&format!("{api}/console/images/{image}"))
            .await
            .unwrap();
        fill(&a, "#confirm", "golden").await;
        submit(&a, ".danger button[type=submit]").await;
        assert_eq!(at(&a, "/console/images").await, "/console/images");
        s.cli_err(&["image", "show", &image]);

        // The deployment: regions for everyone; nodes and operations for
        // its Owners only.
        a.goto(&format!("{api}/console/deployment")).await.unwrap();
        assert!(text(&a, "#regions").await.contains("local-a"));
        assert!(text(&a, "#nodes").await.contains("(this node)"));
        submit(&a, "#fsck").await;
        assert!(text(&a, "#fsck-report").await.contains("Consistent"));
        submit(&a, "#gc").await;
        assert!(text(&a, "#gc-report").await.contains("Collected"));
        shot(&a, "deployment").await;
        b.goto(&format!("{api}/console/deployment")).await.unwrap();
        find(&b, "#regions").await.expect("regions for everyone");
        assert!(
            b.find(Locator::Css("#nodes")).await.is_err(),
            "no nodes for Bob"
        );
        // An unknown page: a page that says so, not the API's JSON.
        b.goto(&format!("{api}/console/no-such-page"))
            .await
            .unwrap();
        assert!(body(&b).await.contains("no such page"));

        a.close().await.unwrap();
        b.close().await.unwrap();
    });
    s.assert_no_panic();
}
