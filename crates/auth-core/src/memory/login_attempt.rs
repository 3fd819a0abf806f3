//! In-memory `LoginAttemptStore`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::event_log::{MemoryEventLog, Recorder};
use super::lock;
use crate::model::{FailedLogin, NewEvent, TokenHash};
use crate::ports::{Admission, AttemptState, LockoutPolicy, LoginAttemptStore, StoreError};

/// The counter of one key.
#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    window_started_at: DateTime<Utc>,
    locked_until: Option<DateTime<Utc>>,
}

impl Entry {
    /// The state reported to callers.
    const fn state(self) -> AttemptState {
        AttemptState {
            failures: self.failures,
            locked_until: self.locked_until,
        }
    }
}

/// When a lock starting at `now` ends.
fn lock_end(now: DateTime<Utc>, policy: &LockoutPolicy) -> Result<DateTime<Utc>, StoreError> {
    now.checked_add_signed(policy.duration)
        .ok_or_else(|| StoreError::internal("lockout duration out of range"))
}

/// Counters in a map keyed by hash behind one lock, which makes every `begin_attempt` one
/// atomic read-modify-write. Rows are dropped by `reset`, and by retention
/// ([`MemoryPruner`](super::MemoryPruner)) once their window and lock are over.
#[derive(Debug, Default)]
pub struct MemoryLoginAttemptStore(Mutex<HashMap<TokenHash, Entry>>, Recorder);

impl MemoryLoginAttemptStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records failed logins and the locks they start in `log`, the event log of every
    /// instance sharing this store.
    #[must_use]
    pub fn recording_to(self, log: Arc<MemoryEventLog>) -> Self {
        Self(self.0, Recorder::to(log))
    }
}

impl MemoryLoginAttemptStore {
    /// Deletes the counters whose window began before `window_cutoff` and whose lock is not
    /// running at `now`; returns how many. Under the lock, so no attempt interleaves.
    /// Forgets the counter of `key`.
    pub(crate) fn clear(&self, key: &TokenHash) {
        lock(&self.0).remove(key);
    }

    pub(crate) fn prune(&self, window_cutoff: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
        let mut entries = lock(&self.0);
        let before = entries.len();
        entries.retain(|_, e| {
            e.window_started_at >= window_cutoff || e.locked_until.is_some_and(|until| now < until)
        });
        (before - entries.len()) as u64
    }
}

#[async_trait]
impl LoginAttemptStore for MemoryLoginAttemptStore {
    async fn check(
        &self,
        key: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(lock(&self.0)
            .get(key)
            .and_then(|e| e.locked_until)
            .filter(|until| now < *until))
    }

    async fn begin_attempt(
        &self,
        key: &TokenHash,
        now: DateTime<Utc>,
        policy: &LockoutPolicy,
    ) -> Result<Admission, StoreError> {
        let mut entries = lock(&self.0);
        let next = match entries.get(key).copied() {
            // A running lock: refused, and nothing changes (the lock is neither extended nor
            // restarted).
            Some(Entry {
                locked_until: Some(until),
                ..
            }) if now < until => return Ok(Admission::Locked { until }),
            // Within the window and never locked: one more attempt.
            Some(e) if e.locked_until.is_none() && now - e.window_started_at <= policy.window => {
                let failures = e.failures.saturating_add(1);
                Entry {
                    failures,
                    locked_until: if failures >= policy.threshold {
                        Some(lock_end(now, policy)?)
                    } else {
                        None
                    },
                    ..e
                }
            }
            // No counter, a window older than `window`, or a lock that has ended: a new
            // window, with this attempt as its first.
            _ => Entry {
                failures: 1,
                window_started_at: now,
                locked_until: if 1 >= policy.threshold {
                    Some(lock_end(now, policy)?)
                } else {
                    None
                },
            },
        };
        entries.insert(*key, next);
        Ok(Admission::Admitted(next.state()))
    }

    async fn record_failure(
        &self,
        key: &TokenHash,
        failure: &FailedLogin,
    ) -> Result<(), StoreError> {
        let mut events = vec![NewEvent::login_failed(failure)];
        // The lock this attempt started, unless a success or a new window has replaced it.
        if let Some(until) = failure.locked_until
            && lock(&self.0).get(key).and_then(|e| e.locked_until) == Some(until)
        {
            events.push(NewEvent::user_locked(failure, until));
        }
        self.1.record(events).await;
        Ok(())
    }

    async fn reset(&self, key: &TokenHash) -> Result<(), StoreError> {
        self.clear(key);
        Ok(())
    }
}
