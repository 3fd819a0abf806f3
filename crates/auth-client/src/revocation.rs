//! What the client knows of the revocations made at the service, as the revocation stream
//! tells them, and what each does to the API-key cache and to local token verification.
//!
//! | action | effect here |
//! |---|---|
//! | `session.ended`, `session.reuse_detected` | access tokens of `session_id` refused |
//! | `api_key.revoked`, `api_key.rotated` | every cached verdict on `key_id` dropped; a verdict on it loaded meanwhile refused |
//! | `api_key.updated` | every cached verdict on `key_id` dropped (the key stays usable; the next verification asks the service) |
//! | `device.revoked` | every token of `device_id` refused (revocation is final: none is issued after) |
//! | `device.secret_rotated` | tokens of `device_id` issued before `not_before` refused |
//! | `user.password_reset` | access tokens of `user_id` issued before `not_before` (the reset's second) refused (those of its second belong to sessions whose end comes as `session.ended`) |
//! | `user.disabled`, `user.deleted` | access tokens of `user_id` issued before `not_before` (the change's time rounded up to the second: a login racing the change opens a session no event ends) refused |
//! | `user.password_changed` | nothing: the sessions it ends come as their own events |
//! | `reset` (the stream lost track) | the API-key cache emptied |
//!
//! Applying an event twice, or out of order, changes nothing more: each rule only ever widens
//! (the later `not_before` wins). Each rule is remembered only while a token it refuses could
//! still be valid: from the revocation (or `not_before`) for the longest lifetime a token of
//! its kind can have at the service, plus the leeway. Tokens carry `iat` in whole seconds, so
//! are the comparisons.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auth_api::Revocation;
use chrono::Utc;
use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use uuid::Uuid;

use crate::api_key_cache::ApiKeyCache;
use crate::config::RevocationStreamConfig;

/// Which tokens a revocation refuses, and until when it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    /// Tokens whose `iat` is below this are refused (`i64::MAX`: every token).
    issued_before: i64,
    /// Unix seconds after which no token the rule refuses can still be valid.
    forget_at: i64,
}

impl Rule {
    const fn every_token(forget_at: i64) -> Self {
        Self {
            issued_before: i64::MAX,
            forget_at,
        }
    }

    /// Both rules at once: the wider refusal, remembered the longer.
    fn merge(self, other: Self) -> Self {
        Self {
            issued_before: self.issued_before.max(other.issued_before),
            forget_at: self.forget_at.max(other.forget_at),
        }
    }

    const fn refuses(self, issued_at: i64) -> bool {
        issued_at < self.issued_before
    }
}

/// Each rule lives until its `forget_at`.
struct ForgetAt;

fn until(forget_at: i64) -> Duration {
    let secs = forget_at.saturating_sub(Utc::now().timestamp());
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

impl<K> Expiry<K, Rule> for ForgetAt {
    fn expire_after_create(&self, _: &K, rule: &Rule, _: Instant) -> Option<Duration> {
        Some(until(rule.forget_at))
    }

    fn expire_after_update(
        &self,
        _: &K,
        rule: &Rule,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(until(rule.forget_at))
    }
}

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// A rule was added or widened, or cached verdicts dropped.
    Applied,
    /// An action that needs nothing here (`user.password_changed`).
    Nothing,
    /// Every token it would refuse has expired already.
    Outdated,
    /// An action this build does not know, or one lacking the ids it needs.
    Ignored,
}

/// The revocations in force, and the API-key cache they act on.
pub(crate) struct Revocations {
    sessions: Cache<Uuid, Rule>,
    users: Cache<Uuid, Rule>,
    devices: Cache<String, Rule>,
    /// Revoked keys, so that a verdict loaded while the revocation arrived is refused too.
    keys: Cache<Uuid, Rule>,
    key_cache: Option<ApiKeyCache>,
    access_life: i64,
    device_life: i64,
    /// How long a revoked key id is kept: the longest a verdict loaded before it may live.
    key_memory: i64,
    leeway: i64,
    forgotten_early: Arc<AtomicU64>,
    verdicts_dropped: AtomicU64,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("sessions", &self.sessions.entry_count())
            .field("users", &self.users.entry_count())
            .field("devices", &self.devices.entry_count())
            .field("keys", &self.keys.entry_count())
            .finish_non_exhaustive()
    }
}

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Remembered entries of each kind, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) sessions: u64,
    pub(crate) users: u64,
    pub(crate) devices: u64,
    pub(crate) keys: u64,
    pub(crate) forgotten_early: u64,
    pub(crate) verdicts_dropped: u64,
}

impl Revocations {
    /// `key_ttl` is the API-key cache's TTL: the longest a verdict fetched before a
    /// revocation can be kept.
    pub(crate) fn new(
        config: &RevocationStreamConfig,
        leeway: Duration,
        key_cache: Option<ApiKeyCache>,
        key_ttl: Duration,
    ) -> Self {
        let forgotten_early = Arc::new(AtomicU64::new(0));
        Self {
            sessions: cache(
                "auth-client-revoked-sessions",
                config.capacity,
                &forgotten_early,
            ),
            users: cache(
                "auth-client-revoked-users",
                config.capacity,
                &forgotten_early,
            ),
            devices: cache(
                "auth-client-revoked-devices",
                config.capacity,
                &forgotten_early,
            ),
            keys: cache(
                "auth-client-revoked-keys",
                config.capacity,
                &forgotten_early,
            ),
            key_cache,
            access_life: seconds(config.max_access_token_lifetime),
            device_life: seconds(config.max_device_token_lifetime),
            // A load may have started a request timeout or two before the revocation.
            key_memory: seconds(key_ttl).saturating_add(60),
            leeway: seconds(leeway),
            forgotten_early,
            verdicts_dropped: AtomicU64::new(0),
        }
    }

    /// Applies one event of the stream, as of `now` (Unix seconds).
    pub(crate) async fn apply(&self, event: &Revocation, now: i64) -> Effect {
        let at = event.at.timestamp();
        // Without a `not_before` (a service that sends none), the event's second rounded up.
        let not_before = event
            .not_before
            .unwrap_or_else(|| at.saturating_add(i64::from(event.at.timestamp_subsec_nanos() > 0)));
        let access_until = |from: i64| {
            from.saturating_add(self.access_life)
                .saturating_add(self.leeway)
        };
        let device_until = |from: i64| {
            from.saturating_add(self.device_life)
                .saturating_add(self.leeway)
        };
        match event.action.as_str() {
            "session.ended" | "session.reuse_detected" => {
                let Some(session) = event.session_id else {
                    return Effect::Ignored;
                };
                add(
                    &self.sessions,
                    session,
                    Rule::every_token(access_until(at)),
                    now,
                )
                .await
            }
            "user.password_reset" | "user.disabled" | "user.deleted" => {
                let Some(user) = event.user_id else {
                    return Effect::Ignored;
                };
                // The service sends the reset's second (the user signs in again, maybe within
                // it), and for a disabled or deleted account the change's time rounded up.
                let issued_before = not_before;
                let rule = Rule {
                    issued_before,
                    forget_at: access_until(issued_before),
                };
                add(&self.users, user, rule, now).await
            }
            "device.revoked" => {
                let Some(device) = &event.device_id else {
                    return Effect::Ignored;
                };
                // Tokens are issued with `iat` up to a second ahead (after a rotation).
                let rule = Rule::every_token(device_until(at.saturating_add(1)));
                add(&self.devices, device.clone(), rule, now).await
            }
            "device.secret_rotated" => {
                let Some(device) = &event.device_id else {
                    return Effect::Ignored;
                };
                let rule = Rule {
                    issued_before: not_before,
                    forget_at: device_until(not_before),
                };
                add(&self.devices, device.clone(), rule, now).await
            }
            "api_key.updated" => {
                let Some(key) = event.key_id else {
                    return Effect::Ignored;
                };
                match &self.key_cache {
                    Some(cache) => {
                        let dropped = cache.forget_key_id(key).await;
                        self.verdicts_dropped(u64::try_from(dropped).unwrap_or(u64::MAX));
                        Effect::Applied
                    }
                    // No cache: nothing here holds a verdict.
                    None => Effect::Nothing,
                }
            }
            "api_key.revoked" | "api_key.rotated" => {
                let Some(key) = event.key_id else {
                    return Effect::Ignored;
                };
                let rule = Rule::every_token(now.saturating_add(self.key_memory));
                add(&self.keys, key, rule, now).await;
                if let Some(cache) = &self.key_cache {
                    let dropped = cache.forget_key_id(key).await;
                    self.verdicts_dropped(u64::try_from(dropped).unwrap_or(u64::MAX));
                }
                Effect::Applied
            }
            "user.password_changed" => Effect::Nothing,
            _ => Effect::Ignored,
        }
    }

    /// The stream lost track (`reset`): revocations may have been missed, so every cached
    /// key verdict goes. The rules known stay true.
    pub(crate) fn reset(&self) {
        if let Some(cache) = &self.key_cache {
            cache.clear();
        }
    }

    /// Whether an access token of `user` and `session`, issued at `issued_at`, is revoked.
    pub(crate) async fn refuses_access(&self, user: Uuid, session: Uuid, issued_at: i64) -> bool {
        if self
            .sessions
            .get(&session)
            .await
            .is_some_and(|r| r.refuses(issued_at))
        {
            return true;
        }
        self.users
            .get(&user)
            .await
            .is_some_and(|r| r.refuses(issued_at))
    }

    /// Whether a token of `device`, issued at `issued_at`, is revoked.
    pub(crate) async fn refuses_device(&self, device: &str, issued_at: i64) -> bool {
        self.devices
            .get(device)
            .await
            .is_some_and(|r| r.refuses(issued_at))
    }

    /// Whether the key `key_id` was revoked.
    pub(crate) async fn key_revoked(&self, key_id: Uuid) -> bool {
        self.keys.get(&key_id).await.is_some()
    }

    /// Counts cached key verdicts dropped because their key was revoked.
    pub(crate) fn verdicts_dropped(&self, count: u64) {
        self.verdicts_dropped.fetch_add(count, Ordering::Relaxed);
        metrics::counter!("auth_client_revoked_key_verdicts_dropped_total").increment(count);
    }

    pub(crate) fn counts(&self) -> Counts {
        Counts {
            sessions: self.sessions.entry_count(),
            users: self.users.entry_count(),
            devices: self.devices.entry_count(),
            keys: self.keys.entry_count(),
            forgotten_early: self.forgotten_early.load(Ordering::Relaxed),
            verdicts_dropped: self.verdicts_dropped.load(Ordering::Relaxed),
        }
    }

    /// Applies pending evictions, so that counts are exact.
    pub(crate) async fn sync(&self) {
        self.sessions.run_pending_tasks().await;
        self.users.run_pending_tasks().await;
        self.devices.run_pending_tasks().await;
        self.keys.run_pending_tasks().await;
    }
}

/// A cache of rules: the newest are always admitted and the oldest forgotten first when
/// full (LRU, not TinyLFU, which may refuse a new entry), each such loss counted.
fn cache<K>(name: &str, capacity: u64, forgotten_early: &Arc<AtomicU64>) -> Cache<K, Rule>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
{
    let lost = forgotten_early.clone();
    Cache::builder()
        .name(name)
        .max_capacity(capacity)
        .eviction_policy(EvictionPolicy::lru())
        .expire_after(ForgetAt)
        .eviction_listener(move |_, _, cause| {
            if cause == RemovalCause::Size {
                let before = lost.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("auth_client_revocations_forgotten_early_total").increment(1);
                if before == 0 {
                    tracing::warn!(
                        "revocations are forgotten before the tokens they refuse expire: \
                         raise RevocationStreamConfig::capacity"
                    );
                }
            }
        })
        .build()
}

/// Adds or widens the rule of `key`.
async fn add<K>(cache: &Cache<K, Rule>, key: K, rule: Rule, now: i64) -> Effect
where
    K: std::hash::Hash + Eq + Send + Sync + Clone + 'static,
{
    if rule.forget_at <= now {
        return Effect::Outdated;
    }
    // Events are applied by one task, one at a time: no update races with this one.
    let merged = match cache.get(&key).await {
        Some(known) => known.merge(rule),
        None => rule,
    };
    cache.insert(key, merged).await;
    Effect::Applied
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKeyCacheConfig;
    use crate::error::Error;
    use crate::types::{ApiKeyVerdict, VerifiedApiKey};
    use chrono::DateTime;
    use secrecy::SecretString;

    fn revocations(key_cache: Option<ApiKeyCache>) -> Revocations {
        let mut config = RevocationStreamConfig::new(SecretString::from("ak_test"));
        config.max_access_token_lifetime = Duration::from_secs(900);
        config.max_device_token_lifetime = Duration::from_secs(86_400);
        Revocations::new(
            &config,
            Duration::from_secs(30),
            key_cache,
            Duration::from_secs(300),
        )
    }

    fn event(action: &str, at: i64) -> Revocation {
        Revocation {
            seq: 1,
            action: action.into(),
            at: DateTime::from_timestamp(at, 500_000_000).unwrap(),
            session_id: None,
            user_id: None,
            key_id: None,
            device_id: None,
            organization_id: None,
            not_before: None,
        }
    }

    fn now() -> i64 {
        Utc::now().timestamp()
    }

    #[tokio::test]
    async fn an_ended_session_refuses_its_tokens_only() {
        let r = revocations(None);
        let (user, session, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let t = now();
        assert!(!r.refuses_access(user, session, t - 10).await);
        for action in ["session.ended", "session.reuse_detected"] {
            let mut e = event(action, t);
            e.session_id = Some(session);
            e.user_id = Some(user);
            assert_eq!(r.apply(&e, t).await, Effect::Applied);
        }
        assert!(r.refuses_access(user, session, t - 10).await);
        // Every token of the session, whatever its `iat`: none is issued after the end.
        assert!(r.refuses_access(user, session, t + 10).await);
        assert!(!r.refuses_access(user, other, t - 10).await);
        // No session id: nothing to refuse.
        assert_eq!(
            r.apply(&event("session.ended", t), t).await,
            Effect::Ignored
        );
    }

    #[tokio::test]
    async fn an_account_rule_refuses_tokens_issued_before_not_before() {
        let r = revocations(None);
        let user = Uuid::now_v7();
        let t = now();
        // Strictly before `not_before`, for every action: the service chooses the second
        // (the reset's own, or a disabling's rounded up).
        for (action, last_refused) in [
            ("user.password_reset", t - 1),
            ("user.disabled", t - 1),
            ("user.deleted", t - 1),
        ] {
            let r = revocations(None);
            let mut e = event(action, t);
            e.user_id = Some(user);
            e.not_before = Some(t);
            assert_eq!(r.apply(&e, t).await, Effect::Applied, "{action}");
            assert!(
                r.refuses_access(user, Uuid::now_v7(), last_refused).await,
                "{action}"
            );
            // A token of `not_before`'s second (a login right after a reset) is kept.
            assert!(
                !r.refuses_access(user, Uuid::now_v7(), last_refused + 1)
                    .await,
                "{action}"
            );
        }
        // The later `not_before` wins, whatever the order of arrival.
        let mut later = event("user.password_reset", t);
        later.user_id = Some(user);
        later.not_before = Some(t + 5);
        let mut earlier = later.clone();
        earlier.not_before = Some(t + 1);
        r.apply(&later, t).await;
        r.apply(&earlier, t).await;
        assert!(r.refuses_access(user, Uuid::now_v7(), t + 4).await);
        assert!(!r.refuses_access(user, Uuid::now_v7(), t + 5).await);
        // Without `not_before`: the event's second, rounded up.
        let r = revocations(None);
        let mut e = event("user.password_reset", t);
        e.user_id = Some(user);
        r.apply(&e, t).await;
        assert!(r.refuses_access(user, Uuid::now_v7(), t).await);
        assert!(!r.refuses_access(user, Uuid::now_v7(), t + 1).await);
        // A password change needs nothing: its ended sessions come as their own events.
        let mut e = event("user.password_changed", t);
        e.user_id = Some(user);
        let r = revocations(None);
        assert_eq!(r.apply(&e, t).await, Effect::Nothing);
        assert!(!r.refuses_access(user, Uuid::now_v7(), t - 100).await);
    }

    #[tokio::test]
    async fn device_rules_follow_revocation_and_rotation() {
        let r = revocations(None);
        let t = now();
        let mut rotated = event("device.secret_rotated", t);
        rotated.device_id = Some("frame-1".into());
        rotated.not_before = Some(t + 1);
        assert_eq!(r.apply(&rotated, t).await, Effect::Applied);
        assert!(r.refuses_device("frame-1", t).await);
        assert!(!r.refuses_device("frame-1", t + 1).await);
        assert!(!r.refuses_device("frame-2", t).await);

        let mut revoked = event("device.revoked", t + 2);
        revoked.device_id = Some("frame-1".into());
        assert_eq!(r.apply(&revoked, t).await, Effect::Applied);
        assert!(r.refuses_device("frame-1", t + 3).await);
        // A rotation replayed after the revocation narrows nothing.
        r.apply(&rotated, t).await;
        assert!(r.refuses_device("frame-1", t + 3).await);
    }

    #[tokio::test]
    async fn rules_are_not_kept_beyond_the_tokens_they_refuse() {
        let r = revocations(None);
        let t = now();
        // Ended 20 minutes ago: every access token of it (15 min + 30 s leeway) has expired.
        let mut old = event("session.ended", t - 1200);
        old.session_id = Some(Uuid::now_v7());
        assert_eq!(r.apply(&old, t).await, Effect::Outdated);
        // A device token lives a day: a revocation of 20 minutes ago still matters.
        let mut device = event("device.revoked", t - 1200);
        device.device_id = Some("frame-1".into());
        assert_eq!(r.apply(&device, t).await, Effect::Applied);
        r.sync().await;
        assert_eq!(
            (r.counts().sessions, r.counts().devices),
            (0, 1),
            "{:?}",
            r.counts()
        );
        assert_eq!(until(t + 100), Duration::from_secs(100));
        assert_eq!(until(t - 100), Duration::ZERO);
    }

    #[tokio::test]
    async fn unknown_actions_and_missing_ids_are_ignored() {
        let r = revocations(None);
        let t = now();
        for action in [
            "user.mfa_enabled",
            "something.new",
            "api_key.revoked",
            "device.revoked",
            "device.secret_rotated",
            "user.password_reset",
        ] {
            assert_eq!(
                r.apply(&event(action, t), t).await,
                Effect::Ignored,
                "{action}"
            );
        }
        r.sync().await;
        assert_eq!(r.counts(), Counts::default());
    }

    fn valid(key_id: Uuid) -> ApiKeyVerdict {
        ApiKeyVerdict::Valid(VerifiedApiKey {
            key_id,
            organization_id: Uuid::nil(),
            name: "k".into(),
            scopes: vec![],
            expires_at: None,
            meta: None,
            external_id: None,
            rate_limit: None,
            remaining: None,
        })
    }

    #[tokio::test]
    async fn a_key_revocation_drops_its_cached_verdicts_and_a_reset_drops_all() {
        let cache = ApiKeyCache::new(&ApiKeyCacheConfig::default());
        let r = revocations(Some(cache.clone()));
        let (revoked, kept) = (Uuid::now_v7(), Uuid::now_v7());
        for (key, id) in [("ak_a", revoked), ("ak_b", kept)] {
            let (_, hit) = cache
                .get_or_load(crate::api_key_cache::hash(key), async {
                    Ok::<_, Error>(valid(id))
                })
                .await
                .unwrap();
            assert!(!hit);
        }
        let t = now();
        let mut e = event("api_key.rotated", t);
        e.key_id = Some(revoked);
        assert_eq!(r.apply(&e, t).await, Effect::Applied);
        assert!(r.key_revoked(revoked).await);
        assert!(!r.key_revoked(kept).await);
        // The revoked key's verdict is gone (the next verification asks the service); the
        // other stays.
        let reloaded = cache
            .get_or_load(crate::api_key_cache::hash("ak_a"), async {
                Ok::<_, Error>(valid(revoked))
            })
            .await
            .unwrap();
        assert!(!reloaded.1);
        let other = cache
            .get_or_load(crate::api_key_cache::hash("ak_b"), async {
                Err::<ApiKeyVerdict, _>(Error::Config("not asked".into()))
            })
            .await
            .unwrap();
        assert!(other.1);
        // Twice is the same as once.
        assert_eq!(r.apply(&e, t).await, Effect::Applied);

        r.reset();
        cache.sync().await;
        assert_eq!(cache.entry_count(), 0);
    }

    #[tokio::test]
    async fn past_capacity_the_oldest_are_forgotten_and_counted() {
        let mut config = RevocationStreamConfig::new(SecretString::from("ak_test"));
        config.capacity = 10;
        let r = Revocations::new(
            &config,
            Duration::from_secs(30),
            None,
            Duration::from_secs(1),
        );
        let t = now();
        let sessions: Vec<Uuid> = (0..30).map(|_| Uuid::now_v7()).collect();
        for s in &sessions {
            let mut e = event("session.ended", t);
            e.session_id = Some(*s);
            r.apply(&e, t).await;
            r.sync().await;
        }
        // The newest are always admitted.
        assert!(r.refuses_access(Uuid::nil(), sessions[29], t).await);
        assert!(!r.refuses_access(Uuid::nil(), sessions[0], t).await);
        r.sync().await;
        let counts = r.counts();
        assert_eq!(counts.sessions, 10);
        assert_eq!(counts.forgotten_early, 20);
    }
}
