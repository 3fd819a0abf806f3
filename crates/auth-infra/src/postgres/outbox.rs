//! `PgMailOutbox`: the mail outbox in the `mail_outbox` table, and [`enqueue_in`], with
//! which a repository queues a mail inside the transaction that makes the change causing it.
//!
//! A claim is one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)` that moves the
//! claimed rows' `due_at` to the end of the lease: concurrent workers (on any instance) skip
//! the rows another is claiming, and a row whose worker died is due again when its lease
//! ends.

use async_trait::async_trait;
use auth_core::model::{Email, MailId, OutgoingMail, QueuedMail};
use auth_core::ports::{MailOutbox, StoreError};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::error::classify;
use super::pool::DbPool;
use super::schema::mail_outbox;

/// Claims at most `$2` rows due at `$1`, oldest first, moving them to `$3`.
const CLAIM_SQL: &str = "\
UPDATE mail_outbox SET due_at = $3
WHERE id IN (
    SELECT id FROM mail_outbox WHERE due_at <= $1
    ORDER BY due_at, id LIMIT $2
    FOR UPDATE SKIP LOCKED)
RETURNING id, recipient, subject, body_text, body_html, created_at, attempts";

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    id: uuid::Uuid,
    #[diesel(sql_type = Text)]
    recipient: String,
    #[diesel(sql_type = Text)]
    subject: String,
    #[diesel(sql_type = Text)]
    body_text: String,
    #[diesel(sql_type = Text)]
    body_html: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

impl Claimed {
    fn into_queued(self) -> Result<QueuedMail, StoreError> {
        Ok(QueuedMail {
            id: MailId::from_uuid(self.id),
            mail: OutgoingMail {
                to: Email::from_stored(&self.recipient).map_err(StoreError::internal)?,
                subject: self.subject,
                text: self.body_text,
                html: self.body_html,
            },
            attempts: u32::try_from(self.attempts).map_err(StoreError::internal)?,
            created_at: self.created_at,
        })
    }
}

/// Queues `mail`, due at `now`, in the transaction `conn` is in.
///
/// # Errors
/// The driver's error: the caller's transaction then rolls back.
pub(super) async fn enqueue_in(
    conn: &mut AsyncPgConnection,
    mail: &OutgoingMail,
    now: DateTime<Utc>,
) -> diesel::QueryResult<MailId> {
    let id = MailId::generate();
    diesel::insert_into(mail_outbox::table)
        .values((
            mail_outbox::id.eq(id.as_uuid()),
            mail_outbox::recipient.eq(mail.to.as_str()),
            mail_outbox::subject.eq(&mail.subject),
            mail_outbox::body_text.eq(&mail.text),
            mail_outbox::body_html.eq(&mail.html),
            mail_outbox::created_at.eq(now),
            mail_outbox::due_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(id)
}

/// The outbox in Postgres.
#[derive(Clone)]
pub struct PgMailOutbox {
    pool: DbPool,
}

impl std::fmt::Debug for PgMailOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgMailOutbox")
            .field("pool", &self.pool)
            .finish()
    }
}

impl PgMailOutbox {
    /// An outbox over `pool`.
    #[must_use]
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl MailOutbox for PgMailOutbox {
    async fn enqueue(&self, mail: OutgoingMail, now: DateTime<Utc>) -> Result<MailId, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                enqueue_in(&mut conn, &mail, now).await.map_err(classify)
            })
            .await
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<QueuedMail>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                // `load`: the claim commits with this statement (see `PgSessionRepository::rotate`).
                let rows: Vec<Claimed> = diesel::sql_query(CLAIM_SQL)
                    .bind::<Timestamptz, _>(now)
                    .bind::<BigInt, _>(limit)
                    .bind::<Timestamptz, _>(now + lease)
                    .load(&mut conn)
                    .await
                    .map_err(classify)?;
                let mut queued = rows
                    .into_iter()
                    .map(Claimed::into_queued)
                    .collect::<Result<Vec<_>, _>>()?;
                // `RETURNING` keeps no order: oldest first, as the port promises.
                queued.sort_by_key(|q| q.id);
                Ok(queued)
            })
            .await
    }

    async fn mark_sent(&self, id: MailId) -> Result<(), StoreError> {
        self.delete(id).await
    }

    async fn reschedule(
        &self,
        id: MailId,
        attempts: u32,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                diesel::update(mail_outbox::table.find(id.as_uuid()))
                    .set((
                        mail_outbox::attempts.eq(attempts),
                        mail_outbox::due_at.eq(at),
                    ))
                    .execute(&mut conn)
                    .await
                    .map_err(classify)?;
                Ok(())
            })
            .await
    }

    async fn give_up(&self, id: MailId) -> Result<(), StoreError> {
        self.delete(id).await
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let n: i64 = mail_outbox::table
                    .count()
                    .get_result(&mut conn)
                    .await
                    .map_err(classify)?;
                u64::try_from(n).map_err(StoreError::internal)
            })
            .await
    }
}

impl PgMailOutbox {
    async fn delete(&self, id: MailId) -> Result<(), StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                diesel::delete(mail_outbox::table.find(id.as_uuid()))
                    .execute(&mut conn)
                    .await
                    .map_err(classify)?;
                Ok(())
            })
            .await
    }
}
