//! `DeviceRepository`: registered devices and the hashes of their secrets.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::model::{Device, DeviceId, OrganizationId, TokenHash};

/// Registering a device failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterDeviceError {
    /// The id is taken (by any organization).
    #[error("device id already registered")]
    Exists,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Changing a device failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeDeviceError {
    /// No such device.
    #[error("device not found")]
    NotFound,
    /// The device is revoked.
    #[error("device already revoked")]
    AlreadyRevoked,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores devices.
///
/// Implementations MUST:
/// - keep device ids unique across the service (exactly one of concurrent registrations of
///   one id succeeds; the others get `Exists`), compared byte-exact;
/// - store only the hash of a device secret;
/// - make `rotate_secret` and `revoke` atomic: a rotation replaces the hash only of an active
///   device, and in the same step sets `tokens_not_before` to the later of the stored and the
///   given time (it never moves backwards); a revocation happens once (concurrent revocations: one succeeds, the others get
///   `AlreadyRevoked`); `revoked_at`, once set, never changes;
/// - apply `record_authentications` as "the latest of stored and given";
/// - list in a stable order (registration time, then id);
/// - announce a successful `register`, `rotate_secret` or `revoke` as
///   [`Invalidation::Device`](super::Invalidation::Device) to every instance sharing the store, in the same atomic step as
///   the change: a change that could not be announced is not made (Postgres: `NOTIFY` inside
///   the committing transaction);
/// - classify errors as [`StoreError`] says.
#[async_trait]
pub trait DeviceRepository: Send + Sync + 'static {
    /// Stores a new device.
    ///
    /// # Errors
    /// [`RegisterDeviceError`].
    async fn register(&self, device: &Device) -> Result<(), RegisterDeviceError>;

    /// Finds a device by id.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn find(&self, id: &DeviceId) -> Result<Option<Device>, StoreError>;

    /// The devices of an organization.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn list(&self, org: OrganizationId) -> Result<Vec<Device>, StoreError>;

    /// Replaces the secret hash of an active device and moves its `tokens_not_before` up to
    /// `tokens_not_before` (never back), returning the device as changed.
    ///
    /// # Errors
    /// [`ChangeDeviceError`].
    async fn rotate_secret(
        &self,
        id: &DeviceId,
        new_hash: &TokenHash,
        tokens_not_before: DateTime<Utc>,
    ) -> Result<Device, ChangeDeviceError>;

    /// Revokes a device, returning it as revoked.
    ///
    /// # Errors
    /// [`ChangeDeviceError`].
    async fn revoke(&self, id: &DeviceId, now: DateTime<Utc>) -> Result<Device, ChangeDeviceError>;

    /// Records last-authentication times, in one batch.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn record_authentications(
        &self,
        seen: &[(DeviceId, DateTime<Utc>)],
    ) -> Result<(), StoreError>;
}
