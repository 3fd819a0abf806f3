//! `OneTimeTokenStore`: the hashes of mailed one-time tokens, each used at most once, and the
//! changes they authorise (a verified address, a new address, a new password).

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::StoreError;
use crate::model::{
    Email, OutgoingMail, PasswordHash, ResetRequest, ResetRequestId, SessionId, StoredToken,
    TokenHash, TokenPurpose, UserId,
};

/// What [`OneTimeTokenStore::fulfil_reset_request`] did (for logs and metrics: the request
/// was answered long before, the same way whatever this is).
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
/// - in [`issue`](Self::issue) and [`fulfil_reset_request`](Self::fulfil_reset_request), in
///   one atomic step: delete every other token of the same user and purpose (a newer token kills
///   the older ones), store the new one, and queue `mail` in the outbox of the same store
///   (the mail goes if and only if the token exists);
/// - spend a token at most once, even for concurrent callers on any number of instances:
///   the call that uses it deletes it, in the same atomic step as the change it authorises;
///   an expired token, or one of another purpose, authorises nothing (an expired one is
///   deleted);
/// - append `user.password_reset_requested` in the step that stores a
///   [`TokenPurpose::PasswordReset`] token;
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

    /// Queues a password-reset request for `email`, whatever the address: one durable write,
    /// the same for every address, so that the request's answer (given after this) takes the
    /// same time whether or not an account has it. The mail worker handles it with
    /// [`claim_reset_requests`](Self::claim_reset_requests) and
    /// [`fulfil_reset_request`](Self::fulfil_reset_request).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (nothing is queued).
    async fn request_reset(&self, email: &Email, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// At most `limit` queued requests, oldest first, each hidden from other callers until
    /// `now + lease` (a worker that dies leaves them to another: handled at least once).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn claim_reset_requests(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ResetRequest>, StoreError>;

    /// Handles request `request` in one atomic step: deletes it and, if an account has the
    /// address `token.email` (normalised) and its newest token of the purpose was issued at
    /// least `min_interval` before `token.created_at`, issues `token` for it as
    /// [`issue`](Self::issue) does, with `mail` going to the account's address as stored.
    /// `None` when the request is gone (another worker handled it).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (then nothing changed: the request waits).
    async fn fulfil_reset_request(
        &self,
        request: ResetRequestId,
        token: &StoredToken,
        mail: &OutgoingMail,
        min_interval: Duration,
    ) -> Result<Option<AddressIssue>, StoreError>;

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
