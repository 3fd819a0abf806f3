//! `DeviceService` rules over the in-memory stores and the fake signer: who manages devices,
//! unique ids, revoked devices, refused credentials and tokens. The fast path, batched
//! authentications, expiry and rotation are service scenarios, run in `contract.rs` (and over
//! Postgres).

use auth_core::contract::services::new_device;
use auth_core::memory::FakeSigner;
use auth_core::model::{DeviceId, Role, TokenRejection, User};
use auth_core::ports::TokenSigner as _;
use auth_core::{Actor, Caller, DeviceError, DeviceService};
use chrono::Duration;
use secrecy::ExposeSecret as _;

use crate::support::{services, user};

#[tokio::test]
async fn only_managers_manage_devices_and_strangers_see_nothing() {
    let m = services().await;
    let member = user(&m, false).await;
    let stranger = user(&m, false).await;
    let service_admin = user(&m, true).await;
    let owner = Caller {
        user: m.owner,
        is_admin: false,
    };
    m.orgs
        .add_member(owner, m.org, &member.email, Role::Member)
        .await
        .unwrap();
    let as_user = |u: &User| Actor::User {
        id: u.id,
        is_admin: u.is_admin,
    };
    let by_owner = Actor::User {
        id: m.owner,
        is_admin: false,
    };
    let issued = m
        .devices
        .register(&by_owner, new_device("frame-1", m.org))
        .await
        .unwrap();
    assert_eq!(issued.device.name.as_str(), "frame-1", "named after its id");
    assert!(
        m.devices
            .register(&as_user(&service_admin), new_device("frame-2", m.org))
            .await
            .is_ok()
    );
    assert!(matches!(
        m.devices
            .register(&as_user(&member), new_device("frame-3", m.org))
            .await,
        Err(DeviceError::Forbidden)
    ));
    assert!(matches!(
        m.devices.revoke(&as_user(&member), &issued.device.id).await,
        Err(DeviceError::Forbidden)
    ));
    assert!(matches!(
        m.devices
            .register(&as_user(&stranger), new_device("frame-3", m.org))
            .await,
        Err(DeviceError::NotFound)
    ));
    assert!(matches!(
        m.devices.get(&as_user(&stranger), &issued.device.id).await,
        Err(DeviceError::NotFound)
    ));
    assert!(matches!(
        m.devices.list(&as_user(&stranger), m.org).await,
        Err(DeviceError::NotFound)
    ));
    assert_eq!(
        m.devices.list(&by_owner, m.org).await.unwrap().len(),
        2,
        "the owner lists both"
    );
    assert!(matches!(
        m.devices
            .get(
                &Actor::Operator,
                &DeviceId::parse("never-registered").unwrap()
            )
            .await,
        Err(DeviceError::NotFound)
    ));
}

#[tokio::test]
async fn ids_are_unique_and_a_revoked_device_changes_no_more() {
    let m = services().await;
    let issued = m
        .devices
        .register(&Actor::Operator, new_device("frame-1", m.org))
        .await
        .unwrap();
    assert!(matches!(
        m.devices
            .register(&Actor::Operator, new_device("frame-1", m.org))
            .await,
        Err(DeviceError::Exists)
    ));
    let id = issued.device.id;
    m.devices.revoke(&Actor::Operator, &id).await.unwrap();
    assert!(matches!(
        m.devices.revoke(&Actor::Operator, &id).await,
        Err(DeviceError::AlreadyRevoked)
    ));
    assert!(matches!(
        m.devices.rotate_secret(&Actor::Operator, &id).await,
        Err(DeviceError::AlreadyRevoked)
    ));
    assert!(matches!(
        m.devices.authenticate(&id, &issued.secret).await,
        Err(DeviceError::InvalidCredentials)
    ));
}

/// Unknown device, wrong secret and revoked device fail alike; a tampered token, a token of
/// another signer and a user access token are invalid device tokens.
#[tokio::test]
async fn credentials_and_tokens_are_refused_alike() {
    let m = services().await;
    let issued = m
        .devices
        .register(&Actor::Operator, new_device("frame-1", m.org))
        .await
        .unwrap();
    let id = issued.device.id.clone();
    assert!(matches!(
        m.devices
            .authenticate(&DeviceId::parse("frame-unknown").unwrap(), &issued.secret)
            .await,
        Err(DeviceError::InvalidCredentials)
    ));
    let token = m.token_of(&id, &issued.secret).await;
    let (claims, device) = m.devices.verify_token(&token).await.unwrap();
    assert_eq!((claims.device_id, device.id.clone()), (id.clone(), id));
    assert_eq!(claims.organization_id, m.org);

    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let signed_elsewhere = FakeSigner::with_key(b"another service")
        .sign_device(&claims_of(&m.devices, &token).await)
        .unwrap();
    let access = FakeSigner::new()
        .sign_access(&auth_core::model::AccessClaims {
            user_id: m.owner,
            session_id: auth_core::model::SessionId::generate(),
            token_id: uuid::Uuid::now_v7(),
            issued_at: chrono::Utc::now(),
            expires_at: chrono::Utc::now() + Duration::minutes(15),
        })
        .unwrap();
    for bad in [
        String::from_utf8(tampered).unwrap(),
        signed_elsewhere.expose_secret().to_owned(),
        access.expose_secret().to_owned(),
    ] {
        assert!(
            matches!(
                m.devices.verify_token(&bad).await,
                Err(DeviceError::InvalidToken(TokenRejection::Invalid))
            ),
            "{bad}"
        );
    }
}

async fn claims_of(devices: &DeviceService, token: &str) -> auth_core::model::DeviceClaims {
    devices.verify_token(token).await.unwrap().0
}
