//! Grants on a key (AWS KMS grants): the active grants on the key's page,
//! a form to create one (the grantee's principal id and the operations as
//! checkboxes), and revoke (a key administrator) and retire (its grantee,
//! its retiring principal or a key administrator), each answered with the
//! grant as it ended.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::Response;
use coffer_service::ServiceError;
use coffer_types::Lifecycle;
use coffer_wire::{CreateGrant, Key, KeyGrant};
use maud::{Markup, html};

use super::filled;
use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf, when};

/// The operations a grant may allow, each with what it lets the grantee do.
const OPERATIONS: &[(&str, &str)] = &[
    ("Describe", "read the key"),
    ("Encrypt", "encrypt with it"),
    ("Decrypt", "decrypt with it"),
    ("ReEncrypt", "re-encrypt under another key"),
    ("GenerateDataKey", "make data keys under it"),
    ("WrapKey", "wrap keys"),
    ("UnwrapKey", "unwrap keys"),
    (
        "CreateGrant",
        "pass on these operations in grants of its own",
    ),
];

/// The grants section of a key's page: its active grants, each with revoke
/// and retire, and the form to create one. A caller who may read the key
/// but not manage its grants (`keys/grant`) is told so.
pub(crate) async fn section(c: &Console, s: &Session, k: &Key) -> Result<Markup, ServiceError> {
    // Asked first without a trace: listing grants the caller may not
    // manage would audit a denial at every view of the key's page.
    let allowed = super::may(c, s, "keys/grant", &k.id).await;
    let listed = if allowed {
        c.service.list_grants(&s.caller, &k.id).await
    } else {
        Err(ServiceError::new(
            coffer_service::ErrorCode::AuthorizationFailed,
            "keys/grant on the key is needed",
        ))
    };
    let grants = match listed {
        Ok(g) => g,
        Err(e) if e.status() == 403 => {
            return Ok(html! {
                section aria-labelledby="grants-h" {
                    h2 #grants-h { "Grants" }
                    p.note { "You may not see or make this key's grants (that takes keys/grant on the key)." }
                }
            });
        }
        Err(e) => return Err(e),
    };
    let active = k.state == Lifecycle::Active;
    Ok(html! {
        section aria-labelledby="grants-h" {
            h2 #grants-h { "Grants" }
            p.hint { "A grant lets one principal use this key for the operations listed, without a role, until it is retired or revoked." }
            @if grants.items.is_empty() {
                p.empty #no-grants { "No active grants." }
            } @else {
                table #grants {
                    caption.visually-hidden { "Active grants on the key" }
                    thead { tr { th scope="col" { "Grantee" } th scope="col" { "Operations" } th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Created" } th scope="col" { "State" } th scope="col" { "End it" } } }
                    tbody {
                        @for g in &grants.items {
                            tr {
                                td { code { (g.grantee_id) } }
                                td { (g.operations.join(", ")) @if let Some(ctx) = &g.context_equals { br; span.hint { "only with context " code { (ctx) } } } }
                                td { (g.name.as_deref().unwrap_or("—")) }
                                td { code { (g.id) } }
                                td { (when(&g.created_at)) }
                                td { span class={ "state " (g.state) } { (g.state) } }
                                td {
                                    div.actions {
                                        form method="post" action={ "/console/grants/" (g.id) "/retire" } {
                                            (csrf(s))
                                            button type="submit" aria-label={ "Retire grant " (g.id) } { "Retire" }
                                        }
                                        form method="post" action={ "/console/grants/" (g.id) "/revoke" } {
                                            (csrf(s))
                                            button.danger type="submit" aria-label={ "Revoke grant " (g.id) } { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p.hint { "Either ends the grant at once on every node: a disk whose set's identity reached the key only through it is cut off. Retire is what its grantee does when done; revoke is the key administrator's." }
            }
            @if active {
                h3 #create-grant-h { "Create a grant" }
                form.inline #grant-form method="post" action={ "/console/keys/" (k.id) "/grants" } {
                    (csrf(s))
                    label for="g-grantee" { "Grantee (principal id)" }
                    input #g-grantee type="text" name="grantee_id" required placeholder="prn-…" aria-describedby="g-grantee-hint";
                    label for="g-name" { "Name (optional)" }
                    input #g-name type="text" name="name" pattern="[A-Za-z0-9._-]{1,80}";
                    label for="g-retiring" { "Retiring principal (optional)" }
                    input #g-retiring type="text" name="retiring_principal_id" placeholder="prn-…";
                    label for="g-context" { "Only with encryption context (optional)" }
                    input #g-context type="text" name="context_equals";
                    fieldset {
                        legend { "Operations (at least one)" }
                        @for (op, what) in OPERATIONS {
                            div { label { input type="checkbox" name={ "op-" (op) } value="on"; " " (op) span.hint { " (" (what) ")" } } }
                        }
                    }
                    button #create-grant type="submit" { "Create grant" }
                }
                p.hint #g-grantee-hint { "A principal of this key's tenant, of any account (another tenant's only where this tenant allows it). With a context, only Describe, Encrypt, Decrypt, ReEncrypt and GenerateDataKey may be granted." }
            }
        }
    })
}

/// `POST /console/keys/{id}/grants`: the grantee, name, retiring
/// principal and context as typed, and each ticked `op-NAME`; the service
/// checks the caller first, then the rest; back to the key's grants.
pub async fn create(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    let s = &p.session;
    let f = &p.form;
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let operations = f
        .iter()
        .filter(|(_, v)| !v.is_empty() && v.as_str() != "off")
        .filter_map(|(k, _)| k.strip_prefix("op-"))
        .map(str::to_string)
        .collect();
    let req = CreateGrant {
        grantee_id: field("grantee_id").trim().to_string(),
        operations,
        name: filled(field("name")),
        retiring_principal_id: filled(field("retiring_principal_id")),
        context_equals: filled(field("context_equals")),
    };
    view::go(s, c.service.create_grant(&s.caller, &id, req).await, |g| {
        format!("/console/keys/{}#grants-h", g.key_id)
    })
}

/// `POST /console/grants/{id}/revoke`.
pub async fn revoke(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    let s = &p.session;
    match c.service.revoke_grant(&s.caller, &id).await {
        Ok(g) => view::page(s, "keys", "Grant revoked", Ok(ended(&g))),
        Err(e) => view::error_page(Some(s), &e),
    }
}

/// `POST /console/grants/{id}/retire`.
pub async fn retire(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    let s = &p.session;
    match c.service.retire_grant(&s.caller, &id).await {
        Ok(g) => view::page(s, "keys", "Grant retired", Ok(ended(&g))),
        Err(e) => view::error_page(Some(s), &e),
    }
}

/// A grant just ended (the key's page lists only active ones).
fn ended(g: &KeyGrant) -> Markup {
    html! {
        h1 { "Grant " (g.state) }
        div.alert role="status" {
            p { "Grant " code { (g.id) } " is " (g.state) ": its grantee can no longer use the key through it." }
        }
        dl.facts {
            dt { "Id" } dd { code #grant-id { (g.id) } }
            dt { "State" } dd { span #grant-state class={ "state " (g.state) } { (g.state) } }
            dt { "Key" } dd { a href={ "/console/keys/" (g.key_id) } { code { (g.key_id) } } }
            dt { "Grantee" } dd { code { (g.grantee_id) } }
            dt { "Operations" } dd { (g.operations.join(", ")) }
            @if let Some(n) = &g.name { dt { "Name" } dd { (n) } }
            @if let Some(r) = &g.retiring_principal_id { dt { "Retiring principal" } dd { code { (r) } } }
            @if let Some(ctx) = &g.context_equals { dt { "Encryption context" } dd { code { (ctx) } } }
            dt { "Created by" } dd { code { (g.created_by) } }
            dt { "Created" } dd { (when(&g.created_at)) }
        }
        p { a href={ "/console/keys/" (g.key_id) } { "Back to the key" } }
    }
}
