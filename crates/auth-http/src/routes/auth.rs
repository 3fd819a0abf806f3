//! `/api/v1/auth/*`: register, login, refresh, logout, logout-all, verify, verify-token.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use auth_core::model::TokenKind;
use auth_core::model::{DisplayName, Email, Password, RefreshToken, TokenPair};
use auth_core::{AccountError, DeviceError, Registration};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::no_store_json;
use crate::error::{
    ApiError, BearerErrors, BodyErrors, FieldError, LimitedErrors, NoBodyErrors, Problem,
    StoreErrors,
};
use crate::extract::Authenticated;
use crate::json::{CleanString, NoBody, ValidJson};
use crate::state::AppState;

/// `POST /auth/register` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// Email address (trimmed; unique case-insensitively).
    #[schema(value_type = String, example = "ada@example.com", format = Email, max_length = 254)]
    pub email: CleanString,
    /// Password: 8..=128 characters by default, no composition rules.
    #[schema(value_type = String, example = "violet tugboat margin 47", format = Password, min_length = 8, max_length = 128, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub password: CleanString,
    /// Name to show (1..=100 characters).
    #[schema(value_type = Option<String>, example = "Ada Lovelace")]
    pub display_name: Option<CleanString>,
}

/// A created account.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserCreated {
    /// User id.
    pub id: Uuid,
    /// Email as typed.
    pub email: String,
    /// Display name, or null.
    pub display_name: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// `POST /auth/login` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// Email address.
    #[schema(value_type = String, example = "ada@example.com", format = Email, max_length = 254)]
    pub email: CleanString,
    /// Password.
    #[schema(value_type = String, format = Password, min_length = 1, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub password: CleanString,
}

/// The user a token pair belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenUser {
    /// User id.
    pub id: Uuid,
    /// Email as typed.
    pub email: String,
}

/// A new access token and refresh token. `Debug` never shows the tokens.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// JWT access token (`typ: at+jwt`).
    pub access_token: String,
    /// Opaque refresh token; shown once, rotated on every use.
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: i64,
    /// Seconds until the session (and so the refresh token) expires.
    #[schema(example = 2_592_000)]
    pub refresh_expires_in: i64,
    /// The user.
    pub user: TokenUser,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[REDACTED]")
            .field("refresh_token", &"[REDACTED]")
            .field("expires_in", &self.expires_in)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl From<TokenPair> for TokenResponse {
    fn from(pair: TokenPair) -> Self {
        Self {
            access_token: pair.access_token.expose_secret().to_owned(),
            refresh_token: pair.refresh_token.expose().to_owned(),
            token_type: "Bearer",
            expires_in: pair.access_expires_in,
            refresh_expires_in: pair.refresh_expires_in,
            user: TokenUser {
                id: pair.user.id.as_uuid(),
                email: pair.user.email.as_str().to_owned(),
            },
        }
    }
}

/// A body carrying a refresh token (`refresh`, `logout`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token.
    #[schema(value_type = String, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub refresh_token: CleanString,
}

/// `GET /auth/verify` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    /// Always true (an invalid token gets 401).
    pub valid: bool,
    /// User id.
    pub user_id: Uuid,
    /// Email as typed.
    pub email: String,
    /// Session the token belongs to.
    pub session_id: Uuid,
    /// Service administrator.
    pub is_admin: bool,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
}

/// `POST /auth/verify-token` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyTokenRequest {
    /// Any token the service issued.
    #[schema(value_type = String, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub token: CleanString,
}

/// `POST /auth/verify-token` answer: `valid:false` with `error` for a bad token, never 401.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct VerifyTokenResponse {
    /// Whether the token is valid now.
    pub valid: bool,
    /// `user` or `device`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// For user tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// For user tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// For user tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    /// For device tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// For device tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<Uuid>,
    /// When the token expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// `INVALID`, `EXPIRED` or `REVOKED` when not valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "EXPIRED")]
    pub error: Option<&'static str>,
}

fn email_field(raw: &CleanString, errors: &mut Vec<FieldError>) -> Option<Email> {
    Email::parse(raw.as_str())
        .map_err(|e| errors.push(FieldError::new("email", "invalid_email", e)))
        .ok()
}

pub(crate) fn password_error(field: &str, err: auth_core::model::PasswordError) -> FieldError {
    use auth_core::model::PasswordError as E;
    let code = match err {
        E::Empty => "required",
        E::TooShort { .. } => "too_short",
        E::TooLong { .. } => "too_long",
        E::ControlCharacter => "control_character",
        E::Common => "too_common",
    };
    FieldError::new(field, code, err)
}

/// Register a new account.
#[utoipa::path(
    operation_id = "register_user",
    tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created", body = UserCreated),
        (status = 409, description = "`EMAIL_TAKEN`", body = Problem, content_type = "application/problem+json"),
        BodyErrors, StoreErrors, LimitedErrors,
    )
)]
#[post("/auth/register")]
pub async fn register(
    state: web::Data<AppState>,
    body: ValidJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut errors = Vec::new();
    let email = email_field(&body.email, &mut errors);
    let password = state
        .password_policy
        .new_password(body.password.as_str())
        .map_err(|e| errors.push(password_error("password", e)))
        .ok();
    let display_name = match &body.display_name {
        None => None,
        Some(raw) => match DisplayName::parse(raw.as_str()) {
            Ok(name) => Some(name),
            Err(e) => {
                errors.push(FieldError::new("display_name", "invalid", e));
                None
            }
        },
    };
    let (Some(email), Some(password), true) = (email, password, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let user = state
        .auth
        .register(
            Registration {
                email,
                password,
                display_name,
            },
            false,
        )
        .await?;
    Ok(HttpResponse::Created().json(UserCreated {
        id: user.id.as_uuid(),
        email: user.email.as_str().to_owned(),
        display_name: user.display_name.map(DisplayName::into_inner),
        created_at: user.created_at,
    }))
}

/// Log in with email and password; opens a session.
#[utoipa::path(
    operation_id = "login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 401, description = "`INVALID_CREDENTIALS`", body = Problem, content_type = "application/problem+json"),
        BodyErrors, StoreErrors, LimitedErrors,
    )
)]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    body: ValidJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut errors = Vec::new();
    let email = email_field(&body.email, &mut errors);
    let password = Password::presented(body.password.as_str())
        .map_err(|e| errors.push(password_error("password", e)))
        .ok();
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::validation(errors));
    };
    let pair = state.auth.login(&email, &password).await?;
    Ok(no_store_json(StatusCode::OK, &TokenResponse::from(pair)))
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
    let token = RefreshToken::presented(body.0.refresh_token.as_str());
    let pair = state.auth.refresh(&token).await?;
    Ok(no_store_json(StatusCode::OK, &TokenResponse::from(pair)))
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
    let token = RefreshToken::presented(body.0.refresh_token.as_str());
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
    let p = caller.0;
    Ok(HttpResponse::Ok().json(VerifyResponse {
        valid: true,
        user_id: p.user.id.as_uuid(),
        email: p.user.email.as_str().to_owned(),
        session_id: p.session.id.as_uuid(),
        is_admin: p.user.is_admin,
        expires_at: p.claims.expires_at,
    }))
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
    let token = body.0.token.as_str();
    if state.auth.token_kind(token) == Some(TokenKind::Device) {
        let verdict = match state.devices.verify_token(token).await {
            Ok((claims, device)) => VerifyTokenResponse {
                valid: true,
                token_type: Some("device"),
                device_id: Some(device.id.as_str().to_owned()),
                organization_id: Some(device.organization_id.as_uuid()),
                expires_at: Some(claims.expires_at),
                ..VerifyTokenResponse::default()
            },
            Err(DeviceError::InvalidToken(rejection)) => VerifyTokenResponse {
                error: Some(rejection.code()),
                ..VerifyTokenResponse::default()
            },
            Err(other) => return Err(other.into()),
        };
        return Ok(HttpResponse::Ok().json(verdict));
    }
    let verdict = match state.auth.verify(token).await {
        Ok(p) => VerifyTokenResponse {
            valid: true,
            token_type: Some("user"),
            user_id: Some(p.user.id.as_uuid()),
            email: Some(p.user.email.as_str().to_owned()),
            session_id: Some(p.session.id.as_uuid()),
            expires_at: Some(p.claims.expires_at),
            ..VerifyTokenResponse::default()
        },
        Err(AccountError::InvalidToken(rejection)) => VerifyTokenResponse {
            error: Some(rejection.code()),
            ..VerifyTokenResponse::default()
        },
        Err(other) => return Err(other.into()),
    };
    Ok(HttpResponse::Ok().json(verdict))
}
