//! Key wrapping: AES-256 key wrap with padding (RFC 5649, "KWP"). Used for a
//! DEK under its KEK and for key material under the vault's root key. KWP is
//! deterministic and needs no nonce, so no nonce can ever repeat; its 64-bit
//! integrity check detects a modified or mis-keyed wrap.

use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};

use crate::{CryptoError, SecretKey};

/// Wrap `key` (any length from 1 byte) under `kek`.
pub fn wrap_key(kek: &SecretKey, key: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let kek = AesKek::new(&AES_256, kek.expose()).map_err(|_| CryptoError::Library("kek"))?;
    let mut out = vec![0u8; key.len() + 16];
    let n = kek
        .wrap_with_padding(key, &mut out)
        .map_err(|_| CryptoError::Library("wrap"))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// Unwrap a key wrapped by [`wrap_key`]; fails if `wrapped` was modified or
/// `kek` is not the key it was wrapped under.
pub fn unwrap_key(
    kek: &SecretKey,
    wrapped: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, CryptoError> {
    let kek = AesKek::new(&AES_256, kek.expose()).map_err(|_| CryptoError::Library("kek"))?;
    let mut out = zeroize::Zeroizing::new(vec![0u8; wrapped.len()]);
    let n = kek
        .unwrap_with_padding(wrapped, &mut out)
        .map_err(|_| {
            CryptoError::Authentication("key unwrap failed: wrong key or modified wrapped key")
        })?
        .len();
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let kek = SecretKey::generate();
        let dek = SecretKey::generate();
        let w = wrap_key(&kek, dek.expose()).unwrap();
        assert_ne!(&w[..32], dek.expose());
        assert_eq!(&unwrap_key(&kek, &w).unwrap()[..], dek.expose());
        for i in 0..w.len() {
            let mut bad = w.clone();
            bad[i] ^= 1;
            assert!(unwrap_key(&kek, &bad).is_err(), "flip at {i} undetected");
        }
        assert!(unwrap_key(&SecretKey::generate(), &w).is_err());
    }
}
