//! In-memory `ApiKeyRepository`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::event_log::{MemoryEventLog, Recorder};
use super::lock;
use crate::model::{
    ApiKey, ApiKeyChanges, ApiKeyId, ApiKeyStatus, CreditSpend, ExternalId, HourUsage, NewEvent,
    OrganizationId, TokenHash, UsageBucket, UsageCounts,
};
use crate::ports::{
    ApiKeyRepository, Lease, LeaseRequest, RevokeApiKeyError, StoreError, UpdateApiKeyError,
};

#[derive(Debug, Default)]
struct State {
    keys: HashMap<ApiKeyId, ApiKey>,
    by_hash: HashMap<TokenHash, ApiKeyId>,
    /// Per key: the latest window leased from (start, length), and the uses granted in it.
    windows: HashMap<ApiKeyId, (DateTime<Utc>, u32, u32)>,
    /// Verification counts by key and hour.
    usage: std::collections::BTreeMap<(ApiKeyId, DateTime<Utc>), UsageCounts>,
}

impl State {
    /// Refuses a key whose id or hash is taken, as a primary key and a unique index would.
    fn check_new(&self, key: &ApiKey) -> Result<(), StoreError> {
        if self.keys.contains_key(&key.id) {
            return Err(StoreError::internal("API key id already exists"));
        }
        if self.by_hash.contains_key(&key.key_hash) {
            return Err(StoreError::internal("API key hash already exists"));
        }
        Ok(())
    }

    fn insert(&mut self, key: &ApiKey) {
        self.by_hash.insert(key.key_hash, key.id);
        self.keys.insert(key.id, key.clone());
    }

    /// Revokes `id` if it is active.
    fn revoke(&mut self, id: ApiKeyId, now: DateTime<Utc>) -> Result<ApiKey, RevokeApiKeyError> {
        let key = self.keys.get_mut(&id).ok_or(RevokeApiKeyError::NotFound)?;
        if key.revoked_at.is_some() {
            return Err(RevokeApiKeyError::AlreadyRevoked);
        }
        key.revoked_at = Some(now);
        Ok(key.clone())
    }
}

/// API keys in maps (by id and by hash) behind one lock, which makes revocation and rotation
/// atomic. The organization a key names is not checked: callers create keys for
/// organizations they have found.
#[derive(Debug, Default)]
pub struct MemoryApiKeyRepository(Mutex<State>, Recorder);

impl MemoryApiKeyRepository {
    /// An empty repository.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Deletes the counts of hours that began before `before`; how many.
    pub(crate) fn prune_usage_before(&self, before: DateTime<Utc>) -> u64 {
        let mut state = lock(&self.0);
        let was = state.usage.len();
        state.usage.retain(|(_, hour), _| *hour >= before);
        (was - state.usage.len()) as u64
    }

    /// Records creations, revocations and rotations in `log`, the event log of every instance sharing this
    /// repository.
    #[must_use]
    pub fn recording_to(self, log: Arc<MemoryEventLog>) -> Self {
        Self(self.0, Recorder::to(log))
    }
}

#[async_trait]
impl ApiKeyRepository for MemoryApiKeyRepository {
    async fn create(&self, key: &ApiKey) -> Result<(), StoreError> {
        {
            let mut state = lock(&self.0);
            state.check_new(key)?;
            state.insert(key);
        }
        self.1.record(vec![NewEvent::api_key_created(key)]).await;
        Ok(())
    }

    async fn find(&self, id: ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        Ok(lock(&self.0).keys.get(&id).cloned())
    }

    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiKey>, StoreError> {
        let state = lock(&self.0);
        Ok(state
            .by_hash
            .get(hash)
            .and_then(|id| state.keys.get(id))
            .cloned())
    }

    async fn find_by_hashes(&self, hashes: &[TokenHash]) -> Result<Vec<ApiKey>, StoreError> {
        let state = lock(&self.0);
        let mut ids: Vec<ApiKeyId> = hashes
            .iter()
            .filter_map(|hash| state.by_hash.get(hash).copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids
            .iter()
            .filter_map(|id| state.keys.get(id))
            .cloned()
            .collect())
    }

    async fn list(
        &self,
        org: OrganizationId,
        include_revoked: bool,
        external_id: Option<&ExternalId>,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let state = lock(&self.0);
        let mut keys: Vec<ApiKey> = state
            .keys
            .values()
            .filter(|k| {
                k.organization_id == org
                    && (include_revoked || k.revoked_at.is_none())
                    && external_id.is_none_or(|wanted| k.external_id.as_ref() == Some(wanted))
            })
            .cloned()
            .collect();
        keys.sort_by_key(|k| (k.created_at, k.id));
        Ok(keys)
    }

    async fn revoke(&self, id: ApiKeyId, now: DateTime<Utc>) -> Result<ApiKey, RevokeApiKeyError> {
        let revoked = lock(&self.0).revoke(id, now)?;
        self.1
            .record(vec![NewEvent::api_key_revoked(&revoked, now)])
            .await;
        Ok(revoked)
    }

    async fn rotate(
        &self,
        old: ApiKeyId,
        new: &ApiKey,
        now: DateTime<Utc>,
    ) -> Result<ApiKey, RevokeApiKeyError> {
        let revoked = {
            let mut state = lock(&self.0);
            // Every check before any change, so a refused rotation changes nothing.
            let current = state.keys.get(&old).ok_or(RevokeApiKeyError::NotFound)?;
            if current.revoked_at.is_some() {
                return Err(RevokeApiKeyError::AlreadyRevoked);
            }
            state.check_new(new)?;
            let revoked = state.revoke(old, now)?;
            state.insert(&new.succeeding(&revoked));
            revoked
        };
        self.1
            .record(vec![NewEvent::api_key_rotated(&revoked, new, now)])
            .await;
        Ok(revoked)
    }

    async fn update(
        &self,
        id: ApiKeyId,
        changes: &ApiKeyChanges,
        now: DateTime<Utc>,
    ) -> Result<ApiKey, UpdateApiKeyError> {
        let changed = {
            let mut state = lock(&self.0);
            let key = state.keys.get_mut(&id).ok_or(UpdateApiKeyError::NotFound)?;
            match key.status(now) {
                ApiKeyStatus::Revoked => return Err(UpdateApiKeyError::AlreadyRevoked),
                ApiKeyStatus::Expired => return Err(UpdateApiKeyError::Expired),
                ApiKeyStatus::Active => {}
            }
            if changes.is_empty() {
                return Ok(key.clone());
            }
            *key = changes.apply_to(key, now);
            key.clone()
        };
        self.1
            .record(vec![NewEvent::api_key_updated(&changed, changes, now)])
            .await;
        Ok(changed)
    }

    async fn spend_credit(
        &self,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> Result<CreditSpend, StoreError> {
        let mut state = lock(&self.0);
        let Some(key) = state.keys.get_mut(&id) else {
            return Ok(CreditSpend::Unmetered);
        };
        let Some(credits) = key
            .credits
            .filter(|_| key.status(now) == ApiKeyStatus::Active)
        else {
            return Ok(CreditSpend::Unmetered);
        };
        Ok(match credits.spend(now) {
            Some(left) => {
                key.credits = Some(left);
                CreditSpend::Spent {
                    remaining: left.remaining,
                }
            }
            None => CreditSpend::Exhausted,
        })
    }

    async fn lease(&self, id: ApiKeyId, request: LeaseRequest) -> Result<Lease, StoreError> {
        let mut state = lock(&self.0);
        let entry =
            state
                .windows
                .entry(id)
                .or_insert((request.window_start, request.window_seconds, 0));
        let (start, length, granted) = entry;
        if *length != request.window_seconds || *start < request.window_start {
            *entry = (request.window_start, request.window_seconds, 0);
        } else if *start == request.window_start {
            *granted = granted.saturating_sub(request.give_back);
        }
        let (start, _, granted) = entry;
        let left = request.limit.saturating_sub(*granted);
        let grant = request.ask.min(left).min(left.div_ceil(4).max(1));
        *granted += grant;
        Ok(Lease {
            granted: grant,
            taken: *granted,
            window_start: *start,
        })
    }

    async fn record_usage(&self, usage: &[HourUsage]) -> Result<(), StoreError> {
        let mut state = lock(&self.0);
        for entry in usage {
            let Some(key) = state.keys.get_mut(&entry.key) else {
                continue;
            };
            key.last_used_at = key.last_used_at.max(entry.last_used);
            if entry.counts.total() > 0 {
                state
                    .usage
                    .entry((entry.key, entry.hour))
                    .or_default()
                    .add(&entry.counts);
            }
        }
        Ok(())
    }

    async fn usage(
        &self,
        id: ApiKeyId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        Ok(lock(&self.0)
            .usage
            .range((id, from)..(id, to))
            .map(|((_, start), counts)| UsageBucket {
                start: *start,
                counts: *counts,
            })
            .collect())
    }
}
