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
        schema(min_length = 1, max_length = 128, example = "cus_4711")
    )]
    pub external_id: Option<String>,
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
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable, min_length = 1, max_length = 128))]
    pub external_id: Option<Option<String>>,
    /// New expiry: after now, at most 3650 days ahead; `null`: never expires.
    #[serde(
        default,
        deserialize_with = "present_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<DateTime<Utc>>, nullable))]
    pub expires_at: Option<Option<DateTime<Utc>>>,
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
    /// Malformed, mistyped or unknown (and any reason this build does not know).
    #[serde(other)]
    Invalid,
}

impl ApiKeyRejection {
    /// The contract's code (`INVALID`, `REVOKED`, `EXPIRED`, `INSUFFICIENT_SCOPE`).
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Invalid => "INVALID",
            Self::Revoked => "REVOKED",
            Self::Expired => "EXPIRED",
            Self::InsufficientScope => "INSUFFICIENT_SCOPE",
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
    /// `INVALID`, `REVOKED`, `EXPIRED` or `INSUFFICIENT_SCOPE` when not valid.
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
