//! Copies between deployments: the exports of the caller's account (list,
//! one export's page, revoke), making an export from a snapshot's or an
//! image's page (its pull token shown once, on the page that made it), and
//! importing another deployment's export (one copy job per snapshot).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use coffer_service::ServiceError;
use coffer_wire::{CreateExport, CreateImport, Export};
use maud::{Markup, html};
use serde::Deserialize;

use super::filled;
use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf, when};

/// `GET /console/exports`: the account's exports, and the import form.
pub async fn list(State(c): State<Console>, s: Session) -> Response {
    let body = async {
        let exports = c.service.list_exports(&s.caller).await?;
        let regions: Vec<String> = c.service.regions().into_iter().map(|r| r.name).collect();
        Ok::<_, ServiceError>(html! {
            h1 { "Copies between deployments" }
            p.lead { "An export lets another Coffer deployment copy one snapshot, or an image's snapshots, with a pull token, until it expires or is revoked. The other deployment imports it: its copy jobs read the export and write under that deployment's own keys." }
            section aria-labelledby="exports-h" {
                h2 #exports-h { "My account's exports" }
                @if exports.is_empty() {
                    p.empty { "No exports. Export a snapshot or an image from its page." }
                } @else {
                    table #exports {
                        caption.visually-hidden { "Exports" }
                        thead { tr { th scope="col" { "Id" } th scope="col" { "Of" } th scope="col" { "State" } th scope="col" { "Expires" } th scope="col" { "Created" } } }
                        tbody {
                            @for e in &exports {
                                tr {
                                    td { a href={ "/console/exports/" (e.id) } { code { (e.id) } } }
                                    td { (e.kind) " " (source_link(e)) }
                                    td { span class={ "state " (e.state) } { (e.state) } }
                                    td { (when(&e.expires_at)) }
                                    td { (when(&e.created_at)) }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="import-h" {
                h2 #import-h { "Import from another deployment" }
                p.hint { "Paste what the other deployment's export page showed: its address, the export's id and its pull token (and its CA certificate if it uses the deployment CA)." }
                form.stack method="post" action="/console/imports" {
                    (csrf(&s))
                    label for="i-name" { "Name of the copy" }
                    input #i-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,80}";
                    label for="i-endpoint" { "The other deployment's API address" }
                    input #i-endpoint type="url" name="endpoint" required placeholder="https://coffer.example:8443";
                    label for="i-export" { "Export id" }
                    input #i-export type="text" name="export_id" required placeholder="exp-…";
                    label for="i-token" { "Pull token" }
                    input #i-token type="password" name="token" required autocomplete="off";
                    label for="i-ca" { "CA certificate (PEM, optional)" }
                    textarea #i-ca name="ca_pem" rows="4" {}
                    label for="i-region" { "Region" }
                    select #i-region name="target_region" {
                        option value="" { "this deployment's first" }
                        @for r in &regions { option value=(r) { (r) } }
                    }
                    label for="i-es" { "Encryption set (optional; empty: a platform key)" }
                    input #i-es type="text" name="encryption_set_id" placeholder="des-…";
                    button #import type="submit" { "Import" }
                }
            }
        })
    }
    .await;
    view::page(&s, "exports", "Exports", body)
}

/// A link to what an export exports.
fn source_link(e: &Export) -> Markup {
    let kind = if e.kind == "image" {
        "images"
    } else {
        "snapshots"
    };
    html! { a href={ "/console/" (kind) "/" (e.source_id) } { code { (e.source_id) } } }
}

/// An export's page; `token` is shown only on the page that made it.
fn export_page(s: &Session, e: &Export) -> Markup {
    html! {
        h1 { "Export " code { (e.id) } }
        @if let Some(t) = &e.token {
            div.ok role="status" {
                p { strong { "The pull token, shown this once:" } }
                p { code #export-token { (t) } }
                p { "Give it, with this deployment's address and the export's id, to whoever imports it (" code { "coffer import --endpoint URL --export " (e.id) " --token …" } " or the import form of their console). Coffer keeps only its hash." }
            }
        }
        dl.facts {
            dt { "Id" } dd { code #export-id { (e.id) } }
            dt { "Of" } dd { (e.kind) " " (source_link(e)) }
            dt { "State" } dd { span #export-state class={ "state " (e.state) } { (e.state) } }
            dt { "Account" } dd { code { (e.account_id) } }
            dt { "Deployment" } dd { code { (e.deployment_id) } }
            dt { "Expires" } dd { (when(&e.expires_at)) }
            dt { "Created" } dd { (when(&e.created_at)) }
        }
        h2 { "Snapshots exported" }
        table {
            caption.visually-hidden { "Snapshots exported" }
            thead { tr { th scope="col" { "Role" } th scope="col" { "Snapshot" } th scope="col" { "Size" } } }
            tbody {
                @for m in &e.members {
                    tr {
                        td { (m.role) }
                        td { code { (m.snapshot_id) } }
                        td { (coffer_types::size::approx(m.size)) }
                    }
                }
            }
        }
        @if e.state == "active" {
            section.danger aria-labelledby="revoke-h" {
                h2 #revoke-h { "Revoke" }
                p { "The pull token stops working at once; an import still reading it fails." }
                form.inline method="post" action={ "/console/exports/" (e.id) "/revoke" } {
                    (csrf(s))
                    button.danger #revoke type="submit" { "Revoke export" }
                }
            }
        }
    }
}

/// `GET /console/exports/{id}`.
pub async fn show(State(c): State<Console>, s: Session, Path(id): Path<String>) -> Response {
    let body = async {
        let e = c.service.get_export(&s.caller, &id).await?;
        Ok::<_, ServiceError>(export_page(&s, &e))
    }
    .await;
    view::page(&s, "exports", "Export", body)
}

/// The export form: how long the token lasts.
#[derive(Deserialize)]
pub struct ExportForm {
    #[serde(default)]
    expires_in_hours: String,
}

/// The hours typed, or the refusal page.
fn hours(p: &Posted<ExportForm>) -> Result<Option<u32>, Box<Response>> {
    match p.form.expires_in_hours.trim() {
        "" => Ok(None),
        h => h.parse::<u32>().map(Some).map_err(|_| {
            Box::new(view::refusal(
                Some(&p.session),
                axum::http::StatusCode::BAD_REQUEST,
                "InvalidBody",
                &format!(
                    "'{}' is not a number of hours: type a whole number such as 24, or leave it empty for the default.",
                    h.chars().take(20).collect::<String>()
                ),
            ))
        }),
    }
}

/// An export just made: its page, with the token shown once.
fn made(p: &Posted<ExportForm>, r: Result<Export, ServiceError>) -> Response {
    match r {
        Ok(e) => view::page(
            &p.session,
            "exports",
            "Export",
            Ok(export_page(&p.session, &e)),
        ),
        Err(e) => view::error_page(Some(&p.session), &e),
    }
}

/// `POST /console/snapshots/{id}/export`.
pub async fn export_snapshot(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<ExportForm>,
) -> Response {
    let expires_in_hours = match hours(&p) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let r = c
        .service
        .export_snapshot(&p.session.caller, &id, CreateExport { expires_in_hours })
        .await;
    made(&p, r)
}

/// `POST /console/images/{id}/export`.
pub async fn export_image(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<ExportForm>,
) -> Response {
    let expires_in_hours = match hours(&p) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let r = c
        .service
        .export_image(&p.session.caller, &id, CreateExport { expires_in_hours })
        .await;
    made(&p, r)
}

/// The export section of a snapshot's or an image's page (`kind`:
/// `snapshots` or `images`).
pub(crate) fn export_section(s: &Session, kind: &str, id: &str) -> Markup {
    html! {
        section aria-labelledby="export-h" {
            h2 #export-h { "Export to another deployment" }
            p.hint { "Makes a pull token another Coffer deployment imports this with. The data leaves under that deployment's keys." }
            form.inline method="post" action={ "/console/" (kind) "/" (id) "/export" } {
                (csrf(s))
                label for="x-hours" { "Hours the token lasts (optional)" }
                input #x-hours type="text" name="expires_in_hours" inputmode="numeric" size="6";
                button #export type="submit" { "Export" }
            }
        }
    }
}

/// `POST /console/exports/{id}/revoke`.
pub async fn revoke(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    view::go(
        &p.session,
        c.service.revoke_export(&p.session.caller, &id).await,
        |e| format!("/console/exports/{}", e.id),
    )
}

/// The import form.
#[derive(Deserialize)]
pub struct ImportForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    export_id: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    ca_pem: String,
    #[serde(default)]
    target_region: String,
    #[serde(default)]
    encryption_set_id: String,
}

/// `POST /console/imports`: the first copy job's page.
pub async fn import(State(c): State<Console>, p: Posted<ImportForm>) -> Response {
    let f = p.form;
    let req = CreateImport {
        name: f.name.trim().to_string(),
        endpoint: f.endpoint.trim().to_string(),
        export_id: f.export_id.trim().to_string(),
        token: f.token.trim().to_string(),
        ca_pem: filled(&f.ca_pem),
        account_id: None,
        target_region: filled(&f.target_region),
        encryption_set_id: filled(&f.encryption_set_id),
        tags: BTreeMap::new(),
    };
    match c.service.create_import(&p.session.caller, req).await {
        Ok(i) => match i.jobs.first() {
            Some(j) => Redirect::to(&format!("/console/jobs/{}", j.id)).into_response(),
            None => Redirect::to("/console/jobs").into_response(),
        },
        Err(e) => view::error_page(Some(&p.session), &e),
    }
}
