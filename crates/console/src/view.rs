//! The page layout, error pages, and small pieces every page uses.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use coffer_service::ServiceError;
use maud::{DOCTYPE, Markup, html};

use crate::session::Session;

/// What the layout needs to know of a page.
pub struct Page<'a> {
    /// The page's title (also the window's).
    pub title: &'a str,
    /// The signed-in browser, if any: the navigation and sign-out show.
    pub session: Option<&'a Session>,
    /// Which navigation entry is this page's (`disks`, ...).
    pub nav: &'a str,
}

/// The navigation: (key, path, label).
const NAV: &[(&str, &str, &str)] = &[
    ("overview", "/console/", "Overview"),
    ("disks", "/console/disks", "Disks"),
    ("snapshots", "/console/snapshots", "Snapshots"),
    ("images", "/console/images", "Images"),
    ("jobs", "/console/jobs", "Copy jobs"),
    ("exports", "/console/exports", "Exports"),
    ("keys", "/console/vaults", "Keys"),
    ("shares", "/console/shares", "Shares"),
    ("access", "/console/access", "Access"),
    ("audit", "/console/audit", "Audit"),
    ("org", "/console/org", "Organisation"),
    ("deployment", "/console/deployment", "Deployment"),
];

/// A whole HTML page around `body`.
pub fn layout(page: Page<'_>, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (page.title) " · Coffer" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console/" { "Coffer" }
                    @if let Some(s) = page.session {
                        nav aria-label="Main" {
                            ul {
                                @for (key, path, label) in NAV {
                                    li {
                                        @if *key == page.nav {
                                            a href=(path) aria-current="page" { (label) }
                                        } @else {
                                            a href=(path) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            span #who { (s.caller.principal.name) }
                            form method="post" action="/console/sign-out" {
                                (csrf(s))
                                button.link #sign-out type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    };
    Html(markup.into_string())
}

/// The hidden CSRF field of a session's forms.
pub fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

/// A page saying what was refused and why, with the status.
pub fn refusal(session: Option<&Session>, status: StatusCode, title: &str, why: &str) -> Response {
    let body = html! {
        h1 { (title) }
        div.alert role="alert" { p { (why) } }
        p { a href="/console/" { "Back to the overview" } }
    };
    (
        status,
        layout(
            Page {
                title,
                session,
                nav: "",
            },
            body,
        ),
    )
        .into_response()
}

/// A service error as a page: its code as the title, its message (which
/// says what to do next), and the API's status for the code.
pub fn error_page(session: Option<&Session>, e: &ServiceError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match &e.forward_to {
        // A disk another node of the deployment holds: the API forwards
        // such a request there; the console sends the person (the change
        // is not made here).
        Some(node) => refusal(
            session,
            status,
            "Held by another node",
            &format!(
                "This disk is open on another node of the deployment. Make this change from that node's console, {}/console/ (sign in there), or with the CLI or API, which forward it.",
                node.trim_end_matches('/')
            ),
        ),
        None => refusal(session, status, &format!("{:?}", e.code), &e.message),
    }
}

/// The resource `looked_up` when `typed` is its name (`name_of`), else
/// the page to answer: the service's refusal to look it up, or the
/// refusal of [`unless_named`] (`refusal`: its title, and what the change
/// would have done).
pub fn named<T>(
    s: &Session,
    looked_up: Result<T, ServiceError>,
    name_of: impl Fn(&T) -> &str,
    typed: &str,
    (title, action): (&str, &str),
) -> Result<T, Box<Response>> {
    let v = looked_up.map_err(|e| Box::new(error_page(Some(s), &e)))?;
    match unless_named(s, typed, name_of(&v), title, action) {
        Some(refused) => Err(Box::new(refused)),
        None => Ok(v),
    }
}

/// A form that posts to `action` only with the resource's name typed
/// into its field `field` (labelled `label`; the handler checks it with
/// [`unless_named`]), its danger button `button` (with the id `button_id`).
pub fn confirm_by_name(
    s: &Session,
    action: &str,
    field: &str,
    label: &str,
    button_id: Option<&str>,
    button: &str,
) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(s))
            label for=(field) { (label) }
            input id=(field) type="text" name="confirm" required autocomplete="off";
            @if let Some(b) = button_id {
                button.danger id=(b) type="submit" { (button) }
            } @else {
                button.danger type="submit" { (button) }
            }
        }
    }
}

/// After a change: on to the page `to` names for its result, or the
/// service's refusal as a page.
pub fn go<T>(s: &Session, r: Result<T, ServiceError>, to: impl FnOnce(T) -> String) -> Response {
    match r {
        Ok(v) => axum::response::Redirect::to(&to(v)).into_response(),
        Err(e) => error_page(Some(s), &e),
    }
}

/// A refusal (`title`) unless the name typed to confirm a change that
/// cannot be undone lightly is the resource's; `action` says what, e.g.
/// "delete this disk".
pub fn unless_named(
    s: &Session,
    typed: &str,
    name: &str,
    title: &str,
    action: &str,
) -> Option<Response> {
    (typed.trim() != name).then(|| {
        refusal(
            Some(s),
            StatusCode::BAD_REQUEST,
            title,
            &format!("The name typed does not match: type {name} exactly to {action}."),
        )
    })
}

/// A size typed into a form (`None` when left empty), or the refusal
/// page; `hint` says what to type instead.
pub fn size_field(
    s: &Session,
    typed: &str,
    hint: &str,
) -> Result<Option<coffer_types::ByteSize>, Box<Response>> {
    let typed = typed.trim();
    if typed.is_empty() {
        return Ok(None);
    }
    typed.parse().map(Some).map_err(|e| {
        Box::new(refusal(
            Some(s),
            StatusCode::BAD_REQUEST,
            "InvalidSize",
            &format!("{e}: {hint}"),
        ))
    })
}

/// A page of a signed-in session, or its error page.
pub fn page(s: &Session, nav: &str, title: &str, body: Result<Markup, ServiceError>) -> Response {
    match body {
        Ok(body) => layout(
            Page {
                title,
                session: Some(s),
                nav,
            },
            body,
        )
        .into_response(),
        Err(e) => error_page(Some(s), &e),
    }
}

/// An RFC 3339 time as people read it: `2026-12-06 14:38 UTC`.
pub fn when(t: &str) -> String {
    match (t.get(..10), t.get(11..16)) {
        (Some(d), Some(hm)) => format!("{d} {hm} UTC"),
        _ => t.to_string(),
    }
}
