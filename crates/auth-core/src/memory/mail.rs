//! `MemoryMailOutbox`, the outbox in this process (lost with it), and `RecordingMailer`, a
//! mailer for tests that keeps what it was given and fails on demand.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::lock;
use crate::model::{MailId, OutgoingMail, QueuedMail};
use crate::ports::{MailError, MailOutbox, Mailer, StoreError};

#[derive(Debug)]
struct Row {
    mail: OutgoingMail,
    attempts: u32,
    created_at: DateTime<Utc>,
    due_at: DateTime<Utc>,
}

/// The outbox in memory. `MailId`s are time-ordered, so the map's order is the age order.
#[derive(Debug, Default)]
pub struct MemoryMailOutbox {
    rows: Mutex<BTreeMap<MailId, Row>>,
}

impl MemoryMailOutbox {
    /// An empty outbox.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `mail`, due at `now` (for the other memory adapters, inside their own step).
    pub(crate) fn push(&self, mail: OutgoingMail, now: DateTime<Utc>) -> MailId {
        let id = MailId::generate();
        lock(&self.rows).insert(
            id,
            Row {
                mail,
                attempts: 0,
                created_at: now,
                due_at: now,
            },
        );
        id
    }

    /// Every mail waiting, oldest first, whether due or not (for tests).
    #[must_use]
    pub fn waiting(&self) -> Vec<OutgoingMail> {
        lock(&self.rows)
            .values()
            .map(|row| row.mail.clone())
            .collect()
    }
}

#[async_trait]
impl MailOutbox for MemoryMailOutbox {
    async fn enqueue(&self, mail: OutgoingMail, now: DateTime<Utc>) -> Result<MailId, StoreError> {
        Ok(self.push(mail, now))
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<QueuedMail>, StoreError> {
        let mut rows = lock(&self.rows);
        let mut claimed = Vec::new();
        for (id, row) in rows.iter_mut().filter(|(_, row)| row.due_at <= now) {
            if claimed.len() >= limit {
                break;
            }
            row.due_at = now + lease;
            claimed.push(QueuedMail {
                id: *id,
                mail: row.mail.clone(),
                attempts: row.attempts,
                created_at: row.created_at,
            });
        }
        Ok(claimed)
    }

    async fn mark_sent(&self, id: MailId) -> Result<(), StoreError> {
        lock(&self.rows).remove(&id);
        Ok(())
    }

    async fn reschedule(
        &self,
        id: MailId,
        attempts: u32,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(row) = lock(&self.rows).get_mut(&id) {
            row.attempts = attempts;
            row.due_at = at;
        }
        Ok(())
    }

    async fn give_up(&self, id: MailId) -> Result<(), StoreError> {
        lock(&self.rows).remove(&id);
        Ok(())
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        Ok(lock(&self.rows).len() as u64)
    }
}

/// What [`RecordingMailer`] answers next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailerAnswer {
    /// Accept the mail.
    Accept,
    /// Fail with [`MailError::Transient`].
    Transient,
    /// Fail with [`MailError::Permanent`].
    Permanent,
}

/// A mailer for tests: keeps every mail it accepts; answers from a script first (then
/// accepts).
#[derive(Debug, Default)]
pub struct RecordingMailer {
    sent: Mutex<Vec<OutgoingMail>>,
    script: Mutex<VecDeque<MailerAnswer>>,
}

impl RecordingMailer {
    /// A mailer that accepts everything.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The next calls answer `answers`, in order; the ones after accept.
    pub fn script(&self, answers: impl IntoIterator<Item = MailerAnswer>) {
        lock(&self.script).extend(answers);
    }

    /// Every mail accepted so far, in order.
    #[must_use]
    pub fn sent(&self) -> Vec<OutgoingMail> {
        lock(&self.sent).clone()
    }
}

#[async_trait]
impl Mailer for RecordingMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        match lock(&self.script).pop_front() {
            Some(MailerAnswer::Transient) => Err(MailError::Transient("scripted failure".into())),
            Some(MailerAnswer::Permanent) => Err(MailError::Permanent("scripted refusal".into())),
            Some(MailerAnswer::Accept) | None => {
                lock(&self.sent).push(mail.clone());
                Ok(())
            }
        }
    }
}
