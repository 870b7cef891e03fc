//! The deployment: its regions and zones with each region's health (for
//! everyone signed in, as `GET /v1/regions`), and for Owners of the
//! deployment its nodes with their leases, a consistency check of the
//! object store against the metadata (`fsck`, quick or deep), and a
//! garbage collection run now.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use coffer_service::ServiceError;
use coffer_wire::{FsckReport, GcReport};
use maud::{Markup, html};
use serde::Deserialize;

use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf, when};

/// The page, with the result of an operation just run (if any) on top.
async fn page(c: &Console, s: &Session, ran: Option<Markup>) -> Response {
    let body = async {
        let regions = c.service.regions();
        // Nodes and operations are for Owners of the deployment; anyone
        // else sees the regions only.
        let nodes = c.service.list_nodes(&s.caller).await.ok();
        Ok::<_, ServiceError>(html! {
            h1 { "Deployment" }
            @if let Some(r) = &ran { (r) }
            section aria-labelledby="regions-h" {
                h2 #regions-h { "Regions" }
                table #regions {
                    caption.visually-hidden { "Regions" }
                    thead { tr { th scope="col" { "Region" } th scope="col" { "Zones" } th scope="col" { "Status" } } }
                    tbody {
                        @for r in &regions {
                            tr {
                                td { (r.name) }
                                td { (r.zones.join(", ")) }
                                td { span class={ "state " (r.status) } { (r.status) } }
                            }
                        }
                    }
                }
            }
            @if let Some(nodes) = &nodes {
                section aria-labelledby="nodes-h" {
                    h2 #nodes-h { "Nodes" }
                    table #nodes {
                        caption.visually-hidden { "Nodes" }
                        thead { tr { th scope="col" { "Name" } th scope="col" { "API" } th scope="col" { "NBD" } th scope="col" { "Started" } th scope="col" { "Lease until" } } }
                        tbody {
                            @for n in nodes {
                                tr {
                                    td { (n.name) @if n.this_node { " (this node)" } }
                                    td {
                                        // A link only to a web address: the row is the
                                        // metadata's, not to be trusted with a scheme.
                                        @if n.api_url.starts_with("https://") || n.api_url.starts_with("http://") {
                                            a href={ (n.api_url.trim_end_matches('/')) "/console/" } { code { (n.api_url) } }
                                        } @else {
                                            code { (n.api_url) }
                                        }
                                    }
                                    td { code { (n.nbd_endpoint) } }
                                    td { (when(&n.started_at)) }
                                    td { (when(&n.lease_expires_at)) }
                                }
                            }
                        }
                    }
                }
                section aria-labelledby="ops-h" {
                    h2 #ops-h { "Operations" }
                    form.inline method="post" action="/console/deployment/fsck" {
                        (csrf(s))
                        label for="fsck-deep" { "Open and authenticate every object (slow)" }
                        input #fsck-deep type="checkbox" name="deep" value="true";
                        button #fsck type="submit" { "Check consistency" }
                    }
                    form.inline method="post" action="/console/deployment/gc" {
                        (csrf(s))
                        button #gc type="submit" { "Collect garbage now" }
                    }
                    p.hint { "Both also run by themselves: the collector after every flush and at least every 30 seconds, the orphan sweep every 10 minutes." }
                }
            }
        })
    }
    .await;
    view::page(s, "deployment", "Deployment", body)
}

/// `GET /console/deployment`.
pub async fn show(State(c): State<Console>, s: Session) -> Response {
    page(&c, &s, None).await
}

/// The fsck form.
#[derive(Deserialize)]
pub struct FsckForm {
    #[serde(default)]
    deep: String,
}

/// What a check found.
fn fsck_report(r: &FsckReport) -> Markup {
    html! {
        div class=(if r.ok { "ok" } else { "alert" }) role="status" #fsck-report {
            p { strong { @if r.ok { "Consistent." } @else { "Problems found." } } }
            p { (r.objects_stored) " objects stored, " (r.objects_named) " named by the metadata, "
                (r.objects_missing) " missing, " (r.objects_unreferenced) " unreferenced, "
                (r.objects_queued) " queued for deletion"
                @if let Some(v) = r.objects_verified { ", " (v) " opened and authenticated" } "." }
            @if !r.findings.is_empty() {
                ul { @for f in &r.findings { li { code { (f.code) } ": " (f.detail) } } }
            }
        }
    }
}

/// What a collection did.
fn gc_report(r: &GcReport) -> Markup {
    html! {
        div.ok role="status" #gc-report {
            p { "Collected " (r.collected) " queued objects and swept " (r.orphans) " orphans." }
        }
    }
}

/// `POST /console/deployment/fsck`.
pub async fn fsck(State(c): State<Console>, p: Posted<FsckForm>) -> Response {
    match c
        .service
        .fsck(&p.session.caller, p.form.deep == "true")
        .await
    {
        Ok(r) => page(&c, &p.session, Some(fsck_report(&r))).await,
        Err(e) => view::error_page(Some(&p.session), &e),
    }
}

/// `POST /console/deployment/gc`.
pub async fn gc(State(c): State<Console>, p: Posted<BTreeMap<String, String>>) -> Response {
    match c.service.admin_gc(&p.session.caller).await {
        Ok(r) => page(&c, &p.session, Some(gc_report(&r))).await,
        Err(e) => view::error_page(Some(&p.session), &e),
    }
}
