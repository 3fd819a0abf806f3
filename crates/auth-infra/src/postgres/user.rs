//! `PgUserRepository`.

use async_trait::async_trait;
use auth_core::model::{DisplayName, Email, EventAction, NewEvent, PasswordHash, User, UserId};
use auth_core::ports::{CreateUserError, PasswordUpdate, StoreError, UserRepository};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection as _, RunQueryDsl};
use uuid::Uuid;

use super::error::classify;
use super::events::append_in;
use super::pool::DbPool;
use super::schema::users;

/// A row of `users`.
// No `Debug`: the row holds a password hash or a secret's hash.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub(super) struct UserRow {
    id: Uuid,
    email: String,
    email_normalized: String,
    display_name: Option<String>,
    password_hash: String,
    is_admin: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    email_verified_at: Option<DateTime<Utc>>,
    disabled_at: Option<DateTime<Utc>>,
    last_login_at: Option<DateTime<Utc>>,
}

impl UserRow {
    fn from_domain(user: &User) -> Self {
        Self {
            id: user.id.as_uuid(),
            email: user.email.as_str().to_owned(),
            email_normalized: user.email.normalized().to_owned(),
            display_name: user.display_name.as_ref().map(|d| d.as_str().to_owned()),
            password_hash: user.password_hash.as_str().to_owned(),
            is_admin: user.is_admin,
            created_at: user.created_at,
            updated_at: user.updated_at,
            email_verified_at: user.email_verified_at,
            disabled_at: user.disabled_at,
            last_login_at: user.last_login_at,
        }
    }

    pub(super) fn into_domain(self) -> Result<User, StoreError> {
        let email = Email::from_stored(&self.email).map_err(StoreError::internal)?;
        let display_name = self
            .display_name
            .as_deref()
            .map(DisplayName::from_stored)
            .transpose()
            .map_err(StoreError::internal)?;
        Ok(User {
            id: UserId::from_uuid(self.id),
            email,
            display_name,
            password_hash: PasswordHash::new(self.password_hash),
            is_admin: self.is_admin,
            created_at: self.created_at,
            updated_at: self.updated_at,
            email_verified_at: self.email_verified_at,
            disabled_at: self.disabled_at,
            last_login_at: self.last_login_at,
        })
    }
}

/// Users in Postgres, unique by `email_normalized`.
#[derive(Clone)]
pub struct PgUserRepository {
    pool: DbPool,
}

impl std::fmt::Debug for PgUserRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgUserRepository")
            .field("pool", &self.pool)
            .finish()
    }
}

impl PgUserRepository {
    /// A repository over `pool`.
    #[must_use]
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl UserRepository for PgUserRepository {
    async fn create(&self, user: &User) -> Result<(), CreateUserError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let inserted = conn
                    .transaction::<_, DieselError, _>(async |conn| {
                        diesel::insert_into(users::table)
                            .values(UserRow::from_domain(user))
                            .execute(conn)
                            .await?;
                        let event = NewEvent::administered(
                            EventAction::UserRegistered,
                            user.id,
                            user.created_at,
                        );
                        append_in(conn, &[event]).await
                    })
                    .await;
                match inserted {
                    Ok(()) => Ok(()),
                    Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
                        if info.constraint_name() == Some("users_email_normalized_key") =>
                    {
                        Err(CreateUserError::EmailTaken)
                    }
                    Err(other) => Err(classify(other).into()),
                }
            })
            .await
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                users::table
                    .filter(users::email_normalized.eq(email.normalized()))
                    .select(UserRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()
                    .map_err(classify)?
                    .map(UserRow::into_domain)
                    .transpose()
            })
            .await
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                users::table
                    .find(id.as_uuid())
                    .select(UserRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()
                    .map_err(classify)?
                    .map(UserRow::into_domain)
                    .transpose()
            })
            .await
    }

    async fn update_password(
        &self,
        id: UserId,
        hash: &PasswordHash,
        why: PasswordUpdate,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                conn.transaction::<_, DieselError, _>(async |conn| {
                    let updated = diesel::update(users::table.find(id.as_uuid()))
                        .set((
                            users::password_hash.eq(hash.as_str()),
                            users::updated_at.eq(now),
                        ))
                        .execute(conn)
                        .await?;
                    if updated == 1 && why == PasswordUpdate::Change {
                        append_in(conn, &[NewEvent::password_changed(id, now)]).await?;
                    }
                    Ok(updated == 1)
                })
                .await
                .map_err(classify)
            })
            .await
    }

    async fn update_profile(
        &self,
        id: UserId,
        display_name: Option<&DisplayName>,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                diesel::update(users::table.find(id.as_uuid()))
                    .set((
                        users::display_name.eq(display_name.map(DisplayName::as_str)),
                        users::updated_at.eq(now),
                    ))
                    .returning(UserRow::as_returning())
                    .get_result(&mut conn)
                    .await
                    .optional()
                    .map_err(classify)?
                    .map(UserRow::into_domain)
                    .transpose()
            })
            .await
    }

    async fn mark_email_verified(
        &self,
        id: UserId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                conn.transaction::<_, DieselError, _>(async |conn| {
                    let exists =
                        diesel::select(diesel::dsl::exists(users::table.find(id.as_uuid())))
                            .get_result::<bool>(conn)
                            .await?;
                    if mark_verified_in(conn, id, now).await? {
                        append_in(conn, &[NewEvent::email_verified(id, now)]).await?;
                    }
                    Ok(exists)
                })
                .await
                .map_err(classify)
            })
            .await
    }
}

/// Sets `id`'s address verified at `now` unless it already is, inside the caller's
/// transaction; whether it changed.
pub(super) async fn mark_verified_in(
    conn: &mut diesel_async::AsyncPgConnection,
    id: UserId,
    now: DateTime<Utc>,
) -> Result<bool, DieselError> {
    let updated = diesel::update(
        users::table
            .find(id.as_uuid())
            .filter(users::email_verified_at.is_null()),
    )
    .set((
        users::email_verified_at.eq(Some(now)),
        users::updated_at.eq(now),
    ))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}
