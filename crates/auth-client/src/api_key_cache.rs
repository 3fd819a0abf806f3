//! The API-key verification cache: the service's verdict on a key, kept for a while so that a
//! service verifying the same key on every request asks the auth service once per TTL.
//!
//! - Keyed by the SHA-256 of the key: the cache never holds a key.
//! - Holds the verdict on the key alone (verified with no required scopes); required scopes
//!   are checked here against the key's scopes, by the service's rule (`admin` holds every
//!   scope), so one entry serves every route whatever scopes it requires.
//! - A valid verdict lives `ttl`, and never beyond the key's `expires_at`; every hit also
//!   compares `expires_at` with the clock, as the service does.
//! - A negative verdict (`INVALID`, `REVOKED`, `EXPIRED`) lives `negative_ttl` only.
//! - Only definitive verdicts are cached: a failure to get one (connection error, timeout,
//!   5xx, open breaker) is not, and the next verification asks again.
//! - Concurrent misses for one key share one request.
//! - Valid verdicts are also indexed by key id, so that a revocation (which names the key by
//!   id, never by value) can drop them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::config::ApiKeyCacheConfig;
use crate::error::Error;
use crate::types::{ApiKeyVerdict, KeyRejection};

/// The SHA-256 of a key.
pub(crate) type KeyHash = [u8; 32];

/// The SHA-256 of a set of scopes (order and repeats do not matter).
pub(crate) fn scopes_hash(scopes: &[&str]) -> KeyHash {
    let mut sorted = scopes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    hash(&sorted.join(" "))
}

pub(crate) fn hash(key: &str) -> KeyHash {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest);
    out
}

struct Lifetimes {
    ttl: Duration,
    negative: Duration,
}

impl Expiry<KeyHash, ApiKeyVerdict> for Lifetimes {
    fn expire_after_create(
        &self,
        _key: &KeyHash,
        verdict: &ApiKeyVerdict,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(match verdict {
            // A limited key's verdict, and a refusal for want of scopes (which depends on the
            // scopes asked for), are never served again.
            verdict if verdict.is_metered() => Duration::ZERO,
            ApiKeyVerdict::Rejected(KeyRejection::InsufficientScope) => Duration::ZERO,
            ApiKeyVerdict::Rejected(_) | ApiKeyVerdict::RateLimited(_) => self.negative,
            ApiKeyVerdict::Valid(key) => match key.expires_at {
                Some(at) => (at - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(self.ttl),
                None => self.ttl,
            },
        })
    }
}

/// The hashes of the keys with a cached valid verdict, by key id. A key has one hash; a list
/// keeps this true of any text the service might accept as the same key.
type ById = Arc<Mutex<HashMap<Uuid, Vec<KeyHash>>>>;

/// Verdicts by key hash. Clones share the entries.
#[derive(Clone)]
pub(crate) struct ApiKeyCache {
    cache: Cache<KeyHash, ApiKeyVerdict>,
    /// The service's refusals of a key for want of scopes, by key and scopes asked for, with
    /// the epoch they were loaded in (one loaded before something was forgotten is void): a
    /// key the client holds no valid verdict on, asked for scopes it lacks, reaches the
    /// service once per negative TTL, not on every request.
    scope_refusals: Cache<(KeyHash, KeyHash), u64>,
    by_id: ById,
    /// Moved by every forgetting: a load that was running meanwhile may hold what was
    /// forgotten, so it does not stay cached.
    epoch: Arc<AtomicU64>,
}

impl std::fmt::Debug for ApiKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyCache")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl ApiKeyCache {
    pub(crate) fn new(config: &ApiKeyCacheConfig) -> Self {
        let by_id: ById = Arc::default();
        let index = by_id.clone();
        Self {
            cache: Cache::builder()
                .name("auth-client-api-keys")
                .max_capacity(config.capacity)
                .expire_after(Lifetimes {
                    ttl: config.ttl,
                    negative: config.negative_ttl,
                })
                .eviction_listener(move |hash: Arc<KeyHash>, verdict, cause| {
                    // Entries are only inserted when absent, never replaced; a replacement
                    // would keep the same key id anyway.
                    if cause != RemovalCause::Replaced
                        && let ApiKeyVerdict::Valid(key) = verdict
                    {
                        unindex(&index, key.key_id, &hash);
                    }
                })
                .build(),
            scope_refusals: Cache::builder()
                .name("auth-client-api-key-scope-refusals")
                .max_capacity(config.capacity)
                .time_to_live(config.negative_ttl)
                .build(),
            by_id,
            epoch: Arc::default(),
        }
    }

    /// The current epoch, to pass to [`Self::note_scope_refusal`] for a load started now.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether the service refused `key` for `scopes` within the negative TTL, with nothing
    /// forgotten since.
    pub(crate) async fn refused_for(&self, key: KeyHash, scopes: KeyHash) -> bool {
        self.scope_refusals.get(&(key, scopes)).await == Some(self.epoch())
    }

    /// Notes the service's refusal of `key` for `scopes`, loaded from `epoch` on.
    pub(crate) async fn note_scope_refusal(&self, key: KeyHash, scopes: KeyHash, epoch: u64) {
        self.scope_refusals.insert((key, scopes), epoch).await;
    }

    /// The cached verdict on `key`, or the one `load` gets (then cached); `true` for a hit.
    #[cfg(test)]
    pub(crate) async fn get_or_load(
        &self,
        key: KeyHash,
        load: impl Future<Output = Result<ApiKeyVerdict, Error>>,
    ) -> Result<(ApiKeyVerdict, bool), Error> {
        self.get_or_load_here(key, load)
            .await
            .map(|(verdict, hit, _)| (verdict, hit))
    }

    /// As [`Self::get_or_load`], also saying whether this call ran `load` itself (a call
    /// that waited for another's load shares its verdict).
    pub(crate) async fn get_or_load_here(
        &self,
        key: KeyHash,
        load: impl Future<Output = Result<ApiKeyVerdict, Error>>,
    ) -> Result<(ApiKeyVerdict, bool, bool), Error> {
        if let Some(verdict) = self.cache.get(&key).await {
            return Ok((verdict, true, false));
        }
        let started = self.epoch.load(Ordering::Acquire);
        let loaded = AtomicBool::new(false);
        let indexed = async {
            loaded.store(true, Ordering::Relaxed);
            let verdict = load.await?;
            if let ApiKeyVerdict::Valid(k) = &verdict
                && let Ok(mut by_id) = self.by_id.lock()
            {
                let hashes = by_id.entry(k.key_id).or_default();
                if !hashes.contains(&key) {
                    hashes.push(key);
                }
            }
            Ok::<_, Error>(verdict)
        };
        let verdict = self
            .cache
            .try_get_with(key, indexed)
            .await
            .map_err(Arc::unwrap_or_clone)?;
        // A verdict this call loaded while something was forgotten may be what was forgotten
        // (a key changed or revoked as the answer travelled): answer it, but do not keep it.
        let here = loaded.load(Ordering::Relaxed);
        if here && self.epoch.load(Ordering::Acquire) != started {
            self.cache.invalidate(&key).await;
        }
        Ok((verdict, false, here))
    }

    pub(crate) async fn forget(&self, key: &KeyHash) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate(key).await;
    }

    /// Drops every cached verdict on the key `key_id`; how many there were.
    pub(crate) async fn forget_key_id(&self, key_id: Uuid) -> usize {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let hashes = self
            .by_id
            .lock()
            .ok()
            .and_then(|mut by_id| by_id.remove(&key_id))
            .unwrap_or_default();
        let mut dropped = 0;
        for hash in &hashes {
            if self.cache.remove(hash).await.is_some() {
                dropped += 1;
            }
        }
        dropped
    }

    pub(crate) fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
        self.scope_refusals.invalidate_all();
    }

    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Applies pending evictions now (the cache does so lazily), so counts are exact.
    pub(crate) async fn sync(&self) {
        self.cache.run_pending_tasks().await;
    }
}

fn unindex(by_id: &ById, key_id: Uuid, hash: &KeyHash) {
    if let Ok(mut by_id) = by_id.lock()
        && let Some(hashes) = by_id.get_mut(&key_id)
    {
        hashes.retain(|h| h != hash);
        if hashes.is_empty() {
            by_id.remove(&key_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{KeyRejection, VerifiedApiKey};

    fn valid(expires_in: Option<chrono::Duration>) -> ApiKeyVerdict {
        ApiKeyVerdict::Valid(VerifiedApiKey {
            key_id: uuid::Uuid::nil(),
            organization_id: uuid::Uuid::nil(),
            name: "k".into(),
            scopes: vec![],
            expires_at: expires_in.map(|d| Utc::now() + d),
            meta: None,
            external_id: None,
            rate_limit: None,
            remaining: None,
        })
    }

    /// A verdict loaded while its key was forgotten (changed or revoked at the service as the
    /// answer travelled) is answered but not kept; one loaded undisturbed is kept.
    #[tokio::test]
    async fn a_verdict_loaded_across_a_forgetting_is_not_kept() {
        let cache = ApiKeyCache::new(&ApiKeyCacheConfig::default());
        let key = hash("ak_live_x");
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let load = cache.get_or_load(key, async {
            released.await.unwrap();
            Ok(valid(None))
        });
        let forget = async {
            tokio::task::yield_now().await;
            cache.forget_key_id(uuid::Uuid::nil()).await;
            release.send(()).unwrap();
        };
        let (loaded, ()) = tokio::join!(load, forget);
        assert_eq!(loaded.unwrap(), (valid(None), false));
        cache.sync().await;
        assert_eq!(cache.cache.get(&key).await, None, "not kept");

        let (verdict, hit) = cache
            .get_or_load(key, async { Ok(valid(None)) })
            .await
            .unwrap();
        assert!(!hit && verdict == valid(None));
        assert!(cache.cache.get(&key).await.is_some(), "kept");
    }

    #[test]
    fn lifetimes_follow_the_verdict_and_the_key_expiry() {
        let l = Lifetimes {
            ttl: Duration::from_secs(300),
            negative: Duration::from_secs(10),
        };
        let at = Instant::now();
        let k = hash("ak_live_x");
        assert_eq!(
            l.expire_after_create(&k, &valid(None), at),
            Some(Duration::from_secs(300))
        );
        let soon = l
            .expire_after_create(&k, &valid(Some(chrono::Duration::seconds(20))), at)
            .unwrap();
        assert!(soon <= Duration::from_secs(20) && soon > Duration::from_secs(15));
        assert_eq!(
            l.expire_after_create(&k, &valid(Some(chrono::Duration::seconds(-5))), at),
            Some(Duration::ZERO)
        );
        assert_eq!(
            l.expire_after_create(&k, &ApiKeyVerdict::Rejected(KeyRejection::Revoked), at),
            Some(Duration::from_secs(10))
        );
        assert_ne!(hash("ak_live_x"), hash("ak_live_y"));
    }

    #[tokio::test]
    async fn verdicts_are_found_by_key_id_and_the_index_follows_evictions() {
        let cache = ApiKeyCache::new(&ApiKeyCacheConfig::default());
        let id = uuid::Uuid::now_v7();
        let verdict = ApiKeyVerdict::Valid(VerifiedApiKey {
            key_id: id,
            organization_id: uuid::Uuid::nil(),
            name: "k".into(),
            scopes: vec![],
            expires_at: None,
            meta: None,
            external_id: None,
            rate_limit: None,
            remaining: None,
        });
        let loaded = verdict.clone();
        cache
            .get_or_load(hash("ak_1"), async move { Ok(loaded) })
            .await
            .unwrap();
        cache
            .get_or_load(hash("ak_bad"), async {
                Ok(ApiKeyVerdict::Rejected(KeyRejection::Invalid))
            })
            .await
            .unwrap();
        assert_eq!(cache.by_id.lock().unwrap().len(), 1);
        cache.forget_key_id(id).await;
        cache.sync().await;
        assert_eq!(cache.entry_count(), 1, "the negative verdict stays");
        assert!(cache.by_id.lock().unwrap().is_empty());

        // An entry leaving by itself leaves the index too.
        let loaded = verdict.clone();
        cache
            .get_or_load(hash("ak_1"), async move { Ok(loaded) })
            .await
            .unwrap();
        cache.forget(&hash("ak_1")).await;
        cache.sync().await;
        assert!(cache.by_id.lock().unwrap().is_empty());
        cache
            .get_or_load(hash("ak_1"), async move { Ok(verdict) })
            .await
            .unwrap();
        cache.clear();
        cache.sync().await;
        assert!(cache.by_id.lock().unwrap().is_empty());
    }
}
