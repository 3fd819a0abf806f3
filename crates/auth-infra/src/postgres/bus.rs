//! `PgInvalidationBus`: invalidations over Postgres `LISTEN`/`NOTIFY`.
//!
//! `publish` sends `pg_notify` through the pool; every instance holds one dedicated listening
//! connection whose notifications go to its handler. A heartbeat notification every second
//! proves the listening connection alive end to end: when none arrives for three seconds, or
//! the connection reports an error, the instance marks itself disconnected (not ready), drops
//! the connection and reconnects with backoff. After every (re)connect the handler flushes its
//! caches, since notifications sent meanwhile were missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use auth_core::model::{DeviceId, SessionId, TokenHash, UserId};
use auth_core::ports::{Invalidation, InvalidationBus, InvalidationHandler, StoreError};
use diesel::sql_types::Text;
use diesel_async::{
    AsyncConnection as _, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _,
};
use futures::StreamExt as _;
use tokio::task::JoinHandle;

use super::error::{classify, pool_error};
use super::pool::DbPool;

/// The notification channel.
pub const CHANNEL: &str = "auth_invalidation";
const HEARTBEAT: &str = "h";
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const SILENCE_LIMIT: Duration = Duration::from_secs(3);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

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
                    let _ = notify(&pool, HEARTBEAT).await;
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

async fn notify(pool: &DbPool, payload: &str) -> Result<(), StoreError> {
    let mut conn = pool.get().await.map_err(pool_error)?;
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(CHANNEL)
        .bind::<Text, _>(payload)
        .execute(&mut conn)
        .await
        .map_err(classify)?;
    Ok(())
}

async fn listen(url: String, handler: Arc<dyn InvalidationHandler>, connected: Arc<AtomicBool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match AsyncPgConnection::establish(&url).await {
            Ok(mut conn) => {
                if conn
                    .batch_execute(&format!("LISTEN {CHANNEL}"))
                    .await
                    .is_ok()
                {
                    // Whatever was published while we were not listening is lost: forget it all.
                    handler.flush().await;
                    connected.store(true, Ordering::Release);
                    tracing::info!("invalidation listener connected");
                    backoff = Duration::from_millis(100);
                    let mut stream = std::pin::pin!(conn.notifications_stream());
                    loop {
                        match tokio::time::timeout(SILENCE_LIMIT, stream.next()).await {
                            Ok(Some(Ok(note))) => {
                                if let Some(event) = decode(&note.payload) {
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
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[async_trait]
impl InvalidationBus for PgInvalidationBus {
    async fn publish(&self, event: Invalidation) -> Result<(), StoreError> {
        notify(&self.pool, &encode(event)).await
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
            assert_eq!(decode(&encode(event.clone())), Some(event));
        }
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
