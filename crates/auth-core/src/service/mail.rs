//! `OutboxWorker`: sends what the outbox holds, retrying with exponential backoff.
//!
//! The worker has no timer of its own (the core has no runtime): the binary calls
//! [`OutboxWorker::run_once`] in a loop. Every instance may run one; the outbox hands each
//! mail to one of them at a time (a lease), and a mail whose worker died is sent by another
//! once the lease ends: delivery is at least once, never zero times while the outbox keeps it.

use std::sync::Arc;

use chrono::Duration;

use crate::ErrorChain;
use crate::ports::{Clock, MailError, MailOutbox, Mailer, StoreError};

/// How the worker retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries before a mail is given up (≥ 1).
    pub max_attempts: u32,
    /// The wait after the first failure; each further failure doubles it.
    pub first_backoff: Duration,
    /// The longest wait between two tries.
    pub max_backoff: Duration,
    /// How long a claimed mail is left to its worker before another may take it: longer
    /// than one send can take (the mailer's timeout), short enough to resend soon after a
    /// crash.
    pub lease: Duration,
    /// Mails claimed per pass.
    pub batch: usize,
}

impl Default for RetryPolicy {
    /// 10 tries over about 4 hours (30 s, 1 min, 2 min, … capped at 1 h), a 5-minute lease,
    /// 20 mails a pass.
    fn default() -> Self {
        Self {
            max_attempts: 10,
            first_backoff: Duration::seconds(30),
            max_backoff: Duration::hours(1),
            lease: Duration::minutes(5),
            batch: 20,
        }
    }
}

impl RetryPolicy {
    /// The wait after the `failures`-th failure (1-based): `first_backoff · 2^(failures-1)`,
    /// at most `max_backoff`.
    #[must_use]
    pub fn backoff(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        let factor = 1_i32 << exponent;
        self.first_backoff
            .checked_mul(factor)
            .map_or(self.max_backoff, |wait| wait.min(self.max_backoff))
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxPass {
    /// Mails handed over.
    pub sent: usize,
    /// Mails that failed and wait for another try.
    pub retrying: usize,
    /// Mails given up.
    pub given_up: usize,
}

impl OutboxPass {
    /// Mails claimed in this pass.
    #[must_use]
    pub fn claimed(&self) -> usize {
        self.sent + self.retrying + self.given_up
    }
}

/// Sends the outbox's due mails.
#[derive(Clone)]
pub struct OutboxWorker {
    outbox: Arc<dyn MailOutbox>,
    mailer: Arc<dyn Mailer>,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
}

impl std::fmt::Debug for OutboxWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxWorker")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl OutboxWorker {
    /// A worker sending `outbox`'s mails through `mailer`.
    #[must_use]
    pub fn new(
        outbox: Arc<dyn MailOutbox>,
        mailer: Arc<dyn Mailer>,
        clock: Arc<dyn Clock>,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            outbox,
            mailer,
            clock,
            policy,
        }
    }

    /// Claims the due mails (one batch) and tries each once. A failed try is rescheduled
    /// after [`RetryPolicy::backoff`]; the last allowed failure, or a permanent refusal,
    /// gives the mail up with an ERROR log line that names its id, never its address.
    ///
    /// # Errors
    /// [`StoreError`] when the outbox fails; mails already handed over stay handed over
    /// (marking them sent failed at worst, and they go again: at least once).
    pub async fn run_once(&self) -> Result<OutboxPass, StoreError> {
        let now = self.clock.now();
        let due = self
            .outbox
            .claim_due(now, self.policy.batch.max(1), self.policy.lease)
            .await?;
        let mut pass = OutboxPass::default();
        for queued in due {
            match self.mailer.send(&queued.mail).await {
                Ok(()) => {
                    self.outbox.mark_sent(queued.id).await?;
                    pass.sent += 1;
                    metrics::counter!("auth_mail_sent_total").increment(1);
                }
                Err(err) => {
                    let failures = queued.attempts.saturating_add(1);
                    let permanent = matches!(err, MailError::Permanent(_));
                    if permanent || failures >= self.policy.max_attempts {
                        self.outbox.give_up(queued.id).await?;
                        pass.given_up += 1;
                        metrics::counter!("auth_mail_given_up_total").increment(1);
                        tracing::error!(
                            mail_id = %queued.id,
                            attempts = failures,
                            error = %ErrorChain(&err),
                            "mail given up: it will not be sent"
                        );
                    } else {
                        let wait = self.policy.backoff(failures);
                        self.outbox
                            .reschedule(queued.id, failures, self.clock.now() + wait)
                            .await?;
                        pass.retrying += 1;
                        metrics::counter!("auth_mail_retries_total").increment(1);
                        tracing::warn!(
                            mail_id = %queued.id,
                            attempts = failures,
                            retry_in_seconds = wait.num_seconds(),
                            error = %ErrorChain(&err),
                            "mail not sent; will retry"
                        );
                    }
                }
            }
        }
        Ok(pass)
    }
}
