//! `ApiKeyRepository`: API key records, found by the SHA-256 of the key.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::model::{ApiKey, ApiKeyChanges, ApiKeyId, ExternalId, OrganizationId, TokenHash};

/// Revoking or rotating failed.
#[derive(Debug, thiserror::Error)]
pub enum RevokeApiKeyError {
    /// No such key.
    #[error("API key not found")]
    NotFound,
    /// Already revoked.
    #[error("API key already revoked")]
    AlreadyRevoked,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Changing a key in place failed; then nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateApiKeyError {
    /// No such key.
    #[error("API key not found")]
    NotFound,
    /// The key is revoked.
    #[error("API key already revoked")]
    AlreadyRevoked,
    /// The key has expired (and is not revoked).
    #[error("API key expired")]
    Expired,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores API keys.
///
/// Implementations MUST:
/// - store only the key's hash, unique across all keys;
/// - answer `find_by_hashes` with one round trip to the store, whatever the number of hashes;
/// - make `revoke` and `rotate` atomic and one-shot: of concurrent revocations (or rotations)
///   of one key exactly one succeeds, the others get `AlreadyRevoked`; a rotation that fails
///   changes nothing (the old key stays active, the new one does not exist);
/// - announce a successful `revoke` or `rotate` as [`Invalidation::ApiKey`](super::Invalidation::ApiKey) of the old key's
///   hash to every instance sharing the store, in the same atomic step as the change: a change
///   that could not be announced is not made (Postgres: `NOTIFY` inside the committing
///   transaction);
/// - apply `record_usage` as "the latest of what is stored and what is given", so batches
///   arriving out of order never move `last_used_at` backwards;
/// - make `update` one atomic step that applies every member given, only to a key active at
///   `now` (`AlreadyRevoked` wins over `Expired`), and announce it like a revocation, as
///   `api_key.updated`; an empty change changes nothing and announces nothing;
/// - list in a stable order (creation time, then id), only the keys of the given
///   `external_id` when one is given;
/// - append `api_key.created` in the same atomic step as `create`, and nothing when it is
///   refused;
/// - classify errors as [`StoreError`] says.
#[async_trait]
pub trait ApiKeyRepository: Send + Sync + 'static {
    /// Stores a new key.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn create(&self, key: &ApiKey) -> Result<(), StoreError>;

    /// Finds a key by id.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn find(&self, id: ApiKeyId) -> Result<Option<ApiKey>, StoreError>;

    /// Finds a key by the hash of its secret.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiKey>, StoreError>;

    /// Finds the keys whose secrets hash to any of `hashes`, in one round trip to the store
    /// (the batch verification's lookup): each such key once, in no particular order. A hash
    /// of no key is left out; a hash given twice is answered once.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn find_by_hashes(&self, hashes: &[TokenHash]) -> Result<Vec<ApiKey>, StoreError>;

    /// The keys of `org`; revoked ones only when `include_revoked`; only those of
    /// `external_id` when given.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn list(
        &self,
        org: OrganizationId,
        include_revoked: bool,
        external_id: Option<&ExternalId>,
    ) -> Result<Vec<ApiKey>, StoreError>;

    /// Changes an active key in place, returning it as changed.
    ///
    /// # Errors
    /// [`UpdateApiKeyError`]; then nothing changed.
    async fn update(
        &self,
        id: ApiKeyId,
        changes: &ApiKeyChanges,
        now: DateTime<Utc>,
    ) -> Result<ApiKey, UpdateApiKeyError>;

    /// Revokes a key, returning it as revoked.
    ///
    /// # Errors
    /// [`RevokeApiKeyError`].
    async fn revoke(&self, id: ApiKeyId, now: DateTime<Utc>) -> Result<ApiKey, RevokeApiKeyError>;

    /// Revokes `old` and stores `new` in one step, returning the revoked old key; `new` is
    /// stored with the members `old` has at that step ([`ApiKey::succeeding`]), so a change
    /// committed after `new` was made is carried over.
    ///
    /// # Errors
    /// [`RevokeApiKeyError`]; then nothing changed.
    async fn rotate(
        &self,
        old: ApiKeyId,
        new: &ApiKey,
        now: DateTime<Utc>,
    ) -> Result<ApiKey, RevokeApiKeyError>;

    /// Records last-use times, in one batch.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn record_usage(&self, usage: &[(ApiKeyId, DateTime<Utc>)]) -> Result<(), StoreError>;
}
