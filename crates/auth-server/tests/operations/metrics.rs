//! `/metrics` of one server process: the counters move by exactly what this test did (no
//! other test shares the process), and the series the scrape writes itself hold the values
//! of this instance.

use std::time::Duration;

use auth_infra::test_support::TestDb;

use crate::harness::{PASSWORD, ServerProcess, metric, scrape, str_field, unique_email, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_exactly_what_the_requests_did() {
    let db = TestDb::empty().await;
    let server = ServerProcess::spawn(
        "metrics",
        Some(db.url()),
        &[("AUTH_LOCKOUT_THRESHOLD", "2")],
    )
    .await;
    within(Duration::from_secs(10), "ready", || async {
        server.get("/health/ready").await.status() == 200
    })
    .await;
    let before = scrape(&server).await;

    // One registration (one bcrypt hash), one login (one bcrypt verify).
    let (_, session) = server.user_with_session().await;
    // Two wrong passwords lock the email; the third attempt is refused as locked.
    let victim = unique_email("metrics");
    assert_eq!(server.register(&victim, PASSWORD).await.status(), 201);
    for expected in [401, 401, 429] {
        assert_eq!(
            server.login(&victim, "not the password").await.status(),
            expected
        );
    }
    // A rotated refresh token presented again.
    let refresh = str_field(&session, "refresh_token").to_owned();
    assert_eq!(server.refresh(&refresh).await.status(), 200);
    assert_eq!(server.refresh(&refresh).await.status(), 401);
    // One API key verified three times: one load, two cache hits.
    let (_, owner) = server.user_with_session().await;
    let owner_token = str_field(&owner, "access_token").to_owned();
    let org = server.new_org(&owner_token, "Metrics").await;
    let key = str_field(&server.create_key(&owner_token, &org, "m").await, "key").to_owned();
    for _ in 0..3 {
        assert_eq!(server.verify_key(&key).await["valid"], true);
    }
    // A path no route serves, and one with an id in it.
    assert_eq!(server.get("/no/such/path").await.status(), 404);
    let id = uuid::Uuid::new_v4().to_string();
    let res = server
        .get_auth(&format!("/api/v1/api-keys/{id}"), &owner_token)
        .await;
    assert_eq!(res.status(), 404);

    let after = scrape(&server).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        metric(&after, name, labels) - metric(&before, name, labels)
    };
    assert_eq!(delta("auth_logins_total", &[("outcome", "success")]), 2.0);
    assert_eq!(
        delta("auth_logins_total", &[("outcome", "invalid_credentials")]),
        2.0
    );
    assert_eq!(delta("auth_logins_total", &[("outcome", "locked")]), 1.0);
    assert_eq!(delta("auth_lockouts_total", &[]), 1.0);
    assert_eq!(delta("auth_refresh_reuse_detected_total", &[]), 1.0);
    // Three registrations hash; two successful and two failed logins verify (a locked
    // attempt runs no bcrypt).
    assert_eq!(
        delta("auth_bcrypt_duration_seconds_count", &[("op", "hash")]),
        3.0
    );
    assert_eq!(
        delta("auth_bcrypt_duration_seconds_count", &[("op", "verify")]),
        4.0
    );
    assert_eq!(
        delta("auth_bcrypt_queue_seconds_count", &[("op", "verify")]),
        4.0
    );
    let key_cache = [("cache", "api_keys")];
    assert_eq!(
        delta(
            "auth_cache_requests_total",
            &[key_cache[0], ("result", "miss")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "auth_cache_requests_total",
            &[key_cache[0], ("result", "hit")]
        ),
        2.0
    );
    assert_eq!(metric(&after, "auth_cache_entries", &key_cache), 1.0);
    assert_eq!(
        delta(
            "http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "http_requests_total",
            &[("route", "/api/v1/api-keys/{id}"), ("status", "404")]
        ),
        1.0
    );
    assert!(!after.contains(&id), "a raw id became a label");
    assert_eq!(
        delta(
            "http_requests_total",
            &[("route", "/api/v1/api-keys/verify"), ("status", "200")]
        ),
        3.0
    );
    assert!(delta("auth_db_pool_wait_seconds_count", &[]) >= 10.0);
    assert_eq!(metric(&after, "auth_db_circuit_state", &[]), 0.0);
    assert_eq!(
        metric(&after, "auth_invalidation_listener_connected", &[]),
        1.0
    );
    // Heartbeats cross the bus every second: the lag histogram fills with no revocation.
    within(
        Duration::from_secs(5),
        "invalidation lag observed",
        || async {
            metric(
                &scrape(&server).await,
                "auth_invalidation_lag_seconds_count",
                &[],
            ) > metric(&before, "auth_invalidation_lag_seconds_count", &[])
        },
    )
    .await;
    // A revocation reaches the listener as one invalidation of its kind.
    let received = |text: &str| {
        metric(
            text,
            "auth_invalidations_received_total",
            &[("kind", "api_key")],
        )
    };
    let list = server
        .get_auth(
            &format!("/api/v1/api-keys?organization_id={org}"),
            &owner_token,
        )
        .await
        .json::<serde_json::Value>()
        .await
        .expect("list");
    let key_id = list["items"][0]["id"].as_str().expect("key id").to_owned();
    let revoked = server
        .post_auth(
            &format!("/api/v1/api-keys/{key_id}/revoke"),
            &owner_token,
            None,
        )
        .await;
    assert_eq!(revoked.status(), 200);
    within(Duration::from_secs(5), "invalidation received", || async {
        received(&scrape(&server).await) > received(&after)
    })
    .await;
}

/// Every series of a scrape, by name and labels (values left out).
fn series(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

/// No request can create a metric series: made-up methods are labelled `OTHER` and unknown
/// paths `unmatched`, so once each was seen, more of them add nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cannot_create_series() {
    use reqwest::Method;
    let server = ServerProcess::spawn("series", None, &[]).await;
    let send = |method: &str, path: &str| {
        server
            .request(Method::from_bytes(method.as_bytes()).expect("method"), path)
            .send()
    };
    // One of each kind first: the series they need exist from then on.
    for (method, path) in [
        ("FOO", "/health/live"),
        ("FOO", "/no/such/path"),
        ("GET", "/no/such/path"),
        ("POST", "/health/live"),
        (
            "FOO",
            "/api/v1/api-keys/00000000-0000-7000-8000-000000000000",
        ),
    ] {
        send(method, path).await.expect("send");
    }
    scrape(&server).await;
    let before = series(&scrape(&server).await);
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("random");
    let random: String = random.iter().map(|b| char::from(b'A' + b % 26)).collect();
    for method in ["FOO", "BAR123", "PROPFIND", "MKCOL", random.as_str()] {
        for path in [
            "/health/live",
            "/no/such/path",
            &format!("/{method}/x"),
            "/api/v1/api-keys/00000000-0000-7000-8000-000000000000",
        ] {
            send(method, path).await.expect("send");
        }
    }
    for path in ["/no/such/path/2", "/x%41y", "/api/v1/../../etc"] {
        send("GET", path).await.expect("send");
    }
    let after_text = scrape(&server).await;
    let after = series(&after_text);
    let added: Vec<&String> = after.difference(&before).collect();
    assert!(added.is_empty(), "new series: {added:#?}");
    for made_up in ["BAR123", "PROPFIND", random.as_str()] {
        assert!(!after_text.contains(made_up), "{made_up} in\n{after_text}");
    }
    assert!(metric(&after_text, "http_requests_total", &[("method", "OTHER")]) >= 20.0);
}
