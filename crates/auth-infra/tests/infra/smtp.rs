//! The SMTP mailer against a real SMTP server (`aiosmtpd`, started and stopped here, on
//! loopback): the outbox worker's mail arrives with both parts and its link; a mail that
//! cannot be sent stays in the outbox; `smtp://` without `tls=none` refuses a server that
//! offers no STARTTLS rather than send in the clear.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_core::memory::MemoryMailOutbox;
use auth_core::model::{Email, MailTemplate};
use auth_core::ports::{Clock as _, MailOutbox as _};
use auth_core::system::SystemClock;
use auth_core::{OutboxWorker, RetryPolicy};
use auth_infra::mail::{SmtpMailer, SmtpUrl, parse_from};
use secrecy::SecretString;

/// A Python with `aiosmtpd` (Debian's `python3-aiosmtpd` lives under `/usr/bin/python3`).
fn python() -> String {
    for candidate in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(candidate)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return candidate.to_owned();
        }
    }
    panic!(
        "no Python with aiosmtpd: install Debian's python3-aiosmtpd (apt-get install \
         python3-aiosmtpd) or `pip install aiosmtpd`"
    );
}

/// An `aiosmtpd` server on loopback that stores what it receives in a maildir; stopped when
/// dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl SmtpServer {
    fn start() -> Self {
        let maildir = std::env::temp_dir().join(format!("smtp-test-{}", uuid::Uuid::now_v7()));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            port,
            maildir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn received(&self) -> Vec<String> {
        let dir = self.maildir.join("new");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect()
    }

    fn maildir(&self) -> &Path {
        &self.maildir
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

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
    let server = SmtpServer::start();
    let outbox = Arc::new(MemoryMailOutbox::new());
    outbox
        .enqueue(verification(), SystemClock.now())
        .await
        .unwrap();
    let worker = worker(
        &format!("smtp://127.0.0.1:{}?tls=none", server.port),
        outbox.clone(),
    );
    let pass = worker.run_once().await.unwrap();
    assert_eq!(pass.sent, 1, "{pass:?}");
    assert_eq!(outbox.pending().await.unwrap(), 0);
    let received = server.received();
    assert_eq!(received.len(), 1, "maildir {}", server.maildir().display());
    let mail = &received[0];
    assert!(mail.contains("To: ada@example.com"), "{mail}");
    assert!(mail.contains("From: Example <auth@example.com>"), "{mail}");
    assert!(mail.contains("Subject: Confirm your email address for localhost:8000"));
    assert!(mail.contains("multipart/alternative"));
    assert!(mail.contains("text/plain"));
    assert!(mail.contains("text/html"));
    let body = decode_quoted_printable(mail);
    assert!(
        body.contains("http://localhost:8000/verify-email#token=AbC123"),
        "{body}"
    );
    assert!(
        body.contains("href=\"http://localhost:8000/verify-email#token=AbC123\""),
        "{body}"
    );
}

/// `text` with quoted-printable soft line breaks and `=XX` escapes undone (enough to read
/// the bodies lettre encodes).
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_required_unless_tls_none() {
    // aiosmtpd as started here offers no STARTTLS: a `smtp://` URL without `tls=none` must not
    // fall back to plain text. The mail stays in the outbox for a later try.
    let server = SmtpServer::start();
    let outbox = Arc::new(MemoryMailOutbox::new());
    outbox
        .enqueue(verification(), SystemClock.now())
        .await
        .unwrap();
    let worker = worker(&format!("smtp://127.0.0.1:{}", server.port), outbox.clone());
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
