//! A tiny relying service that follows the revocation stream and keeps verifying an API key,
//! an access token and a device token, printing each change of verdict with the time: revoke
//! the key, log the session out or rotate the device's secret (with curl, say) and watch each
//! be refused within a second, with no call to the auth service for the tokens.
//!
//! ```bash
//! AUTH_STREAM_KEY=ak_live_... WATCH_API_KEY=ak_live_... WATCH_ACCESS_TOKEN=eyJ... \
//!   WATCH_DEVICE_TOKEN=eyJ... cargo run -p auth-client --example revocation_follower
//! ```
//!
//! - `AUTH_URL`: the auth service (default `http://localhost:8000`);
//! - `AUTH_STREAM_KEY` (required): an organization's API key holding `revocations:read`;
//! - `WATCH_API_KEY`, `WATCH_ACCESS_TOKEN`, `WATCH_DEVICE_TOKEN`: what to keep verifying
//!   (each optional; the key through the client's cache, the tokens locally);
//! - `CHECK_EVERY_MS`: pause between two rounds (default 50).
//!
//! Ctrl-C prints the client's stream figures and stops.

use std::time::Duration;

use auth_client::{ApiKeyVerdict, AuthClient, SecretString, StreamState, TokenError};
use chrono::{SecondsFormat, Utc};

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn token_verdict<T>(result: Result<T, TokenError>, describe: impl Fn(&T) -> String) -> String {
    match result {
        Ok(verified) => format!("ACCEPTED {}", describe(&verified)),
        Err(TokenError::Rejected(why)) => format!("REFUSED {}", why.code()),
        Err(other) => format!("NO VERDICT ({other})"),
    }
}

/// Prints `verdict` for `what` if it differs from the last one.
fn report(what: &str, last: &mut Option<String>, verdict: String, client: &AuthClient) {
    if last.as_deref() == Some(verdict.as_str()) {
        return;
    }
    let lag = client
        .metrics()
        .revocations
        .last_lag
        .map(|lag| {
            format!(
                " (the stream's last revocation applied {:.1} ms after it was made)",
                lag.as_secs_f64() * 1000.0
            )
        })
        .filter(|_| verdict.starts_with("REFUSED") && last.is_some());
    println!("{}  {what:<13} {verdict}{}", now(), lag.unwrap_or_default());
    *last = Some(verdict);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("AUTH_URL").unwrap_or_else(|_| "http://localhost:8000".into());
    let stream_key = std::env::var("AUTH_STREAM_KEY")
        .map_err(|_| "AUTH_STREAM_KEY must name a key holding revocations:read")?;
    let watch = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (api_key, access, device) = (
        watch("WATCH_API_KEY"),
        watch("WATCH_ACCESS_TOKEN"),
        watch("WATCH_DEVICE_TOKEN"),
    );
    let every = Duration::from_millis(
        watch("CHECK_EVERY_MS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(50),
    );

    let client = AuthClient::builder(&url)
        .revocation_stream(SecretString::from(stream_key))
        .build()?;
    println!("{}  following {url}/api/v1/revocations/stream", now());
    if !client
        .wait_for_revocation_stream(Duration::from_secs(5))
        .await
    {
        println!(
            "{}  not connected yet: verifying as without the stream (cache TTL, token expiry) \
             until it is",
            now()
        );
    }

    let (mut last_state, mut last_key, mut last_access, mut last_device) = (None, None, None, None);
    let mut round = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = round.tick() => {}
        }
        let state = client.metrics().revocations.state;
        if last_state != Some(state) {
            let text = match state {
                StreamState::Connected => "connected: revocations honoured within a second",
                StreamState::Disconnected | StreamState::Connecting => {
                    "not connected: fallen back to the cache TTL and token expiry"
                }
                _ => "off",
            };
            println!("{}  stream        {text}", now());
            last_state = Some(state);
        }
        if let Some(key) = &api_key {
            let verdict = match client.verify_api_key(key, &[]).await {
                Ok(ApiKeyVerdict::Valid(k)) => {
                    format!(
                        "ACCEPTED key {} of organization {}",
                        k.key_id, k.organization_id
                    )
                }
                Ok(ApiKeyVerdict::Rejected(why)) => format!("REFUSED {}", why.code()),
                Ok(ApiKeyVerdict::RateLimited(window)) => {
                    format!("RATE LIMITED for {} s", window.reset_seconds)
                }
                Err(err) => format!("NO VERDICT ({err})"),
            };
            report("api key", &mut last_key, verdict, &client);
        }
        if let Some(token) = &access {
            let verdict = token_verdict(client.verify_access_token(token).await, |u| {
                format!(
                    "user {} session {} ({:?})",
                    u.user_id, u.session_id, u.verified_by
                )
            });
            report("access token", &mut last_access, verdict, &client);
        }
        if let Some(token) = &device {
            let verdict = token_verdict(client.verify_device_token(token).await, |d| {
                format!("device {} ({:?})", d.device_id, d.verified_by)
            });
            report("device token", &mut last_device, verdict, &client);
        }
    }

    let m = client.metrics().revocations;
    println!(
        "stream: {:?}, {} connection(s), {} reconnect(s), {} failed attempt(s), {} event(s) \
         applied, {} skipped, {} reset(s), last id {:?}, max lag {:.1} ms, {} token \
         verification(s) refused, {} cached key verdict(s) dropped",
        m.state,
        m.connections,
        m.reconnects,
        m.failed_attempts,
        m.events_applied,
        m.events_skipped,
        m.resets,
        m.last_event_id,
        m.max_lag.as_secs_f64() * 1000.0,
        m.tokens_refused,
        m.api_key_verdicts_dropped,
    );
    Ok(())
}
