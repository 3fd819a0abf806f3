//! Mailers: [`SmtpMailer`] (SMTP on `lettre`, STARTTLS or implicit TLS) and [`EmlMailer`]
//! (each mail written as a `.eml` file to a folder, for development), and [`SmtpUrl`], the
//! one reading of `SMTP_URL`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use auth_core::model::OutgoingMail;
use auth_core::ports::{MailError, Mailer};
pub use lettre::message::Mailbox;
use lettre::message::MultiPart;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use secrecy::{ExposeSecret as _, SecretString};

/// How long one SMTP exchange may take before it fails (and is retried later).
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// `SMTP_URL` or `MAIL_FROM` that cannot be used. Never carries the URL (it holds a password).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MailSettingsError(String);

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: plain connection upgraded with STARTTLS, which must succeed.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://…?tls=none`: no TLS (a relay on loopback or a trusted network only).
    None,
}

/// A checked `SMTP_URL`. `Debug` shows the security and nothing else: the URL holds the
/// password.
#[derive(Clone)]
pub struct SmtpUrl {
    /// The URL in `lettre`'s spelling, secret.
    lettre: SecretString,
    security: SmtpSecurity,
}

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

impl SmtpUrl {
    /// Reads `smtp://[user:pass@]host[:port][?tls=none|required]` (STARTTLS required unless
    /// `tls=none`) or `smtps://[user:pass@]host[:port]` (implicit TLS). Ports default to 587
    /// and 465.
    ///
    /// # Errors
    /// Another scheme, an unknown or repeated parameter, another `tls` value, no host, or a
    /// URL `lettre` cannot read. The message never contains the URL.
    pub fn parse(url: &SecretString) -> Result<Self, MailSettingsError> {
        let raw = url.expose_secret();
        let err = |what: &str| MailSettingsError(format!("SMTP_URL: {what}"));
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or_else(|| err("not a URL (expected smtp://user:pass@host:587)"))?;
        let (base, query) = match rest.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (rest, None),
        };
        if base.contains('#') {
            return Err(err("a fragment is not allowed"));
        }
        let mut tls: Option<&str> = None;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("tls", value)) if tls.is_none() => tls = Some(value),
                _ => return Err(err("the only parameter is tls=none (or tls=required)")),
            }
        }
        let host_part = base.rsplit_once('@').map_or(base, |(_, host)| host);
        if host_part.trim_matches('/').is_empty() || host_part.starts_with(':') {
            return Err(err("no host"));
        }
        let (security, lettre) = match (scheme.to_ascii_lowercase().as_str(), tls) {
            ("smtp", None | Some("required")) => (
                SmtpSecurity::StartTls,
                format!("smtp://{base}?tls=required"),
            ),
            ("smtp", Some("none")) => (SmtpSecurity::None, format!("smtp://{base}")),
            ("smtp", Some(_)) => return Err(err("tls must be none or required")),
            ("smtps", None) => (SmtpSecurity::Implicit, format!("smtps://{base}")),
            ("smtps", Some(_)) => return Err(err("smtps:// takes no tls parameter")),
            _ => return Err(err("the scheme must be smtp:// or smtps://")),
        };
        // lettre's own reading, so that a URL accepted here is one the transport can use.
        AsyncSmtpTransport::<Tokio1Executor>::from_url(&lettre)
            .map_err(|_| err("not a URL lettre can use (host, port or credentials)"))?;
        Ok(Self {
            lettre: SecretString::from(lettre),
            security,
        })
    }

    /// How the connection is secured.
    #[must_use]
    pub fn security(&self) -> SmtpSecurity {
        self.security
    }
}

/// Reads `MAIL_FROM` (`auth@example.com` or `Example <auth@example.com>`).
///
/// # Errors
/// Not an address `lettre` can send from.
pub fn parse_from(from: &str) -> Result<Mailbox, MailSettingsError> {
    from.parse::<Mailbox>()
        .map_err(|e| MailSettingsError(format!("MAIL_FROM: not a mailbox ({e})")))
}

/// `mail` as a MIME message: `multipart/alternative` with the text and HTML parts.
fn message(from: &Mailbox, mail: &OutgoingMail) -> Result<Message, MailError> {
    let to: Mailbox = mail.to.as_str().parse().map_err(|_| {
        MailError::Permanent("the recipient is not a mailbox lettre accepts".into())
    })?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
        .map_err(|_| MailError::Permanent("the message could not be built".into()))
}

/// Sends over SMTP. One connection per mail (mails are rare: registrations and resets).
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    security: SmtpSecurity,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer sending from `from` through the server `url` names.
    ///
    /// # Errors
    /// A URL `lettre` cannot use.
    pub fn new(url: &SmtpUrl, from: Mailbox) -> Result<Self, MailSettingsError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.lettre.expose_secret())
            .map_err(|_| MailSettingsError("SMTP_URL: not usable".into()))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(Self {
            transport,
            from,
            security: url.security,
        })
    }
}

/// The rustls error somewhere in `err`'s sources (a certificate that does not verify surfaces
/// as an I/O error of the STARTTLS upgrade, which lettre does not class as TLS).
fn tls_failure(err: &lettre::transport::smtp::Error) -> Option<&rustls::Error> {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && let Some(tls) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        source = cause.source();
    }
    None
}

/// A `lettre` SMTP error as a [`MailError`] that names neither the recipient nor the server's
/// words (a refusal often quotes the address): only the reply code or the kind of failure.
fn classify_smtp(err: &lettre::transport::smtp::Error) -> MailError {
    let code = err.status().map(|code| code.to_string());
    let tls = tls_failure(err);
    let what = match (&code, err.is_timeout(), err.is_tls() || tls.is_some()) {
        (Some(code), _, _) => format!("SMTP server answered {code}"),
        (None, true, _) => "SMTP exchange timed out".to_owned(),
        (None, false, true) => match tls {
            // rustls names the certificate problem (`UnknownIssuer`, `NotValidForName`...),
            // never an address.
            Some(tls) => format!("TLS with the SMTP server failed: {tls}"),
            None => "TLS with the SMTP server failed".to_owned(),
        },
        (None, false, false) if err.is_client() => "SMTP client error".to_owned(),
        (None, false, false) => "SMTP connection failed".to_owned(),
    };
    if err.is_permanent() {
        MailError::Permanent(what.into())
    } else {
        MailError::Transient(what.into())
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let message = message(&self.from, mail)?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| classify_smtp(&e))
    }
}

/// Writes each mail as an `.eml` file (the full MIME message, readable by any mail program)
/// to a folder, for development. Never for production: the links in the files work.
#[derive(Debug, Clone)]
pub struct EmlMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl EmlMailer {
    /// A mailer writing to `dir` (created when missing, on first use).
    #[must_use]
    pub fn new(dir: PathBuf, from: Mailbox) -> Self {
        Self { dir, from }
    }

    /// The folder it writes to.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Writes `bytes` to `dir/name` through a temporary file, flushed, then renamed: a reader
/// never sees half a mail.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}

#[async_trait]
impl Mailer for EmlMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let bytes = message(&self.from, mail)?.formatted();
        // Sortable by time, unique by id.
        let name = format!(
            "{}-{}.eml",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
            uuid::Uuid::now_v7()
        );
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &bytes))
            .await
            .map_err(|e| MailError::Transient(e.into()))?
            .map_err(|e| MailError::Transient(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(raw: &str) -> Result<SmtpUrl, MailSettingsError> {
        SmtpUrl::parse(&SecretString::from(raw.to_owned()))
    }

    #[test]
    fn schemes_and_tls() {
        assert_eq!(
            url("smtp://u:p@mail.example.com:587").unwrap().security(),
            SmtpSecurity::StartTls
        );
        assert_eq!(
            url("smtp://mail.example.com?tls=required")
                .unwrap()
                .security(),
            SmtpSecurity::StartTls
        );
        assert_eq!(
            url("smtp://127.0.0.1:2525?tls=none").unwrap().security(),
            SmtpSecurity::None
        );
        assert_eq!(
            url("smtps://u:p@mail.example.com").unwrap().security(),
            SmtpSecurity::Implicit
        );
        for bad in [
            "http://mail.example.com",
            "smtp://mail.example.com?tls=opportunistic",
            "smtp://mail.example.com?tls=none&tls=none",
            "smtp://mail.example.com?other=1",
            "smtps://mail.example.com?tls=none",
            "smtp://",
            "mail.example.com",
        ] {
            assert!(url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_password_never_shows() {
        let secret = "s3cr3t-pass";
        let parsed = url(&format!("smtp://user:{secret}@mail.example.com:587")).unwrap();
        assert!(!format!("{parsed:?}").contains(secret));
        let mailer = SmtpMailer::new(&parsed, parse_from("auth@example.com").unwrap()).unwrap();
        assert!(!format!("{mailer:?}").contains(secret));
        let err = url(&format!("ftp://user:{secret}@mail.example.com")).unwrap_err();
        assert!(!err.to_string().contains(secret));
    }

    #[tokio::test]
    async fn eml_files_hold_both_parts() {
        let dir = std::env::temp_dir().join(format!("eml-test-{}", uuid::Uuid::now_v7()));
        let mailer = EmlMailer::new(dir.clone(), parse_from("Auth <auth@example.com>").unwrap());
        let mail = OutgoingMail {
            to: auth_core::model::Email::parse("ada@example.com").unwrap(),
            subject: "Hello".into(),
            text: "plain body".into(),
            html: "<p>html body</p>".into(),
        };
        mailer.send(&mail).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(files[0].path()).unwrap();
        assert!(text.contains("To: ada@example.com"));
        assert!(text.contains("Subject: Hello"));
        assert!(text.contains("multipart/alternative"));
        assert!(text.contains("plain body"));
        assert!(text.contains("<p>html body</p>"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
