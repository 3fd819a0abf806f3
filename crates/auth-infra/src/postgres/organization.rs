//! `PgOrganizationRepository`: the last-owner rule holds under concurrency because a removal
//! first locks the organization's owner rows, so removals in one organization queue up.

use async_trait::async_trait;
use auth_core::model::{
    Email, Member, Membership, NewEvent, Organization, OrganizationId, OrganizationName, Role,
    UserId,
};
use auth_core::ports::{AddMemberError, OrganizationRepository, RemoveMemberError, StoreError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection as _, RunQueryDsl};
use uuid::Uuid;

use super::error::classify;
use super::events::{append_in, corrupt};
use super::pool::DbPool;
use super::schema::{memberships, organizations, users};

/// A row of `organizations`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = organizations, check_for_backend(diesel::pg::Pg))]
struct OrganizationRow {
    id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
}

impl OrganizationRow {
    fn from_domain(org: &Organization) -> Self {
        Self {
            id: org.id.as_uuid(),
            name: org.name.as_str().to_owned(),
            created_at: org.created_at,
        }
    }

    fn into_domain(self) -> Result<Organization, StoreError> {
        Ok(Organization {
            id: OrganizationId::from_uuid(self.id),
            name: OrganizationName::from_stored(&self.name).map_err(StoreError::internal)?,
            created_at: self.created_at,
        })
    }
}

/// A row of `memberships`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = memberships, check_for_backend(diesel::pg::Pg))]
struct MembershipRow {
    organization_id: Uuid,
    user_id: Uuid,
    role: String,
    created_at: DateTime<Utc>,
}

impl MembershipRow {
    fn from_domain(m: &Membership) -> Self {
        Self {
            organization_id: m.organization_id.as_uuid(),
            user_id: m.user_id.as_uuid(),
            role: m.role.as_str().to_owned(),
            created_at: m.created_at,
        }
    }

    fn into_domain(self) -> Result<Membership, StoreError> {
        Ok(Membership {
            organization_id: OrganizationId::from_uuid(self.organization_id),
            user_id: UserId::from_uuid(self.user_id),
            role: parse_role(&self.role)?,
            created_at: self.created_at,
        })
    }
}

fn parse_role(stored: &str) -> Result<Role, StoreError> {
    stored.parse().map_err(StoreError::internal)
}

/// What `DELETE … RETURNING role` answers.
#[derive(Debug, QueryableByName)]
struct RemovedRow {
    #[diesel(sql_type = Text)]
    role: String,
}

/// Deletes the membership unless it is an owner's and no other owner remains. The caller
/// holds the locks on the organization's owner rows, so the count cannot change underneath.
const REMOVE_SQL: &str = "\
DELETE FROM memberships
WHERE organization_id = $1 AND user_id = $2
  AND (role <> 'owner'
       OR (SELECT count(*) FROM memberships WHERE organization_id = $1 AND role = 'owner') > 1)
RETURNING role";

/// How a removal ended inside its transaction.
enum Removal {
    Removed(Role),
    NotMember,
    LastOwner,
}

/// Organizations and memberships in Postgres; members' emails come from `users`.
#[derive(Clone)]
pub struct PgOrganizationRepository {
    pool: DbPool,
}

impl std::fmt::Debug for PgOrganizationRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOrganizationRepository")
            .field("pool", &self.pool)
            .finish()
    }
}

impl PgOrganizationRepository {
    /// A repository over `pool`.
    #[must_use]
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl OrganizationRepository for PgOrganizationRepository {
    async fn create(&self, org: &Organization, owner: UserId) -> Result<(), StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let org_row = OrganizationRow::from_domain(org);
                let owner_row = MembershipRow::from_domain(&Membership {
                    organization_id: org.id,
                    user_id: owner,
                    role: Role::Owner,
                    created_at: org.created_at,
                });
                conn.transaction::<_, DieselError, _>(async |conn| {
                    diesel::insert_into(organizations::table)
                        .values(&org_row)
                        .execute(conn)
                        .await?;
                    diesel::insert_into(memberships::table)
                        .values(&owner_row)
                        .execute(conn)
                        .await?;
                    append_in(conn, &[NewEvent::organization_created(org, owner)]).await
                })
                .await
                .map_err(classify)
            })
            .await
    }

    async fn list_all(
        &self,
        after: Option<OrganizationId>,
        limit: usize,
    ) -> Result<Vec<Organization>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let mut query = organizations::table
                    .select(OrganizationRow::as_select())
                    .order(organizations::id)
                    .limit(limit)
                    .into_boxed();
                if let Some(after) = after {
                    query = query.filter(organizations::id.gt(after.as_uuid()));
                }
                query
                    .load(&mut conn)
                    .await
                    .map_err(classify)?
                    .into_iter()
                    .map(OrganizationRow::into_domain)
                    .collect()
            })
            .await
    }

    async fn find(&self, id: OrganizationId) -> Result<Option<Organization>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                organizations::table
                    .find(id.as_uuid())
                    .select(OrganizationRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()
                    .map_err(classify)?
                    .map(OrganizationRow::into_domain)
                    .transpose()
            })
            .await
    }

    async fn list_for_user(&self, user: UserId) -> Result<Vec<(Organization, Role)>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let rows: Vec<(OrganizationRow, String)> = memberships::table
                    .inner_join(organizations::table)
                    .filter(memberships::user_id.eq(user.as_uuid()))
                    .order((organizations::created_at.asc(), organizations::id.asc()))
                    .select((OrganizationRow::as_select(), memberships::role))
                    .load(&mut conn)
                    .await
                    .map_err(classify)?;
                rows.into_iter()
                    .map(|(org, role)| Ok((org.into_domain()?, parse_role(&role)?)))
                    .collect()
            })
            .await
    }

    async fn role_of(&self, org: OrganizationId, user: UserId) -> Result<Option<Role>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                memberships::table
                    .find((org.as_uuid(), user.as_uuid()))
                    .select(memberships::role)
                    .first::<String>(&mut conn)
                    .await
                    .optional()
                    .map_err(classify)?
                    .as_deref()
                    .map(parse_role)
                    .transpose()
            })
            .await
    }

    async fn add_member(&self, membership: &Membership) -> Result<(), AddMemberError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let row = MembershipRow::from_domain(membership);
                let inserted = conn
                    .transaction::<_, DieselError, _>(async |conn| {
                        diesel::insert_into(memberships::table)
                            .values(&row)
                            .execute(conn)
                            .await?;
                        append_in(conn, &[NewEvent::member_added(membership)]).await
                    })
                    .await;
                match inserted {
                    Ok(_) => Ok(()),
                    Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
                        if info.constraint_name() == Some("memberships_pkey") =>
                    {
                        Err(AddMemberError::AlreadyMember)
                    }
                    Err(DieselError::DatabaseError(
                        DatabaseErrorKind::ForeignKeyViolation,
                        info,
                    )) if matches!(
                        info.constraint_name(),
                        Some("memberships_organization_id_fkey" | "memberships_user_id_fkey")
                    ) =>
                    {
                        Err(AddMemberError::NotFound)
                    }
                    Err(other) => Err(classify(other).into()),
                }
            })
            .await
    }

    async fn members(&self, org: OrganizationId) -> Result<Vec<Member>, StoreError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let rows: Vec<(MembershipRow, String)> = memberships::table
                    .inner_join(users::table)
                    .filter(memberships::organization_id.eq(org.as_uuid()))
                    .order((memberships::created_at.asc(), memberships::user_id.asc()))
                    .select((MembershipRow::as_select(), users::email))
                    .load(&mut conn)
                    .await
                    .map_err(classify)?;
                rows.into_iter()
                    .map(|(membership, email)| {
                        Ok(Member {
                            membership: membership.into_domain()?,
                            email: Email::from_stored(&email).map_err(StoreError::internal)?,
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn remove_member(
        &self,
        org: OrganizationId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Role, RemoveMemberError> {
        self.pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let (org_id, user_id) = (org, user);
                let (org, user) = (org.as_uuid(), user.as_uuid());
                let removal = conn
                    .transaction::<_, DieselError, _>(async |conn| {
                        // Lock the owners and the target together, in one order (by user id), so
                        // that concurrent removals in this organization queue up instead of
                        // deadlocking. A row deleted by the transaction we waited for is skipped.
                        let locked: Vec<Uuid> = memberships::table
                            .filter(memberships::organization_id.eq(org))
                            .filter(
                                memberships::role
                                    .eq(Role::Owner.as_str())
                                    .or(memberships::user_id.eq(user)),
                            )
                            .order(memberships::user_id.asc())
                            .select(memberships::user_id)
                            .for_update()
                            .load(conn)
                            .await?;
                        if !locked.contains(&user) {
                            return Ok(Removal::NotMember);
                        }
                        let removed: Option<RemovedRow> = diesel::sql_query(REMOVE_SQL)
                            .bind::<SqlUuid, _>(org)
                            .bind::<SqlUuid, _>(user)
                            .get_result(conn)
                            .await
                            .optional()?;
                        // The target's row is locked by us, so only the owner rule can have refused.
                        let Some(removed) = removed else {
                            return Ok(Removal::LastOwner);
                        };
                        let role = parse_role(&removed.role).map_err(corrupt)?;
                        append_in(
                            conn,
                            &[NewEvent::member_removed(org_id, user_id, role, now)],
                        )
                        .await?;
                        Ok(Removal::Removed(role))
                    })
                    .await
                    .map_err(classify)?;
                match removal {
                    Removal::Removed(role) => Ok(role),
                    Removal::NotMember => Err(RemoveMemberError::NotFound),
                    Removal::LastOwner => Err(RemoveMemberError::LastOwner),
                }
            })
            .await
    }
}
