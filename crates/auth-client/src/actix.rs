//! actix-web extractors (feature `actix`): a handler names who may call it in its signature.
//!
//! ```no_run
//! use actix_web::{App, HttpServer, get, web};
//! use auth_client::AuthClient;
//! use auth_client::actix::AuthenticatedUser;
//!
//! #[get("/profile")]
//! async fn profile(user: AuthenticatedUser) -> String {
//!     format!("hello {}", user.user_id)
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let client = AuthClient::new("http://localhost:8000").expect("client");
//! HttpServer::new(move || App::new().app_data(web::Data::new(client.clone())).service(profile))
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await
//! # }
//! ```
//!
//! The extractors find the [`AuthClient`] in the app data (`web::Data<AuthClient>`, or an
//! `AuthClient` registered with `app_data` directly) and refuse a request with the service's
//! own error format, `application/problem+json`:
//!
//! | situation | answer |
//! |---|---|
//! | no credentials | 401 `UNAUTHENTICATED`, `WWW-Authenticate: Bearer realm="auth"` |
//! | bad, expired or revoked credentials | 401 `UNAUTHENTICATED`, `WWW-Authenticate: Bearer realm="auth", error="invalid_token"` |
//! | an API key lacking a required scope | 403 `FORBIDDEN`, `WWW-Authenticate: Bearer realm="auth", error="insufficient_scope", scope="..."` |
//! | an API key over its rate limit | 429 `RATE_LIMITED` with `Retry-After` (seconds until its window ends) |
//! | an API key with no credit left | 403 `FORBIDDEN` |
//! | the auth service cannot be reached, and no cached answer | 503 `SERVICE_UNAVAILABLE` with `Retry-After` |
//! | no client registered, or local verification impossible in `Local` mode | 500 `INTERNAL_ERROR` (logged) |

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use secrecy::{ExposeSecret as _, SecretString};

use crate::client::AuthClient;
use crate::config::TokenVerification;
use crate::error::{Error, TokenError};
use crate::types::{ApiKeyVerdict, KeyRejection, VerifiedApiKey, VerifiedDevice, VerifiedUser};

/// The `X-API-Key` header, where [`ApiKeyPrincipal`] reads the key (as the service does).
pub const X_API_KEY: &str = "x-api-key";

/// How an extractor verifies tokens: chosen by a type parameter, the client's configured
/// way by default.
pub trait VerifyMode {
    /// The way, given the client's configured one.
    fn mode(configured: TokenVerification) -> TokenVerification;
}

/// The client's configured way ([`TokenConfig::verification`](crate::TokenConfig::verification)).
#[derive(Debug, Clone, Copy)]
pub struct Configured;
/// Locally only (signature and claims; a logout or revocation is seen at expiry).
#[derive(Debug, Clone, Copy)]
pub struct Local;
/// Through the service on every request: logouts and revocations count at once.
#[derive(Debug, Clone, Copy)]
pub struct Remote;

impl VerifyMode for Configured {
    fn mode(configured: TokenVerification) -> TokenVerification {
        configured
    }
}

impl VerifyMode for Local {
    fn mode(_: TokenVerification) -> TokenVerification {
        TokenVerification::Local
    }
}

impl VerifyMode for Remote {
    fn mode(_: TokenVerification) -> TokenVerification {
        TokenVerification::Remote
    }
}

/// Scopes an [`ApiKeyPrincipal`] must hold. Declare one with [`required_scopes!`](crate::required_scopes).
pub trait RequiredScopes {
    /// The scopes (all required; `admin` holds every scope).
    const SCOPES: &'static [&'static str];
}

/// No scope required: any valid key.
#[derive(Debug, Clone, Copy)]
pub struct NoScopes;

impl RequiredScopes for NoScopes {
    const SCOPES: &'static [&'static str] = &[];
}

/// Declares a type naming the scopes an [`ApiKeyPrincipal`] must hold:
///
/// ```
/// auth_client::required_scopes!(pub InvoicesWrite = ["invoices:read", "invoices:write"]);
/// // async fn create(key: ApiKeyPrincipal<InvoicesWrite>) -> ...
/// ```
#[macro_export]
macro_rules! required_scopes {
    ($(#[$meta:meta])* $vis:vis $name:ident = [$($scope:literal),* $(,)?]) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        $vis struct $name;
        impl $crate::actix::RequiredScopes for $name {
            const SCOPES: &'static [&'static str] = &[$($scope),*];
        }
    };
}

/// What went wrong, as the extractors answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No credentials: 401.
    Missing,
    /// Bad, expired or revoked credentials: 401 with `error="invalid_token"`.
    Invalid,
    /// An API key lacking a required scope: 403.
    InsufficientScope,
    /// An API key over its rate limit: 429 with `Retry-After`.
    RateLimited,
    /// An API key with no credit left: 403.
    UsageExceeded,
    /// The auth service cannot be reached: 503.
    Unavailable,
    /// A configuration error of this service: 500.
    Misconfigured,
}

/// A refused request, rendered as a problem document.
#[derive(Debug, Clone)]
pub struct AuthRejection {
    kind: RejectionKind,
    request_id: String,
    retry_after: Option<Duration>,
    missing_scopes: Vec<&'static str>,
}

impl AuthRejection {
    fn new(kind: RejectionKind, req: &HttpRequest) -> Self {
        Self {
            kind,
            request_id: request_id(req),
            retry_after: None,
            missing_scopes: Vec::new(),
        }
    }

    fn unavailable(req: &HttpRequest, retry_after: Option<Duration>) -> Self {
        Self {
            retry_after,
            ..Self::new(RejectionKind::Unavailable, req)
        }
    }

    fn from_token_error(err: &TokenError, req: &HttpRequest, client: &AuthClient) -> Self {
        match err {
            TokenError::Rejected(_) => Self::new(RejectionKind::Invalid, req),
            TokenError::Unavailable(e) => {
                tracing::warn!(error = %e, "auth service unavailable for token verification");
                Self::unavailable(req, retry_hint(e, client))
            }
            TokenError::NoLocalKeys => {
                tracing::error!(error = %err, "tokens cannot be verified");
                Self::new(RejectionKind::Misconfigured, req)
            }
        }
    }

    /// Why the request was refused.
    #[must_use]
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    fn code(&self) -> auth_api::ErrorCode {
        use auth_api::ErrorCode;
        match self.kind {
            RejectionKind::Missing | RejectionKind::Invalid => ErrorCode::Unauthenticated,
            RejectionKind::InsufficientScope | RejectionKind::UsageExceeded => ErrorCode::Forbidden,
            RejectionKind::RateLimited => ErrorCode::RateLimited,
            RejectionKind::Unavailable => ErrorCode::ServiceUnavailable,
            RejectionKind::Misconfigured => ErrorCode::InternalError,
        }
    }

    fn detail(&self) -> String {
        match self.kind {
            RejectionKind::Missing => "authentication required".into(),
            RejectionKind::Invalid => "the credentials are invalid, expired or revoked".into(),
            RejectionKind::InsufficientScope => format!(
                "the API key lacks a required scope ({})",
                self.missing_scopes.join(" ")
            ),
            RejectionKind::RateLimited => {
                "the API key is over its rate limit; retry after the window ends".into()
            }
            RejectionKind::UsageExceeded => "the API key has no use left".into(),
            RejectionKind::Unavailable => {
                "the authentication service is unavailable; retry later".into()
            }
            RejectionKind::Misconfigured => "an internal error occurred".into(),
        }
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status_code().as_u16(),
            self.code(),
            self.detail()
        )
    }
}

impl ResponseError for AuthRejection {
    fn status_code(&self) -> StatusCode {
        match self.kind {
            RejectionKind::Missing | RejectionKind::Invalid => StatusCode::UNAUTHORIZED,
            RejectionKind::InsufficientScope | RejectionKind::UsageExceeded => {
                StatusCode::FORBIDDEN
            }
            RejectionKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            RejectionKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            RejectionKind::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // The service's own error body.
        let body = auth_api::Problem {
            problem_type: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            code: self.code(),
            request_id: self.request_id.clone(),
            errors: Vec::new(),
        };
        let mut res = HttpResponse::build(status);
        res.content_type("application/problem+json");
        res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if let Ok(id) = HeaderValue::from_str(&self.request_id) {
            res.insert_header(("x-request-id", id));
        }
        let challenge = match self.kind {
            RejectionKind::Missing => Some(r#"Bearer realm="auth""#.to_owned()),
            RejectionKind::Invalid => Some(r#"Bearer realm="auth", error="invalid_token""#.into()),
            RejectionKind::InsufficientScope => Some(format!(
                r#"Bearer realm="auth", error="insufficient_scope", scope="{}""#,
                self.missing_scopes.join(" ")
            )),
            RejectionKind::Unavailable
            | RejectionKind::Misconfigured
            | RejectionKind::RateLimited
            | RejectionKind::UsageExceeded => None,
        };
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            res.insert_header((header::WWW_AUTHENTICATE, value));
        }
        if matches!(
            self.kind,
            RejectionKind::Unavailable | RejectionKind::RateLimited
        ) {
            let secs = self
                .retry_after
                .map_or(2, |d| d.as_secs().max(u64::from(d.subsec_nanos() > 0)))
                .max(1);
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        match serde_json::to_vec(&body) {
            Ok(bytes) => res.body(bytes),
            Err(_) => res.finish(),
        }
    }
}

/// The caller's `X-Request-Id` when well-formed (1..=128 of `[A-Za-z0-9._:-]`, as the
/// service accepts), else a new one.
fn request_id(req: &HttpRequest) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        })
        .map_or_else(|| uuid::Uuid::now_v7().simple().to_string(), str::to_owned)
}

/// When to come back after a failure to reach the service.
fn retry_hint(err: &Error, client: &AuthClient) -> Option<Duration> {
    err.retry_after().or_else(|| client.breaker_retry_in())
}

fn client_of(req: &HttpRequest) -> Option<AuthClient> {
    req.app_data::<web::Data<AuthClient>>()
        .map(|data| data.get_ref().clone())
        .or_else(|| req.app_data::<AuthClient>().cloned())
}

fn missing_client(req: &HttpRequest) -> AuthRejection {
    tracing::error!(
        "no AuthClient in the app data: register one with App::app_data(web::Data::new(client))"
    );
    AuthRejection::new(RejectionKind::Misconfigured, req)
}

/// The registered client and the request's bearer token, or the rejection for a missing or
/// malformed `Authorization` header.
fn client_and_bearer(req: &HttpRequest) -> Result<(AuthClient, SecretString), AuthRejection> {
    let client = client_of(req).ok_or_else(|| missing_client(req))?;
    match bearer(req) {
        Ok(Some(token)) => Ok((client, token)),
        Ok(None) => Err(AuthRejection::new(RejectionKind::Missing, req)),
        Err(()) => Err(AuthRejection::new(RejectionKind::Invalid, req)),
    }
}

/// The token of `Authorization: Bearer <token>`: `Ok(None)` when absent; another scheme or
/// an unreadable header is a bad credential.
fn bearer(req: &HttpRequest) -> Result<Option<SecretString>, ()> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ())?;
    let (scheme, token) = value.split_once(' ').ok_or(())?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(());
    }
    Ok(Some(SecretString::from(token)))
}

type Extracting<T> = Pin<Box<dyn Future<Output = Result<T, AuthRejection>>>>;

/// A caller holding a valid user access token (`Authorization: Bearer`), verified the way
/// `V` says: the client's configured way by default, or [`Local`] or [`Remote`]
/// (`AuthenticatedUser<Remote>` for routes that must see a logout at once).
pub struct AuthenticatedUser<V: VerifyMode = Configured> {
    user: VerifiedUser,
    token: SecretString,
    mode: PhantomData<V>,
}

impl<V: VerifyMode> AuthenticatedUser<V> {
    /// What verification established.
    #[must_use]
    pub fn verified(&self) -> &VerifiedUser {
        &self.user
    }

    /// The token the caller presented, to call the auth service on the caller's behalf
    /// (`/users/me`, ...).
    #[must_use]
    pub fn token(&self) -> &SecretString {
        &self.token
    }
}

impl<V: VerifyMode> Deref for AuthenticatedUser<V> {
    type Target = VerifiedUser;

    fn deref(&self) -> &VerifiedUser {
        &self.user
    }
}

impl<V: VerifyMode> fmt::Debug for AuthenticatedUser<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticatedUser")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl<V: VerifyMode> Clone for AuthenticatedUser<V> {
    fn clone(&self) -> Self {
        Self {
            user: self.user.clone(),
            token: self.token.clone(),
            mode: PhantomData,
        }
    }
}

impl<V: VerifyMode + 'static> FromRequest for AuthenticatedUser<V> {
    type Error = AuthRejection;
    type Future = Extracting<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let (client, token) = client_and_bearer(&req)?;
            let mode = V::mode(client.config().tokens.verification);
            match client
                .verify_access_token_with(token.expose_secret(), mode)
                .await
            {
                Ok(user) => Ok(Self {
                    user,
                    token,
                    mode: PhantomData,
                }),
                Err(err) => Err(AuthRejection::from_token_error(&err, &req, &client)),
            }
        })
    }
}

/// A device holding a valid device token (`Authorization: Bearer`), verified the way `V`
/// says (as [`AuthenticatedUser`]).
pub struct AuthenticatedDevice<V: VerifyMode = Configured> {
    device: VerifiedDevice,
    mode: PhantomData<V>,
}

impl<V: VerifyMode> AuthenticatedDevice<V> {
    /// What verification established.
    #[must_use]
    pub fn verified(&self) -> &VerifiedDevice {
        &self.device
    }
}

impl<V: VerifyMode> Deref for AuthenticatedDevice<V> {
    type Target = VerifiedDevice;

    fn deref(&self) -> &VerifiedDevice {
        &self.device
    }
}

impl<V: VerifyMode> fmt::Debug for AuthenticatedDevice<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticatedDevice")
            .field("device", &self.device)
            .finish()
    }
}

impl<V: VerifyMode> Clone for AuthenticatedDevice<V> {
    fn clone(&self) -> Self {
        Self {
            device: self.device.clone(),
            mode: PhantomData,
        }
    }
}

impl<V: VerifyMode + 'static> FromRequest for AuthenticatedDevice<V> {
    type Error = AuthRejection;
    type Future = Extracting<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let (client, token) = client_and_bearer(&req)?;
            let mode = V::mode(client.config().tokens.verification);
            match client
                .verify_device_token_with(token.expose_secret(), mode)
                .await
            {
                Ok(device) => Ok(Self {
                    device,
                    mode: PhantomData,
                }),
                Err(err) => Err(AuthRejection::from_token_error(&err, &req, &client)),
            }
        })
    }
}

/// A caller holding a valid API key (`X-API-Key`) with every scope `S` requires, verified
/// through the client's API-key cache.
pub struct ApiKeyPrincipal<S: RequiredScopes = NoScopes> {
    key: VerifiedApiKey,
    scopes: PhantomData<S>,
}

impl<S: RequiredScopes> ApiKeyPrincipal<S> {
    /// What verification established.
    #[must_use]
    pub fn verified(&self) -> &VerifiedApiKey {
        &self.key
    }

    /// Checks more scopes in the handler (for scopes known only at run time).
    ///
    /// # Errors
    /// A 403 [`AuthRejection`] naming the missing scopes.
    pub fn require(&self, req: &HttpRequest, scopes: &[&'static str]) -> Result<(), AuthRejection> {
        let missing: Vec<&'static str> = scopes
            .iter()
            .copied()
            .filter(|s| !self.key.holds(s))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(AuthRejection {
                missing_scopes: missing,
                ..AuthRejection::new(RejectionKind::InsufficientScope, req)
            })
        }
    }
}

impl<S: RequiredScopes> Deref for ApiKeyPrincipal<S> {
    type Target = VerifiedApiKey;

    fn deref(&self) -> &VerifiedApiKey {
        &self.key
    }
}

impl<S: RequiredScopes> fmt::Debug for ApiKeyPrincipal<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyPrincipal")
            .field("key", &self.key)
            .field("required", &S::SCOPES)
            .finish()
    }
}

impl<S: RequiredScopes> Clone for ApiKeyPrincipal<S> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            scopes: PhantomData,
        }
    }
}

impl<S: RequiredScopes + 'static> FromRequest for ApiKeyPrincipal<S> {
    type Error = AuthRejection;
    type Future = Extracting<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let client = client_of(&req).ok_or_else(|| missing_client(&req))?;
            let key = match req.headers().get(X_API_KEY).map(HeaderValue::to_str) {
                None => return Err(AuthRejection::new(RejectionKind::Missing, &req)),
                Some(Err(_)) => return Err(AuthRejection::new(RejectionKind::Invalid, &req)),
                Some(Ok(key)) => SecretString::from(key),
            };
            if let Err(err) = crate::client::check_scopes(S::SCOPES) {
                tracing::error!(error = %err, "a required scope is not a scope");
                return Err(AuthRejection::new(RejectionKind::Misconfigured, &req));
            }
            // The verdict with the route's scopes, so that the service refuses a missing scope
            // before it counts a limited key's use; a cached valid verdict names every scope
            // the key holds, so a refusal can name what is missing.
            match client
                .verify_api_key_unscoped(key.expose_secret(), S::SCOPES)
                .await
            {
                Ok(ApiKeyVerdict::Valid(key)) => {
                    let missing: Vec<&'static str> = S::SCOPES
                        .iter()
                        .copied()
                        .filter(|s| !key.holds(s))
                        .collect();
                    if missing.is_empty() {
                        Ok(Self {
                            key,
                            scopes: PhantomData,
                        })
                    } else {
                        Err(AuthRejection {
                            missing_scopes: missing,
                            ..AuthRejection::new(RejectionKind::InsufficientScope, &req)
                        })
                    }
                }
                Ok(ApiKeyVerdict::Rejected(KeyRejection::InsufficientScope)) => {
                    Err(AuthRejection {
                        missing_scopes: S::SCOPES.to_vec(),
                        ..AuthRejection::new(RejectionKind::InsufficientScope, &req)
                    })
                }
                Ok(ApiKeyVerdict::RateLimited(window)) => Err(AuthRejection {
                    retry_after: Some(Duration::from_secs(u64::from(window.reset_seconds))),
                    ..AuthRejection::new(RejectionKind::RateLimited, &req)
                }),
                // A service that says so without the window: retry in a second.
                Ok(ApiKeyVerdict::Rejected(KeyRejection::RateLimited)) => Err(AuthRejection {
                    retry_after: Some(Duration::from_secs(1)),
                    ..AuthRejection::new(RejectionKind::RateLimited, &req)
                }),
                Ok(ApiKeyVerdict::Rejected(KeyRejection::UsageExceeded)) => {
                    Err(AuthRejection::new(RejectionKind::UsageExceeded, &req))
                }
                Ok(ApiKeyVerdict::Rejected(_)) => {
                    Err(AuthRejection::new(RejectionKind::Invalid, &req))
                }
                // A key no JSON body may carry (a control character): not a key.
                Err(err)
                    if err
                        .status()
                        .is_some_and(|s| (400..500).contains(&s) && s != 429) =>
                {
                    Err(AuthRejection::new(RejectionKind::Invalid, &req))
                }
                Err(err) => {
                    tracing::warn!(error = %err, "auth service unavailable for API-key verification");
                    Err(AuthRejection::unavailable(&req, retry_hint(&err, &client)))
                }
            }
        })
    }
}
