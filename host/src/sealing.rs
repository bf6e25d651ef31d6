//! Sealing credentials at rest with AES-256-GCM: org connections' and
//! run-time MCP servers' `env` and `headers`.
//!
//! The key comes from an environment variable, never from the database it
//! protects. Each secret gets a fresh random nonce and is bound to what it
//! belongs to (a connection id, a server's owner and name) as associated
//! data, so a sealed value copied onto another row does not open. Sealed form: version byte, 12-byte nonce, ciphertext
//! with tag; the version byte leaves room for key rotation.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "the connection key must be 64 hex digits (32 bytes), e.g. from `openssl rand -hex 32`"
    )]
    BadKey,
    #[error("stored credentials do not open with this key")]
    Unreadable,
}

#[derive(Clone)]
pub struct Sealer(Aes256Gcm);

impl Sealer {
    pub fn from_hex(hex: &str) -> Result<Sealer, CryptoError> {
        let hex = hex.trim().as_bytes();
        if hex.len() != 64 {
            return Err(CryptoError::BadKey);
        }
        let mut key = [0u8; 32];
        for (byte, pair) in key.iter_mut().zip(hex.chunks(2)) {
            let text = std::str::from_utf8(pair).map_err(|_| CryptoError::BadKey)?;
            *byte = u8::from_str_radix(text, 16).map_err(|_| CryptoError::BadKey)?;
        }
        Ok(Sealer(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key))))
    }

    pub fn seal(&self, plaintext: &[u8], bound_to: &str) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext,
            aad: bound_to.as_bytes(),
        };
        // Encryption only fails for inputs beyond GCM's ~64 GiB limit.
        let ciphertext = self.0.encrypt(&nonce, payload).unwrap_or_default();
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    pub fn open(&self, sealed: &[u8], bound_to: &str) -> Result<Vec<u8>, CryptoError> {
        let (version, rest) = sealed.split_first().ok_or(CryptoError::Unreadable)?;
        if *version != VERSION || rest.len() < NONCE_LEN {
            return Err(CryptoError::Unreadable);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: bound_to.as_bytes(),
        };
        self.0
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| CryptoError::Unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn seals_and_opens_bound_to_one_connection() {
        let sealer = Sealer::from_hex(KEY).unwrap();
        let sealed = sealer.seal(b"Bearer s3cret", "conn-1");
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(sealer.open(&sealed, "conn-1").unwrap(), b"Bearer s3cret");
        assert!(sealer.open(&sealed, "conn-2").is_err());
        assert_ne!(
            sealed,
            sealer.seal(b"Bearer s3cret", "conn-1"),
            "fresh nonce"
        );
        let other = Sealer::from_hex(&KEY.replace("00", "ff")).unwrap();
        assert!(other.open(&sealed, "conn-1").is_err());
        assert!(sealer.open(&sealed[..5], "conn-1").is_err());
    }

    #[test]
    fn refuses_malformed_keys() {
        assert!(Sealer::from_hex("abcd").is_err());
        assert!(Sealer::from_hex(&"zz".repeat(32)).is_err());
        assert!(Sealer::from_hex(&"é".repeat(32)).is_err());
    }
}
