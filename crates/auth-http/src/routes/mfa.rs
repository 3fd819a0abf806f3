//! `/api/v1/users/me/mfa/totp*`: the calling user's TOTP second factor.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, delete, post, web};
use auth_api::{
    Problem, RecoveryCodes, TotpConfirmRequest, TotpDisableRequest, TotpEnrolRequest, TotpEnrolment,
};

use super::no_store_json;
use crate::error::{ApiError, BodyErrors, StoreErrors};
use crate::extract::Authenticated;
use crate::json::ValidJson;
use crate::parse::TryIntoDomain as _;
use crate::present;
use crate::state::AppState;

/// Start a TOTP enrolment: a new secret, pending until confirmed with a code (starting again
/// replaces a pending one). Shown once.
#[utoipa::path(
    operation_id = "enrol_totp",
    tag = "users",
    security(("bearer" = [])),
    request_body = TotpEnrolRequest,
    responses(
        (status = 200, description = "The pending secret (`Cache-Control: no-store`)", body = TotpEnrolment),
        (status = 401, description = "`UNAUTHENTICATED` or `INVALID_CREDENTIALS` (counts toward the lockout)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`MFA_ALREADY_ENABLED`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`TOO_MANY_ATTEMPTS`: the account is locked (with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
        BodyErrors, StoreErrors,
    )
)]
#[post("/users/me/mfa/totp")]
pub async fn enrol_totp(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: ValidJson<TotpEnrolRequest>,
) -> Result<HttpResponse, ApiError> {
    let password = body.0.try_into_domain(())?;
    let setup = state.auth.enrol_totp(&caller.0, &password).await?;
    Ok(no_store_json(
        StatusCode::OK,
        &present::totp_enrolment(&setup),
    ))
}

/// Confirm the pending TOTP enrolment with a current code; answers the ten recovery codes,
/// shown once.
#[utoipa::path(
    operation_id = "confirm_totp",
    tag = "users",
    security(("bearer" = [])),
    request_body = TotpConfirmRequest,
    responses(
        (status = 200, description = "Enabled; the recovery codes (`Cache-Control: no-store`)", body = RecoveryCodes),
        (status = 401, description = "`UNAUTHENTICATED`, or `INVALID_MFA_CODE` (wrong code, or nothing pending)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`MFA_ALREADY_ENABLED`", body = Problem, content_type = "application/problem+json"),
        BodyErrors, StoreErrors,
    )
)]
#[post("/users/me/mfa/totp/confirm")]
pub async fn confirm_totp(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: ValidJson<TotpConfirmRequest>,
) -> Result<HttpResponse, ApiError> {
    let code = body.0.try_into_domain(())?;
    let codes = state.auth.confirm_totp(&caller.0, &code).await?;
    Ok(no_store_json(
        StatusCode::OK,
        &present::recovery_codes(&codes),
    ))
}

/// Remove the TOTP second factor: the password and a current code (or an unused recovery
/// code).
#[utoipa::path(
    operation_id = "disable_totp",
    tag = "users",
    security(("bearer" = [])),
    request_body = TotpDisableRequest,
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "`UNAUTHENTICATED`, `INVALID_CREDENTIALS` or `INVALID_MFA_CODE` (both count toward the lockout)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`TOO_MANY_ATTEMPTS`: the account is locked (with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
        BodyErrors, StoreErrors,
    )
)]
#[delete("/users/me/mfa/totp")]
pub async fn disable_totp(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: ValidJson<TotpDisableRequest>,
) -> Result<HttpResponse, ApiError> {
    let (password, code) = body.0.try_into_domain(())?;
    state.auth.disable_totp(&caller.0, &password, &code).await?;
    Ok(HttpResponse::NoContent().finish())
}
