//! Domain types: ids, value objects that can only be built valid, entities and claims.

/// Defines an opaque bearer token: 256 bits from the CSPRNG as base64url, handed out once,
/// stored only as its SHA-256 ([`TokenHash`]); `Debug` prints nothing of it. Refresh tokens,
/// one-time tokens and `mfa_token`s are all of this shape.
macro_rules! opaque_token {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(secrecy::SecretString);

        impl $name {
            /// Random bytes in a token.
            pub const BYTES: usize = 32;

            /// Encodes fresh random bytes as a token.
            #[must_use]
            pub fn from_random(bytes: &[u8; Self::BYTES]) -> Self {
                use base64::Engine as _;
                Self(secrecy::SecretString::from(
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
                ))
            }

            /// Wraps a presented token. Any string is accepted: an unknown one matches no
            /// stored hash.
            #[must_use]
            pub fn presented(raw: &str) -> Self {
                Self(secrecy::SecretString::from(raw))
            }

            /// The token text, to hand out (once).
            #[must_use]
            pub fn expose(&self) -> &str {
                secrecy::ExposeSecret::expose_secret(&self.0)
            }

            /// SHA-256 of the token text: what storage keeps.
            #[must_use]
            pub fn hash(&self) -> $crate::model::TokenHash {
                $crate::model::TokenHash::of(self.expose().as_bytes())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }
    };
}

mod api_key;
mod claims;
mod device;
mod email;
mod event;
mod ids;
mod key_limits;
mod key_usage;
mod mail;
mod mfa;
mod one_time_token;
mod organization;
mod password;
mod session;
pub mod text;
mod user;

pub use api_key::{
    ApiKey, ApiKeyChanges, ApiKeyMeta, ApiKeyName, ApiKeyPrefix, ApiKeyPrefixError, ApiKeySecret,
    ApiKeyStatus, ExternalId, ExternalIdError, MAX_KEY_LIFETIME_DAYS, MetaError, Scope, ScopeError,
    Scopes, TooManyScopes, expiry_allowed, parse_presented_key,
};
pub use claims::{AccessClaims, TokenKind, TokenRejection};
pub use device::{
    Device, DeviceClaims, DeviceId, DeviceIdError, DeviceMetadata, DeviceName, DeviceSecret,
    DeviceStatus, MetadataError,
};
pub use email::{Email, EmailError};
pub use event::{
    ActorKind, EventAction, EventActor, EventTarget, FailedLogin, LogEntry, LoginStep,
    LoginSubject, NewEvent, StoredEvent,
};
pub use ids::{ApiKeyId, MailId, OrganizationId, ResetRequestId, SessionId, UserId};
pub use key_limits::{CreditSpend, Credits, LimitError, RateLimit, Refill, RefillPeriod};
pub use key_usage::{
    HourUsage, KeyOutcome, USAGE_RETENTION_DAYS, UsageBucket, UsageCounts, UsageGranularity,
    by_day, day_of, hour_of,
};
pub use mail::{MailTemplate, OutgoingMail, QueuedMail, escape_html};
pub use mfa::{
    LoginOutcome, MfaChallenge, MfaToken, RecoveryCode, SealedSecret, TotpEnrolment, TotpSetup,
};
pub use one_time_token::{OneTimeToken, ResetRequest, StoredToken, TokenPurpose};
pub use organization::{
    Member, Membership, NameError, Organization, OrganizationName, Role, RoleError,
};
pub use password::{Password, PasswordError, PasswordHash, PasswordPolicy};
pub use session::{RefreshToken, Session, TokenHash, TokenPair};
pub use text::{DisplayName, DisplayNameError};
pub use user::User;
