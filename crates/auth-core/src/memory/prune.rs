//! In-memory `Pruner`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    MemoryApiKeyRepository, MemoryEventLog, MemoryLoginAttemptStore, MemoryMfaRepository,
    MemoryOneTimeTokenStore, MemorySessionRepository,
};
use crate::ports::{PruneError, PruneReport, PrunedRows, Pruner, RetentionPolicy};

/// Retention over the in-memory stores. Each table is pruned in one step under its store's
/// lock, so an attempt or a rotation never sees half a deletion. Instances sharing the
/// stores must share one pruner: it runs one pass at a time and skips a call made while a
/// pass runs. [`super::MemoryStore::new`] wires it to every store it prunes.
pub struct MemoryPruner {
    sessions: Arc<MemorySessionRepository>,
    attempts: Arc<MemoryLoginAttemptStore>,
    one_time_tokens: Option<Arc<MemoryOneTimeTokenStore>>,
    mfa: Option<Arc<MemoryMfaRepository>>,
    events: Option<Arc<MemoryEventLog>>,
    api_keys: Option<Arc<MemoryApiKeyRepository>>,
    running: AtomicBool,
}

impl std::fmt::Debug for MemoryPruner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPruner")
            .field("one_time_tokens", &self.one_time_tokens.is_some())
            .field("mfa", &self.mfa.is_some())
            .field("events", &self.events.is_some())
            .field("api_keys", &self.api_keys.is_some())
            .field("running", &self.running.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl MemoryPruner {
    /// A pruner of `sessions` (with their refresh tokens) and of the lockout counters in
    /// `attempts`. It prunes no one-time tokens, reset requests, login challenges or events
    /// until given their stores with [`MemoryPruner::with_one_time_tokens`],
    /// [`MemoryPruner::with_mfa`] and [`MemoryPruner::with_events`].
    #[must_use]
    pub fn new(
        sessions: Arc<MemorySessionRepository>,
        attempts: Arc<MemoryLoginAttemptStore>,
    ) -> Self {
        Self {
            sessions,
            attempts,
            one_time_tokens: None,
            mfa: None,
            events: None,
            api_keys: None,
            running: AtomicBool::new(false),
        }
    }

    /// Also prunes the expired one-time tokens of `tokens`, and its password-reset requests
    /// older than [`crate::ports::RESET_REQUEST_RETENTION`].
    #[must_use]
    pub fn with_one_time_tokens(self, tokens: Arc<MemoryOneTimeTokenStore>) -> Self {
        Self {
            one_time_tokens: Some(tokens),
            ..self
        }
    }

    /// Also prunes the expired login challenges of `mfa`.
    #[must_use]
    pub fn with_mfa(self, mfa: Arc<MemoryMfaRepository>) -> Self {
        Self {
            mfa: Some(mfa),
            ..self
        }
    }

    /// Also prunes the events of `log` older than the event retention.
    #[must_use]
    pub fn with_events(self, log: Arc<MemoryEventLog>) -> Self {
        Self {
            events: Some(log),
            ..self
        }
    }

    /// Also prunes the verification counts of `keys` older than 90 days.
    #[must_use]
    pub fn with_api_keys(self, keys: Arc<MemoryApiKeyRepository>) -> Self {
        Self {
            api_keys: Some(keys),
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
        let (one_time_tokens, password_reset_requests) =
            self.one_time_tokens.as_ref().map_or((0, 0), |tokens| {
                (
                    tokens.prune_expired(now),
                    tokens.prune_requests_before(policy.reset_requests_before(now)),
                )
            });
        let mfa_challenges = self
            .mfa
            .as_ref()
            .map_or(0, |mfa| mfa.prune_expired_challenges(now));
        let events = self
            .events
            .as_ref()
            .map_or(0, |log| log.prune_before(policy.events_before(now)));
        let api_key_usage = self
            .api_keys
            .as_ref()
            .map_or(0, |keys| keys.prune_usage_before(policy.usage_before(now)));
        Ok(PruneReport::Completed(PrunedRows {
            sessions,
            refresh_tokens,
            login_attempts,
            events,
            one_time_tokens,
            mfa_challenges,
            password_reset_requests,
            api_key_usage,
        }))
    }
}

#[cfg(test)]
mod tests {
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

    /// Without an event log no event is counted; with one, the events made before
    /// `now - event_retention` are deleted, the one at the cutoff and later ones are kept.
    #[tokio::test]
    async fn events_are_pruned_from_the_given_log() {
        let now = Utc::now();
        let policy = RetentionPolicy::default();
        let report = pruner().prune(&policy, now).await.unwrap();
        assert_eq!(report, PruneReport::Completed(PrunedRows::default()));

        let log = Arc::new(MemoryEventLog::new());
        let cutoff = now - Duration::days(90);
        let user = crate::model::UserId::generate();
        for at in [
            cutoff - Duration::days(1),
            cutoff - Duration::microseconds(1),
            cutoff,
            now,
        ] {
            log.append(vec![crate::model::NewEvent::password_changed(user, at)])
                .await;
        }
        let report = pruner()
            .with_events(log.clone())
            .prune(&policy, now)
            .await
            .unwrap();
        assert_eq!(report.deleted().events, 2);
        let kept: Vec<DateTime<Utc>> = log.events().iter().map(|(_, e)| e.at).collect();
        assert_eq!(kept, vec![cutoff, now]);
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
