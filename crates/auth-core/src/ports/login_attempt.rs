//! `LoginAttemptStore`: failed-login counters for account lockout, shared by every instance.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::StoreError;
use crate::model::TokenHash;

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

/// The counter of one key after a recorded failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptState {
    /// Failures counted in the current window.
    pub failures: u32,
    /// When the lock ends, if the key is locked.
    pub locked_until: Option<DateTime<Utc>>,
}

/// Counts failed logins per key (the SHA-256 of a normalised email, so the store holds no
/// email of an account that may not exist).
///
/// Implementations MUST:
/// - make `record_failure` one atomic read-modify-write: N concurrent failures for one key
///   add exactly N (no lost update), across every instance sharing the store;
/// - start a new window (count 1) when the current one began more than `window` ago, or when
///   a lock has ended;
/// - start a lock of `duration` at the failure that brings the count to `threshold`, and
///   never extend or restart a lock that is running (failures while locked change nothing);
/// - answer `locked_until` from `check` only while the lock runs (`now < locked_until`);
/// - clear the key on `reset`;
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

    /// Counts one failure at `now` under `policy`.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn record_failure(
        &self,
        key: &TokenHash,
        now: DateTime<Utc>,
        policy: &LockoutPolicy,
    ) -> Result<AttemptState, StoreError>;

    /// Forgets the key (after a successful login).
    ///
    /// # Errors
    /// [`StoreError`].
    async fn reset(&self, key: &TokenHash) -> Result<(), StoreError>;
}
