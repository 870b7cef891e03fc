//! Storage used per account over time: an account's usage page (the
//! figures now, a chart of the samples over a chosen range, the samples as
//! a table) and the chart alone, which the overview shows for the home
//! account.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::response::Response;
use coffer_service::ServiceError;
use coffer_types::size::approx;
use coffer_wire::{AccountUsage, UsageSample};
use maud::{Markup, html};
use serde::Deserialize;

use crate::Console;
use crate::session::Session;
use crate::view::{self, when};

/// The ranges offered, as (query value, label, length).
const RANGES: [(&str, &str, Option<u64>); 4] = [
    ("1d", "the last day", Some(86_400)),
    ("7d", "the last 7 days", Some(7 * 86_400)),
    ("30d", "the last 30 days", Some(30 * 86_400)),
    ("all", "all kept (the newest 1,000)", None),
];

/// The query of the usage page.
#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    #[serde(default)]
    range: String,
}

/// `since` for a range value (the default: 7 days), and the value used.
pub(crate) fn since(range: &str) -> (Option<String>, &'static str) {
    let (value, _, secs) = RANGES
        .iter()
        .find(|r| r.0 == range)
        .copied()
        .unwrap_or(RANGES[1]);
    let since = secs.map(|s| {
        let t = SystemTime::now()
            .checked_sub(Duration::from_secs(s))
            .unwrap_or(UNIX_EPOCH);
        humantime::format_rfc3339_seconds(t).to_string()
    });
    (since, value)
}

/// `GET /console/accounts/{id}/usage`.
pub async fn show(
    State(c): State<Console>,
    s: Session,
    Path(id): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Response {
    let body = async {
        let (since, range) = since(&q.range);
        let u = c
            .service
            .account_usage(&s.caller, &id, since.as_deref())
            .await?;
        let a = c.service.get_account(&s.caller, &u.account_id).await.ok();
        let name = a.as_ref().map_or(u.account_id.clone(), |a| a.name.clone());
        Ok::<_, ServiceError>(html! {
            h1 { "Storage used by " (name) }
            p.lead { "Account " code #usage-account { (u.account_id) } ". "
                a href={ "/console/disks?account=" (u.account_id) } { "Its disks" } "." }
            (figures(&u.current))
            section aria-labelledby="usage-h" {
                h2 #usage-h { "Over time" }
                form.inline method="get" action={ "/console/accounts/" (u.account_id) "/usage" } {
                    label for="usage-range" { "Range" }
                    select #usage-range name="range" {
                        @for (v, label, _) in RANGES {
                            option value=(v) selected[v == range] { (label) }
                        }
                    }
                    button type="submit" { "Show" }
                }
                (chart(&u))
                p.hint { "Sampled every " (humantime::format_duration(Duration::from_secs(u.interval_seconds)))
                    " (the server's " code { "usage_interval" } "); the last point is now." }
            }
        })
    }
    .await;
    view::page(&s, "overview", "Storage used", body)
}

/// The figures now, as a definition list.
pub(crate) fn figures(now: &UsageSample) -> Markup {
    html! {
        dl.facts #usage-now {
            dt { "Stored" } dd #usage-stored { (approx(now.stored_bytes)) }
            dt { "Disks" } dd { (now.disks) " (" (approx(now.disk_bytes)) " provisioned)" }
            dt { "Snapshots" } dd { (now.snapshots) " (" (approx(now.snapshot_bytes)) " in size)" }
            dt { "Images" } dd { (now.images) }
        }
    }
}

/// Unix seconds of a stored time, if it parses.
fn secs(at: &str) -> Option<u64> {
    humantime::parse_rfc3339_weak(at)
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// A line chart of data stored and disks provisioned, the samples then
/// now, with the points as a table for screen readers.
pub(crate) fn chart(u: &AccountUsage) -> Markup {
    let mut points: Vec<&UsageSample> = u.samples.iter().collect();
    points.push(&u.current);
    let times: Vec<u64> = points.iter().filter_map(|p| secs(&p.at)).collect();
    let (Some(&t0), Some(&t1)) = (times.iter().min(), times.iter().max()) else {
        return html! { p.empty { "No samples yet." } };
    };
    let max = points
        .iter()
        .map(|p| p.stored_bytes.max(p.disk_bytes))
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h, left, top) = (640u64, 160u64, 70u64, 10u64);
    let x = |at: &str| left + secs(at).map_or(0, |t| (t - t0) * w / (t1 - t0).max(1));
    let y = |b: u64| {
        let up = u128::from(b.min(max)) * u128::from(h) / u128::from(max);
        top + h - u64::try_from(up).unwrap_or(h)
    };
    let line = |f: fn(&UsageSample) -> u64| {
        points
            .iter()
            .map(|p| format!("{},{}", x(&p.at), y(f(p))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let stored = line(|p| p.stored_bytes);
    let provisioned = line(|p| p.disk_bytes);
    let label = format!(
        "Storage over {} points: stored now {}, at most {}; disks provisioned now {}",
        points.len(),
        approx(u.current.stored_bytes),
        approx(points.iter().map(|p| p.stored_bytes).max().unwrap_or(0)),
        approx(u.current.disk_bytes)
    );
    let (width, height) = (left + w + 20, top + h + 50);
    html! {
        figure.chart {
            svg #usage-chart xmlns="http://www.w3.org/2000/svg" role="img" aria-label=(label)
                width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } {
                line.axis x1=(left) y1=(top) x2=(left) y2=(top + h) {}
                line.axis x1=(left) y1=(top + h) x2=(left + w) y2=(top + h) {}
                text.tick x=(left - 6) y=(top + 4) text-anchor="end" { (approx(max)) }
                text.tick x=(left - 6) y=(top + h) text-anchor="end" { "0" }
                text.tick x=(left) y=(top + h + 18) text-anchor="start" { (when(&points[0].at)) }
                text.tick x=(left + w) y=(top + h + 18) text-anchor="end" { "now" }
                polyline.provisioned points=(provisioned) {}
                polyline.stored points=(stored) {}
                @for p in &points {
                    circle.stored cx=(x(&p.at)) cy=(y(p.stored_bytes)) r="3" {
                        title { (when(&p.at)) ": " (approx(p.stored_bytes)) " stored" }
                    }
                }
                rect.key-stored x=(left) y=(top + h + 30) width="14" height="4" {}
                text.tick x=(left + 20) y=(top + h + 35) { "stored" }
                rect.key-provisioned x=(left + 100) y=(top + h + 30) width="14" height="4" {}
                text.tick x=(left + 120) y=(top + h + 35) { "disks provisioned" }
            }
            figcaption {
                details {
                    summary { "The samples as a table" }
                    table #usage-samples {
                        caption.visually-hidden { "Storage used over time" }
                        thead { tr { th scope="col" { "When" } th scope="col" { "Stored" } th scope="col" { "Disks" } th scope="col" { "Provisioned" } th scope="col" { "Snapshots" } th scope="col" { "Images" } } }
                        tbody {
                            @for p in &points {
                                tr { td { (when(&p.at)) } td { (approx(p.stored_bytes)) } td { (p.disks) } td { (approx(p.disk_bytes)) } td { (p.snapshots) } td { (p.images) } }
                            }
                        }
                    }
                }
            }
        }
    }
}
