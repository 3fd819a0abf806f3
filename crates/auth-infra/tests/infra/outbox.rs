//! The Postgres outbox across a restart: a mail queued, or claimed by a worker that died
//! before sending it, is sent by the worker of the next process (at least once).

use std::sync::Arc;

use auth_core::memory::{ManualClock, RecordingMailer};
use auth_core::model::{Email, MailTemplate};
use auth_core::ports::{Clock as _, MailOutbox as _};
use auth_core::{OutboxWorker, RetryPolicy};
use auth_infra::postgres::PgMailOutbox;
use auth_infra::test_support::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_left_by_a_dead_process_is_sent_by_the_next() {
    let db = TestDb::new().await;
    let clock = Arc::new(ManualClock::starting_now());
    let policy = RetryPolicy::default();
    let mail = MailTemplate::VerifyEmail.render(
        Email::parse("ada@example.com").unwrap(),
        &[
            ("product", "x"),
            ("link", "http://x/verify-email#token=t"),
            ("hours", "24"),
        ],
    );
    {
        // The first process queues two mails, claims one and dies before sending it.
        let outbox = PgMailOutbox::new(db.pool());
        outbox.enqueue(mail.clone(), clock.now()).await.unwrap();
        let claimed = outbox
            .claim_due(clock.now(), 1, policy.lease)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        outbox.enqueue(mail.clone(), clock.now()).await.unwrap();
    }
    // The next process, over a new pool.
    let mailer = Arc::new(RecordingMailer::new());
    let outbox = Arc::new(PgMailOutbox::new(db.pool()));
    let worker = OutboxWorker::new(outbox.clone(), mailer.clone(), clock.clone(), policy);
    assert_eq!(
        worker.run_once().await.unwrap().sent,
        1,
        "the unclaimed mail goes at once"
    );
    clock.advance(policy.lease);
    assert_eq!(
        worker.run_once().await.unwrap().sent,
        1,
        "the claimed one after its lease"
    );
    assert_eq!(mailer.sent().len(), 2);
    assert_eq!(mailer.sent()[0], mail);
    assert_eq!(outbox.pending().await.unwrap(), 0);
}
