//! `ApiKeyService` rules over the in-memory stores: expiry, batched `last_used_at`, checksum
//! refusal without I/O, cache eviction on revoke, rotation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use auth_core::memory::{
    ManualClock, MemoryApiKeyRepository, MemoryOrganizationRepository, MemoryUserRepository,
};
use auth_core::model::{
    ApiKey, ApiKeyId, ApiKeyName, ApiKeyPrefix, Email, Organization, OrganizationId,
    OrganizationName, PasswordHash, Role, Scope, Scopes, TokenHash, User, UserId,
};
use auth_core::ports::{
    ApiKeyRepository, Clock as _, OrganizationRepository, RevokeApiKeyError, StoreError,
    UserRepository,
};
use auth_core::system::OsSecretGenerator;
use auth_core::{
    Actor, ApiKeyError, ApiKeyPorts, ApiKeyService, ApiKeyVerdict, Caller, NewApiKey,
    OrganizationError, OrganizationService,
};
use chrono::{DateTime, Duration, Utc};

use crate::support::MapCache;

/// Counts lookups by hash, to show what reaches the store.
struct Counting {
    inner: Arc<dyn ApiKeyRepository>,
    by_hash: AtomicUsize,
    /// Lookups by hash fail while set.
    down: AtomicBool,
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
        if AtomicBool::load(&self.down, Ordering::SeqCst) {
            return Err(StoreError::unavailable("database went away"));
        }
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
    owner: UserId,
    users: Arc<MemoryUserRepository>,
    orgs: OrganizationService,
}

async fn harness() -> Harness {
    let clock = Arc::new(ManualClock::starting_now());
    let memory = Arc::new(MemoryUserRepository::new());
    let users: Arc<dyn UserRepository> = memory.clone();
    let users_handle = memory.clone();
    let orgs: Arc<dyn OrganizationRepository> = Arc::new(MemoryOrganizationRepository::new(memory));
    let repo: Arc<dyn ApiKeyRepository> = Arc::new(MemoryApiKeyRepository::new());
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
        down: AtomicBool::new(false),
    });
    let org_service = OrganizationService::new(orgs, users, clock.clone());
    let keys = ApiKeyService::new(
        ApiKeyPorts {
            keys: counting.clone(),
            orgs: org_service.clone(),
            cache: Arc::new(MapCache::new()),
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
        owner: owner.id,
        users: users_handle,
        orgs: org_service,
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
async fn expiry_usage_and_cache() {
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
async fn expired_keys_are_not_rotated() {
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

/// A registered user, a service administrator or not.
async fn user(h: &Harness, is_admin: bool) -> User {
    let now = h.clock.now();
    let u = User {
        id: UserId::generate(),
        email: Email::parse(&format!("u{}@example.com", UserId::generate())).unwrap(),
        display_name: None,
        password_hash: PasswordHash::new("$fake$1$x".into()),
        is_admin,
        created_at: now,
        updated_at: now,
    };
    h.users.create(&u).await.unwrap();
    u
}

fn scoped(org: OrganizationId, scopes: &[&str]) -> NewApiKey {
    NewApiKey {
        organization_id: org,
        name: ApiKeyName::parse("svc").unwrap(),
        scopes: Scopes::new(scopes.iter().map(|s| Scope::parse(s).unwrap()).collect()).unwrap(),
        expires_in_days: None,
    }
}

/// Who may manage an organization's keys: its owners and admins, service administrators,
/// its own `admin` keys and the operator. Plain members and keys without `admin` are
/// forbidden; strangers and other organizations' keys do not see it at all.
#[tokio::test]
async fn only_managers_and_admin_keys_manage_keys() {
    let h = harness().await;
    let member = user(&h, false).await;
    let org_admin = user(&h, false).await;
    let stranger = user(&h, false).await;
    let service_admin = user(&h, true).await;
    let owner = Caller {
        user: h.owner,
        is_admin: false,
    };
    h.orgs
        .add_member(owner, h.org, &member.email, Role::Member)
        .await
        .unwrap();
    h.orgs
        .add_member(owner, h.org, &org_admin.email, Role::Admin)
        .await
        .unwrap();
    let other_org = h
        .orgs
        .create(stranger.id, OrganizationName::parse("Other").unwrap())
        .await
        .unwrap();
    let as_user = |u: &User| Actor::User {
        id: u.id,
        is_admin: u.is_admin,
    };
    let admin_key = h
        .keys
        .create(&Actor::Operator, scoped(h.org, &["admin"]))
        .await
        .unwrap()
        .key;
    let read_key = h
        .keys
        .create(&Actor::Operator, scoped(h.org, &["read"]))
        .await
        .unwrap()
        .key;
    let foreign_key = h
        .keys
        .create(&Actor::Operator, scoped(other_org.id, &["admin"]))
        .await
        .unwrap()
        .key;

    for actor in [
        Actor::User {
            id: h.owner,
            is_admin: false,
        },
        as_user(&org_admin),
        as_user(&service_admin),
        Actor::ApiKey(Arc::new(admin_key)),
        Actor::Operator,
    ] {
        assert!(
            h.keys
                .create(&actor, scoped(h.org, &["read"]))
                .await
                .is_ok(),
            "{actor:?}"
        );
        assert!(h.keys.list(&actor, h.org, false).await.is_ok(), "{actor:?}");
    }
    for actor in [as_user(&member), Actor::ApiKey(Arc::new(read_key.clone()))] {
        assert!(
            matches!(
                h.keys.create(&actor, scoped(h.org, &["read"])).await,
                Err(ApiKeyError::Forbidden)
            ),
            "{actor:?}"
        );
        assert!(
            matches!(
                h.keys.revoke(&actor, read_key.id).await,
                Err(ApiKeyError::Forbidden)
            ),
            "{actor:?}"
        );
    }
    for actor in [as_user(&stranger), Actor::ApiKey(Arc::new(foreign_key))] {
        assert!(
            matches!(
                h.keys.list(&actor, h.org, false).await,
                Err(ApiKeyError::NotFound)
            ),
            "{actor:?}"
        );
        assert!(
            matches!(
                h.keys.get(&actor, read_key.id).await,
                Err(ApiKeyError::NotFound)
            ),
            "{actor:?}"
        );
    }
    assert!(matches!(
        h.keys.get(&Actor::Operator, ApiKeyId::generate()).await,
        Err(ApiKeyError::NotFound)
    ));
}

#[tokio::test]
async fn verify_grants_only_the_scopes_a_key_holds() {
    let h = harness().await;
    let issued = h
        .keys
        .create(&Actor::Operator, scoped(h.org, &["read", "write"]))
        .await
        .unwrap();
    let text = issued.secret.expose();
    let need = |scopes: &[&str]| {
        Scopes::new(scopes.iter().map(|s| Scope::parse(s).unwrap()).collect()).unwrap()
    };
    assert!(matches!(
        h.keys.verify(text, &need(&["read", "write"])).await.unwrap(),
        ApiKeyVerdict::Valid(k) if k.id == issued.key.id
    ));
    let verdict = h
        .keys
        .verify(text, &need(&["read", "admin"]))
        .await
        .unwrap();
    assert!(
        matches!(&verdict, ApiKeyVerdict::InsufficientScope(k) if k.id == issued.key.id),
        "{verdict:?}"
    );
    assert_eq!(verdict.error_code(), Some("INSUFFICIENT_SCOPE"));
    // A key of another prefix is malformed here.
    let foreign = text.replacen("ak_", "zz_", 1);
    assert_eq!(
        h.keys.verify(&foreign, &need(&[])).await.unwrap(),
        ApiKeyVerdict::Invalid
    );
}

#[tokio::test]
async fn revoking_twice_is_refused_and_the_key_stays_revoked() {
    let h = harness().await;
    let issued = h
        .keys
        .create(&Actor::Operator, new_key(h.org, None))
        .await
        .unwrap();
    let revoked = h
        .keys
        .revoke(&Actor::Operator, issued.key.id)
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(matches!(
        h.keys.revoke(&Actor::Operator, issued.key.id).await,
        Err(ApiKeyError::AlreadyRevoked)
    ));
    assert!(matches!(
        h.keys.rotate(&Actor::Operator, issued.key.id).await,
        Err(ApiKeyError::AlreadyRevoked)
    ));
    assert_eq!(
        h.keys
            .verify(issued.secret.expose(), &Scopes::default())
            .await
            .unwrap(),
        ApiKeyVerdict::Revoked
    );
    // Listed only when revoked keys are asked for.
    assert!(
        h.keys
            .list(&Actor::Operator, h.org, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        h.keys
            .list(&Actor::Operator, h.org, true)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A store failure is never a verdict and never cached: the next verification loads again.
#[tokio::test]
async fn a_store_outage_is_an_error_not_a_verdict() {
    let h = harness().await;
    let issued = h
        .keys
        .create(&Actor::Operator, new_key(h.org, None))
        .await
        .unwrap();
    h.counting.down.store(true, Ordering::SeqCst);
    let err = h
        .keys
        .verify(issued.secret.expose(), &Scopes::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiKeyError::Store(StoreError::Unavailable(_))),
        "{err:?}"
    );
    h.counting.down.store(false, Ordering::SeqCst);
    assert!(matches!(
        h.keys
            .verify(issued.secret.expose(), &Scopes::default())
            .await
            .unwrap(),
        ApiKeyVerdict::Valid(_)
    ));
    assert_eq!(h.counting.by_hash.load(Ordering::SeqCst), 2);
}

/// An organization check's store failure reaches the key's caller as the same store failure.
#[test]
fn an_organization_store_failure_stays_a_store_failure() {
    let err = ApiKeyError::from(OrganizationError::Store(StoreError::internal("disk full")));
    assert!(
        matches!(err, ApiKeyError::Store(StoreError::Internal(_))),
        "{err:?}"
    );
    assert_eq!(
        auth_core::ErrorChain(&err).to_string(),
        "store failure: disk full"
    );
    assert!(matches!(
        ApiKeyError::from(OrganizationError::LastOwner),
        ApiKeyError::NotFound
    ));
}
