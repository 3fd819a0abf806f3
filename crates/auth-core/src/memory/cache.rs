//! `NoCache`: a `VerificationCache` that always loads. The right choice over the in-memory
//! stores, which answer as fast as a cache would and are always current.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use async_trait::async_trait;

use crate::ports::{BatchLoader, Loader, StoreError, VerificationCache};

/// Caches nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

#[async_trait]
impl<K, V> VerificationCache<K, V> for NoCache
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    async fn get_or_load(&self, _key: K, load: Loader<'_, V>) -> Result<Option<V>, StoreError> {
        load.await
    }

    async fn get_or_load_many(
        &self,
        keys: &[K],
        load: BatchLoader<'_, K, V>,
    ) -> Result<Vec<Option<V>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let distinct = {
            let mut seen = HashSet::with_capacity(keys.len());
            keys.iter()
                .filter(|key| seen.insert(*key))
                .cloned()
                .collect()
        };
        let found: HashMap<K, V> = load(distinct).await?.into_iter().collect();
        Ok(keys.iter().map(|key| found.get(key).cloned()).collect())
    }

    async fn invalidate(&self, _key: &K) {}

    async fn clear(&self) {}

    async fn entry_count(&self) -> u64 {
        0
    }
}
