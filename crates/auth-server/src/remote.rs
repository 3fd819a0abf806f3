//! The `api-keys` and `devices` commands run against a running service instead of the
//! database (`--url URL` or `AUTH_URL`), through its API with `auth-client`, and
//! `healthcheck`.
//!
//! The caller is an organization API key holding the `admin` scope, read from `AUTH_API_KEY`
//! only: never from a flag, since a command line is visible to every user of the machine. The
//! API lets such a key manage its own organization's keys and devices, so every `api-keys`
//! and `devices` command works remotely, within that organization (another organization's
//! keys and devices answer "no such ..."). Arguments are checked as in the database mode, and
//! the output is printed by the same code ([`crate::output`]), from the same wire types.

use std::time::Duration;

use auth_api::Redacted;
use auth_client::{AuthClient, Credential, Error, ErrorCode, RetryPolicy};
use auth_core::model::ApiKeyId;
use secrecy::{ExposeSecret as _, SecretString};

use crate::admin::{self, ApiKeysCommand, DevicesCommand};
use crate::cli::CliError;
use crate::output;

/// The environment variable that holds the caller's API key.
pub const API_KEY_VARIABLE: &str = "AUTH_API_KEY";

/// How long one call may take (the client retries idempotent calls on transient failures).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A running service and the key that manages an organization at it.
pub struct Remote {
    client: AuthClient,
    key: SecretString,
    url: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Which commands failed, for the words of their errors.
#[derive(Debug, Clone, Copy)]
enum Area {
    Keys,
    Devices,
}

impl Remote {
    /// The service at `url`, called with the key in `AUTH_API_KEY`.
    ///
    /// # Errors
    /// No key in the environment, or a URL the client cannot use.
    pub fn connect(url: &str) -> Result<Self, CliError> {
        let key = std::env::var(API_KEY_VARIABLE)
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                CliError::Input(format!(
                    "{API_KEY_VARIABLE} is not set: with --url (or AUTH_URL) the command runs \
                     against the service at {url}, as an organization API key holding the \
                     `admin` scope, which is read from {API_KEY_VARIABLE} (never from a flag)"
                ))
            })?;
        Ok(Self {
            client: client(url, RetryPolicy::default())?,
            key: SecretString::from(key),
            url: url.to_owned(),
        })
    }

    fn manager(&self) -> Credential<'_> {
        Credential::ApiKey(&self.key)
    }

    /// The operator's message for a failed call.
    fn failure(&self, err: &Error, area: Area) -> CliError {
        let url = &self.url;
        let Some(api) = err.api() else {
            return CliError::Failed(format!(
                "the service at {url} did not answer: {}",
                auth_core::ErrorChain(err)
            ));
        };
        let message = match (&api.code, area) {
            (ErrorCode::Unauthenticated, _) => format!(
                "the service at {url} refused {API_KEY_VARIABLE}: {} (it must be an \
                 organization API key holding the `admin` scope)",
                api.detail
            ),
            (ErrorCode::Forbidden, _) => format!(
                "{API_KEY_VARIABLE} may not manage keys and devices: it lacks the `admin` scope \
                 ({})",
                api.detail
            ),
            (ErrorCode::NotFound, Area::Keys) => {
                format!(
                    "{} (an organization key sees its own only)",
                    admin::NO_SUCH_KEY
                )
            }
            (ErrorCode::NotFound, Area::Devices) => format!(
                "{} (an organization key sees its own only)",
                admin::NO_SUCH_DEVICE
            ),
            (ErrorCode::AlreadyRevoked, Area::Keys) => admin::KEY_ALREADY_REVOKED.into(),
            (ErrorCode::AlreadyRevoked, Area::Devices) => admin::DEVICE_ALREADY_REVOKED.into(),
            (ErrorCode::DeviceExists, _) => admin::DEVICE_EXISTS.into(),
            (ErrorCode::KeyExpired, _) => admin::KEY_EXPIRED.into(),
            (ErrorCode::ValidationFailed, _) if !api.errors.is_empty() => {
                let fields: Vec<String> = api
                    .errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect();
                format!("the service refused the input: {}", fields.join("; "))
            }
            _ => format!("the service at {url} answered {api}"),
        };
        CliError::Failed(message)
    }
}

fn client(url: &str, retry: RetryPolicy) -> Result<AuthClient, CliError> {
    AuthClient::builder(url)
        .timeout(CALL_TIMEOUT)
        .user_agent(concat!("auth-server/", env!("CARGO_PKG_VERSION")))
        .retry(retry)
        // One command, a few calls: nothing to protect, nothing worth caching.
        .circuit_breaker(None)
        .api_key_cache(None)
        .build()
        .map_err(|e| CliError::Input(format!("--url {url}: {}", auth_core::ErrorChain(&e))))
}

/// Runs an `api-keys` command at the service.
///
/// # Errors
/// [`CliError`].
pub async fn api_keys(remote: &Remote, cmd: ApiKeysCommand, json: bool) -> Result<(), CliError> {
    let client = &remote.client;
    let fail = |e: Error| remote.failure(&e, Area::Keys);
    match cmd {
        ApiKeysCommand::Create {
            organization,
            name,
            scopes,
            expires_in_days,
            meta,
            external_id,
        } => {
            let new = admin::new_key(
                &organization,
                &name,
                &scopes,
                expires_in_days,
                meta.as_deref(),
                external_id.as_deref(),
            )?;
            let mut body = auth_client::NewApiKey::new(
                new.organization_id.as_uuid(),
                new.name.as_str(),
                new.scopes.as_slice().iter().map(|s| s.as_str()),
            );
            body.expires_in_days = new.expires_in_days;
            body.meta = new.meta.map(|m| m.to_value());
            body.external_id = new.external_id.map(|e| e.as_str().to_owned());
            let created = client
                .create_api_key(remote.manager(), &body)
                .await
                .map_err(fail)?;
            output::created_key(&created.map_secret(shown), json)
        }
        ApiKeysCommand::List {
            organization,
            include_revoked: all,
        } => {
            let org: auth_core::model::OrganizationId =
                admin::parse_id("--organization", &organization)?;
            let items = client
                .list_api_keys(remote.manager(), org.as_uuid(), all)
                .await
                .map_err(fail)?;
            output::keys(&items, json)
        }
        ApiKeysCommand::Info { id } => {
            let id: ApiKeyId = admin::parse_id("ID", &id)?;
            let key = client
                .get_api_key(remote.manager(), id.as_uuid())
                .await
                .map_err(fail)?;
            output::key(&key, json)
        }
        ApiKeysCommand::Revoke { id } => {
            let id: ApiKeyId = admin::parse_id("ID", &id)?;
            let key = client
                .revoke_api_key(remote.manager(), id.as_uuid())
                .await
                .map_err(fail)?;
            output::key(&key, json)
        }
        ApiKeysCommand::Rotate { id } => {
            let id: ApiKeyId = admin::parse_id("ID", &id)?;
            let created = client
                .rotate_api_key(remote.manager(), id.as_uuid())
                .await
                .map_err(fail)?;
            output::created_key(&created.map_secret(shown), json)
        }
        ApiKeysCommand::Usage {
            id,
            from,
            to,
            granularity,
        } => {
            let id: ApiKeyId = admin::parse_id("ID", &id)?;
            // Checked here as the service checks them; sent as given.
            let (from, to, granularity) = admin::usage_range(
                from.as_deref(),
                to.as_deref(),
                &granularity,
                chrono::Utc::now(),
            )?;
            let granularity = match granularity {
                auth_core::model::UsageGranularity::Hour => auth_api::UsageGranularity::Hour,
                auth_core::model::UsageGranularity::Day => auth_api::UsageGranularity::Day,
            };
            let usage = client
                .api_key_usage(
                    remote.manager(),
                    id.as_uuid(),
                    Some(from),
                    Some(to),
                    granularity,
                )
                .await
                .map_err(fail)?;
            output::usage(&usage, json)
        }
    }
}

/// Runs a `devices` command at the service.
///
/// # Errors
/// [`CliError`].
pub async fn devices(remote: &Remote, cmd: DevicesCommand, json: bool) -> Result<(), CliError> {
    let client = &remote.client;
    let fail = |e: Error| remote.failure(&e, Area::Devices);
    match cmd {
        DevicesCommand::Register {
            organization,
            device_id,
            name,
            metadata,
        } => {
            let new = admin::new_device(
                &organization,
                &device_id,
                name.as_deref(),
                metadata.as_deref(),
            )?;
            let mut body =
                auth_client::NewDevice::new(new.id.as_str(), new.organization_id.as_uuid());
            body.name = new.name.map(|n| n.as_str().to_owned());
            body.metadata = (!new.metadata.as_map().is_empty()).then(|| new.metadata.to_value());
            let registered = client
                .register_device(remote.manager(), &body)
                .await
                .map_err(fail)?;
            output::registered_device(&registered.map_secret(shown), json)
        }
        DevicesCommand::List { organization } => {
            let org: auth_core::model::OrganizationId =
                admin::parse_id("--organization", &organization)?;
            let items = client
                .list_devices(remote.manager(), org.as_uuid())
                .await
                .map_err(fail)?;
            output::devices(&items, json)
        }
        DevicesCommand::Info { device_id } => {
            let id = admin::device_id(&device_id)?;
            let device = client
                .get_device(remote.manager(), id.as_str())
                .await
                .map_err(fail)?;
            output::device(&device, json)
        }
        DevicesCommand::RotateSecret { device_id } => {
            let id = admin::device_id(&device_id)?;
            let rotated = client
                .rotate_device_secret(remote.manager(), id.as_str())
                .await
                .map_err(fail)?;
            output::rotated_secret(&rotated.map_secret(shown), json)
        }
        DevicesCommand::Revoke { device_id } => {
            let id = admin::device_id(&device_id)?;
            let device = client
                .revoke_device(remote.manager(), id.as_str())
                .await
                .map_err(fail)?;
            output::device(&device, json)
        }
    }
}

/// `healthcheck`: whether the service at `url` answers ready (`GET /health/ready` 200).
/// One attempt, no retries: the orchestrator that runs it retries.
///
/// # Errors
/// Not ready, or no answer; the message says which.
pub async fn healthcheck(url: &str, timeout: Duration) -> Result<(), CliError> {
    let client = AuthClient::builder(url)
        .timeout(timeout)
        .connect_timeout(timeout)
        .retry(RetryPolicy::disabled())
        .circuit_breaker(None)
        .api_key_cache(None)
        .build()
        .map_err(|e| CliError::Input(format!("--url {url}: {}", auth_core::ErrorChain(&e))))?;
    match client.ready().await {
        Ok(true) => Ok(()),
        Ok(false) => Err(CliError::Failed(format!(
            "{url}/health/ready answered 503: the service is not ready"
        ))),
        Err(err) => Err(CliError::Failed(format!(
            "{url}/health/ready: {}",
            auth_core::ErrorChain(&err)
        ))),
    }
}

/// A secret the client read, held as the output code prints it.
fn shown(secret: SecretString) -> Redacted {
    Redacted::new(secret.expose_secret().to_owned())
}
