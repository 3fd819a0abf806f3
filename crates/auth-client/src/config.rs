//! Client settings and their defaults: the connection pool and timeouts, retries, the circuit
//! breaker, the API-key cache, local token verification and the revocation stream.

use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};

use crate::error::Error;

/// How many times and how patiently a failed call is tried again.
///
/// Only transient failures are retried, and only where a retry cannot apply a change twice:
/// see [`Operation::is_idempotent`](crate::Operation::is_idempotent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 2, so at most 3 attempts).
    pub max_retries: u32,
    /// First pause between attempts (default 100 ms); doubles at each retry.
    pub initial_backoff: Duration,
    /// Longest pause computed by the backoff, before jitter (default 2 s). Jitter adds a
    /// random part of up to the same length.
    pub max_backoff: Duration,
    /// Longest `Retry-After` (429, 503) the client waits for (default 10 s). When the service
    /// asks for a longer wait, the call fails at once with its answer, whose
    /// [`retry_after`](crate::ApiError::retry_after) says how long.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }
}

/// When the circuit breaker opens and when it probes again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive transient failures (connection errors, timeouts, 5xx answers) that open
    /// the breaker (default 5).
    pub failure_threshold: u32,
    /// How long an open breaker fails calls at once before letting one probe through
    /// (default 60 s).
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(60),
        }
    }
}

/// The API-key verification cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyCacheConfig {
    /// How long a valid verdict may be answered from the cache (default 300 s): a key revoked
    /// at the service may be accepted here for up to this long. Never beyond the key's own
    /// `expires_at`.
    pub ttl: Duration,
    /// How long a negative verdict (`INVALID`, `REVOKED`, `EXPIRED`) is kept (default 10 s;
    /// zero keeps none).
    pub negative_ttl: Duration,
    /// Most entries held (default 1,000); past it the least useful are evicted.
    pub capacity: u64,
}

impl Default for ApiKeyCacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(10),
            capacity: 1_000,
        }
    }
}

/// Where access and device tokens are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenVerification {
    /// Locally when the client has keys (the JWKS, or a configured HS256 secret); through the
    /// service when it publishes none (HS256 without a configured secret). The default.
    #[default]
    Auto,
    /// Locally only: with no keys to verify with, verification fails.
    Local,
    /// Always through the service (`POST /auth/verify-token`), which also sees logouts,
    /// revoked sessions and revoked devices.
    Remote,
}

/// Local verification of access and device tokens.
#[derive(Clone)]
pub struct TokenConfig {
    /// The default way of verifying (default [`TokenVerification::Auto`]).
    pub verification: TokenVerification,
    /// `iss` required of tokens: the service's `AUTH_JWT_ISSUER` (default `auth-service`).
    pub issuer: String,
    /// `aud` required of tokens: the service's `AUTH_JWT_AUDIENCE` (default `auth-service`).
    pub audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default and maximum 30 s, the
    /// service's own).
    pub leeway: Duration,
    /// How long a fetched JWKS is used before it is fetched again (default 300 s, the
    /// service's `Cache-Control: max-age`).
    pub jwks_max_age: Duration,
    /// Least time between two fetches of the JWKS caused by a token whose `kid` is unknown
    /// (default 30 s), so that made-up `kid`s cannot make the client hammer the service.
    pub jwks_min_refetch: Duration,
    /// The service's `JWT_SECRET_KEY`, to verify HS256 tokens locally. Whoever holds it can
    /// also mint tokens: prefer an asymmetric algorithm and the JWKS.
    pub hs256_secret: Option<SecretString>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            verification: TokenVerification::Auto,
            issuer: "auth-service".into(),
            audience: "auth-service".into(),
            leeway: MAX_LEEWAY,
            jwks_max_age: Duration::from_secs(300),
            jwks_min_refetch: Duration::from_secs(30),
            hs256_secret: None,
        }
    }
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("verification", &self.verification)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("jwks_max_age", &self.jwks_max_age)
            .field("jwks_min_refetch", &self.jwks_min_refetch)
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// Following the service's revocation stream (`GET /api/v1/revocations/stream`), so that the
/// API-key cache and local token verification honour a revocation within a second instead of
/// at the cache TTL or the token's expiry. Off unless configured.
#[derive(Clone)]
pub struct RevocationStreamConfig {
    /// An API key of an organization holding the scope `revocations:read`, sent as
    /// `X-API-Key`. Key and device revocations arrive for that organization only; session and
    /// user revocations for every account. Never logged.
    pub api_key: SecretString,
    /// First pause before connecting again after a failure (default 500 ms; a `retry:` the
    /// service sends replaces it). Doubles at each failure in a row, up to `max_backoff`;
    /// each pause is drawn at random between half and all of its value (jitter).
    pub initial_backoff: Duration,
    /// Longest pause between two attempts (default 30 s).
    pub max_backoff: Duration,
    /// A connection that brings nothing, not even a heartbeat, for this long is taken as lost
    /// and opened again (default 45 s, three of the service's 15 s heartbeats).
    pub idle_timeout: Duration,
    /// The longest an access token can live at the service (default 24 h, the most
    /// `ACCESS_TOKEN_EXPIRE_MINUTES` allows). A revoked session or user is remembered this
    /// long (plus the leeway) after the revocation, as long as a token it refuses could still
    /// be valid. Set it to the service's own value to remember less.
    pub max_access_token_lifetime: Duration,
    /// The longest a device token can live at the service (default 30 days, the most
    /// `AUTH_DEVICE_TOKEN_TTL_SECONDS` allows); a revoked or rotated device is remembered this
    /// long (plus the leeway).
    pub max_device_token_lifetime: Duration,
    /// Most revocations remembered of each kind (sessions, users, devices, keys; default
    /// 100,000 each). Past it the oldest are forgotten first, each counted in the metrics
    /// (`forgotten_early`) with a warning.
    pub capacity: u64,
}

impl RevocationStreamConfig {
    /// Defaults, following the stream with `api_key`.
    #[must_use]
    pub fn new(api_key: SecretString) -> Self {
        Self {
            api_key,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(45),
            max_access_token_lifetime: Duration::from_secs(24 * 3600),
            max_device_token_lifetime: Duration::from_secs(30 * 24 * 3600),
            capacity: 100_000,
        }
    }
}

impl std::fmt::Debug for RevocationStreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationStreamConfig")
            .field("api_key", &"[REDACTED]")
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_access_token_lifetime", &self.max_access_token_lifetime)
            .field("max_device_token_lifetime", &self.max_device_token_lifetime)
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// The service's leeway, the most a client may tolerate.
pub const MAX_LEEWAY: Duration = Duration::from_secs(30);
/// The shortest HS256 secret the service accepts.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Every setting of an [`AuthClient`](crate::AuthClient). Build one with
/// [`AuthClient::builder`](crate::AuthClient::builder).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where the service is, e.g. `http://localhost:8000` (a path prefix is kept:
    /// `https://gateway.example.com/auth`).
    pub base_url: String,
    /// Per-attempt limit on a whole request, from connecting to the last byte of the answer
    /// (default 5 s).
    pub timeout: Duration,
    /// Limit on establishing a connection (default 2 s).
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept (default 90 s).
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host (default 32).
    pub pool_max_idle_per_host: usize,
    /// TCP keep-alive probes on pooled connections (default every 60 s).
    pub tcp_keepalive: Duration,
    /// `User-Agent` header (default `auth-client/<version>`).
    pub user_agent: String,
    /// Retries (default [`RetryPolicy::default`]).
    pub retry: RetryPolicy,
    /// The circuit breaker, or none (default [`BreakerPolicy::default`]).
    pub breaker: Option<BreakerPolicy>,
    /// The API-key cache, or none (default [`ApiKeyCacheConfig::default`]).
    pub api_key_cache: Option<ApiKeyCacheConfig>,
    /// Token verification (default [`TokenConfig::default`]).
    pub tokens: TokenConfig,
    /// The revocation stream to follow, or none (the default).
    pub revocation_stream: Option<RevocationStreamConfig>,
}

impl ClientConfig {
    /// The defaults, for the service at `base_url`.
    #[must_use]
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 32,
            tcp_keepalive: Duration::from_secs(60),
            user_agent: concat!("auth-client/", env!("CARGO_PKG_VERSION")).into(),
            retry: RetryPolicy::default(),
            breaker: Some(BreakerPolicy::default()),
            api_key_cache: Some(ApiKeyCacheConfig::default()),
            tokens: TokenConfig::default(),
            revocation_stream: None,
        }
    }

    /// The base URL, checked: `http` or `https`, no credentials, query or fragment.
    pub(crate) fn parsed_base_url(&self) -> Result<reqwest::Url, Error> {
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| Error::Config(format!("base URL {:?}: {e}", self.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Config("the base URL must be http or https".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            // Credentials never travel in a URL; this also keeps them out of every error.
            return Err(Error::Config(
                "the base URL must not hold credentials".into(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::Config(
                "the base URL must not have a query or fragment".into(),
            ));
        }
        if url.cannot_be_a_base() || url.host().is_none() {
            return Err(Error::Config("the base URL must name a host".into()));
        }
        Ok(url)
    }

    /// Refuses settings that cannot work.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        self.parsed_base_url()?;
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::Config("timeouts must be above zero".into()));
        }
        if let Some(b) = &self.breaker
            && (b.failure_threshold == 0 || b.open_for.is_zero())
        {
            return Err(Error::Config(
                "the breaker needs a failure threshold and an open time above zero".into(),
            ));
        }
        if let Some(c) = &self.api_key_cache
            && (c.capacity == 0 || c.ttl.is_zero())
        {
            return Err(Error::Config(
                "the API-key cache needs a capacity and a TTL above zero (or no cache)".into(),
            ));
        }
        if self.tokens.leeway > MAX_LEEWAY {
            return Err(Error::Config(format!(
                "the token leeway may not exceed the service's {MAX_LEEWAY:?}"
            )));
        }
        if let Some(secret) = &self.tokens.hs256_secret
            && secret.expose_secret().len() < MIN_HS256_SECRET_BYTES
        {
            return Err(Error::Config(format!(
                "the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes, as the service's"
            )));
        }
        if let Some(stream) = &self.revocation_stream {
            let key = stream.api_key.expose_secret();
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::Config(
                    "the revocation stream's API key must be visible ASCII".into(),
                ));
            }
            if stream.initial_backoff.is_zero()
                || stream.max_backoff < stream.initial_backoff
                || stream.idle_timeout.is_zero()
                || stream.capacity == 0
            {
                return Err(Error::Config(
                    "the revocation stream needs backoffs, an idle timeout and a capacity above \
                     zero, and a maximum backoff no shorter than the first"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = ClientConfig::new("http://localhost:8000");
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.retry.max_retries, 2);
        let b = c.breaker.clone().unwrap();
        assert_eq!(
            (b.failure_threshold, b.open_for),
            (5, Duration::from_secs(60))
        );
        let k = c.api_key_cache.clone().unwrap();
        assert_eq!((k.ttl, k.capacity), (Duration::from_secs(300), 1_000));
        assert_eq!(c.tokens.leeway, Duration::from_secs(30));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn refuses_unusable_settings() {
        for url in [
            "localhost:8000",
            "ftp://x",
            "http://user:pw@localhost",
            "http://localhost/?a=1",
            "not a url",
        ] {
            assert!(ClientConfig::new(url).validate().is_err(), "{url}");
        }
        let mut c = ClientConfig::new("http://localhost");
        c.tokens.hs256_secret = Some(SecretString::from("short"));
        let err = c.validate().unwrap_err().to_string();
        assert!(!err.contains("short"), "{err}");
        let mut c = ClientConfig::new("http://localhost");
        c.tokens.leeway = Duration::from_secs(31);
        assert!(c.validate().is_err());
        let debug = format!(
            "{:?}",
            TokenConfig {
                hs256_secret: Some(SecretString::from(
                    "a-secret-that-is-long-enough-0123456789"
                )),
                ..TokenConfig::default()
            }
        );
        assert!(!debug.contains("a-secret"), "{debug}");

        let mut c = ClientConfig::new("http://localhost");
        c.revocation_stream = Some(RevocationStreamConfig::new(SecretString::from(
            "ak_live_stream key",
        )));
        let err = c.validate().unwrap_err().to_string();
        assert!(!err.contains("ak_live"), "{err}");
        c.revocation_stream = Some(RevocationStreamConfig::new(SecretString::from(
            "ak_live_streamkey",
        )));
        assert!(c.validate().is_ok());
        let debug = format!("{c:?}");
        assert!(!debug.contains("ak_live"), "{debug}");
    }
}
