//! `ApiKeyService` rules over the in-memory stores: who manages keys, scopes, revocation, a
//! store outage. Expiry, batched `last_used_at`, checksum refusal without I/O, cache eviction
//! on revoke and rotation are service scenarios, run in `contract.rs` (and over Postgres).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use auth_core::contract::services::new_key;
use auth_core::model::{
    ApiKeyId, ApiKeyName, OrganizationId, OrganizationName, Role, Scope, Scopes, User,
};
use auth_core::ports::StoreError;
use auth_core::{Actor, ApiKeyError, ApiKeyVerdict, Caller, NewApiKey, OrganizationError};

use crate::support::{services, user};

fn scoped(org: OrganizationId, scopes: &[&str]) -> NewApiKey {
    NewApiKey::new(
        org,
        ApiKeyName::parse("svc").unwrap(),
        Scopes::new(scopes.iter().map(|s| Scope::parse(s).unwrap()).collect()).unwrap(),
    )
}

/// Who may manage an organization's keys: its owners and admins, service administrators,
/// its own `admin` keys and the operator. Plain members and keys without `admin` are
/// forbidden; strangers and other organizations' keys do not see it at all.
#[tokio::test]
async fn only_managers_and_admin_keys_manage_keys() {
    let h = services().await;
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
        assert!(
            h.keys.list(&actor, h.org, false, None).await.is_ok(),
            "{actor:?}"
        );
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
                h.keys.list(&actor, h.org, false, None).await,
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
    let h = services().await;
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
    let h = services().await;
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
            .list(&Actor::Operator, h.org, false, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        h.keys
            .list(&Actor::Operator, h.org, true, None)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A store failure is never a verdict and never cached: the next verification loads again.
#[tokio::test]
async fn a_store_outage_is_an_error_not_a_verdict() {
    let h = services().await;
    let issued = h
        .keys
        .create(&Actor::Operator, new_key(h.org, None))
        .await
        .unwrap();
    h.counting_keys.down.store(true, Ordering::SeqCst);
    let err = h
        .keys
        .verify(issued.secret.expose(), &Scopes::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiKeyError::Store(StoreError::Unavailable(_))),
        "{err:?}"
    );
    h.counting_keys.down.store(false, Ordering::SeqCst);
    assert!(matches!(
        h.keys
            .verify(issued.secret.expose(), &Scopes::default())
            .await
            .unwrap(),
        ApiKeyVerdict::Valid(_)
    ));
    assert_eq!(h.counting_keys.by_hash.load(Ordering::SeqCst), 2);
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
