//! What limits a key's use: a rate (`rate_limit`, per fixed window) and a number of uses
//! (`remaining` credits, optionally refilled every day or month).

use chrono::{DateTime, Datelike as _, Duration, NaiveTime, TimeZone as _, Utc};
use thiserror::Error;

/// A key's rate limit: at most `limit` valid verifications per window of `window_seconds`.
/// Windows are fixed and aligned to the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    limit: u32,
    window_seconds: u32,
}

/// Why a limit or a credit count was refused: the value is out of its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{field} must be between {min} and {max}")]
pub struct LimitError {
    /// The member at fault, as the API names it below the member it belongs to (`limit`,
    /// `window_seconds`, `amount`) or the member itself (`remaining`).
    pub field: &'static str,
    /// Smallest allowed.
    pub min: u64,
    /// Largest allowed.
    pub max: u64,
}

impl LimitError {
    /// The code of a 422 entry.
    #[must_use]
    pub const fn code(self) -> &'static str {
        "out_of_range"
    }
}

fn within(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), LimitError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(LimitError { field, min, max })
    }
}

impl RateLimit {
    /// Largest `limit`.
    pub const MAX_LIMIT: u32 = 1_000_000;
    /// Longest window, in seconds (a day).
    pub const MAX_WINDOW_SECONDS: u32 = 86_400;

    /// A limit of `limit` (1..=1,000,000) per `window_seconds` (1..=86,400).
    ///
    /// # Errors
    /// [`LimitError`] naming `limit` or `window_seconds`.
    pub fn new(limit: u64, window_seconds: u64) -> Result<Self, LimitError> {
        within("limit", limit, 1, u64::from(Self::MAX_LIMIT))?;
        within(
            "window_seconds",
            window_seconds,
            1,
            u64::from(Self::MAX_WINDOW_SECONDS),
        )?;
        Ok(Self {
            limit: u32::try_from(limit).unwrap_or(Self::MAX_LIMIT),
            window_seconds: u32::try_from(window_seconds).unwrap_or(Self::MAX_WINDOW_SECONDS),
        })
    }

    /// Valid verifications allowed per window.
    #[must_use]
    pub const fn limit(self) -> u32 {
        self.limit
    }

    /// The window's length in seconds.
    #[must_use]
    pub const fn window_seconds(self) -> u32 {
        self.window_seconds
    }

    /// The start of the window holding `now`: `now - now mod window_seconds`, in whole
    /// seconds since the epoch.
    #[must_use]
    pub fn window_start(self, now: DateTime<Utc>) -> DateTime<Utc> {
        let seconds = now.timestamp();
        let start = seconds - seconds.rem_euclid(i64::from(self.window_seconds));
        DateTime::from_timestamp(start, 0).unwrap_or(now)
    }

    /// When the window holding `now` ends.
    #[must_use]
    pub fn window_end(self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.window_start(now) + Duration::seconds(i64::from(self.window_seconds))
    }

    /// Whole seconds from `now` until its window ends, rounded up (at least 1).
    #[must_use]
    pub fn reset_seconds(self, now: DateTime<Utc>) -> u32 {
        let left = self.window_end(now) - now;
        let micros = u64::try_from(left.num_microseconds().unwrap_or(i64::MAX).max(1)).unwrap_or(1);
        u32::try_from(micros.div_ceil(1_000_000)).unwrap_or(self.window_seconds)
    }
}

/// How often credits are set back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefillPeriod {
    /// At 00:00 UTC every day.
    Day,
    /// At 00:00 UTC on the first of every month.
    Month,
}

impl RefillPeriod {
    /// The API's name (`day`, `month`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// Reads the API's name.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "day" => Some(Self::Day),
            "month" => Some(Self::Month),
            _ => None,
        }
    }

    /// The start of the period holding `now`.
    #[must_use]
    pub fn period_start(self, now: DateTime<Utc>) -> DateTime<Utc> {
        let day = now.date_naive();
        let first = match self {
            Self::Day => day,
            Self::Month => day.with_day(1).unwrap_or(day),
        };
        Utc.from_utc_datetime(&first.and_time(NaiveTime::MIN))
    }
}

/// Credits set back to `amount` at the start of every period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Refill {
    amount: u64,
    every: RefillPeriod,
}

impl Refill {
    /// A refill of `amount` (1..=[`Credits::MAX`]) every `every`.
    ///
    /// # Errors
    /// [`LimitError`] naming `amount`.
    pub fn new(amount: u64, every: RefillPeriod) -> Result<Self, LimitError> {
        within("amount", amount, 1, Credits::MAX)?;
        Ok(Self { amount, every })
    }

    /// What the count is set back to.
    #[must_use]
    pub const fn amount(self) -> u64 {
        self.amount
    }

    /// How often.
    #[must_use]
    pub const fn every(self) -> RefillPeriod {
        self.every
    }
}

/// A key's uses left, as stored: the count, its refill, and the start of the period the
/// count belongs to (when it was set, or last refilled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credits {
    /// Uses left as of `refilled_at`'s period.
    pub remaining: u64,
    /// How the count comes back, if it does.
    pub refill: Option<Refill>,
    /// When the count was set or last refilled.
    pub refilled_at: DateTime<Utc>,
}

/// The outcome of taking one credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditSpend {
    /// One credit taken; this many are left.
    Spent {
        /// Uses left after this one.
        remaining: u64,
    },
    /// None left: the use is refused.
    Exhausted,
    /// The key is not active, or has no credits any more (it changed since it was read):
    /// read it again.
    Unmetered,
}

impl Credits {
    /// Most credits a key may hold, and the largest refill.
    pub const MAX: u64 = 1_000_000_000;

    /// Checks a count of credits (0..=[`Self::MAX`]).
    ///
    /// # Errors
    /// [`LimitError`] naming `remaining`.
    pub fn check_remaining(remaining: u64) -> Result<u64, LimitError> {
        within("remaining", remaining, 0, Self::MAX)?;
        Ok(remaining)
    }

    /// The start of the refill period due at `now`, when it is later than `refilled_at`.
    fn due_refill(&self, now: DateTime<Utc>) -> Option<(Refill, DateTime<Utc>)> {
        let refill = self.refill?;
        let start = refill.every.period_start(now);
        (start > self.refilled_at).then_some((refill, start))
    }

    /// Uses left at `now` (a refill that is due counts as done).
    #[must_use]
    pub fn available_at(&self, now: DateTime<Utc>) -> u64 {
        self.due_refill(now)
            .map_or(self.remaining, |(refill, _)| refill.amount)
    }

    /// These credits after one use at `now`, or `None` when none is left.
    #[must_use]
    pub fn spend(&self, now: DateTime<Utc>) -> Option<Self> {
        let (available, refilled_at) = match self.due_refill(now) {
            Some((refill, start)) => (refill.amount, start),
            None => (self.remaining, self.refilled_at),
        };
        Some(Self {
            remaining: available.checked_sub(1)?,
            refill: self.refill,
            refilled_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let rl = RateLimit::new(100, 10).unwrap();
        let now = at("2026-12-07T10:00:07.250Z");
        assert_eq!(rl.window_start(now), at("2026-12-07T10:00:00Z"));
        assert_eq!(rl.window_end(now), at("2026-12-07T10:00:10Z"));
        assert_eq!(rl.reset_seconds(now), 3);
        assert_eq!(rl.reset_seconds(at("2026-12-07T10:00:00Z")), 10);
        let day = RateLimit::new(1, 86_400).unwrap();
        assert_eq!(day.window_start(now), at("2026-12-07T00:00:00Z"));
    }

    #[test]
    fn bounds_name_the_member() {
        assert_eq!(RateLimit::new(0, 10).unwrap_err().field, "limit");
        assert_eq!(RateLimit::new(1_000_001, 10).unwrap_err().field, "limit");
        assert_eq!(RateLimit::new(1, 0).unwrap_err().field, "window_seconds");
        assert_eq!(
            RateLimit::new(1, 86_401).unwrap_err().field,
            "window_seconds"
        );
        assert!(RateLimit::new(1_000_000, 86_400).is_ok());
        assert_eq!(
            Credits::check_remaining(Credits::MAX + 1)
                .unwrap_err()
                .field,
            "remaining"
        );
        assert_eq!(Credits::check_remaining(0), Ok(0));
        assert_eq!(
            Refill::new(0, RefillPeriod::Day).unwrap_err().field,
            "amount"
        );
    }

    #[test]
    fn periods_start_at_midnight_utc() {
        let now = at("2026-12-07T23:59:59Z");
        assert_eq!(
            RefillPeriod::Day.period_start(now),
            at("2026-12-07T00:00:00Z")
        );
        assert_eq!(
            RefillPeriod::Month.period_start(now),
            at("2026-12-01T00:00:00Z")
        );
        assert_eq!(RefillPeriod::parse("week"), None);
    }

    #[test]
    fn spending_counts_down_and_refills_once_per_period() {
        let daily = Credits {
            remaining: 1,
            refill: Some(Refill::new(3, RefillPeriod::Day).unwrap()),
            refilled_at: at("2026-12-07T15:00:00Z"),
        };
        let same_day = at("2026-12-07T20:00:00Z");
        let spent = daily.spend(same_day).unwrap();
        assert_eq!(spent.remaining, 0);
        assert_eq!(spent.spend(same_day), None);
        assert_eq!(spent.available_at(same_day), 0);
        let next_day = at("2026-12-08T00:00:00Z");
        assert_eq!(spent.available_at(next_day), 3);
        let refilled = spent.spend(next_day).unwrap();
        assert_eq!(refilled.remaining, 2);
        assert_eq!(refilled.refilled_at, next_day);
        // The refill of a period happens once: later uses that day count down.
        assert_eq!(
            refilled
                .spend(at("2026-12-08T09:00:00Z"))
                .unwrap()
                .remaining,
            1
        );
        let plain = Credits {
            remaining: 0,
            refill: None,
            refilled_at: same_day,
        };
        assert_eq!(plain.spend(next_day), None);
    }
}
