//! Retention in running instances: every `serve` process runs a pass on its interval, the
//! passes of several instances never delete a row twice, and logins and refreshes go on.

use std::time::Duration;

use auth_infra::test_support::TestDb;

use crate::harness::{ServerProcess, metric, scrape, str_field, within};

/// A user, 40 sessions that expired 40 days ago with three refresh tokens each, and ten
/// lockout counters of yesterday.
const BACKLOG: &str = "
INSERT INTO users (id, email, email_normalized, password_hash, created_at, updated_at)
VALUES ('00000000-0000-7000-8000-000000000001', 'old@example.com', 'old@example.com', 'x',
        now(), now());
WITH s AS (
  INSERT INTO sessions (id, user_id, created_at, expires_at)
  SELECT gen_random_uuid(), '00000000-0000-7000-8000-000000000001',
         now() - interval '70 days', now() - interval '40 days'
  FROM generate_series(1, 40) RETURNING id, created_at)
INSERT INTO refresh_tokens (token_hash, session_id, created_at)
SELECT sha256(convert_to(s.id::text || g::text, 'UTF8')), s.id, s.created_at
FROM s CROSS JOIN generate_series(1, 3) g;
INSERT INTO login_attempts (key, failures, window_started_at)
SELECT sha256(int4send(g)), 1, now() - interval '1 day' FROM generate_series(1, 10) g;
";

/// Two instances pruning every second: both run passes, and together they delete each row
/// of the backlog exactly once; meanwhile a session made on one refreshes on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_prunes_and_each_row_goes_once() {
    let db = TestDb::new().await;
    db.execute(BACKLOG).await;
    let extra = [("AUTH_PRUNE_INTERVAL_SECONDS", "1")];
    let (a, b) = tokio::join!(
        ServerProcess::spawn("A", Some(db.url()), &extra),
        ServerProcess::spawn("B", Some(db.url()), &extra),
    );
    let (_, session) = a.user_with_session().await;
    let mut refresh = str_field(&session, "refresh_token").to_owned();

    let total = |table: &'static str| {
        let (a, b) = (&a, &b);
        async move {
            metric(
                &scrape(a).await,
                "auth_prune_deleted_total",
                &[("table", table)],
            ) + metric(
                &scrape(b).await,
                "auth_prune_deleted_total",
                &[("table", table)],
            )
        }
    };
    within(Duration::from_secs(20), "the backlog deleted", || async {
        total("sessions").await == 40.0
    })
    .await;
    for s in [&a, &b] {
        within(
            Duration::from_secs(10),
            &format!("{} ran a pass", s.name),
            || async { metric(&scrape(s).await, "auth_prune_runs_total", &[]) >= 1.0 },
        )
        .await;
    }
    // A few more passes of each: nothing is deleted twice, and the live session stays.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(total("sessions").await, 40.0);
    assert_eq!(total("refresh_tokens").await, 120.0);
    assert_eq!(total("login_attempts").await, 10.0);
    for s in [&a, &b] {
        let text = scrape(s).await;
        assert_eq!(
            metric(&text, "auth_prune_runs_total", &[("outcome", "failed")]),
            0.0,
            "{}",
            s.log_tail(20)
        );
        let completed = metric(&text, "auth_prune_runs_total", &[("outcome", "completed")]);
        let last_run = metric(&text, "auth_prune_last_run_timestamp_seconds", &[]);
        assert!(
            completed == 0.0 || last_run > 1.7e9,
            "{}: {completed} passes completed, the last at {last_run}",
            s.name
        );
    }
    for s in [&b, &a] {
        let res = s.refresh(&refresh).await;
        assert_eq!(res.status(), 200, "{} refresh", s.name);
        let body: serde_json::Value = res.json().await.expect("refresh body");
        refresh = str_field(&body, "refresh_token").to_owned();
    }
}
