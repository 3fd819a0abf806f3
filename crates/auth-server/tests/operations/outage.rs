//! A Postgres outage as an operator lives it: the test owns a Postgres cluster, stops it under
//! a running `auth-server` while a client keeps registering users, and starts it again.
//! Requests that need the database must fail fast with a 503 the client can act on, cached
//! verdicts keep answering, readiness follows the database, and no acknowledged write is lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    OwnedPostgres, PASSWORD, ServerProcess, assert_unavailable, check_metrics, client, metric,
    scrape, str_field, timed, unique_email, within,
};

/// Each answer during the outage must arrive within 2 s: this is the fail-fast behaviour an
/// operator relies on (clients and load balancers time out, retry or fail over on a quick
/// 503; a request hanging on a dead database ties up connections and threads), not a speed
/// benchmark. The extra 0.5 s is slack for scheduling on a loaded 2-core test machine.
const FAIL_FAST: Duration = Duration::from_millis(2500);

/// How long the database stays down (at least): long enough for pooled connections to be
/// found dead, reconnects to back off and a breaker to open and probe.
const MIN_OUTAGE: Duration = Duration::from_secs(3);

/// Readiness must come back within 10 s of the database.
const RECOVERY: Duration = Duration::from_secs(10);

/// What the background writer saw.
#[derive(Debug, Default)]
struct WriterReport {
    /// Emails whose registration answered 201, and when each answer arrived.
    acknowledged: Vec<String>,
    acknowledged_at: Vec<Instant>,
    /// Emails whose registration got any other answer (or none).
    unacknowledged: Vec<String>,
    /// Answers by status (or transport error).
    statuses: BTreeMap<String, usize>,
    /// Slowest answer of all, and slowest 503.
    slowest: Duration,
    slowest_503: Duration,
}

/// Live counters the test watches while the writer runs.
#[derive(Debug, Default)]
struct WriterCounters {
    stop: AtomicBool,
    acknowledged: AtomicUsize,
    unavailable: AtomicUsize,
}

/// Registers users in a loop, one new email each time, until told to stop.
fn start_writer(base: String) -> (Arc<WriterCounters>, tokio::task::JoinHandle<WriterReport>) {
    let counters = Arc::new(WriterCounters::default());
    let task = tokio::spawn({
        let counters = counters.clone();
        async move {
            let client = client();
            let mut report = WriterReport::default();
            while !counters.stop.load(Ordering::SeqCst) {
                let email = unique_email("writer");
                let start = Instant::now();
                let res = client
                    .post(format!("{base}/api/v1/auth/register"))
                    .json(&json!({"email": email, "password": PASSWORD}))
                    .send()
                    .await;
                let took = start.elapsed();
                report.slowest = report.slowest.max(took);
                let key = match res {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        if status == 201 {
                            report.acknowledged.push(email);
                            report.acknowledged_at.push(Instant::now());
                            counters.acknowledged.fetch_add(1, Ordering::SeqCst);
                        } else {
                            report.unacknowledged.push(email);
                        }
                        if status == 503 {
                            counters.unavailable.fetch_add(1, Ordering::SeqCst);
                            report.slowest_503 = report.slowest_503.max(took);
                        }
                        status.to_string()
                    }
                    Err(err) => {
                        report.unacknowledged.push(email);
                        format!("transport error: {err}")
                    }
                };
                *report.statuses.entry(key).or_default() += 1;
                // Pacing, not waiting for anything: a steady trickle of writes, without a
                // busy loop of fast 503s starving the 2-core machine.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            report
        }
    });
    (counters, task)
}

async fn ready_status(server: &ServerProcess) -> u16 {
    server.get("/health/ready").await.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_fails_fast_keeps_cached_verdicts_and_loses_no_acknowledged_write() {
    let pg = OwnedPostgres::start().await;
    let server = ServerProcess::spawn("outage", Some(&pg.url), &[("LOG_LEVEL", "warn")]).await;
    within(Duration::from_secs(15), "ready at start", || async {
        ready_status(&server).await == 200
    })
    .await;
    // Soft checks of the metrics being added now: collected and asserted at the very end, so
    // that their absence does not hide how the rest of the outage behaves.
    let mut metric_problems = Vec::new();

    // Warm-up while the database is up: a user with a session, an organization, two keys
    // (one verified here, so cached; one never seen by the verifier).
    let (email, login) = server.user_with_session().await;
    let access = str_field(&login, "access_token").to_owned();
    let refresh_token = str_field(&login, "refresh_token").to_owned();
    let org = server.new_org(&access, "Outage Ltd").await;
    let warm_key = str_field(&server.create_key(&access, &org, "warm").await, "key").to_owned();
    let cold_key = str_field(&server.create_key(&access, &org, "cold").await, "key").to_owned();
    assert_eq!(server.verify_key(&warm_key).await["valid"], true);
    assert_eq!(
        server
            .get_auth("/api/v1/auth/verify", &access)
            .await
            .status(),
        200
    );
    assert_eq!(server.verify_token(&access).await["valid"], true);

    let (counters, writer) = start_writer(server.base.clone());
    within(
        Duration::from_secs(10),
        "writer acknowledged before the outage",
        || async { counters.acknowledged.load(Ordering::SeqCst) >= 5 },
    )
    .await;

    // ---- Outage ----
    pg.pause().await;
    let paused_at = Instant::now();
    let ready_down = within(
        Duration::from_secs(5),
        "ready 503 in the outage",
        || async { ready_status(&server).await == 503 },
    )
    .await;
    assert_eq!(server.get("/health/live").await.status(), 200, "live");

    // Requests that need the database, a round every 250 ms for at least MIN_OUTAGE: the
    // answers must stay fast however long the outage lasts (pool, reconnects, breaker).
    let mut latencies: Vec<(&str, Duration)> = Vec::new();
    let mut round = 0;
    while round < 3 || paused_at.elapsed() < MIN_OUTAGE {
        let (res, took) = timed(server.register(&unique_email("outage"), PASSWORD)).await;
        assert_unavailable(res, &format!("register in the outage (round {round})")).await;
        latencies.push(("register", took));
        let (res, took) = timed(server.login(&email, PASSWORD)).await;
        assert_unavailable(res, &format!("login in the outage (round {round})")).await;
        latencies.push(("login", took));
        let (res, took) = timed(server.refresh(&refresh_token)).await;
        assert_unavailable(res, &format!("refresh in the outage (round {round})")).await;
        latencies.push(("refresh", took));
        // A key this instance has never seen: 503, never valid:false.
        let (res, took) =
            timed(server.post_json("/api/v1/api-keys/verify", &json!({"key": cold_key}))).await;
        assert_unavailable(res, &format!("uncached key in the outage (round {round})")).await;
        latencies.push(("verify uncached key", took));
        round += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (what, took) in &latencies {
        assert!(
            *took <= FAIL_FAST,
            "{what} took {took:?} in the outage (fail-fast budget {FAIL_FAST:?})"
        );
    }

    assert_eq!(
        ready_status(&server).await,
        503,
        "ready at the end of the outage"
    );
    assert_eq!(server.get("/health/live").await.status(), 200, "live");
    // What was checked while the database was up keeps answering from the cache.
    let res = server.get_auth("/api/v1/auth/verify", &access).await;
    assert_eq!(res.status(), 200, "cached session on /auth/verify");
    let body: Value = res.json().await.expect("verify body");
    assert_eq!(body["valid"], true, "{body}");
    let body = server.verify_token(&access).await;
    assert_eq!(
        body["valid"], true,
        "cached session on verify-token: {body}"
    );
    assert_eq!(body["token_type"], "user", "{body}");
    let body = server.verify_key(&warm_key).await;
    assert_eq!(body["valid"], true, "cached key in the outage: {body}");

    // The writer keeps going and is answered 503.
    let seen_503 = counters.unavailable.load(Ordering::SeqCst);
    within(
        Duration::from_secs(5),
        "writer answered 503 in the outage",
        || async { counters.unavailable.load(Ordering::SeqCst) >= seen_503 + 3 },
    )
    .await;
    if let Err(e) = check_metrics(&server, &["http_requests_total"]).await {
        metric_problems.push(format!("during the outage: {e}"));
    }
    // The breaker opened (it may be half-open at this instant, probing).
    let during = scrape(&server).await;
    assert!(
        metric(&during, "auth_db_circuit_opened_total", &[]) >= 1.0,
        "breaker never opened"
    );
    assert!(metric(&during, "auth_db_circuit_rejections_total", &[]) >= 1.0);
    assert_ne!(
        metric(&during, "auth_db_circuit_state", &[]),
        0.0,
        "breaker closed during the outage"
    );
    let outage_lasted = paused_at.elapsed();

    // ---- Recovery ----
    pg.resume().await;
    let resumed_at = Instant::now();
    let recovery = within(RECOVERY, "ready after the database returned", || async {
        ready_status(&server).await == 200
    })
    .await;
    let fresh = unique_email("after");
    assert_eq!(
        server.register(&fresh, PASSWORD).await.status(),
        201,
        "register after recovery"
    );
    assert_eq!(
        server.login(&fresh, PASSWORD).await.status(),
        200,
        "login after recovery"
    );
    // The refreshes refused in the outage changed nothing: the token still rotates once.
    let res = server.refresh(&refresh_token).await;
    assert_eq!(
        res.status(),
        200,
        "the refresh token refused with 503 still works after recovery"
    );
    let acknowledged_so_far = counters.acknowledged.load(Ordering::SeqCst);
    within(
        Duration::from_secs(5),
        "writer acknowledged after recovery",
        || async { counters.acknowledged.load(Ordering::SeqCst) >= acknowledged_so_far + 3 },
    )
    .await;
    counters.stop.store(true, Ordering::SeqCst);
    let report = writer.await.expect("writer task");

    // Every answer the writer got was a 201 or a 503: no 500, no 401, no transport error.
    let odd: Vec<_> = report
        .statuses
        .iter()
        .filter(|(k, _)| k.as_str() != "201" && k.as_str() != "503")
        .collect();
    assert!(
        odd.is_empty(),
        "writer got answers other than 201/503: {odd:?}\n{}",
        server.log_tail(30)
    );
    assert!(
        report.slowest_503 <= FAIL_FAST,
        "slowest 503 to the writer took {:?}",
        report.slowest_503
    );

    // No acknowledged write is lost: every 201 can log in.
    let lost: Vec<String> = futures::stream::iter(report.acknowledged.iter().cloned())
        .map(|email| {
            let server = &server;
            async move {
                let status = server.login(&email, PASSWORD).await.status();
                (status != 200).then(|| format!("{email}: {status}"))
            }
        })
        .buffer_unordered(8)
        .filter_map(std::future::ready)
        .collect()
        .await;
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged registrations cannot log in: {lost:?}",
        lost.len(),
        report.acknowledged.len()
    );
    // Unacknowledged writes may or may not have landed (a commit whose answer was lost is
    // allowed); count them for the report only.
    let landed_anyway = futures::stream::iter(report.unacknowledged.iter().cloned())
        .map(|email| {
            let server = &server;
            async move { server.login(&email, PASSWORD).await.status() == 200 }
        })
        .buffer_unordered(8)
        .filter(|landed| std::future::ready(*landed))
        .count()
        .await;

    if let Err(e) = check_metrics(&server, &["http_requests_total", "auth_db_circuit_state"]).await
    {
        metric_problems.push(format!("after recovery: {e}"));
    }
    assert_eq!(
        metric(&scrape(&server).await, "auth_db_circuit_state", &[]),
        0.0,
        "breaker still open after recovery"
    );

    // When writes came back (the writer's first 201 after the resume): reported, not
    // asserted; readiness is the operator's signal.
    let writes_back = report
        .acknowledged_at
        .iter()
        .find(|t| **t >= resumed_at)
        .map(|t| t.duration_since(resumed_at));
    let max = |what: &str| {
        latencies
            .iter()
            .filter(|(w, _)| *w == what)
            .map(|(_, d)| *d)
            .max()
            .unwrap_or_default()
    };
    eprintln!(
        "outage report: ready went 503 {ready_down:?} after pause; slowest 503 answers: \
         register {:?}, login {:?}, refresh {:?}, uncached key {:?}, writer {:?}; outage \
         lasted {outage_lasted:?}; ready {recovery:?} after resume, first acknowledged write \
         {writes_back:?} after resume; writer answers \
         {:?}; {} acknowledged writes all present; {} unacknowledged of which {landed_anyway} \
         landed anyway; slowest writer answer {:?}",
        max("register"),
        max("login"),
        max("refresh"),
        max("verify uncached key"),
        report.slowest_503,
        report.statuses,
        report.acknowledged.len(),
        report.unacknowledged.len(),
        report.slowest,
    );
    assert!(metric_problems.is_empty(), "metrics: {metric_problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_while_postgres_is_down_is_live_and_gets_ready_when_it_returns() {
    let pg = OwnedPostgres::start().await;
    pg.pause().await;
    // The harness returns once /health/live answers: the process serves without a database.
    let server = ServerProcess::spawn("cold-start", Some(&pg.url), &[("LOG_LEVEL", "warn")]).await;
    assert_eq!(server.get("/health/live").await.status(), 200, "live");
    assert_eq!(ready_status(&server).await, 503, "ready without a database");
    let (res, took) = timed(server.register(&unique_email("cold"), PASSWORD)).await;
    assert_unavailable(res, "register before the database ever answered").await;
    assert!(
        took <= FAIL_FAST,
        "register took {took:?} (fail-fast budget {FAIL_FAST:?})"
    );
    let (res, login_took) = timed(server.login(&unique_email("cold"), PASSWORD)).await;
    assert_unavailable(res, "login before the database ever answered").await;
    assert!(login_took <= FAIL_FAST, "login took {login_took:?}");

    pg.resume().await;
    let recovery = within(RECOVERY, "ready after the database came up", || async {
        ready_status(&server).await == 200
    })
    .await;
    assert_eq!(
        server
            .register(&unique_email("cold"), PASSWORD)
            .await
            .status(),
        201,
        "register once ready\n{}",
        server.log_tail(20)
    );
    eprintln!(
        "cold start report: 503 answers took register {took:?}, login {login_took:?}; \
         ready {recovery:?} after the database came up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_postgres_answers_503_fast_and_recovers_when_it_thaws() {
    let pg = OwnedPostgres::start().await;
    let server = ServerProcess::spawn("frozen", Some(&pg.url), &[]).await;
    within(RECOVERY, "ready before the freeze", || async {
        server.get("/health/ready").await.status() == 200
    })
    .await;
    // Warm the pool: the requests below find open connections that no longer answer.
    let email = unique_email("frozen");
    assert_eq!(server.register(&email, PASSWORD).await.status(), 201);
    assert_eq!(server.login(&email, PASSWORD).await.status(), 200);

    pg.freeze().await;
    for what in ["login", "ready", "login again"] {
        let request = if what == "ready" {
            server.request(Method::GET, "/health/ready")
        } else {
            server
                .request(Method::POST, "/api/v1/auth/login")
                .json(&json!({"email": email, "password": PASSWORD}))
        };
        let (res, took) = timed(async { request.send().await.expect("an answer") }).await;
        assert!(
            took <= FAIL_FAST,
            "{what} took {took:?} on a frozen database"
        );
        assert_eq!(res.status(), 503, "{what}");
        assert!(res.headers().contains_key("retry-after"), "{what}");
    }
    assert_eq!(server.get("/health/live").await.status(), 200);

    pg.thaw().await;
    within(RECOVERY, "ready after the thaw", || async {
        server.get("/health/ready").await.status() == 200
    })
    .await;
    within(RECOVERY, "login after the thaw", || async {
        server.login(&email, PASSWORD).await.status() == 200
    })
    .await;
}
