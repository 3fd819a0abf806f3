//! Domain model, ports and services of the authentication service.
//!
//! This crate knows nothing of HTTP, SQL or caches: it holds the rules. Storage, hashing,
//! signing and time come in through the traits in [`ports`]; [`service`] applies the rules
//! over them. With the `memory` feature, `memory` provides in-memory adapters for every
//! storage port, so the whole service runs (and is tested) with no database.

pub mod audit;
pub mod model;
pub mod ports;
pub mod service;
pub mod system;

#[cfg(feature = "memory")]
pub mod memory;

#[cfg(feature = "testing")]
pub mod contract;

pub use model::*;
pub use ports::ErrorChain;
pub use service::account::{
    AccountConfig, AccountError, AccountPorts, AccountService, ImportedUser, Principal,
    Registration, SessionSnapshot,
};
pub use service::actor::Actor;
pub use service::api_key::{
    ApiKeyError, ApiKeyPorts, ApiKeyService, ApiKeyVerdict, IssuedApiKey, KeyCheck, Metering,
    NewApiKey,
};
pub use service::audit::{AuditService, TrailPage};
pub use service::device::{
    DeviceError, DevicePorts, DeviceService, DeviceToken, IssuedDevice, NewDevice,
};
pub use service::follow::LogFollower;
pub use service::invalidation::CacheInvalidator;
pub use service::key_limits::RateLimitState;
pub use service::mail::{OutboxPass, OutboxWorker, RetryPolicy};
pub use service::organization::{Caller, OrganizationError, OrganizationService};
pub use service::retention::RetentionService;

/// The names before the areas took one stem each (`Account*`, `ApiKey*`, `Organization*`,
/// `Device*`); kept for one release so that embedders can move at their own pace.
#[deprecated(since = "0.2.0", note = "renamed to `AccountService`")]
pub type AuthService = AccountService;
#[deprecated(since = "0.2.0", note = "renamed to `AccountError`")]
pub type AuthError = AccountError;
#[deprecated(since = "0.2.0", note = "renamed to `AccountConfig`")]
pub type AuthConfig = AccountConfig;
#[deprecated(since = "0.2.0", note = "renamed to `AccountPorts`")]
pub type AuthPorts = AccountPorts;
#[deprecated(since = "0.2.0", note = "renamed to `ApiKeyError`")]
pub type KeyError = ApiKeyError;
#[deprecated(since = "0.2.0", note = "renamed to `ApiKeyVerdict`")]
pub type KeyVerdict = ApiKeyVerdict;
#[deprecated(since = "0.2.0", note = "renamed to `NewApiKey`")]
pub type NewKey = NewApiKey;
#[deprecated(since = "0.2.0", note = "renamed to `IssuedApiKey`")]
pub type IssuedKey = IssuedApiKey;
#[deprecated(since = "0.2.0", note = "renamed to `OrganizationError`")]
pub type OrgError = OrganizationError;
