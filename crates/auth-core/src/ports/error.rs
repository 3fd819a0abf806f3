//! The error every storage port shares: the store is unreachable, or it failed.

/// A boxed error with its cause chain, for the log only.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A storage failure that is not a rule of the domain.
///
/// Implementations MUST report "cannot reach the store right now" (pool exhausted or timed
/// out, connection refused or lost, the store shutting down) as [`StoreError::Unavailable`]:
/// callers answer it with 503 and `Retry-After`, and never cache it. Everything else
/// unexpected is [`StoreError::Internal`]. Neither variant's text is ever shown to a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached now; the same call may succeed later.
    #[error("store unavailable")]
    Unavailable(#[source] BoxError),
    /// The store answered with something unexpected.
    #[error("store failure")]
    Internal(#[source] BoxError),
}

impl StoreError {
    /// Wraps any error as [`StoreError::Unavailable`].
    pub fn unavailable(err: impl Into<BoxError>) -> Self {
        Self::Unavailable(err.into())
    }

    /// Wraps any error as [`StoreError::Internal`].
    pub fn internal(err: impl Into<BoxError>) -> Self {
        Self::Internal(err.into())
    }
}
