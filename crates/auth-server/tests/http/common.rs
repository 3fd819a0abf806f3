//! Starts the real application on port 0, on the in-memory store or on a Postgres database of
//! its own, and talks to it over HTTP.

use std::net::TcpListener;

use actix_web::dev::ServerHandle;
use auth_infra::test_support::TestDb;
use auth_server::cli::Cli;
use auth_server::config::Config;
use auth_server::wiring::{self, Store};
use clap::Parser as _;
use reqwest::{Client, Method, RequestBuilder, Response};
use secrecy::SecretString;
use serde_json::{Value, json};

/// The HS256 key every test app signs with, so tests can forge tokens with it.
pub const TEST_JWT_KEY: &str = "test-signing-key-0123456789-abcdefghijklmnop";

/// Which store an app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub client: Client,
    /// The app's account service, for setting up what no HTTP call can (a first administrator).
    pub auth: auth_core::AccountService,
    /// The app's key service, for what the server runs on a timer (writing usage).
    pub keys: auth_core::ApiKeyService,
    /// The store the app runs on, for reading what it wrote (its event log).
    pub store: Store,
    handle: ServerHandle,
    mail_worker: Option<tokio::task::JoinHandle<()>>,
    _db: Option<TestDb>,
}

/// The configuration tests run with: the defaults, a fast bcrypt, a known key.
pub fn test_config() -> Config {
    let mut config = Cli::try_parse_from(["auth-server"])
        .expect("defaults parse")
        .config;
    config.db.url = None;
    config.passwords.bcrypt_rounds = 4;
    config.jwt.secret_key = Some(SecretString::from(TEST_JWT_KEY));
    config.http.host = "127.0.0.1".into();
    config.http.port = 0;
    // Tests send many requests from 127.0.0.1; the limits have tests of their own.
    config.rate_limit.enabled = false;
    // A loaded test machine must not turn a slow pool into a 503; outage tests set their own.
    config.db.timeout_ms = 5000;
    // Heartbeats of the revocation stream are seen within a test's patience.
    config.retention.stream_heartbeat_seconds = 1;
    config
}

/// The test configuration changed by `adjust`, with a database of its own on Postgres.
async fn prepare(backend: Backend, adjust: impl FnOnce(&mut Config)) -> (Config, Option<TestDb>) {
    let mut config = test_config();
    let db = match backend {
        Backend::Memory => None,
        Backend::Postgres => {
            let db = TestDb::new().await;
            config.db.url = Some(SecretString::from(db.url().to_owned()));
            Some(db)
        }
    };
    adjust(&mut config);
    (config, db)
}

impl TestApp {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        let (config, db) = prepare(backend, adjust).await;
        Self::serve(config, db).await
    }

    /// As [`Self::start_with`], and `adjust_state` changes the application state before the
    /// server starts (to put a test double in front of a port).
    pub async fn start_with_state(
        backend: Backend,
        adjust: impl FnOnce(&mut Config),
        adjust_state: impl FnOnce(&mut auth_http::AppState),
    ) -> Self {
        Self::start_with_store_state(backend, adjust, |state, _| adjust_state(state)).await
    }

    /// As [`Self::start_with_state`], and `adjust_state` also sees the store the app runs on
    /// (to wrap one of its repositories).
    pub async fn start_with_store_state(
        backend: Backend,
        adjust: impl FnOnce(&mut Config),
        adjust_state: impl FnOnce(&mut auth_http::AppState, &Store),
    ) -> Self {
        let (config, db) = prepare(backend, adjust).await;
        Self::serve_state(config, db, adjust_state).await
    }

    pub async fn serve(config: Config, db: Option<TestDb>) -> Self {
        Self::serve_state(config, db, |_, _| {}).await
    }

    /// As [`Self::start_with`], sending mail through `smtp` (a real SMTP server) with the
    /// outbox worker the binary runs, and with links based on the app's own address.
    pub async fn start_mailing(
        backend: Backend,
        smtp: &auth_infra::test_support::smtp::SmtpSink,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let smtp_url = smtp.url();
        let (config, db) = prepare(backend, |config| {
            config.mail.smtp_url = Some(SecretString::from(smtp_url));
            adjust(config);
        })
        .await;
        Self::serve_mailing(config, db).await
    }

    /// As [`Self::serve`], running the outbox worker (mail goes where `config` says).
    pub async fn serve_mailing(config: Config, db: Option<TestDb>) -> Self {
        Self::serve_inner(config, db, |_, _| {}, true).await
    }

    async fn serve_state(
        config: Config,
        db: Option<TestDb>,
        adjust_state: impl FnOnce(&mut auth_http::AppState, &Store),
    ) -> Self {
        Self::serve_inner(config, db, adjust_state, false).await
    }

    async fn serve_inner(
        mut config: Config,
        db: Option<TestDb>,
        adjust_state: impl FnOnce(&mut auth_http::AppState, &Store),
        mail: bool,
    ) -> Self {
        // `TEST_LOG=debug` shows the servers' logs while debugging a test.
        if let Ok(level) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(level))
                .with_test_writer()
                .try_init();
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        if mail {
            // Links point at the app itself, as `AUTH_PUBLIC_URL` does in a deployment.
            config.mail.public_url = format!("http://{}", listener.local_addr().expect("addr"));
        }
        let store = Store::open(&config).expect("open store");
        wiring::migrate_at_start(&config).await.expect("migrate");
        let mut state = wiring::app_state(&config, &store).expect("state");
        adjust_state(&mut state, &store);
        let auth = state.auth.clone();
        let keys = state.keys.clone();
        let mail_worker = mail.then(|| {
            let worker = wiring::outbox_worker(&config, &store).expect("mailer");
            wiring::spawn_mail_worker(worker, state.auth.clone())
        });
        let running = auth_server::server::start(state, listener, false).expect("start");
        let handle = running.handle.clone();
        tokio::spawn(running.server);
        let app = Self {
            base: format!("http://{}", running.addr),
            // Idle connections are dropped before the server's keep-alive (actix: 5 s) can
            // close them: a request sent on a connection as the server closes it gets no
            // answer (`IncompleteMessage`), and a POST is not retried.
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_idle_timeout(std::time::Duration::from_secs(2))
                .build()
                .expect("client"),

            handle,
            mail_worker,
            auth,
            keys,
            store,
            _db: db,
        };
        // Like a load balancer, wait until the instance reports ready (its invalidation
        // listener connects in the background); an instance that never gets ready is tested
        // as such by its test.
        for _ in 0..50 {
            if app.get("/health/ready").await.status() == 200 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.expect("send")
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path)
            .bearer_auth(token)
            .send()
            .await
            .expect("send")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("send")
    }

    pub async fn post_auth(&self, path: &str, token: &str, body: Option<&Value>) -> Response {
        let req = self.request(Method::POST, path).bearer_auth(token);
        let req = match body {
            Some(b) => req.json(b),
            None => req,
        };
        req.send().await.expect("send")
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

    /// Registers a fresh user and logs in; returns (email, login body).
    pub async fn user_with_session(&self) -> (String, Value) {
        let email = unique_email();
        assert_eq!(self.register(&email, PASSWORD).await.status(), 201);
        let res = self.login(&email, PASSWORD).await;
        assert_eq!(res.status(), 200);
        (email, res.json().await.expect("json"))
    }

    /// A service administrator, made as `auth-server users create --admin` makes one; returns
    /// (email, access token).
    pub async fn admin(&self) -> (String, String) {
        let email = unique_email();
        self.auth
            .register(
                auth_core::Registration {
                    email: auth_core::model::Email::parse(&email).expect("email"),
                    password: auth_core::model::Password::presented(PASSWORD).expect("password"),
                    display_name: None,
                },
                true,
            )
            .await
            .expect("an administrator");
        let res = self.login(&email, PASSWORD).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.expect("json");
        (email, str_field(&body, "access_token").to_owned())
    }

    pub async fn stop(&self) {
        if let Some(worker) = &self.mail_worker {
            worker.abort();
        }
        self.handle.stop(true).await;
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

pub fn unique_email() -> String {
    format!("user.{}@example.com", uuid::Uuid::now_v7().simple())
}

pub fn str_field<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
}

/// Asserts a problem+json answer and returns its body.
pub async fn assert_problem(res: Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let request_id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Value = res.json().await.expect("problem body is JSON");
    assert_eq!(content_type, "application/problem+json", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["type"], "about:blank");
    assert!(body["title"].is_string() && body["detail"].is_string());
    assert_eq!(
        body["request_id"],
        request_id.as_str(),
        "request_id matches the header"
    );
    body
}

/// Generates `<name>_memory` and `<name>_postgres` tests from one async fn taking a TestApp.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = crate::common::TestApp::start(crate::common::Backend::Memory).await;
                    super::$name(&app).await;
                    app.stop().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = crate::common::TestApp::start(crate::common::Backend::Postgres).await;
                    super::$name(&app).await;
                    app.stop().await;
                }
            )*
        }
    };
}

pub(crate) use on_both_stores;

/// A TCP proxy in front of Postgres that a test can cut and restore, to play a database
/// outage without touching the server other tests share.
pub struct PgProxy {
    pub port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl PgProxy {
    pub async fn start(target: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let (open, connections) = (open.clone(), connections.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue; // dropped: connection closed at once
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().expect("lock").push(task);
                }
            }
        });
        Self {
            port,
            open,
            connections,
            accept,
        }
    }

    /// Refuses new connections and severs the open ones.
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for task in self.connections.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme_user, rest) = url.split_once('@').expect("url with credentials");
        let path = &rest[rest.find('/').expect("url with a database")..];
        format!("{scheme_user}@127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The socket address of a Postgres URL.
pub fn pg_addr(url: &str) -> std::net::SocketAddr {
    let rest = url.split_once('@').expect("credentials").1;
    let hostport = &rest[..rest.find('/').expect("database")];
    use std::net::ToSocketAddrs as _;
    hostport
        .to_socket_addrs()
        .expect("resolve")
        .next()
        .expect("an address")
}

/// The `field` of every entry of a 422 problem's `errors`, in order.
pub fn problem_fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect()
}
