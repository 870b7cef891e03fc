//! Every console route, swept with plain HTTP (no browser): without a
//! session, every page sends the browser to sign in and every change is
//! refused; with the session of a user of another tenant, every page about
//! the admin's disk, snapshot, image, copy job, share or invitation
//! (or key vault, key, encryption set, secret, key grant, principal, token,
//! role assignment, account, export, permission or tags) answers NotFound
//! without naming it,
//! and every change to them is refused
//! and changes nothing. The routes come from the console's own source, so
//! a route added without a place in this sweep fails it.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;

/// One request; (status, head and body).
fn req(api: &str, method: &str, path: &str, cookie: Option<&str>, body: &str) -> (u16, String) {
    let addr = api.trim_start_matches("http://");
    let mut c = TcpStream::connect(addr).unwrap();
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(k) = cookie {
        r += &format!("Cookie: {k}\r\n");
    }
    r += &format!(
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(r.as_bytes()).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    (out[9..12].parse().unwrap(), out)
}

/// Sign in with a token; the session cookie and its CSRF token.
fn session(api: &str, token: &str) -> (String, String) {
    let (st, resp) = req(
        api,
        "POST",
        "/console/sign-in",
        None,
        &format!("token={token}&next=%2Fconsole%2F"),
    );
    assert_eq!(st, 303, "{resp}");
    let cookie = resp
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string();
    let (st, page) = req(api, "GET", "/console/", Some(&cookie), "");
    assert_eq!(st, 200);
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF token on the page")
        .to_string();
    (cookie, csrf)
}

/// The console's routes with their methods, read from its router.
fn routes() -> Vec<(String, String)> {
    let src = include_str!("../../../console/src/lib.rs");
    let mut out = Vec::new();
    for chunk in src.split(".route(").skip(1) {
        let Some(path) = chunk.split('"').nth(1) else {
            continue;
        };
        let rest = &chunk[..chunk.find(")\n").unwrap_or(chunk.len())];
        for m in ["get", "post"] {
            if rest.contains(&format!("{m}(")) || rest.contains(&format!(".{m}(")) {
                out.push((m.to_uppercase(), path.to_string()));
            }
        }
    }
    assert!(
        out.len() > 20,
        "the console's routes were not found: {out:?}"
    );
    out
}

#[test]
fn another_tenant_reaches_nothing_of_the_admins_through_any_console_route() {
    let s = Server::start();
    let api = s.api.clone();
    let id = |v: &serde_json::Value, p: &str| v.pointer(p).unwrap().as_str().unwrap().to_string();

    // Bob and Carol: Owners of accounts of two other tenants.
    let (_, _, bob) = other_tenant_owner(&s, "globex", "bob");
    let (carol_acct, _, carol) = other_tenant_owner(&s, "initech", "carol");

    // The admin's resources, one of each kind a route names.
    let disk = s.create_disk("secret-disk", "8MiB", "local-a");
    let snap = id(
        &s.cli(&[
            "snapshot",
            "create",
            "--disk",
            &disk,
            "--name",
            "secret-snap",
        ]),
        "/id",
    );
    let image = id(
        &s.cli(&[
            "image",
            "create",
            "--name",
            "secret-image",
            "--snapshot",
            &snap,
        ]),
        "/id",
    );
    s.cli(&[
        "snapshot",
        "copy",
        &snap,
        "--name",
        "secret-copy",
        "--rekey",
        "--wait",
    ]);
    let job = id(&s.cli(&["job", "list"]), "/0/id");
    let share = id(
        &s.cli(&[
            "share",
            "create",
            "--name",
            "secret-share",
            "--principal-scope",
            "any",
            "--resource",
            &snap,
            "--principal",
            &carol_acct,
        ]),
        "/id",
    );
    let vault = id(
        &s.cli(&[
            "vault",
            "create",
            "--name",
            "secret-vault",
            "--purge-protection",
            "--retention-days",
            "7",
        ]),
        "/id",
    );
    let key = id(
        &s.cli(&["key", "create", "--vault", &vault, "--name", "secret-key"]),
        "/id",
    );
    let set = id(
        &s.cli(&[
            "encryption-set",
            "create",
            "--name",
            "secret-set",
            "--key",
            &key,
        ]),
        "/id",
    );
    // A secret in the vault, and a grant on the key (to a principal of
    // another account of the admin's tenant).
    let secret = id(
        &s.cli(&[
            "secret",
            "set",
            "--vault",
            &vault,
            "--name",
            "secret-pw",
            "--value",
            "hunter2",
        ]),
        "/id",
    );
    let other_acct = id(&s.cli(&["account", "create", "--name", "partner"]), "/id");
    let grantee = id(
        &s.cli(&[
            "principal",
            "create",
            "--name",
            "grantee",
            "--account",
            &other_acct,
        ]),
        "/id",
    );
    let grant = id(
        &s.cli(&[
            "key",
            "grant",
            "create",
            &key,
            "--grantee",
            &grantee,
            "--operations",
            "Describe",
            "--name",
            "secret-grant",
        ]),
        "/id",
    );
    let (st, invitations) = http(&s, "GET", "/v1/invitations", Some(&carol), None);
    assert_eq!(st, 200, "{invitations}");
    let invitation = id(&invitations, "/items/0/id");
    // A principal of the admin's account with a role and a token, and an
    // account in a folder.
    let my_account = id(&s.cli(&["whoami"]), "/account_id");
    let made = s.cli(&[
        "principal",
        "create",
        "--name",
        "secret-principal",
        "--role",
        "Reader",
        "--scope",
        &my_account,
    ]);
    let principal = id(&made, "/principal/id");
    let assignment = id(&made, "/role_assignment/id");
    let token = s.cli(&[
        "token",
        "create",
        "--principal",
        &principal,
        "--expires-in",
        "1d",
    ]);
    let (token_id, token_secret) = (id(&token, "/id"), id(&token, "/secret"));
    let folder = id(
        &s.cli(&["folder", "create", "--name", "secret-folder"]),
        "/id",
    );
    let account = id(
        &s.cli(&[
            "account",
            "create",
            "--name",
            "secret-account",
            "--folder",
            &folder,
        ]),
        "/id",
    );

    let export = id(&s.cli(&["export", "create", "--snapshot", &snap]), "/id");
    let id_for = |path: &str| -> Option<&str> {
        let kind = path.split('/').nth(2)?;
        Some(match kind {
            "disks" => &disk,
            "snapshots" => &snap,
            "images" => &image,
            "jobs" => &job,
            "shares" => &share,
            "invitations" => &invitation,
            "vaults" => &vault,
            "keys" => &key,
            "encryption-sets" => &set,
            "principals" => &principal,
            "tokens" => &token_id,
            "role-assignments" => &assignment,
            "accounts" => &account,
            "exports" => &export,
            "permissions" => &snap,
            "tags" => &disk,
            "secrets" => &secret,
            "grants" => &grant,
            _ => return None,
        })
    };
    let names = [
        "secret-disk",
        "secret-snap",
        "secret-image",
        "secret-share",
        "secret-vault",
        "secret-key",
        "secret-set",
        "secret-principal",
        "secret-folder",
        "secret-account",
        "secret-pw",
        "secret-grant",
    ];

    // A body larger than any console form is refused before sign-in.
    let big = format!("token={}", "a".repeat(70 * 1024));
    let (st, resp) = req(&api, "POST", "/console/sign-in", None, &big);
    assert_eq!(st, 413, "{resp}");

    // A size that is no size: 400, saying what to type; no disk made.
    let (admin_cookie, admin_csrf) = session(&api, &s.admin_token());
    let (st, resp) = req(
        &api,
        "POST",
        "/console/disks",
        Some(&admin_cookie),
        &format!("csrf={admin_csrf}&name=sized&zone=local-a&size=lots"),
    );
    assert!(
        st == 400 && resp.contains("InvalidSize") && resp.contains("10GiB"),
        "{resp}"
    );

    let (cookie, csrf) = session(&api, &bob);
    let open = [
        "/",
        "/console",
        "/console/sign-in",
        "/console/assets/console.css",
        "/console/assets/console.js",
    ];
    let mut swept = 0;
    for (method, route) in routes() {
        let path = match id_for(&route) {
            Some(id) if route.contains("{id}") => route.replace("{id}", id),
            None if route.contains("{id}") => {
                panic!("{method} {route}: the sweep has no resource for this route's id: add one")
            }
            _ => route.clone(),
        };
        // No session: sign in first (pages and changes alike).
        if !open.contains(&route.as_str()) {
            let (st, resp) = req(&api, &method, &path, None, "csrf=x");
            assert!(
                st == 303 && resp.contains("location: /console/sign-in"),
                "{method} {path} without a session: {st}\n{resp}"
            );
        }
        if !route.contains("{id}") {
            continue;
        }
        // Bob's session, with a valid CSRF token and every field a form has.
        let body = format!(
            "csrf={csrf}&name=x&zone=local-a&size=16MiB&confirm=secret-disk&disk_id={disk}\
             &expires_in=1h&add_resources={snap}&add_principals={carol_acct}&remove_principals={carol_acct}"
        );
        let (st, resp) = req(&api, &method, &path, Some(&cookie), &body);
        assert!(
            st == 404 || st == 403,
            "{method} {path} as another tenant's user: {st}\n{resp}"
        );
        for n in names {
            assert!(
                !resp.contains(n),
                "{method} {path} named {n} to another tenant:\n{resp}"
            );
        }
        swept += 1;
    }
    eprintln!("swept {swept} routes with ids");
    assert!(swept >= 15, "only {swept} routes with ids swept");

    // Nothing changed: the disk is there, detached; the snapshot, image
    // and share too; the invitation still pending.
    assert_eq!(s.cli(&["disk", "show", &disk])["state"], "available");
    let k = s.cli(&["key", "show", &key]);
    assert_eq!(k["enabled"], "enabled", "{k}");
    assert_eq!(k["current_version"], 1, "{k}");
    let sec = s.cli(&["secret", "show", &secret]);
    assert_eq!(sec["state"], "active", "{sec}");
    assert_eq!(sec["current_version"], 1, "{sec}");
    assert_eq!(s.cli(&["vault", "show", &vault])["state"], "active");
    let grants = s.cli(&["key", "grant", "list", &key]);
    assert_eq!(grants.pointer("/0/id").unwrap(), grant.as_str(), "{grants}");
    s.cli(&["snapshot", "show", &snap]);
    s.cli(&["image", "show", &image]);
    let (st, inv) = http(&s, "GET", "/v1/invitations", Some(&carol), None);
    assert_eq!(st, 200);
    assert_eq!(inv.pointer("/items/0/status").unwrap(), "pending");
    let sh = s.cli(&["share", "show", &share]);
    assert_eq!(sh["principals"].as_array().unwrap().len(), 1, "{sh}");
    // The principal is there with its role, and its token still works;
    // the account is still in its folder.
    s.cli(&["principal", "show", &principal]);
    let (st, ras) = http(
        &s,
        "GET",
        &format!("/v1/role-assignments?principal={principal}"),
        Some(&s.admin_token()),
        None,
    );
    assert_eq!(st, 200, "{ras}");
    assert_eq!(id(&ras, "/items/0/id"), assignment, "{ras}");
    let (st, me) = http(&s, "GET", "/v1/whoami", Some(&token_secret), None);
    assert_eq!(st, 200, "the token was revoked: {me}");
    let (st, tokens) = http(
        &s,
        "GET",
        &format!("/v1/principals/{principal}/tokens"),
        Some(&s.admin_token()),
        None,
    );
    assert_eq!(st, 200, "{tokens}");
    assert_eq!(
        tokens["items"].as_array().unwrap().len(),
        1,
        "a token was made: {tokens}"
    );
    assert_eq!(
        s.cli(&["account", "show", &account])["folder_id"],
        folder.as_str()
    );
    s.assert_no_panic();
}
