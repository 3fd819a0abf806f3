//! The mailed flows over HTTP, on both stores, with mail going out through a real SMTP server
//! (`aiosmtpd` on loopback) by the outbox worker the binary runs: address verification,
//! password reset, change of address; each link works once; parallel uses of one link have
//! one winner; bad input changes nothing.

use std::time::Duration;

use auth_infra::test_support::smtp::{ReceivedMail, SmtpSink};
use futures::future::join_all;
use serde_json::{Value, json};

use crate::common::{PASSWORD, TestApp, assert_problem, str_field, unique_email};

/// How long a mail may take: the worker looks every 2 s.
const MAIL_WAIT: Duration = Duration::from_secs(15);
/// A new password that meets the policy.
const NEW_PASSWORD: &str = "a brand new passphrase";

/// The configuration change given, or none.
macro_rules! adjust_or_default {
    () => {
        |_: &mut auth_server::config::Config| {}
    };
    ($adjust:expr) => {
        $adjust
    };
}

/// One test per store, each with its own SMTP server and an app mailing through it;
/// `name => |config| ...` changes the configuration first.
macro_rules! mailing_on_both_stores {
    ($($name:ident $(=> $adjust:expr)?),* $(,)?) => {
        mailing_on_both_stores!(@on memory Memory; $($name $(=> $adjust)?),*);
        mailing_on_both_stores!(@on postgres Postgres; $($name $(=> $adjust)?),*);
    };
    (@on $module:ident $backend:ident; $($name:ident $(=> $adjust:expr)?),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let smtp = auth_infra::test_support::smtp::SmtpSink::start();
                    let adjust = adjust_or_default!($($adjust)?);
                    let app = crate::common::TestApp::start_mailing(
                        crate::common::Backend::$backend, &smtp, adjust).await;
                    super::$name(&app, &smtp).await;
                    app.stop().await;
                }
            )*
        }
    };
}

mailing_on_both_stores!(
    registration_mail_verifies_the_address_once,
    password_reset_ends_every_session_and_clears_the_lock,
    reset_requests_answer_alike_and_keep_the_interval,
    change_of_address_applies_when_the_new_address_confirms,
    parallel_uses_of_one_link_succeed_once,
    bad_input_changes_nothing,
    resend_keeps_the_interval_and_replaces_the_link => |c: &mut auth_server::config::Config| {
        c.mail.min_interval_seconds = 1;
    },
    login_waits_for_a_verified_address_when_required => |c: &mut auth_server::config::Config| {
        c.mail.require_verified_email = true;
    },
);

/// The one-time token of the newest mail to `to` whose link goes to `page`, once `count`
/// mails to `to` arrived.
async fn token_from(
    app: &TestApp,
    smtp: &SmtpSink,
    to: &str,
    count: usize,
    page: &str,
) -> (String, ReceivedMail) {
    let mails = smtp.wait_for(to, count, MAIL_WAIT).await;
    let mail = mails.last().unwrap().clone();
    let prefix = app.url(&format!("/{page}#token="));
    let token = mail
        .token(&prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in {}", mail.text));
    assert_eq!(token.len(), 43, "256 bits, base64url");
    assert!(
        mail.html.contains(&format!("href=\"{prefix}{token}\"")),
        "{}",
        mail.html
    );
    (token, mail)
}

async fn me(app: &TestApp, access: &str) -> Value {
    let res = app.get_auth("/api/v1/users/me", access).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn access_token(app: &TestApp, email: &str, password: &str) -> String {
    let res = app.login(email, password).await;
    assert_eq!(res.status(), 200, "login of {email}");
    let body: Value = res.json().await.unwrap();
    str_field(&body, "access_token").to_owned()
}

async fn verify_email(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json("/api/v1/auth/verify-email", &json!({ "token": token }))
        .await
}

async fn confirm_reset(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/password-reset/confirm",
        &json!({ "token": token, "new_password": password }),
    )
    .await
}

async fn request_reset(app: &TestApp, email: &str) -> Value {
    let res = app
        .post_json("/api/v1/auth/password-reset", &json!({ "email": email }))
        .await;
    assert_eq!(res.status(), 202);
    res.json().await.unwrap()
}

/// Registration mails a link to the address; the link verifies it once.
async fn registration_mail_verifies_the_address_once(app: &TestApp, smtp: &SmtpSink) {
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let access = access_token(app, &email, PASSWORD).await;
    assert_eq!(me(app, &access).await["email_verified"], false);

    let (token, mail) = token_from(app, smtp, &email, 1, "verify-email").await;
    assert!(mail.subject.starts_with("Confirm your email address"));
    let res = verify_email(app, &token).await;
    assert_eq!(res.status(), 204);
    assert_eq!(me(app, &access).await["email_verified"], true);

    let again = verify_email(app, &token).await;
    let body = assert_problem(again, 401, "INVALID_ONE_TIME_TOKEN").await;
    assert!(!body.to_string().contains(&token), "no echo of the token");
    // A verified address gets no new link.
    let res = app
        .post_auth("/api/v1/auth/verify-email/resend", &access, None)
        .await;
    assert_eq!(res.status(), 202);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.received_by(&email).len(), 1);
}

/// A reset link sets the password: every session ends, the lock is lifted, the old password
/// and the link stop working.
async fn password_reset_ends_every_session_and_clears_the_lock(app: &TestApp, smtp: &SmtpSink) {
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let access = access_token(app, &email, PASSWORD).await;
    // Locked by wrong passwords (the default threshold is 5).
    let mut locked = false;
    for _ in 0..6 {
        locked = app.login(&email, "wrong password, surely").await.status() == 429;
    }
    assert!(locked, "the account is locked");
    assert_eq!(app.login(&email, PASSWORD).await.status(), 429);

    let typed = email.to_uppercase();
    request_reset(app, &typed).await;
    let (token, mail) = token_from(app, smtp, &email, 2, "reset-password").await;
    assert_eq!(mail.to, email, "the account's address as stored");
    assert!(mail.subject.starts_with("Reset your"));

    // A password the policy refuses: 422, and the link still works.
    let res = confirm_reset(app, &token, "short").await;
    let body = assert_problem(res, 422, "VALIDATION_FAILED").await;
    assert_eq!(body["errors"][0]["field"], "new_password");

    assert_eq!(confirm_reset(app, &token, NEW_PASSWORD).await.status(), 204);
    let res = app.get_auth("/api/v1/users/me", &access).await;
    assert_eq!(res.status(), 401, "the session ended");
    assert_eq!(app.login(&email, PASSWORD).await.status(), 401);
    assert_eq!(
        app.login(&email, NEW_PASSWORD).await.status(),
        200,
        "unlocked"
    );
    let again = confirm_reset(app, &token, "yet another passphrase").await;
    assert_problem(again, 401, "INVALID_ONE_TIME_TOKEN").await;
}

/// An unknown and a known address get the same answer; a second request within the interval
/// sends nothing, and the first link still works.
async fn reset_requests_answer_alike_and_keep_the_interval(app: &TestApp, smtp: &SmtpSink) {
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let unknown = request_reset(app, &unique_email()).await;
    let known = request_reset(app, &email).await;
    assert_eq!(unknown, known);
    let again = request_reset(app, &email).await;
    assert_eq!(again, known);
    let (token, _) = token_from(app, smtp, &email, 2, "reset-password").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        smtp.received_by(&email).len(),
        2,
        "one verification, one reset: the second request sent nothing"
    );
    assert_eq!(smtp.received().len(), 2, "nothing to the unknown address");
    assert_eq!(confirm_reset(app, &token, NEW_PASSWORD).await.status(), 204);
}

/// A change of address applies only once the new address confirms; the old address then no
/// longer signs in, and is free.
async fn change_of_address_applies_when_the_new_address_confirms(app: &TestApp, smtp: &SmtpSink) {
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let access = access_token(app, &email, PASSWORD).await;
    let taken = unique_email();
    assert_eq!(app.register(&taken, PASSWORD).await.status(), 201);
    let change = |new_email: &str, password: &str| {
        let body = json!({ "new_email": new_email, "password": password });
        let access = access.clone();
        async move {
            app.post_auth("/api/v1/users/me/email", &access, Some(&body))
                .await
        }
    };
    let new_email = unique_email();
    assert_problem(
        change(&new_email, "not the password").await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_problem(change(&taken, PASSWORD).await, 409, "EMAIL_TAKEN").await;
    let body = assert_problem(
        change(&email.to_uppercase(), PASSWORD).await,
        422,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["errors"][0]["code"], "unchanged");

    assert_eq!(change(&new_email, PASSWORD).await.status(), 202);
    let (token, mail) = token_from(app, smtp, &new_email, 1, "verify-email").await;
    assert!(
        mail.subject.contains("new email address"),
        "{}",
        mail.subject
    );
    // Nothing changes until the link is opened.
    assert_eq!(me(app, &access).await["email"], email.as_str());
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);

    assert_eq!(verify_email(app, &token).await.status(), 204);
    let profile = me(app, &access).await;
    assert_eq!(profile["email"], new_email.as_str());
    assert_eq!(profile["email_verified"], true);
    assert_eq!(app.login(&email, PASSWORD).await.status(), 401);
    assert_eq!(app.login(&new_email, PASSWORD).await.status(), 200);
    // The old address is free again.
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
}

/// Ten parallel uses of one reset link and of one verification link: one succeeds each.
async fn parallel_uses_of_one_link_succeed_once(app: &TestApp, smtp: &SmtpSink) {
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let (verify, _) = token_from(app, smtp, &email, 1, "verify-email").await;
    request_reset(app, &email).await;
    let (reset, _) = token_from(app, smtp, &email, 2, "reset-password").await;

    let statuses = join_all((0..10).map(|i| {
        let reset = reset.clone();
        async move {
            confirm_reset(app, &reset, &format!("{NEW_PASSWORD} {i}"))
                .await
                .status()
                .as_u16()
        }
    }))
    .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 204).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        9,
        "{statuses:?}"
    );
    let winner = statuses.iter().position(|s| *s == 204).unwrap();
    let password = format!("{NEW_PASSWORD} {winner}");
    assert_eq!(app.login(&email, &password).await.status(), 200);

    let statuses = join_all((0..10).map(|_| {
        let verify = verify.clone();
        async move { verify_email(app, &verify).await.status().as_u16() }
    }))
    .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 204).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        9,
        "{statuses:?}"
    );
}

/// Each new endpoint's bad input: a 4xx problem, and nothing changed (no mail, the password
/// and address as they were).
async fn bad_input_changes_nothing(app: &TestApp, smtp: &SmtpSink) {
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let access = access_token(app, &email, PASSWORD).await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/api/v1/auth/verify-email", json!({}), "token"),
        ("/api/v1/auth/verify-email", json!({"token": ""}), "token"),
        ("/api/v1/auth/verify-email", json!({"token": 7}), "token"),
        (
            "/api/v1/auth/verify-email",
            json!({"token": "a\u{0}b"}),
            "token",
        ),
        (
            "/api/v1/auth/verify-email",
            json!({"token": "x".repeat(257)}),
            "token",
        ),
        ("/api/v1/auth/password-reset", json!({}), "email"),
        (
            "/api/v1/auth/password-reset",
            json!({"email": "not an address"}),
            "email",
        ),
        (
            "/api/v1/auth/password-reset",
            json!({"email": ["a@b.c"]}),
            "email",
        ),
        (
            "/api/v1/auth/password-reset/confirm",
            json!({"token": "t"}),
            "new_password",
        ),
        (
            "/api/v1/auth/password-reset/confirm",
            json!({"new_password": NEW_PASSWORD}),
            "token",
        ),
        (
            "/api/v1/auth/password-reset/confirm",
            json!({"token": "t", "new_password": "x"}),
            "new_password",
        ),
    ];
    for (path, body, field) in cases {
        let res = app.post_json(path, &body).await;
        let problem = assert_problem(res, 422, "VALIDATION_FAILED").await;
        assert!(
            problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{path} {body}: {problem}"
        );
    }
    let change_cases = [
        json!({}),
        json!({"new_email": "nope", "password": PASSWORD}),
        json!({"new_email": unique_email()}),
        json!({"new_email": unique_email(), "password": ""}),
    ];
    for body in change_cases {
        let res = app
            .post_auth("/api/v1/users/me/email", &access, Some(&body))
            .await;
        assert_problem(res, 422, "VALIDATION_FAILED").await;
    }
    // Not JSON, and no token at all.
    let res = app
        .request(reqwest::Method::POST, "/api/v1/auth/password-reset")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "MALFORMED_REQUEST").await;
    let res = app
        .request(reqwest::Method::POST, "/api/v1/users/me/email")
        .json(&json!({"new_email": unique_email(), "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "UNAUTHENTICATED").await;
    let res = app
        .request(reqwest::Method::POST, "/api/v1/auth/verify-email/resend")
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "UNAUTHENTICATED").await;

    // Nothing changed: only the registration mail went out; the account is as it was.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.received().len(), 1);
    let profile = me(app, &access).await;
    assert_eq!(profile["email"], email.as_str());
    assert_eq!(profile["email_verified"], false);
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);
}

/// A resend within the interval is refused with `Retry-After`; after it, a new link replaces
/// the old one.
async fn resend_keeps_the_interval_and_replaces_the_link(app: &TestApp, smtp: &SmtpSink) {
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let access = access_token(app, &email, PASSWORD).await;
    let (first, _) = token_from(app, smtp, &email, 1, "verify-email").await;
    // The interval is 1 s here; wait it out, resend, and try again at once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let res = app
        .post_auth("/api/v1/auth/verify-email/resend", &access, None)
        .await;
    assert_eq!(res.status(), 202);
    let res = app
        .post_auth("/api/v1/auth/verify-email/resend", &access, None)
        .await;
    assert_eq!(res.headers()["retry-after"], "1");
    assert_problem(res, 429, "RATE_LIMITED").await;
    let (second, _) = token_from(app, smtp, &email, 2, "verify-email").await;
    assert_ne!(first, second);
    assert_problem(
        verify_email(app, &first).await,
        401,
        "INVALID_ONE_TIME_TOKEN",
    )
    .await;
    assert_eq!(verify_email(app, &second).await.status(), 204);
}

/// With `AUTH_REQUIRE_VERIFIED_EMAIL`, a correct password on an unverified account is a 403
/// (a wrong one still 401) until the link is opened.
async fn login_waits_for_a_verified_address_when_required(app: &TestApp, smtp: &SmtpSink) {
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    assert_problem(app.login(&email, PASSWORD).await, 403, "EMAIL_NOT_VERIFIED").await;
    assert_problem(
        app.login(&email, "not the password").await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    let (token, _) = token_from(app, smtp, &email, 1, "verify-email").await;
    assert_eq!(verify_email(app, &token).await.status(), 204);
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);
}

/// A reset link and a verification link used while the database is unreachable answer 503
/// and change nothing; the same links work once it is back (the token is spent only with its
/// change), and once only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_used_during_an_outage_still_work_after_it() {
    use crate::common::{PgProxy, pg_addr};
    use auth_infra::test_support::TestDb;
    use secrecy::SecretString;

    let smtp = SmtpSink::start();
    let db = TestDb::new().await;
    let proxy = PgProxy::start(pg_addr(db.url())).await;
    let mut config = crate::common::test_config();
    config.db.url = Some(SecretString::from(proxy.url_for(db.url())));
    config.db.timeout_ms = 300;
    config.mail.smtp_url = Some(SecretString::from(smtp.url()));
    let app = TestApp::serve_mailing(config, None).await;

    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let (verify, _) = token_from(&app, &smtp, &email, 1, "verify-email").await;
    request_reset(&app, &email).await;
    let (reset, _) = token_from(&app, &smtp, &email, 2, "reset-password").await;

    proxy.cut();
    let res = confirm_reset(&app, &reset, NEW_PASSWORD).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 503, "SERVICE_UNAVAILABLE").await;
    assert_problem(
        verify_email(&app, &verify).await,
        503,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    proxy.restore();

    // Retried after the outage: each link works, once.
    let mut status = 0;
    for _ in 0..50 {
        status = confirm_reset(&app, &reset, NEW_PASSWORD)
            .await
            .status()
            .as_u16();
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 204, "the reset link survived the outage");
    assert_eq!(verify_email(&app, &verify).await.status(), 204);
    assert_problem(
        confirm_reset(&app, &reset, "yet another passphrase").await,
        401,
        "INVALID_ONE_TIME_TOKEN",
    )
    .await;
    assert_eq!(app.login(&email, NEW_PASSWORD).await.status(), 200);
    app.stop().await;
    drop(db);
}
