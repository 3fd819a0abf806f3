//! The client against the real auth server, started in the test process: every method,
//! retries and the breaker with the server stopped and started again, the API-key cache,
//! local token verification against the server's own verdicts, the device session, the
//! actix-web extractors and the revocation stream.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

mod actix;
mod api;
mod cache;
mod common;
mod device;
mod mfa;
mod resilience;
mod revocations;
mod tokens;
