//! Configuration: every setting comes from the environment (names as in the API contract),
//! and each can also be given as a flag (`auth-server --help` lists them).

use std::time::Duration;

use auth_core::ports::RetentionPolicy;
use clap::{Args, ValueEnum};
use secrecy::SecretString;

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

/// Every setting of the service.
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

    /// Postgres URL; without it the service runs on its in-memory store.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<SecretString>,

    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0", global = true)]
    pub host: String,

    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8000, global = true)]
    pub port: u16,

    /// HS256 key (raw UTF-8 bytes, at least 32).
    #[arg(long, env = "JWT_SECRET_KEY", hide_env_values = true, global = true)]
    pub jwt_secret_key: Option<SecretString>,

    /// JWT signing algorithm.
    #[arg(
        long,
        env = "JWT_ALGORITHM",
        value_enum,
        default_value = "HS256",
        global = true
    )]
    pub jwt_algorithm: JwtAlgorithm,

    /// PEM file of the private signing key (PKCS#8) for EdDSA, ES256 or RS256.
    #[arg(long, env = "JWT_PRIVATE_KEY_FILE", global = true)]
    pub jwt_private_key_file: Option<std::path::PathBuf>,

    /// Comma-separated PEM files of public keys that also verify (previous keys during a
    /// rotation).
    #[arg(
        long,
        env = "JWT_VERIFY_KEY_FILES",
        value_delimiter = ',',
        global = true
    )]
    pub jwt_verify_key_files: Vec<std::path::PathBuf>,

    /// `iss` of issued tokens.
    #[arg(
        long,
        env = "AUTH_JWT_ISSUER",
        default_value = "auth-service",
        global = true
    )]
    pub jwt_issuer: String,

    /// `aud` of issued tokens.
    #[arg(
        long,
        env = "AUTH_JWT_AUDIENCE",
        default_value = "auth-service",
        global = true
    )]
    pub jwt_audience: String,

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

    /// bcrypt cost (4..=31).
    #[arg(long, env = "BCRYPT_ROUNDS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=31), global = true)]
    pub bcrypt_rounds: u32,

    /// Minimum length of new passwords, in characters.
    #[arg(long, env = "AUTH_PASSWORD_MIN_LENGTH", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=128), global = true)]
    pub password_min_length: u16,

    /// Maximum database connections.
    #[arg(long, env = "AUTH_DB_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub db_pool_size: u32,

    /// Milliseconds to wait for a database connection (pool wait and connect).
    #[arg(long, env = "AUTH_DB_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(50..=60_000), global = true)]
    pub db_timeout_ms: u64,

    /// Log filter (`info`, `debug`, `auth_http=debug,info`, ...).
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,

    /// `text` or `json` (default `json` in production, `text` otherwise).
    #[arg(long, env = "LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,

    /// Seconds a verification result (API key, session, device) may be served from cache.
    #[arg(long, env = "TOKEN_CACHE_TTL", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400), global = true)]
    pub token_cache_ttl: u64,

    /// Maximum entries of each verification cache.
    #[arg(long, env = "AUTH_CACHE_CAPACITY", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000), global = true)]
    pub cache_capacity: u64,

    /// Lifetime of device tokens, in seconds.
    #[arg(long, env = "AUTH_DEVICE_TOKEN_TTL_SECONDS", default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(60..=2_592_000), global = true)]
    pub device_token_ttl_seconds: i64,

    /// Per-client-IP rate limits on register, login, refresh and logout, device authenticate,
    /// and the verify endpoints when AUTH_RATE_LIMIT_VERIFY_PER_MINUTE is set (`false` for load
    /// tests).
    #[arg(long, env = "AUTH_RATE_LIMIT_ENABLED", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub rate_limit_enabled: bool,

    /// Requests per minute per client IP and endpoint group.
    #[arg(long, env = "AUTH_RATE_LIMIT_PER_MINUTE", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub rate_limit_per_minute: u32,

    /// Requests per minute per client IP on the verify endpoints (`/auth/verify`,
    /// `/auth/verify-token`, `/api-keys/verify`, `/api-keys/verify-batch`); 0 = not limited.
    #[arg(long, env = "AUTH_RATE_LIMIT_VERIFY_PER_MINUTE", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000), global = true)]
    pub rate_limit_verify_per_minute: u32,

    /// Comma-separated CIDRs of proxies whose `X-Forwarded-For` is believed.
    #[arg(
        long,
        env = "AUTH_TRUSTED_PROXIES",
        value_delimiter = ',',
        global = true
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Comma-separated origins allowed by CORS (none by default).
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',', global = true)]
    pub cors_origins: Vec<String>,

    /// Failed logins for one email, within the window, that lock it.
    #[arg(long, env = "AUTH_LOCKOUT_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub lockout_threshold: u32,

    /// Seconds in which failed logins are counted.
    #[arg(long, env = "AUTH_LOCKOUT_WINDOW_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(i64).range(1..=86_400), global = true)]
    pub lockout_window_seconds: i64,

    /// Seconds a lock lasts from its start.
    #[arg(long, env = "AUTH_LOCKOUT_DURATION_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(i64).range(1..=86_400), global = true)]
    pub lockout_duration_seconds: i64,

    /// Days a session, with every refresh token it issued, is kept after it ended or expired.
    #[arg(long, env = "AUTH_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650), global = true)]
    pub retention_days: u32,

    /// Days an event is kept.
    #[arg(long, env = "AUTH_EVENT_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650), global = true)]
    pub event_retention_days: u32,

    /// Seconds between two retention passes of an instance (one instance at a time runs one).
    #[arg(long, env = "AUTH_PRUNE_INTERVAL_SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400), global = true)]
    pub prune_interval_seconds: u64,

    /// Prefix of issued API keys (`<prefix>_<random>_<checksum>`).
    #[arg(
        long,
        env = "AUTH_API_KEY_PREFIX",
        default_value = "ak_live",
        global = true
    )]
    pub api_key_prefix: String,
}

impl Config {
    /// Pool wait and connect timeout.
    #[must_use]
    pub fn db_timeout(&self) -> Duration {
        Duration::from_millis(self.db_timeout_ms)
    }

    /// What retention keeps, and for how long.
    #[must_use]
    pub fn retention_policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            retention: chrono::Duration::days(i64::from(self.retention_days)),
            event_retention: chrono::Duration::days(i64::from(self.event_retention_days)),
            lockout_window: chrono::Duration::seconds(self.lockout_window_seconds),
        }
    }

    /// Time between two retention passes.
    #[must_use]
    pub fn prune_interval(&self) -> Duration {
        Duration::from_secs(self.prune_interval_seconds)
    }

    /// The log format in force.
    #[must_use]
    pub fn effective_log_format(&self) -> LogFormat {
        self.log_format.unwrap_or(match self.auth_env {
            Environment::Production => LogFormat::Json,
            Environment::Development => LogFormat::Text,
        })
    }
}
