//! Account lockout over HTTP, on both stores.

use futures::future::join_all;
use serde_json::{Value, json};

use crate::common::{
    Backend, PASSWORD, TestApp, assert_problem, on_both_stores, str_field, unique_email,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_failures_lose_no_count() {
    for backend in [Backend::Memory, Backend::Postgres] {
        let app = TestApp::start_with(backend, |c| c.lockout_threshold = 51).await;
        let email = unique_email();
        app.register(&email, PASSWORD).await;
        let statuses: Vec<u16> = join_all(
            (0..50).map(|_| async { app.login(&email, "wrong one").await.status().as_u16() }),
        )
        .await;
        assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
        // Exactly 50 counted: one more failure (the 51st) locks; had any been lost, it would not.
        assert_eq!(app.login(&email, "wrong one").await.status(), 401);
        let res = app.login(&email, PASSWORD).await;
        assert_eq!(res.status(), 429, "{:?}", res.json::<Value>().await);
        app.stop().await;
    }
}
