//! Local token verification against the server's own verdicts: genuine tokens, the forged
//! corpus (expired ones included), revoked sessions and devices, key rotation through the
//! JWKS, and HS256.

use std::time::Duration;

use auth_client::{
    AuthClient, Credential, NewDevice, SecretString, TokenConfig, TokenError, TokenRejection,
    TokenVerification, VerifiedBy, VerifiedToken,
};
use auth_infra::jwt::{AsymmetricAlgorithm, JwtKeys};
use auth_infra::test_support::{asymmetric_test_keys, forged_tokens};

use crate::common::{TEST_JWT_KEY, TestServer, eddsa, exposed, owner_and_org, unique_device_id};

/// A user token and a device token issued by `server`, with the owner's pair.
async fn real_tokens(client: &AuthClient) -> (auth_client::TokenPair, String, SecretString) {
    let (owner, org) = owner_and_org(client).await;
    let id = unique_device_id();
    let device = client
        .register_device(
            Credential::Bearer(&owner.access_token),
            &NewDevice::new(id.clone(), org.id),
        )
        .await
        .unwrap();
    let token = client
        .authenticate_device(&id, &device.device_secret)
        .await
        .unwrap();
    (owner, id, token.access_token)
}

/// The verdict of each side, as comparable values.
fn verdict(result: Result<VerifiedToken, TokenError>) -> Result<String, TokenRejection> {
    match result {
        Ok(VerifiedToken::User(u)) => Ok(format!(
            "user {} {} {}",
            u.user_id, u.session_id, u.expires_at
        )),
        Ok(VerifiedToken::Device(d)) => Ok(format!(
            "device {} {} {}",
            d.device_id, d.organization_id, d.expires_at
        )),
        Err(TokenError::Rejected(why)) => Err(why),
        Err(other) => panic!("no verdict: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genuine_tokens_verify_locally_as_at_the_service() {
    let server = TestServer::start_with(|c| eddsa(c, "ed25519-a.pem", &[])).await;
    let client = server.client();
    let (owner, device_id, device_token) = real_tokens(&client).await;
    let user_token = exposed(&owner.access_token);

    let local = client
        .verify_access_token_with(user_token, TokenVerification::Local)
        .await
        .unwrap();
    let remote = client
        .verify_access_token_with(user_token, TokenVerification::Remote)
        .await
        .unwrap();
    assert_eq!(local.verified_by, VerifiedBy::Local);
    assert_eq!(remote.verified_by, VerifiedBy::Service);
    assert_eq!(
        (local.user_id, local.session_id, local.expires_at),
        (remote.user_id, remote.session_id, remote.expires_at)
    );
    assert_eq!(local.user_id, owner.user.id);
    assert!(local.token_id.is_some());

    let device = client
        .verify_device_token(exposed(&device_token))
        .await
        .unwrap();
    assert_eq!(
        (device.device_id.as_str(), device.verified_by),
        (device_id.as_str(), VerifiedBy::Local)
    );
    assert_eq!(
        verdict(client.verify_local(exposed(&device_token)).await),
        verdict(client.verify_remote(exposed(&device_token)).await)
    );

    // A kind never passes for the other, either way.
    for mode in [TokenVerification::Local, TokenVerification::Remote] {
        assert!(matches!(
            client.verify_device_token_with(user_token, mode).await,
            Err(TokenError::Rejected(TokenRejection::Invalid))
        ));
        assert!(matches!(
            client
                .verify_access_token_with(exposed(&device_token), mode)
                .await,
            Err(TokenError::Rejected(TokenRejection::Invalid))
        ));
    }

    // Once the keys are fetched, local verification needs no service at all.
    let fetches = client.metrics().tokens.jwks_fetches;
    assert_eq!(fetches, 1);
    server.stop().await;
    assert!(client.verify_access_token(user_token).await.is_ok());
    assert!(matches!(
        client
            .verify_access_token_with(user_token, TokenVerification::Remote)
            .await,
        Err(TokenError::Unavailable(_))
    ));
    let tokens = client.metrics().tokens;
    assert_eq!(tokens.jwks_fetches, 1);
    assert!(tokens.local_accepted >= 3 && tokens.local_rejected >= 2);

    // A client that never got the keys cannot verify: a failure, not a refusal.
    let cold = server.client();
    assert!(matches!(
        cold.verify_access_token(user_token).await,
        Err(TokenError::Unavailable(_))
    ));
}

/// Every forgery of the corpus gets the same verdict locally as from the service: refused, as
/// `EXPIRED` exactly when the service says so.
async fn corpus_agrees(client: &AuthClient, keys: &JwtKeys) {
    let (owner, _, device_token) = real_tokens(client).await;
    let user_token = exposed(&owner.access_token);
    let corpus = forged_tokens(keys, user_token, exposed(&device_token));
    assert!(corpus.len() >= 30, "{}", corpus.len());
    let mut expired = 0;
    for (label, token) in &corpus {
        let remote = verdict(client.verify_remote(token).await);
        let local = verdict(client.verify_local(token).await);
        assert!(remote.is_err(), "{label}: the service accepted a forgery");
        assert_eq!(local, remote, "{label}");
        // Whatever kind it is asked as: every entry fails both verifiers.
        let as_user = client
            .verify_access_token_with(token, TokenVerification::Local)
            .await;
        assert!(
            matches!(as_user, Err(TokenError::Rejected(_))),
            "{label}: {as_user:?}"
        );
        let as_device = client
            .verify_device_token_with(token, TokenVerification::Local)
            .await;
        assert!(
            matches!(as_device, Err(TokenError::Rejected(_))),
            "{label}: {as_device:?}"
        );
        if remote == Err(TokenRejection::Expired) {
            expired += 1;
        }
    }
    assert!(expired >= 1, "the corpus holds expired tokens");
    // The genuine ones still pass both ways.
    assert_eq!(
        verdict(client.verify_local(user_token).await),
        verdict(client.verify_remote(user_token).await)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_expired_tokens_get_the_service_verdict_locally_eddsa() {
    let server = TestServer::start_with(|c| eddsa(c, "ed25519-a.pem", &[])).await;
    let client = server
        .builder()
        .token_verification(TokenVerification::Local)
        .build()
        .unwrap();
    corpus_agrees(
        &client,
        &asymmetric_test_keys(AsymmetricAlgorithm::EdDsa, 0, &[]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_expired_tokens_get_the_service_verdict_locally_hs256() {
    let server = TestServer::start().await;
    let client = server
        .builder()
        .tokens(TokenConfig {
            hs256_secret: Some(SecretString::from(TEST_JWT_KEY)),
            ..TokenConfig::default()
        })
        .build()
        .unwrap();
    corpus_agrees(
        &client,
        &JwtKeys::Hs256(secrecy::SecretSlice::from(TEST_JWT_KEY.as_bytes().to_vec())),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_is_seen_by_the_service_not_locally() {
    let server = TestServer::start_with(|c| eddsa(c, "ed25519-a.pem", &[])).await;
    let client = server.client();
    let (email, pair) = crate::common::user(&client).await;
    let user_token = exposed(&pair.access_token);

    client.logout(&pair.refresh_token).await.unwrap();
    // Locally the token is still good until it expires: documented, and the reason
    // `Remote` exists.
    assert!(client.verify_access_token(user_token).await.is_ok());
    assert!(matches!(
        client
            .verify_access_token_with(user_token, TokenVerification::Remote)
            .await,
        Err(TokenError::Rejected(TokenRejection::Revoked))
    ));

    let other = client
        .login(&email, &crate::common::password())
        .await
        .unwrap();
    client.logout_all(&other.access_token).await.unwrap();
    assert!(verdict(client.verify_local(exposed(&other.access_token)).await).is_ok());
    assert_eq!(
        verdict(client.verify_remote(exposed(&other.access_token)).await),
        Err(TokenRejection::Revoked)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_seen_by_the_service_not_locally() {
    let server = TestServer::start_with(|c| eddsa(c, "ed25519-a.pem", &[])).await;
    let client = server.client();
    let (owner, org) = owner_and_org(&client).await;
    let manager = Credential::Bearer(&owner.access_token);
    let id = unique_device_id();
    let device = client
        .register_device(manager, &NewDevice::new(id.clone(), org.id))
        .await
        .unwrap();
    let token = client
        .authenticate_device(&id, &device.device_secret)
        .await
        .unwrap()
        .access_token;
    client.revoke_device(manager, &id).await.unwrap();
    assert!(client.verify_device_token(exposed(&token)).await.is_ok());
    assert!(matches!(
        client
            .verify_device_token_with(exposed(&token), TokenVerification::Remote)
            .await,
        Err(TokenError::Rejected(TokenRejection::Revoked))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_signing_key_is_fetched_on_its_first_token_at_most_once_per_interval() {
    let server = TestServer::start_with(|c| eddsa(c, "ed25519-a.pem", &[])).await;
    let min_refetch = Duration::from_secs(1);
    let client = server
        .builder()
        .tokens(TokenConfig {
            jwks_min_refetch: min_refetch,
            ..TokenConfig::default()
        })
        .build()
        .unwrap();
    let (email, old) = crate::common::user(&client).await;
    assert!(
        client
            .verify_access_token(exposed(&old.access_token))
            .await
            .is_ok()
    );
    assert_eq!(client.metrics().tokens.jwks_fetches, 1);

    // Rotation, step 2: sign with b, still accept a.
    server
        .restart_with(|c| eddsa(c, "ed25519-b.pem", &["ed25519-a.pub.pem"]))
        .await;
    let new = client
        .login(&email, &crate::common::password())
        .await
        .unwrap();
    // Within the interval, an unknown `kid` causes no fetch: refused.
    assert!(matches!(
        client.verify_access_token(exposed(&new.access_token)).await,
        Err(TokenError::Rejected(TokenRejection::Invalid))
    ));
    let tokens = client.metrics().tokens;
    assert_eq!(
        (tokens.jwks_fetches, tokens.jwks_refetches_suppressed),
        (1, 1)
    );

    tokio::time::sleep(min_refetch + Duration::from_millis(100)).await;
    let verified = client
        .verify_access_token(exposed(&new.access_token))
        .await
        .unwrap();
    assert_eq!(verified.verified_by, VerifiedBy::Local);
    assert_eq!(client.metrics().tokens.jwks_fetches, 2);
    // The old key is still published: its tokens still verify, with no fetch.
    assert!(
        client
            .verify_access_token(exposed(&old.access_token))
            .await
            .is_ok()
    );
    assert_eq!(client.refresh_jwks().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_verifies_locally_only_with_the_shared_secret() {
    let server = TestServer::start().await;
    let client = server.client();
    let (_, pair) = crate::common::user(&client).await;
    let token = exposed(&pair.access_token);

    assert!(matches!(
        client
            .verify_access_token_with(token, TokenVerification::Local)
            .await,
        Err(TokenError::NoLocalKeys)
    ));
    // The default (Auto) falls back to the service.
    let verified = client.verify_access_token(token).await.unwrap();
    assert_eq!(verified.verified_by, VerifiedBy::Service);
    assert_eq!(client.refresh_jwks().await.unwrap(), 0);

    let with_secret = server
        .builder()
        .tokens(TokenConfig {
            hs256_secret: Some(SecretString::from(TEST_JWT_KEY)),
            ..TokenConfig::default()
        })
        .build()
        .unwrap();
    let verified = with_secret.verify_access_token(token).await.unwrap();
    assert_eq!(verified.verified_by, VerifiedBy::Local);
    assert_eq!(with_secret.metrics().tokens.jwks_fetches, 0);

    let wrong_secret = server
        .builder()
        .tokens(TokenConfig {
            hs256_secret: Some(SecretString::from(
                "another-key-0123456789-abcdefghijklmnop",
            )),
            ..TokenConfig::default()
        })
        .build()
        .unwrap();
    assert!(matches!(
        wrong_secret.verify_access_token(token).await,
        Err(TokenError::Rejected(TokenRejection::Invalid))
    ));
}
