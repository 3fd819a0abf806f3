//! `SessionRepository`: sessions and the hashes of their refresh tokens.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::model::{Session, SessionId, TokenHash, User, UserId};

/// The result of presenting a refresh token for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current and its session active: it is now spent and `next` is current.
    /// The session's user is read in the same atomic step, so that nothing fallible is left
    /// between spending the token and answering with its successor.
    Rotated {
        /// The session, as stored.
        session: Session,
        /// Its user, as stored (boxed: a user is large beside the other answers).
        user: Box<User>,
    },
    /// The token belongs to a session but was already rotated at `rotated_at`: a reuse.
    /// Nothing was changed; the caller decides whether to end the session.
    Reused {
        /// The session the token came from.
        session_id: SessionId,
        /// When the token was rotated.
        rotated_at: DateTime<Utc>,
    },
    /// The token was current, but its session has ended or expired (or its user is gone).
    /// Nothing was changed.
    Inactive,
    /// No session knows this token.
    Unknown,
}

/// Stores sessions and the hashes of every refresh token each one issued.
///
/// Implementations MUST:
/// - store only [`TokenHash`]es, never token text;
/// - make [`SessionRepository::rotate`] one atomic compare-and-swap: of any number of
///   concurrent calls presenting the same current token, exactly one gets
///   [`Rotation::Rotated`], with the session's user read within that same step; a call that
///   fails part-way changes nothing, so a caller that could not answer has not spent the
///   token;
/// - remember every token a session issued (spent ones too) for as long as the session is
///   kept, so that a reuse is recognised as [`Rotation::Reused`];
/// - never un-revoke a session: `revoked_at`, once set, keeps its first value;
/// - announce every session that `revoke`, `revoke_by_token` or `revoke_all_for_user` ends as
///   [`Invalidation::Session`](super::Invalidation::Session) to every instance sharing the store, in the same atomic step as
///   the change: sessions whose end could not be announced are not ended (Postgres: `NOTIFY`
///   inside the committing transaction);
/// - append `user.login_succeeded` in the same atomic step as `create` (a session is opened
///   by a login, and only by one);
/// - classify errors as [`StoreError`] says.
#[async_trait]
pub trait SessionRepository: Send + Sync + 'static {
    /// Stores a new session with its first refresh token: a login, recorded as
    /// `user.login_succeeded`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn create(&self, session: &Session, first_token: &TokenHash) -> Result<(), StoreError>;

    /// Finds a session by id, ended or not.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn find(&self, id: SessionId) -> Result<Option<Session>, StoreError>;

    /// Spends `presented` and makes `next` the session's current token, if and only if
    /// `presented` is the current, unspent token of a session that is active at `now`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; then nothing changed.
    async fn rotate(
        &self,
        presented: &TokenHash,
        next: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Rotation, StoreError>;

    /// Ends a session. Returns `true` if it was active and is now ended.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn revoke(&self, id: SessionId, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Ends the session that issued `token` (spent or current). Returns the session's id when
    /// one was found, whether or not it was still active.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn revoke_by_token(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionId>, StoreError>;

    /// Ends every session of `user` not yet revoked (expired ones included) except `keep`,
    /// returning the ids it ended.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn revoke_all_for_user(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, StoreError>;
}
