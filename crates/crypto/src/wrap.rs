//! Key wrapping: AES-256 key wrap with padding (RFC 5649, "KWP"). Used for a
//! DEK under its KEK and for key material under the vault's root key. KWP is
//! deterministic and needs no nonce, so no nonce can ever repeat; its 64-bit
//! integrity check detects a modified or mis-keyed wrap.

use aws_lc_rs::key_wrap::{AES_128, AES_256, AesKek, KeyWrapPadded};

use crate::{CryptoError, SecretKey};

/// An AES KEK of 16 or 32 bytes (Coffer uses 32; 16 is for the
/// published test vectors).
fn kek_of(kek: &[u8]) -> Result<AesKek, CryptoError> {
    let cipher = match kek.len() {
        16 => &AES_128,
        32 => &AES_256,
        _ => return Err(CryptoError::Library("kek size")),
    };
    AesKek::new(cipher, kek).map_err(|_| CryptoError::Library("kek"))
}

fn kwp_wrap(kek: &[u8], key: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let kek = kek_of(kek)?;
    let mut out = vec![0u8; key.len() + 16];
    let n = kek
        .wrap_with_padding(key, &mut out)
        .map_err(|_| CryptoError::Library("wrap"))?
        .len();
    out.truncate(n);
    Ok(out)
}

fn kwp_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, CryptoError> {
    let kek = kek_of(kek)?;
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

/// Wrap `key` (any length from 1 byte) under `kek`.
pub fn wrap_key(kek: &SecretKey, key: &[u8]) -> Result<Vec<u8>, CryptoError> {
    kwp_wrap(kek.expose(), key)
}

/// Unwrap a key wrapped by [`wrap_key`]; fails if `wrapped` was modified or
/// `kek` is not the key it was wrapped under.
pub fn unwrap_key(
    kek: &SecretKey,
    wrapped: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, CryptoError> {
    kwp_unwrap(kek.expose(), wrapped)
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

    /// Wycheproof's AES-KWP vectors (RFC 5649) for the 128- and 256-bit
    /// KEKs: every valid vector wraps to exactly its ciphertext and
    /// unwraps back; every invalid ciphertext is refused. (Its 192-bit
    /// group is not run: aws-lc-rs has no AES-192 key wrap, and Coffer
    /// wraps only under AES-256.)
    #[test]
    fn wycheproof_aes_kwp_vectors() {
        use wycheproof::TestResult;
        use wycheproof::keywrap::{TestName, TestSet};
        let set = TestSet::load(TestName::AesKeyWrapWithPadding).unwrap();
        let (mut valid, mut invalid) = (0, 0);
        for g in set.test_groups.iter().filter(|g| g.key_size != 192) {
            for t in &g.tests {
                let id = t.tc_id;
                match t.result {
                    TestResult::Valid => {
                        assert_eq!(kwp_wrap(&t.key, &t.pt).unwrap(), &t.ct[..], "tc {id}");
                        assert_eq!(
                            &kwp_unwrap(&t.key, &t.ct).unwrap()[..],
                            &t.pt[..],
                            "tc {id}"
                        );
                        valid += 1;
                    }
                    TestResult::Invalid => {
                        assert!(
                            kwp_unwrap(&t.key, &t.ct).is_err(),
                            "tc {id} ({}) unwrapped",
                            t.comment
                        );
                        invalid += 1;
                    }
                    TestResult::Acceptable => {}
                }
            }
        }
        assert!(
            valid >= 40 && invalid >= 100,
            "{valid} valid, {invalid} invalid vectors run"
        );
    }
}
