//! Startup rules: production refuses unsafe configurations; the CLI creates users from stdin.

use std::io::Write as _;
use std::process::{Command, Stdio};

use auth_infra::test_support::TestDb;
use auth_server::config::Environment;
use auth_server::wiring::{self, Store};
use secrecy::SecretString;
use serde_json::Value;

use crate::common::{TestApp, test_config};

#[tokio::test]
async fn production_refuses_unsafe_configurations() {
    let mut config = test_config();
    config.auth_env = Environment::Production;
    let err = Store::open(&config).unwrap_err().to_string();
    assert!(err.contains("DATABASE_URL"), "{err}");

    config.db.url = Some(SecretString::from("postgres://u:p@127.0.0.1:1/x"));
    let store = Store::open(&config).unwrap();
    config.jwt.secret_key = None;
    let err = wiring::app_state(&config, &store).unwrap_err().to_string();
    assert!(err.contains("JWT_SECRET_KEY is required"), "{err}");
    config.jwt.secret_key = Some(SecretString::from("too-short"));
    let err = wiring::app_state(&config, &store).unwrap_err().to_string();
    assert!(err.contains("at least 32 bytes"), "{err}");
    config.jwt.secret_key = Some(SecretString::from("a".repeat(64)));
    let err = wiring::app_state(&config, &store).unwrap_err().to_string();
    assert!(err.contains("placeholder"), "{err}");
    config.jwt.secret_key = Some(SecretString::from("kN3v9QeR7tYb2LmX8pWz4sDf6GhJ1cVa"));
    // Mail: no `.eml` files in production.
    let err = wiring::app_state(&config, &store).unwrap_err().to_string();
    assert!(err.contains("SMTP_URL is required"), "{err}");
    config.mail.smtp_url = Some(SecretString::from("smtp://u:p@127.0.0.1:1"));
    let err = wiring::app_state(&config, &store).unwrap_err().to_string();
    assert!(err.contains("MAIL_FROM is required"), "{err}");
    config.mail.from = Some("Example <auth@example.com>".into());
    assert!(wiring::app_state(&config, &store).is_ok());

    // Development allows the in-memory store and a generated key, but not a short key.
    let mut dev = test_config();
    dev.jwt.secret_key = None;
    let store = Store::open(&dev).unwrap();
    assert!(wiring::app_state(&dev, &store).is_ok());
    dev.jwt.secret_key = Some(SecretString::from("short"));
    assert!(wiring::app_state(&dev, &store).is_err());
}

fn cli(db: &TestDb, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_auth-server"))
        .args(args)
        .env("DATABASE_URL", db.url())
        .env("BCRYPT_ROUNDS", "4")
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_migrates_and_creates_an_admin_from_stdin() {
    let db = TestDb::empty().await;
    let out = cli(&db, &["migrate"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied"));

    let password = "an admin passphrase";
    let out = cli(
        &db,
        &["users", "create", "--email", "Root@Example.com", "--admin"],
        &format!("{password}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("Root@Example.com") && stdout.contains("(admin)"),
        "{stdout}"
    );
    assert!(!stdout.contains(password) && !String::from_utf8_lossy(&out.stderr).contains(password));

    let again = cli(
        &db,
        &["users", "create", "--email", "root@example.com"],
        "another passphrase\n",
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let weak = cli(
        &db,
        &["users", "create", "--email", "weak@example.com"],
        "short\n",
    );
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("at least 8"));
    let as_json = cli(
        &db,
        &["--json", "users", "create", "--email", "Json@example.com"],
        "a json passphrase\n",
    );
    assert!(
        as_json.status.success(),
        "{}",
        String::from_utf8_lossy(&as_json.stderr)
    );
    let created: Value = serde_json::from_slice(&as_json.stdout).unwrap();
    assert_eq!(created["email"], "Json@example.com");
    assert_eq!(created["is_admin"], false);
    assert_eq!(created["display_name"], Value::Null);
    assert!(
        created["id"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
    assert!(created["created_at"].is_string());
    assert!(!String::from_utf8_lossy(&as_json.stdout).contains("a json passphrase"));

    let mut config = test_config();
    config.db.url = Some(SecretString::from(db.url().to_owned()));
    let app = TestApp::serve(config, Some(db)).await;
    let login: Value = app
        .login("root@example.com", password)
        .await
        .json()
        .await
        .unwrap();
    let me: Value = app
        .get_auth("/api/v1/users/me", login["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["is_admin"], true);
    assert_eq!(me["email"], "Root@Example.com");
    app.stop().await;
}

fn cli_json(db: &TestDb, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = cli(db, &all, "");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_organizations_and_keys_and_running_instances_hear_it() {
    let db = TestDb::new().await;
    let out = cli(
        &db,
        &["users", "create", "--email", "owner@example.com"],
        "owner passphrase\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let org = cli_json(
        &db,
        &[
            "organizations",
            "create",
            "--name",
            "Fleet",
            "--owner-email",
            "OWNER@example.com",
        ],
    );
    let org_id = org["id"].as_str().unwrap().to_owned();
    assert_eq!(org["name"], "Fleet");

    let created = cli_json(
        &db,
        &[
            "api-keys",
            "create",
            "--organization",
            &org_id,
            "--name",
            "ingest",
            "--scopes",
            "events:write,events:read",
        ],
    );
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(
        created["scopes"],
        serde_json::json!(["events:read", "events:write"])
    );
    let listed = cli_json(&db, &["api-keys", "list", "--organization", &org_id]);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(
        !listed.to_string().contains(&key),
        "the secret is shown once"
    );
    assert_eq!(
        cli_json(&db, &["api-keys", "info", &key_id])["status"],
        "active"
    );

    // Tables by default.
    let table = cli(&db, &["api-keys", "list", "--organization", &org_id], "");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("ingest") && text.contains("active") && !text.contains(&key),
        "{text}"
    );

    // A running instance caches the key; revoking from the command line reaches it.
    let mut config = test_config();
    config.db.url = Some(SecretString::from(db.url().to_owned()));
    let app = TestApp::serve(config, None).await;
    let verify = |k: String| {
        let app = &app;
        async move {
            app.post_json("/api/v1/api-keys/verify", &serde_json::json!({"key": k}))
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(verify(key.clone()).await["valid"], true);
    let revoked = cli_json(&db, &["api-keys", "revoke", &key_id]);
    assert_eq!(revoked["status"], "revoked");
    let start = std::time::Instant::now();
    while verify(key.clone()).await["error"] != "REVOKED" {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(1),
            "CLI revocation not heard"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let again = cli(&db, &["api-keys", "revoke", &key_id], "");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already revoked"));

    let second = cli_json(
        &db,
        &[
            "api-keys",
            "create",
            "--organization",
            &org_id,
            "--name",
            "n2",
            "--scopes",
            "a",
            "--ttl-days",
            "30",
        ],
    );
    let rotated = cli_json(&db, &["api-keys", "rotate", second["id"].as_str().unwrap()]);
    assert_eq!(rotated["expires_at"], second["expires_at"]);
    assert_eq!(
        verify(rotated["key"].as_str().unwrap().to_owned()).await["valid"],
        true
    );
    assert_eq!(
        verify(second["key"].as_str().unwrap().to_owned()).await["error"],
        "REVOKED"
    );

    let bad = cli(
        &db,
        &[
            "api-keys",
            "create",
            "--organization",
            "nope",
            "--name",
            "x",
            "--scopes",
            "a",
        ],
        "",
    );
    assert!(!bad.status.success());
    let missing = cli(
        &db,
        &["api-keys", "list", "--organization", &uuid_like()],
        "",
    );
    assert!(!missing.status.success());
    app.stop().await;
    drop(db);
}

fn uuid_like() -> String {
    auth_core::model::OrganizationId::generate().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_devices() {
    let db = TestDb::new().await;
    let out = cli(
        &db,
        &["users", "create", "--email", "fleet@example.com"],
        "fleet passphrase\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let org = cli_json(
        &db,
        &[
            "organizations",
            "create",
            "--name",
            "Frames",
            "--owner-email",
            "fleet@example.com",
        ],
    );
    let org_id = org["id"].as_str().unwrap().to_owned();
    let reg = cli_json(
        &db,
        &[
            "devices",
            "register",
            "--organization",
            &org_id,
            "--device-id",
            "frame:hall-1",
            "--name",
            "Hall",
        ],
    );
    assert_eq!(reg["device_id"], "frame:hall-1");
    assert_eq!(reg["name"], "Hall");
    let secret = reg["device_secret"].as_str().unwrap().to_owned();
    let listed = cli_json(&db, &["devices", "list", "--organization", &org_id]);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret));
    assert_eq!(
        cli_json(&db, &["devices", "info", "frame:hall-1"])["status"],
        "active"
    );
    let table = cli(&db, &["devices", "list", "--organization", &org_id], "");
    assert!(String::from_utf8_lossy(&table.stdout).contains("frame:hall-1"));

    let mut config = test_config();
    config.db.url = Some(SecretString::from(db.url().to_owned()));
    let app = TestApp::serve(config, None).await;
    let auth = |s: String| {
        let app = &app;
        async move {
            app.post_json(
                "/api/v1/devices/authenticate",
                &serde_json::json!({"device_id": "frame:hall-1", "device_secret": s}),
            )
            .await
            .status()
            .as_u16()
        }
    };
    assert_eq!(auth(secret.clone()).await, 200);
    let rotated = cli_json(&db, &["devices", "rotate-secret", "frame:hall-1"]);
    let new_secret = rotated["device_secret"].as_str().unwrap().to_owned();
    // The running instance hears the rotation: the old secret fails within a second.
    let start = std::time::Instant::now();
    while auth(secret.clone()).await != 401 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(1),
            "rotation not heard"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(auth(new_secret.clone()).await, 200);
    assert_eq!(
        cli_json(&db, &["devices", "revoke", "frame:hall-1"])["status"],
        "revoked"
    );
    let start = std::time::Instant::now();
    while auth(new_secret.clone()).await != 401 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(1),
            "revocation not heard"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let dup = cli(
        &db,
        &[
            "devices",
            "register",
            "--organization",
            &org_id,
            "--device-id",
            "frame:hall-1",
        ],
        "",
    );
    assert!(String::from_utf8_lossy(&dup.stderr).contains("exists"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_import_keeps_passwords_and_reports_bad_lines() {
    let db = TestDb::empty().await;
    assert!(cli(&db, &["migrate"], "").status.success());
    // Hashes as other systems write them: PHP's $2y$, a $2a$ and a $2b$ at other costs.
    let php = bcrypt::hash_with_result("imported passphrase 1", 5)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let old = bcrypt::hash_with_result("imported passphrase 2", 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoA);
    let file = std::env::temp_dir().join(format!("import-{}.jsonl", uuid::Uuid::now_v7()));
    let lines = [
        serde_json::json!({"email": "One@Example.com", "password_hash": php, "display_name": "One", "created_at": "2020-01-02T03:04:05Z"}).to_string(),
        String::new(),
        serde_json::json!({"email": "two@example.com", "password_hash": old, "is_admin": true}).to_string(),
        serde_json::json!({"email": "not-an-email", "password_hash": php}).to_string(),
        serde_json::json!({"email": "three@example.com", "password_hash": "plaintext-password"}).to_string(),
        "{broken json".to_owned(),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = cli(
        &db,
        &["--json", "users", "import", file.to_str().unwrap()],
        "",
    );
    assert!(
        !out.status.success(),
        "bad lines make the command fail after importing the rest"
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary,
        serde_json::json!({"imported": 2, "already_present": 0, "invalid": 3})
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in ["line 4:", "line 5:", "line 6:"] {
        assert!(stderr.contains(line), "{stderr}");
    }
    assert!(!stderr.contains("plaintext-password"), "{stderr}");
    // Run again: nothing is imported twice.
    let again: Value = serde_json::from_slice(
        &cli(
            &db,
            &["--json", "users", "import", file.to_str().unwrap()],
            "",
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(again["imported"], 0);
    assert_eq!(again["already_present"], 2);
    std::fs::remove_file(&file).unwrap();

    let mut config = test_config();
    config.db.url = Some(SecretString::from(db.url().to_owned()));
    config.passwords.bcrypt_rounds = 4;
    let app = TestApp::serve(config, None).await;
    let login: Value = app
        .login("one@example.com", "imported passphrase 1")
        .await
        .json()
        .await
        .unwrap();
    let me: Value = app
        .get_auth("/api/v1/users/me", login["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["display_name"], "One");
    assert_eq!(me["created_at"], "2020-01-02T03:04:05Z");
    let two: Value = app
        .login("two@example.com", "imported passphrase 2")
        .await
        .json()
        .await
        .unwrap();
    let me: Value = app
        .get_auth("/api/v1/users/me", two["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["is_admin"], true);
    assert_eq!(app.login("two@example.com", "wrong").await.status(), 401);
    app.stop().await;
}

#[test]
fn cors_origins_are_checked_at_start() {
    use auth_server::config::cors_origins;
    let ok = cors_origins(&[
        "https://app.example.com/".into(),
        " http://localhost:3000".into(),
        String::new(),
    ])
    .unwrap();
    assert_eq!(ok, vec!["https://app.example.com", "http://localhost:3000"]);
    for bad in [
        "*",
        "app.example.com",
        "https://app.example.com/path",
        "ftp://x.example",
        "https://",
    ] {
        assert!(cors_origins(&[bad.into()]).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn key_files_under_hs256_are_refused() {
    let mut config = test_config();
    config.jwt.verify_key_files = vec!["old.pub.pem".into()];
    let store = Store::open(&config).unwrap();
    let err = wiring::app_state(&config, &store).unwrap_err().to_string();
    assert!(err.contains("JWT_VERIFY_KEY_FILES"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_environment_value_counts_as_unset() {
    let db = TestDb::empty().await;
    let run = |proxies: &str| {
        Command::new(env!("CARGO_BIN_EXE_auth-server"))
            .arg("migrate")
            .env("DATABASE_URL", db.url())
            .env("LOG_LEVEL", "warn")
            .env("AUTH_TRUSTED_PROXIES", proxies)
            .env("CORS_ORIGINS", "")
            .env("JWT_VERIFY_KEY_FILES", "")
            .env("LOG_FORMAT", "")
            .env("AUTH_CACHE_CAPACITY", "")
            .output()
            .unwrap()
    };
    let out = run("");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A value that is set is still checked.
    let out = run("not-a-cidr");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--trusted-proxies"));
}

/// `prune` prints the rows it deleted per table (a table, or JSON with `--json`), and says
/// so when another instance's pass holds the lock, exiting 0 either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_prune_prints_what_it_deleted() {
    let db = TestDb::new().await;
    db.execute(
        "INSERT INTO users (id, email, email_normalized, password_hash, created_at, updated_at)
         VALUES ('00000000-0000-7000-8000-000000000001', 'old@example.com', 'old@example.com',
                 'x', now(), now());
         WITH s AS (
           INSERT INTO sessions (id, user_id, created_at, expires_at, revoked_at)
           SELECT gen_random_uuid(), '00000000-0000-7000-8000-000000000001',
                  now() - interval '90 days', now() + interval '1 day',
                  now() - interval '31 days'
           FROM generate_series(1, 4) RETURNING id, created_at)
         INSERT INTO refresh_tokens (token_hash, session_id, created_at)
         SELECT sha256(convert_to(s.id::text || g::text, 'UTF8')), s.id, s.created_at
         FROM s CROSS JOIN generate_series(1, 2) g;
         INSERT INTO login_attempts (key, failures, window_started_at)
         SELECT sha256(int4send(g)), 2, now() - interval '1 hour' FROM generate_series(1, 3) g;
         INSERT INTO events (id, at, action, target_type, target_id)
         SELECT gen_random_uuid(), now() - interval '91 days', 'user.login_failed', 'user', 'u'
         FROM generate_series(1, 2) g;
         INSERT INTO one_time_tokens (hash, user_id, purpose, created_at, expires_at, email)
         VALUES (sha256('expired-link'), '00000000-0000-7000-8000-000000000001',
                 'password_reset', now() - interval '2 hours', now() - interval '1 hour',
                 'old@example.com');
         INSERT INTO mfa_challenges (token_hash, user_id, expires_at)
         SELECT sha256(int4send(g)), '00000000-0000-7000-8000-000000000001',
                now() - interval '1 minute'
         FROM generate_series(1, 2) g;
         INSERT INTO password_reset_requests (id, email, requested_at, due_at)
         SELECT gen_random_uuid(), 'old@example.com', now() - interval '2 hours',
                now() - interval '2 hours'
         FROM generate_series(1, 3) g;",
    )
    .await;

    let out = cli(&db, &["prune"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for (table, deleted) in [
        ("sessions", "4"),
        ("refresh_tokens", "8"),
        ("login_attempts", "3"),
        ("one_time_tokens", "1"),
        ("mfa_challenges", "2"),
        ("password_reset_requests", "3"),
        ("events", "2"),
        ("api_key_usage", "0"),
    ] {
        assert!(
            stdout.lines().any(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                cells.get(1) == Some(&table) && cells.get(2) == Some(&deleted)
            }),
            "{table} {deleted}:\n{stdout}"
        );
    }
    assert!(stdout.contains("retention pass done"), "{stdout}");

    let again = cli_json(&db, &["prune"]);
    assert_eq!(again["status"], "completed");
    assert_eq!(
        again["deleted"],
        serde_json::json!({
            "sessions": 0, "refresh_tokens": 0, "login_attempts": 0, "one_time_tokens": 0,
            "mfa_challenges": 0, "password_reset_requests": 0, "events": 0, "api_key_usage": 0
        })
    );

    // Another instance's pass, played by psql holding the lock (skipped without psql).
    let Ok(mut holder) = Command::new("psql")
        .args([
            db.url(),
            "-q",
            "-c",
            &format!(
                "SELECT pg_advisory_lock({})",
                auth_infra::postgres::PRUNE_LOCK_KEY
            ),
            "-c",
            "SELECT pg_sleep(5)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        eprintln!("note: no psql; the skipped pass is not checked here");
        return;
    };
    let started = std::time::Instant::now();
    let skipped = loop {
        let out = cli(&db, &["prune"], "");
        assert!(out.status.success(), "exit 0 when skipped too");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if stdout.contains("skipped") || started.elapsed() > std::time::Duration::from_secs(4) {
            break stdout;
        }
    };
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        skipped.starts_with("skipped: another instance is running a retention pass"),
        "{skipped}"
    );
}

/// The retention settings default to the contract's values and refuse 0 (retention of no
/// days would end reuse detection with the session; an interval of 0 would spin).
#[test]
fn retention_settings_default_and_refuse_zero() {
    let config = test_config();
    assert_eq!(
        config.retention_policy(),
        auth_core::ports::RetentionPolicy::default()
    );
    assert_eq!(
        config.retention.prune_interval(),
        std::time::Duration::from_secs(3600)
    );
    for flag in [
        "--retention-days",
        "--event-retention-days",
        "--prune-interval-seconds",
    ] {
        let err = auth_server::cli::Cli::try_parse_with_env(["auth-server", flag, "0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains(flag), "{err}");
    }
}

/// An instance's first pass comes a little after start, spread over as long again so that
/// instances started together do not all reach for the lock at once.
#[test]
fn the_first_prune_comes_a_little_after_start_with_jitter() {
    use std::time::Duration;
    let hour = Duration::from_secs(3600);
    assert_eq!(
        wiring::first_prune_delay(hour, 0.0),
        Duration::from_secs(60)
    );
    assert_eq!(
        wiring::first_prune_delay(hour, 0.5),
        Duration::from_secs(90)
    );
    assert!(wiring::first_prune_delay(hour, 0.999_999) < Duration::from_secs(120));
    let short = Duration::from_secs(5);
    assert_eq!(wiring::first_prune_delay(short, 0.0), short);
    assert!(wiring::first_prune_delay(short, 0.99) < short * 2);
}

/// `users delete`: refused for an organization's only owner (the account stays and logs in),
/// then, for a member, the account goes with its sessions; a second run finds nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_deletes_a_user_but_not_an_only_owner() {
    let db = TestDb::new().await;
    for email in ["owner@example.com", "member@example.com"] {
        let out = cli(
            &db,
            &["users", "create", "--email", email],
            "a long enough passphrase\n",
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cli_json(
        &db,
        &[
            "organizations",
            "create",
            "--name",
            "Solo",
            "--owner-email",
            "owner@example.com",
        ],
    );
    let refused = cli(&db, &["users", "delete", "owner@example.com"], "");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("only owner of organization"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let mut config = test_config();
    config.db.url = Some(SecretString::from(db.url().to_owned()));
    let app = TestApp::serve(config, None).await;
    let member = app
        .login("member@example.com", "a long enough passphrase")
        .await;
    assert_eq!(member.status(), 200);
    let member: Value = member.json().await.unwrap();

    let deleted = cli(
        &db,
        &["--json", "users", "delete", "member@example.com"],
        "",
    );
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let deleted: Value = serde_json::from_slice(&deleted.stdout).unwrap();
    assert_eq!(deleted["deleted"], member["user"]["id"]);
    // The running instance hears it: the session is over.
    let token = member["access_token"].as_str().unwrap();
    let mut status = 0;
    for _ in 0..50 {
        status = app
            .get_auth("/api/v1/auth/verify", token)
            .await
            .status()
            .as_u16();
        if status == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        status, 401,
        "the deleted account's session ends within a second"
    );
    assert_eq!(
        app.login("member@example.com", "a long enough passphrase")
            .await
            .status(),
        401
    );
    assert_eq!(
        app.login("owner@example.com", "a long enough passphrase")
            .await
            .status(),
        200,
        "the refused deletion changed nothing"
    );

    let again = cli(&db, &["users", "delete", "member@example.com"], "");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no user with email"));
    app.stop().await;
}

#[tokio::test]
async fn a_data_key_that_is_not_32_bytes_of_base64_is_refused() {
    let mut config = test_config();
    let store = Store::open(&config).unwrap();
    for bad in ["c2hvcnQ=", "not base64 at all!", &"QUFB".repeat(12)] {
        config.mfa.data_key = Some(SecretString::from(bad));
        let err = wiring::app_state(&config, &store).unwrap_err().to_string();
        assert!(err.contains("AUTH_DATA_KEY") && !err.contains(bad), "{err}");
    }
    config.mfa.data_key = Some(SecretString::from(
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    ));
    assert!(wiring::app_state(&config, &store).is_ok());
    // Production starts without one (the second factor is then unavailable).
    let mut prod = config.clone();
    prod.auth_env = Environment::Production;
    prod.mfa.data_key = None;
    prod.db.url = Some(SecretString::from("postgres://u:p@127.0.0.1:1/x"));
    prod.jwt.secret_key = Some(SecretString::from("kN3v9QeR7tYb2LmX8pWz4sDf6GhJ1cVa"));
    prod.mail.smtp_url = Some(SecretString::from("smtp://u:p@127.0.0.1:1"));
    prod.mail.from = Some("auth@example.com".into());
    let store = Store::open(&prod).unwrap();
    assert!(wiring::app_state(&prod, &store).is_ok());
}

#[test]
fn mail_settings_are_checked_at_start() {
    use auth_server::config::{MailTransport, public_url};
    let mut config = test_config();
    let settings = config.mail.settings(Environment::Development).unwrap();
    assert!(matches!(settings.transport, MailTransport::Files(_)));
    assert_eq!(settings.public_url, "http://localhost:8000");
    assert_eq!(settings.product, "localhost:8000");
    assert_eq!(settings.from.email.to_string(), "no-reply@localhost");

    let secret = "pa55-w0rd-xyz";
    for bad in [
        format!("smtp://user:{secret}@mail.example.com?tls=opportunistic"),
        format!("http://user:{secret}@mail.example.com"),
    ] {
        config.mail.smtp_url = Some(SecretString::from(bad));
        let err = config.mail.settings(Environment::Development).unwrap_err();
        assert!(err.to_string().contains("SMTP_URL"), "{err}");
        assert!(!err.to_string().contains(secret), "{err}");
    }
    config.mail.smtp_url = Some(SecretString::from(format!(
        "smtps://user:{secret}@mail.example.com"
    )));
    let settings = config.mail.settings(Environment::Development).unwrap();
    assert!(matches!(settings.transport, MailTransport::Smtp(_)));
    assert!(!format!("{settings:?}").contains(secret));
    assert!(!format!("{config:?}").contains(secret));

    config.mail.from = Some("not a mailbox".into());
    assert!(config.mail.settings(Environment::Development).is_err());

    assert_eq!(
        public_url("https://auth.example.com/base/").unwrap(),
        (
            "https://auth.example.com/base".to_owned(),
            "auth.example.com".to_owned()
        )
    );
    for bad in [
        "auth.example.com",
        "https://",
        "https://x.example?a=1",
        "https://u@x.example",
        "ftp://x",
    ] {
        assert!(public_url(bad).is_err(), "{bad}");
    }
}
