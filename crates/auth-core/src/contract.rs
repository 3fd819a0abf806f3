//! The contract suite every storage adapter must pass: one set of behaviours, run against the
//! in-memory adapters and against Postgres.
//!
//! An adapter's tests implement [`Fixture`] and invoke [`storage_contract_tests!`], which
//! expands to one `#[tokio::test]` per behaviour. Each test builds a fresh fixture, so
//! adapters may isolate tests however they like (a database per test, for Postgres).
#![expect(
    clippy::unwrap_used,
    reason = "a test suite: a failed expectation is a failed test"
)]

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::memory::ManualClock;
use crate::model::{DisplayName, Email, PasswordHash, Session, SessionId, TokenHash, User, UserId};
use crate::ports::{Clock, CreateUserError, Rotation, SessionRepository, UserRepository};

/// What a contract test needs from an adapter.
pub trait Fixture: Send + Sync {
    /// The user repository under test.
    fn users(&self) -> Arc<dyn UserRepository>;
    /// The session repository under test (sharing storage with `users`).
    fn sessions(&self) -> Arc<dyn SessionRepository>;
}

/// Expands to one `#[tokio::test]` per contract behaviour; `$fixture` is an async expression
/// yielding a fresh [`Fixture`].
#[macro_export]
macro_rules! storage_contract_tests {
    ($fixture:expr) => {
        $crate::storage_contract_tests!(@each $fixture;
            user_round_trip, email_unique_case_insensitively, concurrent_registrations_one_winner,
            missing_user_is_none, update_password, session_round_trip, rotation_spends_token,
            rotation_unknown_token, rotation_refuses_ended_sessions,
            concurrent_rotations_one_winner, revoke_keeps_first_time, revoke_by_spent_token,
            revoke_all_keeps_one);
    };
    (@each $fixture:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $fixture.await;
                $crate::contract::$case(&fixture).await;
            }
        )*
    };
}

fn clock() -> ManualClock {
    ManualClock::starting_now()
}

fn unique_email(tag: &str) -> Email {
    Email::parse(&format!("{tag}.{}@Example.COM", UserId::generate())).unwrap()
}

fn user(email: Email, now: DateTime<Utc>) -> User {
    User {
        id: UserId::generate(),
        email,
        display_name: Some(DisplayName::parse("Ada Lovelace").unwrap()),
        password_hash: PasswordHash::new(
            "$2b$04$abcdefghijklmnopqrstuu5Ue0Yk1T6nX7Q8Ww1lYwLxY9gk3yZ1C".into(),
        ),
        is_admin: false,
        created_at: now,
        updated_at: now,
    }
}

fn token(tag: &str) -> TokenHash {
    TokenHash::of(format!("{tag}-{}", UserId::generate()).as_bytes())
}

async fn stored_user(f: &impl Fixture, now: DateTime<Utc>) -> User {
    let u = user(unique_email("owner"), now);
    f.users().create(&u).await.unwrap();
    u
}

fn session_for(user: &User, now: DateTime<Utc>) -> Session {
    Session {
        id: SessionId::generate(),
        user_id: user.id,
        created_at: now,
        expires_at: now + Duration::days(30),
        revoked_at: None,
    }
}

/// A created user reads back field for field, by id and by email in any case.
pub async fn user_round_trip(f: &impl Fixture) {
    let now = clock().now();
    let u = user(unique_email("round"), now);
    f.users().create(&u).await.unwrap();
    let by_id = f.users().find_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(by_id, u);
    assert_eq!(by_id.email.as_str(), u.email.as_str(), "stored as typed");
    let upper = Email::parse(&u.email.as_str().to_uppercase()).unwrap();
    let by_email = f.users().find_by_email(&upper).await.unwrap().unwrap();
    assert_eq!(by_email, u);
}

/// A second account whose email differs only in case is refused.
pub async fn email_unique_case_insensitively(f: &impl Fixture) {
    let now = clock().now();
    let first = user(unique_email("dup"), now);
    f.users().create(&first).await.unwrap();
    let again = user(
        Email::parse(&first.email.as_str().to_lowercase()).unwrap(),
        now,
    );
    let err = f.users().create(&again).await.unwrap_err();
    assert!(matches!(err, CreateUserError::EmailTaken), "{err:?}");
    assert!(f.users().find_by_id(again.id).await.unwrap().is_none());
}

/// Of 20 concurrent registrations of one email in mixed case, exactly one wins.
pub async fn concurrent_registrations_one_winner(f: &impl Fixture) {
    let now = clock().now();
    let base = unique_email("race");
    let attempts = (0..20).map(|i| {
        let repo = f.users();
        let raw = if i % 2 == 0 {
            base.as_str().to_uppercase()
        } else {
            base.as_str().to_lowercase()
        };
        let u = user(Email::parse(&raw).unwrap(), now);
        async move { repo.create(&u).await }
    });
    let results = futures::future::join_all(attempts).await;
    let mut wins = 0;
    for r in results {
        match r {
            Ok(()) => wins += 1,
            Err(CreateUserError::EmailTaken) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(wins, 1);
}

/// Lookups of absent users answer `None`.
pub async fn missing_user_is_none(f: &impl Fixture) {
    assert!(
        f.users()
            .find_by_id(UserId::generate())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        f.users()
            .find_by_email(&unique_email("nobody"))
            .await
            .unwrap()
            .is_none()
    );
}

/// `update_password` replaces the hash and `updated_at`, and reports a missing user.
pub async fn update_password(f: &impl Fixture) {
    let c = clock();
    let u = stored_user(f, c.now()).await;
    c.advance(Duration::seconds(5));
    let new_hash =
        PasswordHash::new("$2b$04$zyxwvutsrqponmlkjihgfeYHPs3Tzj0HfD7Q9bGZ4qQ8rXJ0WkC1e".into());
    assert!(
        f.users()
            .update_password(u.id, &new_hash, c.now())
            .await
            .unwrap()
    );
    let read = f.users().find_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(read.password_hash, new_hash);
    assert_eq!(read.updated_at, c.now());
    assert_eq!(read.created_at, u.created_at);
    assert!(
        !f.users()
            .update_password(UserId::generate(), &new_hash, c.now())
            .await
            .unwrap()
    );
}

/// A created session reads back field for field.
pub async fn session_round_trip(f: &impl Fixture) {
    let now = clock().now();
    let u = stored_user(f, now).await;
    let s = session_for(&u, now);
    f.sessions().create(&s, &token("first")).await.unwrap();
    assert_eq!(f.sessions().find(s.id).await.unwrap(), Some(s));
    assert_eq!(
        f.sessions().find(SessionId::generate()).await.unwrap(),
        None
    );
}

/// Rotation spends the presented token; presenting it again is a reuse, with its time.
pub async fn rotation_spends_token(f: &impl Fixture) {
    let c = clock();
    let u = stored_user(f, c.now()).await;
    let s = session_for(&u, c.now());
    let (t1, t2, t3) = (token("t1"), token("t2"), token("t3"));
    f.sessions().create(&s, &t1).await.unwrap();
    c.advance(Duration::seconds(10));
    let rotated_at = c.now();
    assert_eq!(
        f.sessions().rotate(&t1, &t2, rotated_at).await.unwrap(),
        Rotation::Rotated(s.clone())
    );
    c.advance(Duration::seconds(10));
    assert_eq!(
        f.sessions().rotate(&t1, &t3, c.now()).await.unwrap(),
        Rotation::Reused {
            session_id: s.id,
            rotated_at
        }
    );
    // The reuse attempt changed nothing: t3 was not stored, t2 is still current.
    assert_eq!(
        f.sessions()
            .rotate(&t3, &token("x"), c.now())
            .await
            .unwrap(),
        Rotation::Unknown
    );
    assert_eq!(
        f.sessions().rotate(&t2, &t3, c.now()).await.unwrap(),
        Rotation::Rotated(s)
    );
}

/// An unknown token rotates nothing.
pub async fn rotation_unknown_token(f: &impl Fixture) {
    let now = clock().now();
    assert_eq!(
        f.sessions()
            .rotate(&token("nope"), &token("next"), now)
            .await
            .unwrap(),
        Rotation::Unknown
    );
}

/// Tokens of revoked or expired sessions do not rotate, and the attempt changes nothing.
pub async fn rotation_refuses_ended_sessions(f: &impl Fixture) {
    let c = clock();
    let u = stored_user(f, c.now()).await;
    let expiring = Session {
        expires_at: c.now() + Duration::seconds(60),
        ..session_for(&u, c.now())
    };
    let (te, tr) = (token("expiring"), token("revoked"));
    f.sessions().create(&expiring, &te).await.unwrap();
    let revoked = session_for(&u, c.now());
    f.sessions().create(&revoked, &tr).await.unwrap();
    assert!(f.sessions().revoke(revoked.id, c.now()).await.unwrap());
    assert_eq!(
        f.sessions()
            .rotate(&tr, &token("n"), c.now())
            .await
            .unwrap(),
        Rotation::Inactive
    );
    c.advance(Duration::seconds(61));
    let next = token("n2");
    assert_eq!(
        f.sessions().rotate(&te, &next, c.now()).await.unwrap(),
        Rotation::Inactive
    );
    assert_eq!(
        f.sessions()
            .rotate(&next, &token("n3"), c.now())
            .await
            .unwrap(),
        Rotation::Unknown
    );
    // Still unspent: seen as current of an inactive session, not as a reuse.
    assert_eq!(
        f.sessions()
            .rotate(&te, &token("n4"), c.now())
            .await
            .unwrap(),
        Rotation::Inactive
    );
}

/// Of 20 concurrent rotations of one token, exactly one wins; the rest see a reuse.
pub async fn concurrent_rotations_one_winner(f: &impl Fixture) {
    let now = clock().now();
    let u = stored_user(f, now).await;
    let s = session_for(&u, now);
    let t = token("shared");
    f.sessions().create(&s, &t).await.unwrap();
    let attempts = (0..20).map(|i| {
        let repo = f.sessions();
        async move { repo.rotate(&t, &token(&format!("next{i}")), now).await }
    });
    let results = futures::future::join_all(attempts).await;
    let (mut rotated, mut reused) = (0, 0);
    for r in results {
        match r.unwrap() {
            Rotation::Rotated(_) => rotated += 1,
            Rotation::Reused { session_id, .. } => {
                assert_eq!(session_id, s.id);
                reused += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((rotated, reused), (1, 19));
}

/// Revoking twice reports the second as a no-op and keeps the first `revoked_at`.
pub async fn revoke_keeps_first_time(f: &impl Fixture) {
    let c = clock();
    let u = stored_user(f, c.now()).await;
    let s = session_for(&u, c.now());
    f.sessions().create(&s, &token("r")).await.unwrap();
    let first = c.now();
    assert!(f.sessions().revoke(s.id, first).await.unwrap());
    c.advance(Duration::seconds(3));
    assert!(!f.sessions().revoke(s.id, c.now()).await.unwrap());
    assert_eq!(
        f.sessions().find(s.id).await.unwrap().unwrap().revoked_at,
        Some(first)
    );
    assert!(
        !f.sessions()
            .revoke(SessionId::generate(), c.now())
            .await
            .unwrap()
    );
}

/// Any token a session issued, spent or current, finds it for logout.
pub async fn revoke_by_spent_token(f: &impl Fixture) {
    let now = clock().now();
    let u = stored_user(f, now).await;
    let s = session_for(&u, now);
    let (t1, t2) = (token("a"), token("b"));
    f.sessions().create(&s, &t1).await.unwrap();
    f.sessions().rotate(&t1, &t2, now).await.unwrap();
    assert_eq!(
        f.sessions().revoke_by_token(&t1, now).await.unwrap(),
        Some(s.id)
    );
    assert!(
        !f.sessions()
            .find(s.id)
            .await
            .unwrap()
            .unwrap()
            .is_active(now)
    );
    assert_eq!(
        f.sessions().rotate(&t2, &token("c"), now).await.unwrap(),
        Rotation::Inactive
    );
    assert_eq!(
        f.sessions()
            .revoke_by_token(&token("unknown"), now)
            .await
            .unwrap(),
        None
    );
}

/// `revoke_all_for_user` ends every active session of that user but the kept one, and no
/// other user's.
pub async fn revoke_all_keeps_one(f: &impl Fixture) {
    let now = clock().now();
    let u = stored_user(f, now).await;
    let other = stored_user(f, now).await;
    let sessions: Vec<Session> = (0..3).map(|_| session_for(&u, now)).collect();
    for s in &sessions {
        f.sessions().create(s, &token("s")).await.unwrap();
    }
    let theirs = session_for(&other, now);
    f.sessions().create(&theirs, &token("o")).await.unwrap();
    f.sessions().revoke(sessions[2].id, now).await.unwrap();

    let ended = f
        .sessions()
        .revoke_all_for_user(u.id, Some(sessions[0].id), now)
        .await
        .unwrap();
    assert_eq!(ended, vec![sessions[1].id]);
    assert!(
        f.sessions()
            .find(sessions[0].id)
            .await
            .unwrap()
            .unwrap()
            .is_active(now)
    );
    assert!(
        f.sessions()
            .find(theirs.id)
            .await
            .unwrap()
            .unwrap()
            .is_active(now)
    );
    let all = f
        .sessions()
        .revoke_all_for_user(u.id, None, now)
        .await
        .unwrap();
    assert_eq!(all, vec![sessions[0].id]);
}
