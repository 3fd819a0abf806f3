//! `PgInvalidationBus`: keeps this instance's caches in step with the event log.
//!
//! The event log (`events`, see [`super::events`]) is the source: every credential that ends
//! is appended there in the transaction that ends it, with a `pg_notify` carrying its `seq`.
//! Each instance holds one dedicated listening connection; a notification only wakes its
//! [`LogFollower`], which reads what is new from the table and applies it. So a lost
//! notification loses nothing: the follower also reads on every heartbeat (one a second), and
//! after a reconnect or a failover it goes on from the last `seq` it read (or flushes the
//! caches when retention has pruned past it).
//!
//! A heartbeat notification every second proves the listening connection alive end to end:
//! when none arrives for three seconds, or the connection reports an error, the instance
//! stops trusting its caches (`is_connected() == false`: not ready, and the caches read
//! through to the database) and reconnects with backoff. It trusts them again once a pass
//! over the log after the reconnect has succeeded.
//!
//! Notifications of older releases (the invalidation itself as payload) are still applied, so
//! instances of both releases hear each other during a rolling upgrade.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use auth_core::LogFollower;
use auth_core::ports::{Clock, Invalidation, InvalidationBus, InvalidationHandler, StoreError};
use diesel::sql_types::Text;
use diesel_async::{
    AsyncConnection as _, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _,
};
use futures::{FutureExt as _, StreamExt as _};
use tokio::task::JoinHandle;

use super::error::classify;
use super::events::{CHANNEL, PgEventLog, decode, encode, now_micros};
use super::pool::DbPool;

const HEARTBEAT: &str = "h";
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const SILENCE_LIMIT: Duration = Duration::from_secs(3);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

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
    following: Arc<AtomicBool>,
    _tasks: Tasks,
}

impl std::fmt::Debug for PgInvalidationBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgInvalidationBus")
            .field(
                "following",
                &AtomicBool::load(&self.following, Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl PgInvalidationBus {
    /// Starts listening and following (in the background, reconnecting as needed) and
    /// heart-beating. `following` is set while the caches can be trusted (the caches read
    /// it); it is the bus's `is_connected`. Must be called within a Tokio runtime.
    #[must_use]
    pub fn start(
        database_url: &str,
        pool: DbPool,
        handler: Arc<dyn InvalidationHandler>,
        clock: Arc<dyn Clock>,
        following: Arc<AtomicBool>,
    ) -> Self {
        following.store(false, Ordering::Release);
        let follower = LogFollower::new(
            Arc::new(PgEventLog::new(pool.clone())),
            handler.clone(),
            clock,
        );
        let listener = tokio::spawn(follow(
            database_url.to_owned(),
            follower,
            handler,
            following.clone(),
        ));
        let heartbeat = tokio::spawn({
            let pool = pool.clone();
            async move {
                let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    // A failure shows up as silence on the listener; nothing to do here.
                    let _ = notify(&pool, &stamped(HEARTBEAT)).await;
                }
            }
        });
        Self {
            pool,
            following,
            _tasks: Tasks(vec![listener, heartbeat]),
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

fn set_following(following: &AtomicBool, now: bool) {
    let before = following.swap(now, Ordering::AcqRel);
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

async fn follow(
    url: String,
    mut follower: LogFollower,
    handler: Arc<dyn InvalidationHandler>,
    following: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = tokio::time::timeout(SILENCE_LIMIT, AsyncPgConnection::establish(&url))
            .await
            .unwrap_or_else(|_| {
                Err(diesel::ConnectionError::BadConnection(
                    "connect timed out".into(),
                ))
            });
        match attempt {
            Ok(mut conn) => {
                if conn
                    .batch_execute(&format!("LISTEN {CHANNEL}"))
                    .await
                    .is_ok()
                {
                    metrics::counter!("auth_invalidation_listener_connects_total").increment(1);
                    tracing::info!("event log listener connected");
                    backoff = Duration::from_millis(100);
                    // Listening first, then reading: whatever commits from here on is either
                    // read now or announced to this connection.
                    let caught_up = pass(&mut follower, true).await;
                    set_following(&following, caught_up);
                    let mut stream = std::pin::pin!(conn.notifications_stream());
                    loop {
                        let first = match tokio::time::timeout(SILENCE_LIMIT, stream.next()).await {
                            Ok(Some(Ok(note))) => note,
                            Ok(Some(Err(err))) => {
                                tracing::warn!(error = %err, "event log listener lost its connection");
                                break;
                            }
                            Ok(None) => break,
                            Err(_) => {
                                tracing::warn!(
                                    "event log listener heard nothing for 3 s; reconnecting"
                                );
                                break;
                            }
                        };
                        // Take every notification already here, then read the log once.
                        let mut notes = vec![first];
                        while let Some(Some(Ok(note))) = stream.next().now_or_never() {
                            notes.push(note);
                        }
                        for note in &notes {
                            let (body, sent) = unstamp(&note.payload);
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
                        let caught_up = pass(
                            &mut follower,
                            !AtomicBool::load(&following, Ordering::Acquire),
                        )
                        .await;
                        set_following(&following, caught_up);
                    }
                }
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
        AtomicBool::load(&self.following, Ordering::Acquire)
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
