//! `MemoryOneTimeTokenStore`: one-time token hashes in this process, queuing their mails in
//! the store's outbox and making the changes they authorise under the tokens' lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::{
    MemoryLoginAttemptStore, MemoryMailOutbox, MemorySessionRepository, MemoryUserRepository, lock,
};
use crate::model::{
    Email, NewEvent, OutgoingMail, PasswordHash, ResetRequest, ResetRequestId, StoredToken,
    TokenHash, TokenPurpose, UserId,
};
use crate::ports::{
    AddressConfirmation, AddressIssue, OneTimeTokenStore, PasswordResetDone, StoreError,
};

/// One-time tokens in memory, over the users, sessions, lockout counters and outbox of one
/// store.
///
/// Each operation holds the tokens' lock from its check to its last change, so a token is
/// spent once and its change made once; the other repositories are taken one lock at a time
/// under it (none of them takes this lock), and none of their operations used here fails, so
/// a change is made whole.
#[derive(Debug)]
pub struct MemoryOneTimeTokenStore {
    tokens: Mutex<HashMap<TokenHash, (UserId, StoredToken)>>,
    /// Queued reset requests, oldest first, each with the end of its lease.
    requests: Mutex<Vec<(ResetRequest, DateTime<Utc>)>>,
    outbox: Arc<MemoryMailOutbox>,
    users: Arc<MemoryUserRepository>,
    sessions: Arc<MemorySessionRepository>,
    attempts: Arc<MemoryLoginAttemptStore>,
}

impl MemoryOneTimeTokenStore {
    /// An empty store over the repositories of one [`super::MemoryStore`].
    #[must_use]
    pub fn new(
        outbox: Arc<MemoryMailOutbox>,
        users: Arc<MemoryUserRepository>,
        sessions: Arc<MemorySessionRepository>,
        attempts: Arc<MemoryLoginAttemptStore>,
    ) -> Self {
        Self {
            tokens: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            outbox,
            users,
            sessions,
            attempts,
        }
    }

    /// Forgets every token of `user` (their account is being deleted).
    pub(crate) fn remove_user(&self, user: UserId) {
        lock(&self.tokens).retain(|_, (owner, _)| *owner != user);
    }

    /// Retention: deletes the tokens expired at `now` (`expires_at <= now`, refused from
    /// then on); returns how many.
    pub(crate) fn prune_expired(&self, now: DateTime<Utc>) -> u64 {
        let mut tokens = lock(&self.tokens);
        let before = tokens.len();
        tokens.retain(|_, (_, t)| now < t.expires_at);
        (before - tokens.len()) as u64
    }

    /// Retention: deletes the reset requests made before `cutoff`, claimed or not; returns
    /// how many.
    pub(crate) fn prune_requests_before(&self, cutoff: DateTime<Utc>) -> u64 {
        let mut requests = lock(&self.requests);
        let before = requests.len();
        requests.retain(|(r, _)| r.requested_at >= cutoff);
        (before - requests.len()) as u64
    }

    /// Removes the token `hash` if it is of `purpose`; returns it when it was also unexpired
    /// at `now`.
    fn take(
        tokens: &mut HashMap<TokenHash, (UserId, StoredToken)>,
        hash: &TokenHash,
        purposes: &[TokenPurpose],
        now: DateTime<Utc>,
    ) -> Option<(UserId, StoredToken)> {
        let usable = tokens
            .get(hash)
            .is_some_and(|(_, t)| purposes.contains(&t.purpose));
        if !usable {
            return None;
        }
        tokens.remove(hash).filter(|(_, t)| now < t.expires_at)
    }

    /// Records `user.password_reset_requested` for a reset token just stored.
    async fn record_reset_requested(&self, user: UserId, token: &StoredToken) {
        if token.purpose == TokenPurpose::PasswordReset {
            self.users
                .recorder()
                .record(vec![NewEvent::administered(
                    crate::model::EventAction::PasswordResetRequested,
                    user,
                    token.created_at,
                )])
                .await;
        }
    }

    /// `confirm_address` under the tokens' lock: the outcome, and the event to record.
    fn confirm_locked(
        &self,
        tokens: &mut HashMap<TokenHash, (UserId, StoredToken)>,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> (AddressConfirmation, Option<NewEvent>) {
        let purposes = [TokenPurpose::VerifyEmail, TokenPurpose::ChangeEmail];
        let Some((user, token)) = tokens
            .get(hash)
            .filter(|(_, t)| purposes.contains(&t.purpose) && now < t.expires_at)
            .cloned()
        else {
            Self::take(tokens, hash, &purposes, now);
            return (AddressConfirmation::Invalid, None);
        };
        if token.purpose == TokenPurpose::VerifyEmail {
            tokens.remove(hash);
            if self.users.email_of(user).as_ref() != Some(&token.email) {
                return (AddressConfirmation::Invalid, None);
            }
            let event = self
                .users
                .verify_email(user, now)
                .then(|| NewEvent::email_verified(user, now));
            return (AddressConfirmation::Verified(user), event);
        }
        match self.users.change_email(user, &token.email, now) {
            // Taken: the token stays, to work once the address is free again.
            Err(()) => (AddressConfirmation::Taken, None),
            Ok(false) => {
                tokens.remove(hash);
                (AddressConfirmation::Invalid, None)
            }
            Ok(true) => {
                // Links sent to the old address die with it.
                tokens.retain(|_, (owner, _)| *owner != user);
                (
                    AddressConfirmation::Changed(user),
                    Some(NewEvent::email_changed(user, now)),
                )
            }
        }
    }

    fn store(
        &self,
        tokens: &mut HashMap<TokenHash, (UserId, StoredToken)>,
        user: UserId,
        token: &StoredToken,
        mail: OutgoingMail,
    ) {
        tokens.retain(|_, (owner, t)| !(*owner == user && t.purpose == token.purpose));
        // Under the tokens' lock: no use sees the token before its mail is queued. The memory
        // outbox never fails, so both are stored or neither.
        self.outbox.push(mail, token.created_at);
        tokens.insert(token.hash, (user, token.clone()));
    }
}

#[async_trait]
impl OneTimeTokenStore for MemoryOneTimeTokenStore {
    async fn issue(
        &self,
        user: UserId,
        token: &StoredToken,
        mail: &OutgoingMail,
    ) -> Result<(), StoreError> {
        {
            let mut tokens = lock(&self.tokens);
            self.store(&mut tokens, user, token, mail.clone());
        }
        self.record_reset_requested(user, token).await;
        Ok(())
    }

    async fn request_reset(&self, email: &Email, now: DateTime<Utc>) -> Result<(), StoreError> {
        let request = ResetRequest {
            id: ResetRequestId::generate(),
            email: email.clone(),
            requested_at: now,
        };
        lock(&self.requests).push((request, now));
        Ok(())
    }

    async fn claim_reset_requests(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ResetRequest>, StoreError> {
        let mut requests = lock(&self.requests);
        let mut claimed = Vec::new();
        for (request, due) in requests.iter_mut() {
            if claimed.len() == limit {
                break;
            }
            if *due <= now {
                *due = now + lease;
                claimed.push(request.clone());
            }
        }
        Ok(claimed)
    }

    async fn fulfil_reset_request(
        &self,
        request: ResetRequestId,
        token: &StoredToken,
        mail: &OutgoingMail,
        min_interval: Duration,
    ) -> Result<Option<AddressIssue>, StoreError> {
        let issued_to = {
            let mut tokens = lock(&self.tokens);
            {
                let mut requests = lock(&self.requests);
                let before = requests.len();
                requests.retain(|(r, _)| r.id != request);
                if requests.len() == before {
                    return Ok(None);
                }
            }
            let Some((user, address)) = self.users.id_by_email(&token.email) else {
                return Ok(Some(AddressIssue::UnknownAddress));
            };
            let too_soon = tokens.values().any(|(owner, t)| {
                *owner == user
                    && t.purpose == token.purpose
                    && t.created_at + min_interval > token.created_at
            });
            if too_soon {
                return Ok(Some(AddressIssue::TooSoon));
            }
            let mail = OutgoingMail {
                to: address,
                ..mail.clone()
            };
            self.store(&mut tokens, user, token, mail);
            user
        };
        self.record_reset_requested(issued_to, token).await;
        Ok(Some(AddressIssue::Issued))
    }

    async fn consume(
        &self,
        hash: &TokenHash,
        purpose: TokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, StoreError> {
        let mut tokens = lock(&self.tokens);
        Ok(Self::take(&mut tokens, hash, &[purpose], now).map(|(user, _)| user))
    }

    async fn confirm_address(
        &self,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<AddressConfirmation, StoreError> {
        let (outcome, event) = {
            let mut tokens = lock(&self.tokens);
            self.confirm_locked(&mut tokens, hash, now)
        };
        if let Some(event) = event {
            self.users.recorder().record(vec![event]).await;
        }
        Ok(outcome)
    }

    async fn reset_password(
        &self,
        hash: &TokenHash,
        new_hash: &PasswordHash,
        now: DateTime<Utc>,
    ) -> Result<Option<PasswordResetDone>, StoreError> {
        let done = {
            let mut tokens = lock(&self.tokens);
            Self::take(&mut tokens, hash, &[TokenPurpose::PasswordReset], now).and_then(
                |(user, token)| {
                    let address = self.users.email_of(user).filter(|a| *a == token.email)?;
                    if !self.users.set_password(user, new_hash, now) {
                        return None;
                    }
                    self.attempts.clear(&address.attempt_key());
                    let ended = self.sessions.end_all(user, now);
                    Some(PasswordResetDone { user, ended })
                },
            )
        };
        if let Some(done) = &done {
            let mut events: Vec<NewEvent> = done
                .ended
                .iter()
                .map(|&id| NewEvent::session_ended(id, done.user, now))
                .collect();
            events.push(NewEvent::password_reset(done.user, now));
            self.users.recorder().record(events).await;
        }
        Ok(done)
    }

    async fn last_issued(
        &self,
        user: UserId,
        purpose: TokenPurpose,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(lock(&self.tokens)
            .values()
            .filter(|(owner, t)| *owner == user && t.purpose == purpose)
            .map(|(_, t)| t.created_at)
            .max())
    }
}
