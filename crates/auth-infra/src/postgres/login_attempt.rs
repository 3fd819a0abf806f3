//! `PgLoginAttemptStore`: every attempt is counted by one `INSERT … ON CONFLICT DO UPDATE`
//! that also decides whether the key is locked, so concurrent attempts for one key, from any
//! number of instances, serialise on the row: none is lost, and none is admitted past the
//! threshold.

use async_trait::async_trait;
use auth_core::model::{FailedLogin, NewEvent, TokenHash};
use auth_core::ports::{Admission, AttemptState, LockoutPolicy, LoginAttemptStore, StoreError};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{BigInt, Bytea, Integer, Nullable, Timestamptz};
use diesel_async::{AsyncConnection as _, RunQueryDsl};

use super::error::classify;
use super::events::append_in;
use super::pool::DbPool;
use super::schema::login_attempts;

/// Counts one attempt unless the key is locked, atomically. Binds: `$1` key, `$2` now, `$3`
/// threshold, `$4` window and `$5` lock duration, both in microseconds (`bigint`, turned into
/// intervals of plain microseconds, so no calendar or time-zone arithmetic is involved).
///
/// The inserted row is a fresh window: count 1 at `now`, locked at once if the threshold is
/// 1 (or 0). On conflict, a running lock (`locked_until > now`) fails the `WHERE` of the
/// update: the row is left as it is and nothing is returned, which is the refusal. Otherwise
/// the `SET` expressions read the stored row (`a`):
/// - the lock has ended, or the window began more than `window` ago: the fresh window the
///   insert proposed (`EXCLUDED`);
/// - otherwise one more attempt, locking for `duration` from `now` when the count reaches the
///   threshold (`locked_until` is NULL here: a non-NULL one that is not running has ended).
///
/// Under `READ COMMITTED`, a conflicting row being changed by another transaction is waited
/// for and the `WHERE` is evaluated on its newest version, so concurrent attempts queue on the
/// row and each sees the count and lock its predecessors left.
const BEGIN_ATTEMPT_SQL: &str = "\
INSERT INTO login_attempts AS a (key, failures, window_started_at, locked_until)
VALUES ($1, 1, $2, CASE WHEN 1 >= $3 THEN $2 + $5 * interval '1 microsecond' END)
ON CONFLICT (key) DO UPDATE SET
    failures = CASE
        WHEN a.locked_until <= $2 OR a.window_started_at < $2 - $4 * interval '1 microsecond'
            THEN EXCLUDED.failures
        ELSE a.failures + 1
    END,
    window_started_at = CASE
        WHEN a.locked_until <= $2 OR a.window_started_at < $2 - $4 * interval '1 microsecond'
            THEN EXCLUDED.window_started_at
        ELSE a.window_started_at
    END,
    locked_until = CASE
        WHEN a.locked_until <= $2 OR a.window_started_at < $2 - $4 * interval '1 microsecond'
            THEN EXCLUDED.locked_until
        WHEN a.failures + 1 >= $3 THEN $2 + $5 * interval '1 microsecond'
        ELSE NULL
    END
WHERE a.locked_until IS NULL OR a.locked_until <= $2
RETURNING failures, locked_until";

/// What `BEGIN_ATTEMPT_SQL` returns.
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

    async fn begin_attempt(
        &self,
        key: &TokenHash,
        now: DateTime<Utc>,
        policy: &LockoutPolicy,
    ) -> Result<Admission, StoreError> {
        let window = micros(policy.window)?;
        let duration = micros(policy.duration)?;
        // A refusal reads the running lock's end in a second statement; should that lock have
        // ended in between, the attempt is made again (at most once more in practice).
        for _ in 0..3 {
            let admitted = self
                .pool
                .deadline(async {
                    let mut conn = self.pool.get().await?;
                    // `load`, not `get_result`: the count commits with this statement, and
                    // `get_result` would return on a row sent before that commit is confirmed
                    // (see `PgSessionRepository::rotate`).
                    let counted: Option<Counted> = diesel::sql_query(BEGIN_ATTEMPT_SQL)
                        .bind::<Bytea, _>(key.as_bytes().as_slice())
                        .bind::<Timestamptz, _>(now)
                        .bind::<BigInt, _>(i64::from(policy.threshold))
                        .bind::<BigInt, _>(window)
                        .bind::<BigInt, _>(duration)
                        .load(&mut conn)
                        .await
                        .map_err(classify)?
                        .into_iter()
                        .next();
                    counted
                        .map(|counted| {
                            Ok(AttemptState {
                                failures: u32::try_from(counted.failures)
                                    .map_err(StoreError::internal)?,
                                locked_until: counted.locked_until,
                            })
                        })
                        .transpose()
                })
                .await?;
            if let Some(state) = admitted {
                return Ok(Admission::Admitted(state));
            }
            if let Some(until) = self.check(key, now).await? {
                return Ok(Admission::Locked { until });
            }
        }
        Err(StoreError::internal(
            "lockout row neither admitted nor locked",
        ))
    }

    async fn record_failure(
        &self,
        key: &TokenHash,
        failure: &FailedLogin,
    ) -> Result<(), StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                conn.transaction::<_, DieselError, _>(async |conn| {
                    let mut events = vec![NewEvent::login_failed(failure)];
                    if let Some(until) = failure.locked_until {
                        // The lock this attempt started, unless a success or a new window
                        // has replaced it since. Read with a share lock, so neither can
                        // commit between this read and the event.
                        let stands: Option<Option<DateTime<Utc>>> = login_attempts::table
                            .find(key.as_bytes().as_slice())
                            .select(login_attempts::locked_until)
                            .for_share()
                            .first(conn)
                            .await
                            .optional()?;
                        if stands.flatten() == Some(until) {
                            events.push(NewEvent::user_locked(failure, until));
                        }
                    }
                    append_in(conn, &events).await
                })
                .await
                .map_err(classify)
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
