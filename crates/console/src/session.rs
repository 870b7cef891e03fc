//! Browser sessions, and the checks every request of a signed-in browser
//! passes.
//!
//! - **Signing in** takes a token the person holds (pasted into the form)
//!   and mints a *session*: a new token of the same principal, named
//!   `console-session`, that expires after 8 hours or with the token signed
//!   in with, whichever is sooner (`Service::start_session`). The browser
//!   keeps only that, in a cookie that is `HttpOnly` (no script reads it),
//!   `SameSite=Strict` (no other site's page sends it), `Path=/` and, under
//!   TLS, `Secure` with the `__Host-` prefix. The token signed in with is
//!   never stored by the browser nor by Coffer.
//! - **Every page** authenticates the cookie as the API authenticates a
//!   bearer token, so a revoked or expired session is signed out at once.
//! - **Every change** (a POST) must carry the session's CSRF token in its
//!   form, and must not come from another origin: an `Origin` header, when
//!   sent, must be this console's, and `Sec-Fetch-Site`, when sent, must
//!   be `same-origin`. The CSRF token is SHA-256 over a label and the
//!   session token: only a page of this origin, rendered for this session,
//!   has it, and it needs no storage on any node.
//! - **A sign-in link** (`coffer console login`) carries the code of a
//!   token that lasts 5 minutes and opens one session: the link's page
//!   names whose link it is (looked up, not spent: a link someone else sent
//!   would sign the reader in as its maker) and posts the code (a GET
//!   spends nothing, so a link previewer cannot), and
//!   signing in with it revokes it first, atomically, then mints the
//!   session (never past the expiry of the token that made the link).
//! - **Signing out** revokes the session's token (`Service::end_session`)
//!   and clears the cookie.

use std::collections::HashMap;

use axum::extract::{Form, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use coffer_service::Caller;
use maud::html;
use serde::Deserialize;
use serde::de::value::MapDeserializer;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::Console;
use crate::view::{self, Page};

/// The cookie's name: `__Host-` prefixed under TLS (the browser then
/// refuses it unless Secure, for this host, at `/`).
fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-coffer_session"
    } else {
        "coffer_session"
    }
}

/// A signed-in browser.
pub struct Session {
    /// Who, as the service sees it.
    pub caller: Caller,
    /// The CSRF token of this session, for the forms of its pages.
    pub csrf: String,
}

/// The CSRF token of a session token.
fn csrf_of(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"coffer-console-csrf\0");
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The session token in the request's cookies.
fn session_token(headers: &HeaderMap, secure: bool) -> Option<Zeroizing<String>> {
    let name = cookie_name(secure);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| Zeroizing::new(v.to_string()))
}

/// Whether a change comes from this console's own pages (as far as the
/// browser says): refuses another origin and cross-site fetches.
fn same_origin(headers: &HeaderMap, secure: bool) -> bool {
    let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site")
        && site != "same-origin"
    {
        return false;
    }
    match get("origin") {
        None => true,
        Some(origin) => {
            let scheme = if secure { "https" } else { "http" };
            get("host").is_some_and(|host| origin == format!("{scheme}://{host}"))
        }
    }
}

/// Where a refused page sends the browser: the sign-in page, which comes
/// back here after.
fn to_sign_in(parts: &Parts) -> Response {
    // Back to the page asked for; after a change (a POST), to the overview:
    // the change's route has no page of its own.
    let back = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| parts.method == axum::http::Method::GET && safe_next(p))
        .unwrap_or("/console/");
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", back)
        .finish();
    Redirect::to(&format!("/console/sign-in?{q}")).into_response()
}

/// A path the sign-in page may send the browser to afterwards: one of
/// the console's own, never another site's.
fn safe_next(p: &str) -> bool {
    p.starts_with("/console/")
        && p.bytes().all(|b| (0x21..0x7f).contains(&b))
        && !p.contains("//")
        && !p.contains('\\')
        && !p.contains("/.")
}

impl FromRequestParts<Console> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<Self, Self::Rejection> {
        let Some(token) = session_token(&parts.headers, c.secure) else {
            return Err(to_sign_in(parts));
        };
        match c.service.authenticate(&token).await {
            Ok(caller) => Ok(Self {
                caller,
                csrf: csrf_of(&token),
            }),
            Err(e) if e.status() == 401 => Err(to_sign_in(parts)),
            Err(e) => Err(view::error_page(None, &e)),
        }
    }
}

/// A change posted by a signed-in browser: the session, checked against
/// cross-site requests (see the module docs), and the form's other fields.
pub struct Posted<T> {
    /// The session.
    pub session: Session,
    /// The form, without its CSRF field.
    pub form: T,
}

impl<T: serde::de::DeserializeOwned> FromRequest<Console> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, c: &Console) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, c).await?;
        let refused = |why: &str| {
            view::refusal(
                Some(&session),
                StatusCode::FORBIDDEN,
                "Refused: not from this console",
                why,
            )
        };
        if !same_origin(&parts.headers, c.secure) {
            return Err(refused(
                "This change was sent from another site. Make it from the console's own page.",
            ));
        }
        let req = Request::from_parts(parts, body);
        let Form(mut fields): Form<HashMap<String, String>> =
            Form::from_request(req, c).await.map_err(|e| {
                view::refusal(
                    Some(&session),
                    StatusCode::BAD_REQUEST,
                    "Not a form",
                    &e.body_text(),
                )
            })?;
        let csrf = fields.remove("csrf").unwrap_or_default();
        if !same(&csrf, &session.csrf) {
            return Err(refused(
                "This form is not one this session's pages sent (it may be from before you signed in again). Reload the page and try again.",
            ));
        }
        let form = T::deserialize(MapDeserializer::<_, serde::de::value::Error>::new(
            fields.into_iter(),
        ))
        .map_err(|e| {
            view::refusal(
                Some(&session),
                StatusCode::BAD_REQUEST,
                "Incomplete form",
                &e.to_string(),
            )
        })?;
        Ok(Self { session, form })
    }
}

/// The sign-in page's query.
#[derive(Deserialize, Default)]
pub struct SignInQuery {
    /// Where to go after signing in.
    #[serde(default)]
    next: String,
    /// Set after signing out.
    #[serde(default, rename = "signed-out")]
    signed_out: String,
    /// A one-time sign-in link's code (`coffer console login`).
    #[serde(default)]
    code: String,
}

/// `GET /console/sign-in`.
pub async fn sign_in_page(State(c): State<Console>, Query(q): Query<SignInQuery>) -> Response {
    if !q.code.is_empty() {
        // Whose link it is, looked up without spending it: someone could
        // send a link of their own, to have the reader work as them.
        let whose = match c.service.authenticate_link(&q.code).await {
            Ok(caller) => c.service.whoami(&caller).await.ok(),
            Err(_) => None,
        };
        return link_form(&q.code, whose.as_ref());
    }
    sign_in_form(
        &q.next,
        (!q.signed_out.is_empty()).then_some("You are signed out."),
        StatusCode::OK,
    )
}

/// The page a sign-in link opens: one button that posts its code. (Not
/// signed in on the GET itself: a link previewer or prefetcher must not
/// spend the link.)
fn link_form(code: &str, whose: Option<&coffer_wire::WhoAmI>) -> Response {
    let body = html! {
        section.signin aria-labelledby="signin-h" {
            h1 #signin-h { "Sign in to Coffer" }
            p { "You opened a sign-in link from " code { "coffer console login" } ". It works once, for 5 minutes." }
            @match whose {
                Some(w) => {
                    p #link-whose { "It signs you in as " strong { (w.name) } " (" code { (w.principal_id) } "), account "
                        strong { (w.account_name) } " of tenant " strong { (w.tenant_name) }
                        ". Use it only if that is you: what you do in the console, you do as them." }
                }
                None => {
                    p.note role="status" { "This link is used, expired or unknown: run " code { "coffer console login" } " for a new one." }
                }
            }
            form method="post" action="/console/sign-in" {
                input type="hidden" name="code" value=(code);
                button #use-link type="submit" { "Sign in" }
            }
        }
    };
    view::layout(
        Page {
            title: "Sign in",
            session: None,
            nav: "",
        },
        body,
    )
    .into_response()
}

fn sign_in_form(next: &str, note: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        section.signin aria-labelledby="signin-h" {
            h1 #signin-h { "Sign in to Coffer" }
            @if let Some(n) = note {
                p.note role="status" { (n) }
            }
            form method="post" action="/console/sign-in" {
                input type="hidden" name="next" value=(next);
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="off" required autofocus;
                p.hint {
                    "Paste a token of yours, such as the one "
                    code { "coffer serve" }
                    " printed at its first start, or one from "
                    code { "coffer token create" }
                    ". The console keeps only a session that ends after 8 hours or when you sign out; the token itself is not stored."
                }
                button type="submit" { "Sign in" }
            }
        }
    };
    (
        status,
        view::layout(
            Page {
                title: "Sign in",
                session: None,
                nav: "",
            },
            body,
        ),
    )
        .into_response()
}

/// The sign-in form's fields: a token, or a sign-in link's code.
#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: String,
}

/// `POST /console/sign-in`: check the token, start a session, set its
/// cookie, and go where the browser was going.
pub async fn sign_in(
    State(c): State<Console>,
    headers: HeaderMap,
    Form(f): Form<SignInForm>,
) -> Response {
    // A link's code is a link's whichever field it came in: it is spent,
    // never taken as a token.
    let token = Zeroizing::new(if f.token.is_empty() { f.code } else { f.token });
    let by_link = token
        .trim()
        .starts_with(coffer_service::SIGN_IN_LINK_PREFIX);
    let next = if safe_next(&f.next) {
        f.next.as_str()
    } else {
        "/console/"
    };
    if !same_origin(&headers, c.secure) {
        return view::refusal(
            None,
            StatusCode::FORBIDDEN,
            "Refused: not from this console",
            "Sign in from the console's own page.",
        );
    }
    let authenticated = if by_link {
        c.service.authenticate_link(token.trim()).await
    } else {
        c.service.authenticate(token.trim()).await
    };
    let caller = match authenticated {
        Ok(caller) => caller,
        Err(e) if e.status() == 401 => {
            let why = if by_link {
                "That sign-in link is used, expired or unknown: links work once, for 5 minutes. Run `coffer console login` for a new one, or paste a token."
            } else {
                "That token is unknown, expired or revoked. Check that you pasted it whole, or ask an Owner for a new one."
            };
            return sign_in_form(next, Some(why), StatusCode::UNAUTHORIZED);
        }
        Err(e) => return view::error_page(None, &e),
    };
    // A session this browser already has ends here: signing in again
    // leaves no second session alive (nor one planted by another site).
    if let Some(old) = session_token(&headers, c.secure)
        && let Ok(old) = c.service.authenticate(&old).await
    {
        let _ = c.service.end_session(&old).await;
    }
    let started = if by_link {
        c.service.start_session_from_link(&caller).await
    } else {
        c.service.start_session(&caller).await
    };
    let session = match started {
        Ok(s) => s,
        Err(e) if e.status() == 401 => {
            return sign_in_form(next, Some(&e.message), StatusCode::UNAUTHORIZED);
        }
        Err(e) => return view::error_page(None, &e),
    };
    let max_age = coffer_service::SESSION_LIFETIME.as_secs();
    with_cookie(
        Redirect::to(next).into_response(),
        c.secure,
        session.secret.as_str(),
        max_age,
    )
}

/// `resp` setting the session cookie to `value` for `max_age` seconds (0
/// with an empty value: cleared).
fn with_cookie(mut resp: Response, secure: bool, value: &str, max_age: u64) -> Response {
    let cookie = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        cookie_name(secure),
        if secure { "; Secure" } else { "" }
    );
    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /console/sign-out`: revoke the session and clear its cookie.
pub async fn sign_out(State(c): State<Console>, p: Posted<HashMap<String, String>>) -> Response {
    if let Err(e) = c.service.end_session(&p.session.caller).await {
        return view::error_page(Some(&p.session), &e);
    }
    with_cookie(
        Redirect::to("/console/sign-in?signed-out=1").into_response(),
        c.secure,
        "",
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_consoles_own_paths_are_followed_after_sign_in() {
        assert!(safe_next("/console/disks?zone=a"));
        assert!(!safe_next("//evil.example/console/"));
        assert!(!safe_next("/console//evil.example"));
        assert!(!safe_next("https://evil.example/"));
        assert!(!safe_next("/v1/disks"));
        assert!(!safe_next("/console/\\evil"));
        assert!(!safe_next("/console/\nSet-Cookie: x=y"));
        assert!(!safe_next("/console/a b"));
        assert!(!safe_next("/console/../v1/disks"));
        assert!(!safe_next("/console/é"));
    }

    #[test]
    fn cross_site_changes_are_refused() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        assert!(same_origin(&h(&[("host", "127.0.0.1:8080")]), false));
        assert!(same_origin(
            &h(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080")
            ]),
            false
        ));
        assert!(!same_origin(
            &h(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080")
            ]),
            true
        ));
        assert!(!same_origin(
            &h(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example")
            ]),
            false
        ));
        assert!(!same_origin(
            &h(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            false
        ));
        assert!(!same_origin(&h(&[("sec-fetch-site", "cross-site")]), false));
        assert!(!same_origin(&h(&[("sec-fetch-site", "same-site")]), false));
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_compare_exactly() {
        let a = csrf_of("coffer_a");
        assert_eq!(a.len(), 32);
        assert_ne!(a, csrf_of("coffer_b"));
        assert!(same(&a, &csrf_of("coffer_a")));
        assert!(!same(&a, &a[..31]));
        assert!(!same(&a, ""));
    }
}
