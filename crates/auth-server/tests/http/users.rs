//! `/users/me`: the profile, its update, and password change.

use serde_json::{Value, json};

use reqwest::Method;

use crate::common::{PASSWORD, TestApp, assert_problem, on_both_stores, str_field};

on_both_stores!(
    me_shows_the_profile,
    password_change_ends_other_sessions,
    the_profile_is_updated_and_bad_input_changes_nothing,
    deleting_an_account_ends_everything_and_keeps_owners
);

async fn me_shows_the_profile(app: &TestApp) {
    let (email, login) = app.user_with_session().await;
    let res = app
        .get_auth("/api/v1/users/me", str_field(&login, "access_token"))
        .await;
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["id"], login["user"]["id"]);
    assert_eq!(me["is_admin"], false);
    assert_eq!(me["display_name"], Value::Null);
    assert_eq!(me["organizations"], json!([]));
    assert!(me.get("password_hash").is_none());
    assert_problem(app.get("/api/v1/users/me").await, 401, "UNAUTHENTICATED").await;
}

async fn password_change_ends_other_sessions(app: &TestApp) {
    let (email, here) = app.user_with_session().await;
    let elsewhere: Value = app.login(&email, PASSWORD).await.json().await.unwrap();
    let at = str_field(&here, "access_token");
    let path = "/api/v1/users/me/password";

    let res = app
        .post_auth(
            path,
            at,
            Some(&json!({"current_password": "wrong one!", "new_password": "a new passphrase"})),
        )
        .await;
    assert_problem(res, 401, "INVALID_CREDENTIALS").await;
    let res = app
        .post_auth(
            path,
            at,
            Some(&json!({"current_password": PASSWORD, "new_password": "short"})),
        )
        .await;
    let body = assert_problem(res, 422, "VALIDATION_FAILED").await;
    assert_eq!(body["errors"][0]["field"], "new_password");
    assert_eq!(body["errors"][0]["code"], "too_short");
    let res = app
        .request(reqwest::Method::POST, path)
        .json(&json!({"current_password": PASSWORD, "new_password": "a new passphrase"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "UNAUTHENTICATED").await;
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        200,
        "nothing changed so far"
    );

    let res = app
        .post_auth(
            path,
            at,
            Some(&json!({"current_password": PASSWORD, "new_password": "a new passphrase"})),
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        app.get_auth("/api/v1/auth/verify", at).await.status(),
        200,
        "this session lives on"
    );
    assert_eq!(
        app.get_auth("/api/v1/auth/verify", str_field(&elsewhere, "access_token"))
            .await
            .status(),
        401
    );
    let res = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": elsewhere["refresh_token"]}),
        )
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(app.login(&email, PASSWORD).await.status(), 401);
    assert_eq!(app.login(&email, "a new passphrase").await.status(), 200);

    // The session that changed it changes it again: checked against the stored hash, not a
    // cached one.
    let res = app
        .post_auth(
            path,
            at,
            Some(&json!({"current_password": PASSWORD, "new_password": "third passphrase"})),
        )
        .await;
    assert_problem(res, 401, "INVALID_CREDENTIALS").await;
    let res = app.post_auth(path, at, Some(&json!({"current_password": "a new passphrase", "new_password": "third passphrase"}))).await;
    assert_eq!(res.status(), 204);
    assert_eq!(app.login(&email, "third passphrase").await.status(), 200);
}

async fn patch_me(app: &TestApp, token: &str, body: &str) -> reqwest::Response {
    app.request(Method::PATCH, "/api/v1/users/me")
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn shown_name(app: &TestApp, token: &str) -> Value {
    let me: Value = app
        .get_auth("/api/v1/users/me", token)
        .await
        .json()
        .await
        .unwrap();
    me["display_name"].clone()
}

async fn the_profile_is_updated_and_bad_input_changes_nothing(app: &TestApp) {
    let (email, login) = app.user_with_session().await;
    let at = str_field(&login, "access_token");

    let res = patch_me(app, at, r#"{"display_name": "  Ada Lovelace "}"#).await;
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.unwrap();
    assert_eq!(
        me["display_name"], "Ada Lovelace",
        "trimmed, as at registration"
    );
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["organizations"], json!([]));
    assert_eq!(shown_name(app, at).await, "Ada Lovelace");

    // Refused, every one of them, leaving the name as it was.
    for (body, field, code) in [
        ("{}", "display_name", "required"),
        (r#"{"display_name": ""}"#, "display_name", "invalid"),
        (r#"{"display_name": 7}"#, "display_name", "invalid_type"),
    ] {
        let problem = assert_problem(patch_me(app, at, body).await, 422, "VALIDATION_FAILED").await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
        assert_eq!(problem["errors"][0]["code"], code, "{body}");
    }
    let long = format!(r#"{{"display_name": "{}"}}"#, "x".repeat(101));
    assert_problem(patch_me(app, at, &long).await, 422, "VALIDATION_FAILED").await;
    let control = r#"{"display_name": "Ada\u0007"}"#;
    let problem = assert_problem(patch_me(app, at, control).await, 422, "VALIDATION_FAILED").await;
    assert_eq!(problem["errors"][0]["code"], "control_character");
    assert_problem(patch_me(app, at, "{").await, 400, "MALFORMED_REQUEST").await;
    assert_problem(
        patch_me(app, "not a token", r#"{"display_name": null}"#).await,
        401,
        "UNAUTHENTICATED",
    )
    .await;
    assert_eq!(shown_name(app, at).await, "Ada Lovelace");

    // `null` clears it.
    let res = patch_me(app, at, r#"{"display_name": null}"#).await;
    assert_eq!(res.status(), 200);
    assert_eq!(shown_name(app, at).await, Value::Null);
}

async fn delete_me(app: &TestApp, token: &str, body: &str) -> reqwest::Response {
    app.request(Method::DELETE, "/api/v1/users/me")
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn deleting_an_account_ends_everything_and_keeps_owners(app: &TestApp) {
    let password = json!({ "password": PASSWORD }).to_string();

    // The only owner of an organization cannot leave it ownerless.
    let (_, owner) = app.user_with_session().await;
    let owner_at = str_field(&owner, "access_token");
    let org: Value = app
        .post_auth(
            "/api/v1/organizations",
            owner_at,
            Some(&json!({"name": "Shared"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let org_id = str_field(&org, "id").to_owned();
    let problem =
        assert_problem(delete_me(app, owner_at, &password).await, 409, "LAST_OWNER").await;
    assert!(problem["detail"].as_str().unwrap().contains(&org_id));
    assert_eq!(
        app.get_auth("/api/v1/auth/verify", owner_at).await.status(),
        200
    );

    // A member, logged in twice.
    let (email, here) = app.user_with_session().await;
    let elsewhere: Value = app.login(&email, PASSWORD).await.json().await.unwrap();
    let at = str_field(&here, "access_token");
    let user_id = here["user"]["id"].as_str().unwrap().to_owned();
    let add = app
        .post_auth(
            &format!("/api/v1/organizations/{org_id}/members"),
            owner_at,
            Some(&json!({"email": email, "role": "admin"})),
        )
        .await;
    assert_eq!(add.status(), 201);

    // Bad input and a wrong password change nothing.
    assert_problem(delete_me(app, at, "{}").await, 422, "VALIDATION_FAILED").await;
    assert_problem(
        delete_me(app, at, r#"{"password": ""}"#).await,
        422,
        "VALIDATION_FAILED",
    )
    .await;
    assert_problem(delete_me(app, at, "[").await, 400, "MALFORMED_REQUEST").await;
    assert_problem(
        delete_me(app, at, r#"{"password": "not the password"}"#).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_problem(
        delete_me(app, "nope", &password).await,
        401,
        "UNAUTHENTICATED",
    )
    .await;
    assert_eq!(app.get_auth("/api/v1/auth/verify", at).await.status(), 200);

    assert_eq!(delete_me(app, at, &password).await.status(), 204);

    // Every session of it ended; the password opens nothing.
    for login in [&here, &elsewhere] {
        let token = str_field(login, "access_token");
        assert_problem(
            app.get_auth("/api/v1/auth/verify", token).await,
            401,
            "UNAUTHENTICATED",
        )
        .await;
        let refresh = app
            .post_json(
                "/api/v1/auth/refresh",
                &json!({"refresh_token": str_field(login, "refresh_token")}),
            )
            .await;
        assert_problem(refresh, 401, "INVALID_REFRESH_TOKEN").await;
    }
    assert_problem(
        app.login(&email, PASSWORD).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    // The organization keeps its owner, without the deleted member.
    let members: Value = app
        .get_auth(&format!("/api/v1/organizations/{org_id}/members"), owner_at)
        .await
        .json()
        .await
        .unwrap();
    let items = members["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["role"], "owner");
    assert!(items.iter().all(|m| m["user_id"] != user_id.as_str()));
    // The address can be registered again, as a new account.
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let again: Value = app.login(&email, PASSWORD).await.json().await.unwrap();
    assert_ne!(again["user"]["id"], user_id.as_str());
}
