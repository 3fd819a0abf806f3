//! Scenarios of the API key and device services that depend on what the backend stores and
//! caches: run over the in-memory adapters (with a map cache and the fake signer) and over
//! Postgres (with Moka and the JWT signer).
//!
//! A backend's tests invoke [`service_scenario_tests!`](crate::service_scenario_tests) with an
//! async expression yielding a fresh [`Fixture`] and an expression yielding fresh
//! [`ServiceParts`]; it expands to one `#[tokio::test]` per scenario. As for the storage
//! contract, the scenarios are private functions registered in one list, so none can be left
//! out. The harness and the counting repositories are public, for the tests that only one
//! backend runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use secrecy::ExposeSecret as _;

use super::Fixture;
use crate::memory::{ManualClock, NoCache};
use crate::model::{
    ApiKey, ApiKeyChanges, ApiKeyId, ApiKeyName, ApiKeyPrefix, ApiKeySecret, CreditSpend, Device,
    DeviceId, DeviceMetadata, DeviceSecret, Email, ExternalId, HourUsage, Organization,
    OrganizationId, OrganizationName, PasswordHash, RateLimit, Refill, RefillPeriod, Scope, Scopes,
    TokenHash, TokenRejection, UsageBucket, UsageCounts, UsageGranularity, User, UserId, by_day,
    day_of, hour_of,
};
use crate::ports::{
    ApiKeyRepository, ChangeDeviceError, Clock as _, DeviceRepository, Lease, LeaseRequest,
    RegisterDeviceError, RevokeApiKeyError, StoreError, TokenSigner, UpdateApiKeyError,
    UserRepository, VerificationCache,
};
use crate::system::OsSecretGenerator;
use crate::{
    Actor, ApiKeyError, ApiKeyPorts, ApiKeyService, ApiKeyVerdict, DeviceError, DevicePorts,
    DeviceService, IssuedApiKey, KeyCheck, Metering, NewApiKey, NewDevice, OrganizationService,
};

/// What a backend brings to the service scenarios besides its repositories.
pub struct ServiceParts {
    /// The cache of API keys by hash.
    pub api_key_cache: Arc<dyn VerificationCache<TokenHash, Arc<ApiKey>>>,
    /// The cache of devices by id.
    pub device_cache: Arc<dyn VerificationCache<DeviceId, Arc<Device>>>,
    /// The signer of device tokens.
    pub signer: Arc<dyn TokenSigner>,
}

/// Expands to one `#[tokio::test]` per service scenario; `$fixture` is an async expression
/// yielding a fresh [`Fixture`], `$parts` an expression yielding fresh
/// [`ServiceParts`](crate::contract::services::ServiceParts).
///
/// No scenario can be left out, by the technique of
/// [`storage_contract_tests!`](crate::storage_contract_tests): a scenario is a **private**
/// `async fn` of `contract::services`, the list in the `@with` arm below is the only
/// declaration of which exist, and a scenario missing from it is dead code, a build error.
#[macro_export]
macro_rules! service_scenario_tests {
    ($fixture:expr, $parts:expr) => {
        $crate::service_scenario_tests!(@with each $fixture, $parts);
    };
    (@registry) => {
        $crate::service_scenario_tests!(@with registry);
    };
    // The list of every service scenario, once.
    (@with $arm:ident $($prefix:tt)*) => {
        $crate::service_scenario_tests!(@$arm $($prefix)*;
            expiry_usage_and_cache, expired_keys_are_not_rotated,
            batch_verification_looks_up_once, fast_path_batches_and_expiry,
            rotation_ends_earlier_tokens, credits_are_exact_across_instances,
            rate_limits_hold_across_instances, usage_is_counted_by_outcome);
    };
    (@registry; $($case:ident),* $(,)?) => {
        /// The service scenarios, one public function each (generated from the list in
        /// [`service_scenario_tests!`]; each scenario's rustdoc is on its private body in
        /// `contract/services.rs`).
        pub mod cases {
            $(
                #[doc = concat!("Runs the service scenario `", stringify!($case), "`.")]
                pub async fn $case(f: &impl super::Fixture, parts: super::ServiceParts) {
                    super::$case(f, parts).await;
                }
            )*
        }
    };
    (@each $fixture:expr, $parts:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $fixture.await;
                $crate::contract::services::cases::$case(&fixture, $parts).await;
            }
        )*
    };
}

service_scenario_tests!(@registry);

/// Debug output naming the type only: these hold services and repositories, not values.
macro_rules! opaque_debug {
    ($($ty:ident),*) => {
        $(
            impl std::fmt::Debug for $ty {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.debug_struct(stringify!($ty)).finish_non_exhaustive()
                }
            }
        )*
    };
}

opaque_debug!(
    ServiceParts,
    CountingApiKeys,
    CountingDevices,
    ServiceHarness
);

/// An organization with a fresh owner, created at `now`; and the owner.
async fn owned_org(f: &impl Fixture, now: DateTime<Utc>) -> (Organization, UserId) {
    let owner = User {
        id: UserId::generate(),
        email: Email::parse(&format!("o{}@example.com", UserId::generate())).unwrap(),
        display_name: None,
        password_hash: PasswordHash::new("$2b$04$x".into()),
        is_admin: false,
        email_verified_at: None,
        disabled_at: None,
        last_login_at: None,
        created_at: now,
        updated_at: now,
    };
    f.users().create(&owner).await.unwrap();
    let org = Organization {
        id: OrganizationId::generate(),
        name: OrganizationName::parse("Org").unwrap(),
        created_at: now,
    };
    f.organizations().create(&org, owner.id).await.unwrap();
    (org, owner.id)
}

/// An API key repository that counts lookups by hash, to show what reaches the store, and
/// fails them while [`down`](Self::down) is set.
pub struct CountingApiKeys {
    inner: Arc<dyn ApiKeyRepository>,
    /// Lookups of one hash so far.
    pub by_hash: AtomicUsize,
    /// Lookups of several hashes at once so far.
    pub by_hashes: AtomicUsize,
    /// The hashes the lookups of several asked for, in all.
    pub hashes_asked: AtomicUsize,
    /// Lookups by hash fail while set.
    pub down: AtomicBool,
}

impl CountingApiKeys {
    /// Counts the lookups made of `inner`, to which it passes every call.
    #[must_use]
    pub fn new(inner: Arc<dyn ApiKeyRepository>) -> Self {
        Self {
            inner,
            by_hash: AtomicUsize::new(0),
            by_hashes: AtomicUsize::new(0),
            hashes_asked: AtomicUsize::new(0),
            down: AtomicBool::new(false),
        }
    }

    /// Lookups by hash so far, of one hash or of several at once: each a round trip to the
    /// store.
    pub fn lookups(&self) -> usize {
        self.by_hash.load(Ordering::SeqCst) + self.by_hashes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ApiKeyRepository for CountingApiKeys {
    async fn create(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.inner.create(key).await
    }
    async fn find(&self, id: ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        self.inner.find(id).await
    }
    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiKey>, StoreError> {
        self.by_hash.fetch_add(1, Ordering::SeqCst);
        if AtomicBool::load(&self.down, Ordering::SeqCst) {
            return Err(StoreError::unavailable("database went away"));
        }
        self.inner.find_by_hash(hash).await
    }
    async fn find_by_hashes(&self, hashes: &[TokenHash]) -> Result<Vec<ApiKey>, StoreError> {
        self.by_hashes.fetch_add(1, Ordering::SeqCst);
        self.hashes_asked.fetch_add(hashes.len(), Ordering::SeqCst);
        if AtomicBool::load(&self.down, Ordering::SeqCst) {
            return Err(StoreError::unavailable("database went away"));
        }
        self.inner.find_by_hashes(hashes).await
    }
    async fn list(
        &self,
        org: OrganizationId,
        all: bool,
        external_id: Option<&ExternalId>,
    ) -> Result<Vec<ApiKey>, StoreError> {
        self.inner.list(org, all, external_id).await
    }
    async fn update(
        &self,
        id: ApiKeyId,
        changes: &ApiKeyChanges,
        now: DateTime<Utc>,
    ) -> Result<ApiKey, UpdateApiKeyError> {
        self.inner.update(id, changes, now).await
    }
    async fn revoke(&self, id: ApiKeyId, now: DateTime<Utc>) -> Result<ApiKey, RevokeApiKeyError> {
        self.inner.revoke(id, now).await
    }
    async fn rotate(
        &self,
        old: ApiKeyId,
        new: &ApiKey,
        now: DateTime<Utc>,
    ) -> Result<ApiKey, RevokeApiKeyError> {
        self.inner.rotate(old, new, now).await
    }
    async fn spend_credit(
        &self,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> Result<CreditSpend, StoreError> {
        if AtomicBool::load(&self.down, Ordering::SeqCst) {
            return Err(StoreError::unavailable("database went away"));
        }
        self.inner.spend_credit(id, now).await
    }
    async fn lease(&self, id: ApiKeyId, request: LeaseRequest) -> Result<Lease, StoreError> {
        if AtomicBool::load(&self.down, Ordering::SeqCst) {
            return Err(StoreError::unavailable("database went away"));
        }
        self.inner.lease(id, request).await
    }
    async fn record_usage(&self, usage: &[HourUsage]) -> Result<(), StoreError> {
        if AtomicBool::load(&self.down, Ordering::SeqCst) {
            return Err(StoreError::unavailable("database went away"));
        }
        self.inner.record_usage(usage).await
    }
    async fn usage(
        &self,
        id: ApiKeyId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        self.inner.usage(id, from, to).await
    }
}

/// Another instance of the key service over the same store (its own limiter, no cache).
fn another_instance(h: &ServiceHarness) -> ApiKeyService {
    ApiKeyService::new(
        ApiKeyPorts {
            keys: h.counting_keys.clone(),
            orgs: h.orgs.clone(),
            cache: Arc::new(NoCache),
            clock: h.clock.clone(),
            secrets: Arc::new(OsSecretGenerator),
        },
        ApiKeyPrefix::default(),
    )
}

/// The verdicts' codes, counted: `valid` for a valid one.
fn tally(checks: &[KeyCheck]) -> std::collections::BTreeMap<&'static str, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for check in checks {
        *counts
            .entry(check.verdict.error_code().unwrap_or("valid"))
            .or_default() += 1;
    }
    counts
}

/// 500 verifications at once of a key with 100 credits, spread over three instances (one
/// caching the key, two not), give exactly 100 valid answers, each reporting a different
/// count left, and 400 `USAGE_EXCEEDED`. A refused scope or a rate-limited verification
/// spends nothing. A daily refill is applied at midnight. A cached key whose credits were
/// removed or which was revoked by another instance is read again and judged as it is.
async fn credits_are_exact_across_instances(f: &impl Fixture, parts: ServiceParts) {
    let h = ServiceHarness::new(f, Arc::new(ManualClock::starting_now()), parts).await;
    let (b, c) = (another_instance(&h), another_instance(&h));
    let issued = issue_key(
        &h,
        NewApiKey {
            remaining: Some(100),
            ..new_key(h.org, None)
        },
    )
    .await;
    let text = issued.secret.expose().to_owned();
    let read = Scopes::new(vec![Scope::parse("read").unwrap()]).unwrap();
    let write = Scopes::new(vec![Scope::parse("write").unwrap()]).unwrap();
    // Not holding the scope: refused before the credits, nothing spent.
    assert_eq!(
        h.keys
            .check(&text, &write)
            .await
            .unwrap()
            .verdict
            .error_code(),
        Some("INSUFFICIENT_SCOPE")
    );
    let instances = [&h.keys, &b, &c];
    let checks = (0..500).map(|i| instances[i % 3].check(&text, &read));
    let checks: Vec<KeyCheck> = futures::future::join_all(checks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        tally(&checks),
        [("USAGE_EXCEEDED", 400), ("valid", 100)].into()
    );
    let mut left: Vec<u64> = checks.iter().filter_map(|c| c.metering.remaining).collect();
    left.sort_unstable();
    assert_eq!(left, (0..100).collect::<Vec<u64>>());
    let stored = h.keys.get(&Actor::Operator, issued.key.id).await.unwrap();
    assert_eq!(stored.credits.map(|c| c.remaining), Some(0));

    // Rate limit before credits: a limited-out verification spends no credit.
    let both = issue_key(
        &h,
        NewApiKey {
            remaining: Some(10),
            rate_limit: Some(RateLimit::new(2, 3600).unwrap()),
            ..new_key(h.org, None)
        },
    )
    .await;
    let both_text = both.secret.expose().to_owned();
    let mut verdicts = Vec::new();
    for _ in 0..5 {
        verdicts.push(h.keys.check(&both_text, &read).await.unwrap());
    }
    assert_eq!(tally(&verdicts), [("RATE_LIMITED", 3), ("valid", 2)].into());
    assert_eq!(
        verdicts
            .iter()
            .map(|c| c.metering.remaining)
            .collect::<Vec<_>>(),
        [Some(9), Some(8), None, None, None]
    );
    let stored = h.keys.get(&Actor::Operator, both.key.id).await.unwrap();
    assert_eq!(stored.credits.map(|c| c.remaining), Some(8));

    // A daily refill.
    let daily = issue_key(
        &h,
        NewApiKey {
            remaining: Some(0),
            refill: Some(Refill::new(2, RefillPeriod::Day).unwrap()),
            ..new_key(h.org, None)
        },
    )
    .await;
    let daily_text = daily.secret.expose().to_owned();
    assert_eq!(
        h.keys
            .check(&daily_text, &read)
            .await
            .unwrap()
            .verdict
            .error_code(),
        Some("USAGE_EXCEEDED")
    );
    h.clock
        .set(RefillPeriod::Day.period_start(h.clock.now()) + Duration::days(1));
    let mut refilled = Vec::new();
    for _ in 0..3 {
        refilled.push(b.check(&daily_text, &read).await.unwrap());
    }
    assert_eq!(
        refilled
            .iter()
            .map(|c| c.metering.remaining)
            .collect::<Vec<_>>(),
        [Some(1), Some(0), None]
    );

    // Changed elsewhere while cached here: credits removed, then the key revoked.
    let cached = issue_key(
        &h,
        NewApiKey {
            remaining: Some(5),
            ..new_key(h.org, None)
        },
    )
    .await;
    let cached_text = cached.secret.expose().to_owned();
    assert!(
        h.keys
            .check(&cached_text, &read)
            .await
            .unwrap()
            .verdict
            .error_code()
            .is_none()
    );
    b.update(
        &Actor::Operator,
        cached.key.id,
        &ApiKeyChanges {
            remaining: Some(None),
            ..ApiKeyChanges::default()
        },
    )
    .await
    .unwrap();
    let unmetered = h.keys.check(&cached_text, &read).await.unwrap();
    assert!(matches!(unmetered.verdict, ApiKeyVerdict::Valid(_)));
    assert_eq!(unmetered.metering, Metering::default());
    b.update(
        &Actor::Operator,
        cached.key.id,
        &ApiKeyChanges {
            remaining: Some(Some(5)),
            ..ApiKeyChanges::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        h.keys
            .check(&cached_text, &read)
            .await
            .unwrap()
            .metering
            .remaining,
        Some(4)
    );
    b.revoke(&Actor::Operator, cached.key.id).await.unwrap();
    assert_eq!(
        h.keys.check(&cached_text, &read).await.unwrap().verdict,
        ApiKeyVerdict::Revoked
    );

    // An outage while taking a credit is an error, never a verdict.
    let last = issue_key(
        &h,
        NewApiKey {
            remaining: Some(5),
            ..new_key(h.org, None)
        },
    )
    .await;
    let last_text = last.secret.expose().to_owned();
    assert!(h.keys.check(&last_text, &read).await.is_ok());
    h.counting_keys.down.store(true, Ordering::SeqCst);
    assert!(matches!(
        h.keys.check(&last_text, &read).await,
        Err(ApiKeyError::Store(_))
    ));
    h.counting_keys.down.store(false, Ordering::SeqCst);
    assert_eq!(
        h.keys
            .check(&last_text, &read)
            .await
            .unwrap()
            .metering
            .remaining,
        Some(3)
    );
}

/// Three instances verifying one key limited to 100 per window, 600 verifications at once:
/// exactly 100 valid, the rest `RATE_LIMITED` reporting nothing left. Budget leased to an
/// instance that stops is given back by its reconciliation and used by another; a new
/// window starts afresh; an outage while leasing is an error, never a verdict.
async fn rate_limits_hold_across_instances(f: &impl Fixture, parts: ServiceParts) {
    let h = ServiceHarness::new(f, Arc::new(ManualClock::starting_now()), parts).await;
    let limit = RateLimit::new(100, 3600).unwrap();
    // Well inside one window, so the manual clock's steps below do not leave it.
    h.clock
        .set(limit.window_start(h.clock.now()) + Duration::seconds(60));
    let (b, c) = (another_instance(&h), another_instance(&h));
    let issued = issue_key(
        &h,
        NewApiKey {
            rate_limit: Some(limit),
            ..new_key(h.org, None)
        },
    )
    .await;
    let text = issued.secret.expose().to_owned();
    let read = Scopes::new(vec![Scope::parse("read").unwrap()]).unwrap();
    let instances = [&h.keys, &b, &c];
    let checks = (0..600).map(|i| instances[i % 3].check(&text, &read));
    let checks: Vec<KeyCheck> = futures::future::join_all(checks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        tally(&checks),
        [("RATE_LIMITED", 500), ("valid", 100)].into()
    );
    for check in &checks {
        let Some(state) = check.metering.rate_limit else {
            panic!("every verdict reports the window");
        };
        assert_eq!((state.limit, state.reset_seconds), (100, 3540));
        if check.verdict.error_code().is_some() {
            assert_eq!(state.remaining, 0);
        }
    }

    // Budget leased to an idle instance comes back; a give-back that fails stays usable there.
    let limited = |limit, window| NewApiKey {
        rate_limit: Some(RateLimit::new(limit, window).unwrap()),
        ..new_key(h.org, None)
    };
    for give_back_fails in [false, true] {
        let small = issue(&h, limited(10, 3600)).await;
        // `c` takes a lease (a quarter of 10: 3) and uses one; `b` gets the other 7.
        assert_eq!(valid_of(&c, &small, 1).await, 1);
        assert_eq!(
            valid_of(&b, &small, 12).await,
            7,
            "c still holds 2 of the 10"
        );
        // Idle for the give-back delay (a tenth of the window, at most 1 s).
        h.clock.advance(Duration::seconds(1));
        if give_back_fails {
            h.counting_keys.down.store(true, Ordering::SeqCst);
            assert!(c.reconcile_limits().await.is_err());
            h.counting_keys.down.store(false, Ordering::SeqCst);
            assert_eq!(valid_of(&b, &small, 4).await, 0);
            assert_eq!(valid_of(&c, &small, 4).await, 2, "still c's to use");
        } else {
            assert_eq!(c.reconcile_limits().await.unwrap(), 2);
            assert_eq!(valid_of(&b, &small, 4).await, 2);
        }
    }

    // A new window starts afresh.
    let small = issue(&h, limited(10, 3600)).await;
    assert_eq!(valid_of(&b, &small, 12).await, 10);
    h.clock.advance(Duration::hours(1));
    assert_eq!(valid_of(&b, &small, 1).await, 1);

    // A change of the window's length starts a new count, whichever way (a longer window
    // begins before the shorter one did); a change of the limit alone keeps the count.
    let changing = h
        .keys
        .create(&Actor::Operator, limited(5, 60))
        .await
        .unwrap();
    let text = changing.secret.expose().to_owned();
    assert_eq!(valid_of(&h.keys, &text, 3).await, 3);
    for (limit, window, valid) in [(5, 86_400, 5), (5, 60, 5), (7, 60, 2)] {
        h.keys
            .update(
                &Actor::Operator,
                changing.key.id,
                &ApiKeyChanges {
                    rate_limit: Some(Some(RateLimit::new(limit, window).unwrap())),
                    ..ApiKeyChanges::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            valid_of(&h.keys, &text, 10).await,
            valid,
            "{limit}/{window}s"
        );
    }

    // An instance whose clock lags a window behind is served from the current window.
    let lagging_clock = Arc::new(ManualClock::starting_now());
    lagging_clock.set(h.clock.now() - Duration::hours(1));
    let lagging = ApiKeyService::new(
        ApiKeyPorts {
            clock: lagging_clock,
            keys: h.counting_keys.clone(),
            orgs: h.orgs.clone(),
            cache: Arc::new(NoCache),
            secrets: Arc::new(OsSecretGenerator),
        },
        ApiKeyPrefix::default(),
    );
    let shared = issue(&h, limited(10, 3600)).await;
    assert_eq!(valid_of(&b, &shared, 6).await, 6);
    // `b` still holds what is left of its last lease; the lagging instance gets the rest.
    let on_lagging = valid_of(&lagging, &shared, 10).await;
    assert!(on_lagging > 0, "not locked out by its clock");
    assert_eq!(on_lagging + valid_of(&b, &shared, 10).await, 4);

    // An outage while leasing is an error.
    h.counting_keys.down.store(true, Ordering::SeqCst);
    assert!(matches!(
        h.keys.check(&shared, &read).await,
        Err(ApiKeyError::Store(_))
    ));
    h.counting_keys.down.store(false, Ordering::SeqCst);
}

/// Every verification of a known key is counted by outcome, on each instance, and written by
/// its flush: 300 valid ones over three instances at once, one refused for want of scopes,
/// over the rate limit, for want of credits, expired, revoked; unknown keys and keys used to
/// manage keys are not counted. A flush that fails keeps its counts; hours add up into days.
async fn usage_is_counted_by_outcome(f: &impl Fixture, parts: ServiceParts) {
    let h = ServiceHarness::new(f, Arc::new(ManualClock::starting_now()), parts).await;
    let (b, c) = (another_instance(&h), another_instance(&h));
    let issued = issue_key(
        &h,
        NewApiKey {
            rate_limit: Some(RateLimit::new(1_000, 86_400).unwrap()),
            ..new_key(h.org, Some(1))
        },
    )
    .await;
    let (id, text) = (issued.key.id, issued.secret.expose().to_owned());
    let read = Scopes::new(vec![Scope::parse("read").unwrap()]).unwrap();
    let write = Scopes::new(vec![Scope::parse("write").unwrap()]).unwrap();
    let instances = [&h.keys, &b, &c];
    let checks = (0..300).map(|i| instances[i % 3].check(&text, &read));
    for check in futures::future::join_all(checks).await {
        let check = check.unwrap();
        assert!(check.verdict.error_code().is_none(), "{check:?}");
    }
    assert_eq!(
        h.keys
            .check(&text, &write)
            .await
            .unwrap()
            .verdict
            .error_code(),
        Some("INSUFFICIENT_SCOPE")
    );
    h.keys.authenticate(&text).await.unwrap();
    h.keys.check("ak_live_unknown", &read).await.unwrap();

    // The flush fails: the counts stay for the next one.
    h.counting_keys.down.store(true, Ordering::SeqCst);
    assert!(h.keys.flush_usage().await.is_err());
    h.counting_keys.down.store(false, Ordering::SeqCst);
    for instance in instances {
        instance.flush_usage().await.unwrap();
        assert_eq!(instance.pending_counts(), 0);
    }
    let hour = hour_of(h.clock.now());
    let usage = h
        .keys
        .usage(
            &Actor::Operator,
            id,
            hour,
            hour + Duration::hours(1),
            UsageGranularity::Hour,
        )
        .await
        .unwrap();
    assert_eq!(
        usage,
        [UsageBucket {
            start: hour,
            counts: UsageCounts {
                valid: 300,
                insufficient_scope: 1,
                ..UsageCounts::default()
            },
        }]
    );

    // The other outcomes, an hour later.
    h.clock.advance(Duration::hours(1));
    let limited = issue_key(
        &h,
        NewApiKey {
            rate_limit: Some(RateLimit::new(1, 86_400).unwrap()),
            remaining: Some(0),
            ..new_key(h.org, None)
        },
    )
    .await;
    let limited_text = limited.secret.expose().to_owned();
    for expected in ["USAGE_EXCEEDED", "RATE_LIMITED"] {
        let check = h.keys.check(&limited_text, &read).await.unwrap();
        assert_eq!(check.verdict.error_code(), Some(expected));
    }
    h.clock.advance(Duration::days(1));
    assert_eq!(
        h.keys.check(&text, &read).await.unwrap().verdict,
        ApiKeyVerdict::Expired
    );
    h.keys
        .revoke(&Actor::Operator, limited.key.id)
        .await
        .unwrap();
    assert_eq!(
        h.keys.check(&limited_text, &read).await.unwrap().verdict,
        ApiKeyVerdict::Revoked
    );
    h.keys.flush_usage().await.unwrap();
    let day = day_of(hour);
    let of = |key, granularity| {
        h.keys.usage(
            &Actor::Operator,
            key,
            day,
            day + Duration::days(3),
            granularity,
        )
    };
    let limited_days = of(limited.key.id, UsageGranularity::Day).await.unwrap();
    let total: u64 = limited_days.iter().map(|b| b.counts.total()).sum();
    assert_eq!(total, 3);
    assert_eq!(
        limited_days
            .iter()
            .fold(UsageCounts::default(), |mut sum, b| {
                sum.add(&b.counts);
                sum
            }),
        UsageCounts {
            rate_limited: 1,
            usage_exceeded: 1,
            revoked: 1,
            ..UsageCounts::default()
        }
    );
    let days = of(id, UsageGranularity::Day).await.unwrap();
    let hours = of(id, UsageGranularity::Hour).await.unwrap();
    assert_eq!(by_day(&hours), days);
    assert_eq!(
        days.iter().map(|b| b.counts.total()).sum::<u64>(),
        302,
        "300 valid, 1 scope, 1 expired"
    );
    // Another organization's manager sees nothing of it.
    let (_, stranger) = owned_org(f, h.clock.now()).await;
    assert!(matches!(
        h.keys
            .usage(
                &Actor::User {
                    id: stranger,
                    is_admin: false
                },
                id,
                day,
                day + Duration::days(1),
                UsageGranularity::Hour
            )
            .await,
        Err(ApiKeyError::NotFound)
    ));
}

/// Creates `new` through the harness's service.
async fn issue_key(h: &ServiceHarness, new: NewApiKey) -> IssuedApiKey {
    h.keys.create(&Actor::Operator, new).await.unwrap()
}

/// Creates `new` through the harness's service; the key's text.
async fn issue(h: &ServiceHarness, new: NewApiKey) -> String {
    issue_key(h, new).await.secret.expose().to_owned()
}

/// How many of `n` verifications of `text` (for `read`), one after another, are valid.
async fn valid_of(keys: &ApiKeyService, text: &str, n: usize) -> usize {
    let read = Scopes::new(vec![Scope::parse("read").unwrap()]).unwrap();
    let mut valid = 0;
    for _ in 0..n {
        if keys
            .check(text, &read)
            .await
            .unwrap()
            .verdict
            .error_code()
            .is_none()
        {
            valid += 1;
        }
    }
    valid
}

/// A key named `svc` with the `read` scope, expiring in `days`.
#[must_use]
pub fn new_key(org: OrganizationId, days: Option<u32>) -> NewApiKey {
    NewApiKey {
        organization_id: org,
        name: ApiKeyName::parse("svc").unwrap(),
        scopes: Scopes::new(vec![Scope::parse("read").unwrap()]).unwrap(),
        expires_in_days: days,
        meta: None,
        external_id: None,
        rate_limit: None,
        remaining: None,
        refill: None,
    }
}

/// Expiry, batched `last_used_at` (read back at the store's precision), checksum refusal
/// without I/O, cache eviction on revoke.
async fn expiry_usage_and_cache(f: &impl Fixture, parts: ServiceParts) {
    let h = ServiceHarness::new(f, Arc::new(ManualClock::starting_now()), parts).await;
    let issued = h
        .keys
        .create(&Actor::Operator, new_key(h.org, Some(1)))
        .await
        .unwrap();
    let text = issued.secret.expose().to_owned();

    // Garbage and bad checksums never reach the store.
    assert_eq!(
        h.keys
            .verify("ak_live_nope", &Scopes::default())
            .await
            .unwrap(),
        ApiKeyVerdict::Invalid
    );
    let mut typo = text.clone().into_bytes();
    typo[10] = if typo[10] == b'x' { b'y' } else { b'x' };
    assert_eq!(
        h.keys
            .verify(&String::from_utf8(typo).unwrap(), &Scopes::default())
            .await
            .unwrap(),
        ApiKeyVerdict::Invalid
    );
    assert_eq!(h.counting_keys.by_hash.load(Ordering::SeqCst), 0);

    // Repeated verifications load once.
    for _ in 0..5 {
        assert!(matches!(
            h.keys.verify(&text, &Scopes::default()).await.unwrap(),
            ApiKeyVerdict::Valid(_)
        ));
    }
    assert_eq!(h.counting_keys.by_hash.load(Ordering::SeqCst), 1);

    // last_used_at is written in a batch, only when flushed.
    let used_at = h.clock.now();
    assert!(
        h.keys
            .get(&Actor::Operator, issued.key.id)
            .await
            .unwrap()
            .last_used_at
            .is_none()
    );
    assert_eq!(h.keys.flush_usage().await.unwrap(), 1);
    assert_eq!(
        h.keys
            .get(&Actor::Operator, issued.key.id)
            .await
            .unwrap()
            .last_used_at,
        Some(used_at)
    );
    assert_eq!(h.keys.flush_usage().await.unwrap(), 0);

    // Expiry comes from the clock, even for a cached key.
    h.clock.advance(Duration::days(1));
    assert_eq!(
        h.keys.verify(&text, &Scopes::default()).await.unwrap(),
        ApiKeyVerdict::Expired
    );

    // Revocation evicts at once: the next verify reloads and sees it.
    let other = h
        .keys
        .create(&Actor::Operator, new_key(h.org, None))
        .await
        .unwrap();
    let other_text = other.secret.expose().to_owned();
    assert!(matches!(
        h.keys
            .verify(&other_text, &Scopes::default())
            .await
            .unwrap(),
        ApiKeyVerdict::Valid(_)
    ));
    h.keys.revoke(&Actor::Operator, other.key.id).await.unwrap();
    assert_eq!(
        h.keys
            .verify(&other_text, &Scopes::default())
            .await
            .unwrap(),
        ApiKeyVerdict::Revoked
    );

    // The operator may act only on organizations that exist.
    let missing = new_key(OrganizationId::generate(), None);
    assert!(matches!(
        h.keys.create(&Actor::Operator, missing).await,
        Err(ApiKeyError::NotFound)
    ));
}

/// Rotating an expired key is refused: it would hand out a new key that is already dead. The
/// expired key is left as it was; an active key rotates with its absolute expiry.
async fn expired_keys_are_not_rotated(f: &impl Fixture, parts: ServiceParts) {
    let h = ServiceHarness::new(f, Arc::new(ManualClock::starting_now()), parts).await;
    let issued = h
        .keys
        .create(&Actor::Operator, new_key(h.org, Some(1)))
        .await
        .unwrap();
    h.clock.advance(Duration::days(2));
    let result = h.keys.rotate(&Actor::Operator, issued.key.id).await;
    assert!(
        matches!(result, Err(ApiKeyError::Expired)),
        "an expired key is not rotated: {:?}",
        result.map(|i| i.key)
    );
    let stored = h.keys.get(&Actor::Operator, issued.key.id).await.unwrap();
    assert_eq!(stored.revoked_at, None);
    assert_eq!(
        h.keys
            .list(&Actor::Operator, h.org, true, None)
            .await
            .unwrap()
            .len(),
        1
    );

    // Revoked and expired: revoked wins, as in its status.
    h.keys
        .revoke(&Actor::Operator, issued.key.id)
        .await
        .unwrap();
    assert!(matches!(
        h.keys.rotate(&Actor::Operator, issued.key.id).await,
        Err(ApiKeyError::AlreadyRevoked)
    ));

    let live = h
        .keys
        .create(&Actor::Operator, new_key(h.org, Some(1)))
        .await
        .unwrap();
    let rotated = h.keys.rotate(&Actor::Operator, live.key.id).await.unwrap();
    assert_eq!(rotated.key.expires_at, live.key.expires_at);
}

/// A verdict as `(error code, key id)`, to compare verdicts whatever precision the store
/// keeps times at.
fn verdict_of(verdict: &ApiKeyVerdict) -> (Option<&'static str>, Option<ApiKeyId>) {
    let id = match verdict {
        ApiKeyVerdict::Valid(key)
        | ApiKeyVerdict::InsufficientScope(key)
        | ApiKeyVerdict::RateLimited(key)
        | ApiKeyVerdict::UsageExceeded(key) => Some(key.id),
        ApiKeyVerdict::Invalid | ApiKeyVerdict::Revoked | ApiKeyVerdict::Expired => None,
    };
    (verdict.error_code(), id)
}

/// A batch gives each key the verdict a single verification gives it, in order, whatever mix
/// of cached, uncached, unknown, malformed, revoked, expired and repeated keys it holds. The
/// keys the cache lacks are looked up in one store call (100 cold keys: one call for the 100),
/// none when all are cached; uses are recorded as for single verifications; with the store
/// down, a batch that needs it fails, and one answered from the cache does not.
async fn batch_verification_looks_up_once(f: &impl Fixture, parts: ServiceParts) {
    let h = ServiceHarness::new(f, Arc::new(ManualClock::starting_now()), parts).await;
    let (none, write) = (Scopes::default(), scopes_of(&["write"]));
    let mut cold = Vec::new();
    for _ in 0..100 {
        cold.push(
            h.keys
                .create(&Actor::Operator, new_key(h.org, None))
                .await
                .unwrap(),
        );
    }
    let texts: Vec<&str> = cold.iter().map(|issued| issued.secret.expose()).collect();
    let checks: Vec<(&str, &Scopes)> = texts.iter().map(|text| (*text, &none)).collect();
    let lookups = &h.counting_keys;
    for round in ["cold", "cached"] {
        let before = lookups.lookups();
        let verdicts = h.keys.verify_batch(&checks).await.unwrap();
        let ids: Vec<_> = verdicts.iter().map(verdict_of).collect();
        let expected: Vec<_> = cold.iter().map(|i| (None, Some(i.key.id))).collect();
        assert_eq!(ids, expected, "{round}: every key valid, in order");
        let expected_lookups = usize::from(round == "cold");
        assert_eq!(lookups.lookups() - before, expected_lookups, "{round}");
    }
    assert_eq!(lookups.by_hash.load(Ordering::SeqCst), 0);
    assert_eq!(lookups.hashes_asked.load(Ordering::SeqCst), 100);

    // A mix: cached, not yet seen, unknown, malformed, revoked, expired, a missing scope, and
    // repeats.
    let fresh = h
        .keys
        .create(&Actor::Operator, new_key(h.org, None))
        .await
        .unwrap();
    let gone = h
        .keys
        .create(&Actor::Operator, new_key(h.org, None))
        .await
        .unwrap();
    assert!(matches!(
        h.keys.verify(gone.secret.expose(), &none).await.unwrap(),
        ApiKeyVerdict::Valid(_)
    ));
    h.keys.revoke(&Actor::Operator, gone.key.id).await.unwrap();
    let expiring = h
        .keys
        .create(&Actor::Operator, new_key(h.org, Some(1)))
        .await
        .unwrap();
    h.clock.advance(Duration::days(1));
    let mut random = [0u8; 64];
    getrandom::fill(&mut random).unwrap();
    let unknown = ApiKeySecret::from_random(&ApiKeyPrefix::default(), &random).unwrap();
    let mut typo = fresh.secret.expose().to_owned().into_bytes();
    typo[10] = if typo[10] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).unwrap();
    let mix: Vec<(&str, &Scopes)> = vec![
        (texts[0], &none),
        (fresh.secret.expose(), &none),
        (fresh.secret.expose(), &write),
        (unknown.expose(), &none),
        ("ak_live_nope", &none),
        (typo.as_str(), &none),
        (gone.secret.expose(), &none),
        (expiring.secret.expose(), &none),
        (fresh.secret.expose(), &none),
        (unknown.expose(), &write),
        (texts[1], &write),
    ];
    let expected = vec![
        (None, Some(cold[0].key.id)),
        (None, Some(fresh.key.id)),
        (Some("INSUFFICIENT_SCOPE"), Some(fresh.key.id)),
        (Some("INVALID"), None),
        (Some("INVALID"), None),
        (Some("INVALID"), None),
        (Some("REVOKED"), None),
        (Some("EXPIRED"), None),
        (None, Some(fresh.key.id)),
        (Some("INVALID"), None),
        (Some("INSUFFICIENT_SCOPE"), Some(cold[1].key.id)),
    ];
    let (before, asked) = (
        lookups.lookups(),
        lookups.hashes_asked.load(Ordering::SeqCst),
    );
    let verdicts = h.keys.verify_batch(&mix).await.unwrap();
    assert_eq!(
        verdicts.iter().map(verdict_of).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(lookups.lookups() - before, 1, "one lookup for the mix");
    assert_eq!(
        lookups.hashes_asked.load(Ordering::SeqCst) - asked,
        4,
        "the fresh, unknown, revoked and expired keys, once each"
    );
    // The same answers again, from the cache alone, and one by one.
    let before = lookups.lookups();
    let again = h.keys.verify_batch(&mix).await.unwrap();
    assert_eq!(again.iter().map(verdict_of).collect::<Vec<_>>(), expected);
    for ((presented, required), expected) in mix.iter().zip(&expected) {
        let single = h.keys.verify(presented, required).await.unwrap();
        assert_eq!(&verdict_of(&single), expected, "{expected:?}");
    }
    assert_eq!(lookups.lookups(), before, "all cached");

    // Uses are noted as single verifications note them: an entry per key and hour verified
    // (the 100 and the revoked key a day ago; now the first cold key, the fresh, revoked and
    // expired keys and the key lacking a scope), the last use only of a valid one.
    assert_eq!(h.keys.flush_usage().await.unwrap(), 106);
    let last_used = async |id| h.keys.get(&Actor::Operator, id).await.unwrap().last_used_at;
    assert_eq!(last_used(fresh.key.id).await, Some(h.clock.now()));
    assert_eq!(last_used(cold[0].key.id).await, Some(h.clock.now()));
    let a_day_ago = h.clock.now() - Duration::days(1);
    assert_eq!(last_used(cold[1].key.id).await, Some(a_day_ago));
    assert_eq!(last_used(gone.key.id).await, Some(a_day_ago));
    assert_eq!(last_used(expiring.key.id).await, None);

    // The store down: a batch answered from the cache still answers; one that needs the
    // store fails as a whole.
    let uncached = h
        .keys
        .create(&Actor::Operator, new_key(h.org, None))
        .await
        .unwrap();
    lookups.down.store(true, Ordering::SeqCst);
    let cached_only: Vec<(&str, &Scopes)> = vec![(texts[2], &none), ("ak_live_x", &none)];
    assert_eq!(
        h.keys
            .verify_batch(&cached_only)
            .await
            .unwrap()
            .iter()
            .map(verdict_of)
            .collect::<Vec<_>>(),
        vec![(None, Some(cold[2].key.id)), (Some("INVALID"), None)]
    );
    let needs_store: Vec<(&str, &Scopes)> =
        vec![(texts[2], &none), (uncached.secret.expose(), &none)];
    let err = h.keys.verify_batch(&needs_store).await.unwrap_err();
    assert!(
        matches!(err, ApiKeyError::Store(StoreError::Unavailable(_))),
        "{err:?}"
    );
    lookups.down.store(false, Ordering::SeqCst);
    assert_eq!(
        verdict_of(&h.keys.verify_batch(&needs_store).await.unwrap()[1]),
        (None, Some(uncached.key.id)),
        "an outage is not cached"
    );
}

fn scopes_of(names: &[&str]) -> Scopes {
    Scopes::new(names.iter().map(|s| Scope::parse(s).unwrap()).collect()).unwrap()
}

/// A device repository that counts lookups by id, to show what reaches the store.
pub struct CountingDevices {
    inner: Arc<dyn DeviceRepository>,
    /// Lookups by id so far.
    pub finds: AtomicUsize,
}

#[async_trait]
impl DeviceRepository for CountingDevices {
    async fn register(&self, d: &Device) -> Result<(), RegisterDeviceError> {
        self.inner.register(d).await
    }
    async fn find(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        self.inner.find(id).await
    }
    async fn list(&self, org: OrganizationId) -> Result<Vec<Device>, StoreError> {
        self.inner.list(org).await
    }
    async fn rotate_secret(
        &self,
        id: &DeviceId,
        h: &TokenHash,
        not_before: DateTime<Utc>,
    ) -> Result<Device, ChangeDeviceError> {
        self.inner.rotate_secret(id, h, not_before).await
    }
    async fn revoke(&self, id: &DeviceId, now: DateTime<Utc>) -> Result<Device, ChangeDeviceError> {
        self.inner.revoke(id, now).await
    }
    async fn record_authentications(
        &self,
        seen: &[(DeviceId, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        self.inner.record_authentications(seen).await
    }
}

/// The key and device services over a fixture's stores (each read through a counting
/// repository), a backend's [`ServiceParts`] and a manual clock, with an organization and its
/// owner. Devices get 24-hour tokens.
pub struct ServiceHarness {
    /// The key service under test.
    pub keys: ApiKeyService,
    /// The device service under test.
    pub devices: DeviceService,
    /// Their clock.
    pub clock: Arc<ManualClock>,
    /// The key service's repository.
    pub counting_keys: Arc<CountingApiKeys>,
    /// The device service's repository.
    pub counting_devices: Arc<CountingDevices>,
    /// The organization, created at the clock's time.
    pub org: OrganizationId,
    /// The organization's owner.
    pub owner: UserId,
    /// The fixture's users.
    pub users: Arc<dyn UserRepository>,
    /// The organization service both services check access with.
    pub orgs: OrganizationService,
}

impl ServiceHarness {
    /// The services over `f`'s repositories, `clock` and `parts`.
    pub async fn new(f: &impl Fixture, clock: Arc<ManualClock>, parts: ServiceParts) -> Self {
        let (org, owner) = owned_org(f, clock.now()).await;
        let orgs = OrganizationService::new(f.organizations(), f.users(), clock.clone());
        let counting_keys = Arc::new(CountingApiKeys::new(f.api_keys()));
        let keys = ApiKeyService::new(
            ApiKeyPorts {
                keys: counting_keys.clone(),
                orgs: orgs.clone(),
                cache: parts.api_key_cache,
                clock: clock.clone(),
                secrets: Arc::new(OsSecretGenerator),
            },
            ApiKeyPrefix::default(),
        );
        let counting_devices = Arc::new(CountingDevices {
            inner: f.devices(),
            finds: AtomicUsize::new(0),
        });
        let devices = DeviceService::new(
            DevicePorts {
                devices: counting_devices.clone(),
                orgs: orgs.clone(),
                cache: parts.device_cache,
                signer: parts.signer,
                clock: clock.clone(),
                secrets: Arc::new(OsSecretGenerator),
            },
            Duration::hours(24),
        );
        Self {
            keys,
            devices,
            clock,
            counting_keys,
            counting_devices,
            org: org.id,
            owner,
            users: f.users(),
            orgs,
        }
    }

    /// The text of a token the device authenticates for.
    pub async fn token_of(&self, id: &DeviceId, secret: &DeviceSecret) -> String {
        self.devices
            .authenticate(id, secret)
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_owned()
    }
}

/// A device of `org` with id `id`, no name and no metadata.
#[must_use]
pub fn new_device(id: &str, org: OrganizationId) -> NewDevice {
    NewDevice {
        id: DeviceId::parse(id).unwrap(),
        organization_id: org,
        name: None,
        metadata: DeviceMetadata::default(),
    }
}

fn revoked(result: Result<impl std::fmt::Debug, DeviceError>) -> bool {
    matches!(
        result,
        Err(DeviceError::InvalidToken(TokenRejection::Revoked))
    )
}

/// The fast path reads the store once, authentications are recorded in batches (and read
/// back at the store's precision), tokens expire with the clock, rotation and revocation end
/// the old credentials at once.
async fn fast_path_batches_and_expiry(f: &impl Fixture, parts: ServiceParts) {
    let clock = Arc::new(ManualClock::starting_now());
    let now = clock.now();
    let h = ServiceHarness::new(f, clock.clone(), parts).await;
    let (devices, counting) = (&h.devices, &h.counting_devices);
    let id = DeviceId::parse("frame-1").unwrap();
    let issued = devices
        .register(&Actor::Operator, new_device("frame-1", h.org))
        .await
        .unwrap();
    let secret = issued.secret.clone();

    // Ten authentications, one store read.
    let mut token = String::new();
    for _ in 0..10 {
        token = h.token_of(&id, &secret).await;
    }
    assert_eq!(counting.finds.load(Ordering::SeqCst), 1);
    assert!(matches!(
        devices
            .authenticate(&id, &DeviceSecret::presented("ds_wrong"))
            .await,
        Err(DeviceError::InvalidCredentials)
    ));

    // last_authenticated_at is written only when flushed, in one batch.
    assert!(
        devices
            .get(&Actor::Operator, &id)
            .await
            .unwrap()
            .last_authenticated_at
            .is_none()
    );
    assert_eq!(devices.flush_seen().await.unwrap(), 1);
    assert_eq!(
        devices
            .get(&Actor::Operator, &id)
            .await
            .unwrap()
            .last_authenticated_at,
        Some(now)
    );

    // The token verifies until it expires (24 h plus the 30 s leeway).
    assert!(devices.verify_token(&token).await.is_ok());
    clock.advance(Duration::hours(24) + Duration::seconds(30));
    assert!(matches!(
        devices.verify_token(&token).await,
        Err(DeviceError::InvalidToken(TokenRejection::Expired))
    ));
    clock.set(now);

    // Rotation evicts the cached device: the old secret fails at once.
    let rotated = devices.rotate_secret(&Actor::Operator, &id).await.unwrap();
    assert!(matches!(
        devices.authenticate(&id, &secret).await,
        Err(DeviceError::InvalidCredentials)
    ));
    assert!(devices.authenticate(&id, &rotated.secret).await.is_ok());
    // Revocation ends authentication and every token.
    devices.revoke(&Actor::Operator, &id).await.unwrap();
    assert!(matches!(
        devices.authenticate(&id, &rotated.secret).await,
        Err(DeviceError::InvalidCredentials)
    ));
    assert!(matches!(
        devices.verify_token(&token).await,
        Err(DeviceError::InvalidToken(TokenRejection::Revoked))
    ));
}

/// A secret rotation ends every token minted before it, including one minted earlier in the
/// same second (token `iat` is whole seconds, as in a JWT) or at the very same instant;
/// tokens minted after it, in the same second or later, verify. Read through the cache, as
/// in production.
async fn rotation_ends_earlier_tokens(f: &impl Fixture, parts: ServiceParts) {
    // 12:00:00.250 on a whole second, so the sub-second cases are exact.
    let start = DateTime::from_timestamp(Utc::now().timestamp(), 250_000_000).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let h = ServiceHarness::new(f, clock.clone(), parts).await;
    let devices = &h.devices;
    let id = DeviceId::parse("frame-rotating").unwrap();
    let first = devices
        .register(&Actor::Operator, new_device("frame-rotating", h.org))
        .await
        .unwrap()
        .secret;
    let early = h.token_of(&id, &first).await;
    assert!(devices.verify_token(&early).await.is_ok());

    // Rotation at .700 of the same second: the .250 token dies, a .900 token lives.
    clock.advance(Duration::milliseconds(450));
    let second = devices
        .rotate_secret(&Actor::Operator, &id)
        .await
        .unwrap()
        .secret;
    assert!(
        revoked(devices.verify_token(&early).await),
        "minted before, same second"
    );
    clock.advance(Duration::milliseconds(200));
    let after = h.token_of(&id, &second).await;
    let (claims, _) = devices.verify_token(&after).await.unwrap();
    assert_eq!(claims.issued_at.timestamp(), start.timestamp() + 1);
    assert!(claims.expires_at - claims.issued_at == Duration::hours(24));

    // Still verifying seconds later; ended by the next rotation, made exactly on a whole
    // second, as is a token minted at that very instant before it.
    clock.set(DateTime::from_timestamp(start.timestamp() + 5, 0).unwrap());
    assert!(devices.verify_token(&after).await.is_ok());
    let same_instant = h.token_of(&id, &second).await;
    let third = devices
        .rotate_secret(&Actor::Operator, &id)
        .await
        .unwrap()
        .secret;
    assert!(revoked(devices.verify_token(&after).await));
    assert!(
        revoked(devices.verify_token(&same_instant).await),
        "same instant"
    );
    let last = h.token_of(&id, &third).await;
    assert!(devices.verify_token(&last).await.is_ok());

    // Revocation still ends every token.
    devices.revoke(&Actor::Operator, &id).await.unwrap();
    assert!(revoked(devices.verify_token(&last).await));
}

#[cfg(test)]
mod tests {
    /// A `pub` scenario would escape the `dead_code` check that makes registration compulsory.
    #[test]
    fn no_scenario_is_public() {
        let source = include_str!("services.rs");
        assert!(
            !source.contains("\npub async fn"),
            "service scenarios are private `async fn`s, registered in `service_scenario_tests!`"
        );
    }
}
