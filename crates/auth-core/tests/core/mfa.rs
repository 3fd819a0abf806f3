//! The TOTP second factor on `AccountService` over the in-memory stores and a manual clock:
//! enrolment, the ±1 step window, replay, recovery codes, the login step and its lockout.
//! Codes are computed here with totp-rs from the enrolment secret at the clock's time.

use std::sync::Arc;

use auth_core::memory::{
    FakeCipher, FakeHasher, FakeSigner, ManualClock, MemoryLoginAttemptStore, MemoryMfaRepository,
    MemoryStore, NoCache,
};
use auth_core::model::{Email, LoginOutcome, MfaChallenge, RefreshToken};
use auth_core::ports::{Clock as _, LockoutPolicy, MfaRepository as _};
use auth_core::service::mfa::MfaPorts;
use auth_core::system::OsSecretGenerator;
use auth_core::{
    AccountConfig, AccountError, AccountPorts, AccountService, Principal, Registration,
};
use chrono::{DateTime, Duration, Utc};
use secrecy::ExposeSecret as _;
use totp_rs::{Algorithm, Builder, Secret};

use crate::support::{email, pw};

struct Harness {
    auth: AccountService,
    clock: Arc<ManualClock>,
    mfa: Arc<MemoryMfaRepository>,
}

fn harness() -> Harness {
    let clock = Arc::new(ManualClock::starting_now());
    let store = MemoryStore::new();
    let mfa = store.mfa.clone();
    let ports = AccountPorts {
        users: store.users.clone(),
        sessions: store.sessions.clone(),
        accounts: store.accounts.clone(),
        hasher: Arc::new(FakeHasher::new()),
        signer: Arc::new(FakeSigner::new()),
        clock: clock.clone(),
        secrets: Arc::new(OsSecretGenerator),
        session_cache: Arc::new(NoCache),
        attempts: Arc::new(MemoryLoginAttemptStore::new()),
    };
    let config = AccountConfig {
        lockout: LockoutPolicy {
            threshold: 5,
            window: Duration::minutes(15),
            duration: Duration::minutes(15),
        },
        ..AccountConfig::default()
    };
    let auth = AccountService::new(ports, config).with_mfa(MfaPorts {
        store: mfa.clone(),
        cipher: Some(Arc::new(FakeCipher)),
        issuer: "Example Auth".to_owned(),
    });
    Harness { auth, clock, mfa }
}

const PASSWORD: &str = "first password";

/// The code of `secret` (base32) at `at`.
fn code_at(secret: &str, at: DateTime<Utc>) -> String {
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(Secret::try_from_base32(secret).unwrap())
        .build()
        .unwrap();
    totp.generate(u64::try_from(at.timestamp()).unwrap())
        .to_string()
}

struct Enrolled {
    email: Email,
    principal: Principal,
    secret: String,
    recovery: Vec<String>,
}

async fn principal(h: &Harness, e: &Email) -> Principal {
    let pair = h.auth.login(e, &pw(PASSWORD)).await.unwrap();
    h.auth
        .verify(pair.access_token.expose_secret())
        .await
        .unwrap()
}

async fn registered(h: &Harness) -> Email {
    let e = email();
    h.auth
        .register(
            Registration {
                email: e.clone(),
                password: pw(PASSWORD),
                display_name: None,
            },
            false,
        )
        .await
        .unwrap();
    e
}

/// A user with a confirmed factor; the clock then moves to the next step, so the code that
/// confirmed is behind.
async fn enrolled(h: &Harness) -> Enrolled {
    let e = registered(h).await;
    let p = principal(h, &e).await;
    let setup = h.auth.enrol_totp(&p, &pw(PASSWORD)).await.unwrap();
    let secret = setup.secret.expose_secret().to_owned();
    let codes = h
        .auth
        .confirm_totp(&p, &code_at(&secret, h.clock.now()))
        .await
        .unwrap();
    h.clock.advance(Duration::seconds(30));
    Enrolled {
        email: e,
        principal: p,
        secret,
        recovery: codes.iter().map(|c| c.expose().to_owned()).collect(),
    }
}

async fn challenge(h: &Harness, e: &Email) -> MfaChallenge {
    match h.auth.sign_in(e, &pw(PASSWORD)).await.unwrap() {
        LoginOutcome::MfaRequired(c) => c,
        LoginOutcome::Tokens(_) => panic!("tokens without the second factor"),
    }
}

#[tokio::test]
async fn enrolment_is_pending_until_a_code_confirms_it() {
    let h = harness();
    let e = registered(&h).await;
    let p = principal(&h, &e).await;
    assert!(matches!(
        h.auth.enrol_totp(&p, &pw("wrong password")).await,
        Err(AccountError::InvalidCredentials)
    ));
    let setup = h.auth.enrol_totp(&p, &pw(PASSWORD)).await.unwrap();
    let secret = setup.secret.expose_secret();
    assert_eq!(secret.len(), 32, "160 bits in base32");
    let uri = setup.otpauth_uri.expose_secret();
    assert!(
        uri.starts_with("otpauth://totp/Example%20Auth:") && uri.contains(secret),
        "{uri}"
    );
    assert!(uri.contains("algorithm=SHA1&digits=6&period=30"));
    assert!(!format!("{setup:?}").contains(secret));
    // Pending: login needs no code, and the stored secret is sealed.
    assert!(matches!(
        h.auth.sign_in(&e, &pw(PASSWORD)).await.unwrap(),
        LoginOutcome::Tokens(_)
    ));
    let stored = h.mfa.find(p.user.id).await.unwrap().unwrap();
    assert!(!stored.is_enabled());
    assert!(!String::from_utf8_lossy(stored.secret.as_bytes()).contains(secret));
    assert!(!h.auth.mfa_enabled(p.user.id).await.unwrap());

    let wrong = if code_at(secret, h.clock.now()) == "000000" {
        "111111"
    } else {
        "000000"
    };
    assert!(matches!(
        h.auth.confirm_totp(&p, wrong).await,
        Err(AccountError::InvalidMfaCode)
    ));
    let codes = h
        .auth
        .confirm_totp(&p, &code_at(secret, h.clock.now()))
        .await
        .unwrap();
    assert_eq!(codes.len(), 10);
    assert!(h.auth.mfa_enabled(p.user.id).await.unwrap());
    assert!(matches!(
        h.auth.enrol_totp(&p, &pw(PASSWORD)).await,
        Err(AccountError::MfaAlreadyEnabled)
    ));
    assert!(matches!(
        h.auth
            .confirm_totp(&p, &code_at(secret, h.clock.now()))
            .await,
        Err(AccountError::MfaAlreadyEnabled)
    ));
}

#[tokio::test]
async fn login_takes_a_code_within_one_step_and_each_step_once() {
    let h = harness();
    let u = enrolled(&h).await;
    // The plain login refuses to open a session without the code.
    assert!(matches!(
        h.auth.login(&u.email, &pw(PASSWORD)).await,
        Err(AccountError::MfaRequired)
    ));
    let c = challenge(&h, &u.email).await;
    assert_eq!(c.expires_in, 300);
    // Two steps ahead or behind: refused.
    let now = h.clock.now();
    for off in [-60, 60] {
        let far = code_at(&u.secret, now + Duration::seconds(off));
        if far != code_at(&u.secret, now) {
            assert!(matches!(
                h.auth.complete_mfa_login(&c.token, &far).await,
                Err(AccountError::InvalidMfaCode)
            ));
        }
    }
    // One step ahead (a fast phone) is accepted...
    let ahead = code_at(&u.secret, now + Duration::seconds(30));
    let pair = h.auth.complete_mfa_login(&c.token, &ahead).await.unwrap();
    assert_eq!(pair.user.email, u.email);
    // ...the token is spent...
    assert!(matches!(
        h.auth.complete_mfa_login(&c.token, &ahead).await,
        Err(AccountError::InvalidCredentials)
    ));
    // ...and the same code (a replay), or the current one (older than the one accepted), is
    // refused with a new token; the step after is accepted.
    let c = challenge(&h, &u.email).await;
    for old in [ahead.clone(), code_at(&u.secret, now)] {
        assert!(matches!(
            h.auth.complete_mfa_login(&c.token, &old).await,
            Err(AccountError::InvalidMfaCode)
        ));
    }
    h.clock.advance(Duration::seconds(60));
    let later = code_at(&u.secret, h.clock.now());
    assert!(h.auth.complete_mfa_login(&c.token, &later).await.is_ok());
    // One step behind (a slow phone) after another step.
    h.clock.advance(Duration::seconds(60));
    let c = challenge(&h, &u.email).await;
    let behind = code_at(&u.secret, h.clock.now() - Duration::seconds(30));
    assert!(h.auth.complete_mfa_login(&c.token, &behind).await.is_ok());
}

#[tokio::test]
async fn parallel_submissions_of_one_code_open_one_session() {
    let h = harness();
    let u = enrolled(&h).await;
    let code = code_at(&u.secret, h.clock.now());
    let mut tokens = Vec::new();
    for _ in 0..4 {
        tokens.push(challenge(&h, &u.email).await.token);
    }
    let attempts = tokens.iter().map(|t| h.auth.complete_mfa_login(t, &code));
    let won = futures::future::join_all(attempts)
        .await
        .into_iter()
        .filter(Result::is_ok)
        .count();
    assert_eq!(won, 1);
}

#[tokio::test]
async fn mfa_tokens_expire_after_five_minutes() {
    let h = harness();
    let u = enrolled(&h).await;
    let c = challenge(&h, &u.email).await;
    h.clock.advance(Duration::seconds(301));
    let code = code_at(&u.secret, h.clock.now());
    assert!(matches!(
        h.auth.complete_mfa_login(&c.token, &code).await,
        Err(AccountError::InvalidCredentials)
    ));
    assert!(matches!(
        h.auth
            .complete_mfa_login(&RefreshToken::presented("made-up"), &code)
            .await,
        Err(AccountError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn recovery_codes_work_once_each() {
    let h = harness();
    let u = enrolled(&h).await;
    let c = challenge(&h, &u.email).await;
    // Typed in upper case without separators: the same code.
    let typed = u.recovery[0].replace('-', "").to_uppercase();
    assert!(h.auth.complete_mfa_login(&c.token, &typed).await.is_ok());
    let c = challenge(&h, &u.email).await;
    assert!(matches!(
        h.auth.complete_mfa_login(&c.token, &u.recovery[0]).await,
        Err(AccountError::InvalidMfaCode)
    ));
    assert!(
        h.auth
            .complete_mfa_login(&c.token, &u.recovery[1])
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn wrong_codes_count_toward_the_login_lockout() {
    let h = harness();
    let u = enrolled(&h).await;
    let right = code_at(&u.secret, h.clock.now());
    let wrong = if right == "123456" {
        "654321"
    } else {
        "123456"
    };
    let c = challenge(&h, &u.email).await;
    // The correct password took one attempt (it stays counted until the code is right);
    // four wrong codes make five failures: the lock.
    for _ in 0..4 {
        assert!(matches!(
            h.auth.complete_mfa_login(&c.token, wrong).await,
            Err(AccountError::InvalidMfaCode)
        ));
    }
    assert!(matches!(
        h.auth.complete_mfa_login(&c.token, &right).await,
        Err(AccountError::Locked { .. })
    ));
    assert!(matches!(
        h.auth.sign_in(&u.email, &pw(PASSWORD)).await,
        Err(AccountError::Locked { .. })
    ));
    // After the lock a right code succeeds and clears the count.
    h.clock.advance(Duration::minutes(16));
    let c = challenge(&h, &u.email).await;
    let now_code = code_at(&u.secret, h.clock.now());
    assert!(h.auth.complete_mfa_login(&c.token, &now_code).await.is_ok());
}

#[tokio::test]
async fn disabling_needs_the_password_and_a_code() {
    let h = harness();
    let u = enrolled(&h).await;
    let code = code_at(&u.secret, h.clock.now());
    assert!(matches!(
        h.auth
            .disable_totp(&u.principal, &pw("wrong password"), &code)
            .await,
        Err(AccountError::InvalidCredentials)
    ));
    assert!(matches!(
        h.auth
            .disable_totp(&u.principal, &pw(PASSWORD), "000000x")
            .await,
        Err(AccountError::InvalidMfaCode)
    ));
    assert!(h.auth.mfa_enabled(u.principal.user.id).await.unwrap());
    h.auth
        .disable_totp(&u.principal, &pw(PASSWORD), &u.recovery[3])
        .await
        .unwrap();
    assert!(!h.auth.mfa_enabled(u.principal.user.id).await.unwrap());
    assert!(matches!(
        h.auth.sign_in(&u.email, &pw(PASSWORD)).await.unwrap(),
        LoginOutcome::Tokens(_)
    ));
}

#[tokio::test]
async fn an_administrator_resets_the_factor() {
    let h = harness();
    let u = enrolled(&h).await;
    assert!(h.auth.reset_mfa(&u.email).await.unwrap());
    assert!(!h.auth.reset_mfa(&u.email).await.unwrap());
    assert!(h.auth.login(&u.email, &pw(PASSWORD)).await.is_ok());
    assert!(matches!(
        h.auth.reset_mfa(&email()).await,
        Err(AccountError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn without_a_data_key_nobody_enrols_and_codes_are_refused() {
    let h = harness();
    let u = enrolled(&h).await;
    let keyless = {
        // The same stores, no cipher: what production runs without AUTH_DATA_KEY.
        h.auth.clone().with_mfa(MfaPorts {
            store: h.mfa.clone(),
            cipher: None,
            issuer: "x".into(),
        })
    };
    let c = match keyless.sign_in(&u.email, &pw(PASSWORD)).await.unwrap() {
        LoginOutcome::MfaRequired(c) => c,
        LoginOutcome::Tokens(_) => panic!("a factor in force is never skipped"),
    };
    let code = code_at(&u.secret, h.clock.now());
    assert!(matches!(
        keyless.complete_mfa_login(&c.token, &code).await,
        Err(AccountError::MfaUnavailable)
    ));
    assert!(matches!(
        keyless.enrol_totp(&u.principal, &pw(PASSWORD)).await,
        Err(AccountError::MfaUnavailable)
    ));
}
