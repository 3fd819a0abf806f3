//! Device credentials: `/devices*`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::account::TokenType;
use crate::redacted::Redacted;

/// A device's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = "active"))]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    /// May authenticate.
    Active,
    /// Revoked for good.
    Revoked,
    /// A status this build does not know (read only; never sent).
    #[serde(other, skip_serializing)]
    Unknown,
}

/// A device as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceItem {
    /// The caller-chosen id.
    #[cfg_attr(feature = "openapi", schema(example = "frame-kitchen-01"))]
    pub device_id: String,
    /// Owner.
    pub organization_id: Uuid,
    /// Name.
    pub name: String,
    /// Free-form metadata.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: serde_json::Value,
    /// `active` or `revoked`.
    pub status: DeviceStatus,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// Last successful authentication (written every few seconds).
    pub last_authenticated_at: Option<DateTime<Utc>>,
}

/// A registered device with its secret: shown once. `Debug` never shows the secret.
///
/// `S` is how the secret is held: [`Redacted`] by default; a client may read it into its own
/// secret type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        bound = "",
        description = "A registered device with its secret: shown once. `Debug` never shows the secret."
    )
)]
pub struct RegisteredDevice<S = Redacted> {
    /// Id.
    pub device_id: String,
    /// Owner.
    pub organization_id: Uuid,
    /// Name.
    pub name: String,
    /// Metadata.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: serde_json::Value,
    /// Always `active`.
    pub status: DeviceStatus,
    /// The secret. It appears here (and at rotation) and never again.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub device_secret: S,
    /// Registration time.
    pub created_at: DateTime<Utc>,
}

impl<S> RegisteredDevice<S> {
    /// The same body with the secret held another way.
    pub fn map_secret<T>(self, f: impl FnOnce(S) -> T) -> RegisteredDevice<T> {
        RegisteredDevice {
            device_id: self.device_id,
            organization_id: self.organization_id,
            name: self.name,
            metadata: self.metadata,
            status: self.status,
            device_secret: f(self.device_secret),
            created_at: self.created_at,
        }
    }
}

/// `POST /devices` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterDevice {
    /// 1..=128 characters of `[A-Za-z0-9_.:-]`, unique across the service.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "frame-kitchen-01"))]
    pub device_id: String,
    /// The owning organization.
    pub organization_id: Uuid,
    /// Name (defaults to the device id).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub name: Option<String>,
    /// A JSON object of at most 16 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
}

impl RegisterDevice {
    /// A device of `organization_id` with no name and no metadata.
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

/// `POST /devices/authenticate` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthenticateDevice {
    /// The device id.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub device_id: String,
    /// The device secret.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Password, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub device_secret: Redacted,
}

/// A device token.
///
/// `S` is how the token is held: [`Redacted`] by default; a client may read it into its own
/// secret type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(bound = "", description = "A device token.")
)]
pub struct DeviceTokenResponse<S = Redacted> {
    /// JWT (`typ: device+jwt`).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub access_token: S,
    /// Always `Bearer`.
    pub token_type: TokenType,
    /// Seconds until it expires.
    #[cfg_attr(feature = "openapi", schema(example = 86_400))]
    pub expires_in: i64,
    /// The device.
    pub device_id: String,
    /// Its organization.
    pub organization_id: Uuid,
}

/// A rotated secret: shown once.
///
/// `S` is how the secret is held: [`Redacted`] by default; a client may read it into its own
/// secret type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(bound = "", description = "A rotated secret: shown once.")
)]
pub struct RotatedSecret<S = Redacted> {
    /// The device.
    pub device_id: String,
    /// The new secret; the old one no longer works.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub device_secret: S,
}

impl<S> RotatedSecret<S> {
    /// The same body with the secret held another way.
    pub fn map_secret<T>(self, f: impl FnOnce(S) -> T) -> RotatedSecret<T> {
        RotatedSecret {
            device_id: self.device_id,
            device_secret: f(self.device_secret),
        }
    }
}

/// Devices of an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceList {
    /// Items.
    pub items: Vec<DeviceItem>,
}
