//! `PgEventLog`: the event log in the `events` table, and [`append_in`], with which every
//! repository appends its events inside the transaction that makes the change.
//!
//! Appending also queues `pg_notify` with the newest `seq` on [`CHANNEL`], in the same
//! statement: Postgres delivers it when (and only if) the transaction commits, and it only
//! wakes the followers up; what they apply is what they read from the table.

use async_trait::async_trait;
use auth_core::audit;
use auth_core::model::{
    ActorKind, DeviceId, EventAction, EventActor, EventTarget, LogEntry, NewEvent, OrganizationId,
    SessionId, StoredEvent, TokenHash, UserId,
};
use auth_core::ports::{EventLog, EventQuery, EventScope, Invalidation, LogBounds, StoreError};
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::error::classify;
use super::pool::DbPool;

/// The notification channel of the event log (and of the heartbeats).
pub const CHANNEL: &str = "auth_invalidation";

/// The wall clock in microseconds, stamped on notifications so receivers can tell their age.
pub(super) fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// A cache entry as the `invalidates` column (and older releases' notifications) write it.
pub(super) fn encode(invalidation: &Invalidation) -> String {
    match invalidation {
        Invalidation::ApiKey(hash) => format!("k:{}", hex::encode(hash.as_bytes())),
        Invalidation::Session(id) => format!("s:{id}"),
        Invalidation::Device(id) => format!("d:{id}"),
        Invalidation::User(id) => format!("u:{id}"),
    }
}

/// The cache entry `text` names, if it names one.
pub(super) fn decode(text: &str) -> Option<Invalidation> {
    let (kind, value) = text.split_once(':')?;
    match kind {
        "k" => {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(value, &mut bytes).ok()?;
            Some(Invalidation::ApiKey(TokenHash::from_bytes(bytes)))
        }
        "s" => value.parse::<SessionId>().ok().map(Invalidation::Session),
        "d" => DeviceId::parse(value).ok().map(Invalidation::Device),
        "u" => value.parse::<UserId>().ok().map(Invalidation::User),
        _ => None,
    }
}

/// A stored row that does not convert, as a driver error (inside a transaction, so that it
/// rolls back).
pub(super) fn corrupt(err: StoreError) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(Box::new(err))
}

/// Appends `events` to the log in the transaction `conn` is in, and queues the notification
/// that wakes the followers when it commits. Each event is stamped with the request that
/// made it, or `system` outside one (see [`audit::stamp`]). One statement, whatever the number of events.
/// Call it last in the transaction: an event's `seq` is taken here, and the shorter the time
/// from taking it to committing, the sooner followers see a gap close.
///
/// # Errors
/// The driver's error: the caller's transaction then rolls back, so neither the change nor
/// its events are stored.
pub(super) async fn append_in(
    conn: &mut AsyncPgConnection,
    events: &[NewEvent],
) -> diesel::QueryResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(events.len());
    let mut ats = Vec::with_capacity(events.len());
    let mut actions = Vec::with_capacity(events.len());
    let mut orgs = Vec::with_capacity(events.len());
    let mut target_types = Vec::with_capacity(events.len());
    let mut target_ids = Vec::with_capacity(events.len());
    let mut details = Vec::with_capacity(events.len());
    let mut invalidates = Vec::with_capacity(events.len());
    let mut actor_types = Vec::with_capacity(events.len());
    let mut actor_ids = Vec::with_capacity(events.len());
    let mut ips = Vec::with_capacity(events.len());
    let mut request_ids = Vec::with_capacity(events.len());
    let mut users = Vec::with_capacity(events.len());
    for event in events {
        // Who, from where, in which request: the request being served, or the service itself.
        let mut stamped = event.clone();
        audit::stamp(&mut stamped);
        let actor = stamped.actor.unwrap_or_else(EventActor::system);
        actor_types.push(actor.kind.as_str());
        actor_ids.push(actor.id);
        ips.push(stamped.ip.map(|ip| ip.to_string()));
        request_ids.push(stamped.request_id);
        users.push(event.subject_user().map(|u| u.as_uuid()));
        ids.push(event.id);
        ats.push(event.at);
        actions.push(event.action.as_str());
        orgs.push(event.organization_id.map(|o| o.as_uuid()));
        target_types.push(event.target.kind.as_str());
        target_ids.push(event.target.id.as_str());
        details.push(stamped.details);
        invalidates.push(event.invalidation.as_ref().map(encode));
    }
    diesel::sql_query(
        "WITH appended AS ( \
           INSERT INTO events (id, at, action, organization_id, target_type, target_id, \
                               details, invalidates, actor_type, actor_id, ip, request_id, \
                               user_id) \
           SELECT id, at, action, org, ttype, tid, details, inv, atype, aid, ip::inet, rid, uid \
           FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::uuid[], \
                       $5::text[], $6::text[], $7::jsonb[], $8::text[], $11::text[], \
                       $12::text[], $13::text[], $14::text[], $15::uuid[]) \
                AS e(id, at, action, org, ttype, tid, details, inv, atype, aid, ip, rid, uid) \
           RETURNING seq) \
         SELECT pg_notify($9, 'e:' || max(seq) || '@' || $10) FROM appended",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<Timestamptz>, _>(ats)
    .bind::<Array<Text>, _>(actions)
    .bind::<Array<Nullable<SqlUuid>>, _>(orgs)
    .bind::<Array<Text>, _>(target_types)
    .bind::<Array<Text>, _>(target_ids)
    .bind::<Array<Jsonb>, _>(details)
    .bind::<Array<Nullable<Text>>, _>(invalidates)
    .bind::<Text, _>(CHANNEL)
    .bind::<Text, _>(now_micros().to_string())
    .bind::<Array<Text>, _>(actor_types)
    .bind::<Array<Nullable<Text>>, _>(actor_ids)
    .bind::<Array<Nullable<Text>>, _>(ips)
    .bind::<Array<Nullable<Text>>, _>(request_ids)
    .bind::<Array<Nullable<SqlUuid>>, _>(users)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Nullable<Text>)]
    invalidates: Option<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    organization_id: Option<uuid::Uuid>,
    #[diesel(sql_type = Jsonb)]
    details: serde_json::Value,
}

#[derive(diesel::QueryableByName)]
struct TrailRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = SqlUuid)]
    id: uuid::Uuid,
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Nullable<Text>)]
    actor_type: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    actor_id: Option<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    organization_id: Option<uuid::Uuid>,
    #[diesel(sql_type = Text)]
    target_type: String,
    #[diesel(sql_type = Text)]
    target_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    ip: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    request_id: Option<String>,
    #[diesel(sql_type = Jsonb)]
    details: serde_json::Value,
}

impl TrailRow {
    fn into_event(self) -> StoredEvent {
        // Events written before actors were recorded were the service's own doing.
        let kind = self
            .actor_type
            .as_deref()
            .and_then(ActorKind::parse)
            .unwrap_or(ActorKind::System);
        StoredEvent {
            seq: self.seq,
            id: self.id,
            at: self.at,
            action: self.action,
            actor: EventActor {
                kind,
                id: self.actor_id,
            },
            organization_id: self.organization_id.map(OrganizationId::from_uuid),
            target: EventTarget {
                kind: self.target_type,
                id: self.target_id,
            },
            ip: self.ip.and_then(|ip| ip.parse().ok()),
            request_id: self.request_id,
            details: self.details,
        }
    }
}

/// See [`EventLog::list`].
pub(super) async fn list_on(
    conn: &mut AsyncPgConnection,
    query: &EventQuery,
) -> Result<Vec<StoredEvent>, StoreError> {
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let (column, id) = match query.scope {
        EventScope::Organization(org) => ("organization_id", Some(org.as_uuid())),
        EventScope::User(user) => ("user_id", Some(user.as_uuid())),
        EventScope::All => ("NULL", None),
    };
    // `column` is one of three fixed names, never input.
    let sql = format!(
        "SELECT seq, id, at, action, actor_type, actor_id, organization_id, target_type, \
                target_id, host(ip) AS ip, request_id, details FROM events \
         WHERE ($1::uuid IS NULL OR {column} = $1) AND seq > $2 \
           AND ($3::text IS NULL OR action = $3) \
         ORDER BY seq LIMIT $4"
    );
    let rows: Vec<TrailRow> = diesel::sql_query(sql)
        .bind::<Nullable<SqlUuid>, _>(id)
        .bind::<BigInt, _>(query.after)
        .bind::<Nullable<Text>, _>(query.action.as_deref())
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await
        .map_err(classify)?;
    Ok(rows.into_iter().map(TrailRow::into_event).collect())
}

#[derive(diesel::QueryableByName)]
struct Bounds {
    #[diesel(sql_type = Nullable<BigInt>)]
    oldest: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    newest: Option<i64>,
}

#[derive(diesel::QueryableByName)]
struct Position {
    #[diesel(sql_type = Nullable<BigInt>)]
    seq: Option<i64>,
}

/// The event log in Postgres.
#[derive(Debug, Clone)]
pub struct PgEventLog {
    pool: DbPool,
}

impl PgEventLog {
    /// A log read through `pool`.
    #[must_use]
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

/// Events after `$1`, plus those at the positions `$2` (at or before `$1`), in order, at most
/// `$3`. Two branches, not `seq > $1 OR seq = ANY($2)`: the `OR` is planned as a bitmap of
/// every row past `$1`, sorted for the limit, so a follower catching up through a long stretch
/// of the log read all the rest of it for every page (after 100,000 events: 17 ms of Postgres a
/// page, 1.6 s for the catch-up a new instance makes). The first branch walks the key in order
/// and stops at the limit.
const READ_SQL: &str = "\
SELECT seq, at, action, invalidates, organization_id, details FROM (
    (SELECT seq, at, action, invalidates, organization_id, details FROM events
     WHERE seq > $1 ORDER BY seq LIMIT $3)
    UNION ALL
    SELECT seq, at, action, invalidates, organization_id, details FROM events
    WHERE seq = ANY($2) AND seq <= $1
) AS page ORDER BY seq LIMIT $3";

/// Events after `after`, plus those at the positions of `also`, on `conn`.
pub(super) async fn read_on(
    conn: &mut AsyncPgConnection,
    after: i64,
    also: &[i64],
    limit: usize,
) -> Result<Vec<LogEntry>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<Row> = diesel::sql_query(READ_SQL)
        .bind::<BigInt, _>(after)
        .bind::<Array<BigInt>, _>(also)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await
        .map_err(classify)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let invalidation = row.invalidates.as_deref().and_then(decode);
            if row.invalidates.is_some() && invalidation.is_none() {
                // Written by a newer release in an encoding this one does not know.
                tracing::warn!(
                    seq = row.seq,
                    "event names a cache entry this release cannot read"
                );
            }
            LogEntry {
                seq: row.seq,
                at: row.at,
                action: EventAction::parse(&row.action),
                invalidation,
                organization_id: row.organization_id.map(OrganizationId::from_uuid),
                details: row.details,
            }
        })
        .collect())
}

/// See [`EventLog::position_at`]: the position of the newest event made at or before `at`.
pub(super) async fn position_at_on(
    conn: &mut AsyncPgConnection,
    at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let position: Position = diesel::sql_query(
        "SELECT (SELECT seq FROM events WHERE at <= $1 ORDER BY at DESC LIMIT 1) AS seq",
    )
    .bind::<Timestamptz, _>(at)
    .get_result(conn)
    .await
    .map_err(classify)?;
    Ok(position.seq.unwrap_or(0))
}

/// See [`EventLog::bounds`].
pub(super) async fn bounds_on(conn: &mut AsyncPgConnection) -> Result<LogBounds, StoreError> {
    let bounds: Bounds =
        diesel::sql_query("SELECT min(seq) AS oldest, max(seq) AS newest FROM events")
            .get_result(conn)
            .await
            .map_err(classify)?;
    Ok(LogBounds {
        oldest: bounds.oldest,
        newest: bounds.newest,
    })
}

#[async_trait]
impl EventLog for PgEventLog {
    async fn read(
        &self,
        after: i64,
        also: &[i64],
        limit: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                read_on(&mut conn, after, also, limit).await
            })
            .await
    }

    async fn position_at(&self, at: DateTime<Utc>) -> Result<i64, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                position_at_on(&mut conn, at).await
            })
            .await
    }

    async fn bounds(&self) -> Result<LogBounds, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                bounds_on(&mut conn).await
            })
            .await
    }

    async fn list(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                list_on(&mut conn, query).await
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_entries_round_trip() {
        let key = Invalidation::ApiKey(TokenHash::of(b"k"));
        let session = Invalidation::Session(SessionId::generate());
        let device = Invalidation::Device(DeviceId::parse("frame:01.a-b_c").unwrap());
        let user = Invalidation::User(UserId::generate());
        for invalidation in [key, session, device, user] {
            assert_eq!(decode(&encode(&invalidation)), Some(invalidation));
        }
        for junk in [
            "",
            "h",
            "k:zz",
            "s:not-a-uuid",
            "x:1",
            &format!("k:{}", "0".repeat(63)),
        ] {
            assert_eq!(decode(junk), None, "{junk}");
        }
    }

    #[cfg(feature = "test-support")]
    mod read_cost {
        use diesel::sql_types::Text;

        use super::super::*;
        use crate::test_support::TestDb;

        #[derive(diesel::QueryableByName)]
        struct PlanLine {
            #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
            line: String,
        }

        /// The positions a page answers, after checking that the statement's scans produced or
        /// filtered away (in its `EXPLAIN ANALYZE`) about as many rows, not the whole log.
        async fn page(conn: &mut AsyncPgConnection, after: i64, also: &[i64]) -> Vec<i64> {
            let plan: Vec<String> = diesel::sql_query(format!("EXPLAIN ANALYZE {READ_SQL}"))
                .bind::<BigInt, _>(after)
                .bind::<Array<BigInt>, _>(also)
                .bind::<BigInt, _>(1000_i64)
                .load::<PlanLine>(conn)
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.line)
                .collect();
            let number_after = |line: &str, label: &str| -> u64 {
                let rest = &line[line.find(label).unwrap() + label.len()..];
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            let mut examined = 0;
            for line in &plan {
                if let Some((node, actual)) = line.split_once("(actual ")
                    && node.contains(" Scan ")
                {
                    examined += number_after(actual, " rows=") * number_after(actual, " loops=");
                }
                if line.contains("Rows Removed by Filter: ") {
                    examined += number_after(line, "Rows Removed by Filter: ");
                }
            }
            assert!(examined > 0, "no scan in {plan:#?}");
            let seqs: Vec<i64> = read_on(conn, after, also, 1000)
                .await
                .unwrap()
                .into_iter()
                .map(|entry| entry.seq)
                .collect();
            // The old `OR` statement examined every row past `after` (a bitmap of them all,
            // sorted for the limit) or every row before it (the key walked from the start,
            // filtering): 20,000 and more here.
            assert!(
                examined <= 2 * u64::try_from(seqs.len()).unwrap() + 100,
                "after {after}, also {also:?}: {examined} rows examined for a page of {}: \
                 {plan:#?}",
                seqs.len()
            );
            seqs
        }

        /// A follower catching up reads a page of the log by examining about the page's own rows,
        /// wherever in the log it is and with holes under watch; it does not go through the rest of
        /// the log (or all of it from the start) to find the page.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_page_costs_its_own_rows_not_the_whole_log() {
            let db = TestDb::new().await;
            // `TestDb`'s own `execute`, not diesel's (in scope here, and taking `self`).
            TestDb::execute(
                &db,
                "INSERT INTO events (id, at, action, target_type, target_id) \
                 SELECT gen_random_uuid(), now(), 'api_key.created', 'api_key', n::text \
                 FROM generate_series(1, 40000) AS n; ANALYZE events",
            )
            .await;
            let pool = db.pool();
            let mut conn = pool.get().await.unwrap();
            let (first, last): (i64, i64) = {
                let bounds = bounds_on(&mut conn).await.unwrap();
                (bounds.oldest.unwrap(), bounds.newest.unwrap())
            };
            for (after, also) in [
                (first - 1, vec![]),
                (first + 20_000, vec![]),
                (first + 20_000, vec![first + 5, first + 7, first + 19_999]),
                (last - 500, vec![first + 1]),
            ] {
                let seqs = page(&mut conn, after, &also).await;
                // The watched holes first (each is an event), then the log from `after` on.
                let expected: Vec<i64> = also
                    .iter()
                    .copied()
                    .chain(after + 1..=last)
                    .take(1000)
                    .collect();
                assert_eq!(seqs, expected, "after {after}, also {also:?}");
            }
        }
    }
}
