//! Organizations and their members.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use thiserror::Error;

use super::text::{has_bidi_controls, has_control_chars};
use super::{Email, OrganizationId, UserId};

/// An organization's name: trimmed, 1..=100 characters, no control characters, no
/// bidirectional controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationName(String);

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NameError {
    /// Empty after trimming.
    #[error("name must not be empty")]
    Empty,
    /// Longer than 100 characters.
    #[error("name must be at most 100 characters")]
    TooLong,
    /// Contains a control character.
    #[error("name must not contain control characters")]
    ControlCharacter,
    /// Contains a bidirectional control (U+202A..U+202E, U+2066..U+2069), which would
    /// reorder how the name is shown.
    #[error("name must not contain bidirectional control characters")]
    BidiControl,
}

/// Validates a trimmed 1..=100 character name without control characters or bidirectional
/// controls. The zero-width joiner stays allowed: emoji sequences need it.
pub(crate) fn parse_name(raw: &str) -> Result<String, NameError> {
    let name = parse_stored_name(raw)?;
    if has_bidi_controls(&name) {
        return Err(NameError::BidiControl);
    }
    Ok(name)
}

/// [`parse_name`] without the bidirectional-control rule, for names stored before it.
pub(crate) fn parse_stored_name(raw: &str) -> Result<String, NameError> {
    let trimmed = raw.trim();
    if has_control_chars(trimmed) {
        return Err(NameError::ControlCharacter);
    }
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    if trimmed.chars().count() > 100 {
        return Err(NameError::TooLong);
    }
    Ok(trimmed.to_owned())
}

impl OrganizationName {
    /// Validates a name.
    ///
    /// # Errors
    /// [`NameError`].
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        parse_name(raw).map(Self)
    }

    /// Rebuilds a name stored before bidirectional controls were refused (every other rule
    /// of `parse` holds). For storage adapters; new input goes through `parse`.
    ///
    /// # Errors
    /// [`NameError`].
    pub fn from_stored(raw: &str) -> Result<Self, NameError> {
        parse_stored_name(raw).map(Self)
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An organization: it owns API keys and devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// Stable id.
    pub id: OrganizationId,
    /// Display name (not unique).
    pub name: OrganizationName,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A member's role. Owners and admins manage the organization's members and credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Full control; at least one per organization.
    Owner,
    /// Manages members (except owners) and credentials.
    Admin,
    /// Sees the organization.
    Member,
}

impl Role {
    /// `owner`, `admin` or `member`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// Owners and admins manage.
    #[must_use]
    pub const fn can_manage(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not one of `owner`, `admin`, `member`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("role must be one of owner, admin, member")]
pub struct RoleError;

impl FromStr for Role {
    type Err = RoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Self::Owner),
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            _ => Err(RoleError),
        }
    }
}

/// A user's membership in an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The organization.
    pub organization_id: OrganizationId,
    /// The member.
    pub user_id: UserId,
    /// Their role.
    pub role: Role,
    /// When they joined.
    pub created_at: DateTime<Utc>,
}

/// A member as listed: the membership and the member's email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The membership.
    pub membership: Membership,
    /// The member's email.
    pub email: Email,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_bidi_controls_but_keep_joiners() {
        for c in crate::model::text::BIDI {
            let raw = format!("Acme{c}exe.pdf");
            assert!(OrganizationName::parse(&raw).is_err(), "{c:?}");
            assert!(crate::model::ApiKeyName::parse(&raw).is_err(), "{c:?}");
        }
        let team = "Team \u{1F469}\u{200D}\u{1F4BB}";
        assert_eq!(OrganizationName::parse(team).unwrap().as_str(), team);
    }
}
