//! `PasswordHasher`: turns passwords into slow, salted hashes and checks them.

use async_trait::async_trait;

use super::BoxError;
use crate::model::{Password, PasswordHash};

/// Hashing failed (a bug or resource exhaustion, never a wrong password).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError(#[source] pub BoxError);

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCheck {
    /// The password matches the hash.
    pub matches: bool,
    /// The hash was made with other parameters than the configured ones: re-hash it now that
    /// the plaintext is at hand.
    pub needs_rehash: bool,
}

/// Hashes and verifies passwords.
///
/// Implementations MUST:
/// - use a deliberately slow, salted algorithm, and run it off the async executor (a
///   blocking pool) so that hashing never stalls other requests;
/// - count every byte of the password (no silent truncation);
/// - take about the same time whether `hash` is `Some` or `None`: with `None` (unknown
///   user) verify against a dummy hash of the configured cost and report no match, so timing
///   does not reveal whether an account exists;
/// - treat a malformed stored hash as a non-match, not an error.
#[async_trait]
pub trait PasswordHasher: Send + Sync + 'static {
    /// Hashes a new password with the configured parameters.
    ///
    /// # Errors
    /// [`HashError`] on an internal failure.
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError>;

    /// Checks `password` against `hash` (or against a dummy when `None`).
    ///
    /// # Errors
    /// [`HashError`] on an internal failure.
    async fn verify(
        &self,
        password: &Password,
        hash: Option<&PasswordHash>,
    ) -> Result<PasswordCheck, HashError>;

    /// True when `hash` is in a format this hasher verifies (for importing hashes made
    /// elsewhere): nothing is checked but the format.
    fn recognises(&self, hash: &PasswordHash) -> bool;

    /// Waits about as long as one `verify` takes, without doing the work (and without
    /// holding a CPU): answers that must not reveal that no verification happened (a locked
    /// account) take the same time as those that did.
    async fn delay_like_verify(&self);
}
