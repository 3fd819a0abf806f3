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
    let mut response = HttpResponse::build(status);
    response.insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")));
    json_body(response, body)
}

/// `response` with `body` as its JSON and `Content-Type: application/json` (replacing one set
/// before, which `HttpResponseBuilder::json` would keep; no caller sets one), written into a
/// buffer that holds a token response at once: `json` starts at 128 bytes and grows by
/// doubling, three reallocations and copies for a device or user token response.
pub(crate) fn json_body(
    mut response: actix_web::HttpResponseBuilder,
    body: &impl serde::Serialize,
) -> HttpResponse {
    let mut buffer = Vec::with_capacity(1024);
    match serde_json::to_writer(&mut buffer, body) {
        Ok(()) => response
            .content_type(actix_web::http::header::ContentType::json())
            .body(buffer),
        // What `json` does with a value that cannot be serialized (none of ours).
        Err(err) => HttpResponse::from_error(actix_web::error::JsonPayloadError::Serialize(err)),
    }
}
