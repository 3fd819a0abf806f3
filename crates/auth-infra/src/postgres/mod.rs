//! Postgres adapters: Diesel + diesel-async over a deadpool pool.

mod api_key;
mod bus;
mod device;
mod error;
mod login_attempt;
mod migrate;
mod organization;
mod pool;
mod schema;
mod session;
mod user;

pub use api_key::PgApiKeyRepository;
pub use bus::PgInvalidationBus;
pub use device::PgDeviceRepository;
pub use error::classify;
pub use login_attempt::PgLoginAttemptStore;
pub use migrate::{MIGRATIONS, latest_migration_version, run_migrations};
pub use organization::PgOrganizationRepository;
pub use pool::{
    BREAKER_FAILURES, BREAKER_MAX_OPEN, BREAKER_MIN_OPEN, DbConnection, DbPool, PoolSettings,
    PoolState, build_pool,
};
pub use session::PgSessionRepository;
pub use user::PgUserRepository;

use auth_core::ports::StoreError;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;

/// Health of the database as readiness sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// The newest embedded migration is applied.
    Current,
    /// The database answers, but its newest applied migration is not ours.
    Behind {
        /// Newest version applied in the database, if any.
        applied: Option<String>,
    },
}

#[derive(diesel::QueryableByName)]
struct Applied {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    version: Option<String>,
}

/// Checks that the database answers and that its schema is the one this build expects.
///
/// # Errors
/// [`StoreError`] when the database cannot be queried.
pub async fn schema_state(pool: &DbPool) -> Result<SchemaState, StoreError> {
    let mut conn = pool.get().await?;
    let row: Applied =
        diesel::sql_query("SELECT max(version)::text AS version FROM __diesel_schema_migrations")
            .get_result(&mut conn)
            .await
            .map_err(classify)?;
    let expected = latest_migration_version();
    if row.version.as_deref() == Some(expected.as_str()) {
        Ok(SchemaState::Current)
    } else {
        Ok(SchemaState::Behind {
            applied: row.version,
        })
    }
}
