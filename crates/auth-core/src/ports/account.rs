//! Deleting an account with everything that is its own.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::model::{OrganizationId, SessionId, UserId};

/// Why an account was not deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteAccountError {
    /// No such user.
    #[error("no such user")]
    NotFound,
    /// The user is the only owner of this organization; nothing was changed.
    #[error("the user is the last owner of organization {0}")]
    LastOwner(OrganizationId),
    /// The user is the last enabled service administrator; nothing was changed.
    #[error("the user is the last enabled administrator")]
    LastAdministrator,
    /// The store failed; nothing was changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Removes an account.
#[async_trait]
pub trait AccountRemover: Send + Sync + 'static {
    /// Deletes user `user` and what is theirs, in one atomic step: ends every live session
    /// (returning their ids, each with a `session.ended` event carrying its invalidation, so
    /// that every instance drops it), removes their memberships, deletes the user row with
    /// their sessions and refresh tokens, and appends `user.deleted` naming only the id (no
    /// email, no name: nothing personal is kept).
    ///
    /// Implementations MUST refuse with [`DeleteAccountError::LastOwner`], changing nothing,
    /// while the user is the only owner of an organization, and with
    /// [`DeleteAccountError::LastAdministrator`] while it is the last enabled service
    /// administrator, and decide each atomically with concurrent membership and
    /// administration changes (a concurrent removal of the other owner and this
    /// deletion cannot both succeed); MUST answer [`DeleteAccountError::NotFound`] for an
    /// unknown user (of concurrent deletions of one user, exactly one succeeds); MUST change
    /// nothing when any step fails.
    ///
    /// # Errors
    /// As above; store failures as `Store`.
    async fn delete_account(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, DeleteAccountError>;
}
