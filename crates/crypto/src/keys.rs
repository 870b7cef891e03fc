//! Key-vault key material and what a vault key does with it: the built-in
//! backend's AES-256 and RSA (2048/3072/4096) keys, their wrap/unwrap,
//! encrypt/decrypt and the import formats of bring-your-own-key.
//!
//! Every blob these operations produce starts with a tag naming its format
//! and algorithm, so that formats can coexist and a blob is never opened by
//! the wrong algorithm:
//!
//! | tag | what | layout after the tag |
//! |---|---|---|
//! | `kwp1:` | AES-256 key wrap with padding (RFC 5649) | the wrap |
//! | `oaep256:` | RSA-OAEP, SHA-256 and MGF1-SHA-256 (RFC 8017) | the ciphertext |
//! | `gcm1:` | AES-256-GCM under a per-message key | 16-byte salt ‖ ciphertext ‖ tag |
//!
//! **Nonces.** `gcm1:` derives a fresh key for every message,
//! `HKDF-SHA256(ikm = key, salt = 16 random bytes, info = "coffer vault
//! encrypt v1")`, and seals with the all-zero nonce: each derived key seals
//! exactly one message, so no (key, nonce) pair repeats unless two messages
//! draw the same 128-bit salt (birthday bound 2^-49 at 2^40 messages per
//! key). KWP and OAEP take no nonce.
//!
//! **Encryption context.** `encrypt`/`decrypt` bind a caller's context
//! (AWS KMS's encryption context, serialised by the caller) as GCM
//! associated data or as the OAEP label: a blob decrypts only with the
//! context it was made with. `wrap`/`unwrap` of DEKs take none (KWP has no
//! associated data); what a wrap belongs to is recorded beside it.
//!
//! Key material leaves this module only as [`KeyMaterial::to_secret_bytes`]
//! (zeroized on drop, to be wrapped by the root key at once) and, for RSA,
//! as the public key.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use base64::Engine;
use zeroize::Zeroizing;

use crate::{CryptoError, SecretKey, random_bytes, unwrap_key, wrap_key};

const KWP: &[u8] = b"kwp1:";
const OAEP: &[u8] = b"oaep256:";
const GCM: &[u8] = b"gcm1:";
const GCM_INFO: &[u8] = b"coffer vault encrypt v1";
const SALT_LEN: usize = 16;
const TAG_LEN: usize = 16;

/// Tag of the stored form of an AES key (see [`KeyMaterial::to_secret_bytes`]).
const STORED_AES: &[u8] = b"aes256:";
/// Tag of the stored form of an RSA key: PKCS#8 v1 DER follows.
const STORED_RSA: &[u8] = b"rsa-pkcs8:";
/// Tag of an import blob: an RSA-OAEP-wrapped AES-256 key, then the key
/// material wrapped under it with AES-KWP (`CKM_RSA_AES_KEY_WRAP`).
const IMPORT: &[u8] = b"rsa-aes-kwp1:";

/// The algorithm and size of a vault key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// AES-256: wrap (KWP), encrypt (GCM), generate data keys.
    Aes256,
    /// RSA 2048-bit: wrap and encrypt with OAEP-SHA-256.
    Rsa2048,
    /// RSA 3072-bit.
    Rsa3072,
    /// RSA 4096-bit.
    Rsa4096,
}

impl KeyAlgorithm {
    /// The name used in the API and CLI (`AES256`, `RSA2048`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes256 => "AES256",
            Self::Rsa2048 => "RSA2048",
            Self::Rsa3072 => "RSA3072",
            Self::Rsa4096 => "RSA4096",
        }
    }

    /// Parse [`KeyAlgorithm::name`] (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        match s.to_ascii_uppercase().as_str() {
            "AES256" | "AES-256" => Ok(Self::Aes256),
            "RSA2048" | "RSA-2048" => Ok(Self::Rsa2048),
            "RSA3072" | "RSA-3072" => Ok(Self::Rsa3072),
            "RSA4096" | "RSA-4096" => Ok(Self::Rsa4096),
            _ => Err(CryptoError::Malformed(format!(
                "unknown key type {s:?}: use AES256, RSA2048, RSA3072 or RSA4096"
            ))),
        }
    }

    fn rsa_bits(bits: usize) -> Result<Self, CryptoError> {
        match bits {
            2048 => Ok(Self::Rsa2048),
            3072 => Ok(Self::Rsa3072),
            4096 => Ok(Self::Rsa4096),
            _ => Err(CryptoError::Malformed(format!(
                "an RSA key of {bits} bits: only 2048, 3072 and 4096 are accepted"
            ))),
        }
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The secret material of one version of a vault key.
pub enum KeyMaterial {
    /// An AES-256 key.
    Aes(SecretKey),
    /// An RSA private key.
    Rsa(Box<PrivateDecryptingKey>),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyMaterial({})", self.algorithm())
    }
}

fn strip<'a>(blob: &'a [u8], tag: &[u8], what: &str) -> Result<&'a [u8], CryptoError> {
    blob.strip_prefix(tag).ok_or_else(|| {
        let shown: String = blob
            .iter()
            .take(16)
            .take_while(|&&b| b != b':')
            .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
            .collect();
        CryptoError::Malformed(format!(
            "{what}: expected a {} blob, found one tagged {shown:?}",
            String::from_utf8_lossy(&tag[..tag.len() - 1])
        ))
    })
}

fn tagged(tag: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + body.len());
    out.extend_from_slice(tag);
    out.extend_from_slice(body);
    out
}

fn oaep_encrypt(
    public: &PublicEncryptingKey,
    plaintext: &[u8],
    label: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let key = OaepPublicEncryptingKey::new(public.clone())
        .map_err(|_| CryptoError::Library("rsa public key"))?;
    if plaintext.len() > key.max_plaintext_size(&OAEP_SHA256_MGF1SHA256) {
        return Err(CryptoError::Malformed(format!(
            "{} bytes is more than RSA-OAEP-SHA-256 with a {}-bit key can encrypt ({} at most)",
            plaintext.len(),
            key.key_size_bits(),
            key.max_plaintext_size(&OAEP_SHA256_MGF1SHA256)
        )));
    }
    let mut out = vec![0u8; key.ciphertext_size()];
    let n = key
        .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, Some(label))
        .map_err(|_| CryptoError::Library("rsa-oaep encrypt"))?
        .len();
    out.truncate(n);
    Ok(tagged(OAEP, &out))
}

fn oaep_decrypt(
    private: &PrivateDecryptingKey,
    blob: &[u8],
    label: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let ct = strip(blob, OAEP, "RSA key")?;
    let key = OaepPrivateDecryptingKey::new(private.clone())
        .map_err(|_| CryptoError::Library("rsa private key"))?;
    let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
    let n = key
        .decrypt(&OAEP_SHA256_MGF1SHA256, ct, &mut out, Some(label))
        .map_err(|_| {
            CryptoError::Authentication(
                "RSA-OAEP decryption failed: wrong key, wrong context or modified ciphertext",
            )
        })?
        .len();
    out.truncate(n);
    Ok(out)
}

fn gcm_key(key: &SecretKey, salt: &[u8]) -> Result<LessSafeKey, CryptoError> {
    let prk = Salt::new(HKDF_SHA256, salt).extract(key.expose());
    let okm = prk
        .expand(&[GCM_INFO], &AES_256_GCM)
        .map_err(|_| CryptoError::Library("hkdf"))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

/// Seal `data` of any length under `key`, bound to `context`: a `gcm1:`
/// blob (per-message HKDF key, see the module doc).
pub fn seal_blob(key: &SecretKey, data: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut salt = [0u8; SALT_LEN];
    random_bytes(&mut salt);
    let k = gcm_key(key, &salt)?;
    let mut out = Vec::with_capacity(GCM.len() + SALT_LEN + data.len() + TAG_LEN);
    out.extend_from_slice(GCM);
    out.extend_from_slice(&salt);
    out.extend_from_slice(data);
    let start = GCM.len() + SALT_LEN;
    let tag = k
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([0u8; 12]),
            Aad::from(context),
            &mut out[start..],
        )
        .map_err(|_| CryptoError::Library("seal"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Open a blob made by [`seal_blob`] with the same key and context.
pub fn open_blob(
    key: &SecretKey,
    blob: &[u8],
    context: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let body = strip(blob, GCM, "AES key")?;
    if body.len() < SALT_LEN + TAG_LEN {
        return Err(CryptoError::Malformed("gcm1 blob too short".into()));
    }
    let (salt, sealed) = body.split_at(SALT_LEN);
    let k = gcm_key(key, salt)?;
    let mut buf = Zeroizing::new(sealed.to_vec());
    let n = k
        .open_in_place(
            Nonce::assume_unique_for_key([0u8; 12]),
            Aad::from(context),
            &mut buf,
        )
        .map_err(|_| {
            CryptoError::Authentication(
                "decryption failed: wrong key, wrong context or modified ciphertext",
            )
        })?
        .len();
    buf.truncate(n);
    Ok(buf)
}

impl KeyMaterial {
    /// Fresh material of `alg`, from the system's random source.
    pub fn generate(alg: KeyAlgorithm) -> Result<Self, CryptoError> {
        let size = match alg {
            KeyAlgorithm::Aes256 => return Ok(Self::Aes(SecretKey::generate())),
            KeyAlgorithm::Rsa2048 => KeySize::Rsa2048,
            KeyAlgorithm::Rsa3072 => KeySize::Rsa3072,
            KeyAlgorithm::Rsa4096 => KeySize::Rsa4096,
        };
        let key = PrivateDecryptingKey::generate(size)
            .map_err(|_| CryptoError::Library("rsa key generation"))?;
        Ok(Self::Rsa(Box::new(key)))
    }

    /// Import raw AES-256 material (exactly 32 bytes).
    pub fn import_aes(raw: &[u8]) -> Result<Self, CryptoError> {
        if raw.len() != 32 {
            return Err(CryptoError::Malformed(format!(
                "AES-256 key material must be 32 bytes, got {}",
                raw.len()
            )));
        }
        Ok(Self::Aes(SecretKey::from_slice(raw)?))
    }

    /// Import an RSA private key given as PKCS#8 DER, or as PEM
    /// (`-----BEGIN PRIVATE KEY-----`).
    pub fn import_rsa(pkcs8: &[u8]) -> Result<Self, CryptoError> {
        let der = if pkcs8.starts_with(b"-----BEGIN") {
            pem_body(pkcs8, "PRIVATE KEY")?
        } else {
            Zeroizing::new(pkcs8.to_vec())
        };
        let key = PrivateDecryptingKey::from_pkcs8(&der).map_err(|e| {
            CryptoError::Malformed(format!(
                "not an RSA private key in PKCS#8 ({e}); convert one with \
                 `openssl pkcs8 -topk8 -nocrypt -in key.pem`"
            ))
        })?;
        KeyAlgorithm::rsa_bits(key.key_size_bits())?;
        Ok(Self::Rsa(Box::new(key)))
    }

    /// The key's algorithm and size.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            Self::Aes(_) => KeyAlgorithm::Aes256,
            Self::Rsa(k) => {
                KeyAlgorithm::rsa_bits(k.key_size_bits()).unwrap_or(KeyAlgorithm::Rsa2048)
            }
        }
    }

    /// The stored form of the material, tagged with its type; wrap it under
    /// the root key before it goes anywhere.
    pub fn to_secret_bytes(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        Ok(Zeroizing::new(match self {
            Self::Aes(k) => tagged(STORED_AES, k.expose()),
            Self::Rsa(k) => {
                let der: Pkcs8V1Der<'static> = k
                    .as_der()
                    .map_err(|_| CryptoError::Library("pkcs8 export"))?;
                tagged(STORED_RSA, der.as_ref())
            }
        }))
    }

    /// Material from [`KeyMaterial::to_secret_bytes`].
    pub fn from_secret_bytes(stored: &[u8]) -> Result<Self, CryptoError> {
        if let Some(raw) = stored.strip_prefix(STORED_AES) {
            Self::import_aes(raw)
        } else if let Some(der) = stored.strip_prefix(STORED_RSA) {
            Self::import_rsa(der)
        } else {
            Err(CryptoError::Malformed(
                "stored key material of an unknown type".into(),
            ))
        }
    }

    /// The public key (X.509 SubjectPublicKeyInfo, DER) of an RSA key;
    /// `None` for a symmetric key, which has no public part.
    pub fn public_key_der(&self) -> Result<Option<Vec<u8>>, CryptoError> {
        match self {
            Self::Aes(_) => Ok(None),
            Self::Rsa(k) => {
                let der = k
                    .public_key()
                    .as_der()
                    .map_err(|_| CryptoError::Library("public key export"))?;
                Ok(Some(der.as_ref().to_vec()))
            }
        }
    }

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`), RSA only.
    pub fn public_key_pem(&self) -> Result<Option<String>, CryptoError> {
        Ok(self.public_key_der()?.map(|der| pem("PUBLIC KEY", &der)))
    }

    /// Wrap a key (a DEK, or material being exported to a peer vault)
    /// under this key: `kwp1:` for AES, `oaep256:` for RSA.
    pub fn wrap(&self, key: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match self {
            Self::Aes(k) => Ok(tagged(KWP, &wrap_key(k, key)?)),
            Self::Rsa(k) => oaep_encrypt(&k.public_key(), key, b""),
        }
    }

    /// Unwrap a blob made by [`KeyMaterial::wrap`] with this key.
    pub fn unwrap(&self, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match self {
            Self::Aes(k) => unwrap_key(k, strip(blob, KWP, "AES key")?),
            Self::Rsa(k) => oaep_decrypt(k, blob, b""),
        }
    }

    /// Encrypt a small message (a secret, a data key: at most 4 KiB for
    /// AES, the OAEP limit for RSA) bound to `context`.
    pub fn encrypt(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match self {
            Self::Aes(k) => {
                if plaintext.len() > 4096 {
                    return Err(CryptoError::Malformed(format!(
                        "{} bytes is more than a vault key encrypts (4096 at most): \
                         encrypt the data under a data key instead",
                        plaintext.len()
                    )));
                }
                seal_blob(k, plaintext, context)
            }
            Self::Rsa(k) => oaep_encrypt(&k.public_key(), plaintext, context),
        }
    }

    /// Decrypt a blob made by [`KeyMaterial::encrypt`] with this key and
    /// the same `context`.
    pub fn decrypt(&self, blob: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match self {
            Self::Aes(k) => open_blob(k, blob, context),
            Self::Rsa(k) => oaep_decrypt(k, blob, context),
        }
    }

    /// Open an import blob made by [`wrap_for_import`] with this key (the
    /// vault's RSA import key) and return the material it carries, as
    /// [`KeyMaterial`] of `alg`.
    pub fn unwrap_import(&self, blob: &[u8], alg: KeyAlgorithm) -> Result<Self, CryptoError> {
        let Self::Rsa(k) = self else {
            return Err(CryptoError::Malformed(
                "an import key must be an RSA key".into(),
            ));
        };
        let body = strip(blob, IMPORT, "import")?;
        let n = k.key_size_bytes();
        if body.len() <= n {
            return Err(CryptoError::Malformed("import blob too short".into()));
        }
        let (wrapped_aes, wrapped_key) = body.split_at(n);
        let aes = oaep_decrypt(k, &tagged(OAEP, wrapped_aes), b"")?;
        let aes = SecretKey::from_slice(&aes)?;
        let raw = unwrap_key(&aes, wrapped_key)?;
        let m = match alg {
            KeyAlgorithm::Aes256 => Self::import_aes(&raw)?,
            _ => Self::import_rsa(&raw)?,
        };
        if m.algorithm() != alg {
            return Err(CryptoError::Malformed(format!(
                "the imported material is {}, not {alg}",
                m.algorithm()
            )));
        }
        Ok(m)
    }
}

/// Wrap key material for import into a vault, as a client does with the
/// vault's public import key (`spki_der`): a fresh AES-256 key wrapped with
/// RSA-OAEP-SHA-256, followed by the material wrapped under that AES key
/// with AES-KWP — PKCS#11's `CKM_RSA_AES_KEY_WRAP`, AWS KMS's
/// `RSA_AES_KEY_WRAP_SHA_256` and Azure's BYOK transfer blob work the same
/// way. The material is raw AES-256 bytes or an RSA private key's PKCS#8
/// DER.
pub fn wrap_for_import(spki_der: &[u8], material: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let public = PublicEncryptingKey::from_der(spki_der)
        .map_err(|e| CryptoError::Malformed(format!("not an RSA public key ({e})")))?;
    let aes = SecretKey::generate();
    let wrapped_aes = oaep_encrypt(&public, aes.expose(), b"")?;
    let mut out = tagged(IMPORT, &wrapped_aes[OAEP.len()..]);
    out.extend_from_slice(&wrap_key(&aes, material)?);
    Ok(out)
}

/// Encrypt with an RSA public key (`spki_der`), as anyone holding a vault
/// key's public part may: decrypts with that key's [`KeyMaterial::decrypt`].
pub fn public_encrypt(
    spki_der: &[u8],
    plaintext: &[u8],
    context: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let public = PublicEncryptingKey::from_der(spki_der)
        .map_err(|e| CryptoError::Malformed(format!("not an RSA public key ({e})")))?;
    oaep_encrypt(&public, plaintext, context)
}

/// PEM armour of `der` with `label`.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER inside the first PEM block labelled `label`.
pub fn pem_body(text: &[u8], label: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let text = Zeroizing::new(String::from_utf8_lossy(text).into_owned());
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin).ok_or_else(|| {
        CryptoError::Malformed(format!("no \"{begin}\" block (an encrypted or PKCS#1 key must be converted to unencrypted PKCS#8 first)"))
    })? + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| CryptoError::Malformed(format!("no \"{end}\" line")))?;
    let b64: Zeroizing<String> = Zeroizing::new(
        text[start..start + stop]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect(),
    );
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map(Zeroizing::new)
        .map_err(|e| CryptoError::Malformed(format!("bad base64 in the PEM block: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa() -> &'static KeyMaterial {
        static K: std::sync::OnceLock<KeyMaterial> = std::sync::OnceLock::new();
        K.get_or_init(|| KeyMaterial::generate(KeyAlgorithm::Rsa2048).unwrap())
    }

    fn flips_fail(blob: &[u8], open: impl Fn(&[u8]) -> bool) {
        for i in 0..blob.len() {
            let mut bad = blob.to_vec();
            bad[i] ^= 0x40;
            assert!(
                !open(&bad),
                "a flipped byte {i} of {} went undetected",
                blob.len()
            );
        }
    }

    #[test]
    fn aes_wrap_encrypt_round_trips_and_detects_tampering() {
        let k = KeyMaterial::generate(KeyAlgorithm::Aes256).unwrap();
        let dek = SecretKey::generate();
        let w = k.wrap(dek.expose()).unwrap();
        assert!(w.starts_with(b"kwp1:"));
        assert_eq!(&k.unwrap(&w).unwrap()[..], dek.expose());
        flips_fail(&w, |b| k.unwrap(b).is_ok());

        let c = k.encrypt(b"a secret", b"ctx=1").unwrap();
        assert!(c.starts_with(b"gcm1:"));
        assert_eq!(&k.decrypt(&c, b"ctx=1").unwrap()[..], b"a secret");
        assert!(k.decrypt(&c, b"ctx=2").is_err(), "context not bound");
        flips_fail(&c, |b| k.decrypt(b, b"ctx=1").is_ok());
        // Two encryptions of one message differ (fresh salt, fresh key).
        assert_ne!(c, k.encrypt(b"a secret", b"ctx=1").unwrap());
        // Another key opens nothing; the wrong tag is named.
        let other = KeyMaterial::generate(KeyAlgorithm::Aes256).unwrap();
        assert!(other.unwrap(&w).is_err());
        assert!(other.decrypt(&c, b"ctx=1").is_err());
        let e = k.unwrap(&c).unwrap_err().to_string();
        assert!(e.contains("kwp1") && e.contains("gcm1"), "{e}");
        assert!(k.encrypt(&[0u8; 4097], b"").is_err());
    }

    #[test]
    fn rsa_wrap_encrypt_and_public_part() {
        let k = rsa();
        assert_eq!(k.algorithm(), KeyAlgorithm::Rsa2048);
        let dek = SecretKey::generate();
        let w = k.wrap(dek.expose()).unwrap();
        assert!(w.starts_with(b"oaep256:"));
        assert_eq!(&k.unwrap(&w).unwrap()[..], dek.expose());
        flips_fail(&w[..40], |b| {
            let mut full = b.to_vec();
            full.extend_from_slice(&w[40..]);
            k.unwrap(&full).is_ok()
        });
        let spki = k.public_key_der().unwrap().unwrap();
        let c = public_encrypt(&spki, b"to the key holder", b"ctx").unwrap();
        assert_eq!(&k.decrypt(&c, b"ctx").unwrap()[..], b"to the key holder");
        assert!(k.decrypt(&c, b"other").is_err(), "label not bound");
        let pem = k.public_key_pem().unwrap().unwrap();
        assert_eq!(
            &pem_body(pem.as_bytes(), "PUBLIC KEY").unwrap()[..],
            &spki[..]
        );
        assert!(
            public_encrypt(&spki, &[0u8; 191], b"").is_err(),
            "over the OAEP limit"
        );
    }

    #[test]
    fn stored_form_round_trips_and_names_its_type() {
        for k in [
            KeyMaterial::generate(KeyAlgorithm::Aes256).unwrap(),
            KeyMaterial::generate(KeyAlgorithm::Rsa2048).unwrap(),
        ] {
            let s = k.to_secret_bytes().unwrap();
            let back = KeyMaterial::from_secret_bytes(&s).unwrap();
            assert_eq!(back.algorithm(), k.algorithm());
            let w = k.wrap(b"0123456789abcdef0123456789abcdef").unwrap();
            assert_eq!(
                &back.unwrap(&w).unwrap()[..],
                b"0123456789abcdef0123456789abcdef"
            );
        }
        assert!(KeyMaterial::from_secret_bytes(b"des:12345678").is_err());
        assert!(
            KeyMaterial::import_aes(&[0u8; 16]).is_err(),
            "AES-128 accepted"
        );
    }

    #[test]
    fn byok_import_of_aes_and_rsa_material() {
        let import = rsa();
        let spki = import.public_key_der().unwrap().unwrap();
        // AES material.
        let raw = [7u8; 32];
        let blob = wrap_for_import(&spki, &raw).unwrap();
        let m = import.unwrap_import(&blob, KeyAlgorithm::Aes256).unwrap();
        let mine = KeyMaterial::import_aes(&raw).unwrap();
        assert_eq!(&m.unwrap(&mine.wrap(b"dek").unwrap()).unwrap()[..], b"dek");
        assert!(
            import.unwrap_import(&blob, KeyAlgorithm::Rsa2048).is_err(),
            "type not checked"
        );
        flips_fail(&blob, |b| {
            import.unwrap_import(b, KeyAlgorithm::Aes256).is_ok()
        });
        // RSA material, as PKCS#8 DER and as PEM.
        let theirs = KeyMaterial::generate(KeyAlgorithm::Rsa2048).unwrap();
        let der = theirs.to_secret_bytes().unwrap();
        let der = &der[STORED_RSA.len()..];
        let blob = wrap_for_import(&spki, der).unwrap();
        let m = import.unwrap_import(&blob, KeyAlgorithm::Rsa2048).unwrap();
        assert_eq!(
            m.public_key_der().unwrap(),
            theirs.public_key_der().unwrap()
        );
        let p = KeyMaterial::import_rsa(pem("PRIVATE KEY", der).as_bytes()).unwrap();
        assert_eq!(
            p.public_key_der().unwrap(),
            theirs.public_key_der().unwrap()
        );
        let e = KeyMaterial::import_rsa(
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("PKCS#8"), "{e}");
    }

    /// Wycheproof's RSA-OAEP decryption vectors with SHA-256 and
    /// MGF1-SHA-256 for 2048-, 3072- and 4096-bit keys (and those of its
    /// misc file with the same parameters and sizes), through the same
    /// import and decrypt a vault key uses: valid ciphertexts decrypt to
    /// their message under their label, invalid ones are refused.
    #[test]
    fn wycheproof_rsa_oaep_sha256_vectors() {
        use wycheproof::rsa_oaep::{TestName, TestSet};
        use wycheproof::{HashFunction, TestResult};
        let (mut valid, mut invalid) = (0, 0);
        for name in [
            TestName::Rsa2048Sha256Mgf1Sha256,
            TestName::Rsa3072Sha256Mgf1Sha256,
            TestName::Rsa4096Sha256Mgf1Sha256,
            TestName::RsaMisc,
        ] {
            let set = TestSet::load(name).unwrap();
            for g in set.test_groups.iter().filter(|g| {
                g.hash == HashFunction::Sha2_256
                    && g.mgf_hash == HashFunction::Sha2_256
                    && [2048, 3072, 4096].contains(&g.key_size)
            }) {
                let k = KeyMaterial::import_rsa(&g.pkcs8).unwrap();
                assert_eq!(k.algorithm().name(), format!("RSA{}", g.key_size));
                for t in &g.tests {
                    let out = k.decrypt(&tagged(OAEP, &t.ct), &t.label);
                    match t.result {
                        TestResult::Valid => {
                            assert_eq!(&out.unwrap()[..], &t.pt[..], "tc {}", t.tc_id);
                            valid += 1;
                        }
                        TestResult::Invalid => {
                            assert!(out.is_err(), "tc {} ({}) decrypted", t.tc_id, t.comment);
                            invalid += 1;
                        }
                        TestResult::Acceptable => {}
                    }
                }
            }
        }
        assert!(
            valid >= 60 && invalid >= 20,
            "{valid} valid, {invalid} invalid vectors run"
        );
    }
}
