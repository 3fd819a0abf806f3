//! `PgApiKeyRepository`: revocation is one conditional `UPDATE`, rotation that `UPDATE` and
//! the new key's `INSERT` in one transaction, so concurrent callers get exactly one winner.

use async_trait::async_trait;
use auth_core::model::{
    ApiKey, ApiKeyChanges, ApiKeyId, ApiKeyMeta, ApiKeyName, ApiKeyStatus, ExternalId, NewEvent,
    OrganizationId, Scope, Scopes, TokenHash,
};
use auth_core::ports::{ApiKeyRepository, RevokeApiKeyError, StoreError, UpdateApiKeyError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{Array, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use std::sync::Arc;

use super::coalesce::{BatchRead, Coalescer, ReadRow};
use super::error::classify;
use super::events::{append_in, corrupt};
use super::pool::DbPool;
use super::schema::api_keys;

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
        }
    }

    fn into_domain(self) -> Result<ApiKey, StoreError> {
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
}

impl ApiKeyChangeset {
    fn from_domain(changes: &ApiKeyChanges) -> Self {
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
        .select(ApiKeyRow::as_select())
        .first(conn)
        .await
        .optional()
        .map_err(classify)?
        .ok_or(UpdateApiKeyError::NotFound)?
        .into_domain()?;
    match key.status(now) {
        ApiKeyStatus::Active => Ok(key),
        ApiKeyStatus::Revoked => Err(UpdateApiKeyError::AlreadyRevoked),
        ApiKeyStatus::Expired => Err(UpdateApiKeyError::Expired),
    }
}

/// Raises `last_used_at` to the latest given time per key (`GREATEST` ignores NULL), in one
/// statement for the whole batch. The rows are locked in id order first, so concurrent
/// batches from several instances queue up instead of deadlocking.
const RECORD_USAGE_SQL: &str = "\
WITH given AS (
    SELECT id, max(at) AS at FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at) GROUP BY id
), locked AS (
    SELECT k.id, given.at FROM api_keys AS k JOIN given ON given.id = k.id
    ORDER BY k.id FOR UPDATE OF k
)
UPDATE api_keys AS k SET last_used_at = GREATEST(k.last_used_at, locked.at)
FROM locked WHERE k.id = locked.id";

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
    .returning(ApiKeyRow::as_returning())
    .get_result(conn)
    .await
    .optional()
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
                    .select(ApiKeyRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()
                    .map_err(classify)?
                    .map(ApiKeyRow::into_domain)
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
                    .select(ApiKeyRow::as_select())
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
                    .map(ApiKeyRow::into_domain)
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
                let changeset = ApiKeyChangeset::from_domain(changes);
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
                        .returning(ApiKeyRow::as_returning())
                        .get_result(conn)
                        .await
                        .optional()?
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

    async fn record_usage(&self, usage: &[(ApiKeyId, DateTime<Utc>)]) -> Result<(), StoreError> {
        self.pool
            .deadline(async {
                if usage.is_empty() {
                    return Ok(());
                }
                let (ids, times): (Vec<Uuid>, Vec<DateTime<Utc>>) =
                    usage.iter().map(|(id, at)| (id.as_uuid(), *at)).unzip();
                let mut conn = self.pool.get().await?;
                diesel::sql_query(RECORD_USAGE_SQL)
                    .bind::<Array<SqlUuid>, _>(ids)
                    .bind::<Array<Timestamptz>, _>(times)
                    .execute(&mut conn)
                    .await
                    .map_err(classify)?;
                Ok(())
            })
            .await
    }
}
