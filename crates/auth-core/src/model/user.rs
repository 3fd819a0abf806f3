//! The user account.

use chrono::{DateTime, Utc};

use super::{DisplayName, Email, PasswordHash, UserId};

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable id.
    pub id: UserId,
    /// Address as typed; unique case-insensitively.
    pub email: Email,
    /// Optional name to show.
    pub display_name: Option<DisplayName>,
    /// The current password hash.
    pub password_hash: PasswordHash,
    /// Service administrator (may act on any organization).
    pub is_admin: bool,
    /// When the address was confirmed through a mailed link (or by an operator); `None`
    /// while it is unverified. A change of address sets it when the new one is confirmed.
    pub email_verified_at: Option<DateTime<Utc>>,
    /// When an administrator disabled the account (it cannot log in); `None` while enabled.
    pub disabled_at: Option<DateTime<Utc>>,
    /// When the account last logged in successfully, if it has.
    pub last_login_at: Option<DateTime<Utc>>,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// When the account last changed.
    pub updated_at: DateTime<Utc>,
}

impl User {
    /// Whether the account's current address is verified.
    #[must_use]
    pub fn email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }

    /// Whether an administrator disabled the account.
    #[must_use]
    pub fn disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}
