//! Devices over HTTP: register, authenticate, tokens, rotate, revoke, list, management rules.

use reqwest::Method;
use serde_json::{Value, json};

use crate::api_keys::create_key;
use crate::common::{TestApp, assert_problem, on_both_stores, str_field};
use crate::organizations::new_org;

on_both_stores!(
    devices_register_authenticate_and_verify,
    device_failures_are_indistinguishable,
    rotation_and_revocation,
    devices_are_managed_by_managers_only,
    ids_made_only_of_dots_are_refused,
);

pub async fn register(app: &TestApp, token: &str, org: &str, id: &str) -> Value {
    let res = app
        .post_auth(
            "/api/v1/devices",
            token,
            Some(&json!({"device_id": id, "organization_id": org})),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    res.json().await.unwrap()
}

pub async fn authenticate(app: &TestApp, id: &str, secret: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/devices/authenticate",
        &json!({"device_id": id, "device_secret": secret}),
    )
    .await
}

pub async fn verify_token(app: &TestApp, token: &str) -> Value {
    app.post_json("/api/v1/auth/verify-token", &json!({"token": token}))
        .await
        .json()
        .await
        .unwrap()
}

pub async fn owner_and_org(app: &TestApp) -> (String, String) {
    let (_, owner) = app.user_with_session().await;
    let token = str_field(&owner, "access_token").to_owned();
    let org = new_org(app, &token, "Frames").await;
    (token, org)
}

fn device_id(tag: &str) -> String {
    format!("frame:{tag}.{}", uuid::Uuid::now_v7().simple())
}

async fn devices_register_authenticate_and_verify(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let id = device_id("kitchen");
    let res = app
        .post_auth(
            "/api/v1/devices",
            &token,
            Some(&json!({"device_id": id, "organization_id": org, "name": "Kitchen frame", "metadata": {"model": "F1", "fw": {"v": 3}}})),
        )
        .await;
    assert_eq!(res.status(), 201);
    let reg: Value = res.json().await.unwrap();
    assert_eq!(reg["device_id"], id.as_str());
    assert_eq!(reg["name"], "Kitchen frame");
    assert_eq!(reg["metadata"], json!({"model": "F1", "fw": {"v": 3}}));
    assert_eq!(reg["status"], "active");
    let secret = str_field(&reg, "device_secret").to_owned();
    assert!(
        secret.starts_with("ds_") && secret.len() >= 46,
        "256 bits: {secret}"
    );
    // Name defaults to the id; metadata to {}.
    let plain = register(app, &token, &org, &device_id("plain")).await;
    assert_eq!(plain["name"], plain["device_id"]);
    assert_eq!(plain["metadata"], json!({}));

    let res = authenticate(app, &id, &secret).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let auth: Value = res.json().await.unwrap();
    assert_eq!(auth["token_type"], "Bearer");
    assert_eq!(auth["expires_in"], 86_400);
    assert_eq!(auth["device_id"], id.as_str());
    assert_eq!(auth["organization_id"], org.as_str());
    assert!(auth.get("refresh_token").is_none());
    let dt = str_field(&auth, "access_token");
    let header = jsonwebtoken::decode_header(dt).unwrap();
    assert_eq!(header.typ.as_deref(), Some("device+jwt"));

    let v = verify_token(app, dt).await;
    assert_eq!(v["valid"], true);
    assert_eq!(v["token_type"], "device");
    assert_eq!(v["device_id"], id.as_str());
    assert_eq!(v["organization_id"], org.as_str());
    assert!(v.get("user_id").is_none() && v["expires_at"].is_string());

    // A device token is no user token, and the other way round.
    let res = app.get_auth("/api/v1/auth/verify", dt).await;
    assert_problem(res, 401, "UNAUTHENTICATED").await;
    assert_problem(
        app.get_auth("/api/v1/users/me", dt).await,
        401,
        "UNAUTHENTICATED",
    )
    .await;
    let res = app
        .get_auth(&format!("/api/v1/devices?organization_id={org}"), dt)
        .await;
    assert_problem(res, 401, "UNAUTHENTICATED").await;

    let listed: Value = app
        .get_auth(&format!("/api/v1/devices?organization_id={org}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&secret));
    let got: Value = app
        .get_auth(&format!("/api/v1/devices/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["device_id"], id.as_str());
    assert_eq!(got["metadata"]["fw"]["v"], 3);
    assert!(got.get("device_secret").is_none());

    for bad in [
        json!({"device_id": "has space", "organization_id": org}),
        json!({"device_id": "x".repeat(129), "organization_id": org}),
        json!({"device_id": "ok-id", "organization_id": org, "metadata": [1, 2]}),
        json!({"device_id": "ok-id", "organization_id": org, "name": ""}),
        json!({"device_id": "ok-id", "organization_id": org, "metadata": {"note": "nul\u{0}inside"}}),
        json!({"organization_id": org}),
    ] {
        assert_problem(
            app.post_auth("/api/v1/devices", &token, Some(&bad)).await,
            422,
            "VALIDATION_FAILED",
        )
        .await;
    }
    let res = app
        .post_auth(
            "/api/v1/devices",
            &token,
            Some(&json!({"device_id": id, "organization_id": org})),
        )
        .await;
    assert_problem(res, 409, "DEVICE_EXISTS").await;
    // Ids are unique across the service: another organization cannot take it either.
    let (other_token, other_org) = owner_and_org(app).await;
    let res = app
        .post_auth(
            "/api/v1/devices",
            &other_token,
            Some(&json!({"device_id": id, "organization_id": other_org})),
        )
        .await;
    assert_problem(res, 409, "DEVICE_EXISTS").await;
}

async fn device_failures_are_indistinguishable(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let id = device_id("a");
    let reg = register(app, &token, &org, &id).await;
    let secret = str_field(&reg, "device_secret").to_owned();
    let revoked_id = device_id("r");
    let revoked = register(app, &token, &org, &revoked_id).await;
    app.post_auth(
        &format!("/api/v1/devices/{revoked_id}/revoke"),
        &token,
        None,
    )
    .await;

    let mut bodies = Vec::new();
    for (d, s) in [
        (id.as_str(), "ds_wrong-secret"),
        ("never-registered", secret.as_str()),
        (revoked_id.as_str(), str_field(&revoked, "device_secret")),
        ("bad id with spaces", secret.as_str()),
    ] {
        let res = authenticate(app, d, s).await;
        assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"auth\"");
        let mut body = assert_problem(res, 401, "INVALID_DEVICE_CREDENTIALS").await;
        body["request_id"] = Value::Null;
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    assert_problem(
        app.post_json("/api/v1/devices/authenticate", &json!({"device_id": id}))
            .await,
        422,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(authenticate(app, &id, &secret).await.status(), 200);
}

async fn rotation_and_revocation(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let id = device_id("rot");
    let reg = register(app, &token, &org, &id).await;
    let old = str_field(&reg, "device_secret").to_owned();
    let before: Value = authenticate(app, &id, &old).await.json().await.unwrap();
    let old_token = str_field(&before, "access_token").to_owned();

    let res = app
        .post_auth(&format!("/api/v1/devices/{id}/rotate-secret"), &token, None)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let rotated: Value = res.json().await.unwrap();
    assert_eq!(rotated["device_id"], id.as_str());
    let new = str_field(&rotated, "device_secret");
    assert_ne!(new, old);
    assert_problem(
        authenticate(app, &id, &old).await,
        401,
        "INVALID_DEVICE_CREDENTIALS",
    )
    .await;
    let after: Value = authenticate(app, &id, new).await.json().await.unwrap();
    let new_token = str_field(&after, "access_token");
    // Rotation ends the tokens issued before it (a rotation answers a leaked secret), even
    // within the second it happened in; tokens from the new secret verify.
    assert_eq!(
        verify_token(app, &old_token).await,
        json!({"valid": false, "error": "REVOKED"})
    );
    assert_eq!(verify_token(app, new_token).await["valid"], true);
    assert_eq!(verify_token(app, new_token).await["token_type"], "device");

    let res = app
        .post_auth(&format!("/api/v1/devices/{id}/revoke"), &token, None)
        .await;
    assert_eq!(res.status(), 200);
    let revoked: Value = res.json().await.unwrap();
    assert_eq!(revoked["status"], "revoked");
    for t in [old_token.as_str(), new_token] {
        assert_eq!(
            verify_token(app, t).await,
            json!({"valid": false, "error": "REVOKED"})
        );
    }
    assert_problem(
        authenticate(app, &id, new).await,
        401,
        "INVALID_DEVICE_CREDENTIALS",
    )
    .await;
    assert_problem(
        app.post_auth(&format!("/api/v1/devices/{id}/revoke"), &token, None)
            .await,
        409,
        "ALREADY_REVOKED",
    )
    .await;
    assert_problem(
        app.post_auth(&format!("/api/v1/devices/{id}/rotate-secret"), &token, None)
            .await,
        409,
        "ALREADY_REVOKED",
    )
    .await;
    assert_problem(
        app.post_auth("/api/v1/devices/unknown-device/revoke", &token, None)
            .await,
        404,
        "NOT_FOUND",
    )
    .await;
    assert_problem(
        app.get_auth("/api/v1/devices/bad%20id", &token).await,
        404,
        "NOT_FOUND",
    )
    .await;
    let listed: Value = app
        .get_auth(&format!("/api/v1/devices?organization_id={org}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["status"], "revoked");
}

async fn devices_are_managed_by_managers_only(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let admin_key = create_key(app, &token, &org, json!(["admin"])).await;
    let plain_key = create_key(app, &token, &org, json!(["devices:write"])).await;
    let id = device_id("bykey");
    let res = app
        .request(Method::POST, "/api/v1/devices")
        .header("x-api-key", str_field(&admin_key, "key"))
        .json(&json!({"device_id": id, "organization_id": org}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = app
        .request(
            Method::GET,
            &format!("/api/v1/devices?organization_id={org}"),
        )
        .header("x-api-key", str_field(&plain_key, "key"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "FORBIDDEN").await;

    let (member_email, member) = app.user_with_session().await;
    app.post_auth(
        &format!("/api/v1/organizations/{org}/members"),
        &token,
        Some(&json!({"email": member_email, "role": "member"})),
    )
    .await;
    let mt = str_field(&member, "access_token");
    assert_problem(
        app.get_auth(&format!("/api/v1/devices/{id}"), mt).await,
        403,
        "FORBIDDEN",
    )
    .await;
    let (_, stranger) = app.user_with_session().await;
    let st = str_field(&stranger, "access_token");
    assert_problem(
        app.get_auth(&format!("/api/v1/devices/{id}"), st).await,
        404,
        "NOT_FOUND",
    )
    .await;
    assert_problem(
        app.post_auth(&format!("/api/v1/devices/{id}/revoke"), st, None)
            .await,
        404,
        "NOT_FOUND",
    )
    .await;
    let res = app
        .post_auth(
            "/api/v1/devices",
            st,
            Some(&json!({"device_id": device_id("x"), "organization_id": org})),
        )
        .await;
    assert_problem(res, 404, "NOT_FOUND").await;
    assert_problem(
        app.get(&format!("/api/v1/devices?organization_id={org}"))
            .await,
        401,
        "UNAUTHENTICATED",
    )
    .await;
    assert_problem(
        app.get_auth("/api/v1/devices", &token).await,
        422,
        "VALIDATION_FAILED",
    )
    .await;
}

/// `.` and `..` (and any id made only of dots) are path segments that clients and proxies
/// normalise away (`/devices/../revoke`), so no device may be named so.
async fn ids_made_only_of_dots_are_refused(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    for id in [".", "..", "...", &".".repeat(128)] {
        let problem = assert_problem(
            app.post_auth(
                "/api/v1/devices",
                &token,
                Some(&json!({"device_id": id, "organization_id": org})),
            )
            .await,
            422,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "device_id", "{id}");
    }
    let dotted = format!(".{}.", uuid::Uuid::now_v7().simple());
    register(app, &token, &org, &dotted).await;
}
