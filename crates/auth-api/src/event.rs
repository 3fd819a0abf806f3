//! The audit trail and the revocation stream: `/organizations/{id}/events`,
//! `/users/me/events` and `/revocations/stream`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = "user"))]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    /// A signed-in user (or the user who just signed in).
    User,
    /// An organization's API key.
    ApiKey,
    /// The service itself: a background worker, or an operator at the command line.
    System,
    /// An unauthenticated caller (a failed login, a reset request).
    Anonymous,
    /// A kind this build does not know (read only; never sent).
    #[serde(other, skip_serializing)]
    Unknown,
}

/// The actor of an event: its kind and, for a user or a key, its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventActor {
    /// `user`, `api_key`, `system` or `anonymous`.
    #[serde(rename = "type")]
    pub kind: ActorType,
    /// The user's or the key's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventTargetBody {
    /// `user`, `session`, `organization`, `member`, `api_key`, `device` or `email` (the
    /// fingerprint of an address no account has, for a failed login).
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id.
    pub id: String,
}

/// One recorded change. Never holds a secret, a password, a token or the plaintext address of
/// a failed login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// Position in the log: strictly increasing in the order events were appended.
    pub seq: i64,
    /// Unique id.
    pub id: Uuid,
    /// When the change was made.
    pub at: DateTime<Utc>,
    /// What happened (`api_key.revoked`, ...): see the event catalogue.
    #[cfg_attr(feature = "openapi", schema(example = "api_key.revoked"))]
    pub action: String,
    /// Who did it.
    pub actor: EventActor,
    /// The organization the target belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<Uuid>,
    /// What it was done to.
    pub target: EventTargetBody,
    /// The caller's address, as the service saw it (behind trusted proxies: the client's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The `X-Request-Id` of the request that made the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Ids and values that describe the change further (never a secret).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
}

/// A page of the trail, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventList {
    /// The events.
    pub items: Vec<AuditEvent>,
    /// The `seq` of the last item: pass it as `after` to read on. `null` when the page is
    /// empty (nothing after `after` yet).
    pub next_after: Option<i64>,
}

/// One event of `GET /revocations/stream` (the `data:` of an SSE event whose `id:` is `seq`):
/// what a service relying on this one must stop accepting. Ids only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Revocation {
    /// Position in the log (also the SSE `id`).
    pub seq: i64,
    /// `session.ended`, `session.reuse_detected`, `api_key.revoked`, `api_key.rotated`,
    /// `api_key.updated` (a key changed in place: a cached verdict on it is out of date),
    /// `device.revoked`, `device.secret_rotated`, `user.password_changed`,
    /// `user.password_reset`, `user.disabled` or `user.deleted`.
    #[cfg_attr(feature = "openapi", schema(example = "session.ended"))]
    pub action: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The ended session (`session.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    /// The user whose session or account it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// The revoked, rotated or changed key (`api_key.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Uuid>,
    /// The device (`device.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The organization of the key or device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<Uuid>,
    /// Tokens of the device (`device.secret_rotated`) or of the user (`user.password_reset`,
    /// `user.disabled`, `user.deleted`) issued before this time (Unix seconds) are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
}

impl Revocation {
    /// Every action the stream carries.
    pub const ACTIONS: [&'static str; 11] = [
        "session.ended",
        "session.reuse_detected",
        "api_key.revoked",
        "api_key.rotated",
        "api_key.updated",
        "device.revoked",
        "device.secret_rotated",
        "user.password_changed",
        "user.password_reset",
        "user.disabled",
        "user.deleted",
    ];
}
