//! Secret values: 256-bit keys that zeroize on drop, random bytes from the
//! system CSPRNG, API tokens (generated once, stored only as a hash) and
//! passphrase-derived keys.

use std::fmt;
use std::num::NonZeroU32;

use base64::Engine as _;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::CryptoError;

/// A 256-bit secret key. Zeroized on drop; `Debug` never prints it. Its
/// bytes live in a heap cell of their own whose page is locked in memory
/// (`mlock`, so never written to swap) where the system allows: see
/// [`locked_pages`].
#[derive(PartialEq, Eq)]
pub struct SecretKey(Box<[u8; 32]>);

/// Pages locked for key bytes so far, and locks the system refused (e.g.
/// past `RLIMIT_MEMLOCK`). A page stays locked once locked: unlocking it
/// when one key is dropped would unlock every other key on that page.
static LOCKED: std::sync::Mutex<(std::collections::BTreeSet<usize>, u64)> =
    std::sync::Mutex::new((std::collections::BTreeSet::new(), 0));

/// (pages locked for key bytes, locks refused) in this process.
pub fn locked_pages() -> (usize, u64) {
    let l = LOCKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (l.0.len(), l.1)
}

/// Lock the page(s) under `cell` in memory, once per page.
fn lock_cell(cell: &[u8; 32]) {
    let page = region::page::size();
    let start = cell.as_ptr() as usize;
    let first = start / page;
    let last = (start + cell.len() - 1) / page;
    let mut l = LOCKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for p in first..=last {
        if l.0.contains(&p) {
            continue;
        }
        match region::lock((p * page) as *const u8, page) {
            Ok(guard) => {
                // Kept locked for the life of the process (see LOCKED).
                std::mem::forget(guard);
                l.0.insert(p);
            }
            Err(_) => l.1 += 1,
        }
    }
}

impl SecretKey {
    fn new_cell() -> Box<[u8; 32]> {
        let cell = Box::new([0u8; 32]);
        lock_cell(&cell);
        cell
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut cell = Self::new_cell();
        random_bytes(&mut cell[..]);
        Self(cell)
    }

    /// Take ownership of key bytes (the caller zeroizes its copy).
    pub fn from_bytes(mut bytes: [u8; 32]) -> Self {
        let mut cell = Self::new_cell();
        cell.copy_from_slice(&bytes);
        bytes.zeroize();
        Self(cell)
    }

    /// Copy key bytes from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != 32 {
            return Err(CryptoError::Malformed(format!(
                "key is {} bytes, expected 32",
                bytes.len()
            )));
        }
        let mut cell = Self::new_cell();
        cell.copy_from_slice(bytes);
        Ok(Self(cell))
    }

    /// The key bytes. Keep the borrow short.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Derive a key from a passphrase with PBKDF2-HMAC-SHA256 (600 000
    /// iterations, OWASP 2023) and a 16-byte random salt stored beside the
    /// data it protects.
    pub fn from_passphrase(passphrase: &[u8], salt: &[u8]) -> Self {
        let mut cell = Self::new_cell();
        aws_lc_rs::pbkdf2::derive(
            aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(600_000).expect("non-zero"),
            salt,
            passphrase,
            &mut cell[..],
        );
        Self(cell)
    }
}

impl Clone for SecretKey {
    fn clone(&self) -> Self {
        let mut cell = Self::new_cell();
        cell.copy_from_slice(&self.0[..]);
        Self(cell)
    }
}

impl Zeroize for SecretKey {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for SecretKey {}

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

/// A streaming SHA-256 (of data fed in pieces), e.g. of a disk's
/// plaintext as a copy reads it.
pub struct Sha256(aws_lc_rs::digest::Context);

impl Default for Sha256 {
    fn default() -> Self {
        Self(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }
}

impl Sha256 {
    /// Feed `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest, hex.
    pub fn finish_hex(self) -> String {
        hex::encode(self.0.finish())
    }
}

/// A streaming BLAKE3 (of data fed in pieces): the hash a copy job
/// verifies with, over the plaintext of the source and of the copy read
/// back. BLAKE3 because it hashes several 1 KiB pieces of each update at
/// once with the widest vector unit the CPU has (AVX-512 here: ~2.5x the
/// speed of SHA-256 with SHA-NI), and a copy hashes every byte twice.
#[derive(Default)]
pub struct Blake3(blake3::Hasher);

impl Blake3 {
    /// The algorithm's name, as [`Blake3::finish_tagged`] prefixes it.
    pub const TAG: &'static str = "blake3";

    /// Feed `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest (32 bytes) as `blake3:<64 hex digits>`: a stored or
    /// exchanged hash names its algorithm.
    pub fn finish_tagged(self) -> String {
        format!("{}:{}", Self::TAG, self.0.finalize().to_hex())
    }

    /// Whether `s` has the form [`Blake3::finish_tagged`] gives.
    pub fn is_tagged(s: &str) -> bool {
        s.strip_prefix(Self::TAG)
            .and_then(|r| r.strip_prefix(':'))
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

/// SHA-256 of `data`, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

/// HMAC-SHA-256 of `data` under `key`, hex.
pub fn hmac_sha256_hex(key: &SecretKey, data: &[u8]) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.expose());
    hex::encode(aws_lc_rs::hmac::sign(&k, data))
}

/// Whether `mac_hex` is the HMAC-SHA-256 of `data` under `key`, compared in
/// constant time.
pub fn hmac_sha256_verify(key: &SecretKey, data: &[u8], mac_hex: &str) -> bool {
    let Ok(mac) = hex::decode(mac_hex) else {
        return false;
    };
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.expose());
    aws_lc_rs::hmac::verify(&k, data, &mac).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bytes_are_locked_in_memory() {
        let k = SecretKey::generate();
        let (pages, refused) = locked_pages();
        assert!(
            pages + usize::try_from(refused).unwrap() >= 1,
            "no lock was even tried"
        );
        if refused == 0 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let kb: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmLck:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap();
            assert!(kb >= 4, "VmLck is {kb} kB with {pages} pages locked");
        }
        let c = k.clone();
        assert_eq!(c.expose(), k.expose());
    }

    #[test]
    fn tokens_are_long_random_and_hash_stably() {
        let a = new_token();
        let b = new_token();
        assert_ne!(*a, *b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert!(a.len() >= TOKEN_PREFIX.len() + 43);
        assert_ne!(hash_token(&a), hash_token(&b));
        assert!(!hash_token(&a).contains(&a[TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn blake3_matches_the_reference_vectors_in_pieces() {
        // BLAKE3 of "" and of "abc" (b3sum; the BLAKE3 paper's test vectors).
        let empty = Blake3::default().finish_tagged();
        assert_eq!(
            empty,
            "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert!(Blake3::is_tagged(&empty));
        let mut h = Blake3::default();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(
            h.finish_tagged(),
            "blake3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert!(!Blake3::is_tagged(
            "sha256:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        ));
        assert!(!Blake3::is_tagged("blake3:6437"));
        assert!(!Blake3::is_tagged(
            "blake3:zz37b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        ));
    }

    #[test]
    fn token_hash_is_hex_sha256_of_the_whole_token() {
        // FIPS 180-2, appendix B.1: SHA-256("abc").
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // The whole token, prefix included (from `printf %s ... | sha256sum`).
        assert_eq!(
            hash_token("coffer_k3Zy-token-under-test"),
            "e53b4f763f83f32bc1b1d341c44bf1eb74b15a12cef654be96e18d0f8144d633"
        );
    }

    /// Every way `key`'s bytes could show in text: decimal lists (what a
    /// derived `Debug` prints, `[171, 171, ...]`, one per line with `{:#?}`),
    /// hex in either case, with or without separators or `0x`, and base64
    /// (standard and URL-safe). Windows of 3 consecutive bytes, so a partial
    /// leak is caught too. The text is compared with all whitespace removed.
    fn leaks(text: &str, key: &[u8; 32]) -> Vec<String> {
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let lower = text.to_lowercase();
        let mut found = Vec::new();
        for w in key.windows(3) {
            let dec = w.iter().map(u8::to_string).collect::<Vec<_>>();
            let hex = w.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>();
            for (form, hay) in [
                (dec.join(","), &text),
                (dec.join(""), &text),
                (hex.join(""), &lower),
                (hex.join(","), &lower),
                (hex.join(":"), &lower),
                (format!("0x{}", hex.join(",0x")), &lower),
            ] {
                if hay.contains(&form) {
                    found.push(form);
                }
            }
        }
        for b64 in [STANDARD_NO_PAD.encode(key), URL_SAFE_NO_PAD.encode(key)] {
            let b64: Vec<char> = b64.chars().collect();
            for w in b64.windows(6) {
                let form: String = w.iter().collect();
                if text.contains(&form) {
                    found.push(form);
                }
            }
        }
        found
    }

    #[test]
    fn debug_shows_no_representation_of_the_key() {
        // The leak check itself: it finds what a derived Debug, hex and
        // base64 would print.
        let bytes = [0xab; 32];
        assert!(!leaks(&format!("SecretKey({bytes:?})"), &bytes).is_empty());
        assert!(!leaks(&format!("SecretKey({bytes:#?})"), &bytes).is_empty());
        assert!(!leaks(&hex::encode(bytes), &bytes).is_empty());
        assert!(!leaks(&format!("{:X?}", bytes), &bytes).is_empty());
        assert!(
            !leaks(
                &base64::engine::general_purpose::STANDARD.encode(bytes),
                &bytes
            )
            .is_empty()
        );

        let mut counting = [0u8; 32];
        for (i, b) in counting.iter_mut().enumerate() {
            *b = 100 + u8::try_from(i).unwrap();
        }
        let mut random = [0u8; 32];
        random_bytes(&mut random);
        for bytes in [[0xab; 32], counting, random] {
            let k = SecretKey::from_bytes(bytes);
            for shown in [format!("{k:?}"), format!("{k:#?}")] {
                let found = leaks(&shown, &bytes);
                assert!(
                    found.is_empty(),
                    "Debug shows the key as {found:?}: {shown}"
                );
                assert!(shown.contains("SecretKey"), "{shown}");
            }
        }
    }

    #[test]
    fn passphrase_derivation_is_pbkdf2_sha256_600k_and_depends_on_salt() {
        // From Python's hashlib.pbkdf2_hmac("sha256", passphrase, salt,
        // 600000): an independent implementation of the same function.
        let k = SecretKey::from_passphrase(b"correct horse battery staple", b"coffer-salt-0001");
        assert_eq!(
            hex::encode(k.expose()),
            "27078186cc58cdd45f331cc7ea7e99e9695793ca7e4c239f74d36fa9897ef52a"
        );
        let other =
            SecretKey::from_passphrase(b"correct horse battery staple", b"coffer-salt-0002");
        assert_ne!(k, other);
    }
}
