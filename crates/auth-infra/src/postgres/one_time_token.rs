//! `PgOneTimeTokenStore`: one-time token hashes in `one_time_tokens`. Issuing replaces the
//! user's older tokens of the purpose and queues the mail in one transaction; spending is one
//! `DELETE … RETURNING`, so of concurrent uses exactly one gets the row.

use async_trait::async_trait;
use auth_core::model::{OutgoingMail, StoredToken, TokenHash, TokenPurpose, UserId};
use auth_core::ports::{OneTimeTokenStore, StoreError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, RunQueryDsl};

use super::error::classify;
use super::outbox::enqueue_in;
use super::pool::DbPool;
use super::schema::one_time_tokens;

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

#[async_trait]
impl OneTimeTokenStore for PgOneTimeTokenStore {
    async fn issue(&self, token: &StoredToken, mail: &OutgoingMail) -> Result<(), StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                    diesel::delete(
                        one_time_tokens::table
                            .filter(one_time_tokens::user_id.eq(token.user_id.as_uuid()))
                            .filter(one_time_tokens::purpose.eq(token.purpose.as_str())),
                    )
                    .execute(conn)
                    .await?;
                    diesel::insert_into(one_time_tokens::table)
                        .values((
                            one_time_tokens::hash.eq(token.hash.as_bytes().as_slice()),
                            one_time_tokens::user_id.eq(token.user_id.as_uuid()),
                            one_time_tokens::purpose.eq(token.purpose.as_str()),
                            one_time_tokens::created_at.eq(token.created_at),
                            one_time_tokens::expires_at.eq(token.expires_at),
                        ))
                        .execute(conn)
                        .await?;
                    enqueue_in(conn, mail, token.created_at).await?;
                    Ok(())
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
                // `load`: the deletion commits with this statement (see
                // `PgSessionRepository::rotate`).
                let spent: Vec<(uuid::Uuid, DateTime<Utc>)> = diesel::delete(
                    one_time_tokens::table
                        .filter(one_time_tokens::hash.eq(hash.as_bytes().as_slice()))
                        .filter(one_time_tokens::purpose.eq(purpose.as_str())),
                )
                .returning((one_time_tokens::user_id, one_time_tokens::expires_at))
                .load(&mut conn)
                .await
                .map_err(classify)?;
                Ok(spent
                    .into_iter()
                    .next()
                    .filter(|(_, expires_at)| now < *expires_at)
                    .map(|(user, _)| UserId::from_uuid(user)))
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
