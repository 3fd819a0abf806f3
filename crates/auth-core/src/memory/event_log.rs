//! `MemoryEventLog`: the event log of the in-memory store, which also delivers each event's
//! invalidation to every instance sharing the store. Instances that share one log (and one
//! in-memory store) behave as separate instances over one database.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::lock;
use crate::audit;
use crate::model::{LogEntry, NewEvent, StoredEvent};
use crate::ports::{
    EventLog, EventQuery, EventScope, Invalidation, InvalidationBus, InvalidationHandler,
    LogBounds, StoreError,
};

#[derive(Default)]
struct Entries {
    /// The last position given.
    last: i64,
    /// Events in ascending position (appends happen under the lock: no holes, no reordering).
    events: VecDeque<(i64, NewEvent)>,
}

/// An in-process event log: appending stores the events and hands their invalidations to
/// every subscribed handler before returning.
#[derive(Default)]
pub struct MemoryEventLog {
    entries: Mutex<Entries>,
    handlers: Mutex<Vec<Arc<dyn InvalidationHandler>>>,
}

impl std::fmt::Debug for MemoryEventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryEventLog")
            .field("events", &lock(&self.entries).events.len())
            .field("handlers", &lock(&self.handlers).len())
            .finish()
    }
}

impl MemoryEventLog {
    /// An empty log with no subscribers.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a handler (one per instance).
    pub fn subscribe(&self, handler: Arc<dyn InvalidationHandler>) {
        lock(&self.handlers).push(handler);
    }

    /// Appends `events` in order, each stamped with the request that made it (or `system`
    /// outside one, see [`audit::stamp`]), then shows each to every subscribed handler and
    /// delivers their invalidations.
    pub(crate) async fn append(&self, events: Vec<NewEvent>) {
        let appended: Vec<LogEntry> = {
            let mut entries = lock(&self.entries);
            events
                .into_iter()
                .map(|mut event| {
                    audit::stamp(&mut event);
                    entries.last += 1;
                    let seq = entries.last;
                    let appended = entry(seq, &event);
                    entries.events.push_back((seq, event));
                    appended
                })
                .collect()
        };
        let handlers = lock(&self.handlers).clone();
        for appended in &appended {
            for handler in &handlers {
                handler.observe(appended).await;
            }
        }
        let invalidations: Vec<Invalidation> = appended
            .into_iter()
            .filter_map(|e| e.invalidation)
            .collect();
        self.deliver(&invalidations).await;
    }

    /// Hands `invalidations` to every subscribed handler, outside the locks.
    async fn deliver(&self, invalidations: &[Invalidation]) {
        let handlers = lock(&self.handlers).clone();
        for invalidation in invalidations {
            for handler in &handlers {
                handler.invalidate(invalidation.clone()).await;
            }
        }
    }

    /// Every event still held, oldest first (for tests and the audit trail).
    #[must_use]
    pub fn events(&self) -> Vec<(i64, NewEvent)> {
        lock(&self.entries).events.iter().cloned().collect()
    }

    /// Deletes the events made before `cutoff`, returning how many (retention). Events are
    /// appended in the order they are made, so these are the oldest; one written with an
    /// earlier time than an event before it (a store's tests do) goes too, as in Postgres.
    pub fn prune_before(&self, cutoff: DateTime<Utc>) -> u64 {
        let mut entries = lock(&self.entries);
        let before = entries.events.len();
        entries.events.retain(|(_, event)| event.at >= cutoff);
        (before - entries.events.len()) as u64
    }
}

fn entry(seq: i64, event: &NewEvent) -> LogEntry {
    LogEntry {
        seq,
        at: event.at,
        action: Some(event.action),
        invalidation: event.invalidation.clone(),
        organization_id: event.organization_id,
        details: event.details.clone(),
    }
}

fn selects(query: &EventQuery, seq: i64, event: &NewEvent) -> bool {
    seq > query.after
        && query
            .action
            .as_deref()
            .is_none_or(|action| action == event.action.as_str())
        && match query.scope {
            EventScope::Organization(org) => event.organization_id == Some(org),
            EventScope::User(user) => event.subject_user() == Some(user),
            EventScope::All => true,
        }
}

#[async_trait]
impl EventLog for MemoryEventLog {
    async fn read(
        &self,
        after: i64,
        also: &[i64],
        limit: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        Ok(lock(&self.entries)
            .events
            .iter()
            .filter(|(seq, _)| *seq > after || also.contains(seq))
            .take(limit)
            .map(|(seq, event)| entry(*seq, event))
            .collect())
    }

    async fn position_at(&self, at: DateTime<Utc>) -> Result<i64, StoreError> {
        Ok(lock(&self.entries)
            .events
            .iter()
            .take_while(|(_, event)| event.at <= at)
            .last()
            .map_or(0, |(seq, _)| *seq))
    }

    async fn bounds(&self) -> Result<LogBounds, StoreError> {
        let entries = lock(&self.entries);
        Ok(LogBounds {
            oldest: entries.events.front().map(|(seq, _)| *seq),
            newest: entries.events.back().map(|(seq, _)| *seq),
        })
    }

    async fn list(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(lock(&self.entries)
            .events
            .iter()
            .filter(|(seq, event)| selects(query, *seq, event))
            .take(query.limit)
            .map(|(seq, event)| StoredEvent::from_new(*seq, event))
            .collect())
    }
}

/// Where an in-memory repository records what it changes: the event log of the instances
/// that share its store (set with the repository's `recording_to`), or nowhere (a repository
/// used alone, whose service evicts its own cache).
///
/// An in-memory change cannot fail after it is made, so recording right after it, before the
/// repository call returns, is as atomic as Postgres's insert inside the transaction.
#[derive(Debug, Default, Clone)]
pub(crate) struct Recorder(Option<Arc<MemoryEventLog>>);

impl Recorder {
    /// Records into `log`.
    pub(crate) fn to(log: Arc<MemoryEventLog>) -> Self {
        Self(Some(log))
    }

    /// Appends `events` and delivers their invalidations.
    pub(crate) async fn record(&self, events: Vec<NewEvent>) {
        if let Some(log) = &self.0
            && !events.is_empty()
        {
            log.append(events).await;
        }
    }
}

#[async_trait]
impl InvalidationBus for MemoryEventLog {
    async fn publish(&self, event: Invalidation) -> Result<(), StoreError> {
        self.deliver(std::slice::from_ref(&event)).await;
        Ok(())
    }

    fn is_connected(&self) -> bool {
        true
    }
}
