//! `coffer vault …`: key vaults (create, list, show, update, delete,
//! recover, purge, import-key) and `coffer key …`: the keys in them
//! (create, import, list, show, versions, rotate, enable, disable, update,
//! delete, recover, purge) and `coffer secret …`: the secrets in them (set,
//! list, show, get, delete, recover, purge).

use anyhow::{Context, bail};
use base64::Engine;
use clap::Subcommand;
use coffer_types::Kind;
use coffer_wire::{
    CreateKey, CreateVault, DecryptRequest, EncryptRequest, GenerateDataKeyRequest, ImportKey, Key,
    KeyOperationResult, KeyQuery, KeyVersion, Page, ReEncryptRequest, RotateKey, Secret,
    SecretQuery, SecretValue, SetSecret, UnwrapRequest, UpdateKey, UpdateVault, Vault, VaultQuery,
    WrapRequest,
};

use super::{Confirm, confirm_delete};
use crate::client::{Client, Paging, seg};
use crate::output::{Output, View};
use crate::resolve;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A vault's table columns.
pub const VAULT_COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("REGION", "/region"),
    ("SOFT DELETE", "/soft_delete"),
    ("PURGE PROTECTION", "/purge_protection"),
    ("RETENTION DAYS", "/retention_days"),
    ("STATE", "/state"),
    ("CREATED", "/created_at"),
];

/// A key's table columns.
pub const KEY_COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("TYPE", "/key_type"),
    ("ENABLED", "/enabled"),
    ("VERSION", "/current_version"),
    ("STATE", "/state"),
    ("EXPIRES", "/expires_at"),
    ("CREATED", "/created_at"),
];

const VERSION_COLUMNS: &[(&str, &str)] = &[
    ("VERSION", "/version"),
    ("ORIGIN", "/origin"),
    ("CREATED", "/created_at"),
];

#[derive(Debug, Subcommand)]
pub enum VaultCmd {
    /// Create a key vault. Disk encryption needs soft delete (on by
    /// default) and purge protection (--purge-protection).
    Create {
        /// Name (unique among the account's vaults until purged).
        #[arg(long)]
        name: String,
        /// Region (default: the deployment's first).
        #[arg(long)]
        region: Option<String>,
        /// Owning account, id or name (default: yours).
        #[arg(long)]
        account: Option<String>,
        /// Days a deleted vault or key stays recoverable, 7-90.
        #[arg(long, default_value_t = 90)]
        retention_days: u32,
        /// Turn purge protection on (it cannot be turned off).
        #[arg(long)]
        purge_protection: bool,
        /// Create it without soft delete: deletes are purges at once.
        #[arg(long)]
        no_soft_delete: bool,
        /// Keep the vault's keys in the OpenBao (or HashiCorp Vault)
        /// transit engine at this URL, e.g. http://127.0.0.1:8200: each key
        /// is the transit key of the same name, and its material never
        /// enters Coffer.
        #[arg(long, requires = "transit_token_file")]
        transit_address: Option<String>,
        /// Where that transit engine is mounted.
        #[arg(long, default_value = "transit", requires = "transit_address")]
        transit_mount: String,
        /// A file holding the token Coffer uses with the transit engine
        /// (allowed to read, create and rotate the vault's keys and to
        /// encrypt and decrypt with them).
        #[arg(long, requires = "transit_address")]
        transit_token_file: Option<std::path::PathBuf>,
        /// Keep the vault's keys in a PKCS#11 token (an HSM, or SoftHSM2):
        /// a URI naming the module and token, without an object, e.g.
        /// 'pkcs11:token=keys?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/coffer/keys.pin'
        /// (the server reads the PIN file). Each key version is an AES-256
        /// key generated in the token, never extractable.
        #[arg(long, conflicts_with = "transit_address")]
        pkcs11_uri: Option<String>,
        /// A file holding the token's user PIN, sent to the server (which
        /// keeps it wrapped by its root key), when the URI has no
        /// pin-source.
        #[arg(long, requires = "pkcs11_uri")]
        pkcs11_pin_file: Option<std::path::PathBuf>,
    },
    /// List the key vaults you may see.
    List {
        /// Only vaults with this exact name.
        #[arg(long)]
        name: Option<String>,
        /// Only vaults of this account (id or name).
        #[arg(long)]
        account: Option<String>,
        /// List soft-deleted vaults (recoverable) instead.
        #[arg(long)]
        deleted: bool,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a key vault.
    Show {
        /// Vault id or name.
        vault: String,
    },
    /// Turn on soft delete or purge protection, or change the retention.
    Update {
        /// Vault id or name.
        vault: String,
        /// Days a deleted vault or key stays recoverable, 7-90.
        #[arg(long)]
        retention_days: Option<u32>,
        /// Turn purge protection on (for good).
        #[arg(long)]
        enable_purge_protection: bool,
        /// Turn soft delete on (for good).
        #[arg(long)]
        enable_soft_delete: bool,
        /// A file holding a new token for the vault's transit engine (the
        /// old one expiring or revoked); every node uses it from its next
        /// request.
        #[arg(long)]
        transit_token_file: Option<std::path::PathBuf>,
    },
    /// Delete a key vault: recoverable with its keys for the retention
    /// period when it has soft delete, else purged at once (asks first,
    /// unless --yes).
    Delete {
        /// Vault id or name.
        vault: String,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Recover a soft-deleted key vault and its keys.
    Recover {
        /// Vault id (a deleted vault is found by id only).
        vault: String,
    },
    /// Purge a soft-deleted key vault: its keys' material is destroyed for
    /// good; data under them becomes unreadable (asks first, unless --yes).
    Purge {
        /// Vault id.
        vault: String,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Print the vault's import key (public, PEM), to wrap key material for
    /// import by other tools; `coffer key import` uses it for you.
    ImportKey {
        /// Vault id or name.
        vault: String,
    },
}

/// `coffer key grant …`.
#[derive(Debug, Subcommand)]
pub enum GrantCmd {
    /// Let a principal of the key's tenant (or of another tenant, where
    /// the key's tenant allows it: `coffer tenant update`) use the key: e.g. a disk
    /// encryption set's identity (--operations Describe,WrapKey,UnwrapKey),
    /// or another account (Describe,Decrypt,ReEncrypt,CreateGrant,
    /// GenerateDataKey, seed 002's list).
    Create {
        #[command(flatten)]
        key: KeyRef,
        /// The principal (id) to allow.
        #[arg(long)]
        grantee: String,
        /// Comma-separated: Describe, Encrypt, Decrypt, ReEncrypt,
        /// GenerateDataKey, WrapKey, UnwrapKey, CreateGrant.
        #[arg(long, value_delimiter = ',', required = true)]
        operations: Vec<String>,
        /// A name for the grant.
        #[arg(long)]
        name: Option<String>,
        /// A principal (id) that may retire the grant besides its grantee.
        #[arg(long)]
        retiring_principal: Option<String>,
        /// Allow the operations only with exactly this encryption context
        /// (Encrypt, Decrypt, ReEncrypt, GenerateDataKey, Describe only).
        #[arg(long)]
        context_equals: Option<String>,
    },
    /// List the active grants on a key.
    List(KeyRef),
    /// Revoke a grant (a key administrator): its grantee loses the key at
    /// once; disks whose set identity held the key through it are cut off.
    Revoke {
        /// Grant id (grant-…).
        grant: String,
    },
    /// Retire a grant: as its grantee or retiring principal (or a key
    /// administrator).
    Retire {
        /// Grant id (grant-…).
        grant: String,
    },
}

/// A grant's table columns.
const GRANT_COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("GRANTEE", "/grantee_id"),
    ("OPERATIONS", "/operations"),
    ("NAME", "/name"),
    ("STATE", "/state"),
    ("CREATED", "/created_at"),
];

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create a key, generated inside the vault.
    Create {
        /// Vault id or name.
        #[arg(long)]
        vault: String,
        /// Name (unique in the vault until purged).
        #[arg(long)]
        name: String,
        /// AES256 (default), RSA2048, RSA3072 or RSA4096.
        #[arg(long = "type", default_value = "AES256")]
        key_type: String,
        #[command(flatten)]
        opts: KeyOpts,
    },
    /// Import a key (bring your own key). The material is wrapped on this
    /// machine under the vault's import key before it is sent.
    Import {
        /// Vault id or name.
        #[arg(long)]
        vault: String,
        /// Name (unique in the vault until purged).
        #[arg(long)]
        name: String,
        /// AES256, RSA2048, RSA3072 or RSA4096.
        #[arg(long = "type")]
        key_type: String,
        /// File holding the material: 32 raw bytes (or 64 hex digits) for
        /// AES256; an RSA private key as PKCS#8 PEM or DER for RSA.
        #[arg(long)]
        material_file: std::path::PathBuf,
        #[command(flatten)]
        opts: KeyOpts,
    },
    /// List a vault's keys.
    List {
        /// Vault id or name.
        #[arg(long)]
        vault: String,
        /// List soft-deleted keys (recoverable) instead.
        #[arg(long)]
        deleted: bool,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a key (never its material).
    Show(KeyRef),
    /// List a key's versions (with the public key of RSA versions).
    Versions(KeyRef),
    /// Add a new version and make it current (generated, or imported with
    /// --material-file); older versions still unwrap.
    Rotate {
        #[command(flatten)]
        key: KeyRef,
        /// Import the new version's material from this file.
        #[arg(long)]
        material_file: Option<std::path::PathBuf>,
    },
    /// Enable a key.
    Enable(KeyRef),
    /// Disable a key: nothing is wrapped, unwrapped, encrypted or
    /// decrypted with it until it is enabled again.
    Disable(KeyRef),
    /// Change a key's validity times or rotation period.
    Update {
        #[command(flatten)]
        key: KeyRef,
        #[command(flatten)]
        opts: KeyOpts,
    },
    /// Delete a key: recoverable for the vault's retention period when the
    /// vault has soft delete, else purged at once (asks first, unless --yes).
    Delete {
        #[command(flatten)]
        key: KeyRef,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Recover a soft-deleted key.
    Recover(KeyRef),
    /// Grants on a key (as AWS KMS grants): let one principal use the key
    /// for some operations, until retired or revoked.
    #[command(subcommand)]
    Grant(GrantCmd),
    /// Encrypt a small message (up to 4 KiB) with the key; prints the
    /// ciphertext (`coffer:vN:…`).
    Encrypt {
        #[command(flatten)]
        key: KeyRef,
        #[command(flatten)]
        input: Input,
        /// Encryption context, bound to the ciphertext.
        #[arg(long)]
        context: Option<String>,
    },
    /// Decrypt a ciphertext of the key; prints the plaintext (base64 in
    /// `plaintext`, or the bytes themselves with --raw).
    Decrypt {
        #[command(flatten)]
        key: KeyRef,
        /// The ciphertext (`coffer:vN:…`).
        #[arg(long)]
        ciphertext: String,
        /// The encryption context it was made with.
        #[arg(long)]
        context: Option<String>,
        /// Write the plaintext's bytes to stdout instead of the result.
        #[arg(long)]
        raw: bool,
    },
    /// Wrap a key (16 to 512 bytes, from a file) with the key.
    Wrap {
        #[command(flatten)]
        key: KeyRef,
        /// File holding the key to wrap.
        #[arg(long)]
        key_file: std::path::PathBuf,
    },
    /// Unwrap a key wrapped by the key.
    Unwrap {
        #[command(flatten)]
        key: KeyRef,
        /// The wrapped key (`coffer:vN:…`).
        #[arg(long)]
        ciphertext: String,
    },
    /// Make a 256-bit data key: in the clear (base64) and encrypted under
    /// the key.
    GenerateDataKey {
        #[command(flatten)]
        key: KeyRef,
        /// Encryption context of the encrypted copy.
        #[arg(long)]
        context: Option<String>,
    },
    /// Decrypt a ciphertext of the key and encrypt it under another key,
    /// inside the vault.
    ReEncrypt {
        #[command(flatten)]
        key: KeyRef,
        /// The ciphertext.
        #[arg(long)]
        ciphertext: String,
        /// Its encryption context.
        #[arg(long)]
        context: Option<String>,
        /// The key to encrypt under (id).
        #[arg(long)]
        destination_key: String,
        /// The new ciphertext's encryption context.
        #[arg(long)]
        destination_context: Option<String>,
    },
    /// Purge a soft-deleted key: its material is destroyed for good (asks
    /// first, unless --yes).
    Purge {
        #[command(flatten)]
        key: KeyRef,
        #[command(flatten)]
        confirm: Confirm,
    },
}

/// A key by id, or by name with its vault.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyRef {
    /// Key id, or name with --vault.
    key: String,
    /// The vault (id or name), when the key is given by name.
    #[arg(long)]
    vault: Option<String>,
}

/// The message to encrypt: text or a file.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Input {
    /// The message, as text.
    #[arg(long)]
    plaintext: Option<String>,
    /// A file holding the message.
    #[arg(long)]
    plaintext_file: Option<std::path::PathBuf>,
}

/// Validity and rotation settings of a key.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeyOpts {
    /// Not usable before this time (RFC 3339; "" clears it).
    #[arg(long)]
    not_before: Option<String>,
    /// Not usable from this time (RFC 3339; "" clears it).
    #[arg(long)]
    expires: Option<String>,
    /// Rotate automatically this many days after the newest version (0:
    /// never).
    #[arg(long)]
    rotation_days: Option<u32>,
    /// Create the key disabled.
    #[arg(long)]
    disabled: bool,
}

async fn key_id(c: &Client, r: &KeyRef) -> anyhow::Result<String> {
    let given = r.key.trim();
    if given.starts_with("key-") {
        return resolve::id(c, Kind::Key, given).await;
    }
    if r.vault.is_none() {
        bail!("'{given}' is not a key id (key-…): give the id, or the name with --vault VAULT");
    }
    let vault = resolve::id(c, Kind::Vault, r.vault.as_deref().unwrap_or_default()).await?;
    let keys = c
        .list::<_, Key>(
            &format!("/v1/vaults/{}/keys", seg(&vault)),
            &KeyQuery::default(),
            &Paging::default(),
        )
        .await?
        .items;
    keys.into_iter()
        .find(|k| k.name == given)
        .map(|k| k.id)
        .with_context(|| {
            format!("vault {vault} has no key named '{given}' (`coffer key list --vault {vault}`)")
        })
}

/// Key material from a file, wrapped under `vault`'s import key, base64.
async fn wrapped_material(
    c: &Client,
    vault: &str,
    key_type: &str,
    file: &std::path::Path,
) -> anyhow::Result<String> {
    let raw = zeroize::Zeroizing::new(
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?,
    );
    let material = if key_type.eq_ignore_ascii_case("AES256") {
        let text = String::from_utf8_lossy(&raw);
        let hexed = text.trim();
        if raw.len() == 32 {
            raw
        } else if hexed.len() == 64 && hexed.bytes().all(|b| b.is_ascii_hexdigit()) {
            zeroize::Zeroizing::new(hex::decode(hexed)?)
        } else {
            bail!(
                "{} holds {} bytes: AES256 material is 32 raw bytes or 64 hex digits (e.g. `openssl rand 32 > key.bin`)",
                file.display(),
                raw.len()
            );
        }
    } else if raw.starts_with(b"-----BEGIN") {
        coffer_crypto::keys::pem_body(&raw, "PRIVATE KEY")?
    } else {
        raw
    };
    let ik: ImportKey = c
        .get(&format!("/v1/vaults/{}/import-key", seg(vault)))
        .await?;
    let spki = coffer_crypto::keys::pem_body(ik.public_key.as_bytes(), "PUBLIC KEY")?;
    let blob = coffer_crypto::keys::wrap_for_import(&spki, &material)?;
    Ok(B64.encode(blob))
}

fn vault_query(name: Option<String>, account: Option<String>, deleted: bool) -> VaultQuery {
    VaultQuery {
        name,
        account,
        state: deleted.then(|| "deleted".to_string()),
        ..VaultQuery::default()
    }
}

/// A vault id; a name is looked up among live and then deleted vaults.
async fn vault_id(c: &Client, given: &str) -> anyhow::Result<String> {
    if given.starts_with("kv-") {
        return resolve::id(c, Kind::Vault, given).await;
    }
    match resolve::id(c, Kind::Vault, given).await {
        Ok(id) => Ok(id),
        Err(e) => {
            let deleted = c
                .list::<_, Vault>(
                    "/v1/vaults",
                    &vault_query(Some(given.to_string()), None, true),
                    &Paging::default(),
                )
                .await?
                .items;
            match deleted.as_slice() {
                [one] => Ok(one.id.clone()),
                _ => Err(e),
            }
        }
    }
}

/// Run a vault command.
pub async fn vault(c: &Client, out: &Output, cmd: VaultCmd) -> anyhow::Result<()> {
    match cmd {
        VaultCmd::Create {
            name,
            region,
            account,
            retention_days,
            purge_protection,
            no_soft_delete,
            transit_address,
            transit_mount,
            transit_token_file,
            pkcs11_uri,
            pkcs11_pin_file,
        } => {
            let read = |file: &std::path::Path, what: &str| {
                std::fs::read_to_string(file)
                    .map(|t| t.trim().to_string())
                    .map_err(|e| {
                        anyhow::anyhow!("cannot read the {what} file {}: {e}", file.display())
                    })
            };
            let external = match (transit_address, transit_token_file) {
                _ if pkcs11_uri.is_some() => Some(coffer_wire::ExternalStore {
                    kind: "pkcs11".into(),
                    address: pkcs11_uri.unwrap_or_default(),
                    mount: None,
                    token: match &pkcs11_pin_file {
                        Some(f) => read(f, "PKCS#11 PIN")?,
                        None => String::new(),
                    },
                }),
                (Some(address), Some(file)) => Some(coffer_wire::ExternalStore {
                    kind: "transit".into(),
                    address,
                    mount: Some(transit_mount),
                    token: read(&file, "transit token")?,
                }),
                _ => None,
            };
            let body = CreateVault {
                name,
                region,
                account_id: resolve::opt(c, Kind::Account, account.as_deref()).await?,
                soft_delete: Some(!no_soft_delete),
                retention_days: Some(retention_days),
                purge_protection: Some(purge_protection),
                external,
            };
            let v: Vault = c.post("/v1/vaults", &body).await?;
            out.show(&v, View::Fields)
        }
        VaultCmd::List {
            name,
            account,
            deleted,
            paging,
        } => {
            let account = resolve::opt(c, Kind::Account, account.as_deref()).await?;
            let q = vault_query(name, account, deleted);
            let l = c.list::<_, Vault>("/v1/vaults", &q, &paging).await?;
            out.show_list(&l, View::Columns(VAULT_COLUMNS))
        }
        VaultCmd::Show { vault } => {
            let id = vault_id(c, &vault).await?;
            let v: Vault = c.get(&format!("/v1/vaults/{}", seg(&id))).await?;
            out.show(&v, View::Fields)
        }
        VaultCmd::Update {
            vault,
            retention_days,
            enable_purge_protection,
            enable_soft_delete,
            transit_token_file,
        } => {
            let id = vault_id(c, &vault).await?;
            let transit_token = match transit_token_file {
                Some(f) => Some(
                    std::fs::read_to_string(&f)
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "cannot read the transit token file {}: {e}",
                                f.display()
                            )
                        })?
                        .trim()
                        .to_string(),
                ),
                None => None,
            };
            let body = UpdateVault {
                soft_delete: enable_soft_delete.then_some(true),
                retention_days,
                purge_protection: enable_purge_protection.then_some(true),
                transit_token,
            };
            let v: Vault = c.patch(&format!("/v1/vaults/{}", seg(&id)), &body).await?;
            out.show(&v, View::Fields)
        }
        VaultCmd::Delete { vault, confirm } => {
            let id = vault_id(c, &vault).await?;
            let v: Vault = c.get(&format!("/v1/vaults/{}", seg(&id))).await?;
            let keys = c
                .list::<_, Key>(
                    &format!("/v1/vaults/{}/keys", seg(&id)),
                    &KeyQuery::default(),
                    &Paging::default(),
                )
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            let mut deps = Vec::new();
            if !keys.is_empty() {
                let verb = if v.soft_delete {
                    format!(
                        "deleted with it (recoverable for {} days)",
                        v.retention_days
                    )
                } else {
                    "purged with it: their material is destroyed".to_string()
                };
                deps.push(format!("{} keys, {verb}", keys.len()));
            }
            confirm_delete(
                c,
                confirm,
                "vaults/delete",
                &id,
                &format!("vault {} ({id})", v.name),
                deps,
            )
            .await?;
            let v: Vault = c.delete(&format!("/v1/vaults/{}", seg(&id))).await?;
            out.show(&v, View::Fields)
        }
        VaultCmd::Recover { vault } => {
            let id = vault_id(c, &vault).await?;
            let v: Vault = c
                .action(&format!("/v1/vaults/{}/recover", seg(&id)))
                .await?;
            out.show(&v, View::Fields)
        }
        VaultCmd::Purge { vault, confirm } => {
            let id = vault_id(c, &vault).await?;
            confirm_delete(
                c,
                confirm,
                "vaults/delete",
                &id,
                &format!("vault {id} for good"),
                vec![
                    "every key in it: their material is destroyed, data under them is lost".into(),
                ],
            )
            .await?;
            let v: Vault = c.action(&format!("/v1/vaults/{}/purge", seg(&id))).await?;
            out.show(&v, View::Fields)
        }
        VaultCmd::ImportKey { vault } => {
            let id = vault_id(c, &vault).await?;
            let k: ImportKey = c
                .get(&format!("/v1/vaults/{}/import-key", seg(&id)))
                .await?;
            out.show(&k, View::Fields)
        }
    }
}

fn key_body(name: String, key_type: String, opts: KeyOpts) -> CreateKey {
    CreateKey {
        name,
        key_type: Some(key_type),
        material: None,
        wrapped_material: None,
        disabled: opts.disabled.then_some(true),
        not_before: opts.not_before,
        expires_at: opts.expires,
        rotation_days: opts.rotation_days,
    }
}

/// Run a key command.
pub async fn key(c: &Client, out: &Output, cmd: KeyCmd) -> anyhow::Result<()> {
    match cmd {
        KeyCmd::Create {
            vault,
            name,
            key_type,
            opts,
        } => {
            let v = resolve::id(c, Kind::Vault, &vault).await?;
            let body = key_body(name, key_type, opts);
            let k: Key = c
                .post(&format!("/v1/vaults/{}/keys", seg(&v)), &body)
                .await?;
            out.show(&k, View::Fields)
        }
        KeyCmd::Import {
            vault,
            name,
            key_type,
            material_file,
            opts,
        } => {
            let v = resolve::id(c, Kind::Vault, &vault).await?;
            let wrapped = wrapped_material(c, &v, &key_type, &material_file).await?;
            let mut body = key_body(name, key_type, opts);
            body.wrapped_material = Some(wrapped);
            let k: Key = c
                .post(&format!("/v1/vaults/{}/keys", seg(&v)), &body)
                .await?;
            out.show(&k, View::Fields)
        }
        KeyCmd::List {
            vault,
            deleted,
            paging,
        } => {
            let v = vault_id(c, &vault).await?;
            let q = KeyQuery {
                state: deleted.then(|| "deleted".to_string()),
                ..KeyQuery::default()
            };
            let l = c
                .list::<_, Key>(&format!("/v1/vaults/{}/keys", seg(&v)), &q, &paging)
                .await?;
            out.show_list(&l, View::Columns(KEY_COLUMNS))
        }
        KeyCmd::Show(r) => {
            let id = key_id(c, &r).await?;
            let k: Key = c.get(&format!("/v1/keys/{}", seg(&id))).await?;
            out.show(&k, View::Fields)
        }
        KeyCmd::Versions(r) => {
            let id = key_id(c, &r).await?;
            let p: Page<KeyVersion> = c.get(&format!("/v1/keys/{}/versions", seg(&id))).await?;
            let l = crate::client::Listed {
                items: p.items,
                next_token: None,
            };
            out.show_list(&l, View::Columns(VERSION_COLUMNS))
        }
        KeyCmd::Rotate { key, material_file } => {
            let id = key_id(c, &key).await?;
            let body = match material_file {
                Some(f) => {
                    let k: Key = c.get(&format!("/v1/keys/{}", seg(&id))).await?;
                    RotateKey {
                        material: None,
                        wrapped_material: Some(
                            wrapped_material(c, &k.vault_id, &k.key_type, &f).await?,
                        ),
                    }
                }
                None => RotateKey::default(),
            };
            let k: Key = c
                .post(&format!("/v1/keys/{}/rotate", seg(&id)), &body)
                .await?;
            out.show(&k, View::Fields)
        }
        KeyCmd::Enable(r) => set_enabled(c, out, &r, true).await,
        KeyCmd::Disable(r) => set_enabled(c, out, &r, false).await,
        KeyCmd::Update { key, opts } => {
            let id = key_id(c, &key).await?;
            let body = UpdateKey {
                enabled: None,
                not_before: opts.not_before,
                expires_at: opts.expires,
                rotation_days: opts.rotation_days,
            };
            let k: Key = c.patch(&format!("/v1/keys/{}", seg(&id)), &body).await?;
            out.show(&k, View::Fields)
        }
        KeyCmd::Delete { key, confirm } => {
            let id = key_id(c, &key).await?;
            let k: Key = c.get(&format!("/v1/keys/{}", seg(&id))).await?;
            let v: Vault = c.get(&format!("/v1/vaults/{}", seg(&k.vault_id))).await?;
            let deps = if v.soft_delete {
                vec![]
            } else {
                vec!["its material, destroyed at once: the vault has no soft delete".into()]
            };
            confirm_delete(
                c,
                confirm,
                "keys/delete",
                &id,
                &format!("key {} ({id})", k.name),
                deps,
            )
            .await?;
            let k: Key = c.delete(&format!("/v1/keys/{}", seg(&id))).await?;
            out.show(&k, View::Fields)
        }
        KeyCmd::Encrypt {
            key,
            input,
            context,
        } => {
            let id = key_id(c, &key).await?;
            let data = match (input.plaintext, input.plaintext_file) {
                (Some(t), _) => zeroize::Zeroizing::new(t.into_bytes()),
                (None, Some(f)) => zeroize::Zeroizing::new(
                    std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?,
                ),
                (None, None) => bail!("give --plaintext or --plaintext-file"),
            };
            let body = EncryptRequest {
                plaintext: B64.encode(&data[..]),
                context,
            };
            let r: KeyOperationResult = c
                .post(&format!("/v1/keys/{}/encrypt", seg(&id)), &body)
                .await?;
            out.show(&r, View::Fields)
        }
        KeyCmd::Decrypt {
            key,
            ciphertext,
            context,
            raw,
        } => {
            let id = key_id(c, &key).await?;
            let body = DecryptRequest {
                ciphertext,
                context,
            };
            let r: KeyOperationResult = c
                .post(&format!("/v1/keys/{}/decrypt", seg(&id)), &body)
                .await?;
            if raw {
                let bytes = zeroize::Zeroizing::new(B64.decode(r.plaintext.unwrap_or_default())?);
                use std::io::Write as _;
                std::io::stdout().write_all(&bytes)?;
                return Ok(());
            }
            out.show(&r, View::Fields)
        }
        KeyCmd::Wrap { key, key_file } => {
            let id = key_id(c, &key).await?;
            let data = zeroize::Zeroizing::new(
                std::fs::read(&key_file)
                    .with_context(|| format!("cannot read {}", key_file.display()))?,
            );
            let body = WrapRequest {
                key: B64.encode(&data[..]),
            };
            let r: KeyOperationResult = c
                .post(&format!("/v1/keys/{}/wrap", seg(&id)), &body)
                .await?;
            out.show(&r, View::Fields)
        }
        KeyCmd::Unwrap { key, ciphertext } => {
            let id = key_id(c, &key).await?;
            let r: KeyOperationResult = c
                .post(
                    &format!("/v1/keys/{}/unwrap", seg(&id)),
                    &UnwrapRequest { ciphertext },
                )
                .await?;
            out.show(&r, View::Fields)
        }
        KeyCmd::GenerateDataKey { key, context } => {
            let id = key_id(c, &key).await?;
            let r: KeyOperationResult = c
                .post(
                    &format!("/v1/keys/{}/generate-data-key", seg(&id)),
                    &GenerateDataKeyRequest { context },
                )
                .await?;
            out.show(&r, View::Fields)
        }
        KeyCmd::ReEncrypt {
            key,
            ciphertext,
            context,
            destination_key,
            destination_context,
        } => {
            let id = key_id(c, &key).await?;
            let body = ReEncryptRequest {
                ciphertext,
                context,
                destination_key_id: resolve::id(c, Kind::Key, &destination_key).await?,
                destination_context,
            };
            let r: KeyOperationResult = c
                .post(&format!("/v1/keys/{}/re-encrypt", seg(&id)), &body)
                .await?;
            out.show(&r, View::Fields)
        }
        KeyCmd::Grant(g) => grant(c, out, g).await,
        KeyCmd::Recover(r) => {
            let id = key_id(c, &r).await?;
            let k: Key = c.action(&format!("/v1/keys/{}/recover", seg(&id))).await?;
            out.show(&k, View::Fields)
        }
        KeyCmd::Purge { key, confirm } => {
            let id = key_id(c, &key).await?;
            confirm_delete(
                c,
                confirm,
                "keys/delete",
                &id,
                &format!("key {id} for good"),
                vec!["its material, destroyed: data under it is lost".into()],
            )
            .await?;
            let k: Key = c.action(&format!("/v1/keys/{}/purge", seg(&id))).await?;
            out.show(&k, View::Fields)
        }
    }
}

async fn set_enabled(c: &Client, out: &Output, r: &KeyRef, on: bool) -> anyhow::Result<()> {
    let id = key_id(c, r).await?;
    let body = UpdateKey {
        enabled: Some(on),
        not_before: None,
        expires_at: None,
        rotation_days: None,
    };
    let k: Key = c.patch(&format!("/v1/keys/{}", seg(&id)), &body).await?;
    out.show(&k, View::Fields)
}

/// A secret's table columns.
pub const SECRET_COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("VERSION", "/current_version"),
    ("CONTENT TYPE", "/content_type"),
    ("STATE", "/state"),
    ("UPDATED", "/updated_at"),
];

#[derive(Debug, Subcommand)]
pub enum SecretCmd {
    /// Set a secret: a new one, or a new version of the one of that name.
    Set {
        /// Vault id or name.
        #[arg(long)]
        vault: String,
        /// Name (unique in the vault until purged).
        #[arg(long)]
        name: String,
        /// A file holding the value (1 byte to 25 KiB). Prefer it to
        /// --value, which other users may see in the process list.
        #[arg(long, conflicts_with = "value", required_unless_present = "value")]
        file: Option<std::path::PathBuf>,
        /// The value, as text.
        #[arg(long)]
        value: Option<String>,
        /// A label of what the value is, e.g. text/plain.
        #[arg(long)]
        content_type: Option<String>,
    },
    /// List a vault's secrets (never their values).
    List {
        /// Vault id or name.
        #[arg(long)]
        vault: String,
        /// List soft-deleted secrets (recoverable) instead.
        #[arg(long)]
        deleted: bool,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a secret (not its value).
    Show(SecretRef),
    /// Print a secret's value: the bytes themselves with --raw (for a pipe
    /// or a file), else the result with the value in base64.
    #[command(disable_version_flag = true)]
    Get {
        #[command(flatten)]
        secret: SecretRef,
        /// This version (default: the newest).
        #[arg(long)]
        version: Option<u32>,
        /// Write the value's bytes to stdout.
        #[arg(long)]
        raw: bool,
    },
    /// Delete a secret: recoverable for the vault's retention period when
    /// the vault has soft delete, else purged at once.
    Delete(SecretRef),
    /// Recover a soft-deleted secret.
    Recover(SecretRef),
    /// Purge a soft-deleted secret: its values are destroyed for good (asks
    /// first, unless --yes).
    Purge {
        #[command(flatten)]
        secret: SecretRef,
        #[command(flatten)]
        confirm: Confirm,
    },
}

/// A secret by id, or by name with its vault.
#[derive(Debug, Clone, clap::Args)]
pub struct SecretRef {
    /// Secret id, or name with --vault.
    secret: String,
    /// The vault (id or name), when the secret is given by name.
    #[arg(long)]
    vault: Option<String>,
}

async fn secret_id(c: &Client, r: &SecretRef) -> anyhow::Result<String> {
    let given = r.secret.trim();
    if given.starts_with("sec-") {
        return resolve::id(c, Kind::Secret, given).await;
    }
    let Some(vault) = r.vault.as_deref() else {
        bail!("'{given}' is not a secret id (sec-…): give the id, or the name with --vault VAULT");
    };
    let vault = vault_id(c, vault).await?;
    for deleted in [false, true] {
        let q = SecretQuery {
            state: deleted.then(|| "deleted".to_string()),
            ..SecretQuery::default()
        };
        let found = c
            .list::<_, Secret>(
                &format!("/v1/vaults/{}/secrets", seg(&vault)),
                &q,
                &Paging::default(),
            )
            .await?
            .items
            .into_iter()
            .find(|s| s.name == given);
        if let Some(s) = found {
            return Ok(s.id);
        }
    }
    bail!("vault {vault} has no secret named '{given}' (`coffer secret list --vault {vault}`)")
}

/// Run a secret command.
pub async fn secret(c: &Client, out: &Output, cmd: SecretCmd) -> anyhow::Result<()> {
    match cmd {
        SecretCmd::Set {
            vault,
            name,
            file,
            value,
            content_type,
        } => {
            let v = vault_id(c, &vault).await?;
            let bytes = match (file, value) {
                (Some(f), _) => zeroize::Zeroizing::new(
                    std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?,
                ),
                (None, Some(t)) => zeroize::Zeroizing::new(t.into_bytes()),
                (None, None) => bail!("give --file or --value"),
            };
            let body = SetSecret {
                name,
                value: B64.encode(&bytes[..]),
                content_type,
            };
            let s: Secret = c
                .post(&format!("/v1/vaults/{}/secrets", seg(&v)), &body)
                .await?;
            out.show(&s, View::Fields)
        }
        SecretCmd::List {
            vault,
            deleted,
            paging,
        } => {
            let v = vault_id(c, &vault).await?;
            let q = SecretQuery {
                state: deleted.then(|| "deleted".to_string()),
                ..SecretQuery::default()
            };
            let l = c
                .list::<_, Secret>(&format!("/v1/vaults/{}/secrets", seg(&v)), &q, &paging)
                .await?;
            out.show_list(&l, View::Columns(SECRET_COLUMNS))
        }
        SecretCmd::Show(r) => {
            let id = secret_id(c, &r).await?;
            let s: Secret = c.get(&format!("/v1/secrets/{}", seg(&id))).await?;
            out.show(&s, View::Fields)
        }
        SecretCmd::Get {
            secret,
            version,
            raw,
        } => {
            let id = secret_id(c, &secret).await?;
            let path = match version {
                Some(v) => format!("/v1/secrets/{}/value?version={v}", seg(&id)),
                None => format!("/v1/secrets/{}/value", seg(&id)),
            };
            let s: SecretValue = c.get(&path).await?;
            if raw {
                let bytes = zeroize::Zeroizing::new(B64.decode(&s.value)?);
                use std::io::Write as _;
                std::io::stdout().write_all(&bytes)?;
                return Ok(());
            }
            out.show(&s, View::Fields)
        }
        SecretCmd::Delete(r) => {
            let id = secret_id(c, &r).await?;
            let s: Secret = c.delete(&format!("/v1/secrets/{}", seg(&id))).await?;
            out.show(&s, View::Fields)
        }
        SecretCmd::Recover(r) => {
            let id = secret_id(c, &r).await?;
            let s: Secret = c
                .action(&format!("/v1/secrets/{}/recover", seg(&id)))
                .await?;
            out.show(&s, View::Fields)
        }
        SecretCmd::Purge { secret, confirm } => {
            let id = secret_id(c, &secret).await?;
            confirm_delete(
                c,
                confirm,
                "secrets/delete",
                &id,
                &format!("secret {id} for good"),
                vec!["every version of its value, destroyed".into()],
            )
            .await?;
            let s: Secret = c.action(&format!("/v1/secrets/{}/purge", seg(&id))).await?;
            out.show(&s, View::Fields)
        }
    }
}

/// Run a `coffer key grant` command.
async fn grant(c: &Client, out: &Output, cmd: GrantCmd) -> anyhow::Result<()> {
    match cmd {
        GrantCmd::Create {
            key,
            grantee,
            operations,
            name,
            retiring_principal,
            context_equals,
        } => {
            let id = key_id(c, &key).await?;
            let body = coffer_wire::CreateGrant {
                grantee_id: grantee,
                operations: operations.iter().map(|o| o.trim().to_string()).collect(),
                name,
                retiring_principal_id: retiring_principal,
                context_equals,
            };
            let g: coffer_wire::KeyGrant = c
                .post(&format!("/v1/keys/{}/grants", seg(&id)), &body)
                .await?;
            out.show(&g, View::Fields)
        }
        GrantCmd::List(r) => {
            let id = key_id(c, &r).await?;
            let p: Page<coffer_wire::KeyGrant> =
                c.get(&format!("/v1/keys/{}/grants", seg(&id))).await?;
            let l = crate::client::Listed {
                items: p.items,
                next_token: None,
            };
            out.show_list(&l, View::Columns(GRANT_COLUMNS))
        }
        GrantCmd::Revoke { grant } => {
            let g: coffer_wire::KeyGrant = c
                .delete(&format!("/v1/grants/{}", seg(grant.trim())))
                .await?;
            out.show(&g, View::Fields)
        }
        GrantCmd::Retire { grant } => {
            let g: coffer_wire::KeyGrant = c
                .action(&format!("/v1/grants/{}/retire", seg(grant.trim())))
                .await?;
            out.show(&g, View::Fields)
        }
    }
}
