//! Embedded migrations, applied under a Postgres advisory lock so that several instances may
//! start at once.

use auth_core::ports::StoreError;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::{Connection, RunQueryDsl};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

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

/// Seconds the migration connection may take to connect, unless the URL sets
/// `connect_timeout` itself: an unreachable host must not hang start-up.
const CONNECT_TIMEOUT_SECONDS: u32 = 10;

/// The connection string (URL or `key=value` form) with a `connect_timeout`, unless it has one.
fn with_connect_timeout(url: &str) -> String {
    if url.contains("connect_timeout=") {
        url.to_owned()
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}connect_timeout={CONNECT_TIMEOUT_SECONDS}")
    } else {
        // The `key=value` form.
        format!("{url} connect_timeout={CONNECT_TIMEOUT_SECONDS}")
    }
}

/// Applies pending migrations, returning the versions applied. Runs on a blocking thread
/// (the harness is synchronous).
///
/// # Errors
/// [`StoreError`] when the database is unreachable or a migration fails.
pub async fn run_migrations(database_url: &str) -> Result<Vec<String>, StoreError> {
    let url = with_connect_timeout(database_url);
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(StoreError::unavailable)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connect_timeout_is_added_unless_present() {
        assert_eq!(
            with_connect_timeout("postgres://u:p@h/db"),
            "postgres://u:p@h/db?connect_timeout=10"
        );
        assert_eq!(
            with_connect_timeout("postgres://u:p@h/db?sslmode=disable"),
            "postgres://u:p@h/db?sslmode=disable&connect_timeout=10"
        );
        assert_eq!(
            with_connect_timeout("host=h password=p dbname=db"),
            "host=h password=p dbname=db connect_timeout=10"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?connect_timeout=3"),
            "postgres://h/db?connect_timeout=3"
        );
    }
}
