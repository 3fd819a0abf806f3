//! `PgAccountRemover`: an account deleted in one transaction, the last-owner rule held
//! against concurrent membership changes by the same row locks a member removal takes.

use async_trait::async_trait;
use auth_core::model::{NewEvent, OrganizationId, Role, SessionId, UserId};
use auth_core::ports::{AccountRemover, DeleteAccountError, StoreError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::error::classify;
use super::events::{append_in, corrupt};
use super::pool::DbPool;
use super::schema::{memberships, refresh_tokens, sessions, users};

/// How a deletion ended inside its transaction.
enum Deletion {
    Deleted(Vec<SessionId>),
    NotFound,
    LastOwner(Uuid),
    LastAdministrator,
}

/// Deletes the refresh tokens of `sessions`, again and again until a statement finds none.
///
/// A refresh of one of these sessions that started before this transaction commits still sees
/// its session, and may insert a successor token. Each statement here takes a fresh snapshot
/// and keeps the rows it deletes locked until the commit, so:
/// - a refresh whose token a statement deleted first waits for the commit, then finds the
///   token gone and inserts nothing;
/// - a refresh that locked its token first makes the statement wait for it; its successor is
///   committed by then, and the next statement deletes it.
///
/// A refresh only presents a token committed before it began. When a statement finds nothing,
/// every token of these sessions committed before its snapshot was deleted by an earlier
/// statement, and is locked. A token committed after that snapshot would come from a refresh
/// that succeeded, whose own token would have to be committed after the snapshot too, and so
/// on back: no such chain can start, so once a statement finds none no refresh adds a token,
/// and nothing is left behind whose session is gone. In practice the second statement finds
/// none: another round needs a client to read its new token and present it between two
/// statements of this loop. Bounded by the pool's deadline like the rest of the transaction.
async fn delete_tokens(conn: &mut AsyncPgConnection, sessions: &[Uuid]) -> Result<(), DieselError> {
    if sessions.is_empty() {
        return Ok(());
    }
    loop {
        let deleted = diesel::delete(refresh_tokens::table)
            .filter(refresh_tokens::session_id.eq_any(sessions))
            .execute(conn)
            .await?;
        if deleted == 0 {
            return Ok(());
        }
    }
}

/// Deletes accounts from Postgres.
#[derive(Clone)]
pub struct PgAccountRemover {
    pool: DbPool,
}

impl std::fmt::Debug for PgAccountRemover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAccountRemover").finish_non_exhaustive()
    }
}

impl PgAccountRemover {
    /// Over `pool`.
    #[must_use]
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl AccountRemover for PgAccountRemover {
    async fn delete_account(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, DeleteAccountError> {
        let deletion = self
            .pool
            .deadline(async {
                let mut conn = self.pool.get().await?;
                let id = user.as_uuid();
                conn.transaction::<_, DieselError, _>(async |conn| {
                    // The enabled administrators first, in id order (as an administration
                    // change locks them), so a concurrent demotion and this deletion cannot
                    // both take away the last one.
                    let admins: Vec<Uuid> = users::table
                        .filter(users::is_admin.eq(true))
                        .filter(users::disabled_at.is_null())
                        .order(users::id)
                        .select(users::id)
                        .for_update()
                        .load(conn)
                        .await?;
                    // Then the user's row: concurrent deletions queue here, and the second
                    // finds nothing.
                    let found: Option<Uuid> = users::table
                        .find(id)
                        .select(users::id)
                        .for_update()
                        .first(conn)
                        .await
                        .optional()?;
                    if found.is_none() {
                        return Ok(Deletion::NotFound);
                    }
                    if admins.contains(&id) && admins.len() <= 1 {
                        return Ok(Deletion::LastAdministrator);
                    }
                    // Then, in every organization the user owns, every owner row, in the order
                    // a member removal locks them (by organization, then user), so a concurrent
                    // removal of the other owner either finishes first (and is seen here) or
                    // waits for this transaction (and then finds the user gone).
                    let owned: Vec<Uuid> = memberships::table
                        .filter(memberships::user_id.eq(id))
                        .filter(memberships::role.eq("owner"))
                        .select(memberships::organization_id)
                        .load(conn)
                        .await?;
                    let owners: Vec<(Uuid, Uuid)> = memberships::table
                        .filter(memberships::organization_id.eq_any(owned))
                        .filter(memberships::role.eq("owner"))
                        .order((
                            memberships::organization_id.asc(),
                            memberships::user_id.asc(),
                        ))
                        .select((memberships::organization_id, memberships::user_id))
                        .for_update()
                        .load(conn)
                        .await?;
                    let mut orgs: Vec<Uuid> = owners.iter().map(|(org, _)| *org).collect();
                    orgs.dedup();
                    if let Some(org) = orgs
                        .into_iter()
                        .find(|org| owners.iter().filter(|(o, _)| o == org).count() == 1)
                    {
                        return Ok(Deletion::LastOwner(org));
                    }
                    let mut ended: Vec<Uuid> = diesel::update(
                        sessions::table
                            .filter(sessions::user_id.eq(id))
                            .filter(sessions::revoked_at.is_null()),
                    )
                    .set(sessions::revoked_at.eq(now))
                    .returning(sessions::id)
                    .get_results(conn)
                    .await?;
                    ended.sort();
                    let ended: Vec<SessionId> =
                        ended.into_iter().map(SessionId::from_uuid).collect();
                    // The memberships explicitly, for their events.
                    let mut left: Vec<(Uuid, String)> =
                        diesel::delete(memberships::table.filter(memberships::user_id.eq(id)))
                            .returning((memberships::organization_id, memberships::role))
                            .get_results(conn)
                            .await?;
                    left.sort();
                    // Every session of the user, ended ones too, and their refresh tokens
                    // (no foreign key deletes the tokens with their session).
                    let all: Vec<Uuid> = diesel::delete(sessions::table)
                        .filter(sessions::user_id.eq(id))
                        .returning(sessions::id)
                        .get_results(conn)
                        .await?;
                    delete_tokens(conn, &all).await?;
                    diesel::delete(users::table.find(id)).execute(conn).await?;
                    let mut events = Vec::with_capacity(left.len() + ended.len() + 1);
                    for (org, role) in left {
                        let role: Role =
                            role.parse().map_err(|e| corrupt(StoreError::internal(e)))?;
                        events.push(NewEvent::member_removed(
                            OrganizationId::from_uuid(org),
                            user,
                            role,
                            now,
                        ));
                    }
                    events.extend(
                        ended
                            .iter()
                            .map(|&session| NewEvent::session_ended(session, user, now)),
                    );
                    events.push(NewEvent::user_deleted(user, now));
                    append_in(conn, &events).await?;
                    Ok(Deletion::Deleted(ended))
                })
                .await
                .map_err(classify)
            })
            .await?;
        match deletion {
            Deletion::Deleted(ended) => Ok(ended),
            Deletion::NotFound => Err(DeleteAccountError::NotFound),
            Deletion::LastAdministrator => Err(DeleteAccountError::LastAdministrator),
            Deletion::LastOwner(org) => Err(DeleteAccountError::LastOwner(
                OrganizationId::from_uuid(org),
            )),
        }
    }
}
