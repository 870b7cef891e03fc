//! Images: the list (own and shared), making one from disks or snapshots,
//! one image's page with its snapshots by role, launch into a zone (one
//! disk per snapshot), copy (a job with a live progress bar when the copy
//! re-encrypts), its permission and export, and delete after typing its
//! name.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use coffer_service::ServiceError;
use coffer_wire::{CopyRequest, CreateImage, LaunchImage, ListParams};
use maud::html;
use serde::Deserialize;

use super::{filled, first_page};
use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf, when};

/// The list's filters.
#[derive(Deserialize, Default)]
pub struct Filters {
    #[serde(default)]
    name: String,
    #[serde(default)]
    shared: String,
}

/// `GET /console/images`.
pub async fn list(State(c): State<Console>, s: Session, Query(f): Query<Filters>) -> Response {
    let q = ListParams {
        name: filled(&f.name),
        shared: filled(&f.shared),
        ..first_page()
    };
    let body = async {
        let page = c.service.list_images(&s.caller, q).await?;
        let mine = ListParams {
            account: Some(s.caller.principal.account_id.to_string()),
            ..first_page()
        };
        // The form offers what the caller may list in its own account
        // (nothing, when it may not).
        let disks = c
            .service
            .list_disks(&s.caller, mine.clone())
            .await
            .map(|p| p.items)
            .unwrap_or_default();
        let snaps = c
            .service
            .list_snapshots(&s.caller, mine)
            .await
            .map(|p| p.items)
            .unwrap_or_default();
        Ok::<_, ServiceError>(html! {
            h1 { "Images" }
            form.filters method="get" action="/console/images" role="search" aria-label="Filter images" {
                label { "Name " input type="text" name="name" value=(f.name); }
                label { "Owner "
                    select name="shared" {
                        option value="" selected[f.shared.is_empty()] { "any" }
                        option value="false" selected[f.shared == "false"] { "my account's" }
                        option value="true" selected[f.shared == "true"] { "shared with me" }
                    }
                }
                button type="submit" { "Filter" }
            }
            @if page.items.is_empty() {
                p.empty { "No images. Make one with " code { "coffer image create --name N --disk DISK" } "." }
            } @else {
                table {
                    caption.visually-hidden { "Images" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Region" } th scope="col" { "State" } th scope="col" { "Snapshots" } th scope="col" { "Made" } th scope="col" { "Created" } } }
                    tbody {
                        @for i in &page.items {
                            tr {
                                td { a href={ "/console/images/" (i.id) } { (i.name) } }
                                td { code { (i.id) } }
                                td { (i.region) }
                                td { span class={ "state " (i.state) } { (i.state) } }
                                td { (i.snapshots.len()) }
                                td { (i.creation_method) }
                                td { (when(&i.created_at)) }
                            }
                        }
                    }
                }
            }
            (create_form(&s, &disks, &snaps))
        })
    }
    .await;
    view::page(&s, "images", "Images", body)
}

/// The form that makes an image from the account's disks or snapshots.
fn create_form(
    s: &Session,
    disks: &[coffer_wire::Disk],
    snaps: &[coffer_wire::Snapshot],
) -> maud::Markup {
    html! {
        section aria-labelledby="create-h" {
            h2 #create-h { "Make an image" }
            @if disks.is_empty() && snaps.is_empty() {
                p.empty { "Your account has no disk or snapshot to make an image of." }
            } @else {
                p.hint { "From disks (a crash-consistent snapshot of each is taken) or from snapshots (copied at no cost), not both: the root, then data members in the order of their ids (the CLI takes any order: " code { "coffer image create --disk ROOT --disk DATA" } ")." }
                form.stack method="post" action="/console/images" {
                    (csrf(s))
                    label for="im-name" { "Name" }
                    input #im-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,80}";
                    label for="im-desc" { "Description (optional)" }
                    input #im-desc type="text" name="description" maxlength="1024";
                    label for="im-root" { "Root" }
                    select #im-root name="root" required {
                        @if !disks.is_empty() { optgroup label="Disks" { @for d in disks { option value=(d.id) { (d.name) } } } }
                        @if !snaps.is_empty() { optgroup label="Snapshots" { @for sn in snaps { option value=(sn.id) { (sn.name) } } } }
                    }
                    fieldset.choices {
                        legend { "Data (optional)" }
                        @for d in disks { label { input type="checkbox" name={ "data:" (d.id) } value="on"; " disk " (d.name) } }
                        @for sn in snaps { label { input type="checkbox" name={ "data:" (sn.id) } value="on"; " snapshot " (sn.name) } }
                    }
                    button #create-image type="submit" { "Make image" }
                }
            }
        }
    }
}

/// `POST /console/images`: the new image's page.
pub async fn create(State(c): State<Console>, p: Posted<BTreeMap<String, String>>) -> Response {
    let f = &p.form;
    let field = |k: &str| f.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let root = field("root");
    let data = f
        .keys()
        .filter_map(|k| k.strip_prefix("data:"))
        .filter(|id| *id != root);
    let ids: Vec<String> = std::iter::once(root.as_str())
        .chain(data)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect();
    let (disk_ids, snapshot_ids) = ids.into_iter().partition(|id| id.starts_with("disk-"));
    let req = CreateImage {
        name: field("name"),
        disk_ids,
        snapshot_ids,
        description: filled(&field("description")),
        account_id: None,
        tags: BTreeMap::new(),
    };
    view::go(
        &p.session,
        c.service.create_image(&p.session.caller, req).await,
        |i| format!("/console/images/{}", i.id),
    )
}

/// `POST /console/images/{id}/delete`: the images list.
pub async fn delete(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<super::ConfirmForm>,
) -> Response {
    let s = &p.session;
    let i = match view::named(
        s,
        c.service.get_image(&s.caller, &id).await,
        |i| i.name.as_str(),
        &p.form.confirm,
        ("Not deleted", "delete this image"),
    ) {
        Ok(i) => i,
        Err(refused) => return *refused,
    };
    view::go(s, c.service.delete_image(&s.caller, &i.id).await, |_| {
        "/console/images".to_string()
    })
}

/// `GET /console/images/{id}`.
pub async fn show(State(c): State<Console>, s: Session, Path(id): Path<String>) -> Response {
    let body = async {
        let i = c.service.get_image(&s.caller, &id).await?;
        let zones: Vec<String> = c
            .service
            .regions()
            .into_iter()
            .filter(|r| r.name == i.region)
            .flat_map(|r| r.zones)
            .collect();
        let regions: Vec<String> = c.service.regions().into_iter().map(|r| r.name).collect();
        let permission = super::permissions::section(&c, &s, "images", &i.id).await;
        let owned = i.account_id == s.caller.principal.account_id.to_string();
        Ok::<_, ServiceError>(html! {
            h1 { "Image " (i.name) }
            dl.facts {
                dt { "Id" } dd { code #image-id { (i.id) } }
                dt { "State" } dd { span class={ "state " (i.state) } { (i.state) } }
                dt { "Region" } dd { (i.region) }
                dt { "Account" } dd { code { (i.account_id) } }
                dt { "Made" } dd { (i.creation_method) }
                @if !i.description.is_empty() { dt { "Description" } dd { (i.description) } }
                @if let Some(src) = &i.source {
                    dt { "Source" } dd { "account " code { (src.account_id) } " in " (src.region) }
                }
                @if !i.copy_jobs.is_empty() {
                    dt { "Copy jobs" } dd { @for j in &i.copy_jobs { a href={ "/console/jobs/" (j) } { code { (j) } } " " } }
                }
                dt { "Created" } dd { (when(&i.created_at)) }
            }
            h2 { "Snapshots" }
            table {
                caption.visually-hidden { "Snapshots of the image" }
                thead { tr { th scope="col" { "Role" } th scope="col" { "Snapshot" } th scope="col" { "Size" } th scope="col" { "Key" } } }
                tbody {
                    @for sn in &i.snapshots {
                        tr {
                            td { (sn.role) }
                            td { a href={ "/console/snapshots/" (sn.snapshot_id) } { code { (sn.snapshot_id) } } }
                            td { (coffer_types::size::approx(sn.size_bytes)) }
                            td { (sn.encryption.kind) " " code { (sn.encryption.key_id) } }
                        }
                    }
                }
            }
            section aria-labelledby="launch-h" {
                h2 #launch-h { "Launch" }
                p.hint { "One disk per snapshot, named after the image and the role." }
                form.stack method="post" action={ "/console/images/" (i.id) "/launch" } {
                    (csrf(&s))
                    label for="l-zone" { "Zone" }
                    select #l-zone name="zone" required { @for z in &zones { option value=(z) { (z) } } }
                    label for="l-name" { "Name prefix (optional)" }
                    input #l-name type="text" name="name";
                    label for="l-es" { "Encryption set (needed for another account's customer-key image)" }
                    input #l-es type="text" name="encryption_set_id" placeholder="des-…";
                    button #launch type="submit" { "Launch" }
                }
            }
            section aria-labelledby="copy-h" {
                h2 #copy-h { "Copy into my account" }
                form.stack method="post" action={ "/console/images/" (i.id) "/copy" } {
                    (csrf(&s))
                    (copy_fields(&regions))
                    button #copy type="submit" { "Copy" }
                }
            }
            (permission)
            @if owned { (super::tags::section(&s, &i.id, &i.tags)) }
            @if owned {
                (super::exports::export_section(&s, "images", &i.id))
                section.danger aria-labelledby="delete-h" {
                    h2 #delete-h { "Delete this image" }
                    p { "Its snapshots go with it; disks launched from it keep working. Type the image's name to confirm." }
                    (view::confirm_by_name(&s, &format!("/console/images/{}/delete", i.id), "confirm", "Image name", None, "Delete image"))
                }
            }
        })
    }
    .await;
    view::page(&s, "images", "Image", body)
}

/// The fields of a copy form (images and snapshots).
pub(crate) fn copy_fields(regions: &[String]) -> maud::Markup {
    html! {
        label for="c-name" { "Name of the copy" }
        input #c-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,80}";
        label for="c-region" { "Region" }
        select #c-region name="target_region" {
            option value="" { "the source's" }
            @for r in regions { option value=(r) { (r) } }
        }
        label for="c-es" { "Encryption set (optional; empty: a platform key)" }
        input #c-es type="text" name="encryption_set_id" placeholder="des-…";
        label for="c-rekey" { "Re-encrypt even where not required" }
        input #c-rekey type="checkbox" name="rekey" value="true";
    }
}

/// A copy form's fields.
#[derive(Deserialize)]
pub struct CopyForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    target_region: String,
    #[serde(default)]
    encryption_set_id: String,
    #[serde(default)]
    rekey: String,
}

impl CopyForm {
    /// The API's request.
    pub(crate) fn request(self) -> CopyRequest {
        CopyRequest {
            name: self.name.trim().to_string(),
            account_id: None,
            encryption_set_id: filled(&self.encryption_set_id),
            rekey: self.rekey == "true",
            target_region: filled(&self.target_region),
            tags: BTreeMap::new(),
        }
    }
}

/// `POST /console/images/{id}/copy`: the copy's page (pending while its
/// jobs run; each job's page shows its progress).
pub async fn copy(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<CopyForm>,
) -> Response {
    match c
        .service
        .copy_image(&p.session.caller, &id, p.form.request())
        .await
    {
        Ok(i) => match i.copy_jobs.first() {
            Some(j) => Redirect::to(&format!("/console/jobs/{j}")).into_response(),
            None => Redirect::to(&format!("/console/images/{}", i.id)).into_response(),
        },
        Err(e) => view::error_page(Some(&p.session), &e),
    }
}

/// The launch form.
#[derive(Deserialize)]
pub struct LaunchForm {
    #[serde(default)]
    zone: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    encryption_set_id: String,
}

/// `POST /console/images/{id}/launch`: the disks list, filtered to the
/// disks launched from this image.
pub async fn launch(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<LaunchForm>,
) -> Response {
    let req = LaunchImage {
        zone: p.form.zone,
        name: filled(&p.form.name),
        account_id: None,
        encryption_set_id: filled(&p.form.encryption_set_id),
        tags: BTreeMap::new(),
    };
    match c.service.launch_image(&p.session.caller, &id, req).await {
        Ok(disks) => match disks.as_slice() {
            [one] => Redirect::to(&format!("/console/disks/{}", one.id)).into_response(),
            _ => Redirect::to(&format!("/console/disks?image={}", id.trim())).into_response(),
        },
        Err(e) => view::error_page(Some(&p.session), &e),
    }
}
