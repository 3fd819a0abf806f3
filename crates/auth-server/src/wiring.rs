//! The composition root: the only place that names concrete adapters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auth_core::memory::{MemoryStore, NoCache};
use auth_core::model::{ApiKey, Device, DeviceId, SessionId, TokenHash};
use auth_core::ports::{
    AccountRemover, ApiKeyRepository, Clock, DataCipher, DeviceRepository, EventLog, Handlers,
    InvalidationBus, InvalidationHandler, LoginAttemptStore, MailOutbox, Mailer, MfaRepository,
    OneTimeTokenStore, OrganizationRepository, Pruner, SecretGenerator, SessionRepository,
    StoreError, TokenSigner, UserAdministration, UserRepository, VerificationCache,
};
use auth_core::service::lifecycle::MailPorts;
use auth_core::service::mfa::MfaPorts;
use auth_core::system::{OsSecretGenerator, SystemClock};
use auth_core::{
    AccountConfig, AccountPorts, AccountService, ApiKeyPorts, ApiKeyService, AuditService,
    CacheInvalidator, DevicePorts, DeviceService, OrganizationService, OutboxWorker,
    RetentionService, RetryPolicy, SessionSnapshot,
};
use auth_http::revocations::RevocationHub;
use auth_http::{AppState, StoreHealth, StoreProbe};
use auth_infra::cache::{CacheTrust, MokaCache};
use auth_infra::data_key::AesGcmCipher;
use auth_infra::jwt::JwtSigner;
use auth_infra::mail::{EmlMailer, SmtpMailer};
use auth_infra::password::BcryptHasher;
use auth_infra::postgres::{
    DbPool, PgAccountRemover, PgApiKeyRepository, PgDeviceRepository, PgEventLog,
    PgInvalidationBus, PgLoginAttemptStore, PgMailOutbox, PgMfaRepository, PgOneTimeTokenStore,
    PgOrganizationRepository, PgPruner, PgSessionRepository, PgUserAdministration,
    PgUserRepository, SchemaState, build_pool, run_migrations, schema_state,
};
use secrecy::{ExposeSecret as _, SecretString};

use crate::config::{Config, ConfigError, MailSettings, MailTransport};

/// Why the service refused to start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting is missing or unacceptable. The message is the setting's own, not also
    /// its source: an error chain would print it twice.
    #[error("configuration error: {0}")]
    Config(ConfigError),
    /// The store failed during start.
    #[error("store error")]
    Store(#[from] StoreError),
}

impl From<ConfigError> for StartupError {
    fn from(err: ConfigError) -> Self {
        Self::Config(err)
    }
}

fn config_error(msg: impl Into<String>) -> StartupError {
    StartupError::Config(ConfigError::new(msg))
}

/// Where data lives.
#[derive(Clone)]
pub enum Store {
    /// Postgres through a pool.
    Postgres {
        /// The pool.
        pool: DbPool,
        /// Its URL, for the invalidation listener's own connection.
        url: SecretString,
    },
    /// In this process only: every repository over one event log, which also invalidates the
    /// caches of instances sharing this store.
    Memory(MemoryStore),
}

struct Repositories {
    users: Arc<dyn UserRepository>,
    sessions: Arc<dyn SessionRepository>,
    orgs: Arc<dyn OrganizationRepository>,
    mfa: Arc<dyn MfaRepository>,
    keys: Arc<dyn ApiKeyRepository>,
    devices: Arc<dyn DeviceRepository>,
    attempts: Arc<dyn LoginAttemptStore>,
    accounts: Arc<dyn AccountRemover>,
    outbox: Arc<dyn MailOutbox>,
    one_time_tokens: Arc<dyn OneTimeTokenStore>,
    administration: Arc<dyn UserAdministration>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgres { pool, .. } => f.debug_tuple("Postgres").field(pool).finish(),
            Self::Memory(_) => f.write_str("Memory"),
        }
    }
}

impl Store {
    /// Opens the store the configuration names. With Postgres no connection is made yet.
    ///
    /// # Errors
    /// A production configuration without a database, or an unusable URL.
    pub fn open(config: &Config) -> Result<Self, StartupError> {
        // The metrics recorder first: the pool and its breaker publish gauges as they are built.
        auth_http::metrics::handle();
        match config.db.database(config.auth_env)? {
            Some(db) => Ok(Self::Postgres {
                pool: build_pool(db.url.expose_secret(), db.pool)?,
                url: db.url,
            }),
            None => {
                tracing::warn!(
                    "!!! DATABASE_URL is not set: running on the IN-MEMORY store. Every user \
                     and session is lost when the process stops, and instances share nothing. \
                     Set DATABASE_URL for anything but local development. !!!"
                );
                Ok(Self::Memory(MemoryStore::new()))
            }
        }
    }

    fn repositories(&self) -> Repositories {
        match self {
            Self::Postgres { pool, .. } => Repositories {
                users: Arc::new(PgUserRepository::new(pool.clone())),
                sessions: Arc::new(PgSessionRepository::new(pool.clone())),
                orgs: Arc::new(PgOrganizationRepository::new(pool.clone())),
                keys: Arc::new(PgApiKeyRepository::new(pool.clone())),
                devices: Arc::new(PgDeviceRepository::new(pool.clone())),
                attempts: Arc::new(PgLoginAttemptStore::new(pool.clone())),
                accounts: Arc::new(PgAccountRemover::new(pool.clone())),
                mfa: Arc::new(PgMfaRepository::new(pool.clone())),
                outbox: Arc::new(PgMailOutbox::new(pool.clone())),
                one_time_tokens: Arc::new(PgOneTimeTokenStore::new(pool.clone())),
                administration: Arc::new(PgUserAdministration::new(pool.clone())),
            },
            Self::Memory(store) => Repositories {
                users: store.users.clone(),
                sessions: store.sessions.clone(),
                orgs: store.organizations.clone(),
                keys: store.api_keys.clone(),
                devices: store.devices.clone(),
                attempts: store.login_attempts.clone(),
                accounts: store.accounts.clone(),
                mfa: store.mfa.clone(),
                outbox: store.outbox.clone(),
                one_time_tokens: store.one_time_tokens.clone(),
                administration: store.administration.clone(),
            },
        }
    }

    /// `postgres` or `memory`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres { .. } => "postgres",
            Self::Memory(_) => "memory",
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

    fn record_metrics(&self) {
        self.0.record_metrics();
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

fn signer(config: &Config) -> Result<JwtSigner, StartupError> {
    let keys = config.jwt.keys(config.auth_env)?;
    JwtSigner::from_keys(&keys, config.jwt.settings()).map_err(|e| config_error(e.to_string()))
}

/// Everything the API runs on.
#[derive(Clone)]
pub struct Services {
    /// Users and sessions.
    pub auth: AccountService,
    /// Organizations.
    pub orgs: OrganizationService,
    /// API keys.
    pub keys: ApiKeyService,
    /// Devices.
    pub devices: DeviceService,
    /// The invalidation bus.
    pub bus: Arc<dyn InvalidationBus>,
    /// The verification caches.
    pub caches: CacheInvalidator,
    /// The public keys that verify tokens (`/.well-known/jwks.json`).
    pub jwks: serde_json::Value,
    /// The mail outbox.
    pub outbox: Arc<dyn MailOutbox>,
    /// The mail settings, checked.
    pub mail: MailSettings,
    /// The audit trail.
    pub audit: AuditService,
    /// The revocation stream's hub, fed by this instance's log follower.
    pub revocations: Arc<RevocationHub>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

type KeyCache = Arc<dyn VerificationCache<TokenHash, Arc<ApiKey>>>;
type SessionCache = Arc<dyn VerificationCache<SessionId, SessionSnapshot>>;
type DeviceCache = Arc<dyn VerificationCache<DeviceId, Arc<Device>>>;

/// Builds every service over `store`: caches (Moka over Postgres; none over the in-memory
/// store, which is as fast and always current) and the invalidation bus. Must run inside a
/// Tokio runtime: the Postgres bus starts its listener.
///
/// # Errors
/// A configuration that cannot be used.
pub fn services(config: &Config, store: &Store) -> Result<Services, StartupError> {
    let repos = store.repositories();
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let hasher = BcryptHasher::new(config.passwords.bcrypt_rounds, cores)
        .map_err(|e| config_error(format!("BCRYPT_ROUNDS: {e}")))?;
    let prefix = config.api_keys.key_prefix()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let secrets: Arc<dyn SecretGenerator> = Arc::new(OsSecretGenerator);

    // Set while this instance follows the event log: until then, and whenever it falls
    // behind, the caches read through to the database.
    let following = Arc::new(CacheTrust::default());
    let (key_cache, session_cache, device_cache): (KeyCache, SessionCache, DeviceCache) =
        match store {
            Store::Postgres { .. } => {
                let (ttl, capacity) = (config.cache.ttl(), config.cache.capacity);
                (
                    Arc::new(
                        MokaCache::new("api_keys", capacity, ttl).trusted_while(following.clone()),
                    ),
                    Arc::new(
                        MokaCache::new("sessions", capacity, ttl).trusted_while(following.clone()),
                    ),
                    Arc::new(
                        MokaCache::new("devices", capacity, ttl).trusted_while(following.clone()),
                    ),
                )
            }
            Store::Memory(_) => (Arc::new(NoCache), Arc::new(NoCache), Arc::new(NoCache)),
        };
    let caches = CacheInvalidator {
        keys: key_cache.clone(),
        sessions: session_cache.clone(),
        devices: device_cache.clone(),
    };
    let cipher = match config.mfa.data_key(config.auth_env)? {
        Some(key) => Some(Arc::new(
            AesGcmCipher::new(&key).map_err(|e| config_error(format!("AUTH_DATA_KEY: {e}")))?,
        ) as Arc<dyn DataCipher>),
        None => None,
    };
    let jwt = signer(config)?;
    let mail = config.mail.settings(config.auth_env)?;
    let jwks = jwt.jwks();
    let signer: Arc<dyn TokenSigner> = Arc::new(jwt);
    let log: Arc<dyn EventLog> = match store {
        Store::Postgres { pool, .. } => Arc::new(PgEventLog::new(pool.clone())),
        Store::Memory(memory) => memory.events.clone(),
    };
    let revocations = Arc::new(
        RevocationHub::new(log.clone(), config.retention.stream_heartbeat())
            .with_max_per_key(config.retention.stream_max_per_key as usize)
            // The longest a token refused by the stream can outlive its revocation.
            .with_replay_horizon(config.tokens.access_ttl().max(config.tokens.device_ttl())),
    );
    // What the instance reads from the log goes to its caches and to its stream subscribers.
    let handler: Arc<dyn InvalidationHandler> = Arc::new(Handlers(vec![
        Arc::new(caches.clone()),
        revocations.clone(),
    ]));
    let bus: Arc<dyn InvalidationBus> = match store {
        Store::Postgres { pool, url } => Arc::new(PgInvalidationBus::start(
            url.expose_secret(),
            pool.clone(),
            handler,
            clock.clone(),
            following,
        )),
        Store::Memory(memory) => {
            memory.events.subscribe(handler);
            memory.events.clone()
        }
    };

    let auth_ports = AccountPorts {
        users: repos.users.clone(),
        sessions: repos.sessions,
        hasher: Arc::new(hasher),
        signer: signer.clone(),
        clock: clock.clone(),
        secrets: secrets.clone(),
        session_cache: session_cache.clone(),
        attempts: repos.attempts,
        accounts: repos.accounts,
    };
    let auth_config = AccountConfig {
        access_ttl: config.tokens.access_ttl(),
        session_ttl: config.tokens.session_ttl(),
        reuse_grace: config.tokens.reuse_grace(),
        lockout: config.lockout.policy(),
        require_verified_email: config.mail.require_verified_email,
        registration_enabled: config.mail.registration_enabled,
    };
    let orgs = OrganizationService::new(repos.orgs, repos.users, clock.clone());
    let audit = AuditService::new(log, orgs.clone());
    let keys = ApiKeyService::new(
        ApiKeyPorts {
            keys: repos.keys,
            orgs: orgs.clone(),
            cache: key_cache.clone(),
            clock: clock.clone(),
            secrets: secrets.clone(),
        },
        prefix,
    );
    let devices = DeviceService::new(
        DevicePorts {
            devices: repos.devices,
            orgs: orgs.clone(),
            cache: device_cache,
            signer,
            clock,
            secrets,
        },
        config.tokens.device_ttl(),
    );
    Ok(Services {
        auth: AccountService::new(auth_ports, auth_config)
            .with_mfa(MfaPorts {
                store: repos.mfa,
                cipher,
                issuer: config.jwt.issuer.clone(),
            })
            .with_mail(MailPorts {
                tokens: repos.one_time_tokens,
                links: config.mail.links()?,
            })
            .with_administration(repos.administration),
        orgs,
        keys,
        devices,
        bus,
        caches,
        jwks,
        outbox: repos.outbox,
        mail,
        audit,
        revocations,
    })
}

/// The HTTP application state over `store`.
///
/// # Errors
/// A configuration that cannot be used.
pub fn app_state(config: &Config, store: &Store) -> Result<AppState, StartupError> {
    let probe: Arc<dyn StoreProbe> = match store {
        Store::Postgres { pool, .. } => Arc::new(PgProbe(pool.clone())),
        Store::Memory(_) => Arc::new(MemoryProbe),
    };
    let services = services(config, store)?;
    Ok(AppState {
        auth: services.auth,
        orgs: services.orgs,
        keys: services.keys,
        devices: services.devices,
        bus: services.bus,
        password_policy: config.passwords.policy(),
        store: probe.into(),
        caches: services.caches,
        audit: services.audit,
        revocations: services.revocations,
        jwks: Arc::new(services.jwks),
        rate_limits: Arc::new(config.rate_limit.limits()),
        cors_origins: config.http.allowed_origins()?,
    })
}

/// Every few seconds, until the returned task is aborted: writes API-key usage (counts and
/// last uses per key and hour) and device `last_authenticated_at` times, and forgets rate-limit state of idle clients. Every
/// 50 ms: gives back the per-key rate-limit leases this instance has stopped drawing from.
#[must_use]
pub fn spawn_maintenance(state: &AppState) -> tokio::task::JoinHandle<()> {
    let (keys, devices, limits) = (
        state.keys.clone(),
        state.devices.clone(),
        state.rate_limits.clone(),
    );
    let leases = keys.clone();
    let writes = async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            limits.retain_recent();
            if let Err(err) = keys.flush_usage().await {
                tracing::warn!(error = %err, "API key usage not written; will retry");
            }
            if let Err(err) = devices.flush_seen().await {
                tracing::warn!(error = %err, "device authentications not written; will retry");
            }
        }
    };
    let reconcile = async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = leases.reconcile_limits().await {
                tracing::warn!(error = %err, "unused rate-limit leases not given back");
            }
        }
    };
    tokio::spawn(async move {
        tokio::join!(writes, reconcile);
    })
}

/// The mailer the settings name: SMTP, or `.eml` files (with a warning: nothing is sent).
///
/// # Errors
/// An SMTP URL the transport cannot use.
pub fn mailer(settings: &MailSettings) -> Result<Arc<dyn Mailer>, StartupError> {
    Ok(match &settings.transport {
        MailTransport::Smtp(url) => {
            tracing::info!(security = ?url.security(), "mail goes out through SMTP_URL");
            Arc::new(
                SmtpMailer::new(url, settings.from.clone())
                    .map_err(|e| config_error(e.to_string()))?,
            )
        }
        MailTransport::Files(dir) => {
            tracing::warn!(
                dir = %dir.display(),
                "!!! SMTP_URL is not set: mails are NOT sent, they are written as .eml files \
                 to AUTH_MAIL_DIR (their links work: keep the folder private). Set SMTP_URL \
                 for anything but local development. !!!"
            );
            Arc::new(EmlMailer::new(dir.clone(), settings.from.clone()))
        }
    })
}

/// The worker that sends `store`'s outbox through the configured mailer.
///
/// # Errors
/// Mail settings that cannot be used.
pub fn outbox_worker(config: &Config, store: &Store) -> Result<OutboxWorker, StartupError> {
    let settings = config.mail.settings(config.auth_env)?;
    Ok(OutboxWorker::new(
        store.repositories().outbox,
        mailer(&settings)?,
        Arc::new(SystemClock),
        RetryPolicy::default(),
    ))
}

/// How often an idle mail worker looks for due mails.
pub const MAIL_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Sends the outbox's mails until the returned task is aborted: a pass every
/// [`MAIL_POLL_INTERVAL`] (at once again after a full batch), each first turning queued
/// password-reset requests into mails (`auth`). Every instance runs one; the store hands each
/// request and mail to one of them. When the store fails, the next pass waits longer each
/// time (up to a minute); requests and mails wait meanwhile.
#[must_use]
pub fn spawn_mail_worker(
    worker: OutboxWorker,
    auth: AccountService,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let batch = RetryPolicy::default().batch;
        let mut wait = MAIL_POLL_INTERVAL;
        loop {
            // A store failure is reported once per outage by the outbox pass below (the pool
            // logs its cause); anything else is a bug worth a line each time.
            match auth.process_reset_requests().await {
                Ok(_) | Err(auth_core::AccountError::Store(_)) => {}
                Err(err) => tracing::error!(
                    error = %auth_core::ErrorChain(&err),
                    "password-reset requests not handled; they wait for the next pass"
                ),
            }
            match worker.run_once().await {
                Ok(pass) => {
                    if wait > MAIL_POLL_INTERVAL {
                        tracing::info!("mail outbox reachable again");
                    }
                    wait = MAIL_POLL_INTERVAL;
                    if pass.claimed() >= batch {
                        continue;
                    }
                }
                Err(err) => {
                    // Once per outage, and without the cause: the pool logs what is wrong
                    // with the database, once per burst.
                    if wait == MAIL_POLL_INTERVAL {
                        tracing::warn!(
                            error = %err,
                            "mail outbox unreachable; mails wait in it until it is back"
                        );
                    }
                    wait = (wait * 2).min(Duration::from_secs(60));
                }
            }
            tokio::time::sleep(wait).await;
        }
    })
}

/// Retention over `store` under the configured policy, at the system clock's time.
#[must_use]
pub fn retention(config: &Config, store: &Store) -> RetentionService {
    let pruner: Arc<dyn Pruner> = match store {
        Store::Postgres { pool, .. } => Arc::new(PgPruner::new(pool.clone())),
        Store::Memory(memory) => memory.pruner.clone(),
    };
    RetentionService::new(pruner, Arc::new(SystemClock), config.retention_policy())
}

/// The longest wait before an instance's first retention pass, beyond the jitter.
const FIRST_PRUNE_DELAY: Duration = Duration::from_secs(60);

/// When an instance runs its first retention pass after start: not during start-up (the
/// migrations, the first requests), and at a point spread over as long again (`fraction` is
/// uniform in `0..1`), so instances started together do not all reach for the lock at once.
/// With the default interval, 60 to 120 s after start; never later than two intervals.
#[must_use]
pub fn first_prune_delay(interval: Duration, fraction: f64) -> Duration {
    let base = interval.min(FIRST_PRUNE_DELAY);
    base + base.mul_f64(fraction.clamp(0.0, 1.0))
}

/// A uniform fraction in `0..1` from the OS random source (0.5 if it fails: the jitter only
/// spreads load, nothing depends on it).
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

/// Runs a retention pass every `interval` until the returned task is aborted, the first one
/// after [`first_prune_delay`]. Every instance runs this; the store lets one pass run at a
/// time and the others skip. A failed pass is logged as a warning and the next one comes at
/// the next interval (what it deleted before failing stays deleted).
#[must_use]
pub fn spawn_pruning(
    retention: RetentionService,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    let first = first_prune_delay(interval, random_fraction());
    tokio::spawn(async move {
        tokio::time::sleep(first).await;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = retention.run_once().await {
                let deleted = err.deleted;
                tracing::warn!(
                    error = %auth_core::ErrorChain(&err),
                    sessions = deleted.sessions,
                    refresh_tokens = deleted.refresh_tokens,
                    login_attempts = deleted.login_attempts,
                    events = deleted.events,
                    next_in_seconds = interval.as_secs(),
                    "retention pass failed; the next one comes at the next interval"
                );
            }
        }
    })
}

/// Applies migrations when the store is Postgres.
///
/// # Errors
/// [`StoreError`] when the database is unreachable or a migration fails.
pub async fn migrate(config: &Config) -> Result<Vec<String>, StartupError> {
    let url = config.db.migration_url()?;
    Ok(run_migrations(url.expose_secret()).await?)
}

/// Migrates at start. If the database is unreachable the service starts anyway (readiness
/// stays 503) and keeps trying in the background, so instances may start before Postgres.
///
/// # Errors
/// A migration that fails for a reason other than reachability.
pub async fn migrate_at_start(config: &Config) -> Result<(), StartupError> {
    let Some(url) = config.db.url.clone() else {
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
                            delay = (delay * 2).min(Duration::from_secs(4));
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
