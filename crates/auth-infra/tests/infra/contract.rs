//! The storage contract suite against the Postgres adapters, each test on its own database.

use std::sync::Arc;

use auth_core::contract::Fixture;
use auth_core::ports::{
    ApiKeyRepository, DeviceRepository, EventLog, LoginAttemptStore, OrganizationRepository,
    Pruner, SessionRepository, UserRepository,
};
use auth_infra::postgres::{
    PgApiKeyRepository, PgDeviceRepository, PgEventLog, PgLoginAttemptStore,
    PgOrganizationRepository, PgPruner, PgSessionRepository, PgUserRepository,
};
use auth_infra::test_support::TestDb;

struct Postgres {
    users: Arc<PgUserRepository>,
    sessions: Arc<PgSessionRepository>,
    organizations: Arc<PgOrganizationRepository>,
    api_keys: Arc<PgApiKeyRepository>,
    devices: Arc<PgDeviceRepository>,
    login_attempts: Arc<PgLoginAttemptStore>,
    events: Arc<PgEventLog>,
    pruner: Arc<PgPruner>,
    _db: TestDb,
}

impl Fixture for Postgres {
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

async fn postgres() -> Postgres {
    let db = TestDb::new().await;
    let pool = db.pool();
    Postgres {
        users: Arc::new(PgUserRepository::new(pool.clone())),
        sessions: Arc::new(PgSessionRepository::new(pool.clone())),
        organizations: Arc::new(PgOrganizationRepository::new(pool.clone())),
        api_keys: Arc::new(PgApiKeyRepository::new(pool.clone())),
        devices: Arc::new(PgDeviceRepository::new(pool.clone())),
        login_attempts: Arc::new(PgLoginAttemptStore::new(pool.clone())),
        events: Arc::new(PgEventLog::new(pool.clone())),
        // Batches of 2, so that the contract's few rows take several batches of each kind.
        pruner: Arc::new(PgPruner::new(pool).with_batch_size(2)),
        _db: db,
    }
}

auth_core::storage_contract_tests!(postgres());
