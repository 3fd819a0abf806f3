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

/// The counts gathered since the last flush. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct UsageCounter(Arc<Mutex<HashMap<(ApiKeyId, DateTime<Utc>), UsageCounts>>>);

impl UsageCounter {
    fn with<R>(
        &self,
        f: impl FnOnce(&mut HashMap<(ApiKeyId, DateTime<Utc>), UsageCounts>) -> R,
    ) -> R {
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
