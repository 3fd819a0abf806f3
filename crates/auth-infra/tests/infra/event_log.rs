//! Following the event log in Postgres, the way it goes wrong in production: an event that
//! commits after a later one, an append that rolls back, a listener connection that dies
//! while a key is revoked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use auth_core::LogFollower;
use auth_core::memory::ManualClock;
use auth_core::model::{
    ApiKey, ApiKeyId, ApiKeyName, ApiKeyStatus, OrganizationId, Scopes, SessionId, TokenHash,
};
use auth_core::ports::{
    ApiKeyRepository, Clock, Invalidation, InvalidationBus, InvalidationHandler,
};
use auth_core::system::SystemClock;
use auth_infra::cache::CacheTrust;
use auth_infra::postgres::{PgApiKeyRepository, PgEventLog, PgInvalidationBus};
use auth_infra::test_support::TestDb;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// Records what it is told.
#[derive(Default)]
struct Recorder {
    invalidated: Mutex<Vec<Invalidation>>,
    flushes: AtomicUsize,
}

#[async_trait]
impl InvalidationHandler for Recorder {
    async fn invalidate(&self, event: Invalidation) {
        self.invalidated.lock().unwrap().push(event);
    }
    async fn flush(&self) {
        self.flushes.fetch_add(1, Ordering::SeqCst);
    }
}

impl Recorder {
    fn flushes(&self) -> usize {
        AtomicUsize::load(&self.flushes, Ordering::SeqCst)
    }

    fn has(&self, event: &Invalidation) -> bool {
        self.invalidated.lock().unwrap().contains(event)
    }
}

/// An insert of one `session.ended` event for `session`, as a repository would append it.
fn append_sql(session: SessionId) -> String {
    format!(
        "INSERT INTO events (id, at, action, target_type, target_id, invalidates) \
         VALUES (gen_random_uuid(), now(), 'session.ended', 'session', '{session}', 's:{session}')"
    )
}

async fn connect(db: &TestDb) -> AsyncPgConnection {
    AsyncPgConnection::establish(db.url()).await.unwrap()
}

/// The commit-order pitfall: transaction A takes a position, B takes the next one and commits
/// first. A follower that read B's event must still apply A's when A commits.
#[tokio::test]
async fn an_event_committed_after_a_later_one_is_applied() {
    let db = TestDb::new().await;
    let handler = Arc::new(Recorder::default());
    let clock = Arc::new(ManualClock::starting_now());
    let mut follower = LogFollower::new(
        Arc::new(PgEventLog::new(db.pool())),
        handler.clone(),
        clock.clone(),
    );
    follower.pass().await.unwrap();

    let (early, late) = (SessionId::generate(), SessionId::generate());
    let mut a = connect(&db).await;
    let mut b = connect(&db).await;
    a.batch_execute(&format!("BEGIN; {}", append_sql(early)))
        .await
        .unwrap();
    b.batch_execute(&format!("BEGIN; {}; COMMIT", append_sql(late)))
        .await
        .unwrap();

    follower.pass().await.unwrap();
    assert!(handler.has(&Invalidation::Session(late)));
    assert!(
        !handler.has(&Invalidation::Session(early)),
        "not committed yet"
    );
    assert_eq!(follower.holes(), 1, "A's position is watched");

    a.batch_execute("COMMIT").await.unwrap();
    clock.advance(chrono::Duration::seconds(30));
    follower.pass().await.unwrap();
    assert!(
        handler.has(&Invalidation::Session(early)),
        "the late commit is applied"
    );
    assert_eq!(follower.holes(), 0);
    assert_eq!(handler.flushes(), 0);
}

/// A rolled-back append leaves a hole for good: it is watched for a while, then forgotten;
/// a notification for a position already passed puts it back under watch.
#[tokio::test]
async fn holes_of_rolled_back_appends_expire_and_notified_positions_are_rechecked() {
    let db = TestDb::new().await;
    let handler = Arc::new(Recorder::default());
    let clock = Arc::new(ManualClock::starting_now());
    let mut follower = LogFollower::new(
        Arc::new(PgEventLog::new(db.pool())),
        handler.clone(),
        clock.clone(),
    );
    follower.pass().await.unwrap();
    let mut conn = connect(&db).await;
    conn.batch_execute(&format!(
        "BEGIN; {}; ROLLBACK",
        append_sql(SessionId::generate())
    ))
    .await
    .unwrap();
    let after = SessionId::generate();
    conn.batch_execute(&append_sql(after)).await.unwrap();
    follower.pass().await.unwrap();
    assert!(handler.has(&Invalidation::Session(after)));
    assert_eq!(follower.holes(), 1);
    clock.advance(auth_core::service::follow::HOLE_PATIENCE + chrono::Duration::seconds(1));
    follower.pass().await.unwrap();
    assert_eq!(follower.holes(), 0, "the hole expired");

    // Simulate an event that commits after its hole expired, announced by its notification.
    let position = follower.position().unwrap();
    let very_late = SessionId::generate();
    conn.batch_execute(&format!(
        "INSERT INTO events (seq, id, at, action, target_type, target_id, invalidates) \
         OVERRIDING SYSTEM VALUE VALUES ({}, gen_random_uuid(), now(), 'session.ended', \
         'session', '{very_late}', 's:{very_late}')",
        position - 1
    ))
    .await
    .unwrap();
    follower.pass().await.unwrap();
    assert!(!handler.has(&Invalidation::Session(very_late)));
    follower.recheck(position - 1);
    follower.pass().await.unwrap();
    assert!(handler.has(&Invalidation::Session(very_late)));
}

/// An instance whose follower is behind what retention deleted flushes its caches.
#[tokio::test]
async fn a_follower_behind_retention_flushes() {
    let db = TestDb::new().await;
    let handler = Arc::new(Recorder::default());
    let mut follower = LogFollower::new(
        Arc::new(PgEventLog::new(db.pool())),
        handler.clone(),
        Arc::new(SystemClock),
    );
    follower.pass().await.unwrap();
    let mut conn = connect(&db).await;
    for _ in 0..3 {
        conn.batch_execute(&append_sql(SessionId::generate()))
            .await
            .unwrap();
    }
    let position = follower.position().unwrap();
    conn.batch_execute(&format!("DELETE FROM events WHERE seq <= {}", position + 2))
        .await
        .unwrap();
    let pass = follower.resume().await.unwrap();
    assert!(pass.flushed);
    assert_eq!(handler.flushes(), 1);
    assert_eq!(pass.applied, 1, "what is left is applied");
}

#[derive(diesel::QueryableByName)]
struct Killed {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    done: bool,
}

/// A failover to a standby that never received the newest events (asynchronous replication),
/// or a restored database: the log now holds less than the follower has read, and its next
/// positions repeat ones the follower passed. It flushes and follows from the log's newest.
#[tokio::test]
async fn a_log_that_lost_events_already_read_is_followed_from_its_newest() {
    let db = TestDb::new().await;
    let handler = Arc::new(Recorder::default());
    let mut follower = LogFollower::new(
        Arc::new(PgEventLog::new(db.pool())),
        handler.clone(),
        Arc::new(SystemClock),
    );
    follower.pass().await.unwrap();
    let mut conn = connect(&db).await;
    for _ in 0..3 {
        conn.batch_execute(&append_sql(SessionId::generate()))
            .await
            .unwrap();
    }
    follower.pass().await.unwrap();
    let position = follower.position().unwrap();
    // The standby had only the first of the three; its sequence goes on from there.
    conn.batch_execute(&format!(
        "DELETE FROM events WHERE seq > {keep}; \
         ALTER TABLE events ALTER COLUMN seq RESTART WITH {next}",
        keep = position - 2,
        next = position - 1
    ))
    .await
    .unwrap();
    let pass = follower.resume().await.unwrap();
    assert!(pass.flushed, "what the caches hold may rest on lost events");
    assert_eq!(follower.position(), Some(position - 2));

    let after = SessionId::generate();
    conn.batch_execute(&append_sql(after)).await.unwrap();
    follower.pass().await.unwrap();
    assert!(
        handler.has(&Invalidation::Session(after)),
        "an event at a position passed before the failover is applied"
    );
}

/// A jump of the sequence far larger than any burst of rolled-back writes cannot be watched
/// position by position: the follower flushes, and follows on from after the jump.
#[tokio::test]
async fn a_jump_past_the_watchable_holes_flushes_and_follows_on() {
    let db = TestDb::new().await;
    let handler = Arc::new(Recorder::default());
    let mut follower = LogFollower::new(
        Arc::new(PgEventLog::new(db.pool())),
        handler.clone(),
        Arc::new(SystemClock),
    );
    follower.pass().await.unwrap();
    let mut conn = connect(&db).await;
    let position = follower.position().unwrap();
    let beyond = position + 1 + i64::try_from(auth_core::service::follow::MAX_HOLES).unwrap() + 5;
    let far = SessionId::generate();
    conn.batch_execute(&format!(
        "ALTER TABLE events ALTER COLUMN seq RESTART WITH {beyond}; {}",
        append_sql(far)
    ))
    .await
    .unwrap();
    let pass = follower.pass().await.unwrap();
    assert!(pass.flushed);
    assert_eq!(handler.flushes(), 1);
    assert!(handler.has(&Invalidation::Session(far)));
    assert_eq!(follower.holes(), 0);
    assert_eq!(follower.position(), Some(beyond));

    let next = SessionId::generate();
    conn.batch_execute(&append_sql(next)).await.unwrap();
    follower.pass().await.unwrap();
    assert!(handler.has(&Invalidation::Session(next)));
    assert_eq!(handler.flushes(), 1, "one flush, not one per pass");
}

fn key(org: OrganizationId, now: chrono::DateTime<chrono::Utc>) -> ApiKey {
    ApiKey {
        id: ApiKeyId::generate(),
        organization_id: org,
        name: ApiKeyName::parse("listener test").unwrap(),
        prefix: "ak_test".to_owned(),
        key_hash: TokenHash::of(ApiKeyId::generate().to_string().as_bytes()),
        scopes: Scopes::from_stored(vec![]),
        created_at: now,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        meta: None,
        external_id: None,
        rate_limit: None,
        credits: None,
    }
}

/// The listening connection is killed, and a key is revoked while it is down: the instance
/// applies that revocation from the log when it reconnects, without flushing its caches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_while_the_listener_is_down_is_applied_after_it_reconnects() {
    let db = TestDb::new().await;
    let handler = Arc::new(Recorder::default());
    let following = Arc::new(CacheTrust::default());
    let bus = PgInvalidationBus::start(
        db.url(),
        db.pool(),
        handler.clone(),
        Arc::new(SystemClock),
        following.clone(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !bus.is_connected() {
        assert!(tokio::time::Instant::now() < deadline, "never followed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flushes_before = handler.flushes();

    let org = OrganizationId::generate();
    TestDb::execute(
        &db,
        &format!("INSERT INTO organizations (id, name, created_at) VALUES ('{org}', 'o', now())"),
    )
    .await;
    let keys = PgApiKeyRepository::new(db.pool());
    let now = SystemClock.now();
    let k = key(org, now);
    keys.create(&k).await.unwrap();

    // Kill the listener, then revoke at once (the listener waits at least 100 ms to reconnect).
    let killed: Vec<Killed> = diesel::sql_query(
        "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity \
         WHERE application_name = 'auth-server event log listener' \
         AND datname = current_database()",
    )
    .load(&mut connect(&db).await)
    .await
    .unwrap();
    assert_eq!(killed.len(), 1, "one listening connection");
    assert!(killed[0].done);
    keys.revoke(k.id, now).await.unwrap();
    assert_eq!(
        keys.find(k.id).await.unwrap().unwrap().status(now),
        ApiKeyStatus::Revoked
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !handler.has(&Invalidation::ApiKey(k.key_hash)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revocation was not applied after the listener reconnected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        handler.flushes(),
        flushes_before,
        "applied from the log, not by flushing everything"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !following.is_trusted() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "following again after the reconnect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Applies events slowly once armed: a follower short of CPU, or stuck on a slow read, that
/// still counts as following.
#[derive(Default)]
struct Stalling {
    recorder: Recorder,
    stall: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl InvalidationHandler for Stalling {
    async fn invalidate(&self, event: Invalidation) {
        if std::sync::atomic::AtomicBool::load(&self.stall, Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(2_500)).await;
        }
        self.recorder.invalidate(event).await;
    }
    async fn flush(&self) {
        self.recorder.flush().await;
    }
}

/// A key revoked while the follower falls behind (connected, "following", but its pass takes
/// 2.5 s): one second after the revocation committed, the cache no longer answers alone. It
/// reads the database and sees the revocation, although the invalidation has not been
/// applied yet. (With trust as a flag, set while connected, the cache answered `active`
/// until the slow pass ended.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_falls_behind_stops_its_caches_answering_alone() {
    use auth_core::ports::VerificationCache;
    use auth_infra::cache::MokaCache;

    let db = TestDb::new().await;
    let handler = Arc::new(Stalling::default());
    let trust = Arc::new(CacheTrust::default());
    let bus = PgInvalidationBus::start(
        db.url(),
        db.pool(),
        handler.clone(),
        Arc::new(SystemClock),
        trust.clone(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(bus.is_connected() && trust.is_trusted()) {
        assert!(tokio::time::Instant::now() < deadline, "never followed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let org = OrganizationId::generate();
    TestDb::execute(
        &db,
        &format!("INSERT INTO organizations (id, name, created_at) VALUES ('{org}', 'o', now())"),
    )
    .await;
    let keys = Arc::new(PgApiKeyRepository::new(db.pool()));
    let now = SystemClock.now();
    let k = key(org, now);
    keys.create(&k).await.unwrap();
    let cache: MokaCache<TokenHash, ApiKey> =
        MokaCache::new("stall test", 100, Duration::from_secs(300)).trusted_while(trust.clone());
    let lookup = || {
        let keys = keys.clone();
        let hash = k.key_hash;
        cache.get_or_load(
            hash,
            Box::pin(async move { keys.find_by_hash(&hash).await }),
        )
    };
    assert_eq!(
        lookup().await.unwrap().unwrap().status(now),
        ApiKeyStatus::Active
    );

    handler.stall.store(true, Ordering::SeqCst);
    keys.revoke(k.id, now).await.unwrap();
    let revoked = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(
        !handler.recorder.has(&Invalidation::ApiKey(k.key_hash)),
        "the test needs the invalidation still unapplied"
    );
    let answer = lookup().await.unwrap().unwrap();
    assert!(revoked.elapsed() < Duration::from_millis(2_000));
    assert_eq!(
        answer.status(now),
        ApiKeyStatus::Revoked,
        "1 s after the revocation, with the follower behind, the cache must read the database"
    );

    // Once the follower has caught up, the cache answers alone again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(handler.recorder.has(&Invalidation::ApiKey(k.key_hash)) && trust.is_trusted()) {
        assert!(tokio::time::Instant::now() < deadline, "never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
