//! `ValidJson<T>`: the JSON body extractor behind every endpoint that takes a body, enforcing
//! the contract's conventions in order: size (413, before parsing), media type (415),
//! syntax (400), shape (422 with the offending field). A body must arrive whole within
//! [`BODY_TIMEOUT`] (408 otherwise), so a client trickling it cannot hold a connection.

use std::future::Future as _;
use std::task::Poll;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::BytesMut;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest};
use futures::StreamExt as _;
use futures::future::LocalBoxFuture;
use serde::de::{self, DeserializeOwned};
use serde_json::error::Category;
use utoipa::PartialSchema;
use utoipa::openapi::{RefOr, Schema};

use crate::error::{ApiError, FieldError};

/// Largest accepted body, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body deserialised into `T`.
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

fn is_json(req: &HttpRequest) -> bool {
    matches!(req.mime_type(), Ok(Some(m)) if m.type_() == mime::APPLICATION && m.subtype() == mime::JSON && m.suffix().is_none())
}

fn declared_len(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// Longest time a whole body may take to arrive, from when the handler starts reading it: the
/// same 10 s the server gives a request head. 64 KiB in 10 s is 6.4 KB/s, which any client
/// that is not trickling on purpose exceeds.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads a body of at most [`MAX_BODY_BYTES`] (413 beyond, whether declared or streamed)
/// within [`BODY_TIMEOUT`] (408 beyond).
async fn read_body(declared_len: Option<usize>, payload: Payload) -> Result<BytesMut, ApiError> {
    if declared_len.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
    }
    let mut read = std::pin::pin!(read_chunks(declared_len, payload));
    // A small body has usually arrived with its head: read it without arming a timer (one
    // timer entry registered and removed per request otherwise). actix polls the handler as
    // soon as it has parsed the head, before it hands over the body that came in the same
    // read, and polls it again once it has; so the body is looked for twice. The task wakes
    // itself after the first look, so that the second one comes whatever actix does. Only a
    // body still on its way after both looks gets the deadline, counted from the first.
    let mut first_look = None;
    let early = std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
        Poll::Ready(body) => Poll::Ready(Some(body)),
        Poll::Pending if first_look.is_none() => {
            first_look = Some(tokio::time::Instant::now());
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        Poll::Pending => Poll::Ready(None),
    })
    .await;
    if let Some(body) = early {
        return body;
    }
    let started = first_look.unwrap_or_else(tokio::time::Instant::now);
    tokio::time::timeout_at(started + BODY_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err(ApiError::request_timeout(BODY_TIMEOUT)))
}

async fn read_chunks(
    declared_len: Option<usize>,
    mut payload: Payload,
) -> Result<BytesMut, ApiError> {
    let mut body = BytesMut::with_capacity(declared_len.unwrap_or(0).min(MAX_BODY_BYTES));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::malformed("the request body could not be read"))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl<T: DeserializeOwned + PartialSchema + 'static> FromRequest for ValidJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let declared_len = declared_len(req);
        let json = is_json(req);
        let payload = payload.take();
        Box::pin(async move {
            let body = read_body(declared_len, payload).await?;
            if body.is_empty() {
                return Err(ApiError::malformed("a JSON request body is required"));
            }
            if !json {
                return Err(ApiError::unsupported_media_type());
            }
            parse(&body).map(ValidJson)
        })
    }
}

/// For endpoints that take no body: one sent anyway follows the same rules as any body (413
/// over [`MAX_BODY_BYTES`], 415 unless JSON) and is otherwise ignored.
#[derive(Debug)]
pub struct NoBody;

impl FromRequest for NoBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let declared_len = declared_len(req);
        let json = is_json(req);
        let payload = payload.take();
        Box::pin(async move {
            let body = read_body(declared_len, payload).await?;
            if !body.is_empty() && !json {
                return Err(ApiError::unsupported_media_type());
            }
            Ok(NoBody)
        })
    }
}

/// Parses a body, telling syntax errors (400) from shape errors (422). A shape error names
/// every required field the body lacks, not only the one serde stopped at: the required
/// fields are read from `T`'s schema, the one the OpenAPI document shows.
///
/// # Errors
/// [`ApiError`] 400 or 422.
pub fn parse<T: DeserializeOwned + PartialSchema>(body: &[u8]) -> Result<T, ApiError> {
    // A good body is read once, without tracking where the reader is: whatever this accepts
    // the checks below accept too (`from_slice` also refuses trailing characters), so they
    // only run to explain a body that failed.
    if let Ok(value) = serde_json::from_slice::<T>(body) {
        return Ok(value);
    }
    // Syntax first, shape second: a body that is not JSON at all is a 400 even when its
    // first token already has the wrong type. `IgnoredAny` checks without allocating.
    serde_json::from_slice::<de::IgnoredAny>(body).map_err(|e| {
        ApiError::malformed(format!(
            "malformed JSON at line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|err| {
        let inner = err.inner();
        match inner.classify() {
            Category::Data => {
                let first = field_error(err.path(), inner);
                let mut errors = missing_fields::<T>(body);
                if !errors.iter().any(|e| e.field == first.field) {
                    errors.insert(0, first);
                }
                ApiError::validation(errors)
            }
            Category::Syntax | Category::Eof | Category::Io => ApiError::malformed(format!(
                "malformed JSON at line {} column {}",
                inner.line(),
                inner.column()
            )),
        }
    })?;
    Ok(value)
}

/// A `required` entry for each field that `T`'s schema requires and the body (a JSON object)
/// lacks. Runs only when the body already failed, so a good body pays nothing for it.
fn missing_fields<T: PartialSchema>(body: &[u8]) -> Vec<FieldError> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) else {
        return Vec::new();
    };
    let RefOr::T(Schema::Object(object)) = T::schema() else {
        return Vec::new();
    };
    object
        .required
        .iter()
        .filter(|name| !fields.contains_key(name.as_str()))
        .map(|name| FieldError::new(name.clone(), "required", format!("{name} is required")))
        .collect()
}

/// A 422 entry for a data error, in the service's own words: serde's message names Rust
/// types and echoes input (`invalid type: integer `5`, expected a string`), and the contract
/// keeps serde text out of every error body. Only the kind of error is read from it.
fn field_error(path: &serde_path_to_error::Path, err: &serde_json::Error) -> FieldError {
    let text = err.to_string();
    let message = text.split(" at line ").next().unwrap_or(&text);
    let parent = path.to_string();
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        let field = if parent == "." {
            name.to_owned()
        } else {
            format!("{parent}.{name}")
        };
        return FieldError::new(field.clone(), "required", format!("{field} is required"));
    }
    let field = if parent == "." {
        "body".to_owned()
    } else {
        parent
    };
    let what = if message.starts_with("invalid type") {
        "has the wrong type"
    } else if message.starts_with("invalid length") {
        "has the wrong number of items"
    } else if message.starts_with("unknown variant") {
        "is not one of the allowed values"
    } else if message.starts_with("unknown field") {
        "holds a field that is not known"
    } else if message.starts_with("duplicate field") {
        "holds a field more than once"
    } else {
        "has an invalid value"
    };
    let text = format!("{field} {what}");
    FieldError::new(field, "invalid_type", text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
    #[expect(dead_code, reason = "fields exist to be deserialised")]
    struct Body {
        email: String,
        count: u32,
        nested: Option<Vec<String>>,
    }

    #[test]
    fn sorts_errors_by_kind() {
        assert_eq!(parse::<Body>(b"{").unwrap_err().code(), "MALFORMED_REQUEST");
        assert_eq!(
            parse::<Body>(b"{\"email\":\"a\",\"count\":1} x")
                .unwrap_err()
                .code(),
            "MALFORMED_REQUEST"
        );
        let deep = "[".repeat(10_000);
        assert_eq!(
            parse::<Body>(deep.as_bytes()).unwrap_err().code(),
            "MALFORMED_REQUEST"
        );
        for (body, field, code) in [
            (&b"{\"count\":1}"[..], "email", "required"),
            (b"{\"email\":1,\"count\":1}", "email", "invalid_type"),
            (
                b"{\"email\":\"a\",\"count\":1,\"nested\":[\"ok\",7]}",
                "nested[1]",
                "invalid_type",
            ),
            (b"[]", "body", "invalid_type"),
        ] {
            let err = parse::<Body>(body).unwrap_err();
            assert_eq!(err.code(), "VALIDATION_FAILED");
            let fe = &err.field_errors()[0];
            assert_eq!(
                (fe.field.as_str(), fe.code.as_str()),
                (field, code),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(parse::<Body>(b"{\"email\":\"a\",\"count\":1,\"unknown\":true}").is_ok());
        // Every missing field is named, not only the one serde stopped at; a field of the
        // wrong type beside them too.
        for (body, expected) in [
            (
                &b"{}"[..],
                vec![("email", "required"), ("count", "required")],
            ),
            (
                b"{\"email\":1}",
                vec![("email", "invalid_type"), ("count", "required")],
            ),
        ] {
            let err = parse::<Body>(body).unwrap_err();
            let named: Vec<_> = err
                .field_errors()
                .iter()
                .map(|e| (e.field.as_str(), e.code.as_str()))
                .collect();
            assert_eq!(named, expected, "{}", String::from_utf8_lossy(body));
        }
    }
}
