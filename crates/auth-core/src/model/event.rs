//! Events: one record per change worth knowing, appended to the event log in the same atomic
//! step as the change (see [`crate::ports::EventLog`]).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{
    ApiKey, ApiKeyChanges, Device, Membership, Organization, OrganizationId, Role, SessionId,
    UserId,
};
use crate::ports::Invalidation;

/// What happened, as the contract names it (`user.password_changed`, `api_key.revoked`, ...),
/// plus the administrators' own actions (`user.disabled`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventAction {
    /// A session ended: logout, logout everywhere, or a password change ending the others.
    SessionEnded,
    /// A spent refresh token was presented again: its session was ended.
    SessionReuseDetected,
    /// The user changed their password.
    PasswordChanged,
    /// The user confirmed a TOTP second factor.
    MfaEnabled,
    /// The user's second factor was removed (by the user, or by an administrator).
    MfaDisabled,
    /// An API key was revoked.
    ApiKeyRevoked,
    /// An API key was replaced by a new one (the old one is revoked).
    ApiKeyRotated,
    /// A device was registered.
    DeviceRegistered,
    /// A device was revoked.
    DeviceRevoked,
    /// A device's secret was replaced; tokens issued before are no longer accepted.
    DeviceSecretRotated,
    /// An account was deleted (the event keeps its id only).
    UserDeleted,
    /// The account's address was confirmed (through its mailed link, or by an operator).
    EmailVerified,
    /// The account's address was replaced by a new, confirmed one (neither address is kept
    /// in the event).
    EmailChanged,
    /// The password was set through a reset link; every session was ended.
    PasswordReset,
    /// An administrator disabled the account; every session was ended.
    UserDisabled,
    /// An administrator enabled the account again.
    UserEnabled,
    /// The account was made a service administrator.
    AdminGranted,
    /// The account is no longer a service administrator.
    AdminRevoked,
    /// An administrator cleared the lockout of the account's address.
    UserUnlocked,
    /// An account was created (by registration, an administrator, the CLI or an import).
    UserRegistered,
    /// A password-reset link was issued for the account (asked for by its user or sent by an
    /// administrator).
    PasswordResetRequested,
    /// A login opened a session (its id in the details).
    LoginSucceeded,
    /// A credential check counted toward the lockout failed: a password or a second-factor
    /// code at login, or a signed-in user's password or code confirming a change.
    LoginFailed,
    /// A failed check locked the address it was for (until the time in the details).
    UserLocked,
    /// An organization was created, with its first owner.
    OrganizationCreated,
    /// A user joined an organization.
    MemberAdded,
    /// A user left an organization.
    MemberRemoved,
    /// An API key was created (never the key or its hash in the event).
    ApiKeyCreated,
    /// An API key was changed in place (`PATCH`): the members changed are named, their values
    /// are not (meta may hold what the owner keeps from the log).
    ApiKeyUpdated,
}

impl EventAction {
    /// Every action, for parsing and tests.
    pub const ALL: [Self; 29] = [
        Self::SessionEnded,
        Self::SessionReuseDetected,
        Self::PasswordChanged,
        Self::MfaEnabled,
        Self::MfaDisabled,
        Self::ApiKeyRevoked,
        Self::ApiKeyRotated,
        Self::DeviceRegistered,
        Self::DeviceRevoked,
        Self::DeviceSecretRotated,
        Self::UserDeleted,
        Self::EmailVerified,
        Self::EmailChanged,
        Self::PasswordReset,
        Self::UserDisabled,
        Self::UserEnabled,
        Self::AdminGranted,
        Self::AdminRevoked,
        Self::UserUnlocked,
        Self::UserRegistered,
        Self::PasswordResetRequested,
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::UserLocked,
        Self::OrganizationCreated,
        Self::MemberAdded,
        Self::MemberRemoved,
        Self::ApiKeyCreated,
        Self::ApiKeyUpdated,
    ];

    /// The contract's name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SessionEnded => "session.ended",
            Self::SessionReuseDetected => "session.reuse_detected",
            Self::PasswordChanged => "user.password_changed",
            Self::MfaEnabled => "user.mfa_enabled",
            Self::MfaDisabled => "user.mfa_disabled",
            Self::ApiKeyRevoked => "api_key.revoked",
            Self::ApiKeyRotated => "api_key.rotated",
            Self::DeviceRegistered => "device.registered",
            Self::DeviceRevoked => "device.revoked",
            Self::DeviceSecretRotated => "device.secret_rotated",
            Self::UserDeleted => "user.deleted",
            Self::EmailVerified => "user.email_verified",
            Self::EmailChanged => "user.email_changed",
            Self::PasswordReset => "user.password_reset",
            Self::UserDisabled => "user.disabled",
            Self::UserEnabled => "user.enabled",
            Self::AdminGranted => "user.admin_granted",
            Self::AdminRevoked => "user.admin_revoked",
            Self::UserUnlocked => "user.unlocked",
            Self::UserRegistered => "user.registered",
            Self::PasswordResetRequested => "user.password_reset_requested",
            Self::LoginSucceeded => "user.login_succeeded",
            Self::LoginFailed => "user.login_failed",
            Self::UserLocked => "user.locked",
            Self::OrganizationCreated => "organization.created",
            Self::MemberAdded => "member.added",
            Self::MemberRemoved => "member.removed",
            Self::ApiKeyCreated => "api_key.created",
            Self::ApiKeyUpdated => "api_key.updated",
        }
    }

    /// The action named `name`, if it is one of ours.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl std::fmt::Display for EventAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of actor of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// A signed-in user (or the user who just signed in).
    User,
    /// An organization's API key.
    ApiKey,
    /// The service itself: a background worker, or an operator at the command line.
    System,
    /// An unauthenticated caller.
    Anonymous,
}

impl ActorKind {
    /// The contract's name (`user`, `api_key`, `system`, `anonymous`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::ApiKey => "api_key",
            Self::System => "system",
            Self::Anonymous => "anonymous",
        }
    }

    /// The kind named `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [Self::User, Self::ApiKey, Self::System, Self::Anonymous]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

/// Who made a change: a kind and, for a user or a key, its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventActor {
    /// The kind.
    pub kind: ActorKind,
    /// The user's or the key's id.
    pub id: Option<String>,
}

impl EventActor {
    /// The service itself.
    #[must_use]
    pub const fn system() -> Self {
        Self {
            kind: ActorKind::System,
            id: None,
        }
    }

    /// An unauthenticated caller.
    #[must_use]
    pub const fn anonymous() -> Self {
        Self {
            kind: ActorKind::Anonymous,
            id: None,
        }
    }

    /// The user `user`.
    #[must_use]
    pub fn user(user: UserId) -> Self {
        Self {
            kind: ActorKind::User,
            id: Some(user.to_string()),
        }
    }

    /// The API key `key`.
    #[must_use]
    pub fn api_key(key: impl std::fmt::Display) -> Self {
        Self {
            kind: ActorKind::ApiKey,
            id: Some(key.to_string()),
        }
    }
}

/// What an event is about: a type (`user`, `session`, `api_key`, `device`) and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTarget {
    /// The kind of thing.
    pub kind: String,
    /// Its id, as text.
    pub id: String,
}

/// Whom a failed login was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginSubject {
    /// An account (the address is one of an account's).
    User(UserId),
    /// An address no account has, named only by its fingerprint (see
    /// `AccountService::address_fingerprint`): never the address itself.
    Address(String),
}

/// Which check of a login failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginStep {
    /// The password, at login.
    Password,
    /// The second-factor code, at login.
    SecondFactor,
    /// A signed-in user's password or code, confirming a change (password, address, second
    /// factor, deletion): it counts toward the same lock.
    Reauthentication,
}

impl LoginStep {
    /// The name in the event's details.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::SecondFactor => "second_factor",
            Self::Reauthentication => "reauthentication",
        }
    }
}

/// A failed check of an admitted login attempt, as the log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedLogin {
    /// Whom it was for.
    pub subject: LoginSubject,
    /// Which check failed.
    pub step: LoginStep,
    /// Attempts counted in the current window, this one included.
    pub failures: u32,
    /// When the lock this attempt started ends, if it started one.
    pub locked_until: Option<DateTime<Utc>>,
    /// When the check failed.
    pub at: DateTime<Utc>,
}

/// An event about to be appended. Built by the repository that makes the change, from what it
/// changed, so that the event and the change cannot disagree.
///
/// Never holds a secret, a token or a password: ids, times and names only.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique id (the log's `seq` orders; this names).
    pub id: Uuid,
    /// When the change was made (the time the repository was given).
    pub at: DateTime<Utc>,
    /// What happened.
    pub action: EventAction,
    /// The organization the target belongs to, if any.
    pub organization_id: Option<OrganizationId>,
    /// What it happened to.
    pub target: EventTarget,
    /// Ids that describe the change further (`user_id`, `not_before`, ...).
    pub details: serde_json::Value,
    /// The cache entry every instance must drop (internal: never shown).
    pub invalidation: Option<Invalidation>,
    /// Who made the change; `None` until the log stamps it with the caller of the request
    /// that made it (see `crate::audit`), or with [`EventActor::system`] outside a request.
    pub actor: Option<EventActor>,
    /// The caller's address, if a request made the change.
    pub ip: Option<IpAddr>,
    /// The id of the request that made the change.
    pub request_id: Option<String>,
}

impl NewEvent {
    fn new(
        at: DateTime<Utc>,
        action: EventAction,
        target: EventTarget,
        details: serde_json::Value,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            at,
            action,
            organization_id: None,
            target,
            details,
            invalidation: None,
            actor: None,
            ip: None,
            request_id: None,
        }
    }

    /// The account the event is about (its target, or the `user_id` of its details): the
    /// events a user sees of their own account.
    #[must_use]
    pub fn subject_user(&self) -> Option<UserId> {
        if self.target.kind == "user"
            && let Ok(user) = self.target.id.parse()
        {
            return Some(user);
        }
        self.details
            .get("user_id")
            .and_then(serde_json::Value::as_str)
            .and_then(|id| id.parse().ok())
    }

    fn in_organization(mut self, organization: OrganizationId) -> Self {
        self.organization_id = Some(organization);
        self
    }

    fn invalidating(mut self, invalidation: Invalidation) -> Self {
        self.invalidation = Some(invalidation);
        self
    }

    /// `user.login_succeeded`: a login opened `session`. Its actor is the user who signed
    /// in, whatever the request's caller was (nobody, until this moment).
    #[must_use]
    pub fn login_succeeded(session: SessionId, user: UserId, at: DateTime<Utc>) -> Self {
        Self {
            actor: Some(EventActor::user(user)),
            ..Self::new(
                at,
                EventAction::LoginSucceeded,
                user_target(user),
                json!({ "user_id": user.to_string(), "session_id": session.to_string() }),
            )
        }
    }

    /// `user.login_failed`: the check `failure` describes failed. An address with no account
    /// is named by its fingerprint only.
    #[must_use]
    pub fn login_failed(failure: &FailedLogin) -> Self {
        let mut details = json!({
            "step": failure.step.as_str(),
            "failures": failure.failures,
        });
        let target = login_target(&failure.subject, &mut details);
        Self::new(failure.at, EventAction::LoginFailed, target, details)
    }

    /// `user.locked`: the failure `failure` locked its address until `until`.
    #[must_use]
    pub fn user_locked(failure: &FailedLogin, until: DateTime<Utc>) -> Self {
        let mut details = json!({
            "failures": failure.failures,
            "locked_until": until,
        });
        let target = login_target(&failure.subject, &mut details);
        Self::new(failure.at, EventAction::UserLocked, target, details)
    }

    /// `organization.created`, with `owner` as its first owner.
    #[must_use]
    pub fn organization_created(org: &Organization, owner: UserId) -> Self {
        Self::new(
            org.created_at,
            EventAction::OrganizationCreated,
            EventTarget {
                kind: "organization".to_owned(),
                id: org.id.to_string(),
            },
            json!({
                "organization_id": org.id.to_string(),
                "name": org.name.as_str(),
                "user_id": owner.to_string(),
                "role": Role::Owner.as_str(),
            }),
        )
        .in_organization(org.id)
    }

    /// `member.added`: `membership` was stored.
    #[must_use]
    pub fn member_added(membership: &Membership) -> Self {
        Self::about_member(
            EventAction::MemberAdded,
            membership.organization_id,
            membership.user_id,
            membership.role,
            membership.created_at,
        )
    }

    /// `member.removed`: `user`, who was `role` in `org`, was removed.
    #[must_use]
    pub fn member_removed(
        org: OrganizationId,
        user: UserId,
        role: Role,
        at: DateTime<Utc>,
    ) -> Self {
        Self::about_member(EventAction::MemberRemoved, org, user, role, at)
    }

    fn about_member(
        action: EventAction,
        org: OrganizationId,
        user: UserId,
        role: Role,
        at: DateTime<Utc>,
    ) -> Self {
        Self::new(
            at,
            action,
            user_target(user),
            json!({
                "organization_id": org.to_string(),
                "user_id": user.to_string(),
                "role": role.as_str(),
            }),
        )
        .in_organization(org)
    }

    /// `api_key.created`: its id, name, scopes and expiry; never the key, its hash or its
    /// prefix.
    #[must_use]
    pub fn api_key_created(key: &ApiKey) -> Self {
        let scopes: Vec<&str> = key.scopes.as_slice().iter().map(|s| s.as_str()).collect();
        Self::new(
            key.created_at,
            EventAction::ApiKeyCreated,
            EventTarget {
                kind: "api_key".to_owned(),
                id: key.id.to_string(),
            },
            json!({
                "key_id": key.id.to_string(),
                "organization_id": key.organization_id.to_string(),
                "name": key.name.as_str(),
                "scopes": scopes,
                "expires_at": key.expires_at,
            }),
        )
        .in_organization(key.organization_id)
    }

    /// `session.ended`: `session` of `user` was ended.
    #[must_use]
    pub fn session_ended(session: SessionId, user: UserId, at: DateTime<Utc>) -> Self {
        Self::new(
            at,
            EventAction::SessionEnded,
            EventTarget {
                kind: "session".to_owned(),
                id: session.to_string(),
            },
            json!({ "session_id": session.to_string(), "user_id": user.to_string() }),
        )
        .invalidating(Invalidation::Session(session))
    }

    /// `session.ended` by a logout with one of the session's refresh tokens: whoever holds
    /// it acts as the session's user, so the user is the actor.
    #[must_use]
    pub fn session_logged_out(session: SessionId, user: UserId, at: DateTime<Utc>) -> Self {
        Self {
            actor: Some(EventActor::user(user)),
            ..Self::session_ended(session, user, at)
        }
    }

    /// `session.reuse_detected`: a spent refresh token of `session` was presented; the session
    /// was ended.
    #[must_use]
    pub fn session_reuse_detected(session: SessionId, user: UserId, at: DateTime<Utc>) -> Self {
        Self {
            action: EventAction::SessionReuseDetected,
            ..Self::session_ended(session, user, at)
        }
    }

    /// `user.password_changed`.
    #[must_use]
    pub fn password_changed(user: UserId, at: DateTime<Utc>) -> Self {
        Self::new(
            at,
            EventAction::PasswordChanged,
            EventTarget {
                kind: "user".to_owned(),
                id: user.to_string(),
            },
            json!({ "user_id": user.to_string() }),
        )
    }

    /// `user.deleted`: the account is gone; only its id is kept.
    #[must_use]
    pub fn user_deleted(user: UserId, at: DateTime<Utc>) -> Self {
        Self::new(
            at,
            EventAction::UserDeleted,
            EventTarget {
                kind: "user".to_owned(),
                id: user.to_string(),
            },
            json!({ "user_id": user.to_string() }),
        )
    }

    /// `user.email_verified`.
    #[must_use]
    pub fn email_verified(user: UserId, at: DateTime<Utc>) -> Self {
        Self {
            action: EventAction::EmailVerified,
            ..Self::password_changed(user, at)
        }
    }

    /// `user.email_changed` (no address in it: the log keeps ids).
    #[must_use]
    pub fn email_changed(user: UserId, at: DateTime<Utc>) -> Self {
        // Cached sessions carry the account as it was: every instance drops them.
        Self {
            action: EventAction::EmailChanged,
            ..Self::password_changed(user, at)
        }
        .invalidating(Invalidation::User(user))
    }

    /// `user.password_reset`.
    #[must_use]
    pub fn password_reset(user: UserId, at: DateTime<Utc>) -> Self {
        Self {
            action: EventAction::PasswordReset,
            ..Self::password_changed(user, at)
        }
    }

    /// An administrator's change to `user`: `user.disabled`, `user.enabled`,
    /// `user.admin_granted`, `user.admin_revoked` or `user.unlocked`.
    #[must_use]
    pub fn administered(action: EventAction, user: UserId, at: DateTime<Utc>) -> Self {
        let event = Self {
            action,
            ..Self::password_changed(user, at)
        };
        // A session opened by a login racing the disabling (after its sessions were ended)
        // may be cached as valid on some instance: every instance drops the user's cached
        // sessions, and the next verification reads the disabled account.
        if action == EventAction::UserDisabled {
            event.invalidating(Invalidation::User(user))
        } else {
            event
        }
    }

    /// `user.mfa_enabled`.
    #[must_use]
    pub fn mfa_enabled(user: UserId, at: DateTime<Utc>) -> Self {
        Self {
            action: EventAction::MfaEnabled,
            ..Self::password_changed(user, at)
        }
    }

    /// `user.mfa_disabled`.
    #[must_use]
    pub fn mfa_disabled(user: UserId, at: DateTime<Utc>) -> Self {
        Self {
            action: EventAction::MfaDisabled,
            ..Self::password_changed(user, at)
        }
    }

    /// `api_key.revoked`.
    #[must_use]
    pub fn api_key_revoked(key: &ApiKey, at: DateTime<Utc>) -> Self {
        Self::new(
            at,
            EventAction::ApiKeyRevoked,
            EventTarget {
                kind: "api_key".to_owned(),
                id: key.id.to_string(),
            },
            json!({
                "key_id": key.id.to_string(),
                "organization_id": key.organization_id.to_string(),
            }),
        )
        .in_organization(key.organization_id)
        .invalidating(Invalidation::ApiKey(key.key_hash))
    }

    /// `api_key.updated`: `key` as changed, naming the members that `changes` set (their
    /// values stay out of the log); every instance drops its cached record.
    #[must_use]
    pub fn api_key_updated(key: &ApiKey, changes: &ApiKeyChanges, at: DateTime<Utc>) -> Self {
        Self::new(
            at,
            EventAction::ApiKeyUpdated,
            EventTarget {
                kind: "api_key".to_owned(),
                id: key.id.to_string(),
            },
            json!({
                "key_id": key.id.to_string(),
                "organization_id": key.organization_id.to_string(),
                "changed": changes.members(),
            }),
        )
        .in_organization(key.organization_id)
        .invalidating(Invalidation::ApiKey(key.key_hash))
    }

    /// `api_key.rotated`: `old` was revoked and replaced by `new`.
    #[must_use]
    pub fn api_key_rotated(old: &ApiKey, new: &ApiKey, at: DateTime<Utc>) -> Self {
        Self::new(
            at,
            EventAction::ApiKeyRotated,
            EventTarget {
                kind: "api_key".to_owned(),
                id: old.id.to_string(),
            },
            json!({
                "key_id": old.id.to_string(),
                "new_key_id": new.id.to_string(),
                "organization_id": old.organization_id.to_string(),
            }),
        )
        .in_organization(old.organization_id)
        .invalidating(Invalidation::ApiKey(old.key_hash))
    }

    /// An event about `device`, ending its cached record on every instance.
    fn about_device(
        device: &Device,
        action: EventAction,
        mut details: serde_json::Value,
        at: DateTime<Utc>,
    ) -> Self {
        if let Some(fields) = details.as_object_mut() {
            fields.insert("device_id".to_owned(), json!(device.id.to_string()));
            fields.insert(
                "organization_id".to_owned(),
                json!(device.organization_id.to_string()),
            );
        }
        Self::new(
            at,
            action,
            EventTarget {
                kind: "device".to_owned(),
                id: device.id.to_string(),
            },
            details,
        )
        .in_organization(device.organization_id)
        .invalidating(Invalidation::Device(device.id.clone()))
    }

    /// `device.registered`. It ends a cached "no such device" answer on every instance.
    #[must_use]
    pub fn device_registered(device: &Device, at: DateTime<Utc>) -> Self {
        Self::about_device(device, EventAction::DeviceRegistered, json!({}), at)
    }

    /// `device.revoked`.
    #[must_use]
    pub fn device_revoked(device: &Device, at: DateTime<Utc>) -> Self {
        Self::about_device(device, EventAction::DeviceRevoked, json!({}), at)
    }

    /// `device.secret_rotated`: tokens issued before `not_before` are refused.
    #[must_use]
    pub fn device_secret_rotated(
        device: &Device,
        not_before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Self {
        Self::about_device(
            device,
            EventAction::DeviceSecretRotated,
            json!({ "not_before": not_before.timestamp() }),
            at,
        )
    }
}

/// The target `user`.
fn user_target(user: UserId) -> EventTarget {
    EventTarget {
        kind: "user".to_owned(),
        id: user.to_string(),
    }
}

/// The target of a failed login: the account (whose id also goes into `details`), or the
/// address's fingerprint as an `email` target.
fn login_target(subject: &LoginSubject, details: &mut serde_json::Value) -> EventTarget {
    match subject {
        LoginSubject::User(user) => {
            if let Some(fields) = details.as_object_mut() {
                fields.insert("user_id".to_owned(), json!(user.to_string()));
            }
            user_target(*user)
        }
        LoginSubject::Address(fingerprint) => EventTarget {
            kind: "email".to_owned(),
            id: fingerprint.clone(),
        },
    }
}

/// What a follower of the log reads of an event: its position, time, action, the cache entry
/// it ends, and the ids the revocation stream sends. (The audit trail reads whole events.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its position: strictly increasing in the order of appending (not of committing), with
    /// holes.
    pub seq: i64,
    /// When the change was made.
    pub at: DateTime<Utc>,
    /// What happened; `None` for an action this release does not know (written by a newer
    /// one during a rolling upgrade: its invalidation still applies).
    pub action: Option<EventAction>,
    /// The cache entry every instance must drop, if any.
    pub invalidation: Option<Invalidation>,
    /// The organization of the target, if any.
    pub organization_id: Option<OrganizationId>,
    /// The event's details (ids and values, never a secret).
    pub details: serde_json::Value,
}

/// An event as the audit trail shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Its position in the log.
    pub seq: i64,
    /// Unique id.
    pub id: Uuid,
    /// When the change was made.
    pub at: DateTime<Utc>,
    /// The action's name (kept as text: a newer release may have written one this release
    /// does not know).
    pub action: String,
    /// Who made the change (`system` for events written before actors were recorded).
    pub actor: EventActor,
    /// The organization of the target, if any.
    pub organization_id: Option<OrganizationId>,
    /// What it was done to.
    pub target: EventTarget,
    /// The caller's address.
    pub ip: Option<IpAddr>,
    /// The id of the request that made it.
    pub request_id: Option<String>,
    /// Ids and values that describe it further.
    pub details: serde_json::Value,
}

impl StoredEvent {
    /// The event `event` appended at `seq`, as the trail shows it.
    #[must_use]
    pub fn from_new(seq: i64, event: &NewEvent) -> Self {
        Self {
            seq,
            id: event.id,
            at: event.at,
            action: event.action.as_str().to_owned(),
            actor: event.actor.clone().unwrap_or_else(EventActor::system),
            organization_id: event.organization_id,
            target: event.target.clone(),
            ip: event.ip,
            request_id: event.request_id.clone(),
            details: event.details.clone(),
        }
    }
}
