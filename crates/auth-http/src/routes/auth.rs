//! `/api/v1/auth/*`: register, login, refresh, logout, logout-all, verify, verify-token.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use auth_api::{
    LoginRequest, LoginResponse, MfaLoginRequest, Problem, RefreshRequest, RegisterRequest,
    TokenResponse, UserCreated, VerifyResponse, VerifyTokenRequest, VerifyTokenResponse,
};
use auth_core::model::TokenKind;
use auth_core::{AccountError, DeviceError};

use super::no_store_json;
use crate::error::{ApiError, BearerErrors, BodyErrors, LimitedErrors, NoBodyErrors, StoreErrors};
use crate::extract::Authenticated;
use crate::json::{NoBody, ValidJson};
use crate::parse::TryIntoDomain as _;
use crate::present;
use crate::state::AppState;

/// Register a new account.
#[utoipa::path(
    operation_id = "register_user",
    tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created", body = UserCreated),
        (status = 403, description = "`REGISTRATION_DISABLED`: registration is closed (`AUTH_REGISTRATION_ENABLED=false`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`EMAIL_TAKEN`", body = Problem, content_type = "application/problem+json"),
        BodyErrors, StoreErrors, LimitedErrors,
    )
)]
#[post("/auth/register")]
pub async fn register(
    state: web::Data<AppState>,
    body: ValidJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let registration = body.0.try_into_domain(&state.password_policy)?;
    let user = state.auth.sign_up(registration).await?;
    Ok(HttpResponse::Created().json(present::user_created(user)))
}

/// Log in with email and password; opens a session, or, for a user with a second factor,
/// answers `mfa_required` with an `mfa_token` for `POST /auth/login/mfa`.
#[utoipa::path(
    operation_id = "login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in (a token pair), or the second factor is due (`mfa_required`)", body = LoginResponse),
        (status = 401, description = "`INVALID_CREDENTIALS`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`ACCOUNT_DISABLED` or `EMAIL_NOT_VERIFIED`, after a correct password", body = Problem, content_type = "application/problem+json"),
        BodyErrors, StoreErrors, LimitedErrors,
    )
)]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    body: ValidJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let credentials = body.0.try_into_domain(())?;
    let outcome = state
        .auth
        .sign_in(&credentials.email, &credentials.password)
        .await?;
    Ok(no_store_json(
        StatusCode::OK,
        &present::login_response(outcome),
    ))
}

/// The second login step: the `mfa_token` of the login answer and a TOTP code (or an unused
/// recovery code) open the session. Wrong codes count toward the account lockout.
#[utoipa::path(
    operation_id = "login_mfa",
    tag = "auth",
    request_body = MfaLoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 401, description = "`INVALID_MFA_CODE` (wrong or used code), or `INVALID_CREDENTIALS` (unknown, used or expired `mfa_token`)", body = Problem, content_type = "application/problem+json"),
        BodyErrors, StoreErrors, LimitedErrors,
    )
)]
#[post("/auth/login/mfa")]
pub async fn login_mfa(
    state: web::Data<AppState>,
    body: ValidJson<MfaLoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let (token, code) = body.0.try_into_domain(())?;
    let pair = state.auth.complete_mfa_login(&token, &code).await?;
    Ok(no_store_json(
        StatusCode::OK,
        &present::token_response(pair),
    ))
}

/// Exchange a refresh token for a new pair. The presented token is spent; presenting it
/// again ends the whole session.
#[utoipa::path(
    operation_id = "refresh_session",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New token pair", body = TokenResponse),
        (status = 401, description = "`INVALID_REFRESH_TOKEN`", body = Problem, content_type = "application/problem+json"),
        BodyErrors, StoreErrors, LimitedErrors,
    )
)]
#[post("/auth/refresh")]
pub async fn refresh(
    state: web::Data<AppState>,
    body: ValidJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let token = body.0.try_into_domain(())?;
    let pair = state.auth.refresh(&token).await?;
    Ok(no_store_json(
        StatusCode::OK,
        &present::token_response(pair),
    ))
}

/// End the session a refresh token belongs to. Answers 204 for unknown tokens too.
#[utoipa::path(
    operation_id = "logout",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "Session ended (or token unknown)"),
        BodyErrors, StoreErrors,
    )
)]
#[post("/auth/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    body: ValidJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let token = body.0.try_into_domain(())?;
    state.auth.logout(&token).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// End every session of the calling user.
#[utoipa::path(
    operation_id = "logout_all",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session ended"),
        BearerErrors, StoreErrors, NoBodyErrors,
    )
)]
#[post("/auth/logout-all")]
pub async fn logout_all(
    state: web::Data<AppState>,
    caller: Authenticated,
    _body: NoBody,
) -> Result<HttpResponse, ApiError> {
    state.auth.logout_all(caller.0.user.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Check the caller's access token: valid signature and claims, live session.
#[utoipa::path(
    operation_id = "verify_access_token",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Token valid", body = VerifyResponse),
        BearerErrors, StoreErrors, LimitedErrors,
    )
)]
#[get("/auth/verify")]
pub async fn verify(caller: Authenticated) -> Result<HttpResponse, ApiError> {
    Ok(crate::routes::json_body(
        HttpResponse::Ok(),
        &present::verify_response(&caller.0),
    ))
}

/// Check any token the service issued; answers `valid:false` with a reason instead of 401.
#[utoipa::path(
    operation_id = "verify_token",
    tag = "auth",
    request_body = VerifyTokenRequest,
    responses(
        (status = 200, description = "Verdict", body = VerifyTokenResponse),
        BodyErrors, StoreErrors, LimitedErrors,
    )
)]
#[post("/auth/verify-token")]
pub async fn verify_token(
    state: web::Data<AppState>,
    body: ValidJson<VerifyTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let token = body.0.try_into_domain(())?;
    let verdict = if state.auth.token_kind(&token) == Some(TokenKind::Device) {
        match state.devices.verify_token(&token).await {
            Ok((claims, device)) => present::device_token_verdict(&device, claims.expires_at),
            Err(DeviceError::InvalidToken(rejection)) => present::rejected_token(rejection),
            Err(other) => return Err(other.into()),
        }
    } else {
        match state.auth.verify(&token).await {
            Ok(p) => present::user_token_verdict(&p),
            Err(AccountError::InvalidToken(rejection)) => present::rejected_token(rejection),
            Err(other) => return Err(other.into()),
        }
    };
    Ok(crate::routes::json_body(HttpResponse::Ok(), &verdict))
}
