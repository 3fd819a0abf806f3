//! Accounts and sessions: `/auth/*` and `/users/me*`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::organization::Role;
use crate::redacted::Redacted;

/// `POST /auth/register` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterRequest {
    /// Email address (trimmed; unique case-insensitively).
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "ada@example.com", format = Email, max_length = 254))]
    pub email: String,
    /// Password: 8..=128 characters by default, no composition rules.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "violet tugboat margin 47", format = Password, min_length = 8, max_length = 128, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub password: Redacted,
    /// Name to show (1..=100 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "Ada Lovelace"))]
    pub display_name: Option<String>,
}

/// `PATCH /users/me` body. `display_name` must be present; `null` clears it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateProfileRequest {
    /// Name to show (1..=100 characters), or `null` for none.
    // Present but nullable: with a `deserialize_with`, serde no longer takes a missing
    // `Option` for `None`, so `{}` is refused (422) instead of clearing the name.
    #[serde(deserialize_with = "present_or_null")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, required = true, example = "Ada Lovelace"))]
    pub display_name: Option<String>,
}

fn present_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// A created account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    /// Email address.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "ada@example.com", format = Email, max_length = 254))]
    pub email: String,
    /// Password.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Password, min_length = 1, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub password: Redacted,
}

/// The user a token pair belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenUser {
    /// User id.
    pub id: Uuid,
    /// Email as typed.
    pub email: String,
}

/// The `token_type` of every token answer (RFC 6750).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = "Bearer"))]
pub enum TokenType {
    /// `Bearer`.
    #[default]
    Bearer,
}

impl PartialEq<str> for TokenType {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for TokenType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A new access token and refresh token. `Debug` never shows the tokens.
///
/// `S` is how a secret is held: [`Redacted`] by default; a client may read them into its own
/// secret type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        bound = "",
        description = "A new access token and refresh token. `Debug` never shows the tokens."
    )
)]
pub struct TokenResponse<S = Redacted> {
    /// JWT access token (`typ: at+jwt`).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub access_token: S,
    /// Opaque refresh token; shown once, rotated on every use.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub refresh_token: S,
    /// Always `Bearer`.
    pub token_type: TokenType,
    /// Seconds until the access token expires.
    #[cfg_attr(feature = "openapi", schema(example = 900))]
    pub expires_in: i64,
    /// Seconds until the session (and so the refresh token) expires.
    #[cfg_attr(feature = "openapi", schema(example = 2_592_000))]
    pub refresh_expires_in: i64,
    /// The user.
    pub user: TokenUser,
}

/// A body carrying a refresh token (`refresh`, `logout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshRequest {
    /// The refresh token.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub refresh_token: Redacted,
}

/// `GET /auth/verify` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyTokenRequest {
    /// Any token the service issued.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub token: Redacted,
}

/// Which kind of token a verdict is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = "user"))]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// A user access token.
    User,
    /// A device token.
    Device,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = "EXPIRED"))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TokenRejection {
    /// Past its `exp` (plus the leeway).
    Expired,
    /// Its session ended or its device was revoked (only the service can tell).
    Revoked,
    /// Malformed, forged, of the wrong kind, or from another issuer or audience (and any
    /// reason this build does not know).
    #[serde(other)]
    Invalid,
}

impl TokenRejection {
    /// The contract's code (`INVALID`, `EXPIRED`, `REVOKED`).
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Invalid => "INVALID",
            Self::Expired => "EXPIRED",
            Self::Revoked => "REVOKED",
        }
    }
}

/// `POST /auth/verify-token` answer: `valid:false` with `error` for a bad token, never 401.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyTokenResponse {
    /// Whether the token is valid now.
    pub valid: bool,
    /// `user` or `device`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<TokenKind>,
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
    pub error: Option<TokenRejection>,
}

/// An organization the user belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MembershipSummary {
    /// Organization id.
    pub id: Uuid,
    /// Organization name.
    pub name: String,
    /// `owner`, `admin` or `member`.
    pub role: Role,
}

/// `GET /users/me` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    /// User id.
    pub id: Uuid,
    /// Email as typed.
    pub email: String,
    /// Display name, or null.
    pub display_name: Option<String>,
    /// Service administrator.
    pub is_admin: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Organizations the user belongs to.
    pub organizations: Vec<MembershipSummary>,
    /// Whether a second factor (TOTP) is enabled.
    #[serde(default)]
    pub mfa_enabled: bool,
    /// Whether the address is verified (its mailed link was opened).
    #[serde(default)]
    pub email_verified: bool,
}

/// `DELETE /users/me` body: the password, to prove it is the account's holder asking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeleteAccountRequest {
    /// The password in use now.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Password, min_length = 1, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub password: Redacted,
}

/// `POST /users/me/password` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangePasswordRequest {
    /// The password in use now.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Password, min_length = 1, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub current_password: Redacted,
    /// The new password (same rules as registration).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Password, min_length = 8, max_length = 128, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub new_password: Redacted,
}
