//! A device's side of authentication: it holds the device id and secret, keeps the current
//! device token in memory, and authenticates again before the token expires.
//!
//! [`DeviceSession::token`] returns the held token until `renew_at` of its lifetime has passed
//! (90 % by default), then authenticates again; concurrent callers share one
//! authentication. If renewing fails for a transient reason while the held token is still
//! valid, that token is returned and the next call tries again. After
//! `401 INVALID_DEVICE_CREDENTIALS` (secret rotated, device revoked) the session stops
//! asking: every call returns that error until [`DeviceSession::set_secret`] gives it a new
//! secret, so a device in the field does not hammer the service with a secret that can no
//! longer work.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::sync::Mutex;

use crate::client::AuthClient;
use crate::error::{Error, ErrorCode};

/// Settings of a [`DeviceSession`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceSessionConfig {
    /// Share of a token's lifetime after which it is renewed (default 0.9). `0.0` renews on
    /// every call; `1.0` only at expiry.
    pub renew_at: f64,
    /// A held token is not returned when it expires within this margin, renewal failing or
    /// not (default 5 s): it would expire on its way.
    pub expiry_margin: Duration,
}

impl Default for DeviceSessionConfig {
    fn default() -> Self {
        Self {
            renew_at: 0.9,
            expiry_margin: Duration::from_secs(5),
        }
    }
}

struct Held {
    token: SecretString,
    renew_after: Instant,
    expires_at: Instant,
}

struct State {
    secret: SecretString,
    held: Option<Held>,
    refused: Option<Error>,
}

/// A device's credentials and current token. Share it (`Arc`) between the tasks of the device.
pub struct DeviceSession {
    client: AuthClient,
    device_id: String,
    config: DeviceSessionConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for DeviceSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSession")
            .field("device_id", &self.device_id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DeviceSession {
    /// A session for `device_id` with its `secret`, default settings.
    #[must_use]
    pub fn new(client: AuthClient, device_id: impl Into<String>, secret: SecretString) -> Self {
        Self::with_config(client, device_id, secret, DeviceSessionConfig::default())
    }

    /// A session with `config`.
    #[must_use]
    pub fn with_config(
        client: AuthClient,
        device_id: impl Into<String>,
        secret: SecretString,
        config: DeviceSessionConfig,
    ) -> Self {
        Self {
            client,
            device_id: device_id.into(),
            config: DeviceSessionConfig {
                renew_at: config.renew_at.clamp(0.0, 1.0),
                ..config
            },
            state: Mutex::new(State {
                secret,
                held: None,
                refused: None,
            }),
        }
    }

    /// The device id.
    #[must_use]
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// A valid device token, renewed when due.
    ///
    /// # Errors
    /// The error of the authentication when no held token is still usable; after
    /// `401 INVALID_DEVICE_CREDENTIALS`, that error without asking the service again.
    pub async fn token(&self) -> Result<SecretString, Error> {
        let mut state = self.state.lock().await;
        if let Some(refused) = &state.refused {
            return Err(refused.clone());
        }
        let now = Instant::now();
        if let Some(held) = &state.held
            && now < held.renew_after
        {
            return Ok(held.token.clone());
        }
        match self
            .client
            .authenticate_device(&self.device_id, &state.secret)
            .await
        {
            Ok(issued) => {
                let lifetime = Duration::from_secs(u64::try_from(issued.expires_in).unwrap_or(0));
                let renew_in = lifetime.mul_f64(self.config.renew_at);
                let token = issued.access_token.clone();
                state.held = Some(Held {
                    token: issued.access_token,
                    renew_after: now + renew_in,
                    expires_at: now + lifetime,
                });
                Ok(token)
            }
            Err(err) if err.is_code(&ErrorCode::InvalidDeviceCredentials) => {
                tracing::warn!(
                    device_id = %self.device_id,
                    "device credentials refused; waiting for a new secret"
                );
                state.held = None;
                state.refused = Some(err.clone());
                Err(err)
            }
            Err(err) => match &state.held {
                Some(held) if now + self.config.expiry_margin < held.expires_at => {
                    tracing::warn!(error = %err, "device token renewal failed; using the held token");
                    Ok(held.token.clone())
                }
                _ => Err(err),
            },
        }
    }

    /// Drops the held token, so that the next [`token`](Self::token) authenticates: call it
    /// when a service refused the token.
    pub async fn invalidate(&self) {
        self.state.lock().await.held = None;
    }

    /// Replaces the secret (after a rotation delivered to the device) and lifts a refusal.
    /// The held token stays in use until it is due for renewal.
    pub async fn set_secret(&self, secret: SecretString) {
        let mut state = self.state.lock().await;
        state.secret = secret;
        state.refused = None;
    }

    /// Whether the service refused the credentials and the session waits for a new secret.
    pub async fn is_refused(&self) -> bool {
        self.state.lock().await.refused.is_some()
    }
}
