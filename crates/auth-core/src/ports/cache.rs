//! `VerificationCache`: answers hot verifications from memory, honestly.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use super::StoreError;

/// A boxed loader future, run on a cache miss.
pub type Loader<'a, V> = Pin<Box<dyn Future<Output = Result<Option<V>, StoreError>> + Send + 'a>>;

/// A test on cached values, for [`VerificationCache::invalidate_where`].
pub type Matcher<V> = Box<dyn Fn(&V) -> bool + Send + Sync + 'static>;

/// A bounded, time-limited cache of lookups for verification paths.
///
/// Implementations MUST:
/// - cache found (`Some`) and not-found (`None`) results alike, each for at most the
///   configured time-to-live, and hold at most the configured number of entries;
/// - never cache an error: `get_or_load` returns it and the next call loads again;
/// - run one load at a time per key: concurrent misses for one key share one load;
/// - make `invalidate` and `clear` effective for every later `get_or_load`, including one
///   whose load started before the invalidation (no stale result may be re-inserted).
#[async_trait]
pub trait VerificationCache<K, V>: Send + Sync + 'static
where
    K: Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The cached value for `key`, or the result of `load`, cached.
    ///
    /// # Errors
    /// The loader's error, uncached.
    async fn get_or_load(&self, key: K, load: Loader<'_, V>) -> Result<Option<V>, StoreError>;

    /// Forgets `key`.
    async fn invalidate(&self, key: &K);

    /// Forgets every entry whose value `matches` (found entries only; a cached not-found
    /// stays). Effective for every later `get_or_load`, as `invalidate` is. The default
    /// forgets everything, which is always correct.
    async fn invalidate_where(&self, matches: Matcher<V>) {
        let _ = matches;
        self.clear().await;
    }

    /// Forgets everything (after missed invalidations).
    async fn clear(&self);

    /// Number of entries (after pending evictions are applied).
    async fn entry_count(&self) -> u64;
}
