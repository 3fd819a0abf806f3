//! Service administration: `/admin/users*`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::account::MembershipSummary;
use crate::redacted::Redacted;

/// An account as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminUser {
    /// User id.
    pub id: Uuid,
    /// Email as typed.
    pub email: String,
    /// Display name, or null.
    pub display_name: Option<String>,
    /// Service administrator.
    pub is_admin: bool,
    /// Disabled by an administrator: cannot log in.
    pub disabled: bool,
    /// The address is verified.
    pub email_verified: bool,
    /// A second factor is in force.
    pub mfa_enabled: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// The last successful login, or null.
    pub last_login_at: Option<DateTime<Utc>>,
}

/// `GET /admin/users` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminUserList {
    /// Accounts in creation order.
    pub items: Vec<AdminUser>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<Uuid>,
}

/// `GET /admin/users/{id}` answer: the account and its organizations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminUserDetail {
    /// The account.
    #[serde(flatten)]
    pub user: AdminUser,
    /// Organizations it belongs to.
    pub organizations: Vec<MembershipSummary>,
}

/// `POST /admin/users` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateUserRequest {
    /// Email address.
    #[cfg_attr(feature = "openapi", schema(example = "ada@example.com", format = Email, max_length = 254))]
    pub email: String,
    /// A password under the policy; without one, a reset link is mailed to the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Password, min_length = 8, max_length = 128, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub password: Option<Redacted>,
    /// Name to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// A service administrator (default false).
    #[serde(default)]
    pub is_admin: bool,
}

/// `PATCH /admin/users/{id}` body: each field present is changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateUserRequest {
    /// Grant or revoke service administration (the last enabled administrator keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_admin: Option<bool>,
    /// Disable (every session ends at once) or enable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// A new display name; `null` clears it; absent leaves it.
    #[serde(
        default,
        deserialize_with = "present_maybe_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "Ada Lovelace"))]
    pub display_name: Option<Option<String>>,
}

/// A present field as `Some` (holding `None` for `null`); an absent one stays `None` by
/// `default`.
fn present_maybe_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}
