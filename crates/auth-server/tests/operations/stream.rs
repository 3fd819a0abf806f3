//! The revocation stream of one server process: its subscriber gauge counts exactly the
//! connections of this test, and SIGTERM ends every stream at once so the process stops well
//! within an orchestrator's grace period instead of waiting for connections that never end.

use std::time::{Duration, Instant};

use auth_infra::test_support::TestDb;
use serde_json::json;

use crate::harness::{ServerProcess, metric, scrape, str_field, within};

/// A connected subscriber: the response whose body is read until it ends.
async fn subscribe(server: &ServerProcess, key: &str) -> reqwest::Response {
    let res = server
        .request(reqwest::Method::GET, "/api/v1/revocations/stream")
        .header("x-api-key", key)
        .send()
        .await
        .expect("stream");
    assert_eq!(res.status(), 200);
    res
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_are_counted_and_a_stop_ends_their_streams_at_once() {
    let db = TestDb::empty().await;
    // A client that went away is noticed when its connection is next written to: at the
    // latest the next heartbeat.
    let server = ServerProcess::spawn(
        "stream",
        Some(db.url()),
        &[("AUTH_STREAM_HEARTBEAT_SECONDS", "1")],
    )
    .await;
    within(Duration::from_secs(10), "ready", || async {
        server.get("/health/ready").await.status() == 200
    })
    .await;
    let (_, session) = server.user_with_session().await;
    let token = str_field(&session, "access_token").to_owned();
    let org = server.new_org(&token, "Streams").await;
    let res = server
        .post_auth(
            "/api/v1/api-keys",
            &token,
            Some(
                &json!({"organization_id": org, "name": "stream", "scopes": ["revocations:read"]}),
            ),
        )
        .await;
    assert_eq!(res.status(), 201);
    let key = str_field(&res.json().await.unwrap(), "key").to_owned();

    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(subscribe(&server, &key).await);
    }
    let gauge = |text: &str| metric(text, "auth_revocation_stream_subscribers", &[]);
    within(Duration::from_secs(5), "3 subscribers counted", || async {
        gauge(&scrape(&server).await) == 3.0
    })
    .await;
    drop(streams.pop());
    within(
        Duration::from_secs(5),
        "a gone subscriber uncounted",
        || async {
            let text = scrape(&server).await;
            gauge(&text) == 2.0
                && metric(
                    &text,
                    "auth_revocation_stream_disconnects_total",
                    &[("reason", "closed")],
                ) == 1.0
        },
    )
    .await;

    // Each remaining stream is read until it ends; SIGTERM must end them.
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut res| {
            tokio::spawn(async move {
                while let Ok(Some(_)) = res.chunk().await {}
                Instant::now()
            })
        })
        .collect();
    let stopping = Instant::now();
    let stopped = server.terminate(Duration::from_secs(8)).await;
    let took = stopping.elapsed();
    assert!(stopped.graceful, "not stopped gracefully: {}", stopped.log);
    // actix's own graceful stop would wait its 10 s shutdown timeout for the streams.
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    for reader in readers {
        let ended = reader.await.unwrap();
        assert!(ended.duration_since(stopping) < Duration::from_secs(5));
    }
    assert!(
        stopped.log.contains("ending revocation streams"),
        "{}",
        stopped.log
    );
}
