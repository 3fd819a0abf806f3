//! The pool's circuit breaker: it opens after consecutive failures, then fails at once until
//! its pause ends and a probe goes through; a success closes it.

use std::time::{Duration, Instant};

use auth_core::ports::StoreError;
use auth_infra::postgres::{BREAKER_FAILURES, BREAKER_MIN_OPEN, PoolSettings, build_pool};
use auth_infra::test_support::TestDb;

/// A loopback address where nothing listens (connection refused).
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("postgres://u:p@127.0.0.1:{port}/db")
}

fn settings() -> PoolSettings {
    PoolSettings {
        max_size: 2,
        timeout: Duration::from_millis(500),
        ..PoolSettings::default()
    }
}

async fn failure(pool: &auth_infra::postgres::DbPool) -> StoreError {
    match pool.get().await {
        Ok(_) => panic!("got a connection from a closed port"),
        Err(err) => err,
    }
}

fn is_open_breaker(err: &StoreError) -> bool {
    let StoreError::Unavailable(cause) = err else {
        return false;
    };
    cause.to_string().contains("circuit open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_after_consecutive_failures_and_probes_after_its_pause() {
    let pool = build_pool(&closed_port(), settings()).unwrap();
    for attempt in 0..BREAKER_FAILURES {
        let err = failure(&pool).await;
        assert!(
            matches!(err, StoreError::Unavailable(_)) && !is_open_breaker(&err),
            "attempt {attempt} really tried: {err}"
        );
    }
    let started = Instant::now();
    let err = failure(&pool).await;
    assert!(is_open_breaker(&err), "{err}");
    assert!(started.elapsed() < Duration::from_millis(50), "fails fast");

    // After the pause, one call goes through to the database again (and fails: still down).
    tokio::time::sleep(BREAKER_MIN_OPEN + Duration::from_millis(100)).await;
    let err = failure(&pool).await;
    assert!(!is_open_breaker(&err), "a probe went through: {err}");
    // The failed probe opens the breaker again.
    assert!(is_open_breaker(&failure(&pool).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reachable_database_keeps_it_closed() {
    let db = TestDb::new().await;
    let pool = build_pool(db.url(), settings()).unwrap();
    for _ in 0..(BREAKER_FAILURES * 3) {
        drop(pool.get().await.unwrap());
    }
    let state = pool.state();
    assert_eq!(state.max_size, 2);
    assert!(state.size >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_pool_answers_unavailable_without_opening_the_breaker() {
    let db = TestDb::new().await;
    let pool = build_pool(
        db.url(),
        PoolSettings {
            max_size: 1,
            timeout: Duration::from_millis(200),
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let held = pool.get().await.unwrap();
    for _ in 0..(BREAKER_FAILURES * 2) {
        let err = failure(&pool).await;
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(!is_open_breaker(&err), "overload opened the breaker");
    }
    drop(held);
    drop(pool.get().await.unwrap());
}
