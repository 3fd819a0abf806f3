//! The REST API of the authentication service, on actix-web.
//!
//! [`app`] builds the whole application (routes, middleware, OpenAPI document, Swagger UI
//! and ReDoc) from an [`AppState`]; `auth-server` serves it, tests start it on port 0.
//! Routes are registered through `utoipa-actix-web`, so a handler cannot be served without
//! appearing in the OpenAPI document.

pub mod compress;
pub mod docs;
pub mod error;
pub mod extract;
pub mod json;
pub mod methods;
pub mod metrics;
pub mod pages;
pub mod params;
pub mod parse;
pub mod present;
pub mod rate_limit;
pub mod request_id;
pub mod revocations;
pub mod routes;
pub mod state;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Condition, DefaultHeaders, from_fn};
use actix_web::{App, web};
use utoipa::OpenApi as _;
use utoipa_actix_web::{AppExt as _, scope};

pub use error::{ApiError, Problem};
pub use state::{AppState, SharedProbe, StoreHealth, StoreProbe};

/// CORS for the configured origins: credentials in headers (no cookies), the API's methods
/// and headers, and the response headers clients need to read.
fn cors(origins: &[String]) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PATCH", "DELETE"])
        .allowed_headers([
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::CONTENT_TYPE,
            actix_web::http::header::HeaderName::from_static("x-api-key"),
            actix_web::http::header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            "x-request-id",
            "retry-after",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
        ])
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// The headers every answer of the API carries (actix sends no `Server` header).
fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
}

/// Registers every API route on a utoipa-aware app, so routes and document agree.
fn api_routes<T>(app: utoipa_actix_web::UtoipaApp<T>) -> utoipa_actix_web::UtoipaApp<T>
where
    T: ServiceFactory<ServiceRequest, Config = (), Error = actix_web::Error, InitError = ()>,
{
    use routes::service;
    app.service(service::root)
        .service(service::health)
        .service(service::live)
        .service(service::ready)
        .service(service::jwks)
        .service(metrics::scrape)
        .service(v1(scope::scope("/api/v1")))
}

/// Every route under `/api/v1`, for [`app`] and [`configure`] alike.
fn v1<T>(scope: scope::Scope<T>) -> scope::Scope<T>
where
    T: ServiceFactory<ServiceRequest, Config = (), Error = actix_web::Error, InitError = ()>,
{
    use routes::{admin, api_keys, auth, devices, events, lifecycle, mfa, organizations, users};
    // actix tries the resources of a scope in the order they are registered, and every
    // resource with a template segment (`/admin/users/{id}`) costs a regular-expression match
    // on the way past it: the hot paths, all literal, come first. Moving a literal forward only
    // gives it precedence over templates that also match it, and the two that do
    // (`/api-keys/{id}`, `/devices/{device_id}`) came after their literals already; a literal
    // path's other methods are refused before routing (`methods::literal_resources`).
    scope
        .service(auth::verify)
        .service(auth::verify_token)
        .service(api_keys::verify)
        .service(api_keys::verify_batch)
        .service(devices::authenticate)
        .service(auth::refresh)
        .service(auth::login)
        .service(auth::register)
        .service(auth::login_mfa)
        .service(auth::logout)
        .service(auth::logout_all)
        .service(lifecycle::verify_email)
        .service(lifecycle::resend_verification)
        .service(lifecycle::request_password_reset)
        .service(lifecycle::confirm_password_reset)
        .service(users::me)
        .service(events::my_events)
        .service(users::update_me)
        .service(users::delete_me)
        .service(users::change_password)
        .service(lifecycle::change_email)
        .service(admin::list)
        .service(admin::create)
        .service(admin::get)
        .service(admin::update)
        .service(admin::unlock)
        .service(admin::revoke_sessions)
        .service(admin::send_password_reset)
        .service(admin::delete)
        .service(mfa::enrol_totp)
        .service(mfa::confirm_totp)
        .service(mfa::disable_totp)
        .service(organizations::create)
        .service(organizations::list)
        .service(organizations::get)
        .service(organizations::add_member)
        .service(organizations::members)
        .service(organizations::remove_member)
        .service(events::organization_events)
        .service(events::revocation_stream)
        // Fixed paths before `/api-keys/{id}` patterns.
        .service(api_keys::create)
        .service(api_keys::list)
        .service(api_keys::get)
        .service(api_keys::usage)
        .service(api_keys::update)
        .service(api_keys::revoke)
        .service(api_keys::rotate)
        .service(devices::register)
        .service(devices::list)
        .service(devices::get)
        .service(devices::rotate_secret)
        .service(devices::revoke)
}

/// The API inside an actix-web app of one's own:
///
/// ```no_run
/// # fn host(state: auth_http::AppState) {
/// use actix_web::{App, web};
/// let app = App::new()
///     .configure(auth_http::configure(state))
///     .route("/", web::get().to(|| async { "the host's own page" }));
/// # }
/// ```
///
/// Mounts every `/api/v1` route behind the middleware [`app`] puts in front of them (request
/// ids, metrics, the per-IP rate limits, compression, the security headers), and the JWKS at
/// `/.well-known/jwks.json`; under `/api/v1`, unknown paths and methods get the API's own 404
/// and 405 problem documents. The host keeps the rest: its own routes, CORS, its other 404s,
/// health endpoints, and where to serve the document ([`openapi`]). The paths are the API's own, so
/// clients (and `auth-client`) work unchanged; mount at the root of the host app.
pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        metrics::handle();
        // Data of the app, not of the scope: the middleware reads it before the scope's own
        // data would be attached.
        cfg.app_data(web::Data::new(state));
        cfg.app_data(web::Data::new(methods::AllowTable::new(&openapi())));
        cfg.service(routes::service::jwks);
        cfg.configure(pages::register);
        cfg.service(
            v1(scope::scope("/api/v1"))
                // Under `/api/v1` the API answers as `app` does: 404 and 405 (with `Allow`)
                // as problem documents, a literal path's other methods refused before routing.
                .default_service(web::to(methods::fallback))
                .wrap(from_fn(methods::literal_resources))
                .wrap(from_fn(compress::middleware))
                .wrap(from_fn(rate_limit::middleware))
                .wrap(security_headers())
                .wrap(from_fn(metrics::middleware))
                .wrap(from_fn(request_id::middleware)),
        );
    }
}

/// The OpenAPI document of the API, exactly as [`app`] serves it.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = api_routes(
        App::new()
            .into_utoipa_app()
            .openapi(docs::ApiDoc::openapi()),
    )
    .split_for_parts();
    api
}

/// The whole application.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    metrics::handle();
    let cors = cors(&state.cors_origins);
    let cors_enabled = !state.cors_origins.is_empty();
    let (app, api) = api_routes(
        App::new()
            .into_utoipa_app()
            .openapi(docs::ApiDoc::openapi())
            .app_data(web::Data::new(state)),
    )
    .split_for_parts();
    let allow = web::Data::new(methods::AllowTable::new(&api));
    docs::register(app, api)
        .configure(pages::register)
        .app_data(allow)
        .default_service(web::to(methods::fallback))
        .wrap(from_fn(methods::literal_resources))
        .wrap(from_fn(compress::middleware))
        .wrap(from_fn(rate_limit::middleware))
        .wrap(Condition::new(cors_enabled, cors))
        .wrap(security_headers())
        .wrap(from_fn(metrics::middleware))
        .wrap(from_fn(request_id::middleware))
}
