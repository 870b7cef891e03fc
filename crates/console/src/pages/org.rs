//! The organisation as a tree: each tenant the caller may read, its
//! folders nested as they are, and the accounts in each.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use coffer_service::ServiceError;
use coffer_wire::{Account, Folder, ListParams};
use maud::{Markup, html};

use super::first_page;
use crate::Console;
use crate::session::Session;
use crate::view::{self, when};

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
            out.push((t, folders, accounts));
        }
        Ok::<_, ServiceError>(html! {
            h1 { "Organisation" }
            @if out.is_empty() {
                p.empty { "You may read no tenant's organisation." }
            }
            @for (t, folders, accounts) in &out {
                section.tenant aria-label={ "Tenant " (t.name) } {
                    h2 { "Tenant " (t.name) " " code { (t.id) } }
                    p.hint { "Created " (when(&t.created_at))
                        @if t.allow_cross_tenant_key_grants { " · allows key grants to other tenants" } }
                    (level(None, folders, accounts))
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
                    li.folder {
                        span.label { "Folder " strong { (f.name) } " " code { (f.id) } }
                        (level(Some(&f.id), folders, accounts))
                    }
                }
                @for a in here.values() {
                    li.account {
                        span.label { "Account " strong { (a.name) } " " code { (a.id) } }
                        " · " a href={ "/console/disks?account=" (a.id) } { "its disks" }
                    }
                }
            }
        }
    }
}
