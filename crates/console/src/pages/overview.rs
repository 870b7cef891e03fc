//! The overview: who is signed in, how many of each kind the caller may
//! see, and the newest disks and snapshots.

use axum::extract::State;
use axum::response::Response;
use coffer_service::ServiceError;
use maud::html;

use super::first_page;
use crate::Console;
use crate::session::Session;
use crate::view;

/// A count as shown: `1000+` when a whole page came back with more.
fn count<T>(p: &coffer_wire::Page<T>) -> String {
    if p.next.is_some() {
        format!("{}+", p.items.len())
    } else {
        p.items.len().to_string()
    }
}

/// `GET /console/`.
pub async fn show(State(c): State<Console>, s: Session) -> Response {
    let body = async {
        let svc = &c.service;
        let who = svc.whoami(&s.caller).await?;
        let disks = svc.list_disks(&s.caller, first_page()).await?;
        let snaps = svc.list_snapshots(&s.caller, first_page()).await?;
        let images = svc.list_images(&s.caller, first_page()).await?;
        let jobs = svc.list_jobs(&s.caller, first_page()).await?;
        let running = jobs.items.iter().filter(|j| j.state == "running").count();
        // The home account's storage, when the caller may read its disks.
        let usage = svc
            .account_usage(&s.caller, &who.account_id, super::usage::since("7d").0.as_deref())
            .await
            .ok();
        let mut newest_disks = disks.items.clone();
        newest_disks.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        newest_disks.truncate(5);
        let mut newest_snaps = snaps.items.clone();
        newest_snaps.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        newest_snaps.truncate(5);
        Ok::<_, ServiceError>(html! {
            h1 { "Overview" }
            p.lead {
                "Signed in as " strong { (who.name) } " (" code { (who.principal_id) } "), account "
                strong { (who.account_name) } " of tenant " strong { (who.tenant_name) } "."
                @if who.is_admin { " You are an Owner of the deployment." }
            }
            ul.counts aria-label="What you can see" {
                li { a href="/console/disks" { span.n #count-disks { (count(&disks)) } " disks" } }
                li { a href="/console/snapshots" { span.n #count-snapshots { (count(&snaps)) } " snapshots" } }
                li { a href="/console/images" { span.n #count-images { (count(&images)) } " images" } }
                li { a href="/console/jobs" { span.n #count-jobs { (running) } " copy jobs running" } }
            }
            @if let Some(u) = &usage {
                section aria-labelledby="usage-h" {
                    h2 #usage-h { "Storage used by " (who.account_name) }
                    (super::usage::figures(&u.current))
                    (super::usage::chart(u))
                    p { a href={ "/console/accounts/" (u.account_id) "/usage" } { "Over a longer range" } }
                }
            }
            section aria-labelledby="recent-disks" {
                h2 #recent-disks { "Newest disks" }
                (super::disks::disk_table(&newest_disks))
            }
            section aria-labelledby="recent-snaps" {
                h2 #recent-snaps { "Newest snapshots" }
                (super::snapshots::snapshot_table(&newest_snaps))
            }
        })
    }
    .await;
    view::page(&s, "overview", "Overview", body)
}
