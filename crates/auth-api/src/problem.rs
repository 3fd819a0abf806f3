//! The problem+json body (RFC 9457) of every error answer, and its field errors.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, for programs: the `code` of a problem document.
///
/// Read leniently: a code this side does not know (a newer service's) is kept in
/// [`Other`](Self::Other), as is the empty code of an answer that carried no problem document
/// (a proxy's error page). The document declares `code` a string, so new codes can be added.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: the body is not JSON.
    MalformedRequest,
    /// 401: wrong email or password (login, password change).
    InvalidCredentials,
    /// 401: the refresh token is invalid, spent, expired or revoked.
    InvalidRefreshToken,
    /// 401: device authentication failed (unknown device, wrong secret, revoked device).
    InvalidDeviceCredentials,
    /// 401: missing or bad token or API key.
    Unauthenticated,
    /// 401: the second-factor code (TOTP or recovery code) is wrong or already used.
    InvalidMfaCode,
    /// 401: the mailed link (one-time token) is invalid, used, expired or superseded.
    InvalidOneTimeToken,
    /// 403: the password is right but the account's address is not verified (and the
    /// service requires it).
    EmailNotVerified,
    /// 403: self-registration is closed; an administrator makes accounts.
    RegistrationDisabled,
    /// 403: the password is right but an administrator disabled the account.
    AccountDisabled,
    /// 403: a valid caller lacking the right.
    Forbidden,
    /// 404: no such resource, or not visible to the caller.
    NotFound,
    /// 405: the path exists, the method does not (see `Allow`).
    MethodNotAllowed,
    /// 408: the request took too long to arrive.
    RequestTimeout,
    /// 409: an account with this email exists.
    EmailTaken,
    /// 409: a device with this id exists.
    DeviceExists,
    /// 409: the user is already a member.
    AlreadyMember,
    /// 409: the key or device is already revoked.
    AlreadyRevoked,
    /// 409: an expired key cannot be rotated.
    KeyExpired,
    /// 409: an organization must keep an owner.
    LastOwner,
    /// 409: the change would leave no enabled service administrator.
    LastAdministrator,
    /// 409: the second factor is already enabled.
    MfaAlreadyEnabled,
    /// 413: the body is over 64 KiB.
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 422: a field breaks a rule (see `errors`).
    ValidationFailed,
    /// 429: the account is locked after failed logins.
    TooManyAttempts,
    /// 429: over the per-address rate limit.
    RateLimited,
    /// 503: the service's store is unreachable; retry after `Retry-After`.
    ServiceUnavailable,
    /// 500: an internal error of the service.
    InternalError,
    /// A code not listed here, or an empty string when the answer carried no problem document.
    Other(String),
}

impl ErrorCode {
    /// The code as it appears in the problem document.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::MalformedRequest => "MALFORMED_REQUEST",
            Self::InvalidCredentials => "INVALID_CREDENTIALS",
            Self::InvalidRefreshToken => "INVALID_REFRESH_TOKEN",
            Self::InvalidDeviceCredentials => "INVALID_DEVICE_CREDENTIALS",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::InvalidMfaCode => "INVALID_MFA_CODE",
            Self::MfaAlreadyEnabled => "MFA_ALREADY_ENABLED",
            Self::InvalidOneTimeToken => "INVALID_ONE_TIME_TOKEN",
            Self::EmailNotVerified => "EMAIL_NOT_VERIFIED",
            Self::RegistrationDisabled => "REGISTRATION_DISABLED",
            Self::AccountDisabled => "ACCOUNT_DISABLED",
            Self::LastAdministrator => "LAST_ADMINISTRATOR",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::EmailTaken => "EMAIL_TAKEN",
            Self::DeviceExists => "DEVICE_EXISTS",
            Self::AlreadyMember => "ALREADY_MEMBER",
            Self::AlreadyRevoked => "ALREADY_REVOKED",
            Self::KeyExpired => "KEY_EXPIRED",
            Self::LastOwner => "LAST_OWNER",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::ValidationFailed => "VALIDATION_FAILED",
            Self::TooManyAttempts => "TOO_MANY_ATTEMPTS",
            Self::RateLimited => "RATE_LIMITED",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Self::InternalError => "INTERNAL_ERROR",
            Self::Other(code) => code,
        }
    }

    /// The code named by `code`.
    #[must_use]
    pub fn parse(code: &str) -> Self {
        match code {
            "MALFORMED_REQUEST" => Self::MalformedRequest,
            "INVALID_CREDENTIALS" => Self::InvalidCredentials,
            "INVALID_REFRESH_TOKEN" => Self::InvalidRefreshToken,
            "INVALID_DEVICE_CREDENTIALS" => Self::InvalidDeviceCredentials,
            "UNAUTHENTICATED" => Self::Unauthenticated,
            "INVALID_MFA_CODE" => Self::InvalidMfaCode,
            "MFA_ALREADY_ENABLED" => Self::MfaAlreadyEnabled,
            "INVALID_ONE_TIME_TOKEN" => Self::InvalidOneTimeToken,
            "EMAIL_NOT_VERIFIED" => Self::EmailNotVerified,
            "REGISTRATION_DISABLED" => Self::RegistrationDisabled,
            "ACCOUNT_DISABLED" => Self::AccountDisabled,
            "LAST_ADMINISTRATOR" => Self::LastAdministrator,
            "FORBIDDEN" => Self::Forbidden,
            "NOT_FOUND" => Self::NotFound,
            "METHOD_NOT_ALLOWED" => Self::MethodNotAllowed,
            "REQUEST_TIMEOUT" => Self::RequestTimeout,
            "EMAIL_TAKEN" => Self::EmailTaken,
            "DEVICE_EXISTS" => Self::DeviceExists,
            "ALREADY_MEMBER" => Self::AlreadyMember,
            "ALREADY_REVOKED" => Self::AlreadyRevoked,
            "KEY_EXPIRED" => Self::KeyExpired,
            "LAST_OWNER" => Self::LastOwner,
            "PAYLOAD_TOO_LARGE" => Self::PayloadTooLarge,
            "UNSUPPORTED_MEDIA_TYPE" => Self::UnsupportedMediaType,
            "VALIDATION_FAILED" => Self::ValidationFailed,
            "TOO_MANY_ATTEMPTS" => Self::TooManyAttempts,
            "RATE_LIMITED" => Self::RateLimited,
            "SERVICE_UNAVAILABLE" => Self::ServiceUnavailable,
            "INTERNAL_ERROR" => Self::InternalError,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::parse(&code))
    }
}

impl Default for ErrorCode {
    fn default() -> Self {
        Self::Other(String::new())
    }
}

/// One rule a field broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// The field, as a JSON path (`password`, `items[2].key`).
    pub field: String,
    /// Machine-readable reason (`required`, `invalid_type`, `too_short`, ...).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl fmt::Display,
    ) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            message: message.to_string(),
        }
    }
}

/// The body of every error response (`application/problem+json`).
///
/// Reading one, a member that is missing is left empty (a proxy's problem document may hold
/// fewer); the service always sends every member but `errors`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(description = "The body of every error response (`application/problem+json`).")
)]
#[serde(from = "ProblemRead")]
pub struct Problem {
    /// Always `about:blank`: `code` says what happened.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(example = "about:blank"))]
    pub problem_type: String,
    /// The status's reason phrase.
    #[cfg_attr(feature = "openapi", schema(example = "Unauthorized"))]
    pub title: String,
    /// HTTP status.
    #[cfg_attr(feature = "openapi", schema(example = 401))]
    pub status: u16,
    /// What went wrong, for people.
    #[cfg_attr(feature = "openapi", schema(example = "Invalid email or password"))]
    pub detail: String,
    /// What went wrong, for programs.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, example = "INVALID_CREDENTIALS")
    )]
    pub code: ErrorCode,
    /// The request's id (also in `X-Request-Id` and the logs).
    pub request_id: String,
    /// Field errors (422 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// A problem document as read: every member may be missing.
#[derive(Default, Deserialize)]
#[serde(default)]
struct ProblemRead {
    #[serde(rename = "type")]
    problem_type: String,
    title: String,
    status: u16,
    detail: String,
    code: ErrorCode,
    request_id: String,
    errors: Vec<FieldError>,
}

impl From<ProblemRead> for Problem {
    fn from(p: ProblemRead) -> Self {
        Self {
            problem_type: p.problem_type,
            title: p.title,
            status: p.status,
            detail: p.detail,
            code: p.code,
            request_id: p.request_id,
            errors: p.errors,
        }
    }
}
