//! HTTP methods: the fixed set that metrics and logs label requests with, and the answer to a
//! known path called with a method it does not serve (405 with `Allow`).
//!
//! Which methods a path serves is read from the OpenAPI document, which `utoipa-actix-web`
//! builds from the very registrations that route requests (a handler cannot be served without
//! appearing in it), plus the documentation pages, which the document does not describe.
//! `tests/http/protocol.rs` walks every path and method of the document against the server.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};

use crate::error::ApiError;

/// The label of a method in metrics and logs: one of the methods of RFC 9110 (and PATCH), or
/// `OTHER`, so that no request can create a new series.
#[must_use]
pub fn label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The methods in the order an `Allow` header lists them.
const ORDER: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// Pages served beside the API that the OpenAPI document does not describe: Swagger UI, ReDoc
/// and the document itself (see `docs::register`), and the pages of mailed links (see
/// `pages::register`). All are `GET`.
const PAGES: [&str; 7] = [
    "/docs",
    "/docs/{_:.*}",
    "/redoc",
    "/redoc/redoc.standalone.js",
    crate::docs::OPENAPI_PATH,
    crate::pages::VERIFY_EMAIL_PATH,
    crate::pages::RESET_PASSWORD_PATH,
];

/// Every served path pattern with the methods it serves.
#[derive(Debug, Default)]
pub struct AllowTable {
    routes: Vec<(ResourceDef, Vec<Method>)>,
    /// The literal paths (no template segment) with their methods, looked up on every request
    /// by `literal_resources`: one hash lookup, no pattern matching.
    literals: std::collections::HashMap<String, Vec<Method>>,
}

impl AllowTable {
    /// The table of the application that serves `api`.
    #[must_use]
    pub fn new(api: &utoipa::openapi::OpenApi) -> Self {
        let mut routes: Vec<(ResourceDef, Vec<Method>)> = api
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = ORDER
                    .iter()
                    .filter(|m| operation(item, m))
                    .cloned()
                    .collect();
                (ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        routes.extend(
            PAGES
                .iter()
                .map(|page| (ResourceDef::new(*page), vec![Method::GET])),
        );
        let literals = routes
            .iter()
            .filter_map(|(def, methods)| {
                let pattern = def.pattern()?;
                (!pattern.contains('{')).then(|| (pattern.to_owned(), methods.clone()))
            })
            .collect();
        Self { routes, literals }
    }

    /// The methods served at `path`. A literal path (`/api-keys/verify`) is a resource of its
    /// own, as the OpenAPI document describes it, even where a template (`/api-keys/{id}`)
    /// also matches it: its own methods are the answer. Otherwise those of every template that
    /// matches. Empty for an unknown path.
    #[must_use]
    pub fn allowed(&self, path: &str) -> Vec<Method> {
        if let Some(methods) = self.literal(path) {
            return methods.to_vec();
        }
        ORDER
            .iter()
            .filter(|method| {
                self.routes
                    .iter()
                    .any(|(def, methods)| methods.contains(method) && def.is_match(path))
            })
            .cloned()
            .collect()
    }
}

impl AllowTable {
    /// The methods of `path` when it is a literal path (one with no template segment).
    fn literal(&self, path: &str) -> Option<&[Method]> {
        self.literals.get(path).map(Vec::as_slice)
    }
}

fn operation(item: &utoipa::openapi::PathItem, method: &Method) -> bool {
    match *method {
        Method::GET => item.get.is_some(),
        Method::HEAD => item.head.is_some(),
        Method::POST => item.post.is_some(),
        Method::PUT => item.put.is_some(),
        Method::PATCH => item.patch.is_some(),
        Method::DELETE => item.delete.is_some(),
        Method::OPTIONS => item.options.is_some(),
        _ => false,
    }
}

/// 405 `METHOD_NOT_ALLOWED` for `method` with `Allow` listing `allowed`.
fn method_not_allowed(method: &Method, allowed: &[Method]) -> HttpResponse {
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut res = ApiError::method_not_allowed(label(method), &allow).error_response();
    if let Ok(value) = header::HeaderValue::from_str(&allow) {
        res.headers_mut().insert(header::ALLOW, value);
    }
    res
}

/// What the router answers when no route took the request: 405 with `Allow` for a path that
/// is served with other methods, 404 (saying where the API lives) otherwise.
pub async fn fallback(req: HttpRequest, table: web::Data<AllowTable>) -> HttpResponse {
    // The path the router matched against (percent-decoded), as the routes saw it.
    let allowed = table.allowed(req.match_info().as_str());
    if allowed.is_empty() {
        return ApiError::no_such_path().error_response();
    }
    method_not_allowed(req.method(), &allowed)
}

/// A literal path is a resource of its own: a method it does not serve answers 405 there,
/// before routing, even where a template would take the request to another resource
/// (`GET /api-keys/verify` would otherwise reach `GET /api-keys/{id}` and answer 404 for a
/// malformed id). CORS preflights are answered further out and never get here.
///
/// # Errors
/// Passes through errors of the inner service.
pub async fn literal_resources(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refused = req.app_data::<web::Data<AllowTable>>().and_then(|table| {
        table
            // The decoded path, as the router and the rate limits see it: `/verif%79` is
            // `/verify`.
            .literal(req.match_info().as_str())
            .filter(|methods| !methods.contains(req.method()))
            .map(|methods| method_not_allowed(req.method(), methods))
    });
    match refused {
        Some(res) => Ok(req.into_response(res).map_into_right_body()),
        None => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_a_fixed_set() {
        assert_eq!(label(&Method::GET), "GET");
        assert_eq!(label(&Method::PATCH), "PATCH");
        for made_up in ["FOO", "BAR123", "get", "PROPFIND"] {
            assert_eq!(
                label(&Method::from_bytes(made_up.as_bytes()).unwrap()),
                "OTHER"
            );
        }
    }

    #[test]
    fn allowed_methods_are_the_literal_path_or_the_matching_templates() {
        let table = AllowTable::new(&crate::openapi());
        let names = |path: &str| {
            table
                .allowed(path)
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(names("/health/live"), "GET");
        assert_eq!(names("/api/v1/auth/login"), "POST");
        assert_eq!(names("/api/v1/api-keys"), "GET,POST");
        assert_eq!(
            names("/api/v1/api-keys/0190a0a0-0000-7000-8000-000000000000"),
            "GET,PATCH"
        );
        assert_eq!(names("/api/v1/api-keys/verify"), "POST");
        assert_eq!(names("/api/v1/devices/authenticate"), "POST");
        assert_eq!(names("/api/v1/devices/frame-01"), "GET");
        assert_eq!(names("/docs/index.html"), "GET");
        assert_eq!(names("/api-docs/openapi.json"), "GET");
        assert_eq!(names("/api/v1/nothing"), "");
        assert_eq!(names("/health/live/"), "");
    }
}
