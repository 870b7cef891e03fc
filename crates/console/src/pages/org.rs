//! The organisation as a tree: each tenant the caller may read, its
//! folders nested as they are, and the accounts in each; and the forms
//! that change it, each shown only where the caller may use it (as
//! `iam explain` answers about itself): create a tenant, a folder (at a
//! tenant's root or in a folder), an account, and move an account to
//! another folder of its tenant.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::Response;
use coffer_service::ServiceError;
use coffer_wire::{Account, CreateAccount, CreateFolder, CreateTenant, Folder, ListParams, Tenant};
use maud::{Markup, html};
use serde::Deserialize;

use super::{filled, first_page, may};
use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf, when};

/// A folder's path from its tenant's root, as people read it: `a / b`.
fn path_of(f: &Folder, folders: &[Folder]) -> String {
    let mut names = vec![f.name.as_str()];
    let mut at = f.parent_id.as_deref();
    // Folders nest a few deep; the bound guards against a cycle.
    for _ in 0..32 {
        let Some(p) = at.and_then(|id| folders.iter().find(|x| x.id == id)) else {
            break;
        };
        names.push(&p.name);
        at = p.parent_id.as_deref();
    }
    names.reverse();
    names.join(" / ")
}

/// One tenant as the page shows it.
struct Level<'a> {
    tenant: &'a Tenant,
    folders: Vec<Folder>,
    accounts: Vec<Account>,
}

/// `GET /console/org`.
pub async fn tree(State(c): State<Console>, s: Session) -> Response {
    let body = async {
        let svc = &c.service;
        let tenants = svc.list_tenants(&s.caller, first_page()).await?;
        let mut out = Vec::new();
        for t in &tenants.items {
            let q = ListParams {
                tenant: Some(t.id.clone()),
                ..first_page()
            };
            let folders = svc.list_folders(&s.caller, q.clone()).await?.items;
            let accounts = svc.list_accounts(&s.caller, q).await?.items;
            out.push(Level {
                tenant: t,
                folders,
                accounts,
            });
        }
        // Where the caller may create folders and accounts (a tenant's
        // root or a folder), and which accounts it may move.
        let mut places: Vec<(String, String)> = Vec::new();
        let mut movable: Vec<&Account> = Vec::new();
        let mut folder_choices: Vec<(String, String, String)> = Vec::new();
        for l in &out {
            let t = l.tenant;
            if may(&c, &s, "org/write", &t.id).await {
                places.push((t.id.clone(), format!("{}: the tenant's root", t.name)));
            }
            for f in &l.folders {
                if may(&c, &s, "org/write", &f.id).await {
                    let label = format!("{}: {}", t.name, path_of(f, &l.folders));
                    places.push((f.id.clone(), label.clone()));
                    folder_choices.push((t.id.clone(), f.id.clone(), label));
                }
            }
            for a in &l.accounts {
                if may(&c, &s, "org/write", &a.id).await {
                    movable.push(a);
                }
            }
        }
        let new_tenant = may(&c, &s, "org/write", "/").await;
        Ok::<_, ServiceError>(html! {
            h1 { "Organisation" }
            @if out.is_empty() {
                p.empty { "You may read no tenant's organisation." }
            }
            @for l in &out {
                section.tenant id={ "org-" (l.tenant.id) } aria-label={ "Tenant " (l.tenant.name) } {
                    h2 { "Tenant " (l.tenant.name) " " code { (l.tenant.id) } }
                    p.hint { "Created " (when(&l.tenant.created_at))
                        @if l.tenant.allow_cross_tenant_key_grants { " · allows key grants to other tenants" } }
                    (level(None, &l.folders, &l.accounts))
                }
            }
            @if new_tenant || !places.is_empty() {
                h2 #changes-h { "Change the organisation" }
            }
            @if new_tenant {
                section aria-labelledby="new-tenant-h" {
                    h3 #new-tenant-h { "Create a tenant" }
                    form.stack method="post" action="/console/tenants" aria-labelledby="new-tenant-h" {
                        (csrf(&s))
                        label for="t-name" { "Name" }
                        input #t-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,80}";
                        button #create-tenant type="submit" { "Create tenant" }
                    }
                    p.hint { "A new tenant is empty: create its accounts here, then give someone the Owner role on one." }
                }
            }
            @if !places.is_empty() {
                section aria-labelledby="new-folder-h" {
                    h3 #new-folder-h { "Create a folder" }
                    form.stack method="post" action="/console/folders" aria-labelledby="new-folder-h" {
                        (csrf(&s))
                        label for="f-name" { "Name" }
                        input #f-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,80}";
                        label for="f-place" { "In" }
                        select #f-place name="place" required {
                            @for (id, label) in &places { option value=(id) { (label) } }
                        }
                        button #create-folder type="submit" { "Create folder" }
                    }
                }
                section aria-labelledby="new-account-h" {
                    h3 #new-account-h { "Create an account" }
                    form.stack method="post" action="/console/accounts" aria-labelledby="new-account-h" {
                        (csrf(&s))
                        label for="a-name" { "Name" }
                        input #a-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,80}";
                        label for="a-place" { "In" }
                        select #a-place name="place" required {
                            @for (id, label) in &places { option value=(id) { (label) } }
                        }
                        button #create-account type="submit" { "Create account" }
                    }
                }
            }
            @if !movable.is_empty() {
                section aria-labelledby="move-h" {
                    h3 #move-h { "Move an account" }
                    p.hint { "Within its tenant. The roles it inherited from where it was stop applying; those of where it goes start." }
                    table #move-accounts {
                        caption.visually-hidden { "Accounts you may move" }
                        thead { tr { th scope="col" { "Account" } th scope="col" { "Id" } th scope="col" { "Move to" } } }
                        tbody {
                            @for a in &movable {
                                tr {
                                    td { (a.name) }
                                    td { code { (a.id) } }
                                    td {
                                        form.inline method="post" action={ "/console/accounts/" (a.id) "/move" } {
                                            (csrf(&s))
                                            label.visually-hidden for={ "move-" (a.id) } { "Where to move " (a.name) }
                                            select id={ "move-" (a.id) } name="folder_id" {
                                                option value="" { "its tenant's root" }
                                                @for (_, id, label) in folder_choices.iter().filter(|(t, _, _)| *t == a.tenant_id) {
                                                    option value=(id) selected[a.folder_id.as_deref() == Some(id.as_str())] { (label) }
                                                }
                                            }
                                            button id={ "move-go-" (a.id) } type="submit" aria-label={ "Move " (a.name) } { "Move" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        })
    }
    .await;
    view::page(&s, "org", "Organisation", body)
}

/// The folders and accounts directly under `parent` (`None`: the tenant's
/// root), each folder with its own level inside.
fn level(parent: Option<&str>, folders: &[Folder], accounts: &[Account]) -> Markup {
    let sub: Vec<&Folder> = folders
        .iter()
        .filter(|f| f.parent_id.as_deref() == parent)
        .collect();
    let mut here: BTreeMap<&str, &Account> = BTreeMap::new();
    for a in accounts.iter().filter(|a| a.folder_id.as_deref() == parent) {
        here.insert(a.name.as_str(), a);
    }
    html! {
        @if !sub.is_empty() || !here.is_empty() {
            ul.tree {
                @for f in &sub {
                    li.folder id={ "org-" (f.id) } {
                        span.label { "Folder " strong { (f.name) } " " code { (f.id) } }
                        (level(Some(&f.id), folders, accounts))
                    }
                }
                @for a in here.values() {
                    li.account id={ "org-" (a.id) } {
                        span.label { "Account " strong { (a.name) } " " code { (a.id) } }
                        " · " a href={ "/console/disks?account=" (a.id) } { "its disks" }
                        " · " a href={ "/console/accounts/" (a.id) "/usage" } { "storage used" }
                        " · " a href={ "/console/principals?account=" (a.id) } { "its principals" }
                    }
                }
            }
        }
    }
}

/// A name form (create a tenant).
#[derive(Deserialize)]
pub struct NameForm {
    #[serde(default)]
    name: String,
}

/// `POST /console/tenants`.
pub async fn create_tenant(State(c): State<Console>, p: Posted<NameForm>) -> Response {
    let req = CreateTenant {
        name: p.form.name.trim().to_string(),
    };
    view::go(
        &p.session,
        c.service.create_tenant(&p.session.caller, req).await,
        |t| format!("/console/org#org-{}", t.id),
    )
}

/// A form that creates something in a place: a tenant's root (a tenant
/// id) or a folder (a folder id).
#[derive(Deserialize)]
pub struct PlacedForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    place: String,
}

/// The (tenant, folder) of a place as the API takes them.
fn place(typed: &str) -> (Option<String>, Option<String>) {
    match filled(typed) {
        Some(id) if id.starts_with("fld-") => (None, Some(id)),
        other => (other, None),
    }
}

/// `POST /console/folders`.
pub async fn create_folder(State(c): State<Console>, p: Posted<PlacedForm>) -> Response {
    let (tenant_id, parent_id) = place(&p.form.place);
    let req = CreateFolder {
        name: p.form.name.trim().to_string(),
        tenant_id,
        parent_id,
    };
    view::go(
        &p.session,
        c.service.create_folder(&p.session.caller, req).await,
        |f| format!("/console/org#org-{}", f.id),
    )
}

/// `POST /console/accounts`.
pub async fn create_account(State(c): State<Console>, p: Posted<PlacedForm>) -> Response {
    let (tenant_id, folder_id) = place(&p.form.place);
    let req = CreateAccount {
        name: p.form.name.trim().to_string(),
        tenant_id,
        folder_id,
    };
    view::go(
        &p.session,
        c.service.create_account(&p.session.caller, req).await,
        |a| format!("/console/org#org-{}", a.id),
    )
}

/// The move form.
#[derive(Deserialize)]
pub struct MoveForm {
    /// The destination folder (empty: the tenant's root).
    #[serde(default)]
    folder_id: String,
}

/// `POST /console/accounts/{id}/move`.
pub async fn move_account(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<MoveForm>,
) -> Response {
    let folder = filled(&p.form.folder_id);
    view::go(
        &p.session,
        c.service
            .move_account(&p.session.caller, &id, folder.as_deref())
            .await,
        |a| format!("/console/org#org-{}", a.id),
    )
}
