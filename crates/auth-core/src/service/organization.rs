//! `OrganizationService`: organizations and their members, with the access rules.

use std::sync::Arc;

use super::actor::Actor;
use crate::model::{
    Email, Member, Membership, Organization, OrganizationId, OrganizationName, Role, UserId,
};
use crate::ports::{
    AddMemberError, Clock, OrganizationRepository, RemoveMemberError, StoreError, UserRepository,
};

/// What can go wrong with organizations.
#[derive(Debug, thiserror::Error)]
pub enum OrganizationError {
    /// No such organization, or the caller may not see it (never 403: no existence leak).
    #[error("not found")]
    NotFound,
    /// The caller sees the organization but lacks the right.
    #[error("forbidden")]
    Forbidden,
    /// The user is already a member.
    #[error("already a member")]
    AlreadyMember,
    /// The last owner cannot be removed.
    #[error("last owner")]
    LastOwner,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The caller as organization rules see it: a user and whether they administer the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The user.
    pub user: UserId,
    /// Service administrator.
    pub is_admin: bool,
}

/// Organizations and memberships.
#[derive(Clone)]
pub struct OrganizationService {
    orgs: Arc<dyn OrganizationRepository>,
    users: Arc<dyn UserRepository>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for OrganizationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrganizationService")
            .finish_non_exhaustive()
    }
}

impl OrganizationService {
    /// Builds the service.
    #[must_use]
    pub fn new(
        orgs: Arc<dyn OrganizationRepository>,
        users: Arc<dyn UserRepository>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { orgs, users, clock }
    }

    /// The repository (for other services' access checks).
    #[must_use]
    pub fn repository(&self) -> &Arc<dyn OrganizationRepository> {
        &self.orgs
    }

    /// The user with `email`, if registered (the command line names owners by email).
    ///
    /// # Errors
    /// A store failure.
    pub async fn find_user(
        &self,
        email: &Email,
    ) -> Result<Option<crate::model::User>, OrganizationError> {
        Ok(self.users.find_by_email(email).await?)
    }

    /// Creates an organization owned by `owner`.
    ///
    /// # Errors
    /// A store failure.
    pub async fn create(
        &self,
        owner: UserId,
        name: OrganizationName,
    ) -> Result<Organization, OrganizationError> {
        let org = Organization {
            id: OrganizationId::generate(),
            name,
            created_at: self.clock.now(),
        };
        self.orgs.create(&org, owner).await?;
        tracing::info!(organization_id = %org.id, owner = %owner, "organization created");
        Ok(org)
    }

    /// The caller's organizations and roles.
    ///
    /// # Errors
    /// A store failure.
    pub async fn list_mine(
        &self,
        user: UserId,
    ) -> Result<Vec<(Organization, Role)>, OrganizationError> {
        Ok(self.orgs.list_for_user(user).await?)
    }

    /// The caller's role in `org`: `None` for a service administrator who is not a member.
    /// Not a member (and not an administrator), or no such organization: `NotFound`.
    async fn access(
        &self,
        caller: Caller,
        org: OrganizationId,
    ) -> Result<(Organization, Option<Role>), OrganizationError> {
        let found = self
            .orgs
            .find(org)
            .await?
            .ok_or(OrganizationError::NotFound)?;
        let role = self.orgs.role_of(org, caller.user).await?;
        if role.is_none() && !caller.is_admin {
            return Err(OrganizationError::NotFound);
        }
        Ok((found, role))
    }

    /// Checks that the caller may manage `org` (owner, admin, or service administrator).
    ///
    /// # Errors
    /// `NotFound` for non-members, `Forbidden` for plain members.
    pub async fn require_manager(
        &self,
        caller: Caller,
        org: OrganizationId,
    ) -> Result<Option<Role>, OrganizationError> {
        let (_, role) = self.access(caller, org).await?;
        match role {
            Some(r) if r.can_manage() => Ok(role),
            None if caller.is_admin => Ok(None),
            _ => Err(OrganizationError::Forbidden),
        }
    }

    /// Checks that `actor` may manage the credentials (API keys, devices) of `org`: its
    /// owner or admin, a service administrator, an `admin` API key of that same
    /// organization, or the operator. Non-members and keys of other organizations get
    /// `NotFound`; members without the right and keys without `admin` get `Forbidden`.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, or a store failure.
    pub async fn authorize(
        &self,
        actor: &Actor,
        org: OrganizationId,
    ) -> Result<(), OrganizationError> {
        match actor {
            Actor::User { id, is_admin } => {
                let caller = Caller {
                    user: *id,
                    is_admin: *is_admin,
                };
                self.require_manager(caller, org).await.map(|_| ())
            }
            Actor::ApiKey(key) if key.organization_id != org => Err(OrganizationError::NotFound),
            Actor::ApiKey(key) if !key.scopes.is_admin() => Err(OrganizationError::Forbidden),
            Actor::ApiKey(_) => Ok(()),
            Actor::Operator => match self.orgs.find(org).await? {
                Some(_) => Ok(()),
                None => Err(OrganizationError::NotFound),
            },
        }
    }

    /// An organization the caller belongs to.
    ///
    /// # Errors
    /// `NotFound`, or a store failure.
    pub async fn get(
        &self,
        caller: Caller,
        org: OrganizationId,
    ) -> Result<Organization, OrganizationError> {
        Ok(self.access(caller, org).await?.0)
    }

    /// Adds the user with `email` as `role` (admin or member).
    ///
    /// # Errors
    /// `NotFound` (organization hidden, or no such user), `Forbidden`, `AlreadyMember`.
    pub async fn add_member(
        &self,
        caller: Caller,
        org: OrganizationId,
        email: &Email,
        role: Role,
    ) -> Result<Member, OrganizationError> {
        self.require_manager(caller, org).await?;
        let user = self
            .users
            .find_by_email(email)
            .await?
            .ok_or(OrganizationError::NotFound)?;
        let membership = Membership {
            organization_id: org,
            user_id: user.id,
            role,
            created_at: self.clock.now(),
        };
        match self.orgs.add_member(&membership).await {
            Ok(()) => {}
            Err(AddMemberError::AlreadyMember) => return Err(OrganizationError::AlreadyMember),
            Err(AddMemberError::NotFound) => return Err(OrganizationError::NotFound),
            Err(AddMemberError::Store(e)) => return Err(OrganizationError::Store(e)),
        }
        tracing::info!(organization_id = %org, user_id = %user.id, role = %role, "member added");
        Ok(Member {
            membership,
            email: user.email,
        })
    }

    /// The members of an organization the caller belongs to.
    ///
    /// # Errors
    /// `NotFound`, or a store failure.
    pub async fn members(
        &self,
        caller: Caller,
        org: OrganizationId,
    ) -> Result<Vec<Member>, OrganizationError> {
        self.access(caller, org).await?;
        Ok(self.orgs.members(org).await?)
    }

    /// Removes a member. An admin may not remove an owner; the last owner stays.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, `LastOwner`.
    pub async fn remove_member(
        &self,
        caller: Caller,
        org: OrganizationId,
        user: UserId,
    ) -> Result<(), OrganizationError> {
        let my_role = self.require_manager(caller, org).await?;
        let target = self
            .orgs
            .role_of(org, user)
            .await?
            .ok_or(OrganizationError::NotFound)?;
        if target == Role::Owner && my_role == Some(Role::Admin) {
            return Err(OrganizationError::Forbidden);
        }
        match self.orgs.remove_member(org, user, self.clock.now()).await {
            Ok(_) => {
                tracing::info!(organization_id = %org, user_id = %user, "member removed");
                Ok(())
            }
            Err(RemoveMemberError::NotFound) => Err(OrganizationError::NotFound),
            Err(RemoveMemberError::LastOwner) => Err(OrganizationError::LastOwner),
            Err(RemoveMemberError::Store(e)) => Err(OrganizationError::Store(e)),
        }
    }
}
