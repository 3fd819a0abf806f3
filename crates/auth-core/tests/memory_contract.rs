//! The storage contract suite against the in-memory adapters.

use std::sync::Arc;

use auth_core::contract::Fixture;
use auth_core::memory::{MemorySessionRepository, MemoryUserRepository};
use auth_core::ports::{SessionRepository, UserRepository};

struct Memory {
    users: Arc<MemoryUserRepository>,
    sessions: Arc<MemorySessionRepository>,
}

impl Fixture for Memory {
    fn users(&self) -> Arc<dyn UserRepository> {
        self.users.clone()
    }
    fn sessions(&self) -> Arc<dyn SessionRepository> {
        self.sessions.clone()
    }
}

async fn memory() -> Memory {
    Memory {
        users: Arc::new(MemoryUserRepository::new()),
        sessions: Arc::new(MemorySessionRepository::new()),
    }
}

auth_core::storage_contract_tests!(memory());
