//! The storage contract suite against the in-memory adapters.

use std::sync::Arc;

use auth_core::contract::Fixture;
use auth_core::memory::{
    MemoryApiKeyRepository, MemoryDeviceRepository, MemoryLoginAttemptStore,
    MemoryOrganizationRepository, MemoryPruner, MemorySessionRepository, MemoryUserRepository,
};
use auth_core::ports::{
    ApiKeyRepository, DeviceRepository, LoginAttemptStore, OrganizationRepository, Pruner,
    SessionRepository, UserRepository,
};

struct Memory {
    users: Arc<MemoryUserRepository>,
    sessions: Arc<MemorySessionRepository>,
    organizations: Arc<MemoryOrganizationRepository>,
    api_keys: Arc<MemoryApiKeyRepository>,
    devices: Arc<MemoryDeviceRepository>,
    login_attempts: Arc<MemoryLoginAttemptStore>,
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
    fn pruner(&self) -> Arc<dyn Pruner> {
        self.pruner.clone()
    }
}

async fn memory() -> Memory {
    let users = Arc::new(MemoryUserRepository::new());
    let sessions = Arc::new(MemorySessionRepository::new(users.clone()));
    let login_attempts = Arc::new(MemoryLoginAttemptStore::new());
    Memory {
        organizations: Arc::new(MemoryOrganizationRepository::new(users.clone())),
        pruner: Arc::new(MemoryPruner::new(sessions.clone(), login_attempts.clone())),
        sessions,
        users,
        api_keys: Arc::new(MemoryApiKeyRepository::new()),
        devices: Arc::new(MemoryDeviceRepository::new()),
        login_attempts,
    }
}

auth_core::storage_contract_tests!(memory());
