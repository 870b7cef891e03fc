//! The web console: HTML pages served by `coffer serve` under `/console/`,
//! for the people who would rather look than type (SPEC.md §6).
//!
//! It owns browser sessions ([`session`]), the pages and their forms
//! ([`pages`]), the layout and the few static assets. It is a client of the
//! service as the HTTP API is: every page and every action calls the same
//! service method the API route calls, with the session's caller, so it is
//! authorized exactly as the API is, deny by default, and a principal sees
//! only what the API would show it. No rule lives here.
//!
//! Pages are rendered on the server (maud templates, escaped by
//! construction) and work without JavaScript: a form posts, the server acts
//! and redirects (or, for a one-time secret such as an attach URI, answers
//! the page that shows it, never cached). Nothing is built outside
//! `cargo build`; the stylesheet and the one small script (a copy job's
//! live progress) are compiled into the binary.

pub mod pages;
pub mod session;
mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use coffer_service::Service;

/// The console's state: the service, and whether it is served over TLS
/// (cookies are then `Secure`, with the `__Host-` prefix).
#[derive(Clone)]
pub struct Console {
    /// The service every page calls.
    pub service: Arc<Service>,
    /// Served over TLS.
    pub secure: bool,
}

/// The most a console request's body may hold: its forms are small.
pub const MAX_BODY: usize = 64 * 1024;

/// The console's routes: `/` (a redirect) and everything under `/console/`.
/// Merge it with the API's router; it has no fallback of its own. A
/// request's body must arrive whole within `body_timeout` (the API's),
/// and hold at most [`MAX_BODY`] bytes.
pub fn router(service: Arc<Service>, secure: bool, body_timeout: Duration) -> Router {
    use pages::{
        access, audit, deployment, disks, exports, images, jobs, keys, org, overview, permissions,
        principals, snapshots, tags, usage,
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(overview::show))
        .route("/console/accounts/{id}/usage", get(usage::show))
        .route(
            "/console/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/console/sign-out", post(session::sign_out))
        .route("/console/assets/console.css", get(stylesheet))
        .route("/console/assets/console.js", get(script))
        // Any other path under /console/: a page, not the API's JSON.
        .route("/console/{*rest}", any(not_found))
        .route("/console/jobs", get(jobs::list))
        .route("/console/jobs/{id}", get(jobs::show))
        .route("/console/jobs/{id}/progress", get(jobs::progress_json))
        .route("/console/jobs/{id}/cancel", post(jobs::cancel))
        .route("/console/images", get(images::list).post(images::create))
        .route("/console/images/{id}", get(images::show))
        .route("/console/images/{id}/launch", post(images::launch))
        .route("/console/images/{id}/copy", post(images::copy))
        .route("/console/vaults", get(keys::vaults))
        .route("/console/vaults/{id}", get(keys::vault))
        .route("/console/keys/{id}", get(keys::key))
        .route("/console/keys/{id}/rotate", post(keys::rotate))
        .route("/console/keys/{id}/disable", post(keys::disable))
        .route("/console/keys/{id}/enable", post(keys::enable))
        .route("/console/encryption-sets", get(keys::encryption_sets))
        .route("/console/encryption-sets/{id}", get(keys::encryption_set))
        // Key vault changes, secrets and grants.
        .route("/console/vaults", post(keys::create_vault))
        .route("/console/vaults/{id}/delete", post(keys::delete_vault))
        .route("/console/vaults/{id}/recover", post(keys::recover_vault))
        .route("/console/vaults/{id}/purge", post(keys::purge_vault))
        .route("/console/vaults/{id}/keys", post(keys::create_key))
        .route("/console/keys/{id}/delete", post(keys::delete_key))
        .route("/console/keys/{id}/recover", post(keys::recover_key))
        .route("/console/keys/{id}/purge", post(keys::purge_key))
        .route(
            "/console/encryption-sets",
            post(keys::create_encryption_set),
        )
        .route("/console/vaults/{id}/secrets", post(pages::secrets::set))
        .route("/console/secrets/{id}", get(pages::secrets::show))
        .route("/console/secrets/{id}/value", post(pages::secrets::value))
        .route("/console/secrets/{id}/delete", post(pages::secrets::delete))
        .route(
            "/console/secrets/{id}/recover",
            post(pages::secrets::recover),
        )
        .route("/console/secrets/{id}/purge", post(pages::secrets::purge))
        .route("/console/keys/{id}/grants", post(pages::grants::create))
        .route("/console/grants/{id}/revoke", post(pages::grants::revoke))
        .route("/console/grants/{id}/retire", post(pages::grants::retire))
        .route("/console/snapshots/{id}/copy", post(snapshots::copy))
        .route(
            "/console/snapshots/{id}/export",
            post(exports::export_snapshot),
        )
        .route("/console/images/{id}/export", post(exports::export_image))
        .route("/console/images/{id}/delete", post(images::delete))
        .route("/console/permissions/{id}", post(permissions::update))
        .route("/console/tags/{id}", post(tags::update))
        .route("/console/exports", get(exports::list))
        .route("/console/exports/{id}", get(exports::show))
        .route("/console/exports/{id}/revoke", post(exports::revoke))
        .route("/console/imports", post(exports::import))
        .route("/console/deployment", get(deployment::show))
        .route("/console/deployment/fsck", post(deployment::fsck))
        .route("/console/deployment/gc", post(deployment::gc))
        .route("/console/disks", get(disks::list).post(disks::create))
        .route("/console/disks/{id}", get(disks::show))
        .route("/console/disks/{id}/attach", post(disks::attach))
        .route("/console/disks/{id}/detach", post(disks::detach))
        .route("/console/disks/{id}/resize", post(disks::resize))
        .route("/console/disks/{id}/delete", post(disks::delete))
        .route(
            "/console/snapshots",
            get(snapshots::list).post(snapshots::create),
        )
        .route("/console/snapshots/{id}", get(snapshots::show))
        .route("/console/snapshots/{id}/restore", post(snapshots::restore))
        .route("/console/snapshots/{id}/delete", post(snapshots::delete))
        .route("/console/shares", get(access::shares))
        .route("/console/shares/{id}", get(access::share))
        .route("/console/invitations/{id}/accept", post(access::accept))
        .route("/console/invitations/{id}/reject", post(access::reject))
        .route("/console/access", get(access::access))
        .route("/console/audit", get(audit::list))
        .route("/console/audit/verify", post(audit::verify))
        .route("/console/org", get(org::tree))
        // Identity, organisation and share changes.
        .route(
            "/console/principals",
            get(principals::list).post(principals::create),
        )
        .route("/console/principals/{id}", get(principals::show))
        .route(
            "/console/principals/{id}/tokens",
            post(principals::create_token),
        )
        .route("/console/principals/{id}/delete", post(principals::delete))
        .route("/console/tokens/{id}/revoke", post(principals::revoke))
        .route("/console/role-assignments", post(access::create_assignment))
        .route(
            "/console/role-assignments/{id}/delete",
            post(access::delete_assignment),
        )
        .route("/console/tenants", post(org::create_tenant))
        .route("/console/folders", post(org::create_folder))
        .route("/console/accounts", post(org::create_account))
        .route("/console/accounts/{id}/move", post(org::move_account))
        .route("/console/shares", post(access::create_share))
        .route("/console/shares/{id}/update", post(access::update_share))
        .route("/console/shares/{id}/delete", post(access::delete_share))
        .layer(axum::middleware::map_response(harden))
        .layer(axum::middleware::from_fn(move |req, next| {
            read_body(req, next, body_timeout)
        }))
        .with_state(Console { service, secure })
}

/// Headers on every console answer: never cached (pages show secrets once
/// and what a principal may see), never framed, scripts and styles only
/// from the console itself, and no Referer to another site (a page's URL
/// names resources). `same-origin`, not `no-referrer`: under the latter a
/// browser sends `Origin: null` with the console's own forms, which the
/// cross-site check must then refuse.
async fn harden(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    resp
}

/// Read a request's body within `timeout` and [`MAX_BODY`] before any
/// handler runs: a client that trickles a body (even to the sign-in form,
/// before any authentication) holds its connection for `timeout` at most.
async fn read_body(req: Request, next: Next, timeout: Duration) -> Response {
    let (parts, body) = req.into_parts();
    let refuse = |status: StatusCode, why: &'static str| {
        let mut r = (status, why).into_response();
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    };
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY)).await {
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                "the request's body did not arrive in time",
            );
        }
        Ok(Err(_)) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "a console form is never this large",
            );
        }
        Ok(Ok(b)) => b,
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The one script (a copy job's live progress), compiled in.
/// Any other path under `/console/`.
async fn not_found() -> Response {
    view::refusal(
        None,
        StatusCode::NOT_FOUND,
        "NotFound",
        "There is no such page in the console: start again from the overview, /console/.",
    )
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../assets/console.js"),
    )
        .into_response()
}

/// The stylesheet, compiled in.
async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../assets/console.css"),
    )
        .into_response()
}
