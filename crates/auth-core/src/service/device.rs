//! `DeviceService`: register, authenticate, rotate, revoke, list; and verify device tokens.
//!
//! Device secrets are 256-bit random values, so a SHA-256 compared in constant time is the
//! right check (no password-grade hashing). Devices are read through the
//! [`VerificationCache`], so a device that authenticates again within the cache's lifetime
//! costs no database read; rotation and revocation evict it here at once and on every other
//! instance through the [`InvalidationBus`](crate::ports::InvalidationBus).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use super::actor::Actor;
use super::last_seen::LastSeen;
use super::organization::{OrganizationError, OrganizationService};
use crate::model::{
    Device, DeviceClaims, DeviceId, DeviceMetadata, DeviceName, DeviceSecret, OrganizationId,
    TokenHash, TokenRejection,
};
use crate::ports::{
    BoxError, ChangeDeviceError, Clock, DeviceRepository, RegisterDeviceError, SecretGenerator,
    StoreError, TokenSigner, VerificationCache,
};

/// `at` cut down to its whole second, as JWT times are.
fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

/// What can go wrong with devices.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// No such device or organization, or the caller may not see it.
    #[error("not found")]
    NotFound,
    /// The caller sees it but may not manage it.
    #[error("forbidden")]
    Forbidden,
    /// The device id is taken.
    #[error("device exists")]
    Exists,
    /// Revoke of a revoked device.
    #[error("already revoked")]
    AlreadyRevoked,
    /// Authenticate: unknown device, wrong secret or revoked device (never says which).
    #[error("invalid device credentials")]
    InvalidCredentials,
    /// A device token was refused.
    #[error("device token refused: {0}")]
    InvalidToken(TokenRejection),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing or the random source failed.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

/// The organization checks' answers, as seen from a device: what the caller may not see is
/// not found; a store failure stays one.
impl From<OrganizationError> for DeviceError {
    fn from(err: OrganizationError) -> Self {
        match err {
            OrganizationError::Forbidden => Self::Forbidden,
            OrganizationError::Store(e) => Self::Store(e),
            OrganizationError::NotFound
            | OrganizationError::AlreadyMember
            | OrganizationError::LastOwner => Self::NotFound,
        }
    }
}

impl From<ChangeDeviceError> for DeviceError {
    fn from(err: ChangeDeviceError) -> Self {
        match err {
            ChangeDeviceError::NotFound => Self::NotFound,
            ChangeDeviceError::AlreadyRevoked => Self::AlreadyRevoked,
            ChangeDeviceError::Store(e) => Self::Store(e),
        }
    }
}

/// A new device (or a rotated secret) with the secret, shown once.
#[derive(Debug, Clone)]
pub struct IssuedDevice {
    /// The device.
    pub device: Device,
    /// Its secret.
    pub secret: DeviceSecret,
}

/// A device token, issued by `authenticate`.
#[derive(Debug, Clone)]
pub struct DeviceToken {
    /// The signed token.
    pub token: SecretString,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The device (shared with the verification cache).
    pub device: Arc<Device>,
}

/// What a registration is made of.
#[derive(Debug, Clone)]
pub struct NewDevice {
    /// Id.
    pub id: DeviceId,
    /// Owner.
    pub organization_id: OrganizationId,
    /// Name (defaults to the id).
    pub name: Option<DeviceName>,
    /// Metadata (defaults to `{}`).
    pub metadata: DeviceMetadata,
}

/// The ports `DeviceService` runs on.
#[derive(Clone)]
pub struct DevicePorts {
    /// Devices.
    pub devices: Arc<dyn DeviceRepository>,
    /// Organizations, for access checks.
    pub orgs: OrganizationService,
    /// Cache of devices by id.
    pub cache: Arc<dyn VerificationCache<DeviceId, Arc<Device>>>,
    /// Device tokens.
    pub signer: Arc<dyn TokenSigner>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Randomness for secrets.
    pub secrets: Arc<dyn SecretGenerator>,
}

impl std::fmt::Debug for DevicePorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevicePorts").finish_non_exhaustive()
    }
}

/// Devices.
#[derive(Clone)]
pub struct DeviceService {
    ports: DevicePorts,
    token_ttl: Duration,
    /// Compared against when the device is unknown, so that case costs the same.
    dummy_hash: TokenHash,
    seen: LastSeen<DeviceId>,
}

impl std::fmt::Debug for DeviceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceService")
            .field("token_ttl", &self.token_ttl)
            .finish_non_exhaustive()
    }
}

impl DeviceService {
    /// Builds the service; device tokens live `token_ttl`.
    #[must_use]
    pub fn new(ports: DevicePorts, token_ttl: Duration) -> Self {
        Self {
            ports,
            token_ttl,
            dummy_hash: TokenHash::of(b"no device has this secret"),
            seen: LastSeen::default(),
        }
    }

    fn new_secret(&self) -> Result<DeviceSecret, DeviceError> {
        let mut bytes = [0u8; DeviceSecret::BYTES];
        self.ports
            .secrets
            .fill(&mut bytes)
            .map_err(|e| DeviceError::Internal(Box::new(e)))?;
        Ok(DeviceSecret::from_random(&bytes))
    }

    /// Forgets the device here at once. Every other instance was told by the repository, in
    /// the same atomic step as the change.
    async fn forget(&self, id: &DeviceId) {
        self.ports.cache.invalidate(id).await;
    }

    /// Registers a device for an organization the actor manages.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, `Exists`, or a store failure.
    pub async fn register(
        &self,
        actor: &Actor,
        new: NewDevice,
    ) -> Result<IssuedDevice, DeviceError> {
        self.ports
            .orgs
            .authorize(actor, new.organization_id)
            .await?;
        let secret = self.new_secret()?;
        let device = Device {
            name: new.name.unwrap_or_else(|| DeviceName::from_id(&new.id)),
            id: new.id,
            organization_id: new.organization_id,
            metadata: new.metadata,
            secret_hash: secret.hash(),
            revoked_at: None,
            created_at: self.ports.clock.now(),
            last_authenticated_at: None,
            tokens_not_before: None,
        };
        match self.ports.devices.register(&device).await {
            Ok(()) => {}
            Err(RegisterDeviceError::Exists) => return Err(DeviceError::Exists),
            Err(RegisterDeviceError::Store(e)) => return Err(DeviceError::Store(e)),
        }
        // A negative lookup of this id may be cached from before it existed.
        self.forget(&device.id).await;
        tracing::info!(device_id = %device.id, organization_id = %device.organization_id, "device registered");
        Ok(IssuedDevice { device, secret })
    }

    /// Exchanges a device id and secret for a device token. Unknown device, wrong secret and
    /// revoked device fail alike, after the same work.
    ///
    /// # Errors
    /// `InvalidCredentials`, or a store failure.
    pub async fn authenticate(
        &self,
        id: &DeviceId,
        secret: &DeviceSecret,
    ) -> Result<DeviceToken, DeviceError> {
        let devices = self.ports.devices.clone();
        let key = id.clone();
        let found = self
            .ports
            .cache
            .get_or_load(
                id.clone(),
                Box::pin(async move { Ok(devices.find(&key).await?.map(Arc::new)) }),
            )
            .await?;
        let presented = secret.hash();
        let stored = found.as_ref().map_or(&self.dummy_hash, |d| &d.secret_hash);
        let matches: bool = presented.as_bytes().ct_eq(stored.as_bytes()).into();
        let Some(device) = found.filter(|d| matches && d.revoked_at.is_none()) else {
            return Err(DeviceError::InvalidCredentials);
        };
        let now = self.ports.clock.now();
        // `iat` is whole seconds: never below the device's not-before, so a token minted in
        // the second of a rotation, after it, is not mistaken for one minted before it (it
        // may then be up to a second ahead of the clock, well within the leeway).
        let floor = whole_second(now);
        let issued_at = device
            .tokens_not_before
            .map_or(floor, |not_before| not_before.max(floor));
        let claims = DeviceClaims {
            device_id: device.id.clone(),
            organization_id: device.organization_id,
            token_id: Uuid::now_v7(),
            issued_at,
            expires_at: issued_at + self.token_ttl,
        };
        let token = self
            .ports
            .signer
            .sign_device(&claims)
            .map_err(|e| DeviceError::Internal(Box::new(e)))?;
        self.note_seen(device.id.clone(), now);
        Ok(DeviceToken {
            token,
            expires_in: self.token_ttl.num_seconds(),
            device,
        })
    }

    /// Checks a device token: signature and claims, then that the device still exists, is
    /// active and belongs to the organization the token names.
    ///
    /// # Errors
    /// `InvalidToken` (invalid, expired, revoked), or a store failure.
    pub async fn verify_token(
        &self,
        token: &str,
    ) -> Result<(DeviceClaims, Arc<Device>), DeviceError> {
        let now = self.ports.clock.now();
        let claims = self
            .ports
            .signer
            .verify_device(token, now)
            .map_err(DeviceError::InvalidToken)?;
        let devices = self.ports.devices.clone();
        let key = claims.device_id.clone();
        let found = self
            .ports
            .cache
            .get_or_load(
                key.clone(),
                Box::pin(async move { Ok(devices.find(&key).await?.map(Arc::new)) }),
            )
            .await?;
        match found {
            Some(device)
                if device.revoked_at.is_none()
                    && device.organization_id == claims.organization_id
                    && device
                        .tokens_not_before
                        .is_none_or(|not_before| claims.issued_at >= not_before) =>
            {
                Ok((claims, device))
            }
            _ => Err(DeviceError::InvalidToken(TokenRejection::Revoked)),
        }
    }

    /// Replaces a device's secret; the old one stops working at once, and so does every
    /// token issued before the rotation (a rotation answers a leaked secret): the device's
    /// `tokens_not_before` becomes the next whole second, and `verify_token` refuses a token
    /// with an earlier `iat` as revoked.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, `AlreadyRevoked` (a revoked device gets no new secret), or a
    /// store failure.
    pub async fn rotate_secret(
        &self,
        actor: &Actor,
        id: &DeviceId,
    ) -> Result<IssuedDevice, DeviceError> {
        self.get(actor, id).await?;
        let secret = self.new_secret()?;
        // The whole second after now: every token minted so far has `iat <= floor(now)`, and
        // `authenticate` issues none below it from now on.
        let not_before = whole_second(self.ports.clock.now()) + Duration::seconds(1);
        let device = self
            .ports
            .devices
            .rotate_secret(id, &secret.hash(), not_before)
            .await?;
        self.forget(id).await;
        tracing::info!(device_id = %id, "device secret rotated");
        Ok(IssuedDevice { device, secret })
    }

    /// Revokes a device: it can no longer authenticate, and its tokens stop verifying here at
    /// once and on every instance within a second.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, `AlreadyRevoked`, or a store failure.
    pub async fn revoke(&self, actor: &Actor, id: &DeviceId) -> Result<Device, DeviceError> {
        self.get(actor, id).await?;
        let now = self.ports.clock.now();
        let result = self.ports.devices.revoke(id, now).await;
        if matches!(result, Ok(_) | Err(ChangeDeviceError::AlreadyRevoked)) {
            self.forget(id).await;
        }
        let device = result?;
        tracing::info!(device_id = %id, "device revoked");
        Ok(device)
    }

    /// The devices of an organization the actor manages.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, or a store failure.
    pub async fn list(
        &self,
        actor: &Actor,
        org: OrganizationId,
    ) -> Result<Vec<Device>, DeviceError> {
        self.ports.orgs.authorize(actor, org).await?;
        Ok(self.ports.devices.list(org).await?)
    }

    /// One device, if the actor manages its organization.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, or a store failure.
    pub async fn get(&self, actor: &Actor, id: &DeviceId) -> Result<Device, DeviceError> {
        let device = self
            .ports
            .devices
            .find(id)
            .await?
            .ok_or(DeviceError::NotFound)?;
        self.ports
            .orgs
            .authorize(actor, device.organization_id)
            .await?;
        Ok(device)
    }

    fn note_seen(&self, id: DeviceId, at: DateTime<Utc>) {
        self.seen.note(id, at);
    }

    /// Writes the `last_authenticated_at` times gathered since the last call, in one batch;
    /// on failure they are kept for the next call.
    ///
    /// # Errors
    /// A store failure.
    pub async fn flush_seen(&self) -> Result<usize, DeviceError> {
        Ok(self
            .seen
            .flush(|batch| {
                let devices = self.ports.devices.clone();
                async move {
                    let result = devices.record_authentications(&batch).await;
                    (batch, result)
                }
            })
            .await?)
    }
}
