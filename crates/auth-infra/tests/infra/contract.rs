//! The storage contract suite and the service scenarios against the Postgres adapters, each
//! test on its own database; the scenarios with the Moka cache and a real HS256 signer.

use std::sync::Arc;
use std::time::Duration;

use auth_core::contract::services::ServiceParts;
use auth_infra::cache::MokaCache;
use auth_infra::jwt::{JwtSettings, JwtSigner};
use auth_infra::test_support::TestStore;
use secrecy::SecretSlice;

// Batches of 2, so that the contract's few rows take several batches of each kind.
auth_core::storage_contract_tests!(async { TestStore::new().await.with_pruner_batch_size(2) });

auth_core::service_scenario_tests!(
    TestStore::new(),
    ServiceParts {
        api_key_cache: Arc::new(MokaCache::new("api_keys", 1000, Duration::from_secs(300))),
        device_cache: Arc::new(MokaCache::new("devices", 1000, Duration::from_secs(300))),
        signer: Arc::new(
            JwtSigner::hs256(&SecretSlice::from(vec![3u8; 32]), JwtSettings::default()).unwrap()
        ),
    }
);
