//! The problem+json body (RFC 9457) of every error answer, and its field errors.

use std::fmt;

use serde::{Deserialize, Serialize};

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
    #[cfg_attr(feature = "openapi", schema(example = "INVALID_CREDENTIALS"))]
    pub code: String,
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
    code: String,
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
