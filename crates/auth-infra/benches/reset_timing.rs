//! Password-reset request timing: the contract requires that a request for an unknown address
//! answers after about the same time as one for a known address, so that response times do
//! not tell which accounts exist (the bound is login's: see `login_timing`).
//!
//! `AccountService::request_password_reset` over the Postgres store (a database of its own
//! on `DATABASE_URL`, as the tests use) and over the in-memory store, one request at a time,
//! for `known` (a registered user's address) and `unknown` (an address no account has). The
//! request only queues (the mail worker issues the link later, off the request path), so
//! both should cost one insert.
//!
//! ```text
//! eval "$(scripts/pg-temp.sh start)"
//! cargo bench -p auth-infra --bench reset_timing -- --warm-up-time 1 --measurement-time 5
//! scripts/pg-temp.sh stop "$PGTEMP_DIR"
//! ```
//! Results and their interpretation: `docs/security-timing.md`.
#![expect(
    clippy::expect_used,
    reason = "benchmark setup: a failure to build the fixture aborts the run"
)]

use std::hint::black_box;
use std::sync::Arc;

use auth_core::memory::{FakeHasher, FakeSigner, MemoryStore, NoCache};
use auth_core::model::{Email, PasswordPolicy};
use auth_core::ports::UserRepository;
use auth_core::ports::{AccountRemover, LoginAttemptStore, OneTimeTokenStore, SessionRepository};
use auth_core::service::lifecycle::{MailLinks, MailPorts};
use auth_core::system::{OsSecretGenerator, SystemClock};
use auth_core::{AccountConfig, AccountPorts, AccountService, Registration};
use auth_infra::test_support::TestStore;
use chrono::Duration;
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;

/// The repositories one service runs on.
struct Stores {
    users: Arc<dyn UserRepository>,
    sessions: Arc<dyn SessionRepository>,
    accounts: Arc<dyn AccountRemover>,
    attempts: Arc<dyn LoginAttemptStore>,
    tokens: Arc<dyn OneTimeTokenStore>,
}

fn service(stores: &Stores, min_interval: Duration) -> AccountService {
    let ports = AccountPorts {
        users: stores.users.clone(),
        sessions: stores.sessions.clone(),
        accounts: stores.accounts.clone(),
        hasher: Arc::new(FakeHasher::new()),
        signer: Arc::new(FakeSigner::new()),
        clock: Arc::new(SystemClock),
        secrets: Arc::new(OsSecretGenerator),
        session_cache: Arc::new(NoCache),
        attempts: stores.attempts.clone(),
    };
    AccountService::new(ports, AccountConfig::default()).with_mail(MailPorts {
        tokens: stores.tokens.clone(),
        links: MailLinks {
            min_interval,
            ..MailLinks::default()
        },
    })
}

fn email(raw: &str) -> Email {
    Email::parse(raw).expect("valid email")
}

fn measure(c: &mut Criterion, rt: &Runtime, store: &str, stores: &Stores) {
    let auth = service(stores, Duration::zero());
    let known = email("timing.reset@example.com");
    let unknown = email("nobody.reset@example.com");
    rt.block_on(async {
        let password = PasswordPolicy::default()
            .new_password("violet tugboat margin 47")
            .expect("meets the policy");
        auth.register(
            Registration {
                email: known.clone(),
                password,
                display_name: None,
            },
            false,
        )
        .await
        .expect("register the known user");
    });
    let mut group = c.benchmark_group(format!("password_reset_request/{store}"));
    group.bench_function("known", |b| {
        b.to_async(rt)
            .iter(|| async { auth.request_password_reset(black_box(&known)).await });
    });
    group.bench_function("unknown", |b| {
        b.to_async(rt)
            .iter(|| async { auth.request_password_reset(black_box(&unknown)).await });
    });
    group.finish();
}

fn reset_timing(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let memory = MemoryStore::new();
    measure(
        c,
        &rt,
        "memory",
        &Stores {
            users: memory.users.clone(),
            sessions: memory.sessions.clone(),
            accounts: memory.accounts.clone(),
            attempts: memory.login_attempts.clone(),
            tokens: memory.one_time_tokens.clone(),
        },
    );
    if std::env::var_os("DATABASE_URL").is_none() {
        eprintln!("DATABASE_URL is not set: the Postgres group is skipped");
        return;
    }
    let pg = rt.block_on(TestStore::new());
    measure(
        c,
        &rt,
        "postgres",
        &Stores {
            users: pg.users.clone(),
            sessions: pg.sessions.clone(),
            accounts: pg.accounts.clone(),
            attempts: pg.login_attempts.clone(),
            tokens: pg.one_time_tokens.clone(),
        },
    );
}

criterion_group!(benches, reset_timing);
criterion_main!(benches);
