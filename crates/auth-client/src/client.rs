//! [`AuthClient`]: every endpoint of the v1 API, API-key verification through the cache,
//! token verification locally or through the service, and the revocation stream that keeps
//! both current.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::api_key_cache::{self, ApiKeyCache};
use crate::config::{
    ApiKeyCacheConfig, BreakerPolicy, ClientConfig, RetryPolicy, RevocationStreamConfig,
    TokenConfig, TokenVerification,
};
use crate::error::{Error, TokenError};
use crate::local::{Claims, Kind, LocalError, LocalVerifier};
use crate::revocation::Revocations;
use crate::revocation_stream::{self, Follower};
use crate::stats::{MetricsSnapshot, Operation, RememberedRevocations, StreamStats};
use crate::transport::{Auth, Call, Transport};
use crate::types::{
    self, ApiKeyInfo, ApiKeyVerdict, CreatedApiKey, DeviceInfo, DeviceToken, Health, KeyRejection,
    LoginOutcome, Me, Member, NewApiKey, NewDevice, NewUser, Organization, OrganizationWithRole,
    RegisteredDevice, Role, RotatedSecret, ServiceInfo, SessionInfo, TokenPair, TokenRejection,
    TokenVerdict, UserCreated, VerifiedDevice, VerifiedToken, VerifiedUser,
};
use auth_api::Redacted;

/// Credentials of a manager of an organization's keys and devices: an access token of an
/// owner or admin (or a service administrator), or an API key of the organization holding
/// `admin`.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// `Authorization: Bearer <access token>`.
    Bearer(&'a SecretString),
    /// `X-API-Key: <key>`.
    ApiKey(&'a SecretString),
}

impl Credential<'_> {
    fn auth(&self) -> Auth<'_> {
        match self {
            Self::Bearer(token) => Auth::Bearer(token.expose_secret()),
            Self::ApiKey(key) => Auth::ApiKey(key.expose_secret()),
        }
    }
}

/// A held secret as a request body carries it.
fn secret(value: &SecretString) -> Redacted {
    Redacted::new(value.expose_secret().to_owned())
}

/// The body verifying `key` with `required_scopes`.
fn verify_body(key: &str, required_scopes: &[&str]) -> auth_api::VerifyKey {
    auth_api::VerifyKey {
        key: Redacted::new(key.to_owned()),
        required_scopes: Some(required_scopes.iter().map(|&s| s.to_owned()).collect()),
    }
}

/// The v1 path of `rest`.
macro_rules! v1 {
    ($($segment:expr),+ $(,)?) => {
        ["api", "v1", $($segment),+]
    };
}

struct Inner {
    transport: Transport,
    key_cache: Option<ApiKeyCache>,
    verifier: LocalVerifier,
    /// The revocations the stream told of, when it is configured.
    revocations: Option<Arc<Revocations>>,
    stream_stats: Arc<StreamStats>,
    /// Stops following when the last clone of the client goes.
    follower: Option<Follower>,
    config: ClientConfig,
}

/// A client of the authentication service. Cheap to clone: clones share the connection
/// pool, the breaker, the caches and the metrics. Build one per service at start and share
/// it.
///
/// Token and key arguments are [`SecretString`]s when they are credentials the caller holds,
/// and `&str` when they are what a caller presented and is to be verified.
#[derive(Clone)]
pub struct AuthClient {
    inner: Arc<Inner>,
    timeout: Duration,
}

impl std::fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthClient")
            .field("base_url", &self.inner.config.base_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds an [`AuthClient`]; every setting has a default (see [`ClientConfig`]).
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    config: ClientConfig,
}

impl ClientBuilder {
    /// Per-attempt limit on a whole request (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Limit on connecting (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long idle pooled connections are kept (default 90 s).
    pub fn pool_idle_timeout(mut self, idle: Duration) -> Self {
        self.config.pool_idle_timeout = idle;
        self
    }

    /// Idle pooled connections kept per host (default 32).
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.config.pool_max_idle_per_host = max;
        self
    }

    /// TCP keep-alive interval (default 60 s).
    pub fn tcp_keepalive(mut self, interval: Duration) -> Self {
        self.config.tcp_keepalive = interval;
        self
    }

    /// `User-Agent` (default `auth-client/<version>`).
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.config.user_agent = agent.into();
        self
    }

    /// Retries (default [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// The circuit breaker, or `None` for none (default [`BreakerPolicy::default`]).
    pub fn circuit_breaker(mut self, policy: Option<BreakerPolicy>) -> Self {
        self.config.breaker = policy;
        self
    }

    /// The API-key cache, or `None` for none (default [`ApiKeyCacheConfig::default`]).
    pub fn api_key_cache(mut self, cache: Option<ApiKeyCacheConfig>) -> Self {
        self.config.api_key_cache = cache;
        self
    }

    /// Token verification settings (default [`TokenConfig::default`]).
    pub fn tokens(mut self, tokens: TokenConfig) -> Self {
        self.config.tokens = tokens;
        self
    }

    /// The default way of verifying tokens (default [`TokenVerification::Auto`]).
    pub fn token_verification(mut self, mode: TokenVerification) -> Self {
        self.config.tokens.verification = mode;
        self
    }

    /// Follows the service's revocation stream with `api_key` (an organization's key holding
    /// the scope `revocations:read`), with the other settings of
    /// [`RevocationStreamConfig::new`]: cached key verdicts and locally verified tokens then
    /// honour a revocation within a second. Off by default. The client must then be built
    /// inside a Tokio runtime, where a task follows the stream until the client is dropped.
    pub fn revocation_stream(mut self, api_key: SecretString) -> Self {
        self.config.revocation_stream = Some(RevocationStreamConfig::new(api_key));
        self
    }

    /// The revocation stream with every setting, or `None` for none (the default).
    pub fn revocation_stream_config(mut self, stream: Option<RevocationStreamConfig>) -> Self {
        self.config.revocation_stream = stream;
        self
    }

    /// The client.
    ///
    /// # Errors
    /// [`Error::Config`] for settings that cannot work (a base URL that is not http(s) or
    /// holds credentials, zero timeouts, a leeway above 30 s, an HS256 secret under 32
    /// bytes...), or a revocation stream configured outside a Tokio runtime.
    pub fn build(self) -> Result<AuthClient, Error> {
        let config = self.config;
        config.validate()?;
        let transport = Transport::new(&config)?;
        let key_cache = config.api_key_cache.as_ref().map(ApiKeyCache::new);
        let stream_stats = Arc::new(StreamStats::default());
        let (revocations, follower) = match &config.revocation_stream {
            Some(stream) => {
                let revocations = Arc::new(Revocations::new(
                    stream,
                    config.tokens.leeway,
                    key_cache.clone(),
                    config
                        .api_key_cache
                        .as_ref()
                        .map_or(Duration::ZERO, |c| c.ttl),
                ));
                let follower = Follower::start(
                    crate::transport::http_client(&config)?,
                    transport.endpoint(&revocation_stream::PATH)?,
                    stream,
                    config.timeout,
                    revocations.clone(),
                    stream_stats.clone(),
                )?;
                (Some(revocations), Some(follower))
            }
            None => (None, None),
        };
        let inner = Inner {
            transport,
            key_cache,
            verifier: LocalVerifier::new(&config.tokens),
            revocations,
            stream_stats,
            follower,
            config,
        };
        Ok(AuthClient {
            timeout: inner.config.timeout,
            inner: Arc::new(inner),
        })
    }
}

impl AuthClient {
    /// A client of the service at `base_url` with every default.
    ///
    /// # Errors
    /// [`Error::Config`] for an unusable base URL.
    pub fn new(base_url: impl Into<String>) -> Result<Self, Error> {
        Self::builder(base_url).build()
    }

    /// A builder for a client of the service at `base_url`.
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            config: ClientConfig::new(base_url),
        }
    }

    /// A builder starting from `config`.
    pub fn from_config(config: ClientConfig) -> ClientBuilder {
        ClientBuilder { config }
    }

    /// The settings in force.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The same client (pool, breaker, caches, metrics) with another per-attempt timeout, for
    /// the calls made through it.
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            inner: self.inner.clone(),
            timeout,
        }
    }

    /// Everything counted so far.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut snapshot = self.inner.transport.metrics.snapshot(
            self.inner.transport.breaker_metrics(),
            self.inner.key_cache.as_ref().map(ApiKeyCache::entry_count),
        );
        let counts = self
            .inner
            .revocations
            .as_ref()
            .map(|r| r.counts())
            .unwrap_or_default();
        snapshot.revocations = self.inner.stream_stats.snapshot(
            RememberedRevocations {
                sessions: counts.sessions,
                users: counts.users,
                devices: counts.devices,
                api_keys: counts.keys,
            },
            counts.forgotten_early,
            counts.verdicts_dropped,
        );
        snapshot
    }

    /// Waits until the revocation stream is connected, at most `within`, and tells whether it
    /// is (`false` at once when none is configured). A service may wait for it at start, so
    /// that it honours revocations from its first request.
    pub async fn wait_for_revocation_stream(&self, within: Duration) -> bool {
        match &self.inner.follower {
            Some(follower) => follower.wait_connected(within).await,
            None => false,
        }
    }

    /// Time until the open breaker lets a probe through: `Some` only while it is open.
    #[must_use]
    pub fn breaker_retry_in(&self) -> Option<Duration> {
        self.inner
            .transport
            .breaker_retry_in()
            .filter(|d| !d.is_zero())
    }

    async fn json<T: DeserializeOwned>(&self, call: Call<'_>, expect: u16) -> Result<T, Error> {
        self.inner
            .transport
            .call(call, self.timeout, &[expect], |a| a.json())
            .await
    }

    async fn empty(&self, call: Call<'_>) -> Result<(), Error> {
        self.inner
            .transport
            .call(call, self.timeout, &[204], |_| Ok(()))
            .await
    }

    // -----------------------------------------------------------------------------------------
    // Users and sessions

    /// `POST /auth/register`: a new account (201).
    ///
    /// # Errors
    /// [`Error::Api`] with `EMAIL_TAKEN` (409) or `VALIDATION_FAILED` (422); transport errors.
    pub async fn register(&self, user: &NewUser) -> Result<UserCreated, Error> {
        let segments = v1!("auth", "register");
        let body = user.body();
        self.json(
            Call::new(Operation::Register, Method::POST, &segments).json(&body),
            201,
        )
        .await
    }

    /// `POST /auth/login`: a token pair, or, for a user with a second factor, the challenge
    /// to complete with [`complete_mfa`](Self::complete_mfa).
    ///
    /// ```no_run
    /// # async fn run(client: auth_client::AuthClient, ask_for_code: impl Fn() -> String)
    /// # -> Result<(), auth_client::Error> {
    /// use auth_client::{LoginOutcome, SecretString};
    ///
    /// let password = SecretString::from("correct horse battery staple");
    /// let pair = match client.sign_in("ada@example.com", &password).await? {
    ///     LoginOutcome::Tokens(pair) => pair,
    ///     LoginOutcome::MfaRequired(challenge) => {
    ///         let code = SecretString::from(ask_for_code()); // TOTP or a recovery code
    ///         client.complete_mfa(&challenge.mfa_token, &code).await?
    ///     }
    /// };
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Api`] with `INVALID_CREDENTIALS` (401) or `TOO_MANY_ATTEMPTS` (429, with
    /// `retry_after`).
    pub async fn sign_in(
        &self,
        email: &str,
        password: &SecretString,
    ) -> Result<LoginOutcome, Error> {
        let segments = v1!("auth", "login");
        let body = auth_api::LoginRequest {
            email: email.to_owned(),
            password: secret(password),
        };
        let raw: auth_api::LoginResponse = self
            .json(
                Call::new(Operation::Login, Method::POST, &segments).json(&body),
                200,
            )
            .await?;
        types::login_outcome(raw).ok_or_else(|| {
            Error::UnexpectedResponse("a login answer holds neither tokens nor a challenge".into())
        })
    }

    /// `POST /auth/login`: a token pair, for a user without a second factor. See
    /// [`sign_in`](Self::sign_in) for a login that may ask for one.
    ///
    /// # Errors
    /// [`Error::MfaRequired`] for a user with a second factor: the password was right, and
    /// the error carries the challenge to [`complete_mfa`](Self::complete_mfa) with.
    /// [`Error::Api`] with `INVALID_CREDENTIALS` (401) or `TOO_MANY_ATTEMPTS` (429).
    pub async fn login(&self, email: &str, password: &SecretString) -> Result<TokenPair, Error> {
        self.sign_in(email, password).await?.into_tokens()
    }

    /// `POST /auth/login/mfa`: the second login step. `mfa_token` is the challenge's
    /// ([`MfaChallenge::mfa_token`](crate::MfaChallenge::mfa_token)); `code` a current TOTP
    /// code or an unused recovery code (spent by its use). A right code spends `mfa_token`; a
    /// wrong one does not, so the user may type again while it lives.
    ///
    /// Not retried once sent: the code is spent by the first attempt the service receives.
    ///
    /// # Errors
    /// [`Error::Api`] with `INVALID_MFA_CODE` (401: a wrong or spent code; counts toward the
    /// lockout), `INVALID_CREDENTIALS` (401: an unknown, spent or expired `mfa_token`: sign in
    /// again), `TOO_MANY_ATTEMPTS` (429, with `retry_after`: the account is locked),
    /// `VALIDATION_FAILED` (422: an empty or overlong token or code).
    pub async fn complete_mfa(
        &self,
        mfa_token: &SecretString,
        code: &SecretString,
    ) -> Result<TokenPair, Error> {
        let segments = v1!("auth", "login", "mfa");
        let body = auth_api::MfaLoginRequest {
            mfa_token: secret(mfa_token),
            code: secret(code),
        };
        self.json(
            Call::new(Operation::LoginMfa, Method::POST, &segments).json(&body),
            200,
        )
        .await
    }

    /// `POST /auth/refresh`: a new pair; `refresh_token` is spent.
    ///
    /// # Errors
    /// [`Error::Api`] with `INVALID_REFRESH_TOKEN` (401).
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenPair, Error> {
        let segments = v1!("auth", "refresh");
        let body = auth_api::RefreshRequest {
            refresh_token: secret(refresh_token),
        };
        self.json(
            Call::new(Operation::Refresh, Method::POST, &segments).json(&body),
            200,
        )
        .await
    }

    /// `POST /auth/logout`: ends the session of `refresh_token` (also fine for an unknown one).
    ///
    /// # Errors
    /// Transport errors, 503.
    pub async fn logout(&self, refresh_token: &SecretString) -> Result<(), Error> {
        let segments = v1!("auth", "logout");
        let body = auth_api::RefreshRequest {
            refresh_token: secret(refresh_token),
        };
        self.empty(Call::new(Operation::Logout, Method::POST, &segments).json(&body))
            .await
    }

    /// `POST /auth/logout-all`: ends every session of the token's user.
    ///
    /// # Errors
    /// [`Error::Api`] with `UNAUTHENTICATED` (401).
    pub async fn logout_all(&self, access_token: &SecretString) -> Result<(), Error> {
        let segments = v1!("auth", "logout-all");
        self.empty(
            Call::new(Operation::LogoutAll, Method::POST, &segments)
                .auth(Auth::Bearer(access_token.expose_secret())),
        )
        .await
    }

    /// `GET /auth/verify`: the session behind an access token, checked by the service.
    ///
    /// # Errors
    /// [`Error::Api`] with `UNAUTHENTICATED` (401) for an invalid, expired or revoked token.
    pub async fn verify_session(&self, access_token: &SecretString) -> Result<SessionInfo, Error> {
        let segments = v1!("auth", "verify");
        self.json(
            Call::new(Operation::VerifySession, Method::GET, &segments)
                .auth(Auth::Bearer(access_token.expose_secret())),
            200,
        )
        .await
    }

    /// `POST /auth/verify-token`: the service's verdict on a token of either kind (`valid:
    /// false` is a verdict, not an error).
    ///
    /// # Errors
    /// Transport errors; 422 for a token no JSON string can carry; 503.
    pub async fn verify_token(&self, token: &str) -> Result<TokenVerdict, Error> {
        let segments = v1!("auth", "verify-token");
        let body = auth_api::VerifyTokenRequest {
            token: Redacted::new(token.to_owned()),
        };
        let raw: auth_api::VerifyTokenResponse = self
            .json(
                Call::new(Operation::VerifyToken, Method::POST, &segments).json(&body),
                200,
            )
            .await?;
        types::token_verdict(raw).ok_or_else(|| {
            Error::UnexpectedResponse("a valid verify-token answer lacks its claims".into())
        })
    }

    /// `GET /users/me`.
    ///
    /// # Errors
    /// [`Error::Api`] with `UNAUTHENTICATED` (401).
    pub async fn me(&self, access_token: &SecretString) -> Result<Me, Error> {
        let segments = v1!("users", "me");
        self.json(
            Call::new(Operation::Me, Method::GET, &segments)
                .auth(Auth::Bearer(access_token.expose_secret())),
            200,
        )
        .await
    }

    /// `POST /users/me/password`; every other session of the user ends.
    ///
    /// # Errors
    /// [`Error::Api`] with `INVALID_CREDENTIALS` (401), `TOO_MANY_ATTEMPTS` (429),
    /// `VALIDATION_FAILED` (422).
    pub async fn change_password(
        &self,
        access_token: &SecretString,
        current: &SecretString,
        new: &SecretString,
    ) -> Result<(), Error> {
        let segments = v1!("users", "me", "password");
        let body = auth_api::ChangePasswordRequest {
            current_password: secret(current),
            new_password: secret(new),
        };
        self.empty(
            Call::new(Operation::ChangePassword, Method::POST, &segments)
                .auth(Auth::Bearer(access_token.expose_secret()))
                .json(&body),
        )
        .await
    }

    // -----------------------------------------------------------------------------------------
    // Organizations

    /// `POST /organizations`: the caller becomes its owner (201).
    ///
    /// # Errors
    /// [`Error::Api`] with `VALIDATION_FAILED` (422).
    pub async fn create_organization(
        &self,
        access_token: &SecretString,
        name: &str,
    ) -> Result<Organization, Error> {
        let segments = v1!("organizations");
        self.json(
            Call::new(Operation::CreateOrganization, Method::POST, &segments)
                .auth(Auth::Bearer(access_token.expose_secret()))
                .json(&auth_api::CreateOrganization {
                    name: name.to_owned(),
                }),
            201,
        )
        .await
    }

    /// `GET /organizations`: the caller's organizations with the caller's role.
    ///
    /// # Errors
    /// [`Error::Api`] with `UNAUTHENTICATED` (401).
    pub async fn list_organizations(
        &self,
        access_token: &SecretString,
    ) -> Result<Vec<OrganizationWithRole>, Error> {
        let segments = v1!("organizations");
        let list: auth_api::OrganizationList = self
            .json(
                Call::new(Operation::ListOrganizations, Method::GET, &segments)
                    .auth(Auth::Bearer(access_token.expose_secret())),
                200,
            )
            .await?;
        Ok(list.items)
    }

    /// `GET /organizations/{id}` (members only).
    ///
    /// # Errors
    /// [`Error::Api`] with `NOT_FOUND` (404).
    pub async fn get_organization(
        &self,
        access_token: &SecretString,
        organization_id: Uuid,
    ) -> Result<Organization, Error> {
        let id = organization_id.to_string();
        let segments = v1!("organizations", &id);
        self.json(
            Call::new(Operation::GetOrganization, Method::GET, &segments)
                .auth(Auth::Bearer(access_token.expose_secret())),
            200,
        )
        .await
    }

    /// `POST /organizations/{id}/members`: adds a registered user as `admin` or `member` (201).
    ///
    /// # Errors
    /// [`Error::Api`] with `NOT_FOUND` (404), `ALREADY_MEMBER` (409), `FORBIDDEN` (403).
    pub async fn add_member(
        &self,
        access_token: &SecretString,
        organization_id: Uuid,
        email: &str,
        role: Role,
    ) -> Result<Member, Error> {
        let id = organization_id.to_string();
        let segments = v1!("organizations", &id, "members");
        self.json(
            Call::new(Operation::AddMember, Method::POST, &segments)
                .auth(Auth::Bearer(access_token.expose_secret()))
                .json(&auth_api::AddMember {
                    email: email.to_owned(),
                    role,
                }),
            201,
        )
        .await
    }

    /// `GET /organizations/{id}/members`.
    ///
    /// # Errors
    /// [`Error::Api`] with `NOT_FOUND` (404).
    pub async fn list_members(
        &self,
        access_token: &SecretString,
        organization_id: Uuid,
    ) -> Result<Vec<Member>, Error> {
        let id = organization_id.to_string();
        let segments = v1!("organizations", &id, "members");
        let list: auth_api::MemberList = self
            .json(
                Call::new(Operation::ListMembers, Method::GET, &segments)
                    .auth(Auth::Bearer(access_token.expose_secret())),
                200,
            )
            .await?;
        Ok(list.items)
    }

    /// `DELETE /organizations/{id}/members/{user_id}` (204).
    ///
    /// # Errors
    /// [`Error::Api`] with `FORBIDDEN` (403), `NOT_FOUND` (404), `LAST_OWNER` (409).
    pub async fn remove_member(
        &self,
        access_token: &SecretString,
        organization_id: Uuid,
        user_id: Uuid,
    ) -> Result<(), Error> {
        let (org, user) = (organization_id.to_string(), user_id.to_string());
        let segments = v1!("organizations", &org, "members", &user);
        self.empty(
            Call::new(Operation::RemoveMember, Method::DELETE, &segments)
                .auth(Auth::Bearer(access_token.expose_secret())),
        )
        .await
    }

    // -----------------------------------------------------------------------------------------
    // API keys

    /// `POST /api-keys` (201). The key is in the answer and never again.
    ///
    /// # Errors
    /// [`Error::Api`] with `FORBIDDEN` (403), `NOT_FOUND` (404), `VALIDATION_FAILED` (422).
    pub async fn create_api_key(
        &self,
        manager: Credential<'_>,
        key: &NewApiKey,
    ) -> Result<CreatedApiKey, Error> {
        let segments = v1!("api-keys");
        self.json(
            Call::new(Operation::CreateApiKey, Method::POST, &segments)
                .auth(manager.auth())
                .json(key),
            201,
        )
        .await
    }

    /// `GET /api-keys?organization_id=&include_revoked=`.
    ///
    /// # Errors
    /// [`Error::Api`] with `FORBIDDEN` (403), `NOT_FOUND` (404).
    pub async fn list_api_keys(
        &self,
        manager: Credential<'_>,
        organization_id: Uuid,
        include_revoked: bool,
    ) -> Result<Vec<ApiKeyInfo>, Error> {
        self.list_keys(manager, organization_id, include_revoked, None)
            .await
    }

    async fn list_keys(
        &self,
        manager: Credential<'_>,
        organization_id: Uuid,
        include_revoked: bool,
        external_id: Option<&str>,
    ) -> Result<Vec<ApiKeyInfo>, Error> {
        let segments = v1!("api-keys");
        let mut call = Call::new(Operation::ListApiKeys, Method::GET, &segments)
            .auth(manager.auth())
            .query("organization_id", organization_id.to_string())
            .query("include_revoked", include_revoked.to_string());
        if let Some(external_id) = external_id {
            call = call.query("external_id", external_id.to_owned());
        }
        let list: auth_api::ApiKeyList = self.json(call, 200).await?;
        Ok(list.items)
    }

    /// `GET /api-keys?organization_id=&include_revoked=&external_id=`: the keys issued for
    /// one external id.
    ///
    /// # Errors
    /// [`Error::Api`] with `FORBIDDEN` (403), `NOT_FOUND` (404), `VALIDATION_FAILED` (422).
    pub async fn list_api_keys_of(
        &self,
        manager: Credential<'_>,
        organization_id: Uuid,
        external_id: &str,
        include_revoked: bool,
    ) -> Result<Vec<ApiKeyInfo>, Error> {
        self.list_keys(manager, organization_id, include_revoked, Some(external_id))
            .await
    }

    /// `GET /api-keys/{id}/usage`: the key's verifications by outcome, per hour or per UTC
    /// day, for the hours from `from` to `to` (the service's defaults: the 24 hours up to
    /// now); at most 90 days. Up to a few seconds behind.
    ///
    /// # Errors
    /// [`Error::Api`] with `NOT_FOUND` (404), `VALIDATION_FAILED` (422).
    pub async fn api_key_usage(
        &self,
        manager: Credential<'_>,
        key_id: Uuid,
        from: Option<chrono::DateTime<chrono::Utc>>,
        to: Option<chrono::DateTime<chrono::Utc>>,
        granularity: auth_api::UsageGranularity,
    ) -> Result<auth_api::KeyUsage, Error> {
        let id = key_id.to_string();
        let segments = v1!("api-keys", &id, "usage");
        let granularity = match granularity {
            auth_api::UsageGranularity::Hour => "hour",
            auth_api::UsageGranularity::Day => "day",
        };
        let mut call = Call::new(Operation::ApiKeyUsage, Method::GET, &segments)
            .auth(manager.auth())
            .query("granularity", granularity.to_owned());
        for (name, at) in [("from", from), ("to", to)] {
            if let Some(at) = at {
                call = call.query(
                    name,
                    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                );
            }
        }
        self.json(call, 200).await
    }

    /// `PATCH /api-keys/{id}`: changes the members set in `changes` (the others stay; `null`
    /// clears `meta`, `external_id` and `expires_at`). Every instance of the service answers
    /// with the change within a second; this client's cache forgets the key at once, other
    /// clients' when they follow the revocation stream (within a second) or at their TTL.
    ///
    /// # Errors
    /// [`Error::Api`] with `NOT_FOUND` (404), `ALREADY_REVOKED` or `KEY_EXPIRED` (409),
    /// `VALIDATION_FAILED` (422).
    pub async fn update_api_key(
        &self,
        manager: Credential<'_>,
        key_id: Uuid,
        changes: &auth_api::UpdateKey,
    ) -> Result<ApiKeyInfo, Error> {
        let id = key_id.to_string();
        let segments = v1!("api-keys", &id);
        let answer = self
            .json(
                Call::new(Operation::UpdateApiKey, Method::PATCH, &segments)
                    .auth(manager.auth())
                    .json(changes),
                200,
            )
            .await;
        // Whatever the answer: a change may have been made even when its answer was lost.
        if let Some(cache) = &self.inner.key_cache {
            cache.forget_key_id(key_id).await;
        }
        answer
    }

    /// `GET /api-keys/{id}`.
    ///
    /// # Errors
    /// [`Error::Api`] with `NOT_FOUND` (404).
    pub async fn get_api_key(
        &self,
        manager: Credential<'_>,
        key_id: Uuid,
    ) -> Result<ApiKeyInfo, Error> {
        let id = key_id.to_string();
        let segments = v1!("api-keys", &id);
        self.json(
            Call::new(Operation::GetApiKey, Method::GET, &segments).auth(manager.auth()),
            200,
        )
        .await
    }

    /// `POST /api-keys/{id}/revoke`. Other clients' caches may accept the key until their
    /// TTL, unless they follow the revocation stream (within a second then); this client
    /// forgets nothing it cannot name, unless it follows the stream (use
    /// [`forget_api_key`](Self::forget_api_key) with the key).
    ///
    /// # Errors
    /// [`Error::Api`] with `NOT_FOUND` (404), `ALREADY_REVOKED` (409).
    pub async fn revoke_api_key(
        &self,
        manager: Credential<'_>,
        key_id: Uuid,
    ) -> Result<ApiKeyInfo, Error> {
        let id = key_id.to_string();
        let segments = v1!("api-keys", &id, "revoke");
        self.json(
            Call::new(Operation::RevokeApiKey, Method::POST, &segments).auth(manager.auth()),
            200,
        )
        .await
    }

    /// `POST /api-keys/{id}/rotate` (201): a new key with the same name, scopes and expiry;
    /// the old one is revoked.
    ///
    /// # Errors
    /// [`Error::Api`] with `NOT_FOUND` (404), `ALREADY_REVOKED` or `KEY_EXPIRED` (409; an
    /// expired key is not rotated).
    pub async fn rotate_api_key(
        &self,
        manager: Credential<'_>,
        key_id: Uuid,
    ) -> Result<CreatedApiKey, Error> {
        let id = key_id.to_string();
        let segments = v1!("api-keys", &id, "rotate");
        self.json(
            Call::new(Operation::RotateApiKey, Method::POST, &segments).auth(manager.auth()),
            201,
        )
        .await
    }

    /// Verifies an API key, requiring `required_scopes` (all of them; `admin` holds every
    /// scope), through the cache when the client has one: the service is asked once per
    /// key and TTL, and the scopes are checked against the key's. A key revoked at the
    /// service may be accepted until its cache entry expires (`ttl`, 300 s by default), or
    /// for at most a second while the client follows the revocation stream (keys of the
    /// stream key's organization).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a required scope that is not well-formed; transport
    /// errors and 503 when the key is not cached and the service cannot answer (never cached).
    pub async fn verify_api_key(
        &self,
        key: &str,
        required_scopes: &[&str],
    ) -> Result<ApiKeyVerdict, Error> {
        check_scopes(required_scopes)?;
        Ok(
            match self.verify_api_key_unscoped(key, required_scopes).await? {
                ApiKeyVerdict::Valid(k) if !k.holds_all(required_scopes) => {
                    ApiKeyVerdict::Rejected(KeyRejection::InsufficientScope)
                }
                verdict => verdict,
            },
        )
    }

    /// [`Self::verify_api_key`] but for its last step: a valid verdict is answered whatever
    /// scopes it holds, so that a caller can name the missing ones (a refusal for want of
    /// scopes only comes from the service, for a key this client has no valid verdict on).
    pub(crate) async fn verify_api_key_unscoped(
        &self,
        key: &str,
        required_scopes: &[&str],
    ) -> Result<ApiKeyVerdict, Error> {
        let Some(cache) = &self.inner.key_cache else {
            return self.verify_api_key_remote(key, required_scopes).await;
        };
        // The service checks the scopes asked for before it applies a key's limits, so a
        // refused scope spends nothing. A valid verdict names every scope the key holds, so
        // one cached entry answers every route; a refusal for want of scopes is not kept.
        let hash = api_key_cache::hash(key);
        let scopes = api_key_cache::scopes_hash(required_scopes);
        if !required_scopes.is_empty() && cache.refused_for(hash, scopes).await {
            self.inner.transport.metrics.cache(true);
            return Ok(ApiKeyVerdict::Rejected(KeyRejection::InsufficientScope));
        }
        let epoch = cache.epoch();
        let loaded = cache
            .get_or_load_here(hash, self.verify_api_key_remote(key, required_scopes))
            .await;
        // A failed load was a miss too.
        self.inner
            .transport
            .metrics
            .cache(matches!(loaded, Ok((_, true, _))));
        let (verdict, _, here) = loaded?;
        // A limited key's verdict is never shared: a call that waited for another's answer,
        // or asked for other scopes, asks the service itself (its own use, its own count).
        if verdict == ApiKeyVerdict::Rejected(KeyRejection::InsufficientScope) && here {
            cache.note_scope_refusal(hash, scopes, epoch).await;
        }
        if !here
            && (verdict.is_metered()
                || verdict == ApiKeyVerdict::Rejected(KeyRejection::InsufficientScope))
        {
            return self.verify_api_key_remote(key, required_scopes).await;
        }
        if let (ApiKeyVerdict::Valid(k), Some(revocations)) = (&verdict, &self.inner.revocations)
            && revocations.key_revoked(k.key_id).await
        {
            // Loaded while the revocation arrived: drop it too.
            cache.forget(&hash).await;
            revocations.verdicts_dropped(1);
            return Ok(ApiKeyVerdict::Rejected(KeyRejection::Revoked));
        }
        Ok(match verdict {
            ApiKeyVerdict::Valid(k) if k.expires_at.is_some_and(|at| at <= chrono::Utc::now()) => {
                ApiKeyVerdict::Rejected(KeyRejection::Expired)
            }
            verdict => verdict,
        })
    }

    /// `POST /api-keys/verify`: the service's verdict now, bypassing the cache.
    ///
    /// # Errors
    /// [`Error::Api`] with `VALIDATION_FAILED` (422) for a malformed scope,
    /// `SERVICE_UNAVAILABLE` (503); transport errors.
    pub async fn verify_api_key_remote(
        &self,
        key: &str,
        required_scopes: &[&str],
    ) -> Result<ApiKeyVerdict, Error> {
        let segments = v1!("api-keys", "verify");
        let body = verify_body(key, required_scopes);
        let raw: auth_api::KeyVerification<'static> = self
            .json(
                Call::new(Operation::VerifyApiKey, Method::POST, &segments).json(&body),
                200,
            )
            .await?;
        types::key_verdict(raw)
            .ok_or_else(|| Error::UnexpectedResponse("a valid key verdict lacks its fields".into()))
    }

    /// `POST /api-keys/verify-batch`: 1..=100 `(key, required scopes)`, verdicts in order
    /// (not cached).
    ///
    /// # Errors
    /// [`Error::Api`] with `VALIDATION_FAILED` (422) outside 1..=100 items; 503 when any key
    /// needs the service's store and it is down.
    pub async fn verify_api_keys(
        &self,
        items: &[(&str, &[&str])],
    ) -> Result<Vec<ApiKeyVerdict>, Error> {
        let segments = v1!("api-keys", "verify-batch");
        let body = auth_api::VerifyBatch {
            items: items
                .iter()
                .map(|(key, scopes)| verify_body(key, scopes))
                .collect(),
        };
        let raw: auth_api::BatchVerification<'static> = self
            .json(
                Call::new(Operation::VerifyApiKeyBatch, Method::POST, &segments).json(&body),
                200,
            )
            .await?;
        raw.results
            .into_iter()
            .map(|r| {
                types::key_verdict(r).ok_or_else(|| {
                    Error::UnexpectedResponse("a valid key verdict lacks its fields".into())
                })
            })
            .collect()
    }

    /// Drops the cached verdict on `key`: the next verification asks the service.
    pub async fn forget_api_key(&self, key: &str) {
        if let Some(cache) = &self.inner.key_cache {
            cache.forget(&api_key_cache::hash(key)).await;
        }
    }

    /// Drops every cached key verdict.
    pub fn clear_api_key_cache(&self) {
        if let Some(cache) = &self.inner.key_cache {
            cache.clear();
        }
    }

    /// Applies the cache's pending evictions (and those of the revocations remembered), so
    /// that [`metrics`](Self::metrics) counts entries exactly (the caches otherwise do so in
    /// the background).
    pub async fn sync_api_key_cache(&self) {
        if let Some(cache) = &self.inner.key_cache {
            cache.sync().await;
        }
        if let Some(revocations) = &self.inner.revocations {
            revocations.sync().await;
        }
    }

    // -----------------------------------------------------------------------------------------
    // Devices

    /// `POST /devices` (201). The secret is in the answer and never again.
    ///
    /// # Errors
    /// [`Error::Api`] with `DEVICE_EXISTS` (409), `NOT_FOUND` (404), `VALIDATION_FAILED` (422).
    pub async fn register_device(
        &self,
        manager: Credential<'_>,
        device: &NewDevice,
    ) -> Result<RegisteredDevice, Error> {
        let segments = v1!("devices");
        self.json(
            Call::new(Operation::RegisterDevice, Method::POST, &segments)
                .auth(manager.auth())
                .json(device),
            201,
        )
        .await
    }

    /// `POST /devices/authenticate`: a device token for the device's id and secret. See
    /// [`DeviceSession`](crate::DeviceSession) for a device that keeps its token renewed.
    ///
    /// # Errors
    /// [`Error::Api`] with `INVALID_DEVICE_CREDENTIALS` (401), `RATE_LIMITED` (429).
    pub async fn authenticate_device(
        &self,
        device_id: &str,
        secret: &SecretString,
    ) -> Result<DeviceToken, Error> {
        let segments = v1!("devices", "authenticate");
        let body = auth_api::AuthenticateDevice {
            device_id: device_id.to_owned(),
            device_secret: self::secret(secret),
        };
        self.json(
            Call::new(Operation::AuthenticateDevice, Method::POST, &segments).json(&body),
            200,
        )
        .await
    }

    /// `POST /devices/{id}/rotate-secret`: the new secret; the old one stops working.
    ///
    /// # Errors
    /// [`Error::Api`] with `NOT_FOUND` (404), `ALREADY_REVOKED` (409).
    pub async fn rotate_device_secret(
        &self,
        manager: Credential<'_>,
        device_id: &str,
    ) -> Result<RotatedSecret, Error> {
        let segments = v1!("devices", device_id, "rotate-secret");
        self.json(
            Call::new(Operation::RotateDeviceSecret, Method::POST, &segments).auth(manager.auth()),
            200,
        )
        .await
    }

    /// `POST /devices/{id}/revoke`: the device can no longer authenticate and its tokens stop
    /// verifying at the service (local verification still accepts them until they expire).
    ///
    /// # Errors
    /// [`Error::Api`] with `NOT_FOUND` (404), `ALREADY_REVOKED` (409).
    pub async fn revoke_device(
        &self,
        manager: Credential<'_>,
        device_id: &str,
    ) -> Result<DeviceInfo, Error> {
        let segments = v1!("devices", device_id, "revoke");
        self.json(
            Call::new(Operation::RevokeDevice, Method::POST, &segments).auth(manager.auth()),
            200,
        )
        .await
    }

    /// `GET /devices?organization_id=` (revoked devices included).
    ///
    /// # Errors
    /// [`Error::Api`] with `FORBIDDEN` (403), `NOT_FOUND` (404).
    pub async fn list_devices(
        &self,
        manager: Credential<'_>,
        organization_id: Uuid,
    ) -> Result<Vec<DeviceInfo>, Error> {
        let segments = v1!("devices");
        let list: auth_api::DeviceList = self
            .json(
                Call::new(Operation::ListDevices, Method::GET, &segments)
                    .auth(manager.auth())
                    .query("organization_id", organization_id.to_string()),
                200,
            )
            .await?;
        Ok(list.items)
    }

    /// `GET /devices/{id}`.
    ///
    /// # Errors
    /// [`Error::Api`] with `NOT_FOUND` (404).
    pub async fn get_device(
        &self,
        manager: Credential<'_>,
        device_id: &str,
    ) -> Result<DeviceInfo, Error> {
        let segments = v1!("devices", device_id);
        self.json(
            Call::new(Operation::GetDevice, Method::GET, &segments).auth(manager.auth()),
            200,
        )
        .await
    }

    // -----------------------------------------------------------------------------------------
    // Service endpoints

    /// `GET /`.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn service_info(&self) -> Result<ServiceInfo, Error> {
        self.json(Call::new(Operation::ServiceInfo, Method::GET, &[]), 200)
            .await
    }

    /// `GET /health`: its 503 (`unhealthy`) is returned as a [`Health`], not an error.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn health(&self) -> Result<Health, Error> {
        self.inner
            .transport
            .call(
                Call::new(Operation::Health, Method::GET, &["health"]),
                self.timeout,
                &[200, 503],
                |a| a.json(),
            )
            .await
    }

    /// `GET /health/live`.
    ///
    /// # Errors
    /// Transport errors, or any status but 200.
    pub async fn live(&self) -> Result<(), Error> {
        self.inner
            .transport
            .call(
                Call::new(Operation::Live, Method::GET, &["health", "live"]),
                self.timeout,
                &[200],
                |_| Ok(()),
            )
            .await
    }

    /// `GET /health/ready`: `true` on 200, `false` on 503.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn ready(&self) -> Result<bool, Error> {
        self.inner
            .transport
            .call(
                Call::new(Operation::Ready, Method::GET, &["health", "ready"]),
                self.timeout,
                &[200, 503],
                |a| Ok(a.status == 200),
            )
            .await
    }

    /// `GET /.well-known/jwks.json`: the public keys, as published (`{"keys":[]}` under HS256).
    ///
    /// # Errors
    /// Transport errors.
    pub async fn jwks(&self) -> Result<serde_json::Value, Error> {
        self.json(
            Call::new(Operation::Jwks, Method::GET, &[".well-known", "jwks.json"]),
            200,
        )
        .await
    }

    /// `GET /metrics`: the service's Prometheus text.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn prometheus_metrics(&self) -> Result<String, Error> {
        self.inner
            .transport
            .call(
                Call::new(Operation::PrometheusMetrics, Method::GET, &["metrics"]),
                self.timeout,
                &[200],
                |a| {
                    String::from_utf8(a.body.clone())
                        .map_err(|_| Error::UnexpectedResponse("the metrics are not UTF-8".into()))
                },
            )
            .await
    }

    /// `GET /api-docs/openapi.json`: the service's OpenAPI document.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn openapi(&self) -> Result<serde_json::Value, Error> {
        self.json(
            Call::new(
                Operation::OpenApi,
                Method::GET,
                &["api-docs", "openapi.json"],
            ),
            200,
        )
        .await
    }

    // -----------------------------------------------------------------------------------------
    // Token verification

    /// Fetches the JWKS now rather than at the first verification, and returns how many
    /// usable keys it holds (0 under HS256, or with a configured HS256 secret).
    ///
    /// # Errors
    /// Transport errors.
    pub async fn refresh_jwks(&self) -> Result<usize, Error> {
        self.inner
            .verifier
            .refresh(&self.inner.transport, self.timeout)
            .await
    }

    /// Verifies a user access token the configured way ([`TokenConfig::verification`]).
    ///
    /// # Errors
    /// [`TokenError::Rejected`] (answer 401), [`TokenError::Unavailable`] (503),
    /// [`TokenError::NoLocalKeys`] (a configuration error).
    pub async fn verify_access_token(&self, token: &str) -> Result<VerifiedUser, TokenError> {
        self.verify_access_token_with(token, self.inner.config.tokens.verification)
            .await
    }

    /// Verifies a user access token in the given way.
    ///
    /// Locally, a token of a logged-out session still verifies until it expires, unless the
    /// client follows the revocation stream (refused within a second then, as `REVOKED`): use
    /// [`TokenVerification::Remote`] where a logout must count at once.
    ///
    /// # Errors
    /// As [`verify_access_token`](Self::verify_access_token).
    pub async fn verify_access_token_with(
        &self,
        token: &str,
        mode: TokenVerification,
    ) -> Result<VerifiedUser, TokenError> {
        match self.verify_as(token, Kind::User, mode).await? {
            VerifiedToken::User(user) => Ok(user),
            VerifiedToken::Device(_) => Err(TokenError::Rejected(TokenRejection::Invalid)),
        }
    }

    /// Verifies a device token the configured way.
    ///
    /// # Errors
    /// As [`verify_access_token`](Self::verify_access_token).
    pub async fn verify_device_token(&self, token: &str) -> Result<VerifiedDevice, TokenError> {
        self.verify_device_token_with(token, self.inner.config.tokens.verification)
            .await
    }

    /// Verifies a device token in the given way. Locally, a token of a revoked device still
    /// verifies until it expires, unless the client follows the revocation stream.
    ///
    /// # Errors
    /// As [`verify_access_token`](Self::verify_access_token).
    pub async fn verify_device_token_with(
        &self,
        token: &str,
        mode: TokenVerification,
    ) -> Result<VerifiedDevice, TokenError> {
        match self.verify_as(token, Kind::Device, mode).await? {
            VerifiedToken::Device(device) => Ok(device),
            VerifiedToken::User(_) => Err(TokenError::Rejected(TokenRejection::Invalid)),
        }
    }

    /// Verifies a token of either kind (told apart by its `typ`) locally, with no call to the
    /// service once the keys are fetched. Sees logouts and revocations only while the client
    /// follows the revocation stream; otherwise not before the token expires.
    ///
    /// # Errors
    /// As [`verify_access_token`](Self::verify_access_token).
    pub async fn verify_local(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let kind = Kind::of(token).ok_or(TokenError::Rejected(TokenRejection::Invalid));
        match kind {
            Ok(kind) => self.local(token, kind).await,
            Err(err) => {
                self.inner.transport.metrics.local_verification(false);
                Err(err)
            }
        }
    }

    /// Verifies a token of either kind through the service (`POST /auth/verify-token`), which
    /// also sees ended sessions and revoked devices.
    ///
    /// # Errors
    /// As [`verify_access_token`](Self::verify_access_token).
    pub async fn verify_remote(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        self.inner.transport.metrics.remote_verification();
        match self.verify_token(token).await {
            Ok(TokenVerdict::Valid(token)) => Ok(token),
            Ok(TokenVerdict::Rejected(why)) => Err(TokenError::Rejected(why)),
            // A token no JSON body can carry (422), or too large (413): not a token.
            Err(Error::Api(e)) if (400..500).contains(&e.status) && e.status != 429 => {
                Err(TokenError::Rejected(TokenRejection::Invalid))
            }
            Err(err) => Err(TokenError::Unavailable(err)),
        }
    }

    async fn verify_as(
        &self,
        token: &str,
        kind: Kind,
        mode: TokenVerification,
    ) -> Result<VerifiedToken, TokenError> {
        match mode {
            TokenVerification::Remote => self.verify_remote(token).await,
            TokenVerification::Local => self.local(token, kind).await,
            TokenVerification::Auto => match self.local(token, kind).await {
                Err(TokenError::NoLocalKeys) => self.verify_remote(token).await,
                other => other,
            },
        }
    }

    async fn local(&self, token: &str, kind: Kind) -> Result<VerifiedToken, TokenError> {
        let result = self
            .inner
            .verifier
            .verify(token, kind, &self.inner.transport, self.timeout)
            .await;
        let metrics = &self.inner.transport.metrics;
        let revoked = match (&result, &self.inner.revocations) {
            (Ok(Claims::User(user, issued_at)), Some(revocations)) => {
                revocations
                    .refuses_access(user.user_id, user.session_id, *issued_at)
                    .await
            }
            (Ok(Claims::Device(device, issued_at)), Some(revocations)) => {
                revocations
                    .refuses_device(&device.device_id, *issued_at)
                    .await
            }
            _ => false,
        };
        if revoked {
            metrics.local_verification(false);
            self.inner.stream_stats.token_refused();
            return Err(TokenError::Rejected(TokenRejection::Revoked));
        }
        match result {
            Ok(Claims::User(user, _)) => {
                metrics.local_verification(true);
                Ok(VerifiedToken::User(user))
            }
            Ok(Claims::Device(device, _)) => {
                metrics.local_verification(true);
                Ok(VerifiedToken::Device(device))
            }
            Err(LocalError::Rejected(why)) => {
                metrics.local_verification(false);
                Err(TokenError::Rejected(why))
            }
            Err(LocalError::Unavailable(err)) => Err(TokenError::Unavailable(err)),
            Err(LocalError::NoKeys) => Err(TokenError::NoLocalKeys),
        }
    }
}

/// The service's scope rule: 1..=64 characters of `[a-z0-9:._-]`.
pub(crate) fn check_scopes(scopes: &[&str]) -> Result<(), Error> {
    for scope in scopes {
        let ok = (1..=64).contains(&scope.len())
            && scope.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b':' | b'.' | b'_' | b'-')
            });
        if !ok {
            return Err(Error::InvalidArgument(format!(
                "{scope:?} is not a scope (1..=64 characters of a-z, 0-9, ':', '.', '_', '-')"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_the_service_rule() {
        assert!(check_scopes(&["invoices:read", "a.b_c-d", "admin"]).is_ok());
        for bad in ["", "Invoices", "a b", "ä", &"a".repeat(65)] {
            assert!(check_scopes(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn following_the_stream_needs_a_runtime_and_is_off_by_default() {
        let outside = AuthClient::builder("http://localhost:8000")
            .revocation_stream(SecretString::from("ak_live_stream"))
            .build()
            .unwrap_err();
        assert!(matches!(outside, Error::Config(_)), "{outside:?}");
        assert!(!outside.to_string().contains("ak_live_stream"));
        let plain = AuthClient::new("http://localhost:8000").unwrap();
        assert!(plain.config().revocation_stream.is_none());
        assert!(plain.inner.follower.is_none());
    }

    #[test]
    fn debug_shows_no_secret() {
        let client = AuthClient::new("http://localhost:8000").unwrap();
        let secret = SecretString::from("ak_live_secret");
        let debug = format!("{client:?} {:?}", Credential::ApiKey(&secret));
        assert!(!debug.contains("ak_live_secret"), "{debug}");
    }
}
