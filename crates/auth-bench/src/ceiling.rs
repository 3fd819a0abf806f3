//! `auth-bench-ceiling`: the ceiling of the load harness. The bare handler of
//! [`auth_bench::bare`] served over HTTP: what the service serves on top of it is what
//! `scripts/bench.sh` measures against it, in the same run.
//!
//! Settings: `JWT_SECRET_KEY` (required), `PORT` (8001), `HOST` (127.0.0.1),
//! `AUTH_JWT_ISSUER` and `AUTH_JWT_AUDIENCE` (`auth-service`).

use actix_web::{HttpServer, web};
use auth_bench::bare::{self, Verifier};

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
    let verifier = web::Data::new(Verifier::hs256(
        secret.as_bytes(),
        &setting("AUTH_JWT_ISSUER", "auth-service"),
        &setting("AUTH_JWT_AUDIENCE", "auth-service"),
    ));
    HttpServer::new(move || bare::app(verifier.clone()))
        .bind((host.as_str(), port))?
        .run()
        .await
}
