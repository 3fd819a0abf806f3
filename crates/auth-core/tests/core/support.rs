//! What the service tests share: a caching `VerificationCache`, the in-memory parts of the
//! service harness, and values.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use auth_core::contract::services::{ServiceHarness, ServiceParts};
use auth_core::memory::{FakeSigner, ManualClock, MemoryStore};
use auth_core::model::{Email, Password, PasswordHash, PasswordPolicy, User, UserId};
use auth_core::ports::{BatchLoader, Clock as _, Loader, StoreError, VerificationCache};

/// A cache that keeps every loaded answer until it is invalidated: enough to show what the
/// services read through a cache and what they evict. (No bound, no lifetime and no shared
/// loads: the production cache is Moka, tested in `auth-infra`.) A load that an invalidation
/// overtook is not kept, as the port requires.
#[derive(Debug)]
pub struct MapCache<K, V> {
    state: Mutex<(HashMap<K, Option<V>>, u64)>,
}

impl<K, V> MapCache<K, V> {
    pub fn new() -> Self {
        Self {
            state: Mutex::new((HashMap::new(), 0)),
        }
    }
}

#[async_trait]
impl<K, V> VerificationCache<K, V> for MapCache<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    async fn get_or_load(&self, key: K, load: Loader<'_, V>) -> Result<Option<V>, StoreError> {
        let generation = {
            let state = self.state.lock().unwrap();
            if let Some(hit) = state.0.get(&key) {
                return Ok(hit.clone());
            }
            state.1
        };
        let loaded = load.await?;
        let mut state = self.state.lock().unwrap();
        if state.1 == generation {
            state.0.insert(key, loaded.clone());
        }
        Ok(loaded)
    }

    async fn get_or_load_many(
        &self,
        keys: &[K],
        load: BatchLoader<'_, K, V>,
    ) -> Result<Vec<Option<V>>, StoreError> {
        let (mut answers, missing, generation) = {
            let state = self.state.lock().unwrap();
            let mut answers = HashMap::new();
            let mut missing = Vec::new();
            for key in keys {
                match state.0.get(key) {
                    Some(hit) => {
                        answers.insert(key.clone(), hit.clone());
                    }
                    None if !missing.contains(key) => missing.push(key.clone()),
                    None => {}
                }
            }
            (answers, missing, state.1)
        };
        if !missing.is_empty() {
            let found: HashMap<K, V> = load(missing.clone()).await?.into_iter().collect();
            let mut state = self.state.lock().unwrap();
            for key in missing {
                let value = found.get(&key).cloned();
                if state.1 == generation {
                    state.0.insert(key.clone(), value.clone());
                }
                answers.insert(key, value);
            }
        }
        Ok(keys.iter().map(|key| answers[key].clone()).collect())
    }

    async fn invalidate(&self, key: &K) {
        let mut state = self.state.lock().unwrap();
        state.0.remove(key);
        state.1 += 1;
    }

    async fn clear(&self) {
        let mut state = self.state.lock().unwrap();
        state.0.clear();
        state.1 += 1;
    }

    async fn entry_count(&self) -> u64 {
        u64::try_from(self.state.lock().unwrap().0.len()).unwrap()
    }
}

/// A fresh email.
pub fn email() -> Email {
    Email::parse(&format!("user.{}@example.com", UserId::generate())).unwrap()
}

/// A password that meets the default policy.
pub fn pw(s: &str) -> Password {
    PasswordPolicy::default().new_password(s).unwrap()
}

/// What the in-memory backend brings to the service scenarios: map caches and the fake
/// signer.
pub fn memory_parts() -> ServiceParts {
    ServiceParts {
        api_key_cache: Arc::new(MapCache::new()),
        device_cache: Arc::new(MapCache::new()),
        signer: Arc::new(FakeSigner::new()),
    }
}

/// The key and device services over a fresh in-memory store, with an organization.
pub async fn services() -> ServiceHarness {
    ServiceHarness::new(
        &MemoryStore::new(),
        Arc::new(ManualClock::starting_now()),
        memory_parts(),
    )
    .await
}

/// A registered user, a service administrator or not.
pub async fn user(h: &ServiceHarness, is_admin: bool) -> User {
    let now = h.clock.now();
    let u = User {
        id: UserId::generate(),
        email: Email::parse(&format!("u{}@example.com", UserId::generate())).unwrap(),
        display_name: None,
        password_hash: PasswordHash::new("$fake$1$x".into()),
        is_admin,
        email_verified_at: None,
        disabled_at: None,
        last_login_at: None,
        created_at: now,
        updated_at: now,
    };
    h.users.create(&u).await.unwrap();
    u
}
