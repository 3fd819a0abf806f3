//! `/metrics`: the Prometheus text an operator scrapes moves with what the service does.
//!
//! The recorder is global to the process and the tests of this binary run in parallel, so
//! these are lower bounds that other tests may also satisfy; the exact counts are checked on
//! a process of its own in `tests/operations/metrics.rs`. What only this test can cause is
//! checked here: route templates as labels and no secret in the text.

use reqwest::Method;
use serde_json::json;

use crate::api_keys::{create_key, verify};
use crate::common::{Backend, TestApp, str_field, unique_email};
use crate::organizations::new_org;

/// The sum of every series of `name` whose labels include all of `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

async fn scrape(app: &TestApp) -> String {
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    res.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_requests_logins_caches_and_the_pool() {
    let app = TestApp::start_with(Backend::Postgres, |c| {
        c.lockout.threshold = 2;
    })
    .await;
    let before = scrape(&app).await;

    // Requests by route template: an id in the path must not become a label value.
    let id = uuid::Uuid::new_v4().to_string();
    let (_, owner) = app.user_with_session().await;
    let token = str_field(&owner, "access_token").to_owned();
    let res = app
        .request(Method::GET, &format!("/api/v1/api-keys/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    app.get("/health/live").await;

    // Logins: one success (above), one wrong password, then a lockout.
    let email = unique_email();
    app.register(&email, "a fine passphrase").await;
    for _ in 0..3 {
        app.login(&email, "not the passphrase").await;
    }

    // Refresh-token reuse.
    let refresh = str_field(&owner, "refresh_token").to_owned();
    let first = app
        .post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh}))
        .await;
    assert_eq!(first.status(), 200);
    let reuse = app
        .post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh}))
        .await;
    assert_eq!(reuse.status(), 401);

    // The API-key cache: a miss, then hits.
    let (_, manager) = app.user_with_session().await;
    let manager_token = str_field(&manager, "access_token").to_owned();
    let org = new_org(&app, &manager_token, "Metrics Ltd").await;
    let created = create_key(&app, &manager_token, &org, json!(["a:read"])).await;
    let key = str_field(&created, "key").to_owned();
    for _ in 0..3 {
        assert_eq!(verify(&app, &key, json!([])).await["valid"], true);
    }

    let after = scrape(&app).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert!(
        delta(
            "http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/api/v1/api-keys/{id}"),
                ("status", "404")
            ]
        ) >= 1.0,
        "{after}"
    );
    assert!(!after.contains(&id), "a raw id became a label");
    assert!(
        delta(
            "http_request_duration_seconds_count",
            &[("route", "/health/live")]
        ) >= 1.0
    );
    assert!(delta("auth_logins_total", &[("outcome", "success")]) >= 1.0);
    assert!(delta("auth_logins_total", &[("outcome", "invalid_credentials")]) >= 2.0);
    assert!(delta("auth_logins_total", &[("outcome", "locked")]) >= 1.0);
    assert!(delta("auth_lockouts_total", &[]) >= 1.0);
    assert!(delta("auth_refresh_reuse_detected_total", &[]) >= 1.0);
    assert!(
        delta(
            "auth_cache_requests_total",
            &[("cache", "api_keys"), ("result", "miss")]
        ) >= 1.0
    );
    assert!(
        delta(
            "auth_cache_requests_total",
            &[("cache", "api_keys"), ("result", "hit")]
        ) >= 2.0
    );
    assert!(delta("auth_bcrypt_duration_seconds_count", &[("op", "verify")]) >= 4.0);
    assert!(delta("auth_db_pool_wait_seconds_count", &[]) >= 1.0);

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_hold_no_secret() {
    let app = TestApp::start(Backend::Postgres).await;
    let (_, session) = app.user_with_session().await;
    let token = str_field(&session, "access_token").to_owned();
    let refresh = str_field(&session, "refresh_token").to_owned();
    app.get_auth("/api/v1/auth/verify", &token).await;
    let text = scrape(&app).await;
    assert!(!text.contains(&token));
    assert!(!text.contains(&refresh));
    app.stop().await;
}
