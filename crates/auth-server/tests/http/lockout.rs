//! Account lockout over HTTP, on both stores.

use futures::future::join_all;
use serde_json::json;

use auth_infra::test_support::TestDb;
use secrecy::SecretString;

use crate::common::{
    Backend, PASSWORD, TestApp, assert_problem, on_both_stores, str_field, test_config,
    unique_email,
};

on_both_stores!(
    five_failures_lock_the_email_whatever_the_password,
    password_change_failures_count
);

async fn five_failures_lock_the_email_whatever_the_password(app: &TestApp) {
    let email = unique_email();
    app.register(&email, PASSWORD).await;
    for _ in 0..5 {
        assert_problem(
            app.login(&email, "wrong password").await,
            401,
            "INVALID_CREDENTIALS",
        )
        .await;
    }
    // Locked: every login for that email, right password or not, in any case.
    for password in [PASSWORD, "wrong password"] {
        let res = app.login(&email.to_uppercase(), password).await;
        let retry: i64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((890..=900).contains(&retry), "{retry}");
        assert_problem(res, 429, "TOO_MANY_ATTEMPTS").await;
    }
    // An email with no account locks the same way: a lock reveals nothing.
    let ghost = unique_email();
    for _ in 0..5 {
        assert_eq!(app.login(&ghost, PASSWORD).await.status(), 401);
    }
    assert_eq!(app.login(&ghost, PASSWORD).await.status(), 429);
    // Other emails are not affected; a success resets the count.
    let other = unique_email();
    app.register(&other, PASSWORD).await;
    for _ in 0..4 {
        app.login(&other, "nope nope").await;
    }
    assert_eq!(app.login(&other, PASSWORD).await.status(), 200);
    for _ in 0..4 {
        assert_eq!(app.login(&other, "nope nope").await.status(), 401);
    }
    assert_eq!(app.login(&other, PASSWORD).await.status(), 200);
}

async fn password_change_failures_count(app: &TestApp) {
    let (email, login) = app.user_with_session().await;
    let at = str_field(&login, "access_token");
    let body = json!({"current_password": "not it at all", "new_password": "brand new passphrase"});
    for _ in 0..5 {
        let res = app
            .post_auth("/api/v1/users/me/password", at, Some(&body))
            .await;
        assert_problem(res, 401, "INVALID_CREDENTIALS").await;
    }
    let right = json!({"current_password": PASSWORD, "new_password": "brand new passphrase"});
    assert_problem(
        app.post_auth("/api/v1/users/me/password", at, Some(&right))
            .await,
        429,
        "TOO_MANY_ATTEMPTS",
    )
    .await;
    assert_eq!(app.login(&email, PASSWORD).await.status(), 429);
}

/// Counts the statuses of a burst of login answers: (200, 401, 429). A 503 (on a loaded
/// machine a burst can outwait the pool's connect timeout) is neither a check nor a refusal;
/// any other status fails the test.
fn tally(statuses: &[u16]) -> (usize, usize, usize) {
    let of = |code| statuses.iter().filter(|s| **s == code).count();
    assert_eq!(
        of(200) + of(401) + of(429) + of(503),
        statuses.len(),
        "only 200, 401, 429 and 503 expected: {statuses:?}"
    );
    (of(200), of(401), of(429))
}

/// The tally of a burst of wrong guesses: at most `threshold` checked, the rest refused;
/// exactly so when the store answered every request.
fn assert_threshold_held(statuses: &[u16], threshold: usize, context: &str) -> bool {
    let (ok, checked, refused) = tally(statuses);
    assert_eq!(ok, 0, "{context}: {statuses:?}");
    assert!(
        checked <= threshold,
        "{context}: {checked} checked: {statuses:?}"
    );
    if checked + refused == statuses.len() {
        assert_eq!(checked, threshold, "{context}: {statuses:?}");
    }
    checked == threshold
}

/// A bcrypt cost whose check takes tens of milliseconds, as in production, so that parallel
/// attempts really overlap their checks (at cost 4 a check is over before the next request is
/// read, which would hide the race this file is about).
const REAL_COST: u32 = 10;

/// 40 parallel wrong guesses for one email, at the default threshold of 5: exactly five reach
/// a password check (401), every other is refused unchecked (429), and the email is locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_get_at_most_threshold_checks() {
    for backend in [Backend::Memory, Backend::Postgres] {
        let app = TestApp::start_with(backend, |c| c.passwords.bcrypt_rounds = REAL_COST).await;
        let email = unique_email();
        app.register(&email, PASSWORD).await;
        let statuses: Vec<u16> = join_all((0..40).map(|i| {
            let (app, email) = (&app, &email);
            async move {
                app.login(email, &format!("wrong guess {i}"))
                    .await
                    .status()
                    .as_u16()
            }
        }))
        .await;
        if assert_threshold_held(&statuses, 5, &format!("{backend:?}")) {
            assert_eq!(app.login(&email, PASSWORD).await.status(), 429);
        }
        app.stop().await;
    }
}

/// The right password hidden among 39 parallel wrong ones: without a success at most five
/// guesses are checked; a success (only possible when it is among the admitted ones) resets
/// the count, so at most five more are checked after it. Several rounds, fresh emails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_password_among_parallel_guesses_buys_no_extra_checks() {
    for backend in [Backend::Memory, Backend::Postgres] {
        let app = TestApp::start_with(backend, |c| c.passwords.bcrypt_rounds = REAL_COST).await;
        for round in 0..3 {
            let email = unique_email();
            app.register(&email, PASSWORD).await;
            let statuses: Vec<u16> = join_all((0..40).map(|i| {
                let (app, email) = (&app, &email);
                let password = if i == 20 + round {
                    PASSWORD.to_owned()
                } else {
                    format!("wrong guess {i}")
                };
                async move { app.login(email, &password).await.status().as_u16() }
            }))
            .await;
            let (ok, checked, refused) = tally(&statuses);
            let limit = if ok == 1 { 10 } else { 5 };
            assert!(
                ok <= 1 && ok + checked <= limit && refused >= 40 - limit,
                "{backend:?} round {round}: {ok} × 200, {checked} × 401, {refused} × 429"
            );
        }
        app.stop().await;
    }
}

/// Two instances on one database share the count: 40 parallel guesses, alternating between
/// them, get five checks in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_across_two_instances_share_the_threshold() {
    let db = TestDb::new().await;
    let mut config = test_config();
    config.db.url = Some(SecretString::from(db.url().to_owned()));
    config.passwords.bcrypt_rounds = REAL_COST;
    let a = TestApp::serve(config.clone(), None).await;
    let b = TestApp::serve(config, None).await;
    let email = unique_email();
    a.register(&email, PASSWORD).await;
    let statuses: Vec<u16> = join_all((0..40).map(|i| {
        let (app, email) = (if i % 2 == 0 { &a } else { &b }, &email);
        async move {
            app.login(email, &format!("wrong guess {i}"))
                .await
                .status()
                .as_u16()
        }
    }))
    .await;
    if assert_threshold_held(&statuses, 5, "two instances") {
        assert_eq!(b.login(&email, PASSWORD).await.status(), 429);
        assert_eq!(a.login(&email, PASSWORD).await.status(), 429);
    }
    a.stop().await;
    b.stop().await;
}

/// Parallel wrong current passwords at the password-change endpoint count the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_password_change_guesses_get_at_most_threshold_checks() {
    for backend in [Backend::Memory, Backend::Postgres] {
        let app = TestApp::start_with(backend, |c| c.passwords.bcrypt_rounds = REAL_COST).await;
        let (email, login) = app.user_with_session().await;
        let at = str_field(&login, "access_token");
        let statuses: Vec<u16> = join_all((0..20).map(|i| {
            let app = &app;
            let body = json!({"current_password": format!("wrong guess {i}"), "new_password": "brand new passphrase"});
            async move {
                app.post_auth("/api/v1/users/me/password", at, Some(&body))
                    .await
                    .status()
                    .as_u16()
            }
        }))
        .await;
        if assert_threshold_held(&statuses, 5, &format!("{backend:?}")) {
            assert_eq!(app.login(&email, PASSWORD).await.status(), 429);
        }
        app.stop().await;
    }
}
