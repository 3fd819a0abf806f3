//! The real `auth-server` binary as an operator runs it: a separate process configured through
//! its environment, on a port of its own, its stderr captured, killed when dropped. Plus an
//! owned throwaway Postgres cluster (`scripts/pg-temp.sh`) that a test can pause and resume.

use std::io::Read as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{Value, json};

/// The HS256 key every instance signs with: 32+ bytes, random-looking, shared by all
/// instances so a token issued by one verifies on another.
pub const JWT_KEY: &str = "Zq7vK2pX9mR4tW8yB3nL6cF1hJ5sD0gQ-ops.e4Hu";

/// The password of users made by [`ServerProcess::user_with_session`].
pub const PASSWORD: &str = "operations test passphrase";

/// How long an instance may take to answer `/health/live` after it was spawned.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A running `auth-server serve` process.
pub struct ServerProcess {
    pub name: String,
    pub base: String,
    pub client: Client,
    /// Where its mails are written as `.eml` files (no `SMTP_URL`): a folder of its own,
    /// removed with it.
    pub mail_dir: std::path::PathBuf,
    child: Child,
    log: Arc<Mutex<Vec<u8>>>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProcess")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

/// A free port on 127.0.0.1 (bound, then released for the server to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe a free port")
        .port()
}

/// An HTTP client for tests: no proxy from the environment, no redirects, and a timeout so a
/// hung server fails the test instead of hanging it. Idle connections are dropped before the
/// server's keep-alive (5 s) closes them, which would fail a request sent at that moment.
pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

impl ServerProcess {
    /// Spawns `auth-server` with the harness environment plus `extra` (which wins), and waits
    /// until `/health/live` answers 200. `database_url` `None` runs on the in-memory store.
    pub async fn spawn(name: &str, database_url: Option<&str>, extra: &[(&str, &str)]) -> Self {
        // The port is probed free and then released: another process may take it in between,
        // so a server that dies complaining about its address is started again on another.
        for attempt in 1..=3 {
            let port = free_port();
            let mail_dir = std::env::temp_dir().join(format!(
                "auth-test-mail-{name}-{}",
                uuid::Uuid::now_v7().simple()
            ));
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_auth-server"));
            // Nothing inherited (the test runner exports DATABASE_URL and maybe more): only
            // what is set here configures the instance.
            cmd.env_clear()
                .env("HOST", "127.0.0.1")
                .env("PORT", port.to_string())
                .env("BCRYPT_ROUNDS", "4")
                .env("JWT_SECRET_KEY", JWT_KEY)
                .env("AUTH_RATE_LIMIT_ENABLED", "false")
                .env("LOG_FORMAT", "json")
                .env("LOG_LEVEL", "info")
                .env("AUTH_MAIL_DIR", &mail_dir);
            if let Ok(path) = std::env::var("PATH") {
                cmd.env("PATH", path);
            }
            if let Some(url) = database_url {
                cmd.env("DATABASE_URL", url);
            }
            for (k, v) in extra {
                cmd.env(k, v);
            }
            let mut child = cmd
                .arg("serve")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn auth-server");
            let mut stderr = child.stderr.take().expect("stderr pipe");
            let log = Arc::new(Mutex::new(Vec::new()));
            let drain = std::thread::spawn({
                let log = log.clone();
                move || {
                    let mut buf = [0u8; 8192];
                    while let Ok(n) = stderr.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        log.lock().expect("log lock").extend_from_slice(&buf[..n]);
                    }
                }
            });
            let mut server = Self {
                name: name.to_owned(),
                base: format!("http://127.0.0.1:{port}"),
                client: client(),
                mail_dir,
                child,
                log,
                drain: Some(drain),
            };
            match server.wait_live().await {
                Ok(()) => return server,
                Err(exited) => {
                    let log = server.kill_and_collect();
                    let in_use = log.contains("Address already in use");
                    assert!(
                        exited && in_use && attempt < 3,
                        "{name} did not come up (exited: {exited}); its log:\n{log}"
                    );
                }
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// `Err(true)` when the process exited, `Err(false)` when it never answered in time.
    async fn wait_live(&mut self) -> Result<(), bool> {
        let start = Instant::now();
        while start.elapsed() < START_LIMIT {
            if self.child.try_wait().ok().flatten().is_some() {
                return Err(true);
            }
            if let Ok(res) = self
                .client
                .get(self.url("/health/live"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && res.status() == 200
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(false)
    }

    /// Everything the process wrote to stderr so far.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().expect("log lock")).into_owned()
    }

    /// The last `n` lines of the log, for assertion messages.
    pub fn log_tail(&self, n: usize) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Stops the process as an orchestrator does: SIGTERM, then up to `grace` for it to exit
    /// (flushing its logs), then SIGKILL.
    pub async fn terminate(mut self, grace: Duration) -> Stopped {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success());
        let mut exit = None;
        if sent {
            let start = Instant::now();
            while start.elapsed() < grace {
                if let Ok(Some(status)) = self.child.try_wait() {
                    exit = Some(status);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Stopped {
            graceful: exit.is_some_and(|s| s.success()),
            log: self.kill_and_collect(),
        }
    }

    /// Kills the process if it still runs, reaps it, waits for the stderr pipe to drain and
    /// returns the log.
    fn kill_and_collect(&mut self) -> String {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
        self.logs()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} GET {path}: {e}", self.name))
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} GET {path}: {e}", self.name))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} POST {path}: {e}", self.name))
    }

    pub async fn post_auth(&self, path: &str, token: &str, body: Option<&Value>) -> Response {
        let req = self.request(Method::POST, path).bearer_auth(token);
        let req = match body {
            Some(b) => req.json(b),
            None => req,
        };
        req.send()
            .await
            .unwrap_or_else(|e| panic!("{} POST {path}: {e}", self.name))
    }

    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/auth/register",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": refresh_token}),
        )
        .await
    }

    /// `POST /api-keys/verify` answered 200; its body.
    pub async fn verify_key(&self, key: &str) -> Value {
        let res = self
            .post_json("/api/v1/api-keys/verify", &json!({"key": key}))
            .await;
        assert_eq!(res.status(), 200, "{} verify key", self.name);
        res.json().await.expect("verify body")
    }

    /// `POST /auth/verify-token` answered 200; its body.
    pub async fn verify_token(&self, token: &str) -> Value {
        let res = self
            .post_json("/api/v1/auth/verify-token", &json!({"token": token}))
            .await;
        assert_eq!(res.status(), 200, "{} verify-token", self.name);
        res.json().await.expect("verify-token body")
    }

    /// Registers a fresh user and logs in; returns (email, login body).
    pub async fn user_with_session(&self) -> (String, Value) {
        let email = unique_email("owner");
        let res = self.register(&email, PASSWORD).await;
        assert_eq!(res.status(), 201, "{} register", self.name);
        let res = self.login(&email, PASSWORD).await;
        assert_eq!(res.status(), 200, "{} login", self.name);
        (email, res.json().await.expect("login body"))
    }

    /// Creates an organization owned by the caller; its id.
    pub async fn new_org(&self, token: &str, name: &str) -> String {
        let res = self
            .post_auth("/api/v1/organizations", token, Some(&json!({"name": name})))
            .await;
        assert_eq!(res.status(), 201, "{} create organization", self.name);
        str_field(&res.json::<Value>().await.expect("org body"), "id").to_owned()
    }

    /// Creates an API key of `org`; the creation body (with `key` and `id`).
    pub async fn create_key(&self, token: &str, org: &str, name: &str) -> Value {
        let res = self
            .post_auth(
                "/api/v1/api-keys",
                token,
                Some(&json!({"organization_id": org, "name": name, "scopes": ["read"]})),
            )
            .await;
        assert_eq!(res.status(), 201, "{} create API key", self.name);
        res.json().await.expect("key body")
    }
}

/// A process stopped by [`ServerProcess::terminate`].
#[derive(Debug)]
pub struct Stopped {
    /// It exited by itself, with status 0, within the grace period after SIGTERM.
    pub graceful: bool,
    /// Everything it wrote to stderr.
    pub log: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill_and_collect();
        let _ = std::fs::remove_dir_all(&self.mail_dir);
    }
}

/// An email no other test uses.
pub fn unique_email(tag: &str) -> String {
    format!("{tag}.{}@example.com", uuid::Uuid::now_v7().simple())
}

/// `n` random bytes as hex, for canary secrets.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("OS random");
    hex::encode(bytes)
}

pub fn str_field<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
}

/// `Retry-After` as whole seconds, when present and numeric.
pub fn retry_after(res: &Response) -> Option<u64> {
    res.headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Asserts a problem+json answer with `status` and `code`; returns its body.
pub async fn assert_problem(res: Response, status: u16, code: &str, what: &str) -> Value {
    let got = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = res.text().await.unwrap_or_default();
    assert_eq!(got, status, "{what}: status; body {text}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "{what}: content type {content_type:?}; body {text}"
    );
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: body {text}"));
    assert_eq!(body["code"], code, "{what}: {body}");
    assert_eq!(body["status"], status, "{what}: {body}");
    body
}

/// Asserts a 503 `SERVICE_UNAVAILABLE` problem with `Retry-After` ≥ 1.
pub async fn assert_unavailable(res: Response, what: &str) {
    let retry = retry_after(&res);
    assert!(
        retry.is_some_and(|s| s >= 1),
        "{what}: Retry-After {retry:?} (status {})",
        res.status()
    );
    assert_problem(res, 503, "SERVICE_UNAVAILABLE", what).await;
}

/// Polls `check` every 20 ms until it holds; returns how long that took, or panics with
/// `what` once `limit` has passed.
pub async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a request and measures how long the answer took.
pub async fn timed<Fut>(fut: Fut) -> (Response, Duration)
where
    Fut: std::future::Future<Output = Response>,
{
    let start = Instant::now();
    let res = fut.await;
    (res, start.elapsed())
}

/// Scrapes `/metrics` and checks it is Prometheus text holding every name in `names`.
/// An `Err` says what is wrong, so a caller can collect it and keep testing the rest.
pub async fn check_metrics(server: &ServerProcess, names: &[&str]) -> Result<(), String> {
    let res = server
        .request(Method::GET, "/metrics")
        .send()
        .await
        .map_err(|e| format!("GET /metrics: {e}"))?;
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = res.text().await.unwrap_or_default();
    if status != 200 {
        return Err(format!("GET /metrics answered {status}"));
    }
    if !content_type.starts_with("text/plain") {
        return Err(format!("GET /metrics content type {content_type:?}"));
    }
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !text.contains(n))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("GET /metrics lacks {missing:?}"))
    }
}

/// A Postgres cluster of this test's own (`scripts/pg-temp.sh start`), which the test may
/// pause and resume; stopped and removed when dropped.
#[derive(Debug)]
pub struct OwnedPostgres {
    pub dir: String,
    pub url: String,
}

fn pg_temp(args: &[&str]) -> std::process::Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-temp.sh");
    Command::new("bash")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/pg-temp.sh")
}

/// Runs `pg-temp.sh MODE` (a start mode) and returns what it exports, by name.
async fn pg_temp_start(mode: &'static str) -> impl Fn(&str) -> String {
    let out = tokio::task::spawn_blocking(move || pg_temp(&[mode]))
        .await
        .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pg-temp.sh {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    move |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .map(|v| v.trim_matches('\'').to_owned())
            .unwrap_or_else(|| panic!("no {name} in pg-temp.sh output: {stdout}"))
    }
}

/// Runs `pg-temp.sh ACTION DIR`, failing the test when it fails.
async fn pg_temp_on(action: &'static str, dir: &str) {
    let dir = dir.to_owned();
    let out = tokio::task::spawn_blocking(move || pg_temp(&[action, &dir]))
        .await
        .expect("join");
    assert!(
        out.status.success(),
        "pg-temp.sh {action} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl OwnedPostgres {
    pub async fn start() -> Self {
        let export = pg_temp_start("start").await;
        Self {
            dir: export("PGTEMP_DIR"),
            url: export("DATABASE_URL"),
        }
    }

    async fn run(&self, action: &'static str) {
        pg_temp_on(action, &self.dir).await;
    }

    /// Stops the server (fast shutdown: open connections are cut), keeping its data.
    pub async fn pause(&self) {
        self.run("pause").await;
    }

    /// Starts it again on the same port.
    pub async fn resume(&self) {
        self.run("resume").await;
    }

    /// Freezes the server and its backends (SIGSTOP): connections stay open, nothing answers.
    pub async fn freeze(&self) {
        self.run("freeze").await;
    }

    /// Lets a frozen server run again (SIGCONT).
    pub async fn thaw(&self) {
        self.run("thaw").await;
    }
}

impl Drop for OwnedPostgres {
    fn drop(&mut self) {
        // A frozen cluster cannot shut down; thawing a running one does nothing.
        let _thawed = pg_temp(&["thaw", &self.dir]);
        let out = pg_temp(&["stop", &self.dir]);
        if !out.status.success() || std::path::Path::new(&self.dir).exists() {
            eprintln!("warning: owned Postgres at {} was not removed", self.dir);
        }
    }
}

/// The Prometheus text of `/metrics`.
pub async fn scrape(server: &ServerProcess) -> String {
    let res = server.get("/metrics").await;
    assert_eq!(res.status(), 200, "GET /metrics");
    res.text().await.expect("metrics text")
}

/// The sum of the series of `name` whose labels include every pair of `labels` (0 when
/// there is none).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            let matches = series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
            if matches {
                value.parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}

/// A primary and a synchronous streaming standby of this test's own
/// (`scripts/pg-temp.sh start-pair`), which the test may crash and fail over; both stopped and
/// removed when dropped, panics included.
#[derive(Debug)]
pub struct OwnedPair {
    pub dir: String,
    /// Both hosts, primary first, with `target_session_attrs=read-write`.
    pub url: String,
    pub primary_port: u16,
    pub standby_port: u16,
}

impl OwnedPair {
    pub async fn start() -> Self {
        let export = pg_temp_start("start-pair").await;
        let port = |name: &str| {
            export(name)
                .parse()
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        Self {
            dir: export("PGTEMP_DIR"),
            url: export("DATABASE_URL"),
            primary_port: port("PGTEMP_PRIMARY_PORT"),
            standby_port: port("PGTEMP_STANDBY_PORT"),
        }
    }

    async fn run(&self, action: &'static str) {
        pg_temp_on(action, &self.dir).await;
    }

    /// Crashes the primary: an immediate stop, every server process gone at once.
    pub async fn kill_primary(&self) {
        self.run("kill-primary").await;
    }

    /// Promotes the standby; returns once it accepts writes.
    pub async fn promote(&self) {
        self.run("promote").await;
    }

    /// Stops the standby: the primary's commits then wait for it.
    pub async fn pause_standby(&self) {
        self.run("pause-standby").await;
    }

    /// Starts the standby again on its port.
    pub async fn resume_standby(&self) {
        self.run("resume-standby").await;
    }
}

impl Drop for OwnedPair {
    fn drop(&mut self) {
        let out = pg_temp(&["stop-pair", &self.dir]);
        if !out.status.success() || std::path::Path::new(&self.dir).exists() {
            eprintln!("warning: Postgres pair at {} was not removed", self.dir);
        }
    }
}
