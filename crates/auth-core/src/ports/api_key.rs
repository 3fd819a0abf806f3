//! `ApiKeyRepository`: API key records, found by the SHA-256 of the key.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::model::{
    ApiKey, ApiKeyChanges, ApiKeyId, CreditSpend, ExternalId, HourUsage, OrganizationId, TokenHash,
    UsageBucket,
};

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

/// A request for a share of a rate-limit window's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRequest {
    /// The start of the window.
    pub window_start: DateTime<Utc>,
    /// The window's length: a window of another length is another window.
    pub window_seconds: u32,
    /// The key's limit per window.
    pub limit: u32,
    /// How many uses are asked for (0: only give back).
    pub ask: u32,
    /// Uses of an earlier lease of this window that were not used, handed back first.
    pub give_back: u32,
}

/// What the store granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Uses granted to this request (0: the window's budget is spent, or the request is for
    /// a window that has passed).
    pub granted: u32,
    /// Uses granted in this window so far, by every instance, this request's included.
    pub taken: u32,
    /// The window the grant belongs to: the one asked for, or a later one the store has
    /// already moved on to (a request from an instance whose clock lags).
    pub window_start: DateTime<Utc>,
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
/// - make `update` one atomic step that applies every member given, only to a key active at
///   `now` (`AlreadyRevoked` wins over `Expired`), and announce it like a revocation, as
///   `api_key.updated`; an empty change changes nothing and announces nothing;
/// - list in a stable order (creation time, then id), only the keys of the given
///   `external_id` when one is given;
/// - append `api_key.created` in the same atomic step as `create`, and nothing when it is
///   refused;
/// - make `spend_credit` one atomic step: of any number of concurrent calls for a key with
///   `n` credits left, exactly `n` get [`CreditSpend::Spent`]; a refill that is due is applied
///   in the same step;
/// - make `lease` one atomic step per key: the uses granted in a window, minus those given
///   back, never exceed the limit asked with, whatever the number of instances asking; a
///   later window, or a window of another length, starts afresh; a request for an earlier
///   window of the same length is served from the current one (and gives nothing back);
/// - apply `record_usage` by adding the counts to what is stored for the key and hour, so
///   batches from several instances, in any order, add up, and by keeping the latest of the
///   stored and the given last use as the key's `last_used_at`, so that batches arriving out
///   of order never move it backwards (a key that no longer exists is skipped, never an error
///   for the batch); `usage` answers the stored hours of `[from, to)` that counted a
///   verification, in order;
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

    /// Finds a key by the hash of its secret. This is the verification's lookup: its
    /// `last_used_at` may be behind what [`Self::find`] answers by the uses recorded lately
    /// (the key cache keeps such records anyway, and an adapter may spare the lookup the
    /// read).
    ///
    /// # Errors
    /// [`StoreError`].
    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiKey>, StoreError>;

    /// Finds the keys whose secrets hash to any of `hashes`, in one round trip to the store
    /// (the batch verification's lookup): each such key once, in no particular order. A hash
    /// of no key is left out; a hash given twice is answered once. `last_used_at` as
    /// [`Self::find_by_hash`] answers it.
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

    /// Takes one credit of key `id` if it is active at `now` and has one left (applying a
    /// refill that is due first).
    ///
    /// # Errors
    /// [`StoreError`]; then nothing was taken.
    async fn spend_credit(
        &self,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> Result<CreditSpend, StoreError>;

    /// Gives back what `request` gives back and grants up to `request.ask` uses of the
    /// window, at most a quarter of what is left of it (at least one), never past
    /// `request.limit` in all.
    ///
    /// # Errors
    /// [`StoreError`]; then nothing was granted or given back.
    async fn lease(&self, id: ApiKeyId, request: LeaseRequest) -> Result<Lease, StoreError>;

    /// Adds verification counts and last uses, per key and hour, in one batch: the counts add
    /// to the hour's, the last use is kept when later than the key's `last_used_at`.
    ///
    /// # Errors
    /// [`StoreError`]; then nothing was recorded.
    async fn record_usage(&self, usage: &[HourUsage]) -> Result<(), StoreError>;

    /// The hourly counts of key `id` whose hour starts in `[from, to)`, in order; hours with
    /// no verification are left out.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn usage(
        &self,
        id: ApiKeyId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UsageBucket>, StoreError>;
}
