//! `PgInvalidationBus`: invalidations over Postgres `LISTEN`/`NOTIFY`.
//!
//! The repositories announce what they change with [`notify_in`], inside the transaction that
//! makes the change, so a committed revocation is always announced and a notification that
//! cannot be sent fails the change. `publish` sends `pg_notify` through the pool on its own
//! (for callers outside a repository's transaction); every instance holds one dedicated listening
//! connection whose notifications go to its handler. A heartbeat notification every second
//! proves the listening connection alive end to end: when none arrives for three seconds, or
//! the connection reports an error, the instance marks itself disconnected (not ready), drops
//! the connection and reconnects with backoff. After every (re)connect the handler flushes its
//! caches, since notifications sent meanwhile were missed.
//!
//! Every payload ends in `@` and the sender's wall-clock time in microseconds, so receivers
//! measure the invalidation lag (`auth_invalidation_lag_seconds`, heartbeats included, so the
//! figure is fresh even when nothing is revoked). Across hosts the figure includes their clock
//! difference.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use auth_core::model::{DeviceId, SessionId, TokenHash, UserId};
use auth_core::ports::{Invalidation, InvalidationBus, InvalidationHandler, StoreError};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _};
use futures::StreamExt as _;
use tokio::task::JoinHandle;

use super::error::classify;
use super::pool::DbPool;

/// The notification channel.
pub const CHANNEL: &str = "auth_invalidation";
const HEARTBEAT: &str = "h";
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const SILENCE_LIMIT: Duration = Duration::from_secs(3);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

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

/// Records how long a notification took from its sender to us.
#[expect(
    clippy::cast_precision_loss,
    reason = "lags are far below 2^52 microseconds"
)]
fn record_lag(sent_micros: i64) {
    let lag = (now_micros() - sent_micros).max(0) as f64 / 1e6;
    metrics::histogram!("auth_invalidation_lag_seconds").record(lag);
}

fn kind(event: &Invalidation) -> &'static str {
    match event {
        Invalidation::ApiKey(_) => "api_key",
        Invalidation::Session(_) => "session",
        Invalidation::Device(_) => "device",
        Invalidation::User(_) => "user",
    }
}

fn encode(event: Invalidation) -> String {
    match event {
        Invalidation::ApiKey(hash) => format!("k:{}", hex::encode(hash.as_bytes())),
        Invalidation::Session(id) => format!("s:{id}"),
        Invalidation::Device(id) => format!("d:{id}"),
        Invalidation::User(id) => format!("u:{id}"),
    }
}

fn decode(payload: &str) -> Option<Invalidation> {
    let (kind, value) = payload.split_once(':')?;
    match kind {
        "k" => {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(value, &mut bytes).ok()?;
            Some(Invalidation::ApiKey(TokenHash::from_bytes(bytes)))
        }
        "s" => value.parse::<SessionId>().ok().map(Invalidation::Session),
        "d" => DeviceId::parse(value).ok().map(Invalidation::Device),
        "u" => value.parse::<UserId>().ok().map(Invalidation::User),
        _ => None,
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

/// Invalidations for every instance on one Postgres.
pub struct PgInvalidationBus {
    pool: DbPool,
    connected: Arc<AtomicBool>,
    _tasks: Tasks,
}

impl std::fmt::Debug for PgInvalidationBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgInvalidationBus")
            .field(
                "connected",
                &AtomicBool::load(&self.connected, Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl PgInvalidationBus {
    /// Starts listening (in the background, reconnecting as needed) and heart-beating.
    /// Must be called within a Tokio runtime.
    #[must_use]
    pub fn start(database_url: &str, pool: DbPool, handler: Arc<dyn InvalidationHandler>) -> Self {
        let connected = Arc::new(AtomicBool::new(false));
        let listener = tokio::spawn(listen(database_url.to_owned(), handler, connected.clone()));
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
            connected,
            _tasks: Tasks(vec![listener, heartbeat]),
        }
    }
}

/// Queues `events` for every instance, delivered by Postgres when the transaction `conn` is in
/// commits (and never if it rolls back). One statement, whatever the number of events.
///
/// # Errors
/// The driver's error: the caller's transaction then rolls back, so nothing is changed and
/// nothing announced.
pub(super) async fn notify_in(
    conn: &mut AsyncPgConnection,
    events: &[Invalidation],
) -> diesel::QueryResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let payloads: Vec<String> = events
        .iter()
        .map(|event| stamped(&encode(event.clone())))
        .collect();
    diesel::sql_query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
        .bind::<Text, _>(CHANNEL)
        .bind::<diesel::sql_types::Array<Text>, _>(payloads)
        .execute(conn)
        .await?;
    Ok(())
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

async fn listen(url: String, handler: Arc<dyn InvalidationHandler>, connected: Arc<AtomicBool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = tokio::time::timeout(SILENCE_LIMIT, super::connect::establish(&url))
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
                    // Whatever was published while we were not listening is lost: forget it all.
                    handler.flush().await;
                    connected.store(true, Ordering::Release);
                    metrics::gauge!("auth_invalidation_listener_connected").set(1.0);
                    metrics::counter!("auth_invalidation_listener_connects_total").increment(1);
                    tracing::info!("invalidation listener connected");
                    backoff = Duration::from_millis(100);
                    let mut stream = std::pin::pin!(conn.notifications_stream());
                    loop {
                        match tokio::time::timeout(SILENCE_LIMIT, stream.next()).await {
                            Ok(Some(Ok(note))) => {
                                let (body, sent) = unstamp(&note.payload);
                                if let Some(sent) = sent {
                                    record_lag(sent);
                                }
                                if let Some(event) = decode(body) {
                                    metrics::counter!("auth_invalidations_received_total", "kind" => kind(&event))
                                        .increment(1);
                                    handler.invalidate(event).await;
                                }
                            }
                            Ok(Some(Err(err))) => {
                                tracing::warn!(error = %err, "invalidation listener lost its connection");
                                break;
                            }
                            Ok(None) => break,
                            Err(_) => {
                                tracing::warn!(
                                    "invalidation listener heard nothing for 3 s; reconnecting"
                                );
                                break;
                            }
                        }
                    }
                }
            }
            Err(err) => tracing::debug!(error = %err, "invalidation listener cannot connect"),
        }
        connected.store(false, Ordering::Release);
        metrics::gauge!("auth_invalidation_listener_connected").set(0.0);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[async_trait]
impl InvalidationBus for PgInvalidationBus {
    async fn publish(&self, event: Invalidation) -> Result<(), StoreError> {
        notify(&self.pool, &stamped(&encode(event))).await
    }

    fn is_connected(&self) -> bool {
        AtomicBool::load(&self.connected, Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let key = Invalidation::ApiKey(TokenHash::of(b"k"));
        let session = Invalidation::Session(SessionId::generate());
        let device = Invalidation::Device(DeviceId::parse("frame:01.a-b_c").unwrap());
        let user = Invalidation::User(UserId::generate());
        for event in [key, session, device, user] {
            assert_eq!(decode(&encode(event.clone())), Some(event.clone()));
            let stamped = stamped(&encode(event.clone()));
            let (body, sent) = unstamp(&stamped);
            assert_eq!(decode(body), Some(event));
            assert!(sent.is_some_and(|t| t > 1_700_000_000_000_000), "{stamped}");
        }
        assert_eq!(unstamp("h"), ("h", None));
        assert_eq!(unstamp("h@x"), ("h", None));
        for junk in [
            "",
            "h",
            "k:zz",
            "s:not-a-uuid",
            "x:1",
            &format!("k:{}", "0".repeat(63)),
        ] {
            assert_eq!(decode(junk), None, "{junk}");
        }
    }
}
