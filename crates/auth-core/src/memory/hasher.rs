//! `FakeHasher`: a cheap, deterministic [`PasswordHasher`] for tests. **Not for production.**

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::model::{Password, PasswordHash};
use crate::ports::{HashError, PasswordCheck, PasswordHasher};

const PREFIX: &str = "$fake$";

/// A password hasher for tests and for embedders' tests: one SHA-256, no salt, no delay.
///
/// **Never use it in production.** It breaks the [`PasswordHasher`] contract on purpose where
/// the contract asks for cost: it is fast and unsalted, so a leaked hash falls to a guess in
/// microseconds, and equal passwords hash alike. What it keeps is what the rules depend on:
/// - a wrong password never matches, and a hash never equals its password;
/// - an unknown user (`None`) is checked against a dummy and never matches;
/// - a hash made with another `version` (the stand-in for bcrypt's cost) matches and reports
///   `needs_rehash`;
/// - a malformed hash is a non-match, not an error; `recognises` accepts only its own format
///   (`$fake$<version>$<hex>`).
///
/// It counts its verifications and its `delay_like_verify` calls, so a test can tell a
/// check that happened from one that was skipped.
#[derive(Debug, Default)]
pub struct FakeHasher {
    version: u8,
    verifications: AtomicUsize,
    delays: AtomicUsize,
}

impl FakeHasher {
    /// A hasher making version-1 hashes.
    #[must_use]
    pub fn new() -> Self {
        Self::with_version(1)
    }

    /// A hasher making hashes of `version`; hashes of any other version need a re-hash.
    #[must_use]
    pub fn with_version(version: u8) -> Self {
        Self {
            version,
            verifications: AtomicUsize::new(0),
            delays: AtomicUsize::new(0),
        }
    }

    /// The version this hasher makes.
    #[must_use]
    pub fn version(&self) -> u8 {
        self.version
    }

    /// How many times `verify` ran.
    #[must_use]
    pub fn verifications(&self) -> usize {
        self.verifications.load(Ordering::SeqCst)
    }

    /// How many times `delay_like_verify` ran.
    #[must_use]
    pub fn delays(&self) -> usize {
        self.delays.load(Ordering::SeqCst)
    }

    fn digest(version: u8, password: &str) -> String {
        let mut sha = Sha256::new();
        sha.update(b"auth-core fake hasher\0");
        sha.update([version]);
        sha.update(password.as_bytes());
        hex::encode(sha.finalize())
    }

    fn encode(version: u8, password: &str) -> PasswordHash {
        PasswordHash::new(format!(
            "{PREFIX}{version}${}",
            Self::digest(version, password)
        ))
    }

    /// `(version, hex digest)` of a hash in this hasher's format.
    fn parse(hash: &PasswordHash) -> Option<(u8, &str)> {
        let (version, digest) = hash.as_str().strip_prefix(PREFIX)?.split_once('$')?;
        let well_formed = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
        well_formed.then_some((version.parse().ok()?, digest))
    }
}

#[async_trait]
impl PasswordHasher for FakeHasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        Ok(Self::encode(self.version, password.expose()))
    }

    async fn verify(
        &self,
        password: &Password,
        hash: Option<&PasswordHash>,
    ) -> Result<PasswordCheck, HashError> {
        self.verifications.fetch_add(1, Ordering::SeqCst);
        let Some((version, stored)) = hash.and_then(Self::parse) else {
            // The work of a real check, against nothing.
            let _ = Self::digest(self.version, password.expose());
            return Ok(PasswordCheck {
                matches: false,
                needs_rehash: false,
            });
        };
        let presented = Self::digest(version, password.expose());
        let matches: bool = presented.as_bytes().ct_eq(stored.as_bytes()).into();
        Ok(PasswordCheck {
            matches,
            needs_rehash: matches && version != self.version,
        })
    }

    fn recognises(&self, hash: &PasswordHash) -> bool {
        Self::parse(hash).is_some()
    }

    async fn delay_like_verify(&self) {
        self.delays.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PasswordPolicy;

    fn pw(s: &str) -> Password {
        PasswordPolicy::default().new_password(s).unwrap()
    }

    #[tokio::test]
    async fn matches_only_the_right_password_and_never_stores_it() {
        let hasher = FakeHasher::new();
        let hash = hasher.hash(&pw("correct horse")).await.unwrap();
        assert_ne!(hash.as_str(), "correct horse");
        assert!(!hash.as_str().contains("correct horse"));
        assert!(hasher.recognises(&hash));
        let right = hasher
            .verify(&pw("correct horse"), Some(&hash))
            .await
            .unwrap();
        assert!(right.matches && !right.needs_rehash);
        let wrong = hasher
            .verify(&pw("correct horsE"), Some(&hash))
            .await
            .unwrap();
        assert!(!wrong.matches);
        let unknown = hasher.verify(&pw("correct horse"), None).await.unwrap();
        assert!(!unknown.matches);
        let plain = PasswordHash::new("correct horse".into());
        assert!(!hasher.recognises(&plain));
        assert!(
            !hasher
                .verify(&pw("correct horse"), Some(&plain))
                .await
                .unwrap()
                .matches
        );
        assert_eq!(hasher.verifications(), 4);
    }

    #[tokio::test]
    async fn another_version_matches_and_asks_for_a_rehash() {
        let old = FakeHasher::with_version(1)
            .hash(&pw("correct horse"))
            .await
            .unwrap();
        let hasher = FakeHasher::with_version(2);
        let check = hasher
            .verify(&pw("correct horse"), Some(&old))
            .await
            .unwrap();
        assert!(check.matches && check.needs_rehash);
        let new = hasher.hash(&pw("correct horse")).await.unwrap();
        assert_ne!(new, old);
        assert!(new.as_str().starts_with("$fake$2$"));
    }
}
