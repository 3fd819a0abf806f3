//! Organizations and members over HTTP.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{PASSWORD, TestApp, assert_problem, on_both_stores, str_field};

on_both_stores!(
    organizations_are_created_listed_and_hidden,
    members_are_added_listed_and_removed
);

pub async fn new_org(app: &TestApp, token: &str, name: &str) -> String {
    let res = app
        .post_auth("/api/v1/organizations", token, Some(&json!({"name": name})))
        .await;
    assert_eq!(res.status(), 201);
    str_field(&res.json::<Value>().await.unwrap(), "id").to_owned()
}

async fn organizations_are_created_listed_and_hidden(app: &TestApp) {
    let (_, owner) = app.user_with_session().await;
    let token = str_field(&owner, "access_token");
    let res = app
        .post_auth(
            "/api/v1/organizations",
            token,
            Some(&json!({"name": "  Acme  "})),
        )
        .await;
    assert_eq!(res.status(), 201);
    let org: Value = res.json().await.unwrap();
    assert_eq!(org["name"], "Acme");
    assert!(org["created_at"].is_string());
    let id = str_field(&org, "id");

    let list: Value = app
        .get_auth("/api/v1/organizations", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["items"],
        json!([{"id": id, "name": "Acme", "role": "owner"}])
    );
    let got: Value = app
        .get_auth(&format!("/api/v1/organizations/{id}"), token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, org);
    let me: Value = app
        .get_auth("/api/v1/users/me", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        me["organizations"],
        json!([{"id": id, "name": "Acme", "role": "owner"}])
    );

    // A stranger sees nothing: 404, not 403.
    let (_, stranger) = app.user_with_session().await;
    let st = str_field(&stranger, "access_token");
    assert_problem(
        app.get_auth(&format!("/api/v1/organizations/{id}"), st)
            .await,
        404,
        "NOT_FOUND",
    )
    .await;
    assert_problem(
        app.get_auth(&format!("/api/v1/organizations/{id}/members"), st)
            .await,
        404,
        "NOT_FOUND",
    )
    .await;
    let empty: Value = app
        .get_auth("/api/v1/organizations", st)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(empty["items"], json!([]));

    assert_problem(
        app.get_auth("/api/v1/organizations/not-a-uuid", token)
            .await,
        404,
        "NOT_FOUND",
    )
    .await;
    assert_problem(
        app.get_auth(
            &format!("/api/v1/organizations/{}", uuid::Uuid::now_v7()),
            token,
        )
        .await,
        404,
        "NOT_FOUND",
    )
    .await;
    for bad in [
        json!({"name": ""}),
        json!({"name": "x".repeat(101)}),
        json!({}),
    ] {
        let res = app
            .post_auth("/api/v1/organizations", token, Some(&bad))
            .await;
        assert_problem(res, 422, "VALIDATION_FAILED").await;
    }
    let res = app
        .post_json("/api/v1/organizations", &json!({"name": "x"}))
        .await;
    assert_problem(res, 401, "UNAUTHENTICATED").await;
}

async fn members_are_added_listed_and_removed(app: &TestApp) {
    let (_, owner) = app.user_with_session().await;
    let ot = str_field(&owner, "access_token");
    let org = new_org(app, ot, "Members Inc").await;
    let (admin_email, admin) = app.user_with_session().await;
    let (member_email, member) = app.user_with_session().await;
    let at = str_field(&admin, "access_token");
    let mt = str_field(&member, "access_token");
    let members = format!("/api/v1/organizations/{org}/members");

    let res = app
        .post_auth(
            &members,
            ot,
            Some(&json!({"email": admin_email.to_uppercase(), "role": "admin"})),
        )
        .await;
    assert_eq!(res.status(), 201);
    let added: Value = res.json().await.unwrap();
    assert_eq!(added["role"], "admin");
    assert_eq!(added["email"], admin_email.as_str());
    assert_eq!(added["user_id"], admin["user"]["id"]);
    // An admin adds a member.
    assert_eq!(
        app.post_auth(
            &members,
            at,
            Some(&json!({"email": member_email, "role": "member"}))
        )
        .await
        .status(),
        201
    );
    let res = app
        .post_auth(
            &members,
            ot,
            Some(&json!({"email": member_email, "role": "admin"})),
        )
        .await;
    assert_problem(res, 409, "ALREADY_MEMBER").await;
    let res = app
        .post_auth(
            &members,
            ot,
            Some(&json!({"email": "nobody@example.com", "role": "member"})),
        )
        .await;
    assert_problem(res, 404, "NOT_FOUND").await;
    let res = app
        .post_auth(
            &members,
            ot,
            Some(&json!({"email": member_email, "role": "owner"})),
        )
        .await;
    assert_problem(res, 422, "VALIDATION_FAILED").await;
    // A plain member may look but not manage: 403.
    let (third_email, _) = app.user_with_session().await;
    let res = app
        .post_auth(
            &members,
            mt,
            Some(&json!({"email": third_email, "role": "member"})),
        )
        .await;
    assert_problem(res, 403, "FORBIDDEN").await;

    let list: Value = app.get_auth(&members, mt).await.json().await.unwrap();
    let roles: Vec<(String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["email"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(roles.len(), 3);
    assert!(roles.contains(&(admin_email.clone(), "admin".into())));
    assert!(roles.contains(&(member_email.clone(), "member".into())));

    let owner_id = str_field(&owner["user"], "id");
    let member_id = str_field(&member["user"], "id");
    let del = |token: &str, user: &str| {
        app.request(Method::DELETE, &format!("{members}/{user}"))
            .bearer_auth(token.to_owned())
            .send()
    };
    assert_problem(del(at, owner_id).await.unwrap(), 403, "FORBIDDEN").await;
    assert_problem(del(ot, owner_id).await.unwrap(), 409, "LAST_OWNER").await;
    assert_problem(del(mt, owner_id).await.unwrap(), 403, "FORBIDDEN").await;
    assert_problem(
        del(ot, &uuid::Uuid::now_v7().to_string()).await.unwrap(),
        404,
        "NOT_FOUND",
    )
    .await;
    assert_problem(del(ot, "bad-id").await.unwrap(), 404, "NOT_FOUND").await;
    assert_eq!(del(at, member_id).await.unwrap().status(), 204);
    // Removed: the organization is hidden again.
    assert_problem(
        app.get_auth(&format!("/api/v1/organizations/{org}"), mt)
            .await,
        404,
        "NOT_FOUND",
    )
    .await;
    let _ = PASSWORD;
}
