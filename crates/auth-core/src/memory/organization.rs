//! In-memory `OrganizationRepository`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::event_log::{MemoryEventLog, Recorder};
use super::{MemoryUserRepository, lock};
use crate::model::{Member, Membership, NewEvent, Organization, OrganizationId, Role, UserId};
use crate::ports::{AddMemberError, OrganizationRepository, RemoveMemberError, StoreError};

#[derive(Debug, Default)]
struct State {
    orgs: HashMap<OrganizationId, Organization>,
    memberships: HashMap<(OrganizationId, UserId), Membership>,
}

impl State {
    fn owners(&self, org: OrganizationId) -> usize {
        self.memberships
            .values()
            .filter(|m| m.organization_id == org && m.role == Role::Owner)
            .count()
    }
}

/// Organizations and memberships in maps behind one lock, which makes the last-owner rule
/// atomic. Members are users of the [`MemoryUserRepository`] given at construction: it
/// supplies their emails and refuses memberships of unknown users, as a foreign key would.
#[derive(Debug)]
pub struct MemoryOrganizationRepository {
    users: Arc<MemoryUserRepository>,
    state: Mutex<State>,
    recorder: Recorder,
}

impl MemoryOrganizationRepository {
    /// An empty repository whose members are users of `users`.
    #[must_use]
    pub fn new(users: Arc<MemoryUserRepository>) -> Self {
        Self {
            users,
            state: Mutex::default(),
            recorder: Recorder::default(),
        }
    }

    /// Records creations and membership changes in `log`, the event log of every instance
    /// sharing this repository.
    #[must_use]
    pub fn recording_to(self, log: Arc<MemoryEventLog>) -> Self {
        Self {
            recorder: Recorder::to(log),
            ..self
        }
    }
}

impl MemoryOrganizationRepository {
    /// Unless `user` is the only owner of an organization (then that organization), runs
    /// `then` and removes the user's memberships (returned, by organization), under this
    /// repository's lock: no membership changes between the check and the removal.
    pub(crate) fn remove_user_unless_last_owner<R, E>(
        &self,
        user: UserId,
        then: impl FnOnce() -> Result<R, E>,
    ) -> Result<Result<(R, Vec<Membership>), E>, OrganizationId> {
        let mut state = lock(&self.state);
        let mut owned: Vec<OrganizationId> = state
            .memberships
            .values()
            .filter(|m| m.user_id == user && m.role == Role::Owner)
            .map(|m| m.organization_id)
            .collect();
        owned.sort();
        if let Some(&org) = owned.iter().find(|&&org| state.owners(org) == 1) {
            return Err(org);
        }
        Ok(then().map(|done| {
            let mut removed: Vec<Membership> = state
                .memberships
                .values()
                .filter(|m| m.user_id == user)
                .cloned()
                .collect();
            removed.sort_by_key(|m| m.organization_id);
            state.memberships.retain(|(_, member), _| *member != user);
            (done, removed)
        }))
    }
}

#[async_trait]
impl OrganizationRepository for MemoryOrganizationRepository {
    async fn create(&self, org: &Organization, owner: UserId) -> Result<(), StoreError> {
        {
            let mut state = lock(&self.state);
            // The same refusals a primary key and a foreign key give in SQL, before any change.
            if state.orgs.contains_key(&org.id) {
                return Err(StoreError::internal("organization id already exists"));
            }
            if self.users.email_of(owner).is_none() {
                return Err(StoreError::internal("the owner is not a user"));
            }
            state.orgs.insert(org.id, org.clone());
            state.memberships.insert(
                (org.id, owner),
                Membership {
                    organization_id: org.id,
                    user_id: owner,
                    role: Role::Owner,
                    created_at: org.created_at,
                },
            );
        }
        self.recorder
            .record(vec![NewEvent::organization_created(org, owner)])
            .await;
        Ok(())
    }

    async fn find(&self, id: OrganizationId) -> Result<Option<Organization>, StoreError> {
        Ok(lock(&self.state).orgs.get(&id).cloned())
    }

    async fn list_all(
        &self,
        after: Option<OrganizationId>,
        limit: usize,
    ) -> Result<Vec<Organization>, StoreError> {
        let state = lock(&self.state);
        let mut orgs: Vec<&Organization> = state
            .orgs
            .values()
            .filter(|o| after.is_none_or(|after| o.id > after))
            .collect();
        orgs.sort_by_key(|o| o.id);
        Ok(orgs.into_iter().take(limit).cloned().collect())
    }

    async fn list_for_user(&self, user: UserId) -> Result<Vec<(Organization, Role)>, StoreError> {
        let state = lock(&self.state);
        let mut found: Vec<(Organization, Role)> = state
            .memberships
            .values()
            .filter(|m| m.user_id == user)
            .filter_map(|m| {
                state
                    .orgs
                    .get(&m.organization_id)
                    .map(|o| (o.clone(), m.role))
            })
            .collect();
        found.sort_by_key(|(o, _)| (o.created_at, o.id));
        Ok(found)
    }

    async fn role_of(&self, org: OrganizationId, user: UserId) -> Result<Option<Role>, StoreError> {
        Ok(lock(&self.state)
            .memberships
            .get(&(org, user))
            .map(|m| m.role))
    }

    async fn add_member(&self, membership: &Membership) -> Result<(), AddMemberError> {
        {
            let mut state = lock(&self.state);
            let key = (membership.organization_id, membership.user_id);
            if !state.orgs.contains_key(&membership.organization_id)
                || self.users.email_of(membership.user_id).is_none()
            {
                return Err(AddMemberError::NotFound);
            }
            if state.memberships.contains_key(&key) {
                return Err(AddMemberError::AlreadyMember);
            }
            state.memberships.insert(key, membership.clone());
        }
        self.recorder
            .record(vec![NewEvent::member_added(membership)])
            .await;
        Ok(())
    }

    async fn members(&self, org: OrganizationId) -> Result<Vec<Member>, StoreError> {
        let state = lock(&self.state);
        let mut members: Vec<Member> = state
            .memberships
            .values()
            .filter(|m| m.organization_id == org)
            .filter_map(|m| {
                self.users.email_of(m.user_id).map(|email| Member {
                    membership: m.clone(),
                    email,
                })
            })
            .collect();
        members.sort_by_key(|m| (m.membership.created_at, m.membership.user_id));
        Ok(members)
    }

    async fn remove_member(
        &self,
        org: OrganizationId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Role, RemoveMemberError> {
        let role = {
            let mut state = lock(&self.state);
            let role = state
                .memberships
                .get(&(org, user))
                .map(|m| m.role)
                .ok_or(RemoveMemberError::NotFound)?;
            if role == Role::Owner && state.owners(org) <= 1 {
                return Err(RemoveMemberError::LastOwner);
            }
            state.memberships.remove(&(org, user));
            role
        };
        self.recorder
            .record(vec![NewEvent::member_removed(org, user, role, now)])
            .await;
        Ok(role)
    }
}
