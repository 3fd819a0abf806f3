//! The storage contract suite and the service scenarios against the in-memory store, with
//! the map cache and the fake signer.

use std::sync::Arc;

use auth_core::contract::services::ServiceParts;
use auth_core::memory::{FakeSigner, MemoryStore};

use crate::support::MapCache;

auth_core::storage_contract_tests!(async { MemoryStore::new() });

auth_core::service_scenario_tests!(
    async { MemoryStore::new() },
    ServiceParts {
        api_key_cache: Arc::new(MapCache::new()),
        device_cache: Arc::new(MapCache::new()),
        signer: Arc::new(FakeSigner::new()),
    }
);
