//! A snapshot's or an image's permission, as in AWS: the accounts (or
//! everyone, `*`) that may create disks from the snapshot or launch the
//! image. Shown on the resource's page to whoever may read its sharing,
//! with forms to add and remove accounts.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use coffer_wire::UpdateShare;
use maud::{Markup, html};
use serde::Deserialize;

use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf};

/// The permission section of `id`'s page (`kind`: `snapshots` or
/// `images`), or nothing when the caller may not read its sharing.
pub(crate) async fn section(c: &Console, s: &Session, kind: &str, id: &str) -> Markup {
    let Ok(p) = c.service.permissions(&s.caller, id).await else {
        return html! {};
    };
    let what = if kind == "images" {
        "launch it"
    } else {
        "create disks from it"
    };
    html! {
        section aria-labelledby="perm-h" {
            h2 #perm-h { "Permission" }
            p.hint { "Accounts that may " (what) ", as an AWS " @if kind == "images" { "launch" } @else { "create-volume" } " permission (" code { "*" } ": every account). A customer-key resource also needs a key grant to each account." }
            @if p.principals.is_empty() {
                p.empty #perm-none { "No account besides its own." }
            } @else {
                table #permission {
                    caption.visually-hidden { "Accounts with permission" }
                    thead { tr { th scope="col" { "Account" } th scope="col" { "Status" } th scope="col" { span.visually-hidden { "Remove" } } } }
                    tbody {
                        @for pr in &p.principals {
                            tr {
                                td { code { (pr.principal) } }
                                td { (pr.status) }
                                td {
                                    form.inline method="post" action={ "/console/permissions/" (id) } {
                                        (csrf(s))
                                        input type="hidden" name="remove" value=(pr.principal);
                                        button type="submit" aria-label={ "Remove " (pr.principal) } { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.inline method="post" action={ "/console/permissions/" (id) } {
                (csrf(s))
                label for="perm-add" { "Account id, or * for every account" }
                input #perm-add type="text" name="add" required autocomplete="off" placeholder="acct-…";
                button #perm-grant type="submit" { "Add" }
            }
        }
    }
}

/// The permission form: one account to add or to remove.
#[derive(Deserialize)]
pub struct PermissionForm {
    #[serde(default)]
    add: String,
    #[serde(default)]
    remove: String,
}

/// `POST /console/permissions/{id}`: back to the resource's page.
pub async fn update(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<PermissionForm>,
) -> Response {
    let one = |v: &str| {
        let v = v.trim();
        if v.is_empty() {
            vec![]
        } else {
            vec![v.to_string()]
        }
    };
    let req = UpdateShare {
        add_principals: one(&p.form.add),
        remove_principals: one(&p.form.remove),
        ..UpdateShare::default()
    };
    match c
        .service
        .update_permissions(&p.session.caller, &id, req)
        .await
    {
        Ok(_) => {
            let kind = if id.starts_with("img-") {
                "images"
            } else {
                "snapshots"
            };
            Redirect::to(&format!("/console/{kind}/{}#perm-h", id.trim())).into_response()
        }
        Err(e) => view::error_page(Some(&p.session), &e),
    }
}
