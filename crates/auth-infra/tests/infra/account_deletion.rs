//! Account deletion on Postgres beyond the shared contract: no foreign key deletes a session's
//! refresh tokens with it, so the deletion does, and a refresh racing it must not leave a
//! token behind whose session is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use auth_core::model::{Session, SessionId, TokenHash, UserId};
use auth_core::ports::{AccountRemover as _, Rotation, SessionRepository as _};
use auth_infra::postgres::DbPool;
use auth_infra::test_support::TestStore;
use chrono::Utc;

use crate::count;

/// Token rows whose session no longer exists.
async fn orphans(pool: &DbPool) -> i64 {
    count(
        pool,
        "SELECT count(*) AS n FROM refresh_tokens rt \
         WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = rt.session_id)",
    )
    .await
}

fn token() -> TokenHash {
    TokenHash::of(UserId::generate().to_string().as_bytes())
}

/// A user, written straight into the table: only its id matters here.
async fn stored_user(store: &TestStore, tag: &str) -> UserId {
    let id = UserId::generate();
    let email = format!("{tag}.{id}@example.com");
    store
        .db
        .execute(&format!(
            "INSERT INTO users (id, email, email_normalized, password_hash, created_at, updated_at) \
             VALUES ('{id}', '{email}', '{email}', 'x', now(), now())"
        ))
        .await;
    id
}

/// A live session of `user` with its first token.
async fn session(store: &TestStore, user: UserId) -> (SessionId, TokenHash) {
    let now = Utc::now();
    let session = Session {
        id: SessionId::generate(),
        user_id: user,
        created_at: now,
        expires_at: now + chrono::Duration::days(30),
        revoked_at: None,
    };
    let first = token();
    store.sessions.create(&session, &first).await.unwrap();
    (session.id, first)
}

/// Every token of every session of the user goes: the live sessions' current and spent ones,
/// and those of a session that had already ended. Another user's stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_deletion_deletes_every_token_of_its_sessions() {
    let store = TestStore::new().await;
    let pool = store.db.pool();
    let (gone, kept) = (
        stored_user(&store, "gone").await,
        stored_user(&store, "kept").await,
    );
    let (live, first) = session(&store, gone).await;
    let next = token();
    assert!(matches!(
        store
            .sessions
            .rotate(&first, &next, Utc::now())
            .await
            .unwrap(),
        Rotation::Rotated { .. }
    ));
    let (ended, _) = session(&store, gone).await;
    assert!(store.sessions.revoke(ended, Utc::now()).await.unwrap());
    let (other, _) = session(&store, kept).await;
    assert_eq!(
        count(&pool, "SELECT count(*) AS n FROM refresh_tokens").await,
        4
    );

    let ended_now = store
        .accounts
        .delete_account(gone, Utc::now())
        .await
        .unwrap();
    assert_eq!(ended_now, vec![live]);
    assert_eq!(
        count(&pool, "SELECT count(*) AS n FROM refresh_tokens").await,
        1
    );
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) AS n FROM refresh_tokens WHERE session_id = '{other}'"),
        )
        .await,
        1
    );
    assert_eq!(orphans(&pool).await, 0);
}

/// Refreshes in tight loops on every session of an account while it is deleted, many times
/// over: a refresh that spent its token before the deletion reached it inserts a successor the
/// deletion's first statement cannot see. Nothing may be left whose session is gone, and no
/// refresh may fail with anything but the end of its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_racing_account_deletion_leaves_no_token_behind() {
    const ROUNDS: usize = 30;
    const SESSIONS: usize = 6;
    let store = Arc::new(TestStore::new().await);
    let pool = store.db.pool();
    // Refreshes that succeeded while a deletion was under way: the race the test is about.
    let overlapped = Arc::new(AtomicU32::new(0));
    for round in 0..ROUNDS {
        let user = stored_user(&store, &format!("racer{round}")).await;
        let mut sessions = Vec::new();
        for _ in 0..SESSIONS {
            sessions.push(session(&store, user).await);
        }
        let started = Arc::new(AtomicBool::new(false));
        let deleting = Arc::new(AtomicBool::new(false));
        let mut refreshers = Vec::new();
        for (_, first) in sessions {
            let (store, started, deleting, overlapped) = (
                store.clone(),
                started.clone(),
                deleting.clone(),
                overlapped.clone(),
            );
            refreshers.push(tokio::spawn(async move {
                let (mut current, mut rotations) = (first, 0u32);
                loop {
                    let next = token();
                    match store.sessions.rotate(&current, &next, Utc::now()).await {
                        Ok(Rotation::Rotated { .. }) => {
                            current = next;
                            rotations += 1;
                            if rotations == 3 {
                                started.store(true, Ordering::Release);
                            }
                            if deleting.load(Ordering::Acquire) {
                                overlapped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        // The deletion won: the token is gone (or, were one left behind,
                        // its session is, which the count of rows below catches).
                        Ok(Rotation::Unknown | Rotation::Inactive) => break,
                        Ok(other) => panic!("a refresh racing the deletion answered {other:?}"),
                        Err(e) => panic!("a refresh racing the deletion failed: {e:?}"),
                    }
                }
            }));
        }
        while !started.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        deleting.store(true, Ordering::Release);
        store
            .accounts
            .delete_account(user, Utc::now())
            .await
            .unwrap();
        deleting.store(false, Ordering::Release);
        for refresher in refreshers {
            tokio::time::timeout(Duration::from_secs(10), refresher)
                .await
                .expect("every refresher stops once its session is gone")
                .unwrap();
        }
        assert_eq!(orphans(&pool).await, 0, "round {round}");
    }
    assert_eq!(
        count(&pool, "SELECT count(*) AS n FROM refresh_tokens").await,
        0
    );
    eprintln!(
        "refreshes that succeeded during a deletion: {}",
        overlapped.load(Ordering::Relaxed)
    );
    assert!(
        overlapped.load(Ordering::Relaxed) > 0,
        "no refresh succeeded while a deletion was under way: the race was never run"
    );
}
