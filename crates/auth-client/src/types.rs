//! Typed requests and answers of the v1 API. The bodies are those of [`auth_api`], the
//! crate of wire types the service itself is built on, under the names this client has
//! always used; what is the client's own (typed verdicts, [`NewUser`]) is defined here.
//!
//! Every secret the service hands out (tokens, API keys, device secrets) arrives as a
//! [`SecretString`], whose `Debug` prints `[REDACTED]`; read it with
//! [`ExposeSecret::expose_secret`](secrecy::ExposeSecret::expose_secret).

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

pub use auth_api::{
    ApiKeyRejection as KeyRejection, ApiKeyStatus as KeyStatus, ComponentHealth, DeviceStatus,
    Health, HealthStatus, Me, MemberBody as Member, MembershipSummary as Membership,
    OrganizationBody as Organization, OrganizationWithRole, Role, ServiceInfo, TokenRejection,
    TokenType, TokenUser, UserCreated,
};

/// `GET /auth/verify`: the session behind a valid access token.
pub type SessionInfo = auth_api::VerifyResponse;

/// An access token and a refresh token (login, refresh). The refresh token is rotated on
/// every use: keep only the newest.
pub type TokenPair = auth_api::TokenResponse<SecretString>;

/// `POST /api-keys` body: a key that never expires, or with
/// [`expires_in_days`](auth_api::CreateKey::expires_in_days).
pub type NewApiKey = auth_api::CreateKey;

/// A new key (create, rotate): the key itself appears here and never again.
pub type CreatedApiKey = auth_api::CreatedKey<SecretString>;

/// A key as listed (never the key itself).
pub type ApiKeyInfo = auth_api::ApiKeyItem;

/// `POST /devices` body.
pub type NewDevice = auth_api::RegisterDevice;

/// A registered device with its secret, shown once: put it on the device now.
pub type RegisteredDevice = auth_api::RegisteredDevice<SecretString>;

/// A device token (no refresh token: authenticate again).
pub type DeviceToken = auth_api::DeviceTokenResponse<SecretString>;

/// A device's new secret, shown once.
pub type RotatedSecret = auth_api::RotatedSecret<SecretString>;

/// A device as listed (never its secret).
pub type DeviceInfo = auth_api::DeviceItem;

// ---------------------------------------------------------------------------------------------
// Users and sessions

/// What [`AuthClient::register`](crate::AuthClient::register) sends as `POST /auth/register`.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Email address (trimmed by the service; unique case-insensitively).
    pub email: String,
    /// Password (8..=128 characters by default, not a common one).
    pub password: SecretString,
    /// Name to show.
    pub display_name: Option<String>,
}

impl NewUser {
    /// A user with no display name.
    #[must_use]
    pub fn new(email: impl Into<String>, password: SecretString) -> Self {
        Self {
            email: email.into(),
            password,
            display_name: None,
        }
    }

    /// With a display name.
    #[must_use]
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// The body as sent.
    pub(crate) fn body(&self) -> auth_api::RegisterRequest {
        auth_api::RegisterRequest {
            email: self.email.clone(),
            password: auth_api::Redacted::new(self.password.expose_secret().to_owned()),
            display_name: self.display_name.clone(),
        }
    }
}

/// The second factor is due: the password was right and the user has a TOTP factor, but
/// no session is open yet. Send a code from the user's authenticator app, or one of the
/// user's unused recovery codes, with [`mfa_token`](Self::mfa_token) to
/// [`AuthClient::complete_mfa`](crate::AuthClient::complete_mfa).
///
/// A wrong code does not spend the token: the user may type again until it expires (every
/// wrong code counts toward the account lockout). A right code spends it. `Debug` never shows
/// the token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MfaChallenge {
    /// Opaque, single use, good for `POST /auth/login/mfa` only.
    pub mfa_token: SecretString,
    /// Seconds the token lives from the login answer (300).
    pub expires_in: i64,
}

/// What a correct password gets ([`AuthClient::sign_in`](crate::AuthClient::sign_in)).
#[derive(Debug, Clone)]
#[must_use]
pub enum LoginOutcome {
    /// Logged in: a session is open.
    Tokens(TokenPair),
    /// The user has a second factor: complete the login with a code.
    MfaRequired(MfaChallenge),
}

impl LoginOutcome {
    /// The token pair, or [`Error::MfaRequired`](crate::Error::MfaRequired) carrying the
    /// challenge, for code written before the second factor existed.
    ///
    /// # Errors
    /// [`Error::MfaRequired`](crate::Error::MfaRequired) when the second factor is due.
    pub fn into_tokens(self) -> Result<TokenPair, crate::Error> {
        match self {
            Self::Tokens(pair) => Ok(pair),
            Self::MfaRequired(challenge) => Err(crate::Error::MfaRequired(challenge)),
        }
    }
}

/// A token pair as the client holds it.
pub(crate) fn token_pair(raw: auth_api::TokenResponse) -> TokenPair {
    TokenPair {
        access_token: SecretString::from(raw.access_token.into_inner()),
        refresh_token: SecretString::from(raw.refresh_token.into_inner()),
        token_type: raw.token_type,
        expires_in: raw.expires_in,
        refresh_expires_in: raw.refresh_expires_in,
        user: raw.user,
    }
}

/// The typed outcome of a login answer, or `None` for a challenge that does not say
/// `mfa_required: true`.
pub(crate) fn login_outcome(raw: auth_api::LoginResponse) -> Option<LoginOutcome> {
    match raw {
        auth_api::LoginResponse::Tokens(pair) => Some(LoginOutcome::Tokens(token_pair(pair))),
        auth_api::LoginResponse::MfaRequired(step) if step.mfa_required => {
            Some(LoginOutcome::MfaRequired(MfaChallenge {
                mfa_token: SecretString::from(step.mfa_token.into_inner()),
                expires_in: step.expires_in,
            }))
        }
        auth_api::LoginResponse::MfaRequired(_) => None,
    }
}

/// Where a verdict on a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifiedBy {
    /// Checked here, with the JWKS or the configured HS256 secret: signature and claims,
    /// not the session or device behind the token.
    Local,
    /// Checked by the service, which also saw the session or device.
    Service,
}

/// A valid user access token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedUser {
    /// The user (`sub`).
    pub user_id: Uuid,
    /// The session (`sid`).
    pub session_id: Uuid,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
    /// The token's `jti` (local verification only).
    pub token_id: Option<Uuid>,
    /// The user's email (verification by the service only).
    pub email: Option<String>,
    /// Who checked it.
    pub verified_by: VerifiedBy,
}

/// A valid device token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedDevice {
    /// The device (`sub`).
    pub device_id: String,
    /// Its organization (`org`).
    pub organization_id: Uuid,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
    /// The token's `jti` (local verification only).
    pub token_id: Option<Uuid>,
    /// Who checked it.
    pub verified_by: VerifiedBy,
}

/// A valid token of either kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifiedToken {
    /// A user access token.
    User(VerifiedUser),
    /// A device token.
    Device(VerifiedDevice),
}

/// The answer of `POST /auth/verify-token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenVerdict {
    /// A valid token.
    Valid(VerifiedToken),
    /// A refused one.
    Rejected(TokenRejection),
}

/// The typed verdict of a `POST /auth/verify-token` answer, or `None` when a valid answer
/// lacks what its kind must carry.
pub(crate) fn token_verdict(raw: auth_api::VerifyTokenResponse) -> Option<TokenVerdict> {
    if !raw.valid {
        return Some(TokenVerdict::Rejected(
            raw.error.unwrap_or(TokenRejection::Invalid),
        ));
    }
    let token = match raw.token_type? {
        auth_api::TokenKind::User => VerifiedToken::User(VerifiedUser {
            user_id: raw.user_id?,
            session_id: raw.session_id?,
            expires_at: raw.expires_at?,
            token_id: None,
            email: raw.email,
            verified_by: VerifiedBy::Service,
        }),
        auth_api::TokenKind::Device => VerifiedToken::Device(VerifiedDevice {
            device_id: raw.device_id?,
            organization_id: raw.organization_id?,
            expires_at: raw.expires_at?,
            token_id: None,
            verified_by: VerifiedBy::Service,
        }),
    };
    Some(TokenVerdict::Valid(token))
}

// ---------------------------------------------------------------------------------------------
// API keys

/// A valid key, as verification describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedApiKey {
    /// Key id.
    pub key_id: Uuid,
    /// Owner.
    pub organization_id: Uuid,
    /// Name.
    pub name: String,
    /// Scopes held.
    pub scopes: Vec<String>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// What the key's owner says about it (a JSON object), if anything.
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// The owner's own id for whom the key was issued, if any.
    pub external_id: Option<String>,
    /// The key's rate-limit window as this verification left it, if the key is limited.
    pub rate_limit: Option<auth_api::RateLimitReport>,
    /// Uses left after this verification, if the key counts its uses.
    pub remaining: Option<u64>,
}

impl VerifiedApiKey {
    /// Whether the key has a rate limit or credits: its every verification must reach the
    /// service, so no verdict on it is cached.
    #[must_use]
    pub const fn is_metered(&self) -> bool {
        self.rate_limit.is_some() || self.remaining.is_some()
    }

    /// Whether the key holds `scope` (`admin` holds every scope), by the service's rule.
    #[must_use]
    pub fn holds(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope || s == "admin")
    }

    /// Whether the key holds every one of `scopes`.
    #[must_use]
    pub fn holds_all<S: AsRef<str>>(&self, scopes: &[S]) -> bool {
        scopes.iter().all(|s| self.holds(s.as_ref()))
    }
}

/// The verdict on a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeyVerdict {
    /// Usable, holding every required scope.
    Valid(VerifiedApiKey),
    /// Refused.
    Rejected(KeyRejection),
    /// Valid, but over its rate limit for this window: retry after `reset_seconds`.
    RateLimited(auth_api::RateLimitReport),
}

impl ApiKeyVerdict {
    /// Whether the key may be used.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Valid(_))
    }

    /// Whether the verdict is of a key with a rate limit or credits, which is never cached.
    #[must_use]
    pub const fn is_metered(&self) -> bool {
        match self {
            Self::Valid(key) => key.is_metered(),
            Self::RateLimited(_)
            | Self::Rejected(KeyRejection::UsageExceeded | KeyRejection::RateLimited) => true,
            Self::Rejected(_) => false,
        }
    }
}

/// The typed verdict of one key, or `None` when a valid answer lacks its fields.
pub(crate) fn key_verdict(raw: auth_api::KeyVerification<'_>) -> Option<ApiKeyVerdict> {
    if !raw.valid {
        return Some(match (raw.error, raw.rate_limit) {
            (Some(KeyRejection::RateLimited), Some(window)) => ApiKeyVerdict::RateLimited(window),
            (error, _) => ApiKeyVerdict::Rejected(error.unwrap_or(KeyRejection::Invalid)),
        });
    }
    Some(ApiKeyVerdict::Valid(VerifiedApiKey {
        key_id: raw.key_id?,
        organization_id: raw.organization_id?,
        name: raw.name?.into_owned(),
        scopes: raw
            .scopes?
            .into_iter()
            .map(std::borrow::Cow::into_owned)
            .collect(),
        expires_at: raw.expires_at,
        meta: raw.meta.map(std::borrow::Cow::into_owned),
        external_id: raw.external_id.map(std::borrow::Cow::into_owned),
        rate_limit: raw.rate_limit,
        remaining: raw.remaining,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: serde_json::Value) -> Option<LoginOutcome> {
        login_outcome(serde_json::from_value(body).unwrap())
    }

    #[test]
    fn a_login_answer_is_tokens_or_a_challenge() {
        let step = read(
            serde_json::json!({"mfa_required": true, "mfa_token": "mfa-t0ken", "expires_in": 300}),
        );
        let Some(LoginOutcome::MfaRequired(challenge)) = step else {
            panic!("{step:?}");
        };
        assert_eq!(
            (challenge.mfa_token.expose_secret(), challenge.expires_in),
            ("mfa-t0ken", 300)
        );
        let err = LoginOutcome::MfaRequired(challenge)
            .into_tokens()
            .unwrap_err();
        assert!(matches!(err, crate::Error::MfaRequired(_)));
        assert!(!format!("{err} {err:?}").contains("mfa-t0ken"));

        let tokens = read(serde_json::json!({
            "access_token": "a", "refresh_token": "r", "token_type": "Bearer", "expires_in": 900,
            "refresh_expires_in": 60, "user": {"id": "0190f9f4-8b4e-7c3a-9d1e-2f3a4b5c6d7e", "email": "a@b.co"}
        }));
        let pair = tokens.unwrap().into_tokens().unwrap();
        assert_eq!(
            (
                pair.access_token.expose_secret(),
                pair.refresh_token.expose_secret()
            ),
            ("a", "r")
        );
        assert_eq!((pair.expires_in, pair.refresh_expires_in), (900, 60));

        // A challenge that does not ask for the factor is not one.
        assert!(
            read(serde_json::json!({"mfa_required": false, "mfa_token": "t", "expires_in": 300}))
                .is_none()
        );
    }
}
