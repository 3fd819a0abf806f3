//! `AccountService` over the real bcrypt hasher and JWT signer, for what only they show: a
//! login upgrades a bcrypt hash of another cost to the configured one. Every other account
//! rule is tested in `auth-core`, over the fake hasher and signer.

use std::sync::Arc;

use auth_core::memory::{ManualClock, MemoryLoginAttemptStore, MemoryStore, NoCache};
use auth_core::model::{Email, Password, PasswordHash, PasswordPolicy};
use auth_core::ports::{Clock as _, PasswordHasher as _, UserRepository as _};
use auth_core::system::OsSecretGenerator;
use auth_core::{AccountConfig, AccountPorts, AccountService};
use auth_infra::jwt::{JwtSettings, JwtSigner};
use auth_infra::password::BcryptHasher;
use secrecy::SecretSlice;

fn pw(s: &str) -> Password {
    PasswordPolicy::default().new_password(s).unwrap()
}

#[tokio::test]
async fn login_upgrades_hashes_made_at_another_cost() {
    let clock = Arc::new(ManualClock::starting_now());
    let store = MemoryStore::new();
    let users = store.users.clone();
    let auth = AccountService::new(
        AccountPorts {
            users: users.clone(),
            sessions: store.sessions.clone(),
            accounts: store.accounts.clone(),
            hasher: Arc::new(BcryptHasher::new(5, 2).unwrap()),
            signer: Arc::new(
                JwtSigner::hs256(
                    &SecretSlice::from(b"0123456789abcdef0123456789abcdef".to_vec()),
                    JwtSettings::default(),
                )
                .unwrap(),
            ),
            clock: clock.clone(),
            secrets: Arc::new(OsSecretGenerator),
            session_cache: Arc::new(NoCache),
            attempts: Arc::new(MemoryLoginAttemptStore::new()),
        },
        AccountConfig::default(),
    );
    let e = Email::parse(&format!(
        "user.{}@example.com",
        uuid::Uuid::now_v7().simple()
    ))
    .unwrap();
    let old = BcryptHasher::new(4, 1)
        .unwrap()
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
        created_at: clock.now(),
        updated_at: clock.now(),
    };
    users.create(&user).await.unwrap();
    auth.login(&e, &pw("imported password")).await.unwrap();
    let stored: PasswordHash = users
        .find_by_id(user.id)
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    assert_ne!(stored, old);
    assert!(stored.as_str().starts_with("$2b$05$"));
    assert!(auth.login(&e, &pw("imported password")).await.is_ok());
}
