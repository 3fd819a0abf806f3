//! `X-Request-Id`: accepted from the caller when well-formed, generated otherwise, echoed on
//! every response. The request runs inside the audit context of `auth_core::audit` (its id,
//! the client's address as the rate limits see it, and later its caller), so error bodies and
//! log lines can name the id and every event the request appends carries all three.

use std::net::IpAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use auth_core::audit::{self, RequestContext};
use tracing::Instrument as _;

use crate::state::AppState;

/// The header name.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served, if called within one.
#[must_use]
pub fn current() -> Option<String> {
    audit::request_id()
}

/// The client's address: the peer, or the address a trusted proxy forwarded for
/// (`AUTH_TRUSTED_PROXIES`), exactly as the rate limits count it (before grouping IPv6 per
/// /64).
fn client_ip(req: &ServiceRequest) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    match req.app_data::<web::Data<AppState>>() {
        Some(state) => state
            .rate_limits
            .client_ip(peer, crate::rate_limit::forwarded_lines(req.headers())),
        None => peer.map(|ip| ip.to_canonical()),
    }
}

/// True for 1..=128 characters of `[A-Za-z0-9._:-]`.
#[must_use]
pub fn is_acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Middleware: assigns the id, scopes it, logs the request's outcome.
///
/// # Errors
/// Passes through errors of the inner service.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_acceptable(v))
        .map_or_else(
            // A version-7 id (its millisecond first, so ids sort by arrival to the millisecond)
            // with random bits after it: no shared counter, hence no lock between worker threads.
            || {
                uuid::Uuid::new_v7(uuid::Timestamp::now(uuid::NoContext))
                    .simple()
                    .to_string()
            },
            str::to_owned,
        );
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = crate::methods::label(req.method()),
        path = %req.path(),
    );
    let started = std::time::Instant::now();
    // The header is made before the id moves into the context: one copy, not two.
    let header = HeaderValue::from_str(&id).ok();
    let context = RequestContext::new(id, client_ip(&req));
    // The inner services are called inside the scope too: whatever they do before their
    // first `.await` sees the context.
    let result = audit::scope(context, async move { next.call(req).await })
        .instrument(span.clone())
        .await;
    let mut res = result?;
    if let Some(value) = header {
        res.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    span.in_scope(|| {
        tracing::info!(
            status = res.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "request finished"
        );
    });
    Ok(res)
}
