//! Authentication extractors: handlers name who may call them in their signature.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use auth_core::Principal;
use futures::future::LocalBoxFuture;

use crate::error::ApiError;
use crate::state::AppState;

/// The token of an `Authorization: Bearer <token>` header; `None` when absent. A scheme
/// other than Bearer counts as a bad credential.
pub(crate) fn bearer_token(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthenticated(true))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthenticated(true))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthenticated(true));
    }
    Ok(Some(token.to_owned()))
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
            let token = token?.ok_or_else(|| ApiError::unauthenticated(false))?;
            let state = state.ok_or_else(|| ApiError::internal(&MissingState))?;
            let principal = state.auth.verify(&token).await?;
            Ok(Self(principal))
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("application state is not registered")]
struct MissingState;
