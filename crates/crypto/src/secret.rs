//! Secret values: 256-bit keys that zeroize on drop, random bytes from the
//! system CSPRNG, API tokens (generated once, stored only as a hash) and
//! passphrase-derived keys.

use std::fmt;
use std::num::NonZeroU32;

use base64::Engine as _;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::CryptoError;

/// A 256-bit secret key. Zeroized on drop; `Debug` never prints it.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        random_bytes(&mut k);
        Self(k)
    }

    /// Take ownership of key bytes (the caller zeroizes its copy).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Copy key bytes from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            CryptoError::Malformed(format!("key is {} bytes, expected 32", bytes.len()))
        })?;
        Ok(Self(arr))
    }

    /// The key bytes. Keep the borrow short.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Derive a key from a passphrase with PBKDF2-HMAC-SHA256 (600 000
    /// iterations, OWASP 2023) and a 16-byte random salt stored beside the
    /// data it protects.
    pub fn from_passphrase(passphrase: &[u8], salt: &[u8]) -> Self {
        let mut k = [0u8; 32];
        aws_lc_rs::pbkdf2::derive(
            aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(600_000).expect("non-zero"),
            salt,
            passphrase,
            &mut k,
        );
        Self(k)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Fill `buf` from the system CSPRNG.
pub fn random_bytes(buf: &mut [u8]) {
    aws_lc_rs::rand::fill(buf).expect("system CSPRNG failed");
}

/// Prefix of every Coffer API token, so that secret scanners can find leaked ones.
pub const TOKEN_PREFIX: &str = "coffer_";

/// A new API token: `coffer_` + 256 random bits in base64url. Shown once;
/// only [`hash_token`] of it is stored.
pub fn new_token() -> zeroize::Zeroizing<String> {
    let mut b = [0u8; 32];
    random_bytes(&mut b);
    let t = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    );
    b.zeroize();
    zeroize::Zeroizing::new(t)
}

/// The stored form of a token: hex SHA-256. Tokens carry 256 bits of entropy,
/// so a fast hash is enough (no password stretching needed).
pub fn hash_token(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))
}

/// SHA-256 of `data`, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hash_stably() {
        let a = new_token();
        let b = new_token();
        assert_ne!(*a, *b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert!(a.len() >= TOKEN_PREFIX.len() + 43);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
        assert!(!hash_token(&a).contains(&a[TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn debug_hides_key() {
        let k = SecretKey::from_bytes([0xab; 32]);
        assert!(!format!("{k:?}").contains("ab"));
    }

    #[test]
    fn passphrase_derivation_depends_on_salt() {
        let a = SecretKey::from_passphrase(b"pw", b"salt-one-16bytes");
        let b = SecretKey::from_passphrase(b"pw", b"salt-two-16bytes");
        assert_ne!(a, b);
        assert_eq!(a, SecretKey::from_passphrase(b"pw", b"salt-one-16bytes"));
    }
}
