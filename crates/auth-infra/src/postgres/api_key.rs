//! `PgApiKeyRepository`: revocation is one conditional `UPDATE`, rotation that `UPDATE` and
//! the new key's `INSERT` in one transaction, so concurrent callers get exactly one winner.

use async_trait::async_trait;
use auth_core::model::{
    ApiKey, ApiKeyChanges, ApiKeyId, ApiKeyMeta, ApiKeyName, ApiKeyStatus, CreditSpend, Credits,
    ExternalId, HourUsage, NewEvent, OrganizationId, RateLimit, Refill, RefillPeriod, Scope,
    Scopes, TokenHash, UsageBucket, UsageCounts,
};
use auth_core::ports::{
    ApiKeyRepository, Lease, LeaseRequest, RevokeApiKeyError, StoreError, UpdateApiKeyError,
};
use chrono::{DateTime, Utc};
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::Error as DieselError;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use std::sync::Arc;

use super::coalesce::{BatchRead, Coalescer, ReadRow};
use super::error::classify;
use super::events::{append_in, corrupt};
use super::pool::DbPool;
use super::schema::{api_key_usage, api_keys};

/// A row of `api_keys`.
// No `Debug`: the row holds a password hash or a secret's hash.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
struct ApiKeyRow {
    id: Uuid,
    organization_id: Uuid,
    name: String,
    prefix: String,
    key_hash: Vec<u8>,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    meta: Option<serde_json::Value>,
    external_id: Option<String>,
    rate_limit: Option<i32>,
    rate_window_seconds: Option<i32>,
    credits_remaining: Option<i64>,
    refill_amount: Option<i64>,
    refill_every: Option<String>,
    refilled_at: Option<DateTime<Utc>>,
}

/// A count as an `integer` column holds it. Every count fits (the domain bounds them far
/// below); one that did not would be written as the largest value, which the table's checks
/// refuse, never as a smaller count.
fn int4(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A count as a `bigint` column holds it (as [`int4`]).
fn int8(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A column's count, refused when negative.
fn count<T: TryInto<u64>>(n: T) -> Result<u64, StoreError> {
    n.try_into()
        .map_err(|_| StoreError::internal("a negative count in api_keys"))
}

fn refill_columns(refill: Option<Refill>) -> (Option<i64>, Option<String>) {
    refill.map_or((None, None), |r| {
        (Some(int8(r.amount())), Some(r.every().as_str().to_owned()))
    })
}

impl ApiKeyRow {
    fn from_domain(key: &ApiKey) -> Self {
        Self {
            id: key.id.as_uuid(),
            organization_id: key.organization_id.as_uuid(),
            name: key.name.as_str().to_owned(),
            prefix: key.prefix.clone(),
            key_hash: key.key_hash.as_bytes().to_vec(),
            scopes: key
                .scopes
                .as_slice()
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            created_at: key.created_at,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
            last_used_at: key.last_used_at,
            meta: key.meta.as_ref().map(ApiKeyMeta::to_value),
            external_id: key.external_id.as_ref().map(|e| e.as_str().to_owned()),
            rate_limit: key.rate_limit.map(|r| int4(r.limit())),
            rate_window_seconds: key.rate_limit.map(|r| int4(r.window_seconds())),
            credits_remaining: key.credits.map(|c| int8(c.remaining)),
            refill_amount: refill_columns(key.credits.and_then(|c| c.refill)).0,
            refill_every: refill_columns(key.credits.and_then(|c| c.refill)).1,
            refilled_at: key.credits.map(|c| c.refilled_at),
        }
    }

    fn rate_limit(&self) -> Result<Option<RateLimit>, StoreError> {
        match (self.rate_limit, self.rate_window_seconds) {
            (Some(limit), Some(window)) => RateLimit::new(count(limit)?, count(window)?)
                .map(Some)
                .map_err(StoreError::internal),
            (None, None) => Ok(None),
            _ => Err(StoreError::internal("a rate limit without its window")),
        }
    }

    fn credits(&self) -> Result<Option<Credits>, StoreError> {
        let refill = match (self.refill_amount, self.refill_every.as_deref()) {
            (Some(amount), Some(every)) => {
                let every = RefillPeriod::parse(every)
                    .ok_or_else(|| StoreError::internal("an unknown refill period"))?;
                Some(Refill::new(count(amount)?, every).map_err(StoreError::internal)?)
            }
            (None, None) => None,
            _ => return Err(StoreError::internal("a refill without its period")),
        };
        match (self.credits_remaining, self.refilled_at) {
            (Some(remaining), Some(refilled_at)) => Ok(Some(Credits {
                remaining: count(remaining)?,
                refill,
                refilled_at,
            })),
            (None, None) if refill.is_none() => Ok(None),
            _ => Err(StoreError::internal("credits without their date")),
        }
    }

    fn into_domain(self) -> Result<ApiKey, StoreError> {
        let rate_limit = self.rate_limit()?;
        let credits = self.credits()?;
        let key_hash: [u8; 32] = self
            .key_hash
            .as_slice()
            .try_into()
            .map_err(StoreError::internal)?;
        let scopes = self
            .scopes
            .iter()
            .map(|s| Scope::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::internal)?;
        Ok(ApiKey {
            id: ApiKeyId::from_uuid(self.id),
            organization_id: OrganizationId::from_uuid(self.organization_id),
            name: ApiKeyName::from_stored(&self.name).map_err(StoreError::internal)?,
            prefix: self.prefix,
            key_hash: TokenHash::from_bytes(key_hash),
            scopes: Scopes::from_stored(scopes),
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at,
            meta: self
                .meta
                .map(ApiKeyMeta::from_stored)
                .transpose()
                .map_err(StoreError::internal)?,
            external_id: self
                .external_id
                .as_deref()
                .map(ExternalId::from_stored)
                .transpose()
                .map_err(StoreError::internal)?,
            rate_limit,
            credits,
        })
    }
}

/// The members a change sets: an outer `None` leaves the column alone, `Some(None)` sets it
/// to NULL.
#[derive(AsChangeset)]
#[diesel(table_name = api_keys)]
struct ApiKeyChangeset {
    name: Option<String>,
    scopes: Option<Vec<String>>,
    meta: Option<Option<serde_json::Value>>,
    external_id: Option<Option<String>>,
    expires_at: Option<Option<DateTime<Utc>>>,
    rate_limit: Option<Option<i32>>,
    rate_window_seconds: Option<Option<i32>>,
    credits_remaining: Option<Option<i64>>,
    refilled_at: Option<Option<DateTime<Utc>>>,
    refill_amount: Option<Option<i64>>,
    refill_every: Option<Option<String>>,
}

impl ApiKeyChangeset {
    /// The columns `changes` set at `now`. A count of credits set dates the count; clearing
    /// it clears its refill too (a refill is only ever given with a count).
    fn from_domain(changes: &ApiKeyChanges, now: DateTime<Utc>) -> Self {
        let refill = match changes.remaining {
            Some(None) => Some(None),
            _ => changes.refill,
        };
        Self {
            name: changes.name.as_ref().map(|n| n.as_str().to_owned()),
            scopes: changes.scopes.as_ref().map(|scopes| {
                scopes
                    .as_slice()
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect()
            }),
            meta: changes
                .meta
                .as_ref()
                .map(|meta| meta.as_ref().map(ApiKeyMeta::to_value)),
            external_id: changes
                .external_id
                .as_ref()
                .map(|id| id.as_ref().map(|id| id.as_str().to_owned())),
            expires_at: changes.expires_at,
            rate_limit: changes.rate_limit.map(|r| r.map(|r| int4(r.limit()))),
            rate_window_seconds: changes
                .rate_limit
                .map(|r| r.map(|r| int4(r.window_seconds()))),
            credits_remaining: changes.remaining.map(|n| n.map(int8)),
            refilled_at: changes.remaining.map(|n| n.map(|_| now)),
            refill_amount: refill.map(|r| refill_columns(r).0),
            refill_every: refill.map(|r| refill_columns(r).1),
        }
    }
}

/// How a change's transaction ended when it did not commit.
enum UpdateFailure {
    /// The key is missing, revoked or expired: roll back, then find out which.
    Refused,
    /// The database failed.
    Db(DieselError),
}

impl From<DieselError> for UpdateFailure {
    fn from(err: DieselError) -> Self {
        Self::Db(err)
    }
}

/// The key as stored, or why a change of it is refused at `now`.
async fn active_key(
    conn: &mut AsyncPgConnection,
    id: ApiKeyId,
    now: DateTime<Utc>,
) -> Result<ApiKey, UpdateApiKeyError> {
    let key = api_keys::table
        .find(id.as_uuid())
        .select((ApiKeyRow::as_select(), LastUsed))
        .first(conn)
        .await
        .optional()
        .map_err(classify)?
        .map(with_last_use)
        .ok_or(UpdateApiKeyError::NotFound)?
        .into_domain()?;
    match key.status(now) {
        ApiKeyStatus::Active => Ok(key),
        ApiKeyStatus::Revoked => Err(UpdateApiKeyError::AlreadyRevoked),
        ApiKeyStatus::Expired => Err(UpdateApiKeyError::Expired),
    }
}

/// Takes one credit of an active key in one statement: the row is locked and read (a refill
/// due at the start of its day, `$2`, or month, `$3`, counts as done), then its count lowered
/// when one is left. Concurrent spends queue on the row lock, and a `FOR UPDATE` that waited
/// reads the row as the one before left it (the values are computed in that locking `SELECT`,
/// never from a second read of the table, which would see the statement's older snapshot), so
/// of any number of them exactly as many as there were credits succeed.
/// `metered` is 0 when the key is missing, not active at `$4`, or has no credits.
const SPEND_CREDIT_SQL: &str = "\
WITH k AS (
    SELECT id,
        CASE WHEN refill_every IS NOT NULL
              AND refilled_at < CASE refill_every WHEN 'day' THEN $2 ELSE $3 END
             THEN refill_amount ELSE credits_remaining END AS available,
        CASE WHEN refill_every IS NOT NULL
              AND refilled_at < CASE refill_every WHEN 'day' THEN $2 ELSE $3 END
             THEN CASE refill_every WHEN 'day' THEN $2 ELSE $3 END ELSE refilled_at END AS refilled_at
    FROM api_keys
    WHERE id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $4)
      AND credits_remaining IS NOT NULL
    FOR UPDATE
), spent AS (
    UPDATE api_keys AS a SET credits_remaining = k.available - 1, refilled_at = k.refilled_at
    FROM k WHERE a.id = k.id AND k.available > 0
    RETURNING a.credits_remaining
)
SELECT (SELECT count(*) FROM k) AS metered, (SELECT credits_remaining FROM spent) AS remaining";

#[derive(QueryableByName)]
struct SpendRow {
    #[diesel(sql_type = BigInt)]
    metered: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    remaining: Option<i64>,
}

/// Grants a share of a window's budget and takes back what is given back, in one statement on
/// the key's row of `api_key_windows` (`$2` the window's start, `$6` its length, `$3` the
/// limit, `$4` the ask, `$5` given back). A grant is at most a quarter of what is left of the
/// window (at least one): many verifications asking at once, each with an old idea of what
/// is left, cannot hand one instance the whole window while another has none. A later window, or one of another length, replaces
/// the row's; a request for an earlier window of the same length (an instance whose clock
/// lags) is served from the row's window and gives nothing back. `window_start` answers which
/// window the grant belongs to.
const LEASE_SQL: &str = "\
INSERT INTO api_key_windows AS w (key_id, window_start, window_seconds, granted, last_grant)
VALUES ($1, $2, $6, LEAST($4, $3, GREATEST(($3 + 3) / 4, 1)),
        LEAST($4, $3, GREATEST(($3 + 3) / 4, 1)))
ON CONFLICT (key_id) DO UPDATE SET (last_grant, granted, window_start, window_seconds) = (
    SELECT g.grant, g.base + g.grant, g.start, $6
    FROM (SELECT LEAST($4, l.left_over, GREATEST((l.left_over + 3) / 4, 1)) AS grant,
                 l.base, l.start
          FROM (SELECT GREATEST($3 - b.base, 0) AS left_over, b.base, b.start
                FROM (SELECT
                        CASE WHEN w.window_seconds <> $6 OR w.window_start < $2 THEN 0
                             ELSE GREATEST(w.granted
                                 - CASE WHEN w.window_start = $2 THEN $5 ELSE 0 END, 0)
                        END AS base,
                        CASE WHEN w.window_seconds <> $6 OR w.window_start < $2 THEN $2
                             ELSE w.window_start END AS start) AS b) AS l) AS g)
RETURNING last_grant, granted, window_start";

#[derive(QueryableByName)]
struct LeaseRow {
    #[diesel(sql_type = Integer)]
    last_grant: i32,
    #[diesel(sql_type = Integer)]
    granted: i32,
    #[diesel(sql_type = Timestamptz)]
    window_start: DateTime<Utc>,
}

/// Adds verification counts and last uses per key and hour: the batch is summed per key and
/// hour first (one row may be named once per statement), keys that no longer exist are
/// skipped, and rows are written in key and hour order, so concurrent batches from several
/// instances queue up instead of deadlocking. The key's own row is not written: its last use
/// is the latest of `api_keys.last_used_at` and its usage rows' ([`LastUsed`]).
const RECORD_USAGE_SQL: &str = "\
INSERT INTO api_key_usage AS u
    (key_id, hour, valid, insufficient_scope, rate_limited, usage_exceeded, expired, revoked,
     last_used_at)
SELECT g.id, g.hour, sum(g.v), sum(g.s), sum(g.r), sum(g.x), sum(g.e), sum(g.k), max(g.at)
FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::bigint[],
            $6::bigint[], $7::bigint[], $8::bigint[], $9::timestamptz[])
     AS g(id, hour, v, s, r, x, e, k, at)
JOIN api_keys AS a ON a.id = g.id
GROUP BY g.id, g.hour
ORDER BY g.id, g.hour
ON CONFLICT (key_id, hour) DO UPDATE SET
    valid = u.valid + EXCLUDED.valid,
    insufficient_scope = u.insufficient_scope + EXCLUDED.insufficient_scope,
    rate_limited = u.rate_limited + EXCLUDED.rate_limited,
    usage_exceeded = u.usage_exceeded + EXCLUDED.usage_exceeded,
    expired = u.expired + EXCLUDED.expired,
    revoked = u.revoked + EXCLUDED.revoked,
    last_used_at = GREATEST(u.last_used_at, EXCLUDED.last_used_at)";

/// A key's last use as reads of a key by id or in a list answer it: the latest of its own
/// column (what retention folded in from the usage rows it deleted, and what was written before
/// usage rows held it) and of its latest usage row holding one (one step back along the usage
/// table's primary key). A verification writes only the usage row, never the key's.
///
/// The verification's lookups by hash read the column alone: their record goes to the key
/// cache (itself up to its time to live behind), and the probe would cost every cold lookup.
#[derive(Debug, Clone, Copy, QueryId, ValidGrouping)]
struct LastUsed;

const LAST_USED_SQL: &str = "GREATEST(api_keys.last_used_at, (\
SELECT u.last_used_at FROM api_key_usage AS u \
WHERE u.key_id = api_keys.id AND u.last_used_at IS NOT NULL \
ORDER BY u.hour DESC LIMIT 1))";

impl Expression for LastUsed {
    type SqlType = Nullable<Timestamptz>;
}

impl QueryFragment<Pg> for LastUsed {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(LAST_USED_SQL);
        Ok(())
    }
}

impl AppearsOnTable<api_keys::table> for LastUsed {}
impl SelectableExpression<api_keys::table> for LastUsed {}

/// A key's row read with [`LastUsed`].
fn with_last_use((row, last_used_at): (ApiKeyRow, Option<DateTime<Utc>>)) -> ApiKeyRow {
    ApiKeyRow {
        last_used_at,
        ..row
    }
}

/// A row of `api_key_usage`.
#[derive(Queryable, Selectable)]
#[diesel(table_name = api_key_usage, check_for_backend(diesel::pg::Pg))]
struct UsageRow {
    hour: DateTime<Utc>,
    valid: i64,
    insufficient_scope: i64,
    rate_limited: i64,
    usage_exceeded: i64,
    expired: i64,
    revoked: i64,
}

impl UsageRow {
    fn into_domain(self) -> Result<UsageBucket, StoreError> {
        Ok(UsageBucket {
            start: self.hour,
            counts: UsageCounts {
                valid: count(self.valid)?,
                insufficient_scope: count(self.insufficient_scope)?,
                rate_limited: count(self.rate_limited)?,
                usage_exceeded: count(self.usage_exceeded)?,
                expired: count(self.expired)?,
                revoked: count(self.revoked)?,
            },
        })
    }
}

/// How a rotation's transaction ended when it did not commit.
enum RotateFailure {
    /// The old key is missing or already revoked: roll back, then find out which.
    Refused,
    /// The database failed.
    Db(DieselError),
}

impl From<DieselError> for RotateFailure {
    fn from(err: DieselError) -> Self {
        Self::Db(err)
    }
}

/// Revokes `id` if it is still active, returning it as revoked; `None` when it is missing or
/// already revoked. Concurrent callers serialise on the row lock; the losers re-check
/// `revoked_at IS NULL`, find it set, and update nothing.
async fn revoke_active(
    conn: &mut AsyncPgConnection,
    id: ApiKeyId,
    now: DateTime<Utc>,
) -> Result<Option<ApiKeyRow>, DieselError> {
    diesel::update(
        api_keys::table
            .find(id.as_uuid())
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(now))
    .returning((ApiKeyRow::as_returning(), LastUsed))
    .get_result(conn)
    .await
    .optional()
    .map(|row| row.map(with_last_use))
}

/// Why `id` could not be revoked: it is missing, or already revoked (`revoked_at` is never
/// cleared, so a key that exists but did not match `revoked_at IS NULL` is revoked).
async fn refusal(conn: &mut AsyncPgConnection, id: Uuid) -> RevokeApiKeyError {
    let exists = api_keys::table
        .find(id)
        .select(api_keys::id)
        .first::<Uuid>(conn)
        .await
        .optional();
    match exists {
        Ok(Some(_)) => RevokeApiKeyError::AlreadyRevoked,
        Ok(None) => RevokeApiKeyError::NotFound,
        Err(err) => classify(err).into(),
    }
}

/// API keys in Postgres, unique by `key_hash`.
///
/// Lookups of single keys by hash ([`ApiKeyRepository::find_by_hash`], a verification the
/// cache could not answer) are coalesced: one that finds a lane free runs at once; those
/// arriving while every lane is busy go out together as one `key_hash = ANY($1)` statement
/// (`coalesce.rs`). A quarter of the pool's connections are lanes, at least one.
#[derive(Clone)]
pub struct PgApiKeyRepository {
    pool: DbPool,
    lookups: Arc<Coalescer>,
}

impl std::fmt::Debug for PgApiKeyRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgApiKeyRepository")
            .field("pool", &self.pool)
            .field("lookups", &self.lookups)
            .finish()
    }
}

impl PgApiKeyRepository {
    /// A repository over `pool`.
    #[must_use]
    pub fn new(pool: DbPool) -> Self {
        let lanes = (pool.state().max_size / 4).max(1);
        let reader = pool.clone();
        let read: BatchRead = Arc::new(move |hashes: Vec<TokenHash>| {
            let pool = reader.clone();
            Box::pin(async move { read_rows_by_hashes(&pool, &hashes).await })
        });
        Self {
            lookups: Arc::new(Coalescer::new(lanes, pool.timeout(), read)),
            pool,
        }
    }

    /// Statements that looked up single keys by hash so far, and the lookups they answered:
    /// how far lookups were coalesced.
    #[must_use]
    pub fn lookup_batches(&self) -> (u64, u64) {
        self.lookups.counts()
    }
}

/// The keys whose hashes are among `hashes`, in one statement: `key_hash = ANY($1)` (what
/// diesel's `eq_any` renders on Postgres), whose text does not change with the number of
/// hashes, so it stays one prepared statement per connection; the unique index on `key_hash`
/// answers it.
async fn load_by_hashes(pool: &DbPool, hashes: &[TokenHash]) -> Result<Vec<ApiKeyRow>, StoreError> {
    if hashes.is_empty() {
        return Ok(Vec::new());
    }
    pool.deadline(async {
        let mut conn = pool.get().await?;
        let wanted: Vec<&[u8]> = hashes.iter().map(|h| h.as_bytes().as_slice()).collect();
        api_keys::table
            .filter(api_keys::key_hash.eq_any(wanted))
            .select(ApiKeyRow::as_select())
            .load(&mut conn)
            .await
            .map_err(classify)
    })
    .await
}

async fn read_by_hashes(pool: &DbPool, hashes: &[TokenHash]) -> Result<Vec<ApiKey>, StoreError> {
    load_by_hashes(pool, hashes)
        .await?
        .into_iter()
        .map(ApiKeyRow::into_domain)
        .collect()
}

/// The rows of `hashes`, each read back on its own: a row that is not a key fails the lookups
/// of its hash only (one whose hash is not 32 bytes matches no lookup).
async fn read_rows_by_hashes(
    pool: &DbPool,
    hashes: &[TokenHash],
) -> Result<Vec<ReadRow>, StoreError> {
    Ok(load_by_hashes(pool, hashes)
        .await?
        .into_iter()
        .filter_map(|row| {
            let hash: [u8; 32] = row.key_hash.as_slice().try_into().ok()?;
            Some((TokenHash::from_bytes(hash), row.into_domain()))
        })
        .collect())
}

#[async_trait]
impl ApiKeyRepository for PgApiKeyRepository {
    async fn create(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let row = ApiKeyRow::from_domain(key);
                conn.transaction::<_, DieselError, _>(async |conn| {
                    diesel::insert_into(api_keys::table)
                        .values(&row)
                        .execute(conn)
                        .await?;
                    append_in(conn, &[NewEvent::api_key_created(key)]).await
                })
                .await
                .map_err(classify)
            })
            .await
    }

    async fn find(&self, id: ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                api_keys::table
                    .find(id.as_uuid())
                    .select((ApiKeyRow::as_select(), LastUsed))
                    .first(&mut conn)
                    .await
                    .optional()
                    .map_err(classify)?
                    .map(|row| with_last_use(row).into_domain())
                    .transpose()
            })
            .await
    }

    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiKey>, StoreError> {
        self.lookups.find(*hash).await
    }

    async fn find_by_hashes(&self, hashes: &[TokenHash]) -> Result<Vec<ApiKey>, StoreError> {
        read_by_hashes(&self.pool, hashes).await
    }

    async fn list(
        &self,
        org: OrganizationId,
        include_revoked: bool,
        external_id: Option<&ExternalId>,
    ) -> Result<Vec<ApiKey>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let mut query = api_keys::table
                    .filter(api_keys::organization_id.eq(org.as_uuid()))
                    .order((api_keys::created_at.asc(), api_keys::id.asc()))
                    .select((ApiKeyRow::as_select(), LastUsed))
                    .into_boxed();
                if !include_revoked {
                    query = query.filter(api_keys::revoked_at.is_null());
                }
                if let Some(external_id) = external_id {
                    query = query.filter(api_keys::external_id.eq(external_id.as_str()));
                }
                query
                    .load(&mut conn)
                    .await
                    .map_err(classify)?
                    .into_iter()
                    .map(|row| with_last_use(row).into_domain())
                    .collect()
            })
            .await
    }

    async fn update(
        &self,
        id: ApiKeyId,
        changes: &ApiKeyChanges,
        now: DateTime<Utc>,
    ) -> Result<ApiKey, UpdateApiKeyError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                if changes.is_empty() {
                    return active_key(&mut conn, id, now).await;
                }
                let changeset = ApiKeyChangeset::from_domain(changes, now);
                // One statement changes every member, only while the key is active; the change
                // and its event commit together.
                let updated = conn
                    .transaction::<_, UpdateFailure, _>(async |conn| {
                        let row = diesel::update(
                            api_keys::table
                                .find(id.as_uuid())
                                .filter(api_keys::revoked_at.is_null())
                                .filter(
                                    api_keys::expires_at
                                        .is_null()
                                        .or(api_keys::expires_at.gt(now)),
                                ),
                        )
                        .set(&changeset)
                        .returning((ApiKeyRow::as_returning(), LastUsed))
                        .get_result(conn)
                        .await
                        .optional()?
                        .map(with_last_use)
                        .ok_or(UpdateFailure::Refused)?;
                        let key = row.into_domain().map_err(corrupt)?;
                        append_in(conn, &[NewEvent::api_key_updated(&key, changes, now)]).await?;
                        Ok(key)
                    })
                    .await;
                match updated {
                    Ok(key) => Ok(key),
                    Err(UpdateFailure::Refused) => match active_key(&mut conn, id, now).await {
                        // Active now: a change of its expiry raced this one; nothing changed.
                        Ok(_) => {
                            Err(StoreError::internal("the key changed during the update").into())
                        }
                        Err(refused) => Err(refused),
                    },
                    Err(UpdateFailure::Db(err)) => Err(classify(err).into()),
                }
            })
            .await
    }

    async fn revoke(&self, id: ApiKeyId, now: DateTime<Utc>) -> Result<ApiKey, RevokeApiKeyError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                // The revocation and its event in one transaction: committed means recorded.
                let revoked = conn
                    .transaction::<_, DieselError, _>(async |conn| {
                        let Some(row) = revoke_active(conn, id, now).await? else {
                            return Ok(None);
                        };
                        let key = row.into_domain().map_err(corrupt)?;
                        append_in(conn, &[NewEvent::api_key_revoked(&key, now)]).await?;
                        Ok(Some(key))
                    })
                    .await
                    .map_err(classify)?;
                match revoked {
                    Some(key) => Ok(key),
                    None => Err(refusal(&mut conn, id.as_uuid()).await),
                }
            })
            .await
    }

    async fn rotate(
        &self,
        old: ApiKeyId,
        new: &ApiKey,
        now: DateTime<Utc>,
    ) -> Result<ApiKey, RevokeApiKeyError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let rotated = conn
                    .transaction::<_, RotateFailure, _>(async |conn| {
                        let revoked = revoke_active(conn, old, now)
                            .await?
                            .ok_or(RotateFailure::Refused)?;
                        let revoked = revoked.into_domain().map_err(corrupt)?;
                        // The successor takes the members the old key has now, under its row
                        // lock: a change committed since `new` was made is carried over.
                        let new = new.succeeding(&revoked);
                        diesel::insert_into(api_keys::table)
                            .values(&ApiKeyRow::from_domain(&new))
                            .execute(conn)
                            .await?;
                        append_in(conn, &[NewEvent::api_key_rotated(&revoked, &new, now)]).await?;
                        Ok(revoked)
                    })
                    .await;
                match rotated {
                    Ok(key) => Ok(key),
                    Err(RotateFailure::Refused) => Err(refusal(&mut conn, old.as_uuid()).await),
                    Err(RotateFailure::Db(err)) => Err(classify(err).into()),
                }
            })
            .await
    }

    async fn spend_credit(
        &self,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> Result<CreditSpend, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let row: SpendRow = diesel::sql_query(SPEND_CREDIT_SQL)
                    .bind::<SqlUuid, _>(id.as_uuid())
                    .bind::<Timestamptz, _>(RefillPeriod::Day.period_start(now))
                    .bind::<Timestamptz, _>(RefillPeriod::Month.period_start(now))
                    .bind::<Timestamptz, _>(now)
                    .get_result(&mut conn)
                    .await
                    .map_err(classify)?;
                Ok(match (row.metered, row.remaining) {
                    (0, _) => CreditSpend::Unmetered,
                    (_, Some(remaining)) => CreditSpend::Spent {
                        remaining: count(remaining)?,
                    },
                    (_, None) => CreditSpend::Exhausted,
                })
            })
            .await
    }

    async fn lease(&self, id: ApiKeyId, request: LeaseRequest) -> Result<Lease, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let row: LeaseRow = diesel::sql_query(LEASE_SQL)
                    .bind::<SqlUuid, _>(id.as_uuid())
                    .bind::<Timestamptz, _>(request.window_start)
                    .bind::<Integer, _>(int4(request.limit))
                    .bind::<Integer, _>(int4(request.ask))
                    .bind::<Integer, _>(int4(request.give_back))
                    .bind::<Integer, _>(int4(request.window_seconds))
                    .get_result(&mut conn)
                    .await
                    .map_err(classify)?;
                Ok(Lease {
                    granted: u32::try_from(count(row.last_grant)?).unwrap_or(0),
                    taken: u32::try_from(count(row.granted)?).unwrap_or(u32::MAX),
                    window_start: row.window_start,
                })
            })
            .await
    }

    async fn record_usage(&self, usage: &[HourUsage]) -> Result<(), StoreError> {
        if usage.is_empty() {
            return Ok(());
        }
        let column = |f: fn(&UsageCounts) -> u64| -> Vec<i64> {
            usage.iter().map(|u| int8(f(&u.counts))).collect()
        };
        let ids: Vec<Uuid> = usage.iter().map(|u| u.key.as_uuid()).collect();
        let hours: Vec<DateTime<Utc>> = usage.iter().map(|u| u.hour).collect();
        let last_used: Vec<Option<DateTime<Utc>>> = usage.iter().map(|u| u.last_used).collect();
        let (valid, scope, limited) = (
            column(|c| c.valid),
            column(|c| c.insufficient_scope),
            column(|c| c.rate_limited),
        );
        let (exceeded, expired, revoked) = (
            column(|c| c.usage_exceeded),
            column(|c| c.expired),
            column(|c| c.revoked),
        );
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                diesel::sql_query(RECORD_USAGE_SQL)
                    .bind::<Array<SqlUuid>, _>(&ids)
                    .bind::<Array<Timestamptz>, _>(&hours)
                    .bind::<Array<BigInt>, _>(&valid)
                    .bind::<Array<BigInt>, _>(&scope)
                    .bind::<Array<BigInt>, _>(&limited)
                    .bind::<Array<BigInt>, _>(&exceeded)
                    .bind::<Array<BigInt>, _>(&expired)
                    .bind::<Array<BigInt>, _>(&revoked)
                    .bind::<Array<Nullable<Timestamptz>>, _>(&last_used)
                    .execute(&mut conn)
                    .await
                    .map_err(classify)?;
                Ok(())
            })
            .await
    }

    async fn usage(
        &self,
        id: ApiKeyId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                api_key_usage::table
                    .filter(api_key_usage::key_id.eq(id.as_uuid()))
                    .filter(api_key_usage::hour.ge(from))
                    .filter(api_key_usage::hour.lt(to))
                    .order(api_key_usage::hour.asc())
                    .select(UsageRow::as_select())
                    .load(&mut conn)
                    .await
                    .map_err(classify)?
                    .into_iter()
                    .map(UsageRow::into_domain)
                    // An hour holding only a last use (a request the key authenticated)
                    // counted no verification.
                    .filter(|bucket| bucket.as_ref().map_or(true, |b| b.counts.total() > 0))
                    .collect()
            })
            .await
    }
}
