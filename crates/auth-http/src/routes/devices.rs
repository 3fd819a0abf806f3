//! `/api/v1/devices*`: register, authenticate, rotate, revoke and list devices.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use auth_core::model::{
    Device, DeviceId, DeviceMetadata, DeviceName, DeviceSecret, OrganizationId,
};
use auth_core::{IssuedDevice, NewDevice};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::no_store_json;
use super::organizations::{query, required_organization};
use crate::error::{
    ApiError, BodyErrors, FieldError, LimitedErrors, ManagerErrors, NoBodyErrors, Problem,
    StoreErrors,
};
use crate::extract::Manager;
use crate::json::{CleanString, NoBody, ValidJson};
use crate::state::AppState;

/// A device as listed (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceItem {
    /// The caller-chosen id.
    #[schema(example = "frame-kitchen-01")]
    pub device_id: String,
    /// Owner.
    pub organization_id: Uuid,
    /// Name.
    pub name: String,
    /// Free-form metadata.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// `active` or `revoked`.
    #[schema(example = "active")]
    pub status: &'static str,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// Last successful authentication (written every few seconds).
    pub last_authenticated_at: Option<DateTime<Utc>>,
}

impl From<&Device> for DeviceItem {
    fn from(d: &Device) -> Self {
        Self {
            device_id: d.id.as_str().to_owned(),
            organization_id: d.organization_id.as_uuid(),
            name: d.name.as_str().to_owned(),
            metadata: d.metadata.to_value(),
            status: d.status().as_str(),
            created_at: d.created_at,
            last_authenticated_at: d.last_authenticated_at,
        }
    }
}

/// A registered device with its secret: shown once. `Debug` never shows the secret.
#[derive(Serialize, ToSchema)]
pub struct RegisteredDevice {
    /// Id.
    pub device_id: String,
    /// Owner.
    pub organization_id: Uuid,
    /// Name.
    pub name: String,
    /// Metadata.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// Always `active`.
    #[schema(example = "active")]
    pub status: &'static str,
    /// The secret. It appears here (and at rotation) and never again.
    pub device_secret: String,
    /// Registration time.
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for RegisteredDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredDevice")
            .field("device_id", &self.device_id)
            .field("device_secret", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl From<IssuedDevice> for RegisteredDevice {
    fn from(issued: IssuedDevice) -> Self {
        let d = issued.device;
        Self {
            device_id: d.id.as_str().to_owned(),
            organization_id: d.organization_id.as_uuid(),
            name: d.name.as_str().to_owned(),
            metadata: d.metadata.to_value(),
            status: "active",
            device_secret: issued.secret.expose().to_owned(),
            created_at: d.created_at,
        }
    }
}

/// `POST /devices` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterDevice {
    /// 1..=128 characters of `[A-Za-z0-9_.:-]`, unique across the service.
    #[schema(value_type = String, example = "frame-kitchen-01")]
    pub device_id: CleanString,
    /// The owning organization.
    pub organization_id: Uuid,
    /// Name (defaults to the device id).
    #[schema(value_type = Option<String>)]
    pub name: Option<CleanString>,
    /// A JSON object of at most 16 KiB.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// Register a device for an organization (owner/admin, or an `admin` key of it).
#[utoipa::path(
    operation_id = "register_device",
    tag = "devices",
    security(("bearer" = []), ("api_key" = [])),
    request_body = RegisterDevice,
    responses(
        (status = 201, description = "Registered; `device_secret` is shown only here", body = RegisteredDevice),
        (status = 409, description = "`DEVICE_EXISTS`: the id is taken (possibly by another organization)", body = Problem, content_type = "application/problem+json"),
        BodyErrors, ManagerErrors, StoreErrors,
    )
)]
#[post("/devices")]
pub async fn register(
    state: web::Data<AppState>,
    manager: Manager,
    body: ValidJson<RegisterDevice>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut errors = Vec::new();
    let id = DeviceId::parse(body.device_id.as_str())
        .map_err(|e| errors.push(FieldError::new("device_id", "invalid", e)))
        .ok();
    let name = match &body.name {
        None => None,
        Some(raw) => DeviceName::parse(raw.as_str())
            .map_err(|e| errors.push(FieldError::new("name", "invalid", e)))
            .ok(),
    };
    let metadata = match body.metadata {
        None | Some(serde_json::Value::Null) => Some(DeviceMetadata::default()),
        Some(value) => DeviceMetadata::new(value)
            .map_err(|e| errors.push(FieldError::new("metadata", "invalid", e)))
            .ok(),
    };
    let (Some(id), Some(metadata), true) = (id, metadata, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let new = NewDevice {
        id,
        organization_id: OrganizationId::from_uuid(body.organization_id),
        name,
        metadata,
    };
    let issued = state.devices.register(&manager.0, new).await?;
    Ok(no_store_json(
        StatusCode::CREATED,
        &RegisteredDevice::from(issued),
    ))
}

/// `POST /devices/authenticate` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AuthenticateDevice {
    /// The device id.
    #[schema(value_type = String, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub device_id: CleanString,
    /// The device secret.
    #[schema(value_type = String, format = Password, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub device_secret: CleanString,
}

/// A device token.
#[derive(Serialize, ToSchema)]
pub struct DeviceTokenResponse {
    /// JWT (`typ: device+jwt`).
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until it expires.
    #[schema(example = 86_400)]
    pub expires_in: i64,
    /// The device.
    pub device_id: String,
    /// Its organization.
    pub organization_id: Uuid,
}

impl std::fmt::Debug for DeviceTokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceTokenResponse")
            .field("access_token", &"[REDACTED]")
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// Exchange a device id and secret for a device token (no refresh token). Unknown device,
/// wrong secret and revoked device get the same 401.
#[utoipa::path(
    operation_id = "authenticate_device",
    tag = "devices",
    request_body = AuthenticateDevice,
    responses(
        (status = 200, description = "Device token", body = DeviceTokenResponse),
        (status = 401, description = "`INVALID_DEVICE_CREDENTIALS`", body = Problem, content_type = "application/problem+json"),
        BodyErrors, StoreErrors, LimitedErrors,
    )
)]
#[post("/devices/authenticate")]
pub async fn authenticate(
    state: web::Data<AppState>,
    body: ValidJson<AuthenticateDevice>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    // An id that cannot exist fails exactly like an unknown one.
    let secret = DeviceSecret::presented(body.device_secret.as_str());
    let Ok(id) = DeviceId::parse(body.device_id.as_str()) else {
        return Err(ApiError::invalid_device_credentials());
    };
    let issued = state.devices.authenticate(&id, &secret).await?;
    Ok(no_store_json(
        StatusCode::OK,
        &DeviceTokenResponse {
            access_token: issued.token.expose_secret().to_owned(),
            token_type: "Bearer",
            expires_in: issued.expires_in,
            device_id: issued.device.id.as_str().to_owned(),
            organization_id: issued.device.organization_id.as_uuid(),
        },
    ))
}

/// A rotated secret: shown once.
#[derive(Serialize, ToSchema)]
pub struct RotatedSecret {
    /// The device.
    pub device_id: String,
    /// The new secret; the old one no longer works.
    pub device_secret: String,
}

impl std::fmt::Debug for RotatedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedSecret")
            .field("device_id", &self.device_id)
            .field("device_secret", &"[REDACTED]")
            .finish()
    }
}

/// Give a device a new secret; the old one stops working at once (tokens already issued
/// stay valid until they expire).
#[utoipa::path(
    operation_id = "rotate_device_secret",
    tag = "devices",
    security(("bearer" = []), ("api_key" = [])),
    params(("device_id" = String, Path, description = "Device id")),
    responses(
        (status = 200, description = "New secret, shown only here", body = RotatedSecret),
        (status = 409, description = "`ALREADY_REVOKED`", body = Problem, content_type = "application/problem+json"),
        ManagerErrors, StoreErrors, NoBodyErrors,
    )
)]
#[post("/devices/{device_id}/rotate-secret")]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    manager: Manager,
    path: web::Path<String>,
    _body: NoBody,
) -> Result<HttpResponse, ApiError> {
    let id: DeviceId = device_path(&path)?;
    let issued = state.devices.rotate_secret(&manager.0, &id).await?;
    Ok(no_store_json(
        StatusCode::OK,
        &RotatedSecret {
            device_id: issued.device.id.as_str().to_owned(),
            device_secret: issued.secret.expose().to_owned(),
        },
    ))
}

fn device_path(raw: &str) -> Result<DeviceId, ApiError> {
    DeviceId::parse(raw).map_err(|_| ApiError::not_found())
}

/// Revoke a device: it cannot authenticate and its tokens stop verifying on every instance
/// within a second.
#[utoipa::path(
    operation_id = "revoke_device",
    tag = "devices",
    security(("bearer" = []), ("api_key" = [])),
    params(("device_id" = String, Path, description = "Device id")),
    responses(
        (status = 200, description = "Revoked", body = DeviceItem),
        (status = 409, description = "`ALREADY_REVOKED`", body = Problem, content_type = "application/problem+json"),
        ManagerErrors, StoreErrors, NoBodyErrors,
    )
)]
#[post("/devices/{device_id}/revoke")]
pub async fn revoke(
    state: web::Data<AppState>,
    manager: Manager,
    path: web::Path<String>,
    _body: NoBody,
) -> Result<HttpResponse, ApiError> {
    let id = device_path(&path)?;
    let device = state.devices.revoke(&manager.0, &id).await?;
    Ok(HttpResponse::Ok().json(DeviceItem::from(&device)))
}

/// `GET /devices` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListDevicesQuery {
    /// The organization.
    pub organization_id: Option<String>,
}

/// Devices of an organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    /// Items.
    pub items: Vec<DeviceItem>,
}

/// List an organization's devices.
#[utoipa::path(
    operation_id = "list_devices",
    tag = "devices",
    security(("bearer" = []), ("api_key" = [])),
    params(ListDevicesQuery),
    responses(
        (status = 200, description = "Devices", body = DeviceList),
        (status = 422, description = "`VALIDATION_FAILED`: bad query", body = Problem, content_type = "application/problem+json"),
        ManagerErrors, StoreErrors,
    )
)]
#[get("/devices")]
pub async fn list(
    state: web::Data<AppState>,
    manager: Manager,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query: ListDevicesQuery = query(&req)?;
    let org = required_organization(query.organization_id.as_deref())?;
    let items = state
        .devices
        .list(&manager.0, org)
        .await?
        .iter()
        .map(DeviceItem::from)
        .collect();
    Ok(HttpResponse::Ok().json(DeviceList { items }))
}

/// One device.
#[utoipa::path(
    operation_id = "get_device",
    tag = "devices",
    security(("bearer" = []), ("api_key" = [])),
    params(("device_id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The device", body = DeviceItem), ManagerErrors, StoreErrors)
)]
#[get("/devices/{device_id}")]
pub async fn get(
    state: web::Data<AppState>,
    manager: Manager,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = device_path(&path)?;
    let device = state.devices.get(&manager.0, &id).await?;
    Ok(HttpResponse::Ok().json(DeviceItem::from(&device)))
}
