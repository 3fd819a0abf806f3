//! The storage contract suite and the service scenarios against the in-memory store, with
//! the map cache and the fake signer.

use auth_core::memory::MemoryStore;

use crate::support::memory_parts;

auth_core::storage_contract_tests!(async { MemoryStore::new() });

auth_core::service_scenario_tests!(async { MemoryStore::new() }, memory_parts());
