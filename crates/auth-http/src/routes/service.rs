//! Service endpoints: `/`, `/health`, `/health/live`, `/health/ready`.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// The service's version, from the build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `GET /` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceInfo {
    /// Service name.
    #[schema(example = "auth-service")]
    pub name: &'static str,
    /// Version.
    pub version: &'static str,
    /// Where the API documentation is.
    #[schema(example = "/docs")]
    pub docs: &'static str,
}

/// What the service is and where its documentation lives.
#[utoipa::path(
    operation_id = "service_index",tag = "service", responses((status = 200, description = "Service info", body = ServiceInfo)))]
#[get("/")]
pub async fn root() -> HttpResponse {
    HttpResponse::Ok().json(ServiceInfo {
        name: "auth-service",
        version: VERSION,
        docs: "/docs",
    })
}

/// One component's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentHealth {
    /// `healthy` or `unhealthy`.
    pub status: &'static str,
    /// For the database: `postgres` or `memory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// Probe time in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// For the cache: entries held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
}

/// `GET /health` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: &'static str,
    /// Version.
    pub version: &'static str,
    /// Per component.
    pub components: BTreeMap<&'static str, ComponentHealth>,
}

/// Health of the service and its components: `unhealthy` (503) when the database is
/// unreachable, `degraded` while the invalidation listener is disconnected.
#[utoipa::path(
    operation_id = "health",
    tag = "service",
    responses(
        (status = 200, description = "Healthy or degraded", body = Health),
        (status = 503, description = "Unhealthy", body = Health),
    )
)]
#[get("/health")]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.probe().await;
    let db_ok = store.reachable && store.schema_current;
    let mut components = BTreeMap::new();
    components.insert(
        "database",
        ComponentHealth {
            status: if db_ok { "healthy" } else { "unhealthy" },
            kind: Some(store.kind),
            latency_ms: Some((store.latency.as_secs_f64() * 1e4).round() / 10.0),
            entries: None,
        },
    );
    components.insert(
        "cache",
        ComponentHealth {
            status: "healthy",
            kind: None,
            latency_ms: None,
            entries: Some(state.caches.entry_count().await),
        },
    );
    let bus_ok = state.bus.is_connected();
    components.insert(
        "invalidation",
        ComponentHealth {
            status: if bus_ok { "healthy" } else { "unhealthy" },
            kind: None,
            latency_ms: None,
            entries: None,
        },
    );
    let status = match (db_ok, bus_ok) {
        (false, _) => "unhealthy",
        (true, false) => "degraded",
        (true, true) => "healthy",
    };
    let body = Health {
        status,
        version: VERSION,
        components,
    };
    if db_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((actix_web::http::header::RETRY_AFTER, "5"))
            .json(body)
    }
}

/// The public keys that verify this service's tokens (current and previous), so other
/// services verify access tokens with no call to this one. `{"keys":[]}` under HS256.
#[utoipa::path(
    operation_id = "jwks",
    tag = "service",
    responses((status = 200, description = "JWK set (RFC 7517)", body = Object))
)]
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::CACHE_CONTROL,
            "public, max-age=300",
        ))
        .json(state.jwks.as_ref())
}

/// `GET /health/live` and `/health/ready` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Probe {
    /// `ok` or `unavailable`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: 200 while the process serves.
#[utoipa::path(
    operation_id = "liveness",tag = "service", responses((status = 200, description = "Alive", body = Probe)))]
#[get("/health/live")]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Probe { status: "ok" })
}

/// Readiness: 200 when the store answers, its schema is current and the invalidation
/// listener is connected; 503 otherwise.
#[utoipa::path(
    operation_id = "readiness",
    tag = "service",
    responses(
        (status = 200, description = "Ready", body = Probe),
        (status = 503, description = "Not ready", body = Probe),
    )
)]
#[get("/health/ready")]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.probe().await;
    if store.reachable && store.schema_current && state.bus.is_connected() {
        HttpResponse::Ok().json(Probe { status: "ok" })
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((actix_web::http::header::RETRY_AFTER, "5"))
            .json(Probe {
                status: "unavailable",
            })
    }
}
