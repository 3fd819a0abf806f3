//! The device session: keeps its token, renews it when due, stops after its credentials are
//! refused, keeps working on its held token while the service is away.

use std::sync::Arc;

use auth_client::{
    AuthClient, Credential, DeviceSession, DeviceSessionConfig, ErrorCode, NewDevice, Operation,
};

use crate::common::{TestServer, exposed, owner_and_org, unique_device_id};

fn authentications(client: &AuthClient) -> u64 {
    client
        .metrics()
        .operation(Operation::AuthenticateDevice)
        .map_or(0, |o| o.attempts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_keeps_its_token_until_renewal_is_due() {
    let server = TestServer::start().await;
    let client = server.client();
    let (owner, org) = owner_and_org(&client).await;
    let manager = Credential::Bearer(&owner.access_token);
    let id = unique_device_id();
    let device = client
        .register_device(manager, &NewDevice::new(id.clone(), org.id))
        .await
        .unwrap();

    let session = Arc::new(DeviceSession::new(
        client.clone(),
        id.clone(),
        device.device_secret.clone(),
    ));
    assert!(!format!("{session:?}").contains(exposed(&device.device_secret)));
    // Concurrent callers share one authentication.
    let (a, b) = tokio::join!(session.token(), session.token());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(exposed(&a), exposed(&b));
    assert_eq!(exposed(&session.token().await.unwrap()), exposed(&a));
    assert_eq!(authentications(&client), 1);
    let verified = client.verify_device_token(exposed(&a)).await.unwrap();
    assert_eq!(verified.device_id, id);

    // A service refused the token: the next call gets a new one.
    session.invalidate().await;
    let c = session.token().await.unwrap();
    assert_ne!(exposed(&c), exposed(&a));
    assert_eq!(authentications(&client), 2);

    // Renewing at 0 % of the lifetime renews on every call.
    let eager = DeviceSession::with_config(
        client.clone(),
        id.clone(),
        device.device_secret.clone(),
        DeviceSessionConfig {
            renew_at: 0.0,
            ..DeviceSessionConfig::default()
        },
    );
    let first = eager.token().await.unwrap();
    let second = eager.token().await.unwrap();
    assert_ne!(exposed(&first), exposed(&second));
    assert_eq!(authentications(&client), 4);

    // Renewal failing while the service is down: the held token is still good, so it is used.
    server.stop().await;
    let held = eager.token().await.unwrap();
    assert_eq!(exposed(&held), exposed(&second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_stop_the_session_until_a_new_secret_arrives() {
    let server = TestServer::start().await;
    let client = server.client();
    let (owner, org) = owner_and_org(&client).await;
    let manager = Credential::Bearer(&owner.access_token);
    let id = unique_device_id();
    let device = client
        .register_device(manager, &NewDevice::new(id.clone(), org.id))
        .await
        .unwrap();
    let session = DeviceSession::new(client.clone(), id.clone(), device.device_secret.clone());
    session.token().await.unwrap();

    let rotated = client.rotate_device_secret(manager, &id).await.unwrap();
    session.invalidate().await;
    let err = session.token().await.unwrap_err();
    assert!(err.is_code(&ErrorCode::InvalidDeviceCredentials), "{err:?}");
    assert!(session.is_refused().await);
    let calls = authentications(&client);
    // No more asking with a secret that cannot work.
    for _ in 0..3 {
        assert!(session.token().await.is_err());
    }
    assert_eq!(authentications(&client), calls);

    session.set_secret(rotated.device_secret).await;
    let token = session.token().await.unwrap();
    assert!(client.verify_device_token(exposed(&token)).await.is_ok());
    assert!(!session.is_refused().await);
}
