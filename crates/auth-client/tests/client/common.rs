//! The real auth server, started in the test process on port 0 (in-memory store unless a test
//! asks for Postgres), which a test can stop and start again on the same address with the
//! same data, optionally mailing to a folder; fixtures made through the client (and
//! administrators through the service); and a TCP relay that plays network faults.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use auth_client::{
    AuthClient, ClientBuilder, CreatedApiKey, Credential, ExposeSecret as _, NewApiKey, NewUser,
    Organization, RetryPolicy, SecretString, TokenPair,
};
use auth_infra::test_support::TestDb;
use auth_server::cli::Cli;
use auth_server::config::{Config, JwtAlgorithm};
use auth_server::wiring::{self, Store};
use clap::Parser as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Mutex;

/// The HS256 key test servers sign with.
pub const TEST_JWT_KEY: &str = "test-signing-key-0123456789-abcdefghijklmnop";
pub const PASSWORD: &str = "correct horse battery staple";

/// The server's defaults, with a fast bcrypt, a known key, no rate limits.
pub fn test_config() -> Config {
    let mut config = Cli::try_parse_from(["auth-server"]).unwrap().config;
    config.db.url = None;
    config.passwords.bcrypt_rounds = 4;
    config.jwt.secret_key = Some(SecretString::from(TEST_JWT_KEY));
    config.http.host = "127.0.0.1".into();
    config.http.port = 0;
    config.rate_limit.enabled = false;
    config.db.timeout_ms = 5000;
    config
}

/// A test key shipped with auth-infra's tests.
pub fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../auth-infra/tests/infra/keys")
        .join(name)
}

/// Signs with `private` (EdDSA) and also accepts `verify`.
pub fn eddsa(config: &mut Config, private: &str, verify: &[&str]) {
    config.jwt.algorithm = JwtAlgorithm::EdDsa;
    config.jwt.secret_key = None;
    config.jwt.private_key_file = Some(key_file(private));
    config.jwt.verify_key_files = verify.iter().map(|v| key_file(v)).collect();
}

pub struct TestServer {
    pub addr: SocketAddr,
    config: Mutex<Config>,
    store: Store,
    handle: Mutex<Option<ServerHandle>>,
    /// The running app's account service, to make administrators.
    accounts: Mutex<Option<auth_core::AccountService>>,
    /// Where mails are written, when the server mails.
    mail_dir: Option<PathBuf>,
    mail_worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    _db: Option<TestDb>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config();
        adjust(&mut config);
        Self::serve(config, None).await
    }

    /// On a Postgres database of its own, reached at `url`.
    pub async fn start_postgres(db: TestDb, url: String, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config();
        config.db.url = Some(SecretString::from(url));
        adjust(&mut config);
        Self::serve(config, Some(db)).await
    }

    /// Writing its mails as `.eml` files to a folder of its own ([`Self::mail_to`]).
    pub async fn start_mailing(adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config();
        config.mail.dir = std::env::temp_dir().join(format!(
            "auth-client-mail-{}",
            uuid::Uuid::now_v7().simple()
        ));
        adjust(&mut config);
        Self::serve_mailing(config, None, true).await
    }

    async fn serve(config: Config, db: Option<TestDb>) -> Self {
        Self::serve_mailing(config, db, false).await
    }

    async fn serve_mailing(config: Config, db: Option<TestDb>, mailing: bool) -> Self {
        let store = Store::open(&config).unwrap();
        wiring::migrate_at_start(&config).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mail_dir = mailing.then(|| config.mail.dir.clone());
        let server = Self {
            addr,
            config: Mutex::new(config),
            store,
            handle: Mutex::new(None),
            accounts: Mutex::new(None),
            mail_dir,
            mail_worker: Mutex::new(None),
            _db: db,
        };
        server.run(listener).await;
        server
    }

    async fn run(&self, listener: TcpListener) {
        let config = self.config.lock().await.clone();
        let state = wiring::app_state(&config, &self.store).unwrap();
        *self.accounts.lock().await = Some(state.auth.clone());
        if self.mail_dir.is_some() {
            let worker = wiring::outbox_worker(&config, &self.store).unwrap();
            let running = wiring::spawn_mail_worker(worker, state.auth.clone());
            if let Some(old) = self.mail_worker.lock().await.replace(running) {
                old.abort();
            }
        }
        let running = auth_server::server::start(state, listener, false).unwrap();
        *self.handle.lock().await = Some(running.handle.clone());
        tokio::spawn(running.server);
        let probe = reqwest::Client::new();
        for _ in 0..100 {
            let ready = probe
                .get(format!("{}/health/ready", self.url()))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not get ready");
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client of this server with quick retries (the policy's shape, shorter pauses).
    pub fn builder(&self) -> ClientBuilder {
        AuthClient::builder(self.url()).retry(RetryPolicy {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        })
    }

    pub fn client(&self) -> AuthClient {
        self.builder().build().unwrap()
    }

    /// A fresh service administrator (made through the service, as the CLI does), logged in.
    pub async fn admin(&self, client: &AuthClient) -> TokenPair {
        let email = unique_email();
        let accounts = self.accounts.lock().await.clone().unwrap();
        accounts
            .register(
                auth_core::Registration {
                    email: auth_core::model::Email::parse(&email).unwrap(),
                    password: auth_core::model::Password::presented(PASSWORD).unwrap(),
                    display_name: None,
                },
                true,
            )
            .await
            .unwrap();
        client.login(&email, &password()).await.unwrap()
    }

    /// The token of the newest link to `page` (`reset-password`, ...) mailed to `to`,
    /// waiting for it at most 20 s (the outbox is polled every 2 s).
    pub async fn mailed_token(&self, to: &str, page: &str) -> String {
        let dir = self
            .mail_dir
            .clone()
            .expect("a server started with start_mailing");
        let marker = format!("/{page}#token=");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut found: Option<(std::time::SystemTime, String)> = None;
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.extension().is_none_or(|e| e != "eml") {
                    continue;
                }
                let Ok(raw) = std::fs::read(&path) else {
                    continue;
                };
                let Some(mail) = mail_parser::MessageParser::default().parse(&raw) else {
                    continue;
                };
                let addressed = mail
                    .to()
                    .and_then(|a| a.first())
                    .and_then(|a| a.address())
                    .is_some_and(|a| a.eq_ignore_ascii_case(to));
                let text = mail.body_text(0).unwrap_or_default();
                let token = text.split(&marker).nth(1).map(|rest| {
                    rest.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                        .collect::<String>()
                });
                let modified = entry.metadata().and_then(|m| m.modified()).ok();
                if addressed
                    && let (Some(token), Some(modified)) = (token, modified)
                    && found.as_ref().is_none_or(|(at, _)| modified > *at)
                {
                    found = Some((modified, token));
                }
            }
            if let Some((_, token)) = found {
                return token;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {page} link mailed to {to}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server at once (a crash, seen from outside) and returns once it is gone:
    /// its address refuses connections and every worker has dropped its connections.
    ///
    /// actix's forced stop completes before its workers have exited; meanwhile a worker may
    /// still answer on a kept-alive connection, or drop a request written on one. So a few
    /// kept-alive connections are opened first (actix hands connections to its workers in
    /// turn, so every worker holds some), and the stop is over when all of them are closed.
    pub async fn stop(&self) {
        let Some(handle) = self.handle.lock().await.take() else {
            return;
        };
        if let Some(worker) = self.mail_worker.lock().await.take() {
            worker.abort();
        }
        let mut canaries = Vec::new();
        for _ in 0..8 {
            let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
            stream
                .write_all(b"GET /health/live HTTP/1.1\r\nHost: canary\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 512];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the canary got an answer");
            canaries.push(stream);
        }
        handle.stop(false).await;
        for mut canary in canaries {
            let mut buf = [0u8; 512];
            let closed = tokio::time::timeout(Duration::from_secs(10), async {
                while matches!(canary.read(&mut buf).await, Ok(n) if n > 0) {}
            })
            .await;
            assert!(closed.is_ok(), "a worker kept its connections");
        }
        for _ in 0..200 {
            match tokio::net::TcpStream::connect(self.addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        panic!("the server's address still accepts connections");
    }

    /// Starts it again on the same address, with the same data.
    pub async fn restart(&self) {
        self.restart_with(|_| {}).await;
    }

    /// Starts it again with a changed configuration (new keys, say), same address and data.
    pub async fn restart_with(&self, adjust: impl FnOnce(&mut Config)) {
        self.stop().await;
        adjust(&mut *self.config.lock().await);
        let mut bound = None;
        for _ in 0..50 {
            match TcpListener::bind(self.addr) {
                Ok(listener) => {
                    bound = Some(listener);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        self.run(bound.expect("the address is free again")).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Ok(mut handle) = self.handle.try_lock()
            && let Some(handle) = handle.take()
        {
            drop(handle.stop(false));
        }
        if let Ok(mut worker) = self.mail_worker.try_lock()
            && let Some(worker) = worker.take()
        {
            worker.abort();
        }
        if let Some(dir) = &self.mail_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn unique_email() -> String {
    format!("user.{}@example.com", uuid::Uuid::now_v7().simple())
}

pub fn unique_device_id() -> String {
    format!("frame-{}", uuid::Uuid::now_v7().simple())
}

pub fn password() -> SecretString {
    SecretString::from(PASSWORD)
}

/// Registers a fresh user and logs in.
pub async fn user(client: &AuthClient) -> (String, TokenPair) {
    let email = unique_email();
    client
        .register(&NewUser::new(email.clone(), password()))
        .await
        .unwrap();
    let pair = client.login(&email, &password()).await.unwrap();
    (email, pair)
}

/// A fresh user owning a fresh organization.
pub async fn owner_and_org(client: &AuthClient) -> (TokenPair, Organization) {
    let (_, pair) = user(client).await;
    let org = client
        .create_organization(&pair.access_token, "Acme")
        .await
        .unwrap();
    (pair, org)
}

/// A key of `org` with `scopes`, created by its owner.
pub async fn api_key(
    client: &AuthClient,
    owner: &TokenPair,
    org: &Organization,
    scopes: &[&str],
) -> CreatedApiKey {
    client
        .create_api_key(
            Credential::Bearer(&owner.access_token),
            &NewApiKey::new(org.id, "worker", scopes.iter().copied()),
        )
        .await
        .unwrap()
}

pub fn exposed(secret: &SecretString) -> &str {
    secret.expose_secret()
}

/// What the relay does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Passes everything through.
    None = 0,
    /// Passes the request to the server, then closes the client's connection when the answer
    /// arrives, without passing it: the server applied the request, the client cannot know.
    LoseAnswer = 1,
    /// Accepts the connection and never answers.
    Hang = 2,
    /// Accepts the connection and closes it at once.
    Refuse = 3,
}

/// A TCP relay in front of a server, playing network faults.
pub struct Relay {
    pub addr: SocketAddr,
    fault: Arc<AtomicU8>,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fault = Arc::new(AtomicU8::new(Fault::None as u8));
        let tasks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let (fault, tasks) = (fault.clone(), tasks.clone());
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let mode = fault.load(Ordering::SeqCst);
                    let task = tokio::spawn(relay(inbound, target, mode));
                    tasks.lock().unwrap().push(task);
                }
            }
        });
        Self {
            addr,
            fault,
            tasks,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the fault for connections accepted from now on.
    pub fn set(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
    }

    /// Cuts every connection open now (a network failure, seen from both ends).
    pub fn sever(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

async fn relay(mut inbound: tokio::net::TcpStream, target: SocketAddr, mode: u8) {
    if mode == Fault::Hang as u8 {
        tokio::time::sleep(Duration::from_secs(120)).await;
        return;
    }
    if mode == Fault::Refuse as u8 {
        return;
    }
    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
        return;
    };
    if mode == Fault::None as u8 {
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        return;
    }
    // LoseAnswer: forward the request; once the answer starts, hang up on the client.
    let (mut in_read, _in_write) = inbound.split();
    let (mut out_read, mut out_write) = outbound.split();
    let forward = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match in_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let answer = async {
        let mut buf = [0u8; 1];
        let _ = out_read.read(&mut buf).await;
    };
    tokio::select! {
        () = forward => {}
        () = answer => {}
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// A TCP proxy in front of Postgres that a test can cut and restore.
pub struct PgProxy {
    pub port: u16,
    open: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl PgProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let (open, connections) = (open.clone(), connections.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(task);
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
        self.open.store(false, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme_user, rest) = url.split_once('@').unwrap();
        let path = &rest[rest.find('/').unwrap()..];
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
pub fn pg_addr(url: &str) -> SocketAddr {
    use std::net::ToSocketAddrs as _;
    let rest = url.split_once('@').unwrap().1;
    let hostport = &rest[..rest.find('/').unwrap()];
    hostport.to_socket_addrs().unwrap().next().unwrap()
}
