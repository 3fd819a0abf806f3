//! `PgOneTimeTokenStore`: one-time token hashes in `one_time_tokens`. Issuing replaces the
//! user's older tokens of the purpose and queues the mail in one transaction; spending is a
//! `DELETE … RETURNING` in the transaction that makes the change the token authorises, so of
//! concurrent uses exactly one gets the row, and a failed change keeps the token.

use async_trait::async_trait;
use auth_core::model::{
    Email, NewEvent, OutgoingMail, PasswordHash, ResetRequest, ResetRequestId, StoredToken,
    TokenHash, TokenPurpose, UserId,
};
use auth_core::ports::{
    AddressConfirmation, AddressIssue, OneTimeTokenStore, PasswordResetDone, StoreError,
};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::error::classify;
use super::events::append_in;
use super::outbox::enqueue_in;
use super::pool::DbPool;
use super::schema::{login_attempts, one_time_tokens, password_reset_requests, users};
use super::session::end_all_in;
use super::user::mark_verified_in;

/// One-time tokens in Postgres.
#[derive(Clone)]
pub struct PgOneTimeTokenStore {
    pool: DbPool,
}

impl std::fmt::Debug for PgOneTimeTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOneTimeTokenStore")
            .field("pool", &self.pool)
            .finish()
    }
}

impl PgOneTimeTokenStore {
    /// A store over `pool`.
    #[must_use]
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

/// Replaces `user`'s tokens of the purpose with `token`, inside the caller's transaction
/// (the mail is queued by the caller); a reset token is recorded as
/// `user.password_reset_requested`.
async fn store_in(
    conn: &mut AsyncPgConnection,
    user: UserId,
    token: &StoredToken,
) -> Result<(), DieselError> {
    if token.purpose == TokenPurpose::PasswordReset {
        let event = NewEvent::administered(
            auth_core::model::EventAction::PasswordResetRequested,
            user,
            token.created_at,
        );
        append_in(conn, &[event]).await?;
    }
    diesel::delete(
        one_time_tokens::table
            .filter(one_time_tokens::user_id.eq(user.as_uuid()))
            .filter(one_time_tokens::purpose.eq(token.purpose.as_str())),
    )
    .execute(conn)
    .await?;
    diesel::insert_into(one_time_tokens::table)
        .values((
            one_time_tokens::hash.eq(token.hash.as_bytes().as_slice()),
            one_time_tokens::user_id.eq(user.as_uuid()),
            one_time_tokens::purpose.eq(token.purpose.as_str()),
            one_time_tokens::created_at.eq(token.created_at),
            one_time_tokens::expires_at.eq(token.expires_at),
            one_time_tokens::email.eq(token.email.as_str()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// A spent token: whose, for what, to which address, until when.
type Spent = (Uuid, String, String, DateTime<Utc>);

/// Deletes token `hash` if it has one of `purposes`, inside the caller's transaction;
/// returns it when it was also unexpired at `now`.
async fn spend_in(
    conn: &mut AsyncPgConnection,
    hash: &TokenHash,
    purposes: &[TokenPurpose],
    now: DateTime<Utc>,
) -> Result<Option<(UserId, TokenPurpose, String)>, DieselError> {
    let purposes: Vec<&str> = purposes.iter().map(|p| p.as_str()).collect();
    let spent: Option<Spent> = diesel::delete(
        one_time_tokens::table
            .filter(one_time_tokens::hash.eq(hash.as_bytes().as_slice()))
            .filter(one_time_tokens::purpose.eq_any(purposes)),
    )
    .returning((
        one_time_tokens::user_id,
        one_time_tokens::purpose,
        one_time_tokens::email,
        one_time_tokens::expires_at,
    ))
    .get_result(conn)
    .await
    .optional()?;
    Ok(spent
        .filter(|(_, _, _, expires_at)| now < *expires_at)
        .and_then(|(user, purpose, email, _)| {
            TokenPurpose::from_stored(&purpose).map(|p| (UserId::from_uuid(user), p, email))
        }))
}

/// The user's address as stored, locked for the rest of the caller's transaction.
async fn address_for_update(
    conn: &mut AsyncPgConnection,
    user: UserId,
) -> Result<Option<String>, DieselError> {
    users::table
        .find(user.as_uuid())
        .select(users::email)
        .for_no_key_update()
        .first(conn)
        .await
        .optional()
}

/// Whether two stored addresses are the same address (compared normalised).
fn same_address(a: &str, b: &str) -> bool {
    match (Email::from_stored(a), Email::from_stored(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Why a confirmation transaction was rolled back.
enum ConfirmAbort {
    /// The new address belongs to another account.
    Taken,
    Db(DieselError),
}

impl From<DieselError> for ConfirmAbort {
    fn from(err: DieselError) -> Self {
        Self::Db(err)
    }
}

#[async_trait]
impl OneTimeTokenStore for PgOneTimeTokenStore {
    async fn issue(
        &self,
        user: UserId,
        token: &StoredToken,
        mail: &OutgoingMail,
    ) -> Result<(), StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                conn.transaction::<_, DieselError, _>(async |conn| {
                    store_in(conn, user, token).await?;
                    enqueue_in(conn, mail, token.created_at).await?;
                    Ok(())
                })
                .await
                .map_err(classify)
            })
            .await
    }

    async fn request_reset(&self, email: &Email, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                diesel::insert_into(password_reset_requests::table)
                    .values((
                        password_reset_requests::id.eq(ResetRequestId::generate().as_uuid()),
                        password_reset_requests::email.eq(email.as_str()),
                        password_reset_requests::requested_at.eq(now),
                        password_reset_requests::due_at.eq(now),
                    ))
                    .execute(&mut conn)
                    .await
                    .map_err(classify)?;
                Ok(())
            })
            .await
    }

    async fn claim_reset_requests(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ResetRequest>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let rows: Vec<(Uuid, String, DateTime<Utc>)> = conn
                    .transaction::<_, DieselError, _>(async |conn| {
                        let due: Vec<Uuid> = password_reset_requests::table
                            .filter(password_reset_requests::due_at.le(now))
                            .order((password_reset_requests::due_at, password_reset_requests::id))
                            .select(password_reset_requests::id)
                            .limit(limit)
                            .for_update()
                            .skip_locked()
                            .load(conn)
                            .await?;
                        diesel::update(
                            password_reset_requests::table
                                .filter(password_reset_requests::id.eq_any(&due)),
                        )
                        .set(password_reset_requests::due_at.eq(now + lease))
                        .returning((
                            password_reset_requests::id,
                            password_reset_requests::email,
                            password_reset_requests::requested_at,
                        ))
                        .get_results(conn)
                        .await
                    })
                    .await
                    .map_err(classify)?;
                let mut requests = rows
                    .into_iter()
                    .map(|(id, email, requested_at)| {
                        Ok(ResetRequest {
                            id: ResetRequestId::from_uuid(id),
                            email: Email::from_stored(&email).map_err(StoreError::internal)?,
                            requested_at,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                requests.sort_by_key(|r| (r.requested_at, r.id));
                Ok(requests)
            })
            .await
    }

    async fn fulfil_reset_request(
        &self,
        request: ResetRequestId,
        token: &StoredToken,
        mail: &OutgoingMail,
        min_interval: Duration,
    ) -> Result<Option<AddressIssue>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                conn.transaction::<_, DieselError, _>(async |conn| {
                    let gone =
                        diesel::delete(password_reset_requests::table.find(request.as_uuid()))
                            .execute(conn)
                            .await?
                            == 0;
                    if gone {
                        return Ok(None);
                    }
                    // The row lock orders concurrent requests for one address: the second
                    // sees the first's token and keeps to the interval.
                    let user: Option<(Uuid, String)> = users::table
                        .filter(users::email_normalized.eq(token.email.normalized()))
                        .select((users::id, users::email))
                        .for_no_key_update()
                        .first(conn)
                        .await
                        .optional()?;
                    let Some((user, address)) = user else {
                        return Ok(Some(AddressIssue::UnknownAddress));
                    };
                    let last: Option<DateTime<Utc>> = one_time_tokens::table
                        .filter(one_time_tokens::user_id.eq(user))
                        .filter(one_time_tokens::purpose.eq(token.purpose.as_str()))
                        .select(diesel::dsl::max(one_time_tokens::created_at))
                        .first(conn)
                        .await?;
                    if last.is_some_and(|last| last + min_interval > token.created_at) {
                        return Ok(Some(AddressIssue::TooSoon));
                    }
                    let Ok(to) = Email::from_stored(&address) else {
                        return Ok(Some(AddressIssue::UnknownAddress));
                    };
                    store_in(conn, UserId::from_uuid(user), token).await?;
                    let mail = OutgoingMail { to, ..mail.clone() };
                    enqueue_in(conn, &mail, token.created_at).await?;
                    Ok(Some(AddressIssue::Issued))
                })
                .await
                .map_err(classify)
            })
            .await
    }

    async fn consume(
        &self,
        hash: &TokenHash,
        purpose: TokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                conn.transaction::<_, DieselError, _>(async |conn| {
                    Ok(spend_in(conn, hash, &[purpose], now)
                        .await?
                        .map(|(user, _, _)| user))
                })
                .await
                .map_err(classify)
            })
            .await
    }

    async fn confirm_address(
        &self,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<AddressConfirmation, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let purposes = [TokenPurpose::VerifyEmail, TokenPurpose::ChangeEmail];
                let confirmed = conn
                    .transaction::<_, ConfirmAbort, _>(async |conn| {
                        let Some((user, purpose, email)) =
                            spend_in(conn, hash, &purposes, now).await?
                        else {
                            return Ok(AddressConfirmation::Invalid);
                        };
                        let Some(current) = address_for_update(conn, user).await? else {
                            return Ok(AddressConfirmation::Invalid);
                        };
                        if purpose == TokenPurpose::VerifyEmail {
                            if !same_address(&current, &email) {
                                return Ok(AddressConfirmation::Invalid);
                            }
                            if mark_verified_in(conn, user, now).await? {
                                append_in(conn, &[NewEvent::email_verified(user, now)]).await?;
                            }
                            return Ok(AddressConfirmation::Verified(user));
                        }
                        let Ok(new) = Email::from_stored(&email) else {
                            return Ok(AddressConfirmation::Invalid);
                        };
                        let updated = diesel::update(users::table.find(user.as_uuid()))
                            .set((
                                users::email.eq(new.as_str()),
                                users::email_normalized.eq(new.normalized()),
                                users::email_verified_at.eq(Some(now)),
                                users::updated_at.eq(now),
                            ))
                            .execute(conn)
                            .await;
                        match updated {
                            Ok(_) => {}
                            Err(DieselError::DatabaseError(
                                DatabaseErrorKind::UniqueViolation,
                                _,
                            )) => return Err(ConfirmAbort::Taken),
                            Err(other) => return Err(other.into()),
                        }
                        // Links sent to the old address die with it.
                        diesel::delete(
                            one_time_tokens::table
                                .filter(one_time_tokens::user_id.eq(user.as_uuid())),
                        )
                        .execute(conn)
                        .await?;
                        append_in(conn, &[NewEvent::email_changed(user, now)]).await?;
                        Ok(AddressConfirmation::Changed(user))
                    })
                    .await;
                match confirmed {
                    Ok(outcome) => Ok(outcome),
                    // Rolled back: the token is kept, to work once the address is free.
                    Err(ConfirmAbort::Taken) => Ok(AddressConfirmation::Taken),
                    Err(ConfirmAbort::Db(err)) => Err(classify(err)),
                }
            })
            .await
    }

    async fn reset_password(
        &self,
        hash: &TokenHash,
        new_hash: &PasswordHash,
        now: DateTime<Utc>,
    ) -> Result<Option<PasswordResetDone>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                conn.transaction::<_, DieselError, _>(async |conn| {
                    let Some((user, _, email)) =
                        spend_in(conn, hash, &[TokenPurpose::PasswordReset], now).await?
                    else {
                        return Ok(None);
                    };
                    let Some(current) = address_for_update(conn, user).await? else {
                        return Ok(None);
                    };
                    let Ok(address) = Email::from_stored(&current) else {
                        return Ok(None);
                    };
                    if !same_address(&current, &email) {
                        return Ok(None);
                    }
                    diesel::update(users::table.find(user.as_uuid()))
                        .set((
                            users::password_hash.eq(new_hash.as_str()),
                            users::updated_at.eq(now),
                        ))
                        .execute(conn)
                        .await?;
                    let ended = end_all_in(conn, user, None, now).await?;
                    diesel::delete(
                        login_attempts::table.find(address.attempt_key().as_bytes().as_slice()),
                    )
                    .execute(conn)
                    .await?;
                    append_in(conn, &[NewEvent::password_reset(user, now)]).await?;
                    Ok(Some(PasswordResetDone { user, ended }))
                })
                .await
                .map_err(classify)
            })
            .await
    }

    async fn last_issued(
        &self,
        user: UserId,
        purpose: TokenPurpose,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                one_time_tokens::table
                    .filter(one_time_tokens::user_id.eq(user.as_uuid()))
                    .filter(one_time_tokens::purpose.eq(purpose.as_str()))
                    .select(diesel::dsl::max(one_time_tokens::created_at))
                    .first::<Option<DateTime<Utc>>>(&mut conn)
                    .await
                    .map_err(classify)
            })
            .await
    }
}
