//! Customer keys kept in an external key store: an OpenBao (or HashiCorp
//! Vault) **transit** secrets engine that the customer runs, reached over
//! HTTP with the customer's token. The key material never enters Coffer:
//! Coffer asks the engine to encrypt a DEK (a wrap) and to decrypt it (an
//! unwrap), naming the key version, and keeps the engine's ciphertext
//! tagged `transit1:`. Whoever controls the engine controls the data: a
//! policy that stops Coffer's token from decrypting, a deleted key, or an
//! engine out of reach makes every unwrap fail, and Coffer's key watch
//! cuts off open disks under the key at its next check (see
//! `coffer-service`'s `revoke` module and docs/KEYS.md).
//!
//! Requests are bounded: 2 s to connect, 5 s in all. A token is held in
//! memory only (zeroized on drop) and sent only in the `X-Vault-Token`
//! header; it is never logged.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::{Result, VaultError};

/// Tag of a DEK wrapped by a transit engine: `transit1:` then the
/// engine's ciphertext (`vault:vN:…`).
pub const TRANSIT_TAG: &[u8] = b"transit1:";

/// A client of one transit engine (address, mount, token).
pub struct TransitClient {
    address: String,
    mount: String,
    token: Zeroizing<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for TransitClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitClient")
            .field("address", &self.address)
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

fn external(msg: impl Into<String>) -> VaultError {
    VaultError::External(msg.into())
}

/// Check an external key store's address and mount: an `http` or `https`
/// URL with a host and nothing after it, and a mount of path segments.
///
/// # Errors
/// [`VaultError::External`] saying what is wrong.
pub fn check_address(address: &str, mount: &str) -> Result<(String, String)> {
    let address = address.trim().trim_end_matches('/');
    let rest = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .ok_or_else(|| {
            external(format!(
                "external key store address '{address}' is not an http:// or https:// URL"
            ))
        })?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(external(format!(
            "external key store address '{address}' must be scheme://host[:port], with no path"
        )));
    }
    let mount = mount.trim().trim_matches('/');
    if mount.is_empty()
        || !mount.split('/').all(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && s != "."
                && s != ".."
        })
    {
        return Err(external(format!(
            "transit mount '{mount}' is not a path of letters, digits, '-', '_' and '.'"
        )));
    }
    Ok((address.to_string(), mount.to_string()))
}

impl TransitClient {
    /// A client of the engine at `address` (see [`check_address`]),
    /// mounted at `mount`, with `token`.
    ///
    /// # Errors
    /// A bad address or mount, or an HTTP client that cannot be built.
    pub fn new(address: &str, mount: &str, token: Zeroizing<String>) -> Result<Self> {
        let (address, mount) = check_address(address, mount)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| external(format!("HTTP client: {e}")))?;
        Ok(Self {
            address,
            mount,
            token,
            http,
        })
    }

    /// The engine's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `name` as one path segment: a transit key name Coffer accepts.
    fn key(name: &str) -> Result<&str> {
        if name.is_empty()
            || name == "."
            || name == ".."
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(external(format!(
                "'{name}' cannot name a transit key: use letters, digits, '-', '_' and '.'"
            )));
        }
        Ok(name)
    }

    async fn call(&self, path: &str, body: Option<Value>) -> Result<Option<Value>> {
        let url = format!("{}/v1/{}/{path}", self.address, self.mount);
        let req = match &body {
            Some(b) => self.http.post(&url).json(b),
            None => self.http.get(&url),
        };
        let resp = req
            .header("X-Vault-Token", self.token.as_str())
            .send()
            .await
            .map_err(|e| {
                external(format!(
                    "the external key store at {} cannot be reached: {}",
                    self.address,
                    e.without_url()
                ))
            })?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND && body.is_none() {
            return Ok(None);
        }
        let text = resp.text().await.map_err(|e| {
            external(format!(
                "the external key store at {} broke off its answer: {}",
                self.address,
                e.without_url()
            ))
        })?;
        if !status.is_success() {
            let errors = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("errors").cloned())
                .and_then(|e| serde_json::from_value::<Vec<String>>(e).ok())
                .map(|e| e.join("; ").replace(['\n', '\t'], " "))
                .unwrap_or_default();
            let errors = errors.split_whitespace().collect::<Vec<_>>().join(" ");
            return Err(external(format!(
                "the external key store at {} refused {path} ({}{}{})",
                self.address,
                status.as_u16(),
                if errors.is_empty() { "" } else { ": " },
                errors
            )));
        }
        if text.trim().is_empty() {
            return Ok(Some(Value::Null));
        }
        serde_json::from_str(&text).map(Some).map_err(|e| {
            external(format!(
                "the external key store answered {path} with bad JSON: {e}"
            ))
        })
    }

    fn field<'a>(v: &'a Value, name: &str, path: &str) -> Result<&'a Value> {
        v.get("data").and_then(|d| d.get(name)).ok_or_else(|| {
            external(format!(
                "the external key store's answer to {path} has no {name}"
            ))
        })
    }

    /// The newest version of transit key `name`, if it exists.
    ///
    /// # Errors
    /// The engine refused or is out of reach.
    pub async fn latest_version(&self, name: &str) -> Result<Option<u32>> {
        let path = format!("keys/{}", Self::key(name)?);
        let Some(v) = self.call(&path, None).await? else {
            return Ok(None);
        };
        let ty = Self::field(&v, "type", &path)?.as_str().unwrap_or("");
        if ty != "aes256-gcm96" {
            return Err(external(format!(
                "transit key '{name}' is of type {ty}: Coffer wraps data keys with aes256-gcm96 keys"
            )));
        }
        let n = Self::field(&v, "latest_version", &path)?
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| external("transit latest_version is not a number"))?;
        Ok(Some(n))
    }

    /// Use transit key `name`, creating it (aes256-gcm96) if it does not
    /// exist; returns its newest version.
    ///
    /// # Errors
    /// The engine refused or is out of reach, or the key is of another type.
    pub async fn ensure_key(&self, name: &str) -> Result<u32> {
        if let Some(v) = self.latest_version(name).await? {
            return Ok(v);
        }
        self.call(
            &format!("keys/{}", Self::key(name)?),
            Some(json!({"type": "aes256-gcm96"})),
        )
        .await?;
        self.latest_version(name).await?.ok_or_else(|| {
            external(format!(
                "transit key '{name}' was created but cannot be read"
            ))
        })
    }

    /// Rotate transit key `name`; returns its new newest version.
    ///
    /// # Errors
    /// The engine refused or is out of reach.
    pub async fn rotate(&self, name: &str) -> Result<u32> {
        self.call(
            &format!("keys/{}/rotate", Self::key(name)?),
            Some(json!({})),
        )
        .await?;
        self.latest_version(name)
            .await?
            .ok_or_else(|| external(format!("transit key '{name}' is gone")))
    }

    /// Encrypt `plain` under `version` of key `name`, bound to `aad`;
    /// returns the tagged blob (`transit1:vault:vN:…`).
    ///
    /// # Errors
    /// The engine refused or is out of reach.
    pub async fn encrypt(
        &self,
        name: &str,
        version: u32,
        plain: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>> {
        let path = format!("encrypt/{}", Self::key(name)?);
        let mut body = json!({
            "plaintext": B64.encode(plain),
            "key_version": version,
        });
        if !aad.is_empty() {
            body["associated_data"] = json!(B64.encode(aad));
        }
        let v = self.call(&path, Some(body)).await?.unwrap_or(Value::Null);
        let ct = Self::field(&v, "ciphertext", &path)?
            .as_str()
            .ok_or_else(|| external("transit ciphertext is not a string"))?;
        let mut out = TRANSIT_TAG.to_vec();
        out.extend_from_slice(ct.as_bytes());
        Ok(out)
    }

    /// Decrypt a blob made by [`TransitClient::encrypt`] with the same
    /// `aad`.
    ///
    /// # Errors
    /// A blob of another format; the engine refused (tampered blob,
    /// permission taken away, key deleted) or is out of reach.
    pub async fn decrypt(&self, name: &str, blob: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let ct = blob
            .strip_prefix(TRANSIT_TAG)
            .and_then(|c| std::str::from_utf8(c).ok())
            .ok_or_else(|| {
                VaultError::Crypto(coffer_crypto::CryptoError::Malformed(
                    "not a transit-wrapped blob (transit1:)".into(),
                ))
            })?;
        let path = format!("decrypt/{}", Self::key(name)?);
        let mut body = json!({ "ciphertext": ct });
        if !aad.is_empty() {
            body["associated_data"] = json!(B64.encode(aad));
        }
        let v = self.call(&path, Some(body)).await?.unwrap_or(Value::Null);
        let plain = Zeroizing::new(
            Self::field(&v, "plaintext", &path)?
                .as_str()
                .ok_or_else(|| external("transit plaintext is not a string"))?
                .to_string(),
        );
        B64.decode(plain.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| external("transit plaintext is not base64"))
    }

    /// The key version a transit blob was made with (`vault:vN:`).
    pub fn blob_version(blob: &[u8]) -> Option<u32> {
        let ct = std::str::from_utf8(blob.strip_prefix(TRANSIT_TAG)?).ok()?;
        ct.strip_prefix("vault:v")?.split(':').next()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_mounts_are_checked() {
        assert!(check_address("http://127.0.0.1:8200", "transit").is_ok());
        assert_eq!(
            check_address(" https://bao.example:8200/ ", "/kv/transit/").unwrap(),
            ("https://bao.example:8200".into(), "kv/transit".into())
        );
        for (a, m) in [
            ("ftp://x", "transit"),
            ("http://", "transit"),
            ("http://h/v1", "transit"),
            ("http://u@h", "transit"),
            ("http://h", ""),
            ("http://h", "../sys"),
            ("http://h", "a b"),
        ] {
            assert!(check_address(a, m).is_err(), "{a} {m}");
        }
    }

    #[test]
    fn blob_versions() {
        assert_eq!(
            TransitClient::blob_version(b"transit1:vault:v3:abc"),
            Some(3)
        );
        assert_eq!(TransitClient::blob_version(b"kwp1:vault:v3:abc"), None);
        assert_eq!(TransitClient::blob_version(b"transit1:vault:x:abc"), None);
    }
}
