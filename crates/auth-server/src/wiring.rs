//! The composition root: the only place that names concrete adapters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auth_core::memory::{MemorySessionRepository, MemoryUserRepository};
use auth_core::model::PasswordPolicy;
use auth_core::ports::{SessionRepository, StoreError, UserRepository};
use auth_core::system::{OsSecretGenerator, SystemClock};
use auth_core::{AuthConfig, AuthPorts, AuthService};
use auth_http::{AppState, StoreHealth, StoreProbe};
use auth_infra::jwt::{JwtSettings, JwtSigner, MIN_HS256_KEY_BYTES};
use auth_infra::password::BcryptHasher;
use auth_infra::postgres::{
    DbPool, PgSessionRepository, PgUserRepository, PoolSettings, SchemaState, build_pool,
    run_migrations, schema_state,
};
use secrecy::{ExposeSecret as _, SecretSlice};

use crate::config::{Config, Environment, JwtAlgorithm};

/// Why the service refused to start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting is missing or unacceptable.
    #[error("configuration error: {0}")]
    Config(String),
    /// The store failed during start.
    #[error("store error")]
    Store(#[from] StoreError),
}

fn config_error(msg: impl Into<String>) -> StartupError {
    StartupError::Config(msg.into())
}

/// Where data lives.
#[derive(Clone)]
pub enum Store {
    /// Postgres through a pool.
    Postgres(DbPool),
    /// In this process only.
    Memory {
        /// Users.
        users: Arc<MemoryUserRepository>,
        /// Sessions.
        sessions: Arc<MemorySessionRepository>,
    },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgres(pool) => f.debug_tuple("Postgres").field(&pool.status()).finish(),
            Self::Memory { .. } => f.write_str("Memory"),
        }
    }
}

impl Store {
    /// Opens the store the configuration names. With Postgres no connection is made yet.
    ///
    /// # Errors
    /// A production configuration without a database, or an unusable URL.
    pub fn open(config: &Config) -> Result<Self, StartupError> {
        match &config.database_url {
            Some(url) => {
                let settings = PoolSettings {
                    max_size: config.db_pool_size as usize,
                    timeout: config.db_timeout(),
                    ..PoolSettings::default()
                };
                Ok(Self::Postgres(build_pool(url.expose_secret(), settings)?))
            }
            None if config.auth_env == Environment::Production => Err(config_error(
                "DATABASE_URL is required when AUTH_ENV=production",
            )),
            None => {
                tracing::warn!(
                    "!!! DATABASE_URL is not set: running on the IN-MEMORY store. Every user \
                     and session is lost when the process stops, and instances share nothing. \
                     Set DATABASE_URL for anything but local development. !!!"
                );
                Ok(Self::Memory {
                    users: Arc::new(MemoryUserRepository::new()),
                    sessions: Arc::new(MemorySessionRepository::new()),
                })
            }
        }
    }

    fn repositories(&self) -> (Arc<dyn UserRepository>, Arc<dyn SessionRepository>) {
        match self {
            Self::Postgres(pool) => (
                Arc::new(PgUserRepository::new(pool.clone())),
                Arc::new(PgSessionRepository::new(pool.clone())),
            ),
            Self::Memory { users, sessions } => (users.clone(), sessions.clone()),
        }
    }
}

struct PgProbe(DbPool);

#[async_trait]
impl StoreProbe for PgProbe {
    async fn probe(&self) -> StoreHealth {
        let started = Instant::now();
        let state = schema_state(&self.0).await;
        StoreHealth {
            kind: "postgres",
            reachable: state.is_ok(),
            schema_current: matches!(state, Ok(SchemaState::Current)),
            latency: started.elapsed(),
        }
    }
}

struct MemoryProbe;

#[async_trait]
impl StoreProbe for MemoryProbe {
    async fn probe(&self) -> StoreHealth {
        StoreHealth {
            kind: "memory",
            reachable: true,
            schema_current: true,
            latency: Duration::ZERO,
        }
    }
}

/// True when a key looks like a placeholder rather than a secret.
fn is_weak_key(key: &[u8]) -> bool {
    let mut distinct = key.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    key.len() < MIN_HS256_KEY_BYTES || distinct.len() < 12
}

fn signer(config: &Config) -> Result<JwtSigner, StartupError> {
    if config.jwt_algorithm != JwtAlgorithm::Hs256 {
        let name = clap::ValueEnum::to_possible_value(&config.jwt_algorithm)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        return Err(config_error(format!(
            "JWT_ALGORITHM={name} is not available in this version; use HS256"
        )));
    }
    let key: SecretSlice<u8> = match &config.jwt_secret_key {
        Some(key) => {
            let bytes = key.expose_secret().as_bytes();
            if bytes.len() < MIN_HS256_KEY_BYTES {
                return Err(config_error(format!(
                    "JWT_SECRET_KEY must be at least {MIN_HS256_KEY_BYTES} bytes"
                )));
            }
            if config.auth_env == Environment::Production && is_weak_key(bytes) {
                return Err(config_error(
                    "JWT_SECRET_KEY looks like a placeholder (too few distinct characters); \
                     generate one with `openssl rand -base64 48`",
                ));
            }
            SecretSlice::from(bytes.to_vec())
        }
        None if config.auth_env == Environment::Production => {
            return Err(config_error(
                "JWT_SECRET_KEY is required when AUTH_ENV=production",
            ));
        }
        None => {
            tracing::warn!(
                "JWT_SECRET_KEY is not set: using a random key generated at start. Tokens \
                 die with this process and other instances will not accept them."
            );
            let mut bytes = vec![0u8; 48];
            getrandom::fill(&mut bytes).map_err(|e| config_error(format!("random source: {e}")))?;
            SecretSlice::from(bytes)
        }
    };
    let settings = JwtSettings {
        issuer: config.jwt_issuer.clone(),
        audience: config.jwt_audience.clone(),
        ..JwtSettings::default()
    };
    JwtSigner::hs256(&key, settings).map_err(|e| config_error(e.to_string()))
}

/// Builds the services over `store`.
///
/// # Errors
/// A configuration that cannot be used.
pub fn auth_service(config: &Config, store: &Store) -> Result<AuthService, StartupError> {
    let (users, sessions) = store.repositories();
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let hasher = BcryptHasher::new(config.bcrypt_rounds, cores)
        .map_err(|e| config_error(format!("BCRYPT_ROUNDS: {e}")))?;
    let ports = AuthPorts {
        users,
        sessions,
        hasher: Arc::new(hasher),
        signer: Arc::new(signer(config)?),
        clock: Arc::new(SystemClock),
        secrets: Arc::new(OsSecretGenerator),
    };
    let auth_config = AuthConfig {
        access_ttl: chrono::Duration::minutes(config.access_token_expire_minutes),
        session_ttl: chrono::Duration::days(config.refresh_token_expire_days),
        reuse_grace: chrono::Duration::seconds(config.refresh_reuse_grace_seconds),
    };
    Ok(AuthService::new(ports, auth_config))
}

/// The HTTP application state over `store`.
///
/// # Errors
/// A configuration that cannot be used.
pub fn app_state(config: &Config, store: &Store) -> Result<AppState, StartupError> {
    let probe: Arc<dyn StoreProbe> = match store {
        Store::Postgres(pool) => Arc::new(PgProbe(pool.clone())),
        Store::Memory { .. } => Arc::new(MemoryProbe),
    };
    Ok(AppState {
        auth: auth_service(config, store)?,
        password_policy: PasswordPolicy {
            min_chars: usize::from(config.password_min_length),
            ..PasswordPolicy::default()
        },
        store: probe,
    })
}

/// Applies migrations when the store is Postgres.
///
/// # Errors
/// [`StoreError`] when the database is unreachable or a migration fails.
pub async fn migrate(config: &Config) -> Result<Vec<String>, StartupError> {
    match &config.database_url {
        Some(url) => Ok(run_migrations(url.expose_secret()).await?),
        None => Err(config_error("DATABASE_URL is not set: nothing to migrate")),
    }
}

/// Migrates at start. If the database is unreachable the service starts anyway (readiness
/// stays 503) and keeps trying in the background, so instances may start before Postgres.
///
/// # Errors
/// A migration that fails for a reason other than reachability.
pub async fn migrate_at_start(config: &Config) -> Result<(), StartupError> {
    let Some(url) = config.database_url.clone() else {
        return Ok(());
    };
    match run_migrations(url.expose_secret()).await {
        Ok(applied) => {
            tracing::info!(applied = applied.len(), "database schema is current");
            Ok(())
        }
        Err(StoreError::Unavailable(err)) => {
            tracing::error!(error = %err, "database unreachable at start; will keep trying to migrate");
            tokio::spawn(async move {
                let mut delay = Duration::from_millis(500);
                loop {
                    tokio::time::sleep(delay).await;
                    match run_migrations(url.expose_secret()).await {
                        Ok(applied) => {
                            tracing::info!(
                                applied = applied.len(),
                                "database reachable; schema is current"
                            );
                            return;
                        }
                        Err(StoreError::Unavailable(_)) => {
                            delay = (delay * 2).min(Duration::from_secs(10));
                        }
                        Err(err) => {
                            tracing::error!(error = %err, "migration failed; the service stays not ready");
                            return;
                        }
                    }
                }
            });
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}
