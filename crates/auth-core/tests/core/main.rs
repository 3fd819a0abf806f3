//! The tests of `auth-core`, one binary (one link): the storage contract on the in-memory
//! adapters, and every service's rules over those adapters with the fake hasher and signer.
//! No database, no bcrypt, no JWT library: `cargo test -p auth-core` runs them all.
#![expect(
    clippy::unwrap_used,
    reason = "tests: a failed expectation is a failed test"
)]

mod account;
mod api_key;
mod contract;
mod device;
mod lifecycle;
mod mail;
mod mfa;
mod organization;
mod support;
