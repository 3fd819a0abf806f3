//! Handlers, one module per area. Each is a few lines: extract, convert, call, map.

pub mod admin;
pub mod api_keys;
pub mod auth;
pub mod devices;
pub mod events;
pub mod lifecycle;
pub mod mfa;
pub mod organizations;
pub mod service;
pub mod users;

use actix_web::HttpResponse;
use actix_web::http::header::{CACHE_CONTROL, HeaderValue};

/// A 200 JSON response that must never be cached (it carries tokens or secrets).
pub(crate) fn no_store_json(
    status: actix_web::http::StatusCode,
    body: &impl serde::Serialize,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(body)
}
