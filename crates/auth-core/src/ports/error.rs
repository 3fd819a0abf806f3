//! The error every storage port shares: the store is unreachable, or it failed; and the one
//! way an error is printed with its causes.

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

/// Displays an error followed by its whole `source()` chain, `: `-separated (`store
/// unavailable: connection refused`): the one way every crate prints an error for a log line
/// or an operator. Never for a client: causes may name hosts, files or queries.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'a));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_prints_every_cause_in_order() {
        let io = std::io::Error::other("connection refused");
        let err = StoreError::unavailable(io);
        assert_eq!(
            ErrorChain(&err).to_string(),
            "store unavailable: connection refused"
        );
        let plain = std::fmt::Error;
        assert_eq!(ErrorChain(&plain).to_string(), plain.to_string());
    }
}
