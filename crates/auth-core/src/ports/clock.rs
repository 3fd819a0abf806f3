//! `Clock`: where the domain learns the time, so that expiry and windows are testable.

use chrono::{DateTime, Utc};

/// The current time.
///
/// Implementations MUST be monotone enough for expiry checks (never jump backwards by more
/// than the token leeway) and cheap: it is called on every request.
pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}
