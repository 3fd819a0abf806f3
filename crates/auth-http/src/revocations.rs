//! The revocation stream: `GET /api/v1/revocations/stream` (server-sent events).
//!
//! [`RevocationHub`] sees every event this instance reads from the log (it is one of the
//! handlers of the instance's log follower) and broadcasts the revocations among them, each
//! encoded once, to every connected subscriber. A subscriber is one task that forwards the
//! broadcast into its connection's bounded buffer, with a heartbeat.
//!
//! - **No gap on resume.** A subscriber first joins the broadcast, then (with
//!   `Last-Event-ID`) replays from the log; what arrives both ways is sent once. Positions are
//!   taken when an event is appended, not when it commits, so an event can become visible
//!   after a later one: the replay starts [`HOLE_PATIENCE`] before the last event the client
//!   saw, and delivery is at least once (revocations are idempotent).
//! - **Bounded memory.** The broadcast is one ring of [`RING`] encoded events shared by all
//!   subscribers; each connection buffers at most [`BUFFER`] more. A subscriber that falls a
//!   whole ring behind, or whose client does not take a message within
//!   [`SLOW_CLIENT_TIMEOUT`], is cut off; it reconnects with `Last-Event-ID` and replays from
//!   the log, missing nothing.
//! - **A lost log.** When the follower may have missed events (it flushed its caches), every
//!   subscriber gets `event: reset`: drop what you cached.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use actix_web::web::Bytes;
use async_trait::async_trait;
use auth_api::Revocation;
use auth_core::model::{ApiKeyId, EventAction, LogEntry, OrganizationId};
use auth_core::ports::{EventLog, Invalidation, InvalidationHandler, StoreError};
use auth_core::service::follow::HOLE_PATIENCE;
use chrono::Utc;
use tokio::sync::{broadcast, mpsc};

/// Encoded events the broadcast holds: how far a subscriber may fall behind.
pub const RING: usize = 4096;
/// Messages a connection buffers beyond the ring.
pub const BUFFER: usize = 64;
/// How long a client may take to accept one message before it is cut off.
pub const SLOW_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How far back a replay reaches, unless configured otherwise: the default device-token
/// lifetime (the longest a credential refused by the stream can outlive its revocation), and
/// the hole patience.
pub const REPLAY_HORIZON: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// Streams one API key may hold open on one instance, unless configured otherwise.
pub const MAX_STREAMS_PER_KEY: usize = 64;
/// Events read from the log per page of a replay.
const REPLAY_PAGE: usize = 1000;

/// The actions the stream carries.
#[must_use]
pub fn carried(action: EventAction) -> bool {
    matches!(
        action,
        EventAction::SessionEnded
            | EventAction::SessionReuseDetected
            | EventAction::ApiKeyRevoked
            | EventAction::ApiKeyRotated
            | EventAction::ApiKeyUpdated
            | EventAction::DeviceRevoked
            | EventAction::DeviceSecretRotated
            | EventAction::PasswordChanged
            | EventAction::PasswordReset
            | EventAction::UserDisabled
            | EventAction::UserDeleted
    )
}

/// The stream's message for `entry`, if it carries it: ids only, whatever the details hold.
#[must_use]
pub fn revocation(entry: &LogEntry) -> Option<Revocation> {
    let action = entry.action.filter(|a| carried(*a))?;
    let id = |name: &str| {
        entry
            .details
            .get(name)
            .and_then(serde_json::Value::as_str)
            .and_then(|s| s.parse::<uuid::Uuid>().ok())
    };
    let not_before = match action {
        EventAction::DeviceSecretRotated => entry
            .details
            .get("not_before")
            .and_then(serde_json::Value::as_i64),
        // Its sessions end with their own `session.ended`; tokens of earlier seconds are
        // refused besides, and a sign-in with the new password right after it, even within its
        // second, is not.
        EventAction::PasswordReset => Some(entry.at.timestamp()),
        // No token of the account issued up to the change survives: token times are whole
        // seconds, so the change's second rounded up (no sign-in can follow it).
        EventAction::UserDisabled | EventAction::UserDeleted => Some(
            entry
                .at
                .timestamp()
                .saturating_add(i64::from(entry.at.timestamp_subsec_nanos() > 0)),
        ),
        _ => None,
    };
    Some(Revocation {
        seq: entry.seq,
        action: action.as_str().to_owned(),
        at: entry.at,
        session_id: id("session_id"),
        user_id: id("user_id"),
        key_id: id("key_id"),
        device_id: entry
            .details
            .get("device_id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        organization_id: entry
            .organization_id
            .map(|o| o.as_uuid())
            .or_else(|| id("organization_id")),
        not_before,
    })
}

/// One message, encoded once for every subscriber.
#[derive(Debug)]
struct Frame {
    /// Its position (0 for a reset).
    seq: i64,
    /// Whose it is: `None` goes to every subscriber.
    organization: Option<OrganizationId>,
    /// When the change was made (for the lag metric).
    at: chrono::DateTime<Utc>,
    /// The SSE text.
    bytes: Bytes,
}

impl Frame {
    fn event(entry: &LogEntry, revocation: &Revocation) -> Self {
        let data = serde_json::to_string(revocation).unwrap_or_default();
        Self {
            seq: entry.seq,
            // Key and device events are their organization's; session and account events go
            // to every subscriber (ids only).
            organization: entry.organization_id,
            at: entry.at,
            bytes: Bytes::from(format!("id: {}\ndata: {data}\n\n", entry.seq)),
        }
    }

    fn reset() -> Self {
        Self {
            seq: 0,
            organization: None,
            at: Utc::now(),
            bytes: Bytes::from_static(b"event: reset\ndata: {}\n\n"),
        }
    }

    fn visible_to(&self, organization: OrganizationId) -> bool {
        self.organization.is_none_or(|o| o == organization)
    }
}

/// Broadcasts the revocations this instance reads from the log to its stream subscribers.
pub struct RevocationHub {
    sender: broadcast::Sender<Arc<Frame>>,
    /// Set when the server stops: every subscriber ends, so that a graceful shutdown does not
    /// wait for connections that never end by themselves.
    closing: tokio::sync::watch::Sender<bool>,
    log: Arc<dyn EventLog>,
    heartbeat: Duration,
    slow_client_timeout: Duration,
    subscribers: AtomicI64,
    /// Open streams per key: a valid key must not be able to hold unbounded connections.
    per_key: std::sync::Mutex<std::collections::HashMap<ApiKeyId, usize>>,
    max_per_key: usize,
    /// No replay reaches further back than this (see [`RevocationHub::with_replay_horizon`]).
    replay_horizon: chrono::TimeDelta,
}

/// What [`RevocationHub::subscribe`] answers.
#[derive(Debug)]
pub enum Subscribed {
    /// The body of the response.
    Stream(mpsc::Receiver<Result<Bytes, Infallible>>),
    /// The instance is stopping: the client goes to another one.
    Closing,
    /// The key already holds as many streams on this instance as it may.
    TooMany {
        /// The limit.
        limit: usize,
    },
}

impl Subscribed {
    /// The stream, if one was started.
    #[must_use]
    pub fn into_stream(self) -> Option<mpsc::Receiver<Result<Bytes, Infallible>>> {
        match self {
            Self::Stream(rx) => Some(rx),
            Self::Closing | Self::TooMany { .. } => None,
        }
    }
}

/// One stream counted against its key, given back when dropped (whatever ends the stream).
struct Slot {
    hub: Arc<RevocationHub>,
    key: ApiKeyId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_key = self
            .hub
            .per_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(open) = per_key.get_mut(&self.key) {
            *open -= 1;
            if *open == 0 {
                per_key.remove(&self.key);
            }
        }
    }
}

impl std::fmt::Debug for RevocationHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationHub")
            .field("subscribers", &self.subscribers.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RevocationHub {
    /// A hub replaying from `log`, sending a heartbeat every `heartbeat`.
    #[must_use]
    pub fn new(log: Arc<dyn EventLog>, heartbeat: Duration) -> Self {
        let (sender, _) = broadcast::channel(RING);
        Self {
            sender,
            closing: tokio::sync::watch::Sender::new(false),
            log,
            heartbeat,
            slow_client_timeout: SLOW_CLIENT_TIMEOUT,
            subscribers: AtomicI64::new(0),
            per_key: std::sync::Mutex::new(std::collections::HashMap::new()),
            max_per_key: MAX_STREAMS_PER_KEY,
            replay_horizon: REPLAY_HORIZON,
        }
    }

    /// The same hub, replaying at most `horizon` back: the longest a token can live. A client
    /// resuming from further back (or with `Last-Event-ID: 0`) gets `reset` and the horizon's
    /// events, not the whole log: what it missed before refuses only expired tokens, and a
    /// resume cannot make the instance read months of events.
    #[must_use]
    pub fn with_replay_horizon(mut self, horizon: chrono::TimeDelta) -> Self {
        self.replay_horizon = horizon + HOLE_PATIENCE;
        self
    }

    /// The same hub, allowing `limit` open streams per key on this instance.
    #[must_use]
    pub fn with_max_per_key(mut self, limit: usize) -> Self {
        self.max_per_key = limit.max(1);
        self
    }

    /// The heartbeat interval.
    #[must_use]
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// Counts a stream against `key`, unless it holds its limit already.
    fn take_slot(self: &Arc<Self>, key: ApiKeyId) -> Option<Slot> {
        let mut per_key = self
            .per_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let open = per_key.entry(key).or_insert(0);
        if *open >= self.max_per_key {
            return None;
        }
        *open += 1;
        Some(Slot {
            hub: self.clone(),
            key,
        })
    }

    /// The same hub, cutting off a client that takes longer than `timeout` to accept a
    /// message (instead of [`SLOW_CLIENT_TIMEOUT`]).
    #[must_use]
    pub fn with_slow_client_timeout(mut self, timeout: Duration) -> Self {
        self.slow_client_timeout = timeout;
        self
    }

    /// Ends every subscriber's stream now, and refuses new ones (503): called when the
    /// server begins a graceful stop. Clients reconnect to another instance with
    /// `Last-Event-ID` and miss nothing.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Connected subscribers.
    #[must_use]
    pub fn subscribers(&self) -> i64 {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Starts a subscriber for `key` of `organization`, resuming after `last_event_id` if
    /// given: answers the body of the response. The subscription is made before this returns,
    /// so nothing broadcast from now on is missed.
    ///
    /// # Errors
    /// The log cannot be read (to find where to start).
    pub async fn subscribe(
        self: &Arc<Self>,
        key: ApiKeyId,
        organization: OrganizationId,
        last_event_id: Option<i64>,
    ) -> Result<Subscribed, StoreError> {
        if *self.closing.borrow() {
            return Ok(Subscribed::Closing);
        }
        let Some(slot) = self.take_slot(key) else {
            return Ok(Subscribed::TooMany {
                limit: self.max_per_key,
            });
        };
        let live = self.sender.subscribe();
        let start = match last_event_id {
            Some(last) => Start::Replay(self.replay_from(last).await?),
            None => Start::Fresh(self.log.bounds().await?.newest.unwrap_or(0)),
        };
        let (tx, rx) = mpsc::channel(BUFFER);
        let subscriber = Subscriber {
            hub: self.clone(),
            organization,
            tx,
            _slot: slot,
        };
        tokio::spawn(subscriber.run(live, start));
        Ok(Subscribed::Stream(rx))
    }

    /// Where a replay after `last` starts, and whether events were lost to retention.
    async fn replay_from(&self, last: i64) -> Result<(i64, bool), StoreError> {
        let horizon = self
            .log
            .position_at(Utc::now() - self.replay_horizon)
            .await?;
        if last < horizon {
            // Beyond the horizon (or lost to retention, which lies further back): start
            // afresh from it.
            return Ok((horizon, true));
        }
        let bounds = self.log.bounds().await?;
        if let Some(oldest) = bounds.oldest
            && oldest > last.saturating_add(1)
        {
            return Ok((oldest - 1, true));
        }
        // The event at `last` (or the first after it) tells the time to rewind from.
        let at = self
            .log
            .read(last.saturating_sub(1), &[], 1)
            .await?
            .first()
            .map_or_else(Utc::now, |e| e.at);
        let rewound = self.log.position_at(at - HOLE_PATIENCE).await?;
        Ok((rewound.min(last).max(0), false))
    }
}

#[async_trait]
impl InvalidationHandler for RevocationHub {
    async fn invalidate(&self, _event: Invalidation) {}

    async fn flush(&self) {
        // No subscriber is an error: nobody to tell.
        let _ = self.sender.send(Arc::new(Frame::reset()));
    }

    async fn observe(&self, entry: &LogEntry) {
        if let Some(revocation) = revocation(entry) {
            let _ = self.sender.send(Arc::new(Frame::event(entry, &revocation)));
        }
    }
}

/// Where a subscriber starts.
enum Start {
    /// At the head of the log: tell the client its cursor.
    Fresh(i64),
    /// Replaying from a position; `true` when events before it were lost to retention.
    Replay((i64, bool)),
}

/// Why a subscriber ended.
#[derive(Debug, Clone, Copy)]
enum End {
    /// The client went away.
    Closed,
    /// The client took too long to accept a message.
    Slow,
    /// The subscriber fell a whole ring behind.
    Lagged,
    /// The log could not be read during a replay.
    Store,
    /// The server is stopping.
    Shutdown,
}

impl End {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Slow => "slow",
            Self::Lagged => "lagged",
            Self::Store => "store",
            Self::Shutdown => "shutdown",
        }
    }
}

struct Subscriber {
    hub: Arc<RevocationHub>,
    organization: OrganizationId,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    /// Given back when the subscriber ends.
    _slot: Slot,
}

impl Subscriber {
    async fn run(self, live: broadcast::Receiver<Arc<Frame>>, start: Start) {
        self.hub.subscribers.fetch_add(1, Ordering::Relaxed);
        // Moved, not set: several hubs in one process (tests, embedders) add up.
        metrics::gauge!("auth_revocation_stream_subscribers").increment(1.0);
        let end = self.serve(live, start).await;
        self.hub.subscribers.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("auth_revocation_stream_subscribers").decrement(1.0);
        metrics::counter!("auth_revocation_stream_disconnects_total", "reason" => end.as_str())
            .increment(1);
        if matches!(end, End::Slow | End::Lagged) {
            tracing::info!(
                reason = end.as_str(),
                "revocation stream subscriber cut off; it resumes with Last-Event-ID"
            );
        }
    }

    async fn send(&self, bytes: Bytes) -> Result<(), End> {
        match tokio::time::timeout(self.hub.slow_client_timeout, self.tx.send(Ok(bytes))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Closed),
            Err(_) => Err(End::Slow),
        }
    }

    async fn send_frame(&self, frame: &Frame) -> Result<(), End> {
        if !frame.visible_to(self.organization) {
            return Ok(());
        }
        self.send(frame.bytes.clone()).await?;
        if frame.seq > 0 {
            #[expect(
                clippy::cast_precision_loss,
                reason = "lags are far below 2^52 microseconds"
            )]
            let lag = (Utc::now() - frame.at)
                .num_microseconds()
                .unwrap_or(0)
                .max(0) as f64
                / 1e6;
            metrics::histogram!("auth_revocation_stream_lag_seconds").record(lag);
        }
        Ok(())
    }

    async fn serve(&self, mut live: broadcast::Receiver<Arc<Frame>>, start: Start) -> End {
        let mut replayed = HashSet::new();
        let prelude = match start {
            Start::Fresh(head) => self.send(Bytes::from(format!("retry: 1000\nid: {head}\n\n"))),
            Start::Replay(_) => self.send(Bytes::from_static(b"retry: 1000\n\n")),
        };
        if let Err(end) = prelude.await {
            return end;
        }
        if let Start::Replay((from, lost)) = start {
            if lost && let Err(end) = self.send_frame(&Frame::reset()).await {
                return end;
            }
            if let Err(end) = self.replay(from, &mut replayed).await {
                return end;
            }
        }
        let mut closing = self.hub.closing.subscribe();
        if *closing.borrow_and_update() {
            return End::Shutdown;
        }
        let mut heartbeat = tokio::time::interval(self.hub.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        loop {
            let step = tokio::select! {
                frame = live.recv() => match frame {
                    Ok(frame) if replayed.remove(&frame.seq) => Ok(()),
                    Ok(frame) => self.send_frame(&frame).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => Err(End::Lagged),
                    Err(broadcast::error::RecvError::Closed) => Err(End::Closed),
                },
                _ = heartbeat.tick() => self.send(Bytes::from_static(b": heartbeat\n\n")).await,
                () = self.tx.closed() => Err(End::Closed),
                _ = closing.changed() => Err(End::Shutdown),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Sends what the log holds after `from`, remembering what it sent so that the same
    /// events arriving live are not sent twice.
    async fn replay(&self, mut from: i64, replayed: &mut HashSet<i64>) -> Result<(), End> {
        loop {
            let page = self
                .hub
                .log
                .read(from, &[], REPLAY_PAGE)
                .await
                .map_err(|_| End::Store)?;
            for entry in &page {
                from = from.max(entry.seq);
                if let Some(revocation) = revocation(entry) {
                    self.send_frame(&Frame::event(entry, &revocation)).await?;
                    // Bounded: past this, a repeat is merely sent twice (harmless).
                    if replayed.len() < 100_000 {
                        replayed.insert(entry.seq);
                    }
                }
            }
            if page.len() < REPLAY_PAGE {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use auth_core::memory::MemoryEventLog;
    use auth_core::model::{ApiKeyId, EventAction, LogEntry, OrganizationId, SessionId, UserId};
    use serde_json::json;

    use super::*;

    fn session_ended(seq: i64) -> LogEntry {
        LogEntry {
            seq,
            at: Utc::now(),
            action: Some(EventAction::SessionEnded),
            invalidation: None,
            organization_id: None,
            details: json!({
                "session_id": SessionId::generate().to_string(),
                "user_id": UserId::generate().to_string(),
                "password_hash": "never sent",
            }),
        }
    }

    fn hub(timeout: Duration) -> Arc<RevocationHub> {
        Arc::new(
            RevocationHub::new(Arc::new(MemoryEventLog::new()), Duration::from_secs(60))
                .with_slow_client_timeout(timeout),
        )
    }

    async fn until(check: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "not within 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn a_revocation_carries_ids_only() {
        let entry = session_ended(7);
        let revocation = revocation(&entry).unwrap();
        assert_eq!(revocation.seq, 7);
        assert_eq!(revocation.action, "session.ended");
        assert!(revocation.session_id.is_some() && revocation.user_id.is_some());
        let text = serde_json::to_string(&revocation).unwrap();
        assert!(!text.contains("never sent"), "{text}");
        // Not a revocation: not on the stream.
        let mut enabled = session_ended(8);
        enabled.action = Some(EventAction::MfaEnabled);
        assert!(revocation_of(&enabled).is_none());
        // An action this release does not know.
        enabled.action = None;
        assert!(revocation_of(&enabled).is_none());
    }

    #[test]
    fn an_accounts_not_before_keeps_a_sign_in_after_a_reset_and_nothing_after_a_disabling() {
        let at = chrono::DateTime::from_timestamp(1_000, 500_000_000).unwrap();
        let whole = chrono::DateTime::from_timestamp(1_000, 0).unwrap();
        for (action, at, expected) in [
            (EventAction::PasswordReset, at, 1_000),
            (EventAction::UserDisabled, at, 1_001),
            (EventAction::UserDeleted, at, 1_001),
            (EventAction::UserDisabled, whole, 1_000),
        ] {
            let mut entry = session_ended(1);
            entry.action = Some(action);
            entry.at = at;
            assert_eq!(
                revocation(&entry).unwrap().not_before,
                Some(expected),
                "{action}"
            );
        }
        assert_eq!(revocation(&session_ended(1)).unwrap().not_before, None);
    }

    fn revocation_of(entry: &LogEntry) -> Option<Revocation> {
        revocation(entry)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_stops_reading_is_cut_off_with_its_buffer_bounded() {
        let hub = hub(Duration::from_millis(200));
        let mut rx = hub
            .subscribe(ApiKeyId::generate(), OrganizationId::generate(), None)
            .await
            .unwrap()
            .into_stream()
            .unwrap();
        until(|| hub.subscribers() == 1).await;
        // Far more than the connection buffers; the client reads nothing.
        for seq in 1..=(BUFFER as i64 * 10) {
            hub.observe(&session_ended(seq)).await;
        }
        until(|| hub.subscribers() == 0).await;
        let mut buffered = 0;
        while rx.recv().await.is_some() {
            buffered += 1;
        }
        assert!(
            buffered <= BUFFER,
            "{buffered} messages held for one client"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscriber_a_whole_ring_behind_is_cut_off() {
        // A patient timeout: the ring, not the timeout, ends this one.
        let hub = hub(Duration::from_secs(60));
        let mut rx = hub
            .subscribe(ApiKeyId::generate(), OrganizationId::generate(), None)
            .await
            .unwrap()
            .into_stream()
            .unwrap();
        until(|| hub.subscribers() == 1).await;
        for seq in 1..=(RING as i64 + BUFFER as i64 * 2) {
            hub.observe(&session_ended(seq)).await;
        }
        // Reading again: what was buffered, then the end (the subscriber had lagged).
        let mut received = 0;
        while tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .is_some()
        {
            received += 1;
        }
        assert!(received < RING, "{received}");
        assert_eq!(hub.subscribers(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flush_tells_every_subscriber_to_reset() {
        let hub = hub(Duration::from_secs(5));
        let mut rx = hub
            .subscribe(ApiKeyId::generate(), OrganizationId::generate(), None)
            .await
            .unwrap()
            .into_stream()
            .unwrap();
        let prelude = rx.recv().await.unwrap().unwrap();
        assert_eq!(&prelude[..], b"retry: 1000\nid: 0\n\n");
        hub.flush().await;
        let reset = rx.recv().await.unwrap().unwrap();
        assert_eq!(&reset[..], b"event: reset\ndata: {}\n\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn credentials_of_another_organization_are_not_sent() {
        let hub = hub(Duration::from_secs(5));
        let (mine, theirs) = (OrganizationId::generate(), OrganizationId::generate());
        let mut rx = hub
            .subscribe(ApiKeyId::generate(), mine, None)
            .await
            .unwrap()
            .into_stream()
            .unwrap();
        rx.recv().await.unwrap().unwrap();
        for (seq, org) in [(1, theirs), (2, mine)] {
            let mut entry = session_ended(seq);
            entry.action = Some(EventAction::ApiKeyRevoked);
            entry.organization_id = Some(org);
            hub.observe(&entry).await;
        }
        let first = rx.recv().await.unwrap().unwrap();
        assert!(first.starts_with(b"id: 2\n"), "{first:?}");
    }
}

#[cfg(test)]
mod shutdown {
    use auth_core::memory::MemoryEventLog;
    use auth_core::model::{ApiKeyId, OrganizationId};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closing_ends_every_subscriber_and_refuses_new_ones() {
        let hub = Arc::new(RevocationHub::new(
            Arc::new(MemoryEventLog::new()),
            Duration::from_secs(60),
        ));
        let mut streams = Vec::new();
        for _ in 0..3 {
            let mut rx = hub
                .subscribe(ApiKeyId::generate(), OrganizationId::generate(), None)
                .await
                .unwrap()
                .into_stream()
                .unwrap();
            rx.recv().await.unwrap().unwrap();
            streams.push(rx);
        }
        hub.close();
        for mut rx in streams {
            let end = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
            assert!(matches!(end, Ok(None)), "a stream outlived the close");
        }
        assert!(
            hub.subscribe(ApiKeyId::generate(), OrganizationId::generate(), None)
                .await
                .unwrap()
                .into_stream()
                .is_none()
        );
    }
}

#[cfg(test)]
mod per_key {
    use auth_core::memory::MemoryEventLog;
    use auth_core::model::{ApiKeyId, OrganizationId};

    use super::*;

    /// Of many streams asked for at once with one key, exactly the limit start; the others
    /// are refused, another key is not affected, and a stream that ends gives its place back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_holds_at_most_its_limit_of_streams_even_when_asked_at_once() {
        let hub = Arc::new(
            RevocationHub::new(Arc::new(MemoryEventLog::new()), Duration::from_secs(60))
                .with_max_per_key(3),
        );
        let (key, org) = (ApiKeyId::generate(), OrganizationId::generate());
        let attempts = (0..20).map(|_| {
            let hub = hub.clone();
            tokio::spawn(async move { hub.subscribe(key, org, None).await.unwrap() })
        });
        let mut streams = Vec::new();
        let mut refused = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Subscribed::Stream(rx) => streams.push(rx),
                Subscribed::TooMany { limit } => {
                    assert_eq!(limit, 3);
                    refused += 1;
                }
                Subscribed::Closing => panic!("not closing"),
            }
        }
        assert_eq!((streams.len(), refused), (3, 17));
        let other = hub
            .subscribe(ApiKeyId::generate(), org, None)
            .await
            .unwrap();
        assert!(matches!(other, Subscribed::Stream(_)));
        // A client that leaves: its subscriber ends and the key may open one more.
        drop(streams.pop());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match hub.subscribe(key, org, None).await.unwrap() {
                Subscribed::Stream(rx) => {
                    streams.push(rx);
                    break;
                }
                _ => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the place was not given back"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        assert!(matches!(
            hub.subscribe(key, org, None).await.unwrap(),
            Subscribed::TooMany { .. }
        ));
    }
}

#[cfg(test)]
mod horizon {
    use auth_core::memory::MemoryStore;
    use auth_core::model::{
        ApiKeyId, Email, OrganizationId, PasswordHash, Session, SessionId, TokenHash, User, UserId,
    };
    use auth_core::ports::{SessionRepository as _, UserRepository as _};

    use super::*;

    async fn ended_session(
        store: &MemoryStore,
        user: UserId,
        at: chrono::DateTime<Utc>,
    ) -> SessionId {
        let session = Session {
            id: SessionId::generate(),
            user_id: user,
            created_at: at,
            expires_at: at + chrono::TimeDelta::days(30),
            revoked_at: None,
        };
        store
            .sessions
            .create(&session, &TokenHash::of(session.id.to_string().as_bytes()))
            .await
            .unwrap();
        assert!(store.sessions.revoke(session.id, at).await.unwrap());
        session.id
    }

    async fn received(rx: &mut mpsc::Receiver<Result<Bytes, Infallible>>) -> String {
        let mut text = String::new();
        while let Ok(Some(Ok(bytes))) =
            tokio::time::timeout(Duration::from_millis(300), rx.recv()).await
        {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
        text
    }

    /// A resume from before the horizon (a client away for days, or `Last-Event-ID: 0`) gets
    /// `reset` and the horizon's revocations only; one from within it gets everything after.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replay_reaches_back_no_further_than_the_horizon() {
        let store = MemoryStore::new();
        let now = Utc::now();
        let old = now - chrono::TimeDelta::days(3);
        let user = User {
            id: UserId::generate(),
            email: Email::parse("horizon@example.com").unwrap(),
            display_name: None,
            password_hash: PasswordHash::new("$2b$04$unused".into()),
            is_admin: false,
            email_verified_at: None,
            disabled_at: None,
            last_login_at: None,
            created_at: old,
            updated_at: old,
        };
        store.users.create(&user).await.unwrap();
        let ancient = ended_session(&store, user.id, old).await;
        let recent = ended_session(&store, user.id, now).await;
        let hub = Arc::new(
            RevocationHub::new(store.events.clone(), Duration::from_secs(60))
                .with_replay_horizon(chrono::TimeDelta::days(1)),
        );
        let mut rx = hub
            .subscribe(ApiKeyId::generate(), OrganizationId::generate(), Some(0))
            .await
            .unwrap()
            .into_stream()
            .unwrap();
        let text = received(&mut rx).await;
        assert!(text.contains("event: reset"), "{text}");
        assert!(text.contains(&recent.to_string()), "{text}");
        assert!(
            !text.contains(&ancient.to_string()),
            "replayed past the horizon: {text}"
        );

        // Within the horizon: no reset, everything after the position.
        let all = store.events.events();
        let before_recent = all
            .iter()
            .filter(|(_, e)| e.at < now - chrono::TimeDelta::hours(1))
            .map(|(seq, _)| *seq)
            .max()
            .unwrap();
        let hub = Arc::new(
            RevocationHub::new(store.events.clone(), Duration::from_secs(60))
                .with_replay_horizon(chrono::TimeDelta::days(7)),
        );
        let mut rx = hub
            .subscribe(
                ApiKeyId::generate(),
                OrganizationId::generate(),
                Some(before_recent),
            )
            .await
            .unwrap()
            .into_stream()
            .unwrap();
        let text = received(&mut rx).await;
        assert!(!text.contains("event: reset"), "{text}");
        assert!(text.contains(&recent.to_string()), "{text}");
    }
}
