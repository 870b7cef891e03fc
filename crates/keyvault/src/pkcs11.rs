//! The PKCS#11 root key: the vault's root of trust held in an HSM, or in any
//! PKCS#11 token such as SoftHSM2. This module owns everything on the token
//! side of the root key: the RFC 7512 URI that names module, token and key
//! ([`Pkcs11Uri`]); loading the module, finding the token by label and
//! logging in; finding the AES-256 key by label, or generating it inside the
//! token on first use; and the stored form of key material wrapped under it
//! ([`Pkcs11RootKey`]).
//!
//! **The key never leaves the token.** It is generated there
//! (`CKM_AES_KEY_GEN`, `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE=true`,
//! `CKA_EXTRACTABLE=false`, usable only to encrypt and decrypt) and every
//! wrap and unwrap is one `C_Encrypt`/`C_Decrypt` with `CKM_AES_GCM` inside
//! the token. Coffer holds only a handle to it.
//!
//! **Wrapped format, version 1** (these constants must never change: stored
//! key material depends on them):
//!
//! ```text
//! 0x01 || IV (12 bytes) || ciphertext || GCM tag (16 bytes)
//! ```
//!
//! with the associated data `coffer-root-wrap-v1`. The IV is 96 random bits
//! from the host's CSPRNG, fresh for every wrap; why that is
//! safe here (one wrap per key version, far below the birthday bound) is in
//! docs/SECURITY.md. A token that writes an IV of its own into the GCM
//! parameters (some FIPS-mode HSMs do) is honoured: the stored IV is the one
//! the token used.
//!
//! **PIN**: from the file named by `pin-source=file:…` in the URI (mode
//! 0600), else from the caller (`COFFER_PKCS11_PIN` in `coffer serve`);
//! never from the URI itself, which appears in logs. It is kept in memory,
//! zeroized on drop, to log in again after a lost session.
//!
//! **Sessions**: one read-write session, logged in as the user, opened at
//! start and kept behind a mutex (PKCS#11 sessions are not safe to share
//! between threads); the key is looked up once at start and its handle kept.
//! Token calls run on tokio's blocking pool. If a call fails because the
//! session, the login or the handle is gone (token removed and reinserted,
//! HSM restarted, network HSM reconnected), the session is reopened once —
//! token found by label again, logged in again, key found by label again,
//! *never generated*: a key that vanished mid-run is an error, not a reason
//! to make a new one — and the call retried once. If that fails too, the
//! call fails with an error naming the token, and the next call starts over.
//!
//! Not handled: two nodes starting for the first time at once on one shared
//! token could each generate a key under the same label; later starts then
//! refuse the ambiguous label. Start one node first (docs/DEPLOYMENT.md).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use coffer_crypto::CryptoError;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::{Result, RootKey, VaultError};

/// Format byte of a wrap (version 1: AES-256-GCM in the token).
const FORMAT_V1: u8 = 1;
/// GCM IV length: 96 bits.
const IV_LEN: usize = 12;
/// GCM tag length: 128 bits.
const TAG_LEN: usize = 16;
/// Associated data of every wrap: binds the ciphertext to this use.
const AAD: &[u8] = b"coffer-root-wrap-v1";
/// AES-256.
const KEY_LEN: u64 = 32;
/// PKCS#11 token labels are at most 32 bytes (`CK_TOKEN_INFO.label`).
const MAX_TOKEN_LABEL: usize = 32;
/// A PIN file larger than this is not a PIN file.
const MAX_PIN_FILE: u64 = 255;

/// A PKCS#11 URI (RFC 7512) naming the root key:
/// `pkcs11:token=LABEL;object=LABEL?module-path=/path/module.so[&pin-source=file:/path/pin]`.
///
/// Path attributes: `token` and `object` (required; labels), `type` (only
/// `secret-key`). Query attributes: `module-path` (required, absolute) and
/// `pin-source` (`file:` with an absolute path). `pin-value` is refused: a
/// PIN does not belong in a URI. Values may be percent-encoded. Parse errors
/// name the attribute, never echo a value that could be secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    token: String,
    object: String,
    module_path: PathBuf,
    pin_source: Option<PathBuf>,
}

impl Pkcs11Uri {
    /// Parse `uri`.
    pub fn parse(uri: &str) -> Result<Self> {
        let err = |m: String| VaultError::Root(format!("invalid PKCS#11 URI: {m}"));
        let rest = uri
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("pkcs11:"))
            .map(|_| &uri[7..])
            .ok_or_else(|| {
                err("it must start with `pkcs11:` (RFC 7512), e.g. \
                     `pkcs11:token=coffer;object=coffer-root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/coffer/hsm.pin`"
                    .into())
            })?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, q),
            None => (rest, ""),
        };
        let mut token = None;
        let mut object = None;
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = split_attr(attr, "path", ';').map_err(err)?;
            match name {
                "token" => set_once(&mut token, name, value).map_err(err)?,
                "object" => set_once(&mut object, name, value).map_err(err)?,
                "type" if value == "secret-key" => {}
                "type" => {
                    return Err(err(format!(
                        "type={value} does not fit: the root key is an AES key (type=secret-key)"
                    )));
                }
                "pin-value" | "pin-source" | "module-path" | "module-name" => {
                    return Err(err(format!(
                        "`{name}` is a query attribute: put it after `?`"
                    )));
                }
                "id"
                | "manufacturer"
                | "model"
                | "serial"
                | "library-description"
                | "library-manufacturer"
                | "library-version"
                | "slot-description"
                | "slot-id"
                | "slot-manufacturer" => {
                    return Err(err(format!(
                        "path attribute `{name}` is not supported: name the token with `token=` \
                         and the key with `object=` (labels)"
                    )));
                }
                other => {
                    return Err(err(format!(
                        "unknown path attribute `{other}` (supported: token, object, type)"
                    )));
                }
            }
        }
        let mut module_path = None;
        let mut pin_source = None;
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = split_attr(attr, "query", '&').map_err(err)?;
            match name {
                "module-path" => {
                    let p = PathBuf::from(value);
                    if !p.is_absolute() {
                        return Err(err(format!(
                            "module-path must be the absolute path of the PKCS#11 module (.so), not `{}`",
                            p.display()
                        )));
                    }
                    set_once(&mut module_path, name, p).map_err(err)?;
                }
                "pin-source" => {
                    let p = parse_pin_source(&value).map_err(err)?;
                    set_once(&mut pin_source, name, p).map_err(err)?;
                }
                "pin-value" => {
                    return Err(err(
                        "pin-value is not accepted: a PIN in a URI ends up in shell history, \
                         process lists and logs. Put the PIN in a file (mode 0600) and add \
                         pin-source=file:/path/to/pin, or set COFFER_PKCS11_PIN"
                            .into(),
                    ));
                }
                "module-name" => {
                    return Err(err(
                        "module-name is not supported: give the module's absolute path with module-path="
                            .into(),
                    ));
                }
                other => {
                    return Err(err(format!(
                        "unknown query attribute `{other}` (supported: module-path, pin-source)"
                    )));
                }
            }
        }
        let token = token.ok_or_else(|| {
            err(
                "no token: add token=LABEL (the label given at softhsm2-util --init-token, \
                 or the HSM partition's label)"
                    .into(),
            )
        })?;
        if token.len() > MAX_TOKEN_LABEL {
            return Err(err(format!(
                "token label `{token}` is {} bytes; PKCS#11 token labels have at most {MAX_TOKEN_LABEL}",
                token.len()
            )));
        }
        let object = object.ok_or_else(|| {
            err(
                "no key: add object=LABEL (the label of the AES key in the token; \
                 it is generated there on first start if absent)"
                    .into(),
            )
        })?;
        let module_path = module_path.ok_or_else(|| {
            err("no PKCS#11 module: add ?module-path=/path/to/module.so \
                 (SoftHSM2 on Debian: /usr/lib/softhsm/libsofthsm2.so)"
                .into())
        })?;
        Ok(Self {
            token,
            object,
            module_path,
            pin_source,
        })
    }

    /// Label of the token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Label of the key in the token.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// Path of the PKCS#11 module.
    pub fn module_path(&self) -> &Path {
        &self.module_path
    }

    /// The PIN file, if the URI names one.
    pub fn pin_source(&self) -> Option<&Path> {
        self.pin_source.as_deref()
    }
}

/// Split `name=value` and percent-decode the value.
fn split_attr<'a>(
    attr: &'a str,
    part: &str,
    sep: char,
) -> std::result::Result<(&'a str, String), String> {
    let (name, value) = attr.split_once('=').ok_or_else(|| {
        format!("a {part} attribute has no `=` (attributes are name=value, separated by `{sep}`)")
    })?;
    if value.is_empty() {
        return Err(format!("`{name}=` is empty"));
    }
    let value = pct_decode(value).map_err(|m| format!("`{name}`: {m}"))?;
    Ok((name, value))
}

fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> std::result::Result<(), String> {
    if slot.is_some() {
        return Err(format!("`{name}` is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

/// RFC 3986 percent-decoding into UTF-8.
fn pct_decode(s: &str) -> std::result::Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad percent-encoding (`%` must be followed by two hex digits)")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after percent-decoding".to_string())
}

/// `file:/abs`, `file:///abs`, `file://localhost/abs`, or a bare `/abs`.
fn parse_pin_source(value: &str) -> std::result::Result<PathBuf, String> {
    let path = match value.strip_prefix("file:") {
        Some(rest) => match rest.strip_prefix("//") {
            Some(authority) => authority.strip_prefix("localhost").unwrap_or(authority),
            None => rest,
        },
        None if value.starts_with('/') => value,
        None => {
            return Err(
                "pin-source must be a file (pin-source=file:/absolute/path); \
                 commands and other sources are not supported"
                    .into(),
            );
        }
    };
    if !path.starts_with('/') {
        return Err(
            "pin-source must name an absolute path (pin-source=file:/absolute/path)".into(),
        );
    }
    Ok(PathBuf::from(path))
}

/// Read a PIN file: refuses one that others can read; drops a final newline.
fn read_pin_file(path: &Path) -> Result<Zeroizing<String>> {
    let err = |what: &str, e: std::io::Error| {
        VaultError::Root(format!(
            "cannot {what} the PIN file {}: {e}",
            path.display()
        ))
    };
    let meta = std::fs::metadata(path).map_err(|e| err("read", e))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(VaultError::Root(format!(
            "PIN file {} is readable by others (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    if meta.len() > MAX_PIN_FILE {
        return Err(VaultError::Root(format!(
            "PIN file {} holds {} bytes: a PIN file holds only the PIN",
            path.display(),
            meta.len()
        )));
    }
    // Capacity for the whole file up front, so reading never reallocates
    // (which would leave an unzeroized copy behind).
    let mut pin = Zeroizing::new(String::with_capacity(512));
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PIN_FILE).read_to_string(&mut pin))
        .map_err(|e| err("read", e))?;
    while pin.ends_with(['\n', '\r']) {
        pin.pop();
    }
    if pin.is_empty() {
        return Err(VaultError::Root(format!(
            "PIN file {} is empty",
            path.display()
        )));
    }
    Ok(pin)
}

/// The root key: an AES-256 key inside a PKCS#11 token.
pub struct Pkcs11RootKey {
    inner: Arc<Inner>,
}

struct Inner {
    uri: Pkcs11Uri,
    ctx: Pkcs11,
    pin: Zeroizing<String>,
    /// The open session and key handle; `None` after a failed reopen.
    open: Mutex<Option<OpenKey>>,
    /// Whether this instance initialized the module (and so finalizes it).
    finalize: bool,
}

struct OpenKey {
    session: Session,
    key: ObjectHandle,
}

/// An error of one token operation: from the token, or already explained.
enum OpError {
    Token(P11Error),
    Vault(VaultError),
}

impl Pkcs11RootKey {
    /// Open the root key named by `uri`: load the module, find the token by
    /// label, log in with the PIN from the URI's `pin-source` (else
    /// `pin`), and find the key by label — generating it in the token, with
    /// a warning, if the token has none. Runs on the blocking pool.
    pub async fn open(uri: Pkcs11Uri, pin: Option<Zeroizing<String>>) -> Result<Self> {
        tokio::task::spawn_blocking(move || Self::open_blocking(uri, pin))
            .await
            .map_err(|e| VaultError::Root(format!("opening the PKCS#11 token failed: {e}")))?
    }

    fn open_blocking(uri: Pkcs11Uri, pin: Option<Zeroizing<String>>) -> Result<Self> {
        let pin = match (&uri.pin_source, pin) {
            (Some(path), _) => read_pin_file(path)?,
            (None, Some(pin)) if !pin.is_empty() => pin,
            (None, _) => {
                return Err(VaultError::Root(format!(
                    "no PIN for PKCS#11 token `{}`: add pin-source=file:/path/to/pin (a file of \
                     mode 0600) to the URI, or set COFFER_PKCS11_PIN",
                    uri.token
                )));
            }
        };
        let ctx = Pkcs11::new(&uri.module_path).map_err(|e| {
            VaultError::Root(format!(
                "cannot load the PKCS#11 module {}: {e}: check module-path in the URI \
                 (SoftHSM2 on Debian: /usr/lib/softhsm/libsofthsm2.so)",
                uri.module_path.display()
            ))
        })?;
        let finalize = match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => true,
            Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => false,
            Err(e) => {
                return Err(VaultError::Root(format!(
                    "cannot initialize the PKCS#11 module {}: {e}: check the module's own \
                     configuration (for SoftHSM2: SOFTHSM2_CONF)",
                    uri.module_path.display()
                )));
            }
        };
        let inner = Inner {
            uri,
            ctx,
            pin,
            open: Mutex::new(None),
            finalize,
        };
        let open = inner.connect(true)?;
        *inner.open.lock().unwrap_or_else(PoisonError::into_inner) = Some(open);
        Ok(Self {
            inner: Arc::new(inner),
        })
    }
}

impl Inner {
    /// `PKCS#11 token `x` (module /path)`, for messages.
    fn what(&self) -> String {
        format!(
            "PKCS#11 token `{}` (module {})",
            self.uri.token,
            self.uri.module_path.display()
        )
    }

    fn fail(&self, doing: &str, e: &P11Error) -> VaultError {
        let hint = match e {
            P11Error::Pkcs11(RvError::MechanismInvalid | RvError::MechanismParamInvalid, _) => {
                ": the token does not offer AES-GCM with a 96-bit IV and a 128-bit tag (CKM_AES_GCM)"
            }
            e if session_lost(e) => ": check that the HSM is connected and reachable",
            _ => "",
        };
        VaultError::Root(format!("{}: cannot {doing}: {e}{hint}", self.what()))
    }

    /// Open a logged-in session on the token and find the key; generate the
    /// key if absent and `create` (only at start).
    fn connect(&self, create: bool) -> Result<OpenKey> {
        let slot = self.find_slot()?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(|e| self.fail("open a session", &e))?;
        self.login(&session)?;
        let key = match self.find_key(&session)? {
            Some(key) => key,
            None if create => self.generate_key(&session)?,
            None => {
                return Err(VaultError::Root(format!(
                    "{}: the key `{}` is no longer in the token: it was deleted, or this is \
                     another token with the same label; Coffer does not make a new key while \
                     running (data wrapped by the old one would be lost)",
                    self.what(),
                    self.uri.object
                )));
            }
        };
        Ok(OpenKey { session, key })
    }

    fn find_slot(&self) -> Result<Slot> {
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| self.fail("list the slots", &e))?;
        let mut labels = Vec::new();
        let mut found = Vec::new();
        for slot in slots {
            let Ok(info) = self.ctx.get_token_info(slot) else {
                continue;
            };
            if !info.token_initialized() {
                continue;
            }
            if info.label() == self.uri.token {
                found.push(slot);
            }
            labels.push(format!("`{}`", info.label()));
        }
        match found[..] {
            [slot] => Ok(slot),
            [] => Err(VaultError::Root(format!(
                "PKCS#11 token `{}` not found in module {} (tokens present: {}): check that the \
                 HSM is connected and reachable and that the module path and the module's \
                 configuration point at it (for SoftHSM2: SOFTHSM2_CONF and its \
                 directories.tokendir)",
                self.uri.token,
                self.uri.module_path.display(),
                if labels.is_empty() {
                    "none".to_string()
                } else {
                    labels.join(", ")
                }
            ))),
            _ => Err(VaultError::Root(format!(
                "{} tokens are labelled `{}` in module {}: give each token its own label",
                found.len(),
                self.uri.token,
                self.uri.module_path.display()
            ))),
        }
    }

    fn login(&self, session: &Session) -> Result<()> {
        let pin = AuthPin::from(self.pin.as_str());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(P11Error::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
                Err(VaultError::Root(format!(
                    "{}: the PIN was rejected: check the PIN file or COFFER_PKCS11_PIN (tokens \
                     lock the user PIN after a few wrong tries)",
                    self.what()
                )))
            }
            Err(P11Error::Pkcs11(RvError::PinLocked, _)) => Err(VaultError::Root(format!(
                "{}: the user PIN is locked: the token's security officer must reset it",
                self.what()
            ))),
            Err(P11Error::Pkcs11(RvError::UserPinNotInitialized, _)) => {
                Err(VaultError::Root(format!(
                    "{}: the token has no user PIN yet: set one (softhsm2-util --init-token \
                     --pin sets it for SoftHSM2)",
                    self.what()
                )))
            }
            Err(e) => Err(self.fail("log in", &e)),
        }
    }

    fn find_key(&self, session: &Session) -> Result<Option<ObjectHandle>> {
        let label = self.uri.object.as_bytes().to_vec();
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(label),
            ])
            .map_err(|e| self.fail("search for the key", &e))?;
        let key = match found[..] {
            [] => return Ok(None),
            [key] => key,
            _ => {
                return Err(VaultError::Root(format!(
                    "{}: {} secret keys are labelled `{}`: which one wraps this deployment's \
                     keys is ambiguous; remove the extra ones with the HSM's tools",
                    self.what(),
                    found.len(),
                    self.uri.object
                )));
            }
        };
        let attrs = session
            .get_attributes(
                key,
                &[
                    AttributeType::KeyType,
                    AttributeType::ValueLen,
                    AttributeType::Encrypt,
                    AttributeType::Decrypt,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                ],
            )
            .map_err(|e| self.fail("read the key's attributes", &e))?;
        let bad = |m: String| {
            VaultError::Root(format!(
                "{}: the key `{}` cannot be the root key: {m}",
                self.what(),
                self.uri.object
            ))
        };
        for a in attrs {
            match a {
                Attribute::KeyType(t) if t != KeyType::AES => {
                    return Err(bad(format!("it is a {t} key, not AES")));
                }
                Attribute::ValueLen(l) if u64::from(l) != KEY_LEN => {
                    return Err(bad(format!(
                        "it is AES-{}, not AES-256",
                        u64::from(l).saturating_mul(8)
                    )));
                }
                Attribute::Encrypt(false) | Attribute::Decrypt(false) => {
                    return Err(bad(
                        "it may not be used to encrypt and decrypt (CKA_ENCRYPT, CKA_DECRYPT)"
                            .into(),
                    ));
                }
                Attribute::Sensitive(false) | Attribute::Extractable(true) => {
                    tracing::warn!(
                        token = %self.uri.token,
                        key = %self.uri.object,
                        "the root key in the PKCS#11 token can be read out of it (not sensitive, or extractable): \
                         the HSM does not keep it from whoever holds the PIN"
                    );
                }
                _ => {}
            }
        }
        Ok(Some(key))
    }

    fn generate_key(&self, session: &Session) -> Result<ObjectHandle> {
        let key = session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Wrap(false),
                    Attribute::Unwrap(false),
                    Attribute::Derive(false),
                    Attribute::ValueLen(KEY_LEN.into()),
                    Attribute::Label(self.uri.object.as_bytes().to_vec()),
                ],
            )
            .map_err(|e| self.fail("generate the root key (AES-256) in the token", &e))?;
        if self.uri.object.starts_with("coffer-key-") {
            // A customer key's version (`coffer-<key id>-v<N>`), made when
            // the key is created or rotated in a vault kept in this token.
            tracing::info!(
                token = %self.uri.token,
                key = %self.uri.object,
                "generated a customer key version in the PKCS#11 token; it cannot be exported"
            );
        } else {
            tracing::warn!(
                token = %self.uri.token,
                key = %self.uri.object,
                "created a new root key in the PKCS#11 token; it cannot be exported: \
                 without this token (or an HSM-level backup or clone of it) the data cannot be read"
            );
        }
        Ok(key)
    }

    /// Run `op` with the open session and key; on a lost session, reopen it
    /// once and retry once (see the module docs).
    fn with_key<T>(
        &self,
        op: impl Fn(&Session, ObjectHandle) -> cryptoki::error::Result<T>,
    ) -> std::result::Result<T, OpError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(o) = open.as_ref() {
            match op(&o.session, o.key) {
                Err(e) if session_lost(&e) => {
                    tracing::warn!(
                        token = %self.uri.token,
                        error = %e,
                        "lost the PKCS#11 session; reopening it once"
                    );
                }
                other => return other.map_err(OpError::Token),
            }
        }
        // Close the old session (if any) before opening another.
        *open = None;
        let fresh = self.connect(false).map_err(OpError::Vault)?;
        let result = op(&fresh.session, fresh.key);
        *open = Some(fresh);
        result.map_err(OpError::Token)
    }

    fn wrap(&self, material: &[u8]) -> Result<Vec<u8>> {
        let (iv, sealed) = self
            .with_key(|session, key| {
                // A fresh IV for every attempt, retries included.
                let mut iv = [0u8; IV_LEN];
                coffer_crypto::random_bytes(&mut iv);
                let sealed = {
                    let params = GcmParams::new(&mut iv, AAD, tag_bits())?;
                    session.encrypt(&Mechanism::AesGcm(params), key, material)?
                };
                Ok((iv, sealed))
            })
            .map_err(|e| self.op_error("wrap key material", e))?;
        if sealed.len() != material.len() + TAG_LEN {
            return Err(VaultError::Root(format!(
                "{}: AES-GCM returned {} bytes for {} bytes of key material (expected the \
                 ciphertext followed by a 16-byte tag)",
                self.what(),
                sealed.len(),
                material.len()
            )));
        }
        let mut out = Vec::with_capacity(1 + IV_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn unwrap(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let Some((&version, rest)) = wrapped.split_first() else {
            return Err(CryptoError::Malformed("empty root-wrapped key material".into()).into());
        };
        if version != FORMAT_V1 {
            return Err(CryptoError::Malformed(format!(
                "root-wrapped key material of format {version}, not {FORMAT_V1} \
                 (PKCS#11 AES-GCM): it was not wrapped by a PKCS#11 root key"
            ))
            .into());
        }
        if rest.len() < IV_LEN + TAG_LEN {
            return Err(CryptoError::Malformed(format!(
                "root-wrapped key material of {} bytes is too short",
                wrapped.len()
            ))
            .into());
        }
        let (iv, sealed) = rest.split_at(IV_LEN);
        let result = self.with_key(|session, key| {
            let mut iv: [u8; IV_LEN] = iv.try_into().map_err(P11Error::TryFromSlice)?;
            let params = GcmParams::new(&mut iv, AAD, tag_bits())?;
            session
                .decrypt(&Mechanism::AesGcm(params), key, sealed)
                .map(Zeroizing::new)
        });
        match result {
            Ok(plain) => Ok(plain),
            Err(OpError::Token(P11Error::Pkcs11(
                RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
                _,
            ))) => Err(CryptoError::Authentication(
                "PKCS#11 root key unwrap failed: wrong key or modified wrapped key material",
            )
            .into()),
            // SoftHSM2 (and some HSMs) report a failed GCM tag check as a
            // general error of C_Decrypt; a token that is really broken
            // fails the session calls around it, not only this one.
            Err(OpError::Token(P11Error::Pkcs11(
                RvError::GeneralError | RvError::FunctionFailed,
                Function::Decrypt,
            ))) => Err(CryptoError::Authentication(
                "PKCS#11 root key unwrap failed in the token: wrong key or modified wrapped key \
                 material (the token reported a general error)",
            )
            .into()),
            Err(e) => Err(self.op_error("unwrap key material", e)),
        }
    }

    fn op_error(&self, doing: &str, e: OpError) -> VaultError {
        match e {
            OpError::Token(e) => self.fail(doing, &e),
            OpError::Vault(e) => VaultError::Root(format!(
                "cannot {doing}: the PKCS#11 session was lost and reopening it failed: {e}"
            )),
        }
    }
}

fn tag_bits() -> cryptoki::types::Ulong {
    // TAG_LEN * 8 = 128, a constant that fits.
    cryptoki::types::Ulong::from(128)
}

/// Whether `e` says that the session, the login or the object handles are
/// gone, so that a new session may succeed.
fn session_lost(e: &P11Error) -> bool {
    matches!(
        e,
        P11Error::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid,
            _,
        )
    )
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Close the session (ending the login) before finalizing the module.
        self.open
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if self.finalize
            && let Err(e) = self.ctx.clone().finalize()
        {
            tracing::debug!(error = %e, "finalizing the PKCS#11 module failed");
        }
    }
}

#[async_trait]
impl RootKey for Pkcs11RootKey {
    fn describe(&self) -> String {
        format!(
            "PKCS#11 token {}, key {}",
            self.inner.uri.token, self.inner.uri.object
        )
    }

    async fn wrap(&self, material: &[u8]) -> Result<Vec<u8>> {
        let inner = self.inner.clone();
        let material = Zeroizing::new(material.to_vec());
        tokio::task::spawn_blocking(move || inner.wrap(&material))
            .await
            .map_err(|e| VaultError::Root(format!("PKCS#11 wrap task failed: {e}")))?
    }

    async fn unwrap(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let inner = self.inner.clone();
        let wrapped = wrapped.to_vec();
        tokio::task::spawn_blocking(move || inner.unwrap(&wrapped))
            .await
            .map_err(|e| VaultError::Root(format!("PKCS#11 unwrap task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Where the test's token, configuration and PIN file are (set for the
    /// child process only).
    const CHILD_DIR: &str = "COFFER_TEST_SOFTHSM_DIR";
    const PIN: &str = "1234";

    fn module() -> PathBuf {
        coffer_testkit::softhsm::module()
    }

    fn uri_err(uri: &str) -> String {
        Pkcs11Uri::parse(uri)
            .err()
            .unwrap_or_else(|| panic!("{uri} accepted"))
            .to_string()
    }

    #[test]
    fn uri_parses_and_errors_are_precise() {
        let u = Pkcs11Uri::parse(
            "PKCS11:token=my%20token;object=coffer-root;type=secret-key\
             ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:///etc/coffer/hsm.pin",
        )
        .unwrap();
        assert_eq!(u.token(), "my token");
        assert_eq!(u.object(), "coffer-root");
        assert_eq!(
            u.module_path(),
            Path::new("/usr/lib/softhsm/libsofthsm2.so")
        );
        assert_eq!(u.pin_source(), Some(Path::new("/etc/coffer/hsm.pin")));
        let u = Pkcs11Uri::parse("pkcs11:token=t;object=o?module-path=/m.so&pin-source=file:/p")
            .unwrap();
        assert_eq!(u.pin_source(), Some(Path::new("/p")));
        assert_eq!(
            Pkcs11Uri::parse("pkcs11:object=o;token=t?module-path=/m.so")
                .unwrap()
                .pin_source(),
            None
        );

        let m = "?module-path=/m.so";
        for (uri, expect) in [
            ("pkcs12:token=t;object=o", "must start with `pkcs11:`"),
            ("token=t;object=o", "must start with `pkcs11:`"),
            (&format!("pkcs11:object=o{m}"), "no token: add token="),
            (&format!("pkcs11:token=t{m}"), "no key: add object="),
            ("pkcs11:token=t;object=o", "no PKCS#11 module"),
            (
                "pkcs11:token=t;object=o?module-path=libsofthsm2.so",
                "module-path must be the absolute path",
            ),
            (
                &format!("pkcs11:token=t;token=u;object=o{m}"),
                "`token` is given twice",
            ),
            (
                &format!("pkcs11:token=t%zz;object=o{m}"),
                "`token`: bad percent-encoding",
            ),
            (
                &format!("pkcs11:token=t%ff;object=o{m}"),
                "`token`: not UTF-8",
            ),
            (&format!("pkcs11:token=;object=o{m}"), "`token=` is empty"),
            (
                &format!("pkcs11:token;object=o{m}"),
                "a path attribute has no `=`",
            ),
            (
                &format!("pkcs11:token=t;object=o;colour=red{m}"),
                "unknown path attribute `colour`",
            ),
            (
                &format!("pkcs11:token=t;object=o;id=%01{m}"),
                "path attribute `id` is not supported",
            ),
            (
                &format!("pkcs11:token=t;object=o;type=private-key{m}"),
                "(type=secret-key)",
            ),
            (
                &format!("pkcs11:token=t;object=o{m}&colour=red"),
                "unknown query attribute `colour`",
            ),
            (
                &format!("pkcs11:token=t;object=o{m}&module-name=softhsm2"),
                "module-name is not supported",
            ),
            (
                &format!("pkcs11:token=t;object=o{m}&pin-source=|cat"),
                "pin-source must be a file",
            ),
            (
                &format!("pkcs11:token=t;object=o{m}&pin-source=file:pin"),
                "must name an absolute path",
            ),
            (
                &format!("pkcs11:token={};object=o{m}", "x".repeat(33)),
                "is 33 bytes; PKCS#11 token labels have at most 32",
            ),
        ] {
            let e = uri_err(uri);
            assert!(e.contains(expect), "{uri}: {e}");
            assert!(
                e.starts_with("root key problem: invalid PKCS#11 URI: "),
                "{uri}: {e}"
            );
        }
        // A PIN in the URI is refused, and never echoed.
        for uri in [
            format!("pkcs11:token=t;object=o{m}&pin-value=S3cr3tPin"),
            format!("pkcs11:token=t;object=o;pin-value=S3cr3tPin{m}"),
        ] {
            let e = uri_err(&uri);
            assert!(e.contains("pin-value"), "{e}");
            assert!(!e.contains("S3cr3tPin"), "the PIN is echoed: {e}");
        }
        assert!(
            uri_err(&format!("pkcs11:token=t;object=o{m}&pin-value=1"))
                .contains("COFFER_PKCS11_PIN")
        );
    }

    /// Runs [`in_softhsm`] in a process of its own, with `SOFTHSM2_CONF`
    /// pointing at a fresh token directory: the environment of this process
    /// is never changed, so tests running in parallel are not disturbed, and
    /// the module is initialized once in a clean process.
    #[test]
    fn softhsm_root_key() {
        let module = module();
        let dir = tempfile::tempdir().unwrap();
        let conf = coffer_testkit::softhsm::init_token(dir.path(), "coffer", PIN);
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "pkcs11::tests::in_softhsm", "--ignored"])
            .args(["--nocapture", "--test-threads=1"])
            .env("SOFTHSM2_CONF", &conf)
            .env(CHILD_DIR, dir.path())
            .env("COFFER_TEST_SOFTHSM_MODULE", module)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "the SoftHSM test failed:\n{text}"
        );
    }

    fn open_in(dir: &Path, object: &str, pin_file: &str) -> Result<Pkcs11RootKey> {
        let module = std::env::var("COFFER_TEST_SOFTHSM_MODULE").unwrap();
        let uri = Pkcs11Uri::parse(&format!(
            "pkcs11:token=coffer;object={object}?module-path={module}&pin-source=file:{}",
            dir.join(pin_file).display()
        ))?;
        Pkcs11RootKey::open_blocking(uri, None)
    }

    fn write_pin(path: &Path, pin: &str, mode: u32) {
        std::fs::write(path, format!("{pin}\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A second session of the same application, logged in with it.
    fn side_session(rk: &Pkcs11RootKey) -> Session {
        let slot = rk.inner.find_slot().unwrap();
        rk.inner.ctx.open_rw_session(slot).unwrap()
    }

    fn session_handle(rk: &Pkcs11RootKey) -> Option<std::os::raw::c_ulong> {
        rk.inner
            .open
            .lock()
            .unwrap()
            .as_ref()
            .map(|o| o.session.handle())
    }

    #[tokio::test]
    #[ignore = "run by softhsm_root_key in a process of its own, with SOFTHSM2_CONF set"]
    async fn in_softhsm() {
        let dir = PathBuf::from(
            std::env::var_os(CHILD_DIR).expect("run through the test softhsm_root_key"),
        );
        write_pin(&dir.join("pin"), PIN, 0o600);

        // First open: no key yet, so it is generated in the token.
        let rk = open_in(&dir, "coffer-root", "pin").unwrap();
        assert_eq!(rk.describe(), "PKCS#11 token coffer, key coffer-root");
        let material = [0x5au8; 32];
        let a = rk.wrap(&material).await.unwrap();
        let b = rk.wrap(&material).await.unwrap();
        assert_eq!(a.len(), 1 + IV_LEN + 32 + TAG_LEN);
        assert_eq!(a[0], FORMAT_V1);
        assert_ne!(a[1..1 + IV_LEN], b[1..1 + IV_LEN], "a fresh IV per wrap");
        assert!(
            !a.windows(32).any(|w| w == material),
            "material in the clear"
        );
        assert_eq!(&rk.unwrap(&a).await.unwrap()[..], &material);
        assert_eq!(&rk.unwrap(&b).await.unwrap()[..], &material);

        // Every flipped bit, a truncation and a foreign format fail.
        for i in 0..a.len() {
            let mut bad = a.clone();
            bad[i] ^= 1;
            let Err(e) = rk.unwrap(&bad).await else {
                panic!("flip at {i} undetected")
            };
            match (i, e) {
                (0, VaultError::Crypto(CryptoError::Malformed(m))) => {
                    assert!(m.contains("format 0"), "{m}");
                }
                (_, VaultError::Crypto(CryptoError::Authentication(m))) if i > 0 => {
                    assert!(m.contains("wrong key or modified"), "{m}");
                }
                (i, e) => panic!("flip at {i}: unexpected error {e}"),
            }
        }
        assert!(matches!(
            rk.unwrap(&a[..a.len() - 1]).await,
            Err(VaultError::Crypto(CryptoError::Authentication(_)))
        ));
        assert!(matches!(
            rk.unwrap(&a[..IV_LEN + TAG_LEN]).await,
            Err(VaultError::Crypto(CryptoError::Malformed(_)))
        ));

        // The key as the token holds it: AES-256, sensitive, never extractable.
        let side = side_session(&rk);
        let keys = side
            .find_objects(&[Attribute::Label(b"coffer-root".to_vec())])
            .unwrap();
        assert_eq!(keys.len(), 1);
        let attrs = side
            .get_attributes(
                keys[0],
                &[
                    AttributeType::Token,
                    AttributeType::Private,
                    AttributeType::Sensitive,
                    AttributeType::AlwaysSensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::KeyType,
                    AttributeType::ValueLen,
                    AttributeType::Wrap,
                    AttributeType::Derive,
                ],
            )
            .unwrap();
        let mut seen = 0;
        for attr in &attrs {
            seen += 1;
            match attr {
                Attribute::Token(v)
                | Attribute::Private(v)
                | Attribute::Sensitive(v)
                | Attribute::AlwaysSensitive(v)
                | Attribute::NeverExtractable(v) => assert!(*v, "{attr:?}"),
                Attribute::Extractable(v) | Attribute::Wrap(v) | Attribute::Derive(v) => {
                    assert!(!*v, "{attr:?}");
                }
                Attribute::KeyType(t) => assert_eq!(*t, KeyType::AES),
                Attribute::ValueLen(l) => assert_eq!(u64::from(*l), 32),
                other => panic!("unexpected attribute {other:?}"),
            }
        }
        assert_eq!(seen, 10, "every attribute reported: {attrs:?}");
        // Its value cannot be read out.
        let value = side.get_attributes(keys[0], &[AttributeType::Value]);
        assert!(
            !matches!(&value, Ok(v) if v.iter().any(|a| matches!(a, Attribute::Value(_)))),
            "the key's value was readable"
        );

        // A session lost mid-run (here: the application logged out behind the
        // root key's back) is reopened once, transparently.
        let before = session_handle(&rk);
        side.logout().unwrap();
        assert_eq!(&rk.unwrap(&a).await.unwrap()[..], &material);
        assert_ne!(session_handle(&rk), before, "the session was reopened");
        drop(side);

        // Re-open: the same key is found (earlier wraps unwrap), none is added.
        drop(rk);
        let rk = open_in(&dir, "coffer-root", "pin").unwrap();
        assert_eq!(&rk.unwrap(&a).await.unwrap()[..], &material);
        let side = side_session(&rk);
        assert_eq!(
            side.find_objects(&[Attribute::Label(b"coffer-root".to_vec())])
                .unwrap()
                .len(),
            1,
            "re-open generated another key"
        );
        drop(side);

        // Another key of the same token cannot unwrap it (authenticated).
        let other = open_in(&dir, "other-root", "pin").unwrap();
        assert!(matches!(
            other.unwrap(&a).await,
            Err(VaultError::Crypto(CryptoError::Authentication(_)))
        ));
        drop(other);
        // Login state is per application: with a session open, C_Login does
        // not check the PIN. Check the PIN errors with no root key open.
        drop(rk);

        // Token absent, wrong PIN, PIN file others can read, no PIN at all.
        let module = std::env::var("COFFER_TEST_SOFTHSM_MODULE").unwrap();
        let uri = |token: &str| {
            Pkcs11Uri::parse(&format!(
                "pkcs11:token={token};object=coffer-root?module-path={module}&pin-source=file:{}",
                dir.join("pin").display()
            ))
            .unwrap()
        };
        let e = Pkcs11RootKey::open_blocking(uri("gone"), None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("PKCS#11 token `gone` not found in module")
                && e.contains("(tokens present: `coffer`)")
                && e.contains("SOFTHSM2_CONF"),
            "{e}"
        );
        write_pin(&dir.join("wrong"), "9999", 0o600);
        let e = open_in(&dir, "coffer-root", "wrong")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("the PIN was rejected"), "{e}");
        write_pin(&dir.join("open"), PIN, 0o644);
        let e = open_in(&dir, "coffer-root", "open")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("readable by others") && e.contains("chmod 600"),
            "{e}"
        );
        let no_pin = Pkcs11Uri::parse(&format!(
            "pkcs11:token=coffer;object=coffer-root?module-path={module}"
        ))
        .unwrap();
        let e = Pkcs11RootKey::open_blocking(no_pin.clone(), None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("no PIN") && e.contains("COFFER_PKCS11_PIN"),
            "{e}"
        );
        let by_env = Pkcs11RootKey::open_blocking(no_pin, Some(Zeroizing::new(PIN.into())))
            .expect("PIN from the caller (COFFER_PKCS11_PIN)");
        assert_eq!(&by_env.unwrap(&a).await.unwrap()[..], &material);
        drop(by_env);
        let rk = open_in(&dir, "coffer-root", "pin").unwrap();

        // The key deleted mid-run: the reopen finds no key, makes none, and
        // the call fails with a clear error, now and on the next call.
        let side = side_session(&rk);
        let keys = side
            .find_objects(&[Attribute::Label(b"coffer-root".to_vec())])
            .unwrap();
        side.destroy_object(keys[0]).unwrap();
        side.logout().unwrap();
        for _ in 0..2 {
            let e = rk.wrap(&material).await.err().unwrap().to_string();
            assert!(
                e.contains("reopening it failed") && e.contains("is no longer in the token"),
                "{e}"
            );
        }
        assert!(
            side.find_objects(&[Attribute::Label(b"coffer-root".to_vec())])
                .unwrap()
                .is_empty(),
            "a key was generated mid-run"
        );
    }
}
