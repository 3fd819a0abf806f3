//! `BcryptHasher`: bcrypt on a bounded blocking pool.
//!
//! bcrypt reads at most 72 bytes of input. Passwords up to 72 bytes are hashed as plain,
//! standard bcrypt (`$2b$…`), so hashes imported from other systems verify as they are.
//! Longer passwords are first reduced with SHA-256 (base64, 44 bytes) and stored with the
//! scheme marker `$bcrypt-sha256$v=1` in front of the bcrypt string, so every byte counts
//! and the scheme can evolve without breaking stored hashes.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use auth_core::model::{Password, PasswordHash};
use auth_core::ports::{HashError, PasswordCheck, PasswordHasher};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Marker of the pre-hashed scheme for passwords over 72 bytes.
const PREHASH_PREFIX: &str = "$bcrypt-sha256$v=1";
/// bcrypt's input limit in bytes.
const BCRYPT_MAX_BYTES: usize = 72;

/// Hashes with bcrypt at a configured cost, at most `permits` at a time.
#[derive(Clone)]
pub struct BcryptHasher {
    cost: u32,
    permits: Arc<Semaphore>,
    dummy: Arc<str>,
    /// How long one verification took when measured at start.
    verify_time: std::time::Duration,
}

impl std::fmt::Debug for BcryptHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BcryptHasher")
            .field("cost", &self.cost)
            .field("available_permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

/// The input bcrypt sees for `password`, and whether the pre-hash scheme applies.
fn bcrypt_input(password: &str, prehash: bool) -> SecretString {
    if prehash {
        SecretString::from(STANDARD.encode(Sha256::digest(password.as_bytes())))
    } else {
        SecretString::from(password)
    }
}

/// The cost recorded in a bcrypt string such as `$2b$12$…`.
fn cost_of(bcrypt_hash: &str) -> Option<u32> {
    bcrypt_hash.split('$').nth(2)?.parse().ok()
}

fn hash_blocking(password: &str, cost: u32) -> Result<String, bcrypt::BcryptError> {
    let prehash = password.len() > BCRYPT_MAX_BYTES;
    let input = bcrypt_input(password, prehash);
    // At most 72 bytes reach bcrypt here (a 72-byte input loses only its C terminator).
    let hashed = bcrypt::hash(input.expose_secret(), cost)?;
    Ok(if prehash {
        format!("{PREHASH_PREFIX}{hashed}")
    } else {
        hashed
    })
}

fn verify_blocking(password: &str, stored: &str, cost: u32) -> PasswordCheck {
    let (prehash, bcrypt_hash) = match stored.strip_prefix(PREHASH_PREFIX) {
        Some(rest) => (true, rest),
        None => (false, stored),
    };
    // A password of over 72 bytes can only match a pre-hashed entry; against a plain entry it
    // is refused rather than compared on a truncated prefix. bcrypt runs either way (on the
    // pre-hash, which cannot match a plain entry's input), so the answer takes as long as any
    // other and reveals nothing about the stored hash's scheme.
    let long = password.len() > BCRYPT_MAX_BYTES;
    let verified = bcrypt::verify(
        bcrypt_input(password, prehash || long).expose_secret(),
        bcrypt_hash,
    )
    .unwrap_or(false);
    let matches = verified && (prehash || !long);
    PasswordCheck {
        matches,
        needs_rehash: matches && cost_of(bcrypt_hash) != Some(cost),
    }
}

impl BcryptHasher {
    /// A hasher at `cost` (4..=31) running at most `concurrency` hashes at once.
    ///
    /// Computes the dummy hash used for unknown users, so it costs one bcrypt at start.
    ///
    /// # Errors
    /// When the cost is out of range.
    pub fn new(cost: u32, concurrency: usize) -> Result<Self, HashError> {
        let dummy = hash_blocking("dummy password for unknown users", cost)
            .map_err(|e| HashError(Box::new(e)))?;
        // Verifications, timed, for `delay_like_verify`: bcrypt's time depends only on the
        // cost; the median of three damps a sample taken while the machine was busy.
        let mut samples: Vec<std::time::Duration> = (0..3)
            .map(|_| {
                let started = std::time::Instant::now();
                let _ = verify_blocking("timing sample", &dummy, cost);
                started.elapsed()
            })
            .collect();
        samples.sort();
        let verify_time = samples[1];
        Ok(Self {
            cost,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: dummy.into(),
            verify_time,
        })
    }

    /// The configured cost.
    #[must_use]
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Runs one bcrypt job on the blocking pool, at most `concurrency` at a time.
    /// Records `auth_bcrypt_queue_seconds` (waiting for a slot: saturation shows here first)
    /// and `auth_bcrypt_duration_seconds` (the job itself), both labelled with `op`.
    async fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let queued = Instant::now();
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError(Box::new(e)))?;
        metrics::histogram!("auth_bcrypt_queue_seconds", "op" => op).record(queued.elapsed());
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let out = span.in_scope(job);
            metrics::histogram!("auth_bcrypt_duration_seconds", "op" => op)
                .record(started.elapsed());
            out
        })
        .await
        .map_err(|e| HashError(Box::new(e)))
    }
}

#[async_trait]
impl PasswordHasher for BcryptHasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        let plain = SecretString::from(password.expose());
        let cost = self.cost;
        let hashed = self
            .run("hash", move || hash_blocking(plain.expose_secret(), cost))
            .await?
            .map_err(|e| HashError(Box::new(e)))?;
        Ok(PasswordHash::new(hashed))
    }

    async fn verify(
        &self,
        password: &Password,
        hash: Option<&PasswordHash>,
    ) -> Result<PasswordCheck, HashError> {
        let plain = SecretString::from(password.expose());
        let (stored, known) = match hash {
            Some(h) => (Arc::<str>::from(h.as_str()), true),
            None => (self.dummy.clone(), false),
        };
        let cost = self.cost;
        let (check, took) = self
            .run("verify", move || {
                let started = Instant::now();
                let check = verify_blocking(plain.expose_secret(), &stored, cost);
                (check, started.elapsed())
            })
            .await?;
        // A hash of a lower cost (imported, not yet re-hashed at a login) verifies faster than
        // the dummy hash an unknown email is checked against: pad every check to the time of
        // one at the configured cost, so the answer's timing does not tell them apart.
        if let Some(rest) = self.verify_time.checked_sub(took) {
            tokio::time::sleep(rest).await;
        }
        Ok(if known {
            check
        } else {
            PasswordCheck {
                matches: false,
                needs_rehash: false,
            }
        })
    }

    fn recognises(&self, hash: &PasswordHash) -> bool {
        let bcrypt_part = hash
            .as_str()
            .strip_prefix(PREHASH_PREFIX)
            .unwrap_or(hash.as_str());
        bcrypt_part
            .parse::<bcrypt::HashParts>()
            .is_ok_and(|parts| (4..=31).contains(&parts.get_cost()))
    }

    async fn delay_like_verify(&self) {
        tokio::time::sleep(self.verify_time).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::presented(s).unwrap()
    }

    /// An imported hash of a lower cost takes at least as long to check as the dummy hash of
    /// an unknown email (the check is padded; a lower bound, so the test cannot flake).
    #[tokio::test]
    async fn a_cheaper_stored_hash_takes_as_long_as_the_dummy() {
        let h = BcryptHasher::new(8, 1).unwrap();
        let cheap = PasswordHash::new(bcrypt::hash("imported password", 4).unwrap());
        let started = Instant::now();
        let check = h
            .verify(&pw("imported password"), Some(&cheap))
            .await
            .unwrap();
        assert!(check.matches && check.needs_rehash);
        assert!(
            started.elapsed() >= h.verify_time,
            "{:?} < {:?}",
            started.elapsed(),
            h.verify_time
        );
    }

    #[test]
    fn recognises_bcrypt_formats_only() {
        let h = BcryptHasher::new(4, 1).unwrap();
        let ok = bcrypt::hash_with_result("x", 4).unwrap();
        for version in [
            bcrypt::Version::TwoA,
            bcrypt::Version::TwoB,
            bcrypt::Version::TwoY,
        ] {
            assert!(h.recognises(&PasswordHash::new(ok.format_for_version(version))));
        }
        for bad in [
            "",
            "plaintext",
            "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
            "$2b$04$short",
        ] {
            assert!(!h.recognises(&PasswordHash::new(bad.into())), "{bad}");
        }
    }

    #[tokio::test]
    async fn verifies_and_rejects() {
        let h = BcryptHasher::new(4, 2).unwrap();
        let hash = h.hash(&pw("correct horse")).await.unwrap();
        assert!(hash.as_str().starts_with("$2b$04$"));
        assert!(
            h.verify(&pw("correct horse"), Some(&hash))
                .await
                .unwrap()
                .matches
        );
        assert!(
            !h.verify(&pw("correct horsE"), Some(&hash))
                .await
                .unwrap()
                .matches
        );
        assert!(!h.verify(&pw("correct horse"), None).await.unwrap().matches);
        let garbage = PasswordHash::new("not a hash".into());
        assert!(!h.verify(&pw("x"), Some(&garbage)).await.unwrap().matches);
    }

    #[tokio::test]
    async fn every_byte_of_a_long_password_counts() {
        let h = BcryptHasher::new(4, 2).unwrap();
        let base = "a".repeat(100);
        let hash = h.hash(&pw(&base)).await.unwrap();
        assert!(hash.as_str().starts_with(PREHASH_PREFIX));
        assert!(h.verify(&pw(&base), Some(&hash)).await.unwrap().matches);
        // Differs only after byte 72: plain bcrypt would accept it.
        let other = format!("{}b", "a".repeat(99));
        assert!(!h.verify(&pw(&other), Some(&hash)).await.unwrap().matches);
        // A 73+ byte password never matches a plain hash of its 72-byte prefix.
        let plain72 = h.hash(&pw(&"a".repeat(72))).await.unwrap();
        assert!(!h.verify(&pw(&base), Some(&plain72)).await.unwrap().matches);
    }

    #[tokio::test]
    async fn reports_rehash_when_cost_changes_and_accepts_foreign_bcrypt() {
        let old = BcryptHasher::new(4, 1).unwrap();
        let new = BcryptHasher::new(5, 1).unwrap();
        let hash = old.hash(&pw("long enough")).await.unwrap();
        let check = new.verify(&pw("long enough"), Some(&hash)).await.unwrap();
        assert!(check.matches && check.needs_rehash);
        assert!(
            !old.verify(&pw("long enough"), Some(&hash))
                .await
                .unwrap()
                .needs_rehash
        );
        // A $2y$ hash as written by PHP and other systems.
        let foreign = bcrypt::hash_with_result("imported-pass", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let check = old
            .verify(&pw("imported-pass"), Some(&PasswordHash::new(foreign)))
            .await
            .unwrap();
        assert!(check.matches);
    }
}
