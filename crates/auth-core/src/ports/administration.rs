//! `UserAdministration`: what a service administrator does to accounts that no user does to
//! their own: list them, grant or revoke administration, disable and enable.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::model::{SessionId, User, UserId};

/// Which accounts to list: those whose normalised address contains `email` (all when
/// `None`), after `after` in id order (ids are time-ordered: creation order), at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuery {
    /// A part of the address, lower-cased.
    pub email: Option<String>,
    /// The last id of the previous page.
    pub after: Option<UserId>,
    /// Page size.
    pub limit: usize,
}

/// An account as administrators list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserListing {
    /// The account.
    pub user: User,
    /// Whether a second factor is in force.
    pub mfa_enabled: bool,
}

/// What a change of `is_admin` or of `disabled` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminChange {
    /// Done (or already so): the account as stored now, and the sessions the change ended
    /// (disabling ends every live one).
    Done {
        /// The account afterwards.
        user: User,
        /// Sessions ended by this change.
        ended: Vec<SessionId>,
    },
    /// No such account.
    NotFound,
    /// The account is the last enabled administrator: it keeps its rights, nothing changed.
    LastAdministrator,
}

/// Administration of accounts, over the store of the users, sessions and second factors.
///
/// Implementations MUST:
/// - decide "the last enabled administrator" atomically with concurrent changes: of two
///   concurrent demotions (or disablings) of the only two administrators, one is refused;
/// - in [`set_disabled`](Self::set_disabled) with `true`, end every live session of the
///   account in the same atomic step (a `session.ended` event each, so every instance drops
///   them), and append `user.disabled`; with `false`, append `user.enabled`; nothing when the
///   account already was so;
/// - append `user.admin_granted` / `user.admin_revoked` with a change of `is_admin`;
/// - classify errors as [`StoreError`] says.
#[async_trait]
pub trait UserAdministration: Send + Sync + std::fmt::Debug + 'static {
    /// A page of accounts, in id order.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn list(&self, query: &UserQuery) -> Result<Vec<UserListing>, StoreError>;

    /// Grants (`true`) or revokes service administration.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (nothing changed).
    async fn set_admin(
        &self,
        user: UserId,
        is_admin: bool,
        now: DateTime<Utc>,
    ) -> Result<AdminChange, StoreError>;

    /// Disables (`true`) or enables the account.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (nothing changed).
    async fn set_disabled(
        &self,
        user: UserId,
        disabled: bool,
        now: DateTime<Utc>,
    ) -> Result<AdminChange, StoreError>;

    /// Clears the lockout of the account's address (its failed-login counter) and appends
    /// `user.unlocked`, in one atomic step. `false` when no such account.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (nothing changed).
    async fn unlock(&self, user: UserId, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Notes a successful login at `now` (for listings).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn record_login(&self, user: UserId, now: DateTime<Utc>) -> Result<(), StoreError>;
}
