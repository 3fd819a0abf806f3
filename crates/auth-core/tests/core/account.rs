//! `AccountService` rules over the in-memory stores, the fake hasher and signer, with a
//! manual clock: expiry, rotation, reuse, grace, logout, password change, lockout.

use std::sync::Arc;

use auth_core::memory::{
    FakeHasher, FakeSigner, ManualClock, MemoryLoginAttemptStore, MemorySessionRepository,
    MemoryStore, MemoryUserRepository, NoCache,
};
use auth_core::model::{Email, PasswordHash, RefreshToken, TokenRejection};
use auth_core::ports::TokenSigner as _;
use auth_core::ports::{
    Clock as _, CreateUserError, PasswordHasher as _, StoreError, UserRepository as _,
};
use auth_core::system::OsSecretGenerator;
use auth_core::{
    AccountConfig, AccountError, AccountPorts, AccountService, ImportedUser, Registration,
};
use chrono::Duration;
use secrecy::ExposeSecret as _;

use crate::support::{MapCache, email, pw};

struct Harness {
    auth: AccountService,
    clock: Arc<ManualClock>,
    users: Arc<MemoryUserRepository>,
    hasher: Arc<FakeHasher>,
}

/// Ports over the given users, sessions and session cache, with the fake hasher making
/// `version` hashes, the fake signer and `clock`; the rest in memory.
fn ports(
    users: Arc<dyn auth_core::ports::UserRepository>,
    sessions: Arc<dyn auth_core::ports::SessionRepository>,
    session_cache: Arc<
        dyn auth_core::ports::VerificationCache<
                auth_core::model::SessionId,
                auth_core::SessionSnapshot,
            >,
    >,
    clock: Arc<ManualClock>,
    version: u8,
) -> AccountPorts {
    AccountPorts {
        users,
        sessions,
        hasher: Arc::new(FakeHasher::with_version(version)),
        signer: Arc::new(FakeSigner::new()),
        clock,
        secrets: Arc::new(OsSecretGenerator),
        session_cache,
        attempts: Arc::new(MemoryLoginAttemptStore::new()),
        // Over a store of its own: deletion finds none of these users. The harness that
        // deletes sets the remover of its store.
        accounts: MemoryStore::new().accounts,
    }
}

fn harness_with(config: AccountConfig, version: u8) -> Harness {
    let clock = Arc::new(ManualClock::starting_now());
    let store = MemoryStore::new();
    let users = store.users.clone();
    let hasher = Arc::new(FakeHasher::with_version(version));
    let mut ports = ports(
        users.clone(),
        store.sessions.clone(),
        Arc::new(NoCache),
        clock.clone(),
        version,
    );
    ports.hasher = hasher.clone();
    ports.accounts = store.accounts.clone();
    Harness {
        auth: AccountService::new(ports, config),
        clock,
        users,
        hasher,
    }
}

fn harness() -> Harness {
    harness_with(AccountConfig::default(), 1)
}

async fn registered(h: &Harness) -> Email {
    registered_on(&h.auth).await
}

/// A new user whose password is "first password".
async fn registered_on(auth: &AccountService) -> Email {
    let e = email();
    auth.register(
        Registration {
            email: e.clone(),
            password: pw("first password"),
            display_name: None,
        },
        false,
    )
    .await
    .unwrap();
    e
}

#[tokio::test]
async fn login_checks_the_password_and_never_says_which_part_was_wrong() {
    let h = harness();
    let e = registered(&h).await;
    let pair = h.auth.login(&e, &pw("first password")).await.unwrap();
    assert_eq!(pair.access_expires_in, 15 * 60);
    assert_eq!(pair.refresh_expires_in, 30 * 24 * 3600);
    assert!(matches!(
        h.auth.login(&e, &pw("wrong password")).await,
        Err(AccountError::InvalidCredentials)
    ));
    assert!(matches!(
        h.auth.login(&email(), &pw("first password")).await,
        Err(AccountError::InvalidCredentials)
    ));
    let upper = Email::parse(&e.as_str().to_uppercase()).unwrap();
    assert!(h.auth.login(&upper, &pw("first password")).await.is_ok());
}

#[tokio::test]
async fn access_tokens_expire_after_their_lifetime_plus_leeway() {
    let h = harness();
    let e = registered(&h).await;
    let pair = h.auth.login(&e, &pw("first password")).await.unwrap();
    let token = pair.access_token.expose_secret().to_owned();
    h.clock
        .advance(Duration::minutes(15) + Duration::seconds(29));
    assert!(h.auth.verify(&token).await.is_ok());
    h.clock.advance(Duration::seconds(1));
    assert!(matches!(
        h.auth.verify(&token).await,
        Err(AccountError::InvalidToken(TokenRejection::Expired))
    ));
}

#[tokio::test]
async fn refresh_rotates_and_reuse_ends_the_whole_session() {
    let h = harness();
    let e = registered(&h).await;
    let first = h.auth.login(&e, &pw("first password")).await.unwrap();
    h.clock.advance(Duration::minutes(1));
    let second = h.auth.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(second.session.id, first.session.id);
    assert_ne!(second.refresh_token.expose(), first.refresh_token.expose());
    // The session keeps its absolute end: refresh does not slide it.
    assert_eq!(second.session.expires_at, first.session.expires_at);
    let third = h.auth.refresh(&second.refresh_token).await.unwrap();

    // Presenting the first (spent) token again: reuse. Every token of the family dies.
    h.clock.advance(Duration::seconds(1));
    assert!(matches!(
        h.auth.refresh(&first.refresh_token).await,
        Err(AccountError::InvalidRefreshToken)
    ));
    assert!(matches!(
        h.auth.refresh(&third.refresh_token).await,
        Err(AccountError::InvalidRefreshToken)
    ));
    let access = third.access_token.expose_secret();
    assert!(matches!(
        h.auth.verify(access).await,
        Err(AccountError::InvalidToken(TokenRejection::Revoked))
    ));
    // Other sessions of the user are untouched.
    let other = h.auth.login(&e, &pw("first password")).await.unwrap();
    assert!(h.auth.refresh(&other.refresh_token).await.is_ok());
}

#[tokio::test]
async fn reuse_within_the_grace_period_is_refused_but_keeps_the_session() {
    let h = harness_with(
        AccountConfig {
            reuse_grace: Duration::seconds(5),
            ..AccountConfig::default()
        },
        1,
    );
    let e = registered(&h).await;
    let first = h.auth.login(&e, &pw("first password")).await.unwrap();
    let second = h.auth.refresh(&first.refresh_token).await.unwrap();
    h.clock.advance(Duration::seconds(5));
    assert!(matches!(
        h.auth.refresh(&first.refresh_token).await,
        Err(AccountError::InvalidRefreshToken)
    ));
    let third = h.auth.refresh(&second.refresh_token).await.unwrap();
    // Past the grace period the same presentation ends the session.
    h.clock.advance(Duration::seconds(1));
    assert!(matches!(
        h.auth.refresh(&first.refresh_token).await,
        Err(AccountError::InvalidRefreshToken)
    ));
    assert!(matches!(
        h.auth.refresh(&third.refresh_token).await,
        Err(AccountError::InvalidRefreshToken)
    ));
}

#[tokio::test]
async fn sessions_end_at_their_absolute_expiry_and_access_tokens_never_outlive_them() {
    let h = harness_with(
        AccountConfig {
            session_ttl: Duration::minutes(10),
            ..AccountConfig::default()
        },
        1,
    );
    let e = registered(&h).await;
    let pair = h.auth.login(&e, &pw("first password")).await.unwrap();
    assert_eq!(pair.access_expires_in, 600, "capped by the session");
    h.clock.advance(Duration::minutes(9));
    let pair = h.auth.refresh(&pair.refresh_token).await.unwrap();
    assert_eq!(pair.access_expires_in, 60);
    assert_eq!(pair.refresh_expires_in, 60);
    h.clock.advance(Duration::minutes(1));
    assert!(matches!(
        h.auth.refresh(&pair.refresh_token).await,
        Err(AccountError::InvalidRefreshToken)
    ));
}

#[tokio::test]
async fn logout_and_logout_all_end_sessions() {
    let h = harness();
    let e = registered(&h).await;
    let a = h.auth.login(&e, &pw("first password")).await.unwrap();
    let b = h.auth.login(&e, &pw("first password")).await.unwrap();
    let c = h.auth.login(&e, &pw("first password")).await.unwrap();
    h.auth.logout(&a.refresh_token).await.unwrap();
    assert!(h.auth.verify(a.access_token.expose_secret()).await.is_err());
    assert!(h.auth.verify(b.access_token.expose_secret()).await.is_ok());
    h.auth
        .logout(&RefreshToken::presented("never issued"))
        .await
        .unwrap();
    let ended = h.auth.logout_all(b.user.id).await.unwrap();
    assert_eq!(ended.len(), 2);
    for pair in [&b, &c] {
        assert!(
            h.auth
                .verify(pair.access_token.expose_secret())
                .await
                .is_err()
        );
        assert!(h.auth.refresh(&pair.refresh_token).await.is_err());
    }
}

#[tokio::test]
async fn password_change_keeps_the_current_session_and_ends_the_others() {
    let h = harness();
    let e = registered(&h).await;
    let here = h.auth.login(&e, &pw("first password")).await.unwrap();
    let elsewhere = h.auth.login(&e, &pw("first password")).await.unwrap();
    let principal = h
        .auth
        .verify(here.access_token.expose_secret())
        .await
        .unwrap();
    assert!(matches!(
        h.auth
            .change_password(&principal, &pw("not the password"), &pw("second password"))
            .await,
        Err(AccountError::InvalidCredentials)
    ));
    h.auth
        .change_password(&principal, &pw("first password"), &pw("second password"))
        .await
        .unwrap();
    assert!(
        h.auth
            .verify(here.access_token.expose_secret())
            .await
            .is_ok()
    );
    assert!(
        h.auth
            .verify(elsewhere.access_token.expose_secret())
            .await
            .is_err()
    );
    assert!(h.auth.refresh(&elsewhere.refresh_token).await.is_err());
    assert!(h.auth.login(&e, &pw("first password")).await.is_err());
    assert!(h.auth.login(&e, &pw("second password")).await.is_ok());
}

#[tokio::test]
async fn login_upgrades_hashes_made_with_other_parameters() {
    let h = harness_with(AccountConfig::default(), 2);
    let e = email();
    let old = FakeHasher::with_version(1)
        .hash(&pw("imported password"))
        .await
        .unwrap();
    let user = auth_core::User {
        id: auth_core::UserId::generate(),
        email: e.clone(),
        display_name: None,
        password_hash: old.clone(),
        is_admin: false,
        email_verified_at: None,
        disabled_at: None,
        last_login_at: None,
        created_at: h.clock.now(),
        updated_at: h.clock.now(),
    };
    h.users.create(&user).await.unwrap();
    h.auth.login(&e, &pw("imported password")).await.unwrap();
    let stored: PasswordHash = h
        .users
        .find_by_id(user.id)
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    assert_ne!(stored, old);
    assert!(stored.as_str().starts_with("$fake$2$"));
    assert!(h.auth.login(&e, &pw("imported password")).await.is_ok());
}

#[tokio::test]
async fn without_grace_a_reuse_read_before_the_rotation_still_ends_the_session() {
    // A parallel refresh may read the clock before the winner rotates the token.
    let h = harness();
    let e = registered(&h).await;
    let first = h.auth.login(&e, &pw("first password")).await.unwrap();
    h.clock.advance(Duration::seconds(10));
    let second = h.auth.refresh(&first.refresh_token).await.unwrap();
    h.clock.advance(Duration::seconds(-1));
    assert!(matches!(
        h.auth.refresh(&first.refresh_token).await,
        Err(AccountError::InvalidRefreshToken)
    ));
    assert!(matches!(
        h.auth.refresh(&second.refresh_token).await,
        Err(AccountError::InvalidRefreshToken)
    ));
}

/// Users whose lookups by id fail while `down` is set, as when the database goes away between
/// two statements.
struct FlakyLookups {
    inner: Arc<MemoryUserRepository>,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl auth_core::ports::UserRepository for FlakyLookups {
    async fn create(&self, user: &auth_core::model::User) -> Result<(), CreateUserError> {
        self.inner.create(user).await
    }
    async fn find_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<auth_core::model::User>, StoreError> {
        self.inner.find_by_email(email).await
    }
    async fn find_by_id(
        &self,
        id: auth_core::model::UserId,
    ) -> Result<Option<auth_core::model::User>, StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable("database went away".into()));
        }
        self.inner.find_by_id(id).await
    }
    async fn update_password(
        &self,
        id: auth_core::model::UserId,
        hash: &PasswordHash,
        why: auth_core::ports::PasswordUpdate,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.update_password(id, hash, why, now).await
    }
    async fn update_profile(
        &self,
        id: auth_core::model::UserId,
        display_name: Option<&auth_core::model::DisplayName>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<auth_core::model::User>, StoreError> {
        self.inner.update_profile(id, display_name, now).await
    }
    async fn mark_email_verified(
        &self,
        id: auth_core::model::UserId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.mark_email_verified(id, now).await
    }
}

/// A refresh answers 200 or has not spent its token: with user lookups failing after the
/// rotation (where a 503 used to leave the client holding a spent token, whose retry then
/// ended the session as a reuse), the refresh still answers, and the new token works.
#[tokio::test]
async fn a_refresh_never_spends_its_token_without_answering() {
    let clock = Arc::new(ManualClock::starting_now());
    let memory = Arc::new(MemoryUserRepository::new());
    let users = Arc::new(FlakyLookups {
        inner: memory.clone(),
        down: std::sync::atomic::AtomicBool::new(false),
    });
    let ports = ports(
        users.clone(),
        Arc::new(MemorySessionRepository::new(memory)),
        Arc::new(NoCache),
        clock,
        1,
    );
    let auth = AccountService::new(ports, AccountConfig::default());
    let e = registered_on(&auth).await;
    let first = auth.login(&e, &pw("first password")).await.unwrap();
    users.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let second = auth.refresh(&first.refresh_token).await.unwrap();
    users.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let third = auth.refresh(&second.refresh_token).await.unwrap();
    assert_eq!(third.session.id, first.session.id, "the session lives on");
}

/// Sessions that count their lookups by id (what a session-cache miss costs).
struct CountingSessions {
    inner: MemorySessionRepository,
    finds: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl auth_core::ports::SessionRepository for CountingSessions {
    async fn create(
        &self,
        session: &auth_core::model::Session,
        first: &auth_core::model::TokenHash,
    ) -> Result<(), StoreError> {
        self.inner.create(session, first).await
    }
    async fn find(
        &self,
        id: auth_core::model::SessionId,
    ) -> Result<Option<auth_core::model::Session>, StoreError> {
        self.finds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.find(id).await
    }
    async fn rotate(
        &self,
        presented: &auth_core::model::TokenHash,
        next: &auth_core::model::TokenHash,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<auth_core::ports::Rotation, StoreError> {
        self.inner.rotate(presented, next, now).await
    }
    async fn revoke(
        &self,
        id: auth_core::model::SessionId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.revoke(id, now).await
    }
    async fn revoke_by_token(
        &self,
        token: &auth_core::model::TokenHash,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<auth_core::model::SessionId>, StoreError> {
        self.inner.revoke_by_token(token, now).await
    }
    async fn revoke_all_for_user(
        &self,
        user: auth_core::model::UserId,
        keep: Option<auth_core::model::SessionId>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<auth_core::model::SessionId>, StoreError> {
        self.inner.revoke_all_for_user(user, keep, now).await
    }
}

/// A password change drops from the session cache the sessions it ended, not every user's:
/// another user's cached session is still served from the cache afterwards.
#[tokio::test]
async fn a_password_change_evicts_only_the_sessions_it_ends() {
    use std::sync::atomic::Ordering::SeqCst;
    let clock = Arc::new(ManualClock::starting_now());
    let users = Arc::new(MemoryUserRepository::new());
    let sessions = Arc::new(CountingSessions {
        inner: MemorySessionRepository::new(users.clone()),
        finds: std::sync::atomic::AtomicUsize::new(0),
    });
    let ports = ports(
        users.clone(),
        sessions.clone(),
        Arc::new(MapCache::new()),
        clock,
        1,
    );
    let auth = AccountService::new(ports, AccountConfig::default());
    let mut pairs = Vec::new();
    for _ in 0..2 {
        let e = registered_on(&auth).await;
        pairs.push((
            e.clone(),
            auth.login(&e, &pw("first password")).await.unwrap(),
        ));
    }
    let (changer, bystander) = (&pairs[0].1, &pairs[1].1);
    let other = auth
        .login(&pairs[0].0, &pw("first password"))
        .await
        .unwrap();
    for pair in [changer, bystander, &other] {
        auth.verify(pair.access_token.expose_secret())
            .await
            .unwrap();
    }
    assert_eq!(
        sessions.finds.load(SeqCst),
        3,
        "three sessions loaded once each"
    );
    let principal = auth
        .verify(changer.access_token.expose_secret())
        .await
        .unwrap();
    auth.change_password(&principal, &pw("first password"), &pw("second password"))
        .await
        .unwrap();
    auth.verify(bystander.access_token.expose_secret())
        .await
        .unwrap();
    auth.verify(changer.access_token.expose_secret())
        .await
        .unwrap();
    assert_eq!(
        sessions.finds.load(SeqCst),
        3,
        "both still served from the cache"
    );
    assert!(
        auth.verify(other.access_token.expose_secret())
            .await
            .is_err()
    );
    assert_eq!(sessions.finds.load(SeqCst), 4, "the ended one was evicted");
}

#[tokio::test]
async fn registration_refuses_a_taken_email_in_any_case() {
    let h = harness();
    let e = registered(&h).await;
    let upper = Email::parse(&e.as_str().to_uppercase()).unwrap();
    let again = h
        .auth
        .register(
            Registration {
                email: upper,
                password: pw("another password"),
                display_name: None,
            },
            false,
        )
        .await;
    assert!(matches!(again, Err(AccountError::EmailTaken)), "{again:?}");
    // The stored hash is the hasher's, never the password.
    let stored = h.users.find_by_email(&e).await.unwrap().unwrap();
    assert!(h.hasher.recognises(&stored.password_hash));
    assert_ne!(stored.password_hash.as_str(), "first password");
}

#[tokio::test]
async fn import_keeps_a_recognised_hash_and_refuses_any_other() {
    let h = harness();
    let e = email();
    let hash = h.hasher.hash(&pw("imported password")).await.unwrap();
    let created_at = h.clock.now() - Duration::days(400);
    let imported = h
        .auth
        .import(ImportedUser {
            email: e.clone(),
            password_hash: hash.clone(),
            display_name: None,
            is_admin: true,
            email_verified_at: None,
            created_at: Some(created_at),
        })
        .await
        .unwrap();
    assert_eq!(imported.password_hash, hash);
    assert_eq!(imported.created_at, created_at);
    assert!(imported.is_admin);
    assert!(h.auth.login(&e, &pw("imported password")).await.is_ok());
    let again = ImportedUser {
        email: e,
        password_hash: hash,
        display_name: None,
        is_admin: false,
        email_verified_at: None,
        created_at: None,
    };
    assert!(matches!(
        h.auth.import(again).await,
        Err(AccountError::EmailTaken)
    ));
    let foreign = ImportedUser {
        email: email(),
        password_hash: PasswordHash::new("plaintext password".into()),
        display_name: None,
        is_admin: false,
        email_verified_at: None,
        created_at: None,
    };
    assert!(matches!(
        h.auth.import(foreign).await,
        Err(AccountError::UnrecognisedHash)
    ));
}

#[tokio::test]
async fn unknown_email_and_wrong_password_each_cost_one_verification() {
    let h = harness();
    let e = registered(&h).await;
    let before = h.hasher.verifications();
    assert!(matches!(
        h.auth.login(&email(), &pw("first password")).await,
        Err(AccountError::InvalidCredentials)
    ));
    assert_eq!(h.hasher.verifications(), before + 1, "unknown email");
    assert!(matches!(
        h.auth.login(&e, &pw("wrong password")).await,
        Err(AccountError::InvalidCredentials)
    ));
    assert_eq!(h.hasher.verifications(), before + 2, "wrong password");
}

#[tokio::test]
async fn a_locked_email_is_refused_without_a_check_until_the_lock_ends() {
    let h = harness();
    let e = registered(&h).await;
    let threshold = AccountConfig::default().lockout.threshold;
    for _ in 0..threshold {
        assert!(matches!(
            h.auth.login(&e, &pw("wrong password")).await,
            Err(AccountError::InvalidCredentials)
        ));
    }
    let (verified, delayed) = (h.hasher.verifications(), h.hasher.delays());
    // Even the right password is refused while locked, after a delay instead of a check.
    let locked = h.auth.login(&e, &pw("first password")).await;
    let Err(AccountError::Locked { retry_after }) = locked else {
        panic!("expected a lock: {locked:?}");
    };
    assert!(retry_after > Duration::zero());
    assert!(retry_after <= AccountConfig::default().lockout.duration);
    assert_eq!(h.hasher.verifications(), verified, "no check while locked");
    assert_eq!(h.hasher.delays(), delayed + 1, "a delay in its place");
    // Another email is not affected.
    let other = registered(&h).await;
    assert!(h.auth.login(&other, &pw("first password")).await.is_ok());
    h.clock.advance(retry_after);
    assert!(h.auth.login(&e, &pw("first password")).await.is_ok());
}

#[tokio::test]
async fn a_successful_login_clears_the_failures_before_it() {
    let h = harness();
    let e = registered(&h).await;
    let threshold = AccountConfig::default().lockout.threshold;
    for _ in 0..2 {
        for _ in 1..threshold {
            assert!(h.auth.login(&e, &pw("wrong password")).await.is_err());
        }
        assert!(h.auth.login(&e, &pw("first password")).await.is_ok());
    }
}

#[tokio::test]
async fn a_wrong_current_password_counts_toward_the_lock() {
    let h = harness();
    let e = registered(&h).await;
    let pair = h.auth.login(&e, &pw("first password")).await.unwrap();
    let principal = h
        .auth
        .verify(pair.access_token.expose_secret())
        .await
        .unwrap();
    for _ in 0..AccountConfig::default().lockout.threshold {
        assert!(matches!(
            h.auth
                .change_password(&principal, &pw("not the password"), &pw("second password"))
                .await,
            Err(AccountError::InvalidCredentials)
        ));
    }
    assert!(matches!(
        h.auth
            .change_password(&principal, &pw("first password"), &pw("second password"))
            .await,
        Err(AccountError::Locked { .. })
    ));
    assert!(matches!(
        h.auth.login(&e, &pw("first password")).await,
        Err(AccountError::Locked { .. })
    ));
}

#[tokio::test]
async fn verify_refuses_tampered_foreign_and_device_tokens() {
    let h = harness();
    let e = registered(&h).await;
    let pair = h.auth.login(&e, &pw("first password")).await.unwrap();
    let token = pair.access_token.expose_secret().to_owned();
    assert_eq!(
        h.auth.token_kind(&token),
        Some(auth_core::model::TokenKind::User)
    );
    let principal = h.auth.verify(&token).await.unwrap();
    assert_eq!(principal.user.id, pair.user.id);
    assert_eq!(principal.session.id, pair.session.id);
    assert_eq!(principal.claims.session_id, pair.session.id);

    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let foreign = FakeSigner::with_key(b"another service")
        .sign_access(&principal.claims)
        .unwrap();
    let device = FakeSigner::new()
        .sign_device(&auth_core::model::DeviceClaims {
            device_id: auth_core::model::DeviceId::parse("frame-1").unwrap(),
            organization_id: auth_core::model::OrganizationId::generate(),
            token_id: principal.claims.token_id,
            issued_at: principal.claims.issued_at,
            expires_at: principal.claims.expires_at,
        })
        .unwrap();
    for bad in [
        String::from_utf8(tampered).unwrap(),
        foreign.expose_secret().to_owned(),
        device.expose_secret().to_owned(),
        String::new(),
    ] {
        assert!(
            matches!(
                h.auth.verify(&bad).await,
                Err(AccountError::InvalidToken(TokenRejection::Invalid))
            ),
            "{bad}"
        );
    }
}

/// A store that cannot be reached is a `Store` error carrying the store's own error, whole:
/// not a rule's answer, and printed with its cause.
#[tokio::test]
async fn a_store_outage_is_a_store_error_with_its_cause() {
    let clock = Arc::new(ManualClock::starting_now());
    let memory = Arc::new(MemoryUserRepository::new());
    let users = Arc::new(FlakyLookups {
        inner: memory.clone(),
        down: std::sync::atomic::AtomicBool::new(false),
    });
    let auth = AccountService::new(
        ports(
            users.clone(),
            Arc::new(MemorySessionRepository::new(memory)),
            Arc::new(NoCache),
            clock,
            1,
        ),
        AccountConfig::default(),
    );
    let e = registered_on(&auth).await;
    let pair = auth.login(&e, &pw("first password")).await.unwrap();
    users.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = auth
        .verify(pair.access_token.expose_secret())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AccountError::Store(StoreError::Unavailable(_))),
        "{err:?}"
    );
    assert_eq!(
        auth_core::ErrorChain(&err).to_string(),
        "store unavailable: database went away"
    );
    users.down.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(auth.verify(pair.access_token.expose_secret()).await.is_ok());
}

/// Deleting one's account takes the password: wrong ones count toward the lockout (and a
/// locked account is refused even the right one); the right one ends every session and the
/// account, and a second attempt finds nothing.
#[tokio::test]
async fn deleting_an_account_takes_the_password_and_ends_everything() {
    let h = harness();
    let e = registered(&h).await;
    let first = h.auth.login(&e, &pw("first password")).await.unwrap();
    let second = h.auth.login(&e, &pw("first password")).await.unwrap();
    let principal = h
        .auth
        .verify(first.access_token.expose_secret())
        .await
        .unwrap();

    let threshold = AccountConfig::default().lockout.threshold;
    for _ in 0..threshold {
        assert!(matches!(
            h.auth
                .delete_account(&principal, &pw("not the password"))
                .await,
            Err(AccountError::InvalidCredentials)
        ));
    }
    assert!(matches!(
        h.auth
            .delete_account(&principal, &pw("first password"))
            .await,
        Err(AccountError::Locked { .. })
    ));
    assert!(
        h.auth
            .verify(first.access_token.expose_secret())
            .await
            .is_ok()
    );

    h.clock
        .advance(AccountConfig::default().lockout.duration + Duration::seconds(1));
    h.auth
        .delete_account(&principal, &pw("first password"))
        .await
        .unwrap();
    for pair in [&first, &second] {
        assert!(matches!(
            h.auth.verify(pair.access_token.expose_secret()).await,
            Err(AccountError::InvalidToken(_))
        ));
        assert!(matches!(
            h.auth.refresh(&pair.refresh_token).await,
            Err(AccountError::InvalidRefreshToken)
        ));
    }
    assert!(matches!(
        h.auth.login(&e, &pw("first password")).await,
        Err(AccountError::InvalidCredentials)
    ));
    assert!(matches!(
        h.auth
            .delete_account(&principal, &pw("first password"))
            .await,
        Err(AccountError::InvalidToken(TokenRejection::Revoked))
    ));
}
