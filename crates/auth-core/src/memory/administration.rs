//! `MemoryUserAdministration`: the administrators' changes over the users, sessions and
//! second factors of one in-memory store.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::user::{Flag, FlagChange};
use super::{
    MemoryLoginAttemptStore, MemoryMfaRepository, MemorySessionRepository, MemoryUserRepository,
};
use crate::model::{EventAction, NewEvent, UserId};
use crate::ports::{AdminChange, StoreError, UserAdministration, UserListing, UserQuery};

/// Account administration in memory. The last-administrator rule is decided under the users'
/// lock with the change itself; a disabled account's sessions end right after (the memory
/// repositories never fail, so the change is made whole).
#[derive(Debug)]
pub struct MemoryUserAdministration {
    users: Arc<MemoryUserRepository>,
    sessions: Arc<MemorySessionRepository>,
    mfa: Arc<MemoryMfaRepository>,
    attempts: Arc<MemoryLoginAttemptStore>,
}

impl MemoryUserAdministration {
    /// Over the repositories of one store.
    #[must_use]
    pub fn new(
        users: Arc<MemoryUserRepository>,
        sessions: Arc<MemorySessionRepository>,
        mfa: Arc<MemoryMfaRepository>,
        attempts: Arc<MemoryLoginAttemptStore>,
    ) -> Self {
        Self {
            users,
            sessions,
            mfa,
            attempts,
        }
    }

    async fn change(
        &self,
        user: UserId,
        flag: Flag,
        on: bool,
        now: DateTime<Utc>,
    ) -> Result<AdminChange, StoreError> {
        let after = match self.users.set_flag_keeping_an_admin(user, flag, on, now) {
            FlagChange::NotFound => return Ok(AdminChange::NotFound),
            FlagChange::LastAdministrator => return Ok(AdminChange::LastAdministrator),
            FlagChange::Unchanged(after) => {
                return Ok(AdminChange::Done {
                    user: after,
                    ended: Vec::new(),
                });
            }
            FlagChange::Changed(after) => after,
        };
        let ended = if flag == Flag::Disabled && on {
            self.sessions.end_all(user, now)
        } else {
            Vec::new()
        };
        let mut events: Vec<NewEvent> = ended
            .iter()
            .map(|&id| NewEvent::session_ended(id, user, now))
            .collect();
        let action = match (flag, on) {
            (Flag::Disabled, true) => EventAction::UserDisabled,
            (Flag::Disabled, false) => EventAction::UserEnabled,
            (Flag::Admin, true) => EventAction::AdminGranted,
            (Flag::Admin, false) => EventAction::AdminRevoked,
        };
        events.push(NewEvent::administered(action, user, now));
        self.users.recorder().record(events).await;
        Ok(AdminChange::Done { user: after, ended })
    }
}

#[async_trait]
impl UserAdministration for MemoryUserAdministration {
    async fn list(&self, query: &UserQuery) -> Result<Vec<UserListing>, StoreError> {
        Ok(self
            .users
            .page(query)
            .into_iter()
            .map(|user| UserListing {
                mfa_enabled: self.mfa.is_enabled(user.id),
                user,
            })
            .collect())
    }

    async fn set_admin(
        &self,
        user: UserId,
        is_admin: bool,
        now: DateTime<Utc>,
    ) -> Result<AdminChange, StoreError> {
        self.change(user, Flag::Admin, is_admin, now).await
    }

    async fn set_disabled(
        &self,
        user: UserId,
        disabled: bool,
        now: DateTime<Utc>,
    ) -> Result<AdminChange, StoreError> {
        self.change(user, Flag::Disabled, disabled, now).await
    }

    async fn unlock(&self, user: UserId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let Some(email) = self.users.email_of(user) else {
            return Ok(false);
        };
        self.attempts.clear(&email.attempt_key());
        self.users
            .recorder()
            .record(vec![NewEvent::administered(
                EventAction::UserUnlocked,
                user,
                now,
            )])
            .await;
        Ok(true)
    }

    async fn record_login(&self, user: UserId, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.users.touch_login(user, now);
        Ok(())
    }
}
