//! `OneTimeTokenStore`: the hashes of mailed one-time tokens, each used at most once, and the
//! changes they authorise (a verified address, a new address, a new password).

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::StoreError;
use crate::model::{
    OutgoingMail, PasswordHash, SessionId, StoredToken, TokenHash, TokenPurpose, UserId,
};

/// What [`OneTimeTokenStore::issue_for_address`] did. The caller answers the same whatever
/// it is (a password-reset request says nothing about the address); it is for logs and
/// metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressIssue {
    /// The token was stored and its mail queued.
    Issued,
    /// No account has this address: nothing was stored.
    UnknownAddress,
    /// The account's newest token of this purpose is younger than the minimum interval:
    /// nothing was stored.
    TooSoon,
}

/// What [`OneTimeTokenStore::confirm_address`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressConfirmation {
    /// The account's address is verified (`user.email_verified`).
    Verified(UserId),
    /// The account's address is now the token's, verified (`user.email_changed`); every
    /// other one-time token of the account is gone.
    Changed(UserId),
    /// No usable token: unknown, used, expired, superseded, of another purpose, or a
    /// verification token for an address the account no longer has. An unusable token found
    /// is deleted.
    Invalid,
    /// Another account took the new address meanwhile: nothing changed, the token is kept.
    Taken,
}

/// What [`OneTimeTokenStore::reset_password`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordResetDone {
    /// Whose password it was.
    pub user: UserId,
    /// The sessions it ended (each announced with a `session.ended` event).
    pub ended: Vec<SessionId>,
}

/// One-time tokens by hash, and the changes they authorise.
///
/// A token is stored with the address its mail went to. Implementations MUST:
/// - in [`issue`](Self::issue) and [`issue_for_address`](Self::issue_for_address), in one
///   atomic step: delete every other token of the same user and purpose (a newer token kills
///   the older ones), store the new one, and queue `mail` in the outbox of the same store
///   (the mail goes if and only if the token exists);
/// - spend a token at most once, even for concurrent callers on any number of instances:
///   the call that uses it deletes it, in the same atomic step as the change it authorises;
///   an expired token, or one of another purpose, authorises nothing (an expired one is
///   deleted);
/// - delete a user's tokens with the user, and all of them when the user's address changes;
/// - classify errors as [`StoreError`] says.
#[async_trait]
pub trait OneTimeTokenStore: Send + Sync + 'static {
    /// Stores `token` for `user` in place of the user's older tokens of its purpose, and
    /// queues `mail`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (then neither the token nor the mail is stored).
    async fn issue(
        &self,
        user: UserId,
        token: &StoredToken,
        mail: &OutgoingMail,
    ) -> Result<(), StoreError>;

    /// As [`issue`](Self::issue) for the account whose address is `token.email`
    /// (normalised), if there is one and its newest token of the purpose was issued at
    /// least `min_interval` before `token.created_at`. The mail goes to the account's
    /// address as stored. One atomic step whose cost does not depend on the outcome beyond
    /// the writes themselves (the same statements run either way), so that the answer's
    /// timing tells little about whether the address exists.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (then nothing is stored).
    async fn issue_for_address(
        &self,
        token: &StoredToken,
        mail: &OutgoingMail,
        min_interval: Duration,
    ) -> Result<AddressIssue, StoreError>;

    /// Spends the token with hash `hash` if it is of `purpose` and not expired at `now`:
    /// its user, once. (For purposes whose change is made elsewhere; the address and
    /// password changes use the methods below.)
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn consume(
        &self,
        hash: &TokenHash,
        purpose: TokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, StoreError>;

    /// Spends a [`TokenPurpose::VerifyEmail`] or [`TokenPurpose::ChangeEmail`] token and
    /// makes its change in the same atomic step: marks the account's address verified (only
    /// if it is still the token's address), or replaces the address with the token's
    /// (verified, unless another account has it: then [`AddressConfirmation::Taken`] and
    /// nothing changes), appending `user.email_verified` or `user.email_changed`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (then nothing changed and the token is kept).
    async fn confirm_address(
        &self,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<AddressConfirmation, StoreError>;

    /// Spends a [`TokenPurpose::PasswordReset`] token whose address is still the account's
    /// and, in the same atomic step: stores `new_hash` as the password, ends every live
    /// session of the account (a `session.ended` event each), clears the lockout counter of
    /// the account's address ([`crate::model::Email::attempt_key`]), and appends
    /// `user.password_reset`. `None` when the token is unusable (nothing changed).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (then nothing changed and the token is kept).
    async fn reset_password(
        &self,
        hash: &TokenHash,
        new_hash: &PasswordHash,
        now: DateTime<Utc>,
    ) -> Result<Option<PasswordResetDone>, StoreError>;

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
