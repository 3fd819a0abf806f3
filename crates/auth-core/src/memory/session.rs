//! In-memory `SessionRepository`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::event_log::{MemoryEventLog, Recorder};
use super::{MemoryUserRepository, lock};
use crate::model::{NewEvent, Session, SessionId, TokenHash, UserId};
use crate::ports::{Rotation, SessionRepository, StoreError};

#[derive(Debug, Clone, Copy)]
struct TokenRecord {
    session_id: SessionId,
    spent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<SessionId, Session>,
    tokens: HashMap<TokenHash, TokenRecord>,
}

/// Sessions and refresh-token hashes in maps behind one lock, which makes rotation atomic.
/// Rotation reads the session's user from `users` under that lock.
pub struct MemorySessionRepository {
    state: Mutex<State>,
    users: Arc<MemoryUserRepository>,
    recorder: Recorder,
}

impl std::fmt::Debug for MemorySessionRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the users it reads from: their emails are no business of a session dump.
        f.debug_struct("MemorySessionRepository")
            .field("sessions", &lock(&self.state).sessions.len())
            .finish_non_exhaustive()
    }
}

impl MemorySessionRepository {
    /// An empty repository whose sessions belong to users of `users`.
    #[must_use]
    pub fn new(users: Arc<MemoryUserRepository>) -> Self {
        Self {
            state: Mutex::default(),
            users,
            recorder: Recorder::default(),
        }
    }

    /// Records ended sessions in `log`, the event log of every instance sharing this
    /// repository.
    #[must_use]
    pub fn recording_to(self, log: Arc<MemoryEventLog>) -> Self {
        Self {
            recorder: Recorder::to(log),
            ..self
        }
    }
}

impl MemorySessionRepository {
    /// Deletes the sessions that ended before `cutoff`, with every token they issued;
    /// returns how many sessions and tokens. One step under the lock, a scan of each map:
    /// 96 ms for 100,000 sessions with a token each, half of them due (debug build). Rotations
    /// wait that long once per pass; the in-memory store holds what one process can, and a
    /// pass finds at most one interval's worth due.
    pub(crate) fn prune_ended_before(&self, cutoff: DateTime<Utc>) -> (u64, u64) {
        let mut state = lock(&self.state);
        let mut ended = HashSet::new();
        state.sessions.retain(|id, s| {
            let keep = s.ends_at() >= cutoff;
            if !keep {
                ended.insert(*id);
            }
            keep
        });
        if ended.is_empty() {
            return (0, 0);
        }
        let before = state.tokens.len();
        state
            .tokens
            .retain(|_, record| !ended.contains(&record.session_id));
        let tokens = before - state.tokens.len();
        (ended.len() as u64, tokens as u64)
    }
}

fn end(session: &mut Session, now: DateTime<Utc>) -> bool {
    if session.revoked_at.is_some() {
        return false;
    }
    session.revoked_at = Some(now);
    true
}

impl MemorySessionRepository {
    /// Ends every live session of `user` at `now` without recording (the caller records):
    /// their ids, sorted.
    pub(crate) fn end_all(&self, user: UserId, now: DateTime<Utc>) -> Vec<SessionId> {
        let mut ended: Vec<SessionId> = lock(&self.state)
            .sessions
            .values_mut()
            .filter(|s| s.user_id == user)
            .filter_map(|s| end(s, now).then_some(s.id))
            .collect();
        ended.sort();
        ended
    }

    /// Ends the live sessions of `user` at `now` (their ids, sorted), then forgets every
    /// session and token of theirs: what deleting the user does to them.
    pub(crate) fn remove_user(&self, user: UserId, now: DateTime<Utc>) -> Vec<SessionId> {
        let mut state = lock(&self.state);
        let mut ended: Vec<SessionId> = state
            .sessions
            .values_mut()
            .filter(|s| s.user_id == user)
            .filter_map(|s| end(s, now).then_some(s.id))
            .collect();
        ended.sort();
        let theirs: std::collections::HashSet<SessionId> = state
            .sessions
            .values()
            .filter(|s| s.user_id == user)
            .map(|s| s.id)
            .collect();
        state.sessions.retain(|id, _| !theirs.contains(id));
        state.tokens.retain(|_, t| !theirs.contains(&t.session_id));
        ended
    }
}

#[async_trait]
impl SessionRepository for MemorySessionRepository {
    async fn create(&self, session: &Session, first_token: &TokenHash) -> Result<(), StoreError> {
        {
            let mut state = lock(&self.state);
            // The refusals the primary keys and the foreign key give in SQL, before any change.
            if state.sessions.contains_key(&session.id) || state.tokens.contains_key(first_token) {
                return Err(StoreError::internal("session or token already exists"));
            }
            if self.users.email_of(session.user_id).is_none() {
                return Err(StoreError::internal("the session's user does not exist"));
            }
            state.sessions.insert(session.id, session.clone());
            state.tokens.insert(
                *first_token,
                TokenRecord {
                    session_id: session.id,
                    spent_at: None,
                },
            );
        }
        self.recorder
            .record(vec![NewEvent::login_succeeded(
                session.id,
                session.user_id,
                session.created_at,
            )])
            .await;
        Ok(())
    }

    async fn find(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        Ok(lock(&self.state).sessions.get(&id).cloned())
    }

    async fn rotate(
        &self,
        presented: &TokenHash,
        next: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Rotation, StoreError> {
        let mut state = lock(&self.state);
        let Some(record) = state.tokens.get(presented).copied() else {
            return Ok(Rotation::Unknown);
        };
        if let Some(rotated_at) = record.spent_at {
            return Ok(Rotation::Reused {
                session_id: record.session_id,
                rotated_at,
            });
        }
        let Some((session, user)) = state
            .sessions
            .get(&record.session_id)
            .filter(|s| s.is_active(now))
            .and_then(|s| Some((s.clone(), self.users.user(s.user_id)?)))
        else {
            return Ok(Rotation::Inactive);
        };
        state.tokens.insert(
            *presented,
            TokenRecord {
                spent_at: Some(now),
                ..record
            },
        );
        state.tokens.insert(
            *next,
            TokenRecord {
                session_id: session.id,
                spent_at: None,
            },
        );
        Ok(Rotation::Rotated {
            session,
            user: Box::new(user),
        })
    }

    async fn revoke(&self, id: SessionId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let ended = lock(&self.state)
            .sessions
            .get_mut(&id)
            .and_then(|s| end(s, now).then_some(s.user_id));
        if let Some(user) = ended {
            self.recorder
                .record(vec![NewEvent::session_reuse_detected(id, user, now)])
                .await;
        }
        Ok(ended.is_some())
    }

    async fn revoke_by_token(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionId>, StoreError> {
        let (id, ended) = {
            let mut state = lock(&self.state);
            let Some(id) = state.tokens.get(token).map(|r| r.session_id) else {
                return Ok(None);
            };
            let ended = state
                .sessions
                .get_mut(&id)
                .and_then(|s| end(s, now).then_some(s.user_id));
            (id, ended)
        };
        if let Some(user) = ended {
            self.recorder
                .record(vec![NewEvent::session_logged_out(id, user, now)])
                .await;
        }
        Ok(Some(id))
    }

    async fn revoke_all_for_user(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut ended: Vec<SessionId> = lock(&self.state)
            .sessions
            .values_mut()
            .filter(|s| s.user_id == user && Some(s.id) != keep)
            .filter_map(|s| end(s, now).then_some(s.id))
            .collect();
        ended.sort();
        let events = ended
            .iter()
            .map(|&id| NewEvent::session_ended(id, user, now))
            .collect();
        self.recorder.record(events).await;
        Ok(ended)
    }
}
