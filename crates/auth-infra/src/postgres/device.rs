//! `PgDeviceRepository`: ids are unique by primary key (collation "C", so byte-exact);
//! rotation and revocation are each one conditional `UPDATE`, so concurrent callers get
//! exactly one winner.

use async_trait::async_trait;
use auth_core::model::{
    Device, DeviceId, DeviceMetadata, DeviceName, NewEvent, OrganizationId, TokenHash,
};
use auth_core::ports::{ChangeDeviceError, DeviceRepository, RegisterDeviceError, StoreError};
use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Array, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::error::classify;
use super::events::{append_in, corrupt};
use super::pool::DbPool;
use super::schema::devices;

/// A row of `devices`.
// No `Debug`: the row holds a password hash or a secret's hash.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = devices, check_for_backend(diesel::pg::Pg))]
struct DeviceRow {
    device_id: String,
    organization_id: Uuid,
    name: String,
    metadata: serde_json::Value,
    secret_hash: Vec<u8>,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    last_authenticated_at: Option<DateTime<Utc>>,
    tokens_not_before: Option<DateTime<Utc>>,
}

impl DeviceRow {
    fn from_domain(device: &Device) -> Self {
        Self {
            device_id: device.id.as_str().to_owned(),
            organization_id: device.organization_id.as_uuid(),
            name: device.name.as_str().to_owned(),
            metadata: device.metadata.to_value(),
            secret_hash: device.secret_hash.as_bytes().to_vec(),
            created_at: device.created_at,
            revoked_at: device.revoked_at,
            last_authenticated_at: device.last_authenticated_at,
            tokens_not_before: device.tokens_not_before,
        }
    }

    /// The domain device; a stored value the domain refuses is an internal error.
    fn into_domain(self) -> Result<Device, StoreError> {
        let secret_hash: [u8; 32] = self
            .secret_hash
            .as_slice()
            .try_into()
            .map_err(StoreError::internal)?;
        Ok(Device {
            id: DeviceId::from_stored(&self.device_id).map_err(StoreError::internal)?,
            organization_id: OrganizationId::from_uuid(self.organization_id),
            name: DeviceName::from_stored(&self.name).map_err(StoreError::internal)?,
            metadata: DeviceMetadata::from_stored(self.metadata).map_err(StoreError::internal)?,
            secret_hash: TokenHash::from_bytes(secret_hash),
            created_at: self.created_at,
            revoked_at: self.revoked_at,
            last_authenticated_at: self.last_authenticated_at,
            tokens_not_before: self.tokens_not_before,
        })
    }
}

/// Raises `last_authenticated_at` to the latest given time per device (`GREATEST` ignores
/// NULL), in one statement for the whole batch. The rows are locked in id order first, so
/// concurrent batches from several instances queue up instead of deadlocking.
const RECORD_AUTHENTICATIONS_SQL: &str = "\
WITH given AS (
    SELECT device_id, max(at) AS at
    FROM unnest($1::text[], $2::timestamptz[]) AS u(device_id, at) GROUP BY device_id
), locked AS (
    SELECT d.device_id, given.at FROM devices AS d JOIN given ON given.device_id = d.device_id
    ORDER BY d.device_id FOR UPDATE OF d
)
UPDATE devices AS d SET last_authenticated_at = GREATEST(d.last_authenticated_at, locked.at)
FROM locked WHERE d.device_id = locked.device_id";

/// Why `id` could not be changed: it is missing, or already revoked (`revoked_at` is never
/// cleared, so a device that exists but did not match `revoked_at IS NULL` is revoked).
async fn refusal(conn: &mut AsyncPgConnection, id: &DeviceId) -> ChangeDeviceError {
    let exists = devices::table
        .find(id.as_str())
        .select(devices::device_id)
        .first::<String>(conn)
        .await
        .optional();
    match exists {
        Ok(Some(_)) => ChangeDeviceError::AlreadyRevoked,
        Ok(None) => ChangeDeviceError::NotFound,
        Err(err) => classify(err).into(),
    }
}

/// Devices in Postgres, unique by `device_id`.
#[derive(Clone)]
pub struct PgDeviceRepository {
    pool: DbPool,
}

impl std::fmt::Debug for PgDeviceRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDeviceRepository")
            .field("pool", &self.pool)
            .finish()
    }
}

impl PgDeviceRepository {
    /// A repository over `pool`.
    #[must_use]
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl DeviceRepository for PgDeviceRepository {
    async fn register(&self, device: &Device) -> Result<(), RegisterDeviceError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                // Recorded with the insert: an instance may hold "no such device" in cache.
                let inserted = conn
                    .transaction::<_, DieselError, _>(async |conn| {
                        diesel::insert_into(devices::table)
                            .values(DeviceRow::from_domain(device))
                            .execute(conn)
                            .await?;
                        append_in(
                            conn,
                            &[NewEvent::device_registered(device, device.created_at)],
                        )
                        .await
                    })
                    .await;
                match inserted {
                    Ok(_) => Ok(()),
                    Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
                        if info.constraint_name() == Some("devices_pkey") =>
                    {
                        Err(RegisterDeviceError::Exists)
                    }
                    Err(other) => Err(classify(other).into()),
                }
            })
            .await
    }

    async fn find(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                devices::table
                    .find(id.as_str())
                    .select(DeviceRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()
                    .map_err(classify)?
                    .map(DeviceRow::into_domain)
                    .transpose()
            })
            .await
    }

    async fn list(&self, org: OrganizationId) -> Result<Vec<Device>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                devices::table
                    .filter(devices::organization_id.eq(org.as_uuid()))
                    .order((devices::created_at.asc(), devices::device_id.asc()))
                    .select(DeviceRow::as_select())
                    .load(&mut conn)
                    .await
                    .map_err(classify)?
                    .into_iter()
                    .map(DeviceRow::into_domain)
                    .collect()
            })
            .await
    }

    async fn rotate_secret(
        &self,
        id: &DeviceId,
        new_hash: &TokenHash,
        tokens_not_before: DateTime<Utc>,
    ) -> Result<Device, ChangeDeviceError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                // A concurrent revocation holds the row lock; once it commits, the re-check of
                // `revoked_at IS NULL` fails and nothing is replaced.
                let rotated = conn
                    .transaction::<_, DieselError, _>(async |conn| {
                        let rotated = diesel::update(
                            devices::table
                                .find(id.as_str())
                                .filter(devices::revoked_at.is_null()),
                        )
                        .set((
                            devices::secret_hash.eq(new_hash.as_bytes().as_slice()),
                            // The later of stored and given (GREATEST ignores NULL): instances
                            // whose clocks differ slightly never move it back.
                            devices::tokens_not_before.eq(sql::<Nullable<Timestamptz>>(
                                "GREATEST(tokens_not_before, ",
                            )
                            .bind::<Timestamptz, _>(tokens_not_before)
                            .sql(")")),
                        ))
                        .returning(DeviceRow::as_returning())
                        .get_result(conn)
                        .await
                        .optional()?;
                        let Some(row) = rotated else {
                            return Ok(None);
                        };
                        let device = row.into_domain().map_err(corrupt)?;
                        append_in(
                            conn,
                            &[NewEvent::device_secret_rotated(
                                &device,
                                tokens_not_before,
                                tokens_not_before,
                            )],
                        )
                        .await?;
                        Ok(Some(device))
                    })
                    .await
                    .map_err(classify)?;
                match rotated {
                    Some(device) => Ok(device),
                    None => Err(refusal(&mut conn, id).await),
                }
            })
            .await
    }

    async fn revoke(&self, id: &DeviceId, now: DateTime<Utc>) -> Result<Device, ChangeDeviceError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                // Concurrent revocations serialise on the row lock; the losers re-check
                // `revoked_at IS NULL`, find it set, and update nothing.
                let revoked = conn
                    .transaction::<_, DieselError, _>(async |conn| {
                        let revoked = diesel::update(
                            devices::table
                                .find(id.as_str())
                                .filter(devices::revoked_at.is_null()),
                        )
                        .set(devices::revoked_at.eq(now))
                        .returning(DeviceRow::as_returning())
                        .get_result(conn)
                        .await
                        .optional()?;
                        let Some(row) = revoked else {
                            return Ok(None);
                        };
                        let device = row.into_domain().map_err(corrupt)?;
                        append_in(conn, &[NewEvent::device_revoked(&device, now)]).await?;
                        Ok(Some(device))
                    })
                    .await
                    .map_err(classify)?;
                match revoked {
                    Some(device) => Ok(device),
                    None => Err(refusal(&mut conn, id).await),
                }
            })
            .await
    }

    async fn record_authentications(
        &self,
        seen: &[(DeviceId, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        self.pool
            .deadline(async {
                if seen.is_empty() {
                    return Ok(());
                }
                let (ids, times): (Vec<String>, Vec<DateTime<Utc>>) = seen
                    .iter()
                    .map(|(id, at)| (id.as_str().to_owned(), *at))
                    .unzip();
                let mut conn = self.pool.get().await?;
                diesel::sql_query(RECORD_AUTHENTICATIONS_SQL)
                    .bind::<Array<Text>, _>(ids)
                    .bind::<Array<Timestamptz>, _>(times)
                    .execute(&mut conn)
                    .await
                    .map_err(classify)?;
                Ok(())
            })
            .await
    }
}
