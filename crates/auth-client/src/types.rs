//! Typed requests and answers of the v1 API, as the contract defines them.
//!
//! Every secret the service hands out (tokens, API keys, device secrets) arrives as a
//! [`SecretString`], whose `Debug` prints `[REDACTED]`; read it with
//! [`ExposeSecret::expose_secret`](secrecy::ExposeSecret::expose_secret).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

// ---------------------------------------------------------------------------------------------
// Users and sessions

/// `POST /auth/register` body.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Email address (trimmed by the service; unique case-insensitively).
    pub email: String,
    /// Password (8..=128 characters by default, not a common one).
    pub password: SecretString,
    /// Name to show.
    pub display_name: Option<String>,
}

impl NewUser {
    /// A user with no display name.
    #[must_use]
    pub fn new(email: impl Into<String>, password: SecretString) -> Self {
        Self {
            email: email.into(),
            password,
            display_name: None,
        }
    }

    /// With a display name.
    #[must_use]
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }
}

/// A created account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct UserCreated {
    /// User id.
    pub id: Uuid,
    /// Email as typed.
    pub email: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// The user a token pair belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct TokenUser {
    /// User id.
    pub id: Uuid,
    /// Email as typed.
    pub email: String,
}

/// An access token and a refresh token (login, refresh).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct TokenPair {
    /// JWT access token (`typ: at+jwt`).
    #[serde(deserialize_with = "secret")]
    pub access_token: SecretString,
    /// Opaque refresh token, rotated on every use: keep only the newest.
    #[serde(deserialize_with = "secret")]
    pub refresh_token: SecretString,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Seconds until the session, and so the refresh token, expires.
    pub refresh_expires_in: i64,
    /// The user.
    pub user: TokenUser,
}

/// `GET /auth/verify`: the session behind a valid access token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Always true (an invalid token is a 401).
    pub valid: bool,
    /// User id.
    pub user_id: Uuid,
    /// Email as typed.
    pub email: String,
    /// The session.
    pub session_id: Uuid,
    /// Service administrator.
    pub is_admin: bool,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenRejection {
    /// Malformed, forged, of the wrong kind, or from another issuer or audience.
    Invalid,
    /// Past its `exp` (plus the leeway).
    Expired,
    /// Its session ended or its device was revoked (only the service can tell).
    Revoked,
}

impl TokenRejection {
    /// The contract's code (`INVALID`, `EXPIRED`, `REVOKED`).
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Invalid => "INVALID",
            Self::Expired => "EXPIRED",
            Self::Revoked => "REVOKED",
        }
    }

    fn parse(code: Option<&str>) -> Self {
        match code {
            Some("EXPIRED") => Self::Expired,
            Some("REVOKED") => Self::Revoked,
            _ => Self::Invalid,
        }
    }
}

/// Where a verdict on a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifiedBy {
    /// Checked here, with the JWKS or the configured HS256 secret: signature and claims,
    /// not the session or device behind the token.
    Local,
    /// Checked by the service, which also saw the session or device.
    Service,
}

/// A valid user access token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedUser {
    /// The user (`sub`).
    pub user_id: Uuid,
    /// The session (`sid`).
    pub session_id: Uuid,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
    /// The token's `jti` (local verification only).
    pub token_id: Option<Uuid>,
    /// The user's email (verification by the service only).
    pub email: Option<String>,
    /// Who checked it.
    pub verified_by: VerifiedBy,
}

/// A valid device token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedDevice {
    /// The device (`sub`).
    pub device_id: String,
    /// Its organization (`org`).
    pub organization_id: Uuid,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
    /// The token's `jti` (local verification only).
    pub token_id: Option<Uuid>,
    /// Who checked it.
    pub verified_by: VerifiedBy,
}

/// A valid token of either kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifiedToken {
    /// A user access token.
    User(VerifiedUser),
    /// A device token.
    Device(VerifiedDevice),
}

/// The answer of `POST /auth/verify-token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenVerdict {
    /// A valid token.
    Valid(VerifiedToken),
    /// A refused one.
    Rejected(TokenRejection),
}

/// `POST /auth/verify-token` as sent.
#[derive(Deserialize)]
pub(crate) struct RawTokenVerdict {
    valid: bool,
    token_type: Option<String>,
    user_id: Option<Uuid>,
    session_id: Option<Uuid>,
    email: Option<String>,
    device_id: Option<String>,
    organization_id: Option<Uuid>,
    expires_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

impl RawTokenVerdict {
    /// The typed verdict, or `None` when a valid answer lacks what its kind must carry.
    pub(crate) fn typed(self) -> Option<TokenVerdict> {
        if !self.valid {
            return Some(TokenVerdict::Rejected(TokenRejection::parse(
                self.error.as_deref(),
            )));
        }
        let token = match self.token_type.as_deref()? {
            "user" => VerifiedToken::User(VerifiedUser {
                user_id: self.user_id?,
                session_id: self.session_id?,
                expires_at: self.expires_at?,
                token_id: None,
                email: self.email,
                verified_by: VerifiedBy::Service,
            }),
            "device" => VerifiedToken::Device(VerifiedDevice {
                device_id: self.device_id?,
                organization_id: self.organization_id?,
                expires_at: self.expires_at?,
                token_id: None,
                verified_by: VerifiedBy::Service,
            }),
            _ => return None,
        };
        Some(TokenVerdict::Valid(token))
    }
}

/// An organization the user belongs to, with the user's role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Membership {
    /// Organization id.
    pub id: Uuid,
    /// Organization name.
    pub name: String,
    /// The user's role in it.
    pub role: Role,
}

/// `GET /users/me`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Me {
    /// User id.
    pub id: Uuid,
    /// Email as typed.
    pub email: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Service administrator.
    pub is_admin: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// The user's organizations.
    pub organizations: Vec<Membership>,
}

// ---------------------------------------------------------------------------------------------
// Organizations

/// A role in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Owner: everything, including managing owners.
    Owner,
    /// Admin: manages members, keys and devices.
    Admin,
    /// Member: sees the organization.
    Member,
    /// A role this client does not know.
    #[serde(other)]
    Unknown,
}

impl Role {
    /// `owner`, `admin`, `member` (or `unknown`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Unknown => "unknown",
        }
    }
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Organization {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// An organization of the caller, with the caller's role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct OrganizationWithRole {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// The caller's role.
    pub role: Role,
}

/// A member of an organization.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Member {
    /// The user.
    pub user_id: Uuid,
    /// Their email.
    pub email: String,
    /// Their role.
    pub role: Role,
}

#[derive(Deserialize)]
pub(crate) struct Items<T> {
    pub(crate) items: Vec<T>,
}

// ---------------------------------------------------------------------------------------------
// API keys

/// `POST /api-keys` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewApiKey {
    /// The organization that owns the key.
    pub organization_id: Uuid,
    /// 1..=100 characters.
    pub name: String,
    /// Scopes (1..=64 characters of `[a-z0-9:._-]`; `admin` holds every scope).
    pub scopes: Vec<String>,
    /// Lifetime in days (1..=3650); none for a key that never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

impl NewApiKey {
    /// A key that never expires.
    #[must_use]
    pub fn new(
        organization_id: Uuid,
        name: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            organization_id,
            name: name.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
            expires_in_days: None,
        }
    }

    /// Expiring after `days`.
    #[must_use]
    pub fn expires_in_days(mut self, days: u32) -> Self {
        self.expires_in_days = Some(days);
        self
    }
}

/// A key's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Revoked (or rotated).
    Revoked,
    /// Past `expires_at`.
    Expired,
    /// A status this client does not know.
    #[serde(other)]
    Unknown,
}

/// A new key (create, rotate): the key itself appears here and never again.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct CreatedApiKey {
    /// Id.
    pub id: Uuid,
    /// The key. Store it now.
    #[serde(deserialize_with = "secret")]
    pub key: SecretString,
    /// Its displayable start (`ak_live_KLd2bf0d`).
    pub prefix: String,
    /// Name.
    pub name: String,
    /// Owner.
    pub organization_id: Uuid,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Always `active`.
    pub status: KeyStatus,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct ApiKeyInfo {
    /// Id.
    pub id: Uuid,
    /// Displayable start.
    pub prefix: String,
    /// Name.
    pub name: String,
    /// Owner.
    pub organization_id: Uuid,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Status now.
    pub status: KeyStatus,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last successful verification (written every few seconds).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Why a key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRejection {
    /// Malformed, mistyped or unknown.
    Invalid,
    /// Revoked (or rotated).
    Revoked,
    /// Past its expiry.
    Expired,
    /// Valid, but lacking one of the required scopes.
    InsufficientScope,
}

impl KeyRejection {
    /// The contract's code (`INVALID`, `REVOKED`, `EXPIRED`, `INSUFFICIENT_SCOPE`).
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Invalid => "INVALID",
            Self::Revoked => "REVOKED",
            Self::Expired => "EXPIRED",
            Self::InsufficientScope => "INSUFFICIENT_SCOPE",
        }
    }

    fn parse(code: Option<&str>) -> Self {
        match code {
            Some("REVOKED") => Self::Revoked,
            Some("EXPIRED") => Self::Expired,
            Some("INSUFFICIENT_SCOPE") => Self::InsufficientScope,
            _ => Self::Invalid,
        }
    }
}

/// A valid key, as verification describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedApiKey {
    /// Key id.
    pub key_id: Uuid,
    /// Owner.
    pub organization_id: Uuid,
    /// Name.
    pub name: String,
    /// Scopes held.
    pub scopes: Vec<String>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
}

impl VerifiedApiKey {
    /// Whether the key holds `scope` (`admin` holds every scope), by the service's rule.
    #[must_use]
    pub fn holds(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope || s == "admin")
    }

    /// Whether the key holds every one of `scopes`.
    #[must_use]
    pub fn holds_all<S: AsRef<str>>(&self, scopes: &[S]) -> bool {
        scopes.iter().all(|s| self.holds(s.as_ref()))
    }
}

/// The verdict on a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeyVerdict {
    /// Usable, holding every required scope.
    Valid(VerifiedApiKey),
    /// Refused.
    Rejected(KeyRejection),
}

impl ApiKeyVerdict {
    /// Whether the key may be used.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Valid(_))
    }
}

/// One verdict as the service sends it.
#[derive(Deserialize)]
pub(crate) struct RawKeyVerdict {
    valid: bool,
    key_id: Option<Uuid>,
    organization_id: Option<Uuid>,
    name: Option<String>,
    scopes: Option<Vec<String>>,
    expires_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

impl RawKeyVerdict {
    pub(crate) fn typed(self) -> Option<ApiKeyVerdict> {
        if !self.valid {
            return Some(ApiKeyVerdict::Rejected(KeyRejection::parse(
                self.error.as_deref(),
            )));
        }
        Some(ApiKeyVerdict::Valid(VerifiedApiKey {
            key_id: self.key_id?,
            organization_id: self.organization_id?,
            name: self.name?,
            scopes: self.scopes?,
            expires_at: self.expires_at,
        }))
    }
}

#[derive(Deserialize)]
pub(crate) struct RawBatch {
    pub(crate) results: Vec<RawKeyVerdict>,
}

// ---------------------------------------------------------------------------------------------
// Devices

/// `POST /devices` body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewDevice {
    /// 1..=128 characters of `[A-Za-z0-9_.:-]`, unique across the service.
    pub device_id: String,
    /// The owning organization.
    pub organization_id: Uuid,
    /// Name (defaults to the id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A JSON object of at most 16 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl NewDevice {
    /// A device with no name and no metadata.
    #[must_use]
    pub fn new(device_id: impl Into<String>, organization_id: Uuid) -> Self {
        Self {
            device_id: device_id.into(),
            organization_id,
            name: None,
            metadata: None,
        }
    }

    /// With a name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// With metadata (a JSON object).
    #[must_use]
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

/// A device's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    /// May authenticate.
    Active,
    /// Revoked for good.
    Revoked,
    /// A status this client does not know.
    #[serde(other)]
    Unknown,
}

/// A registered device with its secret, shown once.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct RegisteredDevice {
    /// Id.
    pub device_id: String,
    /// Owner.
    pub organization_id: Uuid,
    /// Name.
    pub name: String,
    /// Metadata.
    pub metadata: serde_json::Value,
    /// Always `active`.
    pub status: DeviceStatus,
    /// The secret: put it on the device now.
    #[serde(deserialize_with = "secret")]
    pub device_secret: SecretString,
    /// Registration time.
    pub created_at: DateTime<Utc>,
}

/// A device token (no refresh token: authenticate again).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct DeviceToken {
    /// JWT (`typ: device+jwt`).
    #[serde(deserialize_with = "secret")]
    pub access_token: SecretString,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The device.
    pub device_id: String,
    /// Its organization.
    pub organization_id: Uuid,
}

/// A device's new secret, shown once.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct RotatedSecret {
    /// The device.
    pub device_id: String,
    /// The new secret; the old one no longer works.
    #[serde(deserialize_with = "secret")]
    pub device_secret: SecretString,
}

/// A device as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct DeviceInfo {
    /// Id.
    pub device_id: String,
    /// Owner.
    pub organization_id: Uuid,
    /// Name.
    pub name: String,
    /// Metadata.
    pub metadata: serde_json::Value,
    /// Status.
    pub status: DeviceStatus,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// Last successful authentication (written every few seconds).
    pub last_authenticated_at: Option<DateTime<Utc>>,
}

// ---------------------------------------------------------------------------------------------
// Service endpoints

/// `GET /`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct ServiceInfo {
    /// Service name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Where the API documentation is.
    pub docs: String,
}

/// Overall or component health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Everything works.
    Healthy,
    /// Serving, with a component down (the invalidation listener).
    Degraded,
    /// Not serving (the database is unreachable).
    Unhealthy,
    /// A status this client does not know.
    #[serde(other)]
    Unknown,
}

/// One component in `GET /health`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct ComponentHealth {
    /// Its status.
    pub status: HealthStatus,
    /// For the database: `postgres` or `memory`.
    pub kind: Option<String>,
    /// Probe time in milliseconds.
    pub latency_ms: Option<f64>,
    /// For the cache: entries held.
    pub entries: Option<u64>,
}

/// `GET /health` (its 503 answer included: it is a verdict, not a failure).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// Overall status.
    pub status: HealthStatus,
    /// Version.
    pub version: String,
    /// Per component.
    pub components: BTreeMap<String, ComponentHealth>,
}
