//! `PgUserAdministration`: administrators' changes to accounts. "The last enabled
//! administrator" is decided with every enabled administrator's row locked (`FOR UPDATE`), so
//! concurrent demotions queue and the later one sees the earlier.

use async_trait::async_trait;
use auth_core::model::{Email, EventAction, NewEvent, UserId};
use auth_core::ports::{AdminChange, StoreError, UserAdministration, UserListing, UserQuery};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::error::classify;
use super::events::append_in;
use super::pool::DbPool;
use super::schema::{login_attempts, mfa_totp, users};
use super::session::end_all_in;
use super::user::UserRow;

/// Account administration in Postgres.
#[derive(Clone)]
pub struct PgUserAdministration {
    pool: DbPool,
}

impl std::fmt::Debug for PgUserAdministration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgUserAdministration")
            .field("pool", &self.pool)
            .finish()
    }
}

impl PgUserAdministration {
    /// Over `pool`.
    #[must_use]
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }

    async fn change(
        &self,
        user: UserId,
        admin_flag: bool,
        on: bool,
        now: DateTime<Utc>,
    ) -> Result<AdminChange, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                conn.transaction::<_, DieselError, _>(async |conn| {
                    change_in(conn, user, admin_flag, on, now).await
                })
                .await
                .map_err(classify)?
                .map_or(Ok(AdminChange::NotFound), |change| change)
            })
            .await
    }
}

/// The change inside the caller's transaction; `None` for no such user.
async fn change_in(
    conn: &mut AsyncPgConnection,
    user: UserId,
    admin_flag: bool,
    on: bool,
    now: DateTime<Utc>,
) -> Result<Option<Result<AdminChange, StoreError>>, DieselError> {
    let enabled_admins: Vec<Uuid> = users::table
        .filter(users::is_admin.eq(true))
        .filter(users::disabled_at.is_null())
        .order(users::id)
        .select(users::id)
        .for_update()
        .load(conn)
        .await?;
    let Some(row) = users::table
        .find(user.as_uuid())
        .select(UserRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    let current = match row.into_domain() {
        Ok(current) => current,
        Err(err) => return Ok(Some(Err(err))),
    };
    let is_on = if admin_flag {
        current.is_admin
    } else {
        current.disabled_at.is_some()
    };
    if is_on == on {
        return Ok(Some(Ok(AdminChange::Done {
            user: current,
            ended: Vec::new(),
        })));
    }
    let takes_an_admin = current.is_admin
        && current.disabled_at.is_none()
        && ((admin_flag && !on) || (!admin_flag && on));
    if takes_an_admin && enabled_admins.len() <= 1 {
        return Ok(Some(Ok(AdminChange::LastAdministrator)));
    }
    let updated: UserRow = if admin_flag {
        diesel::update(users::table.find(user.as_uuid()))
            .set((users::is_admin.eq(on), users::updated_at.eq(now)))
            .returning(UserRow::as_returning())
            .get_result(conn)
            .await?
    } else {
        diesel::update(users::table.find(user.as_uuid()))
            .set((
                users::disabled_at.eq(on.then_some(now)),
                users::updated_at.eq(now),
            ))
            .returning(UserRow::as_returning())
            .get_result(conn)
            .await?
    };
    let ended = if !admin_flag && on {
        end_all_in(conn, user, None, now).await?
    } else {
        Vec::new()
    };
    let action = match (admin_flag, on) {
        (false, true) => EventAction::UserDisabled,
        (false, false) => EventAction::UserEnabled,
        (true, true) => EventAction::AdminGranted,
        (true, false) => EventAction::AdminRevoked,
    };
    append_in(conn, &[NewEvent::administered(action, user, now)]).await?;
    Ok(Some(
        updated
            .into_domain()
            .map(|user| AdminChange::Done { user, ended }),
    ))
}

#[async_trait]
impl UserAdministration for PgUserAdministration {
    async fn list(&self, query: &UserQuery) -> Result<Vec<UserListing>, StoreError> {
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let mut select = users::table
                    .left_join(
                        mfa_totp::table.on(mfa_totp::user_id
                            .eq(users::id)
                            .and(mfa_totp::enabled_at.is_not_null())),
                    )
                    .select((UserRow::as_select(), mfa_totp::user_id.nullable()))
                    .order(users::id)
                    .limit(limit)
                    .into_boxed();
                if let Some(after) = query.after {
                    select = select.filter(users::id.gt(after.as_uuid()));
                }
                if let Some(part) = &query.email {
                    // `LIKE` wildcards in the search text match themselves.
                    let escaped = part
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_");
                    select = select.filter(users::email_normalized.like(format!("%{escaped}%")));
                }
                let rows: Vec<(UserRow, Option<Uuid>)> =
                    select.load(&mut conn).await.map_err(classify)?;
                rows.into_iter()
                    .map(|(row, mfa)| {
                        row.into_domain().map(|user| UserListing {
                            user,
                            mfa_enabled: mfa.is_some(),
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn set_admin(
        &self,
        user: UserId,
        is_admin: bool,
        now: DateTime<Utc>,
    ) -> Result<AdminChange, StoreError> {
        self.change(user, true, is_admin, now).await
    }

    async fn set_disabled(
        &self,
        user: UserId,
        disabled: bool,
        now: DateTime<Utc>,
    ) -> Result<AdminChange, StoreError> {
        self.change(user, false, disabled, now).await
    }

    async fn unlock(&self, user: UserId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                conn.transaction::<_, DieselError, _>(async |conn| {
                    let email: Option<String> = users::table
                        .find(user.as_uuid())
                        .select(users::email)
                        .for_share()
                        .first(conn)
                        .await
                        .optional()?;
                    let Some(email) = email.and_then(|e| Email::from_stored(&e).ok()) else {
                        return Ok(false);
                    };
                    diesel::delete(
                        login_attempts::table.find(email.attempt_key().as_bytes().as_slice()),
                    )
                    .execute(conn)
                    .await?;
                    append_in(
                        conn,
                        &[NewEvent::administered(EventAction::UserUnlocked, user, now)],
                    )
                    .await?;
                    Ok(true)
                })
                .await
                .map_err(classify)
            })
            .await
    }

    async fn record_login(&self, user: UserId, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                diesel::update(users::table.find(user.as_uuid()))
                    .set(users::last_login_at.eq(Some(now)))
                    .execute(&mut conn)
                    .await
                    .map_err(classify)?;
                Ok(())
            })
            .await
    }
}
