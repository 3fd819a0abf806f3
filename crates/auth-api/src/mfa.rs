//! The TOTP second factor: `/users/me/mfa/totp*` and `/auth/login/mfa`, and the login answer
//! that may ask for it.

use serde::{Deserialize, Serialize};

use crate::account::TokenResponse;
use crate::redacted::Redacted;

/// `POST /users/me/mfa/totp` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotpEnrolRequest {
    /// The caller's password.
    // Missing is read as empty, so the 422 names every missing field at once.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = String, format = Password, min_length = 1, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub password: Redacted,
}

/// A pending TOTP enrolment: put the secret in an authenticator app, then confirm with a
/// code. Shown once. `Debug` never shows the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotpEnrolment {
    /// The secret, base32 without padding (RFC 6238: SHA-1, 6 digits, 30 s).
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"))]
    pub secret: Redacted,
    /// The same as an `otpauth://totp/...` URI (for a QR code).
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "otpauth://totp/auth-service:ada%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=auth-service&algorithm=SHA1&digits=6&period=30"))]
    pub otpauth_uri: Redacted,
    /// The URI as a QR code to scan: an SVG image as a `data:` URI, ready for
    /// `<img src="…">`. It carries the secret: shown once, like it.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "data:image/svg+xml;base64,PD94bWwgdmVyc2lvbj0iMS4wIi…"))]
    pub qr_code: Redacted,
}

/// `POST /users/me/mfa/totp/confirm` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotpConfirmRequest {
    /// A current code of the new secret.
    // Missing is read as empty, so the 422 names every missing field at once.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = String, example = "123456", min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub code: Redacted,
}

/// The recovery codes of a newly enabled factor: each works once in place of a code. Shown
/// once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecoveryCodes {
    /// Ten codes.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, example = json!(["3f9a2-0c41d-77be1-9a0c4"])))]
    pub recovery_codes: Vec<Redacted>,
}

/// `DELETE /users/me/mfa/totp` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotpDisableRequest {
    /// The caller's password.
    // Missing is read as empty, so the 422 names every missing field at once.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = String, format = Password, min_length = 1, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub password: Redacted,
    /// A current code, or an unused recovery code.
    // Missing is read as empty, so the 422 names every missing field at once.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = String, example = "123456", min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub code: Redacted,
}

/// `POST /auth/login/mfa` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaLoginRequest {
    /// The `mfa_token` of the login answer.
    // Missing is read as empty, so the 422 names every missing field at once.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = String, min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub mfa_token: Redacted,
    /// A current code, or an unused recovery code.
    // Missing is read as empty, so the 422 names every missing field at once.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = String, example = "123456", min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub code: Redacted,
}

/// The login answer for a user with a second factor: no session yet; send a code with the
/// `mfa_token` to `POST /auth/login/mfa`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaRequired {
    /// Always `true`.
    pub mfa_required: bool,
    /// Opaque, single use, for `POST /auth/login/mfa` only.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub mfa_token: Redacted,
    /// Seconds until the `mfa_token` dies (300).
    #[cfg_attr(feature = "openapi", schema(example = 300))]
    pub expires_in: i64,
}

/// `POST /auth/login` answer: the token pair, or, for a user with a second factor, the
/// challenge.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LoginResponse {
    /// Logged in.
    Tokens(TokenResponse),
    /// The second factor is due.
    MfaRequired(MfaRequired),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_answers_read_back_as_the_right_variant() {
        let mfa = serde_json::json!({"mfa_required": true, "mfa_token": "t", "expires_in": 300});
        let read: LoginResponse = serde_json::from_value(mfa.clone()).unwrap();
        assert!(matches!(read, LoginResponse::MfaRequired(ref m) if m.mfa_token.expose() == "t"));
        assert_eq!(serde_json::to_value(&read).unwrap(), mfa);
        let tokens = serde_json::json!({
            "access_token": "a", "refresh_token": "r", "token_type": "Bearer", "expires_in": 900,
            "refresh_expires_in": 60, "user": {"id": "0190f9f4-8b4e-7c3a-9d1e-2f3a4b5c6d7e", "email": "a@b.co"}
        });
        let read: LoginResponse = serde_json::from_value(tokens.clone()).unwrap();
        assert!(matches!(read, LoginResponse::Tokens(_)));
        assert_eq!(serde_json::to_value(&read).unwrap(), tokens);
        let codes = RecoveryCodes {
            recovery_codes: vec!["c".into()],
        };
        assert!(format!("{codes:?}").contains("[REDACTED]"));
    }
}
