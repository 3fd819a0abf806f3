//! The OpenAPI document's frame, and the documentation pages: Swagger UI at `/docs` and
//! ReDoc at `/redoc`, both served from the binary so they work with no internet access.

use actix_web::dev::{ServiceFactory, ServiceRequest};
use actix_web::http::header;
use actix_web::{App, HttpResponse, web};
use utoipa::Modify;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_redoc::{Redoc, Servable as _};
use utoipa_swagger_ui::SwaggerUi;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api-docs/openapi.json";

/// ReDoc 2.5.4 (MIT; licences in `assets/redoc/LICENSES.txt`).
const REDOC_JS: &[u8] = include_bytes!("../assets/redoc/redoc.standalone.js");

const REDOC_HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>auth-service API</title>
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<div id="redoc-container"></div>
<script src="/redoc/redoc.standalone.js"></script>
<script>
Redoc.init($spec, $config, document.getElementById("redoc-container"));
</script>
</body>
</html>
"#;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("User access token from /api/v1/auth/login"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "X-API-Key",
                    "An API key with the `admin` scope, for its own organization",
                ),
            )),
        );
    }
}

/// The document's frame; paths and schemas are collected from the registered handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "auth-service",
        description = "Users and sessions, organization API keys and device credentials.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "auth", description = "Registration, login, tokens and sessions"),
        (name = "users", description = "The calling user"),
        (name = "admin", description = "Service administration: accounts (service administrators only)"),
        (name = "organizations", description = "Organizations and their members"),
        (name = "api-keys", description = "Organization API keys: manage and verify"),
        (name = "devices", description = "Device credentials: register, authenticate, rotate, revoke"),
        (name = "events", description = "The audit trail and the revocation stream"),
        (name = "service", description = "Service information and health"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

async fn redoc_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(REDOC_JS)
}

async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// Serves the document and both documentation pages.
pub fn register<T>(app: App<T>, api: OpenApi) -> App<T>
where
    T: ServiceFactory<ServiceRequest, Config = (), Error = actix_web::Error, InitError = ()>,
{
    // No validator: Swagger UI would otherwise send the document to validator.swagger.io,
    // from a page that must work with no internet access.
    app.service(
        SwaggerUi::new("/docs/{_:.*}")
            .url(OPENAPI_PATH, api.clone())
            .config(utoipa_swagger_ui::Config::default().validator_url("none")),
    )
    .service(Redoc::with_url("/redoc", api).custom_html(REDOC_HTML))
    .route("/docs", web::get().to(docs_redirect))
    .route("/redoc/redoc.standalone.js", web::get().to(redoc_js))
}
