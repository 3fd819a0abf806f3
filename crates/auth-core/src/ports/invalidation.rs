//! `InvalidationBus`: tells every instance that a credential has ended.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{DeviceId, LogEntry, SessionId, TokenHash, UserId};

/// Something every instance must stop trusting from its cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// An API key was revoked (by hand or by rotation).
    ApiKey(TokenHash),
    /// A session ended (logout, logout-all, password change, refresh-token reuse).
    Session(SessionId),
    /// A device was revoked or its secret rotated.
    Device(DeviceId),
    /// Sessions of this user may be stale: every cached session is dropped. No longer sent
    /// (ended sessions are announced one by one); still understood, so instances of an older
    /// release that send it during a rolling upgrade are heard.
    User(UserId),
}

/// Receives what the bus delivers (the caches of this instance).
#[async_trait]
pub trait InvalidationHandler: Send + Sync + 'static {
    /// Forget one entry.
    async fn invalidate(&self, event: Invalidation);
    /// Forget everything: notifications may have been missed.
    async fn flush(&self);
    /// Sees every event the instance reads from the log, in the order it reads them, before
    /// its invalidation is handed to [`Self::invalidate`] (the revocation stream forwards
    /// them). Does nothing unless overridden.
    async fn observe(&self, _entry: &LogEntry) {}
}

/// Several handlers as one: each is called in turn.
pub struct Handlers(pub Vec<std::sync::Arc<dyn InvalidationHandler>>);

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Handlers").field(&self.0.len()).finish()
    }
}

#[async_trait]
impl InvalidationHandler for Handlers {
    async fn invalidate(&self, event: Invalidation) {
        for handler in &self.0 {
            handler.invalidate(event.clone()).await;
        }
    }

    async fn flush(&self) {
        for handler in &self.0 {
            handler.flush().await;
        }
    }

    async fn observe(&self, entry: &LogEntry) {
        for handler in &self.0 {
            handler.observe(entry).await;
        }
    }
}

/// Publishes invalidations to every instance, this one included.
///
/// Credentials are ended by the repositories, which announce each end in the same atomic step
/// as the change (see their contracts); `publish` is for announcements outside such a step.
///
/// Implementations MUST:
/// - deliver each published event to every connected instance's handler, in well under a
///   second;
/// - call the handler's `flush` whenever delivery may have had a gap (after a reconnect);
/// - report `is_connected() == false` while events could be missed, so the instance is
///   taken out of rotation;
/// - return an error from `publish` when the event could not be sent.
#[async_trait]
pub trait InvalidationBus: Send + Sync + 'static {
    /// Sends `event` to every instance.
    ///
    /// # Errors
    /// [`StoreError`] when it could not be sent.
    async fn publish(&self, event: Invalidation) -> Result<(), StoreError>;

    /// True while this instance receives every event.
    fn is_connected(&self) -> bool;
}
