//! The audit trail as the requests write it: each event names its caller, the client's
//! address and the id of the request that caused it; a failed login never names an address
//! with no account; commands and background work are the service's own; and requests served
//! at the same time never lend each other their context.

use std::net::IpAddr;
use std::sync::Arc;

use auth_core::model::{EventActor, EventTarget, StoredEvent};
use auth_core::ports::{EventLog, EventQuery, EventScope};
use auth_infra::postgres::PgEventLog;
use auth_server::wiring::Store;
use reqwest::Response;
use serde_json::{Value, json};

use crate::common::{Backend, PASSWORD, TestApp, on_both_stores, str_field, unique_email};

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// The log the app writes to.
fn event_log(store: &Store) -> Arc<dyn EventLog> {
    match store {
        Store::Memory(memory) => memory.events.clone(),
        Store::Postgres { pool, .. } => Arc::new(PgEventLog::new(pool.clone())),
    }
}

/// Every event of `app` with the action `action`, oldest first.
async fn events(app: &TestApp, action: &str) -> Vec<StoredEvent> {
    event_log(&app.store)
        .list(&EventQuery {
            scope: EventScope::All,
            after: 0,
            limit: 10_000,
            action: Some(action.to_owned()),
        })
        .await
        .unwrap()
}

/// The one event with `action` whose target is `target_id`.
async fn event_about(app: &TestApp, action: &str, target_id: &str) -> StoredEvent {
    let found: Vec<StoredEvent> = events(app, action)
        .await
        .into_iter()
        .filter(|e| e.target.id == target_id)
        .collect();
    assert_eq!(found.len(), 1, "{action} about {target_id}: {found:?}");
    found.into_iter().next().unwrap()
}

fn request_id(res: &Response) -> String {
    res.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("X-Request-Id")
        .to_owned()
}

/// Creates an organization with `token`'s user as owner; returns its id.
async fn organization(app: &TestApp, token: &str) -> String {
    let res = app
        .post_auth(
            "/api/v1/organizations",
            token,
            Some(&json!({"name": "Audited"})),
        )
        .await;
    assert_eq!(res.status(), 201);
    str_field(&res.json::<Value>().await.unwrap(), "id").to_owned()
}

/// A fresh user with an organization of their own: (access token, organization id, user id).
async fn owner(app: &TestApp) -> (String, String, String) {
    let (_, body) = app.user_with_session().await;
    let token = str_field(&body, "access_token").to_owned();
    let user = str_field(&body["user"], "id").to_owned();
    let org = organization(app, &token).await;
    (token, org, user)
}

/// Creates a key of `org` with `token`; returns the response's request id and its body.
async fn create_key(app: &TestApp, token: &str, org: &str, name: &str) -> (String, Value) {
    let res = app
        .post_auth(
            "/api/v1/api-keys",
            token,
            Some(&json!({"organization_id": org, "name": name, "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(res.status(), 201);
    (request_id(&res), res.json().await.unwrap())
}

/// Login, organization and key made with a user's Bearer token: each event is the user's,
/// with the id its response carried and the client's address.
async fn a_users_requests_are_recorded_as_the_users(app: &TestApp) {
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let res = app.login(&email, PASSWORD).await;
    assert_eq!(res.status(), 200);
    let login_request = request_id(&res);
    let body: Value = res.json().await.unwrap();
    let token = str_field(&body, "access_token").to_owned();
    let user = str_field(&body["user"], "id").to_owned();
    let me = EventActor {
        kind: auth_core::model::ActorKind::User,
        id: Some(user.clone()),
    };

    let login = event_about(app, "user.login_succeeded", &user).await;
    assert_eq!(login.actor, me);
    assert_eq!(login.request_id.as_deref(), Some(login_request.as_str()));
    assert_eq!(login.ip, Some(LOCALHOST));
    // Registration had no caller yet.
    let registered = event_about(app, "user.registered", &user).await;
    assert_eq!(registered.actor, EventActor::anonymous());
    assert!(registered.request_id.is_some());
    assert_ne!(registered.request_id, login.request_id);

    let org = organization(app, &token).await;
    let created = event_about(app, "organization.created", &org).await;
    assert_eq!(created.actor, me);
    assert_eq!(created.organization_id.unwrap().to_string(), org);

    let (key_request, key) = create_key(app, &token, &org, "deploy").await;
    let key_id = str_field(&key, "id");
    let event = event_about(app, "api_key.created", key_id).await;
    assert_eq!(event.actor, me);
    assert_eq!(event.request_id.as_deref(), Some(key_request.as_str()));
    assert_eq!(event.ip, Some(LOCALHOST));
    assert_eq!(event.details["name"], "deploy");
    assert_eq!(event.details["scopes"], json!(["admin"]));
    let shown = format!("{event:?}");
    assert!(!shown.contains(str_field(&key, "key")), "{shown}");
}

/// A key revoked by an organization's admin key is that key's doing.
async fn a_key_revoked_with_an_admin_key_is_the_keys(app: &TestApp) {
    let (token, org, _) = owner(app).await;
    let (_, admin) = create_key(app, &token, &org, "operator").await;
    let (_, victim) = create_key(app, &token, &org, "leaked").await;
    let victim_id = str_field(&victim, "id");
    let res = app
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/api-keys/{victim_id}/revoke"),
        )
        .header("x-api-key", str_field(&admin, "key"))
        .header("x-request-id", "revoke-by-key.1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(request_id(&res), "revoke-by-key.1");

    let revoked = event_about(app, "api_key.revoked", victim_id).await;
    assert_eq!(
        revoked.actor,
        EventActor {
            kind: auth_core::model::ActorKind::ApiKey,
            id: Some(str_field(&admin, "id").to_owned()),
        }
    );
    assert_eq!(revoked.request_id.as_deref(), Some("revoke-by-key.1"));
    assert_eq!(revoked.ip, Some(LOCALHOST));
    assert_eq!(revoked.organization_id.unwrap().to_string(), org);
}

/// A failed login for an address no account has: an `email` target holding the address's
/// fingerprint (the same for every attempt, whatever the case), the anonymous caller, and
/// neither the address nor the password anywhere in the event.
async fn a_failed_login_for_an_unknown_address_names_only_its_fingerprint(app: &TestApp) {
    let local = format!("ghost.{}", uuid::Uuid::now_v7().simple());
    let typed = format!("{local}@Example.COM");
    let password = "a guess that is wrong";
    let mut requests = Vec::new();
    for email in [typed.clone(), typed.to_lowercase()] {
        let res = app.login(&email, password).await;
        assert_eq!(res.status(), 401);
        requests.push(request_id(&res));
    }
    let fingerprint = app
        .auth
        .address_fingerprint(&auth_core::model::Email::parse(&typed).unwrap());
    assert!(fingerprint.starts_with("hmac-sha256:"), "{fingerprint}");
    let failed: Vec<StoredEvent> = events(app, "user.login_failed")
        .await
        .into_iter()
        .filter(|e| e.target.id == fingerprint)
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    for (event, request) in failed.iter().zip(&requests) {
        assert_eq!(
            event.target,
            EventTarget {
                kind: "email".to_owned(),
                id: fingerprint.clone(),
            }
        );
        assert_eq!(event.actor, EventActor::anonymous());
        assert_eq!(event.request_id.as_ref(), Some(request));
        assert_eq!(event.ip, Some(LOCALHOST));
        assert_eq!(event.details["step"], "password");
        let shown = format!("{event:?}").to_lowercase();
        for secret in [local.as_str(), "example.com", password] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
    assert_eq!(failed[1].details["failures"], 2, "the same counter");
}

/// A failed login for an account is about the account.
async fn a_failed_login_for_an_account_targets_it(app: &TestApp) {
    let email = unique_email();
    let res = app.register(&email, PASSWORD).await;
    let user = str_field(&res.json::<Value>().await.unwrap(), "id").to_owned();
    let res = app.login(&email, "not the passphrase").await;
    assert_eq!(res.status(), 401);
    let failed = event_about(app, "user.login_failed", &user).await;
    assert_eq!(failed.target.kind, "user");
    assert_eq!(failed.actor, EventActor::anonymous());
    assert_eq!(failed.request_id, Some(request_id(&res)));
    assert_eq!(failed.details["user_id"], user.as_str());
    let shown = format!("{failed:?}");
    assert!(!shown.contains(&email) && !shown.contains("not the passphrase"));
}

on_both_stores!(
    a_users_requests_are_recorded_as_the_users,
    a_key_revoked_with_an_admin_key_is_the_keys,
    a_failed_login_for_an_unknown_address_names_only_its_fingerprint,
    a_failed_login_for_an_account_targets_it,
    commands_outside_a_request_are_the_systems,
    concurrent_requests_never_lend_their_context,
);

/// The failure that reaches the threshold also records the lock; refused attempts while it
/// runs record nothing more. An address with no account locks under its fingerprint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failure_that_locks_records_the_lock() {
    for backend in [Backend::Memory, Backend::Postgres] {
        let app = TestApp::start_with(backend, |c| c.lockout.threshold = 3).await;
        let email = unique_email();
        let res = app.register(&email, PASSWORD).await;
        let user = str_field(&res.json::<Value>().await.unwrap(), "id").to_owned();
        let ghost = unique_email().replace("user.", "ghost.");
        let mut last = String::new();
        for _ in 0..3 {
            for address in [&email, &ghost] {
                let res = app.login(address, "wrong wrong wrong").await;
                assert_eq!(res.status(), 401);
                last = request_id(&res);
            }
        }
        for address in [&email, &ghost] {
            assert_eq!(app.login(address, PASSWORD).await.status(), 429);
        }

        let locks = events(&app, "user.locked").await;
        assert_eq!(locks.len(), 2, "{backend:?}: {locks:?}");
        assert_eq!(locks[0].target.kind, "user");
        assert_eq!(locks[0].target.id, user);
        assert_eq!(locks[0].details["failures"], 3);
        assert!(locks[0].details["locked_until"].is_string());
        let fingerprint = app
            .auth
            .address_fingerprint(&auth_core::model::Email::parse(&ghost).unwrap());
        assert_eq!(
            locks[1].target,
            EventTarget {
                kind: "email".to_owned(),
                id: fingerprint,
            }
        );
        assert_eq!(locks[1].request_id, Some(last), "the locking request's");
        assert!(locks.iter().all(|e| e.actor == EventActor::anonymous()));
        assert_eq!(
            events(&app, "user.login_failed").await.len(),
            6,
            "{backend:?}: a refused attempt is not a failed check"
        );
        app.stop().await;
    }
}

/// What the service does outside a request (an operator's command, a direct call of a
/// service, as background work makes) is `system`'s, with no address and no request id.
async fn commands_outside_a_request_are_the_systems(app: &TestApp) {
    let email = auth_core::model::Email::parse(&unique_email()).unwrap();
    let user = app
        .auth
        .register(
            auth_core::Registration {
                email,
                password: auth_core::model::Password::presented(PASSWORD).unwrap(),
                display_name: None,
            },
            false,
        )
        .await
        .unwrap();
    let event = event_about(app, "user.registered", &user.id.to_string()).await;
    assert_eq!(event.actor, EventActor::system());
    assert_eq!((event.ip, event.request_id), (None, None));
}

/// The binary's commands, run as an operator runs them, write `system` events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_acts_as_the_system() {
    let db = auth_infra::test_support::TestDb::new().await;
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_auth-server"))
            .args(args)
            .env("DATABASE_URL", db.url())
            .env("BCRYPT_ROUNDS", "4")
            .env("LOG_LEVEL", "warn")
            .env("AUTH_MAIL_DIR", std::env::temp_dir())
            .env_remove("AUTH_ENV")
            .env_remove("AUTH_URL")
            .env_remove("AUTH_API_KEY")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let email = unique_email();
    run(
        &["users", "create", "--email", &email],
        "a fine passphrase\n",
    );
    let org: Value = serde_json::from_str(&run(
        &[
            "--json",
            "organizations",
            "create",
            "--name",
            "Fleet",
            "--owner-email",
            &email,
        ],
        "",
    ))
    .unwrap();
    let trail = PgEventLog::new(db.pool())
        .list(&EventQuery {
            scope: EventScope::All,
            after: 0,
            limit: 100,
            action: None,
        })
        .await
        .unwrap();
    let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["user.registered", "organization.created"]);
    assert_eq!(trail[1].target.id, str_field(&org, "id"));
    for event in &trail {
        assert_eq!(event.actor, EventActor::system(), "{event:?}");
        assert_eq!((event.ip, event.request_id.as_deref()), (None, None));
    }
}

/// Forty-eight requests at once from eight users, and sixteen failed logins among them, each
/// with an id of its own: every event carries the id and the caller of the request that
/// made it, and no other. (The context rides with each request's future across the workers'
/// threads; a leak between requests served by one thread would show here.)
async fn concurrent_requests_never_lend_their_context(app: &TestApp) {
    let mut callers = Vec::new();
    for _ in 0..8 {
        callers.push(owner(app).await);
    }
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let creations = (0..48).map(|i| {
        let (token, org, _) = &callers[i % callers.len()];
        let name = format!("race-{i}");
        app.request(reqwest::Method::POST, "/api/v1/api-keys")
            .bearer_auth(token)
            .header("x-request-id", format!("create-{tag}-{i}"))
            .json(&json!({"organization_id": org, "name": name, "scopes": ["keys:read"]}))
            .send()
    });
    let ghosts: Vec<String> = (0..16)
        .map(|i| format!("ghost{i}.{tag}@example.com"))
        .collect();
    let failures = ghosts.iter().enumerate().map(|(i, email)| {
        app.request(reqwest::Method::POST, "/api/v1/auth/login")
            .header("x-request-id", format!("fail-{tag}-{i}"))
            .json(&json!({"email": email, "password": "not it at all"}))
            .send()
    });
    let (created, failed) = futures::future::join(
        futures::future::join_all(creations),
        futures::future::join_all(failures),
    )
    .await;
    for res in created {
        assert_eq!(res.unwrap().status(), 201);
    }
    for res in failed {
        assert_eq!(res.unwrap().status(), 401);
    }

    let created: Vec<StoredEvent> = events(app, "api_key.created")
        .await
        .into_iter()
        .filter(|e| {
            e.details["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("race-"))
        })
        .collect();
    assert_eq!(created.len(), 48);
    for event in &created {
        let i: usize = event.details["name"].as_str().unwrap()["race-".len()..]
            .parse()
            .unwrap();
        let (_, org, user) = &callers[i % callers.len()];
        assert_eq!(
            event.request_id.as_deref(),
            Some(format!("create-{tag}-{i}").as_str()),
            "{event:?}"
        );
        assert_eq!(event.actor.id.as_deref(), Some(user.as_str()), "{event:?}");
        assert_eq!(event.organization_id.unwrap().to_string(), *org);
    }
    for (i, email) in ghosts.iter().enumerate() {
        let fingerprint = app
            .auth
            .address_fingerprint(&auth_core::model::Email::parse(email).unwrap());
        let event = event_about(app, "user.login_failed", &fingerprint).await;
        assert_eq!(
            event.request_id.as_deref(),
            Some(format!("fail-{tag}-{i}").as_str())
        );
        assert_eq!(event.actor, EventActor::anonymous(), "{event:?}");
    }
}

/// Behind a trusted proxy the address is the one it forwarded for, as the rate limits count
/// it; from anyone else `X-Forwarded-For` is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_is_the_client_the_rate_limits_see() {
    for (trusted, want) in [
        (true, "203.0.113.9".parse::<IpAddr>().unwrap()),
        (false, LOCALHOST),
    ] {
        let app = TestApp::start_with(Backend::Memory, |c| {
            if trusted {
                c.rate_limit.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            }
        })
        .await;
        let email = unique_email();
        let res = app
            .request(reqwest::Method::POST, "/api/v1/auth/login")
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
            .json(&json!({"email": email, "password": "whatever it is"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let failed = events(&app, "user.login_failed").await;
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].ip, Some(want), "trusted proxy: {trusted}");
        app.stop().await;
    }
}
