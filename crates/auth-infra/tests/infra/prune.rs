//! Retention on Postgres beyond the shared contract: the advisory lock between instances, a
//! failed pass giving its lock back, events at their boundary, and a month-sized backlog
//! deleted in batches while logins and refreshes go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auth_core::memory::NoCache;
use auth_core::model::{Email, Password};
use auth_core::ports::{PruneReport, PrunedRows, Pruner as _, RetentionPolicy, StoreError};
use auth_core::system::{OsSecretGenerator, SystemClock};
use auth_core::{AccountConfig, AccountError, AccountPorts, AccountService, Registration};
use auth_infra::jwt::{JwtSettings, JwtSigner};
use auth_infra::password::BcryptHasher;
use auth_infra::postgres::{
    DbPool, PRUNE_LOCK_KEY, PgAccountRemover, PgLoginAttemptStore, PgPruner, PgSessionRepository,
    PgUserRepository, PoolSettings, build_pool,
};
use auth_infra::test_support::TestDb;
use chrono::{DateTime, SecondsFormat, Utc};
use diesel_async::SimpleAsyncConnection as _;
use secrecy::SecretSlice;

use crate::count;

/// Whether some session holds the prune lock on this test's database (advisory locks are per
/// database; a `bigint` key shows in `pg_locks` as its high half in `classid` and its low
/// half in `objid`, with `objsubid` 1).
async fn prune_lock_held(pool: &DbPool) -> bool {
    let (high, low) = (PRUNE_LOCK_KEY >> 32, PRUNE_LOCK_KEY & 0xffff_ffff);
    count(
        pool,
        &format!(
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND classid::bigint = {high} AND objid::bigint = {low} AND objsubid = 1"
        ),
    )
    .await
        > 0
}

fn sql_time(t: DateTime<Utc>) -> String {
    format!(
        "'{}'::timestamptz",
        t.to_rfc3339_opts(SecondsFormat::Micros, true)
    )
}

const USER_ID: &str = "00000000-0000-7000-8000-000000000001";

/// One user, and `n` sessions of it that expired 45 days ago, with one token each.
fn ended_sessions_sql(n: u32) -> String {
    format!(
        "INSERT INTO users (id, email, email_normalized, password_hash, created_at, updated_at) \
         VALUES ('{USER_ID}', 'old@example.com', 'old@example.com', 'x', now(), now()) \
         ON CONFLICT DO NOTHING; \
         WITH s AS ( \
           INSERT INTO sessions (id, user_id, created_at, expires_at) \
           SELECT gen_random_uuid(), '{USER_ID}', now() - interval '75 days', \
                  now() - interval '45 days' \
           FROM generate_series(1, {n}) RETURNING id, created_at) \
         INSERT INTO refresh_tokens (token_hash, session_id, created_at) \
         SELECT sha256(convert_to(id::text, 'UTF8')), id, created_at FROM s;"
    )
}

/// While another instance's pass holds the lock, a pass is skipped at once and deletes
/// nothing; once it is released, the next pass runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_skips_while_another_instance_holds_the_lock() {
    let db = TestDb::new().await;
    db.execute(&ended_sessions_sql(3)).await;
    let pool = db.pool();
    let other = db.pool();
    let mut holder = other.get().await.unwrap();
    holder
        .batch_execute(&format!("SELECT pg_advisory_lock({PRUNE_LOCK_KEY})"))
        .await
        .unwrap();
    let pruner = PgPruner::new(pool.clone());
    let policy = RetentionPolicy::default();

    let started = Instant::now();
    assert_eq!(
        pruner.prune(&policy, Utc::now()).await.unwrap(),
        PruneReport::Skipped
    );
    assert!(started.elapsed() < Duration::from_secs(1), "no waiting");
    assert_eq!(count(&pool, "SELECT count(*) AS n FROM sessions").await, 3);

    holder
        .batch_execute(&format!("SELECT pg_advisory_unlock({PRUNE_LOCK_KEY})"))
        .await
        .unwrap();
    assert_eq!(
        pruner.prune(&policy, Utc::now()).await.unwrap().deleted(),
        PrunedRows {
            sessions: 3,
            refresh_tokens: 3,
            ..PrunedRows::default()
        }
    );
    assert!(!prune_lock_held(&pool).await, "released after the pass");
}

/// A pass that fails part-way (here a batch waits on a row lock past the statement timeout)
/// reports what it deleted before, and gives the lock back. The failed statement leaves its
/// connection healthy, so a pool would take it back, lock and all, and every later pass of
/// every instance would be skipped: the connection is closed instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_failing_part_way_reports_its_deletions_and_frees_the_lock() {
    let db = TestDb::new().await;
    db.execute(&ended_sessions_sql(5)).await;
    db.execute(
        "INSERT INTO login_attempts (key, failures, window_started_at) \
         VALUES (sha256('dead'), 1, now() - interval '1 day')",
    )
    .await;
    let impatient = build_pool(
        db.url(),
        PoolSettings {
            statement_timeout: Duration::from_millis(200),
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let pool = db.pool();
    let mut blocker = pool.get().await.unwrap();
    blocker
        .batch_execute("BEGIN; SELECT key FROM login_attempts FOR UPDATE")
        .await
        .unwrap();

    let policy = RetentionPolicy::default();
    let err = PgPruner::new(impatient.clone())
        .prune(&policy, Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(err.cause, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(
        err.deleted,
        PrunedRows {
            sessions: 5,
            refresh_tokens: 5,
            ..PrunedRows::default()
        }
    );
    assert_eq!(count(&pool, "SELECT count(*) AS n FROM sessions").await, 0);
    blocker.batch_execute("ROLLBACK").await.unwrap();
    drop(blocker);

    // The server ends the closed connection's session at once, and the lock with it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while prune_lock_held(&pool).await {
        assert!(Instant::now() < deadline, "the failed pass kept the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = PgPruner::new(impatient)
        .prune(&policy, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        report.deleted(),
        PrunedRows {
            login_attempts: 1,
            ..PrunedRows::default()
        }
    );
}

/// Events go once older than `event_retention`: one just older goes, one exactly that old and
/// a recent one stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_events_older_than_event_retention() {
    let db = TestDb::new().await;
    let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let policy = RetentionPolicy::default();
    let cutoff = now - policy.event_retention;
    let micro = chrono::Duration::microseconds(1);
    let mut inserts = String::new();
    for (at, action) in [
        (cutoff - chrono::Duration::days(400), "old"),
        (cutoff - micro, "just-old"),
        (cutoff, "edge"),
        (now - chrono::Duration::days(1), "recent"),
    ] {
        inserts.push_str(&format!(
            "INSERT INTO events (id, at, action, target_type, target_id) \
             VALUES (gen_random_uuid(), {}, '{action}', 'user', 'u');",
            sql_time(at)
        ));
    }
    db.execute(&inserts).await;
    let pool = db.pool();
    let report = PgPruner::new(pool.clone())
        .prune(&policy, now)
        .await
        .unwrap();
    assert_eq!(
        report.deleted(),
        PrunedRows {
            events: 2,
            ..PrunedRows::default()
        }
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) AS n FROM events WHERE action IN ('edge', 'recent')"
        )
        .await,
        2
    );
}

/// A month of refreshes and a day of made-up lockout emails, 30,000 refresh tokens in all,
/// with a backlog of expired links, login challenges and reset requests no worker handled,
/// are deleted completely in batches of 1,000, while logins and refreshes keep working and
/// a second pass started meanwhile is skipped. An active session keeps every one of its
/// old tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_large_backlog_in_batches_while_logins_go_on() {
    let db = TestDb::new().await;
    let seeded = Instant::now();
    db.execute(&format!(
        "{}
         -- Ten sessions refreshed every 15 minutes for a month, ended 45 days ago: 28,800.
         WITH s AS (
           INSERT INTO sessions (id, user_id, created_at, expires_at)
           SELECT gen_random_uuid(), '{USER_ID}', now() - interval '75 days',
                  now() - interval '45 days'
           FROM generate_series(1, 10) RETURNING id, created_at)
         INSERT INTO refresh_tokens (token_hash, session_id, created_at, spent_at)
         SELECT sha256(convert_to(s.id::text || g::text, 'UTF8')), s.id,
                s.created_at + g * interval '15 minutes',
                s.created_at + (g + 1) * interval '15 minutes'
         FROM s CROSS JOIN generate_series(1, 2880) g;
         -- An active session with a month of spent tokens: kept, all 2,881 of them.
         INSERT INTO sessions (id, user_id, created_at, expires_at)
         VALUES ('00000000-0000-7000-8000-0000000000aa', '{USER_ID}',
                 now() - interval '31 days', now() + interval '1 day');
         INSERT INTO refresh_tokens (token_hash, session_id, created_at, spent_at)
         SELECT sha256(convert_to('active' || g::text, 'UTF8')),
                '00000000-0000-7000-8000-0000000000aa',
                now() - interval '31 days' + g * interval '15 minutes',
                CASE WHEN g < 2881 THEN now() - interval '31 days' + (g + 1) * interval '15 minutes' END
         FROM generate_series(1, 2881) g;
         -- A day of failed logins for made-up emails, and events from last winter.
         INSERT INTO login_attempts (key, failures, window_started_at)
         SELECT sha256(int4send(g)), 1, now() - interval '1 day' + g * interval '10 seconds'
         FROM generate_series(1, 5000) g;
         INSERT INTO events (id, at, action, target_type, target_id)
         SELECT gen_random_uuid(), now() - interval '200 days' + g * interval '1 minute',
                'user.login_failed', 'user', 'u'
         FROM generate_series(1, 5000) g;
         -- Expired links, expired login challenges, reset requests of a day without a worker.
         INSERT INTO one_time_tokens (hash, user_id, purpose, created_at, expires_at, email)
         SELECT sha256(convert_to('link' || g::text, 'UTF8')), '{USER_ID}', 'verify_email',
                now() - interval '3 days' + g * interval '1 minute',
                now() - interval '2 days' + g * interval '1 minute', 'old@example.com'
         FROM generate_series(1, 2000) g;
         INSERT INTO mfa_challenges (token_hash, user_id, expires_at)
         SELECT sha256(convert_to('challenge' || g::text, 'UTF8')), '{USER_ID}',
                now() - interval '1 day' + g * interval '10 seconds'
         FROM generate_series(1, 3000) g;
         INSERT INTO password_reset_requests (id, email, requested_at, due_at)
         SELECT gen_random_uuid(), 'old@example.com',
                now() - interval '1 day' + g * interval '20 seconds',
                now() - interval '1 day' + g * interval '20 seconds'
         FROM generate_series(1, 2000) g;
         ANALYZE;",
        ended_sessions_sql(1_200)
    ))
    .await;
    eprintln!("seeded in {:?}", seeded.elapsed());

    let pool = db.pool();
    let auth = AccountService::new(
        AccountPorts {
            users: Arc::new(PgUserRepository::new(pool.clone())),
            sessions: Arc::new(PgSessionRepository::new(pool.clone())),
            accounts: Arc::new(PgAccountRemover::new(pool.clone())),
            hasher: Arc::new(BcryptHasher::new(4, 2).unwrap()),
            signer: Arc::new(
                JwtSigner::hs256(
                    &SecretSlice::from(b"0123456789abcdef0123456789abcdef".to_vec()),
                    JwtSettings::default(),
                )
                .unwrap(),
            ),
            clock: Arc::new(SystemClock),
            secrets: Arc::new(OsSecretGenerator),
            session_cache: Arc::new(NoCache),
            attempts: Arc::new(PgLoginAttemptStore::new(pool.clone())),
        },
        AccountConfig::default(),
    );
    let email = Email::parse("live@example.com").unwrap();
    let password = "a live passphrase";
    auth.register(
        Registration {
            email: email.clone(),
            password: Password::presented(password).unwrap(),
            display_name: None,
        },
        false,
    )
    .await
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn({
        let (stop, auth) = (stop.clone(), auth.clone());
        async move {
            let (mut calls, mut slowest) = (0u32, Duration::ZERO);
            let wrong = Password::presented("not the passphrase").unwrap();
            let right = Password::presented(password).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let refused = auth.login(&email, &wrong).await;
                assert!(matches!(refused, Err(AccountError::InvalidCredentials)));
                let mut refresh = auth.login(&email, &right).await.unwrap().refresh_token;
                slowest = slowest.max(started.elapsed() / 2);
                for _ in 0..3 {
                    let started = Instant::now();
                    refresh = auth.refresh(&refresh).await.unwrap().refresh_token;
                    slowest = slowest.max(started.elapsed());
                }
                calls += 5;
            }
            (calls, slowest)
        }
    });

    let policy = RetentionPolicy::default();
    let started = Instant::now();
    let first = tokio::spawn({
        let pruner = PgPruner::new(pool.clone());
        async move { pruner.prune(&policy, Utc::now()).await }
    });
    while !prune_lock_held(&pool).await {
        assert!(
            !first.is_finished(),
            "the pass ended before it was seen running"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let second = PgPruner::new(pool.clone())
        .prune(&policy, Utc::now())
        .await
        .unwrap();
    assert_eq!(second, PruneReport::Skipped);
    let report = first.await.unwrap().unwrap();
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (calls, slowest) = traffic.await.unwrap();
    eprintln!(
        "pruned {report:?} in {elapsed:?}; meanwhile {calls} logins and refreshes, the \
         slowest {slowest:?}"
    );

    assert_eq!(
        report,
        PruneReport::Completed(PrunedRows {
            sessions: 1_210,
            refresh_tokens: 30_000,
            login_attempts: 5_000,
            events: 5_000,
            one_time_tokens: 2_000,
            mfa_challenges: 3_000,
            password_reset_requests: 2_000,
            api_key_usage: 0,
        })
    );
    assert!(calls > 0);
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) AS n FROM refresh_tokens \
             WHERE session_id = '00000000-0000-7000-8000-0000000000aa'"
        )
        .await,
        2_881
    );
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) AS n FROM sessions WHERE user_id = '{USER_ID}'")
        )
        .await,
        1
    );
    // Every old event went; those left are new: the registration of the user who logged in
    // during the pass, and those logins, failed and successful.
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) AS n FROM events \
             WHERE at < now() - interval '1 day' \
                OR action NOT IN ('user.registered', 'user.login_succeeded', \
                                  'user.login_failed')"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) AS n FROM events WHERE action = 'user.registered'"
        )
        .await,
        1
    );
}
