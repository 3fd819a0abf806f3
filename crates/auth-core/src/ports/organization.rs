//! `OrganizationRepository`: organizations and memberships.

use super::StoreError;
use crate::model::{Member, Membership, Organization, OrganizationId, Role, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Adding a member failed.
#[derive(Debug, thiserror::Error)]
pub enum AddMemberError {
    /// The user is already a member.
    #[error("already a member")]
    AlreadyMember,
    /// The organization or the user does not exist.
    #[error("organization or user not found")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Removing a member failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveMemberError {
    /// Not a member (or no such organization).
    #[error("not a member")]
    NotFound,
    /// The member is the organization's last owner.
    #[error("the last owner cannot be removed")]
    LastOwner,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores organizations and who belongs to them.
///
/// Implementations MUST:
/// - create an organization and its first owner's membership atomically, appending
///   `organization.created` in the same step;
/// - append `member.added` / `member.removed` in the same atomic step as an `add_member` /
///   `remove_member` that changed something, and nothing for one that was refused;
/// - keep one membership per (organization, user): a second `add_member` is `AlreadyMember`;
/// - never let an organization lose its last owner: `remove_member` of the only owner fails
///   with `LastOwner`, atomically with respect to concurrent removals;
/// - list in a stable order (creation time, then id);
/// - classify errors as [`StoreError`] says.
#[async_trait]
pub trait OrganizationRepository: Send + Sync + 'static {
    /// Creates `org` with `owner` as its owner.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn create(&self, org: &Organization, owner: UserId) -> Result<(), StoreError>;

    /// Finds an organization.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn find(&self, id: OrganizationId) -> Result<Option<Organization>, StoreError>;

    /// Every organization, by id (time-ordered: creation order), after `after`, at most
    /// `limit`: for operators.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn list_all(
        &self,
        after: Option<OrganizationId>,
        limit: usize,
    ) -> Result<Vec<Organization>, StoreError>;

    /// The organizations `user` belongs to, with the user's role in each.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn list_for_user(&self, user: UserId) -> Result<Vec<(Organization, Role)>, StoreError>;

    /// The role of `user` in `org`, if a member.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn role_of(&self, org: OrganizationId, user: UserId) -> Result<Option<Role>, StoreError>;

    /// Adds a member.
    ///
    /// # Errors
    /// [`AddMemberError`].
    async fn add_member(&self, membership: &Membership) -> Result<(), AddMemberError>;

    /// The members of `org` with their emails.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn members(&self, org: OrganizationId) -> Result<Vec<Member>, StoreError>;

    /// Removes a member at `now`, refusing to remove the last owner; returns the role the
    /// member had.
    ///
    /// # Errors
    /// [`RemoveMemberError`].
    async fn remove_member(
        &self,
        org: OrganizationId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Role, RemoveMemberError>;
}
