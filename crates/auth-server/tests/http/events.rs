//! The audit trail (`/organizations/{id}/events`, `/users/me/events`) and the revocation
//! stream (`/revocations/stream`), as their users and an attacker call them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auth_infra::test_support::TestDb;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::api_keys::create_key;
use crate::common::{
    TestApp, assert_problem, on_both_stores, problem_fields, str_field, test_config,
};
use crate::devices::register;
use crate::organizations::new_org;

on_both_stores!(
    each_revocation_reaches_the_stream_within_a_second,
    a_subscriber_sees_only_its_own_organizations_credentials,
    resuming_with_last_event_id_misses_nothing_under_concurrent_revocations,
    only_keys_with_the_scope_may_follow_the_stream,
    the_stream_sends_heartbeats,
    an_organizations_trail_is_paged_filtered_and_kept_to_its_managers,
    a_user_sees_the_events_of_their_own_account_only,
);

/// A client of the revocation stream: collects each message (`id`, `event`, `data`) and
/// comments as they arrive.
struct Subscriber {
    messages: Arc<Mutex<Vec<Message>>>,
    comments: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone, Default)]
struct Message {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl Message {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// Parses the SSE text of `buffer`, leaving an incomplete message in it.
fn parse(buffer: &mut String, messages: &Mutex<Vec<Message>>, comments: &Mutex<usize>) {
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let mut message = Message::default();
        let mut fields = false;
        for line in block.lines() {
            if line.starts_with(':') {
                *comments.lock().unwrap() += 1;
                continue;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            fields = true;
            match name {
                "id" => message.id = Some(value.to_owned()),
                "event" => message.event = Some(value.to_owned()),
                "data" => message.data.push_str(value),
                _ => {}
            }
        }
        if fields {
            messages.lock().unwrap().push(message);
        }
    }
}

impl Subscriber {
    async fn connect(app: &TestApp, key: &str, last_event_id: Option<&str>) -> Self {
        let mut req = app
            .request(reqwest::Method::GET, "/api/v1/revocations/stream")
            .header("x-api-key", key);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        assert_eq!(res.headers()["cache-control"], "no-store");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let comments = Arc::new(Mutex::new(0));
        let (m, c) = (messages.clone(), comments.clone());
        let task = tokio::spawn(async move {
            let mut res = res;
            let mut buffer = String::new();
            while let Ok(Some(chunk)) = res.chunk().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                parse(&mut buffer, &m, &c);
            }
        });
        let subscriber = Self {
            messages,
            comments,
            task,
        };
        // The first message is the cursor (or, on a resume, the replay follows).
        if last_event_id.is_none() {
            subscriber
                .wait_for(|m| m.id.is_some() && m.data.is_empty())
                .await;
        }
        subscriber
    }

    fn revocations(&self) -> Vec<Value> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| !m.data.is_empty() && m.event.is_none())
            .map(Message::json)
            .collect()
    }

    /// The highest `id` received.
    fn last_id(&self) -> Option<String> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| m.id.as_deref()?.parse::<i64>().ok())
            .max()
            .map(|id| id.to_string())
    }

    async fn wait_for(&self, found: impl Fn(&Message) -> bool) -> Message {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            if let Some(m) = self.messages.lock().unwrap().iter().find(|m| found(m)) {
                return m.clone();
            }
            assert!(
                Instant::now() < deadline,
                "not on the stream within a second: {:?}",
                self.messages.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (at most a second) for the revocation `action` about `field` = `id`.
    async fn revocation(&self, action: &str, field: &str, id: &str) -> Value {
        self.wait_for(|m| {
            let v = m.json();
            v["action"] == action && v[field] == id
        })
        .await
        .json()
    }

    fn stop(self) {
        self.task.abort();
    }
}

/// An owner with an organization and a key of it that may follow the stream.
async fn follower(app: &TestApp) -> (String, String, String) {
    let (_, owner) = app.user_with_session().await;
    let token = str_field(&owner, "access_token").to_owned();
    let org = new_org(app, &token, "Relying Service").await;
    let key = create_key(app, &token, &org, json!(["revocations:read"])).await;
    (token, org, str_field(&key, "key").to_owned())
}

async fn each_revocation_reaches_the_stream_within_a_second(app: &TestApp) {
    let (token, org, stream_key) = follower(app).await;
    let stream = Subscriber::connect(app, &stream_key, None).await;

    // A key revoked, and one rotated.
    let revoked = create_key(app, &token, &org, json!(["read"])).await;
    let revoked_id = str_field(&revoked, "id");
    let res = app
        .post_auth(
            &format!("/api/v1/api-keys/{revoked_id}/revoke"),
            &token,
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    let event = stream
        .revocation("api_key.revoked", "key_id", revoked_id)
        .await;
    assert_eq!(event["organization_id"], org.as_str());
    // Ids only: neither the key nor anything derived from it.
    let secret = str_field(&revoked, "key");
    assert!(!event.to_string().contains(&secret[secret.len() - 20..]));
    let rotated = create_key(app, &token, &org, json!(["read"])).await;
    let rotated_id = str_field(&rotated, "id");
    let res = app
        .post_auth(
            &format!("/api/v1/api-keys/{rotated_id}/rotate"),
            &token,
            None,
        )
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    stream
        .revocation("api_key.rotated", "key_id", rotated_id)
        .await;

    // A key changed in place: a verdict cached on it is out of date.
    let changed = create_key(app, &token, &org, json!(["read", "write"])).await;
    let changed_id = str_field(&changed, "id");
    let res =
        crate::key_products::patch(app, &token, changed_id, &json!({"scopes": ["read"]})).await;
    assert_eq!(res.status(), 200);
    stream
        .revocation("api_key.updated", "key_id", changed_id)
        .await;

    // A session ended by logout.
    let (_, user) = app.user_with_session().await;
    let session = str_field(&user["user"], "id").to_owned();
    let res = app
        .post_json(
            "/api/v1/auth/logout",
            &json!({"refresh_token": str_field(&user, "refresh_token")}),
        )
        .await;
    assert_eq!(res.status(), 204);
    let ended = stream
        .revocation("session.ended", "user_id", &session)
        .await;
    assert!(ended["session_id"].is_string(), "{ended}");

    // A device's secret rotated, then the device revoked.
    let device_id = format!("frame:stream.{}", uuid::Uuid::now_v7().simple());
    register(app, &token, &org, &device_id).await;
    let res = app
        .post_auth(
            &format!("/api/v1/devices/{device_id}/rotate-secret"),
            &token,
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    let rotated = stream
        .revocation("device.secret_rotated", "device_id", &device_id)
        .await;
    assert!(rotated["not_before"].is_i64(), "{rotated}");
    let res = app
        .post_auth(&format!("/api/v1/devices/{device_id}/revoke"), &token, None)
        .await;
    assert_eq!(res.status(), 200);
    stream
        .revocation("device.revoked", "device_id", &device_id)
        .await;

    // An account disabled by an administrator: every token of it issued until now.
    let (_, admin) = app.admin().await;
    let (_, victim) = app.user_with_session().await;
    let victim_id = str_field(&victim["user"], "id").to_owned();
    let res = app
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/admin/users/{victim_id}"),
        )
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let disabled = stream
        .revocation("user.disabled", "user_id", &victim_id)
        .await;
    assert!(disabled["not_before"].is_i64(), "{disabled}");

    // Nothing but revocations, and each id is its seq.
    for m in stream.messages.lock().unwrap().iter() {
        if !m.data.is_empty() {
            let v = m.json();
            assert!(
                auth_api::Revocation::ACTIONS.contains(&v["action"].as_str().unwrap()),
                "{v}"
            );
            assert_eq!(m.id.as_deref(), Some(v["seq"].to_string().as_str()));
        }
    }
    stream.stop();
}

async fn a_subscriber_sees_only_its_own_organizations_credentials(app: &TestApp) {
    let (token_a, org_a, stream_a) = follower(app).await;
    let (token_b, org_b, stream_b) = follower(app).await;
    let a = Subscriber::connect(app, &stream_a, None).await;
    let b = Subscriber::connect(app, &stream_b, None).await;
    let key_a = create_key(app, &token_a, &org_a, json!(["read"])).await;
    let key_b = create_key(app, &token_b, &org_b, json!(["read"])).await;
    for (key, token) in [(&key_a, &token_a), (&key_b, &token_b)] {
        let res = app
            .post_auth(
                &format!("/api/v1/api-keys/{}/revoke", str_field(key, "id")),
                token,
                None,
            )
            .await;
        assert_eq!(res.status(), 200);
    }
    // Each sees its own; A's revocation was appended first, so B would have it by now.
    a.revocation("api_key.revoked", "key_id", str_field(&key_a, "id"))
        .await;
    b.revocation("api_key.revoked", "key_id", str_field(&key_b, "id"))
        .await;
    for (stream, foreign) in [(&a, &key_b), (&b, &key_a)] {
        assert!(
            !stream
                .revocations()
                .iter()
                .any(|r| r["key_id"] == str_field(foreign, "id")),
            "another organization's key on the stream"
        );
    }
    // Sessions belong to no organization: every subscriber hears of them.
    let (_, user) = app.user_with_session().await;
    let user_id = str_field(&user["user"], "id").to_owned();
    let res = app
        .post_json(
            "/api/v1/auth/logout",
            &json!({"refresh_token": str_field(&user, "refresh_token")}),
        )
        .await;
    assert_eq!(res.status(), 204);
    a.revocation("session.ended", "user_id", &user_id).await;
    b.revocation("session.ended", "user_id", &user_id).await;
    a.stop();
    b.stop();
}

async fn resuming_with_last_event_id_misses_nothing_under_concurrent_revocations(app: &TestApp) {
    let (token, org, stream_key) = follower(app).await;
    let mut keys = Vec::new();
    for _ in 0..40 {
        keys.push(
            str_field(&create_key(app, &token, &org, json!(["read"])).await, "id").to_owned(),
        );
    }
    let mut stream = Subscriber::connect(app, &stream_key, None).await;
    let mut cursor = stream.last_id().unwrap();
    let mut seen: HashSet<String> = HashSet::new();

    // Revocations in parallel while the subscriber drops its connection and resumes, again
    // and again.
    let revoking = {
        let (base, client, token, keys) = (
            app.base.clone(),
            app.client.clone(),
            token.clone(),
            keys.clone(),
        );
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for (i, chunk) in keys.chunks(5).enumerate() {
                let (base, client, token, chunk) =
                    (base.clone(), client.clone(), token.clone(), chunk.to_vec());
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(15 * i as u64)).await;
                    for id in chunk {
                        let res = client
                            .post(format!("{base}/api/v1/api-keys/{id}/revoke"))
                            .bearer_auth(&token)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(res.status(), 200);
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
        })
    };
    let mut reconnects = 0;
    while !revoking.is_finished() {
        tokio::time::sleep(Duration::from_millis(25)).await;
        for r in stream.revocations() {
            seen.insert(r["key_id"].as_str().unwrap_or_default().to_owned());
        }
        cursor = stream.last_id().unwrap_or(cursor);
        stream.stop();
        stream = Subscriber::connect(app, &stream_key, Some(&cursor)).await;
        reconnects += 1;
    }
    revoking.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        for r in stream.revocations() {
            seen.insert(r["key_id"].as_str().unwrap_or_default().to_owned());
        }
        if keys.iter().all(|k| seen.contains(k)) {
            break;
        }
        let missing: Vec<_> = keys.iter().filter(|k| !seen.contains(*k)).collect();
        assert!(
            Instant::now() < deadline,
            "{} revocations missed over {reconnects} resumes: {missing:?}",
            missing.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reconnects >= 2, "the subscriber resumed {reconnects} times");
    stream.stop();
}

async fn only_keys_with_the_scope_may_follow_the_stream(app: &TestApp) {
    let (token, org, stream_key) = follower(app).await;
    let path = "/api/v1/revocations/stream";
    assert_problem(app.get(path).await, 401, "UNAUTHENTICATED").await;
    // A user's token: the stream is for services, through their keys.
    let problem = assert_problem(app.get_auth(path, &token).await, 403, "FORBIDDEN").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("revocations:read")
    );
    // A key of the organization, even an admin one, without the scope.
    let admin_key = create_key(app, &token, &org, json!(["admin"])).await;
    let res = app
        .request(reqwest::Method::GET, path)
        .header("x-api-key", str_field(&admin_key, "key"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "FORBIDDEN").await;
    // A made-up key, and a revoked one.
    let res = app
        .request(reqwest::Method::GET, path)
        .header("x-api-key", "ak_live_made_up")
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "UNAUTHENTICATED").await;
    // A Last-Event-ID that is not a position.
    for bad in ["abc", "-1", "1.5", ""] {
        let res = app
            .request(reqwest::Method::GET, path)
            .header("x-api-key", &stream_key)
            .header("last-event-id", bad)
            .send()
            .await
            .unwrap();
        assert_problem(res, 400, "MALFORMED_REQUEST").await;
    }
    let keys: Value = app
        .get_auth(&format!("/api/v1/api-keys?organization_id={org}"), &token)
        .await
        .json()
        .await
        .unwrap();
    let stream_key_id = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["scopes"] == json!(["revocations:read"]))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .post_auth(
            &format!("/api/v1/api-keys/{stream_key_id}/revoke"),
            &token,
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .request(reqwest::Method::GET, path)
        .header("x-api-key", &stream_key)
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "UNAUTHENTICATED").await;
}

async fn the_stream_sends_heartbeats(app: &TestApp) {
    let (_, _, stream_key) = follower(app).await;
    let stream = Subscriber::connect(app, &stream_key, None).await;
    // The default is 15 s; the test configuration's is 1 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    while *stream.comments.lock().unwrap() == 0 {
        assert!(Instant::now() < deadline, "no heartbeat");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stream.stop();
}

async fn an_organizations_trail_is_paged_filtered_and_kept_to_its_managers(app: &TestApp) {
    let (_, owner) = app.user_with_session().await;
    let token = str_field(&owner, "access_token");
    let org = new_org(app, token, "Audited").await;
    let mut revoked = Vec::new();
    for _ in 0..5 {
        let key = create_key(app, token, &org, json!(["read"])).await;
        let id = str_field(&key, "id").to_owned();
        let res = app
            .post_auth(&format!("/api/v1/api-keys/{id}/revoke"), token, None)
            .await;
        assert_eq!(res.status(), 200);
        revoked.push(id);
    }
    let trail = format!("/api/v1/organizations/{org}/events");

    // Filtered by action, paged two at a time by `next_after`, oldest first.
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let res = app
            .get_auth(
                &format!("{trail}?action=api_key.revoked&limit=2&after={after}"),
                token,
            )
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["cache-control"], "no-store");
        let page: Value = res.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        if items.is_empty() {
            assert!(page["next_after"].is_null());
            break;
        }
        for item in items {
            assert_eq!(item["action"], "api_key.revoked");
            assert_eq!(item["organization_id"], org.as_str());
            assert!(item["seq"].as_i64().unwrap() > after);
            seen.push(item["target"]["id"].as_str().unwrap().to_owned());
        }
        after = page["next_after"].as_i64().unwrap();
    }
    assert_eq!(seen, revoked);

    // An admin key of the organization reads it; other keys and callers do not.
    let admin_key = create_key(app, token, &org, json!(["admin"])).await;
    let read_key = create_key(app, token, &org, json!(["read"])).await;
    let with_key = |key: &Value| {
        app.request(reqwest::Method::GET, &trail)
            .header("x-api-key", str_field(key, "key"))
            .send()
    };
    assert_eq!(with_key(&admin_key).await.unwrap().status(), 200);
    assert_problem(with_key(&read_key).await.unwrap(), 403, "FORBIDDEN").await;
    let (_, stranger) = app.user_with_session().await;
    let stranger_token = str_field(&stranger, "access_token");
    assert_problem(app.get_auth(&trail, stranger_token).await, 404, "NOT_FOUND").await;
    let other_org = new_org(app, stranger_token, "Elsewhere").await;
    let foreign_key = create_key(app, stranger_token, &other_org, json!(["admin"])).await;
    assert_problem(with_key(&foreign_key).await.unwrap(), 404, "NOT_FOUND").await;
    let (member_email, member) = app.user_with_session().await;
    let res = app
        .post_auth(
            &format!("/api/v1/organizations/{org}/members"),
            token,
            Some(&json!({"email": member_email, "role": "member"})),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_problem(
        app.get_auth(&trail, str_field(&member, "access_token"))
            .await,
        403,
        "FORBIDDEN",
    )
    .await;
    assert_problem(app.get(&trail).await, 401, "UNAUTHENTICATED").await;

    // Every broken parameter is named at once.
    let problem = assert_problem(
        app.get_auth(
            &format!("{trail}?after=x&limit=501&action=api_key.exploded"),
            token,
        )
        .await,
        422,
        "VALIDATION_FAILED",
    )
    .await;
    let fields = problem_fields(&problem);
    assert_eq!(fields, ["after", "limit", "action"]);
    assert_eq!(problem["detail"], "query parameters failed validation");
    // No secret of any key in the trail.
    let all: Value = app.get_auth(&trail, token).await.json().await.unwrap();
    let text = all.to_string();
    for key in [&admin_key, &read_key] {
        let secret = str_field(key, "key");
        assert!(
            !text.contains(&secret[secret.len() - 20..]),
            "a key in the trail"
        );
    }
}

async fn a_user_sees_the_events_of_their_own_account_only(app: &TestApp) {
    let (_, ada) = app.user_with_session().await;
    let (_, bob) = app.user_with_session().await;
    let ada_id = str_field(&ada["user"], "id").to_owned();
    // Both end a session.
    for user in [&ada, &bob] {
        let res = app
            .post_json(
                "/api/v1/auth/logout",
                &json!({"refresh_token": str_field(user, "refresh_token")}),
            )
            .await;
        assert_eq!(res.status(), 204);
    }
    let res = app
        .login(str_field(&ada["user"], "email"), crate::common::PASSWORD)
        .await;
    let ada_token = str_field(&res.json::<Value>().await.unwrap(), "access_token").to_owned();
    let page: Value = app
        .get_auth("/api/v1/users/me/events", &ada_token)
        .await
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"user.registered"), "{actions:?}");
    assert!(actions.contains(&"session.ended"), "{actions:?}");
    // Logging out with a refresh token is its user's doing.
    let ended = items
        .iter()
        .find(|e| e["action"] == "session.ended")
        .unwrap();
    assert_eq!(ended["actor"], json!({"type": "user", "id": ada_id}));
    for item in items {
        let about_ada = item["target"]["id"] == ada_id.as_str()
            || item["details"]["user_id"] == ada_id.as_str();
        assert!(about_ada, "another account's event: {item}");
    }
    assert_problem(
        app.get("/api/v1/users/me/events").await,
        401,
        "UNAUTHENTICATED",
    )
    .await;
}

/// Two instances on one Postgres: a subscriber of one hears of a revocation made on the
/// other within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_instance_reaches_the_stream_of_another() {
    let db = TestDb::new().await;
    let mut config = test_config();
    config.db.url = Some(SecretString::from(db.url().to_owned()));
    let a = TestApp::serve(config.clone(), None).await;
    let b = TestApp::serve(config, None).await;
    assert_eq!(b.get("/health/ready").await.status(), 200);
    let (token, org, stream_key) = follower(&a).await;
    let stream = Subscriber::connect(&b, &stream_key, None).await;
    let key = create_key(&a, &token, &org, json!(["read"])).await;
    let id = str_field(&key, "id");
    let res = a
        .post_auth(&format!("/api/v1/api-keys/{id}/revoke"), &token, None)
        .await;
    assert_eq!(res.status(), 200);
    stream.revocation("api_key.revoked", "key_id", id).await;
    stream.stop();
    a.stop().await;
    b.stop().await;
}

/// A subscriber whose instance loses the database (its log listener with it) hears of the
/// revocations made meanwhile on another instance once the database is back: the instance's
/// follower resumes from its position, and the stream with it. The subscriber stays connected
/// throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_made_while_an_instance_is_cut_off_reach_its_subscribers_when_it_returns() {
    use crate::common::{PgProxy, pg_addr};
    let db = TestDb::new().await;
    let mut direct = test_config();
    direct.db.url = Some(SecretString::from(db.url().to_owned()));
    let a = TestApp::serve(direct, None).await;
    let proxy = PgProxy::start(pg_addr(db.url())).await;
    let mut via_proxy = test_config();
    via_proxy.db.url = Some(SecretString::from(proxy.url_for(db.url())));
    via_proxy.db.timeout_ms = 300;
    let b = TestApp::serve(via_proxy, None).await;
    assert_eq!(b.get("/health/ready").await.status(), 200);
    let (token, org, stream_key) = follower(&a).await;
    let stream = Subscriber::connect(&b, &stream_key, None).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(str_field(&create_key(&a, &token, &org, json!(["read"])).await, "id").to_owned());
    }

    proxy.cut();
    for id in &ids {
        let res = a
            .post_auth(&format!("/api/v1/api-keys/{id}/revoke"), &token, None)
            .await;
        assert_eq!(res.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let heard: HashSet<String> = stream
            .revocations()
            .iter()
            .filter_map(|r| r["key_id"].as_str().map(str::to_owned))
            .collect();
        if ids.iter().all(|id| heard.contains(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "heard {heard:?} of {ids:?} after the database returned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stream.stop();
    a.stop().await;
    b.stop().await;
}

/// Streams opened at once with one key beyond `AUTH_STREAM_MAX_PER_KEY` are refused with 429
/// and `Retry-After`; the streams that started work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_cannot_open_streams_beyond_its_limit() {
    let app = TestApp::start_with(crate::common::Backend::Memory, |config| {
        config.retention.stream_max_per_key = 2;
    })
    .await;
    let (_, _, stream_key) = follower(&app).await;
    let attempts = (0..8).map(|_| {
        app.request(reqwest::Method::GET, "/api/v1/revocations/stream")
            .header("x-api-key", &stream_key)
            .send()
    });
    let answers = futures::future::join_all(attempts).await;
    let mut open = Vec::new();
    let mut refused = 0;
    for res in answers {
        let res = res.unwrap();
        match res.status().as_u16() {
            200 => open.push(res),
            429 => {
                assert_eq!(res.headers()["retry-after"], "1");
                let problem = assert_problem(res, 429, "RATE_LIMITED").await;
                assert!(
                    problem["detail"]
                        .as_str()
                        .unwrap()
                        .contains("AUTH_STREAM_MAX_PER_KEY")
                );
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((open.len(), refused), (2, 6));
    app.stop().await;
}
