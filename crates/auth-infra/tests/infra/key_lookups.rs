//! Lookups of single API keys by hash on Postgres are coalesced (`postgres/coalesce.rs`):
//! lookups arriving together share one statement, a lone one runs at once, a caller that goes
//! away takes no one's answer with it, and an outage fails every waiting lookup as
//! unavailable. That each lookup answers its own key is the storage contract's
//! `concurrent_key_lookups_answer_each_its_own`, run on both stores.

use std::sync::Arc;
use std::time::Duration;

use auth_core::model::{ApiKey, ApiKeyId, ApiKeyName, OrganizationId, Scopes, TokenHash};
use auth_core::ports::{ApiKeyRepository as _, StoreError};
use auth_infra::postgres::{PgApiKeyRepository, PoolSettings, build_pool};
use auth_infra::test_support::TestDb;
use chrono::Utc;
use futures::FutureExt as _;
use uuid::Uuid;

/// A repository whose pool has `connections` connections (a quarter of them lanes).
fn repository(db: &TestDb, connections: usize) -> Arc<PgApiKeyRepository> {
    let settings = PoolSettings {
        max_size: connections,
        timeout: Duration::from_secs(2),
        ..PoolSettings::default()
    };
    Arc::new(PgApiKeyRepository::new(
        build_pool(db.url(), settings).unwrap(),
    ))
}

/// `count` keys of a new organization, stored.
async fn stored_keys(db: &TestDb, repo: &PgApiKeyRepository, count: usize) -> Vec<ApiKey> {
    let org = Uuid::now_v7();
    db.execute(&format!(
        "INSERT INTO organizations (id, name, created_at) VALUES ('{org}', 'Lookups', now())"
    ))
    .await;
    let mut keys = Vec::new();
    for n in 0..count {
        let key = ApiKey {
            id: ApiKeyId::generate(),
            organization_id: OrganizationId::from_uuid(org),
            name: ApiKeyName::parse(&format!("key {n}")).unwrap(),
            prefix: "ak_live_lookup".into(),
            key_hash: TokenHash::of(Uuid::new_v4().as_bytes()),
            scopes: Scopes::default(),
            created_at: Utc::now(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            meta: None,
            external_id: None,
            rate_limit: None,
            credits: None,
        };
        repo.create(&key).await.unwrap();
        keys.push(repo.find(key.id).await.unwrap().unwrap());
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_arriving_together_share_statements_and_a_lone_one_runs_alone() {
    let db = TestDb::new().await;
    let repo = repository(&db, 4);
    let keys = stored_keys(&db, &repo, 50).await;

    assert_eq!(
        repo.find_by_hash(&keys[0].key_hash).await.unwrap().as_ref(),
        Some(&keys[0])
    );
    assert_eq!(
        repo.lookup_batches(),
        (1, 1),
        "a lone lookup is a statement of its own"
    );

    // 500 lookups at once (each key ten times, interleaved with hashes of no key), from
    // tasks on two threads.
    let lookups: Vec<_> = (0..500)
        .map(|n| {
            let expected = (n % 2 == 0).then(|| keys[(n / 2) % keys.len()].clone());
            let hash = expected
                .as_ref()
                .map_or_else(|| TokenHash::of(Uuid::new_v4().as_bytes()), |k| k.key_hash);
            let repo = Arc::clone(&repo);
            (
                tokio::spawn(async move { repo.find_by_hash(&hash).await }),
                expected,
            )
        })
        .collect();
    for (lookup, expected) in lookups {
        assert_eq!(lookup.await.unwrap().unwrap(), expected);
    }
    let (batches, answered) = repo.lookup_batches();
    assert_eq!(answered, 501);
    // One lane: while a statement runs, the lookups that arrive wait for the next one.
    assert!(
        batches <= 50,
        "500 lookups at once took {batches} statements"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_whose_caller_left_takes_no_other_answer_with_it() {
    let db = TestDb::new().await;
    let repo = repository(&db, 4);
    let keys = stored_keys(&db, &repo, 20).await;
    for round in 0..20 {
        // The first lookup into the empty queue starts the batch; its caller goes away right
        // after asking (polled once, then dropped), and so does every third caller after it.
        let first = keys[round % keys.len()].key_hash;
        let gone = repo.find_by_hash(&first).now_or_never();
        assert!(
            gone.is_none(),
            "the first lookup was still waiting when dropped"
        );
        let mut lookups = Vec::new();
        for (n, key) in keys.iter().enumerate() {
            if n % 3 == 0 {
                // Queued, then gone.
                assert!(repo.find_by_hash(&key.key_hash).now_or_never().is_none());
                continue;
            }
            let repo = Arc::clone(&repo);
            let hash = key.key_hash;
            lookups.push((
                tokio::spawn(async move { repo.find_by_hash(&hash).await }),
                key,
            ));
        }
        for (task, key) in lookups {
            assert_eq!(task.await.unwrap().unwrap().as_ref(), Some(key));
        }
        assert_eq!(
            repo.find_by_hash(&first).await.unwrap().map(|k| k.key_hash),
            Some(first)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_every_waiting_lookup_as_unavailable_and_lookups_resume_after() {
    let db = TestDb::new().await;
    let keys = stored_keys(&db, &repository(&db, 4), 10).await;
    // A pool with no connection open yet, so that refusing new connections is an outage.
    let repo = repository(&db, 4);
    db.allow_connections(false).await;
    let lookups: Vec<_> = keys
        .iter()
        .map(|key| {
            let repo = Arc::clone(&repo);
            let hash = key.key_hash;
            tokio::spawn(async move { repo.find_by_hash(&hash).await })
        })
        .collect();
    for lookup in lookups {
        let err = lookup.await.unwrap().unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }
    db.allow_connections(true).await;
    // The pool's breaker may hold calls back for its pause after the failures.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let found = loop {
        match repo.find_by_hash(&keys[0].key_hash).await {
            Ok(found) => break found,
            Err(err) if std::time::Instant::now() < deadline => {
                assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("lookups did not resume: {err:?}"),
        }
    };
    assert_eq!(found.as_ref(), Some(&keys[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drainer_dropped_with_its_runtime_leaves_no_lookup_waiting() {
    let db = TestDb::new().await;
    // One lane: the drainer that dies holds the only place.
    let repo = repository(&db, 4);
    let keys = stored_keys(&db, &repo, 3).await;
    let first = keys[0].key_hash;
    let on_a_dying_runtime = Arc::clone(&repo);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Queued and a drainer spawned on this runtime, which stops before running it.
        let polled =
            runtime.block_on(async { on_a_dying_runtime.find_by_hash(&first).now_or_never() });
        assert!(polled.is_none());
        drop(runtime);
    })
    .join()
    .unwrap();
    for key in &keys {
        let found = tokio::time::timeout(Duration::from_secs(5), repo.find_by_hash(&key.key_hash))
            .await
            .expect("a lookup after the drainer died is answered");
        assert_eq!(found.unwrap().as_ref(), Some(key));
    }
}
