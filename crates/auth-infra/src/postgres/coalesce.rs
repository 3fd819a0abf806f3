//! Lookups of single API keys by hash, gathered into one `key_hash = ANY($1)` statement.
//!
//! Verifying a key the cache does not hold costs a round trip; under load most of its price is
//! the round trip itself (the pool checkout, the protocol, Postgres starting and ending a
//! statement), not finding the row. So lookups are coalesced: they wait in one queue, which at
//! most `lanes` drainer tasks empty, each taking everything queued (up to [`MAX_BATCH`]) into
//! one statement, then looking again. A lookup that finds fewer drainers than lanes starts one,
//! so at rest it runs at once and alone; under load batches grow with it.
//!
//! - Each drainer is a task of its own, so a caller that goes away (its client disconnected)
//!   takes no one's answer with it.
//! - A drainer takes its lookups before its statement starts, so no lookup reads the store as
//!   it was before the lookup was asked.
//! - A drainer that is dropped (its runtime stopping) or panics answers what it holds
//!   (`Unavailable`, or `Internal` for a panic) and gives its place back, so the next lookup
//!   starts another: the queue is never left without one.
//! - A lookup waits at most the pool's deadline, twice: once for a drainer to take it, once for
//!   its statement (whose own deadline is the pool's).
//! - A row that does not read back as a key fails the lookups of its hash only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use auth_core::model::{ApiKey, TokenHash};
use auth_core::ports::StoreError;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::cache::SharedError;

/// Most keys read by one statement; a longer queue is read by statements of this size.
pub const MAX_BATCH: usize = 1_000;

/// What a batch answers each of its lookups.
type Reply = Result<Option<ApiKey>, Arc<StoreError>>;

/// One row as read: its hash, and the key or why it does not read back as one.
pub type ReadRow = (TokenHash, Result<ApiKey, StoreError>);

/// Reads the rows of some hashes in one statement.
pub type BatchRead = Arc<
    dyn Fn(Vec<TokenHash>) -> BoxFuture<'static, Result<Vec<ReadRow>, StoreError>> + Send + Sync,
>;

type Waiter = (TokenHash, oneshot::Sender<Reply>);

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiter>,
    drainers: usize,
}

/// The lookups waiting for a statement, and the drainers that run them.
pub struct Coalescer {
    queue: Mutex<Queue>,
    lanes: usize,
    wait: Duration,
    read: BatchRead,
    statements: metrics::Counter,
    answered: metrics::Counter,
    batches: AtomicU64,
    lookups: AtomicU64,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("lanes", &self.lanes)
            .field("batches", &self.batches)
            .field("lookups", &self.lookups)
            .finish_non_exhaustive()
    }
}

impl Coalescer {
    /// Lookups through `read`, at most `lanes` statements at a time, each lookup waiting at
    /// most `wait` for a drainer to take it and as long again for its statement.
    #[must_use]
    pub fn new(lanes: usize, wait: Duration, read: BatchRead) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            lanes: lanes.max(1),
            wait,
            read,
            statements: metrics::counter!("auth_db_key_lookup_statements_total"),
            answered: metrics::counter!("auth_db_key_lookups_total"),
            batches: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
        }
    }

    /// Statements run and lookups they answered so far.
    #[must_use]
    pub fn counts(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.lookups.load(Ordering::Relaxed),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key whose secret hashes to `hash`, read with whatever other lookups wait beside it.
    ///
    /// # Errors
    /// The batch's [`StoreError`], of the same kind, for each of its lookups;
    /// [`StoreError::Unavailable`] after waiting twice the pool's deadline.
    pub async fn find(self: &Arc<Self>, hash: TokenHash) -> Result<Option<ApiKey>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queue = self.lock();
            queue.waiting.push((hash, reply));
            let start = queue.drainers < self.lanes;
            if start {
                queue.drainers += 1;
            }
            start
        };
        if start {
            // The place is held by the guard from here on: a task dropped before it ran
            // gives it back too.
            let drainer = Drainer {
                coalescer: Arc::clone(self),
                holding: Vec::new(),
                done: false,
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(drain(drainer));
                }
                // No runtime to run a task on: drain here, in the caller.
                Err(_) => drain(drainer).await,
            }
        }
        match tokio::time::timeout(self.wait * 2, answer).await {
            Ok(Ok(Ok(found))) => Ok(found),
            Ok(Ok(Err(shared))) => Err(SharedError::into_store_error(shared)),
            // The drainer holding it ended without answering; its guard answers, so this
            // is only reached when the guard's answer was lost too.
            Ok(Err(_)) => Err(StoreError::unavailable("the key lookup was abandoned")),
            Err(_) => Err(StoreError::unavailable("the key lookup waited too long")),
        }
    }
}

/// Takes what is queued and reads it, until the queue is empty.
async fn drain(mut guard: Drainer) {
    let this = Arc::clone(&guard.coalescer);
    loop {
        {
            let mut queue = this.lock();
            if queue.waiting.is_empty() {
                // Leaving under the lock that a lookup pushes under: it sees one drainer
                // fewer and starts one.
                queue.drainers -= 1;
                guard.done = true;
                return;
            }
            let take = queue.waiting.len().min(MAX_BATCH);
            guard.holding = queue.waiting.drain(..take).collect();
        }
        let size = guard.holding.len() as u64;
        this.batches.fetch_add(1, Ordering::Relaxed);
        this.lookups.fetch_add(size, Ordering::Relaxed);
        this.statements.increment(1);
        this.answered.increment(size);
        let hashes = guard.holding.iter().map(|(hash, _)| *hash).collect();
        let read = (this.read)(hashes).await;
        answer(std::mem::take(&mut guard.holding), read);
    }
}

/// Answers each lookup of a batch from what its statement read.
fn answer(batch: Vec<Waiter>, read: Result<Vec<ReadRow>, StoreError>) {
    match read {
        Ok(rows) => {
            // Each row with the number of lookups that asked for it: the last of them takes
            // the key, any before it (a hash asked twice in one batch) a copy.
            let mut by_hash: HashMap<TokenHash, (Result<ApiKey, Arc<StoreError>>, usize)> = rows
                .into_iter()
                .map(|(hash, row)| (hash, (row.map_err(Arc::new), 0)))
                .collect();
            for (hash, _) in &batch {
                if let Some((_, asked)) = by_hash.get_mut(hash) {
                    *asked += 1;
                }
            }
            for (hash, reply) in batch {
                let found = match by_hash.get_mut(&hash) {
                    None => Ok(None),
                    Some((row, asked)) if *asked > 1 => {
                        *asked -= 1;
                        row.clone().map(Some)
                    }
                    Some(_) => by_hash
                        .remove(&hash)
                        .map_or(Ok(None), |(row, _)| row.map(Some)),
                };
                // A caller that went away is no one's concern.
                let _ = reply.send(found);
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

/// A drainer's place and what it holds: if the drainer ends other than by finding the queue
/// empty (dropped with its runtime, or panicking), its lookups are answered and its place is
/// given back, so that the next lookup starts another.
struct Drainer {
    coalescer: Arc<Coalescer>,
    holding: Vec<Waiter>,
    done: bool,
}

impl Drop for Drainer {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let err = Arc::new(if std::thread::panicking() {
            StoreError::internal("the key lookup failed")
        } else {
            StoreError::unavailable("the key lookup was abandoned")
        });
        for (_, reply) in self.holding.drain(..) {
            let _ = reply.send(Err(Arc::clone(&err)));
        }
        let mut queue = self.coalescer.lock();
        queue.drainers -= 1;
        // Lookups queued meanwhile would wait for a drainer that no one starts: answer them
        // too, so that none waits out its deadline.
        for (_, reply) in queue.waiting.drain(..) {
            let _ = reply.send(Err(Arc::clone(&err)));
        }
    }
}
