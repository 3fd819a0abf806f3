//! `LoginAttemptStore`: failed-login counters for account lockout, shared by every instance.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::StoreError;
use crate::model::{FailedLogin, TokenHash};

/// Lockout thresholds (`AUTH_LOCKOUT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures within `window` that start a lock (5).
    pub threshold: u32,
    /// The counting window (15 min).
    pub window: Duration,
    /// How long a lock lasts from its start (15 min).
    pub duration: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            threshold: 5,
            window: Duration::minutes(15),
            duration: Duration::minutes(15),
        }
    }
}

/// The counter of one key after an attempt was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptState {
    /// Attempts counted in the current window, this one included.
    pub failures: u32,
    /// When the lock ends, if this attempt reached the threshold and started it.
    pub locked_until: Option<DateTime<Utc>>,
}

/// The answer to an attempt announced before its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The attempt is counted and may be checked. A check that succeeds must `reset` the
    /// key; one that fails leaves the count as it is.
    Admitted(AttemptState),
    /// The key is locked: no check may be made. Nothing was changed.
    Locked {
        /// When the lock ends.
        until: DateTime<Utc>,
    },
}

/// Counts attempts per key (the SHA-256 of a normalised email, so the store holds no email of
/// an account that may not exist) for account lockout.
///
/// An attempt is counted *before* its check, in the same atomic step that decides whether it
/// may be checked at all, and the count is undone by `reset` when the check succeeds. So of N
/// concurrent attempts for one key, at most `threshold` are admitted to a check, whatever N
/// and however many instances share the store: the lock decision never waits for a slow
/// check to be counted.
///
/// Implementations MUST:
/// - make `begin_attempt` one atomic read-modify-write across every instance sharing the
///   store: while a lock runs (`now < locked_until`) answer [`Admission::Locked`] and change
///   nothing; otherwise count the attempt (N concurrent admitted attempts add exactly N) and
///   answer [`Admission::Admitted`];
/// - start a new window (count 1) when the current one began more than `window` ago, or when
///   a lock has ended;
/// - start a lock of `duration` from `now` at the attempt that brings the count to
///   `threshold` (that attempt is still admitted, and reports `locked_until`), and never
///   extend or restart a lock that is running;
/// - answer `locked_until` from `check` only while the lock runs (`now < locked_until`);
/// - clear the key, lock included, on `reset`;
/// - make `record_failure` one atomic step that appends `user.login_failed` and, when the
///   failed attempt started a lock that still stands (the key's lock ends at the failure's
///   `locked_until`: no `reset` or new window since), `user.locked`, changing no counter;
/// - classify errors as [`StoreError`] says.
#[async_trait]
pub trait LoginAttemptStore: Send + Sync + 'static {
    /// When the key's lock ends, if it is locked at `now`.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn check(
        &self,
        key: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Counts one attempt at `now` under `policy`, unless the key is locked.
    ///
    /// # Errors
    /// [`StoreError`]; then nothing was counted.
    async fn begin_attempt(
        &self,
        key: &TokenHash,
        now: DateTime<Utc>,
        policy: &LockoutPolicy,
    ) -> Result<Admission, StoreError>;

    /// Records the failed check of an attempt `begin_attempt` admitted for `key` (the count
    /// was taken then): `user.login_failed`, and `user.locked` when that attempt locked the
    /// key and the lock still stands.
    ///
    /// # Errors
    /// [`StoreError`]; then nothing was recorded.
    async fn record_failure(
        &self,
        key: &TokenHash,
        failure: &FailedLogin,
    ) -> Result<(), StoreError>;

    /// Forgets the key (after a successful check).
    ///
    /// # Errors
    /// [`StoreError`].
    async fn reset(&self, key: &TokenHash) -> Result<(), StoreError>;
}
