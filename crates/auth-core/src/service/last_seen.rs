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

    /// Hands the gathered times to `write` in batches of at most [`MAX_BATCH`]; a batch
    /// that fails is kept for the next flush with every batch after it. Returns how many were
    /// written.
    ///
    /// Bounded batches: after a burst of distinct ids (100,000 keys each first seen within a
    /// few seconds) one statement for all of them outlasted the database deadline under load,
    /// failed, and was retried whole at every flush, so none was ever written.
    ///
    /// # Errors
    /// The first failed write's error.
    pub async fn flush<F, Fut>(&self, write: F) -> Result<usize, StoreError>
    where
        F: FnMut(Vec<(K, DateTime<Utc>)>) -> Fut,
        Fut: Future<Output = (Vec<(K, DateTime<Utc>)>, Result<(), StoreError>)>,
    {
        let pending: Vec<(K, DateTime<Utc>)> = {
            let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            seen.drain().collect()
        };
        write_in_batches(pending, write, |unwritten| {
            for (id, at) in unwritten {
                self.note(id, at);
            }
        })
        .await
    }
}

/// Hands `pending` to `write` in batches of at most [`MAX_BATCH`]. At the first failed write,
/// that batch and every one not yet written go to `keep` (for the next flush) and the error is
/// returned; otherwise, how many were written.
///
/// # Errors
/// The first failed write's error.
pub(crate) async fn write_in_batches<T, F, Fut>(
    mut pending: Vec<T>,
    mut write: F,
    keep: impl FnOnce(std::iter::Chain<std::vec::IntoIter<T>, std::vec::IntoIter<T>>),
) -> Result<usize, StoreError>
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = (Vec<T>, Result<(), StoreError>)>,
{
    let mut written = 0;
    while !pending.is_empty() {
        // From the end: splitting the first batch off moved every entry after it, once per
        // batch (quadratic in the entries gathered).
        let batch = pending.split_off(pending.len().saturating_sub(MAX_BATCH));
        let count = batch.len();
        let (batch, result) = write(batch).await;
        if let Err(err) = result {
            keep(batch.into_iter().chain(pending));
            return Err(err);
        }
        written += count;
    }
    Ok(written)
}

/// The most ids one write carries.
pub const MAX_BATCH: usize = 1_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(second, 0).unwrap_or_default()
    }

    /// 2,500 ids go out as three bounded writes; when the second fails, it and the third are
    /// kept (with their times) and written by the next flush, nothing twice.
    #[tokio::test]
    async fn flushes_in_bounded_batches_and_keeps_what_failed() {
        let seen = LastSeen::default();
        for id in 0..2_500_u32 {
            seen.note(id, at(i64::from(id)));
        }
        let mut sizes = Vec::new();
        let result = seen
            .flush(|batch| {
                sizes.push(batch.len());
                let fail = sizes.len() == 2;
                async move {
                    let result = if fail {
                        Err(StoreError::Unavailable("down".into()))
                    } else {
                        Ok(())
                    };
                    (batch, result)
                }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(sizes, [1_000, 1_000]);

        let written = std::sync::Mutex::new(Vec::new());
        let count = seen
            .flush(|batch| {
                written.lock().unwrap().extend(batch.iter().cloned());
                async move { (batch, Ok(())) }
            })
            .await
            .unwrap();
        assert_eq!(count, 1_500);
        let mut written = written.into_inner().unwrap();
        written.sort_unstable();
        assert_eq!(written.len(), 1_500);
        assert!(written.iter().all(|(id, t)| *t == at(i64::from(*id))));
        assert_eq!(seen.flush(|b| async move { (b, Ok(())) }).await.unwrap(), 0);
    }
}
