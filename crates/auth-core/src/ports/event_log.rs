//! `EventLog`: the append-only, ordered record of every change worth knowing.
//!
//! One log, three uses: the source of cache invalidation between instances (each follows it
//! from the last position it applied, see [`crate::LogFollower`]), the audit trail, and the
//! revocation stream. Events are appended by the repositories, inside the atomic step that
//! makes the change they record (see their contracts): a change and its event are stored
//! together or not at all.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::model::{LogEntry, OrganizationId, StoredEvent, UserId};

/// Whose events a trail query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventScope {
    /// The events of an organization (those whose `organization_id` it is).
    Organization(OrganizationId),
    /// The events about an account (its target, or the `user_id` of its details).
    User(UserId),
    /// Every event (operators).
    All,
}

/// A page of the audit trail to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Whose events.
    pub scope: EventScope,
    /// Only events with `seq` greater than this.
    pub after: i64,
    /// At most this many.
    pub limit: usize,
    /// Only this action (its contract name), if set.
    pub action: Option<String>,
}

/// The positions a log holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogBounds {
    /// The lowest `seq` still held (older ones were deleted by retention).
    pub oldest: Option<i64>,
    /// The highest `seq` held.
    pub newest: Option<i64>,
}

/// Reads the event log.
///
/// Implementations MUST:
/// - give every appended event a `seq` greater than that of every event appended before it
///   (positions may have holes, and may become visible out of order: an event appended
///   earlier can become readable after a later one, as a transaction commits);
/// - make an event readable exactly when the change it records is (never before, never
///   without it);
/// - return from `read` the events with `seq > after` and those whose `seq` is in `also`, in
///   ascending `seq`, at most `limit`;
/// - delete events only through retention, oldest first;
/// - classify errors as [`StoreError`] says.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Events after position `after`, plus the ones at the positions of `also` (holes a
    /// follower still watches), in ascending `seq`, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn read(
        &self,
        after: i64,
        also: &[i64],
        limit: usize,
    ) -> Result<Vec<LogEntry>, StoreError>;

    /// A position from which following misses nothing appended at or after `at`: the
    /// highest `seq` of an event made at or before `at`, or 0.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn position_at(&self, at: DateTime<Utc>) -> Result<i64, StoreError>;

    /// The lowest and highest `seq` in the log: a follower whose position is below the
    /// oldest has lost events to retention; one whose position is above the newest follows a
    /// log that lost events it had read (a database restored, or a failover to a standby that
    /// had not received them).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn bounds(&self) -> Result<LogBounds, StoreError>;

    /// The events `query` selects, whole, in ascending `seq`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn list(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError>;
}
