//! Isolated Postgres databases for tests.
//!
//! `DATABASE_URL` names a server the tests may create databases on (the test script starts a
//! throwaway one). The first test to arrive migrates a template database, named after a
//! digest of the migrations, under an advisory lock; every test then gets its own copy
//! (`CREATE DATABASE … TEMPLATE`, about 0.1 s), dropped when the test ends. Tests therefore
//! run in parallel, in one process or many.
#![expect(
    clippy::expect_used,
    reason = "test support: failing loudly is the point"
)]

use diesel::{Connection as _, RunQueryDsl as _};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use uuid::Uuid;

use crate::postgres::{DbPool, PoolSettings, build_pool, run_migrations};

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
/// `crates/auth-infra/tests/keys/`. Their private halves are public: never configure them
/// anywhere but in a test.
pub mod test_keys {
    /// Ed25519 pair "a" (PKCS#8 private key).
    pub const ED25519_A: &str = include_str!("../tests/keys/ed25519-a.pem");
    /// Public half of [`ED25519_A`].
    pub const ED25519_A_PUB: &str = include_str!("../tests/keys/ed25519-a.pub.pem");
    /// Ed25519 pair "b".
    pub const ED25519_B: &str = include_str!("../tests/keys/ed25519-b.pem");
    /// Public half of [`ED25519_B`].
    pub const ED25519_B_PUB: &str = include_str!("../tests/keys/ed25519-b.pub.pem");
    /// P-256 pair "a" (PKCS#8 private key).
    pub const P256_A: &str = include_str!("../tests/keys/p256-a.pem");
    /// Public half of [`P256_A`].
    pub const P256_A_PUB: &str = include_str!("../tests/keys/p256-a.pub.pem");
    /// [`P256_A`] as SEC1 (`BEGIN EC PRIVATE KEY`), which is refused with a hint.
    pub const P256_A_SEC1: &str = include_str!("../tests/keys/p256-a.sec1.pem");
    /// P-256 pair "b".
    pub const P256_B: &str = include_str!("../tests/keys/p256-b.pem");
    /// Public half of [`P256_B`].
    pub const P256_B_PUB: &str = include_str!("../tests/keys/p256-b.pub.pem");
    /// RSA-2048 pair "a" (PKCS#8 private key).
    pub const RSA2048_A: &str = include_str!("../tests/keys/rsa2048-a.pem");
    /// Public half of [`RSA2048_A`].
    pub const RSA2048_A_PUB: &str = include_str!("../tests/keys/rsa2048-a.pub.pem");
    /// [`RSA2048_A`] as PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    pub const RSA2048_A_PKCS1: &str = include_str!("../tests/keys/rsa2048-a.pkcs1.pem");
    /// RSA-2048 pair "b".
    pub const RSA2048_B: &str = include_str!("../tests/keys/rsa2048-b.pem");
    /// Public half of [`RSA2048_B`].
    pub const RSA2048_B_PUB: &str = include_str!("../tests/keys/rsa2048-b.pub.pem");
    /// RSA-1024: too small.
    pub const RSA1024: &str = include_str!("../tests/keys/rsa1024.pem");
    /// Public half of [`RSA1024`].
    pub const RSA1024_PUB: &str = include_str!("../tests/keys/rsa1024.pub.pem");
    /// P-384: the wrong curve for ES256.
    pub const P384: &str = include_str!("../tests/keys/p384.pem");
    /// Public half of [`P384`].
    pub const P384_PUB: &str = include_str!("../tests/keys/p384.pub.pem");
    /// The attacker's Ed25519 key (never configured in a signer).
    pub const ATTACKER_ED25519: &str = include_str!("../tests/keys/attacker-ed25519.pem");
    /// The attacker's P-256 key (never configured in a signer).
    pub const ATTACKER_P256: &str = include_str!("../tests/keys/attacker-p256.pem");
    /// The attacker's RSA-2048 key (never configured in a signer).
    pub const ATTACKER_RSA2048: &str = include_str!("../tests/keys/attacker-rsa2048.pem");
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

fn with(map: &Map<String, Value>, edits: &[(&str, Option<Value>)]) -> Map<String, Value> {
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
    let keys = [
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
    ];
    keys.into_iter()
        .map(|(name, algorithm, pem)| {
            let secret = SecretSlice::from(pem.as_bytes().to_vec());
            let (key, _) =
                crate::jwt::keys::load_private(algorithm, &secret).expect("attacker key");
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

struct Forger {
    /// The service's own key, for tokens that are correctly signed but wrong otherwise.
    real_key: EncodingKey,
    real_alg: Algorithm,
    out: Vec<(String, String)>,
}

impl Forger {
    fn push(&mut self, label: impl Into<String>, token: impl Into<String>) {
        self.out.push((label.into(), token.into()));
    }

    /// `header.payload` (already encoded) signed with the service's key.
    fn real_raw(&self, h64: &str, p64: &str) -> String {
        sign_jws(h64, p64, &self.real_key, self.real_alg)
    }

    fn real(&self, header: &Map<String, Value>, payload: &Map<String, Value>) -> String {
        self.real_raw(&enc(header), &enc(payload))
    }
}

/// At least 30 distinct forged tokens `(label, token)`, each of which a correct verifier of
/// the service configured with `keys` must refuse with `verify_access` **and**
/// `verify_device`. Built from a currently valid user token and device token of that service
/// (so an HTTP test can pass tokens its server issued: a tampered token then differs from an
/// accepted one only by the forgery).
///
/// Many entries are signed with the service's own key (expired, wrong `iss`/`aud`, missing
/// claims, unknown `kid`, extra header members, `typ` swapped, ...) so that only the rule
/// under test can refuse them; the others use attacker keys shipped with the tests, public
/// keys as HMAC secrets, `alg: none` and malformed encodings. Labels are unique; tokens are
/// distinct.
///
/// # Panics
/// When `keys` do not build a signer or the tokens are not compact JWS with JSON parts.
#[must_use]
pub fn forged_tokens(
    keys: &JwtKeys,
    user_token: &str,
    device_token: &str,
) -> Vec<(String, String)> {
    let signer = JwtSigner::from_keys(keys, JwtSettings::default()).expect("service keys");
    let service_jwks: Vec<Value> = signer.jwks()["keys"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (real_key, real_alg) = match keys {
        JwtKeys::Hs256(secret) => (
            EncodingKey::from_secret(secret.expose_secret()),
            Algorithm::HS256,
        ),
        JwtKeys::Asymmetric {
            algorithm,
            private_pem,
            ..
        } => (
            crate::jwt::keys::load_private(*algorithm, private_pem)
                .expect("service key")
                .0,
            algorithm.jwt_algorithm(),
        ),
    };
    let real_alg_name = signer.algorithm_name();
    let kid = signer.signing_kid().map(str::to_owned);
    let user = parts(user_token);
    let device = parts(device_token);
    let mut f = Forger {
        real_key,
        real_alg,
        out: Vec::new(),
    };
    let attackers = attackers();
    let now = user.payload["iat"].as_i64().expect("iat");

    // --- alg none -------------------------------------------------------------------
    for spelling in ["none", "None", "NONE", "nOnE"] {
        let h = enc(&with(&user.header, &[("alg", Some(json!(spelling)))]));
        f.push(
            format!("alg {spelling}, empty signature"),
            format!("{h}.{}.", user.p64),
        );
        f.push(
            format!("alg {spelling}, no signature part"),
            format!("{h}.{}", user.p64),
        );
    }
    let h = enc(&json!({"alg": "none", "typ": "at+jwt"}));
    f.push("alg none, bare header", format!("{h}.{}.", user.p64));
    let h = enc(&with(&user.header, &[("alg", Some(json!("none")))]));
    f.push(
        "alg none, original signature kept",
        format!("{h}.{}.{}", user.p64, user.sig),
    );
    let h = enc(&with(&device.header, &[("alg", Some(json!("none")))]));
    f.push(
        "alg none on the device token",
        format!("{h}.{}.", device.p64),
    );

    // --- signature damage -----------------------------------------------------------
    f.push("signature stripped", format!("{}.{}.", user.h64, user.p64));
    f.push(
        "signature stripped (device)",
        format!("{}.{}.", device.h64, device.p64),
    );
    let sig = URL_SAFE_NO_PAD.decode(&user.sig).expect("signature");
    for (label, index) in [("first", 0), ("last", sig.len() - 1)] {
        let mut flipped = sig.clone();
        flipped[index] ^= 0x01;
        f.push(
            format!("{label} signature byte flipped"),
            format!("{}.{}.{}", user.h64, user.p64, b64(&flipped)),
        );
    }
    f.push(
        "signature truncated by one byte",
        format!("{}.{}.{}", user.h64, user.p64, b64(&sig[..sig.len() - 1])),
    );
    f.push(
        "signature all zero bytes",
        format!("{}.{}.{}", user.h64, user.p64, b64(&vec![0; sig.len()])),
    );
    f.push(
        "signature of the device token on the user token",
        format!("{}.{}.{}", user.h64, user.p64, device.sig),
    );
    let mut dsig = URL_SAFE_NO_PAD.decode(&device.sig).expect("signature");
    dsig[0] ^= 0x80;
    f.push(
        "device signature byte flipped",
        format!("{}.{}.{}", device.h64, device.p64, b64(&dsig)),
    );
    let es = enc(&with(&user.header, &[("alg", Some(json!("ES256")))]));
    f.push(
        "ES256 zero signature (r = s = 0, CVE-2022-21449)",
        format!("{es}.{}.{}", user.p64, b64(&[0; 64])),
    );

    // --- tampered payload or header, signature kept ---------------------------------
    let other = json!(Uuid::now_v7());
    for (label, edits) in [
        ("sub", vec![("sub", Some(other.clone()))]),
        ("sid", vec![("sid", Some(other.clone()))]),
        ("exp", vec![("exp", Some(json!(now + 365 * 86_400)))]),
        ("iss", vec![("iss", Some(json!("evil")))]),
    ] {
        let p = enc(&with(&user.payload, &edits));
        f.push(
            format!("payload {label} changed, signature kept"),
            format!("{}.{p}.{}", user.h64, user.sig),
        );
    }
    for (label, edits) in [
        ("sub", vec![("sub", Some(json!("another-device")))]),
        ("org", vec![("org", Some(other.clone()))]),
    ] {
        let p = enc(&with(&device.payload, &edits));
        f.push(
            format!("device payload {label} changed, signature kept"),
            format!("{}.{p}.{}", device.h64, device.sig),
        );
    }
    let h = enc(&with(&user.header, &[("typ", Some(json!("device+jwt")))]));
    f.push(
        "user header typ swapped to device+jwt, signature kept",
        format!("{h}.{}.{}", user.p64, user.sig),
    );
    let h = enc(&with(&device.header, &[("typ", Some(json!("at+jwt")))]));
    f.push(
        "device header typ swapped to at+jwt, signature kept",
        format!("{h}.{}.{}", device.p64, device.sig),
    );
    for alg in ["HS256", "EdDSA", "ES256", "RS256", "PS256"] {
        if alg != real_alg_name {
            let h = enc(&with(&user.header, &[("alg", Some(json!(alg)))]));
            f.push(
                format!("alg changed to {alg}, signature kept"),
                format!("{h}.{}.{}", user.p64, user.sig),
            );
        }
    }

    // --- other keys -----------------------------------------------------------------
    let attacker_secret = EncodingKey::from_secret(b"attacker-chosen-secret-0123456789abcdef");
    for (label, secret) in [
        ("another HS256 secret", attacker_secret.clone()),
        ("the empty HS256 secret", EncodingKey::from_secret(b"")),
        (
            "HS256 secret \"secret\"",
            EncodingKey::from_secret(b"secret"),
        ),
    ] {
        let h = enc(&with(&user.header, &[("alg", Some(json!("HS256")))]));
        f.push(
            format!("signed with {label}"),
            sign_jws(&h, &user.p64, &secret, Algorithm::HS256),
        );
    }
    for a in &attackers {
        let alg_name = a.jwk["alg"].as_str().expect("alg");
        let h = with(&user.header, &[("alg", Some(json!(alg_name)))]);
        let label = if alg_name == real_alg_name {
            format!("same alg, {} key, service kid", a.name)
        } else {
            format!("alg swapped to {alg_name}, {} key", a.name)
        };
        f.push(label, sign_jws(&enc(&h), &user.p64, &a.key, a.alg));
        let h = with(&h, &[("kid", Some(a.jwk["kid"].clone()))]);
        f.push(
            format!("{alg_name} by the {}, its own kid", a.name),
            sign_jws(&enc(&h), &user.p64, &a.key, a.alg),
        );
        let h = with(&h, &[("jwk", Some(a.jwk.clone()))]);
        f.push(
            format!("jwk header embedding the {}, signed by it", a.name),
            sign_jws(&enc(&h), &user.p64, &a.key, a.alg),
        );
        let hd = with(&device.header, &[("alg", Some(json!(alg_name)))]);
        f.push(
            format!("device token by the {}", a.name),
            sign_jws(&enc(&hd), &device.p64, &a.key, a.alg),
        );
    }
    // The service's own key under another algorithm of its family.
    let same_family: &[(&str, Algorithm)] = match real_alg {
        Algorithm::HS256 => &[("HS384", Algorithm::HS384), ("HS512", Algorithm::HS512)],
        Algorithm::RS256 => &[
            ("RS384", Algorithm::RS384),
            ("RS512", Algorithm::RS512),
            ("PS256", Algorithm::PS256),
        ],
        _ => &[],
    };
    for (name, alg) in same_family {
        let h = enc(&with(&user.header, &[("alg", Some(json!(name)))]));
        f.push(
            format!("alg {name} with the service's own key"),
            sign_jws(&h, &user.p64, &f.real_key, *alg),
        );
    }

    // --- HS256 with public key bytes as the secret (algorithm confusion) -------------
    let mut public_keys: Vec<(String, Vec<u8>)> = Vec::new();
    for jwk in service_jwks.iter().chain(attackers.iter().map(|a| &a.jwk)) {
        let kid_text = jwk["kid"]
            .as_str()
            .unwrap_or("?")
            .chars()
            .take(8)
            .collect::<String>();
        if let (Some(pem), Some(der)) = (public_pem_from_jwk(jwk), public_der_from_jwk(jwk)) {
            public_keys.push((
                format!("{} key {kid_text} PEM", jwk["kty"]),
                pem.clone().into_bytes(),
            ));
            public_keys.push((
                format!("{} key {kid_text} PEM without final newline", jwk["kty"]),
                pem.trim_end().as_bytes().to_vec(),
            ));
            public_keys.push((format!("{} key {kid_text} DER", jwk["kty"]), der));
            public_keys.push((
                format!("{} key {kid_text} JWK JSON", jwk["kty"]),
                serde_json::to_vec(jwk).expect("JSON"),
            ));
        }
    }
    if let JwtKeys::Asymmetric { verify_pems, .. } = keys {
        for (i, pem) in verify_pems.iter().enumerate() {
            public_keys.push((
                format!("verify key file #{}", i + 1),
                pem.clone().into_bytes(),
            ));
        }
    }
    for (label, secret) in public_keys {
        let h = enc(&with(&user.header, &[("alg", Some(json!("HS256")))]));
        f.push(
            format!("HS256 keyed with the {label}"),
            sign_jws(
                &h,
                &user.p64,
                &EncodingKey::from_secret(&secret),
                Algorithm::HS256,
            ),
        );
    }

    // --- correctly signed, claims wrong ---------------------------------------------
    let user_claims: Vec<(&str, Vec<(&str, Option<Value>)>)> = vec![
        (
            "expired an hour ago",
            vec![
                ("iat", Some(json!(now - 7200))),
                ("nbf", Some(json!(now - 7200))),
                ("exp", Some(json!(now - 3600))),
            ],
        ),
        (
            "nbf an hour ahead",
            vec![
                ("nbf", Some(json!(now + 3600))),
                ("exp", Some(json!(now + 7200))),
            ],
        ),
        (
            "iat an hour ahead",
            vec![
                ("iat", Some(json!(now + 3600))),
                ("exp", Some(json!(now + 7200))),
            ],
        ),
        (
            "wrong iss",
            vec![("iss", Some(json!("https://evil.example")))],
        ),
        (
            "iss in other case",
            vec![(
                "iss",
                Some(json!(
                    user.payload["iss"].as_str().unwrap_or("").to_uppercase() + "X"
                )),
            )],
        ),
        ("wrong aud", vec![("aud", Some(json!("another-api")))]),
        (
            "aud array without the service",
            vec![("aud", Some(json!(["another-api"])))],
        ),
        ("missing exp", vec![("exp", None)]),
        ("missing sub", vec![("sub", None)]),
        ("missing nbf", vec![("nbf", None)]),
        ("missing iat", vec![("iat", None)]),
        ("missing jti", vec![("jti", None)]),
        ("missing sid", vec![("sid", None)]),
        ("missing iss", vec![("iss", None)]),
        ("missing aud", vec![("aud", None)]),
        (
            "exp as a string",
            vec![("exp", Some(json!((now + 3600).to_string())))],
        ),
        ("exp as a huge float", vec![("exp", Some(json!(1e300)))]),
        ("exp null", vec![("exp", Some(Value::Null))]),
        ("sub not a UUID", vec![("sub", Some(json!("admin")))]),
        (
            "100 KB claim",
            vec![("pad", Some(json!("A".repeat(100 * 1024))))],
        ),
    ];
    for (label, edits) in user_claims {
        let token = f.real(&user.header, &with(&user.payload, &edits));
        f.push(format!("{label}, correctly signed"), token);
    }
    let device_claims: Vec<(&str, Vec<(&str, Option<Value>)>)> = vec![
        (
            "device expired an hour ago",
            vec![
                ("iat", Some(json!(now - 7200))),
                ("nbf", Some(json!(now - 7200))),
                ("exp", Some(json!(now - 3600))),
            ],
        ),
        (
            "device nbf an hour ahead",
            vec![
                ("nbf", Some(json!(now + 3600))),
                ("exp", Some(json!(now + 7200))),
            ],
        ),
        ("device missing org", vec![("org", None)]),
        ("device missing exp", vec![("exp", None)]),
        (
            "device wrong aud",
            vec![("aud", Some(json!("another-api")))],
        ),
        (
            "device sub with path traversal",
            vec![("sub", Some(json!("../../etc/passwd")))],
        ),
    ];
    for (label, edits) in device_claims {
        let token = f.real(&device.header, &with(&device.payload, &edits));
        f.push(format!("{label}, correctly signed"), token);
    }
    let array = f.real_raw(&user.h64, &enc(&json!([user.payload.clone()])));
    f.push("payload a JSON array, correctly signed", array);
    let null = f.real_raw(&user.h64, &enc(&Value::Null));
    f.push("payload null, correctly signed", null);
    let text = f.real_raw(&user.h64, &b64(b"not json"));
    f.push("payload not JSON, correctly signed", text);
    let p = serde_json::to_string(&user.payload).expect("JSON");
    let dup = f.real_raw(
        &user.h64,
        &b64(format!("{{\"sub\":{other},{}", &p[1..]).as_bytes()),
    );
    f.push("duplicate sub claim, correctly signed", dup);

    // --- kind confusion, correctly signed -------------------------------------------
    for (label, header, payload) in [
        (
            "user claims with typ device+jwt",
            with(&user.header, &[("typ", Some(json!("device+jwt")))]),
            &user.payload,
        ),
        (
            "device claims with typ at+jwt",
            with(&device.header, &[("typ", Some(json!("at+jwt")))]),
            &device.payload,
        ),
        (
            "typ JWT",
            with(&user.header, &[("typ", Some(json!("JWT")))]),
            &user.payload,
        ),
        (
            "typ missing",
            with(&user.header, &[("typ", None)]),
            &user.payload,
        ),
        (
            "typ AT+JWT",
            with(&user.header, &[("typ", Some(json!("AT+JWT")))]),
            &user.payload,
        ),
        (
            "typ application/at+jwt",
            with(&user.header, &[("typ", Some(json!("application/at+jwt")))]),
            &user.payload,
        ),
        (
            "typ null",
            with(&user.header, &[("typ", Some(Value::Null))]),
            &user.payload,
        ),
    ] {
        let token = f.real(&header, payload);
        f.push(format!("{label}, correctly signed"), token);
    }

    // --- kid, correctly signed ------------------------------------------------------
    let mut kids: Vec<(&str, Option<Value>)> = vec![
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
        (
            "kid an array",
            Some(json!([kid.clone().unwrap_or_default()])),
        ),
        (
            "kid with a NUL byte",
            Some(json!(format!("{}\u{0}", kid.clone().unwrap_or_default()))),
        ),
        ("kid a URL", Some(json!("https://attacker.example/key.pem"))),
    ];
    if let Some(k) = &kid {
        kids.push(("kid in other case", Some(json!(k.to_uppercase()))));
        kids.push(("kid missing", None));
    } else {
        kids.push(("kid under HS256", Some(json!("k1"))));
    }
    for (label, value) in kids {
        let token = f.real(&with(&user.header, &[("kid", value)]), &user.payload);
        f.push(format!("{label}, correctly signed"), token);
    }

    // --- header members never issued, correctly signed -------------------------------
    let extra: Vec<(&str, Value)> = vec![
        (
            "jku",
            json!("https://attacker.example/.well-known/jwks.json"),
        ),
        ("jwk", attackers[0].jwk.clone()),
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
        let token = f.real(&with(&user.header, &[(name, Some(value))]), &user.payload);
        f.push(format!("{name} header, correctly signed"), token);
    }
    let token = f.real(
        &with(
            &user.header,
            &[("crit", Some(json!(["b64"]))), ("b64", Some(json!(false)))],
        ),
        &user.payload,
    );
    f.push("crit b64 (RFC 7797), correctly signed", token);
    let token = f.real(
        &with(
            &device.header,
            &[("jku", Some(json!("https://attacker.example/j")))],
        ),
        &device.payload,
    );
    f.push("jku header on the device token, correctly signed", token);
    let h = serde_json::to_string(&user.header).expect("JSON");
    let dups = [
        (
            "duplicate alg (none first)",
            format!("{{\"alg\":\"none\",{}", &h[1..]),
        ),
        (
            "duplicate alg (none last)",
            format!("{},\"alg\":\"none\"}}", &h[..h.len() - 1]),
        ),
        (
            "duplicate typ",
            format!("{{\"typ\":\"device+jwt\",{}", &h[1..]),
        ),
        (
            "duplicate kid",
            format!("{{\"kid\":\"unknown\",{}", &h[1..]),
        ),
        ("header a JSON array", format!("[{h}]")),
        ("header not JSON", "alg=HS256".to_owned()),
    ];
    for (label, header) in dups {
        let token = f.real_raw(&b64(header.as_bytes()), &user.p64);
        f.push(format!("{label}, correctly signed"), token);
    }

    // --- shapes and encodings -------------------------------------------------------
    let u = user.raw.as_str();
    let big_header = enc(&with(
        &user.header,
        &[("pad", Some(json!("A".repeat(100 * 1024))))],
    ));
    f.push(
        "100 KB header",
        format!("{big_header}.{}.{}", user.p64, user.sig),
    );
    f.push(
        "100 KB of repeated token",
        u.repeat(100 * 1024 / u.len() + 1),
    );
    for (label, token) in [
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
            format!(
                "{}.AAAA.AAAA.AAAA.AAAA",
                enc(&json!({"alg":"RSA-OAEP","enc":"A256GCM","typ":"at+jwt"}))
            ),
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
        (
            "standard-alphabet signature",
            format!(
                "{}.{}.{}",
                user.h64,
                user.p64,
                STANDARD
                    .encode(&sig)
                    .trim_end_matches('=')
                    .replace(['-', '_'], "+")
            ),
        ),
        ("valid user token reversed", u.chars().rev().collect()),
        (
            "header and payload swapped",
            format!("{}.{}.{}", user.p64, user.h64, user.sig),
        ),
    ] {
        f.push(label, token);
    }

    // Unique tokens (a forgery that happens to equal another is kept once).
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<(String, String)> = f
        .out
        .into_iter()
        .filter(|(_, t)| seen.insert(t.clone()))
        .collect();
    out.retain(|(_, t)| t != user_token && t != device_token);
    out
}
