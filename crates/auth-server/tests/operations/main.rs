//! Operations tests: the real `auth-server` binary run as separate processes, the way an
//! operator runs it (environment configuration, JSON logs on stderr, SIGTERM), against a
//! Postgres the test may own and stop. Run with `scripts/test.sh -p auth-server --test
//! operations`.
#![expect(
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

mod harness;

mod failover;
mod instances;
mod logs;
mod metrics;
mod outage;
mod retention;
mod stream;
mod tls;
