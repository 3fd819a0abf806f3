//! `ManualClock`: a clock that moves only when told, for tests of expiry and windows.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use super::lock;
use crate::ports::Clock;

/// A clock set and advanced by hand.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock showing `start`.
    #[must_use]
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(start))
    }

    /// A clock showing the current wall time (truncated to microseconds, as stores keep it).
    #[must_use]
    pub fn starting_now() -> Self {
        let now = Utc::now();
        let micros = now.timestamp_micros();
        Self::new(DateTime::from_timestamp_micros(micros).unwrap_or(now))
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let mut now = lock(&self.0);
        *now += by;
    }

    /// Sets the clock.
    pub fn set(&self, to: DateTime<Utc>) {
        *lock(&self.0) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *lock(&self.0)
    }
}
