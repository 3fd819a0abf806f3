//! `NoCache`: a `VerificationCache` that always loads. The right choice over the in-memory
//! stores, which answer as fast as a cache would and are always current.

use async_trait::async_trait;

use crate::ports::{Loader, StoreError, VerificationCache};

/// Caches nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

#[async_trait]
impl<K, V> VerificationCache<K, V> for NoCache
where
    K: Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    async fn get_or_load(&self, _key: K, load: Loader<'_, V>) -> Result<Option<V>, StoreError> {
        load.await
    }

    async fn invalidate(&self, _key: &K) {}

    async fn clear(&self) {}

    async fn entry_count(&self) -> u64 {
        0
    }
}
