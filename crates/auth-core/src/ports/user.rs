//! `UserRepository`: where user accounts live.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::model::{DisplayName, Email, PasswordHash, User, UserId};

/// Creating a user failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// Another account has the same normalised email.
    #[error("email already registered")]
    EmailTaken,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a password hash is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordUpdate {
    /// The same password, hashed with the current parameters (at login): no event.
    Rehash,
    /// A new password chosen by its user: recorded as `user.password_changed`.
    Change,
}

/// Stores user accounts.
///
/// Implementations MUST:
/// - keep emails unique by [`Email::normalized`], atomically: of any number of concurrent
///   `create` calls for one normalised email, exactly one succeeds and the others get
///   [`CreateUserError::EmailTaken`];
/// - store the email as typed ([`Email::as_str`]) and find it by its normalised form;
/// - return what was stored, field for field (timestamps at microsecond precision or better);
/// - append `user.registered` to the event log in the same atomic step as a `create`
///   (at the user's `created_at`);
/// - append `user.password_changed` to the event log in the same atomic step as an
///   `update_password` for [`PasswordUpdate::Change`], and `user.email_verified` with a
///   `mark_email_verified` that verified the address;
/// - classify errors as [`StoreError`] says.
#[async_trait]
pub trait UserRepository: Send + Sync + 'static {
    /// Inserts a new user.
    ///
    /// # Errors
    /// [`CreateUserError::EmailTaken`] when the normalised email exists; `Store` otherwise.
    async fn create(&self, user: &User) -> Result<(), CreateUserError>;

    /// Finds a user by normalised email.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; a missing user is `Ok(None)`.
    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError>;

    /// Finds a user by id.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; a missing user is `Ok(None)`.
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;

    /// Replaces the password hash and sets `updated_at`. Returns `false` when no such user.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn update_password(
        &self,
        id: UserId,
        hash: &PasswordHash,
        why: PasswordUpdate,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Sets the display name (`None` clears it) and `updated_at`; returns the user as stored
    /// afterwards, or `None` when no such user.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn update_profile(
        &self,
        id: UserId,
        display_name: Option<&DisplayName>,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError>;

    /// Marks the user's current address verified at `now` (an operator's decision, or a
    /// confirmation); an address already verified keeps its time and records nothing.
    /// Returns `false` when no such user.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn mark_email_verified(&self, id: UserId, now: DateTime<Utc>)
    -> Result<bool, StoreError>;
}
