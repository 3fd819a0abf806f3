//! Prometheus metrics: the process-wide recorder, the per-request middleware and
//! `GET /metrics`.
//!
//! Every crate records through the `metrics` facade (auth-core: login outcomes, lockouts,
//! refresh-token reuse, retention passes; auth-infra: caches, bcrypt, the pool and its
//! breaker, the invalidation listener; here: requests). [`handle`] installs the Prometheus recorder once per process;
//! `/metrics` renders it, after refreshing the gauges that are read rather than counted
//! (pool state, cache entries). The full list is in `docs/operations.md`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
        if let Err(err) = spawn_upkeep(handle.clone(), UPKEEP_INTERVAL) {
            tracing::error!(error = %err, "metrics upkeep not started; memory grows until /metrics is scraped");
        }
        handle
    })
}

/// How often histogram samples are folded into their buckets.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Folds pending histogram samples into their buckets every `every`, on a thread of its own.
///
/// The recorder keeps every sample of a histogram until it is folded, which otherwise happens
/// only when `/metrics` is rendered: with nobody scraping, memory grows with every request
/// (69 MB in 50 s at 73,000 requests/s). `PrometheusBuilder::build` starts such a task itself,
/// but it is not used here because it needs an exporter and a Tokio runtime; a plain thread
/// also runs before the runtime starts and is independent of it.
///
/// # Errors
/// When the thread cannot be started.
pub fn spawn_upkeep(
    handle: PrometheusHandle,
    every: Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                handle.run_upkeep();
            }
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
        "Time from a change (its event's time) to this instance applying its event"
    );
    describe_histogram!(
        "auth_notification_delay_seconds",
        Unit::Seconds,
        "Time from sending a notification (event or heartbeat) to receiving it"
    );
    describe_counter!(
        "auth_invalidations_received_total",
        "Cache invalidations applied from the event log, by kind"
    );
    describe_counter!(
        "auth_events_applied_total",
        "Events read from the event log and applied, by action"
    );
    describe_gauge!(
        "auth_event_log_position",
        "The highest event-log position this instance has read"
    );
    describe_counter!(
        "auth_invalidation_flushes_total",
        "Whole-cache flushes because events could not be followed one by one"
    );
    describe_gauge!(
        "auth_invalidation_listener_connected",
        "1 while this instance follows the event log (its caches can be trusted)"
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
    describe_counter!(
        "auth_db_key_lookups_total",
        "API keys looked up by hash one at a time (verifications the cache could not answer)"
    );
    describe_counter!(
        "auth_db_key_lookup_statements_total",
        "Statements those key lookups took (lookups arriving together share one)"
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
    describe_counter!(
        "auth_prune_runs_total",
        "Retention passes of this instance by outcome (completed, skipped: another pass held \
         the lock, failed)"
    );
    describe_counter!(
        "auth_prune_deleted_total",
        "Rows deleted by retention passes by table (sessions, refresh_tokens, login_attempts, \
         one_time_tokens, mfa_challenges, password_reset_requests, events, api_key_usage)"
    );
    describe_histogram!(
        "auth_prune_duration_seconds",
        Unit::Seconds,
        "Time of one retention pass that ran (completed or failed)"
    );
    describe_gauge!(
        "auth_prune_last_run_timestamp_seconds",
        Unit::Seconds,
        "Unix time at which this instance last completed a retention pass"
    );
}

/// The request series of one method, route template and status.
struct Series {
    method: &'static str,
    status: u16,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

thread_local! {
    /// This worker thread's request series by route template, looked up in the registry
    /// once each: the registry's lookup per request (labels allocated, hashed and compared)
    /// cost more than the rest of this middleware. Bounded by the routes, the fixed set of
    /// method labels and the statuses the service answers with.
    static SERIES: std::cell::RefCell<std::collections::HashMap<String, Vec<Series>>> =
        std::cell::RefCell::default();
}

impl Series {
    fn register(method: &'static str, route: &str, status: u16) -> Self {
        Self {
            method,
            status,
            requests: metrics::counter!(
                "http_requests_total",
                "method" => method,
                "route" => route.to_owned(),
                "status" => status.to_string()
            ),
            duration: metrics::histogram!(
                "http_request_duration_seconds",
                "method" => method,
                "route" => route.to_owned()
            ),
        }
    }

    fn observe(&self, elapsed: Duration) {
        self.requests.increment(1);
        self.duration.record(elapsed);
    }
}

/// Counts one request of `method` on `route` answered with `status`, taking `elapsed`.
fn observe(method: &'static str, route: String, status: u16, elapsed: Duration) {
    SERIES.with_borrow_mut(|series| {
        let known = series.get(route.as_str()).and_then(|of_route| {
            of_route
                .iter()
                .find(|s| s.method == method && s.status == status)
        });
        if let Some(known) = known {
            known.observe(elapsed);
            return;
        }
        let new = Series::register(method, &route, status);
        new.observe(elapsed);
        series.entry(route).or_default().push(new);
    });
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
    // A fixed set: a request with a made-up method must not create a series.
    let method = crate::methods::label(req.method());
    let res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    observe(method, route, res.status().as_u16(), started.elapsed());
    Ok(res)
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    operation_id = "metrics",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident memory of this process, in kB.
    fn rss_kb() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// Records `samples` histogram samples without rendering; returns the growth of resident
    /// memory in kB and the rendered count.
    fn record(samples: u64, upkeep: bool) -> (u64, u64) {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        if upkeep {
            spawn_upkeep(handle.clone(), Duration::from_millis(5)).unwrap();
        }
        let histogram =
            metrics::with_local_recorder(&recorder, || metrics::histogram!("upkeep_test_seconds"));
        let before = rss_kb();
        for _ in 0..samples {
            histogram.record(0.001);
        }
        let grown = rss_kb().saturating_sub(before);
        // Let a fold that is under way finish before reading the counts.
        std::thread::sleep(Duration::from_millis(50));
        let count = handle
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("upkeep_test_seconds_count "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        (grown, count)
    }

    /// With upkeep running, samples recorded with nobody rendering are folded into their
    /// buckets as they come: memory stays flat, and the counts stay exact. Without it, the
    /// same samples pile up (8 bytes each).
    #[test]
    fn upkeep_keeps_memory_flat_without_a_scrape() {
        const SAMPLES: u64 = 8_000_000;
        let (with_upkeep, count) = record(SAMPLES, true);
        // metrics-util's bucket can drop a sample pushed while it is being cleared (seen:
        // 0.4 % here, with a fold every 5 ms beside a tight loop; a scrape clears it the same
        // way). At one fold every 5 s beside real requests that is noise.
        assert!(count * 100 >= SAMPLES * 99, "{count} of {SAMPLES}");
        let (without, count) = record(SAMPLES, false);
        assert_eq!(count, SAMPLES);
        assert!(
            without > 40_000,
            "samples held until rendered: +{without} kB"
        );
        assert!(
            with_upkeep < 16_000,
            "with upkeep: +{with_upkeep} kB (without: +{without} kB)"
        );
    }
}
