//! `LocalInvalidationBus`: delivers invalidations to handlers in this process. Instances that
//! share one bus (and one in-memory store) behave as separate instances over one database.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::lock;
use crate::ports::{Invalidation, InvalidationBus, InvalidationHandler, StoreError};

/// An in-process bus: `publish` calls every subscribed handler before returning.
#[derive(Default)]
pub struct LocalInvalidationBus {
    handlers: Mutex<Vec<Arc<dyn InvalidationHandler>>>,
}

impl std::fmt::Debug for LocalInvalidationBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalInvalidationBus")
            .field("handlers", &lock(&self.handlers).len())
            .finish()
    }
}

impl LocalInvalidationBus {
    /// A bus with no subscribers.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Hands `events` to every subscribed handler, outside the lock.
    async fn deliver(&self, events: &[Invalidation]) {
        let handlers = lock(&self.handlers).clone();
        for event in events {
            for handler in &handlers {
                handler.invalidate(event.clone()).await;
            }
        }
    }

    /// Adds a handler (one per instance).
    pub fn subscribe(&self, handler: Arc<dyn InvalidationHandler>) {
        lock(&self.handlers).push(handler);
    }
}

/// Where an in-memory repository announces what it changes: the bus of the instances that
/// share its store (set with the repository's `announcing_to`), or nowhere (one instance,
/// whose service evicts its own cache).
///
/// An in-memory change cannot fail after it is made, so announcing right after it, before the
/// repository call returns, is as atomic as Postgres's `NOTIFY` inside the transaction.
#[derive(Debug, Default, Clone)]
pub(crate) struct Announcer(Option<Arc<LocalInvalidationBus>>);

impl Announcer {
    /// Announces on `bus`.
    pub(crate) fn to(bus: Arc<LocalInvalidationBus>) -> Self {
        Self(Some(bus))
    }

    /// Delivers `events` to every subscribed handler.
    pub(crate) async fn announce(&self, events: &[Invalidation]) {
        if let Some(bus) = &self.0 {
            bus.deliver(events).await;
        }
    }
}

#[async_trait]
impl InvalidationBus for LocalInvalidationBus {
    async fn publish(&self, event: Invalidation) -> Result<(), StoreError> {
        self.deliver(std::slice::from_ref(&event)).await;
        Ok(())
    }

    fn is_connected(&self) -> bool {
        true
    }
}
