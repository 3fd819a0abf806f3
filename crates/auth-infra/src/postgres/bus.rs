//! `PgInvalidationBus`: keeps this instance's caches in step with the event log.
//!
//! The event log (`events`, see [`super::events`]) is the source: every credential that ends
//! is appended there in the transaction that ends it, with a `pg_notify` carrying its `seq`.
//! Each instance holds one dedicated connection (outside the pool) that listens and reads: a
//! notification only wakes its [`LogFollower`], which reads what is new from the table over
//! that same connection and applies it. It also reads once a second when nothing woke it, so a
//! lost notification costs at most a second; and after a reconnect or a failover it goes on
//! from the last `seq` it read (or flushes the caches when retention has pruned past it).
//!
//! The reads prove the connection alive end to end: when one fails or takes longer than
//! [`READ_LIMIT`], or the connection reports an error, the instance stops trusting its caches
//! (`is_connected() == false`: not ready, and the caches read through to the database) and
//! reconnects with backoff. It trusts them again once a pass over the log after the reconnect
//! has succeeded. Nothing here takes a pooled connection, so an exhausted pool (overload)
//! cannot make an instance stop following and turn every cached verification into a query.
//!
//! Notifications of older releases (the invalidation itself as payload) are still applied, so
//! instances of both releases hear each other during a rolling upgrade.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auth_core::LogFollower;
use auth_core::model::{LogEntry, StoredEvent};
use auth_core::ports::{
    Clock, EventLog, EventQuery, Invalidation, InvalidationBus, InvalidationHandler, LogBounds,
    StoreError,
};
use chrono::{DateTime, Utc};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _};
use futures::{FutureExt as _, StreamExt as _};
use tokio::task::JoinHandle;

use super::error::classify;
use super::events::{
    CHANNEL, bounds_on, decode, encode, list_on, now_micros, position_at_on, read_on,
};
use super::pool::DbPool;
use crate::cache::CacheTrust;

/// Heartbeats of older releases (still recognised, never sent).
const HEARTBEAT: &str = "h";
/// How often the log is read when no notification wakes the follower: well inside
/// [`CacheTrust::LEASE`], so that an idle instance's caches stay trusted (each read is one
/// indexed query of the events after the follower's position).
const READ_EVERY: Duration = Duration::from_millis(200);
/// How long connecting, or one read of the log, may take before the connection counts as lost.
pub const READ_LIMIT: Duration = Duration::from_secs(3);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The listening connection's `application_name`, so that operators (and tests) can tell it
/// apart in `pg_stat_activity`.
pub const LISTENER_APPLICATION_NAME: &str = "auth-server event log listener";

/// Appends the send time to a payload.
fn stamped(payload: &str) -> String {
    format!("{payload}@{}", now_micros())
}

/// Splits a payload into its body and send time (absent in unstamped payloads).
fn unstamp(payload: &str) -> (&str, Option<i64>) {
    match payload.rsplit_once('@') {
        Some((body, sent)) => (body, sent.parse().ok()),
        None => (payload, None),
    }
}

/// What a notification says.
#[derive(Debug, PartialEq, Eq)]
enum Note {
    /// A heartbeat.
    Heartbeat,
    /// Events up to this `seq` were appended.
    Appended(i64),
    /// An invalidation sent as such (by `publish`, or by an older release).
    Direct(Invalidation),
    /// Nothing this release understands.
    Unknown,
}

fn parse_note(body: &str) -> Note {
    if body == HEARTBEAT {
        return Note::Heartbeat;
    }
    if let Some(seq) = body.strip_prefix("e:") {
        return seq.parse().map_or(Note::Unknown, Note::Appended);
    }
    decode(body).map_or(Note::Unknown, Note::Direct)
}

/// Records how long a notification took from its sender to us (heartbeats included, so the
/// figure is fresh even when nothing is revoked; across hosts it includes their clock
/// difference).
#[expect(
    clippy::cast_precision_loss,
    reason = "lags are far below 2^52 microseconds"
)]
fn record_delivery(sent_micros: i64) {
    let lag = (now_micros() - sent_micros).max(0) as f64 / 1e6;
    metrics::histogram!("auth_notification_delay_seconds").record(lag);
}

/// The connection the listener holds, shared with the log reader that reads over it.
type Listening = Arc<tokio::sync::Mutex<Option<AsyncPgConnection>>>;

/// The event log read over the listening connection.
struct ListenerLog(Listening);

impl ListenerLog {
    async fn with<T>(
        &self,
        read: impl for<'c> FnOnce(
            &'c mut AsyncPgConnection,
        ) -> futures::future::BoxFuture<'c, Result<T, StoreError>>
        + Send,
    ) -> Result<T, StoreError> {
        let mut held = self.0.lock().await;
        let conn = held
            .as_mut()
            .ok_or_else(|| StoreError::unavailable(NotListening))?;
        tokio::time::timeout(READ_LIMIT, read(conn))
            .await
            .unwrap_or_else(|_| Err(StoreError::unavailable(NotListening)))
    }
}

/// The listening connection is down (or a read over it ran out of time).
#[derive(Debug, thiserror::Error)]
#[error("event log listener not connected")]
struct NotListening;

#[async_trait]
impl EventLog for ListenerLog {
    async fn read(
        &self,
        after: i64,
        also: &[i64],
        limit: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let also = also.to_vec();
        self.with(move |conn| Box::pin(async move { read_on(conn, after, &also, limit).await }))
            .await
    }

    async fn position_at(&self, at: DateTime<Utc>) -> Result<i64, StoreError> {
        self.with(move |conn| Box::pin(position_at_on(conn, at)))
            .await
    }

    async fn bounds(&self) -> Result<LogBounds, StoreError> {
        self.with(|conn| Box::pin(bounds_on(conn))).await
    }

    async fn list(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let query = query.clone();
        self.with(move |conn| Box::pin(async move { list_on(conn, &query).await }))
            .await
    }
}

/// Aborts the background tasks when the bus goes away.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Follows the event log for one instance.
pub struct PgInvalidationBus {
    pool: DbPool,
    following: Arc<CacheTrust>,
    _tasks: Tasks,
}

impl std::fmt::Debug for PgInvalidationBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgInvalidationBus")
            .field("following", &self.following.is_following())
            .finish_non_exhaustive()
    }
}

impl PgInvalidationBus {
    /// Starts listening and following (in the background, reconnecting as needed) and
    /// heart-beating. `following` says while the caches can be trusted (the caches read it):
    /// following, and renewed by every completed pass over the log; its following part is
    /// the bus's `is_connected`. Must be called within a Tokio runtime.
    #[must_use]
    pub fn start(
        database_url: &str,
        pool: DbPool,
        handler: Arc<dyn InvalidationHandler>,
        clock: Arc<dyn Clock>,
        following: Arc<CacheTrust>,
    ) -> Self {
        following.set_following(false);
        let listening: Listening = Arc::default();
        let follower = LogFollower::new(
            Arc::new(ListenerLog(listening.clone())),
            handler.clone(),
            clock,
        );
        let listener = tokio::spawn(follow(
            database_url.to_owned(),
            listening,
            follower,
            handler,
            following.clone(),
        ));
        Self {
            pool,
            following,
            _tasks: Tasks(vec![listener]),
        }
    }
}

async fn notify(pool: &DbPool, payload: &str) -> Result<(), StoreError> {
    pool.deadline(async {
        let mut conn = pool.get().await?;
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(CHANNEL)
            .bind::<Text, _>(payload)
            .execute(&mut conn)
            .await
            .map_err(classify)?;
        Ok(())
    })
    .await
}

fn set_following(following: &CacheTrust, now: bool) {
    let before = following.set_following(now);
    metrics::gauge!("auth_invalidation_listener_connected").set(if now { 1.0 } else { 0.0 });
    if before && !now {
        tracing::warn!(
            "not following the event log: caches read through to the database until it is \
             followed again"
        );
    } else if !before && now {
        tracing::info!("following the event log");
    }
}

/// Makes one pass over the log, and says whether the caches can be trusted after it.
async fn pass(follower: &mut LogFollower, resume: bool) -> bool {
    let result = if resume {
        follower.resume().await
    } else {
        follower.pass().await
    };
    match result {
        Ok(done) => {
            if done.flushed {
                metrics::counter!("auth_invalidation_flushes_total").increment(1);
            }
            #[expect(clippy::cast_precision_loss, reason = "positions are far below 2^52")]
            if let Some(position) = follower.position() {
                metrics::gauge!("auth_event_log_position").set(position as f64);
            }
            true
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the event log");
            false
        }
    }
}

/// Waits up to [`READ_EVERY`] for notifications and returns every one that has arrived
/// (none when the time ran out), or `None` when the connection is lost.
async fn next_notes(listening: &Listening) -> Option<Vec<String>> {
    let mut held = listening.lock().await;
    let conn = held.as_mut()?;
    let mut stream = std::pin::pin!(conn.notifications_stream());
    let first = match tokio::time::timeout(READ_EVERY, stream.next()).await {
        Ok(Some(Ok(note))) => note,
        Ok(Some(Err(err))) => {
            tracing::warn!(error = %err, "event log listener lost its connection");
            return None;
        }
        Ok(None) => return None,
        Err(_) => return Some(Vec::new()),
    };
    let mut notes = vec![first.payload];
    while let Some(Some(Ok(note))) = stream.next().now_or_never() {
        notes.push(note.payload);
    }
    Some(notes)
}

async fn connect(url: &str) -> Result<AsyncPgConnection, String> {
    let mut conn = tokio::time::timeout(READ_LIMIT, super::connect::establish(url))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|err| err.to_string())?;
    conn.batch_execute(&format!(
        "SET application_name = '{LISTENER_APPLICATION_NAME}'; LISTEN {CHANNEL}"
    ))
    .await
    .map_err(|err| err.to_string())?;
    Ok(conn)
}

async fn follow(
    url: String,
    listening: Listening,
    mut follower: LogFollower,
    handler: Arc<dyn InvalidationHandler>,
    following: Arc<CacheTrust>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match connect(&url).await {
            Ok(conn) => {
                *listening.lock().await = Some(conn);
                metrics::counter!("auth_invalidation_listener_connects_total").increment(1);
                tracing::info!("event log listener connected");
                // Listening first, then reading: whatever commits from here on is either read
                // now or announced to this connection.
                let started = Instant::now();
                let mut caught_up = pass(&mut follower, true).await;
                if caught_up {
                    following.renew(started);
                }
                set_following(&following, caught_up);
                if caught_up {
                    backoff = Duration::from_millis(100);
                }
                while caught_up {
                    let Some(notes) = next_notes(&listening).await else {
                        break;
                    };
                    for payload in &notes {
                        let (body, sent) = unstamp(payload);
                        if let Some(sent) = sent {
                            record_delivery(sent);
                        }
                        match parse_note(body) {
                            Note::Appended(seq) => follower.recheck(seq),
                            Note::Direct(invalidation) => {
                                handler.invalidate(invalidation).await;
                            }
                            Note::Heartbeat | Note::Unknown => {}
                        }
                    }
                    let started = Instant::now();
                    caught_up = pass(&mut follower, false).await;
                    if caught_up {
                        following.renew(started);
                    }
                }
                *listening.lock().await = None;
            }
            Err(err) => tracing::debug!(error = %err, "event log listener cannot connect"),
        }
        set_following(&following, false);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[async_trait]
impl InvalidationBus for PgInvalidationBus {
    async fn publish(&self, event: Invalidation) -> Result<(), StoreError> {
        notify(&self.pool, &stamped(&encode(&event))).await
    }

    fn is_connected(&self) -> bool {
        self.following.is_following()
    }
}

#[cfg(test)]
mod tests {
    use auth_core::model::{SessionId, TokenHash};

    use super::*;

    #[test]
    fn notifications_parse() {
        assert_eq!(parse_note("h"), Note::Heartbeat);
        assert_eq!(parse_note("e:42"), Note::Appended(42));
        assert_eq!(parse_note("e:x"), Note::Unknown);
        assert_eq!(parse_note("x:1"), Note::Unknown);
        let session = Invalidation::Session(SessionId::generate());
        assert_eq!(parse_note(&encode(&session)), Note::Direct(session));
        let key = Invalidation::ApiKey(TokenHash::of(b"k"));
        let payload = stamped(&encode(&key));
        let (body, sent) = unstamp(&payload);
        assert_eq!(parse_note(body), Note::Direct(key));
        assert!(sent.is_some_and(|t| t > 1_700_000_000_000_000));
        assert_eq!(unstamp("h"), ("h", None));
        assert_eq!(unstamp("h@x"), ("h", None));
    }
}
