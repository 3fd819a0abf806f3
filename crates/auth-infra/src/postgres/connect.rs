//! Opening Postgres connections from `DATABASE_URL`, over TLS (rustls) as its `sslmode` says.
//!
//! The pool, the migrations and the invalidation listener all connect through a [`Connector`].
//! Both forms of the connection string are read (`postgres://…?k=v&…` and libpq's `k=v k=v`).
//! tokio-postgres parses everything it knows (hosts, multi-host lists, Unix-socket directories,
//! `target_session_attrs`, `channel_binding`, …); the TLS parameters only libpq knows
//! (`sslmode=verify-ca|verify-full`, `sslrootcert`, `sslcert`, `sslkey`, `sslsni`,
//! `ssl_min_protocol_version`, `ssl_max_protocol_version`) are taken out of the string first and
//! applied here, with libpq's meaning:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow`, `prefer` (default) | if the server offers it | not checked, unless `sslrootcert` is given: then as `verify-ca` |
//! | `require` | always | not checked, unless `sslrootcert` is given: then as `verify-ca` |
//! | `verify-ca` | always | signed by a trusted root |
//! | `verify-full` | always | signed by a trusted root, and issued for the host name (or IP address) connected to |
//!
//! Trusted roots are the certificates of `sslrootcert` (a PEM file) only, the platform's store
//! with `sslrootcert=system` (which, as in libpq, makes `verify-full` the default and refuses
//! weaker modes), or Mozilla's roots (`webpki-roots`) when `sslrootcert` is not given. Unlike
//! libpq, nothing is read from `~/.postgresql/`. Over a Unix socket there is no
//! TLS whatever `sslmode` says, as with libpq.
//!
//! A `Connector` is built once per connection string (the rustls configuration, with its roots
//! and client certificate, is reused by every connection) and shared by the pool, the listener
//! and the migrations of a process. A TLS failure (a certificate that does not verify, a server
//! without TLS) is logged once per burst, naming the problem and the settings, never the
//! password; a bad setting is an error when the connector is built, before any connection.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use auth_core::ErrorChain;
use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    SupportedProtocolVersion,
};
use tokio_postgres::config::{ChannelBinding, Host, SslMode as PgSslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Seconds a connection attempt may take to open its socket, per host, when the connection
/// string does not set `connect_timeout` (libpq waits forever): an unreachable host must not
/// hang start-up or the migrations.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The same, per host, when the connection string names several hosts: a vanished primary
/// (its packets dropped, not refused) must leave the next host time to answer within the
/// pool's `AUTH_DB_TIMEOUT_MS` (2 s by default) for all hosts together.
const MULTI_HOST_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The same TLS failure is logged again after this long.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Connection strings whose connector is kept for reuse (one in a service; tests use a few).
const SHARED_CAPACITY: usize = 32;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it (libpq tries plaintext first; here it is `prefer`).
    Allow,
    /// TLS if the server offers it (the default).
    Prefer,
    /// TLS always; the certificate is checked only when `sslrootcert` is given.
    Require,
    /// TLS always; the certificate must chain to a trusted root.
    VerifyCa,
    /// TLS always; the certificate must chain to a trusted root and name the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, ConnectSettingsError> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(ConnectSettingsError(format!(
                    "unknown sslmode {other:?}: expected disable, allow, prefer, require, \
                     verify-ca or verify-full"
                )));
            }
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection string that cannot be used: a configuration error, not an outage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConnectSettingsError(String);

fn settings_error(msg: impl Into<String>) -> ConnectSettingsError {
    ConnectSettingsError(msg.into())
}

/// Where the trusted roots come from when `sslrootcert` is given (without it: Mozilla's
/// roots, compiled in).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// The platform's store (`sslrootcert=system`).
    System,
    /// The certificates of a PEM file.
    File(PathBuf),
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verification {
    /// Nothing (the handshake still proves the server holds the certificate's key).
    None,
    /// The chain up to a trusted root, not the name.
    Chain,
    /// The chain and the name.
    Full,
}

/// The TLS parameters taken out of the connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TlsParams {
    mode: SslMode,
    /// `sslmode` was written (not the default).
    mode_given: bool,
    root_cert: Option<Roots>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    sni: bool,
    min_tls13: bool,
    max_tls12: bool,
}

impl Default for TlsParams {
    fn default() -> Self {
        Self {
            mode: SslMode::Prefer,
            mode_given: false,
            root_cert: None,
            cert: None,
            key: None,
            sni: true,
            min_tls13: false,
            max_tls12: false,
        }
    }
}

impl TlsParams {
    /// Applies one of the [`LIBPQ_ONLY`] parameters.
    fn apply(&mut self, key: &str, value: &str) -> Result<(), ConnectSettingsError> {
        match key {
            "sslmode" => {
                self.mode = SslMode::parse(value)?;
                self.mode_given = true;
            }
            "sslrootcert" => {
                self.root_cert = match value {
                    "" => None,
                    "system" => Some(Roots::System),
                    path => Some(Roots::File(PathBuf::from(path))),
                }
            }
            "sslcert" => self.cert = (!value.is_empty()).then(|| PathBuf::from(value)),
            "sslkey" => self.key = (!value.is_empty()).then(|| PathBuf::from(value)),
            "sslsni" => {
                self.sni = match value {
                    "1" => true,
                    "0" => false,
                    _ => return Err(settings_error("sslsni must be 0 or 1")),
                }
            }
            "ssl_min_protocol_version" => {
                self.min_tls13 = match value {
                    "" | "TLSv1" | "TLSv1.1" | "TLSv1.2" => false,
                    "TLSv1.3" => true,
                    _ => return Err(tls_version_error(key)),
                }
            }
            "ssl_max_protocol_version" => {
                self.max_tls12 = match value {
                    "" | "TLSv1.3" => false,
                    "TLSv1.2" => true,
                    "TLSv1" | "TLSv1.1" => {
                        return Err(settings_error(format!(
                            "{key}={value}: only TLS 1.2 and 1.3 are supported"
                        )));
                    }
                    _ => return Err(tls_version_error(key)),
                }
            }
            // Ignored by libpq itself since PostgreSQL 14.
            "sslcompression" => {}
            // No GSSAPI here: `prefer` (libpq's default) and `disable` both mean "without".
            "gssencmode" => match value {
                "disable" | "prefer" => {}
                _ => {
                    return Err(settings_error(
                        "gssencmode=require is not supported (no GSSAPI encryption); use TLS",
                    ));
                }
            },
            "sslpassword" => {
                return Err(settings_error(
                    "sslpassword is not supported: give sslkey an unencrypted key \
                     (openssl pkey -in encrypted.key -out client.key)",
                ));
            }
            "sslcrl" | "sslcrldir" => {
                return Err(settings_error(format!("{key} is not supported")));
            }
            _ => {}
        }
        Ok(())
    }

    fn verification(&self) -> Verification {
        match self.mode {
            SslMode::VerifyFull => Verification::Full,
            SslMode::VerifyCa => Verification::Chain,
            // libpq checks the chain in every mode once a root certificate is given.
            _ if self.root_cert.is_some() => Verification::Chain,
            _ => Verification::None,
        }
    }

    /// Checks the parameters together, after all are applied.
    fn finish(&mut self) -> Result<(), ConnectSettingsError> {
        // As libpq (16+): the platform's roots trust any public certificate, so only a check
        // of the name makes them mean something.
        if self.root_cert == Some(Roots::System) {
            if !self.mode_given {
                self.mode = SslMode::VerifyFull;
            } else if self.mode != SslMode::VerifyFull {
                return Err(settings_error(format!(
                    "sslrootcert=system needs sslmode=verify-full (sslmode is {})",
                    self.mode
                )));
            }
        }
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(settings_error(
                "sslcert is given without sslkey (the client certificate's private key)",
            )),
            (None, Some(_)) => Err(settings_error(
                "sslkey is given without sslcert (the client certificate)",
            )),
            _ if self.min_tls13 && self.max_tls12 => Err(settings_error(
                "ssl_min_protocol_version is above ssl_max_protocol_version",
            )),
            _ => Ok(()),
        }
    }

    /// The settings in force, for log lines (paths, never secrets).
    fn describe(&self) -> String {
        let mut out = format!("sslmode={}", self.mode);
        if self.mode != SslMode::Disable {
            match &self.root_cert {
                Some(Roots::File(path)) => {
                    out.push_str(&format!(", sslrootcert={}", path.display()));
                }
                Some(Roots::System) => out.push_str(", sslrootcert=system"),
                None if self.verification() != Verification::None => {
                    out.push_str(", roots: Mozilla's (no sslrootcert)");
                }
                None => {}
            }
            if let Some(cert) = &self.cert {
                out.push_str(&format!(", sslcert={}", cert.display()));
            }
        }
        out
    }
}

fn tls_version_error(key: &str) -> ConnectSettingsError {
    settings_error(format!("{key} must be TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3"))
}

/// The connection string without the parameters tokio-postgres does not know, and those
/// parameters (decoded), in order.
#[derive(Debug, PartialEq, Eq)]
struct Split {
    rest: String,
    libpq: Vec<(String, String)>,
}

/// Parameters taken out of the string before tokio-postgres parses it.
const LIBPQ_ONLY: [&str; 12] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslsni",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "sslcompression",
    "gssencmode",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
];

fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

fn percent_decode(s: &str) -> Result<String, ConnectSettingsError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| settings_error("a URL parameter is not valid UTF-8 once percent-decoded"))
}

/// Splits the URL form. Only the query string is rewritten, and the parameters that stay are
/// kept byte for byte, so credentials, host lists and socket paths reach tokio-postgres as
/// given. The query starts at the first `?` after the credentials, as tokio-postgres reads it.
fn split_url(url: &str) -> Result<Split, ConnectSettingsError> {
    let credentials_end = url.find('@').map_or(0, |at| at + 1);
    let Some(query_start) = url[credentials_end..]
        .find('?')
        .map(|q| q + credentials_end)
    else {
        return Ok(Split {
            rest: url.to_owned(),
            libpq: Vec::new(),
        });
    };
    let mut kept = Vec::new();
    let mut libpq = Vec::new();
    for pair in url[query_start + 1..].split('&') {
        if pair.is_empty() {
            continue;
        }
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(raw_key)?;
        if LIBPQ_ONLY.contains(&key.as_str()) {
            libpq.push((key, percent_decode(raw_value)?));
        } else {
            kept.push(pair);
        }
    }
    let mut rest = url[..query_start].to_owned();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok(Split { rest, libpq })
}

/// Reads libpq's `key = value` form as tokio-postgres does (values may be single-quoted;
/// a backslash escapes the next character).
fn key_values(s: &str) -> Result<Vec<(String, String)>, ConnectSettingsError> {
    let mut out = Vec::new();
    read_key_values(s, &mut out)?;
    Ok(out)
}

/// [`key_values`], leaving in `out` the parameters read before an error.
fn read_key_values(s: &str, out: &mut Vec<(String, String)>) -> Result<(), ConnectSettingsError> {
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            if chars.peek().is_some() {
                return Err(settings_error("a connection parameter has no name"));
            }
            return Ok(());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(settings_error(format!(
                "connection parameter `{key}` has no `=`"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => {
                        return Err(settings_error(format!(
                            "the quoted value of `{key}` is not terminated"
                        )));
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return Err(settings_error(format!(
                    "connection parameter `{key}` has no value"
                )));
            }
        }
        out.push((key, value));
    }
}

fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Splits the `key=value` form; the parameters that stay are written back quoted.
fn split_key_values(s: &str) -> Result<Split, ConnectSettingsError> {
    let mut kept = Vec::new();
    let mut libpq = Vec::new();
    for (key, value) in key_values(s)? {
        if LIBPQ_ONLY.contains(&key.as_str()) {
            libpq.push((key, value));
        } else {
            kept.push(format!("{key}={}", quote(&value)));
        }
    }
    Ok(Split {
        rest: kept.join(" "),
        libpq,
    })
}

fn split(conninfo: &str) -> Result<Split, ConnectSettingsError> {
    if is_url(conninfo) {
        split_url(conninfo)
    } else {
        split_key_values(conninfo)
    }
}

/// The password written in a connection string, raw and decoded, so that no error message
/// can carry it (best effort on strings that do not parse).
fn passwords_in(conninfo: &str) -> Vec<String> {
    let mut found = Vec::new();
    if is_url(conninfo) {
        let after_scheme = conninfo.split_once("://").map_or("", |(_, rest)| rest);
        if let Some((credentials, _)) = after_scheme.split_once('@')
            && let Some((_, password)) = credentials.split_once(':')
        {
            found.push(password.to_owned());
            if let Ok(decoded) = percent_decode(password) {
                found.push(decoded);
            }
        }
        for pair in conninfo.split(['?', '&']) {
            if let Some(value) = pair.strip_prefix("password=") {
                found.push(value.to_owned());
                if let Ok(decoded) = percent_decode(value) {
                    found.push(decoded);
                }
            }
        }
    } else {
        let mut pairs = Vec::new();
        let _complete = read_key_values(conninfo, &mut pairs);
        found.extend(
            pairs
                .into_iter()
                .filter(|(key, _)| key == "password")
                .map(|(_, value)| value),
        );
    }
    found.retain(|p| !p.is_empty());
    found
}

fn redact(message: String, passwords: &[String]) -> String {
    passwords.iter().fold(message, |message, password| {
        message.replace(password.as_str(), "***")
    })
}

/// Accepts any server certificate: for `prefer` and `require` without `sslrootcert`, as libpq.
/// The handshake signatures are still checked (the server holds the key of the certificate it
/// shows, which is what channel binding relies on).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must verify, the name need not match. webpki checks the chain before
/// the name, so a name error means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.0.root_hint_subjects()
    }
}

fn pem_error(what: &str, path: &Path, err: &rustls::pki_types::pem::Error) -> ConnectSettingsError {
    let detail = match err {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("not a readable PEM file ({other})"),
    };
    settings_error(format!("{what} {}: {detail}", path.display()))
}

fn read_certificates(
    what: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConnectSettingsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| pem_error(what, path, &e))?;
    if certs.is_empty() {
        return Err(settings_error(format!(
            "{what} {}: no certificate (BEGIN CERTIFICATE) in it",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConnectSettingsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => settings_error(format!(
            "sslkey {}: no private key in it (PKCS#8, PKCS#1 or SEC1 PEM; encrypted keys are \
             not supported)",
            path.display()
        )),
        other => pem_error("sslkey", path, &other),
    })
}

fn root_store(roots: Option<&Roots>) -> Result<RootCertStore, ConnectSettingsError> {
    match roots {
        None => Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        Some(Roots::System) => {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_owned(), ToString::to_string);
                return Err(settings_error(format!(
                    "sslrootcert=system: no root certificate in the platform's store ({why})"
                )));
            }
            Ok(store)
        }
        Some(Roots::File(path)) => {
            let mut store = RootCertStore::empty();
            for cert in read_certificates("sslrootcert", path)? {
                store.add(cert).map_err(|e| {
                    settings_error(format!(
                        "sslrootcert {}: a certificate cannot be used as a root ({e})",
                        path.display()
                    ))
                })?;
            }
            Ok(store)
        }
    }
}

/// The rustls configuration for `params`: built once per connector.
fn client_config(params: &TlsParams) -> Result<ClientConfig, ConnectSettingsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&SupportedProtocolVersion] = match (params.min_tls13, params.max_tls12) {
        (true, _) => &[&rustls::version::TLS13],
        (false, true) => &[&rustls::version::TLS12],
        (false, false) => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| settings_error(format!("TLS: {e}")))?;
    let webpki = || {
        let roots = Arc::new(root_store(params.root_cert.as_ref())?);
        WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| settings_error(format!("TLS roots: {e}")))
    };
    let verifier: Arc<dyn ServerCertVerifier> = match params.verification() {
        Verification::None => Arc::new(AnyCertificate(provider.clone())),
        Verification::Chain => Arc::new(ChainOnly(webpki()?)),
        Verification::Full => webpki()?,
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&params.cert, &params.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certificates("sslcert", cert)?, read_private_key(key)?)
            .map_err(|e| {
                settings_error(format!(
                    "sslcert {} with sslkey {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })?,
        _ => builder.with_no_client_auth(),
    };
    config.enable_sni = params.sni;
    // PostgreSQL 17 checks it when given, and needs it for `sslnegotiation=direct`.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// Remembers the last TLS failure logged, so that a burst of attempts logs it once.
#[derive(Debug, Default)]
struct FailureLog(Mutex<Option<(String, Instant)>>);

impl FailureLog {
    /// True when `message` should be logged now.
    fn first(&self, message: &str) -> bool {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let repeated = last.as_ref().is_some_and(|(logged, at)| {
            logged == message && now.duration_since(*at) < FAILURE_LOG_EVERY
        });
        if !repeated {
            *last = Some((message.to_owned(), now));
        }
        !repeated
    }

    fn clear(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// The TLS error inside a connection error, if any (rustls errors travel inside `io::Error`s,
/// whose `source` skips them).
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(inner);
        }
        current = err.source();
    }
    None
}

/// Opens connections for one connection string. Cheap to share; see the module documentation.
pub struct Connector {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    params: TlsParams,
    /// `sslmode=…, sslrootcert=…` for log lines.
    described: String,
    /// `host:port, …` for log lines.
    servers: String,
    failures: FailureLog,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("servers", &self.servers)
            .field("tls", &self.described)
            .finish_non_exhaustive()
    }
}

fn is_local_host(host: &Host) -> bool {
    match host {
        Host::Tcp(name) => {
            let name = name.trim_start_matches('[').trim_end_matches(']');
            name.eq_ignore_ascii_case("localhost")
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    }
}

fn host_label(host: &Host) -> String {
    match host {
        Host::Tcp(name) => name.clone(),
        #[cfg(unix)]
        Host::Unix(path) => path.display().to_string(),
    }
}

impl Connector {
    /// Reads a connection string (URL or `key=value` form) and builds its TLS configuration,
    /// reading the certificate and key files it names.
    ///
    /// # Errors
    /// [`ConnectSettingsError`] naming the setting that cannot be used; it never contains the
    /// password.
    pub fn new(conninfo: &str) -> Result<Self, ConnectSettingsError> {
        let passwords = passwords_in(conninfo);
        Self::build(conninfo).map_err(|e| ConnectSettingsError(redact(e.0, &passwords)))
    }

    fn build(conninfo: &str) -> Result<Self, ConnectSettingsError> {
        // Another scheme would be read as key=value pairs and refused with a puzzling
        // message; the scheme alone is named (the rest may hold a password).
        if let Some((scheme, _)) = conninfo.trim_start().split_once("://")
            && !is_url(conninfo.trim_start())
            && !scheme.contains(['=', ' '])
        {
            return Err(settings_error(format!(
                "expected postgres:// (or postgresql://), got {scheme}://"
            )));
        }
        let Split { rest, libpq } = split(conninfo)?;
        let mut params = TlsParams::default();
        for (key, value) in &libpq {
            params.apply(key, value)?;
        }
        params.finish()?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| settings_error(ErrorChain(&e).to_string()))?;
        if config.get_connect_timeout().is_none() {
            let hosts = config.get_hosts().len().max(config.get_hostaddrs().len());
            config.connect_timeout(if hosts > 1 {
                MULTI_HOST_CONNECT_TIMEOUT
            } else {
                DEFAULT_CONNECT_TIMEOUT
            });
        }
        // No TLS over Unix sockets (PostgreSQL does not offer it), as libpq.
        let sockets_only = !config.get_hosts().is_empty()
            && config.get_hostaddrs().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| !matches!(h, Host::Tcp(_)));
        let mode = if sockets_only {
            SslMode::Disable
        } else {
            params.mode
        };
        config.ssl_mode(match mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Allow | SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        });
        if config.get_channel_binding() == ChannelBinding::Require && mode == SslMode::Disable {
            return Err(settings_error(if sockets_only {
                "channel_binding=require needs TLS, which Unix sockets do not use"
            } else {
                "channel_binding=require needs TLS, and sslmode is disable"
            }));
        }
        let tls = MakeRustlsConnect::new(client_config(&params)?);
        let hosts = config.get_hosts();
        let ports = config.get_ports();
        let servers = (0..hosts.len().max(config.get_hostaddrs().len()))
            .map(|i| {
                let host = hosts.get(i).map(host_label).unwrap_or_else(|| {
                    config
                        .get_hostaddrs()
                        .get(i)
                        .map(ToString::to_string)
                        .unwrap_or_default()
                });
                let port = ports
                    .get(i)
                    .or_else(|| ports.first())
                    .copied()
                    .unwrap_or(5432);
                format!("{host}:{port}")
            })
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Self {
            described: params.describe(),
            config,
            tls,
            params,
            servers,
            failures: FailureLog::default(),
        })
    }

    /// The connector for `conninfo`, built on first use and shared afterwards, so that the
    /// pool, the listener and the migrations of a process load their roots once and log a
    /// TLS failure once.
    ///
    /// # Errors
    /// As [`Connector::new`].
    pub fn shared(conninfo: &str) -> Result<Arc<Self>, ConnectSettingsError> {
        static SHARED: Mutex<Vec<(String, Arc<Connector>)>> = Mutex::new(Vec::new());
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, connector)) = shared.iter().find(|(known, _)| known == conninfo) {
            return Ok(connector.clone());
        }
        let connector = Arc::new(Self::new(conninfo)?);
        if shared.len() >= SHARED_CAPACITY {
            shared.remove(0);
        }
        shared.push((conninfo.to_owned(), connector.clone()));
        Ok(connector)
    }

    /// The `sslmode` asked for.
    #[must_use]
    pub fn ssl_mode(&self) -> SslMode {
        self.params.mode
    }

    /// The TLS settings in force, for log lines (`sslmode=verify-full, sslrootcert=/…`).
    #[must_use]
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// The hosts that are not this machine (not `localhost`, a loopback address or a Unix
    /// socket), when `sslmode` is not `verify-full`: connections to them could be intercepted.
    #[must_use]
    pub fn unverified_remote_hosts(&self) -> Vec<String> {
        if self.params.mode == SslMode::VerifyFull {
            return Vec::new();
        }
        let hosts = self.config.get_hosts();
        let addrs = self.config.get_hostaddrs();
        (0..hosts.len().max(addrs.len()))
            .filter_map(|i| match (addrs.get(i), hosts.get(i)) {
                (Some(ip), _) if ip.is_loopback() => None,
                (Some(ip), host) => Some(host.map_or_else(|| ip.to_string(), host_label)),
                (None, Some(host)) if is_local_host(host) => None,
                (None, Some(host)) => Some(host_label(host)),
                (None, None) => None,
            })
            .collect()
    }

    /// Opens a connection.
    ///
    /// # Errors
    /// The driver's error as a [`ConnectionError`]; a TLS failure is also logged (once per
    /// burst) with a message naming the problem and the TLS settings.
    pub async fn connect(&self) -> Result<AsyncPgConnection, ConnectionError> {
        match self.config.connect(self.tls.clone()).await {
            Ok((client, connection)) => {
                self.failures.clear();
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
            Err(err) => Err(ConnectionError::BadConnection(self.explain(&err))),
        }
    }

    /// The message for a failed connection; TLS failures are rewritten in plain words and
    /// logged.
    fn explain(&self, err: &tokio_postgres::Error) -> String {
        let headline = match rustls_error(err) {
            Some(
                tls @ (rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::UnsupportedNameType),
            ) => format!("TLS certificate of the database server did not verify: {tls}"),
            Some(tls @ rustls::Error::AlertReceived(_)) if self.params.cert.is_some() => format!(
                "the database server refused the TLS connection (check the client certificate): \
                 {tls}"
            ),
            Some(tls) => format!("TLS handshake with the database server failed: {tls}"),
            None if ErrorChain(err)
                .to_string()
                .contains("server does not support TLS") =>
            {
                format!(
                    "the database server does not offer TLS, which sslmode={} requires",
                    self.params.mode
                )
            }
            // The driver names neither the host nor the port that refused or timed out.
            None => return format!("{} (database at {})", ErrorChain(err), self.servers),
        };
        let message = format!("{headline} ({})", self.described);
        if self.failures.first(&message) {
            tracing::error!(servers = %self.servers, "{message}");
        }
        message
    }
}

/// Opens a connection for `conninfo` through its shared [`Connector`].
///
/// # Errors
/// A [`ConnectionError`]: `InvalidConnectionUrl` for settings that cannot be used, otherwise
/// as [`Connector::connect`].
pub async fn establish(conninfo: &str) -> Result<AsyncPgConnection, ConnectionError> {
    let connector =
        Connector::shared(conninfo).map_err(|e| ConnectionError::InvalidConnectionUrl(e.0))?;
    connector.connect().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(conninfo: &str) -> Connector {
        Connector::new(conninfo).unwrap_or_else(|e| panic!("{conninfo}: {e}"))
    }

    fn refused(conninfo: &str) -> String {
        match Connector::new(conninfo) {
            Ok(c) => panic!("{conninfo} was accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// A PEM file of this test's own, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("auth-infra-connect-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{e}"));
            Self(path)
        }

        fn path(&self) -> String {
            self.0.display().to_string()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn each_sslmode_sets_tls_and_verification() {
        let cases = [
            ("disable", PgSslMode::Disable, Verification::None),
            ("allow", PgSslMode::Prefer, Verification::None),
            ("prefer", PgSslMode::Prefer, Verification::None),
            ("require", PgSslMode::Require, Verification::None),
            ("verify-ca", PgSslMode::Require, Verification::Chain),
            ("verify-full", PgSslMode::Require, Verification::Full),
        ];
        for (mode, pg, verification) in cases {
            for conninfo in [
                format!("postgres://u:p@db.example.com/app?sslmode={mode}"),
                format!("host=db.example.com user=u password=p dbname=app sslmode={mode}"),
            ] {
                let c = connector(&conninfo);
                assert_eq!(c.ssl_mode().as_str(), mode, "{conninfo}");
                assert_eq!(c.config.get_ssl_mode(), pg, "{conninfo}");
                assert_eq!(c.params.verification(), verification, "{conninfo}");
                assert_eq!(c.config.get_password(), Some(&b"p"[..]), "{conninfo}");
                assert_eq!(c.config.get_dbname(), Some("app"), "{conninfo}");
            }
        }
        // The default is prefer, as libpq's.
        let c = connector("postgres://u@db.example.com/app");
        assert_eq!(c.ssl_mode(), SslMode::Prefer);
        assert_eq!(c.config.get_ssl_mode(), PgSslMode::Prefer);
    }

    #[test]
    fn a_root_certificate_makes_prefer_and_require_check_the_chain() {
        // As libpq: with sslrootcert, prefer and require check the chain as verify-ca does.
        for mode in ["allow", "prefer", "require"] {
            let mut params = TlsParams::default();
            for (key, value) in [("sslmode", mode), ("sslrootcert", "/etc/ca.pem")] {
                params.apply(key, value).unwrap_or_else(|e| panic!("{e}"));
            }
            assert_eq!(params.verification(), Verification::Chain, "{mode}");
            assert_eq!(
                params.describe(),
                format!("sslmode={mode}, sslrootcert=/etc/ca.pem")
            );
        }
        // The platform's roots: verify-full by default, and nothing weaker.
        let system = |mode: Option<&str>| {
            let mut params = TlsParams::default();
            let mut pairs = vec![("sslrootcert", "system")];
            pairs.extend(mode.map(|m| ("sslmode", m)));
            for (key, value) in pairs {
                params.apply(key, value).unwrap_or_else(|e| panic!("{e}"));
            }
            params.finish().map(|()| params)
        };
        let params = system(None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(params.root_cert, Some(Roots::System));
        assert_eq!(params.mode, SslMode::VerifyFull);
        assert!(system(Some("verify-full")).is_ok());
        let refused = system(Some("require")).map(|_| ()).unwrap_err();
        assert!(refused.0.contains("needs sslmode=verify-full"), "{refused}");
        assert_eq!(
            connector("postgres://h/app?sslmode=verify-full").describe(),
            "sslmode=verify-full, roots: Mozilla's (no sslrootcert)"
        );
        assert_eq!(connector("postgres://h/app").describe(), "sslmode=prefer");
    }

    #[test]
    fn another_scheme_is_named_without_the_rest_of_the_url() {
        let message = refused("mysql://root:hunter2@db.example.com/app");
        assert!(message.contains("expected postgres://"), "{message}");
        assert!(message.contains("got mysql://"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        connector("postgresql://u@h/app");
        connector("host=h dbname=app");
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_host_and_port() {
        let port = {
            let listener =
                std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
            listener.local_addr().map(|a| a.port()).unwrap_or_default()
        };
        let url = format!("postgres://u:p@127.0.0.1:{port}/app?sslmode=disable");
        let Err(err) = connector(&url).connect().await else {
            panic!("connected to a closed port");
        };
        let message = err.to_string();
        assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    }

    #[test]
    fn url_rewriting_keeps_credentials_hosts_and_other_parameters_verbatim() {
        let url = "postgres://app%40corp:p%40ss%2Fw%3Fd%26x@db1.example.com:5433,db2.example.com:5434/my%20db\
                   ?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem\
                   &application_name=auth&connect_timeout=3";
        let split = split(url).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            split.rest,
            "postgres://app%40corp:p%40ss%2Fw%3Fd%26x@db1.example.com:5433,db2.example.com:5434/my%20db\
             ?target_session_attrs=read-write&application_name=auth&connect_timeout=3"
        );
        assert_eq!(
            split.libpq,
            [
                ("sslmode".to_owned(), "verify-full".to_owned()),
                ("sslrootcert".to_owned(), "/etc/ca.pem".to_owned()),
            ]
        );
        // A password holding `?` before the `@` is not taken for the query.
        let split =
            split_url("postgres://u:a?b@h/db?sslmode=require").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(split.rest, "postgres://u:a?b@h/db");
        assert_eq!(split.libpq, [("sslmode".to_owned(), "require".to_owned())]);
        // Nothing else in the query: no dangling `?`.
        assert_eq!(
            split_url("postgresql://h/db?sslmode=disable").map(|s| s.rest),
            Ok("postgresql://h/db".to_owned())
        );
        assert_eq!(
            split_url("postgres://h").map(|s| s.rest),
            Ok("postgres://h".to_owned())
        );
    }

    #[test]
    fn multi_host_urls_keep_every_host_and_the_session_attributes() {
        let c = connector(
            "postgres://u:p%40ss@10.0.0.1:5432,10.0.0.2:5433/app\
             ?target_session_attrs=read-write&sslmode=require",
        );
        assert_eq!(
            c.config.get_hosts(),
            [
                Host::Tcp("10.0.0.1".to_owned()),
                Host::Tcp("10.0.0.2".to_owned())
            ]
        );
        assert_eq!(c.config.get_ports(), [5432, 5433]);
        assert_eq!(
            c.config.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        assert_eq!(c.config.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(c.servers, "10.0.0.1:5432, 10.0.0.2:5433");
        assert_eq!(c.unverified_remote_hosts(), ["10.0.0.1", "10.0.0.2"]);

        let c = connector(
            "host=db1,db2 port=5432,5433 user=u password='a b\\'c' dbname=app \
             target_session_attrs=read-write sslmode=verify-full",
        );
        assert_eq!(c.config.get_hosts().len(), 2);
        assert_eq!(c.config.get_password(), Some(&b"a b'c"[..]));
        assert!(c.unverified_remote_hosts().is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn unix_socket_hosts_stay_sockets_and_use_no_tls() {
        for conninfo in [
            "postgres://u:p@/app?host=/var/run/postgresql&sslmode=require",
            "postgres://u:p@%2Fcloudsql%2Fproj%3Aregion%3Ainst/app?sslmode=verify-full",
            "host=/cloudsql/proj:region:inst user=u dbname=app sslmode=verify-full",
        ] {
            let c = connector(conninfo);
            let [Host::Unix(path)] = c.config.get_hosts() else {
                panic!("{conninfo}: {:?}", c.config.get_hosts());
            };
            assert!(path.starts_with("/"), "{conninfo}");
            // PostgreSQL offers no TLS on sockets; libpq ignores sslmode there.
            assert_eq!(c.config.get_ssl_mode(), PgSslMode::Disable, "{conninfo}");
            assert!(c.unverified_remote_hosts().is_empty(), "{conninfo}");
        }
        let c = connector("postgres://u@/app?host=%2Fvar%2Frun%2Fpostgresql");
        assert_eq!(
            c.config.get_hosts(),
            [Host::Unix(PathBuf::from("/var/run/postgresql"))]
        );
        assert!(refused("host=/tmp user=u channel_binding=require").contains("Unix sockets"));
    }

    #[test]
    fn key_value_rewriting_keeps_quoted_values() {
        let split = split_key_values(
            "host = db.example.com  password='it\\'s' user=u\\ v sslmode=verify-ca \
             sslrootcert='/etc/my certs/ca.pem' options='-c search_path=a\\\\b'",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            split.rest,
            "host='db.example.com' password='it\\'s' user='u v' options='-c search_path=a\\\\b'"
        );
        assert_eq!(
            split.libpq,
            [
                ("sslmode".to_owned(), "verify-ca".to_owned()),
                ("sslrootcert".to_owned(), "/etc/my certs/ca.pem".to_owned()),
            ]
        );
        let config: tokio_postgres::Config = split.rest.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.get_password(), Some(&b"it's"[..]));
        assert_eq!(config.get_user(), Some("u v"));
        assert_eq!(config.get_options(), Some("-c search_path=a\\b"));
    }

    #[test]
    fn a_connect_timeout_is_set_unless_given() {
        assert_eq!(
            connector("postgres://h/db").config.get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
        assert_eq!(
            connector("postgres://h/db?connect_timeout=3")
                .config
                .get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        assert_eq!(
            connector("host=h connect_timeout=4")
                .config
                .get_connect_timeout(),
            Some(&Duration::from_secs(4))
        );
        assert_eq!(
            connector("postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write")
                .config
                .get_connect_timeout(),
            Some(&MULTI_HOST_CONNECT_TIMEOUT),
            "several hosts: each must leave the next one time"
        );
        assert_eq!(
            connector("postgres://u@h1,h2/db?connect_timeout=2")
                .config
                .get_connect_timeout(),
            Some(&Duration::from_secs(2))
        );
    }

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        let missing = std::env::temp_dir().join("auth-infra-no-such-dir/ca.pem");
        let missing = missing.display();
        let not_pem = TempFile::new("not-pem.pem", "not a certificate\n");
        let cases = [
            (
                "postgres://h/db?sslmode=verify_full",
                "unknown sslmode \"verify_full\"",
            ),
            ("host=h sslmode=on", "unknown sslmode \"on\""),
            (
                &format!("postgres://h/db?sslmode=verify-full&sslrootcert={missing}")[..],
                "sslrootcert",
            ),
            (
                &format!("postgres://h/db?sslrootcert={}", not_pem.path()),
                "no certificate",
            ),
            (
                "postgres://h/db?sslcert=/c.pem",
                "sslcert is given without sslkey",
            ),
            (
                "postgres://h/db?sslkey=/c.key",
                "sslkey is given without sslcert",
            ),
            (
                "postgres://h/db?sslpassword=x",
                "sslpassword is not supported",
            ),
            ("postgres://h/db?sslcrl=/crl.pem", "sslcrl is not supported"),
            ("postgres://h/db?gssencmode=require", "gssencmode=require"),
            ("postgres://h/db?sslsni=2", "sslsni"),
            (
                "postgres://h/db?ssl_max_protocol_version=TLSv1.1",
                "only TLS 1.2 and 1.3",
            ),
            (
                "postgres://h/db?ssl_min_protocol_version=TLSv1.3&ssl_max_protocol_version=TLSv1.2",
                "above",
            ),
            (
                "postgres://h/db?channel_binding=require&sslmode=disable",
                "channel_binding",
            ),
            (
                "postgres://h/db?no_such_option=1",
                "unknown option `no_such_option`",
            ),
            ("host=h port=x", "invalid value for option `port`"),
            ("host='h", "not terminated"),
        ];
        for (conninfo, expected) in cases {
            let message = refused(conninfo);
            assert!(message.contains(expected), "{conninfo}: {message}");
        }
        let message = refused(&format!(
            "postgres://h/db?sslmode=verify-full&sslrootcert={missing}"
        ));
        assert!(message.contains(&missing.to_string()), "{message}");
        assert!(message.contains("No such file"), "{message}");
    }

    #[test]
    fn errors_never_carry_the_password() {
        for conninfo in [
            "postgres://u:s3cr3t-pw@h/db?sslmode=s3cr3t-pw",
            "postgres://u:s3cr3t%2Dpw@h/db?s3cr3t-pw=1",
            "postgres://u@h/db?password=s3cr3t-pw&sslmode=s3cr3t-pw",
            "host=h password=s3cr3t-pw sslmode=s3cr3t-pw",
            "host=h password='s3cr3t-pw' s3cr3t-pw",
        ] {
            let message = refused(conninfo);
            assert!(!message.contains("s3cr3t"), "{conninfo}: {message}");
        }
        let c = connector("postgres://u:s3cr3t@h/db?sslmode=require");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn local_hosts_draw_no_verify_full_warning() {
        for conninfo in [
            "postgres://u@localhost/db",
            "postgres://u@127.0.0.1/db?sslmode=disable",
            "postgres://u@[::1]:5432/db",
            "host=::1 user=u",
            "host=db.internal hostaddr=127.0.0.1 user=u",
        ] {
            assert!(
                connector(conninfo).unverified_remote_hosts().is_empty(),
                "{conninfo}"
            );
        }
        assert_eq!(
            connector("postgres://u@localhost,db.example.com/db?sslmode=verify-ca")
                .unverified_remote_hosts(),
            ["db.example.com"]
        );
        assert_eq!(
            connector("host=db.internal hostaddr=10.1.2.3 user=u").unverified_remote_hosts(),
            ["db.internal"]
        );
    }

    #[test]
    fn connectors_are_shared_per_connection_string() {
        let a = Connector::shared("postgres://u@h/shared-test-a").unwrap_or_else(|e| panic!("{e}"));
        let b = Connector::shared("postgres://u@h/shared-test-a").unwrap_or_else(|e| panic!("{e}"));
        let c = Connector::shared("postgres://u@h/shared-test-c").unwrap_or_else(|e| panic!("{e}"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn a_failure_is_logged_once_per_burst() {
        let log = FailureLog::default();
        assert!(log.first("a"));
        assert!(!log.first("a"));
        assert!(log.first("b"));
        log.clear();
        assert!(log.first("b"));
    }
}
