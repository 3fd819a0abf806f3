//! The wire types of the authentication service's REST API (`/api/v1` and the service
//! endpoints): every request and response body, and the problem+json error body. The server
//! (`auth-http`), the Rust client (`auth-client`) and the CLI all use these, so a renamed
//! field fails to compile in all three at once.
//!
//! serde only; with the feature `openapi`, every body also derives `utoipa::ToSchema` for
//! the server's OpenAPI document. Fixed values (`status`, `role`, `token_type`, verdict
//! `error` codes) are enums with the contract's exact strings. Shown-once secrets are
//! [`Redacted`]: the bare string on the wire, `[REDACTED]` in `Debug` output.
//!
//! No rule is checked here: the server parses each request body into its domain input and
//! answers 422 naming every broken field.

pub mod account;
pub mod admin;
pub mod api_key;
pub mod device;
pub mod event;
pub mod lifecycle;
pub mod mfa;
pub mod organization;
pub mod problem;
pub mod redacted;
pub mod service;

pub use account::{
    ChangePasswordRequest, DeleteAccountRequest, LoginRequest, Me, MembershipSummary,
    RefreshRequest, RegisterRequest, TokenKind, TokenRejection, TokenResponse, TokenType,
    TokenUser, UpdateProfileRequest, UserCreated, VerifyResponse, VerifyTokenRequest,
    VerifyTokenResponse,
};
pub use admin::{AdminUser, AdminUserDetail, AdminUserList, CreateUserRequest, UpdateUserRequest};
pub use api_key::{
    ApiKeyItem, ApiKeyList, ApiKeyRejection, ApiKeyStatus, BatchVerification, CreateKey,
    CreatedKey, KeyUsage, KeyVerification, RateLimitReport, RateLimitSpec, RefillEvery, RefillSpec,
    UpdateKey, UsageGranularity, UsageItem, VerifyBatch, VerifyKey,
};
pub use device::{
    AuthenticateDevice, DeviceItem, DeviceList, DeviceStatus, DeviceTokenResponse, RegisterDevice,
    RegisteredDevice, RotatedSecret,
};
pub use event::{ActorType, AuditEvent, EventActor, EventList, EventTargetBody, Revocation};
pub use lifecycle::{
    ChangeEmailRequest, MailAccepted, PasswordResetConfirm, PasswordResetRequest,
    VerifyEmailRequest,
};
pub use mfa::{
    LoginResponse, MfaLoginRequest, MfaRequired, RecoveryCodes, TotpConfirmRequest,
    TotpDisableRequest, TotpEnrolRequest, TotpEnrolment,
};
pub use organization::{
    AddMember, CreateOrganization, MemberBody, MemberList, OrganizationBody, OrganizationList,
    OrganizationWithRole, Role,
};
pub use problem::{ErrorCode, FieldError, Problem};
pub use redacted::Redacted;
pub use service::{ComponentHealth, Health, HealthStatus, Probe, ProbeStatus, ServiceInfo};

/// `as_str` (the wire string) and `Display` for an enum of fixed wire values.
macro_rules! wire_str {
    ($ty:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The value as sent on the wire.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_str!(ApiKeyStatus { Active => "active", Revoked => "revoked", Expired => "expired", Unknown => "unknown" });
wire_str!(DeviceStatus { Active => "active", Revoked => "revoked", Unknown => "unknown" });
wire_str!(HealthStatus { Healthy => "healthy", Degraded => "degraded", Unhealthy => "unhealthy", Unknown => "unknown" });
wire_str!(ProbeStatus { Ok => "ok", Unavailable => "unavailable" });
wire_str!(TokenKind { User => "user", Device => "device" });
wire_str!(Role { Owner => "owner", Admin => "admin", Member => "member", Unknown => "unknown" });
wire_str!(ActorType { User => "user", ApiKey => "api_key", System => "system", Anonymous => "anonymous", Unknown => "unknown" });
wire_str!(TokenType { Bearer => "Bearer" });

#[cfg(test)]
mod tests;
