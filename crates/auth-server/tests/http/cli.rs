//! The command line as an operator meets it: each command's help lists the settings it reads
//! (all of them under `serve` only), an error is printed once, logs carry no colour codes
//! unless written to a terminal, and a database command without `DATABASE_URL` says what to
//! do.

use std::process::{Command, Output, Stdio};

use auth_server::cli::{Cli, Command as Sub};

/// The binary with none of the settings of this machine's environment that matter here.
fn binary(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auth-server"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("AUTH_URL")
        .env_remove("AUTH_API_KEY")
        .env_remove("NO_COLOR")
        .env_remove("LOG_FORMAT")
        .env_remove("AUTH_ENV")
        .env("LOG_LEVEL", "info")
        .env("AUTH_MAIL_DIR", std::env::temp_dir())
        .stdin(Stdio::null());
    cmd
}

fn run(args: &[&str]) -> Output {
    binary(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn help(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--help");
    let out = run(&all);
    assert!(out.status.success(), "{all:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn each_help_lists_the_settings_its_command_reads() {
    let serve = help(&["serve"]);
    for setting in [
        "JWT_SECRET_KEY",
        "CORS_ORIGINS",
        "SMTP_URL",
        "DATABASE_URL",
        "PORT",
    ] {
        assert!(serve.contains(setting), "serve --help lacks {setting}");
    }
    let top = help(&[]);
    assert!(top.lines().count() < 40, "auth-server --help:\n{top}");
    assert!(!top.contains("JWT_SECRET_KEY"), "{top}");
    assert!(top.contains("serve --help"), "{top}");
    for command in [
        &["migrate"][..],
        &["users", "create"],
        &["organizations", "create"],
        &["api-keys", "list"],
        &["devices", "register"],
        &["events", "list"],
        &["prune"],
    ] {
        let text = help(command);
        assert!(
            text.lines().count() < 100,
            "{command:?} --help has {} lines:\n{text}",
            text.lines().count()
        );
        assert!(text.contains("DATABASE_URL"), "{command:?}: {text}");
        for other in [
            "JWT_SECRET_KEY",
            "CORS_ORIGINS",
            "SMTP_URL",
            "AUTH_LOCKOUT_THRESHOLD",
        ] {
            assert!(!text.contains(other), "{command:?} --help lists {other}");
        }
    }
    assert!(help(&["users", "create"]).contains("BCRYPT_ROUNDS"));
    assert!(help(&["api-keys", "create"]).contains("AUTH_API_KEY_PREFIX"));
    let health = help(&["healthcheck"]);
    assert!(
        health.contains("PORT") && !health.contains("DATABASE_URL"),
        "{health}"
    );
}

#[test]
fn hidden_settings_still_parse_before_or_after_the_subcommand() {
    let parsed = Cli::try_parse_with_env([
        "auth-server",
        "--port",
        "9001",
        "users",
        "create",
        "--email",
        "a@example.com",
        "--lockout-threshold",
        "7",
    ])
    .unwrap();
    assert_eq!(parsed.config.http.port, 9001);
    assert_eq!(parsed.config.lockout.threshold, 7);
    assert!(matches!(parsed.command, Some(Sub::Users(_))));
    let serve = Cli::try_parse_with_env(["auth-server", "serve", "--port", "9002"]).unwrap();
    assert_eq!(serve.config.http.port, 9002);
    let default = Cli::try_parse_with_env(["auth-server", "--port", "9003"]).unwrap();
    assert_eq!(default.config.http.port, 9003);
    assert!(default.command.is_none());
}

#[test]
fn an_error_is_printed_once() {
    let out = run(&["migrate"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.matches("DATABASE_URL is not set").count(),
        1,
        "{stderr}"
    );
    // In production the error is one JSON log line, and nothing else.
    let mut cmd = binary(&["migrate"]);
    cmd.env("LOG_FORMAT", "json");
    let out = cmd.output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.matches("DATABASE_URL is not set").count(),
        1,
        "{stderr}"
    );
    let line: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
    assert_eq!(line["level"], "ERROR");
}

#[test]
fn a_database_command_without_database_url_says_what_to_do() {
    for command in [
        &["migrate"][..],
        &[
            "organizations",
            "create",
            "--name",
            "A",
            "--owner-email",
            "a@example.com",
        ],
        &["api-keys", "list", "--organization", "x"],
        &["prune"],
    ] {
        let out = run(command);
        assert!(!out.status.success());
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("export DATABASE_URL=postgres://") && stderr.contains("--database-url"),
            "{command:?}: {stderr}"
        );
    }
    let stderr = text(&run(&["devices", "list", "--organization", "x"]).stderr);
    assert!(stderr.contains("--url"), "{stderr}");
}

#[test]
fn logs_carry_no_colour_codes_when_not_on_a_terminal_or_with_no_color() {
    // stderr is a pipe here: no colour, with or without NO_COLOR.
    for no_color in [None, Some("1")] {
        let mut cmd = binary(&["migrate"]);
        if let Some(value) = no_color {
            cmd.env("NO_COLOR", value);
        }
        let out = cmd.output().unwrap();
        let stderr = text(&out.stderr);
        assert!(
            !stderr.contains('\u{1b}'),
            "NO_COLOR={no_color:?}: {stderr:?}"
        );
    }
    // A log line, not only the final error.
    let mut cmd = binary(&["serve", "--port", "1", "--host", "256.0.0.1"]);
    let stderr = text(&cmd.output().unwrap().stderr);
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    // A clap error in a pipe has none either.
    let stderr = text(&run(&["--no-such-flag"]).stderr);
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");

    use auth_server::telemetry::colour;
    let set = std::ffi::OsStr::new("1");
    assert!(colour(true, None));
    assert!(colour(true, Some(std::ffi::OsStr::new(""))));
    assert!(!colour(true, Some(set)));
    assert!(!colour(false, None));
}

/// The binary on `db`, as an operator runs it: `DATABASE_URL` in the environment.
fn on_db(db: &auth_infra::test_support::TestDb, args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = binary(args)
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

fn ok(out: Output, what: &[&str]) -> String {
    assert!(out.status.success(), "{what:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn json_of(db: &auth_infra::test_support::TestDb, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(on_db(db, &all, ""), &all)).unwrap()
}

/// The keys of a JSON object, sorted.
fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_list_and_members_print_the_api_bodies() {
    let db = auth_infra::test_support::TestDb::new().await;
    for email in ["owner@example.com", "loner@example.com"] {
        ok(
            on_db(
                &db,
                &["users", "create", "--email", email],
                "a fine passphrase\n",
            ),
            &[email],
        );
    }
    let org = json_of(
        &db,
        &[
            "organizations",
            "create",
            "--name",
            "Fleet",
            "--owner-email",
            "owner@example.com",
        ],
    );
    let org_id = org["id"].as_str().unwrap().to_owned();

    let list = json_of(
        &db,
        &["organizations", "list", "--user", "owner@example.com"],
    );
    let typed: auth_api::OrganizationList = serde_json::from_value(list.clone()).unwrap();
    assert_eq!(typed.items.len(), 1);
    assert_eq!(typed.items[0].role, auth_api::Role::Owner);
    assert_eq!(keys(&list), ["items"]);
    assert_eq!(keys(&list["items"][0]), ["id", "name", "role"]);
    assert_eq!(list["items"][0]["id"], org_id.as_str());
    // Without --user: every organization, as the API's organization bodies.
    let all = json_of(&db, &["organizations", "list"]);
    assert_eq!(all["items"].as_array().unwrap().len(), 1, "{all}");
    assert_eq!(keys(&all["items"][0]), ["created_at", "id", "name"]);
    assert_eq!(all["items"][0]["id"], org_id.as_str());
    let none = json_of(
        &db,
        &["organizations", "list", "--user", "loner@example.com"],
    );
    assert_eq!(none, serde_json::json!({"items": []}));
    let table = ok(
        on_db(
            &db,
            &["organizations", "list", "--user", "owner@example.com"],
            "",
        ),
        &["list"],
    );
    assert!(
        table.contains("Fleet") && table.contains("owner"),
        "{table}"
    );

    let members = json_of(&db, &["organizations", "members", &org_id]);
    let typed: auth_api::MemberList = serde_json::from_value(members.clone()).unwrap();
    assert_eq!(typed.items.len(), 1);
    assert_eq!(typed.items[0].email, "owner@example.com");
    assert_eq!(keys(&members["items"][0]), ["email", "role", "user_id"]);
    let table = ok(
        on_db(&db, &["organizations", "members", &org_id], ""),
        &["members"],
    );
    assert!(table.contains("owner@example.com"), "{table}");
    let missing = on_db(
        &db,
        &[
            "organizations",
            "members",
            "00000000-0000-0000-0000-000000000000",
        ],
        "",
    );
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no organization"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_named_as_in_the_api_and_their_old_names_both_work() {
    let db = auth_infra::test_support::TestDb::new().await;
    ok(
        on_db(
            &db,
            &["users", "create", "--email", "o@example.com"],
            "a fine passphrase\n",
        ),
        &["create"],
    );
    let org = json_of(
        &db,
        &[
            "organizations",
            "create",
            "--name",
            "Keys",
            "--owner-email",
            "o@example.com",
        ],
    );
    let org_id = org["id"].as_str().unwrap();
    let base = [
        "api-keys",
        "create",
        "--organization",
        org_id,
        "--scopes",
        "read",
    ];
    let mut new_name = base.to_vec();
    new_name.extend(["--name", "new", "--expires-in-days", "7"]);
    let mut old_name = base.to_vec();
    old_name.extend(["--name", "old", "--ttl-days", "7"]);
    for args in [&new_name, &old_name] {
        let created = json_of(&db, args);
        assert!(created["expires_at"].is_string(), "{args:?}: {created}");
    }
    let bad = on_db(
        &db,
        &[&base[..], &["--name", "x", "--expires-in-days", "0"]].concat(),
        "",
    );
    assert!(text(&bad.stderr).contains("--expires-in-days must be 1..=3650"));
    let old = json_of(&db, &["api-keys", "list", "--organization", org_id]);
    let revoked_id = old["items"][0]["id"].as_str().unwrap().to_owned();
    json_of(&db, &["api-keys", "revoke", &revoked_id]);
    let active = json_of(&db, &["api-keys", "list", "--organization", org_id]);
    assert_eq!(active["items"].as_array().unwrap().len(), 1);
    for flag in ["--include-revoked", "--all"] {
        let all = json_of(&db, &["api-keys", "list", "--organization", org_id, flag]);
        assert_eq!(all["items"].as_array().unwrap().len(), 2, "{flag}");
    }

    // devices register --metadata: stored and shown as the API shows it.
    let registered = json_of(
        &db,
        &[
            "devices",
            "register",
            "--organization",
            org_id,
            "--device-id",
            "cam-1",
            "--metadata",
            r#"{"site":"north","floor":2}"#,
        ],
    );
    assert_eq!(
        registered["metadata"],
        serde_json::json!({"site": "north", "floor": 2})
    );
    let info = json_of(&db, &["devices", "info", "cam-1"]);
    assert_eq!(info["metadata"]["site"], "north");
    for (bad, says) in [("[1]", "JSON object"), ("{nope", "not JSON")] {
        let out = on_db(
            &db,
            &[
                "devices",
                "register",
                "--organization",
                org_id,
                "--device-id",
                "cam-2",
                "--metadata",
                bad,
            ],
            "",
        );
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains(says),
            "{bad}: {}",
            text(&out.stderr)
        );
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn start_up_errors_say_where_and_what_to_change() {
    // The port is taken: the address and the PORT setting are named.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(&["serve", "--host", "127.0.0.1", "--port", &port]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")) && stderr.contains("PORT"),
        "{stderr}"
    );
    drop(taken);

    // Another scheme: what was expected, and not the password.
    let mut cmd = binary(&["migrate"]);
    cmd.env("DATABASE_URL", "mysql://root:hunter2@127.0.0.1/app");
    let stderr = text(&cmd.output().unwrap().stderr);
    assert!(stderr.contains("expected postgres://"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    // Refused: the host and port that refused.
    let closed = closed_port();
    let mut cmd = binary(&["migrate"]);
    cmd.env(
        "DATABASE_URL",
        format!("postgres://u:p@127.0.0.1:{closed}/app?sslmode=disable"),
    );
    let stderr = text(&cmd.output().unwrap().stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{closed}")), "{stderr}");
}

#[test]
fn production_checks_its_keys_before_trying_the_database() {
    let closed = closed_port();
    let mut cmd = binary(&["serve", "--host", "127.0.0.1", "--port", "0"]);
    cmd.env("AUTH_ENV", "production")
        .env(
            "DATABASE_URL",
            format!("postgres://u:p@127.0.0.1:{closed}/app?sslmode=disable"),
        )
        .env("JWT_SECRET_KEY", "too-short");
    let started = std::time::Instant::now();
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("JWT_SECRET_KEY"), "{stderr}");
    assert!(!stderr.contains(&format!("127.0.0.1:{closed}")), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn the_start_says_readiness_waits_for_the_database() {
    use std::io::BufRead as _;
    let closed = closed_port();
    let mut child = binary(&["serve", "--host", "127.0.0.1", "--port", "0"])
        .env(
            "DATABASE_URL",
            format!("postgres://u:p@127.0.0.1:{closed}/app?sslmode=disable"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.unwrap();
        let done = line.contains("auth-server listening");
        seen.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let log = seen.join("\n");
    assert!(
        log.contains("readiness (GET /health/ready) answers 503 until the database"),
        "{log}"
    );
    assert!(log.contains(&format!("127.0.0.1:{closed}")), "{log}");
}

/// The `users` administration commands against a database: list and info print the API's
/// bodies, set-admin / disable / enable change the account (the last administrator is
/// refused), unlock clears a lockout, set-password replaces the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_administration_commands_do_what_the_api_does() {
    let db = auth_infra::test_support::TestDb::new().await;
    let pw = "a long enough passphrase\n";
    ok(
        on_db(
            &db,
            &["users", "create", "--email", "boss@example.com", "--admin"],
            pw,
        ),
        &["create boss"],
    );
    ok(
        on_db(&db, &["users", "create", "--email", "ada@example.com"], pw),
        &["create ada"],
    );
    let list = json_of(&db, &["users", "list", "--email", "EXAMPLE.COM"]);
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(
        keys(&list["items"][0]),
        [
            "created_at",
            "disabled",
            "display_name",
            "email",
            "email_verified",
            "id",
            "is_admin",
            "last_login_at",
            "mfa_enabled"
        ]
    );
    let page = json_of(&db, &["users", "list", "--limit", "1"]);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert!(page["next_after"].is_string(), "{page}");

    // The only administrator keeps the right; another may be made and then demote it.
    let refused = on_db(
        &db,
        &["users", "set-admin", "boss@example.com", "--off"],
        "",
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("enabled administrator"),
        "{}",
        text(&refused.stderr)
    );
    let granted = json_of(&db, &["users", "set-admin", "ada@example.com", "--on"]);
    assert_eq!(granted["is_admin"], true);
    let demoted = json_of(&db, &["users", "set-admin", "boss@example.com", "--off"]);
    assert_eq!(demoted["is_admin"], false);

    let disabled = json_of(&db, &["users", "disable", "boss@example.com"]);
    assert_eq!(disabled["disabled"], true);
    let info = json_of(&db, &["users", "info", "boss@example.com"]);
    assert_eq!(info["disabled"], true);
    assert_eq!(info["organizations"], serde_json::json!([]));
    let enabled = json_of(&db, &["users", "enable", "boss@example.com"]);
    assert_eq!(enabled["disabled"], false);

    let unlocked = json_of(&db, &["users", "unlock", "boss@example.com"]);
    assert!(unlocked["unlocked"].is_string());
    ok(
        on_db(
            &db,
            &["users", "set-password", "boss@example.com"],
            "another long passphrase\n",
        ),
        &["set-password"],
    );
    let short = on_db(
        &db,
        &["users", "set-password", "boss@example.com"],
        "short\n",
    );
    assert!(!short.status.success(), "the policy applies");
    let missing = on_db(&db, &["users", "info", "nobody@example.com"], "");
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("no user"),
        "{}",
        text(&missing.stderr)
    );
}

/// JSON lines printed by `events list --json`, each an API event.
fn event_lines(out: &str) -> Vec<auth_api::AuditEvent> {
    out.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_list_prints_the_trail_as_json_lines_and_follows_it() {
    let db = auth_infra::test_support::TestDb::new().await;
    ok(
        on_db(
            &db,
            &["users", "create", "--email", "auditor@example.com"],
            "a fine passphrase\n",
        ),
        &["users create"],
    );
    let org = json_of(
        &db,
        &[
            "organizations",
            "create",
            "--name",
            "Audited",
            "--owner-email",
            "auditor@example.com",
        ],
    );
    let org_id = org["id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for name in ["one", "two", "three"] {
        let key = json_of(
            &db,
            &[
                "api-keys",
                "create",
                "--organization",
                &org_id,
                "--name",
                name,
                "--scopes",
                "read",
            ],
        );
        let id = key["id"].as_str().unwrap().to_owned();
        ok(on_db(&db, &["api-keys", "revoke", &id], ""), &["revoke"]);
        ids.push(id);
    }
    let list = |extra: &[&str]| {
        let mut args = vec!["--json", "events", "list", "--organization", &org_id];
        args.extend_from_slice(extra);
        event_lines(&ok(on_db(&db, &args, ""), &args))
    };
    let revoked = list(&["--action", "api_key.revoked"]);
    let targets: Vec<&str> = revoked.iter().map(|e| e.target.id.as_str()).collect();
    assert_eq!(targets, ids);
    for event in &revoked {
        // Done at the command line: the service's own doing, with no address.
        assert_eq!(event.actor.kind, auth_api::ActorType::System);
        assert!(event.ip.is_none());
        assert_eq!(event.organization_id.unwrap().to_string(), org_id);
    }
    let after = revoked[0].seq.to_string();
    let rest = list(&["--action", "api_key.revoked", "--after", &after]);
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|e| e.seq > revoked[0].seq));
    assert_eq!(list(&["--limit", "1"]).len(), 1);
    let table = ok(
        on_db(&db, &["events", "list", "--organization", &org_id], ""),
        &["table"],
    );
    assert!(table.contains("api_key.revoked"), "{table}");
    // The user's own trail, and every event.
    let mine = event_lines(&ok(
        on_db(
            &db,
            &["--json", "events", "list", "--user", "auditor@example.com"],
            "",
        ),
        &["--user"],
    ));
    assert!(
        mine.iter().any(|e| e.action == "user.registered"),
        "{mine:?}"
    );
    assert!(!mine.iter().any(|e| e.action == "api_key.revoked"));

    // Bad input: said once, nothing printed on stdout.
    for (args, says) in [
        (
            vec!["events", "list", "--action", "api_key.exploded"],
            "--action",
        ),
        (
            vec![
                "events",
                "list",
                "--organization",
                "00000000-0000-0000-0000-000000000000",
            ],
            "no organization",
        ),
        (vec!["events", "list", "--organization", "nope"], "UUID"),
    ] {
        let out = on_db(&db, &args, "");
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.matches(says).count(), 1, "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }

    // Following: a revocation made after the start is printed as it happens.
    let mut follower = binary(&[
        "--json",
        "events",
        "list",
        "--organization",
        &org_id,
        "--after",
        &revoked[2].seq.to_string(),
        "--follow",
    ])
    .env("DATABASE_URL", db.url())
    .env("LOG_LEVEL", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut found = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let event: auth_api::AuditEvent = serde_json::from_str(&line).unwrap();
            found.push(event.clone());
            if event.action == "api_key.revoked" {
                break;
            }
        }
        found
    });
    let key = json_of(
        &db,
        &[
            "api-keys",
            "create",
            "--organization",
            &org_id,
            "--name",
            "late",
            "--scopes",
            "read",
        ],
    );
    let late = key["id"].as_str().unwrap().to_owned();
    ok(on_db(&db, &["api-keys", "revoke", &late], ""), &["revoke"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !lines.is_finished() {
        assert!(std::time::Instant::now() < deadline, "not followed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    follower.kill().unwrap();
    let _ = follower.wait();
    let found = lines.join().unwrap();
    let revoked_late: Vec<_> = found
        .iter()
        .filter(|e| e.action == "api_key.revoked")
        .collect();
    assert_eq!(revoked_late.len(), 1, "{found:?}");
    assert_eq!(revoked_late[0].target.id, late);
    // Nothing printed twice, nothing at or before --after.
    let mut seqs: Vec<i64> = found.iter().map(|e| e.seq).collect();
    assert!(seqs.iter().all(|s| *s > revoked[2].seq));
    seqs.dedup();
    assert_eq!(seqs.len(), found.len());
}
