//! Per-client-IP rate limits per endpoint group, on `governor` (GCRA): each group allows
//! `AUTH_RATE_LIMIT_PER_MINUTE` requests a minute per client, refilled evenly. Responses of
//! limited groups carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`
//! (seconds until the allowance is whole again); over the limit the answer is 429
//! `RATE_LIMITED` with `Retry-After`. The verification endpoints are the hot path of other
//! services, often all behind one address: they are limited only when
//! `AUTH_RATE_LIMIT_VERIFY_PER_MINUTE` is set. `X-Forwarded-For` counts only when the peer is
//! a trusted proxy (`AUTH_TRUSTED_PROXIES`). An IPv6 client is counted per /64, the smallest
//! block an end site gets. Limits are per instance.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;

use crate::error::ApiError;
use crate::state::AppState;

type Limiter =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

/// The endpoint groups that are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// `POST /auth/register`.
    Register,
    /// `POST /auth/login` and its second step, `POST /auth/login/mfa`; also the other
    /// unauthenticated account steps: `POST /auth/verify-email`, `POST /auth/password-reset`
    /// and `POST /auth/password-reset/confirm`.
    Login,
    /// `POST /auth/refresh` and `POST /auth/logout`: both take a refresh token.
    Refresh,
    /// `POST /devices/authenticate`.
    DeviceAuthenticate,
    /// `GET /auth/verify`, `POST /auth/verify-token`, `POST /api-keys/verify`,
    /// `POST /api-keys/verify-batch`: limited only with `AUTH_RATE_LIMIT_VERIFY_PER_MINUTE`.
    Verify,
}

impl Group {
    const COUNT: usize = 5;

    fn index(self) -> usize {
        self as usize
    }

    /// The group of a request, if it belongs to one.
    #[must_use]
    pub fn of(method: &Method, path: &str) -> Option<Self> {
        let path = path.strip_prefix("/api/v1")?;
        match (method.as_str(), path) {
            ("POST", "/auth/register") => Some(Self::Register),
            (
                "POST",
                "/auth/login"
                | "/auth/login/mfa"
                | "/auth/verify-email"
                | "/auth/password-reset"
                | "/auth/password-reset/confirm",
            ) => Some(Self::Login),
            ("POST", "/auth/refresh" | "/auth/logout") => Some(Self::Refresh),
            ("POST", "/devices/authenticate") => Some(Self::DeviceAuthenticate),
            ("GET", "/auth/verify")
            | ("POST", "/auth/verify-token" | "/api-keys/verify" | "/api-keys/verify-batch") => {
                Some(Self::Verify)
            }
            _ => None,
        }
    }
}

/// The limiters of one instance.
pub struct RateLimits {
    per_minute: NonZeroU32,
    verify_per_minute: Option<NonZeroU32>,
    trusted_proxies: Vec<IpNet>,
    /// One per group; `None` for a group that is not limited.
    limiters: [Option<Arc<Limiter>>; Group::COUNT],
    /// Failed `X-API-Key` authentications on the management routes per client, in windows of
    /// a minute; `None` when limits are off.
    key_failures: Option<Mutex<HashMap<IpAddr, (Instant, u32)>>>,
}

/// The window of [`RateLimits::key_auth_reserve`].
const KEY_FAILURE_WINDOW: Duration = Duration::from_secs(60);

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("enabled", &self.limiters.iter().any(Option::is_some))
            .field("per_minute", &self.per_minute)
            .field("verify_per_minute", &self.verify_per_minute)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

impl RateLimits {
    /// Limits of `per_minute` per client and group, and of `verify_per_minute` on the
    /// verification endpoints (`None`: not limited); `enabled = false` turns every limit off.
    #[must_use]
    pub fn new(
        enabled: bool,
        per_minute: NonZeroU32,
        verify_per_minute: Option<NonZeroU32>,
        trusted_proxies: Vec<IpNet>,
    ) -> Self {
        let limiter = |rate: NonZeroU32| {
            enabled.then(|| {
                Arc::new(
                    RateLimiter::keyed(Quota::per_minute(rate))
                        .with_middleware::<StateInformationMiddleware>(),
                )
            })
        };
        let mut limiters: [Option<Arc<Limiter>>; Group::COUNT] = Default::default();
        for group in [
            Group::Register,
            Group::Login,
            Group::Refresh,
            Group::DeviceAuthenticate,
        ] {
            limiters[group.index()] = limiter(per_minute);
        }
        limiters[Group::Verify.index()] = verify_per_minute.and_then(limiter);
        Self {
            per_minute,
            verify_per_minute,
            trusted_proxies,
            limiters,
            key_failures: enabled.then(|| Mutex::new(HashMap::new())),
        }
    }

    /// Reserves one `X-API-Key` authentication on a management route for `client`, before
    /// the key is looked up (a made-up key with a valid checksum costs a database lookup, and
    /// each new one misses the cache). Counted and decided in one step under the lock, so
    /// parallel requests cannot all pass before the first failures are recorded; a key that
    /// turns out valid gives its reservation back ([`RateLimits::key_auth_succeeded`]). When
    /// the client has used up its `AUTH_RATE_LIMIT_PER_MINUTE` of the current minute, the
    /// answer is the whole seconds until the minute ends (at least 1).
    ///
    /// # Errors
    /// The seconds to wait.
    pub fn key_auth_reserve(&self, client: Option<IpAddr>) -> Result<(), u64> {
        let (Some(failures), Some(client)) = (self.key_failures.as_ref(), client) else {
            return Ok(());
        };
        let mut failures = failures.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = failures
            .entry(limiter_key(client))
            .or_insert((Instant::now(), 0));
        let Some(left) = KEY_FAILURE_WINDOW.checked_sub(entry.0.elapsed()) else {
            *entry = (Instant::now(), 1);
            return Ok(());
        };
        if entry.1 >= self.per_minute.get() {
            let whole = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            return Err(whole.max(1));
        }
        entry.1 += 1;
        Ok(())
    }

    /// Gives back the reservation of an `X-API-Key` that turned out valid.
    pub fn key_auth_succeeded(&self, client: Option<IpAddr>) {
        let (Some(failures), Some(client)) = (self.key_failures.as_ref(), client) else {
            return;
        };
        let mut failures = failures.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = failures.get_mut(&limiter_key(client)) {
            entry.1 = entry.1.saturating_sub(1);
        }
    }

    /// The allowance a minute of `group`, when it is limited.
    fn limit_of(&self, group: Group) -> Option<(&Limiter, NonZeroU32)> {
        let limiter = self.limiters[group.index()].as_deref()?;
        let rate = match group {
            Group::Verify => self.verify_per_minute?,
            _ => self.per_minute,
        };
        Some((limiter, rate))
    }

    /// Forgets clients whose allowance is whole again (bounds memory); call periodically.
    pub fn retain_recent(&self) {
        for limiter in self.limiters.iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(failures) = &self.key_failures {
            let mut failures = failures.lock().unwrap_or_else(PoisonError::into_inner);
            failures.retain(|_, (started, _)| started.elapsed() < KEY_FAILURE_WINDOW);
            failures.shrink_to_fit();
        }
    }

    fn trusted(&self, ip: &IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }

    /// The client's address: the peer, or — when the peer is a trusted proxy — the right-most
    /// `X-Forwarded-For` entry that is not itself a trusted proxy. `forwarded_for` holds every
    /// `X-Forwarded-For` line in the order received: together they form one list. Addresses
    /// are normalised (ports dropped, IPv4-mapped IPv6 read as IPv4).
    #[must_use]
    pub fn client_ip<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<IpAddr> {
        let peer = peer?.to_canonical();
        if !self.trusted(&peer) {
            return Some(peer);
        }
        // Entries to the left were written by whoever sent the request to the first trusted
        // hop, the client itself included, so the walk goes right to left and stops at the
        // first address no trusted proxy vouches for.
        let entries: Vec<Option<IpAddr>> = forwarded_for
            .into_iter()
            .flat_map(|line| match std::str::from_utf8(line) {
                Ok(text) => text
                    .split(',')
                    .map(str::trim)
                    .filter(|entry| !entry.is_empty())
                    .map(parse_forwarded_address)
                    .collect::<Vec<_>>(),
                Err(_) => vec![None],
            })
            .collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            // A malformed entry ends the trusted chain: use what we have.
            let Some(ip) = *entry else { break };
            client = ip;
            if !self.trusted(&ip) {
                break;
            }
        }
        Some(client)
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:443`, IPv4-mapped IPv6 read as the IPv4 address it carries. `None` for
/// anything else (`unknown`, obfuscated identifiers).
#[must_use]
pub fn parse_forwarded_address(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|sa| sa.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse::<Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

/// The key a client is counted under: an IPv4 address as it is, an IPv6 address by its /64
/// prefix (one end site usually holds a whole /64 and can pick any address in it).
#[must_use]
pub fn limiter_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

/// Every `X-Forwarded-For` line of a request, in order.
pub fn forwarded_lines(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all("x-forwarded-for")
        .map(HeaderValue::as_bytes)
}

static LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

fn number(n: u64) -> HeaderValue {
    HeaderValue::from(n)
}

/// Middleware applying the limits.
///
/// # Errors
/// Passes through errors of the inner service.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    // The path the router matches (percent-decoded), not the raw one: `/auth/logi%6E` is login.
    let Some(group) = Group::of(req.method(), req.match_info().as_str()) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let Some(limits) = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.rate_limits.clone())
    else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let Some((limiter, rate)) = limits.limit_of(group) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let peer = req.peer_addr().map(|a| a.ip());
    let Some(ip) = limits.client_ip(peer, forwarded_lines(req.headers())) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let key = limiter_key(ip);
    let limit = u64::from(rate.get());
    let seconds_per_token = 60.0 / limit as f64;
    match limiter.check_key(&key) {
        Ok(snapshot) => {
            let remaining = u64::from(snapshot.remaining_burst_capacity());
            let reset = ((limit - remaining) as f64 * seconds_per_token).ceil() as u64;
            let mut res = next.call(req).await?;
            let headers = res.headers_mut();
            headers.insert(LIMIT.clone(), number(limit));
            headers.insert(REMAINING.clone(), number(remaining));
            headers.insert(RESET.clone(), number(reset));
            Ok(res.map_into_left_body())
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let reset = (limit as f64 * seconds_per_token).ceil() as u64;
            tracing::info!(client_ip = %ip, group = ?group, "rate limit exceeded");
            let setting = match group {
                Group::Verify => "AUTH_RATE_LIMIT_VERIFY_PER_MINUTE",
                _ => "AUTH_RATE_LIMIT_PER_MINUTE",
            };
            let mut res = actix_web::ResponseError::error_response(&ApiError::rate_limited(
                retry_after.max(1),
                setting,
            ));
            let headers = res.headers_mut();
            headers.insert(LIMIT.clone(), number(limit));
            headers.insert(REMAINING.clone(), number(0));
            headers.insert(RESET.clone(), number(reset));
            Ok(req.into_response(res).map_into_right_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(trusted: &[&str]) -> RateLimits {
        RateLimits::new(
            true,
            NonZeroU32::new(60).unwrap(),
            None,
            trusted.iter().map(|t| t.parse().unwrap()).collect(),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The client seen behind `peer` with these `X-Forwarded-For` lines.
    fn client(limits: &RateLimits, peer: &str, lines: &[&str]) -> IpAddr {
        limits
            .client_ip(Some(ip(peer)), lines.iter().map(|l| l.as_bytes()))
            .unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let none = limits(&[]);
        assert_eq!(client(&none, "10.0.0.1", &["1.2.3.4"]), ip("10.0.0.1"));
        let lb = limits(&["10.0.0.0/8"]);
        assert_eq!(client(&lb, "10.0.0.1", &["1.2.3.4"]), ip("1.2.3.4"));
        // The client cannot spoof by prepending: the right-most untrusted hop wins.
        assert_eq!(
            client(&lb, "10.0.0.1", &["6.6.6.6, 1.2.3.4, 10.0.0.7"]),
            ip("1.2.3.4")
        );
        assert_eq!(client(&lb, "10.0.0.1", &[]), ip("10.0.0.1"));
        assert_eq!(client(&lb, "10.0.0.1", &["garbage"]), ip("10.0.0.1"));
        assert_eq!(client(&lb, "9.9.9.9", &["1.2.3.4"]), ip("9.9.9.9"));
        // Only trusted hops: the left-most one is as far as anyone vouches.
        assert_eq!(
            client(&lb, "10.0.0.1", &["10.0.0.3, 10.0.0.2"]),
            ip("10.0.0.3")
        );
        // A malformed entry stops the walk at the last address before it.
        assert_eq!(
            client(&lb, "10.0.0.1", &["1.2.3.4, unknown, 10.0.0.2"]),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn every_forwarded_for_line_is_read_in_order() {
        let lb = limits(&["10.0.0.0/8"]);
        // Two lines are one list: the second line is the right-most part.
        assert_eq!(
            client(&lb, "10.0.0.1", &["6.6.6.6", "1.2.3.4, 10.0.0.9"]),
            ip("1.2.3.4")
        );
        // A client-written first line cannot hide the proxy-written last one.
        assert_eq!(
            client(&lb, "10.0.0.1", &["1.2.3.4, 10.0.0.5", "203.0.113.7"]),
            ip("203.0.113.7")
        );
        // Empty list elements are allowed by the list syntax and skipped.
        assert_eq!(client(&lb, "10.0.0.1", &["1.2.3.4,, ", ""]), ip("1.2.3.4"));
        // A line that is not text ends the walk there.
        let lines: [&[u8]; 2] = [b"1.2.3.4", b"\xff\xfe"];
        assert_eq!(
            lb.client_ip(Some(ip("10.0.0.1")), lines),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_normalised() {
        for (entry, want) in [
            ("1.2.3.4", "1.2.3.4"),
            ("1.2.3.4:5678", "1.2.3.4"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("::ffff:1.2.3.4", "1.2.3.4"),
            ("[::ffff:1.2.3.4]:80", "1.2.3.4"),
        ] {
            assert_eq!(parse_forwarded_address(entry), Some(ip(want)), "{entry}");
        }
        for entry in [
            "unknown",
            "_hidden",
            "1.2.3",
            "[1.2.3.4]",
            "1.2.3.4:",
            "2001:db8::1:99999",
        ] {
            assert_eq!(parse_forwarded_address(entry), None, "{entry}");
        }
        let lb = limits(&["10.0.0.0/8"]);
        // A trusted proxy written with a port, or seen as a mapped peer, is still trusted.
        assert_eq!(
            client(&lb, "::ffff:10.0.0.1", &["1.2.3.4:1000, 10.0.0.2:443"]),
            ip("1.2.3.4")
        );
        // A mapped peer is counted as the IPv4 address it is.
        let none = limits(&[]);
        assert_eq!(client(&none, "::ffff:192.0.2.1", &[]), ip("192.0.2.1"));
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        assert_eq!(limiter_key(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(limiter_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(
            limiter_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            limiter_key(ip("2001:db8:1:2::1")),
            limiter_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            limiter_key(ip("2001:db8:1:2::1")),
            limiter_key(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn groups() {
        assert_eq!(
            Group::of(&Method::POST, "/api/v1/auth/login"),
            Some(Group::Login)
        );
        assert_eq!(
            Group::of(&Method::POST, "/api/v1/auth/login/mfa"),
            Some(Group::Login)
        );
        assert_eq!(
            Group::of(&Method::POST, "/api/v1/auth/logout"),
            Some(Group::Refresh)
        );
        assert_eq!(
            Group::of(&Method::GET, "/api/v1/auth/verify"),
            Some(Group::Verify)
        );
        assert_eq!(
            Group::of(&Method::POST, "/api/v1/api-keys/verify-batch"),
            Some(Group::Verify)
        );
        assert_eq!(Group::of(&Method::GET, "/api/v1/users/me"), None);
        assert_eq!(Group::of(&Method::GET, "/health"), None);
    }

    #[test]
    fn key_failures_are_counted_per_client() {
        let limits = RateLimits::new(true, NonZeroU32::new(2).unwrap(), None, Vec::new());
        let a = Some(ip("2001:db8::1"));
        assert_eq!(limits.key_auth_reserve(a), Ok(()));
        assert_eq!(limits.key_auth_reserve(Some(ip("2001:db8::2"))), Ok(()));
        let wait = limits.key_auth_reserve(a).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(limits.key_auth_reserve(Some(ip("192.0.2.1"))), Ok(()));
        let off = RateLimits::new(false, NonZeroU32::new(1).unwrap(), None, Vec::new());
        assert_eq!(off.key_auth_reserve(a), Ok(()));
        assert_eq!(off.key_auth_reserve(a), Ok(()));
        // A valid key gives its reservation back.
        let back = RateLimits::new(true, NonZeroU32::new(1).unwrap(), None, Vec::new());
        let c = Some(ip("198.51.100.9"));
        assert_eq!(back.key_auth_reserve(c), Ok(()));
        back.key_auth_succeeded(c);
        assert_eq!(back.key_auth_reserve(c), Ok(()));
        assert!(back.key_auth_reserve(c).is_err());
    }

    #[test]
    fn verify_group_is_limited_only_when_configured() {
        let default = limits(&[]);
        assert!(default.limit_of(Group::Verify).is_none());
        assert!(default.limit_of(Group::Refresh).is_some());
        let set = RateLimits::new(
            true,
            NonZeroU32::new(60).unwrap(),
            NonZeroU32::new(1000),
            Vec::new(),
        );
        assert_eq!(set.limit_of(Group::Verify).unwrap().1.get(), 1000);
        let off = RateLimits::new(
            false,
            NonZeroU32::new(60).unwrap(),
            NonZeroU32::new(1000),
            Vec::new(),
        );
        assert!(off.limit_of(Group::Verify).is_none());
        assert!(off.limit_of(Group::Login).is_none());
    }
}
