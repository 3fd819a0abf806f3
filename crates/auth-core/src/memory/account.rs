//! In-memory `AccountRemover`: the user, session and organization repositories of one
//! store, changed together.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::user::FlagChange;
use super::{
    MemoryMfaRepository, MemoryOneTimeTokenStore, MemoryOrganizationRepository,
    MemorySessionRepository, MemoryUserRepository,
};
use crate::model::{NewEvent, SessionId, UserId};
use crate::ports::{AccountRemover, DeleteAccountError};

/// Deletes accounts from one in-memory store. The organization repository's lock is held
/// from the last-owner check to the end (the user, then their sessions, are removed under
/// it, one lock at a time), so no membership change slips in between; nothing here takes the
/// organizations' lock while holding another.
#[derive(Debug)]
pub struct MemoryAccountRemover {
    users: Arc<MemoryUserRepository>,
    sessions: Arc<MemorySessionRepository>,
    organizations: Arc<MemoryOrganizationRepository>,
    mfa: Arc<MemoryMfaRepository>,
    tokens: Arc<MemoryOneTimeTokenStore>,
}

impl MemoryAccountRemover {
    /// Over the repositories of one store.
    #[must_use]
    pub fn new(
        users: Arc<MemoryUserRepository>,
        sessions: Arc<MemorySessionRepository>,
        organizations: Arc<MemoryOrganizationRepository>,
        mfa: Arc<MemoryMfaRepository>,
        tokens: Arc<MemoryOneTimeTokenStore>,
    ) -> Self {
        Self {
            users,
            sessions,
            organizations,
            mfa,
            tokens,
        }
    }
}

#[async_trait]
impl AccountRemover for MemoryAccountRemover {
    async fn delete_account(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, DeleteAccountError> {
        if self.users.user(user).is_none() {
            return Err(DeleteAccountError::NotFound);
        }
        let (ended, memberships) = self
            .organizations
            .remove_user_unless_last_owner(user, || {
                // Removing the row decides between concurrent deletions: one finds it.
                match self.users.remove_unless_last_admin(user) {
                    FlagChange::NotFound | FlagChange::Unchanged(_) => {
                        return Err(DeleteAccountError::NotFound);
                    }
                    FlagChange::LastAdministrator => {
                        return Err(DeleteAccountError::LastAdministrator);
                    }
                    FlagChange::Changed(_) => {}
                }
                self.mfa.remove_user(user);
                self.tokens.remove_user(user);
                Ok(self.sessions.remove_user(user, now))
            })
            .map_err(DeleteAccountError::LastOwner)??;
        let mut events: Vec<NewEvent> = memberships
            .iter()
            .map(|m| NewEvent::member_removed(m.organization_id, user, m.role, now))
            .collect();
        events.extend(
            ended
                .iter()
                .map(|&id| NewEvent::session_ended(id, user, now)),
        );
        events.push(NewEvent::user_deleted(user, now));
        self.users.recorder().record(events).await;
        Ok(ended)
    }
}
