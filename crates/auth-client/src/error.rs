//! What can go wrong when calling the service: its own problem+json answers as a typed
//! [`ApiError`], and the failures of getting an answer at all.
//!
//! No error ever shows a secret: request bodies are never kept, URLs carry no credentials
//! (the contract forbids them there), and the service's problem documents hold none. The one
//! error that carries a secret, [`Error::MfaRequired`], holds its `mfa_token` as a
//! [`SecretString`](secrecy::SecretString), out of `Debug` and `Display`, so that the caller
//! can complete the login.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::types::{MfaChallenge, TokenRejection};

pub use auth_api::ErrorCode;

pub use auth_api::FieldError;

/// An error answer of the service: the RFC 9457 problem document, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The machine-readable code.
    pub code: ErrorCode,
    /// The status's reason phrase.
    pub title: String,
    /// What went wrong, for people.
    pub detail: String,
    /// The request's id at the service (body `request_id`, else the `X-Request-Id` header),
    /// to find it in the service's logs.
    pub request_id: Option<String>,
    /// Field errors of a 422.
    pub errors: Vec<FieldError>,
    /// `Retry-After` of a 429 or 503.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Whether this answer has the code `code`.
    #[must_use]
    pub fn is(&self, code: &ErrorCode) -> bool {
        &self.code == code
    }

    /// Builds the error from a non-success answer: its problem document when it has one, or
    /// the bare status otherwise.
    pub(crate) fn from_answer(
        status: u16,
        body: &[u8],
        request_id: Option<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        let reason = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error")
            .to_owned();
        match serde_json::from_slice::<auth_api::Problem>(body) {
            Ok(p) => Self {
                status,
                code: p.code,
                title: if p.title.is_empty() { reason } else { p.title },
                detail: p.detail,
                request_id: Some(p.request_id)
                    .filter(|id| !id.is_empty())
                    .or(request_id),
                errors: p.errors,
                retry_after,
            },
            Err(_) => Self {
                status,
                code: ErrorCode::Other(String::new()),
                detail: format!("the answer ({status}) carried no problem document"),
                title: reason,
                request_id,
                errors: Vec::new(),
                retry_after,
            },
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.detail)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Any failure of a client call.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The service answered with an error status and (usually) a problem document.
    #[error("the auth service refused the request: {0}")]
    Api(Box<ApiError>),
    /// No connection could be made: nothing was sent.
    #[error("cannot connect to the auth service")]
    Connect(#[source] Arc<reqwest::Error>),
    /// The connection failed during the exchange: the request may have reached the service.
    #[error("the connection to the auth service failed")]
    Transport(#[source] Arc<reqwest::Error>),
    /// No complete answer within the request timeout: the request may have reached the
    /// service.
    #[error("no answer from the auth service within {0:?}")]
    Timeout(Duration),
    /// The circuit breaker is open after repeated failures: the call was not attempted.
    #[error("the auth service is failing: circuit open, next attempt allowed in {retry_in:?}")]
    CircuitOpen {
        /// Time until the breaker lets a probe through (zero while a probe is in flight).
        retry_in: Duration,
    },
    /// The service answered, but not as the contract says (an unexpected status or body).
    #[error("unexpected answer from the auth service: {0}")]
    UnexpectedResponse(String),
    /// The client's configuration cannot be used.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// An argument was refused before anything was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The password was right, but the user has a second factor: no session is open until a
    /// code is sent with the challenge's `mfa_token`
    /// ([`AuthClient::complete_mfa`](crate::AuthClient::complete_mfa)). Only
    /// [`login`](crate::AuthClient::login) (and
    /// [`LoginOutcome::into_tokens`](crate::LoginOutcome::into_tokens)) answers this;
    /// [`sign_in`](crate::AuthClient::sign_in) answers a
    /// [`LoginOutcome`](crate::LoginOutcome) instead.
    #[error(
        "the user has a second factor: complete the login with a code and the challenge's mfa_token"
    )]
    MfaRequired(MfaChallenge),
}

impl Error {
    /// Whether the failure may go away by itself: the service was unreachable, slow, failing
    /// (5xx), rate limiting (429), or the breaker is open. A 4xx answer is not transient.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api(e) => e.status >= 500 || e.status == 429,
            Self::Connect(_) | Self::Transport(_) | Self::Timeout(_) | Self::CircuitOpen { .. } => {
                true
            }
            Self::UnexpectedResponse(_)
            | Self::Config(_)
            | Self::InvalidArgument(_)
            | Self::MfaRequired(_) => false,
        }
    }

    /// The service's answer, when the failure is one.
    #[must_use]
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The challenge of a login that needs the second factor.
    #[must_use]
    pub fn mfa_challenge(&self) -> Option<&MfaChallenge> {
        match self {
            Self::MfaRequired(challenge) => Some(challenge),
            _ => None,
        }
    }

    /// The HTTP status of the service's error answer, when there was one.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        self.api().map(|e| e.status)
    }

    /// Whether the service answered with `code`.
    #[must_use]
    pub fn is_code(&self, code: &ErrorCode) -> bool {
        self.api().is_some_and(|e| e.is(code))
    }

    /// How long to wait before trying again, when the service or the breaker said so.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api(e) => e.retry_after,
            Self::CircuitOpen { retry_in } => Some(*retry_in),
            _ => None,
        }
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Self::Api(Box::new(e))
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is refused: answer 401.
    #[error("the token is refused: {}", .0.code())]
    Rejected(TokenRejection),
    /// No verdict could be had: the JWKS could not be fetched, or the service could not be
    /// reached for a remote verification. Answer 503.
    #[error("the token cannot be verified now")]
    Unavailable(#[source] Error),
    /// Local verification was asked for, but the client has no keys: the service publishes
    /// none (HS256) and no HS256 secret is configured. A configuration error.
    #[error(
        "local token verification is not possible: the service publishes no keys (HS256); \
         configure its secret, use an asymmetric algorithm, or verify through the service"
    )]
    NoLocalKeys,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_documents_are_typed() {
        let body = br#"{"type":"about:blank","title":"Unprocessable Entity","status":422,
            "detail":"request body failed validation","code":"VALIDATION_FAILED","request_id":"r1",
            "errors":[{"field":"password","code":"too_short","message":"too short"}]}"#;
        let e = ApiError::from_answer(422, body, Some("header-id".into()), None);
        assert_eq!(e.code, ErrorCode::ValidationFailed);
        assert_eq!(e.request_id.as_deref(), Some("r1"));
        assert_eq!(e.errors[0].field, "password");
        assert_eq!(
            e.to_string(),
            "422 VALIDATION_FAILED: request body failed validation (request r1)"
        );
    }

    #[test]
    fn a_bare_status_still_makes_an_error() {
        let e = ApiError::from_answer(502, b"<html>bad gateway</html>", None, None);
        assert_eq!(e.code, ErrorCode::Other(String::new()));
        assert_eq!(e.title, "Bad Gateway");
        assert!(Error::from(e).is_transient());
    }

    #[test]
    fn every_known_code_round_trips() {
        for code in [
            "MALFORMED_REQUEST",
            "INVALID_CREDENTIALS",
            "INVALID_REFRESH_TOKEN",
            "INVALID_DEVICE_CREDENTIALS",
            "UNAUTHENTICATED",
            "INVALID_MFA_CODE",
            "FORBIDDEN",
            "NOT_FOUND",
            "EMAIL_TAKEN",
            "DEVICE_EXISTS",
            "ALREADY_MEMBER",
            "ALREADY_REVOKED",
            "LAST_OWNER",
            "MFA_ALREADY_ENABLED",
            "PAYLOAD_TOO_LARGE",
            "UNSUPPORTED_MEDIA_TYPE",
            "VALIDATION_FAILED",
            "TOO_MANY_ATTEMPTS",
            "RATE_LIMITED",
            "SERVICE_UNAVAILABLE",
            "INTERNAL_ERROR",
        ] {
            let parsed = ErrorCode::parse(code);
            assert!(!matches!(parsed, ErrorCode::Other(_)), "{code}");
            assert_eq!(parsed.as_str(), code);
        }
    }
}
