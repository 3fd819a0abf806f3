//! In-memory `Pruner`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MemoryLoginAttemptStore, MemorySessionRepository};
use crate::ports::{PruneError, PruneReport, PrunedRows, Pruner, RetentionPolicy};

/// Deletes the events that happened before the given time from an in-memory event log and
/// returns how many: what [`MemoryPruner::with_events`] calls.
pub type EventPruneFn = dyn Fn(DateTime<Utc>) -> u64 + Send + Sync;

/// Retention over the in-memory stores. Each table is pruned in one step under its store's
/// lock, so an attempt or a rotation never sees half a deletion. Instances sharing the
/// stores must share one pruner: it runs one pass at a time and skips a call made while a
/// pass runs.
pub struct MemoryPruner {
    sessions: Arc<MemorySessionRepository>,
    attempts: Arc<MemoryLoginAttemptStore>,
    events: Option<Arc<EventPruneFn>>,
    running: AtomicBool,
}

impl std::fmt::Debug for MemoryPruner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPruner")
            .field("events", &self.events.is_some())
            .field("running", &self.running.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl MemoryPruner {
    /// A pruner of `sessions` (with their refresh tokens) and of the lockout counters in
    /// `attempts`. It prunes no events until given an event log with
    /// [`MemoryPruner::with_events`].
    #[must_use]
    pub fn new(
        sessions: Arc<MemorySessionRepository>,
        attempts: Arc<MemoryLoginAttemptStore>,
    ) -> Self {
        Self {
            sessions,
            attempts,
            events: None,
            running: AtomicBool::new(false),
        }
    }

    /// Also prunes the in-memory event log: `prune_events(cutoff)` must delete every event
    /// whose `at` is before `cutoff` and return how many it deleted.
    #[must_use]
    pub fn with_events(self, prune_events: Arc<EventPruneFn>) -> Self {
        Self {
            events: Some(prune_events),
            ..self
        }
    }
}

/// Clears the running flag when the pass ends, however it ends.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[async_trait]
impl Pruner for MemoryPruner {
    async fn prune(
        &self,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
    ) -> Result<PruneReport, PruneError> {
        if self
            .running
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Ok(PruneReport::Skipped);
        }
        let _running = Running(&self.running);
        let (sessions, refresh_tokens) = self
            .sessions
            .prune_ended_before(policy.sessions_ended_before(now));
        let login_attempts = self.attempts.prune(policy.lockout_windows_before(now), now);
        // One-time tokens (email verification, password reset) go here once they exist:
        // deleted as soon as they are used or expired.
        let events = self
            .events
            .as_ref()
            .map_or(0, |prune_events| prune_events(policy.events_before(now)));
        Ok(PruneReport::Completed(PrunedRows {
            sessions,
            refresh_tokens,
            login_attempts,
            events,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::Duration;

    use super::*;
    use crate::memory::MemoryUserRepository;

    fn pruner() -> MemoryPruner {
        let users = Arc::new(MemoryUserRepository::new());
        MemoryPruner::new(
            Arc::new(MemorySessionRepository::new(users)),
            Arc::new(MemoryLoginAttemptStore::new()),
        )
    }

    /// Without an event log no event is counted; with one, it is asked for the events
    /// before `now - event_retention` and its count is reported.
    #[tokio::test]
    async fn events_are_pruned_through_the_given_log() {
        let now = Utc::now();
        let policy = RetentionPolicy::default();
        let report = pruner().prune(&policy, now).await.unwrap();
        assert_eq!(report, PruneReport::Completed(PrunedRows::default()));

        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = {
            let asked = asked.clone();
            move |cutoff| {
                asked.lock().unwrap().push(cutoff);
                7
            }
        };
        let report = pruner()
            .with_events(Arc::new(log))
            .prune(&policy, now)
            .await
            .unwrap();
        assert_eq!(report.deleted().events, 7);
        assert_eq!(*asked.lock().unwrap(), vec![now - Duration::days(90)]);
    }

    /// A call made while a pass runs is skipped and deletes nothing; the next one runs.
    #[tokio::test]
    async fn a_pass_during_a_pass_is_skipped() {
        let pruner = pruner();
        pruner.running.store(true, Ordering::Release);
        let policy = RetentionPolicy::default();
        assert_eq!(
            pruner.prune(&policy, Utc::now()).await.unwrap(),
            PruneReport::Skipped
        );
        pruner.running.store(false, Ordering::Release);
        assert!(matches!(
            pruner.prune(&policy, Utc::now()).await.unwrap(),
            PruneReport::Completed(_)
        ));
        assert!(
            !pruner.running.load(Ordering::Acquire),
            "cleared after a pass"
        );
    }
}
