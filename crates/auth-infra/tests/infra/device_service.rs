//! `DeviceService` over Postgres, the Moka cache and a real HS256 signer, with a counting
//! repository: the fast path reads the store once, authentications are recorded in batches
//! (and read back at the store's precision), tokens expire with the clock, a rotation ends
//! the JWTs minted before it. The same rules over the in-memory stores and the fake signer
//! are tested in `auth-core`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use auth_core::memory::ManualClock;
use auth_core::model::{
    Device, DeviceId, DeviceMetadata, DeviceSecret, Email, Organization, OrganizationId,
    OrganizationName, PasswordHash, TokenHash, TokenRejection, User, UserId,
};
use auth_core::ports::{
    ChangeDeviceError, Clock as _, DeviceRepository, OrganizationRepository, RegisterDeviceError,
    StoreError, UserRepository,
};
use auth_core::system::OsSecretGenerator;
use auth_core::{Actor, DeviceError, DevicePorts, DeviceService, NewDevice, OrganizationService};
use auth_infra::cache::MokaCache;
use auth_infra::jwt::{JwtSettings, JwtSigner};
use auth_infra::postgres::{PgDeviceRepository, PgOrganizationRepository, PgUserRepository};
use auth_infra::test_support::TestDb;
use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret as _, SecretSlice};

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
    TestDb,
);

async fn stores() -> Stores {
    let db = TestDb::new().await;
    let pool = db.pool();
    (
        Arc::new(PgUserRepository::new(pool.clone())),
        Arc::new(PgOrganizationRepository::new(pool.clone())),
        Arc::new(PgDeviceRepository::new(pool)),
        db,
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
async fn fast_path_batches_and_expiry_postgres() {
    let (users, orgs, repo, _db) = stores().await;
    let clock = Arc::new(ManualClock::starting_now());
    let now = clock.now();
    let org = owned_org(users.as_ref(), orgs.as_ref(), now).await;
    let counting = Arc::new(Counting {
        inner: repo,
        finds: AtomicUsize::new(0),
    });
    let signer =
        JwtSigner::hs256(&SecretSlice::from(vec![3u8; 32]), JwtSettings::default()).unwrap();
    let devices = DeviceService::new(
        DevicePorts {
            devices: counting.clone(),
            orgs: OrganizationService::new(orgs, users, clock.clone()),
            cache: Arc::new(MokaCache::new(
                "devices",
                1000,
                std::time::Duration::from_secs(300),
            )),
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

/// A device service over Postgres, a real HS256 signer and `clock`, with an organization.
async fn service(clock: Arc<ManualClock>) -> (DeviceService, OrganizationId, TestDb) {
    let (users, orgs, repo, db) = stores().await;
    let now = clock.now();
    let org = owned_org(users.as_ref(), orgs.as_ref(), now).await;
    let signer =
        JwtSigner::hs256(&SecretSlice::from(vec![3u8; 32]), JwtSettings::default()).unwrap();
    let devices = DeviceService::new(
        DevicePorts {
            devices: repo,
            orgs: OrganizationService::new(orgs, users, clock.clone()),
            cache: Arc::new(MokaCache::new(
                "devices",
                1000,
                std::time::Duration::from_secs(300),
            )),
            signer: Arc::new(signer),
            clock: clock.clone(),
            secrets: Arc::new(OsSecretGenerator),
        },
        Duration::hours(24),
    );
    (devices, org.id, db)
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
/// same second (JWT `iat` is whole seconds) or at the very same instant; tokens minted after
/// it, in the same second or later, verify. Read through the cache, as in production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_ends_earlier_tokens_postgres() {
    // 12:00:00.250 on a whole second, so the sub-second cases are exact.
    let start = DateTime::from_timestamp(Utc::now().timestamp(), 250_000_000).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let (devices, org, _db) = service(clock.clone()).await;
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
