//! Retries and the circuit breaker against the real server stopped and started again, behind
//! a relay that loses answers or never answers, with its database cut (503), and rate limited
//! (429).

use std::time::{Duration, Instant};

use auth_client::{
    ApiKeyVerdict, AuthClient, BreakerPolicy, BreakerState, Error, ErrorCode, KeyRejection,
    NewUser, Operation, RetryPolicy, SecretString,
};
use auth_infra::test_support::TestDb;

use crate::common::{
    Fault, PgProxy, Relay, TestServer, api_key, exposed, owner_and_org, password, pg_addr,
    unique_email, user,
};

fn attempts(client: &AuthClient, op: Operation) -> (u64, u64) {
    client
        .metrics()
        .operation(op)
        .map_or((0, 0), |o| (o.attempts, o.retries))
}

fn quick_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..RetryPolicy::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_are_retried_for_every_call() {
    let server = TestServer::start().await;
    let client = server
        .builder()
        .retry(quick_retries(2))
        .circuit_breaker(None)
        .build()
        .unwrap();
    server.stop().await;

    let err = client
        .login(&unique_email(), &password())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert!(err.is_transient());
    // Nothing was sent, so even a login is tried again.
    assert_eq!(attempts(&client, Operation::Login), (3, 2));
    let err = client
        .verify_api_key_remote("ak_live_x", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert_eq!(attempts(&client, Operation::VerifyApiKey), (3, 2));
    let m = client.metrics();
    let login = m.operation(Operation::Login).unwrap();
    assert_eq!((login.calls, login.failures), (1, 1));
    assert!((m.failure_rate() - 1.0).abs() < f64::EPSILON);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_succeeds_when_the_server_comes_back_during_its_retries() {
    let server = TestServer::start().await;
    let client = server
        .builder()
        .retry(RetryPolicy {
            max_retries: 30,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            ..RetryPolicy::default()
        })
        .circuit_breaker(None)
        .build()
        .unwrap();
    // Registered through another client: this one holds no kept-alive connection to the
    // stopped server (a request written on one as the server drops it may have been received,
    // and a login is then rightly not repeated).
    let (email, _) = user(&server.client()).await;
    server.stop().await;

    let restart = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.restart().await;
    };
    let pw = password();
    let (pair, ()) = tokio::join!(client.login(&email, &pw), restart);
    let pair = pair.unwrap();
    // The same store: the user registered before the stop logs in after it.
    assert_eq!(pair.user.email, email);
    let (attempts, retries) = attempts(&client, Operation::Login);
    assert!(
        retries >= 1 && attempts == retries + 1,
        "{attempts} {retries}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_may_have_been_applied_are_not_repeated() {
    let server = TestServer::start().await;
    let relay = Relay::start(server.addr).await;
    let client = AuthClient::builder(relay.url())
        .retry(quick_retries(2))
        .circuit_breaker(None)
        .build()
        .unwrap();
    let direct = server.client();

    relay.set(Fault::LoseAnswer);
    let email = unique_email();
    let err = client
        .register(&NewUser::new(email.clone(), password()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert_eq!(attempts(&client, Operation::Register), (1, 0));
    // The service did register it, once: a repeat would have met EMAIL_TAKEN.
    let taken = direct
        .register(&NewUser::new(email.clone(), password()))
        .await
        .unwrap_err();
    assert!(taken.is_code(&ErrorCode::EmailTaken));

    let err = client.login(&email, &password()).await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert_eq!(attempts(&client, Operation::Login), (1, 0));

    // Reading is safe to repeat: every attempt is made.
    let err = client
        .verify_api_key_remote("ak_live_x", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert_eq!(attempts(&client, Operation::VerifyApiKey), (3, 2));
    let err = client.logout(&SecretString::from("x")).await.unwrap_err();
    assert!(err.is_transient());
    assert_eq!(attempts(&client, Operation::Logout), (3, 2));

    relay.set(Fault::None);
    assert_eq!(
        client.login(&email, &password()).await.unwrap().user.email,
        email
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_retried_for_idempotent_calls_only_and_open_the_breaker() {
    let server = TestServer::start().await;
    let relay = Relay::start(server.addr).await;
    relay.set(Fault::Hang);
    let client = AuthClient::builder(relay.url())
        .timeout(Duration::from_millis(200))
        .retry(quick_retries(2))
        .circuit_breaker(Some(BreakerPolicy {
            failure_threshold: 4,
            open_for: Duration::from_secs(60),
        }))
        .build()
        .unwrap();

    let err = client
        .verify_api_key_remote("ak_live_x", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert_eq!(attempts(&client, Operation::VerifyApiKey), (3, 2));
    assert_eq!(client.metrics().breaker.state, BreakerState::Closed);

    let err = client
        .login(&unique_email(), &password())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert_eq!(attempts(&client, Operation::Login), (1, 0));
    // Four timeouts in a row: open.
    assert_eq!(client.metrics().breaker.state, BreakerState::Open);

    let err = client.service_info().await.unwrap_err();
    let Error::CircuitOpen { retry_in } = err else {
        panic!("{err:?}");
    };
    assert!(retry_in > Duration::from_secs(55) && retry_in <= Duration::from_secs(60));
    // Refused without a request.
    assert_eq!(attempts(&client, Operation::ServiceInfo), (0, 0));
    let m = client.metrics();
    assert_eq!((m.breaker.opened, m.breaker.rejected), (1, 1));
    assert_eq!(m.operation(Operation::ServiceInfo).unwrap().circuit_open, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_fails_fast_while_the_server_is_down_and_closes_when_it_is_back() {
    let server = TestServer::start().await;
    let breaker = |open_for| {
        server
            .builder()
            .retry(RetryPolicy::disabled())
            .circuit_breaker(Some(BreakerPolicy {
                failure_threshold: 5,
                open_for,
            }))
            .build()
            .unwrap()
    };
    // One waits the default minute before probing, one a second.
    let (slow, quick) = (
        breaker(Duration::from_secs(60)),
        breaker(Duration::from_secs(1)),
    );
    server.stop().await;

    for client in [&slow, &quick] {
        for i in 0..5 {
            let err = client.service_info().await.unwrap_err();
            assert!(matches!(err, Error::Connect(_)), "call {i}: {err:?}");
        }
        assert_eq!(client.metrics().breaker.state, BreakerState::Open);
        let err = client.service_info().await.unwrap_err();
        assert!(matches!(err, Error::CircuitOpen { .. }), "{err:?}");
        assert!(err.to_string().contains("circuit open"), "{err}");
        assert!(err.is_transient() && err.retry_after().is_some());
        // The refused call sent nothing.
        assert_eq!(attempts(client, Operation::ServiceInfo), (5, 0));
    }

    // Back, but an open breaker keeps failing fast until its pause is over.
    server.restart().await;
    let err = slow.service_info().await.unwrap_err();
    assert!(matches!(err, Error::CircuitOpen { .. }), "{err:?}");
    assert_eq!(slow.metrics().breaker.state, BreakerState::Open);

    if let Some(retry_in) = quick.breaker_retry_in() {
        tokio::time::sleep(retry_in + Duration::from_millis(50)).await;
    }
    // The probe goes through and closes it.
    quick.service_info().await.unwrap();
    let m = quick.metrics();
    assert_eq!(m.breaker.state, BreakerState::Closed);
    assert_eq!((m.breaker.opened, m.breaker.rejected), (1, 1));
    quick.service_info().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_neither_retried_nor_counted_by_the_breaker() {
    let server = TestServer::start().await;
    let client = server
        .builder()
        .circuit_breaker(Some(BreakerPolicy {
            failure_threshold: 2,
            open_for: Duration::from_secs(60),
        }))
        .build()
        .unwrap();
    let (email, _) = user(&client).await;
    for _ in 0..4 {
        let err = client
            .login(&email, &SecretString::from("not the password"))
            .await
            .unwrap_err();
        assert!(err.is_code(&ErrorCode::InvalidCredentials));
        assert!(!err.is_transient());
    }
    for _ in 0..3 {
        client
            .me(&SecretString::from("not-a-token"))
            .await
            .unwrap_err();
    }
    let m = client.metrics();
    assert_eq!(m.breaker.state, BreakerState::Closed);
    let me = m.operation(Operation::Me).unwrap();
    assert_eq!((me.attempts, me.retries, me.api_errors), (3, 0, 3));
}

/// Spends the verify group's allowance of this address.
async fn exhaust(raw: &reqwest::Client, server: &TestServer) {
    for _ in 0..200 {
        let res = raw
            .post(format!("{}/api/v1/api-keys/verify", server.url()))
            .json(&serde_json::json!({"key": "ak_live_x"}))
            .send()
            .await
            .unwrap();
        if res.status() == 429 {
            return;
        }
    }
    panic!("never rate limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_calls_wait_for_retry_after() {
    let server = TestServer::start_with(|c| {
        c.rate_limit.enabled = true;
        c.rate_limit.per_minute = 60;
        // The verify endpoints are limited only when an operator asks for it.
        c.rate_limit.verify_per_minute = 60;
    })
    .await;
    let raw = reqwest::Client::new();
    exhaust(&raw, &server).await;

    // Asked to wait longer than it may: the answer at once, with the wait it asked for.
    let impatient = server
        .builder()
        .retry(RetryPolicy {
            max_retry_after: Duration::ZERO,
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    let err = impatient
        .verify_api_key_remote("ak_live_x", &[])
        .await
        .unwrap_err();
    assert!(err.is_code(&ErrorCode::RateLimited), "{err:?}");
    assert!(err.retry_after().unwrap() >= Duration::from_secs(1));
    assert_eq!(attempts(&impatient, Operation::VerifyApiKey), (1, 0));

    exhaust(&raw, &server).await;
    let client = server.client();
    let started = Instant::now();
    let verdict = client
        .verify_api_key_remote("ak_live_x", &[])
        .await
        .unwrap();
    assert_eq!(verdict, ApiKeyVerdict::Rejected(KeyRejection::Invalid));
    let (attempts, retries) = attempts(&client, Operation::VerifyApiKey);
    assert!(retries >= 1 && attempts == retries + 1);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    // A 429 is an answer, not a failure of the service.
    assert_eq!(client.metrics().breaker.state, BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_unavailable_is_retried_for_idempotent_calls_only() {
    let db = TestDb::new().await;
    let proxy = PgProxy::start(pg_addr(db.url())).await;
    let url = proxy.url_for(db.url());
    let server = TestServer::start_postgres(db, url, |c| c.db.timeout_ms = 300).await;
    let setup = server.client();
    let (owner, org) = owner_and_org(&setup).await;
    let key = api_key(&setup, &owner, &org, &["invoices:read"]).await;
    let (email, _) = user(&setup).await;

    let client = server
        .builder()
        .retry(RetryPolicy {
            max_retries: 1,
            max_retry_after: Duration::from_secs(5),
            ..RetryPolicy::default()
        })
        .circuit_breaker(None)
        .build()
        .unwrap();
    proxy.cut();

    let err = client.login(&email, &password()).await.unwrap_err();
    assert!(err.is_code(&ErrorCode::ServiceUnavailable), "{err:?}");
    assert_eq!(attempts(&client, Operation::Login), (1, 0));

    // The key was never verified, so the service has no cached verdict: 503, with
    // `Retry-After: 2`, waited for once.
    let started = Instant::now();
    let err = client
        .verify_api_key_remote(exposed(&key.key), &[])
        .await
        .unwrap_err();
    assert!(err.is_code(&ErrorCode::ServiceUnavailable), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(attempts(&client, Operation::VerifyApiKey), (2, 1));
    assert!(started.elapsed() >= Duration::from_secs(2));

    // Through the cache: a failure is not cached, so the next call asks again.
    assert!(client.verify_api_key(exposed(&key.key), &[]).await.is_err());
    proxy.restore();
    let mut verdict = None;
    for _ in 0..100 {
        if let Ok(v) = client.verify_api_key(exposed(&key.key), &[]).await {
            verdict = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(verdict.unwrap().is_valid());
    let cache = client.metrics().api_key_cache.unwrap();
    assert_eq!(cache.hits, 0);
    assert!(cache.misses >= 2);
}
