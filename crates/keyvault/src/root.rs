//! Root keys: what protects the vault's key material at rest.
//!
//! The threat model is in docs/SECURITY.md. In short: the data dir (objects
//! and metadata) alone must not be enough to read data, so the root secret
//! lives elsewhere — a key file outside the data dir (default
//! `~/.config/coffer/root.key`, mode 0600), or a passphrase given at start
//! and never stored.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use coffer_crypto::{SecretKey, unwrap_key, wrap_key};
use coffer_meta::Meta;

use crate::{Result, VaultError};

/// The vault's root of trust: wraps and unwraps key material.
#[async_trait]
pub trait RootKey: Send + Sync + 'static {
    /// Where the key comes from, for messages (never the key itself).
    fn describe(&self) -> String;
    /// Wrap key material.
    async fn wrap(&self, material: &[u8]) -> Result<Vec<u8>>;
    /// Unwrap key material wrapped by [`RootKey::wrap`].
    async fn unwrap(&self, wrapped: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>>;
}

/// A root key held in a file of 64 hex digits, mode 0600.
pub struct FileRootKey {
    key: SecretKey,
    path: PathBuf,
}

impl FileRootKey {
    /// The root key file of the deployment whose metadata is `meta`: loaded
    /// if it exists; created (as [`FileRootKey::load_or_create`]) only for a
    /// new deployment, one whose metadata holds no root key check value yet
    /// (the vault records it the first time it opens, see
    /// [`crate::KeyVault::open`]). A missing file of an existing deployment
    /// is refused, saying so and where it looked: a new key cannot read that
    /// deployment's keys, and a key file written there would only hide the
    /// missing one.
    pub async fn open_for(path: &Path, meta: &Meta) -> Result<Self> {
        Self::open_checked(path, meta, crate::ROOT_CHECK, "this deployment").await
    }

    /// The root key file of region `region` of the deployment whose
    /// metadata is `meta`: as [`FileRootKey::open_for`], but created only
    /// while the region's own root key has no check value yet.
    pub async fn open_for_region(path: &Path, meta: &Meta, region: &str) -> Result<Self> {
        Self::open_checked(
            path,
            meta,
            &crate::region_root_check(region),
            &format!("region {region}"),
        )
        .await
    }

    async fn open_checked(path: &Path, meta: &Meta, setting: &str, whose: &str) -> Result<Self> {
        let exists = path.try_exists().map_err(|e| {
            VaultError::Root(format!(
                "cannot look for root key file {}: {e}",
                path.display()
            ))
        })?;
        if !exists && meta.setting(setting).await?.is_some() {
            let at = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            return Err(VaultError::Root(format!(
                "the root key file {at} is missing, but {whose} already has keys \
                 protected by a root key (its metadata holds the root key's check value), so \
                 no new key is created: a new one could not read them. Restore the key file \
                 from your backup to {at}, or point --root-key-file (COFFER_ROOT_KEY_FILE, \
                 root_key_file in the config file) at where it is; if this root \
                 key is a passphrase or in an HSM, give COFFER_ROOT_PASSPHRASE or \
                 --root-key-uri instead",
                at = at.display()
            )));
        }
        Self::load_or_create(path)
    }

    /// Load the key at `path`, or create one there (mode 0600, parent
    /// directories 0700) if the file does not exist. Refuses a key file that
    /// others can read.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        let err = |what: &str, e: std::io::Error| {
            VaultError::Root(format!("{what} {}: {e}", path.display()))
        };
        match std::fs::read_to_string(path).map(zeroize::Zeroizing::new) {
            Ok(text) => {
                let mode = std::fs::metadata(path)
                    .map_err(|e| err("cannot stat", e))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(VaultError::Root(format!(
                        "root key file {} is readable by others (mode {:o}); run: chmod 600 {}",
                        path.display(),
                        mode & 0o777,
                        path.display()
                    )));
                }
                let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(text.trim(), &mut bytes[..]).map_err(|_| {
                    VaultError::Root(format!(
                        "root key file {} does not hold 64 hex digits",
                        path.display()
                    ))
                })?;
                Ok(Self {
                    key: SecretKey::from_bytes(*bytes),
                    path: path.to_path_buf(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| err("cannot create directory for", e))?;
                }
                let key = SecretKey::generate();
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| err("cannot create", e))?;
                let text = zeroize::Zeroizing::new(hex::encode(key.expose()));
                f.write_all(text.as_bytes())
                    .map_err(|e| err("cannot write", e))?;
                f.sync_all().map_err(|e| err("cannot sync", e))?;
                tracing::warn!(path = %path.display(), "created a new root key: back it up and keep it apart from the data dir; without it the data cannot be read");
                Ok(Self {
                    key,
                    path: path.to_path_buf(),
                })
            }
            Err(e) => Err(err("cannot read", e)),
        }
    }
}

#[async_trait]
impl RootKey for FileRootKey {
    fn describe(&self) -> String {
        format!("key file {}", self.path.display())
    }
    async fn wrap(&self, material: &[u8]) -> Result<Vec<u8>> {
        Ok(wrap_key(&self.key, material)?)
    }
    async fn unwrap(&self, wrapped: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        Ok(unwrap_key(&self.key, wrapped)?)
    }
}

/// A root key derived from a passphrase (PBKDF2-HMAC-SHA256) and a salt kept
/// in the metadata store. The passphrase is never stored.
pub struct PassphraseRootKey {
    key: SecretKey,
}

impl PassphraseRootKey {
    /// Derive the key from `passphrase` and the deployment's `salt`.
    pub fn new(passphrase: &[u8], salt: &[u8]) -> Self {
        Self {
            key: SecretKey::from_passphrase(passphrase, salt),
        }
    }
}

#[async_trait]
impl RootKey for PassphraseRootKey {
    fn describe(&self) -> String {
        "passphrase".into()
    }
    async fn wrap(&self, material: &[u8]) -> Result<Vec<u8>> {
        Ok(wrap_key(&self.key, material)?)
    }
    async fn unwrap(&self, wrapped: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        Ok(unwrap_key(&self.key, wrapped)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/root.key");
        let a = FileRootKey::load_or_create(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let b = FileRootKey::load_or_create(&p).unwrap();
        assert_eq!(a.key, b.key);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = FileRootKey::load_or_create(&p).err().unwrap().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[tokio::test]
    async fn key_file_is_created_only_for_a_new_deployment() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&format!(
            "sqlite://{}",
            dir.path().join("meta.sqlite").display()
        ))
        .await
        .unwrap();
        let p = dir.path().join("keys/root.key");
        // A new deployment: the key is created, and the vault records its
        // check value.
        let key = FileRootKey::open_for(&p, &meta).await.unwrap();
        assert!(p.exists());
        crate::KeyVault::open(meta.clone(), std::sync::Arc::new(key))
            .await
            .unwrap();
        // Present: loaded, the same key.
        let again = FileRootKey::open_for(&p, &meta).await.unwrap();
        assert_eq!(again.key, FileRootKey::load_or_create(&p).unwrap().key);
        // Missing for that deployment: refused, naming the file; none made.
        std::fs::remove_file(&p).unwrap();
        let e = FileRootKey::open_for(&p, &meta)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains(&format!("root key file {} is missing", p.display()))
                && e.contains("Restore the key file from your backup"),
            "{e}"
        );
        assert!(
            !p.exists(),
            "a key file was created for an existing deployment"
        );
    }
}
