//! `PgLoginAttemptStore`: every failure is one `INSERT … ON CONFLICT DO UPDATE`, so concurrent
//! failures for one key, from any number of instances, serialise on the row and none is lost.

use async_trait::async_trait;
use auth_core::model::TokenHash;
use auth_core::ports::{AttemptState, LockoutPolicy, LoginAttemptStore, StoreError};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Integer, Nullable, Timestamptz};
use diesel_async::RunQueryDsl;

use super::error::classify;
use super::pool::DbPool;
use super::schema::login_attempts;

/// Counts one failure, atomically. Binds: `$1` key, `$2` now, `$3` threshold, `$4` window and
/// `$5` lock duration, both in microseconds (`bigint`, turned into intervals of plain
/// microseconds, so no calendar or time-zone arithmetic is involved).
///
/// The inserted row is a fresh window: count 1 at `now`, locked at once if the threshold is
/// 1 (or 0). On conflict the `SET` expressions all read the stored row (`a`), in this order:
/// - a lock is running (`locked_until > now`): everything stays as it is;
/// - the lock has ended, or the window began more than `window` ago: the fresh window the
///   insert proposed (`EXCLUDED`);
/// - otherwise one more failure, locking for `duration` from `now` when the count reaches the
///   threshold (`locked_until` is NULL here: a non-NULL one is either running or ended).
const RECORD_FAILURE_SQL: &str = "\
INSERT INTO login_attempts AS a (key, failures, window_started_at, locked_until)
VALUES ($1, 1, $2, CASE WHEN 1 >= $3 THEN $2 + $5 * interval '1 microsecond' END)
ON CONFLICT (key) DO UPDATE SET
    failures = CASE
        WHEN a.locked_until > $2 THEN a.failures
        WHEN a.locked_until <= $2 OR a.window_started_at < $2 - $4 * interval '1 microsecond'
            THEN EXCLUDED.failures
        ELSE a.failures + 1
    END,
    window_started_at = CASE
        WHEN a.locked_until > $2 THEN a.window_started_at
        WHEN a.locked_until <= $2 OR a.window_started_at < $2 - $4 * interval '1 microsecond'
            THEN EXCLUDED.window_started_at
        ELSE a.window_started_at
    END,
    locked_until = CASE
        WHEN a.locked_until > $2 THEN a.locked_until
        WHEN a.locked_until <= $2 OR a.window_started_at < $2 - $4 * interval '1 microsecond'
            THEN EXCLUDED.locked_until
        WHEN a.failures + 1 >= $3 THEN $2 + $5 * interval '1 microsecond'
        ELSE NULL
    END
RETURNING failures, locked_until";

/// What `RECORD_FAILURE_SQL` returns.
#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = Integer)]
    failures: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    locked_until: Option<DateTime<Utc>>,
}

/// A policy duration in microseconds; one too long for that is a configuration error.
fn micros(d: Duration) -> Result<i64, StoreError> {
    d.num_microseconds()
        .ok_or_else(|| StoreError::internal("lockout duration out of range"))
}

/// Failed-login counters in Postgres, one row per key.
#[derive(Clone)]
pub struct PgLoginAttemptStore {
    pool: DbPool,
}

impl std::fmt::Debug for PgLoginAttemptStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLoginAttemptStore")
            .field("pool", &self.pool)
            .finish()
    }
}

impl PgLoginAttemptStore {
    /// A store over `pool`.
    #[must_use]
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl LoginAttemptStore for PgLoginAttemptStore {
    async fn check(
        &self,
        key: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let locked: Option<Option<DateTime<Utc>>> = login_attempts::table
                    .find(key.as_bytes().as_slice())
                    .filter(login_attempts::locked_until.gt(now))
                    .select(login_attempts::locked_until)
                    .first(&mut conn)
                    .await
                    .optional()
                    .map_err(classify)?;
                Ok(locked.flatten())
            })
            .await
    }

    async fn record_failure(
        &self,
        key: &TokenHash,
        now: DateTime<Utc>,
        policy: &LockoutPolicy,
    ) -> Result<AttemptState, StoreError> {
        self.pool
            .deadline(async {
                let window = micros(policy.window)?;
                let duration = micros(policy.duration)?;
                let mut conn = self.pool.get().await?;
                let counted: Counted = diesel::sql_query(RECORD_FAILURE_SQL)
                    .bind::<Bytea, _>(key.as_bytes().as_slice())
                    .bind::<Timestamptz, _>(now)
                    .bind::<BigInt, _>(i64::from(policy.threshold))
                    .bind::<BigInt, _>(window)
                    .bind::<BigInt, _>(duration)
                    .get_result(&mut conn)
                    .await
                    .map_err(classify)?;
                Ok(AttemptState {
                    failures: u32::try_from(counted.failures).map_err(StoreError::internal)?,
                    locked_until: counted.locked_until,
                })
            })
            .await
    }

    async fn reset(&self, key: &TokenHash) -> Result<(), StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                diesel::delete(login_attempts::table.find(key.as_bytes().as_slice()))
                    .execute(&mut conn)
                    .await
                    .map_err(classify)?;
                Ok(())
            })
            .await
    }
}
