//! Several instances on one Postgres: revocations and ended sessions reach every instance
//! within a second; a database outage is a 503, never a cached or invented verdict.

use std::time::{Duration, Instant};

use auth_infra::test_support::TestDb;
use auth_infra::test_support::smtp::SmtpSink;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::api_keys::{create_key, verify};
use crate::common::{PgProxy, TestApp, assert_problem, pg_addr, str_field, test_config};
use crate::organizations::new_org;

async fn two_instances() -> (TestApp, TestApp, TestDb) {
    let db = TestDb::new().await;
    let mut config = test_config();
    config.db.url = Some(SecretString::from(db.url().to_owned()));
    let a = TestApp::serve(config.clone(), None).await;
    let b = TestApp::serve(config, None).await;
    assert_eq!(a.get("/health/ready").await.status(), 200);
    assert_eq!(b.get("/health/ready").await.status(), 200);
    (a, b, db)
}

/// Polls `check` until it holds, returning how long it took; fails after `limit`.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_instance_is_rejected_by_the_other_within_a_second() {
    let (a, b, _db) = two_instances().await;
    let (_, owner) = a.user_with_session().await;
    let token = str_field(&owner, "access_token");
    let org = new_org(&a, token, "Two Instances").await;
    let created = create_key(&a, token, &org, json!(["read"])).await;
    let key = str_field(&created, "key");
    // B caches the key as valid.
    assert_eq!(verify(&b, key, json!([])).await["valid"], true);
    let health: Value = b.get("/health").await.json().await.unwrap();
    assert!(
        health["components"]["cache"]["entries"].as_u64().unwrap() >= 1,
        "{health}"
    );

    let res = a
        .post_auth(
            &format!("/api/v1/api-keys/{}/revoke", str_field(&created, "id")),
            token,
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    // A rejects at once; B within a second.
    assert_eq!(verify(&a, key, json!([])).await["error"], "REVOKED");
    let took = within(Duration::from_secs(1), || async {
        verify(&b, key, json!([])).await["error"] == "REVOKED"
    })
    .await;
    eprintln!("revocation reached the second instance in {took:?}");

    // Rotation too.
    let second = create_key(&a, token, &org, json!(["read"])).await;
    let second_key = str_field(&second, "key");
    assert_eq!(verify(&b, second_key, json!([])).await["valid"], true);
    let res = b
        .post_auth(
            &format!("/api/v1/api-keys/{}/rotate", str_field(&second, "id")),
            token,
            None,
        )
        .await;
    assert_eq!(res.status(), 201);
    within(Duration::from_secs(1), || async {
        verify(&a, second_key, json!([])).await["error"] == "REVOKED"
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_changed_on_one_instance_is_answered_changed_by_the_other_within_a_second() {
    let (a, b, _db) = two_instances().await;
    let (_, owner) = a.user_with_session().await;
    let token = str_field(&owner, "access_token");
    let org = new_org(&a, token, "Two Instances").await;
    let created = create_key(&a, token, &org, json!(["read", "write"])).await;
    let (id, key) = (str_field(&created, "id"), str_field(&created, "key"));
    // B caches the key as valid for `write`, without meta.
    assert_eq!(verify(&b, key, json!(["write"])).await["valid"], true);

    let res = crate::key_products::patch(
        &a,
        token,
        id,
        &json!({"scopes": ["read"], "meta": {"plan": "pro"}, "external_id": "cus_9"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        verify(&a, key, json!(["write"])).await["error"],
        "INSUFFICIENT_SCOPE"
    );
    let took = within(Duration::from_secs(1), || async {
        verify(&b, key, json!(["write"])).await["error"] == "INSUFFICIENT_SCOPE"
    })
    .await;
    eprintln!("a change reached the second instance in {took:?}");
    let verdict = verify(&b, key, json!(["read"])).await;
    assert_eq!(
        (&verdict["meta"], &verdict["external_id"]),
        (&json!({"plan": "pro"}), &json!("cus_9"))
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_on_one_instance_ends_on_the_other_within_a_second() {
    let (a, b, _db) = two_instances().await;
    let (email, first) = a.user_with_session().await;
    let at = str_field(&first, "access_token");
    assert_eq!(b.get_auth("/api/v1/auth/verify", at).await.status(), 200);
    a.post_json(
        "/api/v1/auth/logout",
        &json!({"refresh_token": first["refresh_token"]}),
    )
    .await;
    assert_eq!(a.get_auth("/api/v1/auth/verify", at).await.status(), 401);
    within(Duration::from_secs(1), || async {
        b.get_auth("/api/v1/auth/verify", at).await.status() == 401
    })
    .await;

    // logout-all on B, seen on A; verify-token agrees.
    let s1: Value = a
        .login(&email, crate::common::PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let s2: Value = a
        .login(&email, crate::common::PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let t1 = str_field(&s1, "access_token");
    assert_eq!(a.get_auth("/api/v1/auth/verify", t1).await.status(), 200);
    let res = b
        .post_auth(
            "/api/v1/auth/logout-all",
            str_field(&s2, "access_token"),
            None,
        )
        .await;
    assert_eq!(res.status(), 204);
    within(Duration::from_secs(1), || async {
        let v: Value = a
            .post_json("/api/v1/auth/verify-token", &json!({"token": t1}))
            .await
            .json()
            .await
            .unwrap();
        v["error"] == "REVOKED"
    })
    .await;

    // Refresh-token reuse detected on B ends the session on A.
    let s3: Value = a
        .login(&email, crate::common::PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let t3 = str_field(&s3, "access_token");
    assert_eq!(a.get_auth("/api/v1/auth/verify", t3).await.status(), 200);
    let rt = s3["refresh_token"].clone();
    assert_eq!(
        b.post_json("/api/v1/auth/refresh", &json!({"refresh_token": rt}))
            .await
            .status(),
        200
    );
    assert_eq!(
        b.post_json("/api/v1/auth/refresh", &json!({"refresh_token": rt}))
            .await
            .status(),
        401
    );
    within(Duration::from_secs(1), || async {
        a.get_auth("/api/v1/auth/verify", t3).await.status() == 401
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_revoked_on_one_instance_has_its_tokens_refused_by_the_other_within_a_second() {
    let (a, b, _db) = two_instances().await;
    let (token, org) = crate::devices::owner_and_org(&a).await;
    let reg = crate::devices::register(&a, &token, &org, "frame-two-instances").await;
    let secret = str_field(&reg, "device_secret");
    // Authenticated on B (now cached there), verified on B.
    let auth: Value = crate::devices::authenticate(&b, "frame-two-instances", secret)
        .await
        .json()
        .await
        .unwrap();
    let dt = str_field(&auth, "access_token");
    assert_eq!(crate::devices::verify_token(&b, dt).await["valid"], true);

    let res = a
        .post_auth("/api/v1/devices/frame-two-instances/revoke", &token, None)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        crate::devices::verify_token(&a, dt).await["error"],
        "REVOKED"
    );
    let took = within(Duration::from_secs(1), || async {
        crate::devices::verify_token(&b, dt).await["error"] == "REVOKED"
    })
    .await;
    eprintln!("device revocation reached the second instance in {took:?}");
    assert_eq!(
        crate::devices::authenticate(&b, "frame-two-instances", secret)
            .await
            .status(),
        401
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_secret_rotated_on_one_instance_ends_its_tokens_on_the_other_within_a_second() {
    let (a, b, _db) = two_instances().await;
    let (token, org) = crate::devices::owner_and_org(&a).await;
    let id = "frame-rotated-two-instances";
    let reg = crate::devices::register(&a, &token, &org, id).await;
    let secret = str_field(&reg, "device_secret");
    // Authenticated and verified on B, so B has the device cached as it was.
    let auth: Value = crate::devices::authenticate(&b, id, secret)
        .await
        .json()
        .await
        .unwrap();
    let dt = str_field(&auth, "access_token");
    assert_eq!(crate::devices::verify_token(&b, dt).await["valid"], true);

    let res = a
        .post_auth(&format!("/api/v1/devices/{id}/rotate-secret"), &token, None)
        .await;
    assert_eq!(res.status(), 200);
    let rotated: Value = res.json().await.unwrap();
    assert_eq!(
        crate::devices::verify_token(&a, dt).await,
        json!({"valid": false, "error": "REVOKED"})
    );
    let took = within(Duration::from_secs(1), || async {
        crate::devices::verify_token(&b, dt).await["error"] == "REVOKED"
    })
    .await;
    eprintln!("secret rotation reached the second instance in {took:?}");
    // A token from the new secret, minted on B, verifies on both.
    let fresh: Value = crate::devices::authenticate(&b, id, str_field(&rotated, "device_secret"))
        .await
        .json()
        .await
        .unwrap();
    let fresh = str_field(&fresh, "access_token");
    for app in [&a, &b] {
        assert_eq!(
            crate::devices::verify_token(app, fresh).await["valid"],
            true
        );
    }
    a.stop().await;
    b.stop().await;
}

/// A password reset confirmed on A ends the user's sessions on B within a second (B had the
/// session cached); the link, mailed by A's worker, works once across both instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_on_one_instance_ends_sessions_on_the_other_within_a_second() {
    let smtp = SmtpSink::start();
    let db = TestDb::new().await;
    let mut config = test_config();
    config.db.url = Some(SecretString::from(db.url().to_owned()));
    let b = TestApp::serve(config.clone(), None).await;
    config.mail.smtp_url = Some(SecretString::from(smtp.url()));
    let a = TestApp::serve_mailing(config, None).await;
    let (email, login) = b.user_with_session().await;
    let at = str_field(&login, "access_token");
    assert_eq!(b.get_auth("/api/v1/auth/verify", at).await.status(), 200);

    // Asked on B (which runs no worker): A's worker sends it.
    let res = b
        .post_json("/api/v1/auth/password-reset", &json!({"email": email}))
        .await;
    assert_eq!(res.status(), 202);
    let mails = smtp.wait_for(&email, 2, Duration::from_secs(15)).await;
    let reset = mails
        .iter()
        .find_map(|m| m.token(&a.url("/reset-password#token=")))
        .expect("a reset link");
    let confirm = json!({"token": reset, "new_password": "a brand new passphrase"});
    let res = a
        .post_json("/api/v1/auth/password-reset/confirm", &confirm)
        .await;
    assert_eq!(res.status(), 204);
    within(Duration::from_secs(1), || async {
        b.get_auth("/api/v1/auth/verify", at).await.status() == 401
    })
    .await;
    let again = b
        .post_json("/api/v1/auth/password-reset/confirm", &confirm)
        .await;
    assert_problem(again, 401, "INVALID_ONE_TIME_TOKEN").await;
    a.stop().await;
    b.stop().await;
}

/// An account deleted on A is refused by B within a second, though B had its session cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_deleted_on_one_instance_is_refused_by_the_other_within_a_second() {
    let (a, b, _db) = two_instances().await;
    let (_, login) = a.user_with_session().await;
    let at = str_field(&login, "access_token");
    assert_eq!(b.get_auth("/api/v1/users/me", at).await.status(), 200);
    let res = a
        .request(reqwest::Method::DELETE, "/api/v1/users/me")
        .bearer_auth(at)
        .json(&json!({"password": crate::common::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    within(Duration::from_secs(1), || async {
        b.get_auth("/api/v1/auth/verify", at).await.status() == 401
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// A TOTP code spent at login on A is refused on B (replay), whichever instance sees it
/// second; and of the same code sent to both at once, one login succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_factor_code_works_once_across_instances() {
    // Instances share AUTH_DATA_KEY, as a deployment must (without it each would seal with a
    // key of its own).
    let db = TestDb::new().await;
    let mut config = test_config();
    config.db.url = Some(SecretString::from(db.url().to_owned()));
    config.mfa.data_key = Some(SecretString::from(
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    ));
    let a = TestApp::serve(config.clone(), None).await;
    let b = TestApp::serve(config, None).await;
    let user = crate::mfa::enrolled(&a).await;
    let code = crate::mfa::code(&user.secret, 1);
    let on_a = crate::mfa::mfa_token(&a, &user.email).await;
    let on_b = crate::mfa::mfa_token(&b, &user.email).await;
    let (from_a, from_b) = tokio::join!(
        crate::mfa::login_mfa(&a, &on_a, &code),
        crate::mfa::login_mfa(&b, &on_b, &code),
    );
    let statuses = [from_a.status().as_u16(), from_b.status().as_u16()];
    assert!(
        statuses.contains(&200) && statuses.contains(&401),
        "one login per code: {statuses:?}"
    );
    let loser = if statuses[0] == 401 { from_a } else { from_b };
    assert_problem(loser, 401, "INVALID_MFA_CODE").await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_a_503_never_cached_and_cached_verdicts_keep_answering() {
    let db = TestDb::new().await;
    let mut direct = test_config();
    direct.db.url = Some(SecretString::from(db.url().to_owned()));
    let a = TestApp::serve(direct, None).await;
    let proxy = PgProxy::start(pg_addr(db.url())).await;
    let mut via_proxy = test_config();
    via_proxy.db.url = Some(SecretString::from(proxy.url_for(db.url())));
    via_proxy.db.timeout_ms = 300;
    let b = TestApp::serve(via_proxy, None).await;
    assert_eq!(b.get("/health/ready").await.status(), 200);

    let (_, owner) = a.user_with_session().await;
    let token = str_field(&owner, "access_token");
    let org = new_org(&a, token, "Outage").await;
    let cached = str_field(&create_key(&a, token, &org, json!([])).await, "key").to_owned();
    let uncached = str_field(&create_key(&a, token, &org, json!([])).await, "key").to_owned();
    assert_eq!(verify(&b, &cached, json!([])).await["valid"], true);
    assert_eq!(b.get_auth("/api/v1/auth/verify", token).await.status(), 200);

    proxy.cut();
    // A key B has never seen: 503 with Retry-After, not valid:false.
    let res = b
        .post_json("/api/v1/api-keys/verify", &json!({"key": uncached}))
        .await;
    assert!(
        res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    assert_problem(res, 503, "SERVICE_UNAVAILABLE").await;
    let res = b
        .post_json(
            "/api/v1/api-keys/verify-batch",
            &json!({"items": [{"key": cached}, {"key": uncached}]}),
        )
        .await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 503, "SERVICE_UNAVAILABLE").await;
    // A batch of keys B has seen (and malformed ones) needs no database.
    let res = b
        .post_json(
            "/api/v1/api-keys/verify-batch",
            &json!({"items": [{"key": cached}, {"key": "ak_live_garbage"}, {"key": cached}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let verdicts: Vec<Value> = res.json::<Value>().await.unwrap()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["valid"].clone())
        .collect();
    assert_eq!(verdicts, [json!(true), json!(false), json!(true)]);
    // What B saw before the outage still answers: the cached key and the cached session.
    assert_eq!(verify(&b, &cached, json!([])).await["valid"], true);
    assert_eq!(b.get_auth("/api/v1/auth/verify", token).await.status(), 200);
    // Malformed keys are refused without the database at all.
    assert_eq!(
        verify(&b, "ak_live_garbage", json!([])).await["error"],
        "INVALID"
    );
    within(Duration::from_secs(5), || async {
        b.get("/health/ready").await.status() == 503
    })
    .await;
    assert_eq!(b.get("/health/live").await.status(), 200);
    // `/health` answers from a probe at most a second old.
    within(Duration::from_secs(3), || async {
        b.get("/health").await.status() == 503
    })
    .await;
    let res = b.get("/health").await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "unhealthy");

    // Revoked on A while B cannot hear: B keeps its pre-outage answer until it reconnects,
    // then flushes its caches, since it may have missed the notification.
    let cached_id = {
        let list: Value = a
            .get_auth(&format!("/api/v1/api-keys?organization_id={org}"), token)
            .await
            .json()
            .await
            .unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| cached.starts_with(k["prefix"].as_str().unwrap()))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let res = a
        .post_auth(&format!("/api/v1/api-keys/{cached_id}/revoke"), token, None)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        verify(&b, &cached, json!([])).await["valid"],
        true,
        "served from cache while cut off"
    );

    proxy.restore();
    // Until the breaker's next probe B may still answer 503; then it sees the revocation.
    within(Duration::from_secs(10), || async {
        let res = b
            .post_json("/api/v1/api-keys/verify", &json!({"key": cached}))
            .await;
        res.status() == 200 && res.json::<Value>().await.unwrap()["error"] == "REVOKED"
    })
    .await;
    // The error was not cached: once the database is back the same key verifies.
    within(Duration::from_secs(10), || async {
        let res = b
            .post_json("/api/v1/api-keys/verify", &json!({"key": uncached}))
            .await;
        res.status() == 200 && res.json::<Value>().await.unwrap()["valid"] == true
    })
    .await;
    within(Duration::from_secs(10), || async {
        b.get("/health/ready").await.status() == 200
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// `n` verifications of `key` at once, spread over `apps` in turn, 16 in flight: the answers.
async fn hammer(apps: &[&TestApp], key: &str, n: usize) -> Vec<Value> {
    use futures::StreamExt as _;
    futures::stream::iter(0..n)
        .map(|i| verify(apps[i % apps.len()], key, json!(["read"])))
        .buffer_unordered(16)
        .collect()
        .await
}

fn valid(answers: &[Value]) -> usize {
    answers.iter().filter(|a| a["valid"] == true).count()
}

/// Three instances on one Postgres hammer one key limited to 100 per 10 s, all within one
/// window: exactly the limit succeeds (leases never grant past it), every refusal is
/// `RATE_LIMITED` with nothing left and the window's reset; the next window starts afresh.
/// And 500 verifications of a key with 100 credits over the three give exactly 100 valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_three_instances() {
    let db = TestDb::new().await;
    let mut config = test_config();
    config.db.url = Some(SecretString::from(db.url().to_owned()));
    let a = TestApp::serve(config.clone(), None).await;
    let b = TestApp::serve(config.clone(), None).await;
    let c = TestApp::serve(config, None).await;
    let (_, owner) = a.user_with_session().await;
    let token = str_field(&owner, "access_token");
    let org = new_org(&a, token, "Three Instances").await;
    let limited: Value = a
        .post_auth(
            "/api/v1/api-keys",
            token,
            Some(
                &json!({"organization_id": org, "name": "limited", "scopes": ["read"],
                         "rate_limit": {"limit": 100, "window_seconds": 10}}),
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    let key = str_field(&limited, "key");

    // Start just after a window boundary, so that the burst stays in one window.
    let into_window = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        Duration::from_millis(u64::try_from(now.as_millis() % 10_000).unwrap())
    };
    tokio::time::sleep(Duration::from_secs(10) - into_window()).await;
    let answers = hammer(&[&a, &b, &c], key, 600).await;
    assert!(
        into_window() < Duration::from_secs(9),
        "the burst outlasted its window"
    );
    assert_eq!(valid(&answers), 100, "successes in one window");
    for refused in answers.iter().filter(|a| a["valid"] == false) {
        assert_eq!(refused["error"], "RATE_LIMITED");
        assert_eq!(refused["rate_limit"]["limit"], 100);
        assert_eq!(refused["rate_limit"]["remaining"], 0);
        let reset = refused["rate_limit"]["reset_seconds"].as_u64().unwrap();
        assert!((1..=10).contains(&reset), "{reset}");
    }
    // The next window: a fresh budget on every instance.
    tokio::time::sleep(Duration::from_secs(10) - into_window()).await;
    for app in [&a, &b, &c] {
        let answer = verify(app, key, json!(["read"])).await;
        assert_eq!(answer["valid"], true, "{answer}");
    }

    let counted: Value = a
        .post_auth(
            "/api/v1/api-keys",
            token,
            Some(
                &json!({"organization_id": org, "name": "counted", "scopes": ["read"],
                         "remaining": 100}),
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    let key = str_field(&counted, "key");
    // Cached as valid on B and C first: the cache must not answer for a key with credits.
    verify(&b, key, json!(["read"])).await;
    verify(&c, key, json!(["read"])).await;
    let answers = hammer(&[&a, &b, &c], key, 500).await;
    assert_eq!(valid(&answers), 98);
    let mut left: Vec<u64> = answers
        .iter()
        .filter_map(|a| a["remaining"].as_u64())
        .collect();
    left.sort_unstable();
    assert_eq!(left, (0..98).collect::<Vec<u64>>());
    assert!(
        answers
            .iter()
            .filter(|a| a["valid"] == false)
            .all(|a| a["error"] == "USAGE_EXCEEDED")
    );
    let item = a
        .get_auth(
            &format!("/api/v1/api-keys/{}", str_field(&counted, "id")),
            token,
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(item["remaining"], 0);
    for app in [a, b, c] {
        app.stop().await;
    }
}
