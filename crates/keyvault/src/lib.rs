//! The key vault. It owns every key above the DEK:
//!
//! - the **root key** ([`RootKey`]): protects the vault's own key material
//!   at rest. A key file kept apart from the data dir ([`FileRootKey`]), a
//!   passphrase ([`PassphraseRootKey`]), or an AES key that never leaves a
//!   PKCS#11 token or HSM ([`Pkcs11RootKey`], named by a [`Pkcs11Uri`]);
//! - **KEKs** reached through a [`KeyManager`]: the built-in manager
//!   ([`BuiltinKeyManager`]) keeps each key version's material in the
//!   metadata store wrapped by the root key, and unwraps it only in memory;
//! - **platform keys**, one per region, created on first use;
//! - **DEKs**: one random 256-bit key per disk lineage, stored only wrapped
//!   by a KEK version;
//! - the **audit log** of key use ([`AuditLog`]): a hash chain with a head
//!   MAC'd under a key the root key protects, and its verification.
//!
//! Plaintext keys live only in memory, in types that zeroize on drop.

pub mod audit;
pub mod customer;
mod pkcs11;
mod root;
pub mod tls;
pub mod transit;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use coffer_crypto::{SecretKey, unwrap_key, wrap_key};
use coffer_meta::{DekRow, Meta, MetaError, VaultKeyRow};
use coffer_types::{Id, Kind};
use tokio::sync::Mutex;

pub use audit::{AuditLog, AuditProblem, AuditReport};
pub use pkcs11::{Pkcs11RootKey, Pkcs11Uri};
pub use root::{FileRootKey, PassphraseRootKey, RootKey};
pub use tls::DeploymentCa;
pub use transit::TransitClient;

/// Errors of the key vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Metadata store failure.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// A key could not be unwrapped or used.
    #[error("key error: {0}")]
    Crypto(#[from] coffer_crypto::CryptoError),
    /// The root key is missing, unreadable or not this deployment's.
    #[error("root key problem: {0}")]
    Root(String),
    /// The key exists but may not be used now.
    #[error("key {0} is {1}")]
    KeyUnusable(Id, String),
    /// An external key store refused, failed or could not be reached.
    #[error("{0}")]
    External(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, VaultError>;

/// Wraps and unwraps DEKs under a KEK it holds. Implementations: built in
/// (this crate); HashiCorp Vault/OpenBao transit and PKCS#11 come later. Key
/// material of a KEK never leaves its manager.
#[async_trait]
pub trait KeyManager: Send + Sync + 'static {
    /// Create the material of a new key (version 1) of `region`; returns
    /// what the metadata store keeps for it (opaque to callers).
    async fn generate(&self, region: &str) -> Result<Vec<u8>>;
    /// Wrap `dek` under `key` at `version`, whose stored form is `stored`.
    async fn wrap(
        &self,
        key: &VaultKeyRow,
        version: u32,
        stored: &[u8],
        dek: &SecretKey,
    ) -> Result<Vec<u8>>;
    /// Unwrap a DEK wrapped by [`KeyManager::wrap`].
    async fn unwrap(
        &self,
        key: &VaultKeyRow,
        version: u32,
        stored: &[u8],
        wrapped: &[u8],
    ) -> Result<SecretKey>;
}

/// The root keys of a deployment: its own (which protects what is not
/// regional: the audit log's MAC key, the TLS CA, and the key material of
/// every region that has no root key of its own), and those of the regions
/// that have one, each protecting only its region's key material (platform
/// key, vault keys, secrets, external key store credentials), so that one
/// region's root key lost or compromised reaches no other region's keys.
#[derive(Clone)]
pub struct RootKeys {
    deployment: Arc<dyn RootKey>,
    regions: HashMap<String, Arc<dyn RootKey>>,
}

impl RootKeys {
    /// The deployment's root key, for every region.
    pub fn new(deployment: Arc<dyn RootKey>) -> Self {
        Self {
            deployment,
            regions: HashMap::new(),
        }
    }

    /// `region`'s own root key.
    #[must_use]
    pub fn with_region(mut self, region: impl Into<String>, key: Arc<dyn RootKey>) -> Self {
        self.regions.insert(region.into(), key);
        self
    }

    /// The root key that protects `region`'s key material.
    pub fn of(&self, region: &str) -> &Arc<dyn RootKey> {
        self.regions.get(region).unwrap_or(&self.deployment)
    }

    /// The deployment's own root key.
    pub fn deployment(&self) -> &Arc<dyn RootKey> {
        &self.deployment
    }
}

/// The setting holding the check value of `region`'s own root key.
pub fn region_root_check(region: &str) -> String {
    format!("{ROOT_CHECK}:{region}")
}

/// The built-in key manager: key material wrapped by the root key, kept in
/// the metadata store, unwrapped in memory when used (and cached there).
pub struct BuiltinKeyManager {
    roots: RootKeys,
    cache: Mutex<HashMap<(Id, u32), SecretKey>>,
}

impl BuiltinKeyManager {
    /// A manager whose keys of each region are protected by that region's
    /// root key in `roots`.
    pub fn new(roots: RootKeys) -> Self {
        Self {
            roots,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn material(&self, key: &VaultKeyRow, version: u32, stored: &[u8]) -> Result<SecretKey> {
        let mut cache = self.cache.lock().await;
        if let Some(k) = cache.get(&(key.id, version)) {
            return Ok(k.clone());
        }
        let plain = self.roots.of(&key.region).unwrap(stored).await?;
        let k = SecretKey::from_slice(&plain)?;
        cache.insert((key.id, version), k.clone());
        Ok(k)
    }
}

#[async_trait]
impl KeyManager for BuiltinKeyManager {
    async fn generate(&self, region: &str) -> Result<Vec<u8>> {
        let k = SecretKey::generate();
        self.roots.of(region).wrap(k.expose()).await
    }

    async fn wrap(
        &self,
        key: &VaultKeyRow,
        version: u32,
        stored: &[u8],
        dek: &SecretKey,
    ) -> Result<Vec<u8>> {
        let kek = self.material(key, version, stored).await?;
        Ok(wrap_key(&kek, dek.expose())?)
    }

    async fn unwrap(
        &self,
        key: &VaultKeyRow,
        version: u32,
        stored: &[u8],
        wrapped: &[u8],
    ) -> Result<SecretKey> {
        let kek = self.material(key, version, stored).await?;
        let plain = unwrap_key(&kek, wrapped)?;
        Ok(SecretKey::from_slice(&plain)?)
    }
}

/// Unwrapped customer key material by (key, version).
type Materials = HashMap<(Id, u32), Arc<coffer_crypto::keys::KeyMaterial>>;

/// Clients of external key stores by vault and stored (wrapped) token: a
/// token replaced in the metadata makes a new client on every node.
type Externals = HashMap<(Id, Vec<u8>), Arc<TransitClient>>;

/// Open PKCS#11 keys of customer key versions, by (key, version).
type TokenKeys = HashMap<(Id, u32), Arc<Pkcs11RootKey>>;

/// Tag of a DEK wrapped by a customer key in a PKCS#11 token: `p11gcm1:`
/// then the token's AES-GCM blob (format byte, IV, ciphertext, tag).
pub const P11_TAG: &[u8] = b"p11gcm1:";

/// The PKCS#11 URI of version `version` of customer key `key` in the token
/// `base` names (a URI without `object=`): the object label is
/// `coffer-<key id>-v<version>`.
///
/// # Errors
/// A base that is not a PKCS#11 URI, or one that names an object.
pub fn token_key_uri(base: &str, key: Id, version: u32) -> Result<Pkcs11Uri> {
    let (path, query) = match base.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (base, String::new()),
    };
    if path
        .split(';')
        .any(|a| a.trim_start().starts_with("object="))
    {
        return Err(VaultError::Root(
            "the vault's PKCS#11 URI names an object: give the token only; Coffer names each key version's object".into(),
        ));
    }
    Pkcs11Uri::parse(&format!("{path};object=coffer-{key}-v{version}{query}"))
}

/// A KEK read and checked once for a batch: the key and its external store,
/// or why it may not be used.
type Checked = std::result::Result<(VaultKeyRow, Option<Arc<TransitClient>>), String>;

/// The vault: platform keys, customer keys and DEKs, over a metadata store,
/// a key manager and the root key; and the audit log of their use.
#[derive(Clone)]
pub struct KeyVault {
    meta: Meta,
    manager: Arc<dyn KeyManager>,
    roots: RootKeys,
    materials: Arc<Mutex<Materials>>,
    externals: Arc<Mutex<Externals>>,
    token_keys: Arc<Mutex<TokenKeys>>,
    audit: AuditLog,
}

/// The setting holding the root key check value; its presence marks a
/// deployment whose keys a root key already protects.
pub(crate) const ROOT_CHECK: &str = "root_key_check";

impl KeyVault {
    /// Open the vault, every region's keys under the deployment's root key
    /// `root` (see [`KeyVault::open_with`]).
    pub async fn open(meta: Meta, root: Arc<dyn RootKey>) -> Result<Self> {
        Self::open_with(meta, RootKeys::new(root)).await
    }

    /// Open the vault. The first open with a metadata store records a check
    /// value under each root key (the deployment's, and each region's own);
    /// later opens verify them, so a wrong root key is refused at start with
    /// a clear message, naming its region, instead of failing later. A
    /// region's own root key given for the first time while the region
    /// already has key material (made under the deployment's root key) is
    /// refused too: a region's root key is not changed in place.
    pub async fn open_with(meta: Meta, roots: RootKeys) -> Result<Self> {
        let root = roots.deployment().clone();
        check_root(&meta, ROOT_CHECK, root.as_ref(), "this deployment", || {
            "start with the right --root-key-file, --root-key-uri or passphrase".to_string()
        })
        .await?;
        for (region, key) in &roots.regions {
            let setting = region_root_check(region);
            if meta.setting(&setting).await?.is_none() {
                // A region's first own root key: nothing of the region may
                // be wrapped by another key already.
                let samples = meta.region_root_samples(region).await?;
                let secret_key = samples.secret.as_deref().and_then(sealed_secret_key);
                for wrapped in [
                    samples.material.as_deref(),
                    samples.external_token.as_deref(),
                    samples.import_key.as_deref(),
                    secret_key,
                ]
                .into_iter()
                .flatten()
                {
                    if key.unwrap(wrapped).await.is_err() {
                        return Err(VaultError::Root(format!(
                            "region {region} already has keys made under the deployment's root key, so its own root key ({}) cannot read them: a region's root key is not changed in place. Remove root_key_file / root_key_uri from the region's [[regions]] entry",
                            key.describe()
                        )));
                    }
                }
            }
            check_root(&meta, &setting, key.as_ref(), &format!("region {region}"), || {
                format!("give region {region} its own root key (root_key_file or root_key_uri in its [[regions]] entry) as when its keys were made")
            })
            .await?;
        }
        let audit = AuditLog::open(meta.clone(), root.as_ref()).await?;
        let manager = Arc::new(BuiltinKeyManager::new(roots.clone()));
        Ok(Self {
            meta,
            manager,
            roots,
            materials: Arc::new(Mutex::new(HashMap::new())),
            externals: Arc::new(Mutex::new(HashMap::new())),
            token_keys: Arc::new(Mutex::new(HashMap::new())),
            audit,
        })
    }

    /// The root key protecting `region`'s key material.
    pub(crate) fn root_of(&self, region: &str) -> &Arc<dyn RootKey> {
        self.roots.of(region)
    }

    /// The audit log of key use.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The platform key of `region`, created on first use.
    pub async fn platform_key(&self, region: &str) -> Result<VaultKeyRow> {
        if let Some(k) = self.meta.platform_key(region).await? {
            return Ok(k);
        }
        let material = self.manager.generate(region).await?;
        let id = Id::random(Kind::Key);
        self.meta.insert_platform_key(id, region, &material).await?;
        // Another node may have won the race: read back whichever exists.
        self.meta.platform_key(region).await?.ok_or_else(|| {
            VaultError::Meta(MetaError::NotFound(format!("platform key of {region}")))
        })
    }

    /// Generate a new DEK wrapped under `kek`'s current version; returns its id.
    pub async fn new_dek(&self, kek: &VaultKeyRow) -> Result<(Id, SecretKey)> {
        self.new_dek_with(kek, kek.current_version, None).await
    }

    /// Generate a new DEK wrapped under `version` of `kek` (a platform key,
    /// or a customer key reached through the disk encryption set `set`).
    pub async fn new_dek_with(
        &self,
        kek: &VaultKeyRow,
        version: u32,
        set: Option<Id>,
    ) -> Result<(Id, SecretKey)> {
        self.check_usable(kek).await?;
        let dek = SecretKey::generate();
        let wrapped = self.wrap_under(kek, version, &dek).await?;
        let id = Id::random(Kind::Dek);
        self.meta
            .insert_dek(&DekRow {
                id,
                kek_id: kek.id,
                kek_version: version,
                wrapped,
                encryption_set_id: set,
            })
            .await?;
        Ok((id, dek))
    }

    /// A fresh write DEK for volume `volume` in place of its write DEK
    /// `old`, which has sealed its budget of objects: wrapped as a new
    /// DEK of `old`'s kind is (by the encryption set's key at the version
    /// the set names, audited as the set's identity; or by `old`'s
    /// platform key at its newest version), and recorded as the volume's
    /// if `old` still is. The new DEK is forgotten if the volume moved
    /// meanwhile.
    pub async fn renew_write_dek(&self, volume: Id, old: Id) -> Result<(Id, SecretKey)> {
        let row = self.meta.dek(old).await?;
        let set = match row.encryption_set_id {
            Some(id) => Some(self.meta.encryption_set(id).await?.ok_or_else(|| {
                VaultError::Meta(MetaError::NotFound(format!("encryption set {id}")))
            })?),
            None => None,
        };
        let kek = self
            .meta
            .vault_key(set.as_ref().map_or(row.kek_id, |s| s.key_id))
            .await?;
        let version = set
            .as_ref()
            .and_then(|s| s.key_version)
            .unwrap_or(kek.current_version);
        let made = self
            .new_dek_with(&kek, version, row.encryption_set_id)
            .await;
        if let Some(s) = &set {
            self.audit()
                .record(&coffer_meta::AuditRecord {
                    principal: s.identity_id.to_string(),
                    acting_for: s.identity_id.to_string(),
                    action: "key.wrap".into(),
                    key: Some(s.key_id),
                    key_version: Some(version),
                    resource: volume.to_string(),
                    outcome: if made.is_ok() { "allowed" } else { "denied" }.into(),
                    detail: format!(
                        "through encryption set {}: a fresh write DEK for volume {volume}, whose DEK {old} sealed its budget of objects",
                        s.id
                    ),
                })
                .await?;
        }
        let (id, key) = made?;
        if !self.meta.replace_write_dek(volume, old, id).await? {
            self.meta.forget_unused_deks(&[id]).await?;
            return Err(VaultError::Meta(MetaError::Conflict(format!(
                "DEK {old} is no longer a write DEK of volume {volume}"
            ))));
        }
        Ok((id, key))
    }

    /// Refuse a KEK that may not be used now: disabled, or (a customer
    /// key) deleted, purged, outside its validity, or in a deleted vault.
    async fn check_usable(&self, kek: &VaultKeyRow) -> Result<()> {
        if kek.purpose != "customer" {
            if kek.state != coffer_types::KeyState::Enabled {
                return Err(VaultError::KeyUnusable(kek.id, kek.state.to_string()));
            }
            return Ok(());
        }
        let vault = match kek.vault_id {
            Some(v) => self.meta.vault(v).await?,
            None => None,
        };
        let now = coffer_meta::now();
        match customer::unusable(kek, vault.as_ref(), &now) {
            Some(why) => Err(VaultError::KeyUnusable(kek.id, why)),
            None => Ok(()),
        }
    }

    /// The DEK row of `id` (its KEK, version and set).
    pub async fn dek_row(&self, id: Id) -> Result<DekRow> {
        Ok(self.meta.dek(id).await?)
    }

    /// Unwrap DEK `id` (checking that its KEK may be used).
    pub async fn dek(&self, id: Id) -> Result<SecretKey> {
        self.unwrap_row(&self.meta.dek(id).await?).await
    }

    /// The client of the external key store `vault`'s keys live in, if
    /// any (made once per vault, its token unwrapped by the root key).
    ///
    /// # Errors
    /// A token that does not unwrap, or a bad address.
    pub async fn transit(
        &self,
        vault: &coffer_meta::VaultRow,
    ) -> Result<Option<Arc<TransitClient>>> {
        let Some(ext) = vault.external.as_ref().filter(|e| e.kind == "transit") else {
            return Ok(None);
        };
        let mut cache = self.externals.lock().await;
        let slot = (vault.id, ext.token.clone());
        if let Some(c) = cache.get(&slot) {
            return Ok(Some(c.clone()));
        }
        cache.retain(|(v, _), _| *v != vault.id);
        let token = self.open_credential(vault, "token").await?;
        let c = Arc::new(TransitClient::new(&ext.address, &ext.mount, token)?);
        cache.insert(slot, c.clone());
        Ok(Some(c))
    }

    /// The external key store of a customer key, if its vault has one.
    pub async fn transit_of(&self, key: &VaultKeyRow) -> Result<Option<Arc<TransitClient>>> {
        let Some(vault) = key.vault_id else {
            return Ok(None);
        };
        match self.meta.vault(vault).await? {
            Some(v) => self.transit(&v).await,
            None => Ok(None),
        }
    }

    /// The key of version `version` of customer key `key` in the PKCS#11
    /// token of `vault` (generated in the token, never extractable, if it
    /// is not there yet), or `None` for a vault of another backend.
    ///
    /// # Errors
    /// The token cannot be reached or refuses.
    pub async fn token_key(
        &self,
        vault: &coffer_meta::VaultRow,
        key: Id,
        version: u32,
    ) -> Result<Option<Arc<Pkcs11RootKey>>> {
        let Some(ext) = vault.external.as_ref().filter(|e| e.kind == "pkcs11") else {
            return Ok(None);
        };
        let mut cache = self.token_keys.lock().await;
        if let Some(k) = cache.get(&(key, version)) {
            return Ok(Some(k.clone()));
        }
        let pin = if ext.token.is_empty() {
            None
        } else {
            Some(self.open_credential(vault, "PIN").await?)
        };
        let uri = token_key_uri(&ext.address, key, version)?;
        let k = Arc::new(Pkcs11RootKey::open(uri, pin).await?);
        cache.insert((key, version), k.clone());
        Ok(Some(k))
    }

    /// The token key of a customer key's version, if its vault keeps its
    /// keys in a PKCS#11 token.
    pub(crate) async fn token_key_of_version(
        &self,
        key: &VaultKeyRow,
        version: u32,
    ) -> Result<Option<Arc<Pkcs11RootKey>>> {
        let Some(vault) = key.vault_id else {
            return Ok(None);
        };
        match self.meta.vault(vault).await? {
            Some(v) => self.token_key(&v, key.id, version).await,
            None => Ok(None),
        }
    }

    /// The credential (`what`: token or PIN) of `vault`'s external key
    /// store, unwrapped by its region's root key.
    async fn open_credential(
        &self,
        vault: &coffer_meta::VaultRow,
        what: &str,
    ) -> Result<zeroize::Zeroizing<String>> {
        let sealed = vault.external.as_ref().map_or(&[][..], |e| &e.token[..]);
        let plain = self.root_of(&vault.region).unwrap(sealed).await?;
        Ok(zeroize::Zeroizing::new(
            String::from_utf8(plain.to_vec())
                .map_err(|_| VaultError::External(format!("stored {what} is not text")))?,
        ))
    }

    /// Wrap an external key store's token, for a vault of `region`, for
    /// storage under that region's root key.
    pub async fn seal_token(&self, region: &str, token: &str) -> Result<Vec<u8>> {
        self.root_of(region).wrap(token.as_bytes()).await
    }

    /// Re-wrap a batch of DEKs under `version` of `kek` (the same key or
    /// another): each DEK is unwrapped under what wraps it now (which must
    /// still be usable) and wrapped again, every key involved read and
    /// checked once per batch. Returns each row with its new wrap, for
    /// [`Meta::rewrap_deks`] to store, or why it could not be re-wrapped
    /// (its old key unusable, say); the others go on. The DEK itself, and
    /// so every object sealed under it, is unchanged: rotation re-wraps,
    /// never rewrites.
    pub async fn rewrap_many(
        &self,
        rows: Vec<DekRow>,
        kek: &VaultKeyRow,
        version: u32,
    ) -> Result<Vec<(DekRow, Result<Vec<u8>>)>> {
        self.check_usable(kek).await?;
        let target = self.transit_of(kek).await?;
        let mut old: HashMap<Id, Checked> = HashMap::new();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if let std::collections::hash_map::Entry::Vacant(slot) = old.entry(row.kek_id) {
                let k = self.meta.vault_key(row.kek_id).await?;
                let checked = match self.check_usable(&k).await {
                    Ok(()) => {
                        let t = self.transit_of(&k).await?;
                        Ok((k, t))
                    }
                    Err(VaultError::KeyUnusable(_, why)) => Err(why),
                    Err(e) => Err(e.to_string()),
                };
                slot.insert(checked);
            }
            let wrapped = match &old[&row.kek_id] {
                Err(why) => Err(VaultError::KeyUnusable(row.kek_id, why.clone())),
                Ok((k, t)) => match self.unwrap_checked(&row, k, t.as_deref()).await {
                    Ok(dek) => {
                        self.wrap_checked(kek, version, &dek, target.as_deref())
                            .await
                    }
                    Err(e) => Err(e),
                },
            };
            out.push((row, wrapped));
        }
        Ok(out)
    }

    /// Unwrap the DEK of `row` under `kek` (already read and checked),
    /// through its external store `transit` if it has one.
    async fn unwrap_checked(
        &self,
        row: &DekRow,
        kek: &VaultKeyRow,
        transit: Option<&TransitClient>,
    ) -> Result<SecretKey> {
        if let Some(t) = transit {
            let plain = t
                .decrypt(&kek.name, &row.wrapped, kek.id.to_string().as_bytes())
                .await?;
            return Ok(SecretKey::from_slice(&plain)?);
        }
        if let Some(k) = self.token_key_of_version(kek, row.kek_version).await? {
            let blob = row.wrapped.strip_prefix(P11_TAG).ok_or_else(|| {
                coffer_crypto::CryptoError::Malformed("not a PKCS#11-wrapped data key".into())
            })?;
            return Ok(SecretKey::from_slice(&k.unwrap(blob).await?)?);
        }
        if kek.purpose == "customer" {
            let plain = self
                .key_material(row.kek_id, row.kek_version)
                .await?
                .unwrap(&row.wrapped)?;
            return Ok(SecretKey::from_slice(&plain)?);
        }
        let stored = self
            .meta
            .key_version_material(row.kek_id, row.kek_version)
            .await?;
        self.manager
            .unwrap(kek, row.kek_version, &stored, &row.wrapped)
            .await
    }

    /// Wrap `dek` under `version` of `kek` (already read and checked),
    /// through its external store `transit` if it has one.
    async fn wrap_checked(
        &self,
        kek: &VaultKeyRow,
        version: u32,
        dek: &SecretKey,
        transit: Option<&TransitClient>,
    ) -> Result<Vec<u8>> {
        if let Some(t) = transit {
            return t
                .encrypt(
                    &kek.name,
                    version,
                    dek.expose(),
                    kek.id.to_string().as_bytes(),
                )
                .await;
        }
        if let Some(k) = self.token_key_of_version(kek, version).await? {
            let mut out = P11_TAG.to_vec();
            out.extend_from_slice(&k.wrap(dek.expose()).await?);
            return Ok(out);
        }
        if kek.purpose == "customer" {
            return Ok(self
                .key_material(kek.id, version)
                .await?
                .wrap(dek.expose())?);
        }
        let stored = self.meta.key_version_material(kek.id, version).await?;
        self.manager.wrap(kek, version, &stored, dek).await
    }

    /// Unwrap the DEK of `row`, checking that its KEK may be used.
    async fn unwrap_row(&self, row: &DekRow) -> Result<SecretKey> {
        let kek = self.meta.vault_key(row.kek_id).await?;
        self.check_usable(&kek).await?;
        let transit = self.transit_of(&kek).await?;
        self.unwrap_checked(row, &kek, transit.as_deref()).await
    }

    /// Wrap `dek` under `version` of `kek` (a customer key's material, or a
    /// platform key through the key manager).
    async fn wrap_under(
        &self,
        kek: &VaultKeyRow,
        version: u32,
        dek: &SecretKey,
    ) -> Result<Vec<u8>> {
        let transit = self.transit_of(kek).await?;
        self.wrap_checked(kek, version, dek, transit.as_deref())
            .await
    }
}

/// The wrapped data key inside a value sealed by
/// [`KeyVault::seal_secret`], if the value is well formed.
fn sealed_secret_key(stored: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(stored.get(..4)?.try_into().ok()?) as usize;
    stored.get(4..4 + len)
}

/// Verify root key `root` against the check value in setting `setting`
/// (recording one, the first time); `whose` and `fix` make the refusal's
/// message.
async fn check_root(
    meta: &Meta,
    setting: &str,
    root: &dyn RootKey,
    whose: &str,
    fix: impl Fn() -> String,
) -> Result<()> {
    let check = root.wrap(b"coffer root key check v1").await?;
    let stored = meta.setting_init(setting, &hex::encode(&check)).await?;
    let stored = hex::decode(&stored)
        .map_err(|_| VaultError::Root(format!("stored root key check of {whose} is not hex")))?;
    match root.unwrap(&stored).await {
        Ok(p) if &p[..] == b"coffer root key check v1" => Ok(()),
        // A root key that cannot be reached (an HSM that fails) is not a
        // wrong root key: say what failed.
        Err(e @ VaultError::Root(_)) => Err(e),
        _ => Err(VaultError::Root(format!(
            "the root key ({}) is not the one {whose}'s keys were created with; {}",
            root.describe(),
            fix()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dek_round_trip_and_wrong_root_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.sqlite").display());
        let meta = Meta::open(&url).await.unwrap();
        let root: Arc<dyn RootKey> =
            Arc::new(FileRootKey::load_or_create(&dir.path().join("root.key")).unwrap());
        let vault = KeyVault::open(meta.clone(), root).await.unwrap();
        let pk = vault.platform_key("local").await.unwrap();
        assert_eq!(
            vault.platform_key("local").await.unwrap().id,
            pk.id,
            "one platform key per region"
        );
        let (id, dek) = vault.new_dek(&pk).await.unwrap();
        assert_eq!(vault.dek(id).await.unwrap(), dek);
        let stored = meta.dek(id).await.unwrap().wrapped;
        assert!(
            !stored.windows(32).any(|w| w == dek.expose()),
            "DEK stored in plaintext"
        );

        let other: Arc<dyn RootKey> =
            Arc::new(FileRootKey::load_or_create(&dir.path().join("other.key")).unwrap());
        let err = KeyVault::open(meta, other)
            .await
            .err()
            .expect("wrong root key accepted");
        assert!(err.to_string().contains("not the one"), "{err}");
    }

    #[tokio::test]
    async fn a_region_with_its_own_root_key_keeps_its_keys_under_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.sqlite").display());
        let meta = Meta::open(&url).await.unwrap();
        let file = |name: &str| -> Arc<dyn RootKey> {
            Arc::new(FileRootKey::load_or_create(&dir.path().join(name)).unwrap())
        };
        let (deployment, east) = (file("root.key"), file("east.key"));
        let roots = RootKeys::new(deployment.clone()).with_region("east", east.clone());
        let vault = KeyVault::open_with(meta.clone(), roots.clone())
            .await
            .unwrap();
        let (west_pk, east_pk) = (
            vault.platform_key("west").await.unwrap(),
            vault.platform_key("east").await.unwrap(),
        );
        let (west_dek, _) = vault.new_dek(&west_pk).await.unwrap();
        let (east_dek, east_plain) = vault.new_dek(&east_pk).await.unwrap();
        assert_eq!(vault.dek(east_dek).await.unwrap(), east_plain);
        // East's platform key is wrapped by east's root key, not by the
        // deployment's; west's by the deployment's.
        let east_material = meta.key_version_material(east_pk.id, 1).await.unwrap();
        assert!(east.unwrap(&east_material).await.is_ok());
        assert!(deployment.unwrap(&east_material).await.is_err());
        let west_material = meta.key_version_material(west_pk.id, 1).await.unwrap();
        assert!(deployment.unwrap(&west_material).await.is_ok());
        assert!(east.unwrap(&west_material).await.is_err());
        // Secrets and external credentials of a region go under its root.
        let sealed = vault.seal_secret("east", b"s3cret", b"ctx").await.unwrap();
        assert_eq!(
            &vault.open_secret("east", &sealed, b"ctx").await.unwrap()[..],
            b"s3cret"
        );
        assert!(vault.open_secret("west", &sealed, b"ctx").await.is_err());

        // Another key for east is refused, naming the region; so is a root
        // key of its own for west, whose keys the deployment's root made.
        let err = KeyVault::open_with(
            meta.clone(),
            RootKeys::new(deployment.clone()).with_region("east", file("wrong.key")),
        )
        .await
        .err()
        .expect("a wrong root key for east accepted");
        assert!(err.to_string().contains("region east"), "{err}");
        let err = KeyVault::open_with(
            meta.clone(),
            roots.clone().with_region("west", file("west.key")),
        )
        .await
        .err()
        .expect("a new root key for a region with keys accepted");
        assert!(err.to_string().contains("not changed in place"), "{err}");
        // The right keys open it again, every DEK readable.
        let vault = KeyVault::open_with(meta, roots).await.unwrap();
        assert_eq!(vault.dek(east_dek).await.unwrap(), east_plain);
        vault.dek(west_dek).await.unwrap();
    }
}
