//! The map step of a handler: domain values written as the response bodies of `auth-api`.
//! The CLI prints the same bodies, through these functions.

use auth_api as api;
use auth_api::Redacted;
use auth_core::model::{
    self, ApiKey, Device, DisplayName, LoginOutcome, Member, Organization, RateLimit, RecoveryCode,
    Refill, RefillPeriod, Scopes, TokenPair, TotpSetup, UsageBucket, UsageGranularity, User,
};
use auth_core::{ApiKeyVerdict, DeviceToken, IssuedApiKey, IssuedDevice, KeyCheck, Principal};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;
use std::borrow::Cow;

/// A role on the wire.
#[must_use]
pub const fn role(role: model::Role) -> api::Role {
    match role {
        model::Role::Owner => api::Role::Owner,
        model::Role::Admin => api::Role::Admin,
        model::Role::Member => api::Role::Member,
    }
}

/// A key status on the wire.
#[must_use]
pub const fn key_status(status: model::ApiKeyStatus) -> api::ApiKeyStatus {
    match status {
        model::ApiKeyStatus::Active => api::ApiKeyStatus::Active,
        model::ApiKeyStatus::Revoked => api::ApiKeyStatus::Revoked,
        model::ApiKeyStatus::Expired => api::ApiKeyStatus::Expired,
    }
}

/// A device status on the wire.
#[must_use]
pub const fn device_status(status: model::DeviceStatus) -> api::DeviceStatus {
    match status {
        model::DeviceStatus::Active => api::DeviceStatus::Active,
        model::DeviceStatus::Revoked => api::DeviceStatus::Revoked,
    }
}

/// Why a token was refused, on the wire.
#[must_use]
pub const fn token_rejection(rejection: model::TokenRejection) -> api::TokenRejection {
    match rejection {
        model::TokenRejection::Invalid => api::TokenRejection::Invalid,
        model::TokenRejection::Expired => api::TokenRejection::Expired,
        model::TokenRejection::Revoked => api::TokenRejection::Revoked,
    }
}

fn scopes(scopes: &Scopes) -> Vec<String> {
    scopes
        .as_slice()
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect()
}

/// A created account.
#[must_use]
pub fn user_created(user: User) -> api::UserCreated {
    api::UserCreated {
        id: user.id.as_uuid(),
        email: user.email.as_str().to_owned(),
        display_name: user.display_name.map(DisplayName::into_inner),
        created_at: user.created_at,
    }
}

/// A new token pair.
#[must_use]
pub fn token_response(pair: TokenPair) -> api::TokenResponse {
    api::TokenResponse {
        access_token: Redacted::new(pair.access_token.expose_secret().to_owned()),
        refresh_token: Redacted::new(pair.refresh_token.expose().to_owned()),
        token_type: api::TokenType::Bearer,
        expires_in: pair.access_expires_in,
        refresh_expires_in: pair.refresh_expires_in,
        user: api::TokenUser {
            id: pair.user.id.as_uuid(),
            email: pair.user.email.as_str().to_owned(),
        },
    }
}

/// The login answer: tokens, or the second-factor challenge.
#[must_use]
pub fn login_response(outcome: LoginOutcome) -> api::LoginResponse {
    match outcome {
        LoginOutcome::Tokens(pair) => api::LoginResponse::Tokens(token_response(*pair)),
        LoginOutcome::MfaRequired(challenge) => api::LoginResponse::MfaRequired(api::MfaRequired {
            mfa_required: true,
            mfa_token: Redacted::new(challenge.token.expose().to_owned()),
            expires_in: challenge.expires_in,
        }),
    }
}

/// A pending TOTP enrolment.
#[must_use]
pub fn totp_enrolment(setup: &TotpSetup) -> api::TotpEnrolment {
    let uri = setup.otpauth_uri.expose_secret();
    api::TotpEnrolment {
        secret: Redacted::new(setup.secret.expose_secret().to_owned()),
        otpauth_uri: Redacted::new(uri.to_owned()),
        qr_code: Redacted::new(qr_code(uri)),
    }
}

/// `text` as a QR code: an SVG image in a `data:` URI (medium error correction, a quiet
/// zone, black on white, as authenticator apps scan best). Empty if `text` does not fit
/// (an `otpauth://` URI is far below the limit).
fn qr_code(text: &str) -> String {
    use base64::Engine as _;
    let Ok(code) = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M) else {
        return String::new();
    };
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    )
}

/// Recovery codes, shown once.
#[must_use]
pub fn recovery_codes(codes: &[RecoveryCode]) -> api::RecoveryCodes {
    api::RecoveryCodes {
        recovery_codes: codes
            .iter()
            .map(|c| Redacted::new(c.expose().to_owned()))
            .collect(),
    }
}

/// The session behind a valid access token.
#[must_use]
pub fn verify_response(p: &Principal) -> api::VerifyResponse {
    api::VerifyResponse {
        valid: true,
        user_id: p.user.id.as_uuid(),
        email: p.user.email.as_str().to_owned(),
        session_id: p.session.id.as_uuid(),
        is_admin: p.user.is_admin,
        expires_at: p.claims.expires_at,
    }
}

/// The calling user's profile, with the organizations the user belongs to.
#[must_use]
pub fn me(
    user: User,
    organizations: Vec<(Organization, model::Role)>,
    mfa_enabled: bool,
) -> api::Me {
    api::Me {
        id: user.id.as_uuid(),
        email: user.email.as_str().to_owned(),
        display_name: user.display_name.map(DisplayName::into_inner),
        is_admin: user.is_admin,
        email_verified: user.email_verified_at.is_some(),
        created_at: user.created_at,
        organizations: organizations
            .into_iter()
            .map(|(org, r)| api::MembershipSummary {
                id: org.id.as_uuid(),
                name: org.name.as_str().to_owned(),
                role: role(r),
            })
            .collect(),
        mfa_enabled,
    }
}

/// An organization.
#[must_use]
pub fn organization(org: &Organization) -> api::OrganizationBody {
    api::OrganizationBody {
        id: org.id.as_uuid(),
        name: org.name.as_str().to_owned(),
        created_at: org.created_at,
    }
}

/// The caller's organizations with the caller's role in each.
#[must_use]
pub fn organization_list(items: Vec<(Organization, model::Role)>) -> api::OrganizationList {
    api::OrganizationList {
        items: items
            .into_iter()
            .map(|(org, r)| api::OrganizationWithRole {
                id: org.id.as_uuid(),
                name: org.name.as_str().to_owned(),
                role: role(r),
            })
            .collect(),
    }
}

/// A member.
#[must_use]
pub fn member(m: &Member) -> api::MemberBody {
    api::MemberBody {
        user_id: m.membership.user_id.as_uuid(),
        email: m.email.as_str().to_owned(),
        role: role(m.membership.role),
    }
}

/// A key as listed, with its status at `now`.
#[must_use]
pub fn api_key_item(key: &ApiKey, now: DateTime<Utc>) -> api::ApiKeyItem {
    api::ApiKeyItem {
        id: key.id.as_uuid(),
        prefix: key.prefix.clone(),
        name: key.name.as_str().to_owned(),
        organization_id: key.organization_id.as_uuid(),
        scopes: scopes(&key.scopes),
        status: key_status(key.status(now)),
        created_at: key.created_at,
        expires_at: key.expires_at,
        revoked_at: key.revoked_at,
        last_used_at: key.last_used_at,
        meta: key.meta.as_ref().map(|m| m.as_map().clone()),
        external_id: key.external_id.as_ref().map(|e| e.as_str().to_owned()),
        rate_limit: key.rate_limit.map(rate_limit),
        remaining: key.credits.map(|c| c.available_at(now)),
        refill: key.credits.and_then(|c| c.refill).map(refill),
    }
}

/// A key's usage report.
#[must_use]
pub fn key_usage(granularity: UsageGranularity, buckets: &[UsageBucket]) -> api::KeyUsage {
    api::KeyUsage {
        granularity: match granularity {
            UsageGranularity::Hour => api::UsageGranularity::Hour,
            UsageGranularity::Day => api::UsageGranularity::Day,
        },
        items: buckets
            .iter()
            .map(|b| api::UsageItem {
                start: b.start,
                valid: b.counts.valid,
                insufficient_scope: b.counts.insufficient_scope,
                rate_limited: b.counts.rate_limited,
                usage_exceeded: b.counts.usage_exceeded,
                expired: b.counts.expired,
                revoked: b.counts.revoked,
            })
            .collect(),
    }
}

fn rate_limit(limit: RateLimit) -> api::RateLimitSpec {
    api::RateLimitSpec {
        limit: limit.limit(),
        window_seconds: limit.window_seconds(),
    }
}

fn refill(refill: Refill) -> api::RefillSpec {
    api::RefillSpec {
        amount: refill.amount(),
        every: match refill.every() {
            RefillPeriod::Day => api::RefillEvery::Day,
            RefillPeriod::Month => api::RefillEvery::Month,
        },
    }
}

/// A new key with its secret, shown once.
#[must_use]
pub fn created_key(issued: IssuedApiKey) -> api::CreatedKey {
    let k = issued.key;
    api::CreatedKey {
        id: k.id.as_uuid(),
        key: Redacted::new(issued.secret.expose().to_owned()),
        prefix: k.prefix,
        name: k.name.as_str().to_owned(),
        organization_id: k.organization_id.as_uuid(),
        scopes: scopes(&k.scopes),
        status: api::ApiKeyStatus::Active,
        created_at: k.created_at,
        expires_at: k.expires_at,
        meta: k.meta.map(|m| m.as_map().clone()),
        external_id: k.external_id.map(|e| e.as_str().to_owned()),
        rate_limit: k.rate_limit.map(rate_limit),
        remaining: k.credits.map(|c| c.remaining),
        refill: k.credits.and_then(|c| c.refill).map(refill),
    }
}

/// The verdict on a key, borrowing the key's name and scopes from the shared record: a
/// verification copies no scope. A rate-limited key's window is reported whenever the
/// verification got as far as the limit.
#[must_use]
pub fn key_verification(check: &KeyCheck) -> api::KeyVerification<'_> {
    let rate_limit = check.metering.rate_limit.map(|state| api::RateLimitReport {
        limit: state.limit,
        remaining: state.remaining,
        reset_seconds: state.reset_seconds,
    });
    let rejected = |reason| api::KeyVerification {
        error: Some(reason),
        rate_limit,
        ..api::KeyVerification::default()
    };
    match &check.verdict {
        ApiKeyVerdict::Valid(k) => api::KeyVerification {
            valid: true,
            key_id: Some(k.id.as_uuid()),
            organization_id: Some(k.organization_id.as_uuid()),
            name: Some(Cow::Borrowed(k.name.as_str())),
            scopes: Some(
                k.scopes
                    .as_slice()
                    .iter()
                    .map(|s| Cow::Borrowed(s.as_str()))
                    .collect(),
            ),
            expires_at: k.expires_at,
            meta: k.meta.as_ref().map(|m| Cow::Borrowed(m.as_map())),
            external_id: k.external_id.as_ref().map(|e| Cow::Borrowed(e.as_str())),
            rate_limit,
            remaining: check.metering.remaining,
            error: None,
        },
        ApiKeyVerdict::Invalid => rejected(api::ApiKeyRejection::Invalid),
        ApiKeyVerdict::Revoked => rejected(api::ApiKeyRejection::Revoked),
        ApiKeyVerdict::Expired => rejected(api::ApiKeyRejection::Expired),
        ApiKeyVerdict::InsufficientScope(_) => rejected(api::ApiKeyRejection::InsufficientScope),
        ApiKeyVerdict::RateLimited(_) => rejected(api::ApiKeyRejection::RateLimited),
        ApiKeyVerdict::UsageExceeded(_) => rejected(api::ApiKeyRejection::UsageExceeded),
    }
}

/// A device as listed.
#[must_use]
pub fn device_item(d: &Device) -> api::DeviceItem {
    api::DeviceItem {
        device_id: d.id.as_str().to_owned(),
        organization_id: d.organization_id.as_uuid(),
        name: d.name.as_str().to_owned(),
        metadata: d.metadata.to_value(),
        status: device_status(d.status()),
        created_at: d.created_at,
        last_authenticated_at: d.last_authenticated_at,
    }
}

/// A registered device with its secret, shown once.
#[must_use]
pub fn registered_device(issued: IssuedDevice) -> api::RegisteredDevice {
    let d = issued.device;
    api::RegisteredDevice {
        device_id: d.id.as_str().to_owned(),
        organization_id: d.organization_id.as_uuid(),
        name: d.name.as_str().to_owned(),
        metadata: d.metadata.to_value(),
        status: api::DeviceStatus::Active,
        device_secret: Redacted::new(issued.secret.expose().to_owned()),
        created_at: d.created_at,
    }
}

/// A device token.
#[must_use]
pub fn device_token(issued: &DeviceToken) -> api::DeviceTokenResponse {
    api::DeviceTokenResponse {
        access_token: Redacted::new(issued.token.expose_secret().to_owned()),
        token_type: api::TokenType::Bearer,
        expires_in: issued.expires_in,
        device_id: issued.device.id.as_str().to_owned(),
        organization_id: issued.device.organization_id.as_uuid(),
    }
}

/// A device's new secret, shown once.
#[must_use]
pub fn rotated_secret(issued: &IssuedDevice) -> api::RotatedSecret {
    api::RotatedSecret {
        device_id: issued.device.id.as_str().to_owned(),
        device_secret: Redacted::new(issued.secret.expose().to_owned()),
    }
}

/// The verdict on a valid user token.
#[must_use]
pub fn user_token_verdict(p: &Principal) -> api::VerifyTokenResponse {
    api::VerifyTokenResponse {
        valid: true,
        token_type: Some(api::TokenKind::User),
        user_id: Some(p.user.id.as_uuid()),
        email: Some(p.user.email.as_str().to_owned()),
        session_id: Some(p.session.id.as_uuid()),
        expires_at: Some(p.claims.expires_at),
        ..api::VerifyTokenResponse::default()
    }
}

/// The verdict on a valid device token expiring at `expires_at`.
#[must_use]
pub fn device_token_verdict(
    device: &Device,
    expires_at: DateTime<Utc>,
) -> api::VerifyTokenResponse {
    api::VerifyTokenResponse {
        valid: true,
        token_type: Some(api::TokenKind::Device),
        device_id: Some(device.id.as_str().to_owned()),
        organization_id: Some(device.organization_id.as_uuid()),
        expires_at: Some(expires_at),
        ..api::VerifyTokenResponse::default()
    }
}

/// The verdict on a refused token.
#[must_use]
pub fn rejected_token(rejection: model::TokenRejection) -> api::VerifyTokenResponse {
    api::VerifyTokenResponse {
        error: Some(token_rejection(rejection)),
        ..api::VerifyTokenResponse::default()
    }
}

/// An account as administrators see it.
#[must_use]
pub fn admin_user(listing: auth_core::ports::UserListing) -> api::AdminUser {
    let user = listing.user;
    api::AdminUser {
        id: user.id.as_uuid(),
        email: user.email.as_str().to_owned(),
        is_admin: user.is_admin,
        disabled: user.disabled_at.is_some(),
        email_verified: user.email_verified_at.is_some(),
        mfa_enabled: listing.mfa_enabled,
        created_at: user.created_at,
        last_login_at: user.last_login_at,
        display_name: user.display_name.map(DisplayName::into_inner),
    }
}

/// An account with its organizations.
#[must_use]
pub fn admin_user_detail(
    listing: auth_core::ports::UserListing,
    organizations: Vec<(Organization, model::Role)>,
) -> api::AdminUserDetail {
    api::AdminUserDetail {
        user: admin_user(listing),
        organizations: organizations
            .into_iter()
            .map(|(org, r)| api::MembershipSummary {
                id: org.id.as_uuid(),
                name: org.name.as_str().to_owned(),
                role: role(r),
            })
            .collect(),
    }
}

/// An event of the audit trail as the API shows it.
#[must_use]
pub fn audit_event(event: auth_core::model::StoredEvent) -> auth_api::AuditEvent {
    auth_api::AuditEvent {
        seq: event.seq,
        id: event.id,
        at: event.at,
        action: event.action,
        actor: auth_api::EventActor {
            kind: match event.actor.kind {
                auth_core::model::ActorKind::User => auth_api::ActorType::User,
                auth_core::model::ActorKind::ApiKey => auth_api::ActorType::ApiKey,
                auth_core::model::ActorKind::System => auth_api::ActorType::System,
                auth_core::model::ActorKind::Anonymous => auth_api::ActorType::Anonymous,
            },
            id: event.actor.id,
        },
        organization_id: event.organization_id.map(|o| o.as_uuid()),
        target: auth_api::EventTargetBody {
            kind: event.target.kind,
            id: event.target.id,
        },
        ip: event.ip.map(|ip| ip.to_string()),
        request_id: event.request_id,
        details: event.details,
    }
}
