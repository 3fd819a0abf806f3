//! `VerificationCache`: answers hot verifications from memory, honestly.

use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;

use async_trait::async_trait;

use super::StoreError;

/// A boxed loader future, run on a cache miss.
pub type Loader<'a, V> = Pin<Box<dyn Future<Output = Result<Option<V>, StoreError>> + Send + 'a>>;

/// A test on cached values, for [`VerificationCache::invalidate_where`].
pub type Matcher<V> = Box<dyn Fn(&V) -> bool + Send + Sync + 'static>;

/// A boxed loader of several keys at once, run with the keys a batch found missing: it answers
/// the values it found, each with its key; a key it leaves out was not found.
pub type BatchLoader<'a, K, V> = Box<
    dyn FnOnce(Vec<K>) -> Pin<Box<dyn Future<Output = Result<Vec<(K, V)>, StoreError>> + Send + 'a>>
        + Send
        + 'a,
>;

/// A bounded, time-limited cache of lookups for verification paths.
///
/// Implementations MUST:
/// - cache found (`Some`) and not-found (`None`) results alike, each for at most the
///   configured time-to-live, and hold at most the configured number of entries;
/// - never cache an error: `get_or_load` returns it and the next call loads again;
/// - run one load at a time per key: concurrent misses for one key share one load;
/// - load every key that `get_or_load_many` finds missing with one call of its loader, each
///   key listed once (no call when none is missing), and answer, cache and forget those keys
///   as `get_or_load` does one; a key whose load another caller is running may wait for that
///   load instead;
/// - make `invalidate` and `clear` effective for every later `get_or_load`, including one
///   whose load started before the invalidation (no stale result may be re-inserted).
#[async_trait]
pub trait VerificationCache<K, V>: Send + Sync + 'static
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The cached value for `key`, or the result of `load`, cached.
    ///
    /// # Errors
    /// The loader's error, uncached.
    async fn get_or_load(&self, key: K, load: Loader<'_, V>) -> Result<Option<V>, StoreError>;

    /// The value for each of `keys`, in order (a key given twice is answered twice): the
    /// cached ones, and the others from one call of `load` with every key missing, cached.
    ///
    /// # Errors
    /// The loader's error, uncached, when a key needed it: then no answer is given.
    async fn get_or_load_many(
        &self,
        keys: &[K],
        load: BatchLoader<'_, K, V>,
    ) -> Result<Vec<Option<V>>, StoreError>;

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
