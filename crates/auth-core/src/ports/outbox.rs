//! `MailOutbox`: the durable queue between a change that causes a mail and the worker that
//! sends it.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::StoreError;
use crate::model::{MailId, OutgoingMail, QueuedMail};

/// Mails waiting to be sent.
///
/// A mail caused by a change is enqueued in the same atomic step as the change (the
/// repositories making such changes take the mail, see their contracts);
/// [`enqueue`](Self::enqueue) is for mails that go with no change.
///
/// Implementations MUST:
/// - keep an enqueued mail until it is [`mark_sent`](Self::mark_sent) or
///   [`give_up`](Self::give_up) removes it, across restarts when the store is durable: a
///   mail claimed by a worker that died is claimed again once its lease ends (delivery is at
///   least once);
/// - in [`claim_due`](Self::claim_due), hand each due mail to one caller at a time, even
///   across instances: a claimed mail is not due again until `now + lease`;
/// - hand out due mails oldest first;
/// - delete a mail's bodies when it is marked sent or given up (they carry one-time links,
///   which must not outlive their purpose in the store);
/// - classify errors as [`StoreError`] says.
#[async_trait]
pub trait MailOutbox: Send + Sync + 'static {
    /// Queues `mail`, due at `now`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn enqueue(&self, mail: OutgoingMail, now: DateTime<Utc>) -> Result<MailId, StoreError>;

    /// At most `limit` mails due at `now`, oldest first, each made not due again until
    /// `now + lease` (so that a worker that dies while sending leaves them to another).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<QueuedMail>, StoreError>;

    /// The mail was sent: it leaves the outbox. Unknown ids are ignored (another worker got
    /// there first after a lease ended).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn mark_sent(&self, id: MailId) -> Result<(), StoreError>;

    /// A try failed: the mail has now failed `attempts` times and is due again at `at`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn reschedule(
        &self,
        id: MailId,
        attempts: u32,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The mail will not be sent: it leaves the outbox.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn give_up(&self, id: MailId) -> Result<(), StoreError>;

    /// How many mails wait (claimed or not): for metrics and tests.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn pending(&self) -> Result<u64, StoreError>;
}
