//! Copy jobs: the list, and one job's page with a progress bar that
//! follows the job while it runs, and cancel. The bar is live through the
//! console's one small script (`assets/console.js`), which asks
//! `/console/jobs/{id}/progress` every 2 seconds and updates the bar in
//! place (a polite live region), reloading the page when the job ends;
//! without scripts the page has a refresh link. Not a `<meta refresh>`:
//! a page that reloads itself on a timer loses a screen reader's place.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use coffer_service::ServiceError;
use coffer_wire::Job;
use maud::{Markup, html};

use super::first_page;
use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf, when};

/// `GET /console/jobs`.
pub async fn list(State(c): State<Console>, s: Session) -> Response {
    let body = async {
        let mut page = c.service.list_jobs(&s.caller, first_page()).await?;
        page.items.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok::<_, ServiceError>(html! {
            h1 { "Copy jobs" }
            @if page.items.is_empty() {
                p.empty { "No copy jobs. Copy a snapshot or an image from its page." }
            } @else {
                table {
                    caption.visually-hidden { "Copy jobs" }
                    thead { tr { th scope="col" { "Job" } th scope="col" { "Kind" } th scope="col" { "State" } th scope="col" { "Progress" } th scope="col" { "Source" } th scope="col" { "Created" } } }
                    tbody {
                        @for j in &page.items {
                            tr {
                                td { a href={ "/console/jobs/" (j.id) } { code { (j.id) } } }
                                td { (j.kind) }
                                td { span class={ "state " (j.state) } { (j.state) } }
                                td { (progress(j)) }
                                td { code { (j.source_id) } }
                                td { (when(&j.created_at)) }
                            }
                        }
                    }
                }
            }
        })
    }
    .await;
    view::page(&s, "jobs", "Copy jobs", body)
}

/// A job's progress bar, labelled with its percentage.
fn progress(j: &Job) -> Markup {
    let pct = (j.bytes_done * 100)
        .checked_div(j.bytes_total)
        .unwrap_or(100);
    html! {
        progress max="100" value=(pct) aria-label={ "Progress of " (j.id) } { (pct) "%" }
        " " span.pct { (pct) "%" }
    }
}

/// `GET /console/jobs/{id}`.
pub async fn show(State(c): State<Console>, s: Session, Path(id): Path<String>) -> Response {
    let j = match c.service.get_job(&s.caller, &id, 0).await {
        Ok(j) => j,
        Err(e) => return view::error_page(Some(&s), &e),
    };
    let running = j.state == "running";
    let target = if j.kind.starts_with("image") {
        j.image_id.clone().map(|i| format!("/console/images/{i}"))
    } else {
        Some(format!("/console/snapshots/{}", j.target_id))
    };
    let body = html! {
        h1 { "Copy job " code { (j.id) } }
        p #job-progress role="status" aria-live="polite" data-job=[running.then_some(&j.id)] {
            (progress(&j)) " of " span.total { (j.bytes_total) } " bytes"
        }
        dl.facts {
            dt { "State" } dd { span #job-state class={ "state " (j.state) } { (j.state) } }
            dt { "Kind" } dd { (j.kind) }
            dt { "Source" } dd { code { (j.source_id) } " in " (j.source_region) }
            dt { "Copy" } dd {
                @if j.state == "succeeded" {
                    @if let Some(t) = &target { a #job-target href=(t) { code { (j.target_id) } } }
                } @else { code { (j.target_id) } }
                " in " (j.target_region)
            }
            @if let Some(m) = &j.message { dt { "Message" } dd { (m) } }
            @if let (Some(a), Some(b)) = (&j.source_hash, &j.target_hash) {
                dt { "Verified" } dd { "Hash of the source " code { (a) } ", of the copy read back " code { (b) } }
            }
            dt { "Created" } dd { (when(&j.created_at)) }
            @if let Some(f) = &j.finished_at { dt { "Finished" } dd { (when(f)) } }
        }
        @if running {
            p.hint { "The bar follows the job. " a href={ "/console/jobs/" (j.id) } { "Refresh" } }
            script src="/console/assets/console.js" {}
            form method="post" action={ "/console/jobs/" (j.id) "/cancel" } {
                (csrf(&s))
                button.danger type="submit" { "Cancel the copy" }
            }
        }
    };
    view::page(&s, "jobs", "Copy job", Ok(body))
}

/// `GET /console/jobs/{id}/progress`: the job's state and bytes, for the
/// page's script.
pub async fn progress_json(
    State(c): State<Console>,
    s: Session,
    Path(id): Path<String>,
) -> Response {
    match c.service.get_job(&s.caller, &id, 0).await {
        Ok(j) => axum::Json(serde_json::json!({
            "state": j.state,
            "bytes_done": j.bytes_done,
            "bytes_total": j.bytes_total,
        }))
        .into_response(),
        Err(e) => (
            axum::http::StatusCode::from_u16(e.status())
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(serde_json::json!({ "error": { "code": e.code, "message": e.message } })),
        )
            .into_response(),
    }
}

/// `POST /console/jobs/{id}/cancel`.
pub async fn cancel(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    view::go(
        &p.session,
        c.service.cancel_job(&p.session.caller, &id).await,
        |j| format!("/console/jobs/{}", j.id),
    )
}
