//! The TOTP second factor over HTTP, on both stores: enrol → confirm → login → the MFA step →
//! disable; bad input; parallel submissions of one code; the secret at rest.
//!
//! Codes are computed here from the enrolment secret. The service reads the real clock, so a
//! code is taken for the next step where the previous one was spent: the ±1 step window
//! accepts it, whenever in its step the test runs.

use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};
use totp_rs::{Algorithm, Builder, Secret};

use crate::common::{PASSWORD, TestApp, assert_problem, on_both_stores, str_field, test_config};

on_both_stores!(
    enrol_confirm_login_and_disable,
    bad_input_changes_nothing,
    parallel_submissions_of_one_code_open_one_session,
    wrong_codes_lock_the_login,
);

/// The code of `secret` (base32) `steps` steps from now.
pub(crate) fn code(secret: &str, steps: i64) -> String {
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(Secret::try_from_base32(secret).unwrap())
        .build()
        .unwrap();
    let now = chrono::Utc::now().timestamp() + steps * 30;
    totp.generate(u64::try_from(now).unwrap()).to_string()
}

/// Reads the QR code of an enrolment as a phone's camera would: the SVG (a `data:` URI)
/// rasterised module by module, then decoded by a QR reader.
fn scan_qr_code(data_uri: &str) -> String {
    use base64::Engine as _;
    let encoded = data_uri
        .strip_prefix("data:image/svg+xml;base64,")
        .unwrap_or_else(|| panic!("not an SVG data URI: {data_uri:.40}"));
    let svg = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap();
    let number = |s: &str, key: &str| -> usize {
        let start = s.find(key).unwrap() + key.len();
        s[start..].split('"').next().unwrap().parse().unwrap()
    };
    let size = number(&svg, "width=\"");
    // Each dark module is drawn as `M{x} {y}h{w}v{h}H{x}V{y}`: paint its square.
    let path_start = svg.find(" d=\"").unwrap() + 4;
    let path = &svg[path_start..svg[path_start..].find('"').unwrap() + path_start];
    let mut dark = vec![false; size * size];
    for square in path.split('M').filter(|p| !p.is_empty()) {
        let mut numbers = square
            .split(|c: char| !c.is_ascii_digit())
            .filter(|n| !n.is_empty())
            .map(|n| n.parse::<usize>().unwrap());
        let (x, y, w, h) = (
            numbers.next().unwrap(),
            numbers.next().unwrap(),
            numbers.next().unwrap(),
            numbers.next().unwrap(),
        );
        for row in y..y + h {
            for col in x..x + w {
                dark[row * size + col] = true;
            }
        }
    }
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(size, size, |x, y| {
        if dark[y * size + x] { 0 } else { 255 }
    });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    grids[0].decode().unwrap().1
}

fn no_store(res: &reqwest::Response) {
    assert_eq!(
        res.headers().get("cache-control").unwrap(),
        "no-store",
        "secrets are never cached"
    );
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: &Value,
) -> reqwest::Response {
    app.request(method, path)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

pub(crate) struct Enrolled {
    pub(crate) email: String,
    pub(crate) access: String,
    pub(crate) secret: String,
    pub(crate) recovery: Vec<String>,
}

/// A new user with a confirmed factor (the code of the current step spent).
pub(crate) async fn enrolled(app: &TestApp) -> Enrolled {
    let (email, login) = app.user_with_session().await;
    let access = str_field(&login, "access_token").to_owned();
    let res = send(
        app,
        Method::POST,
        "/api/v1/users/me/mfa/totp",
        &access,
        &json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(res.status(), 200);
    no_store(&res);
    let body: Value = res.json().await.unwrap();
    let secret = str_field(&body, "secret").to_owned();
    let uri = str_field(&body, "otpauth_uri");
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={secret}")),
        "{uri}"
    );
    assert_eq!(
        scan_qr_code(str_field(&body, "qr_code")),
        uri,
        "the QR code holds the URI"
    );
    let res = send(
        app,
        Method::POST,
        "/api/v1/users/me/mfa/totp/confirm",
        &access,
        &json!({"code": code(&secret, 0)}),
    )
    .await;
    assert_eq!(res.status(), 200);
    no_store(&res);
    let body: Value = res.json().await.unwrap();
    let recovery: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    Enrolled {
        email,
        access,
        secret,
        recovery,
    }
}

/// Logs in with the password: the answer must ask for the second factor.
pub(crate) async fn mfa_token(app: &TestApp, email: &str) -> String {
    let res = app.login(email, PASSWORD).await;
    assert_eq!(res.status(), 200);
    no_store(&res);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["mfa_required"], true, "{body}");
    assert_eq!(body["expires_in"], 300);
    assert!(
        body.get("access_token").is_none(),
        "no tokens before the code"
    );
    str_field(&body, "mfa_token").to_owned()
}

pub(crate) async fn login_mfa(app: &TestApp, token: &str, code: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/login/mfa",
        &json!({"mfa_token": token, "code": code}),
    )
    .await
}

async fn enrol_confirm_login_and_disable(app: &TestApp) {
    let u = enrolled(app).await;
    let me: Value = app
        .get_auth("/api/v1/users/me", &u.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["mfa_enabled"], true);
    // A second enrolment is refused while one is enabled.
    let res = send(
        app,
        Method::POST,
        "/api/v1/users/me/mfa/totp",
        &u.access,
        &json!({"password": PASSWORD}),
    )
    .await;
    assert_problem(res, 409, "MFA_ALREADY_ENABLED").await;

    // Login: the password, then the code of the next step.
    let token = mfa_token(app, &u.email).await;
    let res = login_mfa(app, &token, &code(&u.secret, 1)).await;
    assert_eq!(res.status(), 200);
    no_store(&res);
    let pair: Value = res.json().await.unwrap();
    assert_eq!(pair["token_type"], "Bearer");
    let res = app
        .get_auth("/api/v1/auth/verify", str_field(&pair, "access_token"))
        .await;
    assert_eq!(res.status(), 200);
    // The token is spent; the code is spent (a replay with a new token is refused).
    assert_problem(
        login_mfa(app, &token, &code(&u.secret, 1)).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    let token = mfa_token(app, &u.email).await;
    assert_problem(
        login_mfa(app, &token, &code(&u.secret, 1)).await,
        401,
        "INVALID_MFA_CODE",
    )
    .await;
    // A recovery code instead (the phone is lost), once.
    let res = login_mfa(app, &token, &u.recovery[0]).await;
    assert_eq!(res.status(), 200);
    let token = mfa_token(app, &u.email).await;
    assert_problem(
        login_mfa(app, &token, &u.recovery[0]).await,
        401,
        "INVALID_MFA_CODE",
    )
    .await;

    // Disable: a wrong password or code changes nothing; the password and a recovery code do.
    let path = "/api/v1/users/me/mfa/totp";
    let res = send(
        app,
        Method::DELETE,
        path,
        &u.access,
        &json!({"password": "not the password", "code": u.recovery[1]}),
    )
    .await;
    assert_problem(res, 401, "INVALID_CREDENTIALS").await;
    let res = send(
        app,
        Method::DELETE,
        path,
        &u.access,
        &json!({"password": PASSWORD, "code": u.recovery[0]}),
    )
    .await;
    assert_problem(res, 401, "INVALID_MFA_CODE").await;
    let me: Value = app
        .get_auth("/api/v1/users/me", &u.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["mfa_enabled"], true);
    let res = send(
        app,
        Method::DELETE,
        path,
        &u.access,
        &json!({"password": PASSWORD, "code": u.recovery[1]}),
    )
    .await;
    assert_eq!(res.status(), 204);
    let me: Value = app
        .get_auth("/api/v1/users/me", &u.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["mfa_enabled"], false);
    let res = app.login(&u.email, PASSWORD).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");
    // The pending mfa_token died with the factor.
    assert_problem(
        login_mfa(app, &token, &u.recovery[2]).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
}

async fn bad_input_changes_nothing(app: &TestApp) {
    let (_, login) = app.user_with_session().await;
    let access = str_field(&login, "access_token");
    let enrol = "/api/v1/users/me/mfa/totp";
    let confirm = "/api/v1/users/me/mfa/totp/confirm";
    // Without a token: 401; wrong password: 401; bad bodies: 422 naming every field.
    let res = app.post_json(enrol, &json!({"password": PASSWORD})).await;
    assert_problem(res, 401, "UNAUTHENTICATED").await;
    let res = send(
        app,
        Method::POST,
        enrol,
        access,
        &json!({"password": "wrong password"}),
    )
    .await;
    assert_problem(res, 401, "INVALID_CREDENTIALS").await;
    let res = send(app, Method::POST, enrol, access, &json!({"password": 7})).await;
    assert_problem(res, 422, "VALIDATION_FAILED").await;
    let res = app
        .request(Method::POST, enrol)
        .bearer_auth(access)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "MALFORMED_REQUEST").await;
    // Nothing pending: a confirmation is a wrong code.
    let res = send(
        app,
        Method::POST,
        confirm,
        access,
        &json!({"code": "123456"}),
    )
    .await;
    assert_problem(res, 401, "INVALID_MFA_CODE").await;
    let res = send(app, Method::POST, confirm, access, &json!({"code": ""})).await;
    let body = assert_problem(res, 422, "VALIDATION_FAILED").await;
    assert_eq!(body["errors"][0]["field"], "code");
    let res = send(app, Method::DELETE, enrol, access, &json!({})).await;
    let body = assert_problem(res, 422, "VALIDATION_FAILED").await;
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
    let res = app
        .post_json(
            "/api/v1/auth/login/mfa",
            &json!({"mfa_token": "x\u{0}", "code": "1".repeat(65)}),
        )
        .await;
    let body = assert_problem(res, 422, "VALIDATION_FAILED").await;
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
    let res = login_mfa(app, "made-up-token", "123456").await;
    assert_problem(res, 401, "INVALID_CREDENTIALS").await;
    // Nothing changed: no factor, and the login still answers tokens.
    let me: Value = app
        .get_auth("/api/v1/users/me", access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["mfa_enabled"], false);
}

async fn parallel_submissions_of_one_code_open_one_session(app: &TestApp) {
    let u = enrolled(app).await;
    let token = mfa_token(app, &u.email).await;
    let next = code(&u.secret, 1);
    let statuses: Vec<u16> = join_all((0..20).map(|_| {
        let (token, next) = (&token, &next);
        async move { login_mfa(app, token, next).await.status().as_u16() }
    }))
    .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 401, 429].contains(s)),
        "{statuses:?}"
    );
}

async fn wrong_codes_lock_the_login(app: &TestApp) {
    let u = enrolled(app).await;
    let token = mfa_token(app, &u.email).await;
    let right = code(&u.secret, 1);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    // The correct password counts until the code is right: four wrong codes lock.
    for _ in 0..4 {
        assert_problem(login_mfa(app, &token, wrong).await, 401, "INVALID_MFA_CODE").await;
    }
    let res = login_mfa(app, &token, &right).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 429, "TOO_MANY_ATTEMPTS").await;
    assert_problem(
        app.login(&u.email, PASSWORD).await,
        429,
        "TOO_MANY_ATTEMPTS",
    )
    .await;
}

/// The secret is stored encrypted: neither its bytes nor its base32 text are in the row, and
/// the row outlives a restart with the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_is_encrypted_at_rest() {
    let db = auth_infra::test_support::TestDb::new().await;
    let mut config = test_config();
    config.db.url = Some(secrecy::SecretString::from(db.url().to_owned()));
    config.mfa.data_key = Some(secrecy::SecretString::from(
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    ));
    let app = TestApp::serve(config.clone(), None).await;
    let u = enrolled(&app).await;
    let raw = Secret::try_from_base32(&u.secret).unwrap();
    let hex: String = raw.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    auth_infra::test_support::TestDb::execute(
        &db,
        &format!(
            "DO $$ BEGIN \
               IF (SELECT count(*) FROM mfa_totp WHERE enabled_at IS NOT NULL) <> 1 THEN \
                 RAISE EXCEPTION 'no enabled row'; END IF; \
               IF EXISTS (SELECT 1 FROM mfa_totp WHERE position('\\x{hex}'::bytea IN secret_sealed) > 0 \
                          OR position(convert_to('{secret}', 'UTF8') IN secret_sealed) > 0) THEN \
                 RAISE EXCEPTION 'secret stored in plaintext'; END IF; \
               IF (SELECT count(*) FROM mfa_recovery_codes) <> 10 \
                  OR EXISTS (SELECT 1 FROM mfa_recovery_codes WHERE length(code_hash) <> 32) THEN \
                 RAISE EXCEPTION 'recovery codes not stored as hashes'; END IF; \
             END $$;",
            secret = u.secret
        ),
    )
    .await;
    app.stop().await;
    // Another instance with the same key reads the secret.
    let other = TestApp::serve(config, None).await;
    let token = mfa_token(&other, &u.email).await;
    assert_eq!(
        login_mfa(&other, &token, &code(&u.secret, 1))
            .await
            .status(),
        200
    );
    other.stop().await;
}

/// `users reset-mfa E`: an administrator removes a lost factor; the next login needs the
/// password only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_resets_a_lost_factor() {
    let db = auth_infra::test_support::TestDb::new().await;
    let mut config = test_config();
    config.db.url = Some(secrecy::SecretString::from(db.url().to_owned()));
    let app = TestApp::serve(config, None).await;
    let u = enrolled(&app).await;
    let run = |email: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_auth-server"))
            .args(["users", "reset-mfa", email])
            .env("DATABASE_URL", db.url())
            .env("LOG_LEVEL", "warn")
            .output()
            .unwrap()
    };
    let out = run(&u.email);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("second factor removed"));
    let res = app.login(&u.email, PASSWORD).await;
    let body: Value = res.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");
    let out = run(&u.email);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing changed"));
    let out = run("nobody@example.com");
    assert!(!out.status.success());
    app.stop().await;
}
