//! Use of each key per hour, gathered in memory and written in batches: its verifications by
//! outcome and its latest use. A verification adds to a map under one lock, no I/O.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

use super::last_seen::write_in_batches;
use crate::model::{ApiKeyId, HourUsage, KeyOutcome, UsageCounts, hour_of};
use crate::ports::StoreError;

/// One key's use in one hour, compact: a count here is at most what one instance sees between
/// two writes (5 s), and the last use is one more than its microseconds since the hour's start
/// (0: none; an hour is 3,600,000,000 µs, within a `u32`). With its key an entry is 48 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    counts: [u32; 6],
    last_used: u32,
}

/// Entries by key and hour (hours since the epoch).
type Entries = HashMap<(ApiKeyId, i32), Entry>;

/// The slot of `outcome` in an entry (the order of `UsageCounts::to_array`).
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

/// `at` as an entry of its hour keeps it: one more than its microseconds since the hour's start.
fn offset(at: DateTime<Utc>) -> u32 {
    let micros = (at - hour_of(at)).num_microseconds().unwrap_or(0);
    u32::try_from(micros.saturating_add(1)).unwrap_or(u32::MAX)
}

fn usage_of(id: ApiKeyId, hour: i32, entry: Entry) -> HourUsage {
    HourUsage {
        key: id,
        hour: hour_start(hour),
        counts: UsageCounts::from_array(entry.counts.map(u64::from)),
        last_used: (entry.last_used > 0)
            .then(|| hour_start(hour) + TimeDelta::microseconds(i64::from(entry.last_used) - 1)),
    }
}

/// Adds `usage` into `entry` (counts saturating: a count is bounded by what one instance
/// serves between two writes; the later last use kept).
fn add_into(entry: &mut Entry, usage: &HourUsage) {
    for (slot, n) in entry.counts.iter_mut().zip(usage.counts.to_array()) {
        *slot = slot.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }
    if let Some(at) = usage.last_used {
        entry.last_used = entry.last_used.max(offset(at));
    }
}

/// The use gathered since the last flush. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct UsageCounter(Arc<Mutex<Entries>>);

impl UsageCounter {
    fn with<R>(&self, f: impl FnOnce(&mut Entries) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Counts a verification of key `id` at `at` with `outcome`; a valid one is also the key's
    /// latest use.
    pub fn note(&self, id: ApiKeyId, at: DateTime<Utc>, outcome: KeyOutcome) {
        let hour = hour_index(at);
        self.with(|entries| {
            let entry = entries.entry((id, hour)).or_default();
            let count = &mut entry.counts[slot(outcome)];
            *count = count.saturating_add(1);
            if outcome == KeyOutcome::Valid {
                entry.last_used = entry.last_used.max(offset(at));
            }
        });
    }

    /// Notes a use of key `id` at `at` that is not a verification (a request it
    /// authenticated): its latest use, no count.
    pub fn note_use(&self, id: ApiKeyId, at: DateTime<Utc>) {
        let hour = hour_index(at);
        self.with(|entries| {
            let entry = entries.entry((id, hour)).or_default();
            entry.last_used = entry.last_used.max(offset(at));
        });
    }

    /// Keys and hours with use not written yet.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.with(|entries| entries.len())
    }

    /// Hands the gathered use to `write` in batches of at most
    /// [`MAX_BATCH`](super::last_seen::MAX_BATCH); a batch that fails is added back, with
    /// every batch after it, for the next flush (use noted meanwhile adds to it). Returns how
    /// many keys and hours were written.
    ///
    /// # Errors
    /// The first failed write's error.
    pub async fn flush<F, Fut>(&self, write: F) -> Result<usize, StoreError>
    where
        F: FnMut(Vec<HourUsage>) -> Fut,
        Fut: Future<Output = (Vec<HourUsage>, Result<(), StoreError>)>,
    {
        let pending: Vec<HourUsage> = self.with(|entries| {
            entries
                .drain()
                .map(|((id, hour), entry)| usage_of(id, hour, entry))
                .collect()
        });
        write_in_batches(pending, write, |unwritten| {
            self.with(|entries| {
                for usage in unwritten {
                    add_into(
                        entries
                            .entry((usage.key, hour_index(usage.hour)))
                            .or_default(),
                        &usage,
                    );
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
        let total: u64 = written.iter().map(|u| u.counts.total()).sum();
        assert_eq!(total, 1_501);
        assert!(
            written
                .iter()
                .all(|u| u.last_used == (u.counts.valid > 0).then_some(at)),
            "{written:?}"
        );
        assert_eq!(counter.pending(), 0);
    }

    /// A valid verification and a request the key authenticated are its last use, the later
    /// kept; a refusal counts but is no use; each hour is its own entry.
    #[tokio::test]
    async fn the_last_use_is_the_latest_valid_use_of_each_hour() {
        let counter = UsageCounter::default();
        let id = ApiKeyId::generate();
        let at =
            |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 123_456_000).unwrap_or_default();
        counter.note(id, at(10), KeyOutcome::Valid);
        counter.note_use(id, at(5));
        counter.note(id, at(20), KeyOutcome::Revoked);
        counter.note_use(id, at(3_600));
        let mut written = Vec::new();
        counter
            .flush(|batch| {
                written.extend(batch.clone());
                async move { (batch, Ok(())) }
            })
            .await
            .unwrap();
        written.sort_by_key(|u| u.hour);
        assert_eq!(written.len(), 2, "{written:?}");
        assert_eq!(written[0].last_used, Some(at(10)));
        assert_eq!(written[0].counts.valid, 1);
        assert_eq!(written[0].counts.revoked, 1);
        assert_eq!(written[1].last_used, Some(at(3_600)));
        assert_eq!(written[1].counts.total(), 0);
        assert_eq!(written[1].hour, hour_of(at(3_600)));
    }
}
