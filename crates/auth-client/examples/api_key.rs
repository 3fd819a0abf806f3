//! API keys: an organization issues a key; a receiving service verifies it through the
//! client's cache, with scopes; a revocation, and how long the cache may still accept it.
//!
//! ```bash
//! cargo run -p auth-client --example api_key        # AUTH_URL defaults to http://localhost:8000
//! ```

use std::time::Duration;

use auth_client::{
    ApiKeyCacheConfig, ApiKeyVerdict, AuthClient, Credential, ExposeSecret as _, NewApiKey,
    NewUser, SecretString,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("AUTH_URL").unwrap_or_else(|_| "http://localhost:8000".into());
    let client = AuthClient::builder(&url)
        .api_key_cache(Some(ApiKeyCacheConfig {
            ttl: Duration::from_secs(60),
            ..ApiKeyCacheConfig::default()
        }))
        .build()?;

    // An owner and an organization.
    let email = format!("keys.{}@example.com", uuid::Uuid::now_v7().simple());
    let password = SecretString::from("correct horse battery staple");
    client
        .register(&NewUser::new(email.clone(), password.clone()))
        .await?;
    let owner = client.login(&email, &password).await?;
    let org = client
        .create_organization(&owner.access_token, "Acme")
        .await?;
    println!("organization {} ({})", org.name, org.id);

    let created = client
        .create_api_key(
            Credential::Bearer(&owner.access_token),
            &NewApiKey::new(org.id, "billing worker", ["invoices:read"]).expires_in_days(90),
        )
        .await?;
    println!(
        "created key {} ({}), scopes {:?}, expires {:?}",
        created.prefix, created.id, created.scopes, created.expires_at
    );
    let key = created.key.expose_secret();

    // What a receiving service does on every request.
    for scopes in [
        &["invoices:read"][..],
        &["invoices:read"],
        &["invoices:write"],
    ] {
        match client.verify_api_key(key, scopes).await? {
            ApiKeyVerdict::Valid(k) => println!(
                "verify {scopes:?}: valid, key {} of organization {}",
                k.key_id, k.organization_id
            ),
            ApiKeyVerdict::Rejected(why) => println!("verify {scopes:?}: refused, {}", why.code()),
            ApiKeyVerdict::RateLimited(window) => println!(
                "verify {scopes:?}: over its rate limit, retry in {} s",
                window.reset_seconds
            ),
        }
    }
    if let Some(cache) = client.metrics().api_key_cache {
        println!(
            "cache: {} hits, {} misses, hit rate {:.2}",
            cache.hits,
            cache.misses,
            cache.hit_rate()
        );
    }

    let batch = client
        .verify_api_keys(&[(key, &["invoices:read"][..]), ("ak_live_made_up", &[])])
        .await?;
    println!(
        "batch: {:?}",
        batch
            .iter()
            .map(ApiKeyVerdict::is_valid)
            .collect::<Vec<_>>()
    );

    client
        .revoke_api_key(Credential::Bearer(&owner.access_token), created.id)
        .await?;
    println!("revoked the key");
    println!(
        "  cached verdict (up to the cache TTL, 60 s here): valid = {}",
        client.verify_api_key(key, &[]).await?.is_valid()
    );
    println!(
        "  the service now: {:?}",
        client.verify_api_key_remote(key, &[]).await?
    );
    client.forget_api_key(key).await;
    println!(
        "  after forget_api_key: {:?}",
        client.verify_api_key(key, &[]).await?
    );

    let listed = client
        .list_api_keys(Credential::Bearer(&owner.access_token), org.id, true)
        .await?;
    for k in listed {
        println!(
            "  listed: {} {:?} revoked at {:?}",
            k.prefix, k.status, k.revoked_at
        );
    }
    Ok(())
}
