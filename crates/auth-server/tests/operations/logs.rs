//! Log canaries: one `auth-server` process logging JSON at the most verbose level runs every
//! flow with distinctive secrets; none of them may appear in what it wrote to stderr. And the
//! log lines that matter to an operator carry the caller's `X-Request-Id`.

use std::process::{Command, Stdio};
use std::time::Duration;

use auth_infra::test_support::{TestDb, server_url};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{JWT_KEY, ServerProcess, random_hex, str_field, unique_email};

/// A test database reached through a role of its own with a canary password, so the test can
/// also show that the database password never reaches the log. The role is dropped (after
/// the database) when this is dropped.
struct CanaryDb {
    db: Option<TestDb>,
    role: Option<String>,
    url: String,
    password: Option<String>,
}

fn psql(url: &str, sql: &str) -> bool {
    Command::new("psql")
        .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl CanaryDb {
    async fn new() -> Self {
        let db = TestDb::empty().await;
        let name = db.url().rsplit('/').next().unwrap_or_default().to_owned();
        let role = format!("canary_{}", random_hex(6));
        let password = format!("canary-DbPw-{}", random_hex(12));
        let (scheme, rest) = db.url().split_once("://").expect("URL scheme");
        let (_, host_and_db) = rest.split_once('@').expect("URL credentials");
        let url = format!("{scheme}://{role}:{password}@{host_and_db}");
        let sql = format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}'; ALTER DATABASE {name} OWNER TO {role};"
        );
        let admin = db.url().to_owned();
        if tokio::task::spawn_blocking(move || psql(&admin, &sql))
            .await
            .expect("join")
        {
            Self {
                db: Some(db),
                role: Some(role),
                url,
                password: Some(password),
            }
        } else {
            // No psql, or a server that refuses: the database password goes unchecked.
            eprintln!("note: psql could not create a canary role; the DB password is not checked");
            Self {
                url: db.url().to_owned(),
                db: Some(db),
                role: None,
                password: None,
            }
        }
    }
}

impl Drop for CanaryDb {
    fn drop(&mut self) {
        drop(self.db.take());
        if let Some(role) = &self.role {
            psql(&server_url(), &format!("DROP ROLE IF EXISTS {role}"));
        }
    }
}

/// Parses every non-empty line as a JSON object.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"));
            assert!(v.is_object(), "log line is not a JSON object: {l}");
            v
        })
        .collect()
}

/// A log line's message (flattened event, or under `fields`).
fn message(line: &Value) -> &str {
    line["message"]
        .as_str()
        .or_else(|| line["fields"]["message"].as_str())
        .unwrap_or("")
}

/// Every `request_id` a JSON log line carries: at top level, under `fields`, in `span`, or in
/// any element of `spans`.
fn request_ids(line: &Value) -> Vec<&str> {
    let mut ids: Vec<&str> = [
        &line["request_id"],
        &line["fields"]["request_id"],
        &line["span"]["request_id"],
    ]
    .into_iter()
    .filter_map(Value::as_str)
    .collect();
    if let Some(spans) = line["spans"].as_array() {
        ids.extend(spans.iter().filter_map(|s| s["request_id"].as_str()));
    }
    ids
}

/// `text` as a third-party crate prints its bytes (`{:?}` of a byte slice, as tokio-postgres
/// logs bound parameters): `"ab"` is `97, 98`.
fn byte_form(text: &str) -> String {
    text.bytes()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where in `log` any `(label, needle)` occurs, as readable (plain or byte) text; empty when
/// none does.
fn find_leaks(log: &str, needles: &[(String, String)]) -> Vec<String> {
    needles
        .iter()
        .flat_map(|(label, needle)| {
            [
                (label.clone(), needle.clone()),
                (format!("{label} (as bytes)"), byte_form(needle)),
            ]
        })
        .filter(|(_, needle)| log.contains(needle.as_str()))
        .map(|(label, needle)| {
            let line = log
                .lines()
                .find(|l| l.contains(needle.as_str()))
                .unwrap_or_default();
            let cut = line.char_indices().nth(400).map_or(line.len(), |(i, _)| i);
            format!("{label} in: {}", &line[..cut])
        })
        .collect()
}

/// The one log line whose message contains `text`.
fn only_line<'a>(lines: &'a [Value], text: &str) -> &'a Value {
    let found: Vec<&Value> = lines.iter().filter(|l| message(l).contains(text)).collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one log line with {text:?}: {found:?}"
    );
    found[0]
}

/// Waits until `count` mails are in the server's mail folder, and answers the token of the
/// newest whose link goes to `page`.
async fn mailed_token(server: &ServerProcess, page: &str, count: usize) -> String {
    let mut mails = Vec::new();
    crate::harness::within(Duration::from_secs(15), "mail", || {
        mails = std::fs::read_dir(&server.mail_dir)
            .map(|entries| {
                // Only finished mails: the mailer writes each to a hidden temporary file
                // first and renames it, so a `.tmp` may be half written.
                let mut files: Vec<_> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect();
                files.sort();
                files
                    .iter()
                    .filter_map(|f| std::fs::read_to_string(f).ok())
                    .map(|raw| auth_infra::test_support::smtp::parse(&raw))
                    .collect()
            })
            .unwrap_or_default();
        let ready = mails.len() >= count;
        async move { ready }
    })
    .await;
    mails
        .iter()
        .rev()
        .find_map(|m| m.token(&format!("/{page}#token=")))
        .unwrap_or_else(|| panic!("no {page} link in the mails"))
}

/// Verification, reset and change-of-address links, and a second factor's secret, codes and
/// challenge, each kept as a canary. Ends every session of the user (the reset does).
async fn mailed_and_second_factor_flows(
    server: &ServerProcess,
    email: &str,
    keep: &mut impl FnMut(&str, &str),
) {
    let verify = mailed_token(server, "verify-email", 1).await;
    keep("verification link token", &verify);
    let res = server
        .post_json("/api/v1/auth/verify-email", &json!({"token": verify}))
        .await;
    assert_eq!(res.status(), 204, "verify email");
    let res = server
        .post_json("/api/v1/auth/password-reset", &json!({"email": email}))
        .await;
    assert_eq!(res.status(), 202);
    let reset = mailed_token(server, "reset-password", 2).await;
    keep("reset link token", &reset);
    let reset_password = format!("canary-ResetPw-{}", random_hex(12));
    keep("password set by reset", &reset_password);
    let res = server
        .post_json(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": reset, "new_password": reset_password}),
        )
        .await;
    assert_eq!(res.status(), 204, "reset");
    let res = server.login(email, &reset_password).await;
    assert_eq!(res.status(), 200);
    let login: Value = res.json().await.expect("login");
    let access = str_field(&login, "access_token").to_owned();
    keep("access token (after reset)", &access);
    keep(
        "refresh token (after reset)",
        str_field(&login, "refresh_token"),
    );

    let res = server
        .post_auth(
            "/api/v1/users/me/email",
            &access,
            Some(&json!({"new_email": unique_email("canary-new"), "password": reset_password})),
        )
        .await;
    assert_eq!(res.status(), 202, "change of address");
    let change = mailed_token(server, "verify-email", 3).await;
    keep("change-of-address link token", &change);

    let res = server
        .post_auth(
            "/api/v1/users/me/mfa/totp",
            &access,
            Some(&json!({"password": reset_password})),
        )
        .await;
    assert_eq!(res.status(), 200, "enrol");
    let enrolment: Value = res.json().await.expect("enrolment");
    let secret = str_field(&enrolment, "secret").to_owned();
    keep("TOTP secret", &secret);
    keep("otpauth URI", str_field(&enrolment, "otpauth_uri"));
    let qr = str_field(&enrolment, "qr_code");
    keep("QR code", qr.rsplit(',').next().unwrap_or(qr));
    let totp = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(totp_rs::Secret::try_from_base32(&secret).expect("base32"))
        .build()
        .expect("totp");
    let now = u64::try_from(chrono::Utc::now().timestamp()).expect("after 1970");
    let code = totp.generate(now).to_string();
    let res = server
        .post_auth(
            "/api/v1/users/me/mfa/totp/confirm",
            &access,
            Some(&json!({"code": code})),
        )
        .await;
    assert_eq!(res.status(), 200, "confirm");
    let codes: Value = res.json().await.expect("codes");
    let recovery: Vec<String> = codes["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    for code in &recovery {
        keep("recovery code", code);
    }
    let res = server.login(email, &reset_password).await;
    let challenge: Value = res.json().await.expect("challenge");
    let mfa_token = str_field(&challenge, "mfa_token").to_owned();
    keep("mfa_token", &mfa_token);
    let res = server
        .post_json(
            "/api/v1/auth/login/mfa",
            &json!({"mfa_token": mfa_token, "code": recovery[0]}),
        )
        .await;
    assert_eq!(res.status(), 200, "second step with a recovery code");
    let pair: Value = res.json().await.expect("pair");
    keep(
        "access token (second factor)",
        str_field(&pair, "access_token"),
    );
    keep(
        "refresh token (second factor)",
        str_field(&pair, "refresh_token"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_of_any_flow_reaches_the_log() {
    let db = CanaryDb::new().await;
    // The strictest level, `trace`: third-party crates (actix-http, tokio-postgres, mio, ...)
    // log too and must not leak what passes through them either. About 4,000 lines (1 MB)
    // for this run, mostly actix-http dispatcher and tokio-postgres connection chatter: noisy
    // but not unreasonable, so no need to fall back to `debug`. (tokio-postgres prints every
    // bound SQL parameter at `debug`; none of the secrets below is ever a parameter, only
    // hashes are: see `no_password_hash_or_email_reaches_the_log_at_debug`.)
    let server = ServerProcess::spawn("canary", Some(&db.url), &[("LOG_LEVEL", "trace")]).await;
    crate::harness::within(Duration::from_secs(20), "ready", || async {
        server.get("/health/ready").await.status() == 200
    })
    .await;
    // (label, secret) pairs that must not appear, as text or as printed bytes.
    let mut secrets: Vec<(String, String)> = vec![("JWT_SECRET_KEY".into(), JWT_KEY.into())];
    if let Some(pw) = &db.password {
        secrets.push(("database password".into(), pw.clone()));
    }
    let mut keep = |label: &str, secret: &str| secrets.push((label.to_owned(), secret.to_owned()));

    let email = unique_email("canary");
    let password = format!("canary-Pw-{}", random_hex(12));
    let new_password = format!("canary-NewPw-{}", random_hex(12));
    let wrong_password = format!("canary-WrongPw-{}", random_hex(12));
    keep("password", &password);
    keep("new password", &new_password);
    keep("wrong password", &wrong_password);

    assert_eq!(server.register(&email, &password).await.status(), 201);
    assert_eq!(server.login(&email, &wrong_password).await.status(), 401);
    let res = server.login(&email, &password).await;
    assert_eq!(res.status(), 200);
    let first: Value = res.json().await.expect("login");
    keep("access token (login)", str_field(&first, "access_token"));
    keep("refresh token (login)", str_field(&first, "refresh_token"));

    let res = server.refresh(str_field(&first, "refresh_token")).await;
    assert_eq!(res.status(), 200);
    let refreshed: Value = res.json().await.expect("refresh");
    keep(
        "access token (refresh)",
        str_field(&refreshed, "access_token"),
    );
    keep(
        "refresh token (refresh)",
        str_field(&refreshed, "refresh_token"),
    );
    let bogus_refresh = format!("canary-Refresh-{}", random_hex(32));
    keep("made-up refresh token", &bogus_refresh);
    assert_eq!(server.refresh(&bogus_refresh).await.status(), 401);

    let res = server
        .post_json(
            "/api/v1/auth/logout",
            &json!({"refresh_token": refreshed["refresh_token"]}),
        )
        .await;
    assert_eq!(res.status(), 204);

    let res = server.login(&email, &password).await;
    assert_eq!(res.status(), 200);
    let second: Value = res.json().await.expect("login");
    let at2 = str_field(&second, "access_token").to_owned();
    keep("access token (second login)", &at2);
    keep(
        "refresh token (second login)",
        str_field(&second, "refresh_token"),
    );
    let res = server
        .post_auth(
            "/api/v1/users/me/password",
            &at2,
            Some(&json!({"current_password": password, "new_password": new_password})),
        )
        .await;
    assert_eq!(res.status(), 204, "password change");

    let res = server.login(&email, &new_password).await;
    assert_eq!(res.status(), 200);
    let third: Value = res.json().await.expect("login");
    let access = str_field(&third, "access_token").to_owned();
    keep("access token (after password change)", &access);
    keep(
        "refresh token (after password change)",
        str_field(&third, "refresh_token"),
    );
    assert_eq!(
        server
            .get_auth("/api/v1/auth/verify", &access)
            .await
            .status(),
        200
    );
    assert_eq!(server.verify_token(&access).await["valid"], true);

    let org = server.new_org(&access, "Canary Org").await;
    let created = server.create_key(&access, &org, "canary").await;
    let key = str_field(&created, "key").to_owned();
    let prefix = str_field(&created, "prefix").to_owned();
    keep("API key", &key);
    keep("API key without its public prefix", &key[prefix.len()..]);
    assert_eq!(server.verify_key(&key).await["valid"], true);
    let res = server
        .post_auth(
            &format!("/api/v1/api-keys/{}/rotate", str_field(&created, "id")),
            &access,
            None,
        )
        .await;
    assert_eq!(res.status(), 201, "rotate");
    let rotated: Value = res.json().await.expect("rotate");
    let rotated_key = str_field(&rotated, "key").to_owned();
    let rotated_prefix = str_field(&rotated, "prefix").to_owned();
    keep("rotated API key", &rotated_key);
    keep(
        "rotated API key without its public prefix",
        &rotated_key[rotated_prefix.len()..],
    );
    assert_eq!(server.verify_key(&rotated_key).await["valid"], true);
    assert_eq!(server.verify_key(&key).await["error"], "REVOKED");
    // The key as a manager credential, too.
    let res = server
        .request(
            Method::GET,
            &format!("/api/v1/api-keys?organization_id={org}"),
        )
        .header("X-API-Key", &rotated_key)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 403, "a key without admin scope is refused");

    let device_id = format!("canary-frame-{}", random_hex(4));
    let res = server
        .post_auth(
            "/api/v1/devices",
            &access,
            Some(&json!({"device_id": device_id, "organization_id": org})),
        )
        .await;
    assert_eq!(res.status(), 201, "device registration");
    let device: Value = res.json().await.expect("device");
    let device_secret = str_field(&device, "device_secret").to_owned();
    keep("device secret", &device_secret);
    let wrong_secret = format!("canary-DevSecret-{}", random_hex(16));
    keep("wrong device secret", &wrong_secret);
    let authenticate = |secret: String| {
        let (server, device_id) = (&server, device_id.clone());
        async move {
            server
                .post_json(
                    "/api/v1/devices/authenticate",
                    &json!({"device_id": device_id, "device_secret": secret}),
                )
                .await
        }
    };
    assert_eq!(authenticate(wrong_secret.clone()).await.status(), 401);
    let res = authenticate(device_secret.clone()).await;
    assert_eq!(res.status(), 200, "device authentication");
    let device_token =
        str_field(&res.json::<Value>().await.expect("token"), "access_token").to_owned();
    keep("device token", &device_token);
    let body = server.verify_token(&device_token).await;
    assert_eq!(body["valid"], true, "{body}");
    assert_eq!(body["token_type"], "device", "{body}");

    // Invalid credentials presented the usual ways.
    let bad_bearer = format!("canary-Bearer-{}", random_hex(24));
    keep("invalid bearer token", &bad_bearer);
    assert_eq!(
        server
            .get_auth("/api/v1/users/me", &bad_bearer)
            .await
            .status(),
        401
    );
    let bad_api_key = format!("canary-ApiKey-{}", random_hex(24));
    keep("invalid X-API-Key", &bad_api_key);
    let res = server
        .request(
            Method::GET,
            &format!("/api/v1/api-keys?organization_id={org}"),
        )
        .header("X-API-Key", &bad_api_key)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 401, "invalid X-API-Key");
    let res = server
        .post_json("/api/v1/api-keys/verify", &json!({"key": bad_api_key}))
        .await;
    assert_eq!(res.status(), 200);

    // The mailed links and the second factor.
    mailed_and_second_factor_flows(&server, &email, &mut keep).await;

    // A JWT's signature segment alone is enough to count as a leaked token.
    let jwts: Vec<(String, String)> = secrets
        .iter()
        .filter(|(l, _)| l.contains("access token") || l.contains("device token"))
        .filter_map(|(l, t)| {
            t.rsplit('.')
                .next()
                .map(|sig| (format!("{l}: signature"), sig.to_owned()))
        })
        .collect();
    secrets.extend(jwts);

    // SIGTERM, as an orchestrator stops it; it must drain, flush and exit 0 in the grace.
    let stopped = server.terminate(Duration::from_secs(10)).await;
    assert!(stopped.graceful, "SIGTERM did not stop the server cleanly");
    let log = stopped.log;
    let lines = json_lines(&log);
    assert!(!lines.is_empty(), "the log is empty");
    assert!(
        lines.iter().any(|l| message(l).contains("login succeeded")),
        "the capture holds the service's own lines"
    );
    let leaks = find_leaks(&log, &secrets);
    eprintln!(
        "log canary: {} JSON lines ({} bytes) at trace, {} secrets checked (plain and as bytes)",
        lines.len(),
        log.len(),
        secrets.len()
    );
    assert!(
        leaks.is_empty(),
        "secrets in the log:\n{}",
        leaks.join("\n")
    );
}

/// docs/security.md: log lines "carry ids, never a password, token, key, secret or email".
/// Stored credential material counts: a bcrypt hash in a log aggregator can be cracked
/// offline. Checked at `debug`, the level an operator turns on to troubleshoot (and so also
/// at `trace`, which includes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_hash_or_email_reaches_the_log_at_debug() {
    let db = TestDb::new().await;
    let server =
        ServerProcess::spawn("hash-canary", Some(db.url()), &[("LOG_LEVEL", "debug")]).await;
    crate::harness::within(Duration::from_secs(20), "ready", || async {
        server.get("/health/ready").await.status() == 200
    })
    .await;
    let email = format!("Canary.Mail.{}@Example.com", random_hex(12));
    let password = format!("canary-Pw-{}", random_hex(12));
    let new_password = format!("canary-NewPw-{}", random_hex(12));
    assert_eq!(server.register(&email, &password).await.status(), 201);
    assert_eq!(server.login(&email, "not the password").await.status(), 401);
    let res = server.login(&email, &password).await;
    assert_eq!(res.status(), 200);
    let access = str_field(&res.json::<Value>().await.expect("login"), "access_token").to_owned();
    let res = server
        .post_auth(
            "/api/v1/users/me/password",
            &access,
            Some(&json!({"current_password": password, "new_password": new_password})),
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(server.login(&email, &new_password).await.status(), 200);

    let log = server.terminate(Duration::from_secs(10)).await.log;
    assert!(!json_lines(&log).is_empty(), "the log is empty");
    let mut needles = vec![
        ("email".to_owned(), email.clone()),
        ("email, lower case".to_owned(), email.to_lowercase()),
    ];
    // Any bcrypt hash (BCRYPT_ROUNDS=4), whatever its version.
    for version in ["2a", "2b", "2y"] {
        needles.push((
            format!("a bcrypt hash (${version}$)"),
            format!("${version}$04$"),
        ));
    }
    let leaks = find_leaks(&log, &needles);
    assert!(
        leaks.is_empty(),
        "stored credentials or emails in the log at debug:\n{}",
        leaks.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lines_an_operator_looks_for_carry_the_request_id() {
    let db = TestDb::new().await;
    let server =
        ServerProcess::spawn("request-ids", Some(db.url()), &[("LOG_LEVEL", "info")]).await;
    crate::harness::within(Duration::from_secs(20), "ready", || async {
        server.get("/health/ready").await.status() == 200
    })
    .await;
    let with_id = |method: Method, path: &str, id: &str| {
        server
            .request(method, path)
            .header("X-Request-Id", id.to_owned())
    };
    let password = format!("canary-Pw-{}", random_hex(8));

    // One login only in this run: the one carrying canary-req-1.
    let email = unique_email("reqid");
    assert_eq!(server.register(&email, &password).await.status(), 201);
    let res = with_id(Method::POST, "/api/v1/auth/login", "canary-req-1")
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "canary-req-1");
    let access = str_field(&res.json::<Value>().await.expect("login"), "access_token").to_owned();

    // A lockout: five failures (the default threshold), each with its own id.
    let locked = unique_email("reqid-locked");
    let lock_ids: Vec<String> = (1..=5).map(|i| format!("canary-lock-{i}")).collect();
    for id in &lock_ids {
        let res = with_id(Method::POST, "/api/v1/auth/login", id)
            .json(&json!({"email": locked, "password": "not the password"}))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 401);
    }

    // An API key revoked.
    let org = server.new_org(&access, "Request Ids").await;
    let created = server.create_key(&access, &org, "to revoke").await;
    let res = with_id(
        Method::POST,
        &format!("/api/v1/api-keys/{}/revoke", str_field(&created, "id")),
        "canary-req-revoke",
    )
    .bearer_auth(&access)
    .send()
    .await
    .expect("send");
    assert_eq!(res.status(), 200);

    let log = server.terminate(Duration::from_secs(10)).await.log;
    let lines = json_lines(&log);
    let mut problems = Vec::new();
    let login = only_line(&lines, "login succeeded");
    if !request_ids(login).contains(&"canary-req-1") {
        problems.push(format!("login succeeded without canary-req-1: {login}"));
    }
    let lockout = only_line(&lines, "lockout started");
    let ids = request_ids(lockout);
    match lock_ids.iter().find(|id| ids.contains(&id.as_str())) {
        Some(id) => eprintln!("lockout started was logged under {id}"),
        None => problems.push(format!(
            "lockout started without a lockout request id: {lockout}"
        )),
    }
    let revoked = only_line(&lines, "API key revoked");
    if !request_ids(revoked).contains(&"canary-req-revoke") {
        problems.push(format!(
            "API key revoked without canary-req-revoke: {revoked}"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
