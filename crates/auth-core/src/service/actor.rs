//! Who is calling: a user (through an access token) or an API key (through `X-API-Key`).

use std::sync::Arc;

use crate::model::{ApiKey, OrganizationId, UserId};

/// The authenticated caller of a management operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A user with a live session.
    User {
        /// The user.
        id: UserId,
        /// Service administrator: may act on any organization.
        is_admin: bool,
    },
    /// An active API key; it may act only on its own organization, and manage only with the
    /// `admin` scope.
    ApiKey(Arc<ApiKey>),
    /// The operator at the command line, with direct access to the database: may act on any
    /// organization that exists.
    Operator,
}

impl Actor {
    /// The organization an API key belongs to.
    #[must_use]
    pub fn key_organization(&self) -> Option<OrganizationId> {
        match self {
            Self::ApiKey(key) => Some(key.organization_id),
            Self::User { .. } | Self::Operator => None,
        }
    }
}
