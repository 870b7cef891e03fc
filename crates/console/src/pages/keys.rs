//! Key vaults, keys and disk encryption sets: the vaults list, one vault's
//! page with its keys, one key's page (its versions and what it protects:
//! the sets using it and the disks and snapshots under them), rotate,
//! disable after typing the key's name (the page says first what becomes
//! unreadable), enable, and the encryption sets with the disks under each.
//! Changes: create a vault, delete it (after typing its name), recover or
//! purge it; create a key, delete, recover or purge it (purge names what
//! becomes unreadable for good); create an encryption set. A vault's
//! secrets are in [`super::secrets`], a key's grants in [`super::grants`].

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use coffer_service::ServiceError;
use coffer_types::{EncryptionType, KeyState, Lifecycle};
use coffer_wire::{
    CreateEncryptionSet, CreateKey, CreateVault, Disk, EncryptionSet, Key, ListParams, RotateKey,
    Snapshot, UpdateKey, Vault,
};
use maud::{Markup, html};
use serde::Deserialize;

use super::disks::disk_table;
use super::snapshots::snapshot_table;
use super::{filled, first_page, grants, secrets};
use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf, when};

/// `GET /console/vaults`.
pub async fn vaults(State(c): State<Console>, s: Session) -> Response {
    let body = async {
        let page = c.service.list_vaults(&s.caller, first_page()).await?;
        let deleted = c.service.list_vaults(&s.caller, deleted_only()).await?;
        let regions = c.service.regions();
        Ok::<_, ServiceError>(html! {
            h1 { "Key vaults" }
            p { a href="/console/encryption-sets" { "Disk encryption sets" } }
            @if page.items.is_empty() {
                p.empty { "No key vaults. Make one with " code { "coffer vault create --name N --purge-protection" } "." }
            } @else {
                table #vaults {
                    caption.visually-hidden { "Key vaults" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Region" } th scope="col" { "State" } th scope="col" { "Soft delete" } th scope="col" { "Purge protection" } th scope="col" { "Created" } } }
                    tbody {
                        @for v in &page.items {
                            tr {
                                td { a href={ "/console/vaults/" (v.id) } { (v.name) } }
                                td { code { (v.id) } }
                                td { (v.region) }
                                td { span class={ "state " (v.state) } { (v.state) } }
                                td { (soft_delete(v)) }
                                td { (on_off(v.purge_protection)) }
                                td { (when(&v.created_at)) }
                            }
                        }
                    }
                }
            }
            @if page.next.is_some() { p.note { "Only the first 1,000 are shown." } }
            @if !deleted.items.is_empty() {
                section aria-labelledby="deleted-vaults-h" {
                    h2 #deleted-vaults-h { "Deleted key vaults" }
                    p.hint { "Recoverable, with their keys and secrets, until they are purged: open one to recover or purge it." }
                    table #deleted-vaults {
                        caption.visually-hidden { "Deleted key vaults" }
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Region" } th scope="col" { "Deleted" } th scope="col" { "Purged after" } } }
                        tbody {
                            @for v in &deleted.items {
                                tr {
                                    td { a href={ "/console/vaults/" (v.id) } { (v.name) } }
                                    td { code { (v.id) } }
                                    td { (v.region) }
                                    td { (v.deleted_at.as_deref().map(when).unwrap_or_default()) }
                                    td { (v.purge_after.as_deref().map(when).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="create-vault-h" {
                h2 #create-vault-h { "Create a key vault" }
                form.stack method="post" action="/console/vaults" {
                    (csrf(&s))
                    label for="v-name" { "Name" }
                    input #v-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,80}" aria-describedby="v-name-hint";
                    span.hint #v-name-hint { "1–80 letters, digits, ., _ or -; unique in the account until purged" }
                    label for="v-region" { "Region" }
                    select #v-region name="region" required {
                        @for r in &regions { option value=(r.name) { (r.name) } }
                    }
                    label for="v-retention" { "Retention (days)" }
                    input #v-retention type="text" name="retention_days" inputmode="numeric" placeholder="90" aria-describedby="v-retention-hint";
                    span.hint #v-retention-hint { "How long a deleted vault, key or secret stays recoverable: 7 to 90 days (empty: 90)" }
                    label for="v-soft" { "Soft delete" }
                    input #v-soft type="checkbox" name="soft_delete" value="on" checked aria-describedby="v-soft-hint";
                    span.hint #v-soft-hint { "Deletes are recoverable for the retention period. Disk encryption needs it." }
                    label for="v-purge" { "Purge protection" }
                    input #v-purge type="checkbox" name="purge_protection" value="on" aria-describedby="v-purge-hint";
                    span.hint #v-purge-hint { "Nothing deleted can be purged before its retention period ends. Once on, it stays on. Disk encryption needs it." }
                    button #create-vault type="submit" { "Create key vault" }
                }
            }
        })
    }
    .await;
    view::page(&s, "keys", "Key vaults", body)
}

/// The list parameters of the first page of the soft-deleted ones.
pub(crate) fn deleted_only() -> ListParams {
    ListParams {
        state: Some("deleted".into()),
        ..first_page()
    }
}

/// A whole number typed into a form (`None` when left empty), or a 400
/// page saying what to type (`hint`).
pub(crate) fn number_field(
    s: &Session,
    typed: &str,
    title: &str,
    hint: &str,
) -> Result<Option<u32>, Box<Response>> {
    let typed = typed.trim();
    if typed.is_empty() {
        return Ok(None);
    }
    typed.parse().map(Some).map_err(|_| {
        Box::new(view::refusal(
            Some(s),
            StatusCode::BAD_REQUEST,
            title,
            &format!("'{typed}' is not a whole number: {hint}"),
        ))
    })
}

/// A checkbox's field: ticked or not.
pub(crate) fn ticked(field: &str) -> bool {
    !field.is_empty() && field != "off"
}

/// `on` or `off`.
fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// A vault's soft-delete setting, with its retention.
fn soft_delete(v: &Vault) -> String {
    if v.soft_delete {
        format!("on, {} days", v.retention_days)
    } else {
        "off".to_string()
    }
}

/// `GET /console/vaults/{id}`.
pub async fn vault(State(c): State<Console>, s: Session, Path(id): Path<String>) -> Response {
    let body = async {
        let v = c.service.get_vault(&s.caller, &id).await?;
        let keys = c.service.list_keys(&s.caller, &v.id, first_page()).await?;
        let deleted_keys = c.service.list_keys(&s.caller, &v.id, deleted_only()).await?;
        let secrets = secrets::section(&c, &s, &v).await?;
        let active = v.state == Lifecycle::Active;
        Ok::<_, ServiceError>(html! {
            h1 { "Key vault " (v.name) }
            @if !active {
                div.alert role="status" {
                    p { "This vault is deleted: its keys wrap and unwrap nothing and its secrets cannot be read until it is recovered." }
                }
            }
            dl.facts {
                dt { "Id" } dd { code #vault-id { (v.id) } }
                dt { "State" } dd { span #vault-state class={ "state " (v.state) } { (v.state) } }
                dt { "Region" } dd { (v.region) }
                dt { "Account" } dd { code { (v.account_id) } }
                dt { "Soft delete" } dd { (soft_delete(&v)) }
                dt { "Purge protection" } dd { (on_off(v.purge_protection)) }
                dt { "Key store" } dd {
                    @if let Some(e) = &v.external {
                        (e.kind) " at " code { (e.address) }
                        @if !e.mount.is_empty() { " (mount " code { (e.mount) } ")" }
                    } @else {
                        "Coffer's built-in store"
                    }
                }
                @if let Some(d) = &v.deleted_at { dt { "Deleted" } dd { (when(d)) } }
                @if let Some(p) = &v.purge_after { dt { "Purged after" } dd { (when(p)) } }
                dt { "Created" } dd { (when(&v.created_at)) }
            }
            section aria-labelledby="keys-h" {
                h2 #keys-h { "Keys" }
                (key_table(&keys.items))
                @if keys.next.is_some() { p.note { "Only the first 1,000 are shown." } }
                @if !deleted_keys.items.is_empty() {
                    h3 { "Deleted keys" }
                    p.hint { "Recoverable until purged: open one to recover or purge it." }
                    (key_table(&deleted_keys.items))
                }
            }
            @if active {
                section aria-labelledby="create-key-h" {
                    h2 #create-key-h { "Create a key" }
                    form.stack method="post" action={ "/console/vaults/" (v.id) "/keys" } {
                        (csrf(&s))
                        label for="k-name" { "Name" }
                        input #k-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,80}" aria-describedby="k-name-hint";
                        span.hint #k-name-hint { "1–80 letters, digits, ., _ or -; unique in the vault until purged" }
                        label for="k-type" { "Type and size" }
                        select #k-type name="key_type" {
                            @for t in KEY_TYPES { option value=(t) { (t) } }
                        }
                        label for="k-rotation" { "Rotate every (days)" }
                        input #k-rotation type="text" name="rotation_days" inputmode="numeric" aria-describedby="k-rotation-hint";
                        span.hint #k-rotation-hint { "1 to 3650 days after the newest version; empty: rotated by hand only" }
                        button #create-key type="submit" { "Create key" }
                    }
                    p.hint { "The key is generated in the vault's store. To import material (BYOK), use " code { "coffer key create --material" } "." }
                }
            }
            (secrets)
            @if active {
                section.danger aria-labelledby="delete-vault-h" {
                    h2 #delete-vault-h { "Delete this key vault" }
                    @if v.soft_delete {
                        p { "Its keys and secrets go with it: until it is recovered (possible for " (v.retention_days) " days), every disk and snapshot under its keys is unreadable and its secrets cannot be read." }
                    } @else {
                        p { "This vault has no soft delete: deleting it purges it at once, with its keys and secrets. Every disk and snapshot under its keys becomes unreadable for good." }
                    }
                    p { "Type the vault's name to confirm." }
                    (view::confirm_by_name(&s, &format!("/console/vaults/{}/delete", v.id), "confirm-vault", "Vault name", Some("delete-vault"), "Delete key vault"))
                }
            } @else {
                section aria-labelledby="recover-vault-h" {
                    h2 #recover-vault-h { "Recover" }
                    form method="post" action={ "/console/vaults/" (v.id) "/recover" } {
                        (csrf(&s))
                        button #recover-vault type="submit" { "Recover key vault" }
                    }
                    p.hint { "Its keys and secrets come back with it." }
                }
                section.danger aria-labelledby="purge-vault-h" {
                    h2 #purge-vault-h { "Purge this key vault" }
                    p { "Purging is permanent: the material of every key in it is destroyed, so every disk and snapshot under those keys can never be read again, and every secret in it is gone." }
                    @if v.purge_protection {
                        p { "Purge protection is on: this is refused until " (v.purge_after.as_deref().map(when).unwrap_or_default()) "." }
                    }
                    p { "Type the vault's name to confirm." }
                    (view::confirm_by_name(&s, &format!("/console/vaults/{}/purge", v.id), "confirm-purge-vault", "Vault name", Some("purge-vault"), "Purge key vault"))
                }
            }
        })
    }
    .await;
    view::page(&s, "keys", "Key vault", body)
}

/// The key types (and sizes) a key can be made with.
const KEY_TYPES: &[&str] = &["AES256", "RSA2048", "RSA3072", "RSA4096"];

/// A form whose one field is a name typed to confirm.
#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    pub(crate) confirm: String,
}

/// The create-a-vault form.
#[derive(Deserialize)]
pub struct VaultForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    retention_days: String,
    #[serde(default)]
    soft_delete: String,
    #[serde(default)]
    purge_protection: String,
}

/// `POST /console/vaults`: a new vault in the caller's home account.
pub async fn create_vault(State(c): State<Console>, p: Posted<VaultForm>) -> Response {
    let s = &p.session;
    let f = &p.form;
    let retention_days = match number_field(
        s,
        &f.retention_days,
        "InvalidRetention",
        "give the days a deleted vault stays recoverable, 7 to 90, or leave it empty for 90.",
    ) {
        Ok(d) => d,
        Err(refused) => return *refused,
    };
    let req = CreateVault {
        name: f.name.trim().to_string(),
        region: filled(&f.region),
        account_id: None,
        soft_delete: Some(ticked(&f.soft_delete)),
        retention_days,
        purge_protection: Some(ticked(&f.purge_protection)),
        external: None,
    };
    view::go(s, c.service.create_vault(&s.caller, req).await, |v| {
        format!("/console/vaults/{}", v.id)
    })
}

/// `POST /console/vaults/{id}/delete`: only when the name typed is the
/// vault's; back to its page (deleted, to recover), or to the list when
/// it was purged at once.
pub async fn delete_vault(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<ConfirmForm>,
) -> Response {
    let s = &p.session;
    if let Err(refused) = view::named(
        s,
        c.service.get_vault(&s.caller, &id).await,
        |v| v.name.as_str(),
        &p.form.confirm,
        ("Not deleted", "delete this key vault"),
    ) {
        return *refused;
    }
    match c.service.delete_vault(&s.caller, &id).await {
        Ok(v) if v.state == Lifecycle::Deleted => {
            Redirect::to(&format!("/console/vaults/{}", v.id)).into_response()
        }
        Ok(_) => Redirect::to("/console/vaults").into_response(),
        Err(e) => view::error_page(Some(s), &e),
    }
}

/// `POST /console/vaults/{id}/recover`.
pub async fn recover_vault(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    view::go(
        &p.session,
        c.service.recover_vault(&p.session.caller, &id).await,
        |v| format!("/console/vaults/{}", v.id),
    )
}

/// `POST /console/vaults/{id}/purge`: only when the name typed is the
/// vault's.
pub async fn purge_vault(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<ConfirmForm>,
) -> Response {
    let s = &p.session;
    if let Err(refused) = view::named(
        s,
        c.service.get_vault(&s.caller, &id).await,
        |v| v.name.as_str(),
        &p.form.confirm,
        ("Not purged", "purge this key vault"),
    ) {
        return *refused;
    }
    view::go(s, c.service.purge_vault(&s.caller, &id).await, |_| {
        "/console/vaults".to_string()
    })
}

/// The create-a-key form.
#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    key_type: String,
    #[serde(default)]
    rotation_days: String,
}

/// `POST /console/vaults/{id}/keys`: a key generated in the vault.
pub async fn create_key(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<KeyForm>,
) -> Response {
    let s = &p.session;
    let f = &p.form;
    let rotation_days = match number_field(
        s,
        &f.rotation_days,
        "InvalidKeyOperation",
        "give a rotation period of 1 to 3650 days, or leave it empty to rotate by hand.",
    ) {
        Ok(d) => d,
        Err(refused) => return *refused,
    };
    let req = CreateKey {
        name: f.name.trim().to_string(),
        key_type: filled(&f.key_type),
        material: None,
        wrapped_material: None,
        disabled: None,
        not_before: None,
        expires_at: None,
        rotation_days,
    };
    view::go(s, c.service.create_key(&s.caller, &id, req).await, |k| {
        format!("/console/keys/{}", k.id)
    })
}

/// A key's rotation policy, as people read it.
fn rotation(k: &Key) -> String {
    match k.rotation_days {
        Some(d) => format!("every {d} days"),
        None => "by hand".to_string(),
    }
}

/// A table of keys, each name a link to its page.
fn key_table(keys: &[Key]) -> Markup {
    html! {
        @if keys.is_empty() {
            p.empty { "No keys. Make one with " code { "coffer key create --vault V --name N" } "." }
        } @else {
            table #keys {
                caption.visually-hidden { "Keys" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Type" } th scope="col" { "Enabled" } th scope="col" { "State" } th scope="col" { "Current version" } th scope="col" { "Rotation" } } }
                tbody {
                    @for k in keys {
                        tr {
                            td { a href={ "/console/keys/" (k.id) } { (k.name) } }
                            td { code { (k.id) } }
                            td { (k.key_type) }
                            td { span class={ "state " (k.enabled) } { (k.enabled) } }
                            td { (k.state) }
                            td { (k.current_version) }
                            td { (rotation(k)) }
                        }
                    }
                }
            }
        }
    }
}

/// What a key protects: the sets using it, and the disks and snapshots
/// the caller can see under it (directly or through those sets).
struct Protected {
    sets: Vec<EncryptionSet>,
    disks: Vec<Disk>,
    snapshots: Vec<Snapshot>,
    /// A list had more than one page: only the first was looked at.
    partial: bool,
}

impl Protected {
    /// What the caller can see that `key_id` protects.
    async fn of(c: &Console, s: &Session, key_id: &str) -> Result<Self, ServiceError> {
        let svc = &c.service;
        let sets = svc.list_encryption_sets(&s.caller, first_page()).await?;
        let disks = svc.list_disks(&s.caller, first_page()).await?;
        let snaps = svc.list_snapshots(&s.caller, first_page()).await?;
        let partial = sets.next.is_some() || disks.next.is_some() || snaps.next.is_some();
        let sets: Vec<EncryptionSet> = sets
            .items
            .into_iter()
            .filter(|es| es.key_id == key_id)
            .collect();
        let ids: BTreeSet<&str> = sets.iter().map(|es| es.id.as_str()).collect();
        let under = |e: &coffer_wire::Encryption| {
            e.key_id == key_id
                || e.encryption_set_id
                    .as_deref()
                    .is_some_and(|id| ids.contains(id))
        };
        let disks = disks
            .items
            .into_iter()
            .filter(|d| under(&d.encryption))
            .collect();
        let snapshots = snaps
            .items
            .into_iter()
            .filter(|sn| under(&sn.encryption))
            .collect();
        Ok(Self {
            sets,
            disks,
            snapshots,
            partial,
        })
    }
}

/// `GET /console/keys/{id}`.
pub async fn key(State(c): State<Console>, s: Session, Path(id): Path<String>) -> Response {
    let body = async {
        let k = c.service.get_key(&s.caller, &id).await?;
        let versions = c.service.key_versions(&s.caller, &k.id).await?;
        let p = Protected::of(&c, &s, &k.id).await?;
        // The vault's delete rules, when the caller may read the vault.
        let vault = c.service.get_vault(&s.caller, &k.vault_id).await.ok();
        let grants = grants::section(&c, &s, &k).await?;
        let enabled = k.enabled == KeyState::Enabled;
        let active = k.state == Lifecycle::Active;
        Ok::<_, ServiceError>(html! {
            h1 { "Key " (k.name) }
            dl.facts {
                dt { "Id" } dd { code #key-id { (k.id) } }
                dt { "Vault" } dd { a href={ "/console/vaults/" (k.vault_id) } { code { (k.vault_id) } } }
                dt { "Type" } dd { (k.key_type) }
                dt { "Enabled" } dd { span #key-enabled class={ "state " (k.enabled) } { (k.enabled) } }
                dt { "State" } dd { span #key-state class={ "state " (k.state) } { (k.state) } }
                dt { "Current version" } dd #key-version { (k.current_version) }
                dt { "Rotation" } dd { (rotation(&k)) }
                dt { "Region" } dd { (k.region) }
                dt { "Account" } dd { code { (k.account_id) } }
                @if let Some(t) = &k.not_before { dt { "Not before" } dd { (when(t)) } }
                @if let Some(t) = &k.expires_at { dt { "Expires" } dd { (when(t)) } }
                @if let Some(t) = &k.deleted_at { dt { "Deleted" } dd { (when(t)) } }
                @if let Some(t) = &k.purge_after { dt { "Purged after" } dd { (when(t)) } }
                dt { "Created" } dd { (when(&k.created_at)) }
            }
            section aria-labelledby="versions-h" {
                h2 #versions-h { "Versions" }
                table #versions {
                    caption.visually-hidden { "Versions of the key" }
                    thead { tr { th scope="col" { "Version" } th scope="col" { "Origin" } th scope="col" { "Created" } th scope="col" { "Public key" } } }
                    tbody {
                        @for v in &versions.items {
                            tr {
                                td { (v.version) @if v.version == k.current_version { " (current)" } }
                                td { (v.origin) }
                                td { (when(&v.created_at)) }
                                td {
                                    @if let Some(pem) = &v.public_key {
                                        details { summary { "PEM" } pre { code { (pem) } } }
                                    } @else {
                                        "—"
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section #protects aria-labelledby="protects-h" {
                h2 #protects-h { "What it protects" }
                @if p.partial { p.note { "Only the first 1,000 sets, disks and snapshots were looked at." } }
                h3 { "Encryption sets" }
                (set_table(&p.sets))
                h3 { "Disks" }
                (disk_table(&p.disks))
                h3 { "Snapshots" }
                (snapshot_table(&p.snapshots))
            }
            @if active {
                section aria-labelledby="actions-h" {
                    h2 #actions-h { "Actions" }
                    div.actions {
                        form method="post" action={ "/console/keys/" (k.id) "/rotate" } {
                            (csrf(&s))
                            button #rotate type="submit" { "Rotate (add a version)" }
                        }
                        @if !enabled {
                            form method="post" action={ "/console/keys/" (k.id) "/enable" } {
                                (csrf(&s))
                                button #enable type="submit" { "Enable" }
                            }
                        }
                    }
                    p.hint { "A rotation makes a new version current; older versions still unwrap, and the sets' data keys are re-wrapped in the background." }
                    p { a href={ "/console/encryption-sets?key=" (k.id) "#create-set-h" } { "Make a disk encryption set with this key" } }
                }
                @if enabled {
                    section.danger aria-labelledby="disable-h" {
                        h2 #disable-h { "Disable this key" }
                        p { "A disabled key wraps and unwraps nothing: until it is enabled again, these become unreadable (attached disks are cut off, and none opens):" }
                        @if p.disks.is_empty() && p.snapshots.is_empty() {
                            p #unreadable { "Nothing today." }
                        } @else {
                            ul #unreadable {
                                @for d in &p.disks { li { "disk " (d.name) " (" code { (d.id) } ")" } }
                                @for sn in &p.snapshots { li { "snapshot " (sn.name) " (" code { (sn.id) } ")" } }
                            }
                        }
                        p { "Type the key's name to confirm." }
                        (view::confirm_by_name(&s, &format!("/console/keys/{}/disable", k.id), "confirm", "Key name", Some("disable"), "Disable key"))
                    }
                }
            }
            (grants)
            @if active {
                section.danger aria-labelledby="delete-key-h" {
                    h2 #delete-key-h { "Delete this key" }
                    @match &vault {
                        Some(v) if !v.soft_delete => {
                            p { "Its vault has no soft delete: deleting the key purges it at once, and what it protects (listed above) becomes unreadable for good." }
                        }
                        Some(v) => {
                            p { "A deleted key wraps and unwraps nothing: until it is recovered (possible for " (v.retention_days) " days), what it protects (listed above) is unreadable." }
                        }
                        None => {
                            p { "A deleted key wraps and unwraps nothing: until it is recovered, what it protects (listed above) is unreadable." }
                        }
                    }
                    p { "Type the key's name to confirm." }
                    (view::confirm_by_name(&s, &format!("/console/keys/{}/delete", k.id), "confirm-delete", "Key name", Some("delete-key"), "Delete key"))
                }
            } @else {
                section aria-labelledby="recover-key-h" {
                    h2 #recover-key-h { "Recover" }
                    form method="post" action={ "/console/keys/" (k.id) "/recover" } {
                        (csrf(&s))
                        button #recover-key type="submit" { "Recover key" }
                    }
                }
                section.danger aria-labelledby="purge-key-h" {
                    h2 #purge-key-h { "Purge this key" }
                    p { "Purging is permanent: the key's material is destroyed, and these become unreadable for good (no recovery, no copy):" }
                    @if p.disks.is_empty() && p.snapshots.is_empty() {
                        p #purge-unreadable { "Nothing you can see today." }
                    } @else {
                        ul #purge-unreadable {
                            @for d in &p.disks { li { "disk " (d.name) " (" code { (d.id) } ")" } }
                            @for sn in &p.snapshots { li { "snapshot " (sn.name) " (" code { (sn.id) } ")" } }
                        }
                    }
                    @if vault.as_ref().is_some_and(|v| v.purge_protection) {
                        p { "Its vault has purge protection: this is refused until " (k.purge_after.as_deref().map(when).unwrap_or_default()) "." }
                    }
                    p { "Type the key's name to confirm." }
                    (view::confirm_by_name(&s, &format!("/console/keys/{}/purge", k.id), "confirm-purge", "Key name", Some("purge-key"), "Purge key"))
                }
            }
        })
    }
    .await;
    view::page(&s, "keys", "Key", body)
}

/// `POST /console/keys/{id}/rotate`: a new generated version, then back
/// to the key.
pub async fn rotate(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    view::go(
        &p.session,
        c.service
            .rotate_key(&p.session.caller, &id, RotateKey::default())
            .await,
        |k| format!("/console/keys/{}", k.id),
    )
}

/// The disable form: the key's name, typed.
#[derive(Deserialize)]
pub struct DisableForm {
    #[serde(default)]
    confirm: String,
}

/// `POST /console/keys/{id}/disable`: only when the name typed is the
/// key's.
pub async fn disable(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<DisableForm>,
) -> Response {
    let s = &p.session;
    if let Err(refused) = view::named(
        s,
        c.service.get_key(&s.caller, &id).await,
        |k| k.name.as_str(),
        &p.form.confirm,
        ("Not disabled", "disable this key"),
    ) {
        return *refused;
    }
    set_enabled(&c, s, &id, false).await
}

/// `POST /console/keys/{id}/enable`.
pub async fn enable(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    set_enabled(&c, &p.session, &id, true).await
}

/// Enable or disable a key, then back to its page.
async fn set_enabled(c: &Console, s: &Session, id: &str, on: bool) -> Response {
    let req = UpdateKey {
        enabled: Some(on),
        not_before: None,
        expires_at: None,
        rotation_days: None,
    };
    view::go(s, c.service.update_key(&s.caller, id, req).await, |k| {
        format!("/console/keys/{}", k.id)
    })
}

/// `POST /console/keys/{id}/delete`: only when the name typed is the
/// key's; back to its page (deleted, to recover), or to its vault when it
/// was purged at once.
pub async fn delete_key(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<ConfirmForm>,
) -> Response {
    let s = &p.session;
    if let Err(refused) = view::named(
        s,
        c.service.get_key(&s.caller, &id).await,
        |k| k.name.as_str(),
        &p.form.confirm,
        ("Not deleted", "delete this key"),
    ) {
        return *refused;
    }
    match c.service.delete_key(&s.caller, &id).await {
        Ok(k) if k.state == Lifecycle::Deleted => {
            Redirect::to(&format!("/console/keys/{}", k.id)).into_response()
        }
        Ok(k) => Redirect::to(&format!("/console/vaults/{}", k.vault_id)).into_response(),
        Err(e) => view::error_page(Some(s), &e),
    }
}

/// `POST /console/keys/{id}/recover`.
pub async fn recover_key(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    view::go(
        &p.session,
        c.service.recover_key(&p.session.caller, &id).await,
        |k| format!("/console/keys/{}", k.id),
    )
}

/// `POST /console/keys/{id}/purge`: only when the name typed is the key's;
/// then to its vault.
pub async fn purge_key(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<ConfirmForm>,
) -> Response {
    let s = &p.session;
    let k = match c.service.get_key(&s.caller, &id).await {
        Ok(k) => k,
        Err(e) => return view::error_page(Some(s), &e),
    };
    if let Some(refused) =
        view::unless_named(s, &p.form.confirm, &k.name, "Not purged", "purge this key")
    {
        return refused;
    }
    view::go(s, c.service.purge_key(&s.caller, &id).await, |k| {
        format!("/console/vaults/{}", k.vault_id)
    })
}

/// The key version a set uses, as people read it.
fn set_version(es: &EncryptionSet) -> String {
    match es.key_version {
        Some(v) => format!("{v} (pinned)"),
        None => "the newest".to_string(),
    }
}

/// How far a set's data keys follow its key.
fn rewrap(es: &EncryptionSet) -> String {
    let r = &es.rewrap;
    format!(
        "{} of {} data keys under version {}{}",
        r.data_keys_current,
        r.data_keys,
        r.key_version,
        if r.complete { "" } else { " (re-wrapping)" }
    )
}

/// A table of encryption sets, each name a link to its page.
fn set_table(sets: &[EncryptionSet]) -> Markup {
    html! {
        @if sets.is_empty() {
            p.empty { "No encryption sets." }
        } @else {
            table {
                caption.visually-hidden { "Encryption sets" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Type" } th scope="col" { "Key" } th scope="col" { "Key version" } th scope="col" { "Region" } th scope="col" { "Identity reaches key" } th scope="col" { "Created" } } }
                tbody {
                    @for es in sets {
                        tr {
                            td { a href={ "/console/encryption-sets/" (es.id) } { (es.name) } }
                            td { code { (es.id) } }
                            td { (es.encryption_type) }
                            td { a href={ "/console/keys/" (es.key_id) } { code { (es.key_id) } } }
                            td { (set_version(es)) }
                            td { (es.region) }
                            td { @if es.identity_has_key_access { "yes" } @else { "no" } }
                            td { (when(&es.created_at)) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/encryption-sets`.
pub async fn encryption_sets(
    State(c): State<Console>,
    s: Session,
    Query(q): Query<SetQuery>,
) -> Response {
    let body = async {
        let page = c
            .service
            .list_encryption_sets(&s.caller, first_page())
            .await?;
        Ok::<_, ServiceError>(html! {
            h1 { "Disk encryption sets" }
            p { a href="/console/vaults" { "Key vaults" } }
            @if page.items.is_empty() {
                p.empty { "No encryption sets. Make one with " code { "coffer encryption-set create --name N --key KEY" } "." }
            } @else {
                (set_table(&page.items))
            }
            @if page.next.is_some() { p.note { "Only the first 1,000 are shown." } }
            section aria-labelledby="create-set-h" {
                h2 #create-set-h { "Create a disk encryption set" }
                form.stack method="post" action="/console/encryption-sets" {
                    (csrf(&s))
                    label for="es-name" { "Name" }
                    input #es-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,80}" aria-describedby="es-name-hint";
                    span.hint #es-name-hint { "1–80 letters, digits, ., _ or -" }
                    label for="es-key" { "Key" }
                    input #es-key type="text" name="key_id" required placeholder="key-…" value=(q.key) aria-describedby="es-key-hint";
                    span.hint #es-key-hint { "The customer key's id; its vault needs soft delete and purge protection" }
                    label for="es-version" { "Key version (optional)" }
                    input #es-version type="text" name="key_version" inputmode="numeric" aria-describedby="es-version-hint";
                    span.hint #es-version-hint { "Pin this version; empty: always the key's newest" }
                    label for="es-type" { "Encryption type" }
                    select #es-type name="encryption_type" aria-describedby="es-type-hint" {
                        option value="customer" { "customer" }
                        option value="double" { "double" }
                    }
                    span.hint #es-type-hint { "customer: the customer key alone; double: a platform layer under it too" }
                    button #create-set type="submit" { "Create encryption set" }
                }
                p.hint { "The set gets a managed identity: give it the role Key Vault Crypto Service Encryption User on the key (or its vault) before disks use the set." }
            }
        })
    }
    .await;
    view::page(&s, "keys", "Encryption sets", body)
}

/// The encryption sets page's query: a key to fill the create form with.
#[derive(Deserialize, Default)]
pub struct SetQuery {
    #[serde(default)]
    key: String,
}

/// The create-an-encryption-set form.
#[derive(Deserialize)]
pub struct SetForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    key_version: String,
    #[serde(default)]
    encryption_type: String,
}

/// `POST /console/encryption-sets`: a new set in the caller's home
/// account.
pub async fn create_encryption_set(State(c): State<Console>, p: Posted<SetForm>) -> Response {
    let s = &p.session;
    let f = &p.form;
    let key_version = match number_field(
        s,
        &f.key_version,
        "InvalidKeyOperation",
        "give the key version to pin (1, 2, …), or leave it empty for always the newest.",
    ) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let encryption_type = match filled(&f.encryption_type) {
        None => None,
        Some(t) => match t.parse::<EncryptionType>() {
            Ok(t) => Some(t),
            Err(e) => {
                return view::refusal(
                    Some(s),
                    StatusCode::BAD_REQUEST,
                    "InvalidEncryptionType",
                    &format!("{e}: choose customer or double."),
                );
            }
        },
    };
    let req = CreateEncryptionSet {
        name: f.name.trim().to_string(),
        key_id: f.key_id.trim().to_string(),
        key_version,
        encryption_type,
        account_id: None,
    };
    view::go(
        s,
        c.service.create_encryption_set(&s.caller, req).await,
        |es| format!("/console/encryption-sets/{}", es.id),
    )
}

/// `GET /console/encryption-sets/{id}`.
pub async fn encryption_set(
    State(c): State<Console>,
    s: Session,
    Path(id): Path<String>,
) -> Response {
    let body = async {
        let es = c.service.get_encryption_set(&s.caller, &id).await?;
        // The key's vault, when the caller may read the key.
        let key = c.service.get_key(&s.caller, &es.key_id).await.ok();
        let disks = c.service.list_disks(&s.caller, first_page()).await?;
        let snaps = c.service.list_snapshots(&s.caller, first_page()).await?;
        let partial = disks.next.is_some() || snaps.next.is_some();
        let under = |e: &coffer_wire::Encryption| e.encryption_set_id.as_deref() == Some(&es.id);
        let disks: Vec<Disk> = disks
            .items
            .into_iter()
            .filter(|d| under(&d.encryption))
            .collect();
        let snaps: Vec<Snapshot> = snaps
            .items
            .into_iter()
            .filter(|sn| under(&sn.encryption))
            .collect();
        Ok::<_, ServiceError>(html! {
            h1 { "Encryption set " (es.name) }
            dl.facts {
                dt { "Id" } dd { code #set-id { (es.id) } }
                dt { "Type" } dd { (es.encryption_type) }
                dt { "Key" } dd {
                    a href={ "/console/keys/" (es.key_id) } { code #set-key { (es.key_id) } }
                    @if let Some(k) = &key { " (" (k.name) ", " span class={ "state " (k.enabled) } { (k.enabled) } ")" }
                }
                dt { "Key version" } dd { (set_version(&es)) }
                dt { "Vault" } dd {
                    @if let Some(k) = &key {
                        a href={ "/console/vaults/" (k.vault_id) } { code { (k.vault_id) } }
                    } @else {
                        "not visible to you"
                    }
                }
                dt { "Identity" } dd { code #set-identity { (es.identity_id) } }
                dt { "Identity reaches the key" } dd {
                    @if es.identity_has_key_access {
                        "yes"
                    } @else {
                        "no: give it the role Key Vault Crypto Service Encryption User on the key or its vault"
                    }
                }
                dt { "Re-wrap" } dd { (rewrap(&es)) }
                dt { "Region" } dd { (es.region) }
                dt { "Account" } dd { code { (es.account_id) } }
                dt { "Created" } dd { (when(&es.created_at)) }
            }
            @if partial { p.note { "Only the first 1,000 disks and snapshots were looked at." } }
            section aria-labelledby="set-disks-h" {
                h2 #set-disks-h { "Disks encrypted under it" }
                (disk_table(&disks))
            }
            section aria-labelledby="set-snaps-h" {
                h2 #set-snaps-h { "Snapshots encrypted under it" }
                (snapshot_table(&snaps))
            }
        })
    }
    .await;
    view::page(&s, "keys", "Encryption set", body)
}
