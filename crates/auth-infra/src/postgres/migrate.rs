//! Embedded migrations, applied under a Postgres advisory lock so that several instances may
//! start at once.

use auth_core::ports::StoreError;
use diesel::RunQueryDsl;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::connect::Connector;

/// The SQL migrations of `migrations/`, compiled in.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Advisory-lock key reserved for migrations ("authmigr" as ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x6175_7468_6d69_6772;

/// The version of the newest embedded migration.
#[must_use]
pub fn latest_migration_version() -> String {
    MigrationSource::<Pg>::migrations(&MIGRATIONS)
        .ok()
        .and_then(|all| all.iter().map(|m| m.name().version().to_string()).max())
        .unwrap_or_default()
}

/// Applies pending migrations, returning the versions applied. Connects through the
/// [`Connector`] of `database_url` (TLS as its `sslmode` says; a `connect_timeout` of 10 s
/// unless it sets one), then runs the synchronous harness on a blocking thread.
///
/// # Errors
/// [`StoreError::Internal`] for connection settings that cannot be used or a failed migration,
/// [`StoreError::Unavailable`] when the database cannot be reached.
pub async fn run_migrations(database_url: &str) -> Result<Vec<String>, StoreError> {
    let connector = Connector::shared(database_url).map_err(StoreError::internal)?;
    let conn = connector.connect().await.map_err(StoreError::unavailable)?;
    tokio::task::spawn_blocking(move || {
        // The wrapper drives the async connection with the runtime this thread belongs to.
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
            .execute(&mut conn)
            .map_err(super::classify)?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(StoreError::Internal);
        let unlocked =
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                .execute(&mut conn)
                .map_err(super::classify);
        let applied = applied?;
        unlocked?;
        Ok(applied)
    })
    .await
    .map_err(StoreError::internal)?
}
