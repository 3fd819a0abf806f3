//! The `api-keys` and `devices` commands run remotely (`AUTH_URL` and an organization key with
//! `admin` in `AUTH_API_KEY`) against a running server on Postgres print what the database
//! mode prints for the same data; a missing, wrong or too weak key fails clearly; and
//! `healthcheck` tells a live server from a closed port.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use auth_infra::test_support::TestDb;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::common::{TestApp, str_field, test_config};

/// The binary with a clean slate of the variables that choose the mode.
fn binary(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auth-server"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("AUTH_URL")
        .env_remove("AUTH_API_KEY")
        .env("BCRYPT_ROUNDS", "4")
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Both ways of running a command on the same data.
struct Modes {
    db_url: String,
    base: String,
    admin_key: String,
}

impl Modes {
    fn database(&self, args: &[&str]) -> Output {
        let mut cmd = binary(args);
        cmd.env("DATABASE_URL", &self.db_url);
        run(cmd)
    }

    fn remote_with(&self, key: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = binary(args);
        cmd.env("AUTH_URL", &self.base);
        if let Some(key) = key {
            cmd.env("AUTH_API_KEY", key);
        }
        run(cmd)
    }

    fn remote(&self, args: &[&str]) -> Output {
        self.remote_with(Some(&self.admin_key), args)
    }

    /// Runs `args` both ways and returns (database, remote) standard outputs, each command
    /// having succeeded.
    fn both(&self, args: &[&str]) -> (String, String) {
        let db = self.database(args);
        assert!(db.status.success(), "db {args:?}: {}", text(&db.stderr));
        let remote = self.remote(args);
        assert!(
            remote.status.success(),
            "remote {args:?}: {}",
            text(&remote.stderr)
        );
        (text(&db.stdout), text(&remote.stdout))
    }

    /// [`Self::both`] until the outputs agree (a few tries: the admin key's `last_used_at`,
    /// written every 5 s, may change between the two runs of a list that shows it).
    fn settled(&self, args: &[&str]) -> String {
        let mut last = None;
        for _ in 0..5 {
            let (db, remote) = self.both(args);
            if db == remote {
                return db;
            }
            last = Some((db, remote));
        }
        let (db, remote) = last.unwrap();
        panic!("{args:?} differs:\ndatabase:\n{db}\nremote:\n{remote}");
    }

    fn json(&self, remote: bool, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = if remote {
            self.remote(&all)
        } else {
            self.database(&all)
        };
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            if remote { "remote" } else { "db" },
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out.stdout)))
    }
}

/// What a JSON value looks like: its type, field by field.
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::Object(fields) => {
            Value::Object(fields.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
    }
}

/// What a table looks like: its header cells, its number of lines, and its last lines
/// (the secret's line) up to the secret.
fn table_shape(out: &str) -> (Vec<String>, usize, Vec<String>) {
    let lines: Vec<&str> = out.lines().collect();
    let header = lines
        .get(1)
        .map(|l| l.split('|').map(|c| c.trim().to_owned()).collect())
        .unwrap_or_default();
    let tail = lines
        .iter()
        .filter(|l| !l.starts_with(['+', '|']))
        .map(|l| l.split(':').next().unwrap_or_default().to_owned())
        .collect();
    (header, lines.len(), tail)
}

/// The first cell of a table's first row.
fn first_cell(table: &str) -> String {
    let row = table.lines().nth(3).unwrap_or_default();
    row.split('|').nth(1).unwrap_or_default().trim().to_owned()
}

/// A server on Postgres, an organization, and a key of it with `admin` (made through the API
/// by the owner).
async fn setup(org_name: &str) -> (TestApp, Modes, String) {
    let db = TestDb::new().await;
    let db_url = db.url().to_owned();
    let mut config = test_config();
    config.db.url = Some(SecretString::from(db_url.clone()));
    let app = TestApp::serve(config, Some(db)).await;
    let (_, login) = app.user_with_session().await;
    let token = str_field(&login, "access_token").to_owned();
    let res = app
        .post_auth(
            "/api/v1/organizations",
            &token,
            Some(&json!({"name": org_name})),
        )
        .await;
    assert_eq!(res.status(), 201);
    let org = str_field(&res.json::<Value>().await.unwrap(), "id").to_owned();
    let res = app
        .post_auth(
            "/api/v1/api-keys",
            &token,
            Some(&json!({"organization_id": org, "name": "ops", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(res.status(), 201);
    let admin_key = str_field(&res.json::<Value>().await.unwrap(), "key").to_owned();
    let modes = Modes {
        db_url,
        base: app.base.clone(),
        admin_key,
    };
    (app, modes, org)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_cli_manages_keys_as_the_database_mode_does() {
    let (app, modes, org) = setup("Remote keys").await;
    let create = [
        "api-keys",
        "create",
        "--organization",
        &org,
        "--name",
        "ingest",
        "--scopes",
        "events:write,events:read",
        "--ttl-days",
        "30",
    ];

    // Create: the same body (new id, new key) and the same table either way.
    let by_db = modes.json(false, &create);
    let by_remote = modes.json(true, &create);
    assert_eq!(shape(&by_remote), shape(&by_db), "{by_remote}\n{by_db}");
    for field in ["name", "organization_id", "scopes", "status"] {
        assert_eq!(by_remote[field], by_db[field], "{field}");
    }
    assert_eq!(by_remote["scopes"], json!(["events:read", "events:write"]));
    let remote_id = str_field(&by_remote, "id").to_owned();
    let remote_key = str_field(&by_remote, "key").to_owned();
    assert_eq!(
        app.post_json("/api/v1/api-keys/verify", &json!({"key": remote_key}))
            .await
            .json::<Value>()
            .await
            .unwrap()["valid"],
        true,
        "the key made remotely works"
    );
    let (db_table, remote_table) = modes.both(&create);
    assert_eq!(table_shape(&remote_table), table_shape(&db_table));
    assert!(
        remote_table.contains("key (shown once, store it now): "),
        "{remote_table}"
    );

    // List and info: the very same output, JSON and table, on the same rows.
    let listed = modes.settled(&["--json", "api-keys", "list", "--organization", &org]);
    let listed_body: Value = serde_json::from_str(&listed).unwrap();
    let items = &listed_body["items"];
    assert_eq!(
        items.as_array().unwrap().len(),
        5,
        "the API's {{items}}: {listed_body}"
    );
    assert!(!listed.contains(&remote_key), "the secret is shown once");
    let table = modes.settled(&["api-keys", "list", "--organization", &org]);
    assert!(table.contains("ingest") && table.contains("ops"), "{table}");
    modes.settled(&["--json", "api-keys", "info", &remote_id]);
    modes.settled(&["api-keys", "info", &remote_id]);

    // Rotate: the same body and table; the new key replaces the old one.
    let rotated_db = modes.json(false, &["api-keys", "rotate", str_field(&by_db, "id")]);
    let rotated = modes.json(true, &["api-keys", "rotate", &remote_id]);
    assert_eq!(shape(&rotated), shape(&rotated_db));
    assert_eq!(rotated["expires_at"], by_remote["expires_at"]);
    assert_eq!(rotated["name"], "ingest");
    let old = modes.json(true, &["api-keys", "info", &remote_id]);
    assert_eq!(old["status"], "revoked");
    let db_rotate = modes.database(&["api-keys", "rotate", str_field(&rotated_db, "id")]);
    let remote_rotate = modes.remote(&["api-keys", "rotate", str_field(&rotated, "id")]);
    assert!(
        db_rotate.status.success() && remote_rotate.status.success(),
        "{}",
        text(&remote_rotate.stderr)
    );
    let (db_rotate, remote_rotate) = (text(&db_rotate.stdout), text(&remote_rotate.stdout));
    assert_eq!(table_shape(&remote_rotate), table_shape(&db_rotate));
    let db_new_id = first_cell(&db_rotate);
    let new_id = first_cell(&remote_rotate);

    // Revoke: prints the key as info does now, in both forms; a second revoke fails alike.
    let revoked = modes.remote(&["api-keys", "revoke", &new_id]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    let (info_db, _) = modes.both(&["api-keys", "info", &new_id]);
    assert_eq!(text(&revoked.stdout), info_db);
    let again_remote = modes.remote(&["api-keys", "revoke", &new_id]);
    let again_db = modes.database(&["api-keys", "revoke", &new_id]);
    assert!(!again_remote.status.success() && !again_db.status.success());
    assert!(text(&again_remote.stderr).contains("the key is already revoked"));
    assert!(text(&again_db.stderr).contains("the key is already revoked"));
    assert_eq!(
        modes.json(true, &["api-keys", "info", &new_id]),
        modes.json(false, &["api-keys", "info", &new_id])
    );
    let revoked_json = modes.json(true, &["api-keys", "revoke", &db_new_id]);
    assert_eq!(revoked_json["status"], "revoked");
    assert_eq!(
        revoked_json,
        modes.json(false, &["api-keys", "info", &db_new_id])
    );
    modes.settled(&[
        "--json",
        "api-keys",
        "list",
        "--organization",
        &org,
        "--all",
    ]);

    // Input is checked as in the database mode, before anything is sent.
    let bad = modes.remote(&[
        "api-keys",
        "create",
        "--organization",
        "nope",
        "--name",
        "x",
        "--scopes",
        "a",
    ]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("--organization must be a UUID"),
        "{}",
        text(&bad.stderr)
    );

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_cli_manages_devices_as_the_database_mode_does() {
    let (app, modes, org) = setup("Remote devices").await;
    let register = |id: &'static str| {
        [
            "devices",
            "register",
            "--organization",
            org.as_str(),
            "--device-id",
            id,
            "--name",
            "Hall",
        ]
    };

    // Register: the same body and the same table (with the secret once) either way.
    let by_db = modes.json(false, &register("frame:db-1"));
    let by_remote = modes.json(true, &register("frame:remote-1"));
    assert_eq!(shape(&by_remote), shape(&by_db));
    for field in ["name", "organization_id", "metadata", "status"] {
        assert_eq!(by_remote[field], by_db[field], "{field}");
    }
    let secret = str_field(&by_remote, "device_secret").to_owned();
    let auth = app
        .post_json(
            "/api/v1/devices/authenticate",
            &json!({"device_id": "frame:remote-1", "device_secret": secret}),
        )
        .await;
    assert_eq!(auth.status(), 200, "the device registered remotely works");
    let db_table = modes.database(&register("frame:db-2"));
    let remote_table = modes.remote(&register("frame:remote-2"));
    assert!(
        remote_table.status.success(),
        "{}",
        text(&remote_table.stderr)
    );
    let (db_table, remote_table) = (text(&db_table.stdout), text(&remote_table.stdout));
    assert_eq!(table_shape(&remote_table), table_shape(&db_table));
    assert_eq!(
        table_shape(&remote_table).0,
        [
            "",
            "device id",
            "name",
            "organization",
            "status",
            "created",
            "last authenticated",
            ""
        ]
    );
    assert!(
        remote_table.contains("frame:remote-2")
            && remote_table.contains("secret (shown once, store it on the device now): "),
        "{remote_table}"
    );

    // List and info: the very same output.
    let listed = modes.settled(&["--json", "devices", "list", "--organization", &org]);
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap()["items"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert!(!listed.contains(&secret));
    modes.settled(&["devices", "list", "--organization", &org]);
    modes.settled(&["--json", "devices", "info", "frame:remote-1"]);
    modes.settled(&["devices", "info", "frame:db-1"]);

    // Rotate the secret: the same body and lines; the old secret stops working.
    let rotated_db = modes.json(false, &["devices", "rotate-secret", "frame:db-1"]);
    let rotated = modes.json(true, &["devices", "rotate-secret", "frame:remote-1"]);
    assert_eq!(shape(&rotated), shape(&rotated_db));
    assert_eq!(rotated["device_id"], "frame:remote-1");
    let auth = app
        .post_json(
            "/api/v1/devices/authenticate",
            &json!({"device_id": "frame:remote-1", "device_secret": secret}),
        )
        .await;
    assert_eq!(auth.status(), 401, "the old secret is refused");
    let lines_db = text(
        &modes
            .database(&["devices", "rotate-secret", "frame:db-2"])
            .stdout,
    );
    let lines_remote = text(
        &modes
            .remote(&["devices", "rotate-secret", "frame:remote-2"])
            .stdout,
    );
    assert_eq!(table_shape(&lines_remote).2, table_shape(&lines_db).2);
    assert!(
        lines_remote.starts_with("device frame:remote-2\n"),
        "{lines_remote}"
    );

    // Revoke: prints the device as info does now; a second revoke fails alike.
    let revoked = modes.remote(&["devices", "revoke", "frame:remote-1"]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    let (info_db, _) = modes.both(&["devices", "info", "frame:remote-1"]);
    assert_eq!(text(&revoked.stdout), info_db);
    let revoked_json = modes.json(true, &["devices", "revoke", "frame:db-1"]);
    assert_eq!(revoked_json["status"], "revoked");
    assert_eq!(
        revoked_json,
        modes.json(false, &["devices", "info", "frame:db-1"])
    );
    let again_remote = modes.remote(&["devices", "revoke", "frame:db-1"]);
    let again_db = modes.database(&["devices", "revoke", "frame:db-1"]);
    assert!(!again_remote.status.success() && !again_db.status.success());
    assert!(text(&again_remote.stderr).contains("the device is already revoked"));
    assert!(text(&again_db.stderr).contains("the device is already revoked"));
    let taken = modes.remote(&register("frame:db-2"));
    assert!(!taken.status.success());
    assert!(text(&taken.stderr).contains("a device with this id exists"));

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_cli_needs_an_admin_key_and_says_so() {
    let (app, modes, org) = setup("Remote refusals").await;
    let list = ["api-keys", "list", "--organization", org.as_str()];

    let missing = modes.remote_with(None, &list);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("AUTH_API_KEY is not set"),
        "{}",
        text(&missing.stderr)
    );
    let empty = modes.remote_with(Some(""), &list);
    assert!(!empty.status.success());
    assert!(text(&empty.stderr).contains("AUTH_API_KEY is not set"));

    let wrong = modes.remote_with(Some("ak_live_not_a_key"), &list);
    assert!(!wrong.status.success());
    let stderr = text(&wrong.stderr);
    assert!(stderr.contains("refused AUTH_API_KEY"), "{stderr}");
    assert!(
        !stderr.contains("ak_live_not_a_key"),
        "the key is not echoed"
    );

    let reader = modes.json(
        true,
        &[
            "api-keys",
            "create",
            "--organization",
            &org,
            "--name",
            "reader",
            "--scopes",
            "read",
        ],
    );
    let weak = modes.remote_with(
        Some(str_field(&reader, "key")),
        &["devices", "list", "--organization", &org],
    );
    assert!(!weak.status.success());
    assert!(
        text(&weak.stderr).contains("lacks the `admin` scope"),
        "{}",
        text(&weak.stderr)
    );

    // Another organization's keys are not there for this one's key.
    let other = modes.remote(&[
        "api-keys",
        "list",
        "--organization",
        &uuid::Uuid::now_v7().to_string(),
    ]);
    assert!(!other.status.success());
    assert!(text(&other.stderr).contains("no such API key or organization"));

    // Nothing answering at the URL.
    let closed = closed_port();
    let mut cmd = binary(&list);
    cmd.env("AUTH_URL", format!("http://127.0.0.1:{closed}"))
        .env("AUTH_API_KEY", &modes.admin_key);
    let unreachable = run(cmd);
    assert!(!unreachable.status.success());
    assert!(
        text(&unreachable.stderr).contains("did not answer"),
        "{}",
        text(&unreachable.stderr)
    );
    app.stop().await;
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_tells_a_live_server_from_a_closed_port() {
    let app = TestApp::start(crate::common::Backend::Memory).await;
    let port = app.base.rsplit(':').next().unwrap().to_owned();

    let live = run(binary(&["healthcheck", "--url", &app.base]));
    assert_eq!(live.status.code(), Some(0), "{}", text(&live.stderr));
    // By default, this host's PORT, also when HOST is the wildcard address.
    let mut cmd = binary(&["healthcheck"]);
    cmd.env("PORT", &port).env("HOST", "0.0.0.0");
    let local = run(cmd);
    assert_eq!(local.status.code(), Some(0), "{}", text(&local.stderr));
    let mut cmd = binary(&["healthcheck"]);
    cmd.env("AUTH_URL", &app.base);
    assert_eq!(run(cmd).status.code(), Some(0));

    let closed = closed_port();
    let started = std::time::Instant::now();
    let dead = run(binary(&[
        "healthcheck",
        "--url",
        &format!("http://127.0.0.1:{closed}"),
    ]));
    assert_eq!(dead.status.code(), Some(1));
    assert!(
        text(&dead.stderr).contains("/health/ready"),
        "{}",
        text(&dead.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    app.stop().await;
}

/// `api-keys usage` prints the service's `GET /api-keys/{id}/usage` body, the same against
/// the database and through the API, per hour and per day, and refuses a broken range with
/// exit status 1 before asking anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_usage_prints_what_the_endpoint_answers() {
    let (app, modes, org) = setup("Usage").await;
    let verify = |required: Value| {
        let key = modes.admin_key.clone();
        let app = &app;
        async move {
            app.post_json(
                "/api/v1/api-keys/verify",
                &json!({"key": key, "required_scopes": required}),
            )
            .await
            .json::<Value>()
            .await
            .unwrap()
        }
    };
    for _ in 0..3 {
        assert_eq!(verify(json!(["x:read"])).await["valid"], true);
    }
    app.keys.flush_usage().await.unwrap();
    let listed = modes.json(true, &["api-keys", "list", "--organization", &org]);
    let id = str_field(&listed["items"][0], "id").to_owned();
    let by_hour = modes.settled(&["--json", "api-keys", "usage", &id]);
    let body: Value = serde_json::from_str(&by_hour).unwrap();
    assert_eq!(body["granularity"], "hour");
    assert_eq!(body["items"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["items"][0]["valid"], 3, "{body}");
    let by_day = modes.settled(&["--json", "api-keys", "usage", &id, "--granularity", "day"]);
    assert_eq!(
        serde_json::from_str::<Value>(&by_day).unwrap()["items"][0]["valid"],
        3
    );
    let table = modes.settled(&["api-keys", "usage", &id]);
    assert!(
        table.contains("insufficient_scope") && table.contains("| 3 "),
        "{table}"
    );
    for args in [
        vec!["api-keys", "usage", &id, "--granularity", "week"],
        vec!["api-keys", "usage", &id, "--from", "yesterday"],
        vec!["api-keys", "usage", &id, "--from", "2020-01-01T00:00:00Z"],
    ] {
        for out in [modes.database(&args), modes.remote(&args)] {
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            assert!(
                text(&out.stderr).contains("\nerror: --")
                    || text(&out.stderr).starts_with("error: --"),
                "{}",
                text(&out.stderr)
            );
        }
    }
    app.stop().await;
}
