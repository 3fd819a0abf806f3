//! The tests of `auth-infra` that need what only it has, in one binary (one link): Postgres
//! (the storage contract and the service scenarios of `auth-core`, the event log, retention,
//! migrations, the pool's breaker, the account service over Postgres), bcrypt and the JWT
//! library (forged tokens). The services' rules themselves are tested in `auth-core`. Run
//! with `scripts/test.sh -p auth-infra`, which starts a throwaway Postgres.
#![expect(
    clippy::unwrap_used,
    reason = "tests: a failed expectation is a failed test"
)]

mod account_deletion;
mod account_service;
mod contract;
mod event_log;
mod jwt_forgery;
mod key_lookups;
mod migrations;
mod outbox;
mod pool_breaker;
mod pool_shards;
mod prune;
mod smtp;

use auth_infra::postgres::DbPool;

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The one number `sql` (`SELECT count(*) AS n …`) answers.
async fn count(pool: &DbPool, sql: &str) -> i64 {
    let mut conn = pool.get().await.unwrap();
    // Named in full: imported, the trait's `execute` would shadow `TestDb::execute`.
    diesel_async::RunQueryDsl::get_result::<Count>(diesel::sql_query(sql), &mut conn)
        .await
        .unwrap()
        .n
}
