//! `SecretGenerator`: random bytes for tokens and secrets.

use super::BoxError;

/// The random source failed.
#[derive(Debug, thiserror::Error)]
#[error("random source failed")]
pub struct SecretError(#[source] pub BoxError);

/// Fills buffers with unpredictable bytes.
///
/// Implementations MUST draw from a cryptographically secure generator seeded by the
/// operating system (never a seeded or counter-based generator outside tests), and fail
/// rather than return weak bytes.
pub trait SecretGenerator: Send + Sync + 'static {
    /// Fills `dest` with random bytes.
    ///
    /// # Errors
    /// [`SecretError`] when the source is unavailable.
    fn fill(&self, dest: &mut [u8]) -> Result<(), SecretError>;
}
