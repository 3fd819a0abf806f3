//! The authentication core embedded in a program of one's own: accounts and sessions, an
//! organization with an API key, and a device, on the in-memory adapters. No database, no
//! HTTP, no async runtime of the core's choosing (any executor runs its `Send` futures; this
//! example happens to use tokio).
//!
//! ```text
//! cargo run -p auth-core --features memory --example embedded
//! ```
//!
//! The password hasher and token signer here are the core's fakes, which keep the rules but not
//! the cost: for production, implement [`PasswordHasher`] and [`TokenSigner`] over the
//! libraries of your choice, or take `auth_infra::password::BcryptHasher` and
//! `auth_infra::jwt::JwtSigner` (`auth-infra` with `default-features = false` brings no
//! Postgres). The stores are the supported in-memory adapters; for Postgres, the
//! `auth_infra::postgres` repositories implement the same ports.

use std::error::Error;
use std::sync::Arc;

use auth_core::memory::{FakeHasher, FakeSigner, MemoryStore, NoCache};
use auth_core::model::{
    ApiKeyName, ApiKeyPrefix, DeviceId, DeviceMetadata, DeviceSecret, Email, ExternalId,
    OrganizationName, Password, PasswordPolicy, Scope, Scopes,
};
use auth_core::ports::{PasswordHasher, TokenSigner};
use auth_core::system::{OsSecretGenerator, SystemClock};
use auth_core::{
    AccountConfig, AccountPorts, AccountService, Actor, ApiKeyPorts, ApiKeyService, ApiKeyVerdict,
    CacheInvalidator, DevicePorts, DeviceService, NewApiKey, NewDevice, OrganizationService,
    Registration,
};
use chrono::Duration;

/// The four services, wired once.
struct Core {
    accounts: AccountService,
    organizations: OrganizationService,
    api_keys: ApiKeyService,
    devices: DeviceService,
}

fn wire(store: &MemoryStore) -> Core {
    let clock = Arc::new(SystemClock);
    let secrets = Arc::new(OsSecretGenerator);
    let signer: Arc<dyn TokenSigner> = Arc::new(FakeSigner::new());
    let hasher: Arc<dyn PasswordHasher> = Arc::new(FakeHasher::new());
    // The in-memory stores are as fast as a cache and always current: no cache in front.
    let caches = CacheInvalidator {
        keys: Arc::new(NoCache),
        sessions: Arc::new(NoCache),
        devices: Arc::new(NoCache),
    };
    // Revocations reach every service built over this store through its event log.
    store.events.subscribe(Arc::new(caches.clone()));

    let organizations = OrganizationService::new(
        store.organizations.clone(),
        store.users.clone(),
        clock.clone(),
    );
    let accounts = AccountService::new(
        AccountPorts {
            users: store.users.clone(),
            sessions: store.sessions.clone(),
            hasher,
            signer: signer.clone(),
            clock: clock.clone(),
            secrets: secrets.clone(),
            session_cache: caches.sessions.clone(),
            attempts: store.login_attempts.clone(),
            accounts: store.accounts.clone(),
        },
        AccountConfig::default(),
    );
    let api_keys = ApiKeyService::new(
        ApiKeyPorts {
            keys: store.api_keys.clone(),
            orgs: organizations.clone(),
            cache: caches.keys.clone(),
            clock: clock.clone(),
            secrets: secrets.clone(),
        },
        ApiKeyPrefix::default(),
    );
    let devices = DeviceService::new(
        DevicePorts {
            devices: store.devices.clone(),
            orgs: organizations.clone(),
            cache: caches.devices.clone(),
            signer,
            clock,
            secrets,
        },
        Duration::hours(24),
    );
    Core {
        accounts,
        organizations,
        api_keys,
        devices,
    }
}

/// Walks the three kinds of credentials from issue to revocation.
async fn run() -> Result<(), Box<dyn Error>> {
    let core = wire(&MemoryStore::new());

    // Accounts and sessions.
    let email = Email::parse("ada@example.com")?;
    let user = core
        .accounts
        .register(
            Registration {
                email: email.clone(),
                password: PasswordPolicy::default().new_password("correct horse battery")?,
                display_name: None,
            },
            false,
        )
        .await?;
    let tokens = core
        .accounts
        .login(&email, &Password::presented("correct horse battery")?)
        .await?;
    let principal = core
        .accounts
        .verify(secrecy::ExposeSecret::expose_secret(&tokens.access_token))
        .await?;
    assert_eq!(principal.user.id, user.id);
    println!(
        "signed in {} (session {})",
        principal.user.email, principal.session.id
    );

    // An organization and one of its API keys.
    let organization = core
        .organizations
        .create(user.id, OrganizationName::parse("Analytical Engines")?)
        .await?;
    let owner = Actor::User {
        id: user.id,
        is_admin: false,
    };
    let issued = core
        .api_keys
        .create(
            &owner,
            NewApiKey {
                organization_id: organization.id,
                name: ApiKeyName::parse("billing")?,
                scopes: Scopes::new(vec![Scope::parse("invoices:read")?])?,
                expires_in_days: Some(90),
                meta: None,
                external_id: Some(ExternalId::parse("cus_4711")?),
                rate_limit: None,
                remaining: None,
                refill: None,
            },
        )
        .await?;
    // The plaintext is shown once; only its SHA-256 is stored.
    let key = issued.secret.expose().to_owned();
    let wanted = Scopes::new(vec![Scope::parse("invoices:read")?])?;
    let verdict = core.api_keys.verify(&key, &wanted).await?;
    assert!(matches!(verdict, ApiKeyVerdict::Valid(_)));
    println!("key {} verifies with invoices:read", issued.key.prefix);
    core.api_keys.revoke(&owner, issued.key.id).await?;
    let verdict = core.api_keys.verify(&key, &wanted).await?;
    assert!(matches!(verdict, ApiKeyVerdict::Revoked));
    println!("after revocation: {:?}", verdict.error_code());

    // A device: registered, exchanging its secret for a token, revoked.
    let registered = core
        .devices
        .register(
            &owner,
            NewDevice {
                id: DeviceId::parse("frame:hall-1")?,
                organization_id: organization.id,
                name: None,
                metadata: DeviceMetadata::default(),
            },
        )
        .await?;
    let secret = DeviceSecret::presented(registered.secret.expose());
    let device_token = core
        .devices
        .authenticate(&registered.device.id, &secret)
        .await?;
    let (claims, _) = core
        .devices
        .verify_token(secrecy::ExposeSecret::expose_secret(&device_token.token))
        .await?;
    println!(
        "device {} holds a token for {} s",
        claims.device_id, device_token.expires_in
    );
    core.devices.revoke(&owner, &registered.device.id).await?;
    let refused = core
        .devices
        .verify_token(secrecy::ExposeSecret::expose_secret(&device_token.token))
        .await;
    assert!(refused.is_err(), "a revoked device's token is refused");
    println!("after revocation the device token is refused");

    // Logging out ends the session at once.
    core.accounts.logout(&tokens.refresh_token).await?;
    let after = core
        .accounts
        .verify(secrecy::ExposeSecret::expose_secret(&tokens.access_token))
        .await;
    assert!(after.is_err(), "a logged-out session's token is refused");
    println!("after logout the access token is refused");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    run().await
}

#[cfg(test)]
mod tests {
    /// `cargo test -p auth-core` runs the example end to end, so it cannot rot.
    #[tokio::test]
    async fn the_example_runs() {
        if let Err(err) = super::run().await {
            panic!("the example failed: {err}");
        }
    }
}
