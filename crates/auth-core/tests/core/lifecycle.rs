//! The mailed flows on `AccountService` over the in-memory store and a manual clock: links
//! expire when their lifetime is over, the one-mail-per-interval rule counts from the last
//! link, a required verification holds login back, and a reset for an unknown address
//! queues nothing.

use std::sync::Arc;

use auth_core::memory::{FakeHasher, FakeSigner, ManualClock, MemoryStore, NoCache};
use auth_core::model::{Email, OneTimeToken, OutgoingMail};
use auth_core::ports::{Clock as _, MailOutbox as _};
use auth_core::service::lifecycle::{MailLinks, MailPorts, ResendOutcome};
use auth_core::system::OsSecretGenerator;
use auth_core::{AccountConfig, AccountError, AccountPorts, AccountService, Registration};
use chrono::Duration;
use secrecy::ExposeSecret as _;

use crate::support::{email, pw};

const PASSWORD: &str = "first password";
const PUBLIC_URL: &str = "https://auth.example.com";

struct Harness {
    auth: AccountService,
    clock: Arc<ManualClock>,
    store: MemoryStore,
}

fn harness(require_verified_email: bool) -> Harness {
    let clock = Arc::new(ManualClock::starting_now());
    let store = MemoryStore::new();
    let ports = AccountPorts {
        users: store.users.clone(),
        sessions: store.sessions.clone(),
        accounts: store.accounts.clone(),
        hasher: Arc::new(FakeHasher::new()),
        signer: Arc::new(FakeSigner::new()),
        clock: clock.clone(),
        secrets: Arc::new(OsSecretGenerator),
        session_cache: Arc::new(NoCache),
        attempts: store.login_attempts.clone(),
    };
    let config = AccountConfig {
        require_verified_email,
        ..AccountConfig::default()
    };
    let auth = AccountService::new(ports, config).with_mail(MailPorts {
        tokens: store.one_time_tokens.clone(),
        links: MailLinks {
            product: "Example".to_owned(),
            public_url: PUBLIC_URL.to_owned(),
            ..MailLinks::default()
        },
    });
    Harness { auth, clock, store }
}

impl Harness {
    async fn register(&self) -> Email {
        let address = email();
        self.auth
            .register(
                Registration {
                    email: address.clone(),
                    password: pw(PASSWORD),
                    display_name: None,
                },
                false,
            )
            .await
            .unwrap();
        address
    }

    /// The mails queued since the last call.
    async fn mails(&self) -> Vec<OutgoingMail> {
        let outbox = &self.store.outbox;
        let mut mails = Vec::new();
        let far = self.clock.now() + Duration::days(3650);
        for queued in outbox
            .claim_due(far, 100, Duration::seconds(1))
            .await
            .unwrap()
        {
            outbox.mark_sent(queued.id).await.unwrap();
            mails.push(queued.mail);
        }
        mails
    }

    /// The token of the only mail queued since the last call, whose link goes to `page`.
    async fn token(&self, page: &str) -> OneTimeToken {
        let mails = self.mails().await;
        assert_eq!(mails.len(), 1, "{mails:?}");
        let prefix = format!("{PUBLIC_URL}/{page}#token=");
        let text = &mails[0].text;
        let start = text.find(&prefix).unwrap() + prefix.len();
        let token: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        assert!(mails[0].html.contains(&format!("{prefix}{token}")));
        OneTimeToken::presented(&token)
    }
}

#[tokio::test]
async fn a_verification_link_works_for_24_hours() {
    let h = harness(false);
    let address = h.register().await;
    let expired = h.token("verify-email").await;
    h.clock.advance(Duration::hours(24));
    assert!(matches!(
        h.auth.confirm_email(&expired).await,
        Err(AccountError::InvalidOneTimeToken)
    ));

    let session = h.auth.login(&address, &pw(PASSWORD)).await.unwrap();
    let principal = h
        .auth
        .verify(session.access_token.expose_secret())
        .await
        .unwrap();
    assert_eq!(
        h.auth.resend_verification(&principal).await.unwrap(),
        ResendOutcome::Sent
    );
    let fresh = h.token("verify-email").await;
    h.clock
        .advance(Duration::hours(24) - Duration::milliseconds(1));
    h.auth.confirm_email(&fresh).await.unwrap();
    let user = h.auth.current_user(principal.user.id).await.unwrap();
    assert_eq!(user.email_verified_at, Some(h.clock.now()));
}

#[tokio::test]
async fn a_reset_link_works_for_an_hour_and_says_so() {
    let h = harness(false);
    let address = h.register().await;
    h.mails().await;
    h.auth.request_password_reset(&address).await.unwrap();
    let mails = h.mails().await;
    assert!(mails[0].text.contains("60 minutes"), "{}", mails[0].text);
    h.auth.request_password_reset(&address).await.unwrap();
    assert!(h.mails().await.is_empty(), "within the interval: no mail");

    h.clock.advance(Duration::minutes(1));
    h.auth.request_password_reset(&address).await.unwrap();
    let token = h.token("reset-password").await;
    h.clock.advance(Duration::hours(1));
    assert!(matches!(
        h.auth.reset_password(&token, &pw("second password")).await,
        Err(AccountError::InvalidOneTimeToken)
    ));
    h.auth.login(&address, &pw(PASSWORD)).await.unwrap();
}

#[tokio::test]
async fn a_reset_for_an_unknown_address_queues_nothing() {
    let h = harness(false);
    h.auth.request_password_reset(&email()).await.unwrap();
    assert!(h.mails().await.is_empty());
}

#[tokio::test]
async fn a_resend_within_the_interval_says_how_long_to_wait() {
    let h = harness(false);
    let address = h.register().await;
    h.mails().await;
    let session = h.auth.login(&address, &pw(PASSWORD)).await.unwrap();
    let principal = h
        .auth
        .verify(session.access_token.expose_secret())
        .await
        .unwrap();
    h.clock.advance(Duration::seconds(45));
    match h.auth.resend_verification(&principal).await {
        Err(AccountError::TooSoon { retry_after }) => {
            assert_eq!(retry_after, Duration::seconds(15));
        }
        other => panic!("{other:?}"),
    }
    assert!(h.mails().await.is_empty());
    h.clock.advance(Duration::seconds(15));
    assert_eq!(
        h.auth.resend_verification(&principal).await.unwrap(),
        ResendOutcome::Sent
    );
}

#[tokio::test]
async fn a_required_verification_holds_login_back_after_the_password() {
    let h = harness(true);
    let address = h.register().await;
    assert!(matches!(
        h.auth.login(&address, &pw("wrong password")).await,
        Err(AccountError::InvalidCredentials)
    ));
    assert!(matches!(
        h.auth.login(&address, &pw(PASSWORD)).await,
        Err(AccountError::EmailNotVerified)
    ));
    let token = h.token("verify-email").await;
    h.auth.confirm_email(&token).await.unwrap();
    h.auth.login(&address, &pw(PASSWORD)).await.unwrap();
}

#[tokio::test]
async fn a_change_of_address_is_refused_when_taken_unchanged_or_too_soon() {
    let h = harness(false);
    let address = h.register().await;
    let other = h.register().await;
    h.mails().await;
    let session = h.auth.login(&address, &pw(PASSWORD)).await.unwrap();
    let principal = h
        .auth
        .verify(session.access_token.expose_secret())
        .await
        .unwrap();
    let password = pw(PASSWORD);
    assert!(matches!(
        h.auth
            .request_email_change(&principal, &other, &password)
            .await,
        Err(AccountError::EmailTaken)
    ));
    let same = Email::parse(&address.as_str().to_uppercase()).unwrap();
    assert!(matches!(
        h.auth
            .request_email_change(&principal, &same, &password)
            .await,
        Err(AccountError::EmailUnchanged)
    ));
    assert!(matches!(
        h.auth
            .request_email_change(&principal, &email(), &pw("not the password"))
            .await,
        Err(AccountError::InvalidCredentials)
    ));
    let new = email();
    h.auth
        .request_email_change(&principal, &new, &password)
        .await
        .unwrap();
    let mails = h.mails().await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, new, "the link goes to the new address");
    assert!(matches!(
        h.auth
            .request_email_change(&principal, &email(), &password)
            .await,
        Err(AccountError::TooSoon { .. })
    ));
}
