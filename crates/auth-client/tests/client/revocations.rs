//! The revocation stream against the real server: each kind of revocation refused within a
//! second by a client that follows the stream (cached key verdicts, locally verified access
//! and device tokens, the actix extractors), revocations made while the client was cut off
//! applied once it is back, and clients without the stream (or whose stream is refused or
//! gone) verifying exactly as before.

use std::future::Future;
use std::time::{Duration, Instant};

use actix_web::test::{TestRequest, call_service, init_service};
use actix_web::{App, HttpResponse, web};
use auth_client::actix::{ApiKeyPrincipal, AuthenticatedDevice, AuthenticatedUser};
use auth_client::{
    ApiKeyVerdict, AuthClient, Credential, KeyRejection, NewDevice, RetryPolicy,
    RevocationStreamConfig, SecretString, StreamState, TokenError, TokenPair, TokenRejection,
    VerifiedBy,
};
use serde_json::json;

use crate::common::{
    Fault, PASSWORD, Relay, TestServer, api_key, eddsa, exposed, owner_and_org, unique_device_id,
    user,
};

/// The promise: a revocation is honoured within this long.
const WITHIN: Duration = Duration::from_secs(1);

/// Polls `refused` until it holds, failing the test if that takes longer than [`WITHIN`]
/// from `since` (when the revoking call returned).
async fn refused_within_a_second<F, Fut>(what: &str, since: Instant, mut refused: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        if refused().await {
            return;
        }
        assert!(
            since.elapsed() < WITHIN,
            "{what}: still accepted {:?} after the revocation",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `check` for up to 10 s (for what has no one-second promise: reconnecting).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A relying service's organization: its owner and a key that may follow the stream.
struct Relying {
    owner: TokenPair,
    org: auth_client::Organization,
    stream_key: SecretString,
}

async fn relying(admin: &AuthClient) -> Relying {
    let (owner, org) = owner_and_org(admin).await;
    let stream_key = api_key(admin, &owner, &org, &["revocations:read"])
        .await
        .key;
    Relying {
        owner,
        org,
        stream_key,
    }
}

/// Quick reconnections, for tests.
fn stream_config(key: &SecretString) -> RevocationStreamConfig {
    let mut config = RevocationStreamConfig::new(key.clone());
    config.initial_backoff = Duration::from_millis(50);
    config.max_backoff = Duration::from_millis(500);
    config
}

/// A client of `url` following the stream with `key`, connected.
async fn follower(url: &str, key: &SecretString) -> AuthClient {
    let client = AuthClient::builder(url)
        .retry(RetryPolicy {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        })
        .revocation_stream_config(Some(stream_config(key)))
        .build()
        .unwrap();
    assert!(
        client
            .wait_for_revocation_stream(Duration::from_secs(5))
            .await,
        "the stream did not connect"
    );
    assert!(client.metrics().revocations.following());
    client
}

fn refused_token(result: Result<impl Sized, TokenError>) -> bool {
    matches!(result, Err(TokenError::Rejected(TokenRejection::Revoked)))
}

async fn key_refused(client: &AuthClient, key: &str) -> bool {
    client.verify_api_key(key, &[]).await.unwrap() == ApiKeyVerdict::Rejected(KeyRejection::Revoked)
}

/// A key changed through another client (`api_key.updated` on the stream): the follower's
/// cached verdict is dropped within a second, and its next verification answers the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_key_loses_its_cached_verdict_within_a_second() {
    let server = TestServer::start().await;
    let admin = server.client();
    let r = relying(&admin).await;
    let manager = Credential::Bearer(&r.owner.access_token);
    let client = follower(&server.url(), &r.stream_key).await;
    let key = api_key(
        &admin,
        &r.owner,
        &r.org,
        &["invoices:read", "invoices:write"],
    )
    .await;
    assert!(
        client
            .verify_api_key(exposed(&key.key), &["invoices:write"])
            .await
            .unwrap()
            .is_valid()
    );
    let changes = auth_client::api::UpdateKey {
        scopes: Some(Some(vec!["invoices:read".into()])),
        ..auth_client::api::UpdateKey::default()
    };
    admin
        .update_api_key(manager, key.id, &changes)
        .await
        .unwrap();
    let since = Instant::now();
    refused_within_a_second("a narrowed key", since, || async {
        client
            .verify_api_key(exposed(&key.key), &["invoices:write"])
            .await
            .unwrap()
            == ApiKeyVerdict::Rejected(KeyRejection::InsufficientScope)
    })
    .await;
    // Still usable for what it holds.
    assert!(
        client
            .verify_api_key(exposed(&key.key), &["invoices:read"])
            .await
            .unwrap()
            .is_valid()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_or_rotated_key_loses_its_cached_verdict_within_a_second() {
    let server = TestServer::start().await;
    let admin = server.client();
    let r = relying(&admin).await;
    let manager = Credential::Bearer(&r.owner.access_token);
    // The default cache TTL, 300 s: without the stream, the verdicts below would stand.
    let client = follower(&server.url(), &r.stream_key).await;

    let revoked = api_key(&admin, &r.owner, &r.org, &["invoices:read"]).await;
    let rotated = api_key(&admin, &r.owner, &r.org, &["invoices:read"]).await;
    for key in [&revoked, &rotated] {
        assert!(
            client
                .verify_api_key(exposed(&key.key), &["invoices:read"])
                .await
                .unwrap()
                .is_valid()
        );
        assert!(
            client
                .verify_api_key(exposed(&key.key), &[])
                .await
                .unwrap()
                .is_valid()
        );
    }
    let cache = client.metrics().api_key_cache.unwrap();
    assert_eq!((cache.hits, cache.misses), (2, 2));

    admin.revoke_api_key(manager, revoked.id).await.unwrap();
    let since = Instant::now();
    refused_within_a_second("a revoked key", since, || {
        key_refused(&client, exposed(&revoked.key))
    })
    .await;

    let new = admin.rotate_api_key(manager, rotated.id).await.unwrap();
    let since = Instant::now();
    refused_within_a_second("a rotated key", since, || {
        key_refused(&client, exposed(&rotated.key))
    })
    .await;
    assert!(
        client
            .verify_api_key(exposed(&new.key), &["invoices:read"])
            .await
            .unwrap()
            .is_valid()
    );

    // Through the extractor, with nothing to change in the handler.
    async fn handler(key: ApiKeyPrincipal) -> HttpResponse {
        HttpResponse::Ok().json(json!({"key_id": key.key_id}))
    }
    let app = init_service(
        App::new()
            .app_data(web::Data::new(client.clone()))
            .route("/k", web::get().to(handler)),
    )
    .await;
    for (key, status) in [(&new.key, 200), (&rotated.key, 401), (&revoked.key, 401)] {
        let req = TestRequest::get()
            .uri("/k")
            .insert_header(("x-api-key", exposed(key)))
            .to_request();
        assert_eq!(call_service(&app, req).await.status().as_u16(), status);
    }

    // Another organization's key: the stream carries only the stream key's organization,
    // so its cached verdict keeps the TTL.
    let (other_owner, other_org) = owner_and_org(&admin).await;
    let foreign = api_key(&admin, &other_owner, &other_org, &[]).await;
    assert!(
        client
            .verify_api_key(exposed(&foreign.key), &[])
            .await
            .unwrap()
            .is_valid()
    );
    admin
        .revoke_api_key(Credential::Bearer(&other_owner.access_token), foreign.id)
        .await
        .unwrap();
    // A later revocation of the stream's organization arrives: the foreign one would have
    // come before it.
    let marker = api_key(&admin, &r.owner, &r.org, &[]).await;
    assert!(
        client
            .verify_api_key(exposed(&marker.key), &[])
            .await
            .unwrap()
            .is_valid()
    );
    admin.revoke_api_key(manager, marker.id).await.unwrap();
    let since = Instant::now();
    refused_within_a_second("the marker key", since, || {
        key_refused(&client, exposed(&marker.key))
    })
    .await;
    assert!(
        client
            .verify_api_key(exposed(&foreign.key), &[])
            .await
            .unwrap()
            .is_valid(),
        "a foreign key's revocation is not on this organization's stream"
    );

    let m = client.metrics().revocations;
    assert!(m.following());
    assert!(m.events_applied >= 3, "{m:?}");
    assert!(m.api_key_verdicts_dropped >= 2, "{m:?}");
    assert!(m.last_event_id.is_some() && m.last_lag.is_some(), "{m:?}");
    client.sync_api_key_cache().await;
    assert!(client.metrics().revocations.remembered.api_keys >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_refuses_the_locally_verified_access_token_within_a_second() {
    let server = TestServer::start_with(|c| eddsa(c, "ed25519-a.pem", &[])).await;
    let admin = server.client();
    let r = relying(&admin).await;
    let client = follower(&server.url(), &r.stream_key).await;

    let (email, pair) = user(&admin).await;
    let other = admin
        .login(&email, &crate::common::password())
        .await
        .unwrap();
    let token = exposed(&pair.access_token);
    let verified = client.verify_access_token(token).await.unwrap();
    assert_eq!(verified.verified_by, VerifiedBy::Local);

    async fn profile(user: AuthenticatedUser) -> HttpResponse {
        HttpResponse::Ok().json(json!({"user_id": user.user_id}))
    }
    let app = init_service(
        App::new()
            .app_data(web::Data::new(client.clone()))
            .route("/profile", web::get().to(profile)),
    )
    .await;
    let status = |token: &SecretString| {
        TestRequest::get()
            .uri("/profile")
            .insert_header(("authorization", format!("Bearer {}", exposed(token))))
            .to_request()
    };
    assert_eq!(
        call_service(&app, status(&pair.access_token))
            .await
            .status(),
        200
    );

    admin.logout(&pair.refresh_token).await.unwrap();
    let since = Instant::now();
    refused_within_a_second("a logged-out session's token", since, || async {
        refused_token(client.verify_access_token(token).await)
    })
    .await;
    // The same error as the service's own verdict.
    assert!(refused_token(client.verify_remote(token).await));
    assert_eq!(
        call_service(&app, status(&pair.access_token))
            .await
            .status(),
        401
    );
    // The user's other session is untouched.
    assert!(
        client
            .verify_access_token(exposed(&other.access_token))
            .await
            .is_ok()
    );
    assert_eq!(
        call_service(&app, status(&other.access_token))
            .await
            .status(),
        200
    );

    // Logging out everywhere ends the other session too.
    admin.logout_all(&other.access_token).await.unwrap();
    let since = Instant::now();
    refused_within_a_second("logout-all", since, || async {
        refused_token(
            client
                .verify_access_token(exposed(&other.access_token))
                .await,
        )
    })
    .await;

    let m = client.metrics();
    assert!(m.revocations.tokens_refused >= 2, "{:?}", m.revocations);
    assert!(m.tokens.local_rejected >= 2);
    assert!(
        m.revocations.last_lag.is_some_and(|lag| lag < WITHIN),
        "{:?}",
        m.revocations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_or_a_disabled_account_refuses_older_tokens() {
    let server = TestServer::start_mailing(|c| eddsa(c, "ed25519-a.pem", &[])).await;
    let admin = server.client();
    let r = relying(&admin).await;
    let client = follower(&server.url(), &r.stream_key).await;
    let http = reqwest::Client::new();

    // A reset: every older token of the account, from each of its sessions.
    let (email, first) = user(&admin).await;
    let second = admin
        .login(&email, &crate::common::password())
        .await
        .unwrap();
    for pair in [&first, &second] {
        assert!(
            client
                .verify_access_token(exposed(&pair.access_token))
                .await
                .is_ok()
        );
    }
    let res = http
        .post(format!("{}/api/v1/auth/password-reset", server.url()))
        .json(&json!({"email": email}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let token = server.mailed_token(&email, "reset-password").await;
    let new_password = format!("{PASSWORD} again");
    let res = http
        .post(format!(
            "{}/api/v1/auth/password-reset/confirm",
            server.url()
        ))
        .json(&json!({"token": token, "new_password": new_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let since = Instant::now();
    refused_within_a_second("tokens older than a reset", since, || async {
        refused_token(
            client
                .verify_access_token(exposed(&first.access_token))
                .await,
        ) && refused_token(
            client
                .verify_access_token(exposed(&second.access_token))
                .await,
        )
    })
    .await;
    // A login after the reset, even within its second, is not refused.
    let after = admin
        .login(&email, &SecretString::from(new_password))
        .await
        .unwrap();
    assert!(
        client
            .verify_access_token(exposed(&after.access_token))
            .await
            .is_ok()
    );

    // An account disabled by an administrator.
    let administrator = server.admin(&admin).await;
    let (_, victim) = user(&admin).await;
    assert!(
        client
            .verify_access_token(exposed(&victim.access_token))
            .await
            .is_ok()
    );
    let res = http
        .patch(format!(
            "{}/api/v1/admin/users/{}",
            server.url(),
            victim.user.id
        ))
        .bearer_auth(exposed(&administrator.access_token))
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let since = Instant::now();
    refused_within_a_second("a disabled account's token", since, || async {
        refused_token(
            client
                .verify_access_token(exposed(&victim.access_token))
                .await,
        )
    })
    .await;
    client.sync_api_key_cache().await;
    // The account's events come one by one: its token may be refused on one of them before
    // the client has applied the rest, each within the second.
    refused_within_a_second("the disabled account remembered", since, || async {
        let remembered = client.metrics().revocations.remembered;
        remembered.users >= 2 && remembered.sessions >= 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_or_a_revoked_device_refuses_its_tokens_locally() {
    let server = TestServer::start_with(|c| eddsa(c, "ed25519-a.pem", &[])).await;
    let admin = server.client();
    let r = relying(&admin).await;
    let manager = Credential::Bearer(&r.owner.access_token);
    let client = follower(&server.url(), &r.stream_key).await;

    let id = unique_device_id();
    let device = admin
        .register_device(manager, &NewDevice::new(id.clone(), r.org.id))
        .await
        .unwrap();
    let old = admin
        .authenticate_device(&id, &device.device_secret)
        .await
        .unwrap()
        .access_token;
    let verified = client.verify_device_token(exposed(&old)).await.unwrap();
    assert_eq!(verified.verified_by, VerifiedBy::Local);

    let rotated = admin.rotate_device_secret(manager, &id).await.unwrap();
    let since = Instant::now();
    refused_within_a_second("a token of the old secret", since, || async {
        refused_token(client.verify_device_token(exposed(&old)).await)
    })
    .await;
    // A token of the new secret is issued at or after the rotation's `not_before`.
    let new = admin
        .authenticate_device(&id, &rotated.device_secret)
        .await
        .unwrap()
        .access_token;
    assert!(client.verify_device_token(exposed(&new)).await.is_ok());

    async fn telemetry(device: AuthenticatedDevice) -> HttpResponse {
        HttpResponse::Ok().json(json!({"device_id": device.device_id}))
    }
    let app = init_service(
        App::new()
            .app_data(web::Data::new(client.clone()))
            .route("/telemetry", web::post().to(telemetry)),
    )
    .await;
    let post = |token: &SecretString| {
        TestRequest::post()
            .uri("/telemetry")
            .insert_header(("authorization", format!("Bearer {}", exposed(token))))
            .to_request()
    };
    assert_eq!(call_service(&app, post(&new)).await.status(), 200);
    assert_eq!(call_service(&app, post(&old)).await.status(), 401);

    admin.revoke_device(manager, &id).await.unwrap();
    let since = Instant::now();
    refused_within_a_second("a revoked device's token", since, || async {
        refused_token(client.verify_device_token(exposed(&new)).await)
    })
    .await;
    assert_eq!(call_service(&app, post(&new)).await.status(), 401);
    client.sync_api_key_cache().await;
    assert_eq!(client.metrics().revocations.remembered.devices, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_made_while_cut_off_are_applied_once_back() {
    let server = TestServer::start_with(|c| eddsa(c, "ed25519-a.pem", &[])).await;
    let admin = server.client();
    let r = relying(&admin).await;
    let manager = Credential::Bearer(&r.owner.access_token);
    // Everything this client sends goes through the relay; the revocations go directly.
    let relay = Relay::start(server.addr).await;
    let client = follower(&relay.url(), &r.stream_key).await;

    let key = api_key(&admin, &r.owner, &r.org, &[]).await;
    let (_, pair) = user(&admin).await;
    assert!(
        client
            .verify_api_key(exposed(&key.key), &[])
            .await
            .unwrap()
            .is_valid()
    );
    assert!(
        client
            .verify_access_token(exposed(&pair.access_token))
            .await
            .is_ok()
    );
    // The client has seen no revocation yet, only the position the stream opened at.
    assert!(client.metrics().revocations.last_event_id.is_some());
    assert_eq!(client.metrics().revocations.events_applied, 0);

    relay.set(Fault::Refuse);
    relay.sever();
    eventually("the client sees the stream is lost", || async {
        client.metrics().revocations.fallen_back()
    })
    .await;
    admin.revoke_api_key(manager, key.id).await.unwrap();
    admin.logout(&pair.refresh_token).await.unwrap();

    // Meanwhile: as without the stream, the cached verdict and the token's signature stand.
    assert!(
        client
            .verify_api_key(exposed(&key.key), &[])
            .await
            .unwrap()
            .is_valid()
    );
    assert!(
        client
            .verify_access_token(exposed(&pair.access_token))
            .await
            .is_ok()
    );
    let m = client.metrics().revocations;
    assert_eq!(m.state, StreamState::Disconnected);
    assert!(m.disconnected_for.is_some());

    relay.set(Fault::None);
    assert!(
        client
            .wait_for_revocation_stream(Duration::from_secs(10))
            .await,
        "reconnected"
    );
    let since = Instant::now();
    refused_within_a_second("revocations made while cut off", since, || async {
        key_refused(&client, exposed(&key.key)).await
            && refused_token(
                client
                    .verify_access_token(exposed(&pair.access_token))
                    .await,
            )
    })
    .await;
    let m = client.metrics().revocations;
    assert!(m.reconnects >= 1 && m.events_applied >= 2, "{m:?}");
    // Replayed: it happened while the client was away.
    assert!(m.max_lag > Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_survives_a_restart_of_the_service() {
    let server = TestServer::start_with(|c| eddsa(c, "ed25519-a.pem", &[])).await;
    let admin = server.client();
    let r = relying(&admin).await;
    let client = follower(&server.url(), &r.stream_key).await;
    let (_, before) = user(&admin).await;
    assert!(
        client
            .verify_access_token(exposed(&before.access_token))
            .await
            .is_ok()
    );

    server.stop().await;
    eventually("the loss is seen", || async {
        client.metrics().revocations.state == StreamState::Disconnected
    })
    .await;
    // Local verification does not need the service.
    assert!(
        client
            .verify_access_token(exposed(&before.access_token))
            .await
            .is_ok()
    );
    server.restart().await;
    // Revoked as soon as the service is back, perhaps before the client reconnects: the
    // replay brings it, or the live stream does.
    admin.logout(&before.refresh_token).await.unwrap();
    assert!(
        client
            .wait_for_revocation_stream(Duration::from_secs(10))
            .await
    );
    let since = Instant::now();
    refused_within_a_second("a logout right after the restart", since, || async {
        refused_token(
            client
                .verify_access_token(exposed(&before.access_token))
                .await,
        )
    })
    .await;
    assert!(client.metrics().revocations.reconnects >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_stream_or_with_one_refused_the_client_verifies_as_before() {
    let server = TestServer::start_with(|c| eddsa(c, "ed25519-a.pem", &[])).await;
    let admin = server.client();
    let r = relying(&admin).await;
    let manager = Credential::Bearer(&r.owner.access_token);
    // No stream at all; a key without the scope; a key that does not exist.
    let plain = server.client();
    let unscoped = api_key(&admin, &r.owner, &r.org, &["invoices:read"])
        .await
        .key;
    let refused = AuthClient::builder(server.url())
        .revocation_stream_config(Some(stream_config(&unscoped)))
        .build()
        .unwrap();
    let unknown = AuthClient::builder(server.url())
        .revocation_stream_config(Some(stream_config(&SecretString::from(
            "ak_live_00000000000000000000000000000000",
        ))))
        .build()
        .unwrap();

    assert!(
        !plain
            .wait_for_revocation_stream(Duration::from_secs(1))
            .await
    );
    let m = plain.metrics().revocations;
    assert_eq!(m.state, StreamState::Off);
    assert!(!m.following() && !m.fallen_back());
    for client in [&refused, &unknown] {
        eventually("refused attempts counted", || async {
            client.metrics().revocations.failed_attempts >= 2
        })
        .await;
        let m = client.metrics().revocations;
        assert_eq!(m.state, StreamState::Connecting, "{m:?}");
        assert!(m.fallen_back() && !m.following() && m.connections == 0);
        assert!(
            !client
                .wait_for_revocation_stream(Duration::from_millis(100))
                .await
        );
    }

    let key = api_key(&admin, &r.owner, &r.org, &[]).await;
    let (_, pair) = user(&admin).await;
    for client in [&plain, &refused, &unknown] {
        assert!(
            client
                .verify_api_key(exposed(&key.key), &[])
                .await
                .unwrap()
                .is_valid()
        );
        assert!(
            client
                .verify_access_token(exposed(&pair.access_token))
                .await
                .is_ok()
        );
    }
    admin.revoke_api_key(manager, key.id).await.unwrap();
    admin.logout(&pair.refresh_token).await.unwrap();
    // The service has seen both...
    assert_eq!(
        plain
            .verify_api_key_remote(exposed(&key.key), &[])
            .await
            .unwrap(),
        ApiKeyVerdict::Rejected(KeyRejection::Revoked)
    );
    assert!(refused_token(
        plain.verify_remote(exposed(&pair.access_token)).await
    ));
    // ...and these clients answer as they always did: the cached verdict until its TTL, the
    // token until it expires.
    for client in [&plain, &refused, &unknown] {
        assert!(
            client
                .verify_api_key(exposed(&key.key), &[])
                .await
                .unwrap()
                .is_valid()
        );
        assert!(
            client
                .verify_access_token(exposed(&pair.access_token))
                .await
                .is_ok()
        );
        assert_eq!(client.metrics().revocations.events_applied, 0);
    }
    // Nothing secret in what the configuration shows.
    let debug = format!("{:?}", refused.config());
    assert!(!debug.contains(exposed(&unscoped)), "{debug}");
}
