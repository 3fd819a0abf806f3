//! Events: one record per change worth knowing, appended to the event log in the same atomic
//! step as the change (see [`crate::ports::EventLog`]).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{ApiKey, Device, OrganizationId, SessionId, UserId};
use crate::ports::Invalidation;

/// What happened, as the contract names it (`user.password_changed`, `api_key.revoked`, ...).
///
/// Only the actions written today are listed; the audit trail adds the rest of the contract's
/// catalogue.
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
}

impl EventAction {
    /// Every action, for parsing and tests.
    pub const ALL: [Self; 21] = [
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
