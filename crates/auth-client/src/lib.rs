//! Rust client of the authentication service, for the services that rely on it.
//!
//! - The whole v1 API, typed, with the service's problem+json errors as [`ApiError`].
//! - Logins with a second factor (TOTP or a recovery code): [`AuthClient::sign_in`] answers
//!   a [`LoginOutcome`], tokens or an [`MfaChallenge`] to complete with
//!   [`AuthClient::complete_mfa`].
//! - One pooled HTTP client (keep-alive), a timeout per attempt, a configurable base URL.
//! - Retries with exponential backoff and jitter for transient failures only, never
//!   repeating a call that may have changed something; a circuit breaker that fails fast
//!   while the service is down.
//! - An API-key verification cache; local verification of access and device tokens with the
//!   service's JWKS; a [`DeviceSession`] that keeps a device's token renewed.
//! - Optionally, a task following the service's revocation stream, so that the cache and
//!   local verification honour a revocation within a second
//!   ([`ClientBuilder::revocation_stream`]).
//! - Metrics readable from the client ([`AuthClient::metrics`]) and through the `metrics`
//!   facade.
//! - With the feature `actix`, extractors for actix-web handlers ([`actix`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), auth_client::Error> {
//! use auth_client::{AuthClient, SecretString};
//!
//! let client = AuthClient::new("http://localhost:8000")?;
//! let pair = client
//!     .login("ada@example.com", &SecretString::from("correct horse battery staple"))
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! `login` serves users without a second factor; for a user with one it fails with
//! [`Error::MfaRequired`], which carries the challenge. Where users may have a second
//! factor, sign in instead:
//!
//! ```no_run
//! # async fn run(code_from_the_user: String) -> Result<(), auth_client::Error> {
//! use auth_client::{AuthClient, LoginOutcome, SecretString};
//!
//! let client = AuthClient::new("http://localhost:8000")?;
//! let password = SecretString::from("correct horse battery staple");
//! let pair = match client.sign_in("ada@example.com", &password).await? {
//!     LoginOutcome::Tokens(pair) => pair,
//!     LoginOutcome::MfaRequired(challenge) => {
//!         // A TOTP code, or one of the user's recovery codes.
//!         let code = SecretString::from(code_from_the_user);
//!         client.complete_mfa(&challenge.mfa_token, &code).await?
//!     }
//! };
//! # Ok(())
//! # }
//! ```
//!
//! The rules (defaults, what is retried, how long answers are cached, what local
//! verification can and cannot see) are in `docs/client.md`.

#![warn(missing_docs)]

#[cfg(feature = "actix")]
pub mod actix;
mod api_key_cache;
mod breaker;
mod client;
mod config;
mod device;
mod error;
mod local;
mod revocation;
mod revocation_stream;
mod stats;
mod transport;
mod types;

/// The wire types of the API, as the service defines them.
pub use auth_api as api;
pub use client::{AuthClient, ClientBuilder, Credential};
pub use config::{
    ApiKeyCacheConfig, BreakerPolicy, ClientConfig, MAX_LEEWAY, MIN_HS256_SECRET_BYTES,
    RetryPolicy, RevocationStreamConfig, TokenConfig, TokenVerification,
};
pub use device::{DeviceSession, DeviceSessionConfig};
pub use error::{ApiError, Error, ErrorCode, FieldError, TokenError};
pub use local::{ACCESS_TOKEN_TYP, DEVICE_TOKEN_TYP, MAX_TOKEN_BYTES};
pub use secrecy::{ExposeSecret, SecretString};
pub use stats::{
    BreakerMetrics, BreakerState, CacheMetrics, LatencySummary, MetricsSnapshot, Operation,
    OperationMetrics, RememberedRevocations, RevocationMetrics, StreamState, TokenMetrics,
};
pub use types::{
    ApiKeyInfo, ApiKeyVerdict, ComponentHealth, CreatedApiKey, DeviceInfo, DeviceStatus,
    DeviceToken, Health, HealthStatus, KeyRejection, KeyStatus, LoginOutcome, Me, Member,
    Membership, MfaChallenge, NewApiKey, NewDevice, NewUser, Organization, OrganizationWithRole,
    RegisteredDevice, Role, RotatedSecret, ServiceInfo, SessionInfo, TokenPair, TokenRejection,
    TokenType, TokenUser, TokenVerdict, UserCreated, VerifiedApiKey, VerifiedBy, VerifiedDevice,
    VerifiedToken, VerifiedUser,
};
