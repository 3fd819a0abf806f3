//! Production implementations of the ports that need nothing but the operating system.

use chrono::{DateTime, Utc};

use crate::ports::{Clock, SecretError, SecretGenerator};

/// The system's wall clock, at microsecond precision (what Postgres keeps), so that a value
/// reads back from any store exactly as it was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
    }
}

/// The operating system's CSPRNG (`getrandom`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsSecretGenerator;

impl SecretGenerator for OsSecretGenerator {
    fn fill(&self, dest: &mut [u8]) -> Result<(), SecretError> {
        getrandom::fill(dest).map_err(|e| SecretError(e.to_string().into()))
    }
}
