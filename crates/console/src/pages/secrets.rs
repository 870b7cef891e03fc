//! A key vault's secrets (Azure Key Vault secrets): the table on the
//! vault's page (never a value), set one (a new secret or a new version),
//! one secret's page with its versions, "Show value" (a POST, CSRF-checked,
//! answered with a page that shows the value once: never cached, like
//! every console page), delete after typing its name (soft when the vault
//! has soft delete), recover, and purge after typing its name.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use coffer_service::ServiceError;
use coffer_types::Lifecycle;
use coffer_wire::{Secret, SecretValue, SecretValueQuery, SetSecret, Vault};
use maud::{Markup, html};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::keys::{ConfirmForm, deleted_only, number_field, ticked};
use super::{filled, first_page};
use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf, when};

/// A table of secrets, each name a link to its page; never a value.
fn secret_table(id: &str, label: &str, secrets: &[Secret]) -> Markup {
    html! {
        table id=(id) {
            caption.visually-hidden { (label) }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Content type" } th scope="col" { "Version" } th scope="col" { "Updated" } th scope="col" { "State" } } }
            tbody {
                @for sec in secrets {
                    tr {
                        td { a href={ "/console/secrets/" (sec.id) } { (sec.name) } }
                        td { code { (sec.id) } }
                        td { (sec.content_type) }
                        td { (sec.current_version) }
                        td { (when(&sec.updated_at)) }
                        td { span class={ "state " (sec.state) } { (sec.state) } }
                    }
                }
            }
        }
    }
}

/// The form that sets a secret in `vault`: a new one, or (with `name`
/// fixed) a new version of one.
fn set_form(s: &Session, vault: &str, name: Option<&str>) -> Markup {
    html! {
        form.stack method="post" action={ "/console/vaults/" (vault) "/secrets" } {
            (csrf(s))
            @if let Some(n) = name {
                input type="hidden" name="name" value=(n);
            } @else {
                label for="sec-name" { "Name" }
                input #sec-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,80}" aria-describedby="sec-name-hint";
                span.hint #sec-name-hint { "1–80 letters, digits, ., _ or -; an existing name gets a new version" }
            }
            label for="sec-value" { "Value" }
            textarea #sec-value name="value" required rows="4" cols="40" autocomplete="off" spellcheck="false" aria-describedby="sec-value-hint" {}
            span.hint #sec-value-hint { "Text, 1 byte to 25 KiB; it is not shown again until someone presses Show value" }
            label for="sec-b64" { "The value is base64" }
            input #sec-b64 type="checkbox" name="base64" value="on" aria-describedby="sec-b64-hint";
            span.hint #sec-b64-hint { "Tick for binary values typed as base64; they are stored decoded" }
            label for="sec-type" { "Content type (optional)" }
            input #sec-type type="text" name="content_type" placeholder="text/plain" aria-describedby="sec-type-hint";
            span.hint #sec-type-hint { "A label of what the value is; empty: application/octet-stream" }
            button #set-secret type="submit" { @if name.is_some() { "Set a new version" } @else { "Set secret" } }
        }
    }
}

/// The secrets section of a vault's page: its secrets, its deleted ones,
/// and the form to set one. A caller who may read the vault but not list
/// its secrets is told so; other errors are the page's.
pub(crate) async fn section(c: &Console, s: &Session, v: &Vault) -> Result<Markup, ServiceError> {
    let svc = &c.service;
    let live = match svc.list_secrets(&s.caller, &v.id, first_page()).await {
        Ok(p) => p,
        Err(e) if e.status() == 403 => {
            return Ok(html! {
                section aria-labelledby="secrets-h" {
                    h2 #secrets-h { "Secrets" }
                    p.note { "You may not list this vault's secrets (that takes secrets/read on the vault)." }
                }
            });
        }
        Err(e) => return Err(e),
    };
    let deleted = svc.list_secrets(&s.caller, &v.id, deleted_only()).await?;
    let active = v.state == Lifecycle::Active;
    Ok(html! {
        section aria-labelledby="secrets-h" {
            h2 #secrets-h { "Secrets" }
            @if live.items.is_empty() {
                p.empty { "No secrets." }
            } @else {
                (secret_table("secrets", "Secrets", &live.items))
            }
            @if live.next.is_some() { p.note { "Only the first 1,000 are shown." } }
            @if !deleted.items.is_empty() {
                h3 { "Deleted secrets" }
                p.hint { "Recoverable until purged: open one to recover or purge it." }
                (secret_table("deleted-secrets", "Deleted secrets", &deleted.items))
            }
            @if active {
                h3 #set-secret-h { "Set a secret" }
                (set_form(s, &v.id, None))
            }
        }
    })
}

/// The set-a-secret form.
#[derive(Deserialize)]
pub struct SetForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    base64: String,
    #[serde(default)]
    content_type: String,
}

/// `POST /console/vaults/{id}/secrets`: set it, then to the secret's page.
/// The value typed is sent as its UTF-8 bytes, or (ticked) as the base64
/// typed; the service checks both (and the caller) before anything else.
pub async fn set(State(c): State<Console>, Path(id): Path<String>, p: Posted<SetForm>) -> Response {
    let s = &p.session;
    let f = &p.form;
    let value = if ticked(&f.base64) {
        f.value.trim().to_string()
    } else {
        B64.encode(f.value.as_bytes())
    };
    let req = SetSecret {
        name: f.name.trim().to_string(),
        value,
        content_type: filled(&f.content_type),
    };
    view::go(s, c.service.set_secret(&s.caller, &id, req).await, |sec| {
        format!("/console/secrets/{}", sec.id)
    })
}

/// `GET /console/secrets/{id}`: its facts and versions, never a value.
pub async fn show(State(c): State<Console>, s: Session, Path(id): Path<String>) -> Response {
    let body = async {
        let sec = c.service.get_secret(&s.caller, &id).await?;
        // The vault's delete rules, when the caller may read the vault.
        let vault = c.service.get_vault(&s.caller, &sec.vault_id).await.ok();
        let active = sec.state == Lifecycle::Active;
        Ok::<_, ServiceError>(html! {
            h1 { "Secret " (sec.name) }
            dl.facts {
                dt { "Id" } dd { code #secret-id { (sec.id) } }
                dt { "Vault" } dd {
                    a href={ "/console/vaults/" (sec.vault_id) } { code { (sec.vault_id) } }
                    @if let Some(v) = &vault { " (" (v.name) ")" }
                }
                dt { "State" } dd { span #secret-state class={ "state " (sec.state) } { (sec.state) } }
                dt { "Content type" } dd #secret-type { (sec.content_type) }
                dt { "Current version" } dd #secret-version { (sec.current_version) }
                dt { "Account" } dd { code { (sec.account_id) } }
                dt { "Created" } dd { (when(&sec.created_at)) }
                dt { "Updated" } dd { (when(&sec.updated_at)) }
                @if let Some(t) = &sec.deleted_at { dt { "Deleted" } dd { (when(t)) } }
                @if let Some(t) = &sec.purge_after { dt { "Purged after" } dd { (when(t)) } }
            }
            @if active {
                section aria-labelledby="value-h" {
                    h2 #value-h { "Value" }
                    p { "The value is not on this page. Showing it is recorded in the audit log." }
                    form method="post" action={ "/console/secrets/" (sec.id) "/value" } {
                        (csrf(&s))
                        button #show-value type="submit" { "Show value" }
                    }
                }
            }
            section aria-labelledby="versions-h" {
                h2 #versions-h { "Versions" }
                table #secret-versions {
                    caption.visually-hidden { "Versions of the secret" }
                    thead { tr { th scope="col" { "Version" } th scope="col" { "Value" } } }
                    tbody {
                        @for n in (1..=sec.current_version).rev() {
                            tr {
                                td { (n) @if n == sec.current_version { " (current, set " (when(&sec.updated_at)) ")" } }
                                td {
                                    @if active {
                                        form method="post" action={ "/console/secrets/" (sec.id) "/value" } {
                                            (csrf(&s))
                                            input type="hidden" name="version" value=(n);
                                            button.link type="submit" aria-label={ "Show value of version " (n) } { "Show value" }
                                        }
                                    } @else {
                                        "unreadable while deleted"
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if active {
                section aria-labelledby="new-version-h" {
                    h2 #new-version-h { "Set a new version" }
                    (set_form(&s, &sec.vault_id, Some(&sec.name)))
                }
                section.danger aria-labelledby="delete-secret-h" {
                    h2 #delete-secret-h { "Delete this secret" }
                    @match &vault {
                        Some(v) if !v.soft_delete => {
                            p { "Its vault has no soft delete: deleting the secret purges it at once, and every version of its value is destroyed for good." }
                        }
                        Some(v) => {
                            p { "Its value cannot be read until it is recovered (possible for " (v.retention_days) " days); after that it is purged." }
                        }
                        None => {
                            p { "Its value cannot be read until it is recovered." }
                        }
                    }
                    p { "Type the secret's name to confirm." }
                    (view::confirm_by_name(&s, &format!("/console/secrets/{}/delete", sec.id), "confirm-secret", "Secret name", Some("delete-secret"), "Delete secret"))
                }
            } @else {
                section aria-labelledby="recover-secret-h" {
                    h2 #recover-secret-h { "Recover" }
                    form method="post" action={ "/console/secrets/" (sec.id) "/recover" } {
                        (csrf(&s))
                        button #recover-secret type="submit" { "Recover secret" }
                    }
                }
                section.danger aria-labelledby="purge-secret-h" {
                    h2 #purge-secret-h { "Purge this secret" }
                    p { "Purging is permanent: every version of its value is destroyed, and whatever it unlocks (a passphrase of a volume, a password) can no longer be opened with it from here." }
                    @if vault.as_ref().is_some_and(|v| v.purge_protection) {
                        p { "Its vault has purge protection: this is refused until " (sec.purge_after.as_deref().map(when).unwrap_or_default()) "." }
                    }
                    p { "Type the secret's name to confirm." }
                    (view::confirm_by_name(&s, &format!("/console/secrets/{}/purge", sec.id), "confirm-purge-secret", "Secret name", Some("purge-secret"), "Purge secret"))
                }
            }
        })
    }
    .await;
    view::page(&s, "keys", "Secret", body)
}

/// The show-value form: a version, or empty for the newest.
#[derive(Deserialize)]
pub struct ValueForm {
    #[serde(default)]
    version: String,
}

/// `POST /console/secrets/{id}/value`: the value, shown only in this
/// answer (a POST, so only a page of this session asks for it; never
/// cached). Audited by the service as the API's read is.
pub async fn value(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<ValueForm>,
) -> Response {
    let s = &p.session;
    let version = match number_field(
        s,
        &p.form.version,
        "SecretNotFound",
        "give a version number (1, 2, …), or leave it empty for the newest.",
    ) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    match c
        .service
        .get_secret_value(&s.caller, &id, SecretValueQuery { version })
        .await
    {
        Ok(v) => view::page(s, "keys", "Secret value", Ok(shown(&v))),
        Err(e) => view::error_page(Some(s), &e),
    }
}

/// The page that shows a value: as text when it is UTF-8 text, and as
/// base64 always.
fn shown(v: &SecretValue) -> Markup {
    let bytes = Zeroizing::new(B64.decode(&v.value).unwrap_or_default());
    let text = std::str::from_utf8(&bytes)
        .ok()
        .filter(|t| !t.chars().any(|c| c.is_control() && !c.is_whitespace()));
    html! {
        h1 { "Secret " (v.name) ", version " (v.version) }
        div.alert.secret role="status" {
            p { "This is the secret's value: whoever sees it has it. It is shown only now, and this reading is in the audit log." }
        }
        dl.facts {
            dt { "Secret" } dd { code { (v.secret_id) } }
            dt { "Version" } dd #value-version { (v.version) }
            dt { "Content type" } dd { (v.content_type) }
            @if let Some(t) = text {
                dt { "Value" } dd { pre { code #secret-value { (t) } } }
            } @else {
                dt { "Value" } dd { "binary (" (bytes.len()) " bytes): see its base64 below" }
            }
            dt { "Base64" } dd { code #secret-value-b64 { (v.value) } }
        }
        p { a href={ "/console/secrets/" (v.secret_id) } { "Back to the secret" } }
    }
}

/// `POST /console/secrets/{id}/delete`: only when the name typed is the
/// secret's; back to its page (deleted, to recover), or to its vault when
/// it was purged at once.
pub async fn delete(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<ConfirmForm>,
) -> Response {
    let s = &p.session;
    if let Err(refused) = view::named(
        s,
        c.service.get_secret(&s.caller, &id).await,
        |sec| sec.name.as_str(),
        &p.form.confirm,
        ("Not deleted", "delete this secret"),
    ) {
        return *refused;
    }
    match c.service.delete_secret(&s.caller, &id).await {
        Ok(sec) if sec.state == Lifecycle::Deleted => {
            Redirect::to(&format!("/console/secrets/{}", sec.id)).into_response()
        }
        Ok(sec) => Redirect::to(&format!("/console/vaults/{}", sec.vault_id)).into_response(),
        Err(e) => view::error_page(Some(s), &e),
    }
}

/// `POST /console/secrets/{id}/recover`.
pub async fn recover(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    view::go(
        &p.session,
        c.service.recover_secret(&p.session.caller, &id).await,
        |sec| format!("/console/secrets/{}", sec.id),
    )
}

/// `POST /console/secrets/{id}/purge`: only when the name typed is the
/// secret's; then to its vault.
pub async fn purge(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<ConfirmForm>,
) -> Response {
    let s = &p.session;
    if let Err(refused) = view::named(
        s,
        c.service.get_secret(&s.caller, &id).await,
        |sec| sec.name.as_str(),
        &p.form.confirm,
        ("Not purged", "purge this secret"),
    ) {
        return *refused;
    }
    view::go(s, c.service.purge_secret(&s.caller, &id).await, |sec| {
        format!("/console/vaults/{}", sec.vault_id)
    })
}
