//! `LastSeen`: in-memory "latest time per id", drained into one batched write, so hot paths
//! (API-key verify, device authenticate) record use without a database write each.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use crate::ports::StoreError;

/// Latest time per id since the last flush.
#[derive(Debug)]
pub struct LastSeen<K>(Arc<Mutex<HashMap<K, DateTime<Utc>>>>);

impl<K> Clone for LastSeen<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K> Default for LastSeen<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<K: Hash + Eq + Clone> LastSeen<K> {
    /// Records `id` seen at `at` (keeping the latest).
    pub fn note(&self, id: K, at: DateTime<Utc>) {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        seen.entry(id)
            .and_modify(|t| *t = (*t).max(at))
            .or_insert(at);
    }

    /// Hands the gathered times to `write` in one batch; on failure they are kept for the
    /// next flush. Returns how many were written.
    ///
    /// # Errors
    /// The write's error.
    pub async fn flush<F, Fut>(&self, write: F) -> Result<usize, StoreError>
    where
        F: FnOnce(Vec<(K, DateTime<Utc>)>) -> Fut,
        Fut: Future<Output = (Vec<(K, DateTime<Utc>)>, Result<(), StoreError>)>,
    {
        let batch: Vec<(K, DateTime<Utc>)> = {
            let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            seen.drain().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let count = batch.len();
        let (batch, result) = write(batch).await;
        if let Err(err) = result {
            for (id, at) in batch {
                self.note(id, at);
            }
            return Err(err);
        }
        Ok(count)
    }
}
