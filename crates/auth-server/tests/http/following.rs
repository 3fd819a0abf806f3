//! An instance that cannot follow the event log must not trust its caches: it reports not
//! ready, and verifications read through to the database. Here its listening connection is
//! killed and new connections to the database are refused (the pool keeps the ones it has),
//! and a key is revoked behind its back, in the database alone: a cache trusted while blind
//! would still call the key valid.

use std::time::Duration;

use auth_infra::test_support::TestDb;
use secrecy::SecretString;
use serde_json::json;

use crate::api_keys::{create_key, verify};
use crate::common::{TestApp, str_field, test_config};
use crate::devices::owner_and_org;

async fn wait_ready(app: &TestApp, status: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if app.get("/health/ready").await.status() == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health/ready never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifications_read_through_while_the_log_cannot_be_followed() {
    let db = TestDb::new().await;
    let mut config = test_config();
    config.db.url = Some(SecretString::from(db.url().to_owned()));
    let app = TestApp::serve(config, None).await;
    wait_ready(&app, 200).await;
    let (token, org) = owner_and_org(&app).await;
    let created = create_key(&app, &token, &org, json!(["read"])).await;
    let (id, key) = (str_field(&created, "id"), str_field(&created, "key"));
    assert_eq!(
        verify(&app, key, json!([])).await["valid"],
        true,
        "cached now"
    );

    let held = db.hold().await;
    db.allow_connections(false).await;
    held.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'auth-server event log listener';",
    )
    .await;
    wait_ready(&app, 503).await;

    held.execute(&format!(
        "UPDATE api_keys SET revoked_at = now() WHERE id = '{id}'"
    ))
    .await;
    let answer = verify(&app, key, json!([])).await;
    assert_eq!(answer["valid"], false, "read through: {answer}");
    assert_eq!(answer["error"], "REVOKED");

    db.allow_connections(true).await;
    wait_ready(&app, 200).await;
    assert_eq!(verify(&app, key, json!([])).await["error"], "REVOKED");
}
