//! API keys over HTTP: management by users and by keys, verify and verify-batch.

use auth_core::model::{ApiKeyPrefix, ApiKeySecret};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, assert_problem, on_both_stores, str_field};
use crate::organizations::new_org;

on_both_stores!(
    keys_are_created_shown_once_and_verified,
    revoke_and_rotate,
    keys_manage_keys_of_their_own_organization_only,
    users_need_a_managing_role,
    batch_verification_answers_every_item,
    scope_lists_are_bounded,
    a_malformed_batch_item_fails_the_batch_with_every_field,
);

pub async fn create_key(app: &TestApp, token: &str, org: &str, scopes: Value) -> Value {
    let res = app
        .post_auth(
            "/api/v1/api-keys",
            token,
            Some(&json!({"organization_id": org, "name": "worker", "scopes": scopes})),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    res.json().await.unwrap()
}

pub async fn verify(app: &TestApp, key: &str, scopes: Value) -> Value {
    let res = app
        .post_json(
            "/api/v1/api-keys/verify",
            &json!({"key": key, "required_scopes": scopes}),
        )
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn owner_and_org(app: &TestApp) -> (String, String) {
    let (_, owner) = app.user_with_session().await;
    let token = str_field(&owner, "access_token").to_owned();
    let org = new_org(app, &token, "Keys Ltd").await;
    (token, org)
}

async fn keys_are_created_shown_once_and_verified(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let created = create_key(
        app,
        &token,
        &org,
        json!(["invoices:read", "invoices:write", "invoices:read"]),
    )
    .await;
    let key = str_field(&created, "key").to_owned();
    assert!(key.starts_with("ak_live_"), "{key}");
    assert_eq!(key.len(), "ak_live_".len() + 30 + 1 + 6);
    assert_eq!(created["prefix"], key[..16]);
    assert_eq!(created["status"], "active");
    assert_eq!(
        created["scopes"],
        json!(["invoices:read", "invoices:write"])
    );
    assert_eq!(created["organization_id"], org.as_str());
    assert_eq!(created["expires_at"], Value::Null);
    let id = str_field(&created, "id");

    // Never shown again.
    let listed: Value = app
        .get_auth(&format!("/api/v1/api-keys?organization_id={org}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let got: Value = app
        .get_auth(&format!("/api/v1/api-keys/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert!(got.get("key").is_none() && !got.to_string().contains(&key));
    assert_eq!(got["status"], "active");
    assert_eq!(got["revoked_at"], Value::Null);

    let ok = verify(app, &key, json!(["invoices:read"])).await;
    assert_eq!(ok["valid"], true);
    assert_eq!(ok["key_id"], id);
    assert_eq!(ok["organization_id"], org.as_str());
    assert_eq!(ok["name"], "worker");
    assert_eq!(verify(app, &key, json!([])).await["valid"], true);
    let res = app
        .post_json("/api/v1/api-keys/verify", &json!({"key": key}))
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["valid"], true);
    assert_eq!(
        verify(app, &key, json!(["invoices:read", "payments:write"])).await,
        json!({"valid": false, "error": "INSUFFICIENT_SCOPE"})
    );

    // Mistyped, invented (right checksum, never issued), padded: INVALID.
    let mut typo = key.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let invented = ApiKeySecret::from_random(&ApiKeyPrefix::default(), &[9u8; 64]).unwrap();
    for bad in [
        String::from_utf8(typo).unwrap(),
        invented.expose().to_owned(),
        format!(" {key}"),
        format!("{key} "),
        "garbage".into(),
        "ak_live_aé12345_".into(),
        format!("{}é", &key[..key.len() - 2]),
    ] {
        assert_eq!(
            verify(app, &bad, json!([])).await,
            json!({"valid": false, "error": "INVALID"}),
            "{bad:?}"
        );
    }
    let res = app
        .post_json(
            "/api/v1/api-keys/verify",
            &json!({"key": key, "required_scopes": ["Bad Scope"]}),
        )
        .await;
    assert_problem(res, 422, "VALIDATION_FAILED").await;
    assert_problem(
        app.post_json("/api/v1/api-keys/verify", &json!({})).await,
        422,
        "VALIDATION_FAILED",
    )
    .await;

    // An admin key holds every scope; expiry is set from days.
    let admin = create_key(app, &token, &org, json!(["admin"])).await;
    assert_eq!(
        verify(app, str_field(&admin, "key"), json!(["anything:at-all"])).await["valid"],
        true
    );
    let res = app
        .post_auth("/api/v1/api-keys", &token, Some(&json!({"organization_id": org, "name": "temp", "scopes": [], "expires_in_days": 7})))
        .await;
    let temp: Value = res.json().await.unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(str_field(&temp, "expires_at")).unwrap();
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
    assert!((167..=168).contains(&days), "{days}");
    for bad in [
        json!({"organization_id": org, "name": "x", "scopes": ["UPPER"]}),
        json!({"organization_id": org, "name": "", "scopes": []}),
        json!({"organization_id": org, "name": "x", "scopes": [], "expires_in_days": 0}),
        json!({"organization_id": "nope", "name": "x", "scopes": []}),
    ] {
        assert_problem(
            app.post_auth("/api/v1/api-keys", &token, Some(&bad)).await,
            422,
            "VALIDATION_FAILED",
        )
        .await;
    }
}

async fn revoke_and_rotate(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let first = create_key(app, &token, &org, json!(["read"])).await;
    let (id, key) = (str_field(&first, "id"), str_field(&first, "key"));
    assert_eq!(verify(app, key, json!([])).await["valid"], true);

    let res = app
        .post_auth(&format!("/api/v1/api-keys/{id}/rotate"), &token, None)
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let second: Value = res.json().await.unwrap();
    assert_ne!(second["id"], first["id"]);
    assert_ne!(second["key"], first["key"]);
    for field in ["name", "scopes", "organization_id", "expires_at"] {
        assert_eq!(second[field], first[field], "{field}");
    }
    assert_eq!(
        verify(app, key, json!([])).await,
        json!({"valid": false, "error": "REVOKED"})
    );
    let new_key = str_field(&second, "key");
    assert_eq!(verify(app, new_key, json!(["read"])).await["valid"], true);
    let res = app
        .post_auth(&format!("/api/v1/api-keys/{id}/rotate"), &token, None)
        .await;
    assert_problem(res, 409, "ALREADY_REVOKED").await;

    let new_id = str_field(&second, "id");
    let res = app
        .post_auth(&format!("/api/v1/api-keys/{new_id}/revoke"), &token, None)
        .await;
    assert_eq!(res.status(), 200);
    let revoked: Value = res.json().await.unwrap();
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(
        verify(app, new_key, json!([])).await,
        json!({"valid": false, "error": "REVOKED"})
    );
    assert_problem(
        app.post_auth(&format!("/api/v1/api-keys/{new_id}/revoke"), &token, None)
            .await,
        409,
        "ALREADY_REVOKED",
    )
    .await;
    assert_problem(
        app.post_auth("/api/v1/api-keys/not-an-id/revoke", &token, None)
            .await,
        404,
        "NOT_FOUND",
    )
    .await;

    let active: Value = app
        .get_auth(&format!("/api/v1/api-keys?organization_id={org}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(active["items"], json!([]));
    let all: Value = app
        .get_auth(
            &format!("/api/v1/api-keys?organization_id={org}&include_revoked=true"),
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    assert!(
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["status"] == "revoked")
    );
    let res = app.get_auth("/api/v1/api-keys", &token).await;
    assert_problem(res, 422, "VALIDATION_FAILED").await;
    let res = app
        .get_auth(
            &format!("/api/v1/api-keys?organization_id={org}&include_revoked=maybe"),
            &token,
        )
        .await;
    assert_problem(res, 422, "VALIDATION_FAILED").await;
}

async fn with_key(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app.request(method, path).header("x-api-key", key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

async fn keys_manage_keys_of_their_own_organization_only(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let admin = create_key(app, &token, &org, json!(["admin"])).await;
    let plain = create_key(app, &token, &org, json!(["read"])).await;
    let ak = str_field(&admin, "key");
    let res = with_key(
        app,
        Method::POST,
        "/api/v1/api-keys",
        ak,
        Some(json!({"organization_id": org, "name": "by key", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(res.status(), 201);
    let made: Value = res.json().await.unwrap();
    let res = with_key(
        app,
        Method::GET,
        &format!("/api/v1/api-keys?organization_id={org}"),
        ak,
        None,
    )
    .await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let res = with_key(
        app,
        Method::POST,
        &format!("/api/v1/api-keys/{}/revoke", str_field(&made, "id")),
        ak,
        None,
    )
    .await;
    assert_eq!(res.status(), 200);

    // Without `admin`: 403. Another organization: 404. A key is never a Bearer token.
    let res = with_key(
        app,
        Method::GET,
        &format!("/api/v1/api-keys?organization_id={org}"),
        str_field(&plain, "key"),
        None,
    )
    .await;
    assert_problem(res, 403, "FORBIDDEN").await;
    let (other_token, other_org) = owner_and_org(app).await;
    let other_key = create_key(app, &other_token, &other_org, json!(["read"])).await;
    let res = with_key(
        app,
        Method::GET,
        &format!("/api/v1/api-keys/{}", str_field(&other_key, "id")),
        ak,
        None,
    )
    .await;
    assert_problem(res, 404, "NOT_FOUND").await;
    let res = with_key(
        app,
        Method::POST,
        "/api/v1/api-keys",
        ak,
        Some(json!({"organization_id": other_org, "name": "x", "scopes": []})),
    )
    .await;
    assert_problem(res, 404, "NOT_FOUND").await;
    let res = app
        .get_auth(&format!("/api/v1/api-keys?organization_id={org}"), ak)
        .await;
    assert_problem(res, 401, "UNAUTHENTICATED").await;
    let res = with_key(
        app,
        Method::GET,
        &format!("/api/v1/api-keys?organization_id={org}"),
        "ak_live_bogus",
        None,
    )
    .await;
    assert_problem(res, 401, "UNAUTHENTICATED").await;
    let res = app
        .get(&format!("/api/v1/api-keys?organization_id={org}"))
        .await;
    assert_problem(res, 401, "UNAUTHENTICATED").await;
    // A revoked admin key manages nothing.
    app.post_auth(
        &format!("/api/v1/api-keys/{}/revoke", str_field(&admin, "id")),
        &token,
        None,
    )
    .await;
    let res = with_key(
        app,
        Method::GET,
        &format!("/api/v1/api-keys?organization_id={org}"),
        ak,
        None,
    )
    .await;
    assert_problem(res, 401, "UNAUTHENTICATED").await;
}

async fn users_need_a_managing_role(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let key = create_key(app, &token, &org, json!([])).await;
    let (member_email, member) = app.user_with_session().await;
    app.post_auth(
        &format!("/api/v1/organizations/{org}/members"),
        &token,
        Some(&json!({"email": member_email, "role": "member"})),
    )
    .await;
    let mt = str_field(&member, "access_token");
    let (_, stranger) = app.user_with_session().await;
    let st = str_field(&stranger, "access_token");
    let body = json!({"organization_id": org, "name": "x", "scopes": []});
    assert_problem(
        app.post_auth("/api/v1/api-keys", mt, Some(&body)).await,
        403,
        "FORBIDDEN",
    )
    .await;
    assert_problem(
        app.post_auth("/api/v1/api-keys", st, Some(&body)).await,
        404,
        "NOT_FOUND",
    )
    .await;
    let path = format!("/api/v1/api-keys/{}", str_field(&key, "id"));
    assert_problem(app.get_auth(&path, mt).await, 403, "FORBIDDEN").await;
    assert_problem(app.get_auth(&path, st).await, 404, "NOT_FOUND").await;
    assert_problem(
        app.post_auth(&format!("{path}/revoke"), st, None).await,
        404,
        "NOT_FOUND",
    )
    .await;
    let body = json!({"organization_id": uuid::Uuid::now_v7(), "name": "x", "scopes": []});
    assert_problem(
        app.post_auth("/api/v1/api-keys", &token, Some(&body)).await,
        404,
        "NOT_FOUND",
    )
    .await;
}

async fn batch_verification_answers_every_item(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let good = create_key(app, &token, &org, json!(["read"])).await;
    let gone = create_key(app, &token, &org, json!(["read"])).await;
    let unseen = create_key(app, &token, &org, json!([])).await;
    app.post_auth(
        &format!("/api/v1/api-keys/{}/revoke", str_field(&gone, "id")),
        &token,
        None,
    )
    .await;
    // `good` cached, `unseen` not; a well-formed key of no one.
    assert_eq!(
        verify(app, str_field(&good, "key"), json!([])).await["valid"],
        true
    );
    let invented = ApiKeySecret::from_random(&ApiKeyPrefix::default(), &[7u8; 64]).unwrap();
    let items = json!([
        {"key": good["key"]},
        {"key": good["key"], "required_scopes": ["write"]},
        {"key": gone["key"]},
        {"key": "nonsense"},
        {"key": format!("{} ", str_field(&good, "key"))},
        {"key": "ak_live_000000000000000000000000000000_000000"},
        {"key": good["key"], "required_scopes": ["admin"]},
        {"key": good["key"], "required_scopes": ["read"]},
        {"key": invented.expose()},
        {"key": unseen["key"]},
        {"key": invented.expose(), "required_scopes": ["read"]},
        {"key": unseen["key"], "required_scopes": ["read"]},
    ]);
    let res = app
        .post_json("/api/v1/api-keys/verify-batch", &json!({"items": items}))
        .await;
    assert_eq!(res.status(), 200);
    let results: Vec<Value> = res.json::<Value>().await.unwrap()["results"]
        .as_array()
        .unwrap()
        .clone();
    let summary: Vec<(bool, Option<&str>)> = results
        .iter()
        .map(|r| (r["valid"].as_bool().unwrap(), r["error"].as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (true, None),
            (false, Some("INSUFFICIENT_SCOPE")),
            (false, Some("REVOKED")),
            (false, Some("INVALID")),
            (false, Some("INVALID")),
            (false, Some("INVALID")),
            (false, Some("INSUFFICIENT_SCOPE")),
            (true, None),
            (false, Some("INVALID")),
            (true, None),
            (false, Some("INVALID")),
            (false, Some("INSUFFICIENT_SCOPE")),
        ]
    );
    assert_eq!(results[0]["key_id"], good["id"]);
    assert_eq!(results[9]["key_id"], unseen["id"]);
    for bad in [
        json!({"items": []}),
        json!({"items": vec![json!({"key": "x"}); 101]}),
        json!({}),
    ] {
        assert_problem(
            app.post_json("/api/v1/api-keys/verify-batch", &bad).await,
            422,
            "VALIDATION_FAILED",
        )
        .await;
    }
    let hundred = json!({"items": vec![json!({"key": good["key"]}); 100]});
    let res: Value = app
        .post_json("/api/v1/api-keys/verify-batch", &hundred)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        res["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["valid"] == true)
    );
}

/// The problem's field errors as `(field, code)` pairs, in the order given.
async fn fields_of(res: reqwest::Response) -> Vec<(String, String)> {
    let problem = assert_problem(res, 422, "VALIDATION_FAILED").await;
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn scope_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s:{i:03}")).collect()
}

/// A key holds at most 100 scopes, and a verification names at most 100.
async fn scope_lists_are_bounded(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let res = app
        .post_auth(
            "/api/v1/api-keys",
            &token,
            Some(&json!({"organization_id": org, "name": "wide", "scopes": scope_names(101)})),
        )
        .await;
    let fields = fields_of(res).await;
    assert_eq!(fields.len(), 1, "{fields:?}");
    assert_eq!(fields[0].0, "scopes");
    let hundred = create_key(app, &token, &org, json!(scope_names(100))).await;
    assert_eq!(hundred["scopes"].as_array().unwrap().len(), 100);
    let key = str_field(&hundred, "key");
    let res = app
        .post_json(
            "/api/v1/api-keys/verify",
            &json!({"key": key, "required_scopes": scope_names(101)}),
        )
        .await;
    let fields = fields_of(res).await;
    assert_eq!(fields.len(), 1, "{fields:?}");
    assert_eq!(fields[0].0, "required_scopes");
    assert_eq!(
        verify(app, key, json!(scope_names(100))).await["valid"],
        true
    );

    let mut items = vec![json!({"key": key}); 5];
    items[3] = json!({"key": key, "required_scopes": scope_names(101)});
    let res = app
        .post_json("/api/v1/api-keys/verify-batch", &json!({"items": items}))
        .await;
    let fields = fields_of(res).await;
    assert_eq!(fields.len(), 1, "{fields:?}");
    assert_eq!(fields[0].0, "items[3].required_scopes");
}

/// An item that is not a well-formed verify body fails the whole batch with 422 naming every
/// broken field; well-formed items with bad keys get their own verdicts (above).
async fn a_malformed_batch_item_fails_the_batch_with_every_field(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let good = create_key(app, &token, &org, json!(["read"])).await;
    let key = str_field(&good, "key");
    let items = json!([
        {"key": key},
        {"key": 42},
        "not even an object",
        {"required_scopes": ["read"]},
        {"key": key, "required_scopes": ["read", "BAD SCOPE", "x".repeat(65)]},
        {"key": key, "required_scopes": "read"},
        {"key": "a\u{0}b"},
        {"key": key, "required_scopes": [7]},
    ]);
    let res = app
        .post_json("/api/v1/api-keys/verify-batch", &json!({"items": items}))
        .await;
    let fields: Vec<String> = fields_of(res).await.into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "items[1].key",
            "items[2]",
            "items[3].key",
            "items[4].required_scopes[1]",
            "items[4].required_scopes[2]",
            "items[5].required_scopes",
            "items[6].key",
            "items[7].required_scopes[0]",
        ]
    );
    let res = app
        .post_json("/api/v1/api-keys/verify-batch", &json!({"items": "nope"}))
        .await;
    assert_eq!(fields_of(res).await[0].0, "items");
}

/// A batch of 100 keys this instance has never seen is looked up in one store call, not one
/// per key; the same batch again is answered from the cache alone. On Postgres, with the
/// server's own key cache, through a repository that counts the lookups reaching it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_batch_is_one_store_lookup() {
    use std::sync::Arc;

    use auth_core::contract::services::CountingApiKeys;
    use auth_core::system::{OsSecretGenerator, SystemClock};
    use auth_core::{ApiKeyPorts, ApiKeyService};
    use auth_infra::postgres::PgApiKeyRepository;
    use auth_server::wiring::Store;

    let mut counting = None;
    let app = TestApp::start_with_store_state(
        crate::common::Backend::Postgres,
        |_| {},
        |state, store| {
            let Store::Postgres { pool, .. } = store else {
                panic!("a Postgres store")
            };
            let keys = Arc::new(CountingApiKeys::new(Arc::new(PgApiKeyRepository::new(
                pool.clone(),
            ))));
            state.keys = ApiKeyService::new(
                ApiKeyPorts {
                    keys: keys.clone(),
                    orgs: state.orgs.clone(),
                    cache: state.caches.keys.clone(),
                    clock: Arc::new(SystemClock),
                    secrets: Arc::new(OsSecretGenerator),
                },
                state.keys.prefix().clone(),
            );
            counting = Some(keys);
        },
    )
    .await;
    let counting = counting.unwrap();
    let lookups = || counting.lookups();

    let (token, org) = owner_and_org(&app).await;
    let created =
        futures::future::join_all((0..100).map(|_| create_key(&app, &token, &org, json!([]))))
            .await;
    let items: Vec<Value> = created.iter().map(|k| json!({"key": k["key"]})).collect();
    for round in ["cold", "cached"] {
        let before = lookups();
        let res = app
            .post_json("/api/v1/api-keys/verify-batch", &json!({"items": items}))
            .await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), 100);
        for (result, key) in results.iter().zip(&created) {
            assert_eq!(result["valid"], true, "{round}: {result}");
            assert_eq!(result["key_id"], key["id"], "{round}: in order");
        }
        let expected = usize::from(round == "cold");
        assert_eq!(lookups() - before, expected, "{round}: store lookups");
    }
    app.stop().await;
}
