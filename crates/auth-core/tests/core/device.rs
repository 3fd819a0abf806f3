//! `DeviceService` over the in-memory stores and the fake signer, with a counting repository:
//! the fast path reads the store once, authentications are recorded in batches, tokens expire
//! with the clock, a rotation ends the tokens minted before it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use auth_core::memory::{
    FakeSigner, ManualClock, MemoryDeviceRepository, MemoryOrganizationRepository,
    MemoryUserRepository,
};
use auth_core::model::{
    Device, DeviceId, DeviceMetadata, DeviceSecret, Email, Organization, OrganizationId,
    OrganizationName, PasswordHash, Role, TokenHash, TokenRejection, User, UserId,
};
use auth_core::ports::TokenSigner as _;
use auth_core::ports::{
    ChangeDeviceError, Clock as _, DeviceRepository, OrganizationRepository, RegisterDeviceError,
    StoreError, UserRepository,
};
use auth_core::system::OsSecretGenerator;
use auth_core::{
    Actor, Caller, DeviceError, DevicePorts, DeviceService, NewDevice, OrganizationService,
};
use chrono::{DateTime, Duration, Utc};
use secrecy::ExposeSecret as _;

use crate::support::MapCache;

struct Counting {
    inner: Arc<dyn DeviceRepository>,
    finds: AtomicUsize,
}

#[async_trait]
impl DeviceRepository for Counting {
    async fn register(&self, d: &Device) -> Result<(), RegisterDeviceError> {
        self.inner.register(d).await
    }
    async fn find(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        self.inner.find(id).await
    }
    async fn list(&self, org: OrganizationId) -> Result<Vec<Device>, StoreError> {
        self.inner.list(org).await
    }
    async fn rotate_secret(
        &self,
        id: &DeviceId,
        h: &TokenHash,
        not_before: DateTime<Utc>,
    ) -> Result<Device, ChangeDeviceError> {
        self.inner.rotate_secret(id, h, not_before).await
    }
    async fn revoke(&self, id: &DeviceId, now: DateTime<Utc>) -> Result<Device, ChangeDeviceError> {
        self.inner.revoke(id, now).await
    }
    async fn record_authentications(
        &self,
        seen: &[(DeviceId, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        self.inner.record_authentications(seen).await
    }
}

type Stores = (
    Arc<dyn UserRepository>,
    Arc<dyn OrganizationRepository>,
    Arc<dyn DeviceRepository>,
);

fn stores() -> Stores {
    let users = Arc::new(MemoryUserRepository::new());
    (
        users.clone(),
        Arc::new(MemoryOrganizationRepository::new(users)),
        Arc::new(MemoryDeviceRepository::new()),
    )
}

/// An organization with a fresh owner, created at `now`.
async fn owned_org(
    users: &dyn auth_core::ports::UserRepository,
    orgs: &dyn auth_core::ports::OrganizationRepository,
    now: chrono::DateTime<chrono::Utc>,
) -> Organization {
    let owner = User {
        id: UserId::generate(),
        email: Email::parse(&format!("o{}@example.com", UserId::generate())).unwrap(),
        display_name: None,
        password_hash: PasswordHash::new("$2b$04$x".into()),
        is_admin: false,
        created_at: now,
        updated_at: now,
    };
    users.create(&owner).await.unwrap();
    let org = Organization {
        id: OrganizationId::generate(),
        name: OrganizationName::parse("Org").unwrap(),
        created_at: now,
    };
    orgs.create(&org, owner.id).await.unwrap();
    org
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_path_batches_and_expiry() {
    let (users, orgs, repo) = stores();
    let clock = Arc::new(ManualClock::starting_now());
    let now = clock.now();
    let org = owned_org(users.as_ref(), orgs.as_ref(), now).await;
    let counting = Arc::new(Counting {
        inner: repo,
        finds: AtomicUsize::new(0),
    });
    let signer = FakeSigner::new();
    let devices = DeviceService::new(
        DevicePorts {
            devices: counting.clone(),
            orgs: OrganizationService::new(orgs, users, clock.clone()),
            cache: Arc::new(MapCache::new()),
            signer: Arc::new(signer),
            clock: clock.clone(),
            secrets: Arc::new(OsSecretGenerator),
        },
        Duration::hours(24),
    );
    let id = DeviceId::parse("frame-1").unwrap();
    let new = NewDevice {
        id: id.clone(),
        organization_id: org.id,
        name: None,
        metadata: DeviceMetadata::default(),
    };
    let issued = devices.register(&Actor::Operator, new).await.unwrap();
    let secret = issued.secret.clone();

    // Ten authentications, one store read.
    let mut token = String::new();
    for _ in 0..10 {
        token = devices
            .authenticate(&id, &secret)
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_owned();
    }
    assert_eq!(counting.finds.load(Ordering::SeqCst), 1);
    assert!(matches!(
        devices
            .authenticate(&id, &DeviceSecret::presented("ds_wrong"))
            .await,
        Err(DeviceError::InvalidCredentials)
    ));

    // last_authenticated_at is written only when flushed, in one batch.
    assert!(
        devices
            .get(&Actor::Operator, &id)
            .await
            .unwrap()
            .last_authenticated_at
            .is_none()
    );
    assert_eq!(devices.flush_seen().await.unwrap(), 1);
    assert_eq!(
        devices
            .get(&Actor::Operator, &id)
            .await
            .unwrap()
            .last_authenticated_at,
        Some(now)
    );

    // The token verifies until it expires (24 h plus the 30 s leeway).
    assert!(devices.verify_token(&token).await.is_ok());
    clock.advance(Duration::hours(24) + Duration::seconds(30));
    assert!(matches!(
        devices.verify_token(&token).await,
        Err(DeviceError::InvalidToken(TokenRejection::Expired))
    ));
    clock.set(now);

    // Rotation evicts the cached device: the old secret fails at once.
    let rotated = devices.rotate_secret(&Actor::Operator, &id).await.unwrap();
    assert!(matches!(
        devices.authenticate(&id, &secret).await,
        Err(DeviceError::InvalidCredentials)
    ));
    assert!(devices.authenticate(&id, &rotated.secret).await.is_ok());
    // Revocation ends authentication and every token.
    devices.revoke(&Actor::Operator, &id).await.unwrap();
    assert!(matches!(
        devices.authenticate(&id, &rotated.secret).await,
        Err(DeviceError::InvalidCredentials)
    ));
    assert!(matches!(
        devices.verify_token(&token).await,
        Err(DeviceError::InvalidToken(TokenRejection::Revoked))
    ));
}

/// A device service over the in-memory stores, the fake signer and `clock`, with an
/// organization.
async fn service(clock: Arc<ManualClock>) -> (DeviceService, OrganizationId) {
    let (users, orgs, repo) = stores();
    let now = clock.now();
    let org = owned_org(users.as_ref(), orgs.as_ref(), now).await;
    let signer = FakeSigner::new();
    let devices = DeviceService::new(
        DevicePorts {
            devices: repo,
            orgs: OrganizationService::new(orgs, users, clock.clone()),
            cache: Arc::new(MapCache::new()),
            signer: Arc::new(signer),
            clock: clock.clone(),
            secrets: Arc::new(OsSecretGenerator),
        },
        Duration::hours(24),
    );
    (devices, org.id)
}

async fn token_of(devices: &DeviceService, id: &DeviceId, secret: &DeviceSecret) -> String {
    devices
        .authenticate(id, secret)
        .await
        .unwrap()
        .token
        .expose_secret()
        .to_owned()
}

fn revoked(result: Result<impl std::fmt::Debug, DeviceError>) -> bool {
    matches!(
        result,
        Err(DeviceError::InvalidToken(TokenRejection::Revoked))
    )
}

/// A secret rotation ends every token minted before it, including one minted earlier in the
/// same second (token `iat` is whole seconds, as in a JWT) or at the very same instant; tokens minted after
/// it, in the same second or later, verify. Read through the cache, as in production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_ends_earlier_tokens() {
    // 12:00:00.250 on a whole second, so the sub-second cases are exact.
    let start = DateTime::from_timestamp(Utc::now().timestamp(), 250_000_000).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let (devices, org) = service(clock.clone()).await;
    let id = DeviceId::parse("frame-rotating").unwrap();
    let new = NewDevice {
        id: id.clone(),
        organization_id: org,
        name: None,
        metadata: DeviceMetadata::default(),
    };
    let first = devices
        .register(&Actor::Operator, new)
        .await
        .unwrap()
        .secret;
    let early = token_of(&devices, &id, &first).await;
    assert!(devices.verify_token(&early).await.is_ok());

    // Rotation at .700 of the same second: the .250 token dies, a .900 token lives.
    clock.advance(Duration::milliseconds(450));
    let second = devices
        .rotate_secret(&Actor::Operator, &id)
        .await
        .unwrap()
        .secret;
    assert!(
        revoked(devices.verify_token(&early).await),
        "minted before, same second"
    );
    clock.advance(Duration::milliseconds(200));
    let after = token_of(&devices, &id, &second).await;
    let (claims, _) = devices.verify_token(&after).await.unwrap();
    assert_eq!(claims.issued_at.timestamp(), start.timestamp() + 1);
    assert!(claims.expires_at - claims.issued_at == Duration::hours(24));

    // Still verifying seconds later; ended by the next rotation, made exactly on a whole
    // second, as is a token minted at that very instant before it.
    clock.set(DateTime::from_timestamp(start.timestamp() + 5, 0).unwrap());
    assert!(devices.verify_token(&after).await.is_ok());
    let same_instant = token_of(&devices, &id, &second).await;
    let third = devices
        .rotate_secret(&Actor::Operator, &id)
        .await
        .unwrap()
        .secret;
    assert!(revoked(devices.verify_token(&after).await));
    assert!(
        revoked(devices.verify_token(&same_instant).await),
        "same instant"
    );
    let last = token_of(&devices, &id, &third).await;
    assert!(devices.verify_token(&last).await.is_ok());

    // Revocation still ends every token.
    devices.revoke(&Actor::Operator, &id).await.unwrap();
    assert!(revoked(devices.verify_token(&last).await));
}

/// A device service with an organization, and the organization service over the same stores.
struct Managed {
    devices: DeviceService,
    orgs: OrganizationService,
    users: Arc<dyn UserRepository>,
    org: OrganizationId,
    owner: UserId,
}

async fn managed() -> Managed {
    let (users, orgs_repo, repo) = stores();
    let clock = Arc::new(ManualClock::starting_now());
    let org = owned_org(users.as_ref(), orgs_repo.as_ref(), clock.now()).await;
    let owner = orgs_repo.members(org.id).await.unwrap()[0]
        .membership
        .user_id;
    let orgs = OrganizationService::new(orgs_repo, users.clone(), clock.clone());
    let devices = DeviceService::new(
        DevicePorts {
            devices: repo,
            orgs: orgs.clone(),
            cache: Arc::new(MapCache::new()),
            signer: Arc::new(FakeSigner::new()),
            clock: clock.clone(),
            secrets: Arc::new(OsSecretGenerator),
        },
        Duration::hours(24),
    );
    Managed {
        devices,
        orgs,
        users,
        org: org.id,
        owner,
    }
}

fn new_device(id: &str, org: OrganizationId) -> NewDevice {
    NewDevice {
        id: DeviceId::parse(id).unwrap(),
        organization_id: org,
        name: None,
        metadata: DeviceMetadata::default(),
    }
}

async fn user(m: &Managed, is_admin: bool) -> User {
    let now = chrono::Utc::now();
    let u = User {
        id: UserId::generate(),
        email: Email::parse(&format!("u{}@example.com", UserId::generate())).unwrap(),
        display_name: None,
        password_hash: PasswordHash::new("$fake$1$x".into()),
        is_admin,
        created_at: now,
        updated_at: now,
    };
    m.users.create(&u).await.unwrap();
    u
}

#[tokio::test]
async fn only_managers_manage_devices_and_strangers_see_nothing() {
    let m = managed().await;
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
    let m = managed().await;
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
    let m = managed().await;
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
    let token = token_of(&m.devices, &id, &issued.secret).await;
    let (claims, device) = m.devices.verify_token(&token).await.unwrap();
    assert_eq!((claims.device_id, device.id), (id.clone(), id));
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
