//! RFC 9457 problem details: the one error shape of the API, and the mapping from domain
//! errors to status codes. Only this module decides what a client learns of a failure.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use auth_core::model::MAX_KEY_LIFETIME_DAYS;
use auth_core::ports::StoreError;
use auth_core::{AccountError, ApiKeyError, DeviceError, ErrorChain, OrganizationError};

use crate::request_id;

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_UNAVAILABLE_SECS: u32 = 2;

pub use auth_api::{ErrorCode, FieldError, Problem};

/// An error answer. Build one with the constructors; `ResponseError` renders it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    detail: String,
    errors: Vec<FieldError>,
    /// `Some(true)` adds `error="invalid_token"` to `WWW-Authenticate` (RFC 6750).
    invalid_token: bool,
    retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            invalid_token: false,
            retry_after: None,
        }
    }

    /// 400 `MALFORMED_REQUEST`.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::MalformedRequest, detail)
    }

    /// 413 `PAYLOAD_TOO_LARGE`.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// 415 `UNSUPPORTED_MEDIA_TYPE`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "request body must be sent as application/json",
        )
    }

    /// 422 `VALIDATION_FAILED` with field errors.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::ValidationFailed,
                "request body failed validation",
            )
        }
    }

    /// 422 `VALIDATION_FAILED` with field errors of the query string (not of a body).
    pub fn invalid_query(errors: Vec<FieldError>) -> Self {
        Self {
            detail: "query parameters failed validation".into(),
            ..Self::validation(errors)
        }
    }

    /// 401 `UNAUTHENTICATED`, saying why in words the caller can act on (see [`Refusal`]).
    pub fn refused(why: Refusal) -> Self {
        Self {
            invalid_token: !matches!(why, Refusal::Missing | Refusal::MissingEither),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthenticated,
                why.detail(),
            )
        }
    }

    /// 403 `FORBIDDEN`.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "you may not do this",
        )
    }

    /// 403 `FORBIDDEN` saying what is missing.
    pub fn forbidden_because(detail: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, detail)
    }

    /// 409 with a code.
    pub fn conflict(code: ErrorCode, detail: &str) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// 401 `INVALID_DEVICE_CREDENTIALS`: the same answer for every way device credentials fail.
    pub fn invalid_device_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidDeviceCredentials,
            "Invalid device credentials",
        )
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "resource not found",
        )
    }

    /// 404 `NOT_FOUND` for a path no route serves: where the API is, and where it is
    /// described. (An unknown resource at a known route is [`ApiError::not_found`].)
    pub fn no_such_path() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such path: the API lives under /api/v1 and is described at /docs \
             (OpenAPI document at /api-docs/openapi.json)",
        )
    }

    /// 405 `METHOD_NOT_ALLOWED` for `method` (a label of [`crate::methods::label`]) at a path
    /// serving `allow` (as the `Allow` header lists them); the caller adds `Allow`.
    pub fn method_not_allowed(method: &str, allow: &str) -> Self {
        let method = if method == "OTHER" {
            "this method"
        } else {
            method
        };
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            format!(
                "{method} is not served at this path; it serves {allow} (see the Allow header)"
            ),
        )
    }

    /// 408 `REQUEST_TIMEOUT`: the body did not arrive in time.
    pub fn request_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} seconds",
                limit.as_secs()
            ),
        )
    }

    /// 429 `RATE_LIMITED` with `Retry-After`; `setting` names the allowance that ran out
    /// (`AUTH_RATE_LIMIT_PER_MINUTE`...), so an operator knows what to change.
    pub fn rate_limited(retry_after: u64, setting: &str) -> Self {
        Self {
            retry_after: Some(u32::try_from(retry_after).unwrap_or(u32::MAX)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                format!(
                    "too many requests from this address; retry after Retry-After seconds \
                     (the allowance a minute per address is {setting})"
                ),
            )
        }
    }

    /// 429 `RATE_LIMITED` with `Retry-After`: the API key holds as many revocation streams
    /// on this instance as it may (`AUTH_STREAM_MAX_PER_KEY`).
    pub fn too_many_streams(limit: usize, retry_after: u64) -> Self {
        Self {
            retry_after: Some(u32::try_from(retry_after).unwrap_or(u32::MAX)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                format!(
                    "this API key already holds {limit} revocation streams on this instance \
                     (AUTH_STREAM_MAX_PER_KEY); close one, or retry after Retry-After seconds"
                ),
            )
        }
    }

    /// 429 `TOO_MANY_ATTEMPTS` with `Retry-After`: the account is locked.
    pub fn too_many_attempts(retry_after: u64) -> Self {
        Self {
            retry_after: Some(u32::try_from(retry_after).unwrap_or(u32::MAX)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyAttempts,
                "too many failed password attempts for this email; it is locked: retry after \
                 Retry-After seconds (AUTH_LOCKOUT_THRESHOLD failures within \
                 AUTH_LOCKOUT_WINDOW_SECONDS lock it for AUTH_LOCKOUT_DURATION_SECONDS)",
            )
        }
    }

    /// 503 `SERVICE_UNAVAILABLE` with `Retry-After`.
    pub fn unavailable() -> Self {
        Self {
            retry_after: Some(RETRY_AFTER_UNAVAILABLE_SECS),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ServiceUnavailable,
                "the service is temporarily unavailable; retry later",
            )
        }
    }

    /// 503 for a store that cannot be reached now; the cause goes to the log only.
    pub fn outage(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::warn!(error = %ErrorChain(cause), "store unavailable");
        Self::unavailable()
    }

    /// 500 with a generic body; the cause goes to the log only.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %ErrorChain(cause), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "an internal error occurred",
        )
    }

    /// The status code.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code.
    #[must_use]
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// The field errors (422 only).
    #[must_use]
    pub fn field_errors(&self) -> &[FieldError] {
        &self.errors
    }
}

/// Why credentials were refused: each says what is wrong in words the caller can act on,
/// and none tells more than the holder of the credential already knows. A token whose
/// signature does not verify is only "invalid"; "expired" and "ended" are said only of tokens
/// that verified, and of keys whose checksum is right and whose record exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header (nor `X-API-Key` where one is accepted).
    Missing,
    /// Where an `X-API-Key` is accepted too: neither header was sent.
    MissingEither,
    /// An `Authorization` header of another scheme, or not visible ASCII.
    NotBearer,
    /// `Bearer` with no token after it.
    NoToken,
    /// `Bearer` with more than one token after it.
    ManyTokens,
    /// One of our API keys (right prefix and checksum) sent as a Bearer token.
    ApiKeyAsBearer,
    /// A token that is malformed, forged, of another kind, or not yet valid.
    Invalid,
    /// A token that verified but is past its expiry.
    Expired,
    /// A token that verified but whose session (or device, or user) has ended.
    Revoked,
    /// An `X-API-Key` that is malformed or unknown.
    KeyInvalid,
    /// An `X-API-Key` that was revoked.
    KeyRevoked,
    /// An `X-API-Key` past its expiry.
    KeyExpired,
}

impl Refusal {
    /// The problem's `detail` (also the challenge's `error_description`: no `"` or `\\`).
    #[must_use]
    pub const fn detail(self) -> &'static str {
        match self {
            Self::Missing => {
                "no credentials: send an access token as `Authorization: Bearer <token>`"
            }
            Self::MissingEither => {
                "no credentials: send an access token as `Authorization: Bearer <token>`, \
                 or an API key as `X-API-Key: <key>`"
            }
            Self::NotBearer => {
                "the Authorization header must be `Bearer <token>`; no other scheme is accepted"
            }
            Self::NoToken => "the Authorization header says Bearer but carries no token",
            Self::ManyTokens => {
                "the Authorization header must carry exactly one token after Bearer"
            }
            Self::ApiKeyAsBearer => {
                "an API key was sent as a Bearer token: send API keys in the X-API-Key header \
                 (where an endpoint accepts them); Bearer takes access tokens"
            }
            Self::Invalid => "the access token is invalid",
            Self::Expired => "the access token has expired: refresh it or log in again",
            Self::Revoked => {
                "the session of this access token has ended (logout, password change or \
                 revocation): log in again"
            }
            Self::KeyInvalid => "the X-API-Key is invalid",
            Self::KeyRevoked => "the X-API-Key has been revoked",
            Self::KeyExpired => "the X-API-Key has expired",
        }
    }
}

impl From<auth_core::model::TokenRejection> for Refusal {
    fn from(why: auth_core::model::TokenRejection) -> Self {
        use auth_core::model::TokenRejection;
        match why {
            TokenRejection::Invalid => Self::Invalid,
            TokenRejection::Expired => Self::Expired,
            TokenRejection::Revoked => Self::Revoked,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let body = Problem {
            problem_type: "about:blank".to_owned(),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.clone(),
            request_id: request_id::current().unwrap_or_default(),
            errors: self.errors.clone(),
        };
        let mut res = HttpResponse::build(self.status);
        res.content_type("application/problem+json");
        res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: `error_description` is the detail, which holds no `"` or `\\`.
            let challenge = if self.invalid_token {
                HeaderValue::from_str(&format!(
                    r#"Bearer realm="auth", error="invalid_token", error_description="{}""#,
                    self.detail
                ))
                .unwrap_or_else(|_| {
                    HeaderValue::from_static(r#"Bearer realm="auth", error="invalid_token""#)
                })
            } else {
                HeaderValue::from_static(r#"Bearer realm="auth""#)
            };
            res.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        match serde_json::to_vec(&body) {
            Ok(bytes) => res.body(bytes),
            Err(_) => res.finish(),
        }
    }
}

/// The one place a storage failure becomes an answer: 503 with `Retry-After` when the store
/// cannot be reached now, 500 otherwise; the cause goes to the log only. Every service
/// error's `Store` variant comes here.
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::Unavailable(_) => Self::outage(&err),
            StoreError::Internal(_) => Self::internal(&err),
        }
    }
}

impl From<OrganizationError> for ApiError {
    fn from(err: OrganizationError) -> Self {
        match err {
            OrganizationError::NotFound => Self::not_found(),
            OrganizationError::Forbidden => Self::forbidden(),
            OrganizationError::AlreadyMember => {
                Self::conflict(ErrorCode::AlreadyMember, "the user is already a member")
            }
            OrganizationError::LastOwner => Self::conflict(
                ErrorCode::LastOwner,
                "an organization must keep at least one owner",
            ),
            OrganizationError::Store(store) => store.into(),
        }
    }
}

impl From<ApiKeyError> for ApiError {
    fn from(err: ApiKeyError) -> Self {
        match err {
            ApiKeyError::NotFound => Self::not_found(),
            ApiKeyError::Forbidden => Self::forbidden(),
            ApiKeyError::AlreadyRevoked => {
                Self::conflict(ErrorCode::AlreadyRevoked, "the key is already revoked")
            }
            ApiKeyError::Expired => Self::conflict(
                ErrorCode::KeyExpired,
                "the key has expired and cannot be rotated or changed; create a new key",
            ),
            ApiKeyError::ExpiryOutOfRange => Self::validation(vec![FieldError::new(
                "expires_at",
                "out_of_range",
                format!(
                    "expires_at must be after now and at most {MAX_KEY_LIFETIME_DAYS} days ahead"
                ),
            )]),
            ApiKeyError::RefillWithoutCredits => Self::validation(vec![FieldError::new(
                "refill",
                "requires_remaining",
                "refill is only given with remaining",
            )]),
            ApiKeyError::Store(store) => store.into(),
            ApiKeyError::Internal(_) => Self::internal(&err),
        }
    }
}

impl From<DeviceError> for ApiError {
    fn from(err: DeviceError) -> Self {
        match err {
            DeviceError::NotFound => Self::not_found(),
            DeviceError::Forbidden => Self::forbidden(),
            DeviceError::Exists => {
                Self::conflict(ErrorCode::DeviceExists, "a device with this id exists")
            }
            DeviceError::AlreadyRevoked => {
                Self::conflict(ErrorCode::AlreadyRevoked, "the device is already revoked")
            }
            DeviceError::InvalidCredentials => Self::invalid_device_credentials(),
            DeviceError::InvalidToken(why) => Self::refused(why.into()),
            DeviceError::Store(store) => store.into(),
            DeviceError::Internal(_) => Self::internal(&err),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::EmailTaken => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::EmailTaken,
                "an account with this email already exists",
            ),
            AccountError::InvalidCredentials => Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::InvalidCredentials,
                "Invalid email or password",
            ),
            AccountError::InvalidRefreshToken => Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::InvalidRefreshToken,
                "the refresh token is invalid, expired or revoked",
            ),
            AccountError::InvalidToken(why) => Self::refused(why.into()),
            AccountError::LastOwner(organization) => Self::conflict(
                ErrorCode::LastOwner,
                &format!("the account is the only owner of organization {organization}"),
            ),
            AccountError::InvalidMfaCode => Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::InvalidMfaCode,
                "the second-factor code is wrong or was already used",
            ),
            AccountError::MfaAlreadyEnabled => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::MfaAlreadyEnabled,
                "a second factor is already enabled; remove it before enrolling again",
            ),
            AccountError::MfaUnavailable => Self {
                detail: "the second factor is not available on this service (no data key)"
                    .to_owned(),
                ..Self::unavailable()
            },
            AccountError::Locked { retry_after } => {
                let ms = retry_after.num_milliseconds().max(0);
                let secs = u64::try_from(ms).unwrap_or(0).div_ceil(1000);
                Self::too_many_attempts(secs.max(1))
            }
            AccountError::RegistrationDisabled => Self::new(
                StatusCode::FORBIDDEN,
                ErrorCode::RegistrationDisabled,
                "registration is closed on this service: an administrator makes accounts",
            ),
            AccountError::AccountDisabled => Self::new(
                StatusCode::FORBIDDEN,
                ErrorCode::AccountDisabled,
                "this account is disabled: ask an administrator of the service",
            ),
            AccountError::Forbidden => Self::forbidden(),
            AccountError::UserNotFound => Self::not_found(),
            AccountError::LastAdministrator => Self::conflict(
                ErrorCode::LastAdministrator,
                "the service must keep an enabled administrator: make another one first",
            ),
            AccountError::InvalidOneTimeToken => Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::InvalidOneTimeToken,
                "the link is invalid, was already used, or has expired; ask for a new one",
            ),
            AccountError::EmailNotVerified => Self::new(
                StatusCode::FORBIDDEN,
                ErrorCode::EmailNotVerified,
                "the email address is not verified yet: open the link in the mail we sent, \
                 or ask for a new one",
            ),
            AccountError::EmailUnchanged => Self::validation(vec![FieldError::new(
                "new_email",
                "unchanged",
                "the new address is the account's current address",
            )]),
            AccountError::TooSoon { retry_after } => {
                let ms = retry_after.num_milliseconds().max(0);
                let secs = u64::try_from(ms).unwrap_or(0).div_ceil(1000);
                Self {
                    detail: "a mail of this kind was sent to this address a moment ago; \
                             wait before asking again"
                        .to_owned(),
                    ..Self::rate_limited(secs.max(1), "")
                }
            }
            AccountError::Store(store) => store.into(),
            AccountError::Internal(_)
            | AccountError::UnrecognisedHash
            | AccountError::MfaRequired => Self::internal(&err),
        }
    }
}

/// Documented answers to a bad request body, shared by every endpoint that takes one.
#[derive(Debug, utoipa::IntoResponses)]
pub enum BodyErrors {
    /// Not JSON.
    #[response(
        status = 400,
        description = "`MALFORMED_REQUEST`: the body is not JSON",
        content_type = "application/problem+json"
    )]
    Malformed(Problem),
    /// Too large.
    #[response(
        status = 413,
        description = "`PAYLOAD_TOO_LARGE`: the body exceeds 64 KiB",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    /// Wrong media type.
    #[response(
        status = 415,
        description = "`UNSUPPORTED_MEDIA_TYPE`: the body is not application/json",
        content_type = "application/problem+json"
    )]
    MediaType(Problem),
    /// Breaks a rule.
    #[response(
        status = 422,
        description = "`VALIDATION_FAILED`: a field breaks a rule (see `errors`)",
        content_type = "application/problem+json"
    )]
    Invalid(Problem),
}

/// Documented answer of endpoints that need a Bearer token.
#[derive(Debug, utoipa::IntoResponses)]
pub enum BearerErrors {
    /// No valid token.
    #[response(
        status = 401,
        description = "`UNAUTHENTICATED`: missing, malformed, invalid, expired or revoked access token; `detail` (and `error_description` in `WWW-Authenticate`) says which",
        content_type = "application/problem+json"
    )]
    Unauthenticated(Problem),
}

/// Documented answers of endpoints that take no body, when one is sent anyway.
#[derive(Debug, utoipa::IntoResponses)]
pub enum NoBodyErrors {
    /// Too large.
    #[response(
        status = 413,
        description = "`PAYLOAD_TOO_LARGE`: a body (none is needed) exceeds 64 KiB",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    /// Wrong media type.
    #[response(
        status = 415,
        description = "`UNSUPPORTED_MEDIA_TYPE`: a body (none is needed) is not application/json",
        content_type = "application/problem+json"
    )]
    MediaType(Problem),
}

/// Documented answer of endpoints under a per-IP rate limit.
#[derive(Debug, utoipa::IntoResponses)]
pub enum LimitedErrors {
    /// Over the limit.
    #[response(
        status = 429,
        description = "`RATE_LIMITED`: over the per-IP limit of this endpoint group (with `Retry-After`); `TOO_MANY_ATTEMPTS` on login while the email is locked",
        content_type = "application/problem+json",
        headers(
            ("Retry-After" = u64, description = "Seconds to wait"),
            ("X-RateLimit-Limit" = u64, description = "Requests a minute allowed per client IP"),
            ("X-RateLimit-Remaining" = u64, description = "Requests left now"),
            ("X-RateLimit-Reset" = u64, description = "Seconds until the allowance is whole again"),
        )
    )]
    Limited(Problem),
}

/// Documented answer of endpoints that need the store.
#[derive(Debug, utoipa::IntoResponses)]
pub enum StoreErrors {
    /// Store unreachable.
    #[response(
        status = 503,
        description = "`SERVICE_UNAVAILABLE`: the store is unreachable; retry after `Retry-After` seconds",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

/// Documented answers of endpoints for organization managers.
#[derive(Debug, utoipa::IntoResponses)]
pub enum ManagerErrors {
    /// No valid credentials.
    #[response(
        status = 401,
        description = "`UNAUTHENTICATED`: missing or bad Bearer token or `X-API-Key`; `detail` says what is wrong",
        content_type = "application/problem+json"
    )]
    Unauthenticated(Problem),
    /// Lacks the right.
    #[response(
        status = 403,
        description = "`FORBIDDEN`: a member without the right, or a key without the `admin` scope",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    /// Not visible.
    #[response(
        status = 404,
        description = "`NOT_FOUND`: no such resource, or not visible to the caller",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> StoreError {
        StoreError::unavailable("connection refused")
    }

    fn broken() -> StoreError {
        StoreError::internal("unexpected row")
    }

    /// Every service error's `Store` variant answers as the storage failure itself does.
    #[test]
    fn a_storage_failure_answers_alike_from_every_service() {
        let outages: Vec<ApiError> = vec![
            down().into(),
            AccountError::Store(down()).into(),
            ApiKeyError::Store(down()).into(),
            DeviceError::Store(down()).into(),
            OrganizationError::Store(down()).into(),
        ];
        for answer in outages {
            assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(*answer.code(), ErrorCode::ServiceUnavailable);
            assert_eq!(answer.retry_after, Some(RETRY_AFTER_UNAVAILABLE_SECS));
        }
        let failures: Vec<ApiError> = vec![
            broken().into(),
            AccountError::Store(broken()).into(),
            ApiKeyError::Store(broken()).into(),
            DeviceError::Store(broken()).into(),
            OrganizationError::Store(broken()).into(),
            AccountError::Internal("signing failed".into()).into(),
        ];
        for answer in failures {
            assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(*answer.code(), ErrorCode::InternalError);
            assert_eq!(answer.detail, "an internal error occurred");
            assert_eq!(answer.retry_after, None);
        }
    }
}
