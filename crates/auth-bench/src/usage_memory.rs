//! `auth-bench-usage-memory`: the memory of the per-key usage counters an instance holds
//! between two writes, with `--keys` distinct keys verified (100,000 by default), each in two
//! hours (a write falls across an hour boundary) and with every outcome counted, which is the
//! most a key's entries hold.
//!
//! Measured as the growth of this process's resident size (`/proc/self/statm`) while the
//! counters are filled: what the operating system gives the allocator for them, not an
//! estimate. Prints one JSON line.

use auth_core::model::{ApiKeyId, KeyOutcome};
use auth_core::service::key_usage::UsageCounter;
use chrono::{Duration, Utc};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Resident memory of the usage counters of --keys active keys")]
struct Args {
    /// Distinct keys verified between two writes.
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
}

/// Resident bytes of this process.
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let args = Args::parse();
    let ids: Vec<ApiKeyId> = (0..args.keys).map(|_| ApiKeyId::generate()).collect();
    let now = Utc::now();
    let before = resident();
    let counter = UsageCounter::default();
    for at in [now, now + Duration::hours(1)] {
        for id in &ids {
            for outcome in [
                KeyOutcome::Valid,
                KeyOutcome::InsufficientScope,
                KeyOutcome::RateLimited,
                KeyOutcome::UsageExceeded,
                KeyOutcome::Expired,
                KeyOutcome::Revoked,
            ] {
                counter.note(*id, at, outcome);
            }
        }
    }
    let after = resident();
    let entries = counter.pending();
    let grown = after.saturating_sub(before);
    println!(
        "{{\"scenario\":\"usage-memory\",\"keys\":{},\"entries\":{},\"bytes\":{},\"bytes_per_key\":{}}}",
        args.keys,
        entries,
        grown,
        grown / args.keys.max(1) as u64
    );
}
