//! Token hardening over HTTP: the forged-token corpus on every verify path, asymmetric
//! signing with JWKS, and key rotation across instances without downtime.

use std::path::PathBuf;

use auth_infra::jwt::JwtKeys;
use auth_infra::test_support::{TestDb, forged_tokens};
use auth_server::config::{Config, JwtAlgorithm};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, str_field, test_config};
use crate::devices::{authenticate, owner_and_org, register};

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../auth-infra/tests/infra/keys")
        .join(name)
}

fn eddsa(config: &mut Config, private: &str, verify: &[&str]) {
    config.jwt.algorithm = JwtAlgorithm::EdDsa;
    config.jwt.private_key_file = Some(key_file(private));
    config.jwt.verify_key_files = verify.iter().map(|v| key_file(v)).collect();
}

const HEADER_PATHS: [(Method, &str); 4] = [
    (Method::GET, "/api/v1/auth/verify"),
    (Method::GET, "/api/v1/users/me"),
    (Method::GET, "/api/v1/organizations"),
    (Method::POST, "/api/v1/auth/logout-all"),
];

/// A user token and a device token issued by `app`.
async fn real_tokens(app: &TestApp) -> (String, String) {
    let (owner_token, org) = owner_and_org(app).await;
    let reg = register(
        app,
        &owner_token,
        &org,
        &format!("frame-{}", uuid::Uuid::now_v7().simple()),
    )
    .await;
    let auth: Value = authenticate(
        app,
        str_field(&reg, "device_id"),
        str_field(&reg, "device_secret"),
    )
    .await
    .json()
    .await
    .unwrap();
    (owner_token, str_field(&auth, "access_token").to_owned())
}

async fn corpus_is_refused_everywhere(app: &TestApp, keys: &JwtKeys) {
    let (user, device) = real_tokens(app).await;
    // The genuine tokens pass: the forgeries fail for their forgery alone.
    assert_eq!(
        app.get_auth("/api/v1/auth/verify", &user).await.status(),
        200
    );
    let v: Value = app
        .post_json("/api/v1/auth/verify-token", &json!({"token": device}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["valid"], true);

    let corpus = forged_tokens(keys, &user, &device);
    assert!(corpus.len() >= 30, "{}", corpus.len());
    for (label, token) in &corpus {
        // In a header, white space around the credentials is the HTTP syntax's, not the
        // token's (RFC 9110 trims it): such entries are forgeries only in a JSON body.
        // A header over the server's size limit is refused by the HTTP layer itself, which then
        // closes the connection: `oversized_credentials_are_refused_by_the_http_layer`.
        let header_paths =
            if token.trim() == user || token.trim() == device || token.len() > 16 * 1024 {
                &[][..]
            } else {
                &HEADER_PATHS[..]
            };
        for (method, path) in header_paths.iter().cloned() {
            let res = app
                .request(method.clone(), path)
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap();
            assert!(
                matches!(res.status().as_u16(), 400 | 401 | 413 | 431),
                "{label} on {path}: {}",
                res.status()
            );
        }
        let res = app
            .post_json("/api/v1/auth/verify-token", &json!({"token": token}))
            .await;
        let status = res.status().as_u16();
        if status == 200 {
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["valid"], false, "{label}: {v}");
            assert!(
                matches!(v["error"].as_str(), Some("INVALID" | "EXPIRED" | "REVOKED")),
                "{label}: {v}"
            );
        } else {
            // Tokens too large for a body, or with characters a JSON string may not carry.
            assert!((400..500).contains(&status), "{label}: {status}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_are_refused_on_every_path_hs256() {
    let app = TestApp::start(Backend::Memory).await;
    let keys = JwtKeys::Hs256(secrecy::SecretSlice::from(
        crate::common::TEST_JWT_KEY.as_bytes().to_vec(),
    ));
    corpus_is_refused_everywhere(&app, &keys).await;
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(jwks, json!({"keys": []}));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_are_refused_on_every_path_eddsa() {
    let app = TestApp::start_with(Backend::Postgres, |c| eddsa(c, "ed25519-a.pem", &[])).await;
    let config = {
        let mut c = test_config();
        eddsa(&mut c, "ed25519-a.pem", &[]);
        c
    };
    let keys = config.jwt.keys(config.auth_env).unwrap();
    corpus_is_refused_everywhere(&app, &keys).await;
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert!(keys[0].get("d").is_none(), "never the private part");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_rotate_across_instances_without_downtime() {
    let db = TestDb::new().await;
    let with_db = |private: &str, verify: &[&str]| {
        let mut c = test_config();
        c.db.url = Some(SecretString::from(db.url().to_owned()));
        eddsa(&mut c, private, verify);
        c
    };
    // Old instance signs with key a; the new one signs with b and still accepts a.
    let old = TestApp::serve(with_db("ed25519-a.pem", &[]), None).await;
    let new = TestApp::serve(with_db("ed25519-b.pem", &["ed25519-a.pub.pem"]), None).await;
    let (_, on_old) = old.user_with_session().await;
    let (_, on_new) = new.user_with_session().await;
    let token_a = str_field(&on_old, "access_token");
    let token_b = str_field(&on_new, "access_token");
    assert_ne!(
        jsonwebtoken::decode_header(token_a).unwrap().kid,
        jsonwebtoken::decode_header(token_b).unwrap().kid
    );
    assert_eq!(
        new.get_auth("/api/v1/auth/verify", token_a).await.status(),
        200,
        "previous key still verifies"
    );
    assert_eq!(
        new.get_auth("/api/v1/auth/verify", token_b).await.status(),
        200
    );
    assert_eq!(
        old.get_auth("/api/v1/auth/verify", token_b).await.status(),
        401,
        "the old instance does not know b yet"
    );
    let jwks: Value = new
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(
        Some(kids[0].to_owned()),
        jsonwebtoken::decode_header(token_b).unwrap().kid,
        "signing key first"
    );
    old.stop().await;
    new.stop().await;
}

#[tokio::test]
async fn asymmetric_algorithms_need_a_usable_key() {
    let mut c = test_config();
    c.jwt.algorithm = JwtAlgorithm::Es256;
    let err = c.jwt.keys(c.auth_env).unwrap_err().to_string();
    assert!(err.contains("JWT_PRIVATE_KEY_FILE"), "{err}");
    c.jwt.private_key_file = Some(key_file("ed25519-a.pem"));
    let store = auth_server::wiring::Store::open(&c).unwrap();
    let err = auth_server::wiring::app_state(&c, &store)
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("key"), "{err}");
    c.jwt.private_key_file = Some(key_file("does-not-exist.pem"));
    assert!(c.jwt.keys(c.auth_env).is_err());
    c.jwt.private_key_file = Some(key_file("p256-a.pem"));
    assert!(auth_server::wiring::app_state(&c, &store).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_credentials_are_refused_by_the_http_layer() {
    let app = TestApp::start(Backend::Memory).await;
    let huge = format!("Bearer {}", "a".repeat(100 * 1024));
    // A client of its own: a server refusing a header may close the connection.
    let client = reqwest::Client::new();
    match client
        .get(app.url("/api/v1/auth/verify"))
        .header("authorization", huge)
        .send()
        .await
    {
        // Within the header limit: the token itself is refused (over 8 KiB is never ours).
        Ok(res) => assert!(
            matches!(res.status().as_u16(), 401 | 431),
            "{}",
            res.status()
        ),
        Err(err) => assert!(err.is_request() || err.is_connect(), "{err}"),
    }
    assert_eq!(
        app.get("/health/live").await.status(),
        200,
        "the server lives on"
    );
    app.stop().await;
}
