//! `FakeSigner`: a cheap [`TokenSigner`] whose tokens verify, for tests. **Not for production.**

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use crate::model::{
    AccessClaims, DeviceClaims, DeviceId, OrganizationId, SessionId, TokenKind, TokenRejection,
    UserId,
};
use crate::ports::{SignError, TokenSigner};

const ACCESS: &str = "fake-at";
const DEVICE: &str = "fake-device";

/// A token signer for tests and for embedders' tests: `<kind>.<claims>.<tag>`, the claims
/// as base64url JSON, the tag a SHA-256 over a key and the rest.
///
/// **Never use it in production.** The tag is no standard MAC, the default key is public,
/// and the tokens name no issuer or audience. What it keeps of the [`TokenSigner`] contract
/// is what the rules depend on, so they can be tested without a JWT library:
/// - a token verifies only with the key it was signed with, and any change to it (kind,
///   claims or tag) makes it [`TokenRejection::Invalid`];
/// - each kind verifies only as itself (an access token is no device token);
/// - times are whole seconds, as a JWT's are; a token issued more than the leeway ahead of
///   `now` is `Invalid`, and one at or past its expiry plus the leeway (30 s, the largest the
///   contract allows) is `Expired`.
pub struct FakeSigner {
    key: Vec<u8>,
    leeway: Duration,
}

impl std::fmt::Debug for FakeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSigner")
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl Default for FakeSigner {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSigner {
    /// The leeway on `iat` and `exp`.
    pub const LEEWAY: Duration = Duration::seconds(30);

    /// A signer with the built-in (public) key.
    #[must_use]
    pub fn new() -> Self {
        Self::with_key(b"auth-core fake signer")
    }

    /// A signer with its own key: tokens of another key are `Invalid` here.
    #[must_use]
    pub fn with_key(key: &[u8]) -> Self {
        Self {
            key: key.to_vec(),
            leeway: Self::LEEWAY,
        }
    }

    fn tag(&self, kind: &str, claims: &str) -> String {
        let mut sha = Sha256::new();
        sha.update(
            u64::try_from(self.key.len())
                .unwrap_or(u64::MAX)
                .to_be_bytes(),
        );
        sha.update(&self.key);
        sha.update(kind.as_bytes());
        sha.update(b".");
        sha.update(claims.as_bytes());
        URL_SAFE_NO_PAD.encode(sha.finalize())
    }

    fn sign(&self, kind: &str, claims: &Value) -> SecretString {
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let tag = self.tag(kind, &claims);
        SecretString::from(format!("{kind}.{claims}.{tag}"))
    }

    /// The claims of a token of `kind` whose tag checks, and whose times hold at `now`.
    fn open(&self, kind: &str, token: &str, now: DateTime<Utc>) -> Result<Value, TokenRejection> {
        let mut parts = token.split('.');
        let (Some(found), Some(claims), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenRejection::Invalid);
        };
        let expected = self.tag(found, claims);
        let tag_ok: bool = expected.as_bytes().ct_eq(tag.as_bytes()).into();
        if !tag_ok || found != kind {
            return Err(TokenRejection::Invalid);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(claims)
            .map_err(|_| TokenRejection::Invalid)?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| TokenRejection::Invalid)?;
        let (iat, exp) = (seconds(&value, "iat")?, seconds(&value, "exp")?);
        let (now_s, leeway) = (now.timestamp(), self.leeway.num_seconds());
        if iat > now_s.saturating_add(leeway) {
            return Err(TokenRejection::Invalid);
        }
        if now_s >= exp.saturating_add(leeway) {
            return Err(TokenRejection::Expired);
        }
        Ok(value)
    }
}

fn seconds(claims: &Value, name: &str) -> Result<i64, TokenRejection> {
    claims[name].as_i64().ok_or(TokenRejection::Invalid)
}

fn at(claims: &Value, name: &str) -> Result<DateTime<Utc>, TokenRejection> {
    DateTime::from_timestamp(seconds(claims, name)?, 0).ok_or(TokenRejection::Invalid)
}

fn text<'a>(claims: &'a Value, name: &str) -> Result<&'a str, TokenRejection> {
    claims[name].as_str().ok_or(TokenRejection::Invalid)
}

fn uuid(claims: &Value, name: &str) -> Result<Uuid, TokenRejection> {
    Uuid::parse_str(text(claims, name)?).map_err(|_| TokenRejection::Invalid)
}

impl TokenSigner for FakeSigner {
    fn sign_access(&self, claims: &AccessClaims) -> Result<SecretString, SignError> {
        Ok(self.sign(
            ACCESS,
            &json!({
                "sub": claims.user_id.as_uuid().to_string(),
                "sid": claims.session_id.as_uuid().to_string(),
                "jti": claims.token_id.to_string(),
                "iat": claims.issued_at.timestamp(),
                "exp": claims.expires_at.timestamp(),
            }),
        ))
    }

    fn verify_access(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<AccessClaims, TokenRejection> {
        let c = self.open(ACCESS, token, now)?;
        Ok(AccessClaims {
            user_id: UserId::from_uuid(uuid(&c, "sub")?),
            session_id: SessionId::from_uuid(uuid(&c, "sid")?),
            token_id: uuid(&c, "jti")?,
            issued_at: at(&c, "iat")?,
            expires_at: at(&c, "exp")?,
        })
    }

    fn sign_device(&self, claims: &DeviceClaims) -> Result<SecretString, SignError> {
        Ok(self.sign(
            DEVICE,
            &json!({
                "sub": claims.device_id.as_str(),
                "org": claims.organization_id.as_uuid().to_string(),
                "jti": claims.token_id.to_string(),
                "iat": claims.issued_at.timestamp(),
                "exp": claims.expires_at.timestamp(),
            }),
        ))
    }

    fn verify_device(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<DeviceClaims, TokenRejection> {
        let c = self.open(DEVICE, token, now)?;
        Ok(DeviceClaims {
            device_id: DeviceId::parse(text(&c, "sub")?).map_err(|_| TokenRejection::Invalid)?,
            organization_id: OrganizationId::from_uuid(uuid(&c, "org")?),
            token_id: uuid(&c, "jti")?,
            issued_at: at(&c, "iat")?,
            expires_at: at(&c, "exp")?,
        })
    }

    fn kind(&self, token: &str) -> Option<TokenKind> {
        match token.split('.').next()? {
            ACCESS => Some(TokenKind::User),
            DEVICE => Some(TokenKind::Device),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    fn claims(now: DateTime<Utc>) -> AccessClaims {
        AccessClaims {
            user_id: UserId::generate(),
            session_id: SessionId::generate(),
            token_id: Uuid::now_v7(),
            issued_at: now,
            expires_at: now + Duration::minutes(15),
        }
    }

    #[test]
    fn round_trips_in_whole_seconds_and_expires_after_the_leeway() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let signer = FakeSigner::new();
        let c = claims(now);
        let token = signer.sign_access(&c).unwrap();
        let token = token.expose_secret();
        assert_eq!(signer.kind(token), Some(TokenKind::User));
        assert_eq!(signer.verify_access(token, now).unwrap(), c);
        let last = now + Duration::minutes(15) + Duration::seconds(29);
        assert!(signer.verify_access(token, last).is_ok());
        assert_eq!(
            signer.verify_access(token, last + Duration::seconds(1)),
            Err(TokenRejection::Expired)
        );
        assert_eq!(
            signer.verify_access(token, now - Duration::seconds(31)),
            Err(TokenRejection::Invalid),
            "issued in the future"
        );
    }

    #[test]
    fn refuses_tampered_foreign_and_other_kind_tokens() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let signer = FakeSigner::new();
        let token = signer.sign_access(&claims(now)).unwrap();
        let token = token.expose_secret();
        let other = claims(now);
        let forged_claims = FakeSigner::with_key(b"attacker")
            .sign_access(&other)
            .unwrap();
        let middle = forged_claims.expose_secret().split('.').nth(1).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = middle;
        let spliced = parts.join(".");
        let retagged = token.replacen(ACCESS, DEVICE, 1);
        for bad in [
            spliced.as_str(),
            forged_claims.expose_secret(),
            retagged.as_str(),
            &token[..token.len() - 1],
            "",
            "fake-at..",
            &format!("{token}.x"),
        ] {
            assert_eq!(
                signer.verify_access(bad, now),
                Err(TokenRejection::Invalid),
                "{bad}"
            );
        }
        assert!(signer.verify_device(token, now).is_err());
    }

    #[test]
    fn device_tokens_round_trip() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let signer = FakeSigner::new();
        let c = DeviceClaims {
            device_id: DeviceId::parse("frame-1").unwrap(),
            organization_id: OrganizationId::generate(),
            token_id: Uuid::now_v7(),
            issued_at: now,
            expires_at: now + Duration::hours(24),
        };
        let token = signer.sign_device(&c).unwrap();
        let token = token.expose_secret();
        assert_eq!(signer.kind(token), Some(TokenKind::Device));
        assert_eq!(signer.verify_device(token, now).unwrap(), c);
        assert_eq!(
            signer.verify_access(token, now),
            Err(TokenRejection::Invalid)
        );
    }
}
