//! Revocations are announced inside the transaction that makes them: when the announcement
//! cannot be sent, the call fails and nothing changed, so no instance is left trusting a
//! credential that the database says has ended.
//!
//! The database is made to refuse notifications by a `public.pg_notify` that shadows the
//! built-in one (the test database searches `public` before `pg_catalog`) and fails as a
//! lost connection would; heartbeats still pass, so the instance stays ready.

use auth_infra::test_support::TestDb;
use secrecy::SecretString;
use serde_json::json;

use crate::api_keys::{create_key, verify};
use crate::common::{PASSWORD, TestApp, assert_problem, str_field, test_config};
use crate::devices::{authenticate, owner_and_org, register};

const SEARCH_PUBLIC_FIRST: &str = "DO $$ BEGIN EXECUTE format(
    'ALTER DATABASE %I SET search_path = public, pg_catalog', current_database()); END $$;";

const REFUSE_NOTIFICATIONS: &str = "CREATE FUNCTION public.pg_notify(channel text, payload text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF payload LIKE 'h@%' THEN
        PERFORM pg_catalog.pg_notify(channel, payload);
        RETURN;
    END IF;
    RAISE EXCEPTION 'notification refused' USING ERRCODE = 'serialization_failure';
END $$;";

const ACCEPT_NOTIFICATIONS: &str = "DROP FUNCTION public.pg_notify(text, text);";

async fn app_whose_notifications_can_fail() -> (TestApp, TestDb) {
    let db = TestDb::new().await;
    db.execute(SEARCH_PUBLIC_FIRST).await;
    let mut config = test_config();
    config.db.url = Some(SecretString::from(db.url().to_owned()));
    let app = TestApp::serve(config, None).await;
    assert_eq!(app.get("/health/ready").await.status(), 200);
    (app, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revocation_or_rotation_that_cannot_be_announced_changes_nothing() {
    let (app, db) = app_whose_notifications_can_fail().await;
    let (token, org) = owner_and_org(&app).await;
    let created = create_key(&app, &token, &org, json!(["read"])).await;
    let (id, key) = (str_field(&created, "id"), str_field(&created, "key"));

    db.execute(REFUSE_NOTIFICATIONS).await;
    for action in ["rotate", "revoke"] {
        let res = app
            .post_auth(&format!("/api/v1/api-keys/{id}/{action}"), &token, None)
            .await;
        assert_problem(res, 503, "SERVICE_UNAVAILABLE").await;
        assert_eq!(
            verify(&app, key, json!([])).await["valid"],
            true,
            "{action}"
        );
    }
    let listed: serde_json::Value = app
        .get_auth(&format!("/api/v1/api-keys?organization_id={org}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");

    db.execute(ACCEPT_NOTIFICATIONS).await;
    let res = app
        .post_auth(&format!("/api/v1/api-keys/{id}/rotate"), &token, None)
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(verify(&app, key, json!([])).await["error"], "REVOKED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_change_that_cannot_be_announced_changes_nothing_and_a_retry_applies_it() {
    let (app, db) = app_whose_notifications_can_fail().await;
    let (token, org) = owner_and_org(&app).await;
    let created = create_key(&app, &token, &org, json!(["read", "write"])).await;
    let (id, key) = (str_field(&created, "id"), str_field(&created, "key"));
    assert_eq!(verify(&app, key, json!(["write"])).await["valid"], true);
    let before: serde_json::Value = app
        .get_auth(&format!("/api/v1/api-keys/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    let change = json!({"scopes": ["read"], "external_id": "cus_1"});

    db.execute(REFUSE_NOTIFICATIONS).await;
    let res = crate::key_products::patch(&app, &token, id, &change).await;
    assert_problem(res, 503, "SERVICE_UNAVAILABLE").await;
    let after: serde_json::Value = app
        .get_auth(&format!("/api/v1/api-keys/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after, before, "nothing changed");
    assert_eq!(verify(&app, key, json!(["write"])).await["valid"], true);

    // The same request again, once the database announces again, applies whole.
    db.execute(ACCEPT_NOTIFICATIONS).await;
    let res = crate::key_products::patch(&app, &token, id, &change).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        verify(&app, key, json!(["write"])).await["error"],
        "INSUFFICIENT_SCOPE"
    );
    assert_eq!(
        verify(&app, key, json!(["read"])).await["external_id"],
        "cus_1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_rotation_or_revocation_that_cannot_be_announced_changes_nothing() {
    let (app, db) = app_whose_notifications_can_fail().await;
    let (token, org) = owner_and_org(&app).await;
    let id = format!("frame:{}", uuid::Uuid::now_v7().simple());
    let device = register(&app, &token, &org, &id).await;
    let secret = str_field(&device, "device_secret");

    db.execute(REFUSE_NOTIFICATIONS).await;
    for action in ["rotate-secret", "revoke"] {
        let res = app
            .post_auth(&format!("/api/v1/devices/{id}/{action}"), &token, None)
            .await;
        assert_problem(res, 503, "SERVICE_UNAVAILABLE").await;
        assert_eq!(
            authenticate(&app, &id, secret).await.status(),
            200,
            "{action}"
        );
    }
    // Registration announces too (a lookup of the unused id may be cached as unknown).
    let res = app
        .post_auth(
            "/api/v1/devices",
            &token,
            Some(&json!({"device_id": format!("{id}-2"), "organization_id": org})),
        )
        .await;
    assert_problem(res, 503, "SERVICE_UNAVAILABLE").await;

    db.execute(ACCEPT_NOTIFICATIONS).await;
    let res = app
        .post_auth(&format!("/api/v1/devices/{id}/rotate-secret"), &token, None)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(authenticate(&app, &id, secret).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ends_that_cannot_be_announced_change_nothing() {
    let (app, db) = app_whose_notifications_can_fail().await;
    let (email, first) = app.user_with_session().await;
    let second: serde_json::Value = app.login(&email, PASSWORD).await.json().await.unwrap();
    let access = str_field(&first, "access_token");
    let other_refresh = str_field(&second, "refresh_token");

    db.execute(REFUSE_NOTIFICATIONS).await;
    let change = json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"});
    let res = app
        .post_auth("/api/v1/users/me/password", access, Some(&change))
        .await;
    assert_problem(res, 503, "SERVICE_UNAVAILABLE").await;
    let res = app.post_auth("/api/v1/auth/logout-all", access, None).await;
    assert_problem(res, 503, "SERVICE_UNAVAILABLE").await;
    let res = app
        .post_json(
            "/api/v1/auth/logout",
            &json!({"refresh_token": other_refresh}),
        )
        .await;
    assert_problem(res, 503, "SERVICE_UNAVAILABLE").await;

    db.execute(ACCEPT_NOTIFICATIONS).await;
    // Nothing changed: the old password logs in, the other session refreshes.
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);
    let res = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": other_refresh}),
        )
        .await;
    assert_eq!(res.status(), 200);
}
