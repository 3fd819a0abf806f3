//! Service endpoints and the API documentation: every route is in the OpenAPI document and
//! every documented operation is served.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Backend, TestApp};

/// The operations of the contract built so far. Adding a route without documenting it, or
/// documenting one that is not served, fails `openapi_lists_exactly_the_served_routes`.
const EXPECTED: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/health"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/metrics"),
    ("post", "/api/v1/auth/register"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),
    ("post", "/api/v1/auth/logout-all"),
    ("get", "/api/v1/auth/verify"),
    ("post", "/api/v1/auth/verify-token"),
    ("get", "/api/v1/users/me"),
    ("patch", "/api/v1/users/me"),
    ("delete", "/api/v1/users/me"),
    ("get", "/api/v1/users/me/events"),
    ("post", "/api/v1/users/me/password"),
    ("post", "/api/v1/users/me/email"),
    ("get", "/api/v1/admin/users"),
    ("post", "/api/v1/admin/users"),
    ("get", "/api/v1/admin/users/{id}"),
    ("patch", "/api/v1/admin/users/{id}"),
    ("delete", "/api/v1/admin/users/{id}"),
    ("post", "/api/v1/admin/users/{id}/unlock"),
    ("post", "/api/v1/admin/users/{id}/sessions/revoke"),
    ("post", "/api/v1/admin/users/{id}/password-reset"),
    ("post", "/api/v1/auth/verify-email"),
    ("post", "/api/v1/auth/verify-email/resend"),
    ("post", "/api/v1/auth/password-reset"),
    ("post", "/api/v1/auth/password-reset/confirm"),
    ("post", "/api/v1/users/me/mfa/totp"),
    ("post", "/api/v1/users/me/mfa/totp/confirm"),
    ("delete", "/api/v1/users/me/mfa/totp"),
    ("post", "/api/v1/auth/login/mfa"),
    ("post", "/api/v1/organizations"),
    ("get", "/api/v1/organizations"),
    ("get", "/api/v1/organizations/{org_id}"),
    ("post", "/api/v1/organizations/{org_id}/members"),
    ("get", "/api/v1/organizations/{org_id}/members"),
    ("get", "/api/v1/organizations/{org_id}/events"),
    ("get", "/api/v1/revocations/stream"),
    ("delete", "/api/v1/organizations/{org_id}/members/{user_id}"),
    ("post", "/api/v1/api-keys"),
    ("get", "/api/v1/api-keys"),
    ("get", "/api/v1/api-keys/{id}"),
    ("patch", "/api/v1/api-keys/{id}"),
    ("get", "/api/v1/api-keys/{id}/usage"),
    ("post", "/api/v1/api-keys/{id}/revoke"),
    ("post", "/api/v1/api-keys/{id}/rotate"),
    ("post", "/api/v1/api-keys/verify"),
    ("post", "/api/v1/api-keys/verify-batch"),
    ("post", "/api/v1/devices"),
    ("post", "/api/v1/devices/authenticate"),
    ("post", "/api/v1/devices/{device_id}/rotate-secret"),
    ("post", "/api/v1/devices/{device_id}/revoke"),
    ("get", "/api/v1/devices"),
    ("get", "/api/v1/devices/{device_id}"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_exactly_the_served_routes() {
    let app = TestApp::start(Backend::Memory).await;
    let res = app.get("/api-docs/openapi.json").await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        doc,
        serde_json::to_value(auth_http::openapi()).unwrap(),
        "served = built"
    );

    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p)| ((*m).into(), (*p).into()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);

    // Each documented operation is really served: the router never answers it with the
    // fallback 404 (handlers answer 200, 401, 400 or 422 to an empty request).
    for (method, path) in &documented {
        let res = app
            .request(
                Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                path,
            )
            .send()
            .await
            .unwrap();
        assert_ne!(
            res.status(),
            404,
            "{method} {path} is documented but not served"
        );
        assert_ne!(res.status(), 405, "{method} {path}");
    }
    // Error statuses are documented with the problem type; protected routes declare bearer.
    let verify = &doc["paths"]["/api/v1/auth/verify"]["get"];
    assert!(verify["responses"]["401"]["content"]["application/problem+json"].is_object());
    assert_eq!(verify["security"][0]["bearer"], serde_json::json!([]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    app.stop().await;
}

/// OpenAPI requires every `operationId` to be unique; generated clients name their functions
/// and types after them, so two operations sharing one (`list`, `verify`, ...) get each
/// other's bodies.
#[test]
fn every_operation_has_its_own_descriptive_id() {
    let doc = serde_json::to_value(auth_http::openapi()).unwrap();
    let mut ids: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            ids.push((id.to_owned(), format!("{method} {path}")));
        }
    }
    ids.sort();
    for pair in ids.windows(2) {
        assert_ne!(
            pair[0].0, pair[1].0,
            "{} and {} share an operationId",
            pair[0].1, pair[1].1
        );
    }
    for (id, operation) in &ids {
        assert!(
            id.len() > 4 || ["login", "jwks"].contains(&id.as_str()),
            "{operation}: {id} does not say what it does"
        );
    }
    let find = |method: &str, path: &str| {
        doc["paths"][path][method]["operationId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(find("get", "/api/v1/auth/verify"), "verify_access_token");
    assert_eq!(find("post", "/api/v1/api-keys/verify"), "verify_api_key");
    assert_eq!(find("get", "/api/v1/devices"), "list_devices");
    assert_eq!(find("post", "/api/v1/organizations"), "create_organization");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documentation_pages_work_offline() {
    let app = TestApp::start(Backend::Memory).await;
    let res = app.get("/docs").await;
    assert!(res.status().is_redirection());
    assert_eq!(res.headers()["location"], "/docs/");
    let html = app.get("/docs/").await.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Swagger UI's assets come from the binary, not a CDN.
    assert!(!html.contains("https://"), "no external script: {html}");
    let js = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(js.status(), 200);
    let config = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(config.contains("/api-docs/openapi.json"), "{config}");
    // Without this, Swagger UI posts the document to validator.swagger.io.
    assert!(
        config.contains("\"validatorUrl\": \"none\""),
        "no outside validator: {config}"
    );

    let redoc = app.get("/redoc").await.text().await.unwrap();
    assert!(
        redoc.contains("/redoc/redoc.standalone.js") && !redoc.contains("cdn."),
        "{redoc}"
    );
    assert!(redoc.contains("/api/v1/auth/login"), "the spec is inlined");
    let script = app.get("/redoc/redoc.standalone.js").await;
    assert_eq!(script.status(), 200);
    assert!(script.bytes().await.unwrap().len() > 1_000_000);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_endpoints_answer_on_both_stores() {
    for (backend, kind) in [(Backend::Memory, "memory"), (Backend::Postgres, "postgres")] {
        let app = TestApp::start(backend).await;
        let root: Value = app.get("/").await.json().await.unwrap();
        assert_eq!(root["name"], "auth-service");
        assert_eq!(root["docs"], "/docs");
        assert_eq!(root["version"], env!("CARGO_PKG_VERSION"));
        let res = app.get("/health").await;
        assert_eq!(res.status(), 200);
        let health: Value = res.json().await.unwrap();
        assert_eq!(health["status"], "healthy");
        assert_eq!(health["components"]["database"]["kind"], kind);
        assert_eq!(health["components"]["database"]["status"], "healthy");
        assert!(health["components"]["database"]["latency_ms"].is_number());
        assert_eq!(app.get("/health/live").await.status(), 200);
        assert_eq!(app.get("/health/ready").await.status(), 200);
        app.stop().await;
    }
}

/// The document states the rules validation applies, so that a client generated from it (or
/// a fuzzer such as schemathesis) sends what is accepted and expects what is refused.
#[test]
fn openapi_bounds_match_validation() {
    let doc = serde_json::to_value(auth_http::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let scope_list = &schemas["ScopeList"];
    assert_eq!(scope_list["type"], "array");
    assert_eq!(scope_list["maxItems"], 100);
    let scope = &scope_list["items"];
    assert_eq!(
        (&scope["type"], &scope["minLength"], &scope["maxLength"]),
        (&json!("string"), &json!(1), &json!(64))
    );
    assert_eq!(scope["pattern"], "^[a-z0-9:._-]{1,64}$");
    let list_ref = json!("#/components/schemas/ScopeList");
    assert_eq!(
        schemas["CreateKey"]["properties"]["scopes"]["$ref"],
        list_ref
    );
    assert_eq!(
        schemas["CreateKey"]["properties"]["expires_in_days"]["minimum"],
        1
    );
    assert_eq!(
        schemas["CreateKey"]["properties"]["expires_in_days"]["maximum"],
        3650
    );
    let verify = &schemas["VerifyKey"];
    assert_eq!(verify["required"], json!(["key"]));
    assert_eq!(verify["properties"]["key"]["type"], "string");
    assert_eq!(
        verify["properties"]["required_scopes"]["oneOf"][0]["$ref"],
        list_ref
    );
    let items = &schemas["VerifyBatch"]["properties"]["items"];
    assert_eq!(schemas["VerifyBatch"]["required"], json!(["items"]));
    assert_eq!(
        (&items["minItems"], &items["maxItems"]),
        (&json!(1), &json!(100))
    );
    assert_eq!(items["items"]["$ref"], "#/components/schemas/VerifyKey");
}
