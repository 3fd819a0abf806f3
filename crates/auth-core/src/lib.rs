//! Domain model, ports and services of the authentication service.
//!
//! This crate knows nothing of HTTP, SQL or caches: it holds the rules. Storage, hashing,
//! signing and time come in through the traits in [`ports`]; [`service`] applies the rules
//! over them. With the `memory` feature, [`memory`] provides in-memory adapters for every
//! storage port, so the whole service runs (and is tested) with no database.

pub mod model;
pub mod ports;
pub mod service;
pub mod system;

#[cfg(feature = "memory")]
pub mod memory;

#[cfg(feature = "testing")]
pub mod contract;

pub use model::*;
pub use service::actor::Actor;
pub use service::api_key::{ApiKeyPorts, ApiKeyService, IssuedKey, KeyError, KeyVerdict, NewKey};
pub use service::auth::{
    AuthConfig, AuthError, AuthPorts, AuthService, ImportedUser, Principal, Registration,
    SessionSnapshot,
};
pub use service::device::{
    DeviceError, DevicePorts, DeviceService, DeviceToken, IssuedDevice, NewDevice,
};
pub use service::follow::LogFollower;
pub use service::invalidation::CacheInvalidator;
pub use service::organization::{Caller, OrgError, OrganizationService};
pub use service::retention::RetentionService;
