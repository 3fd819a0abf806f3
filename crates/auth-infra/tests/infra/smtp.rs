//! The SMTP mailer against a real SMTP server (`aiosmtpd`, started and stopped here, on
//! loopback): the outbox worker's mail arrives with both parts and its link; a mail that
//! cannot be sent stays in the outbox; `smtp://` without `tls=none` refuses a server that
//! offers no STARTTLS rather than send in the clear.

use std::sync::Arc;

use auth_core::memory::MemoryMailOutbox;
use auth_core::model::{Email, MailTemplate};
use auth_core::ports::{Clock as _, MailOutbox as _};
use auth_core::system::SystemClock;
use auth_core::{OutboxWorker, RetryPolicy};
use auth_infra::mail::{SmtpMailer, SmtpUrl, parse_from};
use auth_infra::test_support::smtp::SmtpSink;
use secrecy::SecretString;

fn worker(url: &str, outbox: Arc<MemoryMailOutbox>) -> OutboxWorker {
    let url = SmtpUrl::parse(&SecretString::from(url.to_owned())).unwrap();
    let mailer = SmtpMailer::new(&url, parse_from("Example <auth@example.com>").unwrap()).unwrap();
    OutboxWorker::new(
        outbox,
        Arc::new(mailer),
        Arc::new(SystemClock),
        RetryPolicy::default(),
    )
}

fn verification() -> auth_core::model::OutgoingMail {
    MailTemplate::VerifyEmail.render(
        Email::parse("ada@example.com").unwrap(),
        &[
            ("product", "localhost:8000"),
            ("link", "http://localhost:8000/verify-email#token=AbC123"),
            ("hours", "24"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_mail_reaches_the_smtp_server() {
    let server = SmtpSink::start();
    let outbox = Arc::new(MemoryMailOutbox::new());
    outbox
        .enqueue(verification(), SystemClock.now())
        .await
        .unwrap();
    let worker = worker(&server.url(), outbox.clone());
    let pass = worker.run_once().await.unwrap();
    assert_eq!(pass.sent, 1, "{pass:?}");
    assert_eq!(outbox.pending().await.unwrap(), 0);
    let received = server.received();
    assert_eq!(received.len(), 1, "maildir {}", server.maildir().display());
    let mail = &received[0];
    assert_eq!(mail.to, "ada@example.com");
    assert_eq!(mail.from, "Example <auth@example.com>");
    assert_eq!(
        mail.subject,
        "Confirm your email address for localhost:8000"
    );
    assert!(mail.raw.contains("multipart/alternative"), "{}", mail.raw);
    assert_eq!(
        mail.link("http://").as_deref(),
        Some("http://localhost:8000/verify-email#token=AbC123"),
        "{}",
        mail.text
    );
    assert!(
        mail.html
            .contains("href=\"http://localhost:8000/verify-email#token=AbC123\""),
        "{}",
        mail.html
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_required_unless_tls_none() {
    // aiosmtpd as started here offers no STARTTLS: a `smtp://` URL without `tls=none` must not
    // fall back to plain text. The mail stays in the outbox for a later try.
    let server = SmtpSink::start();
    let outbox = Arc::new(MemoryMailOutbox::new());
    outbox
        .enqueue(verification(), SystemClock.now())
        .await
        .unwrap();
    let worker = worker(
        &format!("smtp://127.0.0.1:{}", server.port()),
        outbox.clone(),
    );
    let pass = worker.run_once().await.unwrap();
    assert_eq!(pass.retrying, 1, "{pass:?}");
    assert_eq!(outbox.pending().await.unwrap(), 1);
    assert!(server.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_leaves_the_mail_queued() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let outbox = Arc::new(MemoryMailOutbox::new());
    outbox
        .enqueue(verification(), SystemClock.now())
        .await
        .unwrap();
    let worker = worker(&format!("smtp://127.0.0.1:{port}?tls=none"), outbox.clone());
    assert_eq!(worker.run_once().await.unwrap().retrying, 1);
    assert_eq!(outbox.pending().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_a_certificate_no_public_ca_signed_is_refused_not_downgraded() {
    // The server offers STARTTLS with a self-signed certificate: the client upgrades (as
    // `smtp://` requires), the certificate does not verify against the web PKI roots, and the
    // mail is not sent, neither over that TLS nor in plain text. It stays queued.
    let server = SmtpSink::start_with_self_signed_starttls();
    let url = SmtpUrl::parse(&SecretString::from(format!(
        "smtp://localhost:{}",
        server.port()
    )))
    .unwrap();
    let mailer = SmtpMailer::new(&url, parse_from("Example <auth@example.com>").unwrap()).unwrap();
    let err = auth_core::ports::Mailer::send(&mailer, &verification())
        .await
        .unwrap_err();
    let text = auth_core::ErrorChain(&err).to_string();
    assert!(
        text.to_lowercase().contains("certificate") || text.to_lowercase().contains("tls"),
        "a TLS failure, not a plain-text conversation: {text}"
    );
    assert!(
        matches!(err, auth_core::ports::MailError::Transient(_)),
        "retried later (the certificate may be fixed): {err:?}"
    );

    let outbox = Arc::new(MemoryMailOutbox::new());
    outbox
        .enqueue(verification(), SystemClock.now())
        .await
        .unwrap();
    let worker = worker(
        &format!("smtp://localhost:{}", server.port()),
        outbox.clone(),
    );
    assert_eq!(worker.run_once().await.unwrap().retrying, 1);
    assert_eq!(outbox.pending().await.unwrap(), 1);
    assert!(server.received().is_empty());
}
