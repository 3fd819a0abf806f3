//! Register, login, refresh (rotation, reuse), logout, logout-all, verify, verify-token.

use futures::future::join_all;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{
    PASSWORD, TEST_JWT_KEY, TestApp, assert_problem, on_both_stores, str_field, unique_email,
};

on_both_stores!(
    register_creates_an_account,
    register_refuses_a_taken_email_in_any_case,
    login_answers_tokens_and_identical_failures,
    refresh_rotates_and_reuse_ends_the_session,
    logout_ends_the_session,
    logout_all_ends_every_session,
    verify_reports_the_caller,
    verify_token_answers_every_case_without_401,
    parallel_refreshes_have_one_winner,
    parallel_registrations_have_one_winner,
);

async fn register_creates_an_account(app: &TestApp) {
    let email = format!("  Mixed.{}@Example.COM ", uuid::Uuid::now_v7().simple());
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": email, "password": PASSWORD, "display_name": "Ada"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["email"], email.trim(), "stored as typed, trimmed");
    assert_eq!(body["display_name"], "Ada");
    assert!(uuid::Uuid::parse_str(str_field(&body, "id")).is_ok());
    assert!(chrono::DateTime::parse_from_rfc3339(str_field(&body, "created_at")).is_ok());
    assert_eq!(
        body.as_object().unwrap().len(),
        4,
        "no other fields (no hash!): {body}"
    );

    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": unique_email(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(
        res.json::<Value>().await.unwrap()["display_name"],
        Value::Null
    );

    // Unknown fields are ignored and never applied.
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": unique_email(), "password": PASSWORD, "is_admin": true}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let email = str_field(&res.json::<Value>().await.unwrap(), "email").to_owned();
    let login: Value = app.login(&email, PASSWORD).await.json().await.unwrap();
    let me: Value = app
        .get_auth("/api/v1/auth/verify", str_field(&login, "access_token"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["is_admin"], false);
}

async fn register_refuses_a_taken_email_in_any_case(app: &TestApp) {
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let res = app
        .register(&email.to_uppercase(), "another password")
        .await;
    assert_problem(res, 409, "EMAIL_TAKEN").await;
    // The first account is intact.
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);
}

async fn login_answers_tokens_and_identical_failures(app: &TestApp) {
    let email = unique_email();
    app.register(&email, PASSWORD).await;
    let res = app.login(&email.to_uppercase(), PASSWORD).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["refresh_expires_in"], 30 * 24 * 3600);
    assert_eq!(body["user"]["email"], email.as_str());
    assert!(str_field(&body, "refresh_token").len() >= 43, "256 bits");
    let header = jsonwebtoken::decode_header(str_field(&body, "access_token")).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, Algorithm::HS256);

    let wrong_password = app.login(&email, "not the password").await;
    assert_eq!(
        wrong_password.headers()["www-authenticate"],
        "Bearer realm=\"auth\""
    );
    let mut a = assert_problem(wrong_password, 401, "INVALID_CREDENTIALS").await;
    let mut b = assert_problem(
        app.login(&unique_email(), PASSWORD).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    a["request_id"] = Value::Null;
    b["request_id"] = Value::Null;
    assert_eq!(
        a, b,
        "unknown email and wrong password are indistinguishable"
    );
    assert_eq!(a["detail"], "Invalid email or password");
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": token}))
        .await
}

async fn refresh_rotates_and_reuse_ends_the_session(app: &TestApp) {
    let (_, login) = app.user_with_session().await;
    let first = str_field(&login, "refresh_token");
    let res = refresh(app, first).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let second: Value = res.json().await.unwrap();
    assert_ne!(second["refresh_token"], login["refresh_token"]);
    assert_eq!(second["token_type"], "Bearer");
    let access = str_field(&second, "access_token");
    assert_eq!(
        app.get_auth("/api/v1/auth/verify", access).await.status(),
        200
    );

    // Reuse of the spent token: 401, and the whole family dies.
    assert_problem(refresh(app, first).await, 401, "INVALID_REFRESH_TOKEN").await;
    assert_problem(
        refresh(app, str_field(&second, "refresh_token")).await,
        401,
        "INVALID_REFRESH_TOKEN",
    )
    .await;
    let res = app.get_auth("/api/v1/auth/verify", access).await;
    // The challenge also says why (`error_description`: see tests/http/errors.rs).
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=\"auth\", error=\"invalid_token\", error_description=")
    );
    assert_problem(res, 401, "UNAUTHENTICATED").await;

    assert_problem(
        refresh(app, "never-issued").await,
        401,
        "INVALID_REFRESH_TOKEN",
    )
    .await;
    assert_problem(
        app.post_json("/api/v1/auth/refresh", &json!({})).await,
        422,
        "VALIDATION_FAILED",
    )
    .await;
}

async fn logout_ends_the_session(app: &TestApp) {
    let (_, login) = app.user_with_session().await;
    let rt = str_field(&login, "refresh_token");
    let res = app
        .post_json("/api/v1/auth/logout", &json!({"refresh_token": rt}))
        .await;
    assert_eq!(res.status(), 204);
    assert_problem(refresh(app, rt).await, 401, "INVALID_REFRESH_TOKEN").await;
    let res = app
        .get_auth("/api/v1/auth/verify", str_field(&login, "access_token"))
        .await;
    assert_problem(res, 401, "UNAUTHENTICATED").await;
    // Unknown tokens and repeats answer 204 too.
    let res = app
        .post_json("/api/v1/auth/logout", &json!({"refresh_token": "unknown"}))
        .await;
    assert_eq!(res.status(), 204);
    let res = app
        .post_json("/api/v1/auth/logout", &json!({"refresh_token": rt}))
        .await;
    assert_eq!(res.status(), 204);
    let res = app
        .post_json("/api/v1/auth/logout", &json!({"refresh_token": 42}))
        .await;
    assert_problem(res, 422, "VALIDATION_FAILED").await;
}

async fn logout_all_ends_every_session(app: &TestApp) {
    let (email, first) = app.user_with_session().await;
    let second: Value = app.login(&email, PASSWORD).await.json().await.unwrap();
    let (_, stranger) = app.user_with_session().await;
    let res = app
        .post_auth(
            "/api/v1/auth/logout-all",
            str_field(&first, "access_token"),
            None,
        )
        .await;
    assert_eq!(res.status(), 204);
    for s in [&first, &second] {
        assert_eq!(
            app.get_auth("/api/v1/auth/verify", str_field(s, "access_token"))
                .await
                .status(),
            401
        );
        assert_eq!(
            refresh(app, str_field(s, "refresh_token")).await.status(),
            401
        );
    }
    assert_eq!(
        app.get_auth("/api/v1/auth/verify", str_field(&stranger, "access_token"))
            .await
            .status(),
        200
    );
    let res = app
        .request(Method::POST, "/api/v1/auth/logout-all")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"auth\"");
    assert_problem(res, 401, "UNAUTHENTICATED").await;
}

async fn verify_reports_the_caller(app: &TestApp) {
    let (email, login) = app.user_with_session().await;
    let at = str_field(&login, "access_token");
    let res = app.get_auth("/api/v1/auth/verify", at).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["valid"], true);
    assert_eq!(body["email"], email.as_str());
    assert_eq!(body["user_id"], login["user"]["id"]);
    assert_eq!(body["is_admin"], false);
    assert!(body["session_id"].is_string() && body["expires_at"].is_string());

    // Missing credentials: plain challenge. Bad ones: invalid_token.
    let res = app.get("/api/v1/auth/verify").await;
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"auth\"");
    assert_problem(res, 401, "UNAUTHENTICATED").await;
    for bad in [
        format!("Basic {at}"),
        "Bearer".into(),
        "Bearer not.a.jwt".into(),
        format!("Bearer {at}x"),
    ] {
        let res = app
            .request(Method::GET, "/api/v1/auth/verify")
            .header("authorization", bad)
            .send()
            .await
            .unwrap();
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer realm=\"auth\", error=\"invalid_token\", error_description=")
        );
        assert_problem(res, 401, "UNAUTHENTICATED").await;
    }
    // A token in the query string is ignored.
    let res = app
        .get(&format!("/api/v1/auth/verify?access_token={at}"))
        .await;
    assert_problem(res, 401, "UNAUTHENTICATED").await;
    // Scheme is case-insensitive.
    let res = app
        .request(Method::GET, "/api/v1/auth/verify")
        .header("authorization", format!("bearer {at}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

fn forge(claims: &Value, typ: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(typ.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(TEST_JWT_KEY.as_bytes()),
    )
    .unwrap()
}

async fn verify_token(app: &TestApp, token: &str) -> Value {
    let res = app
        .post_json("/api/v1/auth/verify-token", &json!({"token": token}))
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn verify_token_answers_every_case_without_401(app: &TestApp) {
    let (email, login) = app.user_with_session().await;
    let at = str_field(&login, "access_token");
    let ok = verify_token(app, at).await;
    assert_eq!(ok["valid"], true);
    assert_eq!(ok["token_type"], "user");
    assert_eq!(ok["email"], email.as_str());
    assert_eq!(ok["user_id"], login["user"]["id"]);
    assert!(ok.get("error").is_none() && ok.get("device_id").is_none());

    let garbage = verify_token(app, "garbage").await;
    assert_eq!(garbage, json!({"valid": false, "error": "INVALID"}));

    // Correctly signed, but expired (beyond the 30 s leeway) or of the wrong kind.
    let claims = jsonwebtoken::decode::<Value>(
        at,
        &jsonwebtoken::DecodingKey::from_secret(TEST_JWT_KEY.as_bytes()),
        &{
            let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
            v.set_audience(&["auth-service"]);
            v
        },
    )
    .unwrap()
    .claims;
    let now = chrono::Utc::now().timestamp();
    let mut expired = claims.clone();
    expired["iat"] = json!(now - 3600);
    expired["nbf"] = json!(now - 3600);
    expired["exp"] = json!(now - 31);
    assert_eq!(
        verify_token(app, &forge(&expired, "at+jwt")).await["error"],
        "EXPIRED"
    );
    assert_eq!(
        verify_token(app, &forge(&claims, "JWT")).await["error"],
        "INVALID"
    );
    assert_eq!(
        verify_token(app, &forge(&claims, "at+jwt")).await["valid"],
        true,
        "the forger's control case"
    );

    app.post_json(
        "/api/v1/auth/logout",
        &json!({"refresh_token": login["refresh_token"]}),
    )
    .await;
    assert_eq!(
        verify_token(app, at).await,
        json!({"valid": false, "error": "REVOKED"})
    );

    let res = app.post_json("/api/v1/auth/verify-token", &json!({})).await;
    assert_problem(res, 422, "VALIDATION_FAILED").await;
}

async fn parallel_refreshes_have_one_winner(app: &TestApp) {
    let (_, login) = app.user_with_session().await;
    let rt = str_field(&login, "refresh_token").to_owned();
    let statuses: Vec<u16> = join_all((0..20).map(|_| {
        let rt = rt.clone();
        async move { refresh(app, &rt).await.status().as_u16() }
    }))
    .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        19,
        "{statuses:?}"
    );
    // With no grace period the losers count as reuse: the session has ended.
    let res = app
        .get_auth("/api/v1/auth/verify", str_field(&login, "access_token"))
        .await;
    assert_problem(res, 401, "UNAUTHENTICATED").await;
}

async fn parallel_registrations_have_one_winner(app: &TestApp) {
    let email = unique_email();
    let statuses: Vec<u16> = join_all((0..20).map(|i| {
        let variant = match i % 3 {
            0 => email.to_uppercase(),
            1 => email.clone(),
            _ => format!(" {} ", email.replacen('u', "U", 1)),
        };
        async move { app.register(&variant, PASSWORD).await.status().as_u16() }
    }))
    .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
}
