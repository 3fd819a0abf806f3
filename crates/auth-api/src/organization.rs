//! Organizations and their members: `/organizations*`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A role in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = "member"))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Owner: everything, including managing owners.
    Owner,
    /// Admin: manages members, keys and devices.
    Admin,
    /// Member: sees the organization.
    Member,
    /// A role this build does not know (read only; never sent).
    #[serde(other, skip_serializing)]
    Unknown,
}

/// `POST /organizations` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateOrganization {
    /// 1..=100 characters.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "Acme"))]
    pub name: String,
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrganizationBody {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// An organization with the caller's role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrganizationWithRole {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// `owner`, `admin` or `member`.
    pub role: Role,
}

/// A list of the caller's organizations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrganizationList {
    /// Items.
    pub items: Vec<OrganizationWithRole>,
}

/// `POST /organizations/{org_id}/members` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddMember {
    /// The user's email.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "bob@example.com"))]
    pub email: String,
    /// `admin` or `member`.
    pub role: Role,
}

/// A member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberBody {
    /// The user.
    pub user_id: Uuid,
    /// Their email.
    pub email: String,
    /// Their role.
    pub role: Role,
}

/// The members of an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberList {
    /// Items.
    pub items: Vec<MemberBody>,
}
