//! Verification counts per key, hour and outcome, gathered in memory and written in batches
//! (as `last_used_at` is): a verification adds to a map under one lock, no I/O.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::last_seen::write_in_batches;
use crate::model::{ApiKeyId, KeyOutcome, UsageCounts, hour_of};
use crate::ports::StoreError;

/// One batch of counts to write: per key and hour.
pub type CountBatch = Vec<(ApiKeyId, DateTime<Utc>, UsageCounts)>;

/// Counts by key and hour (hours since the epoch), compact: a count here is at most what one
/// instance sees between two writes (5 s), and an entry is 44 bytes.
type Counts = HashMap<(ApiKeyId, i32), [u32; 6]>;

/// The slot of `outcome` in an entry.
const fn slot(outcome: KeyOutcome) -> usize {
    match outcome {
        KeyOutcome::Valid => 0,
        KeyOutcome::InsufficientScope => 1,
        KeyOutcome::RateLimited => 2,
        KeyOutcome::UsageExceeded => 3,
        KeyOutcome::Expired => 4,
        KeyOutcome::Revoked => 5,
    }
}

/// Hours since the epoch of the hour holding `at`.
fn hour_index(at: DateTime<Utc>) -> i32 {
    i32::try_from(hour_of(at).timestamp().div_euclid(3600)).unwrap_or(i32::MAX)
}

fn hour_start(index: i32) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(index) * 3600, 0).unwrap_or_default()
}

fn counts_of(entry: [u32; 6]) -> UsageCounts {
    let [
        valid,
        insufficient_scope,
        rate_limited,
        usage_exceeded,
        expired,
        revoked,
    ] = entry.map(u64::from);
    UsageCounts {
        valid,
        insufficient_scope,
        rate_limited,
        usage_exceeded,
        expired,
        revoked,
    }
}

/// Adds `counts` into `entry` (saturating: a count is bounded by what one instance serves
/// between two writes).
fn add_into(entry: &mut [u32; 6], counts: &UsageCounts) {
    let add = [
        counts.valid,
        counts.insufficient_scope,
        counts.rate_limited,
        counts.usage_exceeded,
        counts.expired,
        counts.revoked,
    ];
    for (slot, n) in entry.iter_mut().zip(add) {
        *slot = slot.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }
}

/// The counts gathered since the last flush. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct UsageCounter(Arc<Mutex<Counts>>);

impl UsageCounter {
    fn with<R>(&self, f: impl FnOnce(&mut Counts) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Counts a verification of key `id` at `at` with `outcome`.
    pub fn note(&self, id: ApiKeyId, at: DateTime<Utc>, outcome: KeyOutcome) {
        let hour = hour_index(at);
        self.with(|counts| {
            let entry = &mut counts.entry((id, hour)).or_default()[slot(outcome)];
            *entry = entry.saturating_add(1);
        });
    }

    /// Keys and hours with counts not written yet.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.with(|counts| counts.len())
    }

    /// Hands the gathered counts to `write` in batches of at most
    /// [`MAX_BATCH`](super::last_seen::MAX_BATCH); a batch that fails is added back, with
    /// every batch after it, for the next flush (counts made meanwhile add to them). Returns
    /// how many keys and hours were written.
    ///
    /// # Errors
    /// The first failed write's error.
    pub async fn flush<F, Fut>(&self, write: F) -> Result<usize, StoreError>
    where
        F: FnMut(CountBatch) -> Fut,
        Fut: Future<Output = (CountBatch, Result<(), StoreError>)>,
    {
        let pending: CountBatch = self.with(|counts| {
            counts
                .drain()
                .map(|((id, hour), entry)| (id, hour_start(hour), counts_of(entry)))
                .collect()
        });
        write_in_batches(pending, write, |unwritten| {
            self.with(|counts| {
                for (id, hour, add) in unwritten {
                    add_into(counts.entry((id, hour_index(hour))).or_default(), &add);
                }
            });
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2,500 keys go out as three bounded writes; when the second fails, it and the third are
    /// added back to what was counted meanwhile and written by the next flush, nothing lost or
    /// counted twice.
    #[tokio::test]
    async fn failed_batches_are_added_back() {
        let counter = UsageCounter::default();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let ids: Vec<ApiKeyId> = (0..2_500).map(|_| ApiKeyId::generate()).collect();
        for id in &ids {
            counter.note(*id, at, KeyOutcome::Valid);
        }
        let mut calls = 0;
        let failed = counter
            .flush(|batch| {
                calls += 1;
                let fail = calls == 2;
                async move {
                    let result = if fail {
                        Err(StoreError::unavailable("down"))
                    } else {
                        Ok(())
                    };
                    (batch, result)
                }
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(counter.pending(), 1_500);
        // Counted meanwhile: written with what was added back.
        counter.note(ApiKeyId::generate(), at, KeyOutcome::Revoked);
        let mut written = Vec::new();
        let n = counter
            .flush(|batch| {
                written.extend(batch.clone());
                async move { (batch, Ok(())) }
            })
            .await
            .unwrap();
        assert_eq!(n, 1_501);
        let total: u64 = written.iter().map(|(_, _, c)| c.total()).sum();
        assert_eq!(total, 1_501);
        assert_eq!(counter.pending(), 0);
    }
}
