//! TLS to Postgres as an operator configures it: the real binary against a TLS-only cluster of
//! the test's own (`scripts/pg-temp.sh start-tls`: a private CA, a server certificate for
//! `localhost` and 127.0.0.1, plaintext TCP rejected by `pg_hba.conf`). Each `sslmode` is given
//! in `DATABASE_URL` exactly as in production, and the instance must become ready (pool,
//! migrations and invalidation listener all over TLS), or stay not ready with a log line that
//! names the certificate problem. The password never reaches the log.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use auth_infra::postgres::Connector;
use serde_json::json;

use crate::harness::{ServerProcess, random_hex, unique_email, within};

/// How long an instance may take to become ready over TLS.
const READY: Duration = Duration::from_secs(20);

/// How long an instance that must not become ready is watched.
const NOT_READY: Duration = Duration::from_secs(4);

/// A TLS-only cluster of this test's own, stopped and removed when dropped (also on panic).
pub struct TlsPostgres {
    /// Its directory (data, certificates, log).
    pub dir: String,
    /// Its port on 127.0.0.1 (below the ephemeral range).
    pub port: u16,
    /// The directory of its certificates and keys.
    pub tls: PathBuf,
    /// The password of the role `postgres` (spaces, `@` and `/` included, so that URLs must
    /// percent-encode it), which must never appear in a log.
    pub password: String,
}

fn pg_temp(args: &[&str], password: &str) -> std::process::Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-temp.sh");
    Command::new("bash")
        .arg(script)
        .args(args)
        .env("PGTEMP_PASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/pg-temp.sh")
}

/// Percent-encodes everything but ASCII letters and digits, for a URL's password.
pub fn percent_encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl TlsPostgres {
    pub async fn start() -> Self {
        let password = format!("tls p@ss/{}", random_hex(8));
        let out = tokio::task::spawn_blocking({
            let password = password.clone();
            move || pg_temp(&["start-tls"], &password)
        })
        .await
        .expect("join");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "pg-temp.sh start-tls failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let export = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .map(|v| v.trim_matches('\'').to_owned())
                .unwrap_or_else(|| panic!("no {name} in pg-temp.sh output: {stdout}"))
        };
        let dir = export("PGTEMP_DIR");
        let port = std::fs::read_to_string(format!("{dir}/port"))
            .expect("port file")
            .trim()
            .parse()
            .expect("port number");
        Self {
            dir,
            port,
            tls: PathBuf::from(export("PGTEMP_TLS")),
            password,
        }
    }

    /// The path of one of the cluster's certificate files (`ca.pem`, `client.key`, ...).
    pub fn file(&self, name: &str) -> String {
        self.tls.join(name).display().to_string()
    }

    /// A URL-form `DATABASE_URL` for the role `postgres` at `host` with `params`.
    pub fn url(&self, host: &str, params: &str) -> String {
        format!(
            "postgres://postgres:{}@{host}:{}/postgres?{params}",
            percent_encode(&self.password),
            self.port
        )
    }

    /// Fails if `log` holds the password, as given or percent-encoded.
    pub fn assert_no_password(&self, what: &str, log: &str) {
        assert!(
            !log.contains(&self.password) && !log.contains(&percent_encode(&self.password)),
            "{what}: the database password appears in the log:\n{log}"
        );
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let out = pg_temp(&["stop", &self.dir], "");
        if !out.status.success() || std::path::Path::new(&self.dir).exists() {
            eprintln!("warning: TLS Postgres at {} was not removed", self.dir);
        }
    }
}

/// Spawns an instance on `url` with a small pool.
async fn spawn(name: &str, url: &str) -> ServerProcess {
    ServerProcess::spawn(name, Some(url), &[("AUTH_DB_POOL_SIZE", "4")]).await
}

async fn is_ready(server: &ServerProcess) -> bool {
    server
        .client
        .get(server.url("/health/ready"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .is_ok_and(|res| res.status() == 200)
}

async fn assert_ready(server: &ServerProcess) {
    let ready = tokio::time::timeout(READY, async {
        while !is_ready(server).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        ready.is_ok(),
        "{} did not become ready within {READY:?}; its log:\n{}",
        server.name,
        server.log_tail(30)
    );
}

/// Watches `server` for [`NOT_READY`]: it must answer `/health/ready` with 503 all along.
async fn assert_stays_not_ready(server: &ServerProcess) {
    let start = std::time::Instant::now();
    while start.elapsed() < NOT_READY {
        let res = server.get("/health/ready").await;
        assert_eq!(
            res.status(),
            503,
            "{} must not be ready; its log:\n{}",
            server.name,
            server.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs `auth-server migrate` with only `DATABASE_URL` set; (success, stdout, stderr).
fn migrate(url: &str) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auth-server"));
    cmd.env_clear().env("DATABASE_URL", url).arg("migrate");
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run auth-server migrate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sslmode=require` (encrypted, no verification) and `verify-full` with the private CA, in
/// both forms of `DATABASE_URL`, become ready and serve; `auth-server migrate` works over
/// TLS; plaintext (`sslmode=disable`) is refused by the server and leaves the instance not
/// ready, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_become_ready_over_tls_and_plaintext_is_refused() {
    let pg = TlsPostgres::start().await;
    let ca = pg.file("ca.pem");

    let verify_full = pg.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let (ok, stdout, stderr) = tokio::task::spawn_blocking({
        let url = verify_full.clone();
        move || migrate(&url)
    })
    .await
    .expect("join");
    assert!(ok, "auth-server migrate over TLS failed:\n{stderr}");
    assert!(
        stdout.contains("applied "),
        "migrate applied nothing: {stdout}"
    );
    pg.assert_no_password("auth-server migrate", &stderr);

    let key_value = format!(
        "host=localhost port={} user=postgres password='{}' dbname=postgres \
         sslmode=verify-full sslrootcert='{ca}'",
        pg.port, pg.password
    );
    let require_url = pg.url("127.0.0.1", "sslmode=require");
    let disable_url = pg.url("127.0.0.1", "sslmode=disable");
    let (require, full, full_kv, plaintext) = tokio::join!(
        spawn("require", &require_url),
        spawn("verify-full", &verify_full),
        spawn("verify-full-kv", &key_value),
        spawn("disable", &disable_url),
    );
    tokio::join!(
        assert_ready(&require),
        assert_ready(&full),
        assert_ready(&full_kv),
        assert_stays_not_ready(&plaintext),
    );

    // The TLS connections carry queries: a registration and a login.
    let email = unique_email("tls");
    let res = full
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": email, "password": crate::harness::PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 201, "register over TLS");
    let res = require.login(&email, crate::harness::PASSWORD).await;
    assert_eq!(res.status(), 200, "login over TLS");

    within(Duration::from_secs(5), "the refusal is logged", || async {
        plaintext.logs().contains("no encryption")
    })
    .await;
    for server in [&require, &full, &full_kv, &plaintext] {
        pg.assert_no_password(&server.name, &server.logs());
    }
}

/// A server certificate that does not verify keeps the instance not ready, and its log says
/// which check failed in plain words: an unknown issuer (a CA other than the server's), or a
/// certificate for another name (`verify-full` checks the name, `verify-ca` does not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_verify_keeps_the_instance_not_ready() {
    let pg = TlsPostgres::start().await;
    let ca = pg.file("ca.pem");
    let other_ca = pg.file("other-ca.pem");

    // `hostaddr` connects to 127.0.0.1 while the certificate is checked against `host`.
    let wrong_name = |mode: &str| {
        pg.url(
            "db.invalid",
            &format!("hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={ca}"),
        )
    };
    let unknown_ca_url = pg.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other_ca}"),
    );
    let (other_name_url, chain_only_url) = (wrong_name("verify-full"), wrong_name("verify-ca"));
    let (unknown_ca, other_name, chain_only) = tokio::join!(
        spawn("other-ca", &unknown_ca_url),
        spawn("wrong-name", &other_name_url),
        spawn("verify-ca", &chain_only_url),
    );
    tokio::join!(
        assert_stays_not_ready(&unknown_ca),
        assert_stays_not_ready(&other_name),
        assert_ready(&chain_only),
    );

    let certificate_lines = |server: &ServerProcess| -> Vec<String> {
        server
            .logs()
            .lines()
            .filter(|l| l.contains("TLS certificate of the database server did not verify"))
            .map(str::to_owned)
            .collect()
    };
    let lines = certificate_lines(&unknown_ca);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("UnknownIssuer") && l.contains(&other_ca)),
        "the log names the unknown issuer and the sslrootcert in use:\n{}",
        unknown_ca.log_tail(30)
    );
    // Logged once per burst of failures, not once per attempt.
    assert!(
        lines.len() <= 2,
        "the certificate problem is logged {} times in {NOT_READY:?}:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(
        certificate_lines(&other_name)
            .iter()
            .any(|l| l.contains("not valid for name") && l.contains("db.invalid")),
        "the log names the host name the certificate does not cover:\n{}",
        other_name.log_tail(30)
    );
    for server in [&unknown_ca, &other_name, &chain_only] {
        pg.assert_no_password(&server.name, &server.logs());
    }
}

/// What a connection attempt through [`Connector`] gave: `Ok` or the error's text.
async fn try_connect(conninfo: &str) -> Result<(), String> {
    let connector = Connector::new(conninfo).map_err(|e| format!("settings: {e}"))?;
    connector
        .connect()
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The connector the binary uses, case by case on one cluster: client certificates with
/// each key format, channel binding over SCRAM, `prefer`, an IP address checked against the
/// certificate's IP entry, and a root certificate turning `require` into `verify-ca`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_cases_over_tls() {
    let pg = TlsPostgres::start().await;
    let ca = pg.file("ca.pem");
    let other_ca = pg.file("other-ca.pem");

    // The same EC key as PKCS#8 ("BEGIN PRIVATE KEY"), next to its SEC1 original.
    let pkcs8 = pg.file("client-pkcs8.key");
    let status = Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-in", &pg.file("client.key")])
        .args(["-out", &pkcs8])
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl pkcs8");

    let client = |cert: &str, key: &str| {
        format!(
            "host=localhost port={} user=tls_client dbname=postgres sslmode=verify-full \
             sslrootcert={ca} sslcert={} sslkey={}",
            pg.port,
            pg.file(cert),
            key
        )
    };
    let ok = [
        (
            "client certificate, SEC1 EC key",
            client("client.crt", &pg.file("client.key")),
        ),
        (
            "client certificate, PKCS#8 EC key",
            client("client.crt", &pkcs8),
        ),
        (
            "client certificate, PKCS#1 RSA key",
            client("client-rsa.crt", &pg.file("client-rsa.key")),
        ),
        (
            "channel_binding=require over SCRAM",
            pg.url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}&channel_binding=require"),
            ),
        ),
        (
            "channel_binding=require without verification",
            pg.url("127.0.0.1", "sslmode=require&channel_binding=require"),
        ),
        (
            "prefer: TLS since the server offers it",
            pg.url("localhost", "sslmode=prefer"),
        ),
        (
            "default sslmode (prefer)",
            pg.url("localhost", "application_name=tls-test"),
        ),
        (
            "verify-full against the certificate's IP address",
            pg.url(
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
        ),
    ];
    for (what, conninfo) in &ok {
        if let Err(err) = try_connect(conninfo).await {
            panic!("{what}: {err}");
        }
    }

    let refused = [
        (
            "cert login without a client certificate",
            format!(
                "host=localhost port={} user=tls_client dbname=postgres sslmode=require",
                pg.port
            ),
            "certificate",
        ),
        (
            "plaintext",
            pg.url("127.0.0.1", "sslmode=disable"),
            "no encryption",
        ),
        (
            "verify-ca with another CA",
            pg.url(
                "localhost",
                &format!("sslmode=verify-ca&sslrootcert={other_ca}"),
            ),
            "UnknownIssuer",
        ),
        (
            "require with sslrootcert checks the chain, as libpq",
            pg.url(
                "localhost",
                &format!("sslmode=require&sslrootcert={other_ca}"),
            ),
            "UnknownIssuer",
        ),
        (
            "verify-full with Mozilla's roots only",
            pg.url("localhost", "sslmode=verify-full"),
            "TLS certificate of the database server did not verify",
        ),
    ];
    for (what, conninfo, expected) in &refused {
        match try_connect(conninfo).await {
            Ok(()) => panic!("{what}: connected"),
            Err(err) => {
                assert!(err.contains(expected), "{what}: {err}");
                pg.assert_no_password(what, &err);
            }
        }
    }
}

/// In production, a database on another machine reached without `verify-full` draws a
/// warning at start; `verify-full`, and a database on this machine, do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_warns_when_a_remote_database_is_not_verified() {
    const WARNING: &str = "without sslmode=verify-full";
    // Production also requires a mail server (never contacted here: no mail is sent).
    let production = [
        ("AUTH_ENV", "production"),
        ("SMTP_URL", "smtp://127.0.0.1:1"),
        ("MAIL_FROM", "auth@example.com"),
    ];
    // `.invalid` names never resolve: the instances start without a database.
    let (unverified, verified, local) = tokio::join!(
        ServerProcess::spawn(
            "unverified",
            Some("postgres://u:p@db.invalid:5432/app?sslmode=require"),
            &production
        ),
        ServerProcess::spawn(
            "verified",
            Some("postgres://u:p@db.invalid:5432/app?sslmode=verify-full"),
            &production
        ),
        ServerProcess::spawn(
            "local",
            Some("host=/var/run/postgresql,localhost user=u dbname=app"),
            &production
        ),
    );
    // Logged before the instance listens; the log pipe is drained by another thread.
    let logged = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(line) = unverified.logs().lines().find(|l| l.contains(WARNING)) {
                return line.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let warning = logged.unwrap_or_else(|_| panic!("no warning:\n{}", unverified.log_tail(20)));
    assert!(
        warning.contains("\"level\":\"WARN\"") && warning.contains("db.invalid"),
        "{warning}"
    );
    for quiet in [&verified, &local] {
        assert!(
            !quiet.logs().contains(WARNING),
            "{}: unexpected warning:\n{}",
            quiet.name,
            quiet.log_tail(20)
        );
    }
}
