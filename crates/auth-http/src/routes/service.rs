//! Service endpoints: `/`, `/health`, `/health/live`, `/health/ready`.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, web};
use auth_api::{ComponentHealth, Health, HealthStatus, Probe, ProbeStatus, ServiceInfo};

use crate::state::AppState;

/// The service's version, from the build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn healthy(ok: bool) -> HealthStatus {
    if ok {
        HealthStatus::Healthy
    } else {
        HealthStatus::Unhealthy
    }
}

/// What the service is and where its documentation lives.
#[utoipa::path(
    operation_id = "service_index",tag = "service", responses((status = 200, description = "Service info", body = ServiceInfo)))]
#[get("/")]
pub async fn root() -> HttpResponse {
    HttpResponse::Ok().json(ServiceInfo {
        name: "auth-service".to_owned(),
        version: VERSION.to_owned(),
        docs: "/docs".to_owned(),
    })
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
        "database".to_owned(),
        ComponentHealth {
            status: healthy(db_ok),
            kind: Some(store.kind.to_owned()),
            latency_ms: Some((store.latency.as_secs_f64() * 1e4).round() / 10.0),
            entries: None,
        },
    );
    components.insert(
        "cache".to_owned(),
        ComponentHealth {
            status: HealthStatus::Healthy,
            kind: None,
            latency_ms: None,
            entries: Some(state.caches.entry_count().await),
        },
    );
    let bus_ok = state.bus.is_connected();
    components.insert(
        "invalidation".to_owned(),
        ComponentHealth {
            status: healthy(bus_ok),
            kind: None,
            latency_ms: None,
            entries: None,
        },
    );
    let status = match (db_ok, bus_ok) {
        (false, _) => HealthStatus::Unhealthy,
        (true, false) => HealthStatus::Degraded,
        (true, true) => HealthStatus::Healthy,
    };
    let body = Health {
        status,
        version: VERSION.to_owned(),
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

/// Liveness: 200 while the process serves.
#[utoipa::path(
    operation_id = "liveness",tag = "service", responses((status = 200, description = "Alive", body = Probe)))]
#[get("/health/live")]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Probe {
        status: ProbeStatus::Ok,
    })
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
        HttpResponse::Ok().json(Probe {
            status: ProbeStatus::Ok,
        })
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((actix_web::http::header::RETRY_AFTER, "5"))
            .json(Probe {
                status: ProbeStatus::Unavailable,
            })
    }
}
