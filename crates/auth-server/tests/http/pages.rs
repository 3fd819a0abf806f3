//! The pages of mailed links, `/verify-email` and `/reset-password`: strict headers, a
//! Content-Security-Policy that allows exactly the inline blocks served (an edited script whose
//! hash was not updated fails here), nothing loaded from elsewhere, the password rules of the
//! running policy, and API calls to routes the API serves. `scripts/browser-test.sh` runs them
//! in Chromium.

use std::collections::BTreeSet;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::common::{Backend, TestApp};

const PAGES: [&str; 2] = ["/verify-email", "/reset-password"];

/// The text of every `<tag …>…</tag>` block of `html`, attributes or not.
fn blocks<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start..];
        let body = &after[after.find('>').unwrap() + 1..];
        let end = body.find(&close).unwrap();
        found.push(&body[..end]);
        rest = &body[end..];
    }
    found
}

/// The sources of one directive of a policy.
fn directive<'a>(csp: &'a str, name: &str) -> Vec<&'a str> {
    csp.split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix(name).filter(|s| s.starts_with(' ')))
        .unwrap_or_else(|| panic!("no {name} in {csp}"))
        .split_whitespace()
        .collect()
}

/// The CSP source a browser accepts for an inline block with this text.
fn source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_pages_are_self_contained_with_strict_headers() {
    let app = TestApp::start(Backend::Memory).await;
    for path in PAGES {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        let headers = res.headers().clone();
        assert_eq!(
            headers["content-type"], "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert!(headers.contains_key("x-request-id"), "{path}");
        assert_eq!(
            headers.get_all("content-security-policy").iter().count(),
            1,
            "{path}"
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert_eq!(directive(csp, "default-src"), ["'none'"], "{csp}");
        assert_eq!(directive(csp, "connect-src"), ["'self'"], "{csp}");
        assert_eq!(directive(csp, "form-action"), ["'none'"], "{csp}");
        assert_eq!(directive(csp, "base-uri"), ["'none'"], "{csp}");
        assert_eq!(directive(csp, "frame-ancestors"), ["'none'"], "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");

        let html = res.text().await.unwrap();
        for (tag, name) in [("script", "script-src"), ("style", "style-src")] {
            let served: BTreeSet<String> = blocks(&html, tag).into_iter().map(source).collect();
            assert!(!served.is_empty(), "{path} has an inline {tag}");
            let allowed: BTreeSet<String> = directive(csp, name)
                .into_iter()
                .map(str::to_owned)
                .collect();
            assert_eq!(
                allowed, served,
                "{path}: {name} must allow exactly the {tag} blocks served"
            );
        }
        // Hashes do not cover inline attributes (handlers, styles), and nothing may come from
        // elsewhere: no URL with a scheme or a protocol-relative one, no attribute or rule
        // that loads a resource.
        for refused in [
            "http:",
            "https:",
            "//",
            " src=",
            " href=",
            "url(",
            "@import",
            " style=",
            " onclick=",
            " onload=",
            " onsubmit=",
            "javascript:",
        ] {
            assert!(!html.contains(refused), "{path} contains {refused:?}");
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reset_page_states_the_running_password_policy() {
    let app = TestApp::start(Backend::Memory).await;
    let html = app.get("/reset-password").await.text().await.unwrap();
    assert!(html.contains("data-min-chars=\"8\" data-max-chars=\"128\""));
    assert!(html.contains("<li>at least 8 characters long"), "{html}");
    assert!(html.contains("<li>at most 128 characters long</li>"));
    assert!(html.contains("<li>not one of the most commonly used passwords</li>"));
    assert!(html.contains("<li>free of control characters"));
    assert!(!html.contains("{{"), "every placeholder is filled");
    app.stop().await;

    let app = TestApp::start_with(Backend::Memory, |c| c.passwords.min_length = 12).await;
    let res = app.get("/reset-password").await;
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = res.text().await.unwrap();
    assert!(html.contains("data-min-chars=\"12\""));
    assert!(html.contains("<li>at least 12 characters long"), "{html}");
    // The policy is filled into the markup, never into the hashed script.
    let script = blocks(&html, "script")[0];
    assert!(directive(&csp, "script-src").contains(&source(script).as_str()));
    app.stop().await;
}

/// The pages post to API routes that exist, with the method the document gives them; the
/// pages themselves are not part of the API's document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_call_routes_the_api_serves() {
    let app = TestApp::start(Backend::Memory).await;
    let doc: Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (page, called) in [
        ("/verify-email", "/api/v1/auth/verify-email"),
        ("/reset-password", "/api/v1/auth/password-reset/confirm"),
    ] {
        assert!(!paths.contains_key(page), "{page} is not an API operation");
        let html = app.get(page).await.text().await.unwrap();
        let script = blocks(&html, "script")[0];
        // Relative to the page (so that a path prefix in AUTH_PUBLIC_URL is kept).
        let relative = format!("fetch(\"{}\"", called.trim_start_matches('/'));
        assert!(script.contains(&relative), "{page} calls {called}");
        assert!(
            paths
                .get(called)
                .is_some_and(|item| item.get("post").is_some()),
            "{page} calls POST {called}, which the API does not serve"
        );
    }
    app.stop().await;
}
