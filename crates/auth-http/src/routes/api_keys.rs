//! `/api/v1/api-keys*`: manage an organization's keys, and verify keys (single and batch).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, patch, post, web};
use auth_api::{
    ApiKeyItem, ApiKeyList, BatchVerification, CreateKey, CreatedKey, KeyUsage, KeyVerification,
    Problem, UpdateKey, VerifyBatch, VerifyKey,
};
use auth_core::model::Scopes;

use super::no_store_json;
use crate::error::{ApiError, BodyErrors, LimitedErrors, ManagerErrors, NoBodyErrors, StoreErrors};
use crate::extract::Manager;
use crate::json::{NoBody, ValidJson};
use crate::params::{KeyPath, KeyUsageParams, KeysQuery, ListKeysQuery};
use crate::parse::TryIntoDomain as _;
use crate::present;
use crate::state::AppState;

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
    let new = body.0.try_into_domain(())?;
    let issued = state.keys.create(&manager.0, new).await?;
    Ok(no_store_json(
        StatusCode::CREATED,
        &present::created_key(issued),
    ))
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
    query: KeysQuery,
) -> Result<HttpResponse, ApiError> {
    let now = state.auth.clock().now();
    let items = state
        .keys
        .list(
            &manager.0,
            query.organization,
            query.include_revoked,
            query.external_id.as_ref(),
        )
        .await?
        .iter()
        .map(|k| present::api_key_item(k, now))
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
    path: KeyPath,
) -> Result<HttpResponse, ApiError> {
    let key = state.keys.get(&manager.0, path.0).await?;
    Ok(HttpResponse::Ok().json(present::api_key_item(&key, state.auth.clock().now())))
}

/// Change a key in place: any of name, scopes, meta, external id and expiry (a member left
/// out stays as it is; `null` clears meta, external id and expiry). Every instance answers
/// with the change within a second.
#[utoipa::path(
    operation_id = "update_api_key",
    tag = "api-keys",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = Uuid, Path, description = "Key id")),
    request_body = UpdateKey,
    responses(
        (status = 200, description = "The key as changed", body = ApiKeyItem),
        (status = 409, description = "`ALREADY_REVOKED`, `KEY_EXPIRED`", body = Problem, content_type = "application/problem+json"),
        BodyErrors, ManagerErrors, StoreErrors,
    )
)]
#[patch("/api-keys/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    manager: Manager,
    body: ValidJson<UpdateKey>,
    path: KeyPath,
) -> Result<HttpResponse, ApiError> {
    let changes = body.0.try_into_domain(state.auth.clock().now())?;
    let key = state.keys.update(&manager.0, path.0, &changes).await?;
    Ok(HttpResponse::Ok().json(present::api_key_item(&key, state.auth.clock().now())))
}

/// A key's verifications by outcome, per hour or per day (UTC), for the hours from `from`
/// (24 hours before `to` by default) to `to` (now by default), at most 90 days; periods with
/// no verification are left out. Up to a few seconds behind: each instance writes its counts
/// every 5 seconds.
#[utoipa::path(
    operation_id = "api_key_usage",
    tag = "api-keys",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = Uuid, Path, description = "Key id"), KeyUsageParams),
    responses(
        (status = 200, description = "Usage", body = KeyUsage),
        (status = 422, description = "`VALIDATION_FAILED`: bad query", body = Problem, content_type = "application/problem+json"),
        ManagerErrors, StoreErrors,
    )
)]
#[get("/api-keys/{id}/usage")]
pub async fn usage(
    req: HttpRequest,
    state: web::Data<AppState>,
    manager: Manager,
    path: KeyPath,
) -> Result<HttpResponse, ApiError> {
    let query = KeyUsageParams::parse(&req, state.auth.clock().now())?;
    let buckets = state
        .keys
        .usage(&manager.0, path.0, query.from, query.to, query.granularity)
        .await?;
    Ok(HttpResponse::Ok().json(present::key_usage(query.granularity, &buckets)))
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
    _body: NoBody,
    path: KeyPath,
) -> Result<HttpResponse, ApiError> {
    let key = state.keys.revoke(&manager.0, path.0).await?;
    Ok(HttpResponse::Ok().json(present::api_key_item(&key, state.auth.clock().now())))
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
    _body: NoBody,
    path: KeyPath,
) -> Result<HttpResponse, ApiError> {
    let issued = state.keys.rotate(&manager.0, path.0).await?;
    Ok(no_store_json(
        StatusCode::CREATED,
        &present::created_key(issued),
    ))
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
    let check = body.0.try_into_domain(())?;
    let verdict = state
        .keys
        .check(check.key.expose(), &check.required)
        .await?;
    Ok(HttpResponse::Ok().json(present::key_verification(&verdict)))
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
    body: ValidJson<VerifyBatch<serde_json::Value>>,
) -> Result<HttpResponse, ApiError> {
    let parsed = body.0.try_into_domain(())?;
    let checks: Vec<(&str, &Scopes)> = parsed
        .iter()
        .map(|check| (check.key.expose().as_str(), &check.required))
        .collect();
    // One store lookup (one pooled connection) for every key the cache lacks.
    let verdicts = state.keys.check_batch(&checks).await?;
    let results = verdicts.iter().map(present::key_verification).collect();
    Ok(HttpResponse::Ok().json(BatchVerification { results }))
}
