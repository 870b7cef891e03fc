//! Access: resource shares (mine and shared with me), invitations to
//! accept or reject, the caller's role assignments, and a form over
//! `iam explain` (why a principal may or may not do an action on a
//! resource).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use coffer_service::ServiceError;
use coffer_wire::{ExplainRequest, ListParams, Share};
use maud::{Markup, html};
use serde::Deserialize;

use super::{filled, first_page};
use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf, when};

/// A table of shares; `own`: the caller's account's (linked to their
/// pages), else shares with the caller (their resources listed instead:
/// a share's page is its owner's).
fn share_table(shares: &[Share], caption: &str, own: bool) -> Markup {
    html! {
        @if shares.is_empty() {
            p.empty { "None." }
        } @else {
            table {
                caption.visually-hidden { (caption) }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Owner account" } th scope="col" { "Kind" } th scope="col" { "Resources" } th scope="col" { "Principals" } th scope="col" { "Created" } } }
                tbody {
                    @for sh in shares {
                        tr {
                            td { @if own { a href={ "/console/shares/" (sh.id) } { (sh.name) } } @else { (sh.name) } }
                            td { code { (sh.id) } }
                            td { code { (sh.account_id) } }
                            td { (sh.kind) }
                            td { @if own { (sh.resources.len()) } @else { @for r in &sh.resources { (resource_link(r)) " " } } }
                            td { (sh.principals.len()) }
                            td { (when(&sh.created_at)) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/shares`: my account's shares, shares with me, and my
/// invitations.
pub async fn shares(State(c): State<Console>, s: Session) -> Response {
    let body = async {
        let svc = &c.service;
        let mine = svc.list_shares(&s.caller, first_page()).await?;
        let with_me = svc
            .list_shares(
                &s.caller,
                ListParams {
                    shared: Some("true".into()),
                    ..first_page()
                },
            )
            .await?;
        let invitations = svc.list_invitations(&s.caller, None).await?;
        Ok::<_, ServiceError>(html! {
            h1 { "Shares" }
            section aria-labelledby="inv-h" {
                h2 #inv-h { "Invitations to my account" }
                @if invitations.is_empty() {
                    p.empty { "No invitations." }
                } @else {
                    table {
                        caption.visually-hidden { "Invitations" }
                        thead { tr { th scope="col" { "Share" } th scope="col" { "From account" } th scope="col" { "Status" } th scope="col" { "Sent" } th scope="col" { "Answer" } } }
                        tbody {
                            @for i in &invitations {
                                tr {
                                    td { (i.share_name) " " code { (i.share_id) } }
                                    td { code { (i.sender_account_id) } }
                                    td { span.invitation-status { (i.status) } }
                                    td { (when(&i.created_at)) }
                                    td {
                                        @if i.status.to_string() == "pending" {
                                            div.actions {
                                                form method="post" action={ "/console/invitations/" (i.id) "/accept" } {
                                                    (csrf(&s))
                                                    button type="submit" aria-label={ "Accept the share " (i.share_name) } { "Accept" }
                                                }
                                                form method="post" action={ "/console/invitations/" (i.id) "/reject" } {
                                                    (csrf(&s))
                                                    button.danger type="submit" aria-label={ "Reject the share " (i.share_name) } { "Reject" }
                                                }
                                            }
                                        } @else { "—" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="mine-h" {
                h2 #mine-h { "My account's shares" }
                (share_table(&mine.items, "My account's shares", true))
                p.hint { "Create and change shares with " code { "coffer share create" } "." }
            }
            section aria-labelledby="withme-h" {
                h2 #withme-h { "Shared with me" }
                (share_table(&with_me.items, "Shares with me", false))
            }
        })
    }
    .await;
    view::page(&s, "shares", "Shares", body)
}

/// `GET /console/shares/{id}`.
pub async fn share(State(c): State<Console>, s: Session, Path(id): Path<String>) -> Response {
    let body = async {
        let sh = c.service.get_share(&s.caller, &id).await?;
        Ok::<_, ServiceError>(html! {
            h1 { "Share " (sh.name) }
            dl.facts {
                dt { "Id" } dd { code { (sh.id) } }
                dt { "Owner account" } dd { code { (sh.account_id) } }
                dt { "Region" } dd { (sh.region) }
                dt { "Kind" } dd { (sh.kind) }
                dt { "Principal scope" } dd { (sh.principal_scope) }
                dt { "Created" } dd { (when(&sh.created_at)) }
            }
            h2 { "Resources" }
            ul { @for r in &sh.resources { li { (resource_link(r)) } } }
            h2 { "Principals" }
            ul { @for p in &sh.principals { li { code { (p.principal) } " — " (p.status) } } }
        })
    }
    .await;
    view::page(&s, "shares", "Share", body)
}

/// A link to a resource's page where the console has one.
fn resource_link(id: &str) -> Markup {
    let page = match id.split('-').next() {
        Some("snap") => Some("snapshots"),
        Some("img") => Some("images"),
        Some("disk") => Some("disks"),
        _ => None,
    };
    html! {
        @if let Some(p) = page { a href={ "/console/" (p) "/" (id) } { code { (id) } } } @else { code { (id) } }
    }
}

/// `POST /console/invitations/{id}/accept`.
pub async fn accept(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    answer(c, id, p, true).await
}

/// `POST /console/invitations/{id}/reject`.
pub async fn reject(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    answer(c, id, p, false).await
}

async fn answer(
    c: Console,
    id: String,
    p: Posted<BTreeMap<String, String>>,
    accept: bool,
) -> Response {
    match c
        .service
        .answer_invitation(&p.session.caller, &id, accept)
        .await
    {
        Ok(_) => Redirect::to("/console/shares").into_response(),
        Err(e) => view::error_page(Some(&p.session), &e),
    }
}

/// The explain form (a GET: it changes nothing).
#[derive(Deserialize, Default)]
pub struct ExplainForm {
    #[serde(default)]
    principal_id: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    resource_id: String,
}

/// `GET /console/access`: my role assignments, and the explain form with
/// its answer.
pub async fn access(
    State(c): State<Console>,
    s: Session,
    Query(f): Query<ExplainForm>,
) -> Response {
    let body = async {
        let svc = &c.service;
        let me = s.caller.principal.id.to_string();
        let mine = svc
            .list_role_assignments(
                &s.caller,
                ListParams {
                    principal: Some(me.clone()),
                    ..first_page()
                },
            )
            .await?;
        let explained = if f.action.trim().is_empty() || f.resource_id.trim().is_empty() {
            None
        } else {
            Some(
                svc.explain(
                    &s.caller,
                    ExplainRequest {
                        principal_id: filled(&f.principal_id),
                        action: f.action.trim().to_string(),
                        resource_id: f.resource_id.trim().to_string(),
                    },
                )
                .await,
            )
        };
        Ok::<_, ServiceError>(html! {
            h1 { "Access" }
            section aria-labelledby="roles-h" {
                h2 #roles-h { "My role assignments" }
                @if mine.items.is_empty() {
                    p.empty { "None: you act only where others gave you access." }
                } @else {
                    table {
                        caption.visually-hidden { "My role assignments" }
                        thead { tr { th scope="col" { "Role" } th scope="col" { "Scope" } th scope="col" { "Id" } th scope="col" { "Since" } } }
                        tbody {
                            @for a in &mine.items {
                                tr { td { (a.role) } td { code { (a.scope) } } td { code { (a.id) } } td { (when(&a.created_at)) } }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="explain-h" {
                h2 #explain-h { "Explain a decision" }
                p.hint { "Why may (or may not) a principal do an action on a resource? The same answer as " code { "coffer iam explain" } "." }
                form.stack method="get" action="/console/access" {
                    label for="x-action" { "Action" }
                    input #x-action type="text" name="action" required placeholder="snapshots/use" value=(f.action);
                    label for="x-resource" { "Resource or scope" }
                    input #x-resource type="text" name="resource_id" required placeholder="snap-… or / or acct-…" value=(f.resource_id);
                    label for="x-principal" { "Principal (empty: me)" }
                    input #x-principal type="text" name="principal_id" placeholder=(me) value=(f.principal_id);
                    button #explain type="submit" { "Explain" }
                }
                @match &explained {
                    None => {}
                    Some(Ok(x)) => {
                        div #explanation class={ "explanation " (x.decision) } role="status" {
                            p { strong #decision { (x.decision) } " (HTTP " (x.status) "): " code { (x.principal_id) } " · " (x.action) " · " code { (x.resource_id) } }
                            ul { @for r in &x.reasons { li { (r) } } }
                            @if let Some(a) = &x.assignment_id { p { "Through assignment " code { (a) } "." } }
                        }
                    }
                    Some(Err(e)) => {
                        div.alert role="alert" { p { strong { (format!("{:?}", e.code)) } ": " (e.message) } }
                    }
                }
            }
        })
    }
    .await;
    view::page(&s, "access", "Access", body)
}
