//! What handlers share: the services and the probes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use auth_core::model::PasswordPolicy;
use auth_core::ports::InvalidationBus;
use auth_core::{ApiKeyService, AuthService, CacheInvalidator, DeviceService, OrganizationService};

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

/// Shared by every handler (`web::Data<AppState>`).
#[derive(Clone)]
pub struct AppState {
    /// Users and sessions.
    pub auth: AuthService,
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
    /// The store's health.
    pub store: Arc<dyn StoreProbe>,
    /// The public keys that verify tokens, as a JWK set.
    pub jwks: Arc<serde_json::Value>,
    /// Per-IP rate limits.
    pub rate_limits: Arc<crate::rate_limit::RateLimits>,
    /// Origins allowed by CORS (`CORS_ORIGINS`); none by default.
    pub cors_origins: Vec<String>,
    /// This instance's verification caches (their size shows in `/health`).
    pub caches: CacheInvalidator,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("auth", &self.auth)
            .field("password_policy", &self.password_policy)
            .finish_non_exhaustive()
    }
}
