//! Authentication extractors: handlers name who may call them in their signature. Each one
//! that authenticates a caller names it to the request's audit context, so the events the
//! request appends are the caller's.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use auth_core::audit::{self, RequestActor};
use auth_core::model::parse_presented_key;
use auth_core::{Actor, ApiKeyVerdict, Principal};
use futures::future::LocalBoxFuture;

use crate::error::{ApiError, Refusal};
use crate::state::AppState;

/// The token of an `Authorization: Bearer <token>` header; `None` when absent. Anything else
/// in the header is refused, saying what is wrong with it.
pub(crate) fn bearer_token(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    // Visible ASCII and tabs only (`to_str`), so ASCII trimming and byte searches are exact;
    // a `char` pattern here cost more than the token's signature check.
    let value = value
        .to_str()
        .map_err(|_| ApiError::refused(Refusal::NotBearer))?
        .trim_ascii();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::refused(Refusal::NotBearer));
    }
    let token = token.trim_ascii();
    if token.is_empty() {
        return Err(ApiError::refused(Refusal::NoToken));
    }
    if token.bytes().any(|b| b == b' ' || b == b'\t') {
        return Err(ApiError::refused(Refusal::ManyTokens));
    }
    Ok(Some(token.to_owned()))
}

/// Refuses a Bearer token that is one of our API keys (right prefix and checksum): the
/// caller meant `X-API-Key`. Checked without I/O, so a made-up key costs nothing.
fn not_an_api_key(state: &AppState, token: &str) -> Result<(), ApiError> {
    match parse_presented_key(state.keys.prefix(), token) {
        Some(_) => Err(ApiError::refused(Refusal::ApiKeyAsBearer)),
        None => Ok(()),
    }
}

/// A caller holding a valid user access token of a live session.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let token = token?.ok_or_else(|| ApiError::refused(Refusal::Missing))?;
            let state = state.ok_or_else(|| ApiError::internal(&MissingState))?;
            not_an_api_key(&state, &token)?;
            let principal = state.auth.verify(&token).await?;
            audit::set_actor(RequestActor::User(principal.user.id));
            Ok(Self(principal))
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("application state is not registered")]
struct MissingState;

/// The `X-API-Key` header.
pub const X_API_KEY: &str = "x-api-key";

/// A caller that may manage an organization's credentials: a user with a Bearer token, or an
/// active API key sent as `X-API-Key` (never as a Bearer token). Which organization it may
/// manage is decided by the service.
#[derive(Debug, Clone)]
pub struct Manager(pub Actor);

impl FromRequest for Manager {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let api_key = req.headers().get(X_API_KEY).map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::refused(Refusal::KeyInvalid))
        });
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let client = state.as_ref().and_then(|state| {
            state.rate_limits.client_ip(
                req.peer_addr().map(|a| a.ip()),
                crate::rate_limit::forwarded_lines(req.headers()),
            )
        });
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal(&MissingState))?;
            if let Some(token) = token? {
                not_an_api_key(&state, &token)?;
                let principal = state.auth.verify(&token).await?;
                audit::set_actor(RequestActor::User(principal.user.id));
                return Ok(Self(Actor::User {
                    id: principal.user.id,
                    is_admin: principal.user.is_admin,
                }));
            }
            let Some(key) = api_key.transpose()? else {
                return Err(ApiError::refused(Refusal::MissingEither));
            };
            // Bounds the database lookups that made-up keys can cause from one address: the
            // attempt is counted before its lookup and given back when the key is valid.
            state
                .rate_limits
                .key_auth_reserve(client)
                .map_err(|wait| ApiError::rate_limited(wait, "AUTH_RATE_LIMIT_PER_MINUTE"))?;
            match state.keys.authenticate(&key).await? {
                ApiKeyVerdict::Valid(key) => {
                    state.rate_limits.key_auth_succeeded(client);
                    audit::set_actor(RequestActor::ApiKey(key.id));
                    Ok(Self(Actor::ApiKey(key)))
                }
                ApiKeyVerdict::Revoked => Err(ApiError::refused(Refusal::KeyRevoked)),
                ApiKeyVerdict::Expired => Err(ApiError::refused(Refusal::KeyExpired)),
                // The last three cannot come from `authenticate`, which requires no scope and
                // applies no limit.
                ApiKeyVerdict::Invalid
                | ApiKeyVerdict::InsufficientScope(_)
                | ApiKeyVerdict::RateLimited(_)
                | ApiKeyVerdict::UsageExceeded(_) => Err(ApiError::refused(Refusal::KeyInvalid)),
            }
        })
    }
}
