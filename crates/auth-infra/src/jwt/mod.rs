//! `JwtSigner`: user access tokens and device tokens as JWTs, with every rule of the
//! contract's *Tokens* section pinned: the configured algorithm only (HS256 over the raw key
//! bytes, or EdDSA / ES256 / RS256 with PEM keys and an RFC 7638 `kid`), `typ` per kind,
//! required claims, issuer and audience, `exp`/`nbf` against the domain clock with bounded
//! leeway, and a closed set of header parameters.
//!
//! Verification reads the header strictly first (module `header`): exactly `alg` and `typ` (plus
//! `kid` under an asymmetric algorithm), each once; `alg` must be the configured algorithm
//! and `kid` must name a configured key. Only then is the signature checked, with that one key
//! pinned to that one algorithm (HS256: aws-lc-rs's constant-time HMAC check with the key
//! prepared once; asymmetric: jsonwebtoken's `crypto::verify`), and only a signed payload is
//! parsed, once, into the claims, whose `iss` and `aud` must be the configured ones and
//! whose every member is required. `jsonwebtoken::decode` would decode the header twice more,
//! parse the claims twice and prepare the HMAC key on every call: on the verify path that was
//! a fifth of the server's CPU per request.

mod header;
pub(crate) mod keys;

use auth_core::model::{
    AccessClaims, DeviceClaims, DeviceId, OrganizationId, SessionId, TokenKind, TokenRejection,
    UserId,
};
use auth_core::ports::{SignError, TokenSigner};
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use keys::{AsymmetricAlgorithm, JwtKeyError, JwtKeys, KeyRole, MAX_RSA_BITS, MIN_RSA_BITS};

/// `typ` header of user access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// `typ` header of device tokens.
pub const DEVICE_TOKEN_TYP: &str = "device+jwt";
/// Minimum HS256 key length in bytes.
pub const MIN_HS256_KEY_BYTES: usize = 32;
/// The largest leeway the contract allows.
pub const MAX_LEEWAY: Duration = Duration::seconds(30);

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

#[derive(Debug, thiserror::Error)]
#[error("no such token type")]
struct UnknownTyp;

/// The base64url JOSE headers of HS256 tokens, `{"typ":…,"alg":"HS256"}` as jsonwebtoken
/// writes them.
struct Hs256Headers {
    access: String,
    device: String,
}

impl Hs256Headers {
    fn new() -> Self {
        let encode = |typ: &str| {
            let header = Header {
                typ: Some(typ.to_owned()),
                ..Header::new(Algorithm::HS256)
            };
            // A header of two string members always serialises.
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default())
        };
        Self {
            access: encode(ACCESS_TOKEN_TYP),
            device: encode(DEVICE_TOKEN_TYP),
        }
    }
}

/// A public key tokens may be signed with.
struct VerifyKey {
    kid: String,
    decoding: DecodingKey,
}

enum Keyring {
    Hs256 {
        /// The key, its HMAC state prepared once (boxed: it is large).
        hmac: Box<hmac::Key>,
        /// The encoded headers of the two kinds.
        headers: Hs256Headers,
    },
    Asymmetric {
        algorithm: AsymmetricAlgorithm,
        encoding: EncodingKey,
        /// The signing key's thumbprint, put in every token's `kid`.
        kid: String,
        /// The signing key first, then the extra verify keys, without duplicates.
        verify: Vec<VerifyKey>,
    },
}

/// Signs and verifies user access tokens and device tokens with HS256 or an asymmetric
/// algorithm (see [`JwtKeys`]).
pub struct JwtSigner {
    settings: JwtSettings,
    keys: Keyring,
    /// `{"keys":[...]}`, computed once.
    jwks: serde_json::Value,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("JwtSigner");
        s.field("algorithm", &self.algorithm_name());
        if let Keyring::Asymmetric { kid, verify, .. } = &self.keys {
            s.field("kid", kid).field(
                "verify_kids",
                &verify.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            );
        }
        s.field("settings", &self.settings).finish_non_exhaustive()
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
        Ok(Self::build(
            Keyring::Hs256 {
                hmac: Box::new(hmac::Key::new(hmac::HMAC_SHA256, bytes)),
                headers: Hs256Headers::new(),
            },
            serde_json::json!({ "keys": [] }),
            settings,
        ))
    }

    /// A signer for the configured keys. Asymmetric keys are checked against the algorithm
    /// (type, curve, RSA size), the public key is derived from the private one, and a test
    /// signature is made, so that a bad key fails here rather than on the first request.
    ///
    /// # Errors
    /// [`JwtKeyError`], naming the offending key.
    pub fn from_keys(keys: &JwtKeys, settings: JwtSettings) -> Result<Self, JwtKeyError> {
        let (algorithm, private_pem, verify_pems) = match keys {
            JwtKeys::Hs256(key) => return Self::hs256(key, settings),
            JwtKeys::Asymmetric {
                algorithm,
                private_pem,
                verify_pems,
            } => (*algorithm, private_pem, verify_pems),
        };
        let (encoding, signing) = keys::load_private(algorithm, private_pem)?;
        let kid = signing.kid.clone();
        let mut loaded = vec![signing];
        for (index, pem) in verify_pems.iter().enumerate() {
            let key = keys::load_public(algorithm, index, pem)?;
            // The signing key listed again, or a file given twice: keep one.
            if loaded.iter().all(|k| k.kid != key.kid) {
                loaded.push(key);
            }
        }
        let set = JwkSet {
            keys: loaded.iter().map(|k| k.jwk.clone()).collect(),
        };
        let jwks = serde_json::to_value(&set).map_err(|e| JwtKeyError::InvalidKey {
            role: KeyRole::Signing,
            algorithm,
            reason: format!("cannot serialise the JWKS: {e}"),
        })?;
        let verify = loaded
            .into_iter()
            .map(|k| VerifyKey {
                kid: k.kid,
                decoding: k.decoding,
            })
            .collect();
        Ok(Self::build(
            Keyring::Asymmetric {
                algorithm,
                encoding,
                kid,
                verify,
            },
            jwks,
            settings,
        ))
    }

    fn build(keys: Keyring, jwks: serde_json::Value, settings: JwtSettings) -> Self {
        Self {
            settings: JwtSettings {
                leeway: settings.leeway.clamp(Duration::zero(), MAX_LEEWAY),
                ..settings
            },
            keys,
            jwks,
        }
    }

    /// The public keys as a JWK Set, `{"keys":[...]}`: the signing key first, then every
    /// verify key, each with `kty`, `crv`/`x`/`y` or `n`/`e`, `kid`, `alg` and `use: "sig"`.
    /// Empty under HS256 (the secret is never published).
    #[must_use]
    pub fn jwks(&self) -> serde_json::Value {
        self.jwks.clone()
    }

    /// `HS256`, `EdDSA`, `ES256` or `RS256`.
    #[must_use]
    pub fn algorithm_name(&self) -> &'static str {
        match &self.keys {
            Keyring::Hs256 { .. } => "HS256",
            Keyring::Asymmetric { algorithm, .. } => algorithm.as_str(),
        }
    }

    /// The `kid` put in new tokens (the signing key's RFC 7638 thumbprint); `None` under
    /// HS256, whose tokens carry no `kid`.
    #[must_use]
    pub fn signing_kid(&self) -> Option<&str> {
        match &self.keys {
            Keyring::Hs256 { .. } => None,
            Keyring::Asymmetric { kid, .. } => Some(kid),
        }
    }

    fn sign<T: Serialize>(&self, typ: &str, body: &T) -> Result<SecretString, SignError> {
        let (header, key) = match &self.keys {
            Keyring::Hs256 { hmac, headers, .. } => {
                // The header is fixed per kind (encoded once) and the HMAC state prepared once:
                // jsonwebtoken::encode would serialise the one and prepare the other per token.
                let header = match typ {
                    ACCESS_TOKEN_TYP => &headers.access,
                    DEVICE_TOKEN_TYP => &headers.device,
                    _ => return Err(SignError(Box::new(UnknownTyp))),
                };
                let claims = serde_json::to_vec(body).map_err(|e| SignError(Box::new(e)))?;
                let mut token =
                    String::with_capacity(header.len() + 2 + (claims.len() * 4).div_ceil(3) + 43);
                token.push_str(header);
                token.push('.');
                URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
                let tag = hmac::sign(hmac, token.as_bytes());
                token.push('.');
                URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
                return Ok(SecretString::from(token));
            }
            Keyring::Asymmetric {
                algorithm,
                encoding,
                kid,
                ..
            } => {
                let mut header = Header::new(algorithm.jwt_algorithm());
                header.kid = Some(kid.clone());
                (header, encoding)
            }
        };
        let header = Header {
            typ: Some(typ.to_owned()),
            ..header
        };
        jsonwebtoken::encode(&header, body, key)
            .map(SecretString::from)
            .map_err(|e| SignError(Box::new(e)))
    }

    /// Header rules, then the signature with the one key the header may name, then the
    /// claims: every member required, `iss` and `aud` the configured ones. Times are the
    /// caller's (the domain clock, so tests can move it).
    fn verify<T: DeserializeOwned + Audience>(
        &self,
        token: &str,
        typ: &str,
    ) -> Result<T, TokenRejection> {
        let parts = header::segments(token).ok_or(TokenRejection::Invalid)?;
        let raw = header::decode(parts.header).ok_or(TokenRejection::Invalid)?;
        let header = header::read_strict(&raw).ok_or(TokenRejection::Invalid)?;
        if header.typ != typ {
            return Err(TokenRejection::Invalid);
        }
        let signed = match (&self.keys, header.kid) {
            (Keyring::Hs256 { hmac: key, .. }, None) if header.alg == "HS256" => {
                // An HS256 tag is 32 bytes: anything else cannot match.
                let mut tag = [0u8; 32];
                URL_SAFE_NO_PAD
                    .decode_slice(parts.signature, &mut tag)
                    .is_ok_and(|n| n == tag.len())
                    && hmac::verify(key, parts.signed.as_bytes(), &tag).is_ok()
            }
            (
                Keyring::Asymmetric {
                    algorithm, verify, ..
                },
                Some(kid),
            ) if header.alg == algorithm.as_str() => {
                let key = verify
                    .iter()
                    .find(|k| k.kid == kid)
                    .ok_or(TokenRejection::Invalid)?;
                jsonwebtoken::crypto::verify(
                    parts.signature,
                    parts.signed.as_bytes(),
                    &key.decoding,
                    algorithm.jwt_algorithm(),
                )
                .unwrap_or(false)
            }
            _ => false,
        };
        if !signed {
            return Err(TokenRejection::Invalid);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(parts.payload)
            .map_err(|_| TokenRejection::Invalid)?;
        let claims: T = serde_json::from_slice(&payload).map_err(|_| TokenRejection::Invalid)?;
        if claims.issuer() != self.settings.issuer || claims.audience() != self.settings.audience {
            return Err(TokenRejection::Invalid);
        }
        Ok(claims)
    }
}

/// The issuer and audience of a token's claims, checked against the settings.
trait Audience {
    fn issuer(&self) -> &str;
    fn audience(&self) -> &str;
}

impl Audience for AccessJwt {
    fn issuer(&self) -> &str {
        &self.iss
    }
    fn audience(&self) -> &str {
        &self.aud
    }
}

impl Audience for DeviceJwt {
    fn issuer(&self) -> &str {
        &self.iss
    }
    fn audience(&self) -> &str {
        &self.aud
    }
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
    if nbf > now_s.saturating_add(leeway) || iat > now_s.saturating_add(leeway) {
        return Err(TokenRejection::Invalid);
    }
    if now_s >= exp.saturating_add(leeway) {
        return Err(TokenRejection::Expired);
    }
    Ok(())
}

fn at(seconds: i64) -> Result<DateTime<Utc>, TokenRejection> {
    DateTime::<Utc>::from_timestamp(seconds, 0).ok_or(TokenRejection::Invalid)
}

impl TokenSigner for JwtSigner {
    fn sign_access(&self, claims: &AccessClaims) -> Result<SecretString, SignError> {
        self.sign(
            ACCESS_TOKEN_TYP,
            &AccessJwt {
                iss: self.settings.issuer.clone(),
                aud: self.settings.audience.clone(),
                sub: claims.user_id.as_uuid(),
                sid: claims.session_id.as_uuid(),
                jti: claims.token_id,
                iat: claims.issued_at.timestamp(),
                nbf: claims.issued_at.timestamp(),
                exp: claims.expires_at.timestamp(),
            },
        )
    }

    fn verify_access(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<AccessClaims, TokenRejection> {
        let c: AccessJwt = self.verify(token, ACCESS_TOKEN_TYP)?;
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
        self.sign(
            DEVICE_TOKEN_TYP,
            &DeviceJwt {
                iss: self.settings.issuer.clone(),
                aud: self.settings.audience.clone(),
                sub: claims.device_id.as_str().to_owned(),
                org: claims.organization_id.as_uuid(),
                jti: claims.token_id,
                iat: claims.issued_at.timestamp(),
                nbf: claims.issued_at.timestamp(),
                exp: claims.expires_at.timestamp(),
            },
        )
    }

    fn verify_device(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<DeviceClaims, TokenRejection> {
        let c: DeviceJwt = self.verify(token, DEVICE_TOKEN_TYP)?;
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
        // Under HS256 this signer writes one fixed header per kind: a token it issued is told
        // by comparing its first segment, with no decoding. Anything else (another writer's
        // header, an asymmetric key's) is read leniently; either way verification decides.
        if let Keyring::Hs256 { headers, .. } = &self.keys {
            let first = token.split_once('.').map_or(token, |(first, _)| first);
            if first == headers.access {
                return Some(TokenKind::User);
            }
            if first == headers.device {
                return Some(TokenKind::Device);
            }
        }
        match header::read_typ(token)?.as_str() {
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

    /// Tokens signed here verify with jsonwebtoken's own `decode`, as a relying party's
    /// would: same header, same encoding, same signature.
    #[test]
    fn hs256_tokens_verify_with_jsonwebtoken() {
        let s = signer();
        let c = claims(now());
        let token = s.sign_access(&c).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.set_audience(&["auth-service"]);
        validation.set_issuer(&["auth-service"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            token.expose_secret(),
            &jsonwebtoken::DecodingKey::from_secret(&[7u8; 32]),
            &validation,
        )
        .unwrap();
        assert_eq!(data.header.typ.as_deref(), Some(ACCESS_TOKEN_TYP));
        assert_eq!(data.claims["sid"], c.session_id.as_uuid().to_string());
        let header = token.expose_secret().split('.').next().unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(header).unwrap(),
            br#"{"typ":"at+jwt","alg":"HS256"}"#
        );
        assert!(s.sign("JWT", &1).is_err(), "only the two kinds are signed");
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
        // A header this signer did not write (other member order) is still routed by its typ.
        for (typ, kind) in [
            ("at+jwt", TokenKind::User),
            ("device+jwt", TokenKind::Device),
        ] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"typ":"{typ}","alg":"HS256"}}"#));
            assert_eq!(s.kind(&format!("{header}.e30.c2ln")), Some(kind), "{typ}");
        }
        let other = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"HS256"}"#);
        assert_eq!(s.kind(&format!("{other}.e30.c2ln")), None);
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
