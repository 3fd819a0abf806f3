//! `Pruner`: retention, the deletion of rows no rule needs any more, so that nothing the
//! service stores grows without bound.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::StoreError;

/// How long a password-reset request may wait for the mail worker before retention deletes
/// it: 1 hour after `requested_at`.
///
/// A mail worker handles a request within seconds of it being made (every `auth-server
/// serve` instance runs one, claiming requests every 2 seconds under a 5-minute lease); a
/// request still there an hour later was never handled, because no worker ran (an embedder
/// that runs none, every instance stopped) or every attempt failed. Its link would arrive
/// after the user has given up or asked again, and after a reset link of the default
/// lifetime (`AUTH_PASSWORD_RESET_TTL_SECONDS`, 1 hour) would have expired. So this bound
/// matters only while no worker handles the queue: it keeps a stream of requests nobody
/// mails from growing the table without bound. A worker that claimed a request before it
/// was deleted finds it gone and issues nothing.
pub const RESET_REQUEST_RETENTION: Duration = Duration::hours(1);

/// How long each kind of row is kept (`AUTH_RETENTION_DAYS`, `AUTH_EVENT_RETENTION_DAYS`,
/// and the lockout window `AUTH_LOCKOUT_WINDOW_SECONDS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// How long a session, with every refresh token it issued, is kept after it ended or
    /// expired (30 days).
    pub retention: Duration,
    /// How long an event is kept after it happened (90 days).
    pub event_retention: Duration,
    /// The lockout counting window (15 minutes): a counter whose window began longer ago,
    /// and whose lock (if any) has ended, is one the next attempt would start afresh anyway.
    pub lockout_window: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            retention: Duration::days(30),
            event_retention: Duration::days(90),
            lockout_window: Duration::minutes(15),
        }
    }
}

impl RetentionPolicy {
    /// Sessions that ended (the earlier of `revoked_at` and `expires_at`) before this are
    /// deleted at `now`.
    #[must_use]
    pub fn sessions_ended_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.retention
    }

    /// Events that happened before this are deleted at `now`.
    #[must_use]
    pub fn events_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.event_retention
    }

    /// Lockout counters whose window began before this, and whose lock is not running at
    /// `now`, are deleted at `now`.
    #[must_use]
    pub fn lockout_windows_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.lockout_window
    }

    /// API-key verification counts of hours that began before this are deleted at `now`
    /// ([`USAGE_RETENTION_DAYS`](crate::model::USAGE_RETENTION_DAYS)).
    #[must_use]
    pub fn usage_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - Duration::days(crate::model::USAGE_RETENTION_DAYS)
    }

    /// Password-reset requests made before this are deleted at `now`, handled or not
    /// ([`RESET_REQUEST_RETENTION`]).
    #[must_use]
    pub fn reset_requests_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - RESET_REQUEST_RETENTION
    }
}

/// Rows deleted by one pass, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedRows {
    /// Sessions.
    pub sessions: u64,
    /// Refresh-token hashes (of the deleted sessions).
    pub refresh_tokens: u64,
    /// Lockout counters.
    pub login_attempts: u64,
    /// Events.
    pub events: u64,
    /// One-time tokens (address verification, password reset, change of address) that
    /// expired.
    pub one_time_tokens: u64,
    /// MFA login challenges (the `mfa_token`s of the second login step) that expired.
    pub mfa_challenges: u64,
    /// Password-reset requests that no mail worker handled in time.
    pub password_reset_requests: u64,
    /// API-key verification counts (per key and hour) older than 90 days.
    pub api_key_usage: u64,
}

impl PrunedRows {
    /// Each table's name (as in the database and the metrics' `table` label) with its count.
    #[must_use]
    pub fn by_table(&self) -> [(&'static str, u64); 8] {
        [
            ("sessions", self.sessions),
            ("refresh_tokens", self.refresh_tokens),
            ("login_attempts", self.login_attempts),
            ("one_time_tokens", self.one_time_tokens),
            ("mfa_challenges", self.mfa_challenges),
            ("password_reset_requests", self.password_reset_requests),
            ("events", self.events),
            ("api_key_usage", self.api_key_usage),
        ]
    }

    /// Rows deleted in all.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.by_table().iter().map(|(_, n)| n).sum()
    }
}

/// What one call of [`Pruner::prune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneReport {
    /// The pass ran to its end and deleted these rows.
    Completed(PrunedRows),
    /// Another pass (of this or another instance sharing the store) was running: this one
    /// did nothing. The running pass deletes what this one would have.
    Skipped,
}

impl PruneReport {
    /// The rows deleted (none when skipped).
    #[must_use]
    pub fn deleted(&self) -> PrunedRows {
        match self {
            Self::Completed(rows) => *rows,
            Self::Skipped => PrunedRows::default(),
        }
    }
}

/// A pass that failed part-way. The batches it committed before the failure stay deleted
/// (each batch is its own transaction), so it reports them: a metric or an operator counting
/// deletions must not miss them.
#[derive(Debug, thiserror::Error)]
#[error("retention pass failed after deleting {} rows", deleted.total())]
pub struct PruneError {
    /// What was deleted before the failure.
    pub deleted: PrunedRows,
    /// Why the pass stopped.
    #[source]
    pub cause: StoreError,
}

impl From<StoreError> for PruneError {
    fn from(cause: StoreError) -> Self {
        Self {
            deleted: PrunedRows::default(),
            cause,
        }
    }
}

/// Deletes what the [`RetentionPolicy`] no longer keeps, for every instance sharing the store.
///
/// Implementations MUST:
/// - delete every session whose end, the earlier of `revoked_at` and `expires_at` (a session
///   never revoked ends at `expires_at`), is before `now - retention`, together with every
///   refresh-token hash it issued, spent or not, and count both; and never delete a session
///   that has not ended by then, however old its tokens are (a spent token is kept as long
///   as its session, so that its reuse is recognised);
/// - delete every lockout counter whose window began before `now - lockout_window` and
///   whose lock, if it has one, has ended (`locked_until <= now`): exactly the counters the
///   next attempt would restart at 1, so that deleting one never changes a lockout decision,
///   also when an attempt for that key runs at the same moment;
/// - delete every event whose `at` is before `now - event_retention`;
/// - delete every one-time token that has expired (`expires_at <= now`: refused from then
///   on), and every MFA login challenge that has expired (`expires_at <= now`), whoever it
///   belongs to; a used token or challenge is already gone, deleted when it was spent;
/// - delete every password-reset request made before `now` - [`RESET_REQUEST_RETENTION`],
///   claimed by a worker or not;
/// - delete every API-key verification count whose hour began before
///   [`RetentionPolicy::usage_before`];
/// - run at most one pass at a time across every instance sharing the store, answering
///   [`PruneReport::Skipped`] at once, having deleted nothing, while another runs;
/// - delete in small batches, each its own short atomic step, so that no lock is held long
///   and the live paths (login, refresh, verify) are never stalled behind a pass, however
///   large the backlog (an in-memory store, which holds what one process can, may take each
///   table in one step under its lock);
/// - report every row deleted, per table, also when the pass fails part-way
///   ([`PruneError::deleted`]);
/// - classify errors as [`StoreError`] says.
#[async_trait]
pub trait Pruner: Send + Sync + 'static {
    /// Runs one retention pass at `now`.
    ///
    /// # Errors
    /// [`PruneError`] when the store fails; what was deleted before stays deleted.
    async fn prune(
        &self,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
    ) -> Result<PruneReport, PruneError>;
}
