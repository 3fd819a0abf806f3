//! Service administration over HTTP, on both stores: who may call it (403, 401), what each
//! route does, 404 for an unknown account, bad input, the last administrator under concurrent
//! demotions, closed registration, and a disabled account.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{
    PASSWORD, TestApp, assert_problem, on_both_stores, problem_fields, str_field, unique_email,
};

on_both_stores!(
    only_administrators_may_administer,
    an_administrator_manages_an_account,
    unknown_accounts_are_404_and_bad_input_422,
    the_last_administrator_survives_concurrent_demotions,
    a_disabled_account_cannot_log_in_and_its_sessions_end,
    listing_pages_and_searches,
);

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let req = app.request(method, path).bearer_auth(token);
    let req = match body {
        Some(b) => req.json(b),
        None => req,
    };
    req.send().await.unwrap()
}

/// A user made by `admin` over the API; its id.
async fn create(app: &TestApp, admin: &str, email: &str) -> String {
    let res = call(
        app,
        Method::POST,
        "/api/v1/admin/users",
        admin,
        Some(&json!({"email": email, "password": PASSWORD, "display_name": "Made"})),
    )
    .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["email"], email);
    assert_eq!(body["is_admin"], false);
    assert_eq!(body["disabled"], false);
    str_field(&body, "id").to_owned()
}

/// Every route: 401 without a token, 403 for a user who is not an administrator, and nothing
/// changed by the refused calls.
async fn only_administrators_may_administer(app: &TestApp) {
    let (_, admin) = app.admin().await;
    let (email, login) = app.user_with_session().await;
    let user = str_field(&login, "access_token").to_owned();
    let id = {
        let res = call(
            app,
            Method::GET,
            &format!("/api/v1/admin/users?email={email}"),
            &admin,
            None,
        )
        .await;
        let body: Value = res.json().await.unwrap();
        str_field(&body["items"][0], "id").to_owned()
    };
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/v1/admin/users".into(), None),
        (
            Method::POST,
            "/api/v1/admin/users".into(),
            Some(json!({"email": unique_email(), "password": PASSWORD, "is_admin": true})),
        ),
        (Method::GET, format!("/api/v1/admin/users/{id}"), None),
        (
            Method::PATCH,
            format!("/api/v1/admin/users/{id}"),
            Some(json!({"is_admin": true})),
        ),
        (
            Method::POST,
            format!("/api/v1/admin/users/{id}/unlock"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/admin/users/{id}/sessions/revoke"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/admin/users/{id}/password-reset"),
            None,
        ),
        (Method::DELETE, format!("/api/v1/admin/users/{id}"), None),
    ];
    for (method, path, body) in &routes {
        let res = call(app, method.clone(), path, &user, body.as_ref()).await;
        assert_problem(res, 403, "FORBIDDEN").await;
        let mut req = app.request(method.clone(), path);
        if let Some(b) = body {
            req = req.json(b);
        }
        assert_problem(req.send().await.unwrap(), 401, "UNAUTHENTICATED").await;
    }
    // Nothing changed: the user is no administrator and still signed in.
    let me: Value = app
        .get_auth("/api/v1/users/me", &user)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["is_admin"], false);
}

/// Create, view, grant, unlock, end sessions, send a reset link, delete.
async fn an_administrator_manages_an_account(app: &TestApp) {
    let (_, admin) = app.admin().await;
    let email = unique_email();
    let id = create(app, &admin, &email).await;
    let res = call(
        app,
        Method::GET,
        &format!("/api/v1/admin/users/{id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(res.status(), 200);
    let detail: Value = res.json().await.unwrap();
    assert_eq!(detail["organizations"], json!([]));
    assert_eq!(detail["last_login_at"], Value::Null);

    // Locked by wrong passwords, unlocked by the administrator.
    for _ in 0..6 {
        app.login(&email, "not the password at all").await;
    }
    assert_eq!(app.login(&email, PASSWORD).await.status(), 429);
    let res = call(
        app,
        Method::POST,
        &format!("/api/v1/admin/users/{id}/unlock"),
        &admin,
        None,
    )
    .await;
    assert_eq!(res.status(), 204);
    let res = app.login(&email, PASSWORD).await;
    assert_eq!(res.status(), 200, "unlocked");
    let session: Value = res.json().await.unwrap();
    let access = str_field(&session, "access_token");
    let detail: Value = call(
        app,
        Method::GET,
        &format!("/api/v1/admin/users/{id}"),
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(detail["last_login_at"].is_string(), "{detail}");

    // Every session ended.
    let res = call(
        app,
        Method::POST,
        &format!("/api/v1/admin/users/{id}/sessions/revoke"),
        &admin,
        None,
    )
    .await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        app.get_auth("/api/v1/auth/verify", access).await.status(),
        401
    );

    // Granted administration, then a name change.
    let res = call(
        app,
        Method::PATCH,
        &format!("/api/v1/admin/users/{id}"),
        &admin,
        Some(&json!({"is_admin": true, "display_name": "Renamed"})),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["is_admin"], true);
    assert_eq!(body["display_name"], "Renamed");
    let res = call(
        app,
        Method::PATCH,
        &format!("/api/v1/admin/users/{id}"),
        &admin,
        Some(&json!({"display_name": null})),
    )
    .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["display_name"], Value::Null);
    assert_eq!(body["is_admin"], true, "absent fields are left as they are");

    let res = call(
        app,
        Method::POST,
        &format!("/api/v1/admin/users/{id}/password-reset"),
        &admin,
        None,
    )
    .await;
    assert_eq!(res.status(), 202);

    let res = call(
        app,
        Method::DELETE,
        &format!("/api/v1/admin/users/{id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(res.status(), 204);
    let res = call(
        app,
        Method::GET,
        &format!("/api/v1/admin/users/{id}"),
        &admin,
        None,
    )
    .await;
    assert_problem(res, 404, "NOT_FOUND").await;
    assert_eq!(app.login(&email, PASSWORD).await.status(), 401);
}

/// An unknown or malformed id is 404 on every route; a bad body or query is 422 naming each
/// broken field, and changes nothing.
async fn unknown_accounts_are_404_and_bad_input_422(app: &TestApp) {
    let (_, admin) = app.admin().await;
    for id in ["01a24bf8-0000-7000-8000-000000000000", "not-an-id"] {
        for (method, path) in [
            (Method::GET, format!("/api/v1/admin/users/{id}")),
            (Method::PATCH, format!("/api/v1/admin/users/{id}")),
            (Method::POST, format!("/api/v1/admin/users/{id}/unlock")),
            (
                Method::POST,
                format!("/api/v1/admin/users/{id}/sessions/revoke"),
            ),
            (
                Method::POST,
                format!("/api/v1/admin/users/{id}/password-reset"),
            ),
            (Method::DELETE, format!("/api/v1/admin/users/{id}")),
        ] {
            let body = (method == Method::PATCH).then(|| json!({"disabled": true}));
            let res = call(app, method.clone(), &path, &admin, body.as_ref()).await;
            assert_problem(res, 404, "NOT_FOUND").await;
        }
    }
    let res = call(
        app,
        Method::POST,
        "/api/v1/admin/users",
        &admin,
        Some(&json!({"email": "not an address", "password": "short", "display_name": ""})),
    )
    .await;
    let problem = assert_problem(res, 422, "VALIDATION_FAILED").await;
    let fields = problem_fields(&problem);
    for field in ["email", "password", "display_name"] {
        assert!(fields.contains(&field), "{field} in {problem}");
    }
    let email = unique_email();
    let id = create(app, &admin, &email).await;
    let res = call(
        app,
        Method::PATCH,
        &format!("/api/v1/admin/users/{id}"),
        &admin,
        Some(&json!({"is_admin": "yes", "display_name": ""})),
    )
    .await;
    assert_eq!(res.status(), 422);
    for query in ["limit=0", "limit=501", "limit=x", "after=nope"] {
        let res = call(
            app,
            Method::GET,
            &format!("/api/v1/admin/users?{query}"),
            &admin,
            None,
        )
        .await;
        assert_problem(res, 422, "VALIDATION_FAILED").await;
    }
    let res = call(
        app,
        Method::POST,
        "/api/v1/admin/users",
        &admin,
        Some(&json!({"email": email, "password": PASSWORD})),
    )
    .await;
    assert_problem(res, 409, "EMAIL_TAKEN").await;
    let detail: Value = call(
        app,
        Method::GET,
        &format!("/api/v1/admin/users/{id}"),
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(detail["is_admin"], false, "nothing changed");
    assert_eq!(detail["display_name"], "Made");
}

/// Two administrators demoting each other at once: one stays. The last enabled administrator
/// can be neither demoted nor disabled.
async fn the_last_administrator_survives_concurrent_demotions(app: &TestApp) {
    let (a_email, a) = app.admin().await;
    let (b_email, b) = app.admin().await;
    let ids = |email: String| {
        let admin = a.clone();
        async move {
            let res = call(
                app,
                Method::GET,
                &format!("/api/v1/admin/users?email={email}"),
                &admin,
                None,
            )
            .await;
            let body: Value = res.json().await.unwrap();
            str_field(&body["items"][0], "id").to_owned()
        }
    };
    let (a_id, b_id) = (ids(a_email.clone()).await, ids(b_email.clone()).await);
    let demote = json!({"is_admin": false});
    let (path_a, path_b) = (
        format!("/api/v1/admin/users/{a_id}"),
        format!("/api/v1/admin/users/{b_id}"),
    );
    let (by_b, by_a) = tokio::join!(
        call(app, Method::PATCH, &path_a, &b, Some(&demote)),
        call(app, Method::PATCH, &path_b, &a, Some(&demote)),
    );
    let statuses = [by_b.status().as_u16(), by_a.status().as_u16()];
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "exactly one demotion: {statuses:?}"
    );
    assert!(
        statuses.contains(&409) || statuses.contains(&403),
        "{statuses:?}"
    );
    let (survivor, survivor_id) = if statuses[0] == 200 {
        (&b, &b_id)
    } else {
        (&a, &a_id)
    };
    for change in [json!({"is_admin": false}), json!({"disabled": true})] {
        let res = call(
            app,
            Method::PATCH,
            &format!("/api/v1/admin/users/{survivor_id}"),
            survivor,
            Some(&change),
        )
        .await;
        assert_problem(res, 409, "LAST_ADMINISTRATOR").await;
    }
    let res = call(
        app,
        Method::DELETE,
        &format!("/api/v1/admin/users/{survivor_id}"),
        survivor,
        None,
    )
    .await;
    assert_problem(res, 409, "LAST_ADMINISTRATOR").await;
    let res = call(
        app,
        Method::DELETE,
        "/api/v1/users/me",
        survivor,
        Some(&json!({"password": PASSWORD})),
    )
    .await;
    assert_problem(res, 409, "LAST_ADMINISTRATOR").await;
    let res = call(app, Method::GET, "/api/v1/admin/users", survivor, None).await;
    assert_eq!(res.status(), 200, "the survivor still administers");
}

/// A disabled account's sessions end at once and its correct password is a 403 (a wrong one
/// still 401); enabled again, it logs in.
async fn a_disabled_account_cannot_log_in_and_its_sessions_end(app: &TestApp) {
    let (_, admin) = app.admin().await;
    let (email, login) = app.user_with_session().await;
    let access = str_field(&login, "access_token").to_owned();
    let refresh = str_field(&login, "refresh_token").to_owned();
    let res = call(
        app,
        Method::GET,
        &format!("/api/v1/admin/users?email={email}"),
        &admin,
        None,
    )
    .await;
    let body: Value = res.json().await.unwrap();
    let id = str_field(&body["items"][0], "id").to_owned();
    let res = call(
        app,
        Method::PATCH,
        &format!("/api/v1/admin/users/{id}"),
        &admin,
        Some(&json!({"disabled": true})),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["disabled"], true);
    assert_eq!(
        app.get_auth("/api/v1/auth/verify", &access).await.status(),
        401
    );
    let res = app
        .post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh}))
        .await;
    assert_eq!(res.status(), 401);
    assert_problem(app.login(&email, PASSWORD).await, 403, "ACCOUNT_DISABLED").await;
    assert_problem(
        app.login(&email, "not the password at all").await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    let res = call(
        app,
        Method::PATCH,
        &format!("/api/v1/admin/users/{id}"),
        &admin,
        Some(&json!({"disabled": false})),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);
}

/// Pages follow `next_after`; `email` finds by part of the address, case-insensitively.
async fn listing_pages_and_searches(app: &TestApp) {
    let (_, admin) = app.admin().await;
    let tag = format!("page{}", uuid::Uuid::now_v7().simple());
    for i in 0..3 {
        create(app, &admin, &format!("{tag}.{i}@example.com")).await;
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/admin/users?email={}&limit=2", tag.to_uppercase());
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let body: Value = call(app, Method::GET, &path, &admin, None)
            .await
            .json()
            .await
            .unwrap();
        for item in body["items"].as_array().unwrap() {
            seen.push(str_field(item, "email").to_owned());
        }
        match body["next_after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..3).map(|i| format!("{tag}.{i}@example.com")).collect();
    assert_eq!(seen, expected, "every match once, in creation order");
}

/// With registration closed, sign-up is a 403 and administrators still make accounts; one
/// made without a password gets a reset link by mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_registration_leaves_account_making_to_administrators() {
    let smtp = auth_infra::test_support::smtp::SmtpSink::start();
    let app = TestApp::start_mailing(crate::common::Backend::Memory, &smtp, |c| {
        c.mail.registration_enabled = false;
    })
    .await;
    let email = unique_email();
    assert_problem(
        app.register(&email, PASSWORD).await,
        403,
        "REGISTRATION_DISABLED",
    )
    .await;
    let (_, admin) = app.admin().await;
    let res = call(
        &app,
        Method::POST,
        "/api/v1/admin/users",
        &admin,
        Some(&json!({"email": email})),
    )
    .await;
    assert_eq!(res.status(), 201);
    let mails = smtp
        .wait_for(&email, 2, std::time::Duration::from_secs(15))
        .await;
    let token = mails
        .iter()
        .find_map(|m| m.token(&app.url("/reset-password#token=")))
        .expect("a reset link");
    let res = app
        .post_json(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token, "new_password": "chosen by the user"}),
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(app.login(&email, "chosen by the user").await.status(), 200);
    app.stop().await;
}
