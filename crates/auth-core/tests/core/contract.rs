//! The storage contract suite against the in-memory adapters.

use std::sync::Arc;

use auth_core::contract::Fixture;
use auth_core::memory::{
    MemoryApiKeyRepository, MemoryDeviceRepository, MemoryEventLog, MemoryLoginAttemptStore,
    MemoryOrganizationRepository, MemoryPruner, MemorySessionRepository, MemoryUserRepository,
};
use auth_core::ports::{
    ApiKeyRepository, DeviceRepository, EventLog, LoginAttemptStore, OrganizationRepository,
    Pruner, SessionRepository, UserRepository,
};

struct Memory {
    users: Arc<MemoryUserRepository>,
    sessions: Arc<MemorySessionRepository>,
    organizations: Arc<MemoryOrganizationRepository>,
    api_keys: Arc<MemoryApiKeyRepository>,
    devices: Arc<MemoryDeviceRepository>,
    login_attempts: Arc<MemoryLoginAttemptStore>,
    events: Arc<MemoryEventLog>,
    pruner: Arc<MemoryPruner>,
}

impl Fixture for Memory {
    fn users(&self) -> Arc<dyn UserRepository> {
        self.users.clone()
    }
    fn sessions(&self) -> Arc<dyn SessionRepository> {
        self.sessions.clone()
    }
    fn organizations(&self) -> Arc<dyn OrganizationRepository> {
        self.organizations.clone()
    }
    fn api_keys(&self) -> Arc<dyn ApiKeyRepository> {
        self.api_keys.clone()
    }
    fn devices(&self) -> Arc<dyn DeviceRepository> {
        self.devices.clone()
    }
    fn login_attempts(&self) -> Arc<dyn LoginAttemptStore> {
        self.login_attempts.clone()
    }
    fn events(&self) -> Arc<dyn EventLog> {
        self.events.clone()
    }
    fn pruner(&self) -> Arc<dyn Pruner> {
        self.pruner.clone()
    }
}

async fn memory() -> Memory {
    let events = Arc::new(MemoryEventLog::new());
    let users = Arc::new(MemoryUserRepository::new().recording_to(events.clone()));
    let sessions =
        Arc::new(MemorySessionRepository::new(users.clone()).recording_to(events.clone()));
    let login_attempts = Arc::new(MemoryLoginAttemptStore::new());
    Memory {
        organizations: Arc::new(MemoryOrganizationRepository::new(users.clone())),
        pruner: Arc::new(
            MemoryPruner::new(sessions.clone(), login_attempts.clone()).with_events(events.clone()),
        ),
        sessions,
        users,
        api_keys: Arc::new(MemoryApiKeyRepository::new().recording_to(events.clone())),
        devices: Arc::new(MemoryDeviceRepository::new().recording_to(events.clone())),
        login_attempts,
        events,
    }
}

auth_core::storage_contract_tests!(memory());
