//! Verification counts per key, hour and outcome, gathered in memory and written in batches
//! (as `last_used_at` is): a verification adds to a map under one lock, no I/O.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::last_seen::MAX_BATCH;
use crate::model::{ApiKeyId, KeyOutcome, UsageCounts, hour_of};
use crate::ports::StoreError;

/// One batch of counts to write: per key and hour.
pub type CountBatch = Vec<(ApiKeyId, DateTime<Utc>, UsageCounts)>;

/// Counts by key and hour.
type Counts = HashMap<(ApiKeyId, DateTime<Utc>), UsageCounts>;

/// The counts gathered since the last flush. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct UsageCounter(Arc<Mutex<Counts>>);

impl UsageCounter {
    fn with<R>(&self, f: impl FnOnce(&mut Counts) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Counts a verification of key `id` at `at` with `outcome`.
    pub fn note(&self, id: ApiKeyId, at: DateTime<Utc>, outcome: KeyOutcome) {
        let hour = hour_of(at);
        self.with(|counts| counts.entry((id, hour)).or_default().count(outcome));
    }

    /// Keys and hours with counts not written yet.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.with(|counts| counts.len())
    }

    /// Hands the gathered counts to `write` in batches of at most [`MAX_BATCH`]; a batch that
    /// fails is added back, with every batch after it, for the next flush (counts made
    /// meanwhile add to them). Returns how many keys and hours were written.
    ///
    /// # Errors
    /// The first failed write's error.
    pub async fn flush<F, Fut>(&self, mut write: F) -> Result<usize, StoreError>
    where
        F: FnMut(CountBatch) -> Fut,
        Fut: Future<Output = (CountBatch, Result<(), StoreError>)>,
    {
        let mut pending: CountBatch = self.with(|counts| {
            counts
                .drain()
                .map(|((id, hour), counts)| (id, hour, counts))
                .collect()
        });
        let mut written = 0;
        while !pending.is_empty() {
            let rest = pending.split_off(pending.len().min(MAX_BATCH));
            let count = pending.len();
            let (batch, result) = write(pending).await;
            if let Err(err) = result {
                self.with(|counts| {
                    for (id, hour, add) in batch.into_iter().chain(rest) {
                        counts.entry((id, hour)).or_default().add(&add);
                    }
                });
                return Err(err);
            }
            written += count;
            pending = rest;
        }
        Ok(written)
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
        counter.note(ids[2_499], at, KeyOutcome::Revoked);
        let mut written = Vec::new();
        let n = counter
            .flush(|batch| {
                written.extend(batch.clone());
                async move { (batch, Ok(())) }
            })
            .await
            .unwrap();
        assert_eq!(n, 1_500);
        let total: u64 = written.iter().map(|(_, _, c)| c.total()).sum();
        assert_eq!(total, 1_501);
        assert_eq!(counter.pending(), 0);
    }
}
