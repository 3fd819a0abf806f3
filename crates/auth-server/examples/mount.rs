//! The authentication API inside an actix-web application of one's own: the host keeps its
//! routes, and `auth_http::configure` adds every `/api/v1` route with the API's own middleware
//! (request ids, metrics, per-IP rate limits, compression, security headers) and the JWKS.
//!
//! ```text
//! JWT_SECRET_KEY=$(openssl rand -hex 32) PORT=8080 \
//!   cargo run -p auth-server --example mount
//! curl localhost:8080/hello
//! curl -X POST localhost:8080/api/v1/auth/register -H 'Content-Type: application/json' \
//!   -d '{"email":"ada@example.com","password":"correct horse battery"}'
//! ```
//!
//! Settings are the service's own (`DATABASE_URL` for Postgres, in memory without it; every
//! name in `docs/configuration.md`), read by the same code as `auth-server serve`.

use actix_web::{App, HttpServer, web};
use auth_server::cli::Cli;
use auth_server::wiring::{self, Store};

/// The host application's own page.
async fn hello() -> &'static str {
    "the host application's own route"
}

/// The API's state from the service's settings: the store, the services over it, the caches
/// and the event-log follower, as `auth-server serve` builds them.
async fn state(cli: &Cli) -> Result<auth_http::AppState, Box<dyn std::error::Error>> {
    let store = Store::open(&cli.config)?;
    wiring::migrate_at_start(&cli.config).await?;
    Ok(wiring::app_state(&cli.config, &store)?)
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse_process();
    auth_server::telemetry::init(&cli.config);
    let state = state(&cli).await?;
    let address = (cli.config.http.host.clone(), cli.config.http.port);
    HttpServer::new(move || {
        App::new()
            .configure(auth_http::configure(state.clone()))
            .route("/hello", web::get().to(hello))
    })
    .bind(address)?
    .run()
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::{App, test, web};
    use auth_server::cli::Cli;
    use clap::Parser as _;
    use serde_json::json;

    /// `cargo test -p auth-server` runs this: the host's route and the mounted API answer side
    /// by side, and the API's middleware is in front of it.
    #[actix_web::test]
    async fn the_api_mounts_beside_the_host_routes() {
        let mut cli = Cli::try_parse_from(["auth-server"]).unwrap();
        cli.config.db.url = None;
        cli.config.passwords.bcrypt_rounds = 4;
        cli.config.jwt.secret_key = Some("an example key of at least thirty-two bytes".into());
        let state = super::state(&cli).await.unwrap();
        let app = test::init_service(
            App::new()
                .configure(auth_http::configure(state))
                .route("/hello", web::get().to(super::hello)),
        )
        .await;

        let hello =
            test::call_service(&app, test::TestRequest::get().uri("/hello").to_request()).await;
        assert_eq!(hello.status(), StatusCode::OK);
        assert!(
            hello.headers().get("x-request-id").is_none(),
            "the host's routes are left alone"
        );

        let user = json!({"email": "ada@example.com", "password": "correct horse battery"});
        let registered = test::call_service(
            &app,
            test::TestRequest::post()
                .uri("/api/v1/auth/register")
                .peer_addr("198.51.100.7:40000".parse().unwrap())
                .set_json(&user)
                .to_request(),
        )
        .await;
        assert_eq!(registered.status(), StatusCode::CREATED);
        let headers = registered.headers();
        assert!(headers.get("x-request-id").is_some(), "request ids");
        assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
        assert!(headers.get("x-ratelimit-limit").is_some(), "rate limits");

        let login = test::call_service(
            &app,
            test::TestRequest::post()
                .uri("/api/v1/auth/login")
                .set_json(&user)
                .to_request(),
        )
        .await;
        assert_eq!(login.status(), StatusCode::OK);
        let tokens: serde_json::Value = test::read_body_json(login).await;
        let verified = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/api/v1/auth/verify")
                .insert_header((
                    "Authorization",
                    format!("Bearer {}", tokens["access_token"].as_str().unwrap()),
                ))
                .to_request(),
        )
        .await;
        assert_eq!(verified.status(), StatusCode::OK);

        // The pages of the links in the API's mails come with it, under their own policy.
        let page = test::call_service(
            &app,
            test::TestRequest::get().uri("/reset-password").to_request(),
        )
        .await;
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.headers().get("content-security-policy").is_some());
        assert_eq!(
            page.headers().get("x-content-type-options").unwrap(),
            "nosniff"
        );
        assert_eq!(
            page.headers().get("referrer-policy").unwrap(),
            "no-referrer"
        );

        let unknown = test::call_service(
            &app,
            test::TestRequest::get().uri("/api/v1/nowhere").to_request(),
        )
        .await;
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            unknown.headers().get("content-type").unwrap(),
            "application/problem+json"
        );
        let wrong_method = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/api/v1/auth/login")
                .to_request(),
        )
        .await;
        assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(wrong_method.headers().get("allow").unwrap(), "POST");

        let jwks = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/.well-known/jwks.json")
                .to_request(),
        )
        .await;
        assert_eq!(jwks.status(), StatusCode::OK);
    }
}
