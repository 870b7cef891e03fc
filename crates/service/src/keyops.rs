//! What a caller does with a customer key through the API, as with AWS KMS
//! and Azure Key Vault: encrypt and decrypt small data bound to a context,
//! wrap and unwrap keys, generate data keys, re-encrypt under another key.
//! Each call is authorized (`keys/encrypt`, `keys/decrypt`, `keys/wrapKey`,
//! `keys/unwrapKey`), refused with the reason while the key is unusable
//! (disabled, deleted, outside its validity, its vault deleted), and
//! audited, failures too. Ciphertexts read `coffer:vN:BASE64`: the version
//! that made them, so a rotated key still opens what older versions made.

use std::time::SystemTime;

use base64::Engine;
use coffer_iam::Action;
use coffer_keyvault::VaultError;
use coffer_meta::{VaultKeyRow, VaultRow};
use zeroize::Zeroizing;

use crate::error::ErrorCode;
use crate::model::*;
use crate::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn ciphertext(version: u32, blob: &[u8]) -> String {
    format!("coffer:v{version}:{}", B64.encode(blob))
}

fn parse_ciphertext(s: &str, key: &VaultKeyRow) -> Result<(u32, Vec<u8>)> {
    let bad = |why: &str| {
        ServiceError::new(
            ErrorCode::InvalidCiphertext,
            format!("not a ciphertext of key {}: {why}", key.id),
        )
    };
    let rest = s
        .trim()
        .strip_prefix("coffer:v")
        .ok_or_else(|| bad("ciphertexts read coffer:vN:BASE64"))?;
    let (v, b) = rest
        .split_once(':')
        .ok_or_else(|| bad("ciphertexts read coffer:vN:BASE64"))?;
    let v: u32 = v.parse().map_err(|_| bad("the version is not a number"))?;
    if v == 0 || v > key.current_version {
        return Err(bad(&format!(
            "it names version {v}, and the key has versions 1 to {}",
            key.current_version
        )));
    }
    let blob = B64.decode(b).map_err(|_| bad("the data is not base64"))?;
    Ok((v, blob))
}

fn decode(what: &str, s: &str) -> Result<Zeroizing<Vec<u8>>> {
    B64.decode(s.trim()).map(Zeroizing::new).map_err(|e| {
        ServiceError::new(
            ErrorCode::InvalidKeyOperation,
            format!("{what} is not base64 ({e})"),
        )
    })
}

impl Service {
    /// The key if the caller may do `action` with it and it is usable now;
    /// an unusable key is refused with its reason, and audited.
    async fn usable_key(
        &self,
        caller: &Caller,
        id: &str,
        action: Action,
        name: &str,
        context: Option<&str>,
    ) -> Result<(VaultKeyRow, VaultRow)> {
        let (k, v) = self.authorized_key(caller, id, action).await?;
        // Allowed through a grant with a context constraint: only with
        // that context.
        let target = self.key_target(&k).await?;
        if let coffer_iam::Decision::Allow(coffer_iam::Allowed::KeyGrant { grant }) =
            coffer_iam::authorize(&caller.subject, action, &target)
            && let Some(g) = self.meta.grant(grant).await?
            && let Some(want) = &g.context_equals
            && context != Some(want.as_str())
        {
            let why = format!(
                "grant {grant} allows {action} on key {} only with encryption context '{want}'",
                k.id
            );
            self.audit(caller, name, Some((k.id, None)), k.id, "denied", &why)
                .await?;
            return Err(ServiceError::new(ErrorCode::AuthorizationFailed, why));
        }
        let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        if let Some(why) = coffer_keyvault::customer::unusable(&k, Some(&v), &now) {
            self.audit(caller, name, Some((k.id, None)), k.id, "failed", &why)
                .await?;
            return Err(ServiceError::new(
                ErrorCode::KeyUnusable,
                format!("key {} is {why}", k.id),
            ));
        }
        Ok((k, v))
    }

    /// Audit the outcome of a key operation and turn a crypto failure into
    /// the caller's error (`code`).
    async fn finish_op<T>(
        &self,
        caller: &Caller,
        name: &str,
        key: &VaultKeyRow,
        version: u32,
        r: std::result::Result<T, VaultError>,
        code: ErrorCode,
    ) -> Result<T> {
        match r {
            Ok(t) => {
                self.audit(
                    caller,
                    name,
                    Some((key.id, Some(version))),
                    key.id,
                    "allowed",
                    "",
                )
                .await?;
                Ok(t)
            }
            Err(VaultError::Crypto(e)) => {
                let msg = e.to_string();
                self.audit(
                    caller,
                    name,
                    Some((key.id, Some(version))),
                    key.id,
                    "failed",
                    &msg,
                )
                .await?;
                Err(ServiceError::new(code, msg))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Encrypt up to 4 KiB (AES) under the key's current version.
    pub async fn key_encrypt(
        &self,
        caller: &Caller,
        id: &str,
        req: EncryptRequest,
    ) -> Result<KeyOperationResult> {
        let (k, _) = self
            .usable_key(
                caller,
                id,
                Action::KeysEncrypt,
                "key.encrypt",
                req.context.as_deref(),
            )
            .await?;
        let plain = decode("plaintext", &req.plaintext)?;
        let ctx = req.context.unwrap_or_default();
        let r = self.vault.encrypt(&k, &plain, ctx.as_bytes()).await;
        let blob = self
            .finish_op(
                caller,
                "key.encrypt",
                &k,
                k.current_version,
                r,
                ErrorCode::InvalidKeyOperation,
            )
            .await?;
        Ok(KeyOperationResult {
            key_id: k.id.to_string(),
            version: k.current_version,
            ciphertext: Some(ciphertext(k.current_version, &blob)),
            plaintext: None,
        })
    }

    /// Decrypt a ciphertext of the key made with the same context.
    pub async fn key_decrypt(
        &self,
        caller: &Caller,
        id: &str,
        req: DecryptRequest,
    ) -> Result<KeyOperationResult> {
        let (k, _) = self
            .usable_key(
                caller,
                id,
                Action::KeysDecrypt,
                "key.decrypt",
                req.context.as_deref(),
            )
            .await?;
        let (version, blob) = parse_ciphertext(&req.ciphertext, &k)?;
        let ctx = req.context.unwrap_or_default();
        let r = self.vault.decrypt(&k, version, &blob, ctx.as_bytes()).await;
        let plain = self
            .finish_op(
                caller,
                "key.decrypt",
                &k,
                version,
                r,
                ErrorCode::InvalidCiphertext,
            )
            .await?;
        Ok(KeyOperationResult {
            key_id: k.id.to_string(),
            version,
            ciphertext: None,
            plaintext: Some(B64.encode(&plain[..])),
        })
    }

    /// Wrap a key (16 to 512 bytes) under the key's current version.
    pub async fn key_wrap(
        &self,
        caller: &Caller,
        id: &str,
        req: WrapRequest,
    ) -> Result<KeyOperationResult> {
        let (k, _) = self
            .usable_key(caller, id, Action::KeysWrap, "key.wrap", None)
            .await?;
        let plain = decode("key", &req.key)?;
        if !(16..=512).contains(&plain.len()) {
            return Err(ServiceError::new(
                ErrorCode::InvalidKeyOperation,
                format!(
                    "a key to wrap is 16 to 512 bytes, not {}: encrypt other data instead",
                    plain.len()
                ),
            ));
        }
        let r = self.vault.wrap_with(&k, &plain).await;
        let blob = self
            .finish_op(
                caller,
                "key.wrap",
                &k,
                k.current_version,
                r,
                ErrorCode::InvalidKeyOperation,
            )
            .await?;
        Ok(KeyOperationResult {
            key_id: k.id.to_string(),
            version: k.current_version,
            ciphertext: Some(ciphertext(k.current_version, &blob)),
            plaintext: None,
        })
    }

    /// Unwrap a key wrapped by this key.
    pub async fn key_unwrap(
        &self,
        caller: &Caller,
        id: &str,
        req: UnwrapRequest,
    ) -> Result<KeyOperationResult> {
        let (k, _) = self
            .usable_key(caller, id, Action::KeysUnwrap, "key.unwrap", None)
            .await?;
        let (version, blob) = parse_ciphertext(&req.ciphertext, &k)?;
        let r = self.vault.unwrap_with(&k, version, &blob).await;
        let plain = self
            .finish_op(
                caller,
                "key.unwrap",
                &k,
                version,
                r,
                ErrorCode::InvalidCiphertext,
            )
            .await?;
        Ok(KeyOperationResult {
            key_id: k.id.to_string(),
            version,
            ciphertext: None,
            plaintext: Some(B64.encode(&plain[..])),
        })
    }

    /// A fresh 256-bit data key: in the clear (to use at once and forget)
    /// and encrypted under the key (to store beside the data).
    pub async fn key_generate_data_key(
        &self,
        caller: &Caller,
        id: &str,
        req: GenerateDataKeyRequest,
    ) -> Result<KeyOperationResult> {
        let (k, _) = self
            .usable_key(
                caller,
                id,
                Action::KeysEncrypt,
                "key.generate",
                req.context.as_deref(),
            )
            .await?;
        let dek = coffer_crypto::SecretKey::generate();
        let ctx = req.context.unwrap_or_default();
        let r = self.vault.encrypt(&k, dek.expose(), ctx.as_bytes()).await;
        let blob = self
            .finish_op(
                caller,
                "key.generate",
                &k,
                k.current_version,
                r,
                ErrorCode::InvalidKeyOperation,
            )
            .await?;
        Ok(KeyOperationResult {
            key_id: k.id.to_string(),
            version: k.current_version,
            ciphertext: Some(ciphertext(k.current_version, &blob)),
            plaintext: Some(B64.encode(dek.expose())),
        })
    }

    /// Decrypt under this key and encrypt under another, inside the vault.
    pub async fn key_re_encrypt(
        &self,
        caller: &Caller,
        id: &str,
        req: ReEncryptRequest,
    ) -> Result<KeyOperationResult> {
        let (k, _) = self
            .usable_key(
                caller,
                id,
                Action::KeysDecrypt,
                "key.re-encrypt",
                req.context.as_deref(),
            )
            .await?;
        let (d, _) = self
            .usable_key(
                caller,
                &req.destination_key_id,
                Action::KeysEncrypt,
                "key.re-encrypt",
                req.destination_context.as_deref(),
            )
            .await?;
        let (version, blob) = parse_ciphertext(&req.ciphertext, &k)?;
        let ctx = req.context.unwrap_or_default();
        let r = self.vault.decrypt(&k, version, &blob, ctx.as_bytes()).await;
        let plain = self
            .finish_op(
                caller,
                "key.re-encrypt",
                &k,
                version,
                r,
                ErrorCode::InvalidCiphertext,
            )
            .await?;
        let dctx = req.destination_context.unwrap_or_default();
        let r = self.vault.encrypt(&d, &plain, dctx.as_bytes()).await;
        let out = self
            .finish_op(
                caller,
                "key.re-encrypt",
                &d,
                d.current_version,
                r,
                ErrorCode::InvalidKeyOperation,
            )
            .await?;
        Ok(KeyOperationResult {
            key_id: d.id.to_string(),
            version: d.current_version,
            ciphertext: Some(ciphertext(d.current_version, &out)),
            plaintext: None,
        })
    }
}
