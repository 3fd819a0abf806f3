//! HTTP tests: the real application on port 0, called over HTTP, on both stores.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

mod common;

mod admin;
mod announcements;
mod api_keys;
mod audit;
mod cli;
mod conventions;
mod devices;
mod docs;
mod errors;
mod events;
mod following;
mod hardening;
mod instances;
mod jwt;
mod key_products;
mod lifecycle;
mod lockout;
mod metrics;
mod mfa;
mod organizations;
mod pages;
mod protocol;
mod remote_cli;
mod sessions;
mod startup;
mod users;
