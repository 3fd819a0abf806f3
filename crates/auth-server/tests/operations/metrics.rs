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
