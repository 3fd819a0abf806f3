//! `auth-bench-ceiling`: the ceiling of the load harness. A bare actix-web server, built from
//! this workspace with the service's versions of actix-web and jsonwebtoken, whose one handler
//! (`GET /api/v1/auth/verify`) verifies an HS256 access token the way the service does (the
//! same key, issuer, audience and required claims, expiry checked) and answers a small JSON
//! body: no middleware, no session lookup, no metrics. What the service serves on top of this
//! is what `scripts/bench.sh` measures against it, in the same run.
//!
//! Settings: `JWT_SECRET_KEY` (required), `PORT` (8001), `HOST` (127.0.0.1),
//! `AUTH_JWT_ISSUER` and `AUTH_JWT_AUDIENCE` (`auth-service`).

use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

#[derive(Deserialize)]
struct Claims {
    sub: String,
    sid: Option<String>,
    exp: i64,
}

struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

async fn verify(req: HttpRequest, verifier: web::Data<Verifier>) -> HttpResponse {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return HttpResponse::Unauthorized().finish();
    };
    match decode::<Claims>(token, &verifier.key, &verifier.validation) {
        Ok(data) => HttpResponse::Ok().json(serde_json::json!({
            "valid": true,
            "user_id": data.claims.sub,
            "session_id": data.claims.sid,
            "exp": data.claims.exp,
        })),
        Err(_) => HttpResponse::Unauthorized().finish(),
    }
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let secret = std::env::var("JWT_SECRET_KEY").map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "JWT_SECRET_KEY is required",
        )
    })?;
    let port: u16 = setting("PORT", "8001").parse().map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "PORT must be a port")
    })?;
    let host = setting("HOST", "127.0.0.1");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[setting("AUTH_JWT_ISSUER", "auth-service")]);
    validation.set_audience(&[setting("AUTH_JWT_AUDIENCE", "auth-service")]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    let verifier = web::Data::new(Verifier {
        key: DecodingKey::from_secret(secret.as_bytes()),
        validation,
    });
    HttpServer::new(move || {
        App::new()
            .app_data(verifier.clone())
            .route("/api/v1/auth/verify", web::get().to(verify))
    })
    .bind((host.as_str(), port))?
    .run()
    .await
}
