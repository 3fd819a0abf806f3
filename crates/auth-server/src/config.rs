//! Configuration: every setting comes from the environment (names as in the API contract),
//! and each can also be given as a flag (`auth-server --help` lists them, by group).
//!
//! The settings are grouped by what they configure (`http`, `db`, `jwt`, `tokens`,
//! `passwords`, `lockout`, `rate_limit`, `cache`, `api_keys`, `retention`, `log`, `mail`). Each group
//! checks its own values and hands them out as the types the services and adapters take, or
//! as a [`ConfigError`] naming the setting; `wiring` only puts the parts together. A new
//! setting goes into its group here, with its check next to it.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use auth_core::model::{ApiKeyPrefix, PasswordPolicy};
use auth_core::ports::{LockoutPolicy, RetentionPolicy};
use auth_http::rate_limit::RateLimits;
use auth_infra::data_key::DataKey;
use auth_infra::jwt::{AsymmetricAlgorithm, JwtKeys, JwtSettings, MIN_HS256_KEY_BYTES};
use auth_infra::mail::{Mailbox, SmtpUrl, parse_from};
use auth_infra::postgres::{Connector, PoolSettings};
use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret as _, SecretSlice, SecretString};

/// A setting is missing or cannot be used; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// An error with `message`, which names the setting.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Deployment environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    /// Local work: in-memory store and generated keys allowed, with warnings.
    Development,
    /// Refuses to start without a database or a strong signing key.
    Production,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Signing algorithm for JWTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 over `JWT_SECRET_KEY`.
    #[value(name = "HS256")]
    Hs256,
    /// Ed25519 with `JWT_PRIVATE_KEY_FILE`.
    #[value(name = "EdDSA")]
    EdDsa,
    /// ECDSA P-256 with `JWT_PRIVATE_KEY_FILE`.
    #[value(name = "ES256")]
    Es256,
    /// RSA (2048..=8192 bits) PKCS#1 v1.5 SHA-256 with `JWT_PRIVATE_KEY_FILE`.
    #[value(name = "RS256")]
    Rs256,
}

/// Every setting of the service, by group.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// `development` or `production`.
    #[arg(
        long,
        env = "AUTH_ENV",
        value_enum,
        default_value = "development",
        global = true
    )]
    pub auth_env: Environment,

    /// Where the service listens, and who may call it from a browser.
    #[command(flatten, next_help_heading = "HTTP")]
    pub http: HttpConfig,

    /// The database and its connection pool.
    #[command(flatten, next_help_heading = "Database")]
    pub db: DbConfig,

    /// Signing and verifying tokens.
    #[command(flatten, next_help_heading = "Token signing (JWT)")]
    pub jwt: JwtConfig,

    /// Lifetimes of tokens and sessions.
    #[command(flatten, next_help_heading = "Token and session lifetimes")]
    pub tokens: TokenConfig,

    /// Password hashing and rules.
    #[command(flatten, next_help_heading = "Passwords")]
    pub passwords: PasswordConfig,

    /// Account lockout after failed logins.
    #[command(flatten, next_help_heading = "Account lockout")]
    pub lockout: LockoutConfig,

    /// Per-client-IP rate limits.
    #[command(flatten, next_help_heading = "Rate limits")]
    pub rate_limit: RateLimitConfig,

    /// The verification caches.
    #[command(flatten, next_help_heading = "Verification caches")]
    pub cache: CacheConfig,

    /// Issued API keys.
    #[command(flatten, next_help_heading = "API keys")]
    pub api_keys: ApiKeyConfig,

    /// How long sessions and events are kept.
    #[command(flatten, next_help_heading = "Retention")]
    pub retention: RetentionConfig,

    /// Log lines.
    #[command(flatten, next_help_heading = "Logging")]
    pub log: LogConfig,

    /// The second factor (TOTP) and the encryption of its secrets.
    #[command(flatten, next_help_heading = "Second factor")]
    pub mfa: MfaConfig,
    /// Outgoing mail and the links in it.
    #[command(flatten, next_help_heading = "Mail")]
    pub mail: MailConfig,
}

impl Config {
    /// What retention keeps, and for how long (lockout rows go once their window is over).
    #[must_use]
    pub fn retention_policy(&self) -> RetentionPolicy {
        self.retention.policy(&self.lockout)
    }

    /// The log format in force.
    #[must_use]
    pub fn effective_log_format(&self) -> LogFormat {
        self.log.effective_format(self.auth_env)
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// Where the service listens, and which browser origins may call it.
#[derive(Debug, Clone, Args)]
pub struct HttpConfig {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0", global = true)]
    pub host: String,

    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8000, global = true)]
    pub port: u16,

    /// Comma-separated origins allowed by CORS (none by default).
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',', global = true)]
    pub cors_origins: Vec<String>,
}

impl HttpConfig {
    /// `CORS_ORIGINS`, checked (see [`cors_origins`]).
    ///
    /// # Errors
    /// An entry that is not an origin.
    pub fn allowed_origins(&self) -> Result<Vec<String>, ConfigError> {
        cors_origins(&self.cors_origins)
    }
}

/// `CORS_ORIGINS` as origins CORS can match: `scheme://host[:port]`, no path, no wildcard;
/// blank entries are skipped and a trailing `/` is dropped.
///
/// # Errors
/// An entry that is not such an origin.
pub fn cors_origins(raw: &[String]) -> Result<Vec<String>, ConfigError> {
    raw.iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .map(|origin| {
            let origin = origin.trim_end_matches('/');
            let uri: actix_web::http::Uri = origin.parse().map_err(|_| {
                ConfigError::new(format!("CORS_ORIGINS: {origin:?} is not an origin"))
            })?;
            let ok = matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.authority().is_some()
                && uri.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/");
            if ok {
                Ok(origin.to_owned())
            } else {
                Err(ConfigError::new(format!(
                    "CORS_ORIGINS: {origin:?} must be scheme://host[:port], such as https://app.example.com"
                )))
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Database

/// The database and its pool.
#[derive(Debug, Clone, Args)]
pub struct DbConfig {
    /// Postgres URL; without it the service runs on its in-memory store.
    #[arg(
        id = "database_url",
        long = "database-url",
        value_name = "DATABASE_URL",
        env = "DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub url: Option<SecretString>,

    /// Maximum database connections.
    #[arg(id = "db_pool_size", long = "db-pool-size", value_name = "DB_POOL_SIZE", env = "AUTH_DB_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub pool_size: u32,

    /// Milliseconds to wait for a database connection (pool wait and connect).
    #[arg(id = "db_timeout_ms", long = "db-timeout-ms", value_name = "DB_TIMEOUT_MS", env = "AUTH_DB_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(50..=60_000), global = true)]
    pub timeout_ms: u64,
}

/// A configured database, its URL checked.
#[derive(Debug, Clone)]
pub struct Database {
    /// The URL.
    pub url: SecretString,
    /// The pool's settings.
    pub pool: PoolSettings,
}

impl DbConfig {
    /// Pool wait and connect timeout.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The pool's settings.
    #[must_use]
    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            max_size: self.pool_size as usize,
            timeout: self.timeout(),
            ..PoolSettings::default()
        }
    }

    /// `DATABASE_URL` read (its TLS settings too, so that one that cannot be used stops the
    /// start here, naming it, rather than failing every connection later).
    ///
    /// # Errors
    /// An unusable URL.
    pub fn connector(&self) -> Result<Option<Arc<Connector>>, ConfigError> {
        self.url
            .as_ref()
            .map(|url| {
                Connector::shared(url.expose_secret())
                    .map_err(|e| ConfigError::new(format!("DATABASE_URL: {e}")))
            })
            .transpose()
    }

    /// The database to run on, or `None` for the in-memory store (refused in production).
    /// Logs the TLS settings of database connections, and warns in production when a
    /// database on another machine is reached without `sslmode=verify-full` (its identity is
    /// not checked, so the connection could be intercepted).
    ///
    /// # Errors
    /// An unusable URL; no URL in production.
    pub fn database(&self, env: Environment) -> Result<Option<Database>, ConfigError> {
        let (Some(url), Some(connector)) = (&self.url, self.connector()?) else {
            return match env {
                Environment::Production => Err(ConfigError::new(
                    "DATABASE_URL is required when AUTH_ENV=production",
                )),
                Environment::Development => Ok(None),
            };
        };
        tracing::info!(tls = %connector.describe(), "database connections");
        let unverified = connector.unverified_remote_hosts();
        if env == Environment::Production && !unverified.is_empty() {
            tracing::warn!(
                hosts = %unverified.join(", "),
                sslmode = %connector.ssl_mode(),
                "DATABASE_URL reaches a database on another machine without sslmode=verify-full: \
                 the server's identity is not checked and the connection could be intercepted. \
                 Use sslmode=verify-full (with sslrootcert naming the provider's CA if it is not \
                 a public one)"
            );
        }
        Ok(Some(Database {
            url: url.clone(),
            pool: self.pool_settings(),
        }))
    }

    /// The URL to migrate.
    ///
    /// # Errors
    /// No URL, or an unusable one.
    pub fn migration_url(&self) -> Result<&SecretString, ConfigError> {
        self.connector()?;
        self.url
            .as_ref()
            .ok_or_else(|| ConfigError::new(database_url_missing("`migrate`")))
    }
}

/// What a command that works on the database says when `DATABASE_URL` is not set: what it
/// needs and how to give it.
#[must_use]
pub fn database_url_missing(command: &str) -> String {
    format!(
        "DATABASE_URL is not set, and {command} works on the database (the in-memory store \
         lives only inside a running server). Set it in the environment, such as \
         `export DATABASE_URL=postgres://USER:PASSWORD@HOST:5432/DATABASE`, or pass \
         --database-url"
    )
}

// ---------------------------------------------------------------------------------------------
// Token signing

/// The keys that sign and verify tokens, and the claims that bind them to this service.
#[derive(Debug, Clone, Args)]
pub struct JwtConfig {
    /// HS256 key (raw UTF-8 bytes, at least 32).
    #[arg(
        id = "jwt_secret_key",
        long = "jwt-secret-key",
        value_name = "JWT_SECRET_KEY",
        env = "JWT_SECRET_KEY",
        hide_env_values = true,
        global = true
    )]
    pub secret_key: Option<SecretString>,

    /// JWT signing algorithm.
    #[arg(
        id = "jwt_algorithm",
        long = "jwt-algorithm",
        value_name = "JWT_ALGORITHM",
        env = "JWT_ALGORITHM",
        value_enum,
        default_value = "HS256",
        global = true
    )]
    pub algorithm: JwtAlgorithm,

    /// PEM file of the private signing key (PKCS#8) for EdDSA, ES256 or RS256.
    #[arg(
        id = "jwt_private_key_file",
        long = "jwt-private-key-file",
        value_name = "JWT_PRIVATE_KEY_FILE",
        env = "JWT_PRIVATE_KEY_FILE",
        global = true
    )]
    pub private_key_file: Option<PathBuf>,

    /// Comma-separated PEM files of public keys that also verify (previous keys during a
    /// rotation).
    #[arg(
        id = "jwt_verify_key_files",
        long = "jwt-verify-key-files",
        value_name = "JWT_VERIFY_KEY_FILES",
        env = "JWT_VERIFY_KEY_FILES",
        value_delimiter = ',',
        global = true
    )]
    pub verify_key_files: Vec<PathBuf>,

    /// `iss` of issued tokens.
    #[arg(
        id = "jwt_issuer",
        long = "jwt-issuer",
        value_name = "JWT_ISSUER",
        env = "AUTH_JWT_ISSUER",
        default_value = "auth-service",
        global = true
    )]
    pub issuer: String,

    /// `aud` of issued tokens.
    #[arg(
        id = "jwt_audience",
        long = "jwt-audience",
        value_name = "JWT_AUDIENCE",
        env = "AUTH_JWT_AUDIENCE",
        default_value = "auth-service",
        global = true
    )]
    pub audience: String,
}

/// True when a key looks like a placeholder rather than a secret.
fn is_weak_key(key: &[u8]) -> bool {
    let mut distinct = key.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    key.len() < MIN_HS256_KEY_BYTES || distinct.len() < 12
}

fn read_key_file(what: &str, path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::new(format!("{what} {}: {e}", path.display())))
}

impl JwtConfig {
    /// `iss` and `aud` of issued tokens.
    #[must_use]
    pub fn settings(&self) -> JwtSettings {
        JwtSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            ..JwtSettings::default()
        }
    }

    /// The signing keys the configuration names, read from their files. Outside production,
    /// no HS256 key means a random one, with a warning.
    ///
    /// # Errors
    /// Missing, unreadable or unsuitable keys.
    pub fn keys(&self, env: Environment) -> Result<JwtKeys, ConfigError> {
        let algorithm = match self.algorithm {
            JwtAlgorithm::Hs256 => None,
            JwtAlgorithm::EdDsa => Some(AsymmetricAlgorithm::EdDsa),
            JwtAlgorithm::Es256 => Some(AsymmetricAlgorithm::Es256),
            JwtAlgorithm::Rs256 => Some(AsymmetricAlgorithm::Rs256),
        };
        if let Some(algorithm) = algorithm {
            let Some(path) = &self.private_key_file else {
                return Err(ConfigError::new(format!(
                    "JWT_ALGORITHM={algorithm} needs JWT_PRIVATE_KEY_FILE (a PKCS#8 PEM private key)"
                )));
            };
            let private_pem = SecretSlice::from(read_key_file("JWT_PRIVATE_KEY_FILE", path)?);
            let verify_pems = self
                .verify_key_files
                .iter()
                .map(|p| {
                    let bytes = read_key_file("JWT_VERIFY_KEY_FILES", p)?;
                    String::from_utf8(bytes).map_err(|_| {
                        ConfigError::new(format!(
                            "JWT_VERIFY_KEY_FILES {}: not a PEM text file",
                            p.display()
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(JwtKeys::Asymmetric {
                algorithm,
                private_pem,
                verify_pems,
            });
        }
        if self.private_key_file.is_some() || !self.verify_key_files.is_empty() {
            return Err(ConfigError::new(
                "JWT_PRIVATE_KEY_FILE and JWT_VERIFY_KEY_FILES are for JWT_ALGORITHM=EdDSA, ES256 \
                 or RS256; under HS256 the key is JWT_SECRET_KEY",
            ));
        }
        let key: SecretSlice<u8> = match &self.secret_key {
            Some(key) => {
                let bytes = key.expose_secret().as_bytes();
                if bytes.len() < MIN_HS256_KEY_BYTES {
                    return Err(ConfigError::new(format!(
                        "JWT_SECRET_KEY must be at least {MIN_HS256_KEY_BYTES} bytes"
                    )));
                }
                if env == Environment::Production && is_weak_key(bytes) {
                    return Err(ConfigError::new(
                        "JWT_SECRET_KEY looks like a placeholder (too few distinct characters); \
                         generate one with `openssl rand -base64 48`",
                    ));
                }
                SecretSlice::from(bytes.to_vec())
            }
            None if env == Environment::Production => {
                return Err(ConfigError::new(
                    "JWT_SECRET_KEY is required when AUTH_ENV=production",
                ));
            }
            None => {
                tracing::warn!(
                    "JWT_SECRET_KEY is not set: using a random key generated at start. Tokens \
                     die with this process and other instances will not accept them."
                );
                let mut bytes = vec![0u8; 48];
                getrandom::fill(&mut bytes)
                    .map_err(|e| ConfigError::new(format!("random source: {e}")))?;
                SecretSlice::from(bytes)
            }
        };
        Ok(JwtKeys::Hs256(key))
    }
}

// ---------------------------------------------------------------------------------------------
// Token and session lifetimes

/// How long tokens and sessions live.
#[derive(Debug, Clone, Args)]
pub struct TokenConfig {
    /// Access token lifetime in minutes.
    #[arg(long, env = "ACCESS_TOKEN_EXPIRE_MINUTES", default_value_t = 15, value_parser = clap::value_parser!(i64).range(1..=1440), global = true)]
    pub access_token_expire_minutes: i64,

    /// Absolute session (refresh token) lifetime in days.
    #[arg(long, env = "REFRESH_TOKEN_EXPIRE_DAYS", default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=365), global = true)]
    pub refresh_token_expire_days: i64,

    /// A rotated refresh token presented within this many seconds of its rotation is refused
    /// without ending the session.
    #[arg(long, env = "AUTH_REFRESH_REUSE_GRACE_SECONDS", default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..=300), global = true)]
    pub refresh_reuse_grace_seconds: i64,

    /// Lifetime of device tokens, in seconds.
    #[arg(long, env = "AUTH_DEVICE_TOKEN_TTL_SECONDS", default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(60..=2_592_000), global = true)]
    pub device_token_ttl_seconds: i64,
}

impl TokenConfig {
    /// Lifetime of access tokens.
    #[must_use]
    pub fn access_ttl(&self) -> chrono::Duration {
        chrono::Duration::minutes(self.access_token_expire_minutes)
    }

    /// Absolute lifetime of a session.
    #[must_use]
    pub fn session_ttl(&self) -> chrono::Duration {
        chrono::Duration::days(self.refresh_token_expire_days)
    }

    /// How long a rotated refresh token is refused without ending its session.
    #[must_use]
    pub fn reuse_grace(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.refresh_reuse_grace_seconds)
    }

    /// Lifetime of device tokens.
    #[must_use]
    pub fn device_ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.device_token_ttl_seconds)
    }
}

// ---------------------------------------------------------------------------------------------
// Passwords

/// Password hashing cost and the rule for new passwords.
#[derive(Debug, Clone, Args)]
pub struct PasswordConfig {
    /// bcrypt cost (4..=31).
    #[arg(long, env = "BCRYPT_ROUNDS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=31), global = true)]
    pub bcrypt_rounds: u32,

    /// Minimum length of new passwords, in characters.
    #[arg(id = "password_min_length", long = "password-min-length", value_name = "PASSWORD_MIN_LENGTH", env = "AUTH_PASSWORD_MIN_LENGTH", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=128), global = true)]
    pub min_length: u16,
}

impl PasswordConfig {
    /// The rule new passwords must follow.
    #[must_use]
    pub fn policy(&self) -> PasswordPolicy {
        PasswordPolicy {
            min_chars: usize::from(self.min_length),
            ..PasswordPolicy::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Account lockout

/// When failed logins lock an email, and for how long.
#[derive(Debug, Clone, Args)]
pub struct LockoutConfig {
    /// Failed logins for one email, within the window, that lock it.
    #[arg(id = "lockout_threshold", long = "lockout-threshold", value_name = "LOCKOUT_THRESHOLD", env = "AUTH_LOCKOUT_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub threshold: u32,

    /// Seconds in which failed logins are counted.
    #[arg(id = "lockout_window_seconds", long = "lockout-window-seconds", value_name = "LOCKOUT_WINDOW_SECONDS", env = "AUTH_LOCKOUT_WINDOW_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(i64).range(1..=86_400), global = true)]
    pub window_seconds: i64,

    /// Seconds a lock lasts from its start.
    #[arg(id = "lockout_duration_seconds", long = "lockout-duration-seconds", value_name = "LOCKOUT_DURATION_SECONDS", env = "AUTH_LOCKOUT_DURATION_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(i64).range(1..=86_400), global = true)]
    pub duration_seconds: i64,
}

impl LockoutConfig {
    /// The window in which failed logins are counted.
    #[must_use]
    pub fn window(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.window_seconds)
    }

    /// The lockout rule.
    #[must_use]
    pub fn policy(&self) -> LockoutPolicy {
        LockoutPolicy {
            threshold: self.threshold,
            window: self.window(),
            duration: chrono::Duration::seconds(self.duration_seconds),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rate limits

/// Per-client-IP rate limits, and whose `X-Forwarded-For` names the client.
#[derive(Debug, Clone, Args)]
pub struct RateLimitConfig {
    /// Per-client-IP rate limits on register, login, refresh and logout, device authenticate,
    /// and the verify endpoints when AUTH_RATE_LIMIT_VERIFY_PER_MINUTE is set (`false` for load
    /// tests).
    #[arg(id = "rate_limit_enabled", long = "rate-limit-enabled", value_name = "RATE_LIMIT_ENABLED", env = "AUTH_RATE_LIMIT_ENABLED", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub enabled: bool,

    /// Requests per minute per client IP and endpoint group.
    #[arg(id = "rate_limit_per_minute", long = "rate-limit-per-minute", value_name = "RATE_LIMIT_PER_MINUTE", env = "AUTH_RATE_LIMIT_PER_MINUTE", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub per_minute: u32,

    /// Requests per minute per client IP on the verify endpoints (`/auth/verify`,
    /// `/auth/verify-token`, `/api-keys/verify`, `/api-keys/verify-batch`); 0 = not limited.
    #[arg(id = "rate_limit_verify_per_minute", long = "rate-limit-verify-per-minute", value_name = "RATE_LIMIT_VERIFY_PER_MINUTE", env = "AUTH_RATE_LIMIT_VERIFY_PER_MINUTE", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000), global = true)]
    pub verify_per_minute: u32,

    /// Comma-separated CIDRs of proxies whose `X-Forwarded-For` is believed.
    #[arg(
        long,
        env = "AUTH_TRUSTED_PROXIES",
        value_delimiter = ',',
        global = true
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl RateLimitConfig {
    /// The limits, ready to count.
    #[must_use]
    pub fn limits(&self) -> RateLimits {
        RateLimits::new(
            self.enabled,
            // The parser refuses 0.
            NonZeroU32::new(self.per_minute).unwrap_or(NonZeroU32::MIN),
            NonZeroU32::new(self.verify_per_minute),
            self.trusted_proxies.clone(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Verification caches

/// The caches of verification results (API keys, sessions, devices).
#[derive(Debug, Clone, Args)]
pub struct CacheConfig {
    /// Seconds a verification result (API key, session, device) may be served from cache.
    #[arg(id = "token_cache_ttl", long = "token-cache-ttl", value_name = "TOKEN_CACHE_TTL", env = "TOKEN_CACHE_TTL", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400), global = true)]
    pub ttl_seconds: u64,

    /// Maximum entries of each verification cache.
    #[arg(id = "cache_capacity", long = "cache-capacity", value_name = "CACHE_CAPACITY", env = "AUTH_CACHE_CAPACITY", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000), global = true)]
    pub capacity: u64,
}

impl CacheConfig {
    /// How long an entry may be served.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_seconds)
    }
}

// ---------------------------------------------------------------------------------------------
// API keys

/// Issued API keys.
#[derive(Debug, Clone, Args)]
pub struct ApiKeyConfig {
    /// Prefix of issued API keys (`<prefix>_<random>_<checksum>`).
    #[arg(
        id = "api_key_prefix",
        long = "api-key-prefix",
        value_name = "API_KEY_PREFIX",
        env = "AUTH_API_KEY_PREFIX",
        default_value = "ak_live",
        global = true
    )]
    pub prefix: String,
}

impl ApiKeyConfig {
    /// The prefix, checked.
    ///
    /// # Errors
    /// A prefix keys cannot carry.
    pub fn key_prefix(&self) -> Result<ApiKeyPrefix, ConfigError> {
        ApiKeyPrefix::parse(&self.prefix)
            .map_err(|e| ConfigError::new(format!("AUTH_API_KEY_PREFIX: {e}")))
    }
}

// ---------------------------------------------------------------------------------------------
// Retention

/// How long ended sessions and events are kept, and how often an instance prunes.
#[derive(Debug, Clone, Args)]
pub struct RetentionConfig {
    /// Days a session, with every refresh token it issued, is kept after it ended or expired.
    #[arg(long, env = "AUTH_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650), global = true)]
    pub retention_days: u32,

    /// Days an event is kept.
    #[arg(long, env = "AUTH_EVENT_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650), global = true)]
    pub event_retention_days: u32,

    /// Seconds between two retention passes of an instance (one instance at a time runs one).
    #[arg(long, env = "AUTH_PRUNE_INTERVAL_SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400), global = true)]
    pub prune_interval_seconds: u64,

    /// Seconds between two heartbeats (SSE comments) on the revocation stream.
    #[arg(long, env = "AUTH_STREAM_HEARTBEAT_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300), global = true)]
    pub stream_heartbeat_seconds: u64,

    /// Revocation streams one API key may hold open on one instance (429 beyond).
    #[arg(long, env = "AUTH_STREAM_MAX_PER_KEY", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000), global = true)]
    pub stream_max_per_key: u32,
}

impl RetentionConfig {
    /// What retention keeps, and for how long; lockout rows go once `lockout`'s window is
    /// over.
    #[must_use]
    pub fn policy(&self, lockout: &LockoutConfig) -> RetentionPolicy {
        RetentionPolicy {
            retention: chrono::Duration::days(i64::from(self.retention_days)),
            event_retention: chrono::Duration::days(i64::from(self.event_retention_days)),
            lockout_window: lockout.window(),
        }
    }

    /// Time between two retention passes.
    #[must_use]
    pub fn prune_interval(&self) -> Duration {
        Duration::from_secs(self.prune_interval_seconds)
    }

    /// Time between two heartbeats of the revocation stream.
    #[must_use]
    pub fn stream_heartbeat(&self) -> Duration {
        Duration::from_secs(self.stream_heartbeat_seconds)
    }
}

// ---------------------------------------------------------------------------------------------
// Second factor

/// The key that encrypts TOTP secrets at rest.
#[derive(Clone, Args)]
pub struct MfaConfig {
    /// 32 bytes, base64 (`openssl rand -base64 32`): AES-256-GCM key of the TOTP secrets.
    /// Keep it with the database backups' secrets: without it no enrolled user can log in.
    #[arg(long, env = "AUTH_DATA_KEY", hide_env_values = true, global = true)]
    pub data_key: Option<SecretString>,
}

impl std::fmt::Debug for MfaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaConfig")
            .field("data_key", &self.data_key.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

impl MfaConfig {
    /// The data key. Outside production, none set means a random one, with a warning (TOTP
    /// secrets then die with the process). In production, none set means no second factor:
    /// enrolment and code checks answer 503 until the key is configured.
    ///
    /// # Errors
    /// A key that is not 32 bytes of base64.
    pub fn data_key(&self, env: Environment) -> Result<Option<DataKey>, ConfigError> {
        match &self.data_key {
            Some(text) => DataKey::from_base64(text.expose_secret())
                .map(Some)
                .map_err(|e| ConfigError::new(format!("AUTH_DATA_KEY {e}"))),
            None if env == Environment::Production => {
                tracing::error!(
                    "AUTH_DATA_KEY is not set: the second factor (TOTP) is unavailable; \
                     enrolment and code checks answer 503"
                );
                Ok(None)
            }
            None => {
                tracing::warn!(
                    "AUTH_DATA_KEY is not set: TOTP secrets are encrypted under a random key \
                     generated at start; they die with this process"
                );
                DataKey::generate()
                    .map(Some)
                    .map_err(|e| ConfigError::new(format!("random source: {e}")))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Logging

/// Log filter and format.
#[derive(Debug, Clone, Args)]
pub struct LogConfig {
    /// Log filter (`info`, `debug`, `auth_http=debug,info`, ...).
    #[arg(
        id = "log_level",
        long = "log-level",
        value_name = "LOG_LEVEL",
        env = "LOG_LEVEL",
        default_value = "info",
        global = true
    )]
    pub level: String,

    /// `text` or `json` (default `json` in production, `text` otherwise).
    #[arg(
        id = "log_format",
        long = "log-format",
        value_name = "LOG_FORMAT",
        env = "LOG_FORMAT",
        value_enum,
        global = true
    )]
    pub format: Option<LogFormat>,
}

impl LogConfig {
    /// The format in force in `env`.
    #[must_use]
    pub fn effective_format(&self, env: Environment) -> LogFormat {
        self.format.unwrap_or(match env {
            Environment::Production => LogFormat::Json,
            Environment::Development => LogFormat::Text,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Mail

/// Where mails go, who sends them, and the base of the links in them.
#[derive(Debug, Clone, Args)]
pub struct MailConfig {
    /// SMTP server: `smtp://user:pass@host:587` (STARTTLS required unless `?tls=none`) or
    /// `smtps://user:pass@host:465` (implicit TLS). Without it, outside production, mails are
    /// written as `.eml` files to AUTH_MAIL_DIR.
    #[arg(
        id = "smtp_url",
        long = "smtp-url",
        value_name = "SMTP_URL",
        env = "SMTP_URL",
        hide_env_values = true,
        global = true
    )]
    pub smtp_url: Option<SecretString>,

    /// The sender: `auth@example.com` or `Example <auth@example.com>` (default
    /// `no-reply@` the host of AUTH_PUBLIC_URL; required in production).
    #[arg(
        id = "mail_from",
        long = "mail-from",
        value_name = "MAIL_FROM",
        env = "MAIL_FROM",
        global = true
    )]
    pub from: Option<String>,

    /// The base of the links in mails (`https://auth.example.com`); its host names the
    /// product in them.
    #[arg(
        id = "public_url",
        long = "public-url",
        value_name = "AUTH_PUBLIC_URL",
        env = "AUTH_PUBLIC_URL",
        default_value = "http://localhost:8000",
        global = true
    )]
    pub public_url: String,

    /// The folder of `.eml` files when SMTP_URL is not set (development only).
    #[arg(
        id = "mail_dir",
        long = "mail-dir",
        value_name = "AUTH_MAIL_DIR",
        env = "AUTH_MAIL_DIR",
        default_value = "./mail-outbox",
        global = true
    )]
    pub dir: PathBuf,

    /// Seconds during which at most one mail goes to an address (verification resend,
    /// password reset).
    #[arg(
        id = "mail_min_interval_seconds",
        long = "mail-min-interval-seconds",
        value_name = "AUTH_MAIL_MIN_INTERVAL_SECONDS",
        env = "AUTH_MAIL_MIN_INTERVAL_SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(0..=86_400),
        global = true
    )]
    pub min_interval_seconds: u64,

    /// Seconds a verification link (after registration, or for a new address) works.
    #[arg(
        id = "email_verification_ttl_seconds",
        long = "email-verification-ttl-seconds",
        value_name = "AUTH_EMAIL_VERIFICATION_TTL_SECONDS",
        env = "AUTH_EMAIL_VERIFICATION_TTL_SECONDS",
        default_value_t = 86_400,
        value_parser = clap::value_parser!(i64).range(60..=2_592_000),
        global = true
    )]
    pub verification_ttl_seconds: i64,

    /// Seconds a password-reset link works.
    #[arg(
        id = "password_reset_ttl_seconds",
        long = "password-reset-ttl-seconds",
        value_name = "AUTH_PASSWORD_RESET_TTL_SECONDS",
        env = "AUTH_PASSWORD_RESET_TTL_SECONDS",
        default_value_t = 3_600,
        value_parser = clap::value_parser!(i64).range(60..=86_400),
        global = true
    )]
    pub reset_ttl_seconds: i64,

    /// Open self-registration (`POST /auth/register`); when false it answers 403
    /// REGISTRATION_DISABLED and administrators make accounts.
    #[arg(
        id = "registration_enabled",
        long = "registration-enabled",
        value_name = "AUTH_REGISTRATION_ENABLED",
        env = "AUTH_REGISTRATION_ENABLED",
        default_value_t = true,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub registration_enabled: bool,

    /// Refuse login (403 EMAIL_NOT_VERIFIED after a correct password) until the account's
    /// address is verified.
    #[arg(
        id = "require_verified_email",
        long = "require-verified-email",
        value_name = "AUTH_REQUIRE_VERIFIED_EMAIL",
        env = "AUTH_REQUIRE_VERIFIED_EMAIL",
        default_value_t = false,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub require_verified_email: bool,
}

/// Where mails go, checked.
#[derive(Debug, Clone)]
pub enum MailTransport {
    /// An SMTP server.
    Smtp(SmtpUrl),
    /// `.eml` files in a folder (development).
    Files(PathBuf),
}

/// The mail settings, checked.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// Where mails go.
    pub transport: MailTransport,
    /// The sender.
    pub from: Mailbox,
    /// The base of links, without a trailing slash (`https://auth.example.com`).
    pub public_url: String,
    /// The product's name in mails: the host (and port) of the public URL.
    pub product: String,
}

/// Checks `AUTH_PUBLIC_URL`: `http(s)://host[:port][/path]`, no query, fragment or
/// credentials; returns it without a trailing slash, and its `host[:port]`.
///
/// # Errors
/// Anything else, naming the setting.
pub fn public_url(raw: &str) -> Result<(String, String), ConfigError> {
    let err = |what: &str| ConfigError::new(format!("AUTH_PUBLIC_URL: {what}"));
    let trimmed = raw.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or_else(|| err("must start with http:// or https://"))?;
    if rest.contains(['?', '#', '@']) || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err("no query, fragment, credentials or spaces"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.starts_with(':') {
        return Err(err("no host"));
    }
    Ok((trimmed.to_owned(), authority.to_owned()))
}

impl MailConfig {
    /// The checked settings. Production refuses to run without `SMTP_URL` and `MAIL_FROM`.
    ///
    /// # Errors
    /// A setting that cannot be used, naming it (never showing `SMTP_URL`).
    pub fn settings(&self, env: Environment) -> Result<MailSettings, ConfigError> {
        let (public_url, product) = public_url(&self.public_url)?;
        let transport = match (&self.smtp_url, env) {
            (Some(url), _) => MailTransport::Smtp(
                SmtpUrl::parse(url).map_err(|e| ConfigError::new(e.to_string()))?,
            ),
            (None, Environment::Production) => {
                return Err(ConfigError::new(
                    "SMTP_URL is required when AUTH_ENV=production (mails cannot be written to files there)",
                ));
            }
            (None, Environment::Development) => MailTransport::Files(self.dir.clone()),
        };
        let from = match (&self.from, env) {
            (Some(from), _) => parse_from(from).map_err(|e| ConfigError::new(e.to_string()))?,
            (None, Environment::Production) => {
                return Err(ConfigError::new(
                    "MAIL_FROM is required when AUTH_ENV=production",
                ));
            }
            (None, Environment::Development) => {
                let host = product.split(':').next().unwrap_or("localhost");
                parse_from(&format!("no-reply@{host}"))
                    .or_else(|_| parse_from("no-reply@localhost"))
                    .map_err(|e| ConfigError::new(e.to_string()))?
            }
        };
        Ok(MailSettings {
            transport,
            from,
            public_url,
            product,
        })
    }

    /// The shortest time between two mails to one address.
    #[must_use]
    pub fn min_interval(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.min_interval_seconds).unwrap_or(86_400))
    }

    /// The links in mails and how long they work.
    ///
    /// # Errors
    /// An unusable `AUTH_PUBLIC_URL`.
    pub fn links(&self) -> Result<auth_core::service::lifecycle::MailLinks, ConfigError> {
        let (public_url, product) = public_url(&self.public_url)?;
        Ok(auth_core::service::lifecycle::MailLinks {
            product,
            public_url,
            verification_ttl: chrono::Duration::seconds(self.verification_ttl_seconds),
            reset_ttl: chrono::Duration::seconds(self.reset_ttl_seconds),
            min_interval: self.min_interval(),
        })
    }
}
