//! Snapshots: the list (own and shared), take one of a disk, one
//! snapshot's page with its lineage, restore into a zone, and delete after
//! typing the snapshot's name.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use coffer_service::ServiceError;
use coffer_wire::{CreateDisk, CreateSnapshot, ListParams, Snapshot};
use maud::{Markup, html};
use serde::Deserialize;

use super::{filled, first_page, lineage};
use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf, when};

/// The list's filters.
#[derive(Deserialize, Default)]
pub struct Filters {
    #[serde(default)]
    name: String,
    #[serde(default)]
    disk: String,
    /// `""` (all), `true` (shared with me) or `false` (my account's).
    #[serde(default)]
    shared: String,
}

/// `GET /console/snapshots`.
pub async fn list(State(c): State<Console>, s: Session, Query(f): Query<Filters>) -> Response {
    let q = ListParams {
        name: filled(&f.name),
        source_disk: filled(&f.disk),
        shared: filled(&f.shared),
        ..first_page()
    };
    let body = async {
        let page = c.service.list_snapshots(&s.caller, q).await?;
        Ok::<_, ServiceError>(html! {
            h1 { "Snapshots" }
            form.filters method="get" action="/console/snapshots" role="search" aria-label="Filter snapshots" {
                label { "Name " input type="text" name="name" value=(f.name); }
                label { "Disk " input type="text" name="disk" placeholder="disk-…" value=(f.disk); }
                label { "Owner "
                    select name="shared" {
                        option value="" selected[f.shared.is_empty()] { "any" }
                        option value="false" selected[f.shared == "false"] { "my account's" }
                        option value="true" selected[f.shared == "true"] { "shared with me" }
                    }
                }
                button type="submit" { "Filter" }
            }
            (snapshot_table(&page.items))
            @if page.next.is_some() { p.note { "Only the first 1,000 are shown: narrow the filters." } }
            p.hint { "Take a snapshot from a disk's page." }
        })
    }
    .await;
    view::page(&s, "snapshots", "Snapshots", body)
}

/// A table of snapshots.
pub(crate) fn snapshot_table(snaps: &[Snapshot]) -> Markup {
    html! {
        @if snaps.is_empty() {
            p.empty { "No snapshots." }
        } @else {
            table {
                caption.visually-hidden { "Snapshots" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Region" } th scope="col" { "Size" } th scope="col" { "Made" } th scope="col" { "Key" } th scope="col" { "Created" } } }
                tbody {
                    @for sn in snaps {
                        tr {
                            td { a href={ "/console/snapshots/" (sn.id) } { (sn.name) } }
                            td { code { (sn.id) } }
                            td { (sn.region) }
                            td { (sn.size) }
                            td { (sn.creation_method) }
                            td { (sn.encryption.kind) }
                            td { (when(&sn.created_at)) }
                        }
                    }
                }
            }
        }
    }
}

/// The take-a-snapshot form (on a disk's page).
#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    disk_id: String,
    #[serde(default)]
    name: String,
}

/// `POST /console/snapshots`.
pub async fn create(State(c): State<Console>, p: Posted<CreateForm>) -> Response {
    let req = CreateSnapshot {
        disk_id: p.form.disk_id,
        name: p.form.name.trim().to_string(),
        tags: BTreeMap::new(),
    };
    view::go(
        &p.session,
        c.service.create_snapshot(&p.session.caller, req).await,
        |sn| format!("/console/snapshots/{}", sn.id),
    )
}

/// `GET /console/snapshots/{id}`.
pub async fn show(State(c): State<Console>, s: Session, Path(id): Path<String>) -> Response {
    let body = async {
        let sn = c.service.get_snapshot(&s.caller, &id).await?;
        let zones: Vec<String> = c
            .service
            .regions()
            .into_iter()
            .filter(|r| r.name == sn.region)
            .flat_map(|r| r.zones)
            .collect();
        let regions: Vec<String> = c.service.regions().into_iter().map(|r| r.name).collect();
        let graph = lineage::graph(&c, &s, lineage::Start::Snapshot(sn.id.clone())).await?;
        let permission = super::permissions::section(&c, &s, "snapshots", &sn.id).await;
        let owned = sn.account_id == s.caller.principal.account_id.to_string();
        Ok::<_, ServiceError>(html! {
            h1 { "Snapshot " (sn.name) }
            dl.facts {
                dt { "Id" } dd { code #snapshot-id { (sn.id) } }
                dt { "State" } dd { (sn.state) }
                dt { "Size" } dd { (sn.size) }
                dt { "Region" } dd { (sn.region) }
                dt { "Account" } dd { code { (sn.account_id) } }
                dt { "Encryption" } dd {
                    (sn.encryption.kind) " key " code { (sn.encryption.key_id) }
                }
                dt { "Made" } dd {
                    (sn.creation_method)
                    @if let Some(d) = &sn.source_disk_id { " of disk " a href={ "/console/disks/" (d) } { code { (d) } } }
                    @if let (Some(im), Some(role)) = (&sn.image_id, &sn.image_role) { " for image " code { (im) } " (" (role) ")" }
                }
                @if let Some(src) = &sn.source {
                    dt { "Source" } dd { "account " code { (src.account_id) } " in " (src.region)
                        @if let Some(i) = &src.id { ", " code { (i) } } }
                }
                dt { "Created" } dd { (when(&sn.created_at)) }
            }
            section aria-labelledby="restore-h" {
                h2 #restore-h { "Restore into a new disk" }
                form.stack method="post" action={ "/console/snapshots/" (sn.id) "/restore" } {
                    (csrf(&s))
                    label for="r-name" { "Disk name" }
                    input #r-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,80}";
                    label for="r-zone" { "Zone (in " (sn.region) ")" }
                    select #r-zone name="zone" required {
                        @for z in &zones { option value=(z) { (z) } }
                    }
                    label for="r-size" { "Size (optional: at least " (sn.size) ")" }
                    input #r-size type="text" name="size";
                    button #restore type="submit" { "Restore" }
                }
            }
            section aria-labelledby="copy-h" {
                h2 #copy-h { "Copy into my account" }
                form.stack method="post" action={ "/console/snapshots/" (sn.id) "/copy" } {
                    (csrf(&s))
                    (super::images::copy_fields(&regions))
                    button #copy type="submit" { "Copy" }
                }
            }
            (permission)
            @if owned { (super::tags::section(&s, &sn.id, &sn.tags)) }
            @if owned && sn.image_id.is_none() {
                (super::exports::export_section(&s, "snapshots", &sn.id))
            }
            section aria-labelledby="lineage-h" {
                h2 #lineage-h { "Lineage" }
                (graph)
            }
            @if sn.image_id.is_none() {
                section.danger aria-labelledby="delete-h" {
                    h2 #delete-h { "Delete this snapshot" }
                    p { "Disks made from it keep working. Type the snapshot's name to confirm." }
                    (view::confirm_by_name(&s, &format!("/console/snapshots/{}/delete", sn.id), "confirm", "Snapshot name", None, "Delete snapshot"))
                }
            }
        })
    }
    .await;
    view::page(&s, "snapshots", "Snapshot", body)
}

/// The restore form.
#[derive(Deserialize)]
pub struct RestoreForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    zone: String,
    #[serde(default)]
    size: String,
}

/// `POST /console/snapshots/{id}/restore`: a new disk from the snapshot.
pub async fn restore(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<RestoreForm>,
) -> Response {
    let f = p.form;
    let size = match view::size_field(
        &p.session,
        &f.size,
        "give a size such as 10GiB, or leave it empty.",
    ) {
        Ok(size) => size,
        Err(refused) => return *refused,
    };
    let req = CreateDisk {
        name: f.name.trim().to_string(),
        zone: f.zone,
        size,
        source_snapshot_id: Some(id),
        account_id: None,
        encryption_set_id: None,
        tags: BTreeMap::new(),
    };
    view::go(
        &p.session,
        c.service.create_disk(&p.session.caller, req).await,
        |d| format!("/console/disks/{}", d.id),
    )
}

/// `POST /console/snapshots/{id}/copy`: the job's page (its progress),
/// or the copy's when it was made at once.
pub async fn copy(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<super::images::CopyForm>,
) -> Response {
    match c
        .service
        .copy_snapshot(&p.session.caller, &id, p.form.request())
        .await
    {
        Ok(j) if j.id.is_empty() => {
            Redirect::to(&format!("/console/snapshots/{}", j.target_id)).into_response()
        }
        Ok(j) => Redirect::to(&format!("/console/jobs/{}", j.id)).into_response(),
        Err(e) => view::error_page(Some(&p.session), &e),
    }
}

/// `POST /console/snapshots/{id}/delete`.
pub async fn delete(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<super::ConfirmForm>,
) -> Response {
    let s = &p.session;
    if let Err(refused) = view::named(
        s,
        c.service.get_snapshot(&s.caller, &id).await,
        |sn| sn.name.as_str(),
        &p.form.confirm,
        ("Not deleted", "delete this snapshot"),
    ) {
        return *refused;
    }
    view::go(s, c.service.delete_snapshot(&s.caller, &id).await, |_| {
        "/console/snapshots".to_string()
    })
}
