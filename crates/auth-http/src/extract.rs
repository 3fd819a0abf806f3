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
    // The header as clients send it, `Bearer <token>` with a token of visible ASCII, is
    // taken after one pass over the token with no early exit, which the compiler vectorises
    // (the checks below went byte by byte, three times, and cost an eighth of a verification's
    // instructions). Anything else takes the exact checks, so the answers do not change.
    match plain_bearer(value.as_bytes()) {
        Some(token) => Ok(Some(token)),
        None => checked_bearer(value),
    }
}

/// [`bearer_token`] for any header value, each fault named.
fn checked_bearer(value: &header::HeaderValue) -> Result<Option<String>, ApiError> {
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

/// The token of `Bearer <token>` (the scheme in any case) whose token is one or more bytes of
/// visible ASCII (no space, tab or control); `None` for anything else.
fn plain_bearer(value: &[u8]) -> Option<String> {
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") || token.is_empty() {
        return None;
    }
    if token
        .iter()
        .fold(false, |seen, &b| seen | !(0x21..0x7f).contains(&b))
    {
        return None;
    }
    std::str::from_utf8(token).ok().map(str::to_owned)
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

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    /// Whatever the fast path takes, the exact checks answer the same; and the headers clients
    /// send do take it.
    #[test]
    fn the_plain_bearer_path_answers_as_the_exact_checks() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLV8-";
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let value = format!("{scheme} {token}");
            assert_eq!(plain_bearer(value.as_bytes()), Some(token.to_owned()));
        }
        let mut values: Vec<Vec<u8>> = [
            "Bearer",
            "Bearer ",
            "Bearer  x",
            "Bearer x ",
            "Bearer x y",
            "Bearer\tx",
            "Bearerx",
            "Basic x",
            "Bearer x\ty",
            "Bearer \u{7f}",
            "Bearer é",
            " Bearer x",
            "Bearer ~!",
        ]
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
        // Every byte in every position of the scheme, its space and a short token; and in
        // positions spread over a long token (the vectorised loop's chunks and tail).
        for position in 0..10 {
            for byte in 0..=u8::MAX {
                let mut value = b"Bearer abc".to_vec();
                value[position] = byte;
                values.push(value);
            }
        }
        let long = format!("Bearer {}", "a".repeat(300));
        for position in [7, 8, 39, 40, 71, 150, 277, 300, 306] {
            for byte in 0..=u8::MAX {
                let mut value = long.as_bytes().to_vec();
                value[position] = byte;
                values.push(value);
            }
        }
        for value in values {
            let Ok(header) = HeaderValue::from_bytes(&value) else {
                continue;
            };
            let exact = checked_bearer(&header).ok().flatten();
            if let Some(fast) = plain_bearer(&value) {
                assert_eq!(Some(fast), exact, "{value:?}");
            } else {
                // Not taken: only for what is not a single visible token after the scheme.
                let visible = value.len() > 7
                    && value[7..].iter().all(|b| (0x21..0x7f).contains(b))
                    && value[..7].eq_ignore_ascii_case(b"bearer ");
                assert!(!visible, "{value:?} should take the fast path");
            }
        }
    }
}
