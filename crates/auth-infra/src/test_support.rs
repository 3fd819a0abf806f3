//! Isolated Postgres databases for tests.
//!
//! `DATABASE_URL` names a server the tests may create databases on (the test script starts a
//! throwaway one). The first test to arrive migrates a template database, named after a
//! digest of the migrations, under an advisory lock; every test then gets its own copy
//! (`CREATE DATABASE … TEMPLATE`, about 0.1 s), dropped when the test ends. Tests therefore
//! run in parallel, in one process or many.
//!
//! [`TestStore`] is every Postgres repository over one such database: the `Fixture` of the
//! storage contract and of the service scenarios of `auth-core`.
#![expect(
    clippy::expect_used,
    reason = "test support: failing loudly is the point"
)]

pub mod smtp;

use std::sync::Arc;

use diesel::{Connection as _, RunQueryDsl as _};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use uuid::Uuid;

use crate::postgres::{
    DbPool, PgAccountRemover, PgApiKeyRepository, PgDeviceRepository, PgEventLog,
    PgLoginAttemptStore, PgMailOutbox, PgMfaRepository, PgOneTimeTokenStore,
    PgOrganizationRepository, PgPruner, PgSessionRepository, PgUserAdministration,
    PgUserRepository, PoolSettings, build_pool, run_migrations,
};

type SyncPg = AsyncConnectionWrapper<AsyncPgConnection>;

const TEMPLATE_LOCK_KEY: i64 = 0x6175_7468_7465_6d70;

/// The server tests run against.
///
/// # Panics
/// When `DATABASE_URL` is not set: the test command starts a Postgres and sets it.
#[must_use]
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must point at a Postgres server for these tests (scripts/test.sh starts one)",
    )
}

fn with_database(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) if !url[..i].ends_with('/') => {
            let (base, rest) = url.split_at(i);
            let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
            format!("{base}/{db}{query}")
        }
        _ => format!("{}/{db}", url.trim_end_matches('/')),
    }
}

fn template_name() -> String {
    format!("auth_tmpl_{}", env!("AUTH_MIGRATIONS_DIGEST"))
}

/// A database of its own for one test, dropped with this value.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
    server: String,
}

impl TestDb {
    /// Creates a fresh, migrated database.
    ///
    /// # Panics
    /// When the server cannot be reached or the database cannot be created.
    pub async fn new() -> Self {
        let server = server_url();
        let name = format!("auth_t_{}", Uuid::now_v7().simple());
        let url = with_database(&server, &name);
        let template = template_name();
        let (server_c, template_c, name_c) = (server.clone(), template.clone(), name.clone());
        let needs_migration = tokio::task::spawn_blocking(move || {
            let mut admin = SyncPg::establish(&server_c).expect("connect to DATABASE_URL");
            diesel::sql_query(format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))
                .execute(&mut admin)
                .expect("take template lock");
            let exists = diesel::sql_query(format!(
                "SELECT 1 FROM pg_database WHERE datname = '{template_c}'"
            ))
            .execute(&mut admin)
            .expect("look up template")
                == 1;
            if !exists {
                diesel::sql_query(format!("CREATE DATABASE {template_c}"))
                    .execute(&mut admin)
                    .expect("create template");
            }
            (admin, exists)
        })
        .await
        .expect("join");
        let (mut admin, exists) = needs_migration;
        if !exists {
            run_migrations(&with_database(&server, &template))
                .await
                .expect("migrate template");
        }
        tokio::task::spawn_blocking(move || {
            diesel::sql_query(format!("CREATE DATABASE {name_c} TEMPLATE {template}"))
                .execute(&mut admin)
                .expect("copy template");
            diesel::sql_query(format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"))
                .execute(&mut admin)
                .expect("release template lock");
        })
        .await
        .expect("join");
        Self { name, url, server }
    }

    /// Creates a fresh database with no schema at all (for migration tests).
    ///
    /// # Panics
    /// When the server cannot be reached or the database cannot be created.
    pub async fn empty() -> Self {
        let server = server_url();
        let name = format!("auth_t_{}", Uuid::now_v7().simple());
        let url = with_database(&server, &name);
        let (server_c, name_c) = (server.clone(), name.clone());
        tokio::task::spawn_blocking(move || {
            let mut admin = SyncPg::establish(&server_c).expect("connect to DATABASE_URL");
            diesel::sql_query(format!("CREATE DATABASE {name_c}"))
                .execute(&mut admin)
                .expect("create database");
        })
        .await
        .expect("join");
        Self { name, url, server }
    }

    /// URL of this test's database.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `sql` (one or more statements) on this test's database.
    ///
    /// # Panics
    /// When the statements fail.
    pub async fn execute(&self, sql: &str) {
        let (url, sql) = (self.url.clone(), sql.to_owned());
        tokio::task::spawn_blocking(move || {
            use diesel::connection::SimpleConnection as _;
            SyncPg::establish(&url)
                .expect("connect to the test database")
                .batch_execute(&sql)
                .expect("run SQL");
        })
        .await
        .expect("join");
    }

    /// A connection of its own to this test's database, kept open: for statements that must
    /// run while the database refuses new connections.
    ///
    /// # Panics
    /// When the database cannot be reached.
    pub async fn hold(&self) -> HeldConnection {
        let url = self.url.clone();
        let conn = tokio::task::spawn_blocking(move || {
            SyncPg::establish(&url).expect("connect to the test database")
        })
        .await
        .expect("join");
        HeldConnection(std::sync::Arc::new(std::sync::Mutex::new(conn)))
    }

    /// Lets new connections into this test's database, or refuses them (the ones open stay).
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn allow_connections(&self, allow: bool) {
        let (server, name) = (self.server.clone(), self.name.clone());
        tokio::task::spawn_blocking(move || {
            use diesel::connection::SimpleConnection as _;
            SyncPg::establish(&server)
                .expect("connect to DATABASE_URL")
                .batch_execute(&format!(
                    "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {allow}"
                ))
                .expect("alter database");
        })
        .await
        .expect("join");
    }

    /// A pool on this test's database.
    ///
    /// # Panics
    /// When the pool cannot be built.
    #[must_use]
    pub fn pool(&self) -> DbPool {
        build_pool(&self.url, PoolSettings::default()).expect("build pool")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Dropping needs a connection of its own; do it on a plain thread so it works from
        // inside or outside a runtime.
        let dropped = std::thread::spawn(move || {
            let mut admin = SyncPg::establish(&server).ok()?;
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .ok()
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: test database {} was not dropped", self.name);
        }
    }
}

// ---------------------------------------------------------------------------------------
// JWT: test keys and a corpus of forged tokens.
// ---------------------------------------------------------------------------------------

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use secrecy::{ExposeSecret as _, SecretSlice};
use serde_json::{Map, Value, json};

use crate::jwt::{AsymmetricAlgorithm, JwtKeys, JwtSettings, JwtSigner};

/// Key pairs for tests only, generated with `openssl genpkey` and shipped in
/// `crates/auth-infra/tests/infra/keys/`. Their private halves are public: never configure them
/// anywhere but in a test.
pub mod test_keys {
    /// Ed25519 pair "a" (PKCS#8 private key).
    pub const ED25519_A: &str = include_str!("../tests/infra/keys/ed25519-a.pem");
    /// Public half of [`ED25519_A`].
    pub const ED25519_A_PUB: &str = include_str!("../tests/infra/keys/ed25519-a.pub.pem");
    /// Ed25519 pair "b".
    pub const ED25519_B: &str = include_str!("../tests/infra/keys/ed25519-b.pem");
    /// Public half of [`ED25519_B`].
    pub const ED25519_B_PUB: &str = include_str!("../tests/infra/keys/ed25519-b.pub.pem");
    /// P-256 pair "a" (PKCS#8 private key).
    pub const P256_A: &str = include_str!("../tests/infra/keys/p256-a.pem");
    /// Public half of [`P256_A`].
    pub const P256_A_PUB: &str = include_str!("../tests/infra/keys/p256-a.pub.pem");
    /// [`P256_A`] as SEC1 (`BEGIN EC PRIVATE KEY`), which is refused with a hint.
    pub const P256_A_SEC1: &str = include_str!("../tests/infra/keys/p256-a.sec1.pem");
    /// P-256 pair "b".
    pub const P256_B: &str = include_str!("../tests/infra/keys/p256-b.pem");
    /// Public half of [`P256_B`].
    pub const P256_B_PUB: &str = include_str!("../tests/infra/keys/p256-b.pub.pem");
    /// RSA-2048 pair "a" (PKCS#8 private key).
    pub const RSA2048_A: &str = include_str!("../tests/infra/keys/rsa2048-a.pem");
    /// Public half of [`RSA2048_A`].
    pub const RSA2048_A_PUB: &str = include_str!("../tests/infra/keys/rsa2048-a.pub.pem");
    /// [`RSA2048_A`] as PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    pub const RSA2048_A_PKCS1: &str = include_str!("../tests/infra/keys/rsa2048-a.pkcs1.pem");
    /// Public half of [`RSA2048_A`] as PKCS#1 (`BEGIN RSA PUBLIC KEY`).
    pub const RSA2048_A_PKCS1_PUB: &str =
        include_str!("../tests/infra/keys/rsa2048-a.pkcs1.pub.pem");
    /// RSA-2048 pair "b".
    pub const RSA2048_B: &str = include_str!("../tests/infra/keys/rsa2048-b.pem");
    /// Public half of [`RSA2048_B`].
    pub const RSA2048_B_PUB: &str = include_str!("../tests/infra/keys/rsa2048-b.pub.pem");
    /// RSA-1024: too small.
    pub const RSA1024: &str = include_str!("../tests/infra/keys/rsa1024.pem");
    /// Public half of [`RSA1024`].
    pub const RSA1024_PUB: &str = include_str!("../tests/infra/keys/rsa1024.pub.pem");
    /// P-384: the wrong curve for ES256.
    pub const P384: &str = include_str!("../tests/infra/keys/p384.pem");
    /// Public half of [`P384`].
    pub const P384_PUB: &str = include_str!("../tests/infra/keys/p384.pub.pem");
    /// The attacker's Ed25519 key (never configured in a signer).
    pub const ATTACKER_ED25519: &str = include_str!("../tests/infra/keys/attacker-ed25519.pem");
    /// The attacker's P-256 key (never configured in a signer).
    pub const ATTACKER_P256: &str = include_str!("../tests/infra/keys/attacker-p256.pem");
    /// The attacker's RSA-2048 key (never configured in a signer).
    pub const ATTACKER_RSA2048: &str = include_str!("../tests/infra/keys/attacker-rsa2048.pem");
}

/// Test key pair `index` (0 = "a", 1 = "b") for an algorithm: `(private PEM, public PEM)`.
///
/// # Panics
/// When `index` is not 0 or 1.
#[must_use]
pub fn test_key_pair(algorithm: AsymmetricAlgorithm, index: usize) -> (&'static str, &'static str) {
    use test_keys::*;
    match (algorithm, index) {
        (AsymmetricAlgorithm::EdDsa, 0) => (ED25519_A, ED25519_A_PUB),
        (AsymmetricAlgorithm::EdDsa, 1) => (ED25519_B, ED25519_B_PUB),
        (AsymmetricAlgorithm::Es256, 0) => (P256_A, P256_A_PUB),
        (AsymmetricAlgorithm::Es256, 1) => (P256_B, P256_B_PUB),
        (AsymmetricAlgorithm::Rs256, 0) => (RSA2048_A, RSA2048_A_PUB),
        (AsymmetricAlgorithm::Rs256, 1) => (RSA2048_B, RSA2048_B_PUB),
        _ => panic!("test key pairs are 0 and 1"),
    }
}

/// Asymmetric [`JwtKeys`] signing with test pair `index` and also accepting `verify_pems`.
#[must_use]
pub fn asymmetric_test_keys(
    algorithm: AsymmetricAlgorithm,
    index: usize,
    verify_pems: &[&str],
) -> JwtKeys {
    JwtKeys::Asymmetric {
        algorithm,
        private_pem: SecretSlice::from(test_key_pair(algorithm, index).0.as_bytes().to_vec()),
        verify_pems: verify_pems.iter().map(|p| (*p).to_owned()).collect(),
    }
}

fn der_len(len: usize, out: &mut Vec<u8>) {
    match len {
        0..0x80 => out.push(u8::try_from(len).expect("short length")),
        0x80..0x100 => out.extend([0x81, u8::try_from(len).expect("one byte")]),
        _ => {
            let [hi, lo] = u16::try_from(len).expect("two bytes").to_be_bytes();
            out.extend([0x82, hi, lo]);
        }
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    der(0x02, &content)
}

fn jwk_bytes(jwk: &Value, member: &str) -> Vec<u8> {
    let text = jwk[member].as_str().expect("JWK member is a string");
    URL_SAFE_NO_PAD
        .decode(text)
        .expect("JWK member is base64url")
}

/// The SubjectPublicKeyInfo DER of a public JWK (OKP Ed25519, EC P-256 or RSA), or `None`
/// for another key type.
#[must_use]
pub fn public_der_from_jwk(jwk: &Value) -> Option<Vec<u8>> {
    let (algorithm_id, key_bits) = match (jwk["kty"].as_str()?, jwk["crv"].as_str()) {
        ("OKP", Some("Ed25519")) => (der(0x06, &[0x2b, 0x65, 0x70]), jwk_bytes(jwk, "x")),
        ("EC", Some("P-256")) => {
            let mut oids = der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]);
            oids.extend(der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]));
            let mut point = vec![0x04];
            point.extend(jwk_bytes(jwk, "x"));
            point.extend(jwk_bytes(jwk, "y"));
            (oids, point)
        }
        ("RSA", None) => {
            let mut oid = der(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            );
            oid.extend(der(0x05, &[]));
            let mut ints = der_uint(&jwk_bytes(jwk, "n"));
            ints.extend(der_uint(&jwk_bytes(jwk, "e")));
            (oid, der(0x30, &ints))
        }
        _ => return None,
    };
    let mut bit_string = vec![0];
    bit_string.extend(key_bits);
    let mut spki = der(0x30, &algorithm_id);
    spki.extend(der(0x03, &bit_string));
    Some(der(0x30, &spki))
}

/// The `BEGIN PUBLIC KEY` PEM of a public JWK, formatted like `openssl pkey -pubout` (64
/// characters a line, final newline). This is what a naive verifier would load from a
/// public key file, and so the HMAC secret an algorithm-confusion attacker tries.
#[must_use]
pub fn public_pem_from_jwk(jwk: &Value) -> Option<String> {
    let encoded = STANDARD.encode(public_der_from_jwk(jwk)?);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    Some(pem)
}

/// A compact JWS taken apart.
struct Parts {
    header: Map<String, Value>,
    payload: Map<String, Value>,
    h64: String,
    p64: String,
    sig: String,
    raw: String,
}

fn parts(token: &str) -> Parts {
    let segments: Vec<&str> = token.split('.').collect();
    let [h64, p64, sig] = segments[..] else {
        panic!(
            "forged_tokens needs a valid compact JWS, got {} parts",
            segments.len()
        );
    };
    let json = |s: &str| -> Map<String, Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("base64url segment"))
            .expect("JSON object segment")
    };
    Parts {
        header: json(h64),
        payload: json(p64),
        h64: h64.to_owned(),
        p64: p64.to_owned(),
        sig: sig.to_owned(),
        raw: token.to_owned(),
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn enc(value: &impl serde::Serialize) -> String {
    b64(&serde_json::to_vec(value).expect("serialise JSON"))
}

/// Signs `h64.p64` with `key` under `alg`; the result is a compact JWS.
fn sign_jws(h64: &str, p64: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{h64}.{p64}");
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("sign");
    format!("{message}.{sig}")
}

/// Sets (`Some`) or removes (`None`) one member of a JSON object.
type Edit = (&'static str, Option<Value>);

fn set(name: &'static str, value: Value) -> Edit {
    (name, Some(value))
}

fn del(name: &'static str) -> Edit {
    (name, None)
}

fn with(map: &Map<String, Value>, edits: &[Edit]) -> Map<String, Value> {
    let mut map = map.clone();
    for (name, value) in edits {
        match value {
            Some(v) => map.insert((*name).to_owned(), v.clone()),
            None => map.remove(*name),
        };
    }
    map
}

/// A signing key the attacker holds.
struct Attacker {
    name: &'static str,
    alg: Algorithm,
    key: EncodingKey,
    /// Its public JWK, with `kid`.
    jwk: Value,
}

fn attackers() -> Vec<Attacker> {
    [
        (
            "attacker Ed25519",
            AsymmetricAlgorithm::EdDsa,
            test_keys::ATTACKER_ED25519,
        ),
        (
            "attacker P-256",
            AsymmetricAlgorithm::Es256,
            test_keys::ATTACKER_P256,
        ),
        (
            "attacker RSA",
            AsymmetricAlgorithm::Rs256,
            test_keys::ATTACKER_RSA2048,
        ),
    ]
    .into_iter()
    .map(|(name, algorithm, pem)| {
        let secret = SecretSlice::from(pem.as_bytes().to_vec());
        let (key, _) = crate::jwt::keys::load_private(algorithm, &secret).expect("attacker key");
        let signer = JwtSigner::from_keys(
            &JwtKeys::Asymmetric {
                algorithm,
                private_pem: secret,
                verify_pems: Vec::new(),
            },
            JwtSettings::default(),
        )
        .expect("attacker signer");
        Attacker {
            name,
            alg: algorithm.jwt_algorithm(),
            key,
            jwk: signer.jwks()["keys"][0].clone(),
        }
    })
    .collect()
}

/// What the forgeries are built from.
struct Ctx {
    user: Parts,
    device: Parts,
    /// The service's own key, for tokens that are correctly signed but wrong otherwise.
    real_key: EncodingKey,
    real_alg: Algorithm,
    real_alg_name: &'static str,
    kid: Option<String>,
    /// The service's public JWKs (signing key first).
    service_jwks: Vec<Value>,
    verify_pems: Vec<String>,
    attackers: Vec<Attacker>,
    /// `iat` of the valid user token.
    now: i64,
}

impl Ctx {
    /// `header.payload` (already encoded) signed with the service's key.
    fn real_raw(&self, h64: &str, p64: &str) -> String {
        sign_jws(h64, p64, &self.real_key, self.real_alg)
    }

    fn real(&self, header: &Map<String, Value>, payload: &Map<String, Value>) -> String {
        self.real_raw(&enc(header), &enc(payload))
    }

    /// The user token's header with edits, encoded.
    fn user_header(&self, edits: &[Edit]) -> String {
        enc(&with(&self.user.header, edits))
    }
}

type Corpus = Vec<(String, String)>;

fn push(out: &mut Corpus, label: impl Into<String>, token: impl Into<String>) {
    out.push((label.into(), token.into()));
}

fn alg_none(c: &Ctx, out: &mut Corpus) {
    let p = &c.user.p64;
    for spelling in ["none", "None", "NONE", "nOnE"] {
        let h = c.user_header(&[set("alg", json!(spelling))]);
        push(
            out,
            format!("alg {spelling}, empty signature"),
            format!("{h}.{p}."),
        );
        push(
            out,
            format!("alg {spelling}, no signature part"),
            format!("{h}.{p}"),
        );
    }
    let h = enc(&json!({"alg": "none", "typ": "at+jwt"}));
    push(out, "alg none, bare header", format!("{h}.{p}."));
    let h = c.user_header(&[set("alg", json!("none"))]);
    push(
        out,
        "alg none, original signature kept",
        format!("{h}.{p}.{}", c.user.sig),
    );
    let h = enc(&with(&c.device.header, &[set("alg", json!("none"))]));
    push(
        out,
        "alg none on the device token",
        format!("{h}.{}.", c.device.p64),
    );
}

fn signature_damage(c: &Ctx, out: &mut Corpus) {
    let (u, d) = (&c.user, &c.device);
    push(out, "signature stripped", format!("{}.{}.", u.h64, u.p64));
    push(
        out,
        "signature stripped (device)",
        format!("{}.{}.", d.h64, d.p64),
    );
    let sig = URL_SAFE_NO_PAD.decode(&u.sig).expect("signature");
    let with_sig = |s: &[u8]| format!("{}.{}.{}", u.h64, u.p64, b64(s));
    for (label, index) in [("first", 0), ("last", sig.len() - 1)] {
        let mut flipped = sig.clone();
        flipped[index] ^= 0x01;
        push(
            out,
            format!("{label} signature byte flipped"),
            with_sig(&flipped),
        );
    }
    push(
        out,
        "signature truncated by one byte",
        with_sig(&sig[..sig.len() - 1]),
    );
    push(
        out,
        "signature all zero bytes",
        with_sig(&vec![0; sig.len()]),
    );
    push(
        out,
        "signature of the device token on the user token",
        format!("{}.{}.{}", u.h64, u.p64, d.sig),
    );
    let mut dsig = URL_SAFE_NO_PAD.decode(&d.sig).expect("signature");
    dsig[0] ^= 0x80;
    push(
        out,
        "device signature byte flipped",
        format!("{}.{}.{}", d.h64, d.p64, b64(&dsig)),
    );
    let es = c.user_header(&[set("alg", json!("ES256"))]);
    push(
        out,
        "ES256 zero signature (r = s = 0, CVE-2022-21449)",
        format!("{es}.{}.{}", u.p64, b64(&[0; 64])),
    );
    push(
        out,
        "standard-alphabet padded signature",
        format!("{}.{}.{}", u.h64, u.p64, STANDARD.encode(&sig)),
    );
    let mut longer = sig.clone();
    longer.push(0);
    push(out, "signature with one byte appended", with_sig(&longer));
    // The same bytes with non-zero padding bits in the last character: a lenient decoder
    // would read the genuine signature.
    let mut loose = b64(&sig).into_bytes();
    if let Some(last) = loose.last_mut() {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let index = alphabet.iter().position(|a| a == last).expect("base64url");
        *last = alphabet[index ^ 1];
    }
    push(
        out,
        "signature with non-zero trailing bits",
        format!(
            "{}.{}.{}",
            u.h64,
            u.p64,
            String::from_utf8(loose).expect("ascii")
        ),
    );
    // Claims JSON with a member twice, correctly signed: a lenient reader keeps one of them.
    let claims = serde_json::to_string(&u.payload).expect("claims");
    let twice = format!(
        "{},\"exp\":{}}}",
        claims.trim_end_matches('}'),
        c.now + 86_400
    );
    push(
        out,
        "exp twice, the later one a day ahead, correctly signed",
        c.real_raw(&u.h64, &b64(twice.as_bytes())),
    );
    // A header member written with an escape (`at\u002bjwt` is `at+jwt`), correctly signed:
    // this service never writes one, and reads its header members exactly as written.
    let escaped = serde_json::to_string(&u.header)
        .expect("header")
        .replace("\"at+jwt\"", "\"at\\u002bjwt\"");
    push(
        out,
        "header typ written with an escape, correctly signed",
        c.real_raw(&b64(escaped.as_bytes()), &u.p64),
    );
}

fn tampered(c: &Ctx, out: &mut Corpus) {
    let (u, d) = (&c.user, &c.device);
    let other = json!(Uuid::now_v7());
    for (label, edit) in [
        ("sub", set("sub", other.clone())),
        ("sid", set("sid", other.clone())),
        ("exp", set("exp", json!(c.now + 365 * 86_400))),
        ("iss", set("iss", json!("evil"))),
    ] {
        let p = enc(&with(&u.payload, &[edit]));
        push(
            out,
            format!("payload {label} changed, signature kept"),
            format!("{}.{p}.{}", u.h64, u.sig),
        );
    }
    for (label, edit) in [
        ("sub", set("sub", json!("another-device"))),
        ("org", set("org", other)),
    ] {
        let p = enc(&with(&d.payload, &[edit]));
        push(
            out,
            format!("device payload {label} changed, signature kept"),
            format!("{}.{p}.{}", d.h64, d.sig),
        );
    }
    let h = c.user_header(&[set("typ", json!("device+jwt"))]);
    push(
        out,
        "user header typ swapped to device+jwt, signature kept",
        format!("{h}.{}.{}", u.p64, u.sig),
    );
    let h = enc(&with(&d.header, &[set("typ", json!("at+jwt"))]));
    push(
        out,
        "device header typ swapped to at+jwt, signature kept",
        format!("{h}.{}.{}", d.p64, d.sig),
    );
    for alg in ["HS256", "EdDSA", "ES256", "RS256", "PS256"] {
        if alg != c.real_alg_name {
            let h = c.user_header(&[set("alg", json!(alg))]);
            push(
                out,
                format!("alg changed to {alg}, signature kept"),
                format!("{h}.{}.{}", u.p64, u.sig),
            );
        }
    }
}

fn other_keys(c: &Ctx, out: &mut Corpus) {
    let p = &c.user.p64;
    let hs = c.user_header(&[set("alg", json!("HS256"))]);
    for (label, secret) in [
        (
            "another HS256 secret",
            &b"attacker-chosen-secret-0123456789abcdef"[..],
        ),
        ("the empty HS256 secret", b""),
        ("HS256 secret \"secret\"", b"secret"),
    ] {
        let key = EncodingKey::from_secret(secret);
        push(
            out,
            format!("signed with {label}"),
            sign_jws(&hs, p, &key, Algorithm::HS256),
        );
    }
    for a in &c.attackers {
        let alg_name = a.jwk["alg"].as_str().expect("alg");
        let h = with(&c.user.header, &[set("alg", json!(alg_name))]);
        let label = if alg_name == c.real_alg_name {
            format!("same alg, {} key, service kid", a.name)
        } else {
            format!("alg swapped to {alg_name}, {} key", a.name)
        };
        push(out, label, sign_jws(&enc(&h), p, &a.key, a.alg));
        let h = with(&h, &[set("kid", a.jwk["kid"].clone())]);
        push(
            out,
            format!("{alg_name} by the {}, its own kid", a.name),
            sign_jws(&enc(&h), p, &a.key, a.alg),
        );
        let h = with(&h, &[set("jwk", a.jwk.clone())]);
        push(
            out,
            format!("jwk header embedding the {}, signed by it", a.name),
            sign_jws(&enc(&h), p, &a.key, a.alg),
        );
        let hd = with(&c.device.header, &[set("alg", json!(alg_name))]);
        push(
            out,
            format!("device token by the {}", a.name),
            sign_jws(&enc(&hd), &c.device.p64, &a.key, a.alg),
        );
    }
    // The service's own key under another algorithm of its family.
    let same_family: &[(&str, Algorithm)] = match c.real_alg {
        Algorithm::HS256 => &[("HS384", Algorithm::HS384), ("HS512", Algorithm::HS512)],
        Algorithm::RS256 => &[
            ("RS384", Algorithm::RS384),
            ("RS512", Algorithm::RS512),
            ("PS256", Algorithm::PS256),
        ],
        _ => &[],
    };
    for (name, alg) in same_family {
        let h = c.user_header(&[set("alg", json!(name))]);
        push(
            out,
            format!("alg {name} with the service's own key"),
            sign_jws(&h, p, &c.real_key, *alg),
        );
    }
}

/// HS256 keyed with public key bytes (algorithm confusion against a verifier that lets the
/// header choose the algorithm).
fn key_confusion(c: &Ctx, out: &mut Corpus) {
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    let jwks = c
        .service_jwks
        .iter()
        .chain(c.attackers.iter().map(|a| &a.jwk));
    for jwk in jwks {
        let kid: String = jwk["kid"].as_str().unwrap_or("?").chars().take(8).collect();
        let name = format!("{} key {kid}", jwk["kty"].as_str().unwrap_or("?"));
        if let (Some(pem), Some(der)) = (public_pem_from_jwk(jwk), public_der_from_jwk(jwk)) {
            secrets.push((format!("{name} PEM"), pem.clone().into_bytes()));
            secrets.push((
                format!("{name} PEM without final newline"),
                pem.trim_end().as_bytes().to_vec(),
            ));
            secrets.push((format!("{name} DER"), der));
            secrets.push((
                format!("{name} JWK JSON"),
                serde_json::to_vec(jwk).expect("JSON"),
            ));
        }
    }
    for (i, pem) in c.verify_pems.iter().enumerate() {
        secrets.push((
            format!("verify key file #{}", i + 1),
            pem.clone().into_bytes(),
        ));
    }
    let h = c.user_header(&[set("alg", json!("HS256"))]);
    for (label, secret) in secrets {
        let key = EncodingKey::from_secret(&secret);
        push(
            out,
            format!("HS256 keyed with the {label}"),
            sign_jws(&h, &c.user.p64, &key, Algorithm::HS256),
        );
    }
}

fn bad_claims(c: &Ctx, out: &mut Corpus) {
    let now = c.now;
    let expired = || {
        vec![
            set("iat", json!(now - 7200)),
            set("nbf", json!(now - 7200)),
            set("exp", json!(now - 3600)),
        ]
    };
    let not_yet = |member| {
        vec![
            set(member, json!(now + 3600)),
            set("exp", json!(now + 7200)),
        ]
    };
    let iss = c.user.payload["iss"].as_str().unwrap_or("").to_uppercase() + "X";
    let user: Vec<(&str, Vec<Edit>)> = vec![
        ("expired an hour ago", expired()),
        ("nbf an hour ahead", not_yet("nbf")),
        ("iat an hour ahead", not_yet("iat")),
        ("wrong iss", vec![set("iss", json!("https://evil.example"))]),
        ("iss in other case", vec![set("iss", json!(iss))]),
        ("wrong aud", vec![set("aud", json!("another-api"))]),
        (
            "aud array without the service",
            vec![set("aud", json!(["another-api"]))],
        ),
        ("missing exp", vec![del("exp")]),
        ("missing sub", vec![del("sub")]),
        ("missing nbf", vec![del("nbf")]),
        ("missing iat", vec![del("iat")]),
        ("missing jti", vec![del("jti")]),
        ("missing sid", vec![del("sid")]),
        ("missing iss", vec![del("iss")]),
        ("missing aud", vec![del("aud")]),
        (
            "exp as a string",
            vec![set("exp", json!((now + 3600).to_string()))],
        ),
        ("exp as a huge float", vec![set("exp", json!(1e300))]),
        ("exp null", vec![set("exp", Value::Null)]),
        ("sub not a UUID", vec![set("sub", json!("admin"))]),
        (
            "100 KB claim",
            vec![set("pad", json!("A".repeat(100 * 1024)))],
        ),
    ];
    for (label, edits) in user {
        let token = c.real(&c.user.header, &with(&c.user.payload, &edits));
        push(out, format!("{label}, correctly signed"), token);
    }
    let device: Vec<(&str, Vec<Edit>)> = vec![
        ("device expired an hour ago", expired()),
        ("device nbf an hour ahead", not_yet("nbf")),
        ("device missing org", vec![del("org")]),
        ("device missing exp", vec![del("exp")]),
        ("device wrong aud", vec![set("aud", json!("another-api"))]),
        (
            "device sub with path traversal",
            vec![set("sub", json!("../../etc/passwd"))],
        ),
    ];
    for (label, edits) in device {
        let token = c.real(&c.device.header, &with(&c.device.payload, &edits));
        push(out, format!("{label}, correctly signed"), token);
    }
    let h = &c.user.h64;
    let array = enc(&json!([c.user.payload.clone()]));
    push(
        out,
        "payload a JSON array, correctly signed",
        c.real_raw(h, &array),
    );
    push(
        out,
        "payload null, correctly signed",
        c.real_raw(h, &enc(&Value::Null)),
    );
    push(
        out,
        "payload not JSON, correctly signed",
        c.real_raw(h, &b64(b"not json")),
    );
    let p = serde_json::to_string(&c.user.payload).expect("JSON");
    let dup = format!("{{\"sub\":\"{}\",{}", Uuid::now_v7(), &p[1..]);
    push(
        out,
        "duplicate sub claim, correctly signed",
        c.real_raw(h, &b64(dup.as_bytes())),
    );
}

fn kind_confusion(c: &Ctx, out: &mut Corpus) {
    let (u, d) = (&c.user, &c.device);
    let user_typ = |typ: Option<Value>| with(&u.header, &[("typ", typ)]);
    for (label, header, payload) in [
        (
            "user claims with typ device+jwt",
            user_typ(Some(json!("device+jwt"))),
            &u.payload,
        ),
        (
            "device claims with typ at+jwt",
            with(&d.header, &[set("typ", json!("at+jwt"))]),
            &d.payload,
        ),
        ("typ JWT", user_typ(Some(json!("JWT"))), &u.payload),
        ("typ missing", user_typ(None), &u.payload),
        ("typ AT+JWT", user_typ(Some(json!("AT+JWT"))), &u.payload),
        (
            "typ application/at+jwt",
            user_typ(Some(json!("application/at+jwt"))),
            &u.payload,
        ),
        ("typ null", user_typ(Some(Value::Null)), &u.payload),
    ] {
        push(
            out,
            format!("{label}, correctly signed"),
            c.real(&header, payload),
        );
    }
}

fn bad_kids(c: &Ctx, out: &mut Corpus) {
    let real = c.kid.clone().unwrap_or_default();
    let mut kids: Vec<(&str, Option<Value>)> = vec![
        // The RFC 7638 example key: well-formed, but not configured.
        (
            "kid of an unknown key",
            Some(json!("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")),
        ),
        (
            "kid path traversal",
            Some(json!("../../../../../../dev/null")),
        ),
        (
            "kid SQL injection",
            Some(json!("x' UNION SELECT 'secret' --")),
        ),
        ("kid empty", Some(json!(""))),
        ("kid null", Some(Value::Null)),
        ("kid a number", Some(json!(0))),
        ("kid an array", Some(json!([real.clone()]))),
        ("kid with a NUL byte", Some(json!(format!("{real}\u{0}")))),
        ("kid a URL", Some(json!("https://attacker.example/key.pem"))),
    ];
    if c.kid.is_some() {
        kids.push(("kid in other case", Some(json!(real.to_uppercase()))));
        kids.push(("kid missing", None));
    } else {
        kids.push(("kid under HS256", Some(json!("k1"))));
    }
    for (label, value) in kids {
        let token = c.real(&with(&c.user.header, &[("kid", value)]), &c.user.payload);
        push(out, format!("{label}, correctly signed"), token);
    }
}

fn bad_headers(c: &Ctx, out: &mut Corpus) {
    let extra: Vec<(&'static str, Value)> = vec![
        (
            "jku",
            json!("https://attacker.example/.well-known/jwks.json"),
        ),
        ("jwk", c.attackers[0].jwk.clone()),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", json!([STANDARD.encode(b"not really a certificate")])),
        ("x5t", json!(b64(&[1; 20]))),
        ("x5t#S256", json!(b64(&[1; 32]))),
        ("crit", json!(["exp"])),
        ("cty", json!("JWT")),
        ("b64", json!(false)),
        ("zip", json!("DEF")),
        ("enc", json!("A256GCM")),
        ("foo", json!("bar")),
    ];
    for (name, value) in extra {
        let token = c.real(&with(&c.user.header, &[set(name, value)]), &c.user.payload);
        push(out, format!("{name} header, correctly signed"), token);
    }
    let rfc7797 = with(
        &c.user.header,
        &[set("crit", json!(["b64"])), set("b64", json!(false))],
    );
    push(
        out,
        "crit b64 (RFC 7797), correctly signed",
        c.real(&rfc7797, &c.user.payload),
    );
    let jku = with(
        &c.device.header,
        &[set("jku", json!("https://attacker.example/j"))],
    );
    push(
        out,
        "jku header on the device token, correctly signed",
        c.real(&jku, &c.device.payload),
    );
    let h = serde_json::to_string(&c.user.header).expect("JSON");
    let (open, close) = (&h[1..], &h[..h.len() - 1]);
    for (label, header) in [
        (
            "duplicate alg (none first)",
            format!("{{\"alg\":\"none\",{open}"),
        ),
        (
            "duplicate alg (none last)",
            format!("{close},\"alg\":\"none\"}}"),
        ),
        ("duplicate typ", format!("{{\"typ\":\"device+jwt\",{open}")),
        ("duplicate kid", format!("{{\"kid\":\"unknown\",{open}")),
        ("header a JSON array", format!("[{h}]")),
        ("header not JSON", "alg=HS256".to_owned()),
    ] {
        let token = c.real_raw(&b64(header.as_bytes()), &c.user.p64);
        push(out, format!("{label}, correctly signed"), token);
    }
}

fn bad_shapes(c: &Ctx, out: &mut Corpus) {
    let (user, u) = (&c.user, c.user.raw.as_str());
    let big_header = c.user_header(&[set("pad", json!("A".repeat(100 * 1024)))]);
    let jwe_header = enc(&json!({"alg": "RSA-OAEP", "enc": "A256GCM", "typ": "at+jwt"}));
    for (label, token) in [
        (
            "100 KB header",
            format!("{big_header}.{}.{}", user.p64, user.sig),
        ),
        (
            "100 KB of repeated token",
            u.repeat(100 * 1024 / u.len() + 1),
        ),
        ("empty string", String::new()),
        ("single space", " ".to_owned()),
        ("one dot", ".".to_owned()),
        ("two dots", "..".to_owned()),
        ("three dots", "...".to_owned()),
        ("non-base64 garbage", "!!!.@@@.###".to_owned()),
        ("plain words", "not a token".to_owned()),
        ("non-ASCII", "ééé.ééé.ééé".to_owned()),
        ("two-part token", format!("{}.{}", user.h64, user.p64)),
        ("four-part token", format!("{u}.AAAA")),
        (
            "five-part JWE-shaped token",
            format!("{jwe_header}.AAAA.AAAA.AAAA.AAAA"),
        ),
        (
            "valid token with two JWE parts appended",
            format!("{u}.AAAA.AAAA"),
        ),
        ("leading space", format!(" {u}")),
        ("trailing space", format!("{u} ")),
        ("trailing newline", format!("{u}\n")),
        ("leading tab", format!("\t{u}")),
        ("Bearer prefix", format!("Bearer {u}")),
        ("space after the first dot", u.replacen('.', ". ", 1)),
        ("padded signature", format!("{u}==")),
        (
            "header base64 with padding",
            format!("{}=.{}.{}", user.h64, user.p64, user.sig),
        ),
        ("valid user token reversed", u.chars().rev().collect()),
        (
            "header and payload swapped",
            format!("{}.{}.{}", user.p64, user.h64, user.sig),
        ),
    ] {
        push(out, label, token);
    }
}

/// More than 30 distinct forged tokens `(label, token)` (about 150), each of which a
/// correct verifier of the service configured with `keys` must refuse with `verify_access`
/// **and** `verify_device`. Built from a currently valid user token and device token of that
/// service, so an HTTP test can pass tokens its server issued (and configure the server with
/// the same `keys`): a tampered token then differs from an accepted one only by the forgery.
///
/// Many entries are signed with the service's own key (expired, wrong `iss`/`aud`, missing
/// claims, unknown `kid`, extra header members, `typ` swapped, ...) so that only the rule
/// under test can refuse them; the others use attacker keys shipped with the tests, public
/// keys as HMAC secrets, `alg: none` and malformed encodings. Labels are unique; tokens are
/// distinct and never equal to the two valid tokens. Only entries whose label contains
/// `expired` may be refused as `Expired` (they are otherwise valid); every other refusal must
/// be `Invalid`.
///
/// # Panics
/// When `keys` do not build a signer or the tokens are not compact JWS with JSON parts.
#[must_use]
pub fn forged_tokens(keys: &JwtKeys, user_token: &str, device_token: &str) -> Corpus {
    let signer = JwtSigner::from_keys(keys, JwtSettings::default()).expect("service keys");
    let (real_key, verify_pems) = match keys {
        JwtKeys::Hs256(secret) => (EncodingKey::from_secret(secret.expose_secret()), Vec::new()),
        JwtKeys::Asymmetric {
            algorithm,
            private_pem,
            verify_pems,
        } => (
            crate::jwt::keys::load_private(*algorithm, private_pem)
                .expect("service key")
                .0,
            verify_pems.clone(),
        ),
    };
    let user = parts(user_token);
    let now = user.payload["iat"].as_i64().expect("iat");
    let real_alg_name = signer.algorithm_name();
    let c = Ctx {
        user,
        device: parts(device_token),
        real_key,
        real_alg: real_alg_name.parse().expect("algorithm"),
        real_alg_name,
        kid: signer.signing_kid().map(str::to_owned),
        service_jwks: signer.jwks()["keys"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        verify_pems,
        attackers: attackers(),
        now,
    };
    let mut out = Corpus::new();
    for section in [
        alg_none,
        signature_damage,
        tampered,
        other_keys,
        key_confusion,
        bad_claims,
        kind_confusion,
        bad_kids,
        bad_headers,
        bad_shapes,
    ] {
        section(&c, &mut out);
    }
    // Unique tokens (a forgery that happens to equal another is kept once).
    let mut seen = std::collections::HashSet::new();
    out.retain(|(_, t)| t != user_token && t != device_token && seen.insert(t.clone()));
    out
}

/// A connection held open by a test (see [`TestDb::hold`]).
pub struct HeldConnection(std::sync::Arc<std::sync::Mutex<SyncPg>>);

impl std::fmt::Debug for HeldConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldConnection")
    }
}

impl HeldConnection {
    /// Runs `sql` (one or more statements) on this connection.
    ///
    /// # Panics
    /// When a statement fails.
    pub async fn execute(&self, sql: &str) {
        let (conn, sql) = (self.0.clone(), sql.to_owned());
        tokio::task::spawn_blocking(move || {
            use diesel::connection::SimpleConnection as _;
            conn.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .batch_execute(&sql)
                .expect("run SQL");
        })
        .await
        .expect("join");
    }
}

/// Every Postgres repository over a database of its own ([`TestDb`], dropped with this value);
/// a contract `Fixture`.
#[derive(Debug)]
pub struct TestStore {
    /// Users.
    pub users: Arc<PgUserRepository>,
    /// Sessions and their refresh tokens.
    pub sessions: Arc<PgSessionRepository>,
    /// Organizations and memberships.
    pub organizations: Arc<PgOrganizationRepository>,
    /// API keys.
    pub api_keys: Arc<PgApiKeyRepository>,
    /// Devices.
    pub devices: Arc<PgDeviceRepository>,
    /// Login-attempt counters (lockout).
    pub login_attempts: Arc<PgLoginAttemptStore>,
    /// Second factors.
    pub mfa: Arc<PgMfaRepository>,
    /// The event log.
    pub events: Arc<PgEventLog>,
    /// Retention.
    pub pruner: Arc<PgPruner>,
    /// Account deletion.
    pub accounts: Arc<PgAccountRemover>,
    /// The mail outbox.
    pub outbox: Arc<PgMailOutbox>,
    /// One-time tokens.
    pub one_time_tokens: Arc<PgOneTimeTokenStore>,
    /// Administrators' changes to accounts.
    pub administration: Arc<PgUserAdministration>,
    /// The database.
    pub db: TestDb,
}

impl TestStore {
    /// The repositories over a fresh, migrated database.
    ///
    /// # Panics
    /// When the database cannot be created.
    pub async fn new() -> Self {
        let db = TestDb::new().await;
        let pool = db.pool();
        Self {
            users: Arc::new(PgUserRepository::new(pool.clone())),
            sessions: Arc::new(PgSessionRepository::new(pool.clone())),
            organizations: Arc::new(PgOrganizationRepository::new(pool.clone())),
            api_keys: Arc::new(PgApiKeyRepository::new(pool.clone())),
            devices: Arc::new(PgDeviceRepository::new(pool.clone())),
            login_attempts: Arc::new(PgLoginAttemptStore::new(pool.clone())),
            mfa: Arc::new(PgMfaRepository::new(pool.clone())),
            events: Arc::new(PgEventLog::new(pool.clone())),
            accounts: Arc::new(PgAccountRemover::new(pool.clone())),
            outbox: Arc::new(PgMailOutbox::new(pool.clone())),
            one_time_tokens: Arc::new(PgOneTimeTokenStore::new(pool.clone())),
            administration: Arc::new(PgUserAdministration::new(pool.clone())),
            pruner: Arc::new(PgPruner::new(pool)),
            db,
        }
    }

    /// The same, pruning in batches of `rows`.
    #[must_use]
    pub fn with_pruner_batch_size(mut self, rows: u32) -> Self {
        self.pruner = Arc::new(PgPruner::new(self.db.pool()).with_batch_size(rows));
        self
    }
}

auth_core::fixture_from_fields!(TestStore);
