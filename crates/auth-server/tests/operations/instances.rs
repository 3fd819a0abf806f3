//! Three `auth-server` processes on one database, sharing nothing but Postgres: lockouts,
//! refresh-token rotation and reuse detection, revocations and concurrent refreshes behave as
//! one service whichever instance a request lands on.

use std::time::Duration;

use auth_infra::test_support::TestDb;
use serde_json::Value;

use crate::harness::{
    PASSWORD, ServerProcess, assert_problem, retry_after, str_field, unique_email, within,
};

/// Three instances on a fresh, empty database (they migrate it at once, under the advisory
/// lock). Servers are declared before the database so they die before it is dropped.
struct Trio {
    servers: Vec<ServerProcess>,
    _db: TestDb,
}

impl Trio {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let db = TestDb::empty().await;
        let url = db.url().to_owned();
        let (a, b, c) = tokio::join!(
            ServerProcess::spawn("A", Some(&url), extra),
            ServerProcess::spawn("B", Some(&url), extra),
            ServerProcess::spawn("C", Some(&url), extra),
        );
        let servers = vec![a, b, c];
        for s in &servers {
            within(
                Duration::from_secs(20),
                &format!("{} ready", s.name),
                || async { s.get("/health/ready").await.status() == 200 },
            )
            .await;
        }
        Self { servers, _db: db }
    }

    /// Instance `i` round-robin.
    fn at(&self, i: usize) -> &ServerProcess {
        &self.servers[i % self.servers.len()]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockout_counted_across_three_instances_locks_the_email_on_all() {
    let trio = Trio::start(&[("AUTH_LOCKOUT_THRESHOLD", "5")]).await;
    let email = unique_email("locked");
    assert_eq!(trio.at(0).register(&email, PASSWORD).await.status(), 201);
    for i in 0..5 {
        let s = trio.at(i);
        assert_problem(
            s.login(&email, "not the password").await,
            401,
            "INVALID_CREDENTIALS",
            &format!("wrong password #{} on {}", i + 1, s.name),
        )
        .await;
    }
    let sixth = trio.at(5);
    let res = sixth.login(&email, "not the password").await;
    let retry = retry_after(&res);
    assert!(
        retry.is_some_and(|r| r >= 1),
        "6th attempt Retry-After {retry:?}"
    );
    assert_problem(
        res,
        429,
        "TOO_MANY_ATTEMPTS",
        &format!("6th wrong password on {}", sixth.name),
    )
    .await;
    for s in &trio.servers {
        let res = s.login(&email, PASSWORD).await;
        let retry = retry_after(&res);
        assert!(
            retry.is_some_and(|r| r >= 1),
            "{} Retry-After {retry:?}",
            s.name
        );
        assert_problem(
            res,
            429,
            "TOO_MANY_ATTEMPTS",
            &format!("right password on {} while locked", s.name),
        )
        .await;
    }
}

/// `/auth/verify` refuses `token` on `s` as the contract says for an ended session: 401
/// `UNAUTHENTICATED` with `WWW-Authenticate: Bearer ... error="invalid_token"`.
async fn verify_refused(s: &ServerProcess, token: &str) -> bool {
    let res = s.get_auth("/api/v1/auth/verify", token).await;
    if res.status() != 401 {
        return false;
    }
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
        "{}: WWW-Authenticate {challenge:?}",
        s.name
    );
    assert_problem(
        res,
        401,
        "UNAUTHENTICATED",
        &format!("verify on {}", s.name),
    )
    .await;
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_refresh_token_ends_the_session_on_every_instance_within_a_second() {
    let trio = Trio::start(&[]).await;
    let (a, b, c) = (trio.at(0), trio.at(1), trio.at(2));
    let (_, login) = a.user_with_session().await;
    let access = str_field(&login, "access_token").to_owned();
    let old_refresh = str_field(&login, "refresh_token").to_owned();
    // Every instance has seen the session as valid (and may cache it).
    for s in &trio.servers {
        assert_eq!(
            s.get_auth("/api/v1/auth/verify", &access).await.status(),
            200,
            "{} before",
            s.name
        );
    }
    let res = b.refresh(&old_refresh).await;
    assert_eq!(res.status(), 200, "refresh on B");
    let rotated: Value = res.json().await.expect("refresh body");
    let newest_refresh = str_field(&rotated, "refresh_token").to_owned();
    let newest_access = str_field(&rotated, "access_token").to_owned();
    assert_ne!(newest_refresh, old_refresh);
    assert_eq!(
        a.get_auth("/api/v1/auth/verify", &newest_access)
            .await
            .status(),
        200
    );

    // The spent token shown again, on a third instance: refused, and the family ends.
    assert_problem(
        c.refresh(&old_refresh).await,
        401,
        "INVALID_REFRESH_TOKEN",
        "old refresh token on C",
    )
    .await;
    let mut took = Vec::new();
    for s in &trio.servers {
        let t = within(
            Duration::from_secs(1),
            &format!("login's access token refused on {}", s.name),
            || verify_refused(s, &access),
        )
        .await;
        took.push((s.name.clone(), t));
        let body = s.verify_token(&access).await;
        assert_eq!(body["valid"], false, "{}: {body}", s.name);
        assert_eq!(body["error"], "REVOKED", "{}: {body}", s.name);
        within(
            Duration::from_secs(1),
            &format!("rotated access token refused on {}", s.name),
            || verify_refused(s, &newest_access),
        )
        .await;
    }
    // Every instance has heard the end of the session by now; one attempt (a retry loop could
    // pass by consuming the token).
    assert_problem(
        a.refresh(&newest_refresh).await,
        401,
        "INVALID_REFRESH_TOKEN",
        "newest refresh token (from B) on A",
    )
    .await;
    eprintln!("session end after refresh-token reuse reached: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_instance_is_refused_by_the_others_within_a_second() {
    let trio = Trio::start(&[]).await;
    let (a, b, c) = (trio.at(0), trio.at(1), trio.at(2));
    let (_, login) = a.user_with_session().await;
    let access = str_field(&login, "access_token").to_owned();
    let org = a.new_org(&access, "Three Instances").await;
    let created = a.create_key(&access, &org, "fleet").await;
    let key = str_field(&created, "key").to_owned();
    let id = str_field(&created, "id").to_owned();
    for s in [b, c] {
        let body = s.verify_key(&key).await;
        assert_eq!(body["valid"], true, "{} before: {body}", s.name);
    }
    let res = a
        .post_auth(&format!("/api/v1/api-keys/{id}/revoke"), &access, None)
        .await;
    assert_eq!(res.status(), 200, "revoke on A");
    let body = a.verify_key(&key).await;
    assert_eq!(body["error"], "REVOKED", "A at once: {body}");
    let mut took = Vec::new();
    for s in [b, c] {
        let t = within(
            Duration::from_secs(1),
            &format!("revocation heard by {}", s.name),
            || async {
                let body = s.verify_key(&key).await;
                body["valid"] == false && body["error"] == "REVOKED"
            },
        )
        .await;
        took.push((s.name.clone(), t));
    }
    eprintln!("API key revocation reached (measured from the revoke's answer): {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parallel_refreshes_over_three_instances_succeed_exactly_once() {
    let trio = Trio::start(&[]).await;
    let (_, login) = trio.at(0).user_with_session().await;
    let refresh_token = str_field(&login, "refresh_token").to_owned();
    // Open a connection to every instance first, so the 20 requests leave together.
    for s in &trio.servers {
        assert_eq!(s.get("/health/live").await.status(), 200);
    }
    let answers = futures::future::join_all((0..20).map(|i| {
        let s = trio.at(i);
        let token = refresh_token.clone();
        async move {
            let res = s.refresh(&token).await;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (s.name.clone(), status, body)
        }
    }))
    .await;
    let winners: Vec<_> = answers.iter().filter(|(_, st, _)| *st == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one refresh succeeds: {:?}",
        answers.iter().map(|(n, st, _)| (n, st)).collect::<Vec<_>>()
    );
    for (name, status, body) in &answers {
        if *status != 200 {
            assert_eq!(*status, 401, "{name}: {body}");
            assert_eq!(body["code"], "INVALID_REFRESH_TOKEN", "{name}: {body}");
        }
    }
    eprintln!(
        "20 parallel refreshes: the one 200 came from {}",
        winners[0].0
    );
}
