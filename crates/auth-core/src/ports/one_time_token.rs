//! `OneTimeTokenStore`: the hashes of mailed one-time tokens, each used at most once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::model::{OutgoingMail, StoredToken, TokenHash, TokenPurpose, UserId};

/// One-time tokens by hash.
///
/// Implementations MUST:
/// - in [`issue`](Self::issue), in one atomic step: delete every other token of the same user
///   and purpose (a newer token kills the older ones), store the new one, and queue `mail` in
///   the outbox of the same store (the mail goes if and only if the token exists);
/// - in [`consume`](Self::consume), hand a token out at most once, even to concurrent callers
///   on any number of instances: the token is deleted by the call that returns it; an expired
///   token, or one of another purpose, is refused (an expired one is deleted too);
/// - delete a user's tokens with the user;
/// - classify errors as [`StoreError`] says.
#[async_trait]
pub trait OneTimeTokenStore: Send + Sync + 'static {
    /// Stores `token` in place of the user's older tokens of its purpose, and queues `mail`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (then neither the token nor the mail is stored).
    async fn issue(&self, token: &StoredToken, mail: &OutgoingMail) -> Result<(), StoreError>;

    /// Spends the token with hash `hash` if it is of `purpose` and not expired at `now`:
    /// its user, once.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn consume(
        &self,
        hash: &TokenHash,
        purpose: TokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, StoreError>;

    /// When the user's newest token of `purpose` was issued, if one is stored (for the
    /// one-mail-per-interval rule).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn last_issued(
        &self,
        user: UserId,
        purpose: TokenPurpose,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;
}
