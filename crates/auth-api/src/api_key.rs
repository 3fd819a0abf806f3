//! Organization API keys: `/api-keys*`, management and verification.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::redacted::Redacted;

/// Most scopes a key holds, or a verification requires.
pub const MAX_SCOPES: usize = 100;

/// Most items of a batch verification.
pub const MAX_BATCH: usize = 100;

/// A key's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = "active"))]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyStatus {
    /// Usable.
    Active,
    /// Revoked (or rotated).
    Revoked,
    /// Past `expires_at`.
    Expired,
    /// A status this build does not know (read only; never sent).
    #[serde(other, skip_serializing)]
    Unknown,
}

/// A key as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyItem {
    /// Id.
    pub id: Uuid,
    /// The key's first characters, to recognise it.
    #[cfg_attr(feature = "openapi", schema(example = "ak_live_4fTq9ZbX"))]
    pub prefix: String,
    /// Name.
    pub name: String,
    /// Owner.
    pub organization_id: Uuid,
    /// Scopes.
    pub scopes: Vec<String>,
    /// `active`, `revoked` or `expired`.
    pub status: ApiKeyStatus,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last successful verification (updated every few seconds).
    pub last_used_at: Option<DateTime<Utc>>,
    /// What the owner says about the key (a JSON object), if anything.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>, example = json!({"plan": "pro"})))]
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// The owner's own id for whom the key was issued, if any.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(example = "cus_4711"))]
    pub external_id: Option<String>,
    /// Valid verifications allowed per window, if limited.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
    /// Uses left now (a refill that is due counted), if counted.
    #[serde(default)]
    pub remaining: Option<u64>,
    /// How the uses come back, if they do.
    #[serde(default)]
    pub refill: Option<RefillSpec>,
}

/// A key's rate limit: at most `limit` valid verifications per fixed window of
/// `window_seconds`, windows aligned to the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateLimitSpec {
    /// 1..=1,000,000.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 1_000_000, example = 100)
    )]
    pub limit: u32,
    /// 1..=86,400.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 86_400, example = 10)
    )]
    pub window_seconds: u32,
}

/// How often credits are set back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RefillEvery {
    /// At 00:00 UTC every day.
    Day,
    /// At 00:00 UTC on the first of every month.
    Month,
}

/// Credits set back to `amount` at the start of every day or month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefillSpec {
    /// 1..=1,000,000,000.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 1_000_000_000, example = 1000)
    )]
    pub amount: u64,
    /// `day` or `month`.
    pub every: RefillEvery,
}

/// The periods of a usage report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum UsageGranularity {
    /// Hours (UTC).
    Hour,
    /// Days (UTC), each the sum of its hours.
    Day,
}

/// A key's verifications in one period, by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageItem {
    /// The period's start (UTC).
    pub start: DateTime<Utc>,
    /// Valid.
    pub valid: u64,
    /// Refused: lacking a required scope.
    pub insufficient_scope: u64,
    /// Refused: over the rate limit.
    pub rate_limited: u64,
    /// Refused: no credit left.
    pub usage_exceeded: u64,
    /// Refused: expired.
    pub expired: u64,
    /// Refused: revoked.
    pub revoked: u64,
}

/// `GET /api-keys/{id}/usage`: a period per item, in order, only periods with any
/// verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyUsage {
    /// `hour` or `day`.
    pub granularity: UsageGranularity,
    /// The periods.
    pub items: Vec<UsageItem>,
}

/// A rate-limited key's window, as a verification that got as far as the limit saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateLimitReport {
    /// The limit per window.
    pub limit: u32,
    /// Uses left in this window (approximate across instances).
    pub remaining: u32,
    /// Seconds until the window ends, rounded up.
    pub reset_seconds: u32,
}

/// A new key: shown once. `Debug` never shows the key.
///
/// `S` is how the key is held: [`Redacted`] by default; a client may read it into its own
/// secret type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        bound = "",
        description = "A new key: shown once. `Debug` never shows the key."
    )
)]
pub struct CreatedKey<S = Redacted> {
    /// Id.
    pub id: Uuid,
    /// The key. It appears here and never again.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub key: S,
    /// Its displayable start.
    pub prefix: String,
    /// Name.
    pub name: String,
    /// Owner.
    pub organization_id: Uuid,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Always `active`.
    pub status: ApiKeyStatus,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// What the owner says about the key, if anything.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// The owner's own id for whom the key was issued, if any.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Valid verifications allowed per window, if limited.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
    /// Uses left, if counted.
    #[serde(default)]
    pub remaining: Option<u64>,
    /// How the uses come back, if they do.
    #[serde(default)]
    pub refill: Option<RefillSpec>,
}

impl<S> CreatedKey<S> {
    /// The same body with the key held another way (a client's secret type into
    /// [`Redacted`], say).
    pub fn map_secret<T>(self, f: impl FnOnce(S) -> T) -> CreatedKey<T> {
        CreatedKey {
            id: self.id,
            key: f(self.key),
            prefix: self.prefix,
            name: self.name,
            organization_id: self.organization_id,
            scopes: self.scopes,
            status: self.status,
            created_at: self.created_at,
            expires_at: self.expires_at,
            meta: self.meta,
            external_id: self.external_id,
            rate_limit: self.rate_limit,
            remaining: self.remaining,
            refill: self.refill,
        }
    }
}

/// `POST /api-keys` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateKey {
    /// The organization that owns the key.
    pub organization_id: Uuid,
    /// 1..=100 characters.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "billing worker"))]
    pub name: String,
    /// At most 100 scopes, each 1..=64 characters of `[a-z0-9:._-]`; `admin` holds every
    /// scope.
    #[cfg_attr(feature = "openapi", schema(value_type = ScopeList, example = json!(["invoices:read"])))]
    pub scopes: Vec<String>,
    /// Lifetime in days (1..=3650); none for a key that does not expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
    pub expires_in_days: Option<u32>,
    /// What the owner says about the key: a JSON object of at most 4 KiB serialised, returned
    /// by a valid verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>, example = json!({"plan": "pro"})))]
    pub meta: Option<serde_json::Value>,
    /// The owner's own id for whom the key is issued (1..=128 characters; not unique),
    /// returned by a valid verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 128,
            pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$",
            example = "cus_4711"
        )
    )]
    pub external_id: Option<String>,
    /// At most `limit` valid verifications per window of `window_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// Uses allowed (0..=1,000,000,000), one taken by each valid verification; none for
    /// unlimited uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 0, maximum = 1_000_000_000, example = 1000)
    )]
    pub remaining: Option<u64>,
    /// Sets `remaining` back every day or month; only with `remaining`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill: Option<RefillSpec>,
}

/// Reads a member that may be absent (`None`), `null` (`Some(None)`) or a value.
fn present_or_null<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// `PATCH /api-keys/{id}` body: every member optional; a member left out stays as it is,
/// `null` clears `meta`, `external_id` and `expires_at`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateKey {
    /// A new name (1..=100 characters); never `null`.
    #[serde(
        default,
        deserialize_with = "present_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = String, min_length = 1, max_length = 100, example = "billing worker"))]
    pub name: Option<Option<String>>,
    /// New scopes (as on create); never `null`.
    #[serde(
        default,
        deserialize_with = "present_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = ScopeList))]
    pub scopes: Option<Option<Vec<String>>>,
    /// New meta (as on create); `null` clears it.
    #[serde(
        default,
        deserialize_with = "present_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>, nullable))]
    pub meta: Option<Option<serde_json::Value>>,
    /// New external id (as on create); `null` clears it.
    #[serde(
        default,
        deserialize_with = "present_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable, min_length = 1, max_length = 128, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub external_id: Option<Option<String>>,
    /// New expiry: after now, at most 3650 days ahead; `null`: never expires.
    #[serde(
        default,
        deserialize_with = "present_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<DateTime<Utc>>, nullable))]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// A new rate limit; `null` removes it.
    #[serde(
        default,
        deserialize_with = "present_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<RateLimitSpec>, nullable))]
    pub rate_limit: Option<Option<RateLimitSpec>>,
    /// A new count of uses (0..=1,000,000,000; the refill stays unless `refill` is given);
    /// `null`: unlimited uses, and no refill.
    #[serde(
        default,
        deserialize_with = "present_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, nullable, minimum = 0, maximum = 1_000_000_000))]
    pub remaining: Option<Option<u64>>,
    /// A new refill, only with a `remaining` count in the same body; `null` removes it.
    #[serde(
        default,
        deserialize_with = "present_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<RefillSpec>, nullable))]
    pub refill: Option<Option<RefillSpec>>,
}

impl CreateKey {
    /// A key of `organization_id` that never expires.
    #[must_use]
    pub fn new(
        organization_id: Uuid,
        name: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            organization_id,
            name: name.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
            expires_in_days: None,
            meta: None,
            external_id: None,
            rate_limit: None,
            remaining: None,
            refill: None,
        }
    }

    /// Expiring after `days`.
    #[must_use]
    pub fn expires_in_days(mut self, days: u32) -> Self {
        self.expires_in_days = Some(days);
        self
    }
}

/// Keys of an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyList {
    /// Items.
    pub items: Vec<ApiKeyItem>,
}

/// `POST /api-keys/verify` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyKey {
    /// The key, exactly as issued (nothing is trimmed).
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub key: Redacted,
    /// Scopes the key must hold (all of them; `admin` holds every scope); at most 100.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ScopeList>))]
    pub required_scopes: Option<Vec<String>>,
}

/// Why a key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = "REVOKED"))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApiKeyRejection {
    /// Revoked (or rotated).
    Revoked,
    /// Past its expiry.
    Expired,
    /// Valid, but lacking one of the required scopes.
    InsufficientScope,
    /// Valid, but over its rate limit for this window.
    RateLimited,
    /// Valid, but with no use left.
    UsageExceeded,
    /// Malformed, mistyped or unknown (and any reason this build does not know).
    #[serde(other)]
    Invalid,
}

impl ApiKeyRejection {
    /// The contract's code (`INVALID`, `REVOKED`, `EXPIRED`, `INSUFFICIENT_SCOPE`,
    /// `RATE_LIMITED`, `USAGE_EXCEEDED`).
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Invalid => "INVALID",
            Self::Revoked => "REVOKED",
            Self::Expired => "EXPIRED",
            Self::InsufficientScope => "INSUFFICIENT_SCOPE",
            Self::RateLimited => "RATE_LIMITED",
            Self::UsageExceeded => "USAGE_EXCEEDED",
        }
    }
}

/// The verdict on one key.
// Name and scopes may be borrowed: the server writes them straight from the key record it
// shares with its cache, so no verification copies a scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyVerification<'a> {
    /// Whether the key may be used.
    pub valid: bool,
    /// Key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Uuid>,
    /// Owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<Uuid>,
    /// Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub name: Option<Cow<'a, str>>,
    /// Scopes held.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>))]
    pub scopes: Option<Vec<Cow<'a, str>>>,
    /// Expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// What the owner says about the key, when valid and set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub meta: Option<Cow<'a, serde_json::Map<String, serde_json::Value>>>,
    /// The owner's own id for whom the key was issued, when valid and set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub external_id: Option<Cow<'a, str>>,
    /// The window of a rate-limited key, when the verification got as far as the limit
    /// (valid, `RATE_LIMITED` or `USAGE_EXCEEDED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitReport>,
    /// Uses left after this one, when valid and the key counts its uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// `INVALID`, `REVOKED`, `EXPIRED`, `INSUFFICIENT_SCOPE`, `RATE_LIMITED` or
    /// `USAGE_EXCEEDED` when not valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiKeyRejection>,
}

/// `POST /api-keys/verify-batch` body: 1..=100 items, each a verify body. An item that is not
/// one makes the whole request a 422 naming every broken field (`items[3].key`); a
/// well-formed item whose key is bad gets its own `valid:false` verdict.
///
/// `I` is how an item is read: a [`VerifyKey`] by default; the server reads each item as
/// free JSON, so that it can name every broken field of every item.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        bound = "",
        description = "`POST /api-keys/verify-batch` body: 1..=100 items, each a verify body. An item that is not\none makes the whole request a 422 naming every broken field (`items[3].key`); a\nwell-formed item whose key is bad gets its own `valid:false` verdict."
    )
)]
pub struct VerifyBatch<I = VerifyKey> {
    /// The keys to verify.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<VerifyKey>, min_items = 1, max_items = 100))]
    pub items: Vec<I>,
}

impl<I> std::fmt::Debug for VerifyBatch<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The items hold presented keys, and read as free JSON they are not `Redacted`.
        f.debug_struct("VerifyBatch")
            .field("items", &self.items.len())
            .finish()
    }
}

/// One result per item, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchVerification<'a> {
    /// Results.
    pub results: Vec<KeyVerification<'a>>,
}

#[cfg(feature = "openapi")]
pub use schema::{ScopeList, ScopeName};

#[cfg(feature = "openapi")]
mod schema {
    //! Scopes as the OpenAPI document describes them.

    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::{Array, RefOr};
    use utoipa::{PartialSchema, ToSchema};

    /// A scope as the OpenAPI document describes it: the rule the service applies, so that a
    /// client generated from the document, or a fuzzer, sends what validation accepts.
    #[derive(Debug)]
    pub struct ScopeName;

    impl PartialSchema for ScopeName {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(64))
                .pattern(Some("^[a-z0-9:._-]{1,64}$"))
                .examples(["invoices:read"])
                .description(Some(
                    "1..=64 characters of `[a-z0-9:._-]`; `admin` holds every scope",
                ))
                .into()
        }
    }

    impl ToSchema for ScopeName {}

    /// A list of at most [`MAX_SCOPES`](super::MAX_SCOPES) scopes, for the document.
    #[derive(Debug)]
    pub struct ScopeList;

    impl PartialSchema for ScopeList {
        fn schema() -> RefOr<Schema> {
            Array::builder()
                .items(ScopeName::schema())
                .max_items(Some(super::MAX_SCOPES))
                .into()
        }
    }

    impl ToSchema for ScopeList {}
}
