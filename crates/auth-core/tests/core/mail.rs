//! The outbox worker: sends, retries with backoff, gives up, and resends what a dead worker
//! left; templates render with the values they are given.

use std::sync::Arc;

use auth_core::memory::{MailerAnswer, ManualClock, MemoryMailOutbox, RecordingMailer};
use auth_core::model::{Email, MailTemplate};
use auth_core::ports::{Clock as _, MailOutbox as _};
use auth_core::{OutboxPass, OutboxWorker, RetryPolicy};
use chrono::Duration;

struct Rig {
    outbox: Arc<MemoryMailOutbox>,
    mailer: Arc<RecordingMailer>,
    clock: Arc<ManualClock>,
    worker: OutboxWorker,
}

fn rig(policy: RetryPolicy) -> Rig {
    let outbox = Arc::new(MemoryMailOutbox::new());
    let mailer = Arc::new(RecordingMailer::new());
    let clock = Arc::new(ManualClock::starting_now());
    let worker = OutboxWorker::new(outbox.clone(), mailer.clone(), clock.clone(), policy);
    Rig {
        outbox,
        mailer,
        clock,
        worker,
    }
}

fn verification(to: &str) -> auth_core::model::OutgoingMail {
    MailTemplate::VerifyEmail.render(
        Email::parse(to).unwrap(),
        &[
            ("product", "Example"),
            ("link", "http://localhost:8000/verify-email#token=t"),
            ("hours", "24"),
        ],
    )
}

#[tokio::test]
async fn a_queued_mail_is_sent_once() {
    let r = rig(RetryPolicy::default());
    r.outbox
        .enqueue(verification("ada@example.com"), r.clock.now())
        .await
        .unwrap();
    let pass = r.worker.run_once().await.unwrap();
    assert_eq!(
        pass,
        OutboxPass {
            sent: 1,
            retrying: 0,
            given_up: 0
        }
    );
    assert_eq!(r.mailer.sent().len(), 1);
    assert_eq!(r.mailer.sent()[0].to.as_str(), "ada@example.com");
    assert!(r.mailer.sent()[0].text.contains("/verify-email#token=t"));
    assert_eq!(r.worker.run_once().await.unwrap().claimed(), 0);
    assert_eq!(r.outbox.pending().await.unwrap(), 0);
}

#[tokio::test]
async fn failures_back_off_exponentially_then_the_mail_goes() {
    let policy = RetryPolicy::default();
    let r = rig(policy);
    r.mailer
        .script([MailerAnswer::Transient, MailerAnswer::Transient]);
    r.outbox
        .enqueue(verification("ada@example.com"), r.clock.now())
        .await
        .unwrap();
    assert_eq!(r.worker.run_once().await.unwrap().retrying, 1);
    // Not due before the first backoff.
    r.clock.advance(policy.first_backoff - Duration::seconds(1));
    assert_eq!(r.worker.run_once().await.unwrap().claimed(), 0);
    r.clock.advance(Duration::seconds(1));
    assert_eq!(r.worker.run_once().await.unwrap().retrying, 1);
    // The second wait is twice the first.
    r.clock
        .advance(policy.first_backoff * 2 - Duration::seconds(1));
    assert_eq!(r.worker.run_once().await.unwrap().claimed(), 0);
    r.clock.advance(Duration::seconds(1));
    assert_eq!(r.worker.run_once().await.unwrap().sent, 1);
    assert_eq!(r.mailer.sent().len(), 1);
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let policy = RetryPolicy::default();
    assert_eq!(policy.backoff(1), Duration::seconds(30));
    assert_eq!(policy.backoff(2), Duration::seconds(60));
    assert_eq!(policy.backoff(5), Duration::seconds(480));
    assert_eq!(policy.backoff(9), Duration::hours(1));
    assert_eq!(policy.backoff(u32::MAX), Duration::hours(1));
}

#[tokio::test]
async fn the_last_allowed_failure_gives_the_mail_up() {
    let policy = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    let r = rig(policy);
    r.mailer.script([MailerAnswer::Transient; 3]);
    r.outbox
        .enqueue(verification("ada@example.com"), r.clock.now())
        .await
        .unwrap();
    let mut given_up = 0;
    for _ in 0..3 {
        given_up += r.worker.run_once().await.unwrap().given_up;
        r.clock.advance(policy.max_backoff);
    }
    assert_eq!(given_up, 1);
    assert_eq!(r.outbox.pending().await.unwrap(), 0);
    assert!(r.mailer.sent().is_empty());
}

#[tokio::test]
async fn a_permanent_refusal_gives_up_at_once() {
    let r = rig(RetryPolicy::default());
    r.mailer.script([MailerAnswer::Permanent]);
    r.outbox
        .enqueue(verification("ada@example.com"), r.clock.now())
        .await
        .unwrap();
    assert_eq!(r.worker.run_once().await.unwrap().given_up, 1);
    assert_eq!(r.outbox.pending().await.unwrap(), 0);
}

#[tokio::test]
async fn a_mail_claimed_by_a_worker_that_died_is_sent_after_the_lease() {
    let policy = RetryPolicy::default();
    let r = rig(policy);
    r.outbox
        .enqueue(verification("ada@example.com"), r.clock.now())
        .await
        .unwrap();
    // A worker claims it and dies before sending.
    let claimed = r
        .outbox
        .claim_due(r.clock.now(), 10, policy.lease)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(r.worker.run_once().await.unwrap().claimed(), 0);
    r.clock.advance(policy.lease);
    assert_eq!(r.worker.run_once().await.unwrap().sent, 1);
    assert_eq!(r.mailer.sent().len(), 1);
}

#[test]
fn templates_carry_product_and_link_in_both_parts() {
    let mail = MailTemplate::PasswordReset.render(
        Email::parse("ada@example.com").unwrap(),
        &[
            ("product", "localhost:8000"),
            ("link", "http://localhost:8000/reset-password#token=abc&x=1"),
            ("minutes", "60"),
        ],
    );
    assert_eq!(mail.subject, "Reset your localhost:8000 password");
    assert!(
        mail.text
            .contains("http://localhost:8000/reset-password#token=abc&x=1")
    );
    assert!(mail.text.contains("60 minutes"));
    assert!(
        mail.html
            .contains("href=\"http://localhost:8000/reset-password#token=abc&amp;x=1\"")
    );
}
