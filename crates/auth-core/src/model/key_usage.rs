//! Usage of a key: its verifications counted by outcome, per hour.

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};

use super::ApiKeyId;

/// How a verification of a known key ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyOutcome {
    /// Valid.
    Valid,
    /// Refused for want of a scope.
    InsufficientScope,
    /// Refused: over its rate limit.
    RateLimited,
    /// Refused: no credit left.
    UsageExceeded,
    /// Refused: expired.
    Expired,
    /// Refused: revoked.
    Revoked,
}

/// Verifications of one key in one period, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct UsageCounts {
    /// Valid.
    pub valid: u64,
    /// Refused for want of a scope.
    pub insufficient_scope: u64,
    /// Refused by the rate limit.
    pub rate_limited: u64,
    /// Refused for want of credits.
    pub usage_exceeded: u64,
    /// Refused: expired.
    pub expired: u64,
    /// Refused: revoked.
    pub revoked: u64,
}

impl UsageCounts {
    /// One verification with `outcome`.
    #[must_use]
    pub fn one(outcome: KeyOutcome) -> Self {
        let mut counts = Self::default();
        counts.count(outcome);
        counts
    }

    /// Counts one more verification with `outcome`.
    pub fn count(&mut self, outcome: KeyOutcome) {
        let slot = match outcome {
            KeyOutcome::Valid => &mut self.valid,
            KeyOutcome::InsufficientScope => &mut self.insufficient_scope,
            KeyOutcome::RateLimited => &mut self.rate_limited,
            KeyOutcome::UsageExceeded => &mut self.usage_exceeded,
            KeyOutcome::Expired => &mut self.expired,
            KeyOutcome::Revoked => &mut self.revoked,
        };
        *slot = slot.saturating_add(1);
    }

    /// Adds `other` in.
    pub fn add(&mut self, other: &Self) {
        self.valid = self.valid.saturating_add(other.valid);
        self.insufficient_scope = self
            .insufficient_scope
            .saturating_add(other.insufficient_scope);
        self.rate_limited = self.rate_limited.saturating_add(other.rate_limited);
        self.usage_exceeded = self.usage_exceeded.saturating_add(other.usage_exceeded);
        self.expired = self.expired.saturating_add(other.expired);
        self.revoked = self.revoked.saturating_add(other.revoked);
    }

    /// The counts in outcome order: valid, insufficient scope, rate limited, usage exceeded,
    /// expired, revoked.
    #[must_use]
    pub const fn to_array(&self) -> [u64; 6] {
        [
            self.valid,
            self.insufficient_scope,
            self.rate_limited,
            self.usage_exceeded,
            self.expired,
            self.revoked,
        ]
    }

    /// Counts from [`Self::to_array`]'s order.
    #[must_use]
    pub const fn from_array(counts: [u64; 6]) -> Self {
        Self {
            valid: counts[0],
            insufficient_scope: counts[1],
            rate_limited: counts[2],
            usage_exceeded: counts[3],
            expired: counts[4],
            revoked: counts[5],
        }
    }

    /// Verifications in all.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.to_array()
            .iter()
            .fold(0u64, |sum, n| sum.saturating_add(*n))
    }
}

/// What an instance gathered of one key's use in one hour, written in a batch: its
/// verifications by outcome, and the latest time in the hour it was used (a valid
/// verification, or a request it authenticated), if it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourUsage {
    /// The key.
    pub key: ApiKeyId,
    /// The hour's start (UTC).
    pub hour: DateTime<Utc>,
    /// Its verifications in the hour, by outcome.
    pub counts: UsageCounts,
    /// The latest use in the hour, if any.
    pub last_used: Option<DateTime<Utc>>,
}

/// The counts of one period (an hour, or a day), from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageBucket {
    /// The period's start (UTC).
    pub start: DateTime<Utc>,
    /// What was counted in it.
    pub counts: UsageCounts,
}

/// The periods usage is reported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageGranularity {
    /// Hours.
    Hour,
    /// Days (UTC), each the sum of its hours.
    Day,
}

impl UsageGranularity {
    /// The API's name (`hour`, `day`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

/// How long usage counts are kept: 90 days.
pub const USAGE_RETENTION_DAYS: i64 = 90;

/// The hour holding `at` (UTC).
#[must_use]
pub fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at)
}

/// The day holding `at` (UTC).
#[must_use]
pub fn day_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::days(1)).unwrap_or(at)
}

/// Hourly buckets (in order) summed into days (UTC), in order.
#[must_use]
pub fn by_day(hours: &[UsageBucket]) -> Vec<UsageBucket> {
    let mut days: Vec<UsageBucket> = Vec::new();
    for hour in hours {
        let start = day_of(hour.start);
        match days.last_mut() {
            Some(day) if day.start == start => day.counts.add(&hour.counts),
            _ => days.push(UsageBucket {
                start,
                counts: hour.counts,
            }),
        }
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn hours_sum_into_utc_days() {
        assert_eq!(
            hour_of(at("2026-12-07T10:59:59.9Z")),
            at("2026-12-07T10:00:00Z")
        );
        let bucket = |start: &str, valid| UsageBucket {
            start: at(start),
            counts: UsageCounts {
                valid,
                ..UsageCounts::default()
            },
        };
        let days = by_day(&[
            bucket("2026-12-06T23:00:00Z", 1),
            bucket("2026-12-07T00:00:00Z", 2),
            bucket("2026-12-07T13:00:00Z", 3),
            bucket("2026-12-09T01:00:00Z", 4),
        ]);
        assert_eq!(
            days,
            [
                bucket("2026-12-06T00:00:00Z", 1),
                bucket("2026-12-07T00:00:00Z", 5),
                bucket("2026-12-09T00:00:00Z", 4),
            ]
        );
    }

    #[test]
    fn counts_by_outcome() {
        let mut counts = UsageCounts::one(KeyOutcome::Valid);
        for outcome in [
            KeyOutcome::InsufficientScope,
            KeyOutcome::RateLimited,
            KeyOutcome::UsageExceeded,
            KeyOutcome::Expired,
            KeyOutcome::Revoked,
            KeyOutcome::Valid,
        ] {
            counts.count(outcome);
        }
        assert_eq!(
            counts,
            UsageCounts {
                valid: 2,
                insufficient_scope: 1,
                rate_limited: 1,
                usage_exceeded: 1,
                expired: 1,
                revoked: 1,
            }
        );
        assert_eq!(counts.total(), 7);
    }
}
