//! Users and access tokens: register, log in, verify the access token locally and through
//! the service, refresh, log out, and see what local verification cannot see.
//!
//! ```bash
//! cargo run -p auth-client --example jwt_auth        # AUTH_URL defaults to http://localhost:8000
//! ```
//!
//! Against a service signing with HS256 (its default) local verification needs the shared
//! secret: set `AUTH_JWT_SECRET` to the service's `JWT_SECRET_KEY`, or run the service with
//! `JWT_ALGORITHM=EdDSA` and a key so that it publishes a JWKS (see docs/client.md).

use auth_client::{
    AuthClient, ExposeSecret as _, NewUser, SecretString, TokenConfig, TokenError,
    TokenVerification,
};

fn short(secret: &SecretString) -> String {
    let s = secret.expose_secret();
    format!("{}… ({} chars)", s.get(..12).unwrap_or(s), s.len())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("AUTH_URL").unwrap_or_else(|_| "http://localhost:8000".into());
    let tokens = TokenConfig {
        hs256_secret: std::env::var("AUTH_JWT_SECRET")
            .ok()
            .map(SecretString::from),
        ..TokenConfig::default()
    };
    let client = AuthClient::builder(&url).tokens(tokens).build()?;

    let email = format!("jwt.{}@example.com", uuid::Uuid::now_v7().simple());
    let password = SecretString::from("correct horse battery staple");
    let user = client
        .register(&NewUser::new(email.clone(), password.clone()).display_name("Example User"))
        .await?;
    println!("registered {} as {}", user.email, user.id);

    let pair = client.login(&email, &password).await?;
    println!(
        "logged in: access token {}, expires in {} s",
        short(&pair.access_token),
        pair.expires_in
    );
    let token = pair.access_token.expose_secret();

    match client
        .verify_access_token_with(token, TokenVerification::Local)
        .await
    {
        Ok(user) => println!(
            "verified locally: user {}, session {}, expires {}",
            user.user_id, user.session_id, user.expires_at
        ),
        Err(TokenError::NoLocalKeys) => println!(
            "local verification unavailable: the service signs with HS256 and publishes no \
             keys (set AUTH_JWT_SECRET, or run it with JWT_ALGORITHM=EdDSA)"
        ),
        Err(err) => return Err(err.into()),
    }
    let verified = client.verify_access_token(token).await?;
    println!(
        "verified the default way (Auto): by {:?}",
        verified.verified_by
    );
    let remote = client
        .verify_access_token_with(token, TokenVerification::Remote)
        .await?;
    println!(
        "verified by the service: user {} <{}>",
        remote.user_id,
        remote.email.as_deref().unwrap_or("?")
    );

    let me = client.me(&pair.access_token).await?;
    println!(
        "/users/me: {} ({})",
        me.email,
        me.display_name.as_deref().unwrap_or("-")
    );

    let refreshed = client.refresh(&pair.refresh_token).await?;
    println!(
        "refreshed: new access token {}",
        short(&refreshed.access_token)
    );
    match client.refresh(&pair.refresh_token).await {
        Ok(_) => println!("unexpected: a spent refresh token worked"),
        Err(err) => println!("the spent refresh token again: {err}"),
    }

    let again = client.login(&email, &password).await?;
    client.logout(&again.refresh_token).await?;
    let token = again.access_token.expose_secret();
    println!("logged out a session; its access token now:");
    match client.verify_access_token(token).await {
        Ok(user) => println!(
            "  default ({:?}): still accepted until it expires",
            user.verified_by
        ),
        Err(err) => println!("  default: {err}"),
    }
    match client
        .verify_access_token_with(token, TokenVerification::Remote)
        .await
    {
        Ok(_) => println!("  service: accepted"),
        Err(err) => println!("  service: {err}"),
    }

    let metrics = client.metrics();
    println!(
        "client metrics: {} calls, error rate {:.2}, breaker {:?}, {} JWKS fetches, {} local / {} remote verifications",
        metrics.calls(),
        metrics.error_rate(),
        metrics.breaker.state,
        metrics.tokens.jwks_fetches,
        metrics.tokens.local_accepted + metrics.tokens.local_rejected,
        metrics.tokens.remote
    );
    for op in &metrics.operations {
        println!(
            "  {:<16} calls {:>2}  ok {:>2}  4xx {:>2}  failed {}  retries {}  mean {:?}  p99 ≤ {:?}",
            op.operation.name(),
            op.calls,
            op.ok,
            op.api_errors,
            op.failures,
            op.retries,
            op.latency.mean(),
            op.latency.quantile(0.99)
        );
    }
    Ok(())
}
