//! In-memory `UserRepository`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::event_log::{MemoryEventLog, Recorder};
use super::lock;
use crate::model::{DisplayName, Email, EventAction, NewEvent, PasswordHash, User, UserId};
use crate::ports::{CreateUserError, PasswordUpdate, StoreError, UserRepository};

#[derive(Debug, Default)]
struct State {
    by_id: HashMap<UserId, User>,
    by_email: HashMap<String, UserId>,
}

/// A flag an administrator sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flag {
    /// `is_admin`.
    Admin,
    /// `disabled_at`.
    Disabled,
}

/// What `set_flag_keeping_an_admin` did.
#[derive(Debug)]
pub(crate) enum FlagChange {
    NotFound,
    Unchanged(User),
    Changed(User),
    LastAdministrator,
}

/// Users in a map, unique by normalised email.
#[derive(Debug, Default)]
pub struct MemoryUserRepository(Mutex<State>, Recorder);

impl MemoryUserRepository {
    /// An empty repository.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records password changes in `log`, the event log of every instance sharing this
    /// repository.
    #[must_use]
    pub fn recording_to(self, log: Arc<MemoryEventLog>) -> Self {
        Self(self.0, Recorder::to(log))
    }

    /// User `id`, if it exists (for adapters that join on users).
    pub(crate) fn user(&self, id: UserId) -> Option<User> {
        lock(&self.0).by_id.get(&id).cloned()
    }

    /// Removes user `id` unless it is the last enabled administrator, decided under the
    /// lock.
    pub(crate) fn remove_unless_last_admin(&self, id: UserId) -> FlagChange {
        let mut state = lock(&self.0);
        let enabled_admins = state
            .by_id
            .values()
            .filter(|u| u.is_admin && u.disabled_at.is_none())
            .count();
        let Some(user) = state.by_id.get(&id) else {
            return FlagChange::NotFound;
        };
        if user.is_admin && user.disabled_at.is_none() && enabled_admins <= 1 {
            return FlagChange::LastAdministrator;
        }
        let Some(user) = state.by_id.remove(&id) else {
            return FlagChange::NotFound;
        };
        state.by_email.remove(user.email.normalized());
        FlagChange::Changed(user)
    }

    /// Where this repository records its events (for changes spanning several repositories).
    pub(crate) fn recorder(&self) -> &Recorder {
        &self.1
    }

    /// The email of user `id`, if it exists (for adapters that join on users).
    pub(crate) fn email_of(&self, id: UserId) -> Option<Email> {
        lock(&self.0).by_id.get(&id).map(|u| u.email.clone())
    }

    /// The id and address of the user with address `email` (normalised), if any.
    pub(crate) fn id_by_email(&self, email: &Email) -> Option<(UserId, Email)> {
        let state = lock(&self.0);
        let id = *state.by_email.get(email.normalized())?;
        state.by_id.get(&id).map(|u| (id, u.email.clone()))
    }

    /// Sets `id`'s address verified at `now` unless it already is; whether it changed.
    pub(crate) fn verify_email(&self, id: UserId, now: DateTime<Utc>) -> bool {
        lock(&self.0).by_id.get_mut(&id).is_some_and(|user| {
            if user.email_verified_at.is_some() {
                return false;
            }
            user.email_verified_at = Some(now);
            user.updated_at = now;
            true
        })
    }

    /// Replaces `id`'s address with `email`, verified at `now`. `Err(())` when another
    /// user has it; `Ok(false)` when no such user.
    pub(crate) fn change_email(
        &self,
        id: UserId,
        email: &Email,
        now: DateTime<Utc>,
    ) -> Result<bool, ()> {
        let mut state = lock(&self.0);
        if state
            .by_email
            .get(email.normalized())
            .is_some_and(|owner| *owner != id)
        {
            return Err(());
        }
        let Some(user) = state.by_id.get_mut(&id) else {
            return Ok(false);
        };
        let old = std::mem::replace(&mut user.email, email.clone());
        user.email_verified_at = Some(now);
        user.updated_at = now;
        state.by_email.remove(old.normalized());
        state.by_email.insert(email.normalized().to_owned(), id);
        Ok(true)
    }

    /// A page of users in id order (see `UserQuery`).
    pub(crate) fn page(&self, query: &crate::ports::UserQuery) -> Vec<User> {
        let state = lock(&self.0);
        let mut users: Vec<&User> = state
            .by_id
            .values()
            .filter(|u| query.after.is_none_or(|after| u.id > after))
            .filter(|u| {
                query
                    .email
                    .as_deref()
                    .is_none_or(|part| u.email.normalized().contains(part))
            })
            .collect();
        users.sort_by_key(|u| u.id);
        users.into_iter().take(query.limit).cloned().collect()
    }

    /// Sets `flag` of `id` to `on`, unless that takes away the last enabled administrator;
    /// decided and done under the lock.
    pub(crate) fn set_flag_keeping_an_admin(
        &self,
        id: UserId,
        flag: Flag,
        on: bool,
        now: DateTime<Utc>,
    ) -> FlagChange {
        let mut state = lock(&self.0);
        let enabled_admins = state
            .by_id
            .values()
            .filter(|u| u.is_admin && u.disabled_at.is_none())
            .count();
        let Some(user) = state.by_id.get_mut(&id) else {
            return FlagChange::NotFound;
        };
        let is_on = match flag {
            Flag::Admin => user.is_admin,
            Flag::Disabled => user.disabled_at.is_some(),
        };
        if is_on == on {
            return FlagChange::Unchanged(user.clone());
        }
        let takes_an_admin = user.is_admin
            && user.disabled_at.is_none()
            && matches!((flag, on), (Flag::Admin, false) | (Flag::Disabled, true));
        if takes_an_admin && enabled_admins <= 1 {
            return FlagChange::LastAdministrator;
        }
        match flag {
            Flag::Admin => user.is_admin = on,
            Flag::Disabled => user.disabled_at = on.then_some(now),
        }
        user.updated_at = now;
        FlagChange::Changed(user.clone())
    }

    /// Notes `id`'s successful login at `now`.
    pub(crate) fn touch_login(&self, id: UserId, now: DateTime<Utc>) {
        if let Some(user) = lock(&self.0).by_id.get_mut(&id) {
            user.last_login_at = Some(now);
        }
    }

    /// Sets `id`'s password hash without recording an event (the caller records its own);
    /// whether the user exists.
    pub(crate) fn set_password(&self, id: UserId, hash: &PasswordHash, now: DateTime<Utc>) -> bool {
        lock(&self.0).by_id.get_mut(&id).is_some_and(|user| {
            user.password_hash = hash.clone();
            user.updated_at = now;
            true
        })
    }
}

#[async_trait]
impl UserRepository for MemoryUserRepository {
    async fn create(&self, user: &User) -> Result<(), CreateUserError> {
        {
            let mut state = lock(&self.0);
            let key = user.email.normalized().to_owned();
            if state.by_email.contains_key(&key) {
                return Err(CreateUserError::EmailTaken);
            }
            state.by_email.insert(key, user.id);
            state.by_id.insert(user.id, user.clone());
        }
        self.1
            .record(vec![NewEvent::administered(
                EventAction::UserRegistered,
                user.id,
                user.created_at,
            )])
            .await;
        Ok(())
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        let state = lock(&self.0);
        Ok(state
            .by_email
            .get(email.normalized())
            .and_then(|id| state.by_id.get(id))
            .cloned())
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        Ok(lock(&self.0).by_id.get(&id).cloned())
    }

    async fn update_password(
        &self,
        id: UserId,
        hash: &PasswordHash,
        why: PasswordUpdate,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let updated = self.set_password(id, hash, now);
        if updated && why == PasswordUpdate::Change {
            self.1
                .record(vec![NewEvent::password_changed(id, now)])
                .await;
        }
        Ok(updated)
    }

    async fn update_profile(
        &self,
        id: UserId,
        display_name: Option<&DisplayName>,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError> {
        Ok(lock(&self.0).by_id.get_mut(&id).map(|user| {
            user.display_name = display_name.cloned();
            user.updated_at = now;
            user.clone()
        }))
    }

    async fn mark_email_verified(
        &self,
        id: UserId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let exists = lock(&self.0).by_id.contains_key(&id);
        if self.verify_email(id, now) {
            self.1.record(vec![NewEvent::email_verified(id, now)]).await;
        }
        Ok(exists)
    }
}
