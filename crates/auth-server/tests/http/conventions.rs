//! The contract's conventions: 400/413/415/422, problem+json, request ids, 404, 503.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{
    Backend, PASSWORD, TestApp, assert_problem, on_both_stores, test_config, unique_email,
};

on_both_stores!(
    bad_bodies_get_clear_4xx_and_change_nothing,
    field_rules_answer_422_with_the_field,
    invisible_and_bidi_characters_are_refused_where_they_spoof,
);

const REGISTER: &str = "/api/v1/auth/register";

async fn raw(
    app: &TestApp,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = app.request(Method::POST, REGISTER).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.unwrap()
}

async fn bad_bodies_get_clear_4xx_and_change_nothing(app: &TestApp) {
    let email = unique_email();
    let good = json!({"email": email, "password": PASSWORD}).to_string();

    assert_problem(
        raw(app, Some("text/plain"), good.clone()).await,
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    assert_problem(
        raw(app, None, good.clone()).await,
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    assert_problem(
        raw(app, Some("application/x-www-form-urlencoded"), "email=a").await,
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    assert_problem(
        raw(app, Some("application/json"), "{\"email\":").await,
        400,
        "MALFORMED_REQUEST",
    )
    .await;
    assert_problem(
        raw(app, Some("application/json"), "").await,
        400,
        "MALFORMED_REQUEST",
    )
    .await;
    assert_problem(raw(app, None, "").await, 400, "MALFORMED_REQUEST").await;
    assert_problem(
        raw(app, Some("application/json"), format!("{good} trailing")).await,
        400,
        "MALFORMED_REQUEST",
    )
    .await;
    assert_problem(
        raw(app, Some("application/json"), "[".repeat(10_000)).await,
        400,
        "MALFORMED_REQUEST",
    )
    .await;
    assert_problem(
        raw(
            app,
            Some("application/json"),
            b"{\"email\":\"\xff\xfe\"}".to_vec(),
        )
        .await,
        400,
        "MALFORMED_REQUEST",
    )
    .await;
    let big = json!({"email": email, "password": PASSWORD, "display_name": "x".repeat(70 * 1024)})
        .to_string();
    assert_problem(
        raw(app, Some("application/json"), big).await,
        413,
        "PAYLOAD_TOO_LARGE",
    )
    .await;

    // None of that created the account.
    assert_eq!(app.login(&email, PASSWORD).await.status(), 401);
    // The same body, well sent, works; a charset parameter is fine.
    assert_eq!(
        raw(app, Some("application/json; charset=utf-8"), good)
            .await
            .status(),
        201
    );
}

async fn field_errors(app: &TestApp, body: Value) -> Vec<(String, String)> {
    let problem = assert_problem(
        app.post_json(REGISTER, &body).await,
        422,
        "VALIDATION_FAILED",
    )
    .await;
    problem["errors"]
        .as_array()
        .expect("errors array")
        .iter()
        .map(|e| {
            assert_no_serde_text(e["message"].as_str().unwrap());
            (
                e["field"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The contract keeps serde text out of error bodies; these are its tell-tale fragments.
fn assert_no_serde_text(message: &str) {
    for fragment in [
        "invalid type",
        "expected",
        "`",
        "UUID",
        "deserialize",
        "at line",
    ] {
        assert!(!message.contains(fragment), "serde text in {message:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serde_text_stays_out_of_422_bodies() {
    let app = TestApp::start(Backend::Memory).await;
    let (_, session) = app.user_with_session().await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let cases = [
        app.post_json(REGISTER, &json!({"email": 5, "password": [1]}))
            .await,
        app.post_auth(
            "/api/v1/api-keys",
            &token,
            Some(&json!({"organization_id": "not-an-id", "name": "k", "scopes": []})),
        )
        .await,
        app.get_auth(
            "/api/v1/api-keys?organization_id=a&organization_id=b",
            &token,
        )
        .await,
    ];
    for res in cases {
        let problem = assert_problem(res, 422, "VALIDATION_FAILED").await;
        for error in problem["errors"].as_array().unwrap() {
            assert_no_serde_text(error["message"].as_str().unwrap());
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_where_none_is_needed_follows_the_body_rules() {
    let app = TestApp::start(Backend::Memory).await;
    let (_, session) = app.user_with_session().await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let send = |content_type: &'static str, body: String| {
        app.request(Method::POST, "/api/v1/auth/logout-all")
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let res = send("text/plain", "hello".into()).await.unwrap();
    assert_problem(res, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    let res = send("application/json", format!("\"{}\"", "x".repeat(70 * 1024)))
        .await
        .unwrap();
    assert_problem(res, 413, "PAYLOAD_TOO_LARGE").await;
    // Neither ended the sessions; a JSON body is accepted and ignored.
    assert_eq!(
        app.get_auth("/api/v1/auth/verify", &token).await.status(),
        200
    );
    assert_eq!(
        send("application/json", "{}".into())
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        app.get_auth("/api/v1/auth/verify", &token).await.status(),
        401
    );
    app.stop().await;
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(f, c)| ((*f).to_owned(), (*c).to_owned()))
        .collect()
}

async fn field_rules_answer_422_with_the_field(app: &TestApp) {
    let email = unique_email();
    assert_eq!(
        field_errors(app, json!({"email": email})).await,
        pairs(&[("password", "required")])
    );
    assert_eq!(
        field_errors(app, json!({"email": 5, "password": PASSWORD})).await,
        pairs(&[("email", "invalid_type")])
    );
    assert_eq!(
        field_errors(app, json!({"email": "not-an-email", "password": "short"})).await,
        pairs(&[("email", "invalid_email"), ("password", "too_short")])
    );
    assert_eq!(
        field_errors(app, json!({"email": email, "password": "x".repeat(129)})).await,
        pairs(&[("password", "too_long")])
    );
    assert_eq!(
        field_errors(app, json!({"email": email, "password": "pass\u{0}word123"})).await,
        pairs(&[("password", "control_character")])
    );
    assert_eq!(
        field_errors(
            app,
            json!({"email": email, "password": PASSWORD, "display_name": "y".repeat(101)})
        )
        .await,
        pairs(&[("display_name", "invalid")])
    );
    assert_eq!(
        field_errors(app, json!([email, PASSWORD])).await,
        pairs(&[("body", "invalid_type")])
    );
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        401,
        "nothing was created"
    );
    // Eight characters is enough; no composition rules; 128 is the maximum.
    assert_eq!(
        field_errors(app, json!({"email": email, "password": "Password1"})).await,
        pairs(&[("password", "too_common")])
    );
    assert_eq!(app.register(&email, "zq8#Lm2v").await.status(), 201);
    assert_eq!(
        app.register(&unique_email(), &"é".repeat(128))
            .await
            .status(),
        201
    );
}

/// Emails refuse every format character (Cf); names and metadata refuse the bidirectional
/// controls but keep the zero-width joiner of emoji sequences.
async fn invisible_and_bidi_characters_are_refused_where_they_spoof(app: &TestApp) {
    let email = unique_email();
    for spoof in [
        "\u{202E}", "\u{2066}", "\u{200E}", "\u{200B}", "\u{200D}", "\u{FEFF}", "\u{00AD}",
    ] {
        let (local, domain) = email.split_once('@').unwrap();
        assert_eq!(
            field_errors(
                app,
                json!({"email": format!("{local}{spoof}@{domain}"), "password": PASSWORD})
            )
            .await,
            pairs(&[("email", "invalid_email")]),
            "{spoof:?}"
        );
    }
    for spoof in ["\u{202E}", "\u{202A}", "\u{2067}", "\u{2069}"] {
        assert_eq!(
            field_errors(
                app,
                json!({"email": email, "password": PASSWORD, "display_name": format!("Ada{spoof}gpj.exe")})
            )
            .await,
            pairs(&[("display_name", "invalid")]),
            "{spoof:?}"
        );
    }
    let coder = "Ada \u{1F469}\u{200D}\u{1F4BB}";
    let res = app
        .post_json(
            REGISTER,
            &json!({"email": email, "password": PASSWORD, "display_name": coder}),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.json::<Value>().await.unwrap()["display_name"], coder);

    let token = app
        .login(&email, PASSWORD)
        .await
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .post_auth(
            "/api/v1/organizations",
            &token,
            Some(&json!({"name": "Acme\u{202E}cod.exe"})),
        )
        .await;
    assert_problem(res, 422, "VALIDATION_FAILED").await;
    let res = app
        .post_auth(
            "/api/v1/organizations",
            &token,
            Some(&json!({"name": "Team \u{1F469}\u{200D}\u{1F4BB}"})),
        )
        .await;
    assert_eq!(res.status(), 201);
    let org = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let device = |id: &str, extra: Value| {
        let mut body = json!({"device_id": id, "organization_id": org});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let tag = uuid::Uuid::now_v7().simple().to_string();
    for (extra, field) in [
        (json!({"name": "Frame\u{2066}x"}), "name"),
        (json!({"metadata": {"room": "kitchen\u{202E}"}}), "metadata"),
        (json!({"metadata": {"r\u{202B}oom": "kitchen"}}), "metadata"),
        (json!({"metadata": {"a": [{"b": "\u{2068}"}]}}), "metadata"),
    ] {
        let problem = assert_problem(
            app.post_auth(
                "/api/v1/devices",
                &token,
                Some(&device(&format!("f.{tag}"), extra.clone())),
            )
            .await,
            422,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{extra}");
    }
    let res = app
        .post_auth(
            "/api/v1/devices",
            &token,
            Some(&device(
                &format!("f.{tag}"),
                json!({"name": "\u{1F469}\u{200D}\u{1F4BB} desk", "metadata": {"owner": "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}", "label": "\u{05D3}\u{05E0}\u{05D4} 2\u{200F}"}}),
            )),
        )
        .await;
    assert_eq!(res.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_replaced() {
    let app = TestApp::start(Backend::Memory).await;
    for (sent, echoed) in [
        ("abc-123_X.y:z", true),
        ("has space", false),
        (&*"a".repeat(129), false),
        ("", false),
    ] {
        let res = app
            .request(Method::GET, "/health/live")
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        let got = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(got == sent, echoed, "{sent:?} -> {got:?}");
        assert!(!got.is_empty() && got.len() <= 128);
    }
    let res = app
        .request(Method::GET, "/no/such/route")
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let body = assert_problem(res, 404, "NOT_FOUND").await;
    assert_eq!(body["request_id"], "trace-42");
    let a = app.get("/").await.headers()["x-request-id"].clone();
    let b = app.get("/").await.headers()["x-request-id"].clone();
    assert_ne!(a, b);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_answers_503_with_retry_after() {
    let mut config = test_config();
    // Nothing listens on port 1: every connection attempt is refused at once.
    config.db.url = Some(secrecy::SecretString::from(
        "postgres://postgres:pw@127.0.0.1:1/auth",
    ));
    config.db.timeout_ms = 300;
    let app = TestApp::serve(config, None).await;

    let res = app.register(&unique_email(), PASSWORD).await;
    let retry: u32 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body = assert_problem(res, 503, "SERVICE_UNAVAILABLE").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        !detail.contains("127.0.0.1") && !detail.to_lowercase().contains("connect"),
        "{detail}"
    );
    assert_problem(
        app.login(&unique_email(), PASSWORD).await,
        503,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    let res = app
        .post_json("/api/v1/auth/refresh", &json!({"refresh_token": "x"}))
        .await;
    assert_problem(res, 503, "SERVICE_UNAVAILABLE").await;

    assert_eq!(app.get("/health/live").await.status(), 200);
    assert_eq!(app.get("/health/ready").await.status(), 503);
    let res = app.get("/health").await;
    assert_eq!(res.status(), 503);
    let health: Value = res.json().await.unwrap();
    assert_eq!(health["status"], "unhealthy");
    assert_eq!(health["components"]["database"]["kind"], "postgres");
    app.stop().await;
}
