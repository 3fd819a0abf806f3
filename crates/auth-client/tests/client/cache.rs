//! The API-key verification cache: hits, scopes checked locally, staleness after a
//! revocation, negative verdicts, failures never cached, the size bound.

use std::time::Duration;

use auth_client::{ApiKeyCacheConfig, ApiKeyVerdict, Credential, Error, KeyRejection, Operation};

use crate::common::{TestServer, api_key, exposed, owner_and_org};

fn hits_misses(client: &auth_client::AuthClient) -> (u64, u64) {
    let cache = client.metrics().api_key_cache.unwrap();
    (cache.hits, cache.misses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_are_cached_and_answer_while_the_service_is_down() {
    let server = TestServer::start().await;
    let client = server.client();
    let (owner, org) = owner_and_org(&client).await;
    let key = api_key(&client, &owner, &org, &["invoices:read", "invoices:write"]).await;
    let key = exposed(&key.key);

    assert!(
        client
            .verify_api_key(key, &["invoices:read"])
            .await
            .unwrap()
            .is_valid()
    );
    assert_eq!(hits_misses(&client), (0, 1));
    // Other scopes, same entry: the scopes are checked here, by the service's rule.
    assert!(
        client
            .verify_api_key(key, &["invoices:write"])
            .await
            .unwrap()
            .is_valid()
    );
    assert_eq!(
        client
            .verify_api_key(key, &["invoices:delete"])
            .await
            .unwrap(),
        ApiKeyVerdict::Rejected(KeyRejection::InsufficientScope)
    );
    // The service agrees on the scope verdict.
    assert_eq!(
        client
            .verify_api_key_remote(key, &["invoices:delete"])
            .await
            .unwrap(),
        ApiKeyVerdict::Rejected(KeyRejection::InsufficientScope)
    );
    assert_eq!(hits_misses(&client), (2, 1));
    let malformed = client
        .verify_api_key(key, &["Not A Scope"])
        .await
        .unwrap_err();
    assert!(
        matches!(malformed, Error::InvalidArgument(_)),
        "{malformed:?}"
    );

    let verifications_before = client
        .metrics()
        .operation(Operation::VerifyApiKey)
        .unwrap()
        .attempts;
    server.stop().await;
    assert!(
        client
            .verify_api_key(key, &["invoices:read"])
            .await
            .unwrap()
            .is_valid()
    );
    assert_eq!(
        client
            .metrics()
            .operation(Operation::VerifyApiKey)
            .unwrap()
            .attempts,
        verifications_before,
        "a hit sends nothing"
    );
    // A key never seen needs the service: a failure, not a verdict.
    let err = client
        .verify_api_key("ak_live_never_seen", &[])
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let cache = client.metrics().api_key_cache.unwrap();
    assert_eq!((cache.hits, cache.misses), (3, 2));
    assert!((cache.hit_rate() - 0.6).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_is_seen_after_the_ttl_or_when_the_key_is_forgotten() {
    let server = TestServer::start().await;
    let client = server
        .builder()
        .api_key_cache(Some(ApiKeyCacheConfig {
            ttl: Duration::from_secs(1),
            ..ApiKeyCacheConfig::default()
        }))
        .build()
        .unwrap();
    let (owner, org) = owner_and_org(&client).await;
    let manager = Credential::Bearer(&owner.access_token);
    let first = api_key(&client, &owner, &org, &[]).await;
    let second = api_key(&client, &owner, &org, &[]).await;
    for key in [&first, &second] {
        assert!(
            client
                .verify_api_key(exposed(&key.key), &[])
                .await
                .unwrap()
                .is_valid()
        );
        client.revoke_api_key(manager, key.id).await.unwrap();
        // Stale, as documented: the cache answers until its entry expires.
        assert!(
            client
                .verify_api_key(exposed(&key.key), &[])
                .await
                .unwrap()
                .is_valid()
        );
        assert_eq!(
            client
                .verify_api_key_remote(exposed(&key.key), &[])
                .await
                .unwrap(),
            ApiKeyVerdict::Rejected(KeyRejection::Revoked)
        );
    }
    client.forget_api_key(exposed(&first.key)).await;
    assert_eq!(
        client
            .verify_api_key(exposed(&first.key), &[])
            .await
            .unwrap(),
        ApiKeyVerdict::Rejected(KeyRejection::Revoked)
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        client
            .verify_api_key(exposed(&second.key), &[])
            .await
            .unwrap(),
        ApiKeyVerdict::Rejected(KeyRejection::Revoked)
    );
    client.clear_api_key_cache();
    client.sync_api_key_cache().await;
    assert_eq!(client.metrics().api_key_cache.unwrap().entries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_verdicts_are_kept_only_as_configured() {
    let server = TestServer::start().await;
    let made_up = "ak_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_AAAAAA";
    let default = server.client();
    for _ in 0..2 {
        assert_eq!(
            default.verify_api_key(made_up, &[]).await.unwrap(),
            ApiKeyVerdict::Rejected(KeyRejection::Invalid)
        );
    }
    assert_eq!(hits_misses(&default), (1, 1));

    let none = server
        .builder()
        .api_key_cache(Some(ApiKeyCacheConfig {
            negative_ttl: Duration::ZERO,
            ..ApiKeyCacheConfig::default()
        }))
        .build()
        .unwrap();
    for _ in 0..2 {
        assert!(!none.verify_api_key(made_up, &[]).await.unwrap().is_valid());
    }
    assert_eq!(hits_misses(&none), (0, 2));

    let uncached = server.builder().api_key_cache(None).build().unwrap();
    assert!(
        !uncached
            .verify_api_key(made_up, &[])
            .await
            .unwrap()
            .is_valid()
    );
    assert!(uncached.metrics().api_key_cache.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_never_cached() {
    let server = TestServer::start().await;
    let client = server.client();
    let (owner, org) = owner_and_org(&client).await;
    let key = api_key(&client, &owner, &org, &[]).await;
    server.stop().await;
    assert!(client.verify_api_key(exposed(&key.key), &[]).await.is_err());
    server.restart().await;
    assert!(
        client
            .verify_api_key(exposed(&key.key), &[])
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
    assert_eq!(hits_misses(&client), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_holds_at_most_its_capacity() {
    let server = TestServer::start().await;
    let client = server
        .builder()
        .api_key_cache(Some(ApiKeyCacheConfig {
            capacity: 3,
            ..ApiKeyCacheConfig::default()
        }))
        .build()
        .unwrap();
    for i in 0..20 {
        let key = format!("ak_live_made_up_{i}");
        assert!(!client.verify_api_key(&key, &[]).await.unwrap().is_valid());
    }
    client.sync_api_key_cache().await;
    let entries = client.metrics().api_key_cache.unwrap().entries;
    assert!((1..=3).contains(&entries), "{entries}");
}

/// A key's `meta` and `external_id` come back typed from a verification; a change made through
/// this client (`update_api_key`) is seen by its next verification at once (its cache forgets
/// the key), and `list_api_keys_of` lists the keys of one external id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_this_client_is_seen_at_once_with_meta_and_external_id() {
    let server = TestServer::start().await;
    let client = server.client();
    let (owner, org) = owner_and_org(&client).await;
    let manager = Credential::Bearer(&owner.access_token);
    let mut new = auth_client::NewApiKey::new(org.id, "acme", ["read", "write"]);
    new.meta = Some(serde_json::json!({"plan": "pro"}));
    new.external_id = Some("cus_acme".into());
    let created = client.create_api_key(manager, &new).await.unwrap();
    api_key(&client, &owner, &org, &["read"]).await;
    let key = exposed(&created.key);

    let ApiKeyVerdict::Valid(valid) = client.verify_api_key(key, &["write"]).await.unwrap() else {
        panic!("valid");
    };
    assert_eq!(valid.external_id.as_deref(), Some("cus_acme"));
    assert_eq!(
        valid.meta,
        Some(
            serde_json::json!({"plan": "pro"})
                .as_object()
                .cloned()
                .unwrap()
        )
    );

    let changes = auth_client::api::UpdateKey {
        scopes: Some(Some(vec!["read".into()])),
        meta: Some(None),
        ..auth_client::api::UpdateKey::default()
    };
    let changed = client
        .update_api_key(manager, created.id, &changes)
        .await
        .unwrap();
    assert_eq!(changed.scopes, ["read"]);
    assert_eq!(changed.meta, None);
    // The cached verdict for `write` is gone with the change.
    assert_eq!(
        client.verify_api_key(key, &["write"]).await.unwrap(),
        ApiKeyVerdict::Rejected(KeyRejection::InsufficientScope)
    );

    let listed = client
        .list_api_keys_of(manager, org.id, "cus_acme", false)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|k| k.id).collect::<Vec<_>>(),
        [created.id]
    );
    let refused = client
        .update_api_key(
            manager,
            created.id,
            &auth_client::api::UpdateKey {
                name: Some(None),
                ..auth_client::api::UpdateKey::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::Api(e) if e.status == 422),
        "{refused:?}"
    );
}

/// The cache never serves a verdict on a key with credits or a rate limit: 30 verifications
/// at once of a key with 10 credits through one caching client give exactly 10 valid (a
/// verification that waited for another's answer asks the service itself), each with its own
/// count; the next ones are refused, and a rate-limited key is answered `RateLimited` with its
/// window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_keys_always_reach_the_service() {
    let server = TestServer::start().await;
    let client = server.client();
    let (owner, org) = owner_and_org(&client).await;
    let mut counted = auth_client::NewApiKey::new(org.id, "counted", ["invoices:read"]);
    counted.remaining = Some(10);
    let counted = client
        .create_api_key(Credential::Bearer(&owner.access_token), &counted)
        .await
        .unwrap();
    let key = exposed(&counted.key);
    let verdicts =
        futures::future::join_all((0..30).map(|_| client.verify_api_key(key, &["invoices:read"])))
            .await;
    let mut left: Vec<u64> = verdicts
        .iter()
        .filter_map(|v| match v.as_ref().unwrap() {
            ApiKeyVerdict::Valid(k) => k.remaining,
            _ => None,
        })
        .collect();
    left.sort_unstable();
    assert_eq!(left, (0..10).collect::<Vec<u64>>());
    assert!(verdicts.iter().all(|v| matches!(
        v.as_ref().unwrap(),
        ApiKeyVerdict::Valid(_) | ApiKeyVerdict::Rejected(KeyRejection::UsageExceeded)
    )));
    assert_eq!(
        client
            .verify_api_key(key, &["invoices:read"])
            .await
            .unwrap(),
        ApiKeyVerdict::Rejected(KeyRejection::UsageExceeded)
    );

    let mut limited = auth_client::NewApiKey::new(org.id, "limited", ["invoices:read"]);
    limited.rate_limit = Some(auth_api::RateLimitSpec {
        limit: 1,
        window_seconds: 3600,
    });
    let limited = client
        .create_api_key(Credential::Bearer(&owner.access_token), &limited)
        .await
        .unwrap();
    let key = exposed(&limited.key);
    let ApiKeyVerdict::Valid(first) = client.verify_api_key(key, &[]).await.unwrap() else {
        panic!("the first use is valid");
    };
    assert_eq!(
        first.rate_limit.map(|w| (w.limit, w.remaining)),
        Some((1, 0))
    );
    let ApiKeyVerdict::RateLimited(window) = client.verify_api_key(key, &[]).await.unwrap() else {
        panic!("the second use is over the limit");
    };
    assert!((1..=3600).contains(&window.reset_seconds));
}

/// A key the client holds no valid verdict on, asked for a scope it lacks, is refused by the
/// service once; the refusal answers the same question again until the negative TTL, and
/// no other question; forgetting the key voids it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_for_want_of_scopes_is_kept_for_the_same_scopes() {
    let server = TestServer::start().await;
    let client = server.client();
    let (owner, org) = owner_and_org(&client).await;
    let key = api_key(&client, &owner, &org, &["invoices:read"]).await;
    let key = exposed(&key.key);
    let refused = ApiKeyVerdict::Rejected(KeyRejection::InsufficientScope);
    for _ in 0..3 {
        assert_eq!(
            client
                .verify_api_key(key, &["invoices:write"])
                .await
                .unwrap(),
            refused
        );
    }
    assert_eq!(hits_misses(&client), (2, 1), "one call to the service");
    // Another question is asked of the service, and its valid answer is cached.
    assert!(
        client
            .verify_api_key(key, &["invoices:read"])
            .await
            .unwrap()
            .is_valid()
    );
    assert_eq!(hits_misses(&client), (2, 2));
    client.forget_api_key(key).await;
    assert_eq!(
        client
            .verify_api_key(key, &["invoices:write"])
            .await
            .unwrap(),
        refused
    );
    assert_eq!(hits_misses(&client), (2, 3), "forgotten: asked again");
}
