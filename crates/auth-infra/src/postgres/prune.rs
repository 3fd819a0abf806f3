//! `PgPruner`: retention in small batches, one pass at a time across every instance.
//!
//! The pass holds a session-level advisory lock ([`PRUNE_LOCK_KEY`]) on one pooled connection
//! and runs every batch on that connection: each batch is one statement in its own
//! transaction (autocommit), touching at most [`PRUNE_BATCH_ROWS`] rows through the retention
//! indexes, within `AUTH_DB_TIMEOUT_MS`. So no row lock is held for longer than one batch, and
//! a login, a refresh or a verification waits at most for one batch's rows.
//!
//! A pooled connection that still holds the advisory lock must never go back to the pool: it
//! would keep the lock for as long as it lives, and every later pass of every instance would
//! be skipped. So the connection is released to the pool only after a successful unlock; after
//! an error, or when the pass is cancelled, it is closed, and closing ends the lock with the
//! session.

use async_trait::async_trait;
use auth_core::ports::{PruneError, PruneReport, PrunedRows, Pruner, RetentionPolicy, StoreError};
use chrono::{DateTime, Utc};
use deadpool::managed::Object;
use diesel::sql_types::{Array, BigInt, Bool, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::error::classify;
use super::pool::{DbConnection, DbPool};

/// Advisory-lock key reserved for retention passes ("authprun" as ASCII).
pub const PRUNE_LOCK_KEY: i64 = 0x6175_7468_7072_756e;

/// Rows one statement deletes at most. A batch of 1,000 refresh tokens takes a few
/// milliseconds (see `docs/configuration.md`, retention), far inside any pool deadline.
pub const PRUNE_BATCH_ROWS: u32 = 1_000;

/// Up to `$2` sessions that ended before `$1`, oldest end first, through `sessions_ended_idx`
/// (the expression must stay exactly `least(revoked_at, expires_at)` for the index to serve).
const ENDED_SESSIONS_SQL: &str = "\
SELECT id FROM sessions
WHERE least(revoked_at, expires_at) < $1
ORDER BY least(revoked_at, expires_at)
LIMIT $2";

/// Up to `$2` refresh tokens of the sessions `$1`, through `refresh_tokens_session_idx`.
/// Ended sessions get no new tokens (rotation needs an active session), so the tokens of a
/// batch of sessions are gone once this deletes fewer than `$2`.
const TOKENS_SQL: &str = "\
DELETE FROM refresh_tokens WHERE token_hash IN (
    SELECT token_hash FROM refresh_tokens WHERE session_id = ANY($1) LIMIT $2
)";

/// The sessions `$1`, their tokens already deleted (no foreign key deletes them with the
/// session). The end is checked again, though an ended session never comes back to life.
const SESSIONS_SQL: &str = "\
DELETE FROM sessions WHERE id = ANY($1) AND least(revoked_at, expires_at) < $2";

/// Up to `$3` lockout counters whose window began before `$1` and whose lock is not running at
/// `$2`, through `login_attempts_window_idx`. The condition is repeated outside the subquery:
/// a counter that a concurrent attempt restarts (a new window) while this statement waits for
/// its row lock is re-checked in its new version and kept.
const LOGIN_ATTEMPTS_SQL: &str = "\
DELETE FROM login_attempts
WHERE key IN (
    SELECT key FROM login_attempts
    WHERE window_started_at < $1 AND (locked_until IS NULL OR locked_until <= $2)
    ORDER BY window_started_at
    LIMIT $3
)
AND window_started_at < $1 AND (locked_until IS NULL OR locked_until <= $2)";

/// Up to `$2` one-time tokens expired at `$1` (`expires_at <= $1`), through
/// `one_time_tokens_expires_idx`. A token is never changed, only replaced (under a new hash)
/// or spent, so nothing needs checking again; a concurrent use of an expired token is refused
/// whether this deletes it first or not.
const ONE_TIME_TOKENS_SQL: &str = "\
DELETE FROM one_time_tokens WHERE hash IN (
    SELECT hash FROM one_time_tokens WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2
)";

/// Up to `$2` MFA login challenges expired at `$1`, through `mfa_challenges_expires_idx`.
/// Never changed either; an expired challenge is refused by every use.
const MFA_CHALLENGES_SQL: &str = "\
DELETE FROM mfa_challenges WHERE token_hash IN (
    SELECT token_hash FROM mfa_challenges WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2
)";

/// Up to `$2` password-reset requests made before `$1`, oldest first, through
/// `password_reset_requests_requested_idx`. A claim changes only `due_at`; a worker fulfilling
/// a request deleted here finds it gone and issues nothing. A row a worker holds (its claim or
/// fulfilment, one short transaction) is waited for, as any batch waits for its rows.
const RESET_REQUESTS_SQL: &str = "\
DELETE FROM password_reset_requests WHERE id IN (
    SELECT id FROM password_reset_requests WHERE requested_at < $1 ORDER BY requested_at LIMIT $2
)";

/// Up to `$2` events older than `$1`, oldest first, through `events_at_idx`. Events are never
/// changed, so nothing needs checking again.
const EVENTS_SQL: &str = "\
DELETE FROM events WHERE seq IN (
    SELECT seq FROM events WHERE at < $1 ORDER BY at LIMIT $2
)";

/// Up to `$2` hourly API-key usage rows of hours before `$1`, oldest first, through
/// `api_key_usage_hour_idx`, their last uses folded into their keys' `last_used_at` first (a
/// key's last use is the latest of that column and its usage rows', so it survives the
/// deletion of every row that held it). The rows are locked before they are read, and the
/// keys in id order, so that concurrent passes and writers queue instead of deadlocking; the
/// keys' lock is `FOR NO KEY UPDATE` (what the update itself takes), which does not hold up a
/// foreign key's check on them. A
/// batch that adds to one of the rows waits for it or finds it gone and inserts it again (only
/// hours older than 90 days are deleted, and no instance counts in those). The statement
/// answers the rows deleted.
const KEY_USAGE_SQL: &str = "\
WITH doomed AS (
    SELECT key_id, hour, last_used_at FROM api_key_usage
    WHERE hour < $1 ORDER BY hour LIMIT $2 FOR UPDATE
), latest AS (
    SELECT key_id, max(last_used_at) AS at FROM doomed
    WHERE last_used_at IS NOT NULL GROUP BY key_id
), locked AS (
    SELECT k.id, latest.at FROM api_keys AS k JOIN latest ON latest.key_id = k.id
    WHERE k.last_used_at IS NULL OR k.last_used_at < latest.at
    ORDER BY k.id FOR NO KEY UPDATE OF k
), folded AS (
    UPDATE api_keys AS k SET last_used_at = GREATEST(k.last_used_at, locked.at)
    FROM locked WHERE k.id = locked.id
)
DELETE FROM api_key_usage AS u USING doomed
WHERE u.key_id = doomed.key_id AND u.hour = doomed.hour";

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(diesel::QueryableByName)]
struct SessionIdRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// Retention over Postgres.
#[derive(Clone)]
pub struct PgPruner {
    pool: DbPool,
    batch: u32,
}

impl std::fmt::Debug for PgPruner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPruner")
            .field("batch", &self.batch)
            .field("pool", &self.pool)
            .finish()
    }
}

/// The connection that may hold the advisory lock. Dropped unreleased, it is detached from
/// the pool and closed (see the module's comment).
struct LockHolder(Option<DbConnection>);

impl LockHolder {
    /// Gives the connection back to the pool: only once it holds no lock.
    fn release(mut self) {
        drop(self.0.take());
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(Object::take(conn));
        }
    }
}

impl PgPruner {
    /// A pruner over `pool`, deleting [`PRUNE_BATCH_ROWS`] rows per statement.
    #[must_use]
    pub fn new(pool: DbPool) -> Self {
        Self {
            pool,
            batch: PRUNE_BATCH_ROWS,
        }
    }

    /// The same, deleting at most `rows` (at least 1) per statement.
    #[must_use]
    pub fn with_batch_size(self, rows: u32) -> Self {
        Self {
            batch: rows.max(1),
            ..self
        }
    }

    /// One statement within the pool's deadline.
    async fn step<T>(
        &self,
        statement: impl std::future::Future<Output = Result<T, diesel::result::Error>>,
    ) -> Result<T, StoreError> {
        self.pool
            .deadline(async { statement.await.map_err(classify) })
            .await
    }

    /// Batches of `sql` (`$1` the time, `$2` the batch size) until one deletes fewer than a
    /// full batch, adding what each deleted to `deleted` as it commits.
    async fn drain(
        &self,
        conn: &mut AsyncPgConnection,
        sql: &'static str,
        at: DateTime<Utc>,
        deleted: &mut u64,
    ) -> Result<(), StoreError> {
        loop {
            let n = self
                .step(
                    diesel::sql_query(sql)
                        .bind::<Timestamptz, _>(at)
                        .bind::<BigInt, _>(i64::from(self.batch))
                        .execute(conn),
                )
                .await?;
            *deleted += n as u64;
            if n < self.batch as usize {
                return Ok(());
            }
        }
    }

    /// Every batch of one pass, adding what each deleted to `deleted` as it commits.
    async fn pass(
        &self,
        conn: &mut AsyncPgConnection,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
        deleted: &mut PrunedRows,
    ) -> Result<(), StoreError> {
        let batch = i64::from(self.batch);
        let full = |n: usize| n >= self.batch as usize;

        let ended_before = policy.sessions_ended_before(now);
        loop {
            let ids: Vec<Uuid> = self
                .step(
                    diesel::sql_query(ENDED_SESSIONS_SQL)
                        .bind::<Timestamptz, _>(ended_before)
                        .bind::<BigInt, _>(batch)
                        .load::<SessionIdRow>(conn),
                )
                .await?
                .into_iter()
                .map(|row| row.id)
                .collect();
            if ids.is_empty() {
                break;
            }
            loop {
                let n = self
                    .step(
                        diesel::sql_query(TOKENS_SQL)
                            .bind::<Array<diesel::sql_types::Uuid>, _>(&ids)
                            .bind::<BigInt, _>(batch)
                            .execute(conn),
                    )
                    .await?;
                deleted.refresh_tokens += n as u64;
                if !full(n) {
                    break;
                }
            }
            let n = self
                .step(
                    diesel::sql_query(SESSIONS_SQL)
                        .bind::<Array<diesel::sql_types::Uuid>, _>(&ids)
                        .bind::<Timestamptz, _>(ended_before)
                        .execute(conn),
                )
                .await?;
            deleted.sessions += n as u64;
            if !full(ids.len()) {
                break;
            }
        }

        let window_before = policy.lockout_windows_before(now);
        loop {
            let n = self
                .step(
                    diesel::sql_query(LOGIN_ATTEMPTS_SQL)
                        .bind::<Timestamptz, _>(window_before)
                        .bind::<Timestamptz, _>(now)
                        .bind::<BigInt, _>(batch)
                        .execute(conn),
                )
                .await?;
            deleted.login_attempts += n as u64;
            if !full(n) {
                break;
            }
        }

        self.drain(conn, ONE_TIME_TOKENS_SQL, now, &mut deleted.one_time_tokens)
            .await?;
        self.drain(conn, MFA_CHALLENGES_SQL, now, &mut deleted.mfa_challenges)
            .await?;
        self.drain(
            conn,
            RESET_REQUESTS_SQL,
            policy.reset_requests_before(now),
            &mut deleted.password_reset_requests,
        )
        .await?;
        self.drain(
            conn,
            KEY_USAGE_SQL,
            policy.usage_before(now),
            &mut deleted.api_key_usage,
        )
        .await?;
        self.drain(
            conn,
            EVENTS_SQL,
            policy.events_before(now),
            &mut deleted.events,
        )
        .await
    }
}

#[async_trait]
impl Pruner for PgPruner {
    async fn prune(
        &self,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
    ) -> Result<PruneReport, PruneError> {
        // Held before the lock is asked for: a request that times out may still have been
        // granted, and then only closing the connection gives the lock back.
        let mut holder = LockHolder(Some(self.pool.get().await?));
        let Some(conn) = holder.0.as_mut() else {
            return Err(StoreError::internal("prune connection missing").into());
        };
        let Locked { locked } = self
            .step(
                diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                    .bind::<BigInt, _>(PRUNE_LOCK_KEY)
                    .get_result::<Locked>(&mut **conn),
            )
            .await?;
        if !locked {
            holder.release();
            return Ok(PruneReport::Skipped);
        }
        let mut deleted = PrunedRows::default();
        if let Err(cause) = self.pass(conn, policy, now, &mut deleted).await {
            // The holder closes the connection, which ends the lock.
            return Err(PruneError { deleted, cause });
        }
        let unlocked = self
            .step(
                diesel::sql_query("SELECT pg_advisory_unlock($1) AS locked")
                    .bind::<BigInt, _>(PRUNE_LOCK_KEY)
                    .get_result::<Locked>(&mut **conn),
            )
            .await;
        match unlocked {
            Ok(Locked { locked: true }) => holder.release(),
            // The pass is done all the same; the holder closes the connection, which ends
            // the lock.
            Ok(Locked { locked: false }) => {
                tracing::warn!("retention lock was not held at the end of the pass");
            }
            Err(err) => {
                tracing::warn!(error = %err, "retention lock not released; closing its connection");
            }
        }
        Ok(PruneReport::Completed(deleted))
    }
}

#[cfg(all(test, feature = "test-support"))]
mod tests {
    use diesel::sql_types::Text;
    use diesel_async::SimpleAsyncConnection as _;

    use super::*;
    use crate::test_support::TestDb;

    #[derive(diesel::QueryableByName)]
    struct PlanLine {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }

    /// Every batch reaches its rows through an index, the retention indexes for the
    /// statements that look for what is due: with sequential scans disabled, a statement no
    /// index can serve still shows a `Seq Scan`. (An expression that drifts from the index's,
    /// such as `least(expires_at, revoked_at)` in both its filter and its order, does.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_use_the_retention_indexes() {
        let db = TestDb::new().await;
        let pool = db.pool();
        let mut conn = pool.get().await.unwrap();
        conn.batch_execute("SET enable_seqscan = off")
            .await
            .unwrap();
        let (now, ids) = (Utc::now(), vec![Uuid::nil()]);
        let explain = |sql: &str| diesel::sql_query(format!("EXPLAIN {sql}")).into_boxed();
        let cases = [
            (
                explain(ENDED_SESSIONS_SQL)
                    .bind::<Timestamptz, _>(now)
                    .bind::<BigInt, _>(1000_i64),
                "sessions_ended_idx",
            ),
            (
                explain(TOKENS_SQL)
                    .bind::<Array<diesel::sql_types::Uuid>, _>(ids.clone())
                    .bind::<BigInt, _>(1000_i64),
                "refresh_tokens_session_idx",
            ),
            (
                explain(SESSIONS_SQL)
                    .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
                    .bind::<Timestamptz, _>(now),
                "sessions_pkey",
            ),
            (
                explain(LOGIN_ATTEMPTS_SQL)
                    .bind::<Timestamptz, _>(now)
                    .bind::<Timestamptz, _>(now)
                    .bind::<BigInt, _>(1000_i64),
                "login_attempts_window_idx",
            ),
            (
                explain(ONE_TIME_TOKENS_SQL)
                    .bind::<Timestamptz, _>(now)
                    .bind::<BigInt, _>(1000_i64),
                "one_time_tokens_expires_idx",
            ),
            (
                explain(MFA_CHALLENGES_SQL)
                    .bind::<Timestamptz, _>(now)
                    .bind::<BigInt, _>(1000_i64),
                "mfa_challenges_expires_idx",
            ),
            (
                explain(RESET_REQUESTS_SQL)
                    .bind::<Timestamptz, _>(now)
                    .bind::<BigInt, _>(1000_i64),
                "password_reset_requests_requested_idx",
            ),
            (
                explain(EVENTS_SQL)
                    .bind::<Timestamptz, _>(now)
                    .bind::<BigInt, _>(1000_i64),
                "events_at_idx",
            ),
        ];
        for (query, index) in cases {
            let plan = query
                .load::<PlanLine>(&mut conn)
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.line)
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                plan.contains(index) && !plan.contains("Seq Scan"),
                "{index}:\n{plan}"
            );
        }
    }
}
