//! The pool's shards: a request thread uses its own shard's connections first, but never gets
//! fewer than the pool holds, and a connection freed in any shard goes to whoever waits.

use std::time::Duration;

use auth_core::ports::StoreError;
use auth_infra::postgres::{DbConnection, DbPool, PoolSettings, build_pool, mark_request_thread};
use auth_infra::test_support::TestDb;
use diesel::sql_types::Integer;
use diesel_async::RunQueryDsl as _;

/// Enough for two shards of four on any machine (three on two cores and more).
const CONNECTIONS: usize = 12;
const WAIT: Duration = Duration::from_millis(800);

fn pool(db: &TestDb) -> DbPool {
    build_pool(
        db.url(),
        PoolSettings {
            max_size: CONNECTIONS,
            timeout: WAIT,
            ..PoolSettings::default()
        },
    )
    .unwrap()
}

#[derive(diesel::QueryableByName)]
struct Backend {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

async fn backend(conn: &mut DbConnection) -> i32 {
    diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Backend>(conn)
        .await
        .unwrap()
        .pid
}

/// Every connection of the pool, held at once by this thread.
async fn hold_all(pool: &DbPool) -> Vec<DbConnection> {
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        held.push(
            pool.get()
                .await
                .unwrap_or_else(|err| panic!("a connection within the pool's size: {err}")),
        );
    }
    held
}

// One thread (a current-thread runtime) takes every connection of every shard, and no more.
#[tokio::test]
async fn one_thread_can_hold_every_connection_and_no_more() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let mut held = hold_all(&pool).await;
    let mut pids = Vec::new();
    for conn in &mut held {
        pids.push(backend(conn).await);
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), CONNECTIONS, "distinct connections");
    let state = pool.state();
    assert_eq!((state.size, state.max_size), (CONNECTIONS, CONNECTIONS));

    match pool.get().await {
        Err(StoreError::Unavailable(_)) => {}
        Err(other) => panic!("one over the pool's size: {other}"),
        Ok(_) => panic!("one over the pool's size got a connection"),
    }
    held.pop();
    drop(
        pool.get()
            .await
            .expect("a freed connection is handed out again"),
    );
}

// With every connection held, a waiter gets the one freed, whichever shard it belongs to.
#[tokio::test]
async fn a_waiter_gets_the_connection_freed_in_any_shard() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let mut held = hold_all(&pool).await;
    for i in 0..CONNECTIONS {
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.get().await }
        });
        // Let the waiter queue up before the connection is freed.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "waited while everything was held");
        drop(held.swap_remove(i % held.len()));
        let started = std::time::Instant::now();
        let conn = waiter
            .await
            .unwrap()
            .unwrap_or_else(|err| panic!("freeing connection {i} did not reach the waiter: {err}"));
        assert!(started.elapsed() < WAIT, "handed over, not timed out");
        held.push(conn);
    }
}

// A request thread fills its own shard first, opening nothing in the others, and only after a
// quarter of the timeout takes a connection from another shard.
#[test]
fn a_request_thread_uses_its_own_shard_first() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A thread of its own: marking is for the life of the thread.
    std::thread::spawn(move || {
        mark_request_thread();
        runtime.block_on(async {
            let db = TestDb::new().await;
            let pool = pool(&db);
            let mut held = Vec::new();
            let mut before = pool.shard_states();
            let slow = loop {
                let started = std::time::Instant::now();
                held.push(pool.get().await.unwrap());
                let took = started.elapsed();
                if took >= WAIT / 4 {
                    break took;
                }
                assert!(held.len() < CONNECTIONS, "never waited");
                before = pool.shard_states();
            };
            // Before the one that waited: every connection in one shard, which is full, and
            // none in the background shard or another request thread's.
            let own = held.len() - 1;
            assert!(before.len() >= 2, "{before:?}");
            assert_eq!(
                before[0].size, 0,
                "the background shard untouched: {before:?}"
            );
            let used: Vec<_> = before.iter().filter(|s| s.size > 0).collect();
            assert_eq!(
                used.len(),
                1,
                "{own} fast ones, all from one shard: {before:?}"
            );
            assert_eq!((used[0].size, used[0].max_size), (own, own), "{before:?}");
            assert!(slow < WAIT, "then one from another shard: {slow:?}");
            assert_eq!(pool.state().size, own + 1);
        });
    })
    .join()
    .unwrap();
}
