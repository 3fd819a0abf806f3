//! Domain types: ids, value objects that can only be built valid, entities and claims.

mod api_key;
mod claims;
mod device;
mod email;
mod event;
mod ids;
mod mail;
mod mfa;
mod one_time_token;
mod organization;
mod password;
mod session;
pub mod text;
mod user;

pub use api_key::{
    ApiKey, ApiKeyName, ApiKeyPrefix, ApiKeyPrefixError, ApiKeySecret, ApiKeyStatus, Scope,
    ScopeError, Scopes, TooManyScopes, parse_presented_key,
};
pub use claims::{AccessClaims, TokenKind, TokenRejection};
pub use device::{
    Device, DeviceClaims, DeviceId, DeviceIdError, DeviceMetadata, DeviceName, DeviceSecret,
    DeviceStatus, MetadataError,
};
pub use email::{Email, EmailError};
pub use event::{EventAction, EventTarget, LogEntry, NewEvent};
pub use ids::{ApiKeyId, MailId, OrganizationId, SessionId, UserId};
pub use mail::{MailTemplate, OutgoingMail, QueuedMail, escape_html};
pub use mfa::{
    LoginOutcome, MfaChallenge, MfaToken, RecoveryCode, SealedSecret, TotpEnrolment, TotpSetup,
};
pub use one_time_token::{OneTimeToken, StoredToken, TokenPurpose};
pub use organization::{
    Member, Membership, NameError, Organization, OrganizationName, Role, RoleError,
};
pub use password::{Password, PasswordError, PasswordHash, PasswordPolicy};
pub use session::{RefreshToken, Session, TokenHash, TokenPair};
pub use text::{DisplayName, DisplayNameError};
pub use user::User;
