//! API keys for a product: `meta` and `external_id` on create, get, list and a valid
//! verification, the `external_id` filter, and `PATCH /api-keys/{id}`: what it changes, what it
//! refuses (changing nothing), and that a change is answered at once, also when it races a
//! revocation. Across two instances: `instances.rs`.

use chrono::{Duration, DurationRound as _, SubsecRound as _, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::api_keys::verify;
use crate::common::{TestApp, assert_problem, on_both_stores, problem_fields, str_field};
use crate::organizations::new_org;

on_both_stores!(
    meta_and_external_id_travel_with_the_key,
    a_change_applies_what_it_names_and_verification_follows_at_once,
    refused_changes_change_nothing,
    changes_racing_a_revocation_stay_whole,
    limits_and_credits_answer_as_the_contract_says,
    a_batch_meters_its_items_in_order,
    usage_shows_what_was_done,
);

pub async fn patch(app: &TestApp, token: &str, id: &str, body: &Value) -> reqwest::Response {
    app.request(Method::PATCH, &format!("/api/v1/api-keys/{id}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn owner_and_org(app: &TestApp) -> (String, String) {
    let (_, owner) = app.user_with_session().await;
    let token = str_field(&owner, "access_token").to_owned();
    let org = new_org(app, &token, "Product Co").await;
    (token, org)
}

async fn create(app: &TestApp, token: &str, body: &Value) -> Value {
    let res = app.post_auth("/api/v1/api-keys", token, Some(body)).await;
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

async fn get(app: &TestApp, token: &str, id: &str) -> Value {
    let res = app.get_auth(&format!("/api/v1/api-keys/{id}"), token).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn listed(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let res = app
        .get_auth(&format!("/api/v1/api-keys?{query}"), token)
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| str_field(k, "id").to_owned())
        .collect()
}

async fn meta_and_external_id_travel_with_the_key(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let meta = json!({"plan": "pro", "seats": 12, "tags": ["eu", "ü"], "limits": {"soft": true}});
    let acme = create(
        app,
        &token,
        &json!({"organization_id": org, "name": "acme", "scopes": ["read"],
                "meta": meta, "external_id": "cus_acme"}),
    )
    .await;
    assert_eq!(acme["meta"], meta);
    assert_eq!(acme["external_id"], "cus_acme");
    let globex = create(
        app,
        &token,
        &json!({"organization_id": org, "name": "globex", "scopes": ["read"], "external_id": "cus_globex"}),
    )
    .await;
    let bare = create(
        app,
        &token,
        &json!({"organization_id": org, "name": "bare", "scopes": ["read"]}),
    )
    .await;
    assert_eq!(
        (&bare["meta"], &bare["external_id"]),
        (&Value::Null, &Value::Null)
    );

    let acme_id = str_field(&acme, "id");
    let item = get(app, &token, acme_id).await;
    assert_eq!(
        (&item["meta"], &item["external_id"]),
        (&meta, &json!("cus_acme"))
    );

    // A valid verification says whose key it is; a refused one says nothing.
    let verdict = verify(app, str_field(&acme, "key"), json!(["read"])).await;
    assert_eq!(verdict["valid"], true);
    assert_eq!(
        (&verdict["meta"], &verdict["external_id"]),
        (&meta, &json!("cus_acme"))
    );
    assert_eq!(
        verify(app, str_field(&acme, "key"), json!(["write"])).await,
        json!({"valid": false, "error": "INSUFFICIENT_SCOPE"})
    );
    let verdict = verify(app, str_field(&bare, "key"), json!([])).await;
    assert!(
        verdict.get("meta").is_none() && verdict.get("external_id").is_none(),
        "{verdict}"
    );

    // The filter: byte-exact, within the organization, with the usual revoked rule.
    assert_eq!(
        listed(
            app,
            &token,
            &format!("organization_id={org}&external_id=cus_acme")
        )
        .await,
        [acme_id]
    );
    assert_eq!(
        listed(
            app,
            &token,
            &format!("organization_id={org}&external_id=CUS_ACME")
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        listed(app, &token, &format!("organization_id={org}"))
            .await
            .len(),
        3
    );
    let long = "x".repeat(129);
    assert_problem(
        app.get_auth(
            &format!("/api/v1/api-keys?organization_id={org}&external_id={long}"),
            &token,
        )
        .await,
        422,
        "VALIDATION_FAILED",
    )
    .await;

    // Rotation carries both over.
    let res = app
        .post_auth(&format!("/api/v1/api-keys/{acme_id}/rotate"), &token, None)
        .await;
    let rotated: Value = res.json().await.unwrap();
    assert_eq!(
        (&rotated["meta"], &rotated["external_id"]),
        (&meta, &json!("cus_acme"))
    );
    assert_eq!(
        listed(
            app,
            &token,
            &format!("organization_id={org}&external_id=cus_acme&include_revoked=true")
        )
        .await,
        [acme_id, str_field(&rotated, "id")]
    );
    assert_eq!(
        listed(
            app,
            &token,
            &format!("organization_id={org}&external_id=cus_globex")
        )
        .await,
        [str_field(&globex, "id")]
    );
}

async fn a_change_applies_what_it_names_and_verification_follows_at_once(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let created = create(
        app,
        &token,
        &json!({"organization_id": org, "name": "worker", "scopes": ["read", "write"],
                "meta": {"plan": "free"}, "external_id": "cus_1"}),
    )
    .await;
    let (id, key) = (str_field(&created, "id"), str_field(&created, "key"));
    // Cached as valid for `write`.
    assert_eq!(verify(app, key, json!(["write"])).await["valid"], true);

    let expiry = (Utc::now() + Duration::days(30)).to_rfc3339();
    let res = patch(
        app,
        &token,
        id,
        &json!({"name": "renamed", "scopes": ["read"], "meta": {"plan": "pro"}, "expires_at": expiry}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let changed: Value = res.json().await.unwrap();
    assert_eq!(changed["name"], "renamed");
    assert_eq!(changed["scopes"], json!(["read"]));
    assert_eq!(changed["meta"], json!({"plan": "pro"}));
    assert_eq!(changed["external_id"], "cus_1", "left out: unchanged");
    // Kept to the microsecond, on both stores.
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(str_field(&changed, "expires_at")).unwrap(),
        chrono::DateTime::parse_from_rfc3339(&expiry)
            .unwrap()
            .trunc_subsecs(6)
    );
    assert_eq!(get(app, &token, id).await, changed);

    // The narrowed scope refuses at once, the new members are answered.
    assert_eq!(
        verify(app, key, json!(["write"])).await,
        json!({"valid": false, "error": "INSUFFICIENT_SCOPE"})
    );
    let verdict = verify(app, key, json!(["read"])).await;
    assert_eq!(
        (&verdict["name"], &verdict["meta"]),
        (&json!("renamed"), &json!({"plan": "pro"}))
    );

    // `null` clears; `{}` changes nothing.
    let res = patch(
        app,
        &token,
        id,
        &json!({"meta": null, "external_id": null, "expires_at": null}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let cleared: Value = res.json().await.unwrap();
    for field in ["meta", "external_id", "expires_at"] {
        assert_eq!(cleared[field], Value::Null, "{field}");
    }
    let res = patch(app, &token, id, &json!({})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), cleared);
    let verdict = verify(app, key, json!(["read"])).await;
    assert!(
        verdict.get("meta").is_none() && verdict.get("expires_at").is_none(),
        "{verdict}"
    );

    // A key with `admin` of the organization may change keys too.
    let admin = create(
        app,
        &token,
        &json!({"organization_id": org, "name": "admin", "scopes": ["admin"]}),
    )
    .await;
    let res = app
        .request(Method::PATCH, &format!("/api/v1/api-keys/{id}"))
        .header("x-api-key", str_field(&admin, "key"))
        .json(&json!({"external_id": "cus_2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(get(app, &token, id).await["external_id"], "cus_2");
}

async fn refused_changes_change_nothing(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let created = create(
        app,
        &token,
        &json!({"organization_id": org, "name": "worker", "scopes": ["read"], "meta": {"a": 1}}),
    )
    .await;
    let id = str_field(&created, "id").to_owned();
    let before = get(app, &token, &id).await;

    let past = (Utc::now() - Duration::minutes(1)).to_rfc3339();
    let far = (Utc::now() + Duration::days(3651)).to_rfc3339();
    let big = json!({"k": "v".repeat(4096)});
    for (body, field) in [
        (json!({"name": null}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"scopes": null}), "scopes"),
        (json!({"scopes": ["Not A Scope"]}), "scopes[0]"),
        (json!({"meta": [1, 2]}), "meta"),
        (json!({"meta": big}), "meta"),
        (json!({"meta": {"\u{202e}gnp": 1}}), "meta"),
        (json!({"external_id": ""}), "external_id"),
        (json!({"external_id": "x".repeat(129)}), "external_id"),
        (json!({"external_id": "a\u{0}b"}), "external_id"),
        (json!({"expires_at": past}), "expires_at"),
        (json!({"expires_at": far}), "expires_at"),
        (json!({"expires_at": "tomorrow"}), "expires_at"),
        // Every broken member is named at once.
        (json!({"name": "", "expires_at": past}), "expires_at"),
        (json!({"name": "", "expires_at": past}), "name"),
        (
            json!({"meta": 1, "remaining": 1_000_000_001_u64, "rate_limit": {"limit": 0, "window_seconds": 1}}),
            "meta",
        ),
        (
            json!({"meta": 1, "remaining": 1_000_000_001_u64, "rate_limit": {"limit": 0, "window_seconds": 1}}),
            "remaining",
        ),
        (
            json!({"meta": 1, "remaining": 1_000_000_001_u64, "rate_limit": {"limit": 0, "window_seconds": 1}}),
            "rate_limit.limit",
        ),
    ] {
        let res = patch(app, &token, &id, &body).await;
        let problem = assert_problem(res, 422, "VALIDATION_FAILED").await;
        let fields = problem_fields(&problem);
        assert!(fields.contains(&field), "{body}: {problem}");
    }
    let res = app
        .post_auth(
            "/api/v1/api-keys",
            &token,
            Some(&json!({"organization_id": org, "name": "w", "scopes": [], "meta": "text"})),
        )
        .await;
    assert_problem(res, 422, "VALIDATION_FAILED").await;
    // Limits and credits out of range, a refill without a count: refused, naming the member.
    for (body, field) in [
        (
            json!({"rate_limit": {"limit": 0, "window_seconds": 10}}),
            "rate_limit.limit",
        ),
        (
            json!({"rate_limit": {"limit": 5, "window_seconds": 86_401}}),
            "rate_limit.window_seconds",
        ),
        (json!({"rate_limit": {"limit": 5}}), "rate_limit"),
        (json!({"remaining": 1_000_000_001_u64}), "remaining"),
        (json!({"remaining": -1}), "remaining"),
        (json!({"refill": {"amount": 5, "every": "day"}}), "refill"),
        (
            json!({"remaining": null, "refill": {"amount": 5, "every": "day"}}),
            "refill",
        ),
        (
            json!({"remaining": 5, "refill": {"amount": 0, "every": "day"}}),
            "refill.amount",
        ),
        (
            json!({"remaining": 5, "refill": {"amount": 5, "every": "week"}}),
            "refill",
        ),
    ] {
        let res = patch(app, &token, &id, &body).await;
        let problem = assert_problem(res, 422, "VALIDATION_FAILED").await;
        let fields = problem_fields(&problem);
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{body}: {problem}"
        );
        // The same members on create.
        let mut create_body = json!({"organization_id": org, "name": "w", "scopes": []});
        for (member, value) in body.as_object().unwrap() {
            create_body[member] = value.clone();
        }
        let res = app
            .post_auth("/api/v1/api-keys", &token, Some(&create_body))
            .await;
        assert_problem(res, 422, "VALIDATION_FAILED").await;
    }
    // A plain member of the organization sees it but may not change its keys.
    let (member_email, member) = app.user_with_session().await;
    app.post_auth(
        &format!("/api/v1/organizations/{org}/members"),
        &token,
        Some(&json!({"email": member_email, "role": "member"})),
    )
    .await;
    let res = patch(
        app,
        str_field(&member, "access_token"),
        &id,
        &json!({"name": "x"}),
    )
    .await;
    assert_problem(res, 403, "FORBIDDEN").await;
    let res = app
        .request(Method::PATCH, &format!("/api/v1/api-keys/{id}"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "MALFORMED_REQUEST").await;
    let res = app
        .request(Method::PATCH, &format!("/api/v1/api-keys/{id}"))
        .json(&json!({"name": "anonymous"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let (_, stranger) = app.user_with_session().await;
    let res = patch(
        app,
        str_field(&stranger, "access_token"),
        &id,
        &json!({"name": "x"}),
    )
    .await;
    assert_problem(res, 404, "NOT_FOUND").await;
    for unknown in [uuid::Uuid::now_v7().to_string(), "not-an-id".to_owned()] {
        let res = patch(app, &token, &unknown, &json!({"name": "x"})).await;
        assert_problem(res, 404, "NOT_FOUND").await;
    }
    assert_eq!(get(app, &token, &id).await, before, "nothing changed");

    // A revoked key is not changed.
    let res = app
        .post_auth(&format!("/api/v1/api-keys/{id}/revoke"), &token, None)
        .await;
    assert_eq!(res.status(), 200);
    let revoked = get(app, &token, &id).await;
    let res = patch(app, &token, &id, &json!({"name": "after"})).await;
    assert_problem(res, 409, "ALREADY_REVOKED").await;
    assert_eq!(get(app, &token, &id).await, revoked);
}

async fn changes_racing_a_revocation_stay_whole(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let created = create(
        app,
        &token,
        &json!({"organization_id": org, "name": "worker", "scopes": ["read"]}),
    )
    .await;
    let id = str_field(&created, "id").to_owned();
    let changes = (0..16).map(|i| {
        let (token, id) = (token.clone(), id.clone());
        async move {
            let res = patch(
                app,
                &token,
                &id,
                &json!({"name": format!("name {i}"), "external_id": format!("cus_{i}")}),
            )
            .await;
            res.status().as_u16()
        }
    });
    let revoke = async {
        app.post_auth(&format!("/api/v1/api-keys/{id}/revoke"), &token, None)
            .await
            .status()
            .as_u16()
    };
    let (statuses, revoked) =
        futures::future::join(futures::future::join_all(changes), revoke).await;
    assert_eq!(revoked, 200);
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    let stored = get(app, &token, &id).await;
    assert_eq!(stored["status"], "revoked");
    // Whole: a change's name always with the same change's external id.
    let name = str_field(&stored, "name");
    match name.strip_prefix("name ") {
        Some(i) => assert_eq!(stored["external_id"], format!("cus_{i}")),
        None => assert_eq!((name, &stored["external_id"]), ("worker", &Value::Null)),
    }
    assert_eq!(
        verify(app, str_field(&created, "key"), json!([])).await,
        json!({"valid": false, "error": "REVOKED"})
    );
}

/// A key limited to 5 per window and one with 10 credits, as a product team would set them:
/// created, read back, verified (the answers carry `rate_limit` and `remaining`, the refusals
/// `RATE_LIMITED` and `USAGE_EXCEEDED`), changed in place (a new count, limits removed), and a
/// key used to manage keys is not metered.
async fn limits_and_credits_answer_as_the_contract_says(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let limited = create(
        app,
        &token,
        &json!({"organization_id": org, "name": "globex", "scopes": ["read"],
                "external_id": "cus_globex", "rate_limit": {"limit": 5, "window_seconds": 3600}}),
    )
    .await;
    assert_eq!(
        limited["rate_limit"],
        json!({"limit": 5, "window_seconds": 3600})
    );
    assert_eq!(
        (&limited["remaining"], &limited["refill"]),
        (&Value::Null, &Value::Null)
    );
    let counted = create(
        app,
        &token,
        &json!({"organization_id": org, "name": "initech", "scopes": ["read", "admin"],
                "external_id": "cus_initech", "remaining": 10,
                "refill": {"amount": 10, "every": "month"}}),
    )
    .await;
    assert_eq!(counted["remaining"], 10);
    assert_eq!(counted["refill"], json!({"amount": 10, "every": "month"}));
    let (limited_key, counted_key) = (str_field(&limited, "key"), str_field(&counted, "key"));

    let mut answers = Vec::new();
    for _ in 0..7 {
        answers.push(verify(app, limited_key, json!(["read"])).await);
    }
    let valid: Vec<&Value> = answers.iter().filter(|a| a["valid"] == true).collect();
    assert_eq!(valid.len(), 5);
    assert_eq!(
        valid
            .iter()
            .map(|a| a["rate_limit"]["remaining"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [4, 3, 2, 1, 0]
    );
    for refused in &answers[5..] {
        assert_eq!(refused["error"], "RATE_LIMITED");
        assert_eq!(refused["rate_limit"]["remaining"], 0);
        assert!(refused.get("key_id").is_none() && refused.get("meta").is_none());
    }
    // A verification refused before the limit is not counted and reports no window.
    let refused = verify(app, limited_key, json!(["write"])).await;
    assert_eq!(refused["error"], "INSUFFICIENT_SCOPE");
    assert!(refused.get("rate_limit").is_none());

    // Used to manage keys, the counted key spends nothing.
    let res = app
        .request(
            Method::GET,
            &format!("/api/v1/api-keys?organization_id={org}"),
        )
        .header("X-API-Key", counted_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for left in (0..10).rev() {
        let answer = verify(app, counted_key, json!(["read"])).await;
        assert_eq!(
            (&answer["valid"], &answer["remaining"]),
            (&json!(true), &json!(left))
        );
    }
    let exceeded = verify(app, counted_key, json!(["read"])).await;
    assert_eq!(exceeded, json!({"valid": false, "error": "USAGE_EXCEEDED"}));
    let id = str_field(&counted, "id");
    assert_eq!(get(app, &token, id).await["remaining"], 0);
    // Still good for managing keys with no credit left.
    let res = app
        .request(Method::GET, &format!("/api/v1/api-keys/{id}"))
        .header("X-API-Key", counted_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // A new count keeps the refill; `null` removes the credits and the refill with them.
    let res = patch(app, &token, id, &json!({"remaining": 2})).await;
    assert_eq!(res.status(), 200);
    let changed: Value = res.json().await.unwrap();
    assert_eq!(
        (&changed["remaining"], &changed["refill"]["amount"]),
        (&json!(2), &json!(10))
    );
    assert_eq!(
        verify(app, counted_key, json!(["read"])).await["remaining"],
        1
    );
    let res = patch(app, &token, id, &json!({"remaining": null})).await;
    let unlimited: Value = res.json().await.unwrap();
    assert_eq!(
        (&unlimited["remaining"], &unlimited["refill"]),
        (&Value::Null, &Value::Null)
    );
    for _ in 0..3 {
        let answer = verify(app, counted_key, json!(["read"])).await;
        assert_eq!(answer["valid"], true);
        assert!(answer.get("remaining").is_none());
    }
    // The limit raised in place applies at once.
    let res = patch(
        app,
        &token,
        str_field(&limited, "id"),
        &json!({"rate_limit": {"limit": 6, "window_seconds": 3600}}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let answer = verify(app, limited_key, json!(["read"])).await;
    assert_eq!(answer["valid"], true, "{answer}");
    assert_eq!(answer["rate_limit"]["remaining"], 0);
    let res = patch(
        app,
        &token,
        str_field(&limited, "id"),
        &json!({"rate_limit": null}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let answer = verify(app, limited_key, json!(["read"])).await;
    assert_eq!(answer["valid"], true);
    assert!(answer.get("rate_limit").is_none());
}

/// A batch meters each item in order, as single verifications would: a key limited to 2 and
/// one with 1 credit and a limit of 5, each given several times, get their valid answers
/// first and their refusals after; a refusal for want of credits reports the key's window; a
/// malformed item costs nothing.
async fn a_batch_meters_its_items_in_order(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let limited = create(
        app,
        &token,
        &json!({"organization_id": org, "name": "l", "scopes": ["read"],
                "rate_limit": {"limit": 2, "window_seconds": 3600}}),
    )
    .await;
    let both = create(
        app,
        &token,
        &json!({"organization_id": org, "name": "b", "scopes": ["read"], "remaining": 1,
                "rate_limit": {"limit": 5, "window_seconds": 3600}}),
    )
    .await;
    let (l, b) = (str_field(&limited, "key"), str_field(&both, "key"));
    let items: Vec<Value> = [l, b, l, "ak_live_nope", b, l, b]
        .iter()
        .map(|key| json!({"key": key, "required_scopes": ["read"]}))
        .collect();
    let res = app
        .post_json("/api/v1/api-keys/verify-batch", &json!({"items": items}))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let outcomes: Vec<(Value, Value, Value)> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["error"].clone(),
                r["remaining"].clone(),
                r["rate_limit"]["remaining"].clone(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (Value::Null, Value::Null, json!(1)),
            (Value::Null, json!(0), json!(4)),
            (Value::Null, Value::Null, json!(0)),
            (json!("INVALID"), Value::Null, Value::Null),
            (json!("USAGE_EXCEEDED"), Value::Null, json!(3)),
            (json!("RATE_LIMITED"), Value::Null, json!(0)),
            (json!("USAGE_EXCEEDED"), Value::Null, json!(2)),
        ]
    );
}

/// `GET /api-keys/{id}/usage` shows the verifications of a key by outcome, per hour and per
/// day, once the instance has written them; refuses a broken query naming each parameter;
/// answers 404 to a stranger and 401 without credentials.
async fn usage_shows_what_was_done(app: &TestApp) {
    let (token, org) = owner_and_org(app).await;
    let created = create(
        app,
        &token,
        &json!({"organization_id": org, "name": "u", "scopes": ["read"], "remaining": 2}),
    )
    .await;
    let (id, key) = (str_field(&created, "id"), str_field(&created, "key"));
    let started = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    for scopes in [
        json!(["read"]),
        json!(["read"]),
        json!(["read"]),
        json!(["write"]),
    ] {
        verify(app, key, scopes).await;
    }
    let usage = |query: &str| {
        let path = format!("/api/v1/api-keys/{id}/usage{query}");
        let token = token.clone();
        async move { app.get_auth(&path, &token).await }
    };
    // Not written yet: nothing to show.
    let res = usage("").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"granularity": "hour", "items": []})
    );
    app.keys.flush_usage().await.unwrap();
    let hour = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    // The verifications above fall in one hour, unless the hour turned while they ran (then
    // they are split over two, which the checks below do not expect).
    assert_eq!(
        hour, started,
        "the hour turned during the test: run it again"
    );
    let expected = |start: chrono::DateTime<Utc>| {
        json!([{"start": start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "valid": 2, "insufficient_scope": 1, "rate_limited": 0,
                "usage_exceeded": 1, "expired": 0, "revoked": 0}])
    };
    let body: Value = usage("").await.json().await.unwrap();
    assert_eq!(body["items"], expected(hour), "{body}");
    let day = Utc::now().duration_trunc(Duration::days(1)).unwrap();
    let from = (day - Duration::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body: Value = usage(&format!("?granularity=day&from={from}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["granularity"], "day");
    assert_eq!(body["items"], expected(day), "{body}");
    // An offset's `+` sent unencoded (read as a space by the query's decoding) is understood.
    let plus = (day - Duration::days(1))
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string();
    let body: Value = usage(&format!("?granularity=day&from={plus}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["items"], expected(day), "{body}");

    // Broken queries, every parameter named.
    let long_ago =
        (Utc::now() - Duration::days(91)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for (query, fields) in [
        (
            "?from=yesterday&granularity=week",
            vec!["from", "granularity"],
        ),
        (
            "?to=2020-01-01T00:00:00Z&from=2020-01-02T00:00:00Z",
            vec!["from"],
        ),
        (&*format!("?from={long_ago}"), vec!["to"]),
    ] {
        let problem = assert_problem(usage(query).await, 422, "VALIDATION_FAILED").await;
        assert_eq!(problem_fields(&problem), fields, "{query}");
    }
    let (_, stranger) = app.user_with_session().await;
    let res = app
        .get_auth(
            &format!("/api/v1/api-keys/{id}/usage"),
            str_field(&stranger, "access_token"),
        )
        .await;
    assert_problem(res, 404, "NOT_FOUND").await;
    let res = app.get(&format!("/api/v1/api-keys/{id}/usage")).await;
    assert_eq!(res.status(), 401);
}
