//! `LogFollower`: applies the event log to this instance's caches, in order, missing nothing.
//!
//! The follower keeps a position (the highest `seq` it has read) and reads what lies after
//! it. Positions are taken when an event is appended, not when it commits, so an event can
//! become readable after a later one (the commit-order pitfall): reading `seq > position`
//! alone would skip it for good. So every position the follower passes without an event (a
//! hole) stays under watch for [`HOLE_PATIENCE`] and is read again on every pass: an event
//! that commits late is applied when it appears; a hole left by a rolled-back append simply
//! expires. A notification for a position the follower has passed puts that position back
//! under watch ([`LogFollower::recheck`]), so even a commit later than the patience is applied
//! while notifications flow.
//!
//! A new follower starts [`HOLE_PATIENCE`] back in time (events older than that are
//! committed, or never will be) and re-applies what follows: invalidations are idempotent.
//! After a gap in following (a lost connection, a failover), [`LogFollower::resume`] goes on
//! from its position, unless retention has deleted events past it: then every cache is
//! flushed, since what was missed cannot be known.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::LogEntry;
use crate::ports::{Clock, EventLog, Invalidation, InvalidationHandler, StoreError};

/// How long a hole is watched for a late commit; also how far back a new follower starts.
pub const HOLE_PATIENCE: TimeDelta = TimeDelta::seconds(60);
/// Events read per query.
pub const PAGE: usize = 1000;
/// Holes watched at most; beyond this (a jump of the sequence far larger than any burst of
/// rolled-back appends) the follower flushes the caches instead of watching every position.
pub const MAX_HOLES: usize = 10_000;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Events read and applied.
    pub applied: usize,
    /// Whether the caches were flushed (a start behind retention, or too many holes).
    pub flushed: bool,
}

/// Follows an [`EventLog`] into an [`InvalidationHandler`]. Owned by one task: passes never
/// overlap.
pub struct LogFollower {
    log: Arc<dyn EventLog>,
    handler: Arc<dyn InvalidationHandler>,
    clock: Arc<dyn Clock>,
    /// The highest position read; `None` before the first pass.
    position: Option<i64>,
    /// Positions passed without an event, with the time they were first seen empty.
    holes: BTreeMap<i64, DateTime<Utc>>,
}

impl std::fmt::Debug for LogFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFollower")
            .field("position", &self.position)
            .field("holes", &self.holes.len())
            .finish_non_exhaustive()
    }
}

impl LogFollower {
    /// A follower that has not read anything yet.
    #[must_use]
    pub fn new(
        log: Arc<dyn EventLog>,
        handler: Arc<dyn InvalidationHandler>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            log,
            handler,
            clock,
            position: None,
            holes: BTreeMap::new(),
        }
    }

    /// The highest position read, if any.
    #[must_use]
    pub fn position(&self) -> Option<i64> {
        self.position
    }

    /// Positions under watch for a late commit.
    #[must_use]
    pub fn holes(&self) -> usize {
        self.holes.len()
    }

    /// Reads and applies everything new since the last pass (and any late event in a
    /// watched hole).
    ///
    /// # Errors
    /// [`StoreError`] when the log cannot be read; the position is kept, so the next pass
    /// reads from it again.
    pub async fn pass(&mut self) -> Result<Pass, StoreError> {
        let mut pass = Pass::default();
        let mut position = match self.position {
            Some(position) => position,
            None => {
                let start = self
                    .log
                    .position_at(self.clock.now() - HOLE_PATIENCE)
                    .await?;
                self.position = Some(start);
                start
            }
        };
        loop {
            let watched: Vec<i64> = self.holes.keys().copied().collect();
            let page = self.log.read(position, &watched, PAGE).await?;
            let now = self.clock.now();
            for entry in &page {
                if entry.seq <= position {
                    // A late commit in a watched hole.
                    self.holes.remove(&entry.seq);
                } else {
                    for hole in position.saturating_add(1)..entry.seq {
                        self.holes.insert(hole, now);
                        if self.holes.len() > MAX_HOLES {
                            break;
                        }
                    }
                    position = entry.seq;
                }
                self.apply(entry, now).await;
                pass.applied += 1;
            }
            self.position = Some(position);
            if self.holes.len() > MAX_HOLES {
                tracing::warn!(
                    holes = self.holes.len(),
                    "event log has more holes than can be watched; flushing the caches"
                );
                self.holes.clear();
                self.handler.flush().await;
                pass.flushed = true;
            }
            if page.len() < PAGE {
                break;
            }
        }
        let cutoff = self.clock.now() - HOLE_PATIENCE;
        self.holes.retain(|_, seen| *seen > cutoff);
        Ok(pass)
    }

    /// Continues after a gap in following (a reconnect, a failover): flushes the caches when
    /// retention has deleted events this follower had not read, or when the log no longer
    /// holds events it had read (restored, or failed over to a standby that never received
    /// them: its next positions would repeat ones already passed); then makes a pass.
    ///
    /// # Errors
    /// [`StoreError`] when the log cannot be read.
    pub async fn resume(&mut self) -> Result<Pass, StoreError> {
        let mut flushed = false;
        if let Some(position) = self.position {
            let bounds = self.log.bounds().await?;
            let restart = if bounds.newest.unwrap_or(0) < position {
                tracing::warn!(
                    position,
                    newest = bounds.newest,
                    "the event log holds less than this instance has read (restored, or a \
                     failover lost events); flushing the caches"
                );
                Some(bounds.newest.unwrap_or(0))
            } else if let Some(oldest) = bounds.oldest
                && oldest > position.saturating_add(1)
            {
                tracing::warn!(
                    position,
                    oldest,
                    "event log pruned past this instance's position; flushing the caches"
                );
                Some(oldest - 1)
            } else {
                None
            };
            if let Some(restart) = restart {
                self.handler.flush().await;
                self.holes.clear();
                self.position = Some(restart);
                flushed = true;
            }
        }
        let mut pass = self.pass().await?;
        pass.flushed |= flushed;
        Ok(pass)
    }

    /// Puts `seq` back under watch when this follower has already passed it: a notification
    /// announced it, so it may be an event that committed after its hole expired.
    pub fn recheck(&mut self, seq: i64) {
        if self.position.is_some_and(|position| seq <= position) {
            self.holes.entry(seq).or_insert_with(|| self.clock.now());
        }
    }

    async fn apply(&self, entry: &LogEntry, now: DateTime<Utc>) {
        let action = entry.action.map_or("unknown", |a| a.as_str());
        metrics::counter!("auth_events_applied_total", "action" => action).increment(1);
        #[expect(
            clippy::cast_precision_loss,
            reason = "lags are far below 2^52 microseconds"
        )]
        let lag = (now - entry.at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
        metrics::histogram!("auth_invalidation_lag_seconds").record(lag);
        self.handler.observe(entry).await;
        if let Some(invalidation) = &entry.invalidation {
            let kind = match invalidation {
                Invalidation::ApiKey(_) => "api_key",
                Invalidation::Session(_) => "session",
                Invalidation::Device(_) => "device",
                Invalidation::User(_) => "user",
            };
            metrics::counter!("auth_invalidations_received_total", "kind" => kind).increment(1);
            self.handler.invalidate(invalidation.clone()).await;
        }
    }
}
