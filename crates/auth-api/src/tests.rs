//! The wire strings, the secrets' `Debug`, and round-trips of representative bodies.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::*;

fn wire<T: Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap()
}

fn read<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

/// A body read back from what it writes is itself, and what it writes is `expected`.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    body: &T,
    expected: Value,
) {
    assert_eq!(wire(body), expected);
    assert_eq!(&read::<T>(expected), body);
}

#[test]
fn enums_are_the_contract_strings() {
    for (value, text) in [
        (wire(ApiKeyStatus::Active), "active"),
        (wire(ApiKeyStatus::Revoked), "revoked"),
        (wire(ApiKeyStatus::Expired), "expired"),
        (wire(DeviceStatus::Active), "active"),
        (wire(DeviceStatus::Revoked), "revoked"),
        (wire(Role::Owner), "owner"),
        (wire(Role::Admin), "admin"),
        (wire(Role::Member), "member"),
        (wire(TokenType::Bearer), "Bearer"),
        (wire(TokenKind::User), "user"),
        (wire(TokenKind::Device), "device"),
        (wire(TokenRejection::Invalid), "INVALID"),
        (wire(TokenRejection::Expired), "EXPIRED"),
        (wire(TokenRejection::Revoked), "REVOKED"),
        (wire(ApiKeyRejection::Invalid), "INVALID"),
        (wire(ApiKeyRejection::Revoked), "REVOKED"),
        (wire(ApiKeyRejection::Expired), "EXPIRED"),
        (
            wire(ApiKeyRejection::InsufficientScope),
            "INSUFFICIENT_SCOPE",
        ),
        (wire(HealthStatus::Healthy), "healthy"),
        (wire(HealthStatus::Degraded), "degraded"),
        (wire(HealthStatus::Unhealthy), "unhealthy"),
        (wire(ProbeStatus::Ok), "ok"),
        (wire(ProbeStatus::Unavailable), "unavailable"),
    ] {
        assert_eq!(value, json!(text));
    }
    assert_eq!(ApiKeyStatus::Expired.as_str(), "expired");
    assert_eq!(Role::Admin.to_string(), "admin");
    assert_eq!(
        ApiKeyRejection::InsufficientScope.code(),
        "INSUFFICIENT_SCOPE"
    );
    assert_eq!(TokenRejection::Revoked.code(), "REVOKED");
    assert!(TokenType::Bearer == "Bearer");
}

#[test]
fn values_of_a_newer_service_are_read_not_refused() {
    assert_eq!(read::<Role>(json!("auditor")), Role::Unknown);
    assert_eq!(
        read::<ApiKeyStatus>(json!("suspended")),
        ApiKeyStatus::Unknown
    );
    assert_eq!(read::<DeviceStatus>(json!("lost")), DeviceStatus::Unknown);
    assert_eq!(
        read::<HealthStatus>(json!("starting")),
        HealthStatus::Unknown
    );
    assert_eq!(
        read::<ApiKeyRejection>(json!("KEY_SUSPENDED")),
        ApiKeyRejection::Invalid
    );
    assert_eq!(
        read::<ApiKeyRejection>(json!("RATE_LIMITED")),
        ApiKeyRejection::RateLimited
    );
    assert_eq!(
        read::<TokenRejection>(json!("NOT_YET_VALID")),
        TokenRejection::Invalid
    );
    // Never sent: writing one is an error, not a made-up string.
    assert!(serde_json::to_value(Role::Unknown).is_err());
}

#[test]
fn secrets_are_on_the_wire_and_never_in_debug_output() {
    let pair: TokenResponse = TokenResponse {
        access_token: Redacted::from("eyJ.access"),
        refresh_token: Redacted::from("rt_secret"),
        token_type: TokenType::Bearer,
        expires_in: 900,
        refresh_expires_in: 2_592_000,
        user: TokenUser {
            id: Uuid::nil(),
            email: "ada@example.com".into(),
        },
    };
    let debug = format!("{pair:?}");
    assert!(
        !debug.contains("eyJ.access") && !debug.contains("rt_secret"),
        "{debug}"
    );
    assert_eq!(
        wire(&pair),
        json!({
            "access_token": "eyJ.access", "refresh_token": "rt_secret", "token_type": "Bearer",
            "expires_in": 900, "refresh_expires_in": 2_592_000,
            "user": {"id": Uuid::nil(), "email": "ada@example.com"},
        })
    );
    let back: TokenResponse = read(wire(&pair));
    assert_eq!(back.refresh_token.expose(), "rt_secret");

    let login = LoginRequest {
        email: "ada@example.com".into(),
        password: Redacted::from("hunter2hunter2"),
    };
    assert!(!format!("{login:?}").contains("hunter2"));
    round_trip(
        &login,
        json!({"email": "ada@example.com", "password": "hunter2hunter2"}),
    );

    let rotated: RotatedSecret = RotatedSecret {
        device_id: "frame-1".into(),
        device_secret: Redacted::from("ds_secret"),
    };
    assert!(!format!("{rotated:?}").contains("ds_secret"));
    assert_eq!(
        wire(&rotated),
        json!({"device_id": "frame-1", "device_secret": "ds_secret"})
    );
}

#[test]
fn optional_members_are_left_out_not_null() {
    round_trip(
        &RegisterDevice::new("frame-1", Uuid::nil()),
        json!({"device_id": "frame-1", "organization_id": Uuid::nil()}),
    );
    round_trip(
        &CreateKey::new(Uuid::nil(), "billing", ["invoices:read"]).expires_in_days(30),
        json!({"organization_id": Uuid::nil(), "name": "billing", "scopes": ["invoices:read"], "expires_in_days": 30}),
    );
    round_trip(
        &KeyVerification {
            error: Some(ApiKeyRejection::Revoked),
            ..KeyVerification::default()
        },
        json!({"valid": false, "error": "REVOKED"}),
    );
    round_trip(
        &VerifyTokenResponse {
            valid: true,
            token_type: Some(TokenKind::Device),
            device_id: Some("frame-1".into()),
            organization_id: Some(Uuid::nil()),
            ..VerifyTokenResponse::default()
        },
        json!({"valid": true, "token_type": "device", "device_id": "frame-1", "organization_id": Uuid::nil()}),
    );
    round_trip(
        &Probe {
            status: ProbeStatus::Unavailable,
        },
        json!({"status": "unavailable"}),
    );
}

#[test]
fn problems_round_trip_and_partial_ones_are_read() {
    let problem = Problem {
        problem_type: "about:blank".into(),
        title: "Unprocessable Entity".into(),
        status: 422,
        detail: "request body failed validation".into(),
        code: ErrorCode::ValidationFailed,
        request_id: "r1".into(),
        errors: vec![FieldError::new("password", "too_short", "too short")],
    };
    round_trip(
        &problem,
        json!({
            "type": "about:blank", "title": "Unprocessable Entity", "status": 422,
            "detail": "request body failed validation", "code": "VALIDATION_FAILED",
            "request_id": "r1",
            "errors": [{"field": "password", "code": "too_short", "message": "too short"}],
        }),
    );
    let partial: Problem = read(json!({"code": "RATE_LIMITED"}));
    assert_eq!(partial.code, "RATE_LIMITED");
    assert!(partial.errors.is_empty() && partial.title.is_empty());
    // No field errors: no `errors` member.
    assert!(wire(Problem::default()).get("errors").is_none());
}

#[test]
fn a_batch_read_as_free_json_never_shows_its_keys() {
    let batch: VerifyBatch<Value> = read(json!({"items": [{"key": "ak_live_secret"}]}));
    assert_eq!(format!("{batch:?}"), "VerifyBatch { items: 1 }");
}
