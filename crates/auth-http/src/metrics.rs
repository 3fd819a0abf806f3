//! Prometheus metrics: the process-wide recorder, the per-request middleware and
//! `GET /metrics`.
//!
//! Every crate records through the `metrics` facade (auth-core: login outcomes, lockouts,
//! refresh-token reuse; auth-infra: caches, bcrypt, the pool and its breaker, the invalidation
//! listener; here: requests). [`handle`] installs the Prometheus recorder once per process;
//! `/metrics` renders it, after refreshing the gauges that are read rather than counted
//! (pool state, cache entries). The full list is in `docs/operations.md`.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::ContentType;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, get, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// Histogram buckets in seconds, from 100 µs (a cached verification) to 10 s (a timeout).
const BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use.
///
/// When the embedding program already installed another global recorder, this one is not
/// installed: `/metrics` then answers with what it holds (nothing) and a warning is logged.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        describe();
        handle
    })
}

/// Help texts, shown by Prometheus next to each metric.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "http_requests_total",
        "HTTP requests by method, route template and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method and route template"
    );
    describe_counter!(
        "auth_logins_total",
        "Login attempts by outcome (success, invalid_credentials, locked, unavailable, error)"
    );
    describe_counter!("auth_lockouts_total", "Accounts that became locked");
    describe_counter!(
        "auth_refresh_reuse_detected_total",
        "Rotated refresh tokens presented again (their sessions ended)"
    );
    describe_counter!(
        "auth_cache_requests_total",
        "Verification cache lookups by cache and result (hit, miss)"
    );
    describe_counter!(
        "auth_cache_evictions_total",
        "Verification cache removals by cache and cause (size, expired, explicit, replaced)"
    );
    describe_gauge!(
        "auth_cache_entries",
        "Entries held by each verification cache"
    );
    describe_histogram!(
        "auth_invalidation_lag_seconds",
        Unit::Seconds,
        "Time from publishing an invalidation (or heartbeat) to receiving it"
    );
    describe_counter!(
        "auth_invalidations_received_total",
        "Invalidations received from the bus by kind"
    );
    describe_gauge!(
        "auth_invalidation_listener_connected",
        "1 while the invalidation listener is connected"
    );
    describe_counter!(
        "auth_invalidation_listener_connects_total",
        "Connections (and reconnections) of the invalidation listener"
    );
    describe_gauge!(
        "auth_db_pool_connections",
        "Database connections by state (idle, in_use)"
    );
    describe_gauge!("auth_db_pool_max_connections", "Configured pool size");
    describe_gauge!("auth_db_pool_waiting", "Requests waiting for a connection");
    describe_histogram!(
        "auth_db_pool_wait_seconds",
        Unit::Seconds,
        "Time to get a database connection (including failures)"
    );
    describe_gauge!(
        "auth_db_circuit_state",
        "Database circuit breaker: 0 closed, 1 open, 2 half-open"
    );
    describe_counter!(
        "auth_db_circuit_opened_total",
        "Times the database circuit breaker opened"
    );
    describe_counter!(
        "auth_db_circuit_rejections_total",
        "Database calls refused at once by the open breaker"
    );
    describe_histogram!(
        "auth_bcrypt_duration_seconds",
        Unit::Seconds,
        "Time of one bcrypt hash or verification by op"
    );
    describe_histogram!(
        "auth_bcrypt_queue_seconds",
        Unit::Seconds,
        "Time waiting for a bcrypt slot by op"
    );
}

/// Middleware: counts every request by method, route template (never the raw path, so ids
/// do not explode the series) and status, and observes its latency.
///
/// # Errors
/// Passes through errors of the inner service.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = res.status().as_u16().to_string();
    metrics::counter!(
        "http_requests_total",
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status
    )
    .increment(1);
    metrics::histogram!(
        "http_request_duration_seconds",
        "method" => method,
        "route" => route
    )
    .record(started.elapsed());
    Ok(res)
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    tag = "service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4", body = String))
)]
#[get("/metrics")]
pub async fn scrape(state: web::Data<AppState>) -> HttpResponse {
    state.store.record_metrics();
    let caches = &state.caches;
    for (name, entries) in [
        ("api_keys", caches.keys.entry_count().await),
        ("sessions", caches.sessions.entry_count().await),
        ("devices", caches.devices.entry_count().await),
    ] {
        #[expect(
            clippy::cast_precision_loss,
            reason = "entry counts are far below 2^52"
        )]
        metrics::gauge!("auth_cache_entries", "cache" => name).set(entries as f64);
    }
    HttpResponse::Ok()
        .insert_header(ContentType(
            "text/plain; version=0.0.4; charset=utf-8"
                .parse()
                .unwrap_or(mime::TEXT_PLAIN_UTF_8),
        ))
        .body(handle().render())
}
