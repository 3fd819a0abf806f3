//! `JwtSigner`: user access tokens as JWTs, with every rule of the contract's *Tokens*
//! section pinned: HS256 over the raw key bytes, `typ: at+jwt`, required claims, issuer and
//! audience, `exp`/`nbf` against the domain clock with bounded leeway, and a closed set of
//! header parameters.

use std::collections::BTreeMap;

use auth_core::model::{
    AccessClaims, DeviceClaims, DeviceId, OrganizationId, SessionId, TokenKind, TokenRejection,
    UserId,
};
use auth_core::ports::{SignError, TokenSigner};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `typ` header of user access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// `typ` header of device tokens.
pub const DEVICE_TOKEN_TYP: &str = "device+jwt";
/// Minimum HS256 key length in bytes.
pub const MIN_HS256_KEY_BYTES: usize = 32;
/// The largest leeway the contract allows.
pub const MAX_LEEWAY: Duration = Duration::seconds(30);
/// Tokens longer than this are refused before any parsing (ours are a few hundred bytes).
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Settings of the signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    /// `iss` to issue and require.
    pub issuer: String,
    /// `aud` to issue and require.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf` (capped at 30 s).
    pub leeway: Duration,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            issuer: "auth-service".into(),
            audience: "auth-service".into(),
            leeway: MAX_LEEWAY,
        }
    }
}

/// Building a signer failed.
#[derive(Debug, thiserror::Error)]
pub enum JwtKeyError {
    /// The HS256 key is shorter than 32 bytes.
    #[error("JWT_SECRET_KEY must be at least {MIN_HS256_KEY_BYTES} bytes")]
    KeyTooShort,
}

#[derive(Debug, Serialize, Deserialize)]
struct AccessJwt {
    iss: String,
    aud: String,
    sub: Uuid,
    sid: Uuid,
    jti: Uuid,
    iat: i64,
    nbf: i64,
    exp: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct DeviceJwt {
    iss: String,
    aud: String,
    sub: String,
    org: Uuid,
    jti: Uuid,
    iat: i64,
    nbf: i64,
    exp: i64,
}

/// Signs and verifies user access tokens and device tokens with HS256.
pub struct JwtSigner {
    settings: JwtSettings,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("algorithm", &Algorithm::HS256)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    /// An HS256 signer over the raw bytes of `key` (at least 32 bytes).
    ///
    /// # Errors
    /// [`JwtKeyError::KeyTooShort`].
    pub fn hs256(key: &SecretSlice<u8>, settings: JwtSettings) -> Result<Self, JwtKeyError> {
        let bytes = key.expose_secret();
        if bytes.len() < MIN_HS256_KEY_BYTES {
            return Err(JwtKeyError::KeyTooShort);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        // Time is checked against the domain clock below, so tests can move it.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        Ok(Self {
            settings: JwtSettings {
                leeway: settings.leeway.clamp(Duration::zero(), MAX_LEEWAY),
                ..settings
            },
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
        })
    }
}

/// Accepts only headers this service issues: `alg` equal to the pinned one, `typ` equal to
/// the expected kind, and nothing else (no `kid` under HS256, no `jku`, `jwk`, `x5u`, `x5c`,
/// `crit`, ...). jsonwebtoken would ignore unknown parameters such as `crit`, so the header
/// is read here first.
fn check_header(token: &str, alg: &str, typ: &str) -> Result<(), TokenRejection> {
    let header = read_header(token).ok_or(TokenRejection::Invalid)?;
    let ok = header.len() == 2
        && header.get("alg").and_then(|v| v.as_str()) == Some(alg)
        && header.get("typ").and_then(|v| v.as_str()) == Some(typ);
    if ok {
        Ok(())
    } else {
        Err(TokenRejection::Invalid)
    }
}

fn read_header(token: &str) -> Option<BTreeMap<String, serde_json::Value>> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let encoded = token.split('.').next()?;
    let raw = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    serde_json::from_slice(&raw).ok()
}

/// Checks `nbf`/`iat` and `exp` against `now` with the leeway.
fn check_times(
    iat: i64,
    nbf: i64,
    exp: i64,
    now: DateTime<Utc>,
    leeway: i64,
) -> Result<(), TokenRejection> {
    let now_s = now.timestamp();
    if nbf > now_s + leeway || iat > now_s + leeway {
        return Err(TokenRejection::Invalid);
    }
    if now_s >= exp + leeway {
        return Err(TokenRejection::Expired);
    }
    Ok(())
}

fn at(seconds: i64) -> Result<DateTime<Utc>, TokenRejection> {
    DateTime::<Utc>::from_timestamp(seconds, 0).ok_or(TokenRejection::Invalid)
}

impl TokenSigner for JwtSigner {
    fn sign_access(&self, claims: &AccessClaims) -> Result<SecretString, SignError> {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        let body = AccessJwt {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: claims.user_id.as_uuid(),
            sid: claims.session_id.as_uuid(),
            jti: claims.token_id,
            iat: claims.issued_at.timestamp(),
            nbf: claims.issued_at.timestamp(),
            exp: claims.expires_at.timestamp(),
        };
        jsonwebtoken::encode(&header, &body, &self.encoding)
            .map(SecretString::from)
            .map_err(|e| SignError(Box::new(e)))
    }

    fn verify_access(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<AccessClaims, TokenRejection> {
        check_header(token, "HS256", ACCESS_TOKEN_TYP)?;
        let data = jsonwebtoken::decode::<AccessJwt>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenRejection::Invalid)?;
        let c = data.claims;
        check_times(c.iat, c.nbf, c.exp, now, self.settings.leeway.num_seconds())?;
        Ok(AccessClaims {
            user_id: UserId::from_uuid(c.sub),
            session_id: SessionId::from_uuid(c.sid),
            token_id: c.jti,
            issued_at: at(c.iat)?,
            expires_at: at(c.exp)?,
        })
    }

    fn sign_device(&self, claims: &DeviceClaims) -> Result<SecretString, SignError> {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(DEVICE_TOKEN_TYP.into());
        let body = DeviceJwt {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: claims.device_id.as_str().to_owned(),
            org: claims.organization_id.as_uuid(),
            jti: claims.token_id,
            iat: claims.issued_at.timestamp(),
            nbf: claims.issued_at.timestamp(),
            exp: claims.expires_at.timestamp(),
        };
        jsonwebtoken::encode(&header, &body, &self.encoding)
            .map(SecretString::from)
            .map_err(|e| SignError(Box::new(e)))
    }

    fn verify_device(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<DeviceClaims, TokenRejection> {
        check_header(token, "HS256", DEVICE_TOKEN_TYP)?;
        let data = jsonwebtoken::decode::<DeviceJwt>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenRejection::Invalid)?;
        let c = data.claims;
        check_times(c.iat, c.nbf, c.exp, now, self.settings.leeway.num_seconds())?;
        Ok(DeviceClaims {
            device_id: DeviceId::parse(&c.sub).map_err(|_| TokenRejection::Invalid)?,
            organization_id: OrganizationId::from_uuid(c.org),
            token_id: c.jti,
            issued_at: at(c.iat)?,
            expires_at: at(c.exp)?,
        })
    }

    fn kind(&self, token: &str) -> Option<TokenKind> {
        match read_header(token)?.get("typ")?.as_str()? {
            ACCESS_TOKEN_TYP => Some(TokenKind::User),
            DEVICE_TOKEN_TYP => Some(TokenKind::Device),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> JwtSigner {
        JwtSigner::hs256(&SecretSlice::from(vec![7u8; 32]), JwtSettings::default()).unwrap()
    }

    fn claims(now: DateTime<Utc>) -> AccessClaims {
        AccessClaims {
            user_id: UserId::generate(),
            session_id: SessionId::generate(),
            token_id: Uuid::now_v7(),
            issued_at: now,
            expires_at: now + Duration::minutes(15),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
    }

    #[test]
    fn round_trips_with_typ_header() {
        let s = signer();
        let c = claims(now());
        let token = s.sign_access(&c).unwrap();
        let header = jsonwebtoken::decode_header(token.expose_secret()).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(s.verify_access(token.expose_secret(), now()).unwrap(), c);
    }

    #[test]
    fn expiry_and_not_before_respect_leeway() {
        let s = signer();
        let t0 = now();
        let c = claims(t0);
        let token = s.sign_access(&c).unwrap();
        let t = token.expose_secret();
        assert!(
            s.verify_access(t, c.expires_at + Duration::seconds(29))
                .is_ok()
        );
        assert_eq!(
            s.verify_access(t, c.expires_at + Duration::seconds(30)),
            Err(TokenRejection::Expired)
        );
        assert!(s.verify_access(t, t0 - Duration::seconds(30)).is_ok());
        assert_eq!(
            s.verify_access(t, t0 - Duration::seconds(31)),
            Err(TokenRejection::Invalid)
        );
    }

    #[test]
    fn refuses_other_keys_issuers_audiences_and_headers() {
        let t0 = now();
        let c = claims(t0);
        let token = signer().sign_access(&c).unwrap();
        let other_key =
            JwtSigner::hs256(&SecretSlice::from(vec![8u8; 32]), JwtSettings::default()).unwrap();
        assert_eq!(
            other_key.verify_access(token.expose_secret(), t0),
            Err(TokenRejection::Invalid)
        );
        let other_iss = JwtSigner::hs256(
            &SecretSlice::from(vec![7u8; 32]),
            JwtSettings {
                issuer: "someone-else".into(),
                ..JwtSettings::default()
            },
        )
        .unwrap();
        assert_eq!(
            other_iss.verify_access(token.expose_secret(), t0),
            Err(TokenRejection::Invalid)
        );
        let other_aud = JwtSigner::hs256(
            &SecretSlice::from(vec![7u8; 32]),
            JwtSettings {
                audience: "another-api".into(),
                ..JwtSettings::default()
            },
        )
        .unwrap();
        assert_eq!(
            other_aud.verify_access(token.expose_secret(), t0),
            Err(TokenRejection::Invalid)
        );

        // Same claims and key, but a header with extra parameters or another typ.
        let key = EncodingKey::from_secret(&[7u8; 32]);
        let body = serde_json::json!({"iss":"auth-service","aud":"auth-service","sub":c.user_id,
            "sid":c.session_id,"jti":c.token_id,"iat":t0.timestamp(),"nbf":t0.timestamp(),
            "exp":c.expires_at.timestamp()});
        for (typ, kid) in [
            (Some("JWT"), None),
            (None, None),
            (Some("at+jwt"), Some("k1")),
        ] {
            let mut h = Header::new(Algorithm::HS256);
            h.typ = typ.map(str::to_owned);
            h.kid = kid.map(str::to_owned);
            let forged = jsonwebtoken::encode(&h, &body, &key).unwrap();
            assert_eq!(
                signer().verify_access(&forged, t0),
                Err(TokenRejection::Invalid),
                "{typ:?} {kid:?}"
            );
        }
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        assert!(
            signer()
                .verify_access(&jsonwebtoken::encode(&h, &body, &key).unwrap(), t0)
                .is_ok()
        );
    }

    #[test]
    fn device_tokens_are_their_own_kind() {
        let s = signer();
        let t0 = now();
        let device = DeviceClaims {
            device_id: DeviceId::parse("frame:01").unwrap(),
            organization_id: OrganizationId::generate(),
            token_id: Uuid::now_v7(),
            issued_at: t0,
            expires_at: t0 + Duration::hours(24),
        };
        let dt = s.sign_device(&device).unwrap();
        let dt = dt.expose_secret();
        assert_eq!(s.verify_device(dt, t0).unwrap(), device);
        assert_eq!(s.kind(dt), Some(TokenKind::Device));
        assert_eq!(s.verify_access(dt, t0), Err(TokenRejection::Invalid));
        let user = s.sign_access(&claims(t0)).unwrap();
        assert_eq!(s.kind(user.expose_secret()), Some(TokenKind::User));
        assert_eq!(
            s.verify_device(user.expose_secret(), t0),
            Err(TokenRejection::Invalid)
        );
        assert_eq!(
            s.verify_device(dt, device.expires_at + Duration::seconds(30)),
            Err(TokenRejection::Expired)
        );
        assert_eq!(s.kind("garbage"), None);
    }

    #[test]
    fn refuses_short_keys_and_garbage() {
        assert!(
            JwtSigner::hs256(&SecretSlice::from(vec![1u8; 31]), JwtSettings::default()).is_err()
        );
        for junk in [
            "",
            ".",
            "a.b.c",
            "eyJhbGciOiJub25lIn0.e30.",
            &"x".repeat(10_000),
        ] {
            assert_eq!(
                signer().verify_access(junk, now()),
                Err(TokenRejection::Invalid)
            );
        }
    }
}
