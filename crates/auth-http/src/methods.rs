//! HTTP methods: the fixed set that metrics and logs label requests with, and the answer to a
//! known path called with a method it does not serve (405 with `Allow`).
//!
//! Which methods a path serves is read from the OpenAPI document, which `utoipa-actix-web`
//! builds from the very registrations that route requests (a handler cannot be served without
//! appearing in it), plus the documentation pages, which the document does not describe.
//! `tests/http/protocol.rs` walks every path and method of the document against the server.

use actix_web::dev::ResourceDef;
use actix_web::http::{Method, header};
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
/// and the document itself (see `docs::register`). All are `GET`.
const PAGES: [&str; 5] = [
    "/docs",
    "/docs/{_:.*}",
    "/redoc",
    "/redoc/redoc.standalone.js",
    crate::docs::OPENAPI_PATH,
];

/// Every served path pattern with the methods it serves.
#[derive(Debug, Default)]
pub struct AllowTable {
    routes: Vec<(ResourceDef, Vec<Method>)>,
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
        Self { routes }
    }

    /// The methods served at `path`: those of every pattern that matches it (`/api-keys/verify`
    /// is also an `/api-keys/{id}`). Empty for an unknown path.
    #[must_use]
    pub fn allowed(&self, path: &str) -> Vec<Method> {
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

/// What the router answers when no route took the request: 405 with `Allow` for a path that
/// is served with other methods, 404 (saying where the API lives) otherwise.
pub async fn fallback(req: HttpRequest, table: web::Data<AllowTable>) -> HttpResponse {
    // The path the router matched against (percent-decoded), as the routes saw it.
    let allowed = table.allowed(req.match_info().as_str());
    if allowed.is_empty() {
        return ApiError::not_found().error_response();
    }
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut res = ApiError::method_not_allowed().error_response();
    if let Ok(value) = header::HeaderValue::from_str(&allow) {
        res.headers_mut().insert(header::ALLOW, value);
    }
    res
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
    fn allowed_methods_are_the_union_of_matching_patterns() {
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
            "GET"
        );
        assert_eq!(names("/api/v1/api-keys/verify"), "GET,POST");
        assert_eq!(names("/docs/index.html"), "GET");
        assert_eq!(names("/api-docs/openapi.json"), "GET");
        assert_eq!(names("/api/v1/nothing"), "");
        assert_eq!(names("/health/live/"), "");
    }
}
