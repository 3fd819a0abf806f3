//! Postgres adapters: Diesel + diesel-async over a deadpool pool.

mod account;
mod administration;
mod api_key;
mod bus;
mod coalesce;
mod connect;
mod device;
mod error;
mod events;
mod login_attempt;
mod mfa;
mod migrate;
mod one_time_token;
mod organization;
mod outbox;
mod pool;
mod prune;
mod schema;
mod session;
mod user;

pub use account::PgAccountRemover;
pub use administration::PgUserAdministration;
pub use api_key::PgApiKeyRepository;
pub use bus::{LISTENER_APPLICATION_NAME, PgInvalidationBus};
pub use connect::{ConnectSettingsError, Connector, SslMode, establish};
pub use device::PgDeviceRepository;
pub use error::classify;
pub use events::PgEventLog;
pub use login_attempt::PgLoginAttemptStore;
pub use mfa::PgMfaRepository;
pub use migrate::{MIGRATIONS, latest_migration_version, run_migrations};
pub use one_time_token::PgOneTimeTokenStore;
pub use organization::PgOrganizationRepository;
pub use outbox::PgMailOutbox;
pub use pool::{
    BREAKER_FAILURES, BREAKER_MAX_OPEN, BREAKER_MIN_OPEN, DbConnection, DbPool, PoolSettings,
    PoolState, build_pool, mark_request_thread,
};
pub use prune::{PRUNE_BATCH_ROWS, PRUNE_LOCK_KEY, PgPruner};
pub use session::PgSessionRepository;
pub use user::PgUserRepository;

use auth_core::ports::StoreError;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;

/// Health of the database as readiness sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// This build's newest migration is applied (newer ones may be too: migrations only
    /// expand, so during a rolling upgrade the previous release keeps serving on the new
    /// schema).
    Current,
    /// The database answers, but this build's newest migration is not applied yet.
    Behind {
        /// Newest version applied in the database, if any.
        applied: Option<String>,
    },
}

#[derive(diesel::QueryableByName)]
struct Applied {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    version: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ours: bool,
}

/// Checks that the database answers and that this build's newest migration is applied.
///
/// # Errors
/// [`StoreError`] when the database cannot be queried.
pub async fn schema_state(pool: &DbPool) -> Result<SchemaState, StoreError> {
    pool.deadline(async {
        let mut conn = pool.get().await?;
        let row: Applied = diesel::sql_query(
            "SELECT max(version)::text AS version, coalesce(bool_or(version = $1), false) AS ours \
             FROM __diesel_schema_migrations",
        )
        .bind::<Text, _>(latest_migration_version())
        .get_result(&mut conn)
        .await
        .map_err(classify)?;
        if row.ours {
            Ok(SchemaState::Current)
        } else {
            Ok(SchemaState::Behind {
                applied: row.version,
            })
        }
    })
    .await
}
