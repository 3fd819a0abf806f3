//! The actix-web extractors in a small service of their own, in front of the real auth
//! server: 401, 403, 503 and 500 in the service's error format, and the happy paths.

use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::test::{TestRequest, call_service, init_service, read_body_json};
use actix_web::{App, HttpResponse, web};
use auth_client::actix::{ApiKeyPrincipal, AuthenticatedDevice, AuthenticatedUser, Local, Remote};
use auth_client::{Credential, NewDevice};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use crate::common::{TestServer, api_key, eddsa, exposed, owner_and_org, unique_device_id};

auth_client::required_scopes!(InvoicesRead = ["invoices:read"]);
auth_client::required_scopes!(InvoicesWrite = ["invoices:read", "invoices:write"]);

async fn profile(user: AuthenticatedUser) -> HttpResponse {
    HttpResponse::Ok()
        .json(json!({"user_id": user.user_id, "by": format!("{:?}", user.verified_by)}))
}

async fn strict(user: AuthenticatedUser<Remote>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"user_id": user.user_id}))
}

async fn local_only(user: AuthenticatedUser<Local>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"user_id": user.user_id}))
}

async fn telemetry(device: AuthenticatedDevice) -> HttpResponse {
    HttpResponse::Ok().json(json!({"device_id": device.device_id}))
}

async fn read_invoices(key: ApiKeyPrincipal<InvoicesRead>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"organization_id": key.organization_id}))
}

async fn write_invoices(key: ApiKeyPrincipal<InvoicesWrite>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"key_id": key.key_id}))
}

async fn any_key(key: ApiKeyPrincipal) -> HttpResponse {
    HttpResponse::Ok().json(json!({"name": key.name}))
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/profile", web::get().to(profile))
        .route("/strict", web::get().to(strict))
        .route("/local", web::get().to(local_only))
        .route("/telemetry", web::post().to(telemetry))
        .route("/invoices", web::get().to(read_invoices))
        .route("/invoices", web::post().to(write_invoices))
        .route("/any", web::get().to(any_key));
}

/// The protected service, with `client` registered the usual way.
macro_rules! service {
    ($client:expr) => {
        init_service(
            App::new()
                .app_data(web::Data::new($client.clone()))
                .configure(routes),
        )
        .await
    };
}

/// Asserts a problem document in the service's format; returns it.
async fn problem(res: ServiceResponse, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status);
    let headers = res.headers().clone();
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    let body: Value = read_body_json(res).await;
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["status"], status);
    assert_eq!(body["code"], code, "{body}");
    assert!(body["title"].is_string() && body["detail"].is_string());
    assert_eq!(
        body["request_id"],
        headers.get("x-request-id").unwrap().to_str().unwrap()
    );
    body
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_device_routes() {
    let server = TestServer::start_with(|c| eddsa(c, "ed25519-a.pem", &[])).await;
    let client = server.client();
    let app = service!(client);
    let (owner, org) = owner_and_org(&client).await;
    let token = exposed(&owner.access_token).to_owned();

    // No credentials: 401 without `error`.
    let res = call_service(&app, TestRequest::get().uri("/profile").to_request()).await;
    let challenge = res.headers().get("www-authenticate").unwrap().clone();
    assert_eq!(challenge, r#"Bearer realm="auth""#);
    problem(res, 401, "UNAUTHENTICATED").await;

    // Bad credentials: 401 with `error="invalid_token"`; the caller's request id is kept.
    for header in [
        bearer("not-a-token"),
        ("authorization", format!("Basic {token}")),
        bearer(&format!("{token}x")),
    ] {
        let res = call_service(
            &app,
            TestRequest::get()
                .uri("/profile")
                .insert_header(header)
                .insert_header(("x-request-id", "caller-id-1"))
                .to_request(),
        )
        .await;
        assert_eq!(
            res.headers().get("www-authenticate").unwrap(),
            r#"Bearer realm="auth", error="invalid_token""#
        );
        let body = problem(res, 401, "UNAUTHENTICATED").await;
        assert_eq!(body["request_id"], "caller-id-1");
    }

    let res = call_service(
        &app,
        TestRequest::get()
            .uri("/profile")
            .insert_header(bearer(&token))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = read_body_json(res).await;
    assert_eq!(body, json!({"user_id": owner.user.id, "by": "Local"}));

    // A device token is no user token, and the other way round.
    let id = unique_device_id();
    let device = client
        .register_device(
            Credential::Bearer(&owner.access_token),
            &NewDevice::new(id.clone(), org.id),
        )
        .await
        .unwrap();
    let device_token = client
        .authenticate_device(&id, &device.device_secret)
        .await
        .unwrap()
        .access_token;
    let res = call_service(
        &app,
        TestRequest::get()
            .uri("/profile")
            .insert_header(bearer(exposed(&device_token)))
            .to_request(),
    )
    .await;
    problem(res, 401, "UNAUTHENTICATED").await;
    let res = call_service(
        &app,
        TestRequest::post()
            .uri("/telemetry")
            .insert_header(bearer(exposed(&device_token)))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        read_body_json::<Value, _>(res).await,
        json!({"device_id": id})
    );
    let res = call_service(
        &app,
        TestRequest::post()
            .uri("/telemetry")
            .insert_header(bearer(&token))
            .to_request(),
    )
    .await;
    problem(res, 401, "UNAUTHENTICATED").await;

    // After a logout: the local check still lets the token in, the strict route does not.
    client.logout(&owner.refresh_token).await.unwrap();
    let res = call_service(
        &app,
        TestRequest::get()
            .uri("/profile")
            .insert_header(bearer(&token))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = call_service(
        &app,
        TestRequest::get()
            .uri("/strict")
            .insert_header(bearer(&token))
            .to_request(),
    )
    .await;
    problem(res, 401, "UNAUTHENTICATED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_routes_check_scopes() {
    let server = TestServer::start().await;
    let client = server.client();
    let app = service!(client);
    let (owner, org) = owner_and_org(&client).await;
    let reader = api_key(&client, &owner, &org, &["invoices:read"]).await;
    let admin = api_key(&client, &owner, &org, &["admin"]).await;
    let key = |k: &auth_client::CreatedApiKey| ("x-api-key", exposed(&k.key).to_owned());

    let res = call_service(&app, TestRequest::get().uri("/invoices").to_request()).await;
    problem(res, 401, "UNAUTHENTICATED").await;
    let res = call_service(
        &app,
        TestRequest::get()
            .uri("/invoices")
            .insert_header(("x-api-key", "ak_live_made_up"))
            .to_request(),
    )
    .await;
    problem(res, 401, "UNAUTHENTICATED").await;
    // A key is never a Bearer token.
    let res = call_service(
        &app,
        TestRequest::get()
            .uri("/invoices")
            .insert_header(bearer(exposed(&reader.key)))
            .to_request(),
    )
    .await;
    problem(res, 401, "UNAUTHENTICATED").await;

    let res = call_service(
        &app,
        TestRequest::get()
            .uri("/invoices")
            .insert_header(key(&reader))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        read_body_json::<Value, _>(res).await,
        json!({"organization_id": org.id})
    );

    let res = call_service(
        &app,
        TestRequest::post()
            .uri("/invoices")
            .insert_header(key(&reader))
            .to_request(),
    )
    .await;
    assert_eq!(
        res.headers().get("www-authenticate").unwrap(),
        r#"Bearer realm="auth", error="insufficient_scope", scope="invoices:write""#
    );
    let body = problem(res, 403, "FORBIDDEN").await;
    assert!(body["detail"].as_str().unwrap().contains("invoices:write"));

    for uri in ["/invoices", "/any"] {
        let res = call_service(
            &app,
            TestRequest::get()
                .uri(uri)
                .insert_header(key(&admin))
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
    }
    let res = call_service(
        &app,
        TestRequest::post()
            .uri("/invoices")
            .insert_header(key(&admin))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);

    // One cache entry per key serves every route.
    let cache = client.metrics().api_key_cache.unwrap();
    assert_eq!(
        (cache.misses, cache.hits),
        (3, 3),
        "made-up key, reader, admin"
    );

    client
        .revoke_api_key(Credential::Bearer(&owner.access_token), reader.id)
        .await
        .unwrap();
    client.forget_api_key(exposed(&reader.key)).await;
    let res = call_service(
        &app,
        TestRequest::get()
            .uri("/invoices")
            .insert_header(key(&reader))
            .to_request(),
    )
    .await;
    problem(res, 401, "UNAUTHENTICATED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_service_is_a_503_unless_the_answer_is_cached() {
    let server = TestServer::start_with(|c| eddsa(c, "ed25519-a.pem", &[])).await;
    let client = server.client();
    let (owner, org) = owner_and_org(&client).await;
    let cached = api_key(&client, &owner, &org, &["invoices:read"]).await;
    let uncached = api_key(&client, &owner, &org, &["invoices:read"]).await;
    let token = exposed(&owner.access_token).to_owned();

    let app = service!(client);
    let res = call_service(
        &app,
        TestRequest::get()
            .uri("/invoices")
            .insert_header(("x-api-key", exposed(&cached.key).to_owned()))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = call_service(
        &app,
        TestRequest::get()
            .uri("/profile")
            .insert_header(bearer(&token))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // A client that has not fetched the keys yet.
    let cold = server.client();
    let cold_app = service!(cold);

    server.stop().await;
    let res = call_service(
        &app,
        TestRequest::get()
            .uri("/invoices")
            .insert_header(("x-api-key", exposed(&cached.key).to_owned()))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK, "answered from the cache");
    let res = call_service(
        &app,
        TestRequest::get()
            .uri("/profile")
            .insert_header(bearer(&token))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK, "verified locally");

    let res = call_service(
        &app,
        TestRequest::get()
            .uri("/invoices")
            .insert_header(("x-api-key", exposed(&uncached.key).to_owned()))
            .to_request(),
    )
    .await;
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    problem(res, 503, "SERVICE_UNAVAILABLE").await;
    for (app, uri) in [
        (&app, "/strict"),
        (&cold_app, "/profile"),
        (&cold_app, "/local"),
    ] {
        let res = call_service(
            app,
            TestRequest::get()
                .uri(uri)
                .insert_header(bearer(&token))
                .to_request(),
        )
        .await;
        problem(res, 503, "SERVICE_UNAVAILABLE").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfiguration_is_a_500() {
    let server = TestServer::start().await;
    let client = server.client();
    let (owner, _) = owner_and_org(&client).await;
    let token = exposed(&owner.access_token).to_owned();

    // No client registered.
    let bare = init_service(App::new().configure(routes)).await;
    let res = call_service(
        &bare,
        TestRequest::get()
            .uri("/profile")
            .insert_header(bearer(&token))
            .to_request(),
    )
    .await;
    problem(res, 500, "INTERNAL_ERROR").await;

    // Local only, but an HS256 service publishes no keys.
    let app = service!(client);
    let res = call_service(
        &app,
        TestRequest::get()
            .uri("/local")
            .insert_header(bearer(&token))
            .to_request(),
    )
    .await;
    problem(res, 500, "INTERNAL_ERROR").await;
    // The configured way (Auto) falls back to the service.
    let res = call_service(
        &app,
        TestRequest::get()
            .uri("/profile")
            .insert_header(bearer(&token))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = read_body_json(res).await;
    assert_eq!(body["by"], "Service");

    // A client registered directly (not in web::Data) is found too.
    let direct = init_service(App::new().app_data(client.clone()).configure(routes)).await;
    let res = call_service(
        &direct,
        TestRequest::get()
            .uri("/profile")
            .insert_header(bearer(&token))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// A key over its rate limit is answered 429 `RATE_LIMITED` with `Retry-After` (the seconds
/// until its window ends); a key with no credit left 403; a route whose scope the key lacks
/// spends none of its credits (the service refuses the scope before it counts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_keys_are_answered_429_and_403() {
    let server = TestServer::start().await;
    let client = server.client();
    let app = service!(client);
    let (owner, org) = owner_and_org(&client).await;
    let mut limited = auth_client::NewApiKey::new(org.id, "limited", ["invoices:read"]);
    limited.rate_limit = Some(auth_api::RateLimitSpec {
        limit: 2,
        window_seconds: 3600,
    });
    let limited = client
        .create_api_key(Credential::Bearer(&owner.access_token), &limited)
        .await
        .unwrap();
    let get = |key: &SecretString| {
        TestRequest::get()
            .uri("/invoices")
            .insert_header(("x-api-key", key.expose_secret().to_owned()))
            .to_request()
    };
    for _ in 0..2 {
        assert_eq!(
            call_service(&app, get(&limited.key)).await.status(),
            StatusCode::OK
        );
    }
    let res = call_service(&app, get(&limited.key)).await;
    let retry: u64 = res
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    problem(res, 429, "RATE_LIMITED").await;

    let mut counted = auth_client::NewApiKey::new(org.id, "counted", ["invoices:read"]);
    counted.remaining = Some(2);
    let counted = client
        .create_api_key(Credential::Bearer(&owner.access_token), &counted)
        .await
        .unwrap();
    // A route needing `invoices:write`: refused for the scope, no credit spent.
    let post = TestRequest::post()
        .uri("/invoices")
        .insert_header(("x-api-key", counted.key.expose_secret().to_owned()))
        .to_request();
    problem(call_service(&app, post).await, 403, "FORBIDDEN").await;
    for _ in 0..2 {
        assert_eq!(
            call_service(&app, get(&counted.key)).await.status(),
            StatusCode::OK
        );
    }
    let body = problem(
        call_service(&app, get(&counted.key)).await,
        403,
        "FORBIDDEN",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("no use left"));
}
