//! In-memory `DeviceRepository`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::event_log::{MemoryEventLog, Recorder};
use super::lock;
use crate::model::{Device, DeviceId, NewEvent, OrganizationId, TokenHash};
use crate::ports::{ChangeDeviceError, DeviceRepository, RegisterDeviceError, StoreError};

/// Looks up an active device for a change: missing is `NotFound`, revoked `AlreadyRevoked`.
fn active<'a>(
    devices: &'a mut HashMap<DeviceId, Device>,
    id: &DeviceId,
) -> Result<&'a mut Device, ChangeDeviceError> {
    let device = devices.get_mut(id).ok_or(ChangeDeviceError::NotFound)?;
    if device.revoked_at.is_some() {
        return Err(ChangeDeviceError::AlreadyRevoked);
    }
    Ok(device)
}

/// Devices in a map keyed by id (compared byte-exact) behind one lock, which makes
/// registration, rotation and revocation atomic: every check happens before any change. The
/// organization a device names is not checked: callers register devices for organizations
/// they have found.
#[derive(Debug, Default)]
pub struct MemoryDeviceRepository(Mutex<HashMap<DeviceId, Device>>, Recorder);

impl MemoryDeviceRepository {
    /// An empty repository.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records registrations, secret rotations and revocations in `log`, the event log of every instance sharing this
    /// repository.
    #[must_use]
    pub fn recording_to(self, log: Arc<MemoryEventLog>) -> Self {
        Self(self.0, Recorder::to(log))
    }
}

#[async_trait]
impl DeviceRepository for MemoryDeviceRepository {
    async fn register(&self, device: &Device) -> Result<(), RegisterDeviceError> {
        {
            let mut devices = lock(&self.0);
            if devices.contains_key(&device.id) {
                return Err(RegisterDeviceError::Exists);
            }
            devices.insert(device.id.clone(), device.clone());
        }
        self.1
            .record(vec![NewEvent::device_registered(device, device.created_at)])
            .await;
        Ok(())
    }

    async fn find(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        Ok(lock(&self.0).get(id).cloned())
    }

    async fn list(&self, org: OrganizationId) -> Result<Vec<Device>, StoreError> {
        let devices = lock(&self.0);
        let mut found: Vec<Device> = devices
            .values()
            .filter(|d| d.organization_id == org)
            .cloned()
            .collect();
        found.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(found)
    }

    async fn rotate_secret(
        &self,
        id: &DeviceId,
        new_hash: &TokenHash,
        tokens_not_before: DateTime<Utc>,
    ) -> Result<Device, ChangeDeviceError> {
        let rotated = {
            let mut devices = lock(&self.0);
            let device = active(&mut devices, id)?;
            device.secret_hash = *new_hash;
            device.tokens_not_before = device.tokens_not_before.max(Some(tokens_not_before));
            device.clone()
        };
        self.1
            .record(vec![NewEvent::device_secret_rotated(
                &rotated,
                tokens_not_before,
                tokens_not_before,
            )])
            .await;
        Ok(rotated)
    }

    async fn revoke(&self, id: &DeviceId, now: DateTime<Utc>) -> Result<Device, ChangeDeviceError> {
        let revoked = {
            let mut devices = lock(&self.0);
            let device = active(&mut devices, id)?;
            device.revoked_at = Some(now);
            device.clone()
        };
        self.1
            .record(vec![NewEvent::device_revoked(&revoked, now)])
            .await;
        Ok(revoked)
    }

    async fn record_authentications(
        &self,
        seen: &[(DeviceId, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        let mut devices = lock(&self.0);
        for (id, at) in seen {
            if let Some(device) = devices.get_mut(id) {
                device.last_authenticated_at = device.last_authenticated_at.max(Some(*at));
            }
        }
        Ok(())
    }
}
