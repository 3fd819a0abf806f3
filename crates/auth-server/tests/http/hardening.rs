//! Rate limits, CORS, security headers, and a corpus of bad bodies sent to every endpoint
//! that takes one: only 4xx answers, never a 5xx, and nothing changes.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Backend, PASSWORD, TestApp, assert_problem, on_both_stores, unique_email};

on_both_stores!(bad_body_corpus_gets_only_4xx);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_ip_and_group_with_headers() {
    let app = TestApp::start_with(Backend::Memory, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.per_minute = 3;
    })
    .await;
    let email = unique_email();
    for i in 0..3 {
        let res = app.login(&email, PASSWORD).await;
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()["x-ratelimit-limit"], "3");
        assert_eq!(
            res.headers()["x-ratelimit-remaining"],
            (2 - i).to_string().as_str()
        );
        let reset: u64 = res.headers()["x-ratelimit-reset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&reset), "{reset}");
    }
    let res = app.login(&email, PASSWORD).await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
    assert_problem(res, 429, "RATE_LIMITED").await;

    // Other groups keep their own allowance; unlimited endpoints carry no headers.
    let res = app.register(&email, PASSWORD).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["x-ratelimit-remaining"], "2");
    let res = app.get("/health/live").await;
    assert!(res.headers().get("x-ratelimit-limit").is_none());

    // X-Forwarded-For is not believed from an untrusted peer: still limited.
    let res = app
        .request(Method::POST, "/api/v1/auth/login")
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    // A percent-encoded path reaches the same handler, so it counts against the same limit.
    for path in ["/api/v1/auth/logi%6E", "/api/v1/auth/%6Cogin"] {
        let res = app
            .request(Method::POST, path)
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 429, "RATE_LIMITED").await;
    }
    app.stop().await;

    // Behind a trusted proxy, each forwarded client has its own allowance.
    let app = TestApp::start_with(Backend::Memory, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.per_minute = 1;
        c.rate_limit.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let login_from = |client: &'static str| {
        app.request(Method::POST, "/api/v1/auth/login")
            .header("x-forwarded-for", client)
            .json(&json!({"email": "x@example.com", "password": PASSWORD}))
            .send()
    };
    assert_eq!(login_from("198.51.100.1").await.unwrap().status(), 401);
    assert_eq!(login_from("198.51.100.1").await.unwrap().status(), 429);
    assert_eq!(login_from("198.51.100.2").await.unwrap().status(), 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_only_for_configured_origins() {
    let app = TestApp::start(Backend::Memory).await;
    let res = app
        .request(Method::GET, "/health/live")
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(
        res.headers().get("access-control-allow-origin").is_none(),
        "no CORS by default"
    );
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert!(res.headers().get("server").is_none(), "no server header");
    app.stop().await;

    let app = TestApp::start_with(Backend::Memory, |c| {
        c.http.cors_origins = vec!["https://app.example.com".into()]
    })
    .await;
    let res = app
        .request(Method::OPTIONS, "/api/v1/auth/login")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let res = app
        .request(Method::GET, "/health/live")
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let res = app
        .request(Method::GET, "/health/live")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    app.stop().await;
}

/// Bodies every endpoint must refuse with a 4xx.
fn corpus() -> Vec<(&'static str, Option<&'static str>, Vec<u8>)> {
    let json = Some("application/json");
    let mut deep_obj = String::new();
    for _ in 0..10_000 {
        deep_obj.push_str("{\"a\":");
    }
    vec![
        ("truncated", json, b"{\"email\":".to_vec()),
        ("not json", json, b"hello".to_vec()),
        ("trailing garbage", json, b"{} {}".to_vec()),
        ("array", json, b"[1,2,3]".to_vec()),
        ("number", json, b"42".to_vec()),
        ("null", json, b"null".to_vec()),
        ("empty", json, Vec::new()),
        ("raw nul byte", json, b"{\"email\":\"a\x00b\"}".to_vec()),
        ("escaped nul everywhere", json, br#"{"email":"a\u0000@x.com","password":"p\u0000ssword!","refresh_token":"\u0000","token":"\u0000","key":"\u0000","name":"\u0000","device_id":"\u0000","device_secret":"\u0000","current_password":"\u0000","new_password":"\u0000","organization_id":"\u0000","scopes":["\u0000"],"items":[{"key":"\u0000"}],"role":"\u0000"}"#.to_vec()),
        ("wrong types", json, br#"{"email":1,"password":[],"refresh_token":{},"token":true,"key":2,"name":3,"device_id":4,"device_secret":5,"current_password":6,"new_password":7,"organization_id":8,"scopes":"x","items":"y","role":9,"metadata":10}"#.to_vec()),
        ("deep arrays", json, "[".repeat(10_000).into_bytes()),
        ("deep objects", json, deep_obj.into_bytes()),
        ("invalid utf-8", json, b"{\"email\":\"\xff\xfe\"}".to_vec()),
        ("oversized", json, format!("{{\"email\":\"{}\"}}", "a".repeat(70 * 1024)).into_bytes()),
        ("text/plain", Some("text/plain"), b"{}".to_vec()),
        ("form", Some("application/x-www-form-urlencoded"), b"email=a".to_vec()),
        ("xml", Some("application/xml"), b"<a/>".to_vec()),
        ("json-like suffix", Some("application/problem+json"), b"{}".to_vec()),
        ("no content type", None, b"{}".to_vec()),
        ("bad content type", Some(";;;"), b"{}".to_vec()),
    ]
}

async fn bad_body_corpus_gets_only_4xx(app: &TestApp) {
    let (_, login) = app.user_with_session().await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let doc: Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let mut endpoints = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if item
            .get("post")
            .is_some_and(|op| op.get("requestBody").is_some())
        {
            endpoints.push(
                path.replace("{id}", &uuid::Uuid::now_v7().to_string())
                    .replace("{org_id}", &uuid::Uuid::now_v7().to_string()),
            );
        }
    }
    assert!(endpoints.len() >= 12, "{endpoints:?}");
    let mut answers = 0;
    for path in &endpoints {
        for (label, content_type, body) in corpus() {
            let mut req = app
                .request(Method::POST, path)
                .bearer_auth(&token)
                .body(body);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            assert!((400..500).contains(&status), "{path} {label}: {status}");
            let ct = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            assert_eq!(ct, "application/problem+json", "{path} {label}");
            let body: Value = res.json().await.unwrap();
            let text = body.to_string().to_lowercase();
            for leak in ["serde", "diesel", "panicked", "sql", "postgres"] {
                assert!(!text.contains(leak), "{path} {label}: {body}");
            }
            answers += 1;
        }
    }
    assert!(answers >= 12 * 20);
    // Nothing changed: the account still has exactly the one session it had, and no other
    // account or organization appeared.
    let orgs: Value = app
        .get_auth("/api/v1/organizations", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(orgs["items"], json!([]));
    assert_eq!(
        app.get_auth("/api/v1/auth/verify", &token).await.status(),
        200
    );
}

/// The verification endpoints are the hot path of other services, often all behind one
/// address: by default they are not limited per IP (1,000 a minute from one address pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifications_are_not_limited_by_default() {
    let app = TestApp::start_with(Backend::Memory, |c| {
        c.rate_limit.enabled = true;
    })
    .await;
    let (_, session) = app.user_with_session().await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let calls = (0..200).map(|i| {
        let req = match i % 3 {
            0 => app
                .request(Method::GET, "/api/v1/auth/verify")
                .bearer_auth(&token),
            1 => app
                .request(Method::POST, "/api/v1/auth/verify-token")
                .json(&json!({"token": token})),
            _ => app
                .request(Method::POST, "/api/v1/api-keys/verify")
                .json(&json!({"key": "ak_live_nothing"})),
        };
        async move { req.send().await.unwrap() }
    });
    for res in futures::future::join_all(calls).await {
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("x-ratelimit-limit").is_none());
        assert!(res.headers().get("x-ratelimit-remaining").is_none());
    }
    app.stop().await;
}

/// Logout takes a refresh token like refresh does: both draw on one allowance, so logout
/// cannot be used to test refresh tokens beyond the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_shares_the_refresh_allowance() {
    let app = TestApp::start_with(Backend::Memory, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.per_minute = 2;
    })
    .await;
    let body = json!({"refresh_token": "not-a-token"});
    let res = app.post_json("/api/v1/auth/refresh", &body).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["x-ratelimit-remaining"], "1");
    let res = app.post_json("/api/v1/auth/logout", &body).await;
    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
    assert_problem(
        app.post_json("/api/v1/auth/logout", &body).await,
        429,
        "RATE_LIMITED",
    )
    .await;
    assert_problem(
        app.post_json("/api/v1/auth/refresh", &body).await,
        429,
        "RATE_LIMITED",
    )
    .await;
    app.stop().await;
}

/// Behind a trusted proxy, IPv6 clients are counted per /64, every `X-Forwarded-For` line
/// is read, and ports and IPv4-mapped forms are normalised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_clients_are_normalised_and_ipv6_counted_per_64() {
    let app = TestApp::start_with(Backend::Memory, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.per_minute = 1;
        c.rate_limit.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let login_from = |lines: &[&str]| {
        let mut req = app
            .request(Method::POST, "/api/v1/auth/login")
            .json(&json!({"email": "x@example.com", "password": PASSWORD}));
        for line in lines {
            req = req.header("x-forwarded-for", *line);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // Two addresses of one /64 share one allowance; the next /64 has its own.
    assert_eq!(login_from(&["2001:db8:1:2::1"]).await, 401);
    assert_eq!(login_from(&["[2001:db8:1:2:ffff::9]:443"]).await, 429);
    assert_eq!(login_from(&["2001:db8:1:3::1"]).await, 401);
    // A port and the IPv4-mapped form name the same client.
    assert_eq!(login_from(&["198.51.100.7:5000"]).await, 401);
    assert_eq!(login_from(&["::ffff:198.51.100.7"]).await, 429);
    // The last line is the right-most part of the list: a first line written by the client
    // does not choose the address that counts.
    assert_eq!(login_from(&["203.0.113.50"]).await, 401);
    assert_eq!(login_from(&["192.0.2.99", "203.0.113.50"]).await, 429);
    app.stop().await;
}

/// Counts probes and takes a while to answer, like a database round trip.
struct CountingProbe {
    probes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl auth_http::StoreProbe for CountingProbe {
    async fn probe(&self) -> auth_http::StoreHealth {
        self.probes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        auth_http::StoreHealth {
            kind: "memory",
            reachable: true,
            schema_current: true,
            latency: std::time::Duration::from_millis(50),
        }
    }
}

/// `/health` is unauthenticated: a hundred parallel calls must not become a hundred database
/// round trips. They share one recent probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_health_checks_share_one_probe() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let probes = std::sync::Arc::new(AtomicUsize::new(0));
    let app = TestApp::start_with_state(
        Backend::Memory,
        |_| {},
        |state| {
            let probe: std::sync::Arc<dyn auth_http::StoreProbe> =
                std::sync::Arc::new(CountingProbe {
                    probes: probes.clone(),
                });
            state.store = probe.into();
        },
    )
    .await;
    // Past the cache of the readiness checks made at start.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let before = probes.load(Ordering::SeqCst);
    let calls = (0..100).map(|_| app.get("/health"));
    for res in futures::future::join_all(calls).await {
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["components"]["database"]["status"], "healthy");
    }
    let during = probes.load(Ordering::SeqCst) - before;
    assert!(
        during <= 2,
        "{during} probes for 100 parallel /health calls"
    );
    app.stop().await;
}

/// A made-up API key with a valid checksum costs a database lookup on the management routes;
/// one address gets `AUTH_RATE_LIMIT_PER_MINUTE` failed key authentications a minute, then
/// 429 before any lookup, however many arrive at once (each is counted before its lookup).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_key_authentications_are_limited_per_address() {
    // On Postgres, where each lookup really waits on the database and parallel requests
    // overlap.
    let app = TestApp::start_with(Backend::Postgres, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.per_minute = 5;
    })
    .await;
    let prefix = auth_core::model::ApiKeyPrefix::parse("ak_live").unwrap();
    let made_up = || {
        let mut random = [0u8; 64];
        getrandom::fill(&mut random).unwrap();
        auth_core::model::ApiKeySecret::from_random(&prefix, &random)
            .unwrap()
            .expose()
            .to_owned()
    };
    let list = |key: String| {
        app.request(
            Method::GET,
            &format!("/api/v1/api-keys?organization_id={}", uuid::Uuid::now_v7()),
        )
        .header("x-api-key", key)
        .send()
    };
    let answers = futures::future::join_all((0..50).map(|_| list(made_up()))).await;
    let mut statuses: Vec<u16> = Vec::new();
    for res in answers {
        let res = res.unwrap();
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            let wait: u64 = res.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&wait), "{wait}");
            assert_problem(res, 429, "RATE_LIMITED").await;
        }
    }
    let unauthenticated = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((unauthenticated, limited), (5, 45), "{statuses:?}");
    // Bearer tokens are not counted here: they are signed, a made-up one costs no lookup.
    let (_, session) = app.user_with_session().await;
    let res = app
        .get_auth(
            &format!("/api/v1/api-keys?organization_id={}", uuid::Uuid::now_v7()),
            session["access_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(res.status(), 404);
    app.stop().await;
}

/// `AUTH_RATE_LIMIT_VERIFY_PER_MINUTE` puts the four verification endpoints under one
/// allowance of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_limit_applies_when_set() {
    let app = TestApp::start_with(Backend::Memory, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.verify_per_minute = 3;
    })
    .await;
    let (_, session) = app.user_with_session().await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let res = app.get_auth("/api/v1/auth/verify", &token).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-ratelimit-limit"], "3");
    assert_eq!(res.headers()["x-ratelimit-remaining"], "2");
    let res = app
        .post_json("/api/v1/auth/verify-token", &json!({"token": token}))
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .post_json("/api/v1/api-keys/verify", &json!({"key": "ak_live_x"}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
    let res = app
        .post_json(
            "/api/v1/api-keys/verify-batch",
            &json!({"items": [{"key": "ak_live_x"}]}),
        )
        .await;
    assert_problem(res, 429, "RATE_LIMITED").await;
    // Logins keep the general allowance.
    assert_eq!(app.login("x@example.com", PASSWORD).await.status(), 401);
    app.stop().await;
}
