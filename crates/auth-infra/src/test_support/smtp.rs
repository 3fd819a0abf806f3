//! A real SMTP server for tests: `aiosmtpd` on loopback, storing what it receives in a
//! maildir, read back with a MIME parser as a mail client would read it.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Python with `aiosmtpd` (Debian's `python3-aiosmtpd` lives under `/usr/bin/python3`).
///
/// # Panics
/// When there is none: the test command installs it.
#[must_use]
pub fn python() -> String {
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

/// A mail as received: headers decoded, both bodies decoded (quoted-printable, base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The `To` address.
    pub to: String,
    /// The `From` header as written (`Name <address>`).
    pub from: String,
    /// The subject.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body.
    pub html: String,
    /// The message as received.
    pub raw: String,
}

impl ReceivedMail {
    /// The first link in the text body that starts with `prefix`.
    #[must_use]
    pub fn link(&self, prefix: &str) -> Option<String> {
        let start = self.text.find(prefix)?;
        let rest = &self.text[start..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        Some(rest[..end].to_owned())
    }

    /// The `token` of the first link starting with `prefix` (`…#token=…`).
    #[must_use]
    pub fn token(&self, prefix: &str) -> Option<String> {
        let link = self.link(prefix)?;
        link.split_once("#token=").map(|(_, t)| t.to_owned())
    }
}

/// Reads a received message.
///
/// # Panics
/// When it is not a mail.
#[must_use]
pub fn parse(raw: &str) -> ReceivedMail {
    let message = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .expect("a MIME message");
    let address = |a: Option<&mail_parser::Address<'_>>| {
        a.and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_owned()
    };
    ReceivedMail {
        to: address(message.to()),
        from: message
            .header_raw("From")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        subject: message.subject().unwrap_or_default().to_owned(),
        text: message
            .body_text(0)
            .map(|t| t.into_owned())
            .unwrap_or_default(),
        html: message
            .body_html(0)
            .map(|t| t.into_owned())
            .unwrap_or_default(),
        raw: raw.to_owned(),
    }
}

/// An `aiosmtpd` server on loopback; stopped (and its maildir removed) when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    child: Child,
    port: u16,
    maildir: PathBuf,
    /// A folder of files to remove with the server (its certificate and key).
    files: Option<PathBuf>,
}

impl SmtpSink {
    /// Starts a server on a free loopback port and waits until it accepts connections.
    ///
    /// # Panics
    /// When it cannot be started within 20 s.
    #[must_use]
    pub fn start() -> Self {
        Self::spawn(&[], None)
    }

    /// As [`Self::start`], offering STARTTLS (and requiring it before mail) with a freshly
    /// made self-signed certificate for `localhost`/`127.0.0.1`, which no public CA vouches
    /// for.
    ///
    /// # Panics
    /// When `openssl` cannot make the certificate, or the server does not start.
    #[must_use]
    pub fn start_with_self_signed_starttls() -> Self {
        let dir = std::env::temp_dir().join(format!("smtp-tls-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a folder for the certificate");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "openssl could not make a self-signed certificate");
        let args = [
            "--tlscert".to_owned(),
            cert.display().to_string(),
            "--tlskey".to_owned(),
            key.display().to_string(),
        ];
        Self::spawn(&args, Some(dir))
    }

    fn spawn(extra: &[String], files: Option<PathBuf>) -> Self {
        let maildir = std::env::temp_dir().join(format!("smtp-test-{}", uuid::Uuid::now_v7()));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("its address")
            .port();
        let child = Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts");
        let server = Self {
            child,
            port,
            maildir,
            files,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The port it listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// An `SMTP_URL` for it (plain SMTP: this server offers no STARTTLS).
    #[must_use]
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    /// Where it stores what it receives.
    #[must_use]
    pub fn maildir(&self) -> &std::path::Path {
        &self.maildir
    }

    /// Every message received so far, as received, oldest first.
    ///
    /// # Panics
    /// When a stored message cannot be read.
    #[must_use]
    pub fn received_raw(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries
            .flatten()
            .map(|e| {
                let modified = e.metadata().and_then(|m| m.modified()).ok();
                (modified, e.path())
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, path)| std::fs::read_to_string(path).expect("a stored message"))
            .collect()
    }

    /// Every mail received so far, oldest first.
    #[must_use]
    pub fn received(&self) -> Vec<ReceivedMail> {
        self.received_raw().iter().map(|raw| parse(raw)).collect()
    }

    /// The mails to `to` (compared case-insensitively), oldest first.
    #[must_use]
    pub fn received_by(&self, to: &str) -> Vec<ReceivedMail> {
        self.received()
            .into_iter()
            .filter(|m| m.to.eq_ignore_ascii_case(to))
            .collect()
    }

    /// Waits until `count` mails to `to` have arrived, and answers them.
    ///
    /// # Panics
    /// When they have not within `timeout`.
    pub async fn wait_for(&self, to: &str, count: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let mails = self.received_by(to);
            if mails.len() >= count {
                return mails;
            }
            assert!(
                Instant::now() < deadline,
                "{count} mail(s) to {to} did not arrive within {timeout:?} (got {})",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
        if let Some(files) = &self.files {
            let _ = std::fs::remove_dir_all(files);
        }
    }
}
