//! `MfaRepository`: TOTP enrolments, recovery codes and login challenges; `DataCipher`: the
//! encryption of data at rest (TOTP secrets).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{BoxError, StoreError};
use crate::model::{SealedSecret, TokenHash, TotpEnrolment, UserId};

/// Authenticated encryption of small secrets kept at rest (AES-256-GCM under `AUTH_DATA_KEY`
/// in `auth-infra`), and keyed fingerprints under the same key.
///
/// Implementations MUST authenticate `context` with the data (so a sealed value copied to
/// another user's row does not open there), use a fresh nonce per call, and fail `open` for
/// anything they did not seal under the same key and context. Never log the plaintext.
pub trait DataCipher: Send + Sync + 'static {
    /// Encrypts `plaintext`, bound to `context`.
    ///
    /// # Errors
    /// The cipher failed (random source, resource exhaustion).
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<SealedSecret, BoxError>;

    /// Decrypts what [`seal`](Self::seal) made with the same context.
    ///
    /// # Errors
    /// Wrong key, wrong context or altered data.
    fn open(&self, sealed: &SealedSecret, context: &[u8]) -> Result<Vec<u8>, BoxError>;

    /// A keyed digest of `data` (the audit trail's fingerprint of an address): the same for
    /// the same data under the same key, and not computable without the key, so hashing a
    /// list of candidates does not reverse it. Implementations MUST derive its key from the
    /// data key rather than use the sealing key itself.
    fn fingerprint(&self, data: &[u8]) -> [u8; 32];
}

/// Stores the second factor of users.
///
/// Implementations MUST:
/// - keep at most one enrolment per user, pending or enabled, and never replace an enabled one
///   through [`begin`](Self::begin);
/// - make [`enable`](Self::enable), [`accept_step`](Self::accept_step),
///   [`use_recovery_code`](Self::use_recovery_code) and
///   [`spend_challenge`](Self::spend_challenge) atomic: of any number of concurrent calls that
///   could succeed together, exactly one does (a code, a recovery code and a challenge work
///   once);
/// - append `user.mfa_enabled` / `user.mfa_disabled` to the event log in the same atomic step as
///   `enable` / a `disable` that removed an enabled factor;
/// - forget everything of a user when the user is deleted;
/// - classify errors as [`StoreError`] says.
#[async_trait]
pub trait MfaRepository: Send + Sync + 'static {
    /// The user's enrolment, pending or enabled.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn find(&self, user: UserId) -> Result<Option<TotpEnrolment>, StoreError>;

    /// Stores a pending secret, replacing a pending one (and its accepted step). Returns
    /// `false`, changing nothing, when the user's factor is already enabled.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (an unknown user included).
    async fn begin(
        &self,
        user: UserId,
        secret: &SealedSecret,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Confirms a pending enrolment: enabled at `now`, `step` accepted, `recovery_codes` (hashes)
    /// replacing any earlier ones. Returns `false`, changing nothing, when there is no pending
    /// enrolment (none, or already enabled).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn enable(
        &self,
        user: UserId,
        step: i64,
        recovery_codes: &[TokenHash],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Accepts the code of time step `step` for an enabled factor: succeeds only when no code
    /// of this step or a later one was accepted.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn accept_step(&self, user: UserId, step: i64) -> Result<bool, StoreError>;

    /// Spends an unused recovery code of an enabled factor.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn use_recovery_code(
        &self,
        user: UserId,
        code: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Removes the user's enrolment (pending or enabled), recovery codes and login challenges.
    /// Returns whether an enabled factor was removed.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn disable(&self, user: UserId, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Stores a login challenge (the hash of an `mfa_token`) for `user` until `expires_at`, and
    /// drops the user's expired ones.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn create_challenge(
        &self,
        token: &TokenHash,
        user: UserId,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The user of a live (unspent, unexpired at `now`) challenge.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn find_challenge(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, StoreError>;

    /// Spends a live challenge; `false` when it is unknown, spent or expired.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn spend_challenge(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}
