//! Lookups of single API keys by hash, gathered into one `key_hash = ANY($1)` statement.
//!
//! Verifying a key the cache does not hold costs a round trip; under load most of its price is
//! the round trip itself (the pool checkout, the protocol, Postgres starting and ending a
//! statement), not finding the row. So lookups are coalesced: a lookup that finds a free lane
//! runs at once, alone, and adds no latency; lookups arriving while every lane is busy wait
//! together and go out as one statement when a lane frees. Batches grow with the load and
//! stay at one key when there is none.
//!
//! Each batch runs in a task of its own, so a caller that goes away (its client disconnected)
//! takes no one else's answer with it. A batch's statement starts after every lookup in it
//! was asked, so no lookup reads the store as it was before the lookup began.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use auth_core::model::{ApiKey, TokenHash};
use auth_core::ports::StoreError;
use futures::future::BoxFuture;
use tokio::sync::{Semaphore, oneshot};

use crate::cache::SharedError;

/// Most keys read by one statement; a larger queue is read in statements of this size.
pub const MAX_BATCH: usize = 1_000;

/// What a batch answers each of its lookups.
type Reply = Result<Option<ApiKey>, Arc<StoreError>>;

/// Reads the keys of some hashes in one statement.
pub type BatchRead = Arc<
    dyn Fn(Vec<TokenHash>) -> BoxFuture<'static, Result<Vec<ApiKey>, StoreError>> + Send + Sync,
>;

/// The lookups waiting for a batch, and the lanes batches run in.
pub struct Coalescer {
    queue: Mutex<Vec<(TokenHash, oneshot::Sender<Reply>)>>,
    lanes: Arc<Semaphore>,
    read: BatchRead,
    batches: AtomicU64,
    lookups: AtomicU64,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("lanes", &self.lanes.available_permits())
            .field("batches", &self.batches)
            .field("lookups", &self.lookups)
            .finish_non_exhaustive()
    }
}

impl Coalescer {
    /// Lookups through `read`, at most `lanes` statements at a time.
    #[must_use]
    pub fn new(lanes: usize, read: BatchRead) -> Self {
        Self {
            queue: Mutex::new(Vec::new()),
            lanes: Arc::new(Semaphore::new(lanes.max(1))),
            read,
            batches: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
        }
    }

    /// Statements run and lookups answered so far.
    #[must_use]
    pub fn counts(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.lookups.load(Ordering::Relaxed),
        )
    }

    /// The key whose secret hashes to `hash`, read with whatever other lookups wait beside it.
    ///
    /// # Errors
    /// The batch's [`StoreError`], of the same kind, for each of its lookups.
    pub async fn find(self: &Arc<Self>, hash: TokenHash) -> Result<Option<ApiKey>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.push((hash, reply));
            queue.len() == 1
        };
        // The first lookup into an empty queue starts the task that will read the queue; the
        // lookups queued behind it before a lane frees go with it.
        if lead {
            let this = Arc::clone(self);
            tokio::spawn(async move { this.run().await });
        }
        match answer.await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(shared)) => Err(SharedError::into_store_error(shared)),
            // The task ended without answering: its runtime is shutting down.
            Err(_) => Err(StoreError::unavailable("the key lookup was abandoned")),
        }
    }

    async fn run(&self) {
        // A closed semaphore is never closed here; without a permit, run anyway.
        let _lane = Arc::clone(&self.lanes).acquire_owned().await.ok();
        let waiting =
            std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        let mut waiting = waiting.into_iter().peekable();
        while waiting.peek().is_some() {
            let batch: Vec<_> = waiting.by_ref().take(MAX_BATCH).collect();
            let size = batch.len() as u64;
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.lookups.fetch_add(size, Ordering::Relaxed);
            metrics::counter!("auth_db_key_lookup_statements_total").increment(1);
            metrics::counter!("auth_db_key_lookups_total").increment(size);
            let hashes = batch.iter().map(|(hash, _)| *hash).collect();
            match (self.read)(hashes).await {
                Ok(keys) => {
                    let by_hash: HashMap<TokenHash, ApiKey> =
                        keys.into_iter().map(|key| (key.key_hash, key)).collect();
                    for (hash, reply) in batch {
                        // A caller that went away is no one's concern.
                        let _ = reply.send(Ok(by_hash.get(&hash).cloned()));
                    }
                }
                Err(err) => {
                    let err = Arc::new(err);
                    for (_, reply) in batch {
                        let _ = reply.send(Err(Arc::clone(&err)));
                    }
                }
            }
        }
    }
}
