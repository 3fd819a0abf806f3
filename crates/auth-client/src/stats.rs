//! What the client has done, readable at any time with
//! [`AuthClient::metrics`](crate::AuthClient::metrics): calls, outcomes and latency per
//! operation, retries, the breaker's state, the API-key cache's hit rate, local token
//! verifications and the revocation stream.
//!
//! The same figures are also recorded through the `metrics` facade (`auth_client_*`), so a
//! service with a Prometheus recorder installed exports them with its own.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Every call the client makes to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `POST /api/v1/auth/register`.
    Register,
    /// `POST /api/v1/auth/login`.
    Login,
    /// `POST /api/v1/auth/login/mfa`.
    LoginMfa,
    /// `POST /api/v1/auth/refresh`.
    Refresh,
    /// `POST /api/v1/auth/logout`.
    Logout,
    /// `POST /api/v1/auth/logout-all`.
    LogoutAll,
    /// `GET /api/v1/auth/verify`.
    VerifySession,
    /// `POST /api/v1/auth/verify-token`.
    VerifyToken,
    /// `GET /api/v1/users/me`.
    Me,
    /// `POST /api/v1/users/me/password`.
    ChangePassword,
    /// `POST /api/v1/organizations`.
    CreateOrganization,
    /// `GET /api/v1/organizations`.
    ListOrganizations,
    /// `GET /api/v1/organizations/{id}`.
    GetOrganization,
    /// `POST /api/v1/organizations/{id}/members`.
    AddMember,
    /// `GET /api/v1/organizations/{id}/members`.
    ListMembers,
    /// `DELETE /api/v1/organizations/{id}/members/{user_id}`.
    RemoveMember,
    /// `POST /api/v1/api-keys`.
    CreateApiKey,
    /// `GET /api/v1/api-keys`.
    ListApiKeys,
    /// `GET /api/v1/api-keys/{id}`.
    GetApiKey,
    /// `POST /api/v1/api-keys/{id}/revoke`.
    RevokeApiKey,
    /// `POST /api/v1/api-keys/{id}/rotate`.
    RotateApiKey,
    /// `PATCH /api/v1/api-keys/{id}`.
    UpdateApiKey,
    /// `GET /api/v1/api-keys/{id}/usage`.
    ApiKeyUsage,
    /// `POST /api/v1/api-keys/verify`.
    VerifyApiKey,
    /// `POST /api/v1/api-keys/verify-batch`.
    VerifyApiKeyBatch,
    /// `POST /api/v1/devices`.
    RegisterDevice,
    /// `POST /api/v1/devices/authenticate`.
    AuthenticateDevice,
    /// `POST /api/v1/devices/{id}/rotate-secret`.
    RotateDeviceSecret,
    /// `POST /api/v1/devices/{id}/revoke`.
    RevokeDevice,
    /// `GET /api/v1/devices`.
    ListDevices,
    /// `GET /api/v1/devices/{id}`.
    GetDevice,
    /// `GET /`.
    ServiceInfo,
    /// `GET /health`.
    Health,
    /// `GET /health/live`.
    Live,
    /// `GET /health/ready`.
    Ready,
    /// `GET /.well-known/jwks.json`.
    Jwks,
    /// `GET /metrics`.
    PrometheusMetrics,
    /// `GET /api-docs/openapi.json`.
    OpenApi,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Self; 38] = [
        Self::Register,
        Self::Login,
        Self::LoginMfa,
        Self::Refresh,
        Self::Logout,
        Self::LogoutAll,
        Self::VerifySession,
        Self::VerifyToken,
        Self::Me,
        Self::ChangePassword,
        Self::CreateOrganization,
        Self::ListOrganizations,
        Self::GetOrganization,
        Self::AddMember,
        Self::ListMembers,
        Self::RemoveMember,
        Self::CreateApiKey,
        Self::ListApiKeys,
        Self::GetApiKey,
        Self::RevokeApiKey,
        Self::RotateApiKey,
        Self::UpdateApiKey,
        Self::ApiKeyUsage,
        Self::VerifyApiKey,
        Self::VerifyApiKeyBatch,
        Self::RegisterDevice,
        Self::AuthenticateDevice,
        Self::RotateDeviceSecret,
        Self::RevokeDevice,
        Self::ListDevices,
        Self::GetDevice,
        Self::ServiceInfo,
        Self::Health,
        Self::Live,
        Self::Ready,
        Self::Jwks,
        Self::PrometheusMetrics,
        Self::OpenApi,
    ];

    /// A stable snake_case name, used as the `operation` label.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Login => "login",
            Self::LoginMfa => "login_mfa",
            Self::Refresh => "refresh",
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::VerifySession => "verify_session",
            Self::VerifyToken => "verify_token",
            Self::Me => "me",
            Self::ChangePassword => "change_password",
            Self::CreateOrganization => "create_organization",
            Self::ListOrganizations => "list_organizations",
            Self::GetOrganization => "get_organization",
            Self::AddMember => "add_member",
            Self::ListMembers => "list_members",
            Self::RemoveMember => "remove_member",
            Self::CreateApiKey => "create_api_key",
            Self::ListApiKeys => "list_api_keys",
            Self::GetApiKey => "get_api_key",
            Self::RevokeApiKey => "revoke_api_key",
            Self::RotateApiKey => "rotate_api_key",
            Self::UpdateApiKey => "update_api_key",
            Self::ApiKeyUsage => "api_key_usage",
            Self::VerifyApiKey => "verify_api_key",
            Self::VerifyApiKeyBatch => "verify_api_key_batch",
            Self::RegisterDevice => "register_device",
            Self::AuthenticateDevice => "authenticate_device",
            Self::RotateDeviceSecret => "rotate_device_secret",
            Self::RevokeDevice => "revoke_device",
            Self::ListDevices => "list_devices",
            Self::GetDevice => "get_device",
            Self::ServiceInfo => "service_info",
            Self::Health => "health",
            Self::Live => "live",
            Self::Ready => "ready",
            Self::Jwks => "jwks",
            Self::PrometheusMetrics => "prometheus_metrics",
            Self::OpenApi => "openapi",
        }
    }

    /// Whether repeating the call after it may have reached the service is harmless, so that
    /// it is retried on every transient failure (timeouts, broken connections, 429, 502, 503,
    /// 504). The others are retried only when the connection could not be made, when nothing
    /// was sent.
    ///
    /// Idempotent: every read, the verify endpoints, logout and logout-all (ending an ended
    /// session changes nothing), and device authentication (it issues a token and changes
    /// nothing else; a lost answer only loses that token). Not idempotent: register, login
    /// and its second step (a session and the lockout count; a right code spends the
    /// `mfa_token`), refresh (rotation: a repeat looks like a reuse and
    /// ends the session), password change, creating organizations, keys and devices, adding
    /// and removing members, revoking and rotating keys and device secrets (a repeat answers
    /// 409 or 404, or loses the secret of the first).
    #[must_use]
    pub const fn is_idempotent(self) -> bool {
        !matches!(
            self,
            Self::Register
                | Self::Login
                | Self::LoginMfa
                | Self::Refresh
                | Self::ChangePassword
                | Self::CreateOrganization
                | Self::AddMember
                | Self::RemoveMember
                | Self::CreateApiKey
                | Self::RevokeApiKey
                | Self::RotateApiKey
                | Self::RegisterDevice
                | Self::RotateDeviceSecret
                | Self::RevokeDevice
        )
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The expected answer.
    Ok,
    /// A definitive 4xx answer of the service.
    ApiError,
    /// A 5xx answer, a transport failure, a timeout, an unreadable answer.
    Failure,
    /// Refused by the open breaker without a request.
    CircuitOpen,
}

impl Outcome {
    const fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ApiError => "api_error",
            Self::Failure => "failure",
            Self::CircuitOpen => "circuit_open",
        }
    }
}

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_MICROS: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];

#[derive(Debug, Default)]
struct Histogram {
    /// One per bucket, plus one for everything above the last bound.
    buckets: [AtomicU64; BUCKETS_MICROS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
}

impl Histogram {
    fn record(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let slot = BUCKETS_MICROS
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(BUCKETS_MICROS.len());
        if let Some(bucket) = self.buckets.get(slot) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    fn snapshot(&self) -> LatencySummary {
        LatencySummary {
            count: self.count.load(Ordering::Relaxed),
            total: Duration::from_micros(self.sum_micros.load(Ordering::Relaxed)),
            max: Duration::from_micros(self.max_micros.load(Ordering::Relaxed)),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

#[derive(Debug, Default)]
struct OpCounters {
    calls: AtomicU64,
    ok: AtomicU64,
    api_errors: AtomicU64,
    failures: AtomicU64,
    circuit_open: AtomicU64,
    attempts: AtomicU64,
    retries: AtomicU64,
    latency: Histogram,
}

/// The client's counters; shared by every clone of a client.
#[derive(Debug)]
pub(crate) struct Metrics {
    ops: Vec<OpCounters>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    local_accepted: AtomicU64,
    local_rejected: AtomicU64,
    remote_verifications: AtomicU64,
    jwks_fetches: AtomicU64,
    jwks_refetches_suppressed: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            ops: Operation::ALL
                .iter()
                .map(|_| OpCounters::default())
                .collect(),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            local_accepted: AtomicU64::new(0),
            local_rejected: AtomicU64::new(0),
            remote_verifications: AtomicU64::new(0),
            jwks_fetches: AtomicU64::new(0),
            jwks_refetches_suppressed: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    fn op(&self, op: Operation) -> Option<&OpCounters> {
        self.ops.get(op.index())
    }

    /// One attempt (a request sent, or refused by the breaker) of `op`.
    pub(crate) fn attempt(&self, op: Operation, retry: bool) {
        if let Some(c) = self.op(op) {
            c.attempts.fetch_add(1, Ordering::Relaxed);
            if retry {
                c.retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("auth_client_retries_total", "operation" => op.name())
                    .increment(1);
            }
        }
    }

    /// A finished call of `op`, retries included.
    pub(crate) fn call(&self, op: Operation, outcome: Outcome, elapsed: Duration) {
        if let Some(c) = self.op(op) {
            c.calls.fetch_add(1, Ordering::Relaxed);
            let counter = match outcome {
                Outcome::Ok => &c.ok,
                Outcome::ApiError => &c.api_errors,
                Outcome::Failure => &c.failures,
                Outcome::CircuitOpen => &c.circuit_open,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            c.latency.record(elapsed);
        }
        metrics::counter!(
            "auth_client_calls_total",
            "operation" => op.name(),
            "outcome" => outcome.label()
        )
        .increment(1);
        metrics::histogram!("auth_client_call_duration_seconds", "operation" => op.name())
            .record(elapsed.as_secs_f64());
    }

    pub(crate) fn cache(&self, hit: bool) {
        let (counter, label) = if hit {
            (&self.cache_hits, "hit")
        } else {
            (&self.cache_misses, "miss")
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("auth_client_api_key_cache_total", "result" => label).increment(1);
    }

    pub(crate) fn local_verification(&self, accepted: bool) {
        let (counter, label) = if accepted {
            (&self.local_accepted, "accepted")
        } else {
            (&self.local_rejected, "rejected")
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("auth_client_local_verifications_total", "result" => label).increment(1);
    }

    pub(crate) fn remote_verification(&self) {
        self.remote_verifications.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn jwks_fetch(&self) {
        self.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("auth_client_jwks_fetches_total").increment(1);
    }

    pub(crate) fn jwks_refetch_suppressed(&self) {
        self.jwks_refetches_suppressed
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(
        &self,
        breaker: BreakerMetrics,
        cache_entries: Option<u64>,
    ) -> MetricsSnapshot {
        let operations: Vec<OperationMetrics> = Operation::ALL
            .iter()
            .filter_map(|op| {
                let c = self.op(*op)?;
                let calls = c.calls.load(Ordering::Relaxed);
                (calls > 0 || c.attempts.load(Ordering::Relaxed) > 0).then(|| OperationMetrics {
                    operation: *op,
                    calls,
                    ok: c.ok.load(Ordering::Relaxed),
                    api_errors: c.api_errors.load(Ordering::Relaxed),
                    failures: c.failures.load(Ordering::Relaxed),
                    circuit_open: c.circuit_open.load(Ordering::Relaxed),
                    attempts: c.attempts.load(Ordering::Relaxed),
                    retries: c.retries.load(Ordering::Relaxed),
                    latency: c.latency.snapshot(),
                })
            })
            .collect();
        MetricsSnapshot {
            operations,
            breaker,
            api_key_cache: cache_entries.map(|entries| CacheMetrics {
                hits: self.cache_hits.load(Ordering::Relaxed),
                misses: self.cache_misses.load(Ordering::Relaxed),
                entries,
            }),
            tokens: TokenMetrics {
                local_accepted: self.local_accepted.load(Ordering::Relaxed),
                local_rejected: self.local_rejected.load(Ordering::Relaxed),
                remote: self.remote_verifications.load(Ordering::Relaxed),
                jwks_fetches: self.jwks_fetches.load(Ordering::Relaxed),
                jwks_refetches_suppressed: self.jwks_refetches_suppressed.load(Ordering::Relaxed),
            },
            revocations: RevocationMetrics::off(),
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        #[expect(
            clippy::cast_precision_loss,
            reason = "counts far below 2^52; a ratio needs no more precision"
        )]
        let r = part as f64 / whole as f64;
        r
    }
}

/// Latency of finished calls (retries and their pauses included).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LatencySummary {
    /// Calls measured.
    pub count: u64,
    /// Their total time.
    pub total: Duration,
    /// The slowest.
    pub max: Duration,
    /// Calls per bucket, bounds as in [`LatencySummary::BUCKET_BOUNDS`], plus a last bucket for
    /// anything slower.
    pub buckets: Vec<u64>,
}

impl LatencySummary {
    /// Upper bounds of the buckets.
    pub const BUCKET_BOUNDS: [Duration; 14] = [
        Duration::from_millis(1),
        Duration::from_micros(2_500),
        Duration::from_millis(5),
        Duration::from_millis(10),
        Duration::from_millis(25),
        Duration::from_millis(50),
        Duration::from_millis(100),
        Duration::from_millis(250),
        Duration::from_millis(500),
        Duration::from_secs(1),
        Duration::from_millis(2_500),
        Duration::from_secs(5),
        Duration::from_secs(10),
        Duration::from_secs(30),
    ];

    /// The mean, or zero before any call.
    #[must_use]
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let micros = u64::try_from(self.total.as_micros()).unwrap_or(u64::MAX) / self.count;
        Duration::from_micros(micros)
    }

    /// An upper bound of the `q` quantile (0.0..=1.0): the bound of the bucket holding it
    /// (the maximum for the last bucket).
    #[must_use]
    pub fn quantile(&self, q: f64) -> Duration {
        let q = q.clamp(0.0, 1.0);
        let mut seen = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if self.count > 0 && ratio(seen, self.count) >= q {
                return Self::BUCKET_BOUNDS
                    .get(i)
                    .copied()
                    .unwrap_or(self.max)
                    .min(self.max);
            }
        }
        self.max
    }
}

/// Counters of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OperationMetrics {
    /// The operation.
    pub operation: Operation,
    /// Finished calls.
    pub calls: u64,
    /// Calls that got the expected answer.
    pub ok: u64,
    /// Calls refused by the service with a 4xx answer (wrong password, 404, 409...).
    pub api_errors: u64,
    /// Calls that failed: 5xx answers, connection failures, timeouts, unreadable answers.
    pub failures: u64,
    /// Calls refused at once by the open breaker.
    pub circuit_open: u64,
    /// Requests sent or refused by the breaker, retries included.
    pub attempts: u64,
    /// Of which retries.
    pub retries: u64,
    /// Latency of the calls.
    pub latency: LatencySummary,
}

impl OperationMetrics {
    /// Share of calls that did not get the expected answer (4xx, failures, breaker).
    #[must_use]
    pub fn error_rate(&self) -> f64 {
        ratio(self.calls - self.ok, self.calls)
    }

    /// Share of calls that failed for want of a working service (failures and breaker, not
    /// 4xx answers).
    #[must_use]
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures + self.circuit_open, self.calls)
    }
}

/// State of the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail at once.
    Open,
    /// One probe may go through; its outcome closes or reopens the breaker.
    HalfOpen,
    /// The client has no breaker.
    Disabled,
}

/// The circuit breaker's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerMetrics {
    /// Its state now. An open breaker stays `Open` until a call arrives after its pause.
    pub state: BreakerState,
    /// Times it opened.
    pub opened: u64,
    /// Calls it refused.
    pub rejected: u64,
}

impl BreakerMetrics {
    pub(crate) fn disabled() -> Self {
        Self {
            state: BreakerState::Disabled,
            opened: 0,
            rejected: 0,
        }
    }
}

/// The API-key cache's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheMetrics {
    /// Verifications answered from the cache.
    pub hits: u64,
    /// Verifications that asked the service.
    pub misses: u64,
    /// Entries held (approximate: expired entries leave in the background).
    pub entries: u64,
}

impl CacheMetrics {
    /// Share of verifications answered from the cache.
    #[must_use]
    pub fn hit_rate(&self) -> f64 {
        ratio(self.hits, self.hits + self.misses)
    }
}

/// Token verification figures.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenMetrics {
    /// Tokens accepted locally.
    pub local_accepted: u64,
    /// Tokens refused locally.
    pub local_rejected: u64,
    /// Verifications that asked the service.
    pub remote: u64,
    /// JWKS fetches.
    pub jwks_fetches: u64,
    /// Fetches an unknown `kid` would have caused, refused by the rate limit.
    pub jwks_refetches_suppressed: u64,
}

/// Everything the client has counted.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Operations called at least once.
    pub operations: Vec<OperationMetrics>,
    /// The breaker.
    pub breaker: BreakerMetrics,
    /// The API-key cache, when there is one.
    pub api_key_cache: Option<CacheMetrics>,
    /// Token verification.
    pub tokens: TokenMetrics,
    /// The revocation stream.
    pub revocations: RevocationMetrics,
}

impl MetricsSnapshot {
    /// The counters of `op`, if it was called.
    #[must_use]
    pub fn operation(&self, op: Operation) -> Option<&OperationMetrics> {
        self.operations.iter().find(|o| o.operation == op)
    }

    /// Finished calls, all operations.
    #[must_use]
    pub fn calls(&self) -> u64 {
        self.operations.iter().map(|o| o.calls).sum()
    }

    /// Share of all calls that did not get the expected answer.
    #[must_use]
    pub fn error_rate(&self) -> f64 {
        let ok: u64 = self.operations.iter().map(|o| o.ok).sum();
        ratio(self.calls() - ok, self.calls())
    }

    /// Share of all calls that failed for want of a working service.
    #[must_use]
    pub fn failure_rate(&self) -> f64 {
        let failed: u64 = self
            .operations
            .iter()
            .map(|o| o.failures + o.circuit_open)
            .sum();
        ratio(failed, self.calls())
    }
}

/// Where the revocation stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamState {
    /// Not configured: cached key verdicts live their TTL, locally verified tokens are
    /// accepted until they expire.
    Off,
    /// Configured, not connected yet: as `Off` meanwhile.
    Connecting,
    /// Following: revocations are honoured within a second.
    Connected,
    /// The connection was lost or refused and is being opened again: fallen back to the TTLs
    /// meanwhile. Revocations made meanwhile are applied once it is back.
    Disconnected,
}

impl StreamState {
    const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Connecting,
            2 => Self::Connected,
            3 => Self::Disconnected,
            _ => Self::Off,
        }
    }

    const fn as_u8(self) -> u8 {
        match self {
            Self::Off => 0,
            Self::Connecting => 1,
            Self::Connected => 2,
            Self::Disconnected => 3,
        }
    }
}

/// How many revocations are remembered, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RememberedRevocations {
    /// Ended sessions.
    pub sessions: u64,
    /// Users whose older tokens are refused.
    pub users: u64,
    /// Revoked or rotated devices.
    pub devices: u64,
    /// Revoked API keys.
    pub api_keys: u64,
}

/// The revocation stream's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RevocationMetrics {
    /// Where it stands now.
    pub state: StreamState,
    /// Connections established (the first included).
    pub connections: u64,
    /// Connections established again after one was lost or refused.
    pub reconnects: u64,
    /// Attempts that failed (refused, unreachable, a wrong answer).
    pub failed_attempts: u64,
    /// Revocations applied (repeats included: applying one twice changes nothing).
    pub events_applied: u64,
    /// Events that needed nothing: `user.password_changed`, revocations whose tokens have
    /// all expired, actions this build does not know.
    pub events_skipped: u64,
    /// `reset` events (revocations may have been missed: the API-key cache was emptied).
    pub resets: u64,
    /// The highest event id seen, from which a new connection resumes (none before the
    /// first, or after a `reset`).
    pub last_event_id: Option<i64>,
    /// Now minus the time of the last revocation applied, when it was applied.
    pub last_lag: Option<Duration>,
    /// The largest such lag (large after a reconnection, when missed events are replayed).
    pub max_lag: Duration,
    /// Tokens verified locally and refused because of a revocation.
    pub tokens_refused: u64,
    /// Cached API-key verdicts dropped because their key was revoked (the next
    /// verification asks the service, which answers `REVOKED`).
    pub api_key_verdicts_dropped: u64,
    /// Revocations remembered now.
    pub remembered: RememberedRevocations,
    /// Revocations forgotten for want of room before the tokens they refuse expired.
    pub forgotten_early: u64,
    /// How long it has been disconnected (since the last loss, or since the start when it
    /// never connected); `None` while connected or off.
    pub disconnected_for: Option<Duration>,
}

impl RevocationMetrics {
    pub(crate) fn off() -> Self {
        Self {
            state: StreamState::Off,
            connections: 0,
            reconnects: 0,
            failed_attempts: 0,
            events_applied: 0,
            events_skipped: 0,
            resets: 0,
            last_event_id: None,
            last_lag: None,
            max_lag: Duration::ZERO,
            tokens_refused: 0,
            api_key_verdicts_dropped: 0,
            remembered: RememberedRevocations::default(),
            forgotten_early: 0,
            disconnected_for: None,
        }
    }

    /// Whether revocations are honoured within a second now.
    #[must_use]
    pub fn following(&self) -> bool {
        self.state == StreamState::Connected
    }

    /// Whether the stream is configured but not connected, so that cached key verdicts live
    /// their TTL and locally verified tokens are accepted until they expire, as without it.
    #[must_use]
    pub fn fallen_back(&self) -> bool {
        matches!(
            self.state,
            StreamState::Connecting | StreamState::Disconnected
        )
    }
}

const NO_ID: i64 = i64::MIN;

/// The revocation stream's counters, shared by the client and the task following it.
#[derive(Debug)]
pub(crate) struct StreamStats {
    state: AtomicU8,
    connections: AtomicU64,
    failed_attempts: AtomicU64,
    events_applied: AtomicU64,
    events_skipped: AtomicU64,
    resets: AtomicU64,
    last_event_id: AtomicI64,
    last_lag_micros: AtomicU64,
    max_lag_micros: AtomicU64,
    tokens_refused: AtomicU64,
    disconnected_since: Mutex<Option<Instant>>,
}

impl Default for StreamStats {
    fn default() -> Self {
        Self {
            state: AtomicU8::new(StreamState::Off.as_u8()),
            connections: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            events_applied: AtomicU64::new(0),
            events_skipped: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            last_event_id: AtomicI64::new(NO_ID),
            last_lag_micros: AtomicU64::new(u64::MAX),
            max_lag_micros: AtomicU64::new(0),
            tokens_refused: AtomicU64::new(0),
            disconnected_since: Mutex::new(None),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl StreamStats {
    pub(crate) fn state(&self) -> StreamState {
        StreamState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub(crate) fn set_state(&self, state: StreamState) {
        self.state.store(state.as_u8(), Ordering::Relaxed);
        if let Ok(mut since) = self.disconnected_since.lock() {
            match state {
                StreamState::Connected | StreamState::Off => *since = None,
                StreamState::Connecting | StreamState::Disconnected => {
                    since.get_or_insert_with(Instant::now);
                }
            }
        }
        let connected = state == StreamState::Connected;
        metrics::gauge!("auth_client_revocation_stream_connected")
            .set(f64::from(u8::from(connected)));
        metrics::gauge!("auth_client_revocation_stream_fallback")
            .set(f64::from(u8::from(!connected && state != StreamState::Off)));
    }

    pub(crate) fn connected(&self) {
        if self.connections.fetch_add(1, Ordering::Relaxed) > 0 {
            metrics::counter!("auth_client_revocation_stream_reconnects_total").increment(1);
        }
        self.set_state(StreamState::Connected);
    }

    pub(crate) fn failed_attempt(&self) {
        self.failed_attempts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("auth_client_revocation_stream_failures_total").increment(1);
    }

    pub(crate) fn applied(&self, lag: Duration) {
        self.events_applied.fetch_add(1, Ordering::Relaxed);
        self.last_lag_micros.store(micros(lag), Ordering::Relaxed);
        self.max_lag_micros
            .fetch_max(micros(lag), Ordering::Relaxed);
        metrics::counter!("auth_client_revocation_events_total", "result" => "applied")
            .increment(1);
        metrics::histogram!("auth_client_revocation_lag_seconds").record(lag.as_secs_f64());
    }

    pub(crate) fn skipped(&self) {
        self.events_skipped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("auth_client_revocation_events_total", "result" => "skipped")
            .increment(1);
    }

    pub(crate) fn reset(&self) {
        self.resets.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("auth_client_revocation_resets_total").increment(1);
    }

    pub(crate) fn set_last_event_id(&self, id: Option<i64>) {
        self.last_event_id
            .store(id.unwrap_or(NO_ID), Ordering::Relaxed);
    }

    pub(crate) fn token_refused(&self) {
        self.tokens_refused.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("auth_client_revoked_tokens_refused_total").increment(1);
    }

    pub(crate) fn snapshot(
        &self,
        remembered: RememberedRevocations,
        forgotten_early: u64,
        api_key_verdicts_dropped: u64,
    ) -> RevocationMetrics {
        let connections = self.connections.load(Ordering::Relaxed);
        let last_event_id = self.last_event_id.load(Ordering::Relaxed);
        let last_lag = self.last_lag_micros.load(Ordering::Relaxed);
        RevocationMetrics {
            state: self.state(),
            connections,
            reconnects: connections.saturating_sub(1),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            events_applied: self.events_applied.load(Ordering::Relaxed),
            events_skipped: self.events_skipped.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            last_event_id: (last_event_id != NO_ID).then_some(last_event_id),
            last_lag: (last_lag != u64::MAX).then(|| Duration::from_micros(last_lag)),
            max_lag: Duration::from_micros(self.max_lag_micros.load(Ordering::Relaxed)),
            tokens_refused: self.tokens_refused.load(Ordering::Relaxed),
            api_key_verdicts_dropped,
            remembered,
            forgotten_early,
            disconnected_for: self
                .disconnected_since
                .lock()
                .ok()
                .and_then(|since| since.map(|at| at.elapsed())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_indexed_in_order() {
        for (i, op) in Operation::ALL.iter().enumerate() {
            assert_eq!(op.index(), i, "{op}");
        }
    }

    #[test]
    fn counts_outcomes_rates_and_latency() {
        let m = Metrics::default();
        m.attempt(Operation::Login, false);
        m.call(Operation::Login, Outcome::Ok, Duration::from_millis(3));
        m.attempt(Operation::Login, false);
        m.call(
            Operation::Login,
            Outcome::ApiError,
            Duration::from_millis(30),
        );
        m.attempt(Operation::Me, false);
        m.attempt(Operation::Me, true);
        m.call(Operation::Me, Outcome::Failure, Duration::from_secs(40));
        m.cache(true);
        m.cache(true);
        m.cache(false);
        let s = m.snapshot(BreakerMetrics::disabled(), Some(1));
        let login = s.operation(Operation::Login).unwrap();
        assert_eq!((login.calls, login.ok, login.api_errors), (2, 1, 1));
        assert!((login.error_rate() - 0.5).abs() < 1e-9);
        assert!(login.failure_rate().abs() < 1e-9);
        assert_eq!(login.latency.max, Duration::from_millis(30));
        assert_eq!(login.latency.quantile(0.5), Duration::from_millis(5));
        assert_eq!(login.latency.quantile(1.0), Duration::from_millis(30));
        let me = s.operation(Operation::Me).unwrap();
        assert_eq!((me.attempts, me.retries, me.failures), (2, 1, 1));
        assert_eq!(me.latency.quantile(0.99), Duration::from_secs(40));
        assert!(s.operation(Operation::Register).is_none());
        assert!((s.api_key_cache.as_ref().unwrap().hit_rate() - 2.0 / 3.0).abs() < 1e-9);
        assert!((s.error_rate() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.revocations.state, StreamState::Off);
        assert!(!s.revocations.following() && !s.revocations.fallen_back());
    }

    #[test]
    fn stream_figures_follow_its_life() {
        let s = StreamStats::default();
        s.set_state(StreamState::Connecting);
        let m = s.snapshot(RememberedRevocations::default(), 0, 0);
        assert!(m.fallen_back() && m.disconnected_for.is_some());
        assert_eq!(
            (m.connections, m.last_event_id, m.last_lag),
            (0, None, None)
        );
        s.connected();
        s.set_last_event_id(Some(7));
        s.applied(Duration::from_millis(40));
        s.applied(Duration::from_millis(5));
        s.set_state(StreamState::Disconnected);
        s.failed_attempt();
        s.connected();
        let m = s.snapshot(RememberedRevocations::default(), 0, 0);
        assert!(m.following() && !m.fallen_back() && m.disconnected_for.is_none());
        assert_eq!((m.connections, m.reconnects, m.failed_attempts), (2, 1, 1));
        assert_eq!(m.last_event_id, Some(7));
        assert_eq!(m.last_lag, Some(Duration::from_millis(5)));
        assert_eq!(m.max_lag, Duration::from_millis(40));
    }
}
