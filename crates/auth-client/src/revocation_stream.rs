//! Following the service's revocation stream, `GET /api/v1/revocations/stream`
//! (Server-Sent Events), in a background task that lives as long as the client.
//!
//! - Authenticates with an organization's API key holding `revocations:read` (`X-API-Key`,
//!   a sensitive header, never logged).
//! - Remembers the highest event id seen, the opening id-only message included (the
//!   service's position when the connection opened), and resumes from it with
//!   `Last-Event-ID`, so that revocations made while disconnected are applied once back.
//!   Events may repeat or arrive out of order: applying them is idempotent. A `reset` forgets
//!   the position (and empties the API-key cache): the next id sets it again.
//! - A connection is taken as established at its first message; a verdict cached before the
//!   very first one may predate revocations no stream will replay, so the API-key cache is
//!   emptied then.
//! - A connection that brings nothing for `idle_timeout` (heartbeats every 15 s) is taken as
//!   lost. Reconnects with exponential backoff and jitter, from the service's `retry:` (or
//!   the configured first pause) to `max_backoff`.
//! - Logs one warning per outage, not one per attempt, and one line when back.
//! - SSE is parsed by `sse-stream`, which also yields id-only messages (the opening cursor);
//!   comments (heartbeats) count as activity for the idle timeout but are not messages.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use auth_api::Revocation;
use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use futures::StreamExt as _;
use reqwest::Url;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use secrecy::ExposeSecret as _;
use sse_stream::{Sse, SseByteStream};
use tokio::sync::watch;

use crate::config::RevocationStreamConfig;
use crate::error::Error;
use crate::revocation::{Effect, Revocations};
use crate::stats::{StreamState, StreamStats};

/// The stream's path under the base URL.
pub(crate) const PATH: [&str; 4] = ["api", "v1", "revocations", "stream"];

/// Bytes read without a complete message before the connection is dropped: a stream that
/// never ends its line would otherwise grow the parser's buffer without bound. Heartbeats
/// (a dozen bytes each 15 s) would take two weeks to reach it.
const MAX_BYTES_WITHOUT_MESSAGE: usize = 1 << 20;

/// The shortest `retry:` honoured.
const MIN_RETRY: Duration = Duration::from_millis(50);

/// The running follower; dropping it (with the last clone of the client) stops the task.
#[derive(Debug)]
pub(crate) struct Follower {
    task: tokio::task::AbortHandle,
    state: watch::Receiver<StreamState>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Follower {
    /// Starts following on the current Tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] outside a Tokio runtime, or for a key that cannot be a header.
    pub(crate) fn start(
        http: reqwest::Client,
        url: Url,
        config: &RevocationStreamConfig,
        request_timeout: Duration,
        revocations: Arc<Revocations>,
        stats: Arc<StreamStats>,
    ) -> Result<Self, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config(
                "following the revocation stream needs a Tokio runtime: build the client \
                 inside one"
                    .into(),
            )
        })?;
        let mut key = HeaderValue::from_str(config.api_key.expose_secret()).map_err(|_| {
            Error::Config("the revocation stream's API key must be visible ASCII".into())
        })?;
        key.set_sensitive(true);
        let (state, receiver) = watch::channel(StreamState::Connecting);
        stats.set_state(StreamState::Connecting);
        let stream = Stream {
            http,
            url,
            key,
            request_timeout,
            idle_timeout: config.idle_timeout,
            first_pause: config.initial_backoff,
            max_backoff: config.max_backoff,
            revocations,
            stats,
            state,
            cursor: None,
            outage: Outage::default(),
        };
        let task = runtime.spawn(stream.follow()).abort_handle();
        Ok(Self {
            task,
            state: receiver,
        })
    }

    /// Waits until the stream is connected, at most `within`; whether it is.
    pub(crate) async fn wait_connected(&self, within: Duration) -> bool {
        let mut state = self.state.clone();
        tokio::time::timeout(within, state.wait_for(|s| *s == StreamState::Connected))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// The time since an outage began, and whether it was reported.
#[derive(Debug, Default)]
struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// The stream is not connected, for `why`: a warning at the first failure of an outage,
    /// debug lines after.
    fn failed(&mut self, why: &str) {
        if self.since.is_none() {
            self.since = Some(Instant::now());
            tracing::warn!(
                reason = why,
                "revocation stream unavailable: until it is back, cached API-key verdicts \
                 live their TTL and locally verified tokens are accepted until they expire"
            );
        } else {
            tracing::debug!(reason = why, "revocation stream still unavailable");
        }
    }

    fn over(&mut self, cursor: Option<i64>) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                after_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
                resumed_after = ?cursor,
                "revocation stream connected again; revocations made meanwhile follow"
            );
        }
    }
}

struct Stream {
    http: reqwest::Client,
    url: Url,
    key: HeaderValue,
    request_timeout: Duration,
    idle_timeout: Duration,
    /// The first pause after a failure: the configured one, or the service's `retry:`.
    first_pause: Duration,
    max_backoff: Duration,
    revocations: Arc<Revocations>,
    stats: Arc<StreamStats>,
    state: watch::Sender<StreamState>,
    /// The highest event id seen.
    cursor: Option<i64>,
    outage: Outage,
}

impl Stream {
    async fn follow(mut self) {
        let mut backoff = self.backoff();
        loop {
            let (why, opened) = match self.connect().await {
                Ok(response) => self.read(response).await,
                Err(why) => (why, false),
            };
            if opened {
                self.set_state(StreamState::Disconnected);
                backoff = self.backoff();
            } else {
                self.stats.failed_attempt();
            }
            self.outage.failed(&why);
            let pause = backoff.next().unwrap_or(self.max_backoff);
            tokio::time::sleep(pause).await;
        }
    }

    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.first_pause)
            .with_max_delay(self.max_backoff)
            .with_jitter()
            .without_max_times()
            .build()
    }

    fn set_state(&self, state: StreamState) {
        self.stats.set_state(state);
        self.state.send_replace(state);
    }

    /// Opens the stream from the cursor.
    async fn connect(&self) -> Result<reqwest::Response, String> {
        let mut request = self
            .http
            .get(self.url.clone())
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache")
            .header("x-api-key", self.key.clone());
        if let Some(cursor) = self.cursor {
            request = request.header("last-event-id", cursor.to_string());
        }
        let response = match tokio::time::timeout(self.request_timeout, request.send()).await {
            Err(_) => return Err(format!("no answer within {:?}", self.request_timeout)),
            Ok(Err(e)) => return Err(format!("cannot reach the service: {e}")),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let event_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        match status {
            200 if event_stream => Ok(response),
            200 => Err("the answer is not an event stream".into()),
            401 | 403 => Err(format!(
                "the service refused the stream's API key ({status}): it must be a valid \
                 organization key holding the scope revocations:read"
            )),
            _ => Err(format!("the service answered {status}")),
        }
    }

    /// Reads messages until the connection ends; why it ended, and whether it was
    /// established (a message arrived).
    async fn read(&mut self, response: reqwest::Response) -> (String, bool) {
        let pending = Arc::new(AtomicUsize::new(0));
        let mut messages = std::pin::pin!(SseByteStream::new(body(
            response,
            self.idle_timeout,
            pending.clone()
        )));
        let mut opened = false;
        loop {
            let message = match messages.next().await {
                None => return ("the service closed the stream".into(), opened),
                Some(Err(e)) => return (format!("the stream broke: {e}"), opened),
                Some(Ok(message)) => message,
            };
            pending.store(0, Ordering::Relaxed);
            if !opened {
                opened = true;
                if self.cursor.is_none() {
                    // Verdicts cached before the first connection may predate revocations
                    // that no stream will ever replay.
                    self.revocations.reset();
                }
                self.stats.connected();
                self.set_state(StreamState::Connected);
                self.outage.over(self.cursor);
            }
            self.handle(message).await;
        }
    }

    async fn handle(&mut self, message: Sse) {
        if let Some(retry) = message.retry {
            self.first_pause = Duration::from_millis(retry).clamp(MIN_RETRY, self.max_backoff);
        }
        match (message.event.as_deref(), message.data) {
            (Some("reset"), _) => {
                tracing::warn!(
                    after = ?self.cursor,
                    "the revocation stream may have missed revocations: every cached API-key \
                     verdict dropped"
                );
                self.revocations.reset();
                self.stats.reset();
                // The position no longer means what it did (a log restored from a backup
                // numbers anew); the next id sets it again.
                self.cursor = None;
            }
            (None | Some("message"), Some(data)) => self.apply(&data).await,
            // The opening id-only message, or an event type this build does not know.
            _ => {}
        }
        if let Some(id) = message
            .id
            .as_deref()
            .and_then(|id| id.trim().parse::<i64>().ok())
        {
            self.cursor = Some(self.cursor.map_or(id, |c| c.max(id)));
        }
        self.stats.set_last_event_id(self.cursor);
    }

    async fn apply(&self, data: &str) {
        let revocation: Revocation = match serde_json::from_str(data) {
            Ok(r) => r,
            Err(e) => {
                // An unreadable revocation is a missed one.
                tracing::warn!(
                    error_line = e.line(),
                    error_column = e.column(),
                    "an event of the revocation stream could not be read: every cached \
                     API-key verdict dropped"
                );
                self.revocations.reset();
                self.stats.skipped();
                return;
            }
        };
        let now = chrono::Utc::now();
        let applied = self.revocations.apply(&revocation, now.timestamp()).await;
        tracing::debug!(
            seq = revocation.seq,
            action = %revocation.action,
            applied = ?applied,
            "revocation"
        );
        if applied == Effect::Applied {
            self.stats
                .applied((now - revocation.at).to_std().unwrap_or(Duration::ZERO));
        } else {
            self.stats.skipped();
        }
    }
}

/// The response body as a stream of chunks; a pause longer than `idle` ends it with an
/// error, and so do more than [`MAX_BYTES_WITHOUT_MESSAGE`] bytes since `pending` was last
/// reset (by the reader, at each message).
fn body(
    response: reqwest::Response,
    idle: Duration,
    pending: Arc<AtomicUsize>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, io::Error>> {
    futures::stream::unfold(Some(response), move |response| {
        let pending = pending.clone();
        async move {
            let mut response = response?;
            match tokio::time::timeout(idle, response.chunk()).await {
                Err(_) => Some((
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("nothing received for {idle:?}"),
                    )),
                    None,
                )),
                Ok(Err(e)) => Some((Err(io::Error::other(e)), None)),
                Ok(Ok(None)) => None,
                Ok(Ok(Some(chunk))) => {
                    let total = pending.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
                    if total > MAX_BYTES_WITHOUT_MESSAGE {
                        return Some((
                            Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "over 1 MiB without a complete message",
                            )),
                            None,
                        ));
                    }
                    Some((Ok(chunk), Some(response)))
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use secrecy::SecretString;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;
    use tokio::sync::{mpsc, oneshot};
    use uuid::Uuid;

    use super::*;
    use crate::api_key_cache::{self, ApiKeyCache};
    use crate::config::ApiKeyCacheConfig;
    use crate::stats::RememberedRevocations;
    use crate::types::{ApiKeyVerdict, KeyRejection};

    /// One connection to the fake service: the request head, a way to write the answer
    /// (`None` ends it), and word of the client closing it.
    struct Conn {
        head: String,
        out: mpsc::UnboundedSender<Option<String>>,
        closed: oneshot::Receiver<()>,
    }

    impl Conn {
        fn header(&self, name: &str) -> Option<String> {
            self.head.lines().find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        }

        /// Answers 200 with an event stream, opening with `first`.
        fn open(&self, first: &str) {
            self.out
                .send(Some(format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                     transfer-encoding: chunked\r\nconnection: close\r\n\r\n{}",
                    chunk(first)
                )))
                .unwrap();
        }

        fn send(&self, text: &str) {
            self.out.send(Some(chunk(text))).unwrap();
        }

        // The client may close the connection as soon as it has read the answer, ending the
        // connection's task before the last of these sends: they may fail.
        fn refuse(&self, status: &str) {
            let _ = self.out.send(Some(format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/problem+json\r\n\
                 content-length: 2\r\nconnection: close\r\n\r\n{{}}"
            )));
            let _ = self.out.send(None);
        }

        fn end(&self) {
            let _ = self.out.send(Some("0\r\n\r\n".into()));
            let _ = self.out.send(None);
        }
    }

    fn chunk(text: &str) -> String {
        format!("{:x}\r\n{text}\r\n", text.len())
    }

    /// A fake service handing every connection to the test.
    async fn fake() -> (SocketAddr, mpsc::UnboundedReceiver<Conn>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let (out, mut written) = mpsc::unbounded_channel::<Option<String>>();
                    let (closed_tx, closed) = oneshot::channel();
                    let conn = Conn {
                        head: String::from_utf8_lossy(&head).into_owned(),
                        out,
                        closed,
                    };
                    if tx.send(conn).is_err() {
                        return;
                    }
                    let (mut read, mut write) = socket.into_split();
                    let writing = async move {
                        while let Some(Some(text)) = written.recv().await {
                            if write.write_all(text.as_bytes()).await.is_err() {
                                break;
                            }
                        }
                    };
                    let reading = async move {
                        let mut buf = [0u8; 256];
                        while read.read(&mut buf).await.unwrap_or(0) > 0 {}
                    };
                    tokio::select! {
                        () = writing => {}
                        () = reading => { let _ = closed_tx.send(()); }
                    }
                });
            }
        });
        (addr, rx)
    }

    struct Following {
        follower: Follower,
        revocations: Arc<Revocations>,
        stats: Arc<StreamStats>,
        cache: ApiKeyCache,
    }

    fn follow(addr: SocketAddr, idle: Duration) -> Following {
        let mut config = RevocationStreamConfig::new(SecretString::from("ak_live_stream"));
        config.initial_backoff = Duration::from_millis(20);
        config.max_backoff = Duration::from_millis(100);
        config.idle_timeout = idle;
        let cache = ApiKeyCache::new(&ApiKeyCacheConfig::default());
        let revocations = Arc::new(Revocations::new(
            &config,
            Duration::from_secs(30),
            Some(cache.clone()),
            Duration::from_secs(300),
        ));
        let stats = Arc::new(StreamStats::default());
        let url = Url::parse(&format!("http://{addr}/api/v1/revocations/stream")).unwrap();
        let follower = Follower::start(
            reqwest::Client::new(),
            url,
            &config,
            Duration::from_secs(5),
            revocations.clone(),
            stats.clone(),
        )
        .unwrap();
        Following {
            follower,
            revocations,
            stats,
            cache,
        }
    }

    async fn next(conns: &mut mpsc::UnboundedReceiver<Conn>) -> Conn {
        tokio::time::timeout(Duration::from_secs(5), conns.recv())
            .await
            .expect("a connection within 5 s")
            .unwrap()
    }

    async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check().await {
            assert!(Instant::now() < deadline, "not within 5 s: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn ended(seq: i64, session: Uuid) -> String {
        let at = chrono::Utc::now().to_rfc3339();
        format!(
            "id: {seq}\ndata: {{\"seq\":{seq},\"action\":\"session.ended\",\"at\":\"{at}\",\
             \"session_id\":\"{session}\"}}\n\n"
        )
    }

    async fn cache_verdict(cache: &ApiKeyCache, key: &str) {
        cache
            .get_or_load(api_key_cache::hash(key), async {
                Ok::<_, Error>(ApiKeyVerdict::Rejected(KeyRejection::Invalid))
            })
            .await
            .unwrap();
        cache.sync().await;
        assert_eq!(cache.entry_count(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn follows_resumes_from_the_highest_id_and_counts_its_life() {
        let (addr, mut conns) = fake().await;
        let f = follow(addr, Duration::from_secs(30));
        cache_verdict(&f.cache, "ak_cached_before").await;

        let first = next(&mut conns).await;
        assert!(
            first
                .head
                .starts_with("GET /api/v1/revocations/stream HTTP/1.1")
        );
        assert_eq!(first.header("x-api-key").as_deref(), Some("ak_live_stream"));
        assert_eq!(first.header("accept").as_deref(), Some("text/event-stream"));
        assert_eq!(first.header("last-event-id"), None);
        assert_eq!(f.stats.state(), StreamState::Connecting);
        // The opening: the reconnection time and the position, no data.
        first.open("retry: 50\nid: 41\n\n");
        assert!(f.follower.wait_connected(Duration::from_secs(5)).await);
        // Verdicts cached before the first connection are dropped.
        f.cache.sync().await;
        assert_eq!(f.cache.entry_count(), 0);

        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let now = chrono::Utc::now().timestamp();
        // Out of order, a repeat, and a heartbeat in between.
        first.send(&ended(43, a));
        first.send(": heartbeat\n\n");
        first.send(&ended(42, b));
        first.send(&ended(43, a));
        eventually("both sessions refused", async || {
            f.revocations.refuses_access(Uuid::nil(), a, now).await
                && f.revocations.refuses_access(Uuid::nil(), b, now).await
                && f.stats
                    .snapshot(RememberedRevocations::default(), 0, 0)
                    .events_applied
                    == 3
        })
        .await;
        let m = f.stats.snapshot(RememberedRevocations::default(), 0, 0);
        assert_eq!(m.last_event_id, Some(43));
        assert!(m.last_lag.is_some_and(|lag| lag < Duration::from_secs(5)));

        // The service goes away: the next connection resumes after the highest id.
        first.end();
        let second = next(&mut conns).await;
        assert_eq!(second.header("last-event-id").as_deref(), Some("43"));
        assert_ne!(f.stats.state(), StreamState::Connected);
        second.refuse("401 Unauthorized");
        let third = next(&mut conns).await;
        assert_eq!(third.header("last-event-id").as_deref(), Some("43"));
        let m = f.stats.snapshot(RememberedRevocations::default(), 0, 0);
        assert!(m.fallen_back() && m.disconnected_for.is_some());
        assert_eq!((m.connections, m.failed_attempts), (1, 1));

        // Back; the log no longer holds what followed 43: every cached verdict goes.
        third.open("retry: 50\nid: 43\n\n");
        assert!(f.follower.wait_connected(Duration::from_secs(5)).await);
        cache_verdict(&f.cache, "ak_cached_meanwhile").await;
        third.send("event: reset\ndata: {}\n\n");
        eventually("the reset applied", async || {
            f.cache.sync().await;
            f.cache.entry_count() == 0
        })
        .await;
        let m = f.stats.snapshot(RememberedRevocations::default(), 0, 0);
        assert_eq!((m.connections, m.reconnects, m.resets), (2, 1, 1));
        assert!(m.following());
        // The position is forgotten with the reset; the next id sets it.
        assert_eq!(m.last_event_id, None);
        third.send(&ended(7, Uuid::now_v7()));
        eventually("the new position", async || {
            f.stats
                .snapshot(RememberedRevocations::default(), 0, 0)
                .last_event_id
                == Some(7)
        })
        .await;
        third.end();
        let fourth = next(&mut conns).await;
        assert_eq!(fourth.header("last-event-id").as_deref(), Some("7"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_connection_is_opened_again_and_heartbeats_keep_it() {
        let (addr, mut conns) = fake().await;
        let f = follow(addr, Duration::from_millis(300));
        let first = next(&mut conns).await;
        first.open("id: 5\n\n");
        assert!(f.follower.wait_connected(Duration::from_secs(5)).await);
        // Heartbeats are not messages, but they are signs of life.
        for _ in 0..8 {
            first.send(": heartbeat\n\n");
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(conns.try_recv().is_err(), "reconnected despite heartbeats");
        }
        assert!(f.stats.state() == StreamState::Connected);
        // Silence: taken as lost, opened again from the position.
        let second = next(&mut conns).await;
        assert_eq!(second.header("last-event-id").as_deref(), Some("5"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreadable_event_counts_as_missed_and_dropping_stops_following() {
        let (addr, mut conns) = fake().await;
        let f = follow(addr, Duration::from_secs(30));
        let mut first = next(&mut conns).await;
        first.open("id: 1\n\n");
        assert!(f.follower.wait_connected(Duration::from_secs(5)).await);
        cache_verdict(&f.cache, "ak_x").await;
        first.send("id: 2\ndata: {\"seq\":2,\"action\":\n\n");
        eventually("the cache emptied", async || {
            f.cache.sync().await;
            f.cache.entry_count() == 0
        })
        .await;
        let m = f.stats.snapshot(RememberedRevocations::default(), 0, 0);
        assert_eq!((m.events_skipped, m.last_event_id), (1, Some(2)));

        drop(f.follower);
        tokio::time::timeout(Duration::from_secs(5), &mut first.closed)
            .await
            .expect("the connection closed when the follower went")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            conns.try_recv().is_err(),
            "no new connection after the drop"
        );
    }
}
