//! Errors a caller can act on: where the API lives (404), which methods a path serves (405),
//! what is wrong with the credentials (401), every missing field and parameter at once (422),
//! and which setting a 429 comes from.

use std::collections::BTreeSet;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::api_keys::create_key;
use crate::common::{
    Backend, PASSWORD, TEST_JWT_KEY, TestApp, assert_problem, on_both_stores, str_field,
    unique_email,
};
use crate::devices::owner_and_org;

on_both_stores!(credential_failures_say_what_is_wrong);

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_path_points_to_the_api_and_its_docs() {
    let app = TestApp::start(Backend::Memory).await;
    for (method, path) in [
        (Method::GET, "/api/v1/nothing"),
        (Method::GET, "/nothing"),
        (Method::POST, "/api/v2/auth/login"),
        (Method::GET, "/api/v1/auth/login/extra"),
    ] {
        let res = app.request(method.clone(), path).send().await.unwrap();
        let body = assert_problem(res, 404, "NOT_FOUND").await;
        let text = detail(&body);
        assert!(
            text.contains("/api/v1") && text.contains("/docs"),
            "{method} {path}: {text}"
        );
    }
    // A known route with an unknown or malformed id keeps its meaning: no such resource.
    let (token, _) = owner_and_org(&app).await;
    for path in [
        "/api/v1/organizations/0190a0a0-0000-7000-8000-000000000000",
        "/api/v1/organizations/not-an-id",
    ] {
        let body = assert_problem(app.get_auth(path, &token).await, 404, "NOT_FOUND").await;
        assert!(!detail(&body).contains("/docs"), "{path}: {body}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_405_names_the_methods_the_path_serves() {
    let app = TestApp::start(Backend::Memory).await;
    let res = app.get("/api/v1/auth/login").await;
    assert_eq!(res.headers()["allow"], "POST");
    let body = assert_problem(res, 405, "METHOD_NOT_ALLOWED").await;
    assert!(detail(&body).contains("GET"), "{body}");
    assert!(detail(&body).contains("POST"), "{body}");
    let res = app
        .request(Method::DELETE, "/api/v1/api-keys")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "GET, POST");
    let body = assert_problem(res, 405, "METHOD_NOT_ALLOWED").await;
    assert!(detail(&body).contains("GET, POST"), "{body}");
    app.stop().await;
}

/// The `WWW-Authenticate` header of an answer.
fn challenge(res: &reqwest::Response) -> String {
    res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Calls `GET /auth/verify` with `authorization` (none when `None`); returns the challenge
/// and the problem's detail.
async fn verify_with(app: &TestApp, authorization: Option<&str>) -> (String, String) {
    let mut req = app.request(Method::GET, "/api/v1/auth/verify");
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    let res = req.send().await.unwrap();
    let challenge = challenge(&res);
    let body = assert_problem(res, 401, "UNAUTHENTICATED").await;
    (challenge, detail(&body).to_owned())
}

/// `token`, a real access token, re-signed with the test key after `change` edits its claims.
fn resigned(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = token.split('.').nth(1).unwrap();
    let mut claims: Value = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
    change(&mut claims);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_KEY.as_bytes()),
    )
    .unwrap()
}

async fn credential_failures_say_what_is_wrong(app: &TestApp) {
    // No header: what to send, and no `error` (RFC 6750 §3.1).
    let (ch, text) = verify_with(app, None).await;
    assert_eq!(ch, r#"Bearer realm="auth""#);
    assert!(text.contains("Authorization"), "{text}");

    // A header that is not `Bearer <token>`.
    for (sent, words) in [
        ("Token abc", "Bearer"),
        ("Basic dXNlcjpwYXNz", "Bearer"),
        ("Bearer", "no token"),
        ("Bearer    ", "no token"),
        ("Bearer abc def", "one token"),
        ("Bearer abc\tdef", "one token"),
    ] {
        let (ch, text) = verify_with(app, Some(sent)).await;
        assert!(text.contains(words), "{sent:?}: {text}");
        assert!(ch.contains(r#"error="invalid_token""#), "{sent:?}: {ch}");
        assert!(ch.contains("error_description="), "{sent:?}: {ch}");
    }

    // An API key sent as a Bearer token: where keys go.
    let (token, org) = owner_and_org(app).await;
    let key = create_key(app, &token, &org, json!(["admin"])).await;
    let key = str_field(&key, "key");
    let (_, text) = verify_with(app, Some(&format!("Bearer {key}"))).await;
    assert!(text.contains("X-API-Key"), "{text}");
    // Also on a manager route, where an API key is accepted in its own header.
    let res = app
        .get_auth(&format!("/api/v1/api-keys?organization_id={org}"), key)
        .await;
    let body = assert_problem(res, 401, "UNAUTHENTICATED").await;
    assert!(detail(&body).contains("X-API-Key"), "{body}");

    // A forged or garbled token is only "invalid": never why.
    let login: Value = app.user_with_session().await.1;
    let access = str_field(&login, "access_token").to_owned();
    let wrong_key = {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = access.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"another-key-0123456789-abcdefghijklmnop"),
        )
        .unwrap()
    };
    let mut invalid = BTreeSet::new();
    for forged in ["abc.def.ghi", "not-a-jwt", &wrong_key] {
        let (ch, text) = verify_with(app, Some(&format!("Bearer {forged}"))).await;
        assert!(ch.contains(r#"error="invalid_token""#), "{ch}");
        assert!(text.contains("invalid"), "{text}");
        for hint in ["signature", "expired", "revoked", "key"] {
            assert!(!text.contains(hint), "{forged}: {text}");
        }
        invalid.insert(text);
    }
    assert_eq!(
        invalid.len(),
        1,
        "one answer for every forgery: {invalid:?}"
    );

    // A token whose signature verifies but whose time is over: expired, log in again.
    let expired = resigned(&access, |claims| {
        let now = chrono::Utc::now().timestamp();
        claims["iat"] = json!(now - 3600);
        claims["nbf"] = json!(now - 3600);
        claims["exp"] = json!(now - 1800);
    });
    let (ch, text) = verify_with(app, Some(&format!("Bearer {expired}"))).await;
    assert!(ch.contains(r#"error="invalid_token""#), "{ch}");
    assert!(text.contains("expired"), "{text}");

    // The session ended (logout): revoked, log in again.
    let res = app
        .post_json(
            "/api/v1/auth/logout",
            &json!({"refresh_token": str_field(&login, "refresh_token")}),
        )
        .await;
    assert_eq!(res.status(), 204);
    let (_, text) = verify_with(app, Some(&format!("Bearer {access}"))).await;
    assert!(text.contains("session"), "{text}");
    assert!(text.contains("ended") || text.contains("revoked"), "{text}");

    // A bad `X-API-Key` says so, and a revoked one says it is revoked.
    let res = app
        .request(
            Method::GET,
            &format!("/api/v1/api-keys?organization_id={org}"),
        )
        .header("x-api-key", "ak_live_nonsense")
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 401, "UNAUTHENTICATED").await;
    assert!(detail(&body).contains("X-API-Key"), "{body}");
    assert!(detail(&body).contains("invalid"), "{body}");
    let id = {
        let res = app
            .get_auth(&format!("/api/v1/api-keys?organization_id={org}"), &token)
            .await;
        let list: Value = res.json().await.unwrap();
        str_field(&list["items"][0], "id").to_owned()
    };
    let res = app
        .post_auth(&format!("/api/v1/api-keys/{id}/revoke"), &token, None)
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .request(
            Method::GET,
            &format!("/api/v1/api-keys?organization_id={org}"),
        )
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 401, "UNAUTHENTICATED").await;
    assert!(detail(&body).contains("revoked"), "{body}");
}

/// The schema of `reference` (`#/components/schemas/X`) or the inline schema itself.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Every operation of the document that takes a JSON body with required fields, sent `{}`,
/// answers one 422 naming every required field: serde alone stops at the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_body_names_every_missing_field() {
    let app = TestApp::start(Backend::Memory).await;
    let doc: Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let (token, org) = owner_and_org(&app).await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(schema) =
                operation["requestBody"]["content"]["application/json"]["schema"].as_object()
            else {
                continue;
            };
            let schema = resolve(&doc, &Value::Object(schema.clone())).clone();
            let required: BTreeSet<String> = schema["required"]
                .as_array()
                .map(|r| r.iter().map(|f| f.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            if required.is_empty() {
                continue;
            }
            let concrete = path
                .replace("{org_id}", &org)
                .replace("{user_id}", "0190a0a0-0000-7000-8000-000000000000")
                .replace("{id}", "0190a0a0-0000-7000-8000-000000000000")
                .replace("{device_id}", "frame-01");
            let res = app
                .request(
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    &concrete,
                )
                .bearer_auth(&token)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let body = assert_problem(res, 422, "VALIDATION_FAILED").await;
            let named: BTreeSet<String> = body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    assert_eq!(e["code"], "required", "{method} {path}: {body}");
                    str_field(e, "field").to_owned()
                })
                .collect();
            assert_eq!(named, required, "{method} {path}: {body}");
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked} bodies checked");

    // A missing field and a broken one are named together.
    let res = app
        .post_json("/api/v1/auth/register", &json!({"email": 5}))
        .await;
    let body = assert_problem(res, 422, "VALIDATION_FAILED").await;
    let named: BTreeSet<(String, String)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                str_field(e, "field").to_owned(),
                str_field(e, "code").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        named,
        BTreeSet::from([
            ("email".to_owned(), "invalid_type".to_owned()),
            ("password".to_owned(), "required".to_owned())
        ]),
        "{body}"
    );
    app.stop().await;
}

/// A listing called without its required query parameter names the parameter, and the
/// document marks it required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_query_parameter_is_named() {
    let app = TestApp::start(Backend::Memory).await;
    let (token, _) = owner_and_org(&app).await;
    let doc: Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    for path in ["/api/v1/api-keys", "/api/v1/devices"] {
        let body = assert_problem(app.get_auth(path, &token).await, 422, "VALIDATION_FAILED").await;
        assert_eq!(body["errors"][0]["field"], "organization_id", "{body}");
        assert_eq!(body["errors"][0]["code"], "required", "{body}");
        let parameter = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "organization_id")
            .unwrap();
        assert_eq!(parameter["required"], true, "{path}: {parameter}");
        let responses = &doc["paths"][path]["get"]["responses"];
        assert!(responses.get("422").is_some(), "{path} documents its 422");
    }
    app.stop().await;
}

/// A 429 names the setting that decides it, so an operator knows what to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_names_its_setting() {
    let app = TestApp::start_with(Backend::Memory, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.per_minute = 1;
        c.rate_limit.verify_per_minute = 1;
    })
    .await;
    let email = unique_email();
    assert_eq!(app.login(&email, PASSWORD).await.status(), 401);
    let body = assert_problem(app.login(&email, PASSWORD).await, 429, "RATE_LIMITED").await;
    assert!(
        detail(&body).contains("AUTH_RATE_LIMIT_PER_MINUTE"),
        "{body}"
    );
    let token = json!({"token": "x"});
    let verify = || app.post_json("/api/v1/auth/verify-token", &token);
    assert_eq!(verify().await.status(), 200);
    let body = assert_problem(verify().await, 429, "RATE_LIMITED").await;
    assert!(
        detail(&body).contains("AUTH_RATE_LIMIT_VERIFY_PER_MINUTE"),
        "{body}"
    );
    app.stop().await;

    let app = TestApp::start_with(Backend::Memory, |c| c.lockout.threshold = 1).await;
    let email = unique_email();
    assert_eq!(app.login(&email, PASSWORD).await.status(), 401);
    let body = assert_problem(app.login(&email, PASSWORD).await, 429, "TOO_MANY_ATTEMPTS").await;
    assert!(detail(&body).contains("AUTH_LOCKOUT_"), "{body}");
    app.stop().await;
}
