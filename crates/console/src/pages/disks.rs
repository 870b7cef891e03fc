//! Disks: the list with filters, create, one disk's page, attach (the NBD
//! URI and the commands that use it, shown once), detach, resize, and
//! delete after typing the disk's name.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use coffer_service::ServiceError;
use coffer_wire::{Attachment, CreateDisk, Disk, ListParams};
use maud::{Markup, html};
use serde::Deserialize;

use super::{filled, first_page, lineage};
use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf, when};

/// The list's filters (a GET form).
#[derive(Deserialize, Default)]
pub struct Filters {
    #[serde(default)]
    name: String,
    #[serde(default)]
    zone: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    tag: String,
    /// Only disks launched from this image.
    #[serde(default)]
    image: String,
    /// Only disks of this account.
    #[serde(default)]
    account: String,
}

/// `GET /console/disks`.
pub async fn list(State(c): State<Console>, s: Session, Query(f): Query<Filters>) -> Response {
    let q = ListParams {
        name: filled(&f.name),
        zone: filled(&f.zone),
        state: filled(&f.state),
        tag: filled(&f.tag),
        source_image: filled(&f.image),
        account: filled(&f.account),
        ..first_page()
    };
    let body = async {
        let page = c.service.list_disks(&s.caller, q).await?;
        let zones: Vec<String> = c
            .service
            .regions()
            .into_iter()
            .flat_map(|r| r.zones)
            .collect();
        Ok::<_, ServiceError>(html! {
            h1 { "Disks" }
            form.filters method="get" action="/console/disks" role="search" aria-label="Filter disks" {
                label { "Name " input type="text" name="name" value=(f.name); }
                label { "Zone "
                    select name="zone" {
                        option value="" { "any" }
                        @for z in &zones { option value=(z) selected[*z == f.zone] { (z) } }
                    }
                }
                label { "State "
                    select name="state" {
                        option value="" { "any" }
                        @for st in ["available", "attached"] { option value=(st) selected[st == f.state] { (st) } }
                    }
                }
                label { "Tag " input type="text" name="tag" placeholder="key=value" value=(f.tag); }
                label { "Image " input type="text" name="image" placeholder="img-…" value=(f.image); }
                label { "Account " input type="text" name="account" placeholder="acct-…" value=(f.account); }
                button type="submit" { "Filter" }
            }
            (disk_table(&page.items))
            @if page.next.is_some() { p.note { "Only the first 1,000 are shown: narrow the filters." } }
            section aria-labelledby="create-h" {
                h2 #create-h { "Create a disk" }
                form.stack method="post" action="/console/disks" {
                    (csrf(&s))
                    label for="d-name" { "Name" }
                    input #d-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,80}" aria-describedby="d-name-hint";
                    span.hint #d-name-hint { "1–80 letters, digits, ., _ or -" }
                    label for="d-zone" { "Zone" }
                    select #d-zone name="zone" required {
                        @for z in &zones { option value=(z) { (z) } }
                    }
                    label for="d-size" { "Size" }
                    input #d-size type="text" name="size" placeholder="10GiB" aria-describedby="d-size-hint";
                    span.hint #d-size-hint { "A multiple of 1 MiB, e.g. 1GiB. From a snapshot, leave empty for the snapshot's size." }
                    label for="d-snap" { "From snapshot (optional)" }
                    input #d-snap type="text" name="source_snapshot_id" placeholder="snap-…";
                    label for="d-es" { "Encryption set (optional; empty: a platform key)" }
                    input #d-es type="text" name="encryption_set_id" placeholder="des-…";
                    button type="submit" { "Create disk" }
                }
            }
        })
    }
    .await;
    view::page(&s, "disks", "Disks", body)
}

/// A table of disks, each name a link to its page.
pub(crate) fn disk_table(disks: &[Disk]) -> Markup {
    html! {
        @if disks.is_empty() {
            p.empty { "No disks." }
        } @else {
            table {
                caption.visually-hidden { "Disks" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Zone" } th scope="col" { "Size" } th scope="col" { "State" } th scope="col" { "Key" } th scope="col" { "Created" } } }
                tbody {
                    @for d in disks {
                        tr {
                            td { a href={ "/console/disks/" (d.id) } { (d.name) } }
                            td { code { (d.id) } }
                            td { (d.zone) }
                            td { (d.size) }
                            td { span class={ "state " (d.state) } { (d.state) } }
                            td { (d.encryption.kind) }
                            td { (when(&d.created_at)) }
                        }
                    }
                }
            }
        }
    }
}

/// The create form.
#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    zone: String,
    #[serde(default)]
    size: String,
    #[serde(default)]
    source_snapshot_id: String,
    #[serde(default)]
    encryption_set_id: String,
}

/// `POST /console/disks`.
pub async fn create(State(c): State<Console>, p: Posted<CreateForm>) -> Response {
    let f = p.form;
    let size = match view::size_field(&p.session, &f.size, "give a size such as 10GiB or 512MiB.") {
        Ok(size) => size,
        Err(refused) => return *refused,
    };
    let req = CreateDisk {
        name: f.name.trim().to_string(),
        zone: f.zone,
        size,
        source_snapshot_id: filled(&f.source_snapshot_id),
        account_id: None,
        encryption_set_id: filled(&f.encryption_set_id),
        tags: BTreeMap::new(),
    };
    view::go(
        &p.session,
        c.service.create_disk(&p.session.caller, req).await,
        |d| format!("/console/disks/{}", d.id),
    )
}

/// `GET /console/disks/{id}`.
pub async fn show(State(c): State<Console>, s: Session, Path(id): Path<String>) -> Response {
    let body = async {
        let d = c.service.get_disk(&s.caller, &id).await?;
        let snaps = c
            .service
            .list_snapshots(
                &s.caller,
                ListParams {
                    source_disk: Some(d.id.clone()),
                    ..first_page()
                },
            )
            .await?;
        let graph = lineage::graph(&c, &s, lineage::Start::Disk(d.id.clone())).await?;
        Ok::<_, ServiceError>(html! {
            h1 { "Disk " (d.name) }
            (facts(&d))
            section aria-labelledby="actions-h" {
                h2 #actions-h { "Actions" }
                div.actions {
                    @if d.state.to_string() == "available" {
                        form method="post" action={ "/console/disks/" (d.id) "/attach" } {
                            (csrf(&s))
                            button #attach type="submit" { "Attach" }
                        }
                    } @else {
                        form method="post" action={ "/console/disks/" (d.id) "/detach" } {
                            (csrf(&s))
                            button #detach type="submit" { "Detach" }
                        }
                    }
                }
                form.inline method="post" action="/console/snapshots" {
                    (csrf(&s))
                    input type="hidden" name="disk_id" value=(d.id);
                    label for="snap-name" { "Snapshot name" }
                    input #snap-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,80}";
                    button #snapshot type="submit" { "Take a snapshot" }
                }
                @if d.state.to_string() == "available" {
                    form.inline method="post" action={ "/console/disks/" (d.id) "/resize" } {
                        (csrf(&s))
                        label for="new-size" { "New size" }
                        input #new-size type="text" name="size" required placeholder=(d.size);
                        button type="submit" { "Resize" }
                    }
                }
            }
            (super::tags::section(&s, &d.id, &d.tags))
            section aria-labelledby="snaps-h" {
                h2 #snaps-h { "Snapshots of this disk" }
                (super::snapshots::snapshot_table(&snaps.items))
            }
            section aria-labelledby="lineage-h" {
                h2 #lineage-h { "Lineage" }
                (graph)
            }
            @if d.state.to_string() == "available" {
                section.danger aria-labelledby="delete-h" {
                    h2 #delete-h { "Delete this disk" }
                    p { "Deleting a disk destroys its data for good; its snapshots stay. Type the disk's name to confirm." }
                    (view::confirm_by_name(&s, &format!("/console/disks/{}/delete", d.id), "confirm", "Disk name", None, "Delete disk"))
                }
            }
        })
    }
    .await;
    view::page(&s, "disks", "Disk", body)
}

/// A disk's facts as a description list.
fn facts(d: &Disk) -> Markup {
    html! {
        dl.facts {
            dt { "Id" } dd { code #disk-id { (d.id) } }
            dt { "State" } dd { span #disk-state class={ "state " (d.state) } { (d.state) } }
            dt { "Size" } dd { (d.size) " (" (d.size_bytes) " bytes)" }
            dt { "Region / zone" } dd { (d.region) " / " (d.zone) }
            dt { "Account" } dd { code { (d.account_id) } }
            dt { "Encryption" } dd {
                (d.encryption.kind) " key " code { (d.encryption.key_id) }
                @if let Some(es) = &d.encryption.encryption_set_id { " via set " code { (es) } }
            }
            dt { "Made" } dd {
                (d.creation_method)
                @if let Some(sn) = &d.source_snapshot_id { " from " a href={ "/console/snapshots/" (sn) } { code { (sn) } } }
                @if let Some(im) = &d.source_image_id { " from image " code { (im) } }
            }
            @if let Some(src) = &d.source {
                dt { "Shared from" } dd { "account " code { (src.account_id) } " in " (src.region) }
            }
            dt { "Created" } dd { (when(&d.created_at)) }
            @if !d.tags.is_empty() {
                dt { "Tags" } dd { @for (k, v) in &d.tags { span.tag { (k) "=" (v) } " " } }
            }
        }
    }
}

/// `POST /console/disks/{id}/attach`: the attachment's URI is a secret
/// shown only in this answer (never cached, like every console page).
pub async fn attach(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    let s = &p.session;
    match c.service.attach_disk(&s.caller, &id).await {
        Ok(a) => view::page(s, "disks", "Disk attached", Ok(attached(&a))),
        Err(e) => view::error_page(Some(s), &e),
    }
}

/// The page after attaching: the URI and how to use it.
fn attached(a: &Attachment) -> Markup {
    let uri = a.uri.clone().unwrap_or_default();
    let opts = a.image_opts.clone().unwrap_or_default();
    let tls = uri.starts_with("nbds://");
    html! {
        h1 { "Disk attached" }
        div.alert.secret role="status" {
            p { "This address is a secret: whoever has it can read and write the disk until you detach it. It is shown only now." }
        }
        dl.facts {
            dt { "NBD URI" } dd { code #nbd-uri { (uri) } }
            dt { "qemu options" } dd { code #image-opts { (opts) } }
        }
        h2 { "Use it" }
        p { "Write an image onto the disk:" }
        pre { code { "qemu-img convert -n -O raw disk.raw '" (uri) "'" } }
        p { "Boot a VM from it:" }
        @if tls {
            pre { code { "qemu-system-x86_64 -m 1G \\\n  -object tls-creds-x509,id=tls0,dir=CA-DIR,endpoint=client \\\n  -drive " (opts) ",format=raw,if=virtio" } }
            p.hint { "CA-DIR holds the deployment's CA as ca-cert.pem." }
        } @else {
            pre { code { "qemu-system-x86_64 -m 1G -drive file=" (uri) ",format=raw,if=virtio" } }
        }
        p { "Or as a local block device: " code { "nbd-client -N EXPORT HOST PORT /dev/nbd0" } "." }
        p { a href={ "/console/disks/" (a.disk_id) } { "Back to the disk" } }
    }
}

/// `POST /console/disks/{id}/detach`.
pub async fn detach(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    view::go(
        &p.session,
        c.service.detach_disk(&p.session.caller, &id).await,
        |d| format!("/console/disks/{}", d.id),
    )
}

/// The resize form.
#[derive(Deserialize)]
pub struct ResizeForm {
    #[serde(default)]
    size: String,
}

/// `POST /console/disks/{id}/resize`.
pub async fn resize(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<ResizeForm>,
) -> Response {
    let hint = "give a size such as 20GiB, larger than the disk's.";
    let size = match view::size_field(&p.session, &p.form.size, hint) {
        Ok(Some(size)) => size,
        Ok(None) => {
            return view::refusal(
                Some(&p.session),
                StatusCode::BAD_REQUEST,
                "InvalidSize",
                &format!("no size given: {hint}"),
            );
        }
        Err(refused) => return *refused,
    };
    view::go(
        &p.session,
        c.service.resize_disk(&p.session.caller, &id, size).await,
        |d| format!("/console/disks/{}", d.id),
    )
}

/// `POST /console/disks/{id}/delete`: only when the name typed is the
/// disk's.
pub async fn delete(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<super::ConfirmForm>,
) -> Response {
    let s = &p.session;
    if let Err(refused) = view::named(
        s,
        c.service.get_disk(&s.caller, &id).await,
        |d| d.name.as_str(),
        &p.form.confirm,
        ("Not deleted", "delete this disk"),
    ) {
        return *refused;
    }
    view::go(s, c.service.delete_disk(&s.caller, &id).await, |_| {
        "/console/disks".to_string()
    })
}
