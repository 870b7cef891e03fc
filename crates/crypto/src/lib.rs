//! Coffer's cryptography, in one small crate so that it can be read and
//! reviewed in one sitting. It owns:
//!
//! - [`chunk`]: the sealed chunk object format (AES-256-GCM, header as
//!   associated data, nonce from a never-reused counter);
//! - [`object`]: the sealed object format v2 (4 KiB slots under
//!   per-object keys from HKDF, optional second layer), which every
//!   volume write produces (docs/design/format-v2-and-keys.md);
//! - [`wrap`]: key wrapping of DEKs and key material (AES-KWP, RFC 5649);
//! - [`keys`]: key-vault key material (AES-256, RSA) and its operations
//!   (wrap/unwrap, encrypt/decrypt, BYOK import), every blob tagged with
//!   its format;
//! - [`secret`]: secret key types that zeroize on drop, random bytes, API
//!   token generation and hashing, passphrase key derivation.
//!
//! All primitives come from aws-lc-rs (and BLAKE3, the copy verification
//! hash, from the `blake3` crate); nothing here implements a cipher.

pub mod chunk;
#[doc(hidden)]
pub mod fuzz;
pub mod keys;
pub mod object;
pub mod secret;
pub mod wrap;

pub use chunk::{ChunkHeader, ChunkKey, HEADER_LEN, OVERHEAD, TAG_LEN, open_chunk, seal_chunk};
pub use secret::{
    Blake3, SecretKey, Sha256, hash_token, hmac_sha256_hex, hmac_sha256_verify, new_token,
    random_bytes, sha256_hex,
};
pub use wrap::{unwrap_key, wrap_key};

/// Errors of cryptographic operations. Messages never include key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Authentication failed: the data or its header was modified, or the
    /// wrong key was used. Never returned as data.
    #[error("authentication failed: {0}")]
    Authentication(&'static str),
    /// The object is not in a format this build understands.
    #[error("malformed sealed object: {0}")]
    Malformed(String),
    /// The nonce counter of a key is exhausted; the lineage must be re-keyed.
    #[error("nonce counter exhausted for this key")]
    NonceExhausted,
    /// The crypto library refused an operation (should not happen).
    #[error("crypto library error: {0}")]
    Library(&'static str),
}
