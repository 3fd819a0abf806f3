//! Per-client-IP rate limits per endpoint group, on `governor` (GCRA): each group allows
//! `AUTH_RATE_LIMIT_PER_MINUTE` requests a minute per IP, refilled evenly. Responses of
//! limited groups carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`
//! (seconds until the allowance is whole again); over the limit the answer is 429
//! `RATE_LIMITED` with `Retry-After`. `X-Forwarded-For` counts only when the peer is a
//! trusted proxy (`AUTH_TRUSTED_PROXIES`). Limits are per instance.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

type Limiter =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;
use ipnet::IpNet;

use crate::error::ApiError;
use crate::state::AppState;

/// The endpoint groups that are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// `POST /auth/register`.
    Register,
    /// `POST /auth/login`.
    Login,
    /// `POST /auth/refresh`.
    Refresh,
    /// `POST /devices/authenticate`.
    DeviceAuthenticate,
    /// `GET /auth/verify`, `POST /auth/verify-token`, `POST /api-keys/verify`,
    /// `POST /api-keys/verify-batch`.
    Verify,
}

impl Group {
    fn index(self) -> usize {
        self as usize
    }

    /// The group of a request, if it is limited.
    #[must_use]
    pub fn of(method: &Method, path: &str) -> Option<Self> {
        let path = path.strip_prefix("/api/v1")?;
        match (method.as_str(), path) {
            ("POST", "/auth/register") => Some(Self::Register),
            ("POST", "/auth/login") => Some(Self::Login),
            ("POST", "/auth/refresh") => Some(Self::Refresh),
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
    trusted_proxies: Vec<IpNet>,
    limiters: Option<[Arc<Limiter>; 5]>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("enabled", &self.limiters.is_some())
            .field("per_minute", &self.per_minute)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

impl RateLimits {
    /// Limits of `per_minute` per IP and group; `enabled = false` turns them off.
    #[must_use]
    pub fn new(enabled: bool, per_minute: NonZeroU32, trusted_proxies: Vec<IpNet>) -> Self {
        let limiter = || {
            Arc::new(
                RateLimiter::keyed(Quota::per_minute(per_minute))
                    .with_middleware::<StateInformationMiddleware>(),
            )
        };
        Self {
            per_minute,
            trusted_proxies,
            limiters: enabled.then(|| [limiter(), limiter(), limiter(), limiter(), limiter()]),
        }
    }

    /// Forgets clients whose allowance is whole again (bounds memory); call periodically.
    pub fn retain_recent(&self) {
        for limiter in self.limiters.iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// The client's address: the peer, or — when the peer is a trusted proxy — the right-most
    /// `X-Forwarded-For` entry that is not itself a trusted proxy.
    #[must_use]
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|net| net.contains(ip));
        let peer = peer?;
        if !trusted(&peer) {
            return Some(peer);
        }
        let Some(header) = forwarded_for else {
            return Some(peer);
        };
        let mut client = peer;
        for hop in header.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // A malformed entry ends the trusted chain: use what we have.
                break;
            };
            client = ip;
            if !trusted(&ip) {
                break;
            }
        }
        Some(client)
    }
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
    let Some(limiters) = &limits.limiters else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let Some(ip) = limits.client_ip(req.peer_addr().map(|a| a.ip()), forwarded) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let limit = u64::from(limits.per_minute.get());
    let seconds_per_token = 60.0 / limit as f64;
    match limiters[group.index()].check_key(&ip) {
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
            let mut res = actix_web::ResponseError::error_response(&ApiError::rate_limited(
                retry_after.max(1),
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
            trusted.iter().map(|t| t.parse().unwrap()).collect(),
        )
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let none = limits(&[]);
        assert_eq!(
            none.client_ip(Some(ip("10.0.0.1")), Some("1.2.3.4")),
            Some(ip("10.0.0.1"))
        );
        let lb = limits(&["10.0.0.0/8"]);
        assert_eq!(
            lb.client_ip(Some(ip("10.0.0.1")), Some("1.2.3.4")),
            Some(ip("1.2.3.4"))
        );
        // The client cannot spoof by prepending: the right-most untrusted hop wins.
        assert_eq!(
            lb.client_ip(Some(ip("10.0.0.1")), Some("6.6.6.6, 1.2.3.4, 10.0.0.7")),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(
            lb.client_ip(Some(ip("10.0.0.1")), None),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            lb.client_ip(Some(ip("10.0.0.1")), Some("garbage")),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            lb.client_ip(Some(ip("9.9.9.9")), Some("1.2.3.4")),
            Some(ip("9.9.9.9"))
        );
    }

    #[test]
    fn groups() {
        assert_eq!(
            Group::of(&Method::POST, "/api/v1/auth/login"),
            Some(Group::Login)
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
}
