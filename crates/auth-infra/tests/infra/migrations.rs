//! Migrations: several instances may migrate one database at once; readiness sees the schema.

use auth_infra::postgres::{SchemaState, latest_migration_version, run_migrations, schema_state};
use auth_infra::test_support::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_apply_once_and_all_succeed() {
    let db = TestDb::empty().await;
    let pool = db.pool();
    assert!(
        schema_state(&pool).await.is_err(),
        "no migrations table yet"
    );

    let runs = futures::future::join_all((0..4).map(|_| run_migrations(db.url()))).await;
    let applied: Vec<Vec<String>> = runs
        .into_iter()
        .map(|r| r.expect("every instance succeeds"))
        .collect();
    let total: usize = applied.iter().map(Vec::len).sum();
    let expected = applied.iter().map(Vec::len).max().unwrap_or(0);
    assert!(expected >= 1);
    assert_eq!(
        total, expected,
        "each migration applied by exactly one instance: {applied:?}"
    );
    assert_eq!(
        schema_state(&pool).await.expect("reachable"),
        SchemaState::Current
    );
    assert!(!latest_migration_version().is_empty());
    assert!(
        run_migrations(db.url())
            .await
            .expect("idempotent")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_accepts_a_newer_schema_but_not_an_older_one() {
    use diesel_async::RunQueryDsl as _;

    let db = TestDb::new().await;
    let pool = db.pool();
    let mut conn = pool.get().await.expect("reachable");
    // A later release migrated first (rolling upgrade): this one keeps serving.
    diesel::sql_query("INSERT INTO __diesel_schema_migrations (version) VALUES ('99990101000000')")
        .execute(&mut conn)
        .await
        .expect("insert");
    assert_eq!(
        schema_state(&pool).await.expect("reachable"),
        SchemaState::Current
    );
    // This release's newest migration missing: not ready.
    diesel::sql_query("DELETE FROM __diesel_schema_migrations WHERE version = $1")
        .bind::<diesel::sql_types::Text, _>(latest_migration_version())
        .execute(&mut conn)
        .await
        .expect("delete");
    assert_eq!(
        schema_state(&pool).await.expect("reachable"),
        SchemaState::Behind {
            applied: Some("99990101000000".to_owned())
        }
    );
}
