//! Every method of the client against the real server: typed answers, and the service's
//! problem documents as typed errors.

use auth_client::{
    ApiKeyVerdict, Credential, DeviceStatus, ErrorCode, HealthStatus, KeyRejection, KeyStatus,
    NewApiKey, NewDevice, NewUser, Operation, Role, SecretString, TokenRejection, TokenVerdict,
    VerifiedBy, VerifiedToken,
};
use serde_json::json;

use crate::common::{
    TestServer, api_key, exposed, owner_and_org, password, unique_device_id, unique_email, user,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_sessions() {
    let server = TestServer::start().await;
    let client = server.client();

    let email = unique_email();
    let created = client
        .register(&NewUser::new(email.clone(), password()).display_name("Ada Lovelace"))
        .await
        .unwrap();
    assert_eq!(created.email, email);
    assert_eq!(created.display_name.as_deref(), Some("Ada Lovelace"));

    let taken = client
        .register(&NewUser::new(email.to_uppercase(), password()))
        .await
        .unwrap_err();
    assert!(taken.is_code(&ErrorCode::EmailTaken), "{taken}");
    assert_eq!(taken.status(), Some(409));
    let api = taken.api().unwrap();
    assert!(api.request_id.is_some());

    let invalid = client
        .register(&NewUser::new("not-an-email", SecretString::from("short")))
        .await
        .unwrap_err();
    let api = invalid.api().unwrap();
    assert_eq!(api.code, ErrorCode::ValidationFailed);
    let fields: Vec<&str> = api.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["email", "password"]);

    let wrong = client
        .login(&email, &SecretString::from("wrong password!"))
        .await
        .unwrap_err();
    assert!(wrong.is_code(&ErrorCode::InvalidCredentials));
    // Debug of an answer with tokens shows none of them.
    let pair = client.login(&email, &password()).await.unwrap();
    assert_eq!(pair.token_type, "Bearer");
    assert_eq!(pair.user.id, created.id);
    assert!(pair.expires_in > 0 && pair.refresh_expires_in > pair.expires_in);
    let debug = format!("{pair:?}");
    assert!(!debug.contains(exposed(&pair.access_token)));
    assert!(!debug.contains(exposed(&pair.refresh_token)));

    let session = client.verify_session(&pair.access_token).await.unwrap();
    assert_eq!((session.user_id, session.is_admin), (created.id, false));
    match client
        .verify_token(exposed(&pair.access_token))
        .await
        .unwrap()
    {
        TokenVerdict::Valid(VerifiedToken::User(u)) => {
            assert_eq!(u.user_id, created.id);
            assert_eq!(u.session_id, session.session_id);
            assert_eq!(u.email.as_deref(), Some(email.as_str()));
            assert_eq!(u.verified_by, VerifiedBy::Service);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client.verify_token("not.a.token").await.unwrap(),
        TokenVerdict::Rejected(TokenRejection::Invalid)
    );

    let me = client.me(&pair.access_token).await.unwrap();
    assert_eq!(
        (me.id, me.display_name.as_deref()),
        (created.id, Some("Ada Lovelace"))
    );
    assert!(me.organizations.is_empty());

    let refreshed = client.refresh(&pair.refresh_token).await.unwrap();
    let reused = client.refresh(&pair.refresh_token).await.unwrap_err();
    assert!(reused.is_code(&ErrorCode::InvalidRefreshToken));
    // Reuse ended the session: the new pair is dead too.
    let ended = client
        .verify_session(&refreshed.access_token)
        .await
        .unwrap_err();
    assert!(ended.is_code(&ErrorCode::Unauthenticated));

    let a = client.login(&email, &password()).await.unwrap();
    client.logout(&a.refresh_token).await.unwrap();
    client
        .logout(&SecretString::from("unknown-token"))
        .await
        .unwrap();
    assert!(client.refresh(&a.refresh_token).await.is_err());

    let b = client.login(&email, &password()).await.unwrap();
    let c = client.login(&email, &password()).await.unwrap();
    let new_password = SecretString::from("a much longer passphrase");
    client
        .change_password(&b.access_token, &password(), &new_password)
        .await
        .unwrap();
    assert!(client.verify_session(&b.access_token).await.is_ok());
    assert!(client.verify_session(&c.access_token).await.is_err());
    let bad = client
        .change_password(&b.access_token, &password(), &new_password)
        .await
        .unwrap_err();
    assert!(bad.is_code(&ErrorCode::InvalidCredentials));

    let d = client.login(&email, &new_password).await.unwrap();
    client.logout_all(&d.access_token).await.unwrap();
    assert!(client.verify_session(&b.access_token).await.is_err());
    assert!(client.verify_session(&d.access_token).await.is_err());

    let m = client.metrics();
    let login = m.operation(Operation::Login).unwrap();
    assert_eq!((login.calls, login.ok, login.api_errors), (6, 5, 1));
    assert_eq!(login.attempts, 6, "4xx answers are not retried");
    assert!(m.error_rate() > 0.0 && m.failure_rate() == 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_and_members() {
    let server = TestServer::start().await;
    let client = server.client();
    let (owner, org) = owner_and_org(&client).await;
    let (bob_email, bob) = user(&client).await;

    let orgs = client
        .list_organizations(&owner.access_token)
        .await
        .unwrap();
    assert_eq!(orgs.len(), 1);
    assert_eq!((orgs[0].id, orgs[0].role), (org.id, Role::Owner));
    assert_eq!(
        client
            .get_organization(&owner.access_token, org.id)
            .await
            .unwrap(),
        org
    );
    let hidden = client
        .get_organization(&bob.access_token, org.id)
        .await
        .unwrap_err();
    assert!(hidden.is_code(&ErrorCode::NotFound));

    let member = client
        .add_member(&owner.access_token, org.id, &bob_email, Role::Member)
        .await
        .unwrap();
    assert_eq!((member.user_id, member.role), (bob.user.id, Role::Member));
    let again = client
        .add_member(&owner.access_token, org.id, &bob_email, Role::Member)
        .await
        .unwrap_err();
    assert!(again.is_code(&ErrorCode::AlreadyMember));
    let members = client
        .list_members(&bob.access_token, org.id)
        .await
        .unwrap();
    assert_eq!(members.len(), 2);
    let me = client.me(&bob.access_token).await.unwrap();
    assert_eq!(me.organizations[0].role, Role::Member);

    let forbidden = client
        .remove_member(&bob.access_token, org.id, owner.user.id)
        .await
        .unwrap_err();
    assert!(forbidden.is_code(&ErrorCode::Forbidden));
    let last = client
        .remove_member(&owner.access_token, org.id, owner.user.id)
        .await
        .unwrap_err();
    assert!(last.is_code(&ErrorCode::LastOwner));
    client
        .remove_member(&owner.access_token, org.id, bob.user.id)
        .await
        .unwrap();
    assert_eq!(
        client
            .list_members(&owner.access_token, org.id)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys() {
    let server = TestServer::start().await;
    let client = server.client();
    let (owner, org) = owner_and_org(&client).await;
    let bearer = Credential::Bearer(&owner.access_token);

    let created = client
        .create_api_key(
            bearer,
            &NewApiKey::new(
                org.id,
                "billing worker",
                ["invoices:read", "invoices:write"],
            )
            .expires_in_days(90),
        )
        .await
        .unwrap();
    assert_eq!(created.status, KeyStatus::Active);
    assert!(exposed(&created.key).starts_with(&created.prefix));
    assert!(!format!("{created:?}").contains(exposed(&created.key)));
    assert!(created.expires_at.is_some());

    let admin = api_key(&client, &owner, &org, &["admin"]).await;
    let as_key = Credential::ApiKey(&admin.key);
    let listed = client.list_api_keys(as_key, org.id, false).await.unwrap();
    assert_eq!(listed.len(), 2);
    let got = client.get_api_key(as_key, created.id).await.unwrap();
    assert_eq!(
        (got.name.as_str(), got.status),
        ("billing worker", KeyStatus::Active)
    );

    let forbidden = client
        .list_api_keys(Credential::ApiKey(&created.key), org.id, false)
        .await
        .unwrap_err();
    assert!(forbidden.is_code(&ErrorCode::Forbidden));

    // Verification, remote and batch.
    match client
        .verify_api_key_remote(exposed(&created.key), &["invoices:read"])
        .await
        .unwrap()
    {
        ApiKeyVerdict::Valid(k) => {
            assert_eq!((k.key_id, k.organization_id), (created.id, org.id));
            assert_eq!(k.scopes, ["invoices:read", "invoices:write"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client
            .verify_api_key_remote(exposed(&created.key), &["invoices:delete"])
            .await
            .unwrap(),
        ApiKeyVerdict::Rejected(KeyRejection::InsufficientScope)
    );
    let malformed = client
        .verify_api_key_remote(exposed(&created.key), &["Not A Scope"])
        .await
        .unwrap_err();
    assert!(malformed.is_code(&ErrorCode::ValidationFailed));
    let batch = client
        .verify_api_keys(&[
            (exposed(&created.key), &["invoices:write"][..]),
            ("ak_live_made_up", &[][..]),
            (exposed(&admin.key), &["anything:at-all"][..]),
        ])
        .await
        .unwrap();
    assert!(batch[0].is_valid() && batch[2].is_valid());
    assert_eq!(batch[1], ApiKeyVerdict::Rejected(KeyRejection::Invalid));

    let rotated = client.rotate_api_key(as_key, created.id).await.unwrap();
    assert_eq!(rotated.name, "billing worker");
    assert_eq!(rotated.expires_at, created.expires_at);
    assert_eq!(
        client
            .verify_api_key_remote(exposed(&created.key), &[])
            .await
            .unwrap(),
        ApiKeyVerdict::Rejected(KeyRejection::Revoked)
    );
    let twice = client.rotate_api_key(as_key, created.id).await.unwrap_err();
    assert!(twice.is_code(&ErrorCode::AlreadyRevoked));

    let revoked = client.revoke_api_key(bearer, rotated.id).await.unwrap();
    assert_eq!(revoked.status, KeyStatus::Revoked);
    assert!(revoked.revoked_at.is_some());
    let again = client.revoke_api_key(bearer, rotated.id).await.unwrap_err();
    assert!(again.is_code(&ErrorCode::AlreadyRevoked));
    assert_eq!(
        client
            .list_api_keys(bearer, org.id, false)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        client
            .list_api_keys(bearer, org.id, true)
            .await
            .unwrap()
            .len(),
        3
    );
    let unknown = client
        .get_api_key(bearer, uuid::Uuid::now_v7())
        .await
        .unwrap_err();
    assert!(unknown.is_code(&ErrorCode::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices() {
    let server = TestServer::start().await;
    let client = server.client();
    let (owner, org) = owner_and_org(&client).await;
    let manager = Credential::Bearer(&owner.access_token);
    let id = unique_device_id();

    let registered = client
        .register_device(
            manager,
            &NewDevice::new(id.clone(), org.id)
                .name("Kitchen frame")
                .metadata(json!({"model": "PF-10"})),
        )
        .await
        .unwrap();
    assert_eq!(registered.status, DeviceStatus::Active);
    assert_eq!(registered.metadata, json!({"model": "PF-10"}));
    assert!(!format!("{registered:?}").contains(exposed(&registered.device_secret)));
    let exists = client
        .register_device(manager, &NewDevice::new(id.clone(), org.id))
        .await
        .unwrap_err();
    assert!(exists.is_code(&ErrorCode::DeviceExists));

    let token = client
        .authenticate_device(&id, &registered.device_secret)
        .await
        .unwrap();
    assert_eq!(
        (token.device_id.as_str(), token.organization_id),
        (id.as_str(), org.id)
    );
    let refused = client
        .authenticate_device(&id, &SecretString::from("ds_wrong"))
        .await
        .unwrap_err();
    assert!(refused.is_code(&ErrorCode::InvalidDeviceCredentials));
    match client
        .verify_token(exposed(&token.access_token))
        .await
        .unwrap()
    {
        TokenVerdict::Valid(VerifiedToken::Device(d)) => {
            assert_eq!(
                (d.device_id.as_str(), d.organization_id),
                (id.as_str(), org.id)
            );
        }
        other => panic!("{other:?}"),
    }

    let listed = client.list_devices(manager, org.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        client.get_device(manager, &id).await.unwrap().name,
        "Kitchen frame"
    );

    let rotated = client.rotate_device_secret(manager, &id).await.unwrap();
    assert!(
        client
            .authenticate_device(&id, &registered.device_secret)
            .await
            .is_err()
    );
    client
        .authenticate_device(&id, &rotated.device_secret)
        .await
        .unwrap();

    let revoked = client.revoke_device(manager, &id).await.unwrap();
    assert_eq!(revoked.status, DeviceStatus::Revoked);
    assert_eq!(
        client
            .verify_token(exposed(&token.access_token))
            .await
            .unwrap(),
        TokenVerdict::Rejected(TokenRejection::Revoked)
    );
    let again = client.revoke_device(manager, &id).await.unwrap_err();
    assert!(again.is_code(&ErrorCode::AlreadyRevoked));
    // Ids with characters a path must escape reach the service as one segment.
    let odd = client
        .get_device(manager, "no/such:device")
        .await
        .unwrap_err();
    assert!(odd.is_code(&ErrorCode::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_endpoints() {
    let server = TestServer::start().await;
    let client = server.client();
    let info = client.service_info().await.unwrap();
    assert_eq!(
        (info.name.as_str(), info.docs.as_str()),
        ("auth-service", "/docs")
    );
    let health = client.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Healthy);
    assert_eq!(
        health.components["database"].kind.as_deref(),
        Some("memory")
    );
    client.live().await.unwrap();
    assert!(client.ready().await.unwrap());
    assert_eq!(client.jwks().await.unwrap(), json!({"keys": []}));
    assert!(
        client
            .prometheus_metrics()
            .await
            .unwrap()
            .contains("http_requests_total")
    );
    let doc = client.openapi().await.unwrap();
    assert!(doc["paths"]["/api/v1/auth/login"].is_object());
}
