//! `AesGcmCipher`: the [`DataCipher`] of data at rest (TOTP secrets), AES-256-GCM under
//! `AUTH_DATA_KEY` with aws-lc-rs (the provider rustls and jsonwebtoken already use).
//!
//! A sealed value is `1 || nonce (12 bytes, random) || ciphertext || tag (16 bytes)`; the
//! leading version byte leaves room for a key rotation. The caller's context (the user id) is
//! the associated data, so a value copied into another user's row does not open.

use auth_core::model::SealedSecret;
use auth_core::ports::{BoxError, DataCipher};
use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::{hkdf, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretBox};

const VERSION: u8 = 1;

/// A 256-bit data key. `Debug` never shows it.
pub struct DataKey(SecretBox<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

/// `AUTH_DATA_KEY` is not 32 bytes of standard base64.
#[derive(Debug, thiserror::Error)]
#[error("must be 32 bytes encoded in base64 (for example `openssl rand -base64 32`)")]
pub struct DataKeyError;

impl DataKey {
    /// Parses the base64 text of 32 bytes (standard alphabet, padding optional).
    ///
    /// # Errors
    /// [`DataKeyError`] for anything else.
    pub fn from_base64(text: &str) -> Result<Self, DataKeyError> {
        let trimmed = text.trim().trim_end_matches('=');
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(trimmed)
            .map_err(|_| DataKeyError)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| DataKeyError)?;
        Ok(Self(SecretBox::new(Box::new(key))))
    }

    /// A fresh random key (development without `AUTH_DATA_KEY`).
    ///
    /// # Errors
    /// The random source failed.
    pub fn generate() -> Result<Self, BoxError> {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| "random source failed")?;
        Ok(Self(SecretBox::new(Box::new(key))))
    }

    /// The key as base64, for an operator to keep (shown once, by the caller's choice).
    #[must_use]
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.expose_secret())
    }
}

/// AES-256-GCM with random nonces, and HMAC-SHA-256 fingerprints under a key derived from
/// the same data key (HKDF-SHA-256, its own label), so no key serves two algorithms.
pub struct AesGcmCipher(RandomizedNonceKey, hmac::Key);

/// The HKDF label of the fingerprint key.
const FINGERPRINT_LABEL: &[u8] = b"auth-service fingerprint v1";

impl std::fmt::Debug for AesGcmCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesGcmCipher([REDACTED])")
    }
}

impl AesGcmCipher {
    /// A cipher under `key`.
    ///
    /// # Errors
    /// The library refused the key (it never does for 32 bytes).
    pub fn new(key: &DataKey) -> Result<Self, BoxError> {
        let sealing = RandomizedNonceKey::new(&AES_256_GCM, key.0.expose_secret())
            .map_err(|_| "AES-256-GCM key refused")?;
        let fingerprinting: hmac::Key = hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
            .extract(key.0.expose_secret())
            .expand(&[FINGERPRINT_LABEL], hmac::HMAC_SHA256)
            .map_err(|_| "HKDF expansion refused")?
            .into();
        Ok(Self(sealing, fingerprinting))
    }
}

impl DataCipher for AesGcmCipher {
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<SealedSecret, BoxError> {
        let mut body = plaintext.to_vec();
        let nonce = self
            .0
            .seal_in_place_append_tag(Aad::from(context), &mut body)
            .map_err(|_| "AES-256-GCM sealing failed")?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + body.len());
        out.push(VERSION);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&body);
        Ok(SealedSecret::from_bytes(out))
    }

    fn open(&self, sealed: &SealedSecret, context: &[u8]) -> Result<Vec<u8>, BoxError> {
        let bytes = sealed.as_bytes();
        let Some((&VERSION, rest)) = bytes.split_first() else {
            return Err("sealed value of an unknown version".into());
        };
        let (nonce, body) = rest
            .split_at_checked(NONCE_LEN)
            .ok_or("sealed value too short")?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce")?;
        let mut body = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(context), &mut body)
            .map_err(|_| "sealed value does not open under this key and context")?;
        Ok(plain.to_vec())
    }

    fn fingerprint(&self, data: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.1, data).as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_bound_to_key_and_context() {
        let key = DataKey::generate().unwrap();
        let cipher = AesGcmCipher::new(&key).unwrap();
        let sealed = cipher.seal(b"secret bytes", b"user-1").unwrap();
        assert_eq!(sealed.as_bytes().len(), 1 + 12 + 12 + 16);
        assert!(!sealed.as_bytes().windows(12).any(|w| w == b"secret bytes"));
        assert_eq!(cipher.open(&sealed, b"user-1").unwrap(), b"secret bytes");
        assert!(cipher.open(&sealed, b"user-2").is_err());
        let again = cipher.seal(b"secret bytes", b"user-1").unwrap();
        assert_ne!(again, sealed, "fresh nonce per seal");
        let other = AesGcmCipher::new(&DataKey::generate().unwrap()).unwrap();
        assert!(other.open(&sealed, b"user-1").is_err());
        let round = DataKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(
            AesGcmCipher::new(&round)
                .unwrap()
                .open(&sealed, b"user-1")
                .unwrap(),
            b"secret bytes"
        );
        assert!(DataKey::from_base64("c2hvcnQ=").is_err());
        assert_eq!(format!("{key:?}"), "DataKey([REDACTED])");
    }

    #[test]
    fn fingerprints_are_stable_per_key_and_need_the_key() {
        let key = DataKey::generate().unwrap();
        let cipher = AesGcmCipher::new(&key).unwrap();
        let print = cipher.fingerprint(b"bob@example.com");
        assert_eq!(print, cipher.fingerprint(b"bob@example.com"));
        let same_key = AesGcmCipher::new(&DataKey::from_base64(&key.to_base64()).unwrap());
        assert_eq!(print, same_key.unwrap().fingerprint(b"bob@example.com"));
        assert_ne!(print, cipher.fingerprint(b"eve@example.com"));
        let other = AesGcmCipher::new(&DataKey::generate().unwrap()).unwrap();
        assert_ne!(print, other.fingerprint(b"bob@example.com"));
        // Neither a plain hash of the address nor an HMAC under the data key itself.
        use sha2::Digest as _;
        assert_ne!(
            print.as_slice(),
            sha2::Sha256::digest(b"bob@example.com").as_slice()
        );
        let direct = hmac::Key::new(hmac::HMAC_SHA256, key.0.expose_secret());
        assert_ne!(
            print.as_slice(),
            hmac::sign(&direct, b"bob@example.com").as_ref()
        );
    }
}
