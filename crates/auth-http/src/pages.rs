//! The two pages that complete a mailed link in a browser: `GET /verify-email` and
//! `GET /reset-password`, the targets of `AUTH_PUBLIC_URL/verify-email#token=…` and
//! `AUTH_PUBLIC_URL/reset-password#token=…`.
//!
//! Each page is one file in `crates/auth-http/pages/` with its style and script inline: it
//! loads nothing from anywhere, so it works offline. The script reads the token from the URL
//! fragment (which a browser never sends to a server, so the token is in no log), removes it
//! from the address bar, and posts it to the API. The answers carry a Content-Security-Policy
//! that allows exactly those inline blocks, by the SHA-256 hashes of the files' own `<script>`
//! and `<style>` blocks (computed on first use), and nothing else but `connect-src 'self'` for
//! the API call; and `Cache-Control: no-store`. The other security headers are the API's own
//! ([`crate::security_headers`]). The pages are for people, not API clients: they are not in
//! the OpenAPI document.
//!
//! The reset page lists the password rules of the running service, filled in by the server
//! from its [`PasswordPolicy`], one line per way [`PasswordPolicy::new_password`] refuses.

use std::sync::LazyLock;

use actix_web::http::header::{self, ContentType};
use actix_web::{HttpResponse, web};
use auth_core::model::{PasswordError, PasswordPolicy, escape_html};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

use crate::state::AppState;

/// The page of the verification link.
pub const VERIFY_EMAIL_PATH: &str = "/verify-email";
/// The page of the password-reset link.
pub const RESET_PASSWORD_PATH: &str = "/reset-password";

const VERIFY_EMAIL_HTML: &str = include_str!("../pages/verify-email.html");
const RESET_PASSWORD_HTML: &str = include_str!("../pages/reset-password.html");

static VERIFY_EMAIL_CSP: LazyLock<String> =
    LazyLock::new(|| content_security_policy(VERIFY_EMAIL_HTML));
static RESET_PASSWORD_CSP: LazyLock<String> =
    LazyLock::new(|| content_security_policy(RESET_PASSWORD_HTML));

/// Serves both pages. [`crate::app`] and [`crate::configure`] mount them.
///
/// They carry the API's security headers however they are mounted; inside [`crate::app`],
/// whose outer layer adds the same headers, that layer then finds them set and adds nothing.
pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(VERIFY_EMAIL_PATH)
            .wrap(crate::security_headers())
            .get(verify_email),
    )
    .service(
        web::resource(RESET_PASSWORD_PATH)
            .wrap(crate::security_headers())
            .get(reset_password),
    );
}

async fn verify_email() -> HttpResponse {
    page(VERIFY_EMAIL_HTML.to_owned(), &VERIFY_EMAIL_CSP)
}

async fn reset_password(state: web::Data<AppState>) -> HttpResponse {
    page(
        reset_password_html(&state.password_policy),
        &RESET_PASSWORD_CSP,
    )
}

fn page(html: String, csp: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(html)
}

/// The reset page with the rules of `policy`. Only markup outside the `<script>` and `<style>`
/// blocks is filled in, so the hashes of the template hold for every policy.
fn reset_password_html(policy: &PasswordPolicy) -> String {
    RESET_PASSWORD_HTML
        .replace("{{min_chars}}", &policy.min_chars.to_string())
        .replace("{{max_chars}}", &policy.max_chars.to_string())
        .replace("{{rules}}", &password_rules(policy))
}

/// The rules as `<li>` lines: one for each way the policy refuses a password.
fn password_rules(policy: &PasswordPolicy) -> String {
    [
        PasswordError::Empty,
        PasswordError::TooShort {
            min: policy.min_chars,
        },
        PasswordError::TooLong {
            max: policy.max_chars,
        },
        PasswordError::ControlCharacter,
        PasswordError::Common,
    ]
    .into_iter()
    .filter_map(rule)
    .map(|line| format!("<li>{}</li>", escape_html(&line)))
    .collect::<Vec<_>>()
    .join("\n")
}

/// A refusal as the rule it enforces. The match is exhaustive: a new refusal in the model does
/// not compile until the page says what it asks of the user.
fn rule(refusal: PasswordError) -> Option<String> {
    match refusal {
        // The minimum length says it.
        PasswordError::Empty => None,
        PasswordError::TooShort { min } => Some(format!(
            "at least {min} characters long (spaces, accents and emoji count as characters)"
        )),
        PasswordError::TooLong { max } => Some(format!("at most {max} characters long")),
        PasswordError::ControlCharacter => {
            Some("free of control characters, such as tabs and line breaks".to_owned())
        }
        PasswordError::Common => Some("not one of the most commonly used passwords".to_owned()),
    }
}

/// The policy of a page: nothing from anywhere (`default-src 'none'`) except its own inline
/// scripts and styles, by hash, and requests to its own origin (the API call); no `<base>`,
/// no form submission (the script posts the form; without it nothing is sent, so a password
/// never lands in a URL), no framing.
#[must_use]
pub fn content_security_policy(html: &str) -> String {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        inline_hashes(html, "script"),
        inline_hashes(html, "style"),
    )
}

/// The CSP sources of the inline `<tag>` blocks (written without attributes) of `html`:
/// `'sha256-…'` of each block's text exactly as the browser hashes it, or `'none'`.
fn inline_hashes(html: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut sources = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else { break };
        let digest = Sha256::digest(&body.as_bytes()[..end]);
        sources.push(format!("'sha256-{}'", STANDARD.encode(digest)));
        rest = &body[end + close.len()..];
    }
    if sources.is_empty() {
        "'none'".to_owned()
    } else {
        sources.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inline_block_is_hashed_and_none_is_missed() {
        for html in [VERIFY_EMAIL_HTML, RESET_PASSWORD_HTML] {
            // Blocks with attributes (`<script src=…>`, `<style media=…>`) would not be hashed.
            assert!(!html.contains("<script ") && !html.contains("<style "));
            assert_eq!(html.matches("<script>").count(), 1);
            assert_eq!(html.matches("<style>").count(), 1);
            let csp = content_security_policy(html);
            assert_eq!(csp.matches("'sha256-").count(), 2, "{csp}");
            assert!(!csp.contains("unsafe"), "{csp}");
        }
        assert_eq!(inline_hashes("<p>no script</p>", "script"), "'none'");
        // The hash of the empty string, as a browser computes it for `<script></script>`.
        assert_eq!(
            inline_hashes("<script></script>", "script"),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
    }

    #[test]
    fn the_rules_follow_the_policy_and_leave_the_script_alone() {
        let policy = PasswordPolicy {
            min_chars: 12,
            max_chars: 64,
        };
        let html = reset_password_html(&policy);
        assert!(!html.contains("{{"), "every placeholder filled");
        assert!(html.contains("data-min-chars=\"12\" data-max-chars=\"64\""));
        assert!(html.contains("<li>at least 12 characters long"));
        assert!(html.contains("<li>at most 64 characters long</li>"));
        assert!(html.contains("<li>not one of the most commonly used passwords</li>"));
        assert_eq!(
            content_security_policy(&html),
            content_security_policy(RESET_PASSWORD_HTML),
            "placeholders only outside the hashed blocks"
        );
    }
}
