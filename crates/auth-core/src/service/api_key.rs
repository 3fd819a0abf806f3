//! `ApiKeyService`: create, list, get, revoke, rotate and verify API keys.
//!
//! Verification is the hot path: a malformed key or bad checksum is refused with no I/O; a
//! well-formed one is looked up by its SHA-256 through the [`VerificationCache`] (concurrent
//! misses share one load, store errors are never cached). A batch looks up every key its
//! cache lacks in one store call. Revocation evicts locally at once; the repository announces
//! it to every other instance in the same atomic step.

use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound as _, Utc};

use super::actor::Actor;
use super::key_limits::{RateLimitState, RateLimiter};
use super::key_usage::UsageCounter;
use super::organization::{OrganizationError, OrganizationService};
use crate::model::{
    ApiKey, ApiKeyChanges, ApiKeyId, ApiKeyMeta, ApiKeyName, ApiKeyPrefix, ApiKeySecret,
    ApiKeyStatus, CreditSpend, Credits, ExternalId, KeyOutcome, OrganizationId, RateLimit, Refill,
    Scopes, TokenHash, UsageBucket, UsageGranularity, by_day, expiry_allowed, parse_presented_key,
};
use crate::ports::{
    ApiKeyRepository, BoxError, Clock, RevokeApiKeyError, SecretGenerator, StoreError,
    UpdateApiKeyError, VerificationCache,
};

/// What can go wrong with API keys.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// No such key or organization, or the caller may not see it.
    #[error("not found")]
    NotFound,
    /// The caller sees it but may not manage it.
    #[error("forbidden")]
    Forbidden,
    /// Revoke or rotate of a revoked key.
    #[error("already revoked")]
    AlreadyRevoked,
    /// Rotate or change of an expired key: its replacement would be born dead, and reviving
    /// it is a deliberate `create`.
    #[error("the key has expired")]
    Expired,
    /// A change names an expiry that is not after now, or more than 3650 days ahead.
    #[error("expires_at must be after now and at most 3650 days ahead")]
    ExpiryOutOfRange,
    /// A refill given without a count of credits beside it.
    #[error("refill needs remaining")]
    RefillWithoutCredits,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The random source failed.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

/// The organization checks' answers, as seen from a key: what the caller may not see is not
/// found; a store failure stays one.
impl From<OrganizationError> for ApiKeyError {
    fn from(err: OrganizationError) -> Self {
        match err {
            OrganizationError::Forbidden => Self::Forbidden,
            OrganizationError::Store(e) => Self::Store(e),
            OrganizationError::NotFound
            | OrganizationError::AlreadyMember
            | OrganizationError::LastOwner => Self::NotFound,
        }
    }
}

/// The verdict on a presented key. The record is the one the cache holds, shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeyVerdict {
    /// Active and holding every required scope.
    Valid(Arc<ApiKey>),
    /// Malformed, bad checksum, or unknown.
    Invalid,
    /// Revoked.
    Revoked,
    /// Expired.
    Expired,
    /// Active but lacking a required scope.
    InsufficientScope(Arc<ApiKey>),
    /// Active, holding the scopes, but over its rate limit for this window.
    RateLimited(Arc<ApiKey>),
    /// Active, holding the scopes, within its rate limit, but with no credit left.
    UsageExceeded(Arc<ApiKey>),
}

impl ApiKeyVerdict {
    /// The API error code (`INVALID`, `REVOKED`, `EXPIRED`, `INSUFFICIENT_SCOPE`,
    /// `RATE_LIMITED`, `USAGE_EXCEEDED`), if not valid.
    #[must_use]
    pub const fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::Valid(_) => None,
            Self::Invalid => Some("INVALID"),
            Self::Revoked => Some("REVOKED"),
            Self::Expired => Some("EXPIRED"),
            Self::InsufficientScope(_) => Some("INSUFFICIENT_SCOPE"),
            Self::RateLimited(_) => Some("RATE_LIMITED"),
            Self::UsageExceeded(_) => Some("USAGE_EXCEEDED"),
        }
    }
}

/// What a verification of a limited key reports beside its verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metering {
    /// The rate limit's state, for a key with one that got as far as its limit.
    pub rate_limit: Option<RateLimitState>,
    /// Credits left after this use, for a valid verification of a key with credits.
    pub remaining: Option<u64>,
}

/// A verdict with what the key's limits report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCheck {
    /// The verdict.
    pub verdict: ApiKeyVerdict,
    /// What the limits report (nothing for a key without limits).
    pub metering: Metering,
}

impl KeyCheck {
    fn plain(verdict: ApiKeyVerdict) -> Self {
        Self {
            verdict,
            metering: Metering::default(),
        }
    }
}

/// A new key: the record and the secret, shown once.
#[derive(Debug, Clone)]
pub struct IssuedApiKey {
    /// The stored record.
    pub key: ApiKey,
    /// The plaintext key.
    pub secret: ApiKeySecret,
}

/// What a new key is made of.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// Owner.
    pub organization_id: OrganizationId,
    /// Name.
    pub name: ApiKeyName,
    /// Scopes.
    pub scopes: Scopes,
    /// Lifetime in days, if it expires.
    pub expires_in_days: Option<u32>,
    /// What the owner says about the key.
    pub meta: Option<ApiKeyMeta>,
    /// The owner's own id for whom the key is issued.
    pub external_id: Option<ExternalId>,
    /// Valid verifications allowed per window, if limited.
    pub rate_limit: Option<RateLimit>,
    /// Uses allowed, if counted.
    pub remaining: Option<u64>,
    /// How the uses come back; only with `remaining`.
    pub refill: Option<Refill>,
}

impl NewApiKey {
    /// A key of `organization_id` named `name` with `scopes`, and nothing else: no expiry,
    /// metadata, external id, rate limit or credits (set those fields after, as needed).
    #[must_use]
    pub const fn new(organization_id: OrganizationId, name: ApiKeyName, scopes: Scopes) -> Self {
        Self {
            organization_id,
            name,
            scopes,
            expires_in_days: None,
            meta: None,
            external_id: None,
            rate_limit: None,
            remaining: None,
            refill: None,
        }
    }
}

/// The ports `ApiKeyService` runs on.
#[derive(Clone)]
pub struct ApiKeyPorts {
    /// Key records.
    pub keys: Arc<dyn ApiKeyRepository>,
    /// Organizations, for access checks.
    pub orgs: OrganizationService,
    /// Cache of lookups by hash. Records are shared (`Arc`), so a hit copies no scope list.
    pub cache: Arc<dyn VerificationCache<TokenHash, Arc<ApiKey>>>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Randomness for keys.
    pub secrets: Arc<dyn SecretGenerator>,
}

impl std::fmt::Debug for ApiKeyPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyPorts").finish_non_exhaustive()
    }
}

/// API keys.
#[derive(Clone)]
pub struct ApiKeyService {
    ports: ApiKeyPorts,
    prefix: ApiKeyPrefix,
    counts: UsageCounter,
    limiter: RateLimiter,
}

impl std::fmt::Debug for ApiKeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyService")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// How a verdict on a known key is counted (`None`: not a known key).
const fn outcome(verdict: &ApiKeyVerdict) -> Option<KeyOutcome> {
    Some(match verdict {
        ApiKeyVerdict::Valid(_) => KeyOutcome::Valid,
        ApiKeyVerdict::InsufficientScope(_) => KeyOutcome::InsufficientScope,
        ApiKeyVerdict::RateLimited(_) => KeyOutcome::RateLimited,
        ApiKeyVerdict::UsageExceeded(_) => KeyOutcome::UsageExceeded,
        ApiKeyVerdict::Expired => KeyOutcome::Expired,
        ApiKeyVerdict::Revoked => KeyOutcome::Revoked,
        ApiKeyVerdict::Invalid => return None,
    })
}

/// The verdict on a looked-up key (`None`: unknown) at `now`, before its limits.
fn judge(found: Option<Arc<ApiKey>>, required: &Scopes, now: DateTime<Utc>) -> ApiKeyVerdict {
    let Some(key) = found else {
        return ApiKeyVerdict::Invalid;
    };
    match key.status(now) {
        ApiKeyStatus::Revoked => ApiKeyVerdict::Revoked,
        ApiKeyStatus::Expired => ApiKeyVerdict::Expired,
        ApiKeyStatus::Active if !key.scopes.grant(required) => {
            ApiKeyVerdict::InsufficientScope(key)
        }
        ApiKeyStatus::Active => ApiKeyVerdict::Valid(key),
    }
}

impl ApiKeyService {
    /// Builds the service; keys are issued as `<prefix>_…`.
    #[must_use]
    pub fn new(ports: ApiKeyPorts, prefix: ApiKeyPrefix) -> Self {
        Self {
            ports,
            prefix,
            counts: UsageCounter::default(),
            limiter: RateLimiter::default(),
        }
    }

    /// The key prefix in force.
    #[must_use]
    pub fn prefix(&self) -> &ApiKeyPrefix {
        &self.prefix
    }

    async fn authorize(&self, actor: &Actor, org: OrganizationId) -> Result<(), ApiKeyError> {
        Ok(self.ports.orgs.authorize(actor, org).await?)
    }

    fn mint(
        &self,
        template: &NewApiKey,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<IssuedApiKey, ApiKeyError> {
        let mut random = [0u8; 64];
        self.ports
            .secrets
            .fill(&mut random)
            .map_err(|e| ApiKeyError::Internal(Box::new(e)))?;
        let secret = ApiKeySecret::from_random(&self.prefix, &random).ok_or_else(|| {
            ApiKeyError::Internal("random source returned too few usable bytes".into())
        })?;
        let created_at = self.ports.clock.now();
        let key = ApiKey {
            id: ApiKeyId::generate(),
            organization_id: template.organization_id,
            name: template.name.clone(),
            prefix: secret.display_prefix(&self.prefix),
            key_hash: secret.hash(),
            scopes: template.scopes.clone(),
            created_at,
            expires_at,
            revoked_at: None,
            last_used_at: None,
            meta: template.meta.clone(),
            external_id: template.external_id.clone(),
            rate_limit: template.rate_limit,
            credits: template.remaining.map(|remaining| Credits {
                remaining,
                refill: template.refill,
                refilled_at: created_at,
            }),
        };
        Ok(IssuedApiKey { key, secret })
    }

    /// Creates a key for an organization the actor manages.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, or a store failure.
    pub async fn create(&self, actor: &Actor, new: NewApiKey) -> Result<IssuedApiKey, ApiKeyError> {
        if new.refill.is_some() && new.remaining.is_none() {
            return Err(ApiKeyError::RefillWithoutCredits);
        }
        self.authorize(actor, new.organization_id).await?;
        let now = self.ports.clock.now();
        let expires_at = new
            .expires_in_days
            .map(|days| now + Duration::days(i64::from(days)));
        let issued = self.mint(&new, expires_at)?;
        self.ports.keys.create(&issued.key).await?;
        tracing::info!(key_id = %issued.key.id, organization_id = %issued.key.organization_id, "API key created");
        Ok(issued)
    }

    /// The keys of an organization the actor manages.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, or a store failure.
    pub async fn list(
        &self,
        actor: &Actor,
        org: OrganizationId,
        include_revoked: bool,
        external_id: Option<&ExternalId>,
    ) -> Result<Vec<ApiKey>, ApiKeyError> {
        self.authorize(actor, org).await?;
        Ok(self
            .ports
            .keys
            .list(org, include_revoked, external_id)
            .await?)
    }

    /// Changes a key in place. Every instance drops its cached record (the repository
    /// announces the change with it), this one at once.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, `AlreadyRevoked`, `Expired`, `ExpiryOutOfRange`, or a store
    /// failure.
    pub async fn update(
        &self,
        actor: &Actor,
        id: ApiKeyId,
        changes: &ApiKeyChanges,
    ) -> Result<ApiKey, ApiKeyError> {
        if changes.refill_without_count() {
            return Err(ApiKeyError::RefillWithoutCredits);
        }
        let key = self.get(actor, id).await?;
        let now = self.ports.clock.now();
        if let Some(Some(expires_at)) = changes.expires_at
            && !expiry_allowed(expires_at, now)
        {
            return Err(ApiKeyError::ExpiryOutOfRange);
        }
        // To the microsecond, as every store keeps it: the answer is what is stored.
        let truncated;
        let changes = match changes.expires_at {
            Some(Some(expires_at)) => {
                truncated = ApiKeyChanges {
                    expires_at: Some(Some(expires_at.trunc_subsecs(6))),
                    ..changes.clone()
                };
                &truncated
            }
            _ => changes,
        };
        match self.ports.keys.update(id, changes, now).await {
            Ok(changed) => {
                if !changes.is_empty() {
                    self.forget(key.key_hash).await;
                    tracing::info!(key_id = %id, organization_id = %key.organization_id, changed = ?changes.members(), "API key changed");
                }
                Ok(changed)
            }
            Err(UpdateApiKeyError::AlreadyRevoked) => {
                self.forget(key.key_hash).await;
                Err(ApiKeyError::AlreadyRevoked)
            }
            Err(UpdateApiKeyError::Expired) => Err(ApiKeyError::Expired),
            Err(UpdateApiKeyError::NotFound) => Err(ApiKeyError::NotFound),
            Err(UpdateApiKeyError::Store(e)) => Err(ApiKeyError::Store(e)),
        }
    }

    /// One key, if the actor manages its organization.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, or a store failure.
    pub async fn get(&self, actor: &Actor, id: ApiKeyId) -> Result<ApiKey, ApiKeyError> {
        let key = self
            .ports
            .keys
            .find(id)
            .await?
            .ok_or(ApiKeyError::NotFound)?;
        self.authorize(actor, key.organization_id).await?;
        Ok(key)
    }

    /// Forgets the key here at once. Every other instance was told by the repository, in the
    /// same atomic step as the revocation, so a revocation that committed was announced.
    async fn forget(&self, hash: TokenHash) {
        self.ports.cache.invalidate(&hash).await;
    }

    /// Revokes a key.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, `AlreadyRevoked`, or a store failure.
    pub async fn revoke(&self, actor: &Actor, id: ApiKeyId) -> Result<ApiKey, ApiKeyError> {
        let key = self.get(actor, id).await?;
        let now = self.ports.clock.now();
        let result = self.ports.keys.revoke(id, now).await;
        match result {
            Ok(revoked) => {
                self.forget(key.key_hash).await;
                tracing::info!(key_id = %id, organization_id = %key.organization_id, "API key revoked");
                Ok(revoked)
            }
            Err(RevokeApiKeyError::AlreadyRevoked) => {
                self.forget(key.key_hash).await;
                Err(ApiKeyError::AlreadyRevoked)
            }
            Err(RevokeApiKeyError::NotFound) => Err(ApiKeyError::NotFound),
            Err(RevokeApiKeyError::Store(e)) => Err(ApiKeyError::Store(e)),
        }
    }

    /// Replaces a key with a new one of the same name, scopes, organization and expiry; the
    /// old key is revoked at once. An expired key is not rotated: keeping its expiry would
    /// hand out a key that is already dead, and giving a new one would revive a key its
    /// manager let lapse; a new key (with a chosen expiry) is the way forward.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, `AlreadyRevoked` (revoked wins over expired), `Expired`, or a
    /// store failure.
    pub async fn rotate(&self, actor: &Actor, id: ApiKeyId) -> Result<IssuedApiKey, ApiKeyError> {
        let old = self.get(actor, id).await?;
        if old.status(self.ports.clock.now()) == ApiKeyStatus::Expired {
            return Err(ApiKeyError::Expired);
        }
        let template = NewApiKey {
            organization_id: old.organization_id,
            name: old.name.clone(),
            scopes: old.scopes.clone(),
            expires_in_days: None,
            meta: old.meta.clone(),
            external_id: old.external_id.clone(),
            rate_limit: old.rate_limit,
            remaining: None,
            refill: None,
        };
        let mut issued = self.mint(&template, old.expires_at)?;
        let now = self.ports.clock.now();
        match self.ports.keys.rotate(id, &issued.key, now).await {
            Ok(revoked) => {
                // As stored: the members the old key had at the rotation.
                issued.key = issued.key.succeeding(&revoked);
                self.forget(old.key_hash).await;
                tracing::info!(old_key_id = %id, new_key_id = %issued.key.id, "API key rotated");
                Ok(issued)
            }
            Err(RevokeApiKeyError::AlreadyRevoked) => {
                self.forget(old.key_hash).await;
                Err(ApiKeyError::AlreadyRevoked)
            }
            Err(RevokeApiKeyError::NotFound) => Err(ApiKeyError::NotFound),
            Err(RevokeApiKeyError::Store(e)) => Err(ApiKeyError::Store(e)),
        }
    }

    /// Verifies a presented key against `required` scopes (at most [`Scopes::MAX`], by
    /// construction), with its limits: [`Self::check`] without what they report.
    ///
    /// # Errors
    /// As [`Self::check`].
    pub async fn verify(
        &self,
        presented: &str,
        required: &Scopes,
    ) -> Result<ApiKeyVerdict, ApiKeyError> {
        Ok(self.check(presented, required).await?.verdict)
    }

    /// Verifies a presented key against `required` scopes (at most [`Scopes::MAX`], by
    /// construction). A cache hit shares the cached record: nothing is copied. A key with a
    /// rate limit takes a use of its window (no I/O while this instance holds a lease of it);
    /// a key with credits takes one in the store, whatever the cache holds. Checks run in the
    /// contract's order: shape, known, revoked, expired, scopes, rate limit, credits.
    ///
    /// # Errors
    /// A store failure for a key not in the cache, or while taking a lease or a credit (never
    /// turned into a verdict).
    pub async fn check(&self, presented: &str, required: &Scopes) -> Result<KeyCheck, ApiKeyError> {
        let Some(hash) = parse_presented_key(&self.prefix, presented) else {
            return Ok(KeyCheck::plain(ApiKeyVerdict::Invalid));
        };
        let found = self.lookup(hash).await?;
        self.settle(hash, found, required).await
    }

    /// The verdict on a key used to manage keys (`X-API-Key`): as [`Self::verify`], but the
    /// key's rate limit and credits are neither consulted nor spent, since they meter the
    /// verifications the key's holder asks for, not its management of keys.
    ///
    /// # Errors
    /// A store failure for a key not in the cache.
    pub async fn authenticate(&self, presented: &str) -> Result<ApiKeyVerdict, ApiKeyError> {
        let Some(hash) = parse_presented_key(&self.prefix, presented) else {
            return Ok(ApiKeyVerdict::Invalid);
        };
        let found = self.lookup(hash).await?;
        let now = self.ports.clock.now();
        let verdict = judge(found, &Scopes::default(), now);
        if let ApiKeyVerdict::Valid(key) = &verdict {
            self.counts.note_use(key.id, now);
        }
        Ok(verdict)
    }

    async fn lookup(&self, hash: TokenHash) -> Result<Option<Arc<ApiKey>>, ApiKeyError> {
        let keys = self.ports.keys.clone();
        Ok(self
            .ports
            .cache
            .get_or_load(
                hash,
                Box::pin(async move { Ok(keys.find_by_hash(&hash).await?.map(Arc::new)) }),
            )
            .await?)
    }

    /// Verifies several presented keys at once, each against its own required scopes, with
    /// the verdicts of [`Self::verify`], in order.
    ///
    /// # Errors
    /// As [`Self::check_batch`].
    pub async fn verify_batch(
        &self,
        checks: &[(&str, &Scopes)],
    ) -> Result<Vec<ApiKeyVerdict>, ApiKeyError> {
        Ok(self
            .check_batch(checks)
            .await?
            .into_iter()
            .map(|check| check.verdict)
            .collect())
    }

    /// Verifies several presented keys at once, each against its own required scopes, as
    /// [`Self::check`] does, in order. Every well-formed key the cache lacks is looked up in
    /// one store call for the whole batch (a key given twice, once); malformed keys cost no
    /// I/O. Limited keys are metered one item after the other, in order.
    ///
    /// # Errors
    /// A store failure when a key not in the cache had to be looked up, or a limit could not
    /// be taken: the whole batch fails, as no verdict is made of an outage.
    pub async fn check_batch(
        &self,
        checks: &[(&str, &Scopes)],
    ) -> Result<Vec<KeyCheck>, ApiKeyError> {
        let hashes: Vec<Option<TokenHash>> = checks
            .iter()
            .map(|(presented, _)| parse_presented_key(&self.prefix, presented))
            .collect();
        let wanted: Vec<TokenHash> = hashes.iter().flatten().copied().collect();
        let found = if wanted.is_empty() {
            Vec::new()
        } else {
            let keys = self.ports.keys.clone();
            self.ports
                .cache
                .get_or_load_many(
                    &wanted,
                    Box::new(move |missing| {
                        Box::pin(async move {
                            Ok(keys
                                .find_by_hashes(&missing)
                                .await?
                                .into_iter()
                                .map(|key| (key.key_hash, Arc::new(key)))
                                .collect())
                        })
                    }),
                )
                .await?
        };
        let mut found = found.into_iter();
        let mut results = Vec::with_capacity(checks.len());
        for ((_, required), hash) in checks.iter().zip(&hashes) {
            results.push(match hash {
                Some(hash) => self.settle(*hash, found.next().flatten(), required).await?,
                None => KeyCheck::plain(ApiKeyVerdict::Invalid),
            });
        }
        Ok(results)
    }

    /// The verdict on a looked-up key (`None`: unknown), its limits applied; a valid key's
    /// use is noted.
    async fn settle(
        &self,
        hash: TokenHash,
        found: Option<Arc<ApiKey>>,
        required: &Scopes,
    ) -> Result<KeyCheck, ApiKeyError> {
        let now = self.ports.clock.now();
        let id = found.as_ref().map(|key| key.id);
        let check = match judge(found, required, now) {
            ApiKeyVerdict::Valid(key) if key.is_metered() => {
                self.meter(hash, key, required, now).await?
            }
            ApiKeyVerdict::Valid(key) => KeyCheck::plain(ApiKeyVerdict::Valid(key)),
            refused => KeyCheck::plain(refused),
        };
        if let (Some(id), Some(outcome)) = (id, outcome(&check.verdict)) {
            self.counts.note(id, now, outcome);
        }
        Ok(check)
    }

    /// Applies the rate limit, then takes a credit. A key the store no longer meters as read
    /// (revoked, expired, or its credits removed since it was cached) is read again past the
    /// cache and judged afresh, once.
    async fn meter(
        &self,
        hash: TokenHash,
        mut key: Arc<ApiKey>,
        required: &Scopes,
        now: DateTime<Utc>,
    ) -> Result<KeyCheck, ApiKeyError> {
        let mut metering = Metering::default();
        for _ in 0..2 {
            if let (Some(limit), None) = (key.rate_limit, metering.rate_limit) {
                let decision = self
                    .limiter
                    .acquire(&*self.ports.keys, key.id, limit, &*self.ports.clock)
                    .await?;
                metering.rate_limit = Some(decision.state);
                if !decision.allowed {
                    return Ok(KeyCheck {
                        verdict: ApiKeyVerdict::RateLimited(key),
                        metering,
                    });
                }
            }
            if key.credits.is_some() {
                match self.ports.keys.spend_credit(key.id, now).await? {
                    CreditSpend::Spent { remaining } => metering.remaining = Some(remaining),
                    CreditSpend::Exhausted => {
                        return Ok(KeyCheck {
                            verdict: ApiKeyVerdict::UsageExceeded(key),
                            metering,
                        });
                    }
                    CreditSpend::Unmetered => {
                        self.forget(hash).await;
                        let fresh = self.ports.keys.find_by_hash(&hash).await?.map(Arc::new);
                        match judge(fresh, required, now) {
                            ApiKeyVerdict::Valid(fresh) => {
                                key = fresh;
                                continue;
                            }
                            refused => {
                                return Ok(KeyCheck {
                                    verdict: refused,
                                    metering,
                                });
                            }
                        }
                    }
                }
            }
            return Ok(KeyCheck {
                verdict: ApiKeyVerdict::Valid(key),
                metering,
            });
        }
        Err(ApiKeyError::Store(StoreError::internal(
            "the key's credits changed during its verification",
        )))
    }

    /// Gives back the rate-limit leases this instance has not drawn from lately, so that other
    /// instances may use that budget. The server calls it every 50 ms.
    ///
    /// # Errors
    /// A store failure.
    pub async fn reconcile_limits(&self) -> Result<u32, ApiKeyError> {
        Ok(self
            .limiter
            .reconcile(&*self.ports.keys, self.ports.clock.now())
            .await?)
    }

    /// Writes the verification counts and last uses gathered since the last call, in
    /// batches; returns how many keys and hours were written. The server calls it every few
    /// seconds and at shutdown; on failure what failed is kept for the next call.
    ///
    /// # Errors
    /// A store failure.
    pub async fn flush_usage(&self) -> Result<usize, ApiKeyError> {
        Ok(self
            .counts
            .flush(|batch| {
                let keys = self.ports.keys.clone();
                async move {
                    let result = keys.record_usage(&batch).await;
                    (batch, result)
                }
            })
            .await?)
    }

    /// Keys × hours whose use was gathered here and not written yet.
    #[must_use]
    pub fn pending_counts(&self) -> usize {
        self.counts.pending()
    }

    /// The verifications of a key the actor manages, by outcome, per hour or per day (UTC),
    /// for the hours that start in `[from, to)`; periods with none are left out. Up to a
    /// flush (a few seconds) behind.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, or a store failure.
    pub async fn usage(
        &self,
        actor: &Actor,
        id: ApiKeyId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: UsageGranularity,
    ) -> Result<Vec<UsageBucket>, ApiKeyError> {
        self.get(actor, id).await?;
        let hours = self.ports.keys.usage(id, from, to).await?;
        Ok(match granularity {
            UsageGranularity::Hour => hours,
            UsageGranularity::Day => by_day(&hours),
        })
    }
}
