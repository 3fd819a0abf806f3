//! The connection pool: explicit size, short wait, bounded statements.

use std::time::Duration;

use auth_core::ports::StoreError;
use diesel::ConnectionError;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection as _};
use futures::FutureExt as _;

/// The pool type every Postgres adapter shares.
pub type DbPool = Pool<AsyncPgConnection>;

/// Pool settings (`AUTH_DB_POOL_SIZE`, `AUTH_DB_TIMEOUT_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Maximum connections.
    pub max_size: usize,
    /// How long a request waits for a connection, and how long connecting may take.
    pub timeout: Duration,
    /// Server-side limit on any one statement.
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_size: 16,
            timeout: Duration::from_millis(2000),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// Builds the pool. No connection is opened until one is needed, so the service can start
/// while the database is down.
///
/// # Errors
/// [`StoreError::Internal`] when the pool cannot be built (a configuration error).
pub fn build_pool(database_url: &str, settings: PoolSettings) -> Result<DbPool, StoreError> {
    let statement_ms = settings.statement_timeout.as_millis();
    let connect_timeout = settings.timeout;
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        async move {
            let mut conn =
                tokio::time::timeout(connect_timeout, AsyncPgConnection::establish(&url))
                    .await
                    .map_err(|_| ConnectionError::BadConnection("connect timed out".into()))??;
            conn.batch_execute(&format!(
                "SET statement_timeout = {statement_ms}; \
                 SET idle_in_transaction_session_timeout = {statement_ms}"
            ))
            .await
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::new_with_config(database_url, config);
    Pool::builder(manager)
        .max_size(settings.max_size)
        .wait_timeout(Some(settings.timeout))
        .create_timeout(Some(settings.timeout))
        .recycle_timeout(Some(settings.timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(StoreError::internal)
}
