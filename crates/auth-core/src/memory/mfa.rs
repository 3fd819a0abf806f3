//! In-memory `MfaRepository`, and `FakeCipher` for tests.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::event_log::{MemoryEventLog, Recorder};
use super::lock;
use crate::model::{NewEvent, SealedSecret, TokenHash, TotpEnrolment, UserId};
use crate::ports::{BoxError, DataCipher, MfaRepository, StoreError};

#[derive(Debug, Default)]
struct State {
    enrolments: HashMap<UserId, TotpEnrolment>,
    /// Unused recovery codes per user.
    recovery: HashMap<UserId, HashSet<TokenHash>>,
    challenges: HashMap<TokenHash, (UserId, DateTime<Utc>)>,
}

/// Second factors in maps; every change happens under one lock, so each is atomic.
#[derive(Debug, Default)]
pub struct MemoryMfaRepository(Mutex<State>, Recorder);

impl MemoryMfaRepository {
    /// An empty repository.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `user.mfa_enabled` and `user.mfa_disabled` in `log`.
    #[must_use]
    pub fn recording_to(self, log: Arc<MemoryEventLog>) -> Self {
        Self(self.0, Recorder::to(log))
    }

    /// Whether `user` has a second factor in force.
    pub(crate) fn is_enabled(&self, user: UserId) -> bool {
        lock(&self.0)
            .enrolments
            .get(&user)
            .is_some_and(|e| e.enabled_at.is_some())
    }

    /// Forgets everything of `user` (their account is being deleted), as the foreign keys
    /// of the Postgres tables do.
    pub(crate) fn remove_user(&self, user: UserId) {
        let mut state = lock(&self.0);
        state.enrolments.remove(&user);
        state.recovery.remove(&user);
        state.challenges.retain(|_, (owner, _)| *owner != user);
    }

    /// Retention: deletes the login challenges expired at `now` (`expires_at <= now`), of
    /// every user; returns how many.
    pub(crate) fn prune_expired_challenges(&self, now: DateTime<Utc>) -> u64 {
        let mut state = lock(&self.0);
        let before = state.challenges.len();
        state.challenges.retain(|_, (_, until)| *until > now);
        (before - state.challenges.len()) as u64
    }
}

#[async_trait]
impl MfaRepository for MemoryMfaRepository {
    async fn find(&self, user: UserId) -> Result<Option<TotpEnrolment>, StoreError> {
        Ok(lock(&self.0).enrolments.get(&user).cloned())
    }

    async fn begin(
        &self,
        user: UserId,
        secret: &SealedSecret,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = lock(&self.0);
        if state
            .enrolments
            .get(&user)
            .is_some_and(TotpEnrolment::is_enabled)
        {
            return Ok(false);
        }
        state.enrolments.insert(
            user,
            TotpEnrolment {
                user_id: user,
                secret: secret.clone(),
                enabled_at: None,
                last_step: None,
                created_at: now,
            },
        );
        Ok(true)
    }

    async fn enable(
        &self,
        user: UserId,
        step: i64,
        recovery_codes: &[TokenHash],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        {
            let mut state = lock(&self.0);
            let Some(enrolment) = state.enrolments.get_mut(&user).filter(|e| !e.is_enabled())
            else {
                return Ok(false);
            };
            enrolment.enabled_at = Some(now);
            enrolment.last_step = Some(step);
            state
                .recovery
                .insert(user, recovery_codes.iter().copied().collect());
        }
        self.1.record(vec![NewEvent::mfa_enabled(user, now)]).await;
        Ok(true)
    }

    async fn accept_step(&self, user: UserId, step: i64) -> Result<bool, StoreError> {
        let mut state = lock(&self.0);
        let Some(enrolment) = state
            .enrolments
            .get_mut(&user)
            .filter(|e| e.is_enabled() && e.last_step.is_none_or(|last| last < step))
        else {
            return Ok(false);
        };
        enrolment.last_step = Some(step);
        Ok(true)
    }

    async fn use_recovery_code(
        &self,
        user: UserId,
        code: &TokenHash,
        _now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = lock(&self.0);
        if !state
            .enrolments
            .get(&user)
            .is_some_and(TotpEnrolment::is_enabled)
        {
            return Ok(false);
        }
        Ok(state
            .recovery
            .get_mut(&user)
            .is_some_and(|codes| codes.remove(code)))
    }

    async fn disable(&self, user: UserId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let was_enabled = {
            let mut state = lock(&self.0);
            state.recovery.remove(&user);
            state.challenges.retain(|_, (owner, _)| *owner != user);
            state
                .enrolments
                .remove(&user)
                .is_some_and(|e| e.is_enabled())
        };
        if was_enabled {
            self.1.record(vec![NewEvent::mfa_disabled(user, now)]).await;
        }
        Ok(was_enabled)
    }

    async fn create_challenge(
        &self,
        token: &TokenHash,
        user: UserId,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut state = lock(&self.0);
        state
            .challenges
            .retain(|_, (owner, until)| *owner != user || *until > expires_at - mfa_ttl());
        state.challenges.insert(*token, (user, expires_at));
        Ok(())
    }

    async fn find_challenge(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, StoreError> {
        Ok(lock(&self.0)
            .challenges
            .get(token)
            .filter(|(_, until)| *until > now)
            .map(|(user, _)| *user))
    }

    async fn spend_challenge(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = lock(&self.0);
        match state.challenges.remove(token) {
            Some((_, until)) => Ok(until > now),
            None => Ok(false),
        }
    }
}

/// The lifetime of a challenge, to tell the expired ones of a user when a new one is made.
fn mfa_ttl() -> chrono::Duration {
    crate::service::mfa::MFA_TOKEN_TTL
}

/// A cipher for tests: a keyless reversible scramble bound to its context. **Not
/// encryption**: it keeps only the behaviour the rules depend on (a value sealed for one
/// context does not open under another, the stored bytes are not the plaintext; a
/// fingerprint is stable and is not the plain hash of its data).
#[derive(Debug, Default, Clone, Copy)]
pub struct FakeCipher;

impl FakeCipher {
    fn tag(context: &[u8]) -> [u8; 8] {
        let digest = TokenHash::of(context);
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&digest.as_bytes()[..8]);
        tag
    }
}

impl DataCipher for FakeCipher {
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<SealedSecret, BoxError> {
        let mut out = Self::tag(context).to_vec();
        out.extend(plaintext.iter().map(|b| b ^ 0x5a));
        Ok(SealedSecret::from_bytes(out))
    }

    fn open(&self, sealed: &SealedSecret, context: &[u8]) -> Result<Vec<u8>, BoxError> {
        let bytes = sealed.as_bytes();
        match bytes.split_at_checked(8) {
            Some((tag, body)) if tag == Self::tag(context) => {
                Ok(body.iter().map(|b| b ^ 0x5a).collect())
            }
            _ => Err("sealed value does not open under this context".into()),
        }
    }

    fn fingerprint(&self, data: &[u8]) -> [u8; 32] {
        let mut keyed = b"fake fingerprint key:".to_vec();
        keyed.extend_from_slice(data);
        *TokenHash::of(&keyed).as_bytes()
    }
}
