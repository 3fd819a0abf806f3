//! What handlers share: the services and the probes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auth_core::model::PasswordPolicy;
use auth_core::ports::InvalidationBus;
use auth_core::{
    AccountService, ApiKeyService, AuditService, CacheInvalidator, DeviceService,
    OrganizationService,
};

use crate::revocations::RevocationHub;

/// What a store probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    /// `postgres` or `memory`.
    pub kind: &'static str,
    /// The store answered.
    pub reachable: bool,
    /// The schema is the one this build expects.
    pub schema_current: bool,
    /// How long the probe took.
    pub latency: Duration,
}

/// Checks the store for `/health` and `/health/ready`.
///
/// Implementations MUST answer within the store's timeout (never hang), and never fail:
/// an unreachable store is `reachable: false`.
#[async_trait]
pub trait StoreProbe: Send + Sync + 'static {
    /// Probes the store.
    async fn probe(&self) -> StoreHealth;

    /// Publishes the store's gauges (pool state) before `/metrics` renders; nothing by default.
    fn record_metrics(&self) {}
}

/// How long one probe result answers `/health` and `/health/ready`.
pub const PROBE_CACHE_TTL: Duration = Duration::from_secs(1);

/// A [`StoreProbe`] behind a one-second cache that concurrent callers share: `/health` needs
/// no credentials, so without it anyone could make the service query its database at will.
/// However many calls arrive, the store sees at most about one probe a second; callers that
/// arrive while a probe runs wait for its result instead of starting their own.
#[derive(Clone)]
pub struct SharedProbe {
    probe: Arc<dyn StoreProbe>,
    last: Arc<tokio::sync::Mutex<Option<(Instant, StoreHealth)>>>,
}

impl SharedProbe {
    /// Caches `probe`.
    #[must_use]
    pub fn new(probe: Arc<dyn StoreProbe>) -> Self {
        Self {
            probe,
            last: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// The store's health, at most [`PROBE_CACHE_TTL`] old.
    pub async fn probe(&self) -> StoreHealth {
        // Held across the probe: that is what makes concurrent callers share one.
        let mut last = self.last.lock().await;
        if let Some((at, health)) = last.as_ref()
            && at.elapsed() < PROBE_CACHE_TTL
        {
            return health.clone();
        }
        let health = self.probe.probe().await;
        *last = Some((Instant::now(), health.clone()));
        health
    }

    /// Publishes the store's gauges.
    pub fn record_metrics(&self) {
        self.probe.record_metrics();
    }
}

impl From<Arc<dyn StoreProbe>> for SharedProbe {
    fn from(probe: Arc<dyn StoreProbe>) -> Self {
        Self::new(probe)
    }
}

impl std::fmt::Debug for SharedProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedProbe").finish_non_exhaustive()
    }
}

/// Shared by every handler (`web::Data<AppState>`).
#[derive(Clone)]
pub struct AppState {
    /// Users and sessions.
    pub auth: AccountService,
    /// Rules for new passwords.
    pub password_policy: PasswordPolicy,
    /// Organizations and memberships.
    pub orgs: OrganizationService,
    /// API keys.
    pub keys: ApiKeyService,
    /// Devices.
    pub devices: DeviceService,
    /// The invalidation bus (its connection decides readiness).
    pub bus: Arc<dyn InvalidationBus>,
    /// The store's health, probed at most about once a second.
    pub store: SharedProbe,
    /// The public keys that verify tokens, as a JWK set.
    pub jwks: Arc<serde_json::Value>,
    /// Per-IP rate limits.
    pub rate_limits: Arc<crate::rate_limit::RateLimits>,
    /// Origins allowed by CORS (`CORS_ORIGINS`); none by default.
    pub cors_origins: Vec<String>,
    /// This instance's verification caches (their size shows in `/health`).
    pub caches: CacheInvalidator,
    /// The audit trail.
    pub audit: AuditService,
    /// The revocation stream's subscribers (fed by this instance's log follower).
    pub revocations: Arc<RevocationHub>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("auth", &self.auth)
            .field("password_policy", &self.password_policy)
            .finish_non_exhaustive()
    }
}
