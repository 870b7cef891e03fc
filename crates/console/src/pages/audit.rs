//! The audit log of key use: filters (key, principal, resource, time),
//! the entries, their count per hour drawn as bars (key usage over time),
//! and verifying the log's hash chain.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::Response;
use coffer_service::ServiceError;
use coffer_wire::{AuditEntry, AuditQuery};
use maud::{Markup, html};
use serde::Deserialize;

use super::filled;
use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf, when};

/// The filters.
#[derive(Deserialize, Default)]
pub struct Filters {
    #[serde(default)]
    key: String,
    #[serde(default)]
    principal: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

/// `GET /console/audit`.
pub async fn list(State(c): State<Console>, s: Session, Query(f): Query<Filters>) -> Response {
    let q = AuditQuery {
        limit: Some(1000),
        next: None,
        key: filled(&f.key),
        principal: filled(&f.principal),
        resource: filled(&f.resource),
        since: filled(&f.since),
        until: filled(&f.until),
    };
    let body = async {
        let page = c.service.list_audit(&s.caller, q).await?;
        Ok::<_, ServiceError>(html! {
            h1 { "Audit log" }
            p.hint { "Every use of a key: who, for whom, what, under which key version, and the outcome. Entries are chained by hash." }
            form.filters method="get" action="/console/audit" role="search" aria-label="Filter the audit log" {
                label { "Key " input type="text" name="key" placeholder="key-…" value=(f.key); }
                label { "Principal " input type="text" name="principal" placeholder="prin-…" value=(f.principal); }
                label { "Resource " input type="text" name="resource" value=(f.resource); }
                label { "Since " input type="text" name="since" placeholder="2026-12-01T00:00:00Z" value=(f.since); }
                label { "Until " input type="text" name="until" value=(f.until); }
                button type="submit" { "Filter" }
            }
            section aria-labelledby="use-h" {
                h2 #use-h { "Key use per hour" }
                (per_hour(&page.items))
            }
            form method="post" action="/console/audit/verify" {
                (csrf(&s))
                button #verify type="submit" { "Verify the log" }
            }
            @if page.items.is_empty() {
                p.empty { "No entries." }
            } @else {
                table #audit {
                    caption.visually-hidden { "Audit entries" }
                    thead { tr { th scope="col" { "#" } th scope="col" { "At" } th scope="col" { "Principal" } th scope="col" { "Action" } th scope="col" { "Key" } th scope="col" { "Resource" } th scope="col" { "Outcome" } } }
                    tbody {
                        @for e in &page.items {
                            tr {
                                td { (e.seq) }
                                td { (when(&e.at)) }
                                td { code { (e.principal_id) } @if !e.acting_for.is_empty() && e.acting_for != e.principal_id { " for " code { (e.acting_for) } } }
                                td { (e.action) }
                                td { @if let Some(k) = &e.key_id { a href={ "/console/keys/" (k) } { code { (k) } } @if let Some(v) = e.key_version { " v" (v) } } }
                                td { code { (e.resource) } }
                                td { (e.outcome) }
                            }
                        }
                    }
                }
                @if page.next.is_some() { p.note { "Only the first 1,000 entries are shown: narrow the filters." } }
            }
        })
    }
    .await;
    view::page(&s, "audit", "Audit log", body)
}

/// Bars of entries per hour (the hours that have any, oldest first; at
/// most the last 48), with the counts as a table for screen readers.
fn per_hour(entries: &[AuditEntry]) -> Markup {
    let mut hours: BTreeMap<String, u32> = BTreeMap::new();
    for e in entries {
        let h = e.at.get(..13).unwrap_or(&e.at).replace('T', " ");
        *hours.entry(h).or_default() += 1;
    }
    let bars: Vec<(String, u32)> = hours.into_iter().rev().take(48).collect::<Vec<_>>();
    let bars: Vec<(String, u32)> = bars.into_iter().rev().collect();
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let (bw, gap, h) = (22u32, 6u32, 120u32);
    let n = u32::try_from(bars.len()).unwrap_or(u32::MAX);
    let width = (n * (bw + gap)).max(bw) + 40;
    html! {
        @if bars.is_empty() {
            p.empty { "No key use in this selection." }
        } @else {
            figure.chart {
                svg #key-use xmlns="http://www.w3.org/2000/svg" role="img"
                    aria-label={ "Key use per hour: " (bars.len()) " hours, at most " (max) " uses in one" }
                    width=(width) height=(h + 40) viewBox={ "0 0 " (width) " " (h + 40) } {
                    @for (i, (hour, count)) in bars.iter().enumerate() {
                        @let i = u32::try_from(i).unwrap_or(0);
                        @let bh = (count * h / max).max(1);
                        rect.bar x=(20 + i * (bw + gap)) y=(h - bh + 10) width=(bw) height=(bh) {
                            title { (hour) ":00 UTC: " (count) }
                        }
                        text.count x=(20 + i * (bw + gap) + bw / 2) y=(h - bh + 6) text-anchor="middle" { (count) }
                        text.hour x=(20 + i * (bw + gap) + bw / 2) y=(h + 26) text-anchor="middle" { (hour.get(11..13).unwrap_or("")) }
                    }
                }
                figcaption {
                    details {
                        summary { "The counts as a table" }
                        table {
                            caption.visually-hidden { "Key use per hour" }
                            thead { tr { th scope="col" { "Hour (UTC)" } th scope="col" { "Uses" } } }
                            tbody { @for (hour, count) in &bars { tr { td { (hour) ":00" } td { (count) } } } }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /console/audit/verify`: the chain checked from its first entry
/// to its head.
pub async fn verify(State(c): State<Console>, p: Posted<BTreeMap<String, String>>) -> Response {
    let s = &p.session;
    let body = async {
        let v = c.service.verify_audit(&s.caller).await?;
        Ok::<_, ServiceError>(html! {
            h1 { "Audit log verified" }
            @if v.ok {
                div.ok #verified role="status" { p { "The chain holds: " (v.entries) " entries, head #" (v.head_seq) " " code { (v.head_hash) } "." } }
            } @else {
                div.alert #verified role="alert" { p { "The chain is broken: " (v.problem.clone().unwrap_or_default()) } }
            }
            p { a href="/console/audit" { "Back to the log" } }
        })
    }
    .await;
    view::page(s, "audit", "Audit log verified", body)
}
