//! `/api/v1/devices*`: register, authenticate, rotate, revoke and list devices.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use auth_api::{
    AuthenticateDevice, DeviceItem, DeviceList, DeviceTokenResponse, Problem, RegisterDevice,
    RegisteredDevice, RotatedSecret,
};

use super::no_store_json;
use crate::error::{ApiError, BodyErrors, LimitedErrors, ManagerErrors, NoBodyErrors, StoreErrors};
use crate::extract::Manager;
use crate::json::{NoBody, ValidJson};
use crate::params::{DevicePath, DevicesQuery, ListDevicesQuery};
use crate::parse::TryIntoDomain as _;
use crate::present;
use crate::state::AppState;

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
    let new = body.0.try_into_domain(())?;
    let issued = state.devices.register(&manager.0, new).await?;
    Ok(no_store_json(
        StatusCode::CREATED,
        &present::registered_device(issued),
    ))
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
    let credentials = body.0.try_into_domain(())?;
    let issued = state
        .devices
        .authenticate(&credentials.id, &credentials.secret)
        .await?;
    Ok(no_store_json(
        StatusCode::OK,
        &present::device_token(&issued),
    ))
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
    _body: NoBody,
    path: DevicePath,
) -> Result<HttpResponse, ApiError> {
    let issued = state.devices.rotate_secret(&manager.0, &path.0).await?;
    Ok(no_store_json(
        StatusCode::OK,
        &present::rotated_secret(&issued),
    ))
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
    _body: NoBody,
    path: DevicePath,
) -> Result<HttpResponse, ApiError> {
    let device = state.devices.revoke(&manager.0, &path.0).await?;
    Ok(HttpResponse::Ok().json(present::device_item(&device)))
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
    query: DevicesQuery,
) -> Result<HttpResponse, ApiError> {
    let items = state
        .devices
        .list(&manager.0, query.organization)
        .await?
        .iter()
        .map(present::device_item)
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
    path: DevicePath,
) -> Result<HttpResponse, ApiError> {
    let device = state.devices.get(&manager.0, &path.0).await?;
    Ok(HttpResponse::Ok().json(present::device_item(&device)))
}
