//! The bare handler the service is measured against: one actix-web route
//! (`GET /api/v1/auth/verify`), built with the service's versions of actix-web and
//! jsonwebtoken, that verifies an HS256 access token the way the service does (the same key,
//! issuer, audience and required claims, expiry checked) and answers a small JSON body: no
//! middleware, no session lookup, no metrics. `auth-bench-ceiling` serves it over HTTP for
//! `scripts/bench.sh`; `auth-bench-instructions` calls it in process for
//! `scripts/instructions.sh`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, web};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

/// The one route.
pub const PATH: &str = "/api/v1/auth/verify";

#[derive(Deserialize)]
struct Claims {
    sub: String,
    sid: Option<String>,
    exp: i64,
}

/// The key and the rules a token is checked against.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// HS256 with `secret`, the service's required claims, `iss` and `aud` as given.
    #[must_use]
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }
}

/// `GET /api/v1/auth/verify`: 200 with `valid:true` for a good Bearer token, else 401.
pub async fn verify(req: HttpRequest, verifier: web::Data<Verifier>) -> HttpResponse {
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

/// The whole bare application.
pub fn app(
    verifier: web::Data<Verifier>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(verifier)
        .route(PATH, web::get().to(verify))
}
