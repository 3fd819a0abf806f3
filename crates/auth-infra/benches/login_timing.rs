//! Login timing: the contract requires that a login for an unknown email, with a wrong
//! password, for a locked account and with an over-long password all take about the same
//! time, so that response times reveal neither which accounts exist nor anything about them.
//!
//! `AccountService::login` over the in-memory stores, the real `BcryptHasher` (cost 10 and 12, one
//! bench group each) and an HS256 `JwtSigner`, one login at a time. Results and their
//! interpretation: `docs/security-timing.md`.
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/target-pw cargo bench -p auth-infra --bench login_timing -- \
//!     --warm-up-time 1 --measurement-time 5
//! ```
#![expect(
    clippy::expect_used,
    reason = "benchmark setup: a failure to build the fixture aborts the run"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use auth_core::memory::{MemoryLoginAttemptStore, MemoryStore, NoCache};
use auth_core::model::{Email, Password, PasswordPolicy};
use auth_core::ports::LockoutPolicy;
use auth_core::system::{OsSecretGenerator, SystemClock};
use auth_core::{AccountConfig, AccountError, AccountPorts, AccountService, Registration};
use auth_infra::jwt::{JwtSettings, JwtSigner};
use auth_infra::password::BcryptHasher;
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use secrecy::SecretSlice;
use tokio::runtime::Runtime;

/// The registered user's password: 26 bytes, so stored as plain bcrypt (`$2b$`).
const RIGHT: &str = "violet tugboat margin 47!x";
/// Same length as `RIGHT`, one character different.
const WRONG: &str = "violet tugboat margin 47!y";
/// A second user whose password is over bcrypt's 72 bytes (stored as `$bcrypt-sha256$`).
const LONG_RIGHT: &str =
    "a long passphrase of more than seventy-two bytes, so that it is pre-hashed";

/// Everything the benchmark needs for one bcrypt cost.
struct Fixture {
    /// The service measured. Its lockout threshold is out of reach, so the thousands of
    /// failures the benchmark makes never lock `user` or `unknown`; failures are still
    /// counted, as in production.
    auth: AccountService,
    /// A registered user with the short password `RIGHT`.
    user: Email,
    /// A registered user with the over-72-byte password `LONG_RIGHT`.
    long_user: Email,
    /// A registered user with the password `RIGHT`, locked during setup.
    locked_user: Email,
    /// An email no account has.
    unknown: Email,
}

fn email(raw: &str) -> Email {
    Email::parse(raw).expect("valid email")
}

fn presented(raw: &str) -> Password {
    Password::presented(raw).expect("valid presented password")
}

fn fixture(rt: &Runtime, cost: u32) -> Fixture {
    let store = MemoryStore::new();
    let ports = AccountPorts {
        users: store.users.clone(),
        sessions: store.sessions.clone(),
        accounts: store.accounts.clone(),
        hasher: Arc::new(BcryptHasher::new(cost, 2).expect("bcrypt cost in range")),
        signer: Arc::new(
            JwtSigner::hs256(
                &SecretSlice::from(b"0123456789abcdef0123456789abcdef".to_vec()),
                JwtSettings::default(),
            )
            .expect("HS256 key of 32 bytes"),
        ),
        clock: Arc::new(SystemClock),
        secrets: Arc::new(OsSecretGenerator),
        session_cache: Arc::new(NoCache),
        attempts: Arc::new(MemoryLoginAttemptStore::new()),
    };
    // Same stores, the contract's default lockout (5 failures in 15 min lock for 15 min):
    // used only to lock `locked_user`.
    let locker = AccountService::new(ports.clone(), AccountConfig::default());
    let never_locks = AccountConfig {
        lockout: LockoutPolicy {
            threshold: u32::MAX,
            ..LockoutPolicy::default()
        },
        ..AccountConfig::default()
    };
    let fx = Fixture {
        auth: AccountService::new(ports, never_locks),
        user: email("timing.user@example.com"),
        long_user: email("timing.long@example.com"),
        locked_user: email("timing.locked@example.com"),
        unknown: email("nobody.here@example.com"),
    };
    rt.block_on(async {
        for (who, password) in [
            (&fx.user, RIGHT),
            (&fx.long_user, LONG_RIGHT),
            (&fx.locked_user, RIGHT),
        ] {
            let password = PasswordPolicy::default()
                .new_password(password)
                .expect("fixture password meets the policy");
            fx.auth
                .register(
                    Registration {
                        email: who.clone(),
                        password,
                        display_name: None,
                    },
                    false,
                )
                .await
                .expect("register fixture user");
        }
        // The lock starts now and lasts 15 minutes: longer than one bench group runs.
        for _ in 0..AccountConfig::default().lockout.threshold {
            let refused = locker.login(&fx.locked_user, &presented(WRONG)).await;
            assert!(matches!(refused, Err(AccountError::InvalidCredentials)));
        }
    });
    fx
}

/// What a case's login must answer.
#[derive(Clone, Copy)]
enum Expect {
    Tokens,
    InvalidCredentials,
    Locked,
}

/// One measured case: who logs in with what, and what the login must answer.
struct Case {
    name: &'static str,
    email: Email,
    password: Password,
    expect: Expect,
}

fn cases(fx: &Fixture) -> Vec<Case> {
    let chars_128 = "x".repeat(128);
    let bytes_1000 = "y".repeat(1000);
    vec![
        Case {
            name: "right_password",
            email: fx.user.clone(),
            password: presented(RIGHT),
            expect: Expect::Tokens,
        },
        Case {
            name: "wrong_password",
            email: fx.user.clone(),
            password: presented(WRONG),
            expect: Expect::InvalidCredentials,
        },
        Case {
            name: "unknown_email",
            email: fx.unknown.clone(),
            password: presented(WRONG),
            expect: Expect::InvalidCredentials,
        },
        Case {
            name: "password_128_chars",
            email: fx.user.clone(),
            password: presented(&chars_128),
            expect: Expect::InvalidCredentials,
        },
        Case {
            name: "password_1000_bytes",
            email: fx.user.clone(),
            password: presented(&bytes_1000),
            expect: Expect::InvalidCredentials,
        },
        // Two more for the interpretation of the over-long cases: the same 128 characters
        // for an unknown email, and for a user whose stored hash is of the pre-hashed kind.
        Case {
            name: "unknown_email_128_chars",
            email: fx.unknown.clone(),
            password: presented(&chars_128),
            expect: Expect::InvalidCredentials,
        },
        Case {
            name: "long_hash_user_128_chars",
            email: fx.long_user.clone(),
            password: presented(&chars_128),
            expect: Expect::InvalidCredentials,
        },
        // LOCKED ACCOUNT (contract, "Abuse protection"): a user locked by 5 failures during
        // setup, presenting the RIGHT password. No bcrypt runs: the service waits
        // `PasswordHasher::delay_like_verify` instead.
        Case {
            name: "locked_account",
            email: fx.locked_user.clone(),
            password: presented(RIGHT),
            expect: Expect::Locked,
        },
    ]
}

fn bench_cost(c: &mut Criterion, rt: &Runtime, cost: u32, sample_size: usize) {
    let fx = fixture(rt, cost);
    let cases = cases(&fx);
    // Check every case does what its name says before timing it.
    rt.block_on(async {
        for case in &cases {
            let outcome = fx.auth.login(&case.email, &case.password).await;
            match (case.expect, outcome) {
                (Expect::Tokens, Ok(_))
                | (Expect::InvalidCredentials, Err(AccountError::InvalidCredentials))
                | (Expect::Locked, Err(AccountError::Locked { .. })) => {}
                (_, other) => panic!("case {}: unexpected outcome {other:?}", case.name),
            }
        }
    });

    let mut group = c.benchmark_group(format!("login/bcrypt_cost_{cost}"));
    // Each iteration is one bcrypt (tens to hundreds of ms): the same iteration count in
    // every sample, and fewer samples than criterion's default 100.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(sample_size);
    for case in &cases {
        group.bench_function(case.name, |b| {
            b.to_async(rt).iter(|| async {
                black_box(
                    fx.auth
                        .login(black_box(&case.email), black_box(&case.password))
                        .await
                        .is_ok(),
                )
            });
        });
    }
    group.finish();
}

fn login_timing(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    bench_cost(c, &rt, 10, 30);
    bench_cost(c, &rt, 12, 15);
}

criterion_group! {
    name = benches;
    // Defaults for a run without arguments; `--warm-up-time` / `--measurement-time` override.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = login_timing
}
criterion_main!(benches);
