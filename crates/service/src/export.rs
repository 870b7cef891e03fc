//! The NBD side of the service: [`ExportResolverImpl`] maps a secret export
//! token to the attached disk's open volume, and [`DiskDevice`] adapts a
//! volume to the NBD server's [`BlockDevice`].

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use coffer_nbd::{BlockDevice, DeviceError, ExportResolver};
use coffer_volume::{Volume, VolumeError};

use crate::Service;

/// Resolves NBD export names (attachment tokens) through the service.
pub struct ExportResolverImpl {
    service: Arc<Service>,
}

impl ExportResolverImpl {
    /// A resolver over `service`.
    pub fn new(service: Arc<Service>) -> Self {
        Self { service }
    }
}

#[async_trait]
impl ExportResolver for ExportResolverImpl {
    async fn open(&self, name: &str) -> Option<Arc<dyn BlockDevice>> {
        if name.is_empty() || name.len() > 256 {
            return None;
        }
        match self.service.volume_for_export(name).await {
            Ok(Some((disk, vol))) => {
                tracing::info!(disk = %disk.id, "NBD client connected");
                Some(Arc::new(DiskDevice { vol }))
            }
            Ok(None) => {
                tracing::info!("NBD client asked for an unknown export");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open export");
                None
            }
        }
    }
}

/// An open volume as an NBD block device.
pub struct DiskDevice {
    vol: Arc<Volume>,
}

fn dev_err(e: VolumeError) -> DeviceError {
    match e {
        VolumeError::Closed | VolumeError::Fenced(_) => DeviceError::Shutdown(e.to_string()),
        VolumeError::OutOfRange { .. } => DeviceError::Invalid(e.to_string()),
        VolumeError::Integrity { .. } => {
            tracing::error!(error = %e, "integrity check failed: stored data was modified or is missing");
            DeviceError::Io(e.to_string())
        }
        other => {
            tracing::warn!(error = %other, "block I/O failed");
            DeviceError::Io(other.to_string())
        }
    }
}

#[async_trait]
impl BlockDevice for DiskDevice {
    fn size(&self) -> u64 {
        self.vol.size()
    }

    fn preferred_block_size(&self) -> u32 {
        self.vol.chunk_size().min(32 << 20)
    }

    /// Every connection to one disk shares its one open volume (one dirty
    /// set), and a flush commits that whole dirty set.
    fn multi_conn(&self) -> bool {
        true
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError> {
        self.vol.read(offset, u64::from(len)).await.map_err(dev_err)
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), DeviceError> {
        self.vol.write(offset, data, fua).await.map_err(dev_err)
    }

    async fn extents(&self, offset: u64, len: u32) -> Result<Vec<(u32, bool)>, DeviceError> {
        let runs = self
            .vol
            .allocation(offset, u64::from(len))
            .map_err(dev_err)?;
        // Each run is part of a range of `len` bytes, so it fits in u32.
        Ok(runs
            .into_iter()
            .map(|(n, hole)| (u32::try_from(n).unwrap_or(len), hole))
            .collect())
    }

    async fn flush(&self) -> Result<(), DeviceError> {
        self.vol.flush().await.map_err(dev_err)
    }

    async fn trim(&self, offset: u64, len: u32, fua: bool) -> Result<(), DeviceError> {
        self.vol
            .write_zeroes(offset, u64::from(len), fua)
            .await
            .map_err(dev_err)
    }

    async fn write_zeroes(
        &self,
        offset: u64,
        len: u32,
        _may_trim: bool,
        fua: bool,
    ) -> Result<(), DeviceError> {
        // Zeroes are stored as zero entries either way: "no hole" only asks
        // that reads return zeroes and later writes need no allocation,
        // which holds for Coffer's copy-on-write chunks.
        self.vol
            .write_zeroes(offset, u64::from(len), fua)
            .await
            .map_err(dev_err)
    }
}
