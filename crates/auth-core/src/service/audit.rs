//! `AuditService`: reads the audit trail (the event log) for those allowed to see it.
//!
//! An organization's trail is for those who manage its credentials (its owners and admins, a
//! service administrator, an `admin` key of the organization, the operator); a user's own
//! trail (the events about their account: sign-ins, failed attempts, ended sessions, changes)
//! is for that user. Pages are in ascending `seq`; `after` is the cursor.

use std::sync::Arc;

use crate::model::{EventAction, OrganizationId, StoredEvent, UserId};
use crate::ports::{EventLog, EventQuery, EventScope, StoreError};
use crate::service::actor::Actor;
use crate::service::organization::{OrganizationError, OrganizationService};

/// The most events one page holds.
pub const MAX_PAGE: usize = 500;
/// Events per page when the caller names no limit.
pub const DEFAULT_PAGE: usize = 100;

/// Which page of a trail to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrailPage {
    /// Only events after this position.
    pub after: i64,
    /// At most this many (1..=[`MAX_PAGE`]).
    pub limit: usize,
    /// Only this action.
    pub action: Option<EventAction>,
}

impl Default for TrailPage {
    fn default() -> Self {
        Self {
            after: 0,
            limit: DEFAULT_PAGE,
            action: None,
        }
    }
}

impl TrailPage {
    fn query(self, scope: EventScope) -> EventQuery {
        EventQuery {
            scope,
            after: self.after.max(0),
            limit: self.limit.clamp(1, MAX_PAGE),
            action: self.action.map(|a| a.as_str().to_owned()),
        }
    }
}

/// Reads the audit trail.
#[derive(Clone)]
pub struct AuditService {
    log: Arc<dyn EventLog>,
    orgs: OrganizationService,
}

impl std::fmt::Debug for AuditService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditService").finish_non_exhaustive()
    }
}

impl AuditService {
    /// Reads `log`, deciding who may see an organization's trail with `orgs`.
    #[must_use]
    pub fn new(log: Arc<dyn EventLog>, orgs: OrganizationService) -> Self {
        Self { log, orgs }
    }

    /// The log itself (the revocation stream replays from it).
    #[must_use]
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// A page of `org`'s trail, if `actor` may manage its credentials.
    ///
    /// # Errors
    /// `NotFound` (no such organization, or not the caller's), `Forbidden` (a member without
    /// the right, a key without `admin`), or a store failure.
    pub async fn organization_events(
        &self,
        actor: &Actor,
        org: OrganizationId,
        page: TrailPage,
    ) -> Result<Vec<StoredEvent>, OrganizationError> {
        self.orgs.authorize(actor, org).await?;
        Ok(self
            .log
            .list(&page.query(EventScope::Organization(org)))
            .await?)
    }

    /// A page of the events about `user`'s own account.
    ///
    /// # Errors
    /// A store failure.
    pub async fn user_events(
        &self,
        user: UserId,
        page: TrailPage,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.log.list(&page.query(EventScope::User(user))).await
    }

    /// A page of every event (the operator at the command line).
    ///
    /// # Errors
    /// A store failure.
    pub async fn all_events(&self, page: TrailPage) -> Result<Vec<StoredEvent>, StoreError> {
        self.log.list(&page.query(EventScope::All)).await
    }
}
