//! Micro-benchmarks of the paths every caller of the service pays for, in process, with the
//! production adapters where they matter (Moka cache, jsonwebtoken, bcrypt):
//!
//! - `api_key/parse_checksum_hash`: a presented key's shape, CRC-32 and SHA-256, no I/O;
//! - `api_key/verify_cached`: `ApiKeyService::verify` answered from the Moka cache (parse,
//!   checksum, hash, cache hit, status and scope check);
//! - `jwt/sign/*` and `jwt/verify/*`: an access token for each supported algorithm;
//! - `refresh/rotate_memory`: `AccountService::refresh` on the in-memory store (spend the token,
//!   issue the successor, sign a new access token);
//! - `password/hash` and `password/verify` at `BCRYPT_ROUNDS` (12 unless set).
//!
//! ```text
//! cargo bench -p auth-infra --bench hot_paths
//! BCRYPT_ROUNDS=10 cargo bench -p auth-infra --bench hot_paths -- password
//! ```
//! Results: `docs/benchmarks.md`.
#![expect(
    clippy::expect_used,
    reason = "benchmark setup: a failure to build the fixture aborts the run"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use auth_core::memory::{
    MemoryApiKeyRepository, MemoryLoginAttemptStore, MemoryOrganizationRepository, MemoryStore,
    MemoryUserRepository, NoCache,
};
use auth_core::model::{
    AccessClaims, ApiKeyName, ApiKeyPrefix, Email, Organization, OrganizationId, OrganizationName,
    Password, PasswordHash, PasswordPolicy, RefreshToken, Scope, Scopes, SessionId, User, UserId,
    parse_presented_key,
};
use auth_core::ports::{
    Clock as _, OrganizationRepository as _, PasswordHasher as _, TokenSigner, UserRepository as _,
};
use auth_core::system::{OsSecretGenerator, SystemClock};
use auth_core::{
    AccountConfig, AccountPorts, AccountService, Actor, ApiKeyPorts, ApiKeyService, ApiKeyVerdict,
    NewApiKey, OrganizationService, Registration,
};
use auth_infra::cache::MokaCache;
use auth_infra::jwt::{AsymmetricAlgorithm, JwtSettings, JwtSigner};
use auth_infra::password::BcryptHasher;
use auth_infra::test_support::asymmetric_test_keys;
use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::SecretSlice;
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn hs256() -> JwtSigner {
    JwtSigner::hs256(
        &SecretSlice::from(b"kN3v9QeR7tYb2LmX8pWz4sDf6GhJ1cVa".to_vec()),
        JwtSettings::default(),
    )
    .expect("HS256 key of 32 bytes")
}

fn api_keys(c: &mut Criterion) {
    let rt = runtime();
    let clock = Arc::new(SystemClock);
    let users = Arc::new(MemoryUserRepository::new());
    let orgs = Arc::new(MemoryOrganizationRepository::new(users.clone()));
    let service = ApiKeyService::new(
        ApiKeyPorts {
            keys: Arc::new(MemoryApiKeyRepository::new()),
            orgs: OrganizationService::new(orgs.clone(), users.clone(), clock.clone()),
            cache: Arc::new(MokaCache::new(
                "api_keys",
                100_000,
                Duration::from_secs(300),
            )),
            clock: clock.clone(),
            secrets: Arc::new(OsSecretGenerator),
        },
        ApiKeyPrefix::default(),
    );
    let key = rt.block_on(async {
        let now = clock.now();
        let owner = User {
            id: UserId::generate(),
            email: Email::parse("bench.owner@example.com").expect("email"),
            display_name: None,
            password_hash: PasswordHash::new("$2b$04$x".into()),
            is_admin: false,
            email_verified_at: None,
            disabled_at: None,
            last_login_at: None,
            created_at: now,
            updated_at: now,
        };
        users.create(&owner).await.expect("owner");
        let org = Organization {
            id: OrganizationId::generate(),
            name: OrganizationName::parse("Bench").expect("name"),
            created_at: now,
        };
        orgs.create(&org, owner.id).await.expect("org");
        let issued = service
            .create(
                &Actor::Operator,
                NewApiKey::new(
                    org.id,
                    ApiKeyName::parse("bench").expect("name"),
                    Scopes::new(vec![Scope::parse("read").expect("scope")]).expect("one scope"),
                ),
            )
            .await
            .expect("key");
        issued.secret.expose().to_owned()
    });
    let prefix = ApiKeyPrefix::default();
    let required = Scopes::new(vec![Scope::parse("read").expect("scope")]).expect("one scope");

    let mut group = c.benchmark_group("api_key");
    group.bench_function("parse_checksum_hash", |b| {
        b.iter(|| black_box(parse_presented_key(&prefix, black_box(&key))));
    });
    group.bench_function("verify_cached", |b| {
        b.to_async(&rt).iter(|| async {
            let verdict = service.verify(black_box(&key), &required).await;
            assert!(matches!(verdict, Ok(ApiKeyVerdict::Valid(_))));
        });
    });
    group.finish();
}

fn jwt(c: &mut Criterion) {
    let now = chrono::Utc::now();
    let claims = AccessClaims {
        user_id: UserId::generate(),
        session_id: SessionId::generate(),
        token_id: uuid::Uuid::now_v7(),
        issued_at: now,
        expires_at: now + chrono::Duration::minutes(15),
    };
    let signers: Vec<(&str, JwtSigner)> = vec![
        ("HS256", hs256()),
        (
            "EdDSA",
            JwtSigner::from_keys(
                &asymmetric_test_keys(AsymmetricAlgorithm::EdDsa, 0, &[]),
                JwtSettings::default(),
            )
            .expect("EdDSA key"),
        ),
        (
            "ES256",
            JwtSigner::from_keys(
                &asymmetric_test_keys(AsymmetricAlgorithm::Es256, 0, &[]),
                JwtSettings::default(),
            )
            .expect("ES256 key"),
        ),
        (
            "RS256",
            JwtSigner::from_keys(
                &asymmetric_test_keys(AsymmetricAlgorithm::Rs256, 0, &[]),
                JwtSettings::default(),
            )
            .expect("RS256 key"),
        ),
    ];
    let mut group = c.benchmark_group("jwt");
    for (name, signer) in &signers {
        let token = signer.sign_access(&claims).expect("sign");
        let token = secrecy::ExposeSecret::expose_secret(&token).to_owned();
        group.bench_function(format!("sign/{name}"), |b| {
            b.iter(|| black_box(signer.sign_access(black_box(&claims)).expect("sign")));
        });
        group.bench_function(format!("verify/{name}"), |b| {
            b.iter(|| {
                black_box(
                    signer
                        .verify_access(black_box(&token), now)
                        .expect("valid token"),
                )
            });
        });
    }
    group.finish();
}

fn refresh(c: &mut Criterion) {
    let rt = runtime();
    let store = MemoryStore::new();
    let auth = AccountService::new(
        AccountPorts {
            users: store.users.clone(),
            sessions: store.sessions.clone(),
            accounts: store.accounts.clone(),
            hasher: Arc::new(BcryptHasher::new(4, 2).expect("cost")),
            signer: Arc::new(hs256()),
            clock: Arc::new(SystemClock),
            secrets: Arc::new(OsSecretGenerator),
            session_cache: Arc::new(NoCache),
            attempts: Arc::new(MemoryLoginAttemptStore::new()),
        },
        AccountConfig::default(),
    );
    let email = Email::parse("bench.refresh@example.com").expect("email");
    let password = "violet tugboat margin 47!x";
    let first = rt.block_on(async {
        auth.register(
            Registration {
                email: email.clone(),
                password: PasswordPolicy::default()
                    .new_password(password)
                    .expect("policy"),
                display_name: None,
            },
            false,
        )
        .await
        .expect("register");
        auth.login(&email, &Password::presented(password).expect("password"))
            .await
            .expect("login")
            .refresh_token
    });
    // Each iteration spends the token the previous one received.
    let current: std::sync::Mutex<RefreshToken> = std::sync::Mutex::new(first);
    let mut group = c.benchmark_group("refresh");
    group.bench_function("rotate_memory", |b| {
        b.to_async(&rt).iter(|| async {
            let presented = current.lock().expect("lock").clone();
            let pair = auth.refresh(&presented).await.expect("rotated");
            *current.lock().expect("lock") = pair.refresh_token;
        });
    });
    group.finish();
}

fn password(c: &mut Criterion) {
    let rt = runtime();
    let cost: u32 = std::env::var("BCRYPT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let hasher = BcryptHasher::new(cost, 1).expect("cost");
    let new = PasswordPolicy::default()
        .new_password("violet tugboat margin 47!x")
        .expect("policy");
    let presented = Password::presented("violet tugboat margin 47!x").expect("password");
    let hash = rt.block_on(hasher.hash(&new)).expect("hash");
    let mut group = c.benchmark_group("password");
    group.sample_size(10);
    group.bench_function(format!("hash/cost_{cost}"), |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(hasher.hash(&new).await.expect("hash")) });
    });
    group.bench_function(format!("verify/cost_{cost}"), |b| {
        b.to_async(&rt).iter(|| async {
            let check = hasher
                .verify(&presented, Some(&hash))
                .await
                .expect("verify");
            assert!(check.matches);
        });
    });
    group.finish();
}

criterion_group!(benches, api_keys, jwt, refresh, password);
criterion_main!(benches);
