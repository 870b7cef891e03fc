//! Key vaults, keys and disk encryption sets: the vaults list, one vault's
//! page with its keys, one key's page (its versions and what it protects:
//! the sets using it and the disks and snapshots under them), rotate,
//! disable after typing the key's name (the page says first what becomes
//! unreadable), enable, and the encryption sets with the disks under each.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use coffer_service::ServiceError;
use coffer_types::{KeyState, Lifecycle};
use coffer_wire::{Disk, EncryptionSet, Key, RotateKey, Snapshot, UpdateKey, Vault};
use maud::{Markup, html};
use serde::Deserialize;

use super::disks::disk_table;
use super::first_page;
use super::snapshots::snapshot_table;
use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf, when};

/// `GET /console/vaults`.
pub async fn vaults(State(c): State<Console>, s: Session) -> Response {
    let body = async {
        let page = c.service.list_vaults(&s.caller, first_page()).await?;
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
        })
    }
    .await;
    view::page(&s, "keys", "Key vaults", body)
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
        Ok::<_, ServiceError>(html! {
            h1 { "Key vault " (v.name) }
            dl.facts {
                dt { "Id" } dd { code #vault-id { (v.id) } }
                dt { "State" } dd { span class={ "state " (v.state) } { (v.state) } }
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
            }
        })
    }
    .await;
    view::page(&s, "keys", "Key vault", body)
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
                        form.inline method="post" action={ "/console/keys/" (k.id) "/disable" } {
                            (csrf(&s))
                            label for="confirm" { "Key name" }
                            input #confirm type="text" name="confirm" required autocomplete="off";
                            button.danger #disable type="submit" { "Disable key" }
                        }
                    }
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
    match c
        .service
        .rotate_key(&p.session.caller, &id, RotateKey::default())
        .await
    {
        Ok(k) => Redirect::to(&format!("/console/keys/{}", k.id)).into_response(),
        Err(e) => view::error_page(Some(&p.session), &e),
    }
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
    let k = match c.service.get_key(&s.caller, &id).await {
        Ok(k) => k,
        Err(e) => return view::error_page(Some(s), &e),
    };
    if let Some(refused) = view::unless_named(
        s,
        &p.form.confirm,
        &k.name,
        "Not disabled",
        "disable this key",
    ) {
        return refused;
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
    match c.service.update_key(&s.caller, id, req).await {
        Ok(k) => Redirect::to(&format!("/console/keys/{}", k.id)).into_response(),
        Err(e) => view::error_page(Some(s), &e),
    }
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
pub async fn encryption_sets(State(c): State<Console>, s: Session) -> Response {
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
        })
    }
    .await;
    view::page(&s, "keys", "Encryption sets", body)
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
