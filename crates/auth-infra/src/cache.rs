//! `MokaCache`: the `VerificationCache` of production, on moka's async cache.
//!
//! moka gives the bound (entries), the time-to-live and one shared load per key
//! (`try_get_with`, which never caches an error). One rule moka does not give: an entry whose
//! load was already running when the key was invalidated would be inserted afterwards, stale.
//! An epoch counter closes that gap: every invalidation bumps it, and a load that finishes
//! under another epoch than it started in evicts what it just inserted.
//!
//! A cache may be told when it can be trusted ([`MokaCache::trusted_while`], a [`CacheTrust`]):
//! while it is not (the instance is not following the event log, or its last completed pass
//! over the log started too long ago, so an invalidation may be waiting unread), every lookup
//! reads through to the store and refreshes the entry; the entry answers alone only when the
//! store is unavailable.
//!
//! A batch ([`VerificationCache::get_or_load_many`]) reads what the cache holds, then loads
//! every missing key with one call of its loader; each of those keys still goes through
//! moka's own load of that key, all waiting on the one batch load, so a key another caller is
//! loading meanwhile is waited for rather than loaded twice, and the epoch rule holds per key.
//!
//! Metrics, labelled with the cache's name: `auth_cache_requests_total{result="hit"|"miss"}`
//! (a miss is a lookup that ran the loader), `auth_cache_evictions_total{cause}` (`size`,
//! `expired`, `explicit`, `replaced`); the entry count is published by the owner at scrape time.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auth_core::ports::{BatchLoader, Loader, Matcher, StoreError, VerificationCache};
use futures::FutureExt as _;
use moka::future::Cache;
use moka::notification::RemovalCause;

/// Whether the caches may answer from memory: while the instance follows the event log, and
/// only until [`CacheTrust::LEASE`] after the start of the last pass over the log that
/// completed (everything committed before that start has been applied).
///
/// A flag alone was not enough: on a machine short of CPU the follower ran late (passes seconds
/// apart) while still "following", and a key revoked through another instance was accepted
/// from the cache for up to 2.5 s. With the lease, a cache answers alone only when a pass that
/// started less than `LEASE` ago has applied every invalidation committed before it; otherwise
/// the lookup reads the database. The check is made by the reading request itself, so a
/// starved follower cannot delay it.
#[derive(Debug)]
pub struct CacheTrust {
    following: AtomicBool,
    /// Milliseconds after `base` until which the caches may answer alone.
    fresh_until: AtomicU64,
    base: Instant,
}

impl Default for CacheTrust {
    fn default() -> Self {
        Self {
            following: AtomicBool::new(false),
            fresh_until: AtomicU64::new(0),
            base: Instant::now(),
        }
    }
}

impl CacheTrust {
    /// How long after the start of its last completed pass over the log a follower's caches
    /// are trusted: below the contract's one second from a revocation's commit to its
    /// refusal everywhere, with room for the request that reads the entry.
    pub const LEASE: Duration = Duration::from_millis(800);

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    /// True while following and within the lease.
    #[must_use]
    pub fn is_trusted(&self) -> bool {
        self.is_trusted_at(Instant::now())
    }

    fn is_trusted_at(&self, now: Instant) -> bool {
        self.following.load(Ordering::Acquire)
            && self.millis(now) < self.fresh_until.load(Ordering::Acquire)
    }

    /// True while the event log is followed (whatever the lease).
    #[must_use]
    pub fn is_following(&self) -> bool {
        self.following.load(Ordering::Acquire)
    }

    /// Sets whether the log is followed; returns what it was.
    pub fn set_following(&self, now: bool) -> bool {
        self.following.swap(now, Ordering::AcqRel)
    }

    /// A pass over the log that started at `started` has applied everything it read.
    pub fn renew(&self, started: Instant) {
        let lease = u64::try_from(Self::LEASE.as_millis()).unwrap_or(u64::MAX);
        let until = self.millis(started).saturating_add(lease);
        self.fresh_until.fetch_max(until, Ordering::AcqRel);
    }
}

/// Shares a load's error between the callers that waited for it.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct SharedError(Arc<StoreError>);

impl SharedError {
    /// The error a shared load ended with, as this caller's own, of the same kind.
    pub(crate) fn into_store_error(err: Arc<StoreError>) -> StoreError {
        let unavailable = matches!(*err, StoreError::Unavailable(_));
        let shared = Self(err);
        if unavailable {
            StoreError::unavailable(shared)
        } else {
            StoreError::internal(shared)
        }
    }
}

/// What one batch load answered, shared by the loads of its keys.
type BatchAnswer<K, V> = Result<Arc<HashMap<K, V>>, Arc<StoreError>>;

/// Each of `keys` once, in the order first given.
fn distinct<K: Eq + Hash + Clone>(keys: &[K]) -> Vec<K> {
    let mut seen = HashSet::with_capacity(keys.len());
    keys.iter()
        .filter(|key| seen.insert(*key))
        .cloned()
        .collect()
}

/// A count as a metric increment.
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A bounded cache with a time-to-live, shared loads and honest invalidation.
pub struct MokaCache<K, V> {
    /// Values as given: the services cache shared records (`Arc<ApiKey>`, `Arc<Device>`, a
    /// session's pair of `Arc`s), so a hit clones a pointer and a negative entry (`None`), of
    /// which a flood of unknown keys fills the cache, costs the size of one.
    cache: Cache<K, Option<V>>,
    epoch: AtomicU64,
    /// Whether invalidations are being received in time; `None` when they always are.
    trusted: Option<Arc<CacheTrust>>,
    hits: metrics::Counter,
    misses: metrics::Counter,
    read_through: metrics::Counter,
    fallback: metrics::Counter,
}

impl<K, V> std::fmt::Debug for MokaCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MokaCache")
            .field("entries", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl<K, V> MokaCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// At most `capacity` entries, each kept at most `ttl`; `name` labels its metrics.
    #[must_use]
    pub fn new(name: &'static str, capacity: u64, ttl: Duration) -> Self {
        // Registered once: a full cache evicts on every insertion, and looking a labelled
        // counter up in the registry each time costs an allocation and a hash.
        let evicted = |cause: &'static str| metrics::counter!("auth_cache_evictions_total", "cache" => name, "cause" => cause);
        let [size, expired, explicit, replaced] =
            ["size", "expired", "explicit", "replaced"].map(evicted);
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .eviction_listener(move |_key, _value, cause| {
                    match cause {
                        RemovalCause::Size => &size,
                        RemovalCause::Expired => &expired,
                        RemovalCause::Explicit => &explicit,
                        RemovalCause::Replaced => &replaced,
                    }
                    .increment(1);
                })
                // For `invalidate_where`: moka checks the registered tests on every read until
                // its housekeeping has removed what they match.
                .support_invalidation_closures()
                .build(),
            epoch: AtomicU64::new(0),
            trusted: None,
            hits: metrics::counter!("auth_cache_requests_total", "cache" => name, "result" => "hit"),
            misses: metrics::counter!("auth_cache_requests_total", "cache" => name, "result" => "miss"),
            read_through: metrics::counter!("auth_cache_requests_total", "cache" => name, "result" => "read_through"),
            fallback: metrics::counter!("auth_cache_requests_total", "cache" => name, "result" => "fallback"),
        }
    }

    /// Answers from memory only while `trusted` says so; otherwise reads through to the store
    /// (and falls back to the entry only when the store is unavailable).
    #[must_use]
    pub fn trusted_while(self, trusted: Arc<CacheTrust>) -> Self {
        Self {
            trusted: Some(trusted),
            ..self
        }
    }

    /// The store's answer, cached; or, when the store is unavailable, the cached one.
    async fn read_through(&self, key: K, load: Loader<'_, V>) -> Result<Option<V>, StoreError> {
        let started = self.epoch.load(Ordering::Acquire);
        match load.await {
            Ok(found) => {
                self.read_through.increment(1);
                if self.epoch.load(Ordering::Acquire) == started {
                    self.cache.insert(key, found.clone()).await;
                }
                Ok(found)
            }
            Err(StoreError::Unavailable(err)) => match self.cache.get(&key).await {
                Some(cached) => {
                    self.fallback.increment(1);
                    Ok(cached)
                }
                None => Err(StoreError::Unavailable(err)),
            },
            Err(err) => Err(err),
        }
    }

    /// [`Self::read_through`] for a batch: one load of every key, each answer cached; when the
    /// store is unavailable, the cached answers, if every key has one.
    async fn read_through_many(
        &self,
        keys: &[K],
        load: BatchLoader<'_, K, V>,
    ) -> Result<Vec<Option<V>>, StoreError> {
        let started = self.epoch.load(Ordering::Acquire);
        let distinct = distinct(keys);
        match load(distinct.clone()).await {
            Ok(found) => {
                self.read_through.increment(count(distinct.len()));
                let found: HashMap<K, V> = found.into_iter().collect();
                for key in &distinct {
                    self.cache
                        .insert(key.clone(), found.get(key).cloned())
                        .await;
                }
                if self.epoch.load(Ordering::Acquire) != started {
                    for key in &distinct {
                        self.cache.invalidate(key).await;
                    }
                }
                Ok(keys.iter().map(|key| found.get(key).cloned()).collect())
            }
            Err(StoreError::Unavailable(err)) => {
                let mut answers = Vec::with_capacity(keys.len());
                for key in keys {
                    match self.cache.get(key).await {
                        Some(cached) => answers.push(cached),
                        None => return Err(StoreError::Unavailable(err)),
                    }
                }
                self.fallback.increment(count(keys.len()));
                Ok(answers)
            }
            Err(err) => Err(err),
        }
    }

    /// Applies pending maintenance (evictions) now; for tests and metrics.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }
}

#[async_trait]
impl<K, V> VerificationCache<K, V> for MokaCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    async fn get_or_load(&self, key: K, load: Loader<'_, V>) -> Result<Option<V>, StoreError> {
        if let Some(trusted) = &self.trusted
            && !trusted.is_trusted()
        {
            return self.read_through(key, load).await;
        }
        let started = self.epoch.load(Ordering::Acquire);
        let loaded = AtomicBool::new(false);
        let value = self
            .cache
            .try_get_with(key.clone(), async {
                loaded.store(true, Ordering::Relaxed);
                load.await
            })
            .await
            .map_err(SharedError::into_store_error)?;
        if loaded.load(Ordering::Relaxed) {
            self.misses.increment(1);
        } else {
            self.hits.increment(1);
        }
        // Only a load of this call can have inserted a stale value; a hit read during an
        // unrelated invalidation stays.
        if loaded.load(Ordering::Relaxed) && self.epoch.load(Ordering::Acquire) != started {
            self.cache.invalidate(&key).await;
        }
        Ok(value)
    }

    async fn get_or_load_many(
        &self,
        keys: &[K],
        load: BatchLoader<'_, K, V>,
    ) -> Result<Vec<Option<V>>, StoreError> {
        if let Some(trusted) = &self.trusted
            && !trusted.is_trusted()
        {
            return self.read_through_many(keys, load).await;
        }
        let started = self.epoch.load(Ordering::Acquire);
        let mut answers: HashMap<K, Option<V>> = HashMap::with_capacity(keys.len());
        let mut missing = Vec::new();
        for key in distinct(keys) {
            match self.cache.get(&key).await {
                Some(cached) => {
                    answers.insert(key, cached);
                }
                None => missing.push(key),
            }
        }
        self.hits.increment(count(answers.len()));
        if !missing.is_empty() {
            // The load runs when the first key's own load polls it, and only then: if other
            // callers load every missing key meanwhile, the store is not asked at all.
            let batch = load(missing.clone())
                .map(|result| -> BatchAnswer<K, V> {
                    result
                        .map(|found| Arc::new(found.into_iter().collect()))
                        .map_err(Arc::new)
                })
                .shared();
            let ran: Vec<AtomicBool> = missing.iter().map(|_| AtomicBool::new(false)).collect();
            let loads = missing.iter().zip(&ran).map(|(key, ran)| {
                let batch = batch.clone();
                self.cache.try_get_with(key.clone(), async move {
                    ran.store(true, Ordering::Relaxed);
                    batch.await.map(|found| found.get(key).cloned())
                })
            });
            let loaded = futures::future::join_all(loads).await;
            let misses = ran.iter().filter(|r| r.load(Ordering::Relaxed)).count();
            self.misses.increment(count(misses));
            self.hits.increment(count(missing.len() - misses));
            // As in `get_or_load`: only what this call loaded can be stale.
            if self.epoch.load(Ordering::Acquire) != started {
                for (key, ran) in missing.iter().zip(&ran) {
                    if ran.load(Ordering::Relaxed) {
                        self.cache.invalidate(key).await;
                    }
                }
            }
            for (key, value) in missing.into_iter().zip(loaded) {
                let value =
                    value.map_err(|err| SharedError::into_store_error(Arc::clone(&*err)))?;
                answers.insert(key, value);
            }
        }
        Ok(keys
            .iter()
            .map(|key| answers.get(key).cloned().flatten())
            .collect())
    }

    async fn invalidate(&self, key: &K) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate(key).await;
    }

    async fn invalidate_where(&self, matches: Matcher<V>) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let registered = self
            .cache
            .invalidate_entries_if(move |_, value| value.as_ref().is_some_and(&matches));
        if registered.is_err() {
            self.cache.invalidate_all();
        }
    }

    async fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
    }

    async fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn cache() -> Arc<MokaCache<u32, String>> {
        Arc::new(MokaCache::new("test", 100, Duration::from_secs(60)))
    }

    /// The counters registered once at construction count every removal by its cause.
    #[tokio::test]
    async fn evictions_are_counted_by_cause() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let c: MokaCache<u32, String> = metrics::with_local_recorder(&recorder, || {
            MokaCache::new("evicting", 1, Duration::from_secs(60))
        });
        let value = |v: &'static str| Box::pin(async move { Ok(Some(v.to_owned())) });
        c.get_or_load(1, value("a")).await.unwrap();
        c.run_pending_tasks().await;
        // A second key in a cache of one: one of the two goes, for size.
        c.get_or_load(2, value("b")).await.unwrap();
        c.run_pending_tasks().await;
        c.invalidate(&1).await;
        c.invalidate(&2).await;
        c.run_pending_tasks().await;
        let mut counted = HashMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            if key.key().name() != "auth_cache_evictions_total" {
                continue;
            }
            let labels: HashMap<_, _> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            assert_eq!(labels["cache"], "evicting");
            let DebugValue::Counter(n) = value else {
                panic!("a counter")
            };
            counted.insert(labels["cause"].clone(), n);
        }
        assert_eq!(counted["size"], 1);
        assert_eq!(counted["explicit"], 1);
        assert_eq!(counted["expired"], 0);
        assert_eq!(counted["replaced"], 0);
    }

    #[tokio::test]
    async fn caches_found_and_not_found_but_never_errors() {
        let c = cache();
        let loads = Arc::new(AtomicUsize::new(0));
        let load = |v: Option<&'static str>| {
            let loads = loads.clone();
            Box::pin(async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok(v.map(str::to_owned))
            }) as Loader<'static, String>
        };
        assert_eq!(
            c.get_or_load(1, load(Some("a"))).await.unwrap().as_deref(),
            Some("a")
        );
        assert_eq!(
            c.get_or_load(1, load(Some("b"))).await.unwrap().as_deref(),
            Some("a")
        );
        assert_eq!(c.get_or_load(2, load(None)).await.unwrap(), None);
        assert_eq!(
            c.get_or_load(2, load(Some("c"))).await.unwrap(),
            None,
            "negative cached"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 2);

        let failing: Loader<'static, String> =
            Box::pin(async { Err(StoreError::unavailable(std::io::Error::other("down"))) });
        let err = c.get_or_load(3, failing).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)));
        assert_eq!(
            c.get_or_load(3, load(Some("d"))).await.unwrap().as_deref(),
            Some("d")
        );
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_load() {
        let c = cache();
        let loads = Arc::new(AtomicUsize::new(0));
        let calls = (0..50).map(|_| {
            let (c, loads) = (c.clone(), loads.clone());
            async move {
                let load: Loader<'static, String> = Box::pin(async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(Some("v".to_owned()))
                });
                c.get_or_load(7, load).await
            }
        });
        for r in futures::future::join_all(calls).await {
            assert_eq!(r.unwrap().as_deref(), Some("v"));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn invalidation_during_a_load_wins() {
        let c = cache();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let slow: Loader<'static, String> = Box::pin(async move {
            let _ = release_rx.await;
            Ok(Some("stale".to_owned()))
        });
        let pending = tokio::spawn({
            let c = c.clone();
            async move { c.get_or_load(9, slow).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.invalidate(&9).await;
        release_tx.send(()).unwrap();
        pending.await.unwrap().unwrap();
        let fresh: Loader<'static, String> = Box::pin(async { Ok(Some("fresh".to_owned())) });
        assert_eq!(
            c.get_or_load(9, fresh).await.unwrap().as_deref(),
            Some("fresh")
        );

        let again: Loader<'static, String> = Box::pin(async { Ok(Some("x".to_owned())) });
        c.clear().await;
        assert_eq!(c.get_or_load(9, again).await.unwrap().as_deref(), Some("x"));
    }

    /// A batch loader that counts its calls, records the keys it was given, and finds a
    /// key's value in `values` (or nothing), after `delay`.
    fn batch_of(
        values: &[(u32, &'static str)],
        calls: &Arc<std::sync::Mutex<Vec<Vec<u32>>>>,
        delay: Duration,
    ) -> BatchLoader<'static, u32, String> {
        let values: HashMap<u32, String> =
            values.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let calls = calls.clone();
        Box::new(move |keys: Vec<u32>| {
            Box::pin(async move {
                calls.lock().unwrap().push(keys.clone());
                tokio::time::sleep(delay).await;
                Ok(keys
                    .into_iter()
                    .filter_map(|k| values.get(&k).map(|v| (k, v.clone())))
                    .collect())
            })
        })
    }

    fn strs(found: &[Option<String>]) -> Vec<Option<&str>> {
        found.iter().map(Option::as_deref).collect()
    }

    #[tokio::test]
    async fn a_batch_loads_its_missing_keys_in_one_call_and_caches_every_answer() {
        let c = cache();
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let one: Loader<'static, String> = Box::pin(async { Ok(Some("a".to_owned())) });
        c.get_or_load(1, one).await.unwrap();

        let loader = batch_of(&[(2, "b"), (9, "z")], &calls, Duration::ZERO);
        let found = c.get_or_load_many(&[1, 2, 3, 2, 1], loader).await.unwrap();
        assert_eq!(
            strs(&found),
            [Some("a"), Some("b"), None, Some("b"), Some("a")]
        );
        assert_eq!(
            *calls.lock().unwrap(),
            [vec![2, 3]],
            "one call, the missing keys once"
        );

        // Found and not found are both cached: no call now.
        let loader = batch_of(&[(3, "late")], &calls, Duration::ZERO);
        let found = c.get_or_load_many(&[3, 2, 1], loader).await.unwrap();
        assert_eq!(strs(&found), [None, Some("b"), Some("a")]);
        assert_eq!(calls.lock().unwrap().len(), 1);
        let single: Loader<'static, String> = Box::pin(async { Ok(Some("x".to_owned())) });
        assert_eq!(
            c.get_or_load(2, single).await.unwrap().as_deref(),
            Some("b")
        );
        assert!(
            c.get_or_load_many(&[], batch_of(&[], &calls, Duration::ZERO))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_batch_answers_nothing_and_caches_nothing() {
        let c = cache();
        let one: Loader<'static, String> = Box::pin(async { Ok(Some("a".to_owned())) });
        c.get_or_load(1, one).await.unwrap();
        let down: BatchLoader<'static, u32, String> = Box::new(|_| {
            Box::pin(async { Err(StoreError::unavailable(std::io::Error::other("down"))) })
        });
        let err = c.get_or_load_many(&[1, 2], down).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        let broken: BatchLoader<'static, u32, String> = Box::new(|_| {
            Box::pin(async { Err(StoreError::internal(std::io::Error::other("bug"))) })
        });
        let err = c.get_or_load_many(&[2], broken).await.unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{err:?}");

        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let loader = batch_of(&[(2, "b")], &calls, Duration::ZERO);
        let found = c.get_or_load_many(&[1, 2], loader).await.unwrap();
        assert_eq!(strs(&found), [Some("a"), Some("b")]);
        assert_eq!(*calls.lock().unwrap(), [vec![2]]);
    }

    #[tokio::test]
    async fn concurrent_batches_and_single_loads_share_their_loads() {
        let c = cache();
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let values = [(1, "a"), (2, "b"), (3, "c")];
        let delay = Duration::from_millis(50);
        let singles = Arc::new(AtomicUsize::new(0));
        let single = {
            let (c, singles) = (c.clone(), singles.clone());
            async move {
                let load: Loader<'static, String> = Box::pin(async move {
                    singles.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Some("a".to_owned()))
                });
                c.get_or_load(1, load).await.unwrap()
            }
        };
        let batches = (0..4).map(|_| {
            let (c, loader) = (c.clone(), batch_of(&values, &calls, delay));
            async move { c.get_or_load_many(&[1, 2, 3], loader).await.unwrap() }
        });
        let (single, batches) = tokio::join!(
            tokio::spawn(single),
            futures::future::join_all(batches.map(tokio::spawn))
        );
        assert_eq!(single.unwrap().as_deref(), Some("a"));
        for found in batches {
            assert_eq!(strs(&found.unwrap()), [Some("a"), Some("b"), Some("c")]);
        }
        let loads = calls.lock().unwrap().len() + singles.load(Ordering::SeqCst);
        assert!(
            loads <= 2,
            "{loads} loads for one single lookup and 4 equal batches"
        );
    }

    #[tokio::test]
    async fn invalidation_during_a_batch_load_wins() {
        let c = cache();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let slow: BatchLoader<'static, u32, String> = Box::new(|keys| {
            Box::pin(async move {
                let _ = release_rx.await;
                Ok(keys.into_iter().map(|k| (k, "stale".to_owned())).collect())
            })
        });
        let pending = tokio::spawn({
            let c = c.clone();
            async move { c.get_or_load_many(&[9, 10], slow).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.invalidate(&9).await;
        release_tx.send(()).unwrap();
        pending.await.unwrap().unwrap();
        let fresh: Loader<'static, String> = Box::pin(async { Ok(Some("fresh".to_owned())) });
        assert_eq!(
            c.get_or_load(9, fresh).await.unwrap().as_deref(),
            Some("fresh")
        );
    }

    #[tokio::test]
    async fn an_untrusted_cache_reads_a_batch_through_in_one_call() {
        let trusted = Arc::new(CacheTrust::default());
        trusted.set_following(true);
        trusted.renew(Instant::now());
        let c: MokaCache<u32, String> =
            MokaCache::new("test", 100, Duration::from_secs(60)).trusted_while(trusted.clone());
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let found = c
            .get_or_load_many(&[1, 2], batch_of(&[(1, "old")], &calls, Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(strs(&found), [Some("old"), None]);

        trusted.set_following(false);
        let loader = batch_of(&[(1, "new"), (2, "born")], &calls, Duration::ZERO);
        let found = c.get_or_load_many(&[2, 1, 2], loader).await.unwrap();
        assert_eq!(strs(&found), [Some("born"), Some("new"), Some("born")]);
        assert_eq!(
            calls.lock().unwrap().last().unwrap(),
            &vec![2, 1],
            "every key, once"
        );

        let down = || -> BatchLoader<'static, u32, String> {
            Box::new(|_| {
                Box::pin(async { Err(StoreError::unavailable(std::io::Error::other("down"))) })
            })
        };
        let found = c.get_or_load_many(&[1, 2], down()).await.unwrap();
        assert_eq!(
            strs(&found),
            [Some("new"), Some("born")],
            "the store down: the entries"
        );
        assert!(
            matches!(
                c.get_or_load_many(&[1, 3], down()).await,
                Err(StoreError::Unavailable(_))
            ),
            "a key with no entry: 503"
        );

        trusted.set_following(true);
        trusted.renew(Instant::now());
        let found = c
            .get_or_load_many(&[1, 2], batch_of(&[], &calls, Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(
            strs(&found),
            [Some("new"), Some("born")],
            "trusted again: hits"
        );
    }

    #[tokio::test]
    async fn bounded_by_capacity() {
        let c: MokaCache<u32, String> = MokaCache::new("test", 100, Duration::from_secs(60));
        for i in 0..1000 {
            let load: Loader<'static, String> = Box::pin(async move { Ok(Some(i.to_string())) });
            c.get_or_load(i, load).await.unwrap();
        }
        let n = VerificationCache::entry_count(&c).await;
        assert!((1..=100).contains(&n), "{n}");
    }

    /// Only the entries whose value matches are forgotten (a user's sessions, not every
    /// user's); a cached not-found stays.
    #[tokio::test]
    async fn invalidate_where_forgets_the_matching_entries_only() {
        let cache: MokaCache<u32, String> = MokaCache::new("test", 100, Duration::from_secs(60));
        for key in 0..10_u32 {
            let owner = format!("user{}", key % 2);
            cache
                .get_or_load(key, Box::pin(async move { Ok(Some(owner)) }))
                .await
                .unwrap();
        }
        cache
            .get_or_load(99, Box::pin(async { Ok(None) }))
            .await
            .unwrap();
        cache
            .invalidate_where(Box::new(|owner: &String| owner == "user1"))
            .await;
        let loads = AtomicU64::new(0);
        for key in 0..10_u32 {
            let loads = &loads;
            let value = cache
                .get_or_load(
                    key,
                    Box::pin(async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        Ok(Some("reloaded".to_owned()))
                    }),
                )
                .await
                .unwrap()
                .unwrap();
            let expected = if key % 2 == 0 { "user0" } else { "reloaded" };
            assert_eq!(value, expected, "key {key}");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 5);
        let negative = cache
            .get_or_load(99, Box::pin(async { Ok(Some("loaded".to_owned())) }))
            .await
            .unwrap();
        assert_eq!(negative, None, "the cached not-found stays");
    }

    /// Trusted only while following and within the lease of the last completed pass: a
    /// follower that stops completing passes (starved, stuck on a slow read) stops being
    /// trusted `LEASE` after the start of its last pass, even while still "following".
    #[test]
    fn trust_lasts_one_lease_after_the_start_of_the_last_pass() {
        let trust = CacheTrust::default();
        let now = Instant::now();
        assert!(!trust.is_trusted_at(now), "nothing read yet");
        trust.renew(now);
        assert!(!trust.is_trusted_at(now), "not following");
        trust.set_following(true);
        assert!(trust.is_trusted_at(now));
        let almost = CacheTrust::LEASE - Duration::from_millis(5);
        assert!(trust.is_trusted_at(now + almost));
        assert!(!trust.is_trusted_at(now + CacheTrust::LEASE));
        // An older pass completing late does not move the lease back.
        trust.renew(now - Duration::from_millis(500));
        assert!(trust.is_trusted_at(now + almost));
        trust.renew(now + Duration::from_millis(500));
        assert!(trust.is_trusted_at(now + CacheTrust::LEASE));
        trust.set_following(false);
        assert!(!trust.is_trusted_at(now));
    }

    #[tokio::test]
    async fn an_untrusted_cache_reads_through_and_falls_back_only_when_the_store_is_down() {
        let trusted = Arc::new(CacheTrust::default());
        trusted.set_following(true);
        trusted.renew(Instant::now());
        let c: MokaCache<u32, String> =
            MokaCache::new("test", 100, Duration::from_secs(60)).trusted_while(trusted.clone());
        let value = |v: &'static str| -> Loader<'static, String> {
            Box::pin(async move { Ok(Some(v.to_owned())) })
        };
        let down = || -> Loader<'static, String> {
            Box::pin(async { Err(StoreError::unavailable(std::io::Error::other("down"))) })
        };
        assert_eq!(
            c.get_or_load(1, value("old")).await.unwrap().as_deref(),
            Some("old")
        );
        assert_eq!(
            c.get_or_load(1, value("new")).await.unwrap().as_deref(),
            Some("old"),
            "trusted: a hit"
        );

        trusted.set_following(false);
        assert_eq!(
            c.get_or_load(1, value("new")).await.unwrap().as_deref(),
            Some("new"),
            "untrusted: the store's answer"
        );
        assert_eq!(
            c.get_or_load(1, down()).await.unwrap().as_deref(),
            Some("new"),
            "untrusted and the store down: the entry"
        );
        assert!(
            c.get_or_load(2, down()).await.is_err(),
            "nothing cached: 503"
        );
        let internal: Loader<'static, String> =
            Box::pin(async { Err(StoreError::internal(std::io::Error::other("bug"))) });
        assert!(
            matches!(
                c.get_or_load(1, internal).await,
                Err(StoreError::Internal(_))
            ),
            "only unavailability falls back"
        );

        trusted.set_following(true);
        trusted.renew(Instant::now());
        assert_eq!(
            c.get_or_load(1, value("newer")).await.unwrap().as_deref(),
            Some("new"),
            "trusted again: the refreshed entry"
        );
    }
}
