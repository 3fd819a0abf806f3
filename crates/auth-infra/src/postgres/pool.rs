//! The connection pool: explicit size, short wait, bounded statements, and a circuit breaker
//! that fails fast while the database is known to be down.
//!
//! Every adapter takes its connections from [`DbPool::get`]. Getting one is bounded by
//! `AUTH_DB_TIMEOUT_MS` in all (waiting for a slot and connecting together). After
//! [`BREAKER_FAILURES`] failures in a row the breaker opens: calls fail at once with
//! [`StoreError::Unavailable`] (503 with `Retry-After`) instead of each waiting for a timeout.
//! After a pause that doubles from [`BREAKER_MIN_OPEN`] up to [`BREAKER_MAX_OPEN`], the next
//! calls go through as probes (half-open): one success closes the breaker, a failure opens it
//! again. So the service recovers by itself at most [`BREAKER_MAX_OPEN`] after the database
//! returns, with no restart.
//!
//! The pool is split into shards, one for each thread that serves requests (see
//! [`build_pool`]). A connection is driven by a task on the thread that opened it, so a query
//! on a connection another thread opened crosses threads twice (the query to the driver, the
//! rows back), each crossing a wake-up of a sleeping thread. Measured at 64 connections on
//! two workers: 1.6 such wake-ups per refresh with one shared pool, 0.2 with a shard per
//! thread. A thread takes an idle connection of its own shard, or opens one while the shard
//! has room, or waits for one of its shard; only after a quarter of `AUTH_DB_TIMEOUT_MS`
//! does it wait for any shard's, so one thread can still use every connection.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use auth_core::ports::StoreError;
use deadpool::managed::{TimeoutType, Timeouts};
use diesel::ConnectionError;
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection as _};
use failsafe::backoff::{self, Exponential};
use failsafe::failure_policy::{self, ConsecutiveFailures};
use failsafe::{Instrument, StateMachine};
use futures::FutureExt as _;
use futures::future::Either;

use super::connect::Connector;
use super::error::pool_error;

/// Failures in a row that open the breaker.
pub const BREAKER_FAILURES: u32 = 3;
/// The first pause of an open breaker before it lets a probe through (failsafe's backoffs
/// count whole seconds).
pub const BREAKER_MIN_OPEN: Duration = Duration::from_secs(1);
/// The longest pause of an open breaker (the pause doubles while probes fail).
pub const BREAKER_MAX_OPEN: Duration = Duration::from_secs(4);

/// A pooled connection.
pub type DbConnection = Object<AsyncPgConnection>;

type Breaker = StateMachine<ConsecutiveFailures<Exponential>, BreakerMetrics>;

/// The pool every Postgres adapter shares: deadpool with a circuit breaker in front.
/// Cheap to clone (all clones share the connections and the breaker).
#[derive(Clone)]
pub struct DbPool {
    /// The shards, together holding at most the configured number of connections.
    shards: Arc<[Pool<AsyncPgConnection>]>,
    breaker: Breaker,
    timeout: Duration,
    /// `auth_db_pool_wait_seconds`, looked up once rather than on every checkout.
    wait: metrics::Histogram,
    /// Callers waiting for a connection (one that waits in several shards' queues counts once).
    waiting: Arc<AtomicUsize>,
}

/// Counts a caller among the waiting ones while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for DbPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbPool")
            .field("state", &self.state())
            .field("shards", &self.shards.len())
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

/// Request threads marked so far ([`mark_request_thread`]); each got the next number.
static NEXT_WORKER: AtomicUsize = AtomicUsize::new(0);
/// Threads that were not marked, numbered as they first take a connection.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's number among the request threads, once marked.
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
    /// This thread's number among the unmarked threads.
    static THREAD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

/// Gives the calling thread a shard of its own in every pool (shared with other request
/// threads only when there are more threads than shards). Call it once on each thread that
/// serves requests: `auth-server` does, from actix-web's app factory, which runs once on each
/// worker thread. Threads that are not marked (the background tasks') share the first shard;
/// while no thread of the process is marked, every thread is spread over all shards.
pub fn mark_request_thread() {
    WORKER.with(|worker| {
        if worker.get().is_none() {
            worker.set(Some(NEXT_WORKER.fetch_add(1, Ordering::Relaxed)));
        }
    });
}

/// The calling thread's shard among `shards`: shard 0 is the background tasks'.
fn home(shards: usize) -> usize {
    if shards == 1 {
        return 0;
    }
    match WORKER.with(Cell::get) {
        Some(worker) => 1 + worker % (shards - 1),
        None if NEXT_WORKER.load(Ordering::Relaxed) > 0 => 0,
        None => THREAD.with(|n| *n) % shards,
    }
}

/// Fewest connections a shard is given: a thread whose shard holds fewer waits for its own
/// shard more often than one that shares a larger shard with another thread.
const MIN_SHARD: usize = 4;

/// How many shards a pool of `max_size` connections gets: one per thread expected to use it
/// (each of the `workers` request threads, and the one that runs the background tasks), as
/// long as each gets [`MIN_SHARD`] connections; fewer otherwise, shared by threads.
fn shard_count(max_size: usize, workers: usize) -> usize {
    (workers + 1).min(max_size / MIN_SHARD).max(1)
}

/// `max_size` connections over `shards`: [`MIN_SHARD`] to the background tasks' (shard 0)
/// when there are several, the rest spread over the request threads' as evenly as can be.
fn shard_sizes(max_size: usize, shards: usize) -> impl Iterator<Item = usize> {
    let (background, workers) = if shards == 1 {
        (max_size, 0)
    } else {
        (MIN_SHARD, shards - 1)
    };
    let rest = max_size - background.min(max_size);
    (0..shards).map(move |i| match i {
        0 => background,
        i => rest / workers + usize::from(i - 1 < rest % workers),
    })
}

/// The database is known to be down: the breaker is open.
#[derive(Debug, thiserror::Error)]
#[error("database circuit open: failing fast until the next probe")]
struct CircuitOpen;

/// Getting a connection took longer than `AUTH_DB_TIMEOUT_MS`.
#[derive(Debug, thiserror::Error)]
#[error("no database connection within {0:?}")]
struct AcquireTimeout(Duration);

/// A database operation took longer than `AUTH_DB_TIMEOUT_MS`.
#[derive(Debug, thiserror::Error)]
#[error("database operation not done within {0:?}")]
struct OperationTimeout(Duration);

/// What the pool looks like now, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Connections open (idle and in use).
    pub size: usize,
    /// Connections idle in the pool.
    pub available: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
    /// The configured maximum.
    pub max_size: usize,
}

impl DbPool {
    /// A connection, within the configured timeout, or at once
    /// [`StoreError::Unavailable`] while the breaker is open.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when no connection can be had now.
    pub async fn get(&self) -> Result<DbConnection, StoreError> {
        if !self.breaker.is_call_permitted() {
            return Err(StoreError::unavailable(CircuitOpen));
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, self.checkout()).await;
        self.wait.record(started.elapsed());
        match outcome {
            Ok(Ok(conn)) => {
                self.breaker.on_success();
                Ok(conn)
            }
            // Waiting for a slot of a busy pool is overload, not an outage: it answers 503
            // but does not count toward opening the breaker (one burst of cold lookups must
            // not shut every request out). Failing to connect does.
            Ok(Err(PoolError::Timeout(TimeoutType::Wait))) => {
                Err(StoreError::unavailable(AcquireTimeout(self.timeout)))
            }
            Ok(Err(err)) => {
                let err = pool_error(err);
                if matches!(err, StoreError::Unavailable(_)) {
                    self.breaker.on_error();
                }
                Err(err)
            }
            Err(_) => {
                if self.state().size == 0 {
                    self.breaker.on_error();
                }
                Err(StoreError::unavailable(AcquireTimeout(self.timeout)))
            }
        }
    }

    /// A connection: an idle one of this thread's shard (or a new one while the shard has
    /// room), else the first to come free in this thread's shard within a quarter of the
    /// timeout, else the first to come free in any shard (the thread keeps its place in its
    /// own shard's queue meanwhile). Of the other shards, only one that has room may open a
    /// connection for it.
    async fn checkout(&self) -> Result<DbConnection, PoolError> {
        let home = home(self.shards.len());
        let own = &self.shards[home];
        let at_once = Timeouts {
            wait: Some(Duration::ZERO),
            ..own.timeouts()
        };
        match own.timeout_get(&at_once).await {
            Err(PoolError::Timeout(TimeoutType::Wait)) => {}
            done => return done,
        }
        let _waiting = Waiting::enter(&self.waiting);
        let own_wait = Box::pin(own.get());
        if self.shards.len() == 1 {
            return own_wait.await;
        }
        // A busy shard frees a connection within milliseconds; waiting there keeps the
        // connection on its thread. Only a shard held up for longer (long statements on
        // this thread, idle connections elsewhere) sends its callers to the others too.
        let pause = Box::pin(tokio::time::sleep(self.timeout / 4));
        let own_wait = match futures::future::select(own_wait, pause).await {
            Either::Left((got, _)) => return got,
            Either::Right(((), own_wait)) => own_wait,
        };
        let mut opener = false;
        let others = self
            .shards
            .iter()
            .enumerate()
            .filter(|&(i, shard)| {
                let status = shard.status();
                i != home
                    && (status.size >= status.max_size || !std::mem::replace(&mut opener, true))
            })
            .map(|(_, shard)| Box::pin(shard.get()));
        // The first to come: a connection, or a failure to open one, as a single pool answers.
        futures::future::select_all(std::iter::once(own_wait).chain(others))
            .await
            .0
    }

    /// Runs one database operation (getting its connection included) within
    /// `AUTH_DB_TIMEOUT_MS`. A database that stops answering without closing its connections
    /// (a frozen process, a stalled disk) would otherwise hold the request until it answers
    /// again, since `statement_timeout` is enforced by that same server. Running out of time
    /// is [`StoreError::Unavailable`] and counts toward opening the breaker. The operation is
    /// dropped: if it was a write, it may still be applied when the database resumes, as for
    /// any 503.
    ///
    /// # Errors
    /// The operation's own error, or [`StoreError::Unavailable`] when time runs out.
    pub async fn deadline<T, E>(
        &self,
        operation: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        // Boxed: the operation futures are large, and moving one into the timeout by value
        // cost about a third of the refresh throughput (measured: 5,500–6,100 against
        // 7,600–9,000 refreshes/s at 64 connections).
        if let Ok(result) = tokio::time::timeout(self.timeout, Box::pin(operation)).await {
            result
        } else {
            self.breaker.on_error();
            Err(StoreError::unavailable(OperationTimeout(self.timeout)).into())
        }
    }

    /// The deadline of one operation (`AUTH_DB_TIMEOUT_MS`).
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The pool's size, idle connections and waiters.
    #[must_use]
    pub fn state(&self) -> PoolState {
        let mut all = self.shard_states().into_iter().fold(
            PoolState {
                size: 0,
                available: 0,
                waiting: 0,
                max_size: 0,
            },
            |all, shard| PoolState {
                size: all.size + shard.size,
                available: all.available + shard.available,
                waiting: 0,
                max_size: all.max_size + shard.max_size,
            },
        );
        all.waiting = self.waiting.load(Ordering::Relaxed);
        all
    }

    /// Each shard's size, idle connections and waiters (a caller waiting in several shards'
    /// queues counts in each); the background tasks' shard first.
    #[must_use]
    pub fn shard_states(&self) -> Vec<PoolState> {
        self.shards
            .iter()
            .map(|shard| {
                let status = shard.status();
                PoolState {
                    size: status.size,
                    available: status.available,
                    waiting: status.waiting,
                    max_size: status.max_size,
                }
            })
            .collect()
    }

    /// Publishes the pool's state as gauges (called when `/metrics` is scraped).
    #[expect(
        clippy::cast_precision_loss,
        reason = "connection counts are far below 2^52"
    )]
    pub fn record_metrics(&self) {
        let state = self.state();
        metrics::gauge!("auth_db_pool_connections", "state" => "idle").set(state.available as f64);
        metrics::gauge!("auth_db_pool_connections", "state" => "in_use")
            .set(state.size.saturating_sub(state.available) as f64);
        metrics::gauge!("auth_db_pool_max_connections").set(state.max_size as f64);
        metrics::gauge!("auth_db_pool_waiting").set(state.waiting as f64);
    }
}

/// Reports the breaker's transitions as the `auth_db_circuit_state` gauge (0 closed,
/// 1 open, 2 half-open), counts rejected calls, and logs each transition once.
#[derive(Debug, Clone, Copy)]
struct BreakerMetrics;

impl Instrument for BreakerMetrics {
    fn on_call_rejected(&self) {
        metrics::counter!("auth_db_circuit_rejections_total").increment(1);
    }

    fn on_open(&self) {
        metrics::gauge!("auth_db_circuit_state").set(1.0);
        metrics::counter!("auth_db_circuit_opened_total").increment(1);
        tracing::warn!("database unreachable: circuit open, failing fast");
    }

    fn on_half_open(&self) {
        metrics::gauge!("auth_db_circuit_state").set(2.0);
        tracing::info!("database circuit half-open: probing");
    }

    fn on_closed(&self) {
        metrics::gauge!("auth_db_circuit_state").set(0.0);
        tracing::info!("database circuit closed");
    }
}

/// Pool settings (`AUTH_DB_POOL_SIZE`, `AUTH_DB_TIMEOUT_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Maximum connections.
    pub max_size: usize,
    /// How long a request waits for a connection, and how long connecting may take.
    pub timeout: Duration,
    /// Server-side limit on any one statement.
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_size: 16,
            timeout: Duration::from_millis(2000),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// Builds the pool: `settings.max_size` connections in all, in one shard per request thread
/// (one per available core, as actix-web starts) and one for the background tasks, or fewer
/// shards (shared by threads) when that would leave a shard fewer than [`MIN_SHARD`]. No connection is opened until one is needed, so the
/// service can start while the database is down. Its metrics go to the recorder installed
/// when it is built. Connections are opened by the [`Connector`] of `database_url`
/// (TLS as its `sslmode` says).
///
/// # Errors
/// [`StoreError::Internal`] when the pool cannot be built (a configuration error, such as a
/// TLS setting that cannot be used).
pub fn build_pool(database_url: &str, settings: PoolSettings) -> Result<DbPool, StoreError> {
    let statement_ms = settings.statement_timeout.as_millis();
    let connect_timeout = settings.timeout;
    let connector = Connector::shared(database_url).map_err(StoreError::internal)?;
    let manager = || {
        let connector = connector.clone();
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        // No test query on every checkout (it doubled the round trips of every database call):
        // a connection the server closed is seen as closed and discarded all the same, and one
        // that dies mid-query fails that query as `Unavailable` (503) once.
        config.recycling_method = RecyclingMethod::Fast;
        // The manager passes `database_url` back; the connector already holds it, parsed.
        config.custom_setup = Box::new(move |_url| {
            let connector = connector.clone();
            async move {
                let mut conn = tokio::time::timeout(connect_timeout, connector.connect())
                    .await
                    .map_err(|_| ConnectionError::BadConnection("connect timed out".into()))??;
                conn.batch_execute(&format!(
                    "SET statement_timeout = {statement_ms}; \
                     SET idle_in_transaction_session_timeout = {statement_ms}"
                ))
                .await
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            }
            .boxed()
        });
        AsyncDieselConnectionManager::new_with_config(database_url, config)
    };
    // actix-web serves with one worker thread per available core.
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let shards = shard_count(settings.max_size, workers);
    let shards = shard_sizes(settings.max_size, shards)
        .map(|size| {
            Pool::builder(manager())
                .max_size(size)
                .wait_timeout(Some(settings.timeout))
                .create_timeout(Some(settings.timeout))
                .recycle_timeout(Some(settings.timeout))
                .runtime(deadpool::Runtime::Tokio1)
                .build()
                .map_err(StoreError::internal)
        })
        .collect::<Result<Arc<[_]>, _>>()?;
    let policy = failure_policy::consecutive_failures(
        BREAKER_FAILURES,
        backoff::exponential(BREAKER_MIN_OPEN, BREAKER_MAX_OPEN),
    );
    Ok(DbPool {
        shards,
        breaker: StateMachine::new(policy, BreakerMetrics),
        timeout: settings.timeout,
        wait: metrics::histogram!("auth_db_pool_wait_seconds"),
        waiting: Arc::new(AtomicUsize::new(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::{MIN_SHARD, shard_count, shard_sizes};

    #[test]
    fn shards_hold_exactly_the_configured_connections_and_none_is_small() {
        for max_size in 1..=64 {
            for workers in 1..=16 {
                let shards = shard_count(max_size, workers);
                assert!((1..=workers + 1).contains(&shards));
                let sizes: Vec<usize> = shard_sizes(max_size, shards).collect();
                assert_eq!(sizes.len(), shards);
                assert_eq!(
                    sizes.iter().sum::<usize>(),
                    max_size,
                    "{max_size} over {workers}"
                );
                assert!(
                    sizes.iter().all(|&n| n >= MIN_SHARD.min(max_size)),
                    "{sizes:?}"
                );
                if shards > 1 {
                    assert_eq!(sizes[0], MIN_SHARD, "the background shard");
                    let workers = &sizes[1..];
                    let (most, least) = (workers.iter().max(), workers.iter().min());
                    assert!(most.unwrap() - least.unwrap() <= 1, "{sizes:?}");
                }
            }
        }
        assert_eq!(shard_count(16, 2), 3);
        assert_eq!(shard_sizes(16, 3).collect::<Vec<_>>(), [4, 6, 6]);
        assert_eq!(shard_sizes(13, 3).collect::<Vec<_>>(), [4, 5, 4]);
        assert_eq!(shard_count(1, 8), 1);
        assert_eq!(shard_count(7, 2), 1);
        assert_eq!(shard_count(16, 8), 4);
    }
}
