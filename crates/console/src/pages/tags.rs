//! Tags of a disk, snapshot or image: the section of its page that lists
//! them, each with a remove button, and adds or replaces one (the
//! service's `update_tags`, as `PATCH /v1/tags/{id}`: the resource's write
//! action is needed; `coffer:` keys are Coffer's own).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use coffer_wire::TagRequest;
use maud::{Markup, html};
use serde::Deserialize;

use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf};

/// The tags section of resource `id`'s page.
pub(crate) fn section(s: &Session, id: &str, tags: &BTreeMap<String, String>) -> Markup {
    html! {
        section aria-labelledby="tags-h" {
            h2 #tags-h { "Tags" }
            @if tags.is_empty() {
                p.empty #tags-none { "No tags." }
            } @else {
                table #tags {
                    caption.visually-hidden { "Tags" }
                    thead { tr { th scope="col" { "Key" } th scope="col" { "Value" } th scope="col" { span.visually-hidden { "Remove" } } } }
                    tbody {
                        @for (k, v) in tags {
                            tr {
                                td { code { (k) } }
                                td { (v) }
                                td {
                                    @if !k.starts_with(coffer_types::tag::RESERVED_PREFIX) {
                                        form.inline method="post" action={ "/console/tags/" (id) } {
                                            (csrf(s))
                                            input type="hidden" name="remove" value=(k);
                                            button type="submit" aria-label={ "Remove tag " (k) } { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.inline method="post" action={ "/console/tags/" (id) } {
                (csrf(s))
                label for="tag-key" { "Key" }
                input #tag-key type="text" name="key" required autocomplete="off";
                label for="tag-value" { "Value" }
                input #tag-value type="text" name="value" autocomplete="off";
                button #tag-set type="submit" { "Set tag" }
            }
        }
    }
}

/// The tag form: a key and value to set, or a key to remove.
#[derive(Deserialize)]
pub struct TagForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    remove: String,
}

/// `POST /console/tags/{id}`: back to the resource's page.
pub async fn update(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<TagForm>,
) -> Response {
    let f = p.form;
    let mut req = TagRequest::default();
    if !f.key.trim().is_empty() {
        req.set
            .insert(f.key.trim().to_string(), f.value.trim().to_string());
    }
    if !f.remove.trim().is_empty() {
        req.remove.push(f.remove.trim().to_string());
    }
    match c.service.update_tags(&p.session.caller, &id, req).await {
        Ok(t) => {
            let kind = match t.resource_id.split('-').next() {
                Some("disk") => "disks",
                Some("img") => "images",
                _ => "snapshots",
            };
            Redirect::to(&format!("/console/{kind}/{}#tags-h", t.resource_id)).into_response()
        }
        Err(e) => view::error_page(Some(&p.session), &e),
    }
}
