//! HTTP itself: 405 with `Allow` for a known path called with another method, compression of
//! large answers (never of secrets), a bounded time to send a body, and metric labels that no
//! request can choose.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{Backend, TestApp, assert_problem};

/// Every method a test tries on every path.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The methods of an `Allow` header.
fn allow(res: &reqwest::Response) -> BTreeSet<String> {
    res.headers()
        .get("allow")
        .unwrap_or_else(|| panic!("no Allow header on {}", res.url()))
        .to_str()
        .unwrap()
        .split(',')
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

/// A concrete path for an OpenAPI path template.
fn concrete(template: &str) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').unwrap() + open;
        out.push_str(&id);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether an OpenAPI path template matches a concrete path.
fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}')))
}

/// Walks the OpenAPI document: for each path, each method it documents is served (never a
/// 405) and every other method answers 405 with `Allow` naming exactly the documented ones.
/// The pages and the document itself, which the document does not describe, are checked too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_a_path_does_not_serve_answers_405_with_allow() {
    let app = TestApp::start(Backend::Memory).await;
    let doc: Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let mut table: Vec<(String, BTreeSet<String>)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .map(|m| m.to_uppercase())
                .filter(|m| METHODS.contains(&m.as_str()))
                .collect();
            (path.clone(), methods)
        })
        .collect();
    assert!(table.len() >= 25, "{table:?}");
    for page in [
        "/docs",
        "/docs/",
        "/docs/index.html",
        "/redoc",
        "/redoc/redoc.standalone.js",
        "/api-docs/openapi.json",
        "/verify-email",
        "/reset-password",
    ] {
        table.push((page.to_owned(), BTreeSet::from(["GET".to_owned()])));
    }
    for (template, served) in &table {
        assert!(!served.is_empty(), "{template}");
        let path = concrete(template);
        // A literal path is a resource of its own: `/api-keys/verify` serves only its `POST`,
        // although `GET /api-keys/{id}` would match it. A concrete path made from a template
        // serves what every template that matches it serves.
        let served: BTreeSet<String> = if template.contains('{') {
            table
                .iter()
                .filter(|(other, _)| matches(other, &path))
                .flat_map(|(_, methods)| methods.iter().cloned())
                .collect()
        } else {
            served.clone()
        };
        let served = &served;
        for method in METHODS {
            let res = app
                .request(Method::from_bytes(method.as_bytes()).unwrap(), &path)
                .send()
                .await
                .unwrap();
            if served.contains(method) {
                assert_ne!(res.status(), 405, "{method} {template} is served");
                continue;
            }
            assert_eq!(res.status(), 405, "{method} {template}");
            assert_eq!(&allow(&res), served, "{method} {template}");
            if method == "HEAD" {
                continue; // no body
            }
            let body = assert_problem(res, 405, "METHOD_NOT_ALLOWED").await;
            assert_eq!(body["title"], "Method Not Allowed");
        }
    }
    // The literal path is matched decoded, as the router matches it.
    let res = app
        .request(Method::GET, "/api/v1/api-keys/verif%79")
        .send()
        .await
        .unwrap();
    assert_eq!(allow(&res), BTreeSet::from(["POST".to_owned()]));
    assert_problem(res, 405, "METHOD_NOT_ALLOWED").await;
    // An unknown path stays 404 whatever the method; an extension method too.
    for method in ["GET", "POST", "DELETE", "FOO"] {
        let res = app
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                "/api/v1/nothing",
            )
            .send()
            .await
            .unwrap();
        assert_problem(res, 404, "NOT_FOUND").await;
    }
    let res = app
        .request(Method::from_bytes(b"FOO").unwrap(), "/health/live")
        .send()
        .await
        .unwrap();
    assert_eq!(allow(&res), BTreeSet::from(["GET".to_owned()]));
    assert_problem(res, 405, "METHOD_NOT_ALLOWED").await;
    app.stop().await;
}

/// With CORS on, a preflight still answers (it is not a 405), and a plain OPTIONS is a 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_survives_405() {
    let app = TestApp::start_with(Backend::Memory, |c| {
        c.http.cors_origins = vec!["https://app.example.com".into()];
    })
    .await;
    for path in [
        "/api/v1/auth/login",
        "/api/v1/api-keys/0190a0a0-0000-7000-8000-000000000000",
    ] {
        let res = app
            .request(Method::OPTIONS, path)
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "https://app.example.com"
        );
    }
    let res = app
        .request(Method::OPTIONS, "/api/v1/auth/login")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    app.stop().await;
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

/// Large public answers go out compressed as the client allows; answers carrying secrets
/// (`Cache-Control: no-store`) never do, whatever their size (BREACH); small ones neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_are_compressed_but_never_secrets() {
    let app = TestApp::start(Backend::Memory).await;
    let plain = app.get("/api-docs/openapi.json").await;
    assert_eq!(header(&plain, "content-encoding"), None);
    assert!(
        header(&plain, "vary").is_some_and(|v| v.to_lowercase().contains("accept-encoding")),
        "Vary on a compressible answer, even sent plain"
    );
    let plain = plain.bytes().await.unwrap();
    assert!(plain.len() > 30_000, "{}", plain.len());
    for (encoding, decode) in [("gzip", gunzip as fn(&[u8]) -> Vec<u8>), ("br", unbrotli)] {
        let res = app
            .request(Method::GET, "/api-docs/openapi.json")
            .header("accept-encoding", encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "content-encoding"), Some(encoding));
        assert!(header(&res, "vary").is_some_and(|v| v.to_lowercase().contains("accept-encoding")));
        let body = res.bytes().await.unwrap();
        assert!(body.len() < plain.len() / 4, "{encoding}: {}", body.len());
        let json: Value = serde_json::from_slice(&decode(&body)).unwrap();
        assert_eq!(json, serde_json::from_slice::<Value>(&plain).unwrap());
    }
    // A client that prefers br gets br; one that refuses every coding gets the plain text.
    let res = app
        .request(Method::GET, "/api-docs/openapi.json")
        .header("accept-encoding", "gzip;q=0.5, br")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&res, "content-encoding"), Some("br"));
    let res = app
        .request(Method::GET, "/api-docs/openapi.json")
        .header("accept-encoding", "identity")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-encoding"), None);

    // A token answer: small, and a secret.
    let email = crate::common::unique_email();
    app.register(&email, crate::common::PASSWORD).await;
    let res = app
        .request(Method::POST, "/api/v1/auth/login")
        .header("accept-encoding", "gzip, br")
        .json(&json!({"email": email, "password": crate::common::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "cache-control"), Some("no-store"));
    assert_eq!(header(&res, "content-encoding"), None);
    let login: Value = res.json().await.unwrap();

    // A large no-store answer: a new API key (a secret, shown once) holding 100 long scopes.
    let token = login["access_token"].as_str().unwrap().to_owned();
    let org = crate::organizations::new_org(&app, &token, "Compression").await;
    let scopes: Vec<String> = (0..100)
        .map(|i| format!("scope:{i:03}:{}", "x".repeat(50)))
        .collect();
    let res = app
        .request(Method::POST, "/api/v1/api-keys")
        .bearer_auth(&token)
        .header("accept-encoding", "gzip, br")
        .json(&json!({"organization_id": org, "name": "big", "scopes": scopes}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "cache-control"), Some("no-store"));
    assert_eq!(
        header(&res, "content-encoding"),
        None,
        "no-store is never compressed"
    );
    let body = res.bytes().await.unwrap();
    assert!(body.len() >= 4096, "{}", body.len());
    serde_json::from_slice::<Value>(&body).unwrap();

    // A small public answer stays plain, and says nothing of codings.
    let res = app
        .request(Method::GET, "/health/live")
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&res, "content-encoding"), None);
    assert!(res.bytes().await.unwrap().len() < 1024);
    let res = app
        .request(Method::GET, "/api/v1/users/me")
        .bearer_auth(login["access_token"].as_str().unwrap())
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-encoding"), None);
    app.stop().await;
}

/// Reads the answer on a raw connection whose request body did not come in time: 408
/// problem+json, 9–15 s after `started` (the body timeout is 10 s).
async fn assert_body_timeout(stream: &mut (impl tokio::io::AsyncRead + Unpin), started: Instant) {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") || !answer.ends_with(b"}") {
        let n = tokio::time::timeout(
            Duration::from_secs(20).saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        .expect("an answer within 20 s")
        .unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.to_lowercase()
            .contains("content-type: application/problem+json"),
        "{text}"
    );
    assert!(text.contains("\"code\":\"REQUEST_TIMEOUT\""), "{text}");
    assert!(text.contains("\"title\":\"Request Timeout\""), "{text}");
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(15)).contains(&elapsed),
        "{elapsed:?}"
    );
}

/// A head that announces a body which never comes does not hold the connection past the body
/// timeout (10 s) either: the reader, which looks for a body before it arms the deadline, must
/// arm it although not one byte of the body arrives to wake it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_body_that_never_comes_times_out_with_408() {
    let app = TestApp::start(Backend::Memory).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/auth/verify-token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    assert_body_timeout(&mut stream, started).await;
    app.stop().await;
}

/// A body sent a byte at a time does not hold the connection past the body timeout (10 s):
/// the answer is 408 problem+json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_times_out_with_408() {
    let app = TestApp::start(Backend::Memory).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = br#"{"email":"slow@example.com","password":"correct horse battery"}"#;
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut read, mut write) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for byte in body.iter().take(body.len() - 1) {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    });
    assert_body_timeout(&mut read, started).await;
    trickle.abort();
    app.stop().await;
}
