//! A small actix-web service whose routes are protected by the extractors.
//!
//! ```bash
//! cargo run -p auth-client --features actix --example actix_service
//! ```
//!
//! `AUTH_URL` (default `http://localhost:8000`) is the auth service; `BIND` (default
//! `127.0.0.1:8080`) where this one listens. Routes:
//!
//! - `GET /me`: a user access token, verified the client's configured way (locally when it has
//!   keys);
//! - `GET /me/strict`: a user access token, verified by the auth service on every request (a
//!   logout counts at once);
//! - `POST /telemetry`: a device token;
//! - `GET /invoices`: an API key (`X-API-Key`) holding `invoices:read`;
//! - `POST /invoices`: an API key holding `invoices:read` and `invoices:write`;
//! - `GET /client-metrics`: the client's counters (unprotected, for the demonstration).

use actix_web::{App, HttpResponse, HttpServer, get, post, web};
use auth_client::actix::{ApiKeyPrincipal, AuthenticatedDevice, AuthenticatedUser, Remote};
use auth_client::{AuthClient, required_scopes};
use serde_json::json;

required_scopes!(InvoicesRead = ["invoices:read"]);
required_scopes!(InvoicesWrite = ["invoices:read", "invoices:write"]);

#[get("/me")]
async fn me(user: AuthenticatedUser) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "user_id": user.user_id,
        "session_id": user.session_id,
        "verified_by": format!("{:?}", user.verified_by),
    }))
}

#[get("/me/strict")]
async fn me_strict(user: AuthenticatedUser<Remote>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"user_id": user.user_id, "email": user.email}))
}

#[post("/telemetry")]
async fn telemetry(device: AuthenticatedDevice) -> HttpResponse {
    HttpResponse::Accepted().json(json!({
        "device_id": device.device_id,
        "organization_id": device.organization_id,
    }))
}

#[get("/invoices")]
async fn list_invoices(key: ApiKeyPrincipal<InvoicesRead>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"organization_id": key.organization_id, "invoices": []}))
}

#[post("/invoices")]
async fn create_invoice(key: ApiKeyPrincipal<InvoicesWrite>) -> HttpResponse {
    HttpResponse::Created().json(json!({"created_by_key": key.key_id}))
}

#[get("/client-metrics")]
async fn client_metrics(client: web::Data<AuthClient>) -> HttpResponse {
    let m = client.metrics();
    let operations: Vec<_> = m
        .operations
        .iter()
        .map(|o| {
            json!({
                "operation": o.operation.name(),
                "calls": o.calls,
                "ok": o.ok,
                "api_errors": o.api_errors,
                "failures": o.failures,
                "retries": o.retries,
                "mean_ms": o.latency.mean().as_secs_f64() * 1e3,
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "operations": operations,
        "error_rate": m.error_rate(),
        "breaker": format!("{:?}", m.breaker.state),
        "api_key_cache": m.api_key_cache.map(|c| json!({
            "hits": c.hits, "misses": c.misses, "hit_rate": c.hit_rate(), "entries": c.entries,
        })),
        "tokens": {
            "local_accepted": m.tokens.local_accepted,
            "local_rejected": m.tokens.local_rejected,
            "remote": m.tokens.remote,
            "jwks_fetches": m.tokens.jwks_fetches,
        },
    }))
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("AUTH_URL").unwrap_or_else(|_| "http://localhost:8000".into());
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let client = AuthClient::new(url)?;
    println!("listening on http://{bind}");
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(client.clone()))
            .service(me)
            .service(me_strict)
            .service(telemetry)
            .service(list_invoices)
            .service(create_invoice)
            .service(client_metrics)
    })
    .bind(bind)?
    .run()
    .await?;
    Ok(())
}
