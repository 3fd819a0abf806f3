//! `/api/v1/api-keys*`: manage an organization's keys, and verify keys (single and batch).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use auth_core::model::{ApiKey, ApiKeyId, ApiKeyName, OrganizationId, Scope, Scopes};
use auth_core::{ApiKeyVerdict, IssuedApiKey, NewApiKey};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{Array, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use uuid::Uuid;

use super::no_store_json;
use super::organizations::{path_id, query, required_organization};
use crate::error::{
    ApiError, BodyErrors, FieldError, LimitedErrors, ManagerErrors, NoBodyErrors, Problem,
    StoreErrors,
};
use crate::extract::Manager;
use crate::json::{CleanString, NoBody, ValidJson};
use crate::state::AppState;
use auth_core::model::text::has_control_chars;

/// A key as listed (never the secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyItem {
    /// Id.
    pub id: Uuid,
    /// The key's first characters, to recognise it.
    #[schema(example = "ak_live_4fTq9ZbX")]
    pub prefix: String,
    /// Name.
    pub name: String,
    /// Owner.
    pub organization_id: Uuid,
    /// Scopes.
    pub scopes: Vec<String>,
    /// `active`, `revoked` or `expired`.
    #[schema(example = "active")]
    pub status: &'static str,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last successful verification (updated every few seconds).
    pub last_used_at: Option<DateTime<Utc>>,
}

fn scopes_of(scopes: &Scopes) -> Vec<String> {
    scopes
        .as_slice()
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect()
}

/// A scope as the OpenAPI document describes it: the rule `Scope::parse` applies, so that a
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

/// A list of at most [`Scopes::MAX`] scopes, for the document.
#[derive(Debug)]
pub struct ScopeList;

impl PartialSchema for ScopeList {
    fn schema() -> RefOr<Schema> {
        Array::builder()
            .items(ScopeName::schema())
            .max_items(Some(Scopes::MAX))
            .into()
    }
}

impl ToSchema for ScopeList {}

/// Serialises a key's scopes by reference: a verification answer copies no scope list.
#[derive(Debug)]
pub struct HeldScopes<'a>(&'a Scopes);

impl Serialize for HeldScopes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.0
                .as_slice()
                .iter()
                .map(auth_core::model::Scope::as_str),
        )
    }
}

impl ApiKeyItem {
    /// The listing of `key` as seen at `now`.
    #[must_use]
    pub fn new(key: &ApiKey, now: DateTime<Utc>) -> Self {
        Self {
            id: key.id.as_uuid(),
            prefix: key.prefix.clone(),
            name: key.name.as_str().to_owned(),
            organization_id: key.organization_id.as_uuid(),
            scopes: scopes_of(&key.scopes),
            status: key.status(now).as_str(),
            created_at: key.created_at,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
            last_used_at: key.last_used_at,
        }
    }
}

/// A new key: shown once. `Debug` never shows the key.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// Id.
    pub id: Uuid,
    /// The key. It appears here and never again.
    pub key: String,
    /// Its displayable start.
    pub prefix: String,
    /// Name.
    pub name: String,
    /// Owner.
    pub organization_id: Uuid,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Always `active`.
    #[schema(example = "active")]
    pub status: &'static str,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("id", &self.id)
            .field("key", &"[REDACTED]")
            .field("prefix", &self.prefix)
            .field("organization_id", &self.organization_id)
            .finish_non_exhaustive()
    }
}

impl From<IssuedApiKey> for CreatedKey {
    fn from(issued: IssuedApiKey) -> Self {
        let k = issued.key;
        Self {
            id: k.id.as_uuid(),
            key: issued.secret.expose().to_owned(),
            prefix: k.prefix,
            name: k.name.as_str().to_owned(),
            organization_id: k.organization_id.as_uuid(),
            scopes: scopes_of(&k.scopes),
            status: "active",
            created_at: k.created_at,
            expires_at: k.expires_at,
        }
    }
}

/// `POST /api-keys` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateKey {
    /// The organization that owns the key.
    pub organization_id: Uuid,
    /// 1..=100 characters.
    #[schema(value_type = String, example = "billing worker")]
    pub name: CleanString,
    /// At most 100 scopes, each 1..=64 characters of `[a-z0-9:._-]`; `admin` holds every
    /// scope.
    #[schema(value_type = ScopeList, example = json!(["invoices:read"]))]
    pub scopes: Vec<CleanString>,
    /// Lifetime in days (1..=3650); none for a key that does not expire.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
}

/// Builds the scopes of `field`, or notes what is wrong with it: more than [`Scopes::MAX`]
/// entries (one error, without reading them), or each entry that is not a scope.
fn parse_scopes(field: &str, raw: &[CleanString], errors: &mut Vec<FieldError>) -> Option<Scopes> {
    parse_scope_strs(
        &field,
        raw.iter().map(|s| Some(s.as_str())),
        raw.len(),
        errors,
    )
}

/// As [`parse_scopes`], over entries that may not be strings (`None`), as in a batch item.
fn parse_scope_strs<'a>(
    field: &dyn std::fmt::Display,
    raw: impl Iterator<Item = Option<&'a str>>,
    count: usize,
    errors: &mut Vec<FieldError>,
) -> Option<Scopes> {
    if count > Scopes::MAX {
        errors.push(FieldError::new(
            field.to_string(),
            "too_many",
            format!("{field} must hold at most {} scopes", Scopes::MAX),
        ));
        return None;
    }
    let before = errors.len();
    let mut scopes = Vec::with_capacity(count);
    for (i, entry) in raw.enumerate() {
        // The field path is built only for an error: this runs for every scope of every verify.
        match entry.map(Scope::parse) {
            Some(Ok(scope)) => scopes.push(scope),
            Some(Err(e)) => {
                errors.push(FieldError::new(format!("{field}[{i}]"), "invalid_scope", e))
            }
            None => {
                let at = format!("{field}[{i}]");
                let text = format!("{at} has the wrong type");
                errors.push(FieldError::new(at, "invalid_type", text));
            }
        }
    }
    if errors.len() > before {
        return None;
    }
    Scopes::new(scopes)
        .map_err(|e| errors.push(FieldError::new(field.to_string(), "too_many", e)))
        .ok()
}

/// Create a key for an organization (owner/admin, or a key with `admin` of that organization).
#[utoipa::path(
    operation_id = "create_api_key",
    tag = "api-keys",
    security(("bearer" = []), ("api_key" = [])),
    request_body = CreateKey,
    responses((status = 201, description = "Created; `key` is shown only here", body = CreatedKey), BodyErrors, ManagerErrors, StoreErrors)
)]
#[post("/api-keys")]
pub async fn create(
    state: web::Data<AppState>,
    manager: Manager,
    body: ValidJson<CreateKey>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut errors = Vec::new();
    let name = ApiKeyName::parse(body.name.as_str())
        .map_err(|e| errors.push(FieldError::new("name", "invalid", e)))
        .ok();
    let scopes = parse_scopes("scopes", &body.scopes, &mut errors);
    if body
        .expires_in_days
        .is_some_and(|d| !(1..=3650).contains(&d))
    {
        errors.push(FieldError::new(
            "expires_in_days",
            "out_of_range",
            "expires_in_days must be 1..=3650",
        ));
    }
    let (Some(name), Some(scopes), true) = (name, scopes, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let new = NewApiKey {
        organization_id: OrganizationId::from_uuid(body.organization_id),
        name,
        scopes,
        expires_in_days: body.expires_in_days,
    };
    let issued = state.keys.create(&manager.0, new).await?;
    Ok(no_store_json(
        StatusCode::CREATED,
        &CreatedKey::from(issued),
    ))
}

/// `GET /api-keys` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListKeysQuery {
    /// The organization.
    pub organization_id: Option<String>,
    /// Include revoked keys (`true`/`false`, default false).
    pub include_revoked: Option<String>,
}

/// Keys of an organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    /// Items.
    pub items: Vec<ApiKeyItem>,
}

/// List an organization's keys.
#[utoipa::path(
    operation_id = "list_api_keys",
    tag = "api-keys",
    security(("bearer" = []), ("api_key" = [])),
    params(ListKeysQuery),
    responses(
        (status = 200, description = "Keys", body = ApiKeyList),
        (status = 422, description = "`VALIDATION_FAILED`: bad query", body = Problem, content_type = "application/problem+json"),
        ManagerErrors, StoreErrors,
    )
)]
#[get("/api-keys")]
pub async fn list(
    state: web::Data<AppState>,
    manager: Manager,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query: ListKeysQuery = query(&req)?;
    let org = required_organization(query.organization_id.as_deref())?;
    let include_revoked = match query.include_revoked.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::validation(vec![FieldError::new(
                "include_revoked",
                "invalid_type",
                "include_revoked must be true or false",
            )]));
        }
    };
    let now = state.auth.clock().now();
    let items = state
        .keys
        .list(&manager.0, org, include_revoked)
        .await?
        .iter()
        .map(|k| ApiKeyItem::new(k, now))
        .collect();
    Ok(HttpResponse::Ok().json(ApiKeyList { items }))
}

/// One key.
#[utoipa::path(
    operation_id = "get_api_key",
    tag = "api-keys",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = Uuid, Path, description = "Key id")),
    responses((status = 200, description = "The key", body = ApiKeyItem), ManagerErrors, StoreErrors)
)]
#[get("/api-keys/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    manager: Manager,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: ApiKeyId = path_id(&path)?;
    let key = state.keys.get(&manager.0, id).await?;
    Ok(HttpResponse::Ok().json(ApiKeyItem::new(&key, state.auth.clock().now())))
}

/// Revoke a key: every instance rejects it within a second.
#[utoipa::path(
    operation_id = "revoke_api_key",
    tag = "api-keys",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = Uuid, Path, description = "Key id")),
    responses(
        (status = 200, description = "Revoked", body = ApiKeyItem),
        (status = 409, description = "`ALREADY_REVOKED`", body = Problem, content_type = "application/problem+json"),
        ManagerErrors, StoreErrors, NoBodyErrors,
    )
)]
#[post("/api-keys/{id}/revoke")]
pub async fn revoke(
    state: web::Data<AppState>,
    manager: Manager,
    path: web::Path<String>,
    _body: NoBody,
) -> Result<HttpResponse, ApiError> {
    let id: ApiKeyId = path_id(&path)?;
    let key = state.keys.revoke(&manager.0, id).await?;
    Ok(HttpResponse::Ok().json(ApiKeyItem::new(&key, state.auth.clock().now())))
}

/// Replace a key by a new one with the same name, scopes, organization and expiry; the old
/// key is revoked at once.
#[utoipa::path(
    operation_id = "rotate_api_key",
    tag = "api-keys",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = Uuid, Path, description = "Key id")),
    responses(
        (status = 201, description = "The new key; `key` is shown only here", body = CreatedKey),
        (status = 409, description = "`ALREADY_REVOKED`, or `KEY_EXPIRED`: an expired key is not rotated (create a new one)", body = Problem, content_type = "application/problem+json"),
        ManagerErrors, StoreErrors, NoBodyErrors,
    )
)]
#[post("/api-keys/{id}/rotate")]
pub async fn rotate(
    state: web::Data<AppState>,
    manager: Manager,
    path: web::Path<String>,
    _body: NoBody,
) -> Result<HttpResponse, ApiError> {
    let id: ApiKeyId = path_id(&path)?;
    let issued = state.keys.rotate(&manager.0, id).await?;
    Ok(no_store_json(
        StatusCode::CREATED,
        &CreatedKey::from(issued),
    ))
}

/// `POST /api-keys/verify` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyKey {
    /// The key, exactly as issued (nothing is trimmed).
    #[schema(value_type = String, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub key: CleanString,
    /// Scopes the key must hold (all of them; `admin` holds every scope); at most 100.
    #[schema(value_type = Option<ScopeList>)]
    pub required_scopes: Option<Vec<CleanString>>,
}

/// The verdict on one key.
// Borrowed from the verdict: the key's name and scopes are written straight from the record
// the cache shares, so no verification copies a scope list.
#[derive(Debug, Default, Serialize, ToSchema)]
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
    #[schema(value_type = Option<String>)]
    pub name: Option<&'a str>,
    /// Scopes held.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub scopes: Option<HeldScopes<'a>>,
    /// Expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// `INVALID`, `REVOKED`, `EXPIRED` or `INSUFFICIENT_SCOPE` when not valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "REVOKED")]
    pub error: Option<&'static str>,
}

impl<'a> From<&'a ApiKeyVerdict> for KeyVerification<'a> {
    fn from(verdict: &'a ApiKeyVerdict) -> Self {
        match verdict {
            ApiKeyVerdict::Valid(k) => Self {
                valid: true,
                key_id: Some(k.id.as_uuid()),
                organization_id: Some(k.organization_id.as_uuid()),
                name: Some(k.name.as_str()),
                scopes: Some(HeldScopes(&k.scopes)),
                expires_at: k.expires_at,
                error: None,
            },
            other => Self {
                error: other.error_code(),
                ..Self::default()
            },
        }
    }
}

/// Verify a key, optionally requiring scopes. A bad key is `valid:false` with `error`; a
/// store outage is a 503, never `valid:false`.
#[utoipa::path(
    operation_id = "verify_api_key",
    tag = "api-keys",
    request_body = VerifyKey,
    responses((status = 200, description = "Verdict", body = KeyVerification), BodyErrors, StoreErrors, LimitedErrors)
)]
#[post("/api-keys/verify")]
pub async fn verify(
    state: web::Data<AppState>,
    body: ValidJson<VerifyKey>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut errors = Vec::new();
    let required = parse_scopes(
        "required_scopes",
        body.required_scopes.as_deref().unwrap_or_default(),
        &mut errors,
    );
    let (Some(required), true) = (required, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let verdict = state.keys.verify(body.key.as_str(), &required).await?;
    Ok(HttpResponse::Ok().json(KeyVerification::from(&verdict)))
}

/// Largest batch.
const MAX_BATCH: usize = 100;

/// `POST /api-keys/verify-batch` body: 1..=100 items, each a verify body. An item that is not
/// one makes the whole request a 422 naming every broken field (`items[3].key`); a
/// well-formed item whose key is bad gets its own `valid:false` verdict.
#[derive(Deserialize, ToSchema)]
pub struct VerifyBatch {
    /// The keys to verify.
    #[schema(value_type = Vec<VerifyKey>, min_items = 1, max_items = 100)]
    pub items: Vec<serde_json::Value>,
}

impl std::fmt::Debug for VerifyBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The items hold presented API keys.
        f.debug_struct("VerifyBatch")
            .field("items", &self.items.len())
            .finish()
    }
}

/// One batch item checked against the [`VerifyKey`] rules, every broken field noted (serde
/// would stop at the first). Returns the key and the required scopes when well-formed.
fn batch_item(
    index: usize,
    item: serde_json::Value,
    errors: &mut Vec<FieldError>,
) -> Option<(String, Scopes)> {
    use serde_json::Value;
    // Field paths are built only for errors: a clean batch of 100 items allocates none.
    let Value::Object(mut fields) = item else {
        let at = format!("items[{index}]");
        let text = format!("{at} must be an object");
        errors.push(FieldError::new(at, "invalid_type", text));
        return None;
    };
    let field = || format!("items[{index}].key");
    let key = match fields.remove("key") {
        Some(Value::String(key)) if has_control_chars(&key) => {
            let field = field();
            let text = format!("{field} must not contain control characters");
            errors.push(FieldError::new(field, "control_character", text));
            None
        }
        Some(Value::String(key)) => Some(key),
        None => {
            let field = field();
            let text = format!("{field} is required");
            errors.push(FieldError::new(field, "required", text));
            None
        }
        Some(_) => {
            let field = field();
            let text = format!("{field} has the wrong type");
            errors.push(FieldError::new(field, "invalid_type", text));
            None
        }
    };
    let field = ItemField(index, "required_scopes");
    let required = match fields.get("required_scopes") {
        None | Some(Value::Null) => Some(Scopes::default()),
        Some(Value::Array(entries)) => parse_scope_strs(
            &field,
            entries.iter().map(Value::as_str),
            entries.len(),
            errors,
        ),
        Some(_) => {
            let text = format!("{field} has the wrong type");
            errors.push(FieldError::new(field.to_string(), "invalid_type", text));
            None
        }
    };
    key.zip(required)
}

/// The path of a field of batch item `.0`, written out only when an error names it.
struct ItemField(usize, &'static str);

impl std::fmt::Display for ItemField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "items[{}].{}", self.0, self.1)
    }
}

/// One result per item, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchVerification<'a> {
    /// Results.
    pub results: Vec<KeyVerification<'a>>,
}

/// Verify up to 100 keys at once.
#[utoipa::path(
    operation_id = "verify_api_keys_batch",
    tag = "api-keys",
    request_body = VerifyBatch,
    responses((status = 200, description = "Verdicts in order", body = BatchVerification), BodyErrors, StoreErrors, LimitedErrors)
)]
#[post("/api-keys/verify-batch")]
pub async fn verify_batch(
    state: web::Data<AppState>,
    body: ValidJson<VerifyBatch>,
) -> Result<HttpResponse, ApiError> {
    let items = body.0.items;
    if !(1..=MAX_BATCH).contains(&items.len()) {
        return Err(ApiError::validation(vec![FieldError::new(
            "items",
            "out_of_range",
            "items must hold 1 to 100 entries",
        )]));
    }
    let mut errors = Vec::new();
    let parsed: Vec<_> = items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| batch_item(i, item, &mut errors))
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let checks = parsed.into_iter().map(|(key, required)| {
        let keys = state.keys.clone();
        async move { keys.verify(&key, &required).await }
    });
    // At most 8 items at a time: a batch of 100 unknown keys must not take every pooled
    // connection (cache hits are answered at once either way).
    let verdicts = futures::stream::iter(checks)
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let results = verdicts.iter().map(KeyVerification::from).collect();
    Ok(HttpResponse::Ok().json(BatchVerification { results }))
}

#[cfg(test)]
mod tests {
    use auth_core::model::{ApiKeyPrefix, ApiKeySecret};

    use super::*;

    #[test]
    fn debug_output_never_holds_the_key() {
        let secret = ApiKeySecret::from_random(&ApiKeyPrefix::default(), &[5u8; 64]).unwrap();
        let created = CreatedKey {
            id: Uuid::nil(),
            key: secret.expose().to_owned(),
            prefix: "ak_live_55555555".into(),
            name: "n".into(),
            organization_id: Uuid::nil(),
            scopes: vec![],
            status: "active",
            created_at: Utc::now(),
            expires_at: None,
        };
        assert!(!format!("{created:?}").contains(secret.expose()));
    }
}
