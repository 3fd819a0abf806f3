//! Applies invalidations from the bus to this instance's caches.

use std::sync::Arc;

use crate::model::{ApiKey, Device, DeviceId, SessionId, TokenHash};
use crate::ports::{Invalidation, InvalidationHandler, VerificationCache};
use crate::service::account::SessionSnapshot;

/// Evicts from the API-key and session caches what the bus says has ended.
#[derive(Clone)]
pub struct CacheInvalidator {
    /// API keys by hash.
    pub keys: Arc<dyn VerificationCache<TokenHash, Arc<ApiKey>>>,
    /// Sessions by id.
    pub sessions: Arc<dyn VerificationCache<SessionId, SessionSnapshot>>,
    /// Devices by id.
    pub devices: Arc<dyn VerificationCache<DeviceId, Arc<Device>>>,
}

impl std::fmt::Debug for CacheInvalidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheInvalidator").finish_non_exhaustive()
    }
}

impl CacheInvalidator {
    /// Entries held by the three caches (keys, sessions, devices).
    pub async fn entry_count(&self) -> u64 {
        self.keys.entry_count().await
            + self.sessions.entry_count().await
            + self.devices.entry_count().await
    }
}

#[async_trait::async_trait]
impl InvalidationHandler for CacheInvalidator {
    async fn invalidate(&self, event: Invalidation) {
        match event {
            Invalidation::ApiKey(hash) => self.keys.invalidate(&hash).await,
            Invalidation::Session(id) => self.sessions.invalidate(&id).await,
            Invalidation::Device(id) => self.devices.invalidate(&id).await,
            // Session entries are keyed by session: drop those of the user's sessions, found by
            // the user in the cached snapshot (logout-all, a password change, a disabled
            // account), not every user's.
            Invalidation::User(user) => {
                self.sessions
                    .invalidate_where(Box::new(move |snapshot| snapshot.user.id == user))
                    .await;
            }
        }
    }

    async fn flush(&self) {
        self.keys.clear().await;
        self.sessions.clear().await;
        self.devices.clear().await;
    }
}
