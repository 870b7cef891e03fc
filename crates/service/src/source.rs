//! What a copy job reads: a [`CopySource`]. A copy within this deployment
//! reads a local reader volume ([`LocalSource`]); an import reads another
//! deployment's export over HTTPS, through a source the API layer makes
//! ([`Remotes`], given to the service by `serve`, so this crate stays free
//! of HTTP). Both answer the same questions: where the data is, the data,
//! which chunks changed since an earlier view of the lineage, and,
//! for a remote, the hash the sender computed on its side.
//!
//! It also owns the one definition of a copy's verification hash
//! ([`hash_view`], [`hash_changed`]): BLAKE3 over the source's allocated
//! pieces in order, each prefixed by its offset (8 bytes, little-endian),
//! read from either side, written `blake3:<hex>`. The sender of an export computes the same hash
//! over its reader volume, so no data crosses the network twice.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use coffer_crypto::Blake3;
use coffer_meta::Meta;
use coffer_types::Id;
use coffer_volume::Volume;
use zeroize::Zeroizing;

use crate::model::Export;
use crate::{ErrorCode, Result, ServiceError};

/// How much a copy reads at once: one window.
pub const WINDOW: u64 = 8 << 20;
/// The most a source hashes on its side in one request: a copy from
/// another deployment is verified range by range, so no request runs for
/// long, and a mismatch names its range.
pub const HASH_RANGE: u64 = 1 << 30;

/// What a copy job reads.
#[async_trait]
pub trait CopySource: Send + Sync {
    /// The runs `(length, hole)` covering `offset..offset + length`.
    async fn allocation(&self, offset: u64, length: u64) -> Result<Vec<(u64, bool)>>;
    /// The plaintext of `offset..offset + length` (at most [`WINDOW`]).
    async fn read(&self, offset: u64, length: u64) -> Result<Bytes>;
    /// The chunk indexes in `from..to` that changed since generation
    /// `after` of the source's lineage (`after` below the view's).
    async fn changed(&self, after: u64, from: u64, to: u64) -> Result<Vec<u64>>;
    /// The hash of `offset..offset + length` of the source (whole, or its
    /// chunks changed since `changed_after`) as the source computes it on
    /// its side ([`hash_view`], [`hash_changed`] over that range), or `None`
    /// when the job computes it by reading (a local source). `offset` is a
    /// multiple of [`WINDOW`], `length` at most [`HASH_RANGE`].
    async fn own_hash(
        &self,
        changed_after: Option<u64>,
        offset: u64,
        length: u64,
    ) -> Result<Option<String>>;
}

/// A local volume as a copy's source (a reader volume), or as the side of
/// the copy read back; `view` is the lineage view the reader copies (its
/// source volume and generation), for incremental copies.
pub struct LocalSource {
    pub(crate) vol: Arc<Volume>,
    pub(crate) meta: Meta,
    pub(crate) view: Option<(Id, u64)>,
}

#[async_trait]
impl CopySource for LocalSource {
    async fn allocation(&self, offset: u64, length: u64) -> Result<Vec<(u64, bool)>> {
        Ok(self.vol.allocation(offset, length)?)
    }

    async fn read(&self, offset: u64, length: u64) -> Result<Bytes> {
        Ok(self.vol.read(offset, length).await?)
    }

    async fn changed(&self, after: u64, from: u64, to: u64) -> Result<Vec<u64>> {
        let Some((volume, upto)) = self.view else {
            return Err(ServiceError::internal(
                "an incremental copy reads a source with a view",
            ));
        };
        Ok(self
            .meta
            .changed_chunks(volume, after, upto, from, to)
            .await?)
    }

    async fn own_hash(&self, _: Option<u64>, _: u64, _: u64) -> Result<Option<String>> {
        Ok(None)
    }
}

/// Where an import reads: another deployment's export.
#[derive(Clone)]
pub struct RemoteExport {
    /// The sender's API, e.g. `https://coffer.site-a:7070`.
    pub endpoint: String,
    /// The export's id.
    pub export_id: String,
    /// Its pull token.
    pub token: Zeroizing<String>,
    /// The CA (PEM) that signs the sender's certificate, if not a system one.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for RemoteExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteExport")
            .field("endpoint", &self.endpoint)
            .field("export_id", &self.export_id)
            .finish_non_exhaustive()
    }
}

/// Clients of other deployments' exports (made by the API layer).
#[async_trait]
pub trait Remotes: Send + Sync {
    /// The export as its sender describes it (refusing a wrong token, an
    /// unreachable endpoint or a certificate the CA does not sign).
    async fn describe(&self, at: &RemoteExport) -> Result<Export>;
    /// A source reading the member `role` of the export.
    fn source(&self, at: &RemoteExport, role: &str, size: u64) -> Arc<dyn CopySource>;
}

/// The error of an import when this deployment has no client of remotes.
pub(crate) fn no_remotes() -> ServiceError {
    ServiceError::new(
        ErrorCode::RemoteUnavailable,
        "this server makes no calls to other deployments (it was not started by `coffer serve`)",
    )
}

/// Feed one allocated piece to a verification hash: its offset (8 bytes,
/// little-endian), then its data. The one place the hash's input is
/// defined; every side of a copy's verification hashes through it.
pub(crate) fn hash_piece(h: &mut Blake3, pos: u64, data: &[u8]) {
    h.update(&pos.to_le_bytes());
    h.update(data);
}

/// Hash `from`'s data at the allocated pieces of `layout` over
/// `start..end` (see the module's doc), a window at a time.
pub async fn hash_view(
    from: &dyn CopySource,
    layout: &dyn CopySource,
    (start, end): (u64, u64),
) -> Result<String> {
    let mut h = Blake3::default();
    let mut off = start;
    while off < end {
        let len = WINDOW.min(end - off);
        let mut pos = off;
        for (n, hole) in layout.allocation(off, len).await? {
            if !hole {
                hash_piece(&mut h, pos, &from.read(pos, n).await?);
            }
            pos += n;
        }
        off += len;
    }
    Ok(h.finish_tagged())
}

/// Hash `from`'s data at `layout`'s allocated pieces of the chunks that
/// changed in `layout`'s lineage since generation `after`, over
/// `start..end` (`start` a multiple of the chunk size).
pub async fn hash_changed(
    from: &dyn CopySource,
    layout: &dyn CopySource,
    (chunk_size, total): (u32, u64),
    after: u64,
    (start, end): (u64, u64),
) -> Result<String> {
    let cs = u64::from(chunk_size);
    let mut h = Blake3::default();
    let mut off = start;
    let end = end.min(total);
    while off < end {
        let len = WINDOW.min(end - off);
        let changed = layout
            .changed(after, off / cs, (off + len).div_ceil(cs))
            .await?;
        if !changed.is_empty() {
            let runs = layout.allocation(off, len).await?;
            for idx in changed {
                let start = idx * cs;
                for (pos, n, hole) in runs_within(&runs, off, start, (start + cs).min(total)) {
                    if !hole {
                        hash_piece(&mut h, pos, &from.read(pos, n).await?);
                    }
                }
            }
        }
        off += len;
    }
    Ok(h.finish_tagged())
}

/// The pieces `(offset, length, hole)` of `runs` (which start at `base`)
/// within `start..end`.
pub fn runs_within(runs: &[(u64, bool)], base: u64, start: u64, end: u64) -> Vec<(u64, u64, bool)> {
    let mut out = vec![];
    let mut at = base;
    for &(n, hole) in runs {
        let (a, b) = (at.max(start), (at + n).min(end));
        if a < b {
            out.push((a, b - a, hole));
        }
        at += n;
        if at >= end {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::runs_within;

    #[test]
    fn runs_within_cuts_the_runs_to_the_range() {
        let runs = [(4, false), (4, true), (8, false)];
        assert_eq!(
            runs_within(&runs, 100, 102, 110),
            vec![(102, 2, false), (104, 4, true), (108, 2, false)]
        );
        assert_eq!(runs_within(&runs, 100, 108, 116), vec![(108, 8, false)]);
        assert_eq!(runs_within(&runs, 100, 116, 120), vec![]);
        assert_eq!(runs_within(&runs, 0, 0, 4), vec![(0, 4, false)]);
    }
}
