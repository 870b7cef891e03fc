//! Customer keys of the built-in backend: their material made or imported,
//! kept only wrapped by the root key, unwrapped in memory when used (and
//! cached there per version), and the operations a key does with it. Who
//! may do what, and whether a key is usable now, is decided before these
//! are called (the service layer); every use is recorded in the audit log
//! by the caller, which knows the principal.

use std::sync::Arc;

use coffer_crypto::keys::{KeyAlgorithm, KeyMaterial};
use coffer_meta::{KeyVersionRow, VaultKeyRow, VaultRow};
use coffer_types::Id;
use zeroize::Zeroizing;

use crate::{KeyVault, Result, RootKey, VaultError};

/// Refuse an encryption context for a key in a PKCS#11 token (its AES-GCM
/// mechanism binds Coffer's fixed associated data only).
fn no_context(context: &[u8]) -> Result<()> {
    if context.is_empty() {
        Ok(())
    } else {
        Err(VaultError::External(
            "keys kept in a PKCS#11 token take no encryption context: leave it out".into(),
        ))
    }
}

/// Open a `p11gcm1:` blob with a token key.
async fn token_open(k: &crate::Pkcs11RootKey, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let inner = blob.strip_prefix(crate::P11_TAG).ok_or_else(|| {
        VaultError::Crypto(coffer_crypto::CryptoError::Malformed(
            "not a PKCS#11-wrapped blob (p11gcm1:)".into(),
        ))
    })?;
    k.unwrap(inner).await
}

/// Why a key cannot be used now, or `None` if it can. `now` is RFC 3339.
pub fn unusable(key: &VaultKeyRow, vault: Option<&VaultRow>, now: &str) -> Option<String> {
    if key.purged_at.is_some() {
        return Some("purged: its material was destroyed and cannot be recovered".into());
    }
    if let Some(v) = vault {
        if v.purged_at.is_some() {
            return Some(format!("in purged key vault {}", v.id));
        }
        if v.deleted_at.is_some() {
            return Some(format!(
                "in deleted key vault {}: recover the vault first",
                v.id
            ));
        }
    }
    if key.deleted_at.is_some() {
        return Some("deleted: recover it to use it again".into());
    }
    if key.state != coffer_types::KeyState::Enabled {
        return Some(format!("{}: enable it to use it again", key.state));
    }
    if let Some(nb) = &key.not_before
        && now < nb.as_str()
    {
        return Some(format!("not valid before {nb}"));
    }
    if let Some(exp) = &key.expires_at
        && now >= exp.as_str()
    {
        return Some(format!("expired at {exp}"));
    }
    None
}

/// New material and what is stored of it: the material wrapped by the root
/// key, and the version row (public key for RSA).
pub struct NewVersion {
    /// The material wrapped by the root key.
    pub wrapped: Vec<u8>,
    /// The version's row (number filled in by the store).
    pub row: KeyVersionRow,
}

impl KeyVault {
    async fn store_form(&self, region: &str, m: &KeyMaterial, origin: &str) -> Result<NewVersion> {
        let secret = m.to_secret_bytes()?;
        Ok(NewVersion {
            wrapped: self.root_of(region).wrap(&secret).await?,
            row: KeyVersionRow {
                version: 0,
                origin: origin.into(),
                public_key: m.public_key_der()?,
                created_at: coffer_meta::now(),
            },
        })
    }

    /// Fresh material of `alg`, generated inside the vault, for a key of
    /// `region`.
    pub async fn generate_version(&self, region: &str, alg: KeyAlgorithm) -> Result<NewVersion> {
        let m = tokio::task::spawn_blocking(move || KeyMaterial::generate(alg))
            .await
            .map_err(|_| VaultError::Root("key generation task failed".into()))??;
        self.store_form(region, &m, "generated").await
    }

    /// Material brought by the customer: raw AES-256 bytes or an RSA
    /// private key (PKCS#8 DER or PEM), checked to be of type `alg`, for a
    /// key of `region`.
    pub async fn import_version(
        &self,
        region: &str,
        alg: KeyAlgorithm,
        material: &[u8],
    ) -> Result<NewVersion> {
        let m = match alg {
            KeyAlgorithm::Aes256 => KeyMaterial::import_aes(material)?,
            _ => KeyMaterial::import_rsa(material)?,
        };
        if m.algorithm() != alg {
            return Err(VaultError::Crypto(coffer_crypto::CryptoError::Malformed(
                format!("the material is an {} key, not {alg}", m.algorithm()),
            )));
        }
        self.store_form(region, &m, "imported").await
    }

    /// Material sent wrapped under `vault`'s import key (see
    /// [`KeyVault::import_public_key`]).
    pub async fn import_wrapped_version(
        &self,
        vault: Id,
        alg: KeyAlgorithm,
        blob: &[u8],
    ) -> Result<NewVersion> {
        let region = self.vault_region(vault).await?;
        let import = self.import_key(vault).await?;
        let m = import.unwrap_import(blob, alg)?;
        self.store_form(&region, &m, "imported").await
    }

    /// The region of vault `vault`.
    async fn vault_region(&self, vault: Id) -> Result<String> {
        Ok(self
            .meta
            .vault(vault)
            .await?
            .ok_or_else(|| {
                VaultError::Meta(coffer_meta::MetaError::NotFound(format!("vault {vault}")))
            })?
            .region)
    }

    async fn import_key(&self, vault: Id) -> Result<Arc<KeyMaterial>> {
        let root = self.root_of(&self.vault_region(vault).await?).clone();
        let fresh = tokio::task::spawn_blocking(|| KeyMaterial::generate(KeyAlgorithm::Rsa3072))
            .await
            .map_err(|_| VaultError::Root("key generation task failed".into()))??;
        let wrapped = root.wrap(&fresh.to_secret_bytes()?).await?;
        let stored = self.meta.vault_import_key(vault, &wrapped).await?;
        let plain = root.unwrap(&stored).await?;
        Ok(Arc::new(KeyMaterial::from_secret_bytes(&plain)?))
    }

    /// The public part (PEM) of `vault`'s RSA-3072 import key, made on
    /// first use: wrap key material for import under it with
    /// `coffer_crypto::keys::wrap_for_import`.
    pub async fn import_public_key(&self, vault: Id) -> Result<String> {
        let k = self.import_key(vault).await?;
        k.public_key_pem()?
            .ok_or_else(|| VaultError::Root("the import key has no public part".into()))
    }

    /// The material of one version of a key, unwrapped (and cached).
    pub async fn key_material(&self, key: Id, version: u32) -> Result<Arc<KeyMaterial>> {
        if let Some(m) = self.materials.lock().await.get(&(key, version)) {
            return Ok(m.clone());
        }
        let stored = self.meta.key_version_material(key, version).await?;
        if stored.is_empty() {
            return Err(VaultError::KeyUnusable(
                key,
                "purged: its material was destroyed".into(),
            ));
        }
        let region = self.meta.vault_key(key).await?.region;
        let plain = self.root_of(&region).unwrap(&stored).await?;
        let m = Arc::new(KeyMaterial::from_secret_bytes(&plain)?);
        self.materials
            .lock()
            .await
            .insert((key, version), m.clone());
        Ok(m)
    }

    /// Forget every cached material of `key` (after a purge).
    pub async fn forget_key(&self, key: Id) {
        self.materials.lock().await.retain(|(k, _), _| *k != key);
    }

    /// Encrypt `plaintext` under the key's current version, bound to
    /// `context`. Returns the version used and the blob.
    pub async fn encrypt(
        &self,
        key: &VaultKeyRow,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<Vec<u8>> {
        if let Some(t) = self.transit_of(key).await? {
            return t
                .encrypt(&key.name, key.current_version, plaintext, context)
                .await;
        }
        if let Some(k) = self.token_key_of_version(key, key.current_version).await? {
            no_context(context)?;
            let mut out = crate::P11_TAG.to_vec();
            out.extend_from_slice(&k.wrap(plaintext).await?);
            return Ok(out);
        }
        let m = self.key_material(key.id, key.current_version).await?;
        Ok(m.encrypt(plaintext, context)?)
    }

    /// Decrypt a blob made by [`KeyVault::encrypt`] with `version`.
    pub async fn decrypt(
        &self,
        key: &VaultKeyRow,
        version: u32,
        blob: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        if let Some(t) = self.transit_of(key).await? {
            return t.decrypt(&key.name, blob, context).await;
        }
        if let Some(k) = self.token_key_of_version(key, version).await? {
            no_context(context)?;
            return token_open(&k, blob).await;
        }
        let m = self.key_material(key.id, version).await?;
        Ok(m.decrypt(blob, context)?)
    }

    /// Wrap a key under the key's current version.
    pub async fn wrap_with(&self, key: &VaultKeyRow, plain: &[u8]) -> Result<Vec<u8>> {
        if let Some(t) = self.transit_of(key).await? {
            return t
                .encrypt(&key.name, key.current_version, plain, b"coffer wrap")
                .await;
        }
        if let Some(k) = self.token_key_of_version(key, key.current_version).await? {
            let mut out = crate::P11_TAG.to_vec();
            out.extend_from_slice(&k.wrap(plain).await?);
            return Ok(out);
        }
        let m = self.key_material(key.id, key.current_version).await?;
        Ok(m.wrap(plain)?)
    }

    /// Unwrap a blob wrapped by `version` of the key.
    pub async fn unwrap_with(
        &self,
        key: &VaultKeyRow,
        version: u32,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        if let Some(t) = self.transit_of(key).await? {
            return t.decrypt(&key.name, blob, b"coffer wrap").await;
        }
        if let Some(k) = self.token_key_of_version(key, version).await? {
            return token_open(&k, blob).await;
        }
        let m = self.key_material(key.id, version).await?;
        Ok(m.unwrap(blob)?)
    }
}

impl KeyVault {
    /// Seal a secret's value, of a vault of `region`, for storage: under a
    /// fresh data key, bound to `context` (the secret and version it
    /// belongs to), the data key wrapped by the region's root key. Layout:
    /// u32 length of the wrapped key ‖ the wrapped key ‖ the sealed value
    /// (`gcm1:`).
    pub async fn seal_secret(&self, region: &str, value: &[u8], context: &[u8]) -> Result<Vec<u8>> {
        let dek = coffer_crypto::SecretKey::generate();
        let wrapped = self.root_of(region).wrap(dek.expose()).await?;
        let sealed = coffer_crypto::keys::seal_blob(&dek, value, context)?;
        let len = u32::try_from(wrapped.len())
            .map_err(|_| VaultError::Root("wrapped key too long".into()))?;
        let mut out = Vec::with_capacity(4 + wrapped.len() + sealed.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Open a value sealed by [`KeyVault::seal_secret`] with the same
    /// region and context.
    pub async fn open_secret(
        &self,
        region: &str,
        stored: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let malformed = || {
            VaultError::Crypto(coffer_crypto::CryptoError::Malformed(
                "stored secret value is malformed".into(),
            ))
        };
        let len = stored
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(malformed)?;
        let wrapped = stored.get(4..4 + len).ok_or_else(malformed)?;
        let sealed = stored.get(4 + len..).ok_or_else(malformed)?;
        let dek =
            coffer_crypto::SecretKey::from_slice(&self.root_of(region).unwrap(wrapped).await?)?;
        Ok(coffer_crypto::keys::open_blob(&dek, sealed, context)?)
    }
}
