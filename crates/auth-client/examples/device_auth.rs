//! Devices: an organization registers a device; the device keeps a token with a
//! `DeviceSession`; a receiving service verifies it; the secret is rotated, then the device
//! revoked.
//!
//! ```bash
//! cargo run -p auth-client --example device_auth        # AUTH_URL defaults to http://localhost:8000
//! ```

use std::sync::Arc;

use auth_client::{
    AuthClient, Credential, DeviceSession, ExposeSecret as _, NewDevice, NewUser, SecretString,
    TokenVerification,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("AUTH_URL").unwrap_or_else(|_| "http://localhost:8000".into());
    let client = AuthClient::new(&url)?;

    // The organization's side: an owner registers the device.
    let email = format!("devices.{}@example.com", uuid::Uuid::now_v7().simple());
    let password = SecretString::from("correct horse battery staple");
    client
        .register(&NewUser::new(email.clone(), password.clone()))
        .await?;
    let owner = client.login(&email, &password).await?;
    let manager = Credential::Bearer(&owner.access_token);
    let org = client
        .create_organization(&owner.access_token, "Acme")
        .await?;
    let device_id = format!("frame-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let registered = client
        .register_device(
            manager,
            &NewDevice::new(device_id.clone(), org.id)
                .name("Kitchen frame")
                .metadata(serde_json::json!({"model": "PF-10"})),
        )
        .await?;
    println!(
        "registered device {} ({}) in organization {}",
        registered.device_id, registered.name, registered.organization_id
    );

    // The device's side: id and secret, a session that keeps the token renewed.
    let session = Arc::new(DeviceSession::new(
        client.clone(),
        device_id.clone(),
        registered.device_secret.clone(),
    ));
    let token = session.token().await?;
    let again = session.token().await?;
    println!(
        "device token obtained; asked twice, authenticated {} time(s)",
        client
            .metrics()
            .operation(auth_client::Operation::AuthenticateDevice)
            .map_or(0, |o| o.calls)
    );
    assert_eq!(token.expose_secret(), again.expose_secret());

    // A receiving service.
    let verified = client.verify_device_token(token.expose_secret()).await?;
    println!(
        "verified ({:?}): device {} of organization {}, expires {}",
        verified.verified_by, verified.device_id, verified.organization_id, verified.expires_at
    );

    // Rotation: the old secret stops working; the held token keeps working.
    let rotated = client.rotate_device_secret(manager, &device_id).await?;
    session.invalidate().await;
    match session.token().await {
        Ok(_) => println!("unexpected: the old secret still works"),
        Err(err) => println!("after rotation, with the old secret: {err}"),
    }
    println!(
        "refused, waiting for a new secret: {}",
        session.is_refused().await
    );
    session.set_secret(rotated.device_secret).await;
    let token = session.token().await?;
    println!("with the new secret: a new token");

    // Revocation: the service refuses the device's tokens at once.
    let revoked = client.revoke_device(manager, &device_id).await?;
    println!("revoked: status {:?}", revoked.status);
    match client
        .verify_device_token_with(token.expose_secret(), TokenVerification::Remote)
        .await
    {
        Ok(_) => println!("unexpected: the service still accepts the token"),
        Err(err) => println!("the service now: {err}"),
    }
    for d in client.list_devices(manager, org.id).await? {
        println!(
            "  listed: {} {:?} last authenticated {:?}",
            d.device_id, d.status, d.last_authenticated_at
        );
    }
    Ok(())
}
