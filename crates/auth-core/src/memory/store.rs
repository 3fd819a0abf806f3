//! `MemoryStore`: every in-memory repository over one event log, wired as one store.

use std::sync::Arc;

use super::{
    MemoryAccountRemover, MemoryApiKeyRepository, MemoryDeviceRepository, MemoryEventLog,
    MemoryLoginAttemptStore, MemoryMailOutbox, MemoryMfaRepository, MemoryOneTimeTokenStore,
    MemoryOrganizationRepository, MemoryPruner, MemorySessionRepository, MemoryUserAdministration,
    MemoryUserRepository,
};

/// The whole in-memory store: what `auth-server` runs on without `DATABASE_URL`, and where an
/// embedder or an integration test starts.
///
/// The repositories record what they change in one [`MemoryEventLog`], as the Postgres
/// repositories do in their `events` table, so services built over one `MemoryStore` (in one
/// process, as several instances) see each other's revocations: subscribe each instance's
/// `CacheInvalidator` to [`events`](Self::events). The pruner retains sessions, lockout
/// counters, one-time tokens, reset requests, login challenges and events of this store, one
/// pass at a time. Cloning shares the store.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    /// Users.
    pub users: Arc<MemoryUserRepository>,
    /// Sessions and their refresh tokens.
    pub sessions: Arc<MemorySessionRepository>,
    /// Organizations and memberships.
    pub organizations: Arc<MemoryOrganizationRepository>,
    /// API keys.
    pub api_keys: Arc<MemoryApiKeyRepository>,
    /// Devices.
    pub devices: Arc<MemoryDeviceRepository>,
    /// Login-attempt counters (lockout).
    pub login_attempts: Arc<MemoryLoginAttemptStore>,
    /// Second factors (TOTP), recovery codes and login challenges.
    pub mfa: Arc<MemoryMfaRepository>,
    /// The event log the repositories append to; also the invalidation bus of the instances
    /// over this store.
    pub events: Arc<MemoryEventLog>,
    /// Retention of everything above that ends: sessions, counters, one-time tokens, reset
    /// requests, login challenges and events.
    pub pruner: Arc<MemoryPruner>,
    /// Account deletion across the users, sessions and organizations above.
    pub accounts: Arc<MemoryAccountRemover>,
    /// Mails waiting to be sent.
    pub outbox: Arc<MemoryMailOutbox>,
    /// One-time tokens (their mails go to `outbox`).
    pub one_time_tokens: Arc<MemoryOneTimeTokenStore>,
    /// Administrators' changes to accounts.
    pub administration: Arc<MemoryUserAdministration>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        let events = Arc::new(MemoryEventLog::new());
        let users = Arc::new(MemoryUserRepository::new().recording_to(events.clone()));
        let sessions =
            Arc::new(MemorySessionRepository::new(users.clone()).recording_to(events.clone()));
        let login_attempts = Arc::new(MemoryLoginAttemptStore::new().recording_to(events.clone()));
        let organizations =
            Arc::new(MemoryOrganizationRepository::new(users.clone()).recording_to(events.clone()));
        let mfa = Arc::new(MemoryMfaRepository::new().recording_to(events.clone()));
        let outbox = Arc::new(MemoryMailOutbox::new());
        let one_time_tokens = Arc::new(MemoryOneTimeTokenStore::new(
            outbox.clone(),
            users.clone(),
            sessions.clone(),
            login_attempts.clone(),
        ));
        let api_keys = Arc::new(MemoryApiKeyRepository::new().recording_to(events.clone()));
        let pruner = Arc::new(
            MemoryPruner::new(sessions.clone(), login_attempts.clone())
                .with_one_time_tokens(one_time_tokens.clone())
                .with_mfa(mfa.clone())
                .with_events(events.clone())
                .with_api_keys(api_keys.clone()),
        );
        let administration = Arc::new(MemoryUserAdministration::new(
            users.clone(),
            sessions.clone(),
            mfa.clone(),
            login_attempts.clone(),
        ));
        Self {
            administration,
            accounts: Arc::new(MemoryAccountRemover::new(
                users.clone(),
                sessions.clone(),
                organizations.clone(),
                mfa.clone(),
                one_time_tokens.clone(),
            )),
            one_time_tokens,
            organizations,
            pruner,
            api_keys,
            devices: Arc::new(MemoryDeviceRepository::new().recording_to(events.clone())),
            mfa,
            users,
            sessions,
            login_attempts,
            events,
            outbox,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}
