//! Attachments: attach (an NBD URI with a secret export token), detach
//! (flush, close, revoke), and opening a disk's volume for an NBD
//! connection, re-authorised on every connection.

use std::sync::Arc;

use coffer_crypto::{hash_token, new_token};
use coffer_iam::{Action, Target};
use coffer_meta::{AttachmentRow, DetachIf, DiskRow, now_ms};
use coffer_types::{Id, Kind};
use coffer_volume::Volume;

use crate::disks::*;
use crate::error::ErrorCode;
use crate::model::*;
use crate::node::*;
use crate::*;

impl Service {
    /// Attach a disk read-write: returns the NBD URI (this node's NBD
    /// listener) with a fresh secret export token. One attachment per disk
    /// at a time; an attachment whose node died (its lease passed) is
    /// replaced, and its old token stops working.
    pub async fn attach_disk(&self, caller: &Caller, id: &str) -> Result<Attachment> {
        let d = self
            .authorized_disk(caller, id, Action::DisksAttach)
            .await?;
        let node = self.node().await.ok_or_else(|| {
            ServiceError::new(ErrorCode::NbdUnavailable, "this server has no NBD listener")
        })?;
        // A disk whose region's store does not answer could not serve a
        // block: say so now, not at the first read.
        self.store_of(&self.meta.volume(d.volume_id).await?.region)?;
        let mut replace = None;
        if let Some(a) = self.meta.attachment_of_disk(d.id).await? {
            match self.held_by(&a).await? {
                HeldBy::Nobody => replace = Some(a.id),
                held => {
                    let on = match held {
                        HeldBy::Other(n) => format!(" on node {} ({})", n.name, n.nbd_endpoint),
                        _ => String::new(),
                    };
                    return Err(ServiceError::new(
                        ErrorCode::DiskAttached,
                        format!(
                            "disk {} is already attached{on} ({} since {}): a disk has one read-write attachment at a time; run `coffer disk detach {}` first",
                            d.id, a.id, a.created_at, d.id
                        ),
                    ));
                }
            }
        }
        let token = new_token();
        let row = AttachmentRow {
            id: Id::random(Kind::Attachment),
            disk_id: d.id,
            token_hash: hash_token(&token),
            principal_id: caller.principal.id,
            mode: "rw".into(),
            created_at: coffer_meta::now(),
            node_id: Some(node.id),
            hold_id: None,
        };
        self.meta
            .insert_attachment(&row, replace, now_ms())
            .await
            .map_err(|e| match e {
                coffer_meta::MetaError::Conflict(_) => ServiceError::new(
                    ErrorCode::DiskAttached,
                    format!("disk {} is already attached", d.id),
                ),
                other => other.into(),
            })?;
        if let Some(old) = replace {
            tracing::warn!(disk = %d.id, old = %old, "took over the attachment of a node whose lease passed");
        }
        tracing::info!(disk = %d.id, attachment = %row.id, "disk attached");
        let tls = self.config.nbd_tls;
        Ok(Attachment {
            id: row.id.to_string(),
            disk_id: d.id.to_string(),
            uri: Some(format!(
                "{}://{}/{}",
                if tls { "nbds" } else { "nbd" },
                node.nbd_endpoint,
                token.as_str()
            )),
            image_opts: Some(image_opts(&node.nbd_endpoint, token.as_str(), tls)),
            mode: row.mode,
            created_at: row.created_at,
        })
    }

    /// Detach a disk: flush it, close its connections, revoke its token. A
    /// disk held by another live node is detached by that node (the API
    /// forwards the request); one whose node died is simply released.
    pub async fn detach_disk(&self, caller: &Caller, id: &str) -> Result<Disk> {
        let d = self
            .authorized_disk(caller, id, Action::DisksAttach)
            .await?;
        let Some(att) = self.meta.attachment_of_disk(d.id).await? else {
            return Err(ServiceError::new(
                ErrorCode::DiskNotAttached,
                format!("disk {} is not attached", d.id),
            ));
        };
        match self.held_by(&att).await? {
            HeldBy::Other(n) => {
                return Err(ServiceError::elsewhere(
                    &n.name,
                    &n.api_url,
                    format_args!("disk {}", d.id),
                ));
            }
            HeldBy::Me(me) => {
                // Stop new connections from reopening the disk, then flush
                // and close it (live connections get ESHUTDOWN), and only
                // then revoke the attachment: the flush commits as holder.
                let vol = {
                    let mut open = self.open.lock().await;
                    lock(&self.closing).insert(d.id);
                    open.remove(&d.id)
                };
                if let Some(v) = &vol
                    && let Err(e) = v.close().await
                {
                    // Nothing is dropped: the disk stays attached and open.
                    if !matches!(e, coffer_volume::VolumeError::Fenced(_)) {
                        self.open.lock().await.insert(d.id, v.clone());
                    }
                    lock(&self.closing).remove(&d.id);
                    return Err(e.into());
                }
                let deleted = self
                    .meta
                    .delete_attachment(att.id, DetachIf::HeldBy(me))
                    .await;
                lock(&self.closing).remove(&d.id);
                if !deleted? {
                    return Err(ServiceError::new(
                        ErrorCode::DiskMoved,
                        format!("disk {} moved to another node while detaching: retry", d.id),
                    ));
                }
            }
            HeldBy::Nobody => {
                if !self
                    .meta
                    .delete_attachment(att.id, DetachIf::Unheld(now_ms()))
                    .await?
                {
                    return Err(ServiceError::new(
                        ErrorCode::DiskMoved,
                        format!("disk {} was just opened by a node: retry the detach", d.id),
                    ));
                }
            }
        }
        tracing::info!(disk = %d.id, "disk detached");
        Ok(disk_dto(&d, false))
    }

    /// The open volume of an attached disk, opening it on first use. The
    /// attachment must be held by this node, or by no live node (then this
    /// node takes it over).
    pub(crate) async fn volume_for_export(
        &self,
        token: &str,
    ) -> Result<Option<(DiskRow, Arc<Volume>)>> {
        let Some(me) = self.my_node_id().await else {
            return Ok(None);
        };
        // Read the attachment under the lock, so two connections opening
        // one disk at once agree on one hold.
        let mut open = self.open.lock().await;
        let Some(att) = self
            .meta
            .attachment_by_token_hash(&hash_token(token))
            .await?
        else {
            return Ok(None);
        };
        let Some(disk) = self.meta.disk(att.disk_id).await? else {
            return Ok(None);
        };
        if lock(&self.closing).contains(&disk.id) {
            return Ok(None);
        }
        // Every NBD connection is authorised afresh: the principal that
        // attached the disk must still hold `disks/attach` on it (a revoked
        // role or a deleted principal ends access at the next connection).
        if !self.may_attach(att.principal_id, &disk).await? {
            tracing::info!(disk = %disk.id, principal = %att.principal_id, "export refused: the attaching principal may no longer attach this disk");
            return Ok(None);
        }
        if let Some(v) = open.get(&disk.id) {
            let current = v.holder().is_some_and(|h| {
                h.node == me && Some(h.hold) == att.hold_id && att.node_id == Some(me)
            });
            if current {
                return Ok(Some((disk, v.clone())));
            }
            // A volume of an earlier hold must not serve this one.
            if let Some(v) = open.remove(&disk.id) {
                v.fence();
            }
        }
        let Some(holder) = self.meta.take_attachment(att.id, me, now_ms()).await? else {
            tracing::info!(disk = %disk.id, "export refused: another live node holds the disk");
            return Ok(None);
        };
        if att.node_id != Some(me) {
            tracing::info!(disk = %disk.id, "took over an attachment no live node held");
        }
        let vol = self.meta.volume(disk.volume_id).await?;
        // Fails here, with the vault's own error, if the key is unusable
        // (and, under an encryption set, if its identity lost the key).
        self.authorize_open(&disk, att.principal_id).await?;
        self.vault.dek(vol.dek_id).await?;
        let store = self.store_of(&vol.region)?;
        let v = Volume::open(
            self.meta.clone(),
            store,
            disk.volume_id,
            Arc::new(VaultDeks(self.vault.clone())),
            self.config.volume.clone(),
            Some(holder),
        )
        .await?;
        open.insert(disk.id, v.clone());
        Ok(Some((disk, v)))
    }

    /// Whether `principal` may attach `disk` now.
    async fn may_attach(&self, principal: Id, disk: &DiskRow) -> Result<bool> {
        let Some(p) = self.meta.principal(principal).await? else {
            return Ok(false);
        };
        let subject = self.subject_of(&p).await?;
        let target: Target = self.resource_target(disk.id, disk.account_id).await?;
        Ok(coffer_iam::authorize(&subject, Action::DisksAttach, &target).is_allowed())
    }
}

/// qemu's `--image-opts` for an NBD export at `endpoint` (`HOST:PORT` or
/// `[V6]:PORT`); under TLS they name the client's `tls0` credentials object.
fn image_opts(endpoint: &str, export: &str, tls: bool) -> String {
    let (host, port) = endpoint.rsplit_once(':').unwrap_or((endpoint, "10809"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut s = format!(
        "driver=nbd,server.type=inet,server.host={host},server.port={port},export={export}"
    );
    if tls {
        s.push_str(",tls-creds=tls0");
    }
    s
}

/// The vault as the source of an open volume's DEKs.
pub(crate) struct VaultDeks(pub(crate) coffer_keyvault::KeyVault);

#[async_trait::async_trait]
impl coffer_volume::DekSource for VaultDeks {
    async fn dek(&self, id: Id) -> std::result::Result<coffer_crypto::SecretKey, String> {
        self.0.dek(id).await.map_err(|e| e.to_string())
    }

    async fn renew(
        &self,
        volume: Id,
        old: Id,
    ) -> std::result::Result<(Id, coffer_crypto::SecretKey), String> {
        self.0
            .renew_write_dek(volume, old)
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::image_opts;

    #[test]
    fn image_opts_name_host_port_export_and_tls() {
        assert_eq!(
            image_opts("127.0.0.1:10809", "tok", false),
            "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=10809,export=tok"
        );
        assert_eq!(
            image_opts("[fd00::5]:1234", "tok", true),
            "driver=nbd,server.type=inet,server.host=fd00::5,server.port=1234,export=tok,tls-creds=tls0"
        );
    }
}
