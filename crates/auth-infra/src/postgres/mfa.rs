//! `PgMfaRepository`: TOTP enrolments, recovery codes and login challenges.
//!
//! Every "once" is one conditional statement (`UPDATE … WHERE <still unused>`, `DELETE …`):
//! concurrent callers serialise on the row lock and the losers find the condition false.

use async_trait::async_trait;
use auth_core::model::{NewEvent, SealedSecret, TokenHash, TotpEnrolment, UserId};
use auth_core::ports::{MfaRepository, StoreError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection as _, RunQueryDsl};
use uuid::Uuid;

use super::error::classify;
use super::events::append_in;
use super::pool::DbPool;
use super::schema::{mfa_challenges, mfa_recovery_codes, mfa_totp};

/// A row of `mfa_totp`. No `Debug`: it holds a sealed secret.
#[derive(Queryable, Selectable)]
#[diesel(table_name = mfa_totp, check_for_backend(diesel::pg::Pg))]
struct TotpRow {
    user_id: Uuid,
    secret_sealed: Vec<u8>,
    enabled_at: Option<DateTime<Utc>>,
    last_step: Option<i64>,
    created_at: DateTime<Utc>,
}

impl TotpRow {
    fn into_domain(self) -> TotpEnrolment {
        TotpEnrolment {
            user_id: UserId::from_uuid(self.user_id),
            secret: SealedSecret::from_bytes(self.secret_sealed),
            enabled_at: self.enabled_at,
            last_step: self.last_step,
            created_at: self.created_at,
        }
    }
}

/// Second factors in Postgres.
#[derive(Clone)]
pub struct PgMfaRepository {
    pool: DbPool,
}

impl std::fmt::Debug for PgMfaRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgMfaRepository")
            .field("pool", &self.pool)
            .finish()
    }
}

impl PgMfaRepository {
    /// A repository over `pool`.
    #[must_use]
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl MfaRepository for PgMfaRepository {
    async fn find(&self, user: UserId) -> Result<Option<TotpEnrolment>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                Ok(mfa_totp::table
                    .find(user.as_uuid())
                    .select(TotpRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()
                    .map_err(classify)?
                    .map(TotpRow::into_domain))
            })
            .await
    }

    async fn begin(
        &self,
        user: UserId,
        secret: &SealedSecret,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let stored = diesel::sql_query(
                    "INSERT INTO mfa_totp (user_id, secret_sealed, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id) DO UPDATE \
                     SET secret_sealed = EXCLUDED.secret_sealed, created_at = EXCLUDED.created_at, \
                         last_step = NULL \
                     WHERE mfa_totp.enabled_at IS NULL",
                )
                .bind::<diesel::sql_types::Uuid, _>(user.as_uuid())
                .bind::<diesel::sql_types::Bytea, _>(secret.as_bytes())
                .bind::<diesel::sql_types::Timestamptz, _>(now)
                .execute(&mut conn)
                .await
                .map_err(classify)?;
                Ok(stored == 1)
            })
            .await
    }

    async fn enable(
        &self,
        user: UserId,
        step: i64,
        recovery_codes: &[TokenHash],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let rows: Vec<_> = recovery_codes
            .iter()
            .map(|code| {
                (
                    mfa_recovery_codes::user_id.eq(user.as_uuid()),
                    mfa_recovery_codes::code_hash.eq(code.as_bytes().to_vec()),
                )
            })
            .collect();
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                conn.transaction::<_, DieselError, _>(async |conn| {
                    let enabled = diesel::update(
                        mfa_totp::table
                            .find(user.as_uuid())
                            .filter(mfa_totp::enabled_at.is_null()),
                    )
                    .set((mfa_totp::enabled_at.eq(now), mfa_totp::last_step.eq(step)))
                    .execute(conn)
                    .await?;
                    if enabled != 1 {
                        return Ok(false);
                    }
                    diesel::delete(
                        mfa_recovery_codes::table
                            .filter(mfa_recovery_codes::user_id.eq(user.as_uuid())),
                    )
                    .execute(conn)
                    .await?;
                    if !rows.is_empty() {
                        diesel::insert_into(mfa_recovery_codes::table)
                            .values(&rows)
                            .execute(conn)
                            .await?;
                    }
                    append_in(conn, &[NewEvent::mfa_enabled(user, now)]).await?;
                    Ok(true)
                })
                .await
                .map_err(classify)
            })
            .await
    }

    async fn accept_step(&self, user: UserId, step: i64) -> Result<bool, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let accepted = diesel::update(
                    mfa_totp::table
                        .find(user.as_uuid())
                        .filter(mfa_totp::enabled_at.is_not_null())
                        .filter(
                            mfa_totp::last_step
                                .is_null()
                                .or(mfa_totp::last_step.lt(step)),
                        ),
                )
                .set(mfa_totp::last_step.eq(step))
                .execute(&mut conn)
                .await
                .map_err(classify)?;
                Ok(accepted == 1)
            })
            .await
    }

    async fn use_recovery_code(
        &self,
        user: UserId,
        code: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let enabled = mfa_totp::table
                    .find(user.as_uuid())
                    .filter(mfa_totp::enabled_at.is_not_null());
                let used = diesel::update(
                    mfa_recovery_codes::table
                        .filter(mfa_recovery_codes::user_id.eq(user.as_uuid()))
                        .filter(mfa_recovery_codes::code_hash.eq(code.as_bytes().to_vec()))
                        .filter(mfa_recovery_codes::used_at.is_null())
                        .filter(diesel::dsl::exists(enabled)),
                )
                .set(mfa_recovery_codes::used_at.eq(now))
                .execute(&mut conn)
                .await
                .map_err(classify)?;
                Ok(used == 1)
            })
            .await
    }

    async fn disable(&self, user: UserId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                conn.transaction::<_, DieselError, _>(async |conn| {
                    let removed: Option<Option<DateTime<Utc>>> =
                        diesel::delete(mfa_totp::table.find(user.as_uuid()))
                            .returning(mfa_totp::enabled_at)
                            .get_result(conn)
                            .await
                            .optional()?;
                    diesel::delete(
                        mfa_recovery_codes::table
                            .filter(mfa_recovery_codes::user_id.eq(user.as_uuid())),
                    )
                    .execute(conn)
                    .await?;
                    diesel::delete(
                        mfa_challenges::table.filter(mfa_challenges::user_id.eq(user.as_uuid())),
                    )
                    .execute(conn)
                    .await?;
                    let was_enabled = matches!(removed, Some(Some(_)));
                    if was_enabled {
                        append_in(conn, &[NewEvent::mfa_disabled(user, now)]).await?;
                    }
                    Ok(was_enabled)
                })
                .await
                .map_err(classify)
            })
            .await
    }

    async fn create_challenge(
        &self,
        token: &TokenHash,
        user: UserId,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = expires_at - auth_core::service::mfa::MFA_TOKEN_TTL;
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                conn.transaction::<_, DieselError, _>(async |conn| {
                    diesel::delete(
                        mfa_challenges::table
                            .filter(mfa_challenges::user_id.eq(user.as_uuid()))
                            .filter(mfa_challenges::expires_at.le(now)),
                    )
                    .execute(conn)
                    .await?;
                    diesel::insert_into(mfa_challenges::table)
                        .values((
                            mfa_challenges::token_hash.eq(token.as_bytes().to_vec()),
                            mfa_challenges::user_id.eq(user.as_uuid()),
                            mfa_challenges::expires_at.eq(expires_at),
                        ))
                        .execute(conn)
                        .await?;
                    Ok(())
                })
                .await
                .map_err(classify)
            })
            .await
    }

    async fn find_challenge(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                Ok(mfa_challenges::table
                    .find(token.as_bytes().to_vec())
                    .filter(mfa_challenges::expires_at.gt(now))
                    .select(mfa_challenges::user_id)
                    .first::<Uuid>(&mut conn)
                    .await
                    .optional()
                    .map_err(classify)?
                    .map(UserId::from_uuid))
            })
            .await
    }

    async fn spend_challenge(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let spent = diesel::delete(
                    mfa_challenges::table
                        .find(token.as_bytes().to_vec())
                        .filter(mfa_challenges::expires_at.gt(now)),
                )
                .execute(&mut conn)
                .await
                .map_err(classify)?;
                Ok(spent == 1)
            })
            .await
    }
}
