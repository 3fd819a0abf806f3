//! `ApiKeyService` over Postgres and the Moka cache: expiry, batched `last_used_at` (stored
//! and read back at the store's precision), checksum refusal without I/O, cache eviction on
//! revoke, rotation. The same rules over the in-memory stores are tested in `auth-core`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use auth_core::memory::ManualClock;
use auth_core::model::{
    ApiKey, ApiKeyId, ApiKeyName, ApiKeyPrefix, Email, Organization, OrganizationId,
    OrganizationName, PasswordHash, Scope, Scopes, TokenHash, User, UserId,
};
use auth_core::ports::{
    ApiKeyRepository, Clock as _, OrganizationRepository, RevokeApiKeyError, StoreError,
    UserRepository,
};
use auth_core::system::OsSecretGenerator;
use auth_core::{Actor, ApiKeyPorts, ApiKeyService, ApiKeyVerdict, NewApiKey, OrganizationService};
use auth_infra::cache::MokaCache;
use auth_infra::postgres::{PgApiKeyRepository, PgOrganizationRepository, PgUserRepository};
use auth_infra::test_support::TestDb;
use chrono::{DateTime, Duration, Utc};

/// Counts lookups by hash, to show what reaches the store.
struct Counting {
    inner: Arc<dyn ApiKeyRepository>,
    by_hash: AtomicUsize,
}

#[async_trait]
impl ApiKeyRepository for Counting {
    async fn create(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.inner.create(key).await
    }
    async fn find(&self, id: ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        self.inner.find(id).await
    }
    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiKey>, StoreError> {
        self.by_hash.fetch_add(1, Ordering::SeqCst);
        self.inner.find_by_hash(hash).await
    }
    async fn list(&self, org: OrganizationId, all: bool) -> Result<Vec<ApiKey>, StoreError> {
        self.inner.list(org, all).await
    }
    async fn revoke(&self, id: ApiKeyId, now: DateTime<Utc>) -> Result<ApiKey, RevokeApiKeyError> {
        self.inner.revoke(id, now).await
    }
    async fn rotate(
        &self,
        old: ApiKeyId,
        new: &ApiKey,
        now: DateTime<Utc>,
    ) -> Result<ApiKey, RevokeApiKeyError> {
        self.inner.rotate(old, new, now).await
    }
    async fn record_usage(&self, usage: &[(ApiKeyId, DateTime<Utc>)]) -> Result<(), StoreError> {
        self.inner.record_usage(usage).await
    }
}

struct Harness {
    keys: ApiKeyService,
    clock: Arc<ManualClock>,
    counting: Arc<Counting>,
    org: OrganizationId,
    _db: TestDb,
}

async fn harness() -> Harness {
    let clock = Arc::new(ManualClock::starting_now());
    let db = TestDb::new().await;
    let pool = db.pool();
    let users: Arc<dyn UserRepository> = Arc::new(PgUserRepository::new(pool.clone()));
    let orgs: Arc<dyn OrganizationRepository> =
        Arc::new(PgOrganizationRepository::new(pool.clone()));
    let repo: Arc<dyn ApiKeyRepository> = Arc::new(PgApiKeyRepository::new(pool));
    let now = clock.now();
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
    let counting = Arc::new(Counting {
        inner: repo,
        by_hash: AtomicUsize::new(0),
    });
    let keys = ApiKeyService::new(
        ApiKeyPorts {
            keys: counting.clone(),
            orgs: OrganizationService::new(orgs, users, clock.clone()),
            cache: Arc::new(MokaCache::new(
                "api_keys",
                1000,
                std::time::Duration::from_secs(300),
            )),
            clock: clock.clone(),
            secrets: Arc::new(OsSecretGenerator),
        },
        ApiKeyPrefix::default(),
    );
    Harness {
        keys,
        clock,
        counting,
        org: org.id,
        _db: db,
    }
}

fn new_key(org: OrganizationId, days: Option<u32>) -> NewApiKey {
    NewApiKey {
        organization_id: org,
        name: ApiKeyName::parse("svc").unwrap(),
        scopes: Scopes::new(vec![Scope::parse("read").unwrap()]).unwrap(),
        expires_in_days: days,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_usage_and_cache_postgres() {
    let h = harness().await;
    let issued = h
        .keys
        .create(&Actor::Operator, new_key(h.org, Some(1)))
        .await
        .unwrap();
    let text = issued.secret.expose().to_owned();

    // Garbage and bad checksums never reach the store.
    assert_eq!(
        h.keys
            .verify("ak_live_nope", &Scopes::default())
            .await
            .unwrap(),
        ApiKeyVerdict::Invalid
    );
    let mut typo = text.clone().into_bytes();
    typo[10] = if typo[10] == b'x' { b'y' } else { b'x' };
    assert_eq!(
        h.keys
            .verify(&String::from_utf8(typo).unwrap(), &Scopes::default())
            .await
            .unwrap(),
        ApiKeyVerdict::Invalid
    );
    assert_eq!(h.counting.by_hash.load(Ordering::SeqCst), 0);

    // Repeated verifications load once.
    for _ in 0..5 {
        assert!(matches!(
            h.keys.verify(&text, &Scopes::default()).await.unwrap(),
            ApiKeyVerdict::Valid(_)
        ));
    }
    assert_eq!(h.counting.by_hash.load(Ordering::SeqCst), 1);

    // last_used_at is written in a batch, only when flushed.
    let used_at = h.clock.now();
    assert!(
        h.keys
            .get(&Actor::Operator, issued.key.id)
            .await
            .unwrap()
            .last_used_at
            .is_none()
    );
    assert_eq!(h.keys.flush_usage().await.unwrap(), 1);
    assert_eq!(
        h.keys
            .get(&Actor::Operator, issued.key.id)
            .await
            .unwrap()
            .last_used_at,
        Some(used_at)
    );
    assert_eq!(h.keys.flush_usage().await.unwrap(), 0);

    // Expiry comes from the clock, even for a cached key.
    h.clock.advance(Duration::days(1));
    assert_eq!(
        h.keys.verify(&text, &Scopes::default()).await.unwrap(),
        ApiKeyVerdict::Expired
    );

    // Revocation evicts at once: the next verify reloads and sees it.
    let other = h
        .keys
        .create(&Actor::Operator, new_key(h.org, None))
        .await
        .unwrap();
    let other_text = other.secret.expose().to_owned();
    assert!(matches!(
        h.keys
            .verify(&other_text, &Scopes::default())
            .await
            .unwrap(),
        ApiKeyVerdict::Valid(_)
    ));
    h.keys.revoke(&Actor::Operator, other.key.id).await.unwrap();
    assert_eq!(
        h.keys
            .verify(&other_text, &Scopes::default())
            .await
            .unwrap(),
        ApiKeyVerdict::Revoked
    );

    // The operator may act only on organizations that exist.
    let missing = new_key(OrganizationId::generate(), None);
    assert!(matches!(
        h.keys.create(&Actor::Operator, missing).await,
        Err(auth_core::ApiKeyError::NotFound)
    ));
}

/// Rotating an expired key is refused: it would hand out a new key that is already dead. The
/// expired key is left as it was; an active key rotates with its absolute expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_keys_are_not_rotated_postgres() {
    let h = harness().await;
    let issued = h
        .keys
        .create(&Actor::Operator, new_key(h.org, Some(1)))
        .await
        .unwrap();
    h.clock.advance(Duration::days(2));
    let result = h.keys.rotate(&Actor::Operator, issued.key.id).await;
    assert!(
        matches!(result, Err(auth_core::ApiKeyError::Expired)),
        "an expired key is not rotated: {:?}",
        result.map(|i| i.key)
    );
    let stored = h.keys.get(&Actor::Operator, issued.key.id).await.unwrap();
    assert_eq!(stored.revoked_at, None);
    assert_eq!(
        h.keys
            .list(&Actor::Operator, h.org, true)
            .await
            .unwrap()
            .len(),
        1
    );

    // Revoked and expired: revoked wins, as in its status.
    h.keys
        .revoke(&Actor::Operator, issued.key.id)
        .await
        .unwrap();
    assert!(matches!(
        h.keys.rotate(&Actor::Operator, issued.key.id).await,
        Err(auth_core::ApiKeyError::AlreadyRevoked)
    ));

    let live = h
        .keys
        .create(&Actor::Operator, new_key(h.org, Some(1)))
        .await
        .unwrap();
    let rotated = h.keys.rotate(&Actor::Operator, live.key.id).await.unwrap();
    assert_eq!(rotated.key.expires_at, live.key.expires_at);
}
