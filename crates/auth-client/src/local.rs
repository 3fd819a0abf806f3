//! Local verification of user access tokens and device tokens, by the service's own rules
//! (the contract's *Tokens* section), with the keys of its JWKS or a configured HS256 secret.
//!
//! In order, as the service does:
//!
//! 1. At most 8 KiB, exactly three parts.
//! 2. A strict header: a JSON object of exactly `alg` and `typ`, plus `kid` under an
//!    asymmetric algorithm (and none under HS256), each once and each a string. `jku`, `jwk`,
//!    `x5u`, `x5c`, `crit` and every other member are refused; no key is ever taken from a
//!    token.
//! 3. `typ` must be the kind asked for: `at+jwt` for user access tokens, `device+jwt` for
//!    device tokens. Neither passes for the other.
//! 4. The key: the JWKS key named by `kid` (a `kid` missing from the JWKS causes one
//!    rate-limited refetch, then refusal); `alg` must equal that key's `alg`, so the algorithm
//!    is pinned by the key, never chosen by the token. Only EdDSA (Ed25519), ES256 (P-256) and
//!    RS256 keys are used; symmetric keys in a JWKS are ignored.
//! 5. The signature, with that key and algorithm only.
//! 6. The claims, all required: `iss` and `aud` equal to the configured ones, `sub`, `jti`,
//!    `iat`, `nbf`, `exp`, and `sid` (access) or `org` (device); `nbf` and `iat` not after now
//!    plus the leeway, and now before `exp` plus the leeway (30 s at most, the service's).
//!
//! What local verification cannot see: the session or device behind the token. A token of a
//! logged-out session or a revoked device verifies locally until it expires, unless the
//! client follows the revocation stream (`revocation.rs`), which the client consults
//! after these steps; the service's verification sees the logout at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Method;
use secrecy::ExposeSecret as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use crate::config::TokenConfig;
use crate::error::Error;
use crate::stats::Operation;
use crate::transport::{Call, Transport};
use crate::types::{TokenRejection, VerifiedBy, VerifiedDevice, VerifiedUser};

/// `typ` of user access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// `typ` of device tokens.
pub const DEVICE_TOKEN_TYP: &str = "device+jwt";
/// Longer tokens are refused before any parsing, as by the service.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Which kind of token to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    User,
    Device,
}

impl Kind {
    const fn typ(self) -> &'static str {
        match self {
            Self::User => ACCESS_TOKEN_TYP,
            Self::Device => DEVICE_TOKEN_TYP,
        }
    }

    /// The kind a token claims to be (its `typ`, read leniently, for routing only).
    pub(crate) fn of(token: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Typ {
            typ: String,
        }
        let raw = header_bytes(token)?;
        match serde_json::from_slice::<Typ>(&raw).ok()?.typ.as_str() {
            ACCESS_TOKEN_TYP => Some(Self::User),
            DEVICE_TOKEN_TYP => Some(Self::Device),
            _ => None,
        }
    }
}

/// Why local verification gave no verdict.
#[derive(Debug)]
pub(crate) enum LocalError {
    /// The token is refused.
    Rejected(TokenRejection),
    /// The JWKS could not be fetched.
    Unavailable(Error),
    /// The service publishes no keys (HS256) and no secret is configured.
    NoKeys,
}

/// A verified token's claims, with its `iat` (Unix seconds), which revocations compare.
pub(crate) enum Claims {
    User(VerifiedUser, i64),
    Device(VerifiedDevice, i64),
}

/// Members are read as written: one that needs a JSON escape (which the service never
/// writes, and refuses) is refused here too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictHeader {
    #[serde(deserialize_with = "unescaped")]
    alg: String,
    #[serde(deserialize_with = "unescaped")]
    typ: String,
    #[serde(default, deserialize_with = "present_string")]
    kid: Option<String>,
}

fn unescaped<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    <&'de str>::deserialize(d).map(str::to_owned)
}

fn present_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    unescaped(d).map(Some)
}

fn header_bytes(token: &str) -> Option<Vec<u8>> {
    if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
        return None;
    }
    URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()
}

/// The header if it holds only `alg`, `typ` and optionally `kid`, each once, as strings.
fn read_strict(token: &str) -> Option<StrictHeader> {
    let raw = header_bytes(token)?;
    // A struct also deserialises from a JSON array; a header must be an object.
    if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(&raw).ok()
}

#[derive(Deserialize)]
struct AccessJwt {
    sub: Uuid,
    sid: Uuid,
    jti: Uuid,
    iat: i64,
    nbf: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct DeviceJwt {
    sub: String,
    org: Uuid,
    jti: Uuid,
    iat: i64,
    nbf: i64,
    exp: i64,
}

/// The service's device id rule: 1..=128 characters of `[A-Za-z0-9_.:-]`.
fn valid_device_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

fn check_times(iat: i64, nbf: i64, exp: i64, leeway: i64) -> Result<(), TokenRejection> {
    let now = Utc::now().timestamp();
    if nbf > now.saturating_add(leeway) || iat > now.saturating_add(leeway) {
        return Err(TokenRejection::Invalid);
    }
    if now >= exp.saturating_add(leeway) {
        return Err(TokenRejection::Expired);
    }
    Ok(())
}

fn at(seconds: i64) -> Result<DateTime<Utc>, TokenRejection> {
    DateTime::<Utc>::from_timestamp(seconds, 0).ok_or(TokenRejection::Invalid)
}

/// A key of the JWKS, with the one algorithm it verifies.
struct VerifyKey {
    algorithm: Algorithm,
    name: &'static str,
    key: DecodingKey,
}

/// One fetched JWKS.
struct KeySet {
    keys: HashMap<String, VerifyKey>,
    fetched_at: Instant,
    generation: u64,
}

/// The usable signing key of a JWK, keyed by its `kid`.
fn usable(jwk: &Jwk) -> Option<(String, VerifyKey)> {
    let kid = jwk.common.key_id.clone()?;
    if !matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    ) {
        return None;
    }
    let (algorithm, name) = match (jwk.common.key_algorithm?, &jwk.algorithm) {
        (KeyAlgorithm::EdDSA, AlgorithmParameters::OctetKeyPair(p))
            if p.curve == EllipticCurve::Ed25519 =>
        {
            (Algorithm::EdDSA, "EdDSA")
        }
        (KeyAlgorithm::ES256, AlgorithmParameters::EllipticCurve(p))
            if p.curve == EllipticCurve::P256 =>
        {
            (Algorithm::ES256, "ES256")
        }
        (KeyAlgorithm::RS256, AlgorithmParameters::RSA(_)) => (Algorithm::RS256, "RS256"),
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((
        kid,
        VerifyKey {
            algorithm,
            name,
            key,
        },
    ))
}

fn parse_jwks(doc: &serde_json::Value, generation: u64) -> KeySet {
    let keys = doc["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
                .filter_map(|jwk| usable(&jwk))
                .collect()
        })
        .unwrap_or_default();
    KeySet {
        keys,
        fetched_at: Instant::now(),
        generation,
    }
}

/// The JWKS as last fetched, and the rules for fetching it again.
struct Jwks {
    current: RwLock<Option<Arc<KeySet>>>,
    /// One fetch at a time; callers that waited use its result.
    fetching: tokio::sync::Mutex<()>,
    last_fetch: Mutex<Option<Instant>>,
    max_age: Duration,
    min_refetch: Duration,
}

enum Keys {
    Hs256(DecodingKey),
    Jwks(Jwks),
}

/// Verifies tokens with the service's public keys or a shared HS256 secret.
pub(crate) struct LocalVerifier {
    keys: Keys,
    issuer: String,
    audience: String,
    leeway: i64,
}

impl std::fmt::Debug for LocalVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalVerifier")
            .field(
                "keys",
                &match &self.keys {
                    Keys::Hs256(_) => "HS256 [REDACTED]",
                    Keys::Jwks(_) => "JWKS",
                },
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl LocalVerifier {
    pub(crate) fn new(config: &TokenConfig) -> Self {
        let keys = match &config.hs256_secret {
            Some(secret) => {
                Keys::Hs256(DecodingKey::from_secret(secret.expose_secret().as_bytes()))
            }
            None => Keys::Jwks(Jwks {
                current: RwLock::new(None),
                fetching: tokio::sync::Mutex::new(()),
                last_fetch: Mutex::new(None),
                max_age: config.jwks_max_age,
                min_refetch: config.jwks_min_refetch,
            }),
        };
        Self {
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: i64::try_from(config.leeway.as_secs()).unwrap_or(30),
        }
    }

    /// Verifies `token` as `kind`.
    pub(crate) async fn verify(
        &self,
        token: &str,
        kind: Kind,
        transport: &Transport,
        timeout: Duration,
    ) -> Result<Claims, LocalError> {
        let rejected = LocalError::Rejected(TokenRejection::Invalid);
        let (algorithm, key) = match &self.keys {
            Keys::Hs256(key) => {
                let header = read_strict(token).ok_or(rejected)?;
                if header.typ != kind.typ() || header.alg != "HS256" || header.kid.is_some() {
                    return Err(LocalError::Rejected(TokenRejection::Invalid));
                }
                (Algorithm::HS256, KeyRef::Secret(key))
            }
            Keys::Jwks(jwks) => {
                let set = jwks.keys(transport, timeout).await?;
                if set.keys.is_empty() {
                    return Err(LocalError::NoKeys);
                }
                let header = read_strict(token).ok_or(rejected)?;
                let Some(kid) = header.kid.filter(|_| header.typ == kind.typ()) else {
                    return Err(LocalError::Rejected(TokenRejection::Invalid));
                };
                let set = if set.keys.contains_key(&kid) {
                    set
                } else {
                    jwks.refetch_for_unknown_kid(&set, transport, timeout)
                        .await?
                };
                let Some(found) = set.keys.get(&kid) else {
                    return Err(LocalError::Rejected(TokenRejection::Invalid));
                };
                if found.name != header.alg {
                    return Err(LocalError::Rejected(TokenRejection::Invalid));
                }
                (found.algorithm, KeyRef::Set(set.clone(), kid))
            }
        };
        let decoding = match &key {
            KeyRef::Secret(key) => *key,
            KeyRef::Set(set, kid) => match set.keys.get(kid) {
                Some(found) => &found.key,
                None => return Err(LocalError::Rejected(TokenRejection::Invalid)),
            },
        };
        let claims = match kind {
            Kind::User => {
                let c: AccessJwt = self.decode(token, decoding, algorithm)?;
                check_times(c.iat, c.nbf, c.exp, self.leeway).map_err(LocalError::Rejected)?;
                at(c.iat).map_err(LocalError::Rejected)?;
                Claims::User(
                    VerifiedUser {
                        user_id: c.sub,
                        session_id: c.sid,
                        expires_at: at(c.exp).map_err(LocalError::Rejected)?,
                        token_id: Some(c.jti),
                        email: None,
                        verified_by: VerifiedBy::Local,
                    },
                    c.iat,
                )
            }
            Kind::Device => {
                let c: DeviceJwt = self.decode(token, decoding, algorithm)?;
                check_times(c.iat, c.nbf, c.exp, self.leeway).map_err(LocalError::Rejected)?;
                at(c.iat).map_err(LocalError::Rejected)?;
                if !valid_device_id(&c.sub) {
                    return Err(LocalError::Rejected(TokenRejection::Invalid));
                }
                Claims::Device(
                    VerifiedDevice {
                        device_id: c.sub,
                        organization_id: c.org,
                        expires_at: at(c.exp).map_err(LocalError::Rejected)?,
                        token_id: Some(c.jti),
                        verified_by: VerifiedBy::Local,
                    },
                    c.iat,
                )
            }
        };
        Ok(claims)
    }

    /// The signature with that one key and algorithm, then `iss`, `aud` and the presence of
    /// the registered claims. Times are checked by the caller, with the leeway.
    fn decode<T: DeserializeOwned>(
        &self,
        token: &str,
        key: &DecodingKey,
        algorithm: Algorithm,
    ) -> Result<T, LocalError> {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        jsonwebtoken::decode::<T>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|_| LocalError::Rejected(TokenRejection::Invalid))
    }

    /// Fetches the JWKS now (a no-op with an HS256 secret): warms the keys before the first
    /// request, and lets a caller pick up a new key at once.
    pub(crate) async fn refresh(
        &self,
        transport: &Transport,
        timeout: Duration,
    ) -> Result<usize, Error> {
        match &self.keys {
            Keys::Hs256(_) => Ok(0),
            Keys::Jwks(jwks) => {
                let seen = jwks.loaded().map(|s| s.generation);
                jwks.fetch(seen, transport, timeout)
                    .await
                    .map(|set| set.keys.len())
            }
        }
    }
}

enum KeyRef<'a> {
    Secret(&'a DecodingKey),
    Set(Arc<KeySet>, String),
}

impl Jwks {
    fn loaded(&self) -> Option<Arc<KeySet>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    fn since_last_fetch(&self) -> Option<Duration> {
        self.last_fetch
            .lock()
            .ok()
            .and_then(|at| *at)
            .map(|at| at.elapsed())
    }

    /// Keys fit for use: the loaded set while fresh; otherwise a new fetch, or the loaded set
    /// again when that fails (keys change rarely; an unreachable service must not stop
    /// verification) or was tried less than `min_refetch` ago.
    async fn keys(
        &self,
        transport: &Transport,
        timeout: Duration,
    ) -> Result<Arc<KeySet>, LocalError> {
        match self.loaded() {
            Some(set) if set.fetched_at.elapsed() < self.max_age => Ok(set),
            Some(stale) => {
                if self
                    .since_last_fetch()
                    .is_some_and(|since| since < self.min_refetch)
                {
                    return Ok(stale);
                }
                match self.fetch(Some(stale.generation), transport, timeout).await {
                    Ok(set) => Ok(set),
                    Err(err) => {
                        tracing::warn!(error = %err, "JWKS refresh failed; verifying with the keys fetched before");
                        Ok(stale)
                    }
                }
            }
            None => self
                .fetch(None, transport, timeout)
                .await
                .map_err(LocalError::Unavailable),
        }
    }

    /// A token names a `kid` the loaded set lacks: fetch again, at most once per
    /// `min_refetch`.
    async fn refetch_for_unknown_kid(
        &self,
        set: &Arc<KeySet>,
        transport: &Transport,
        timeout: Duration,
    ) -> Result<Arc<KeySet>, LocalError> {
        if self
            .since_last_fetch()
            .is_some_and(|since| since < self.min_refetch)
        {
            transport.metrics.jwks_refetch_suppressed();
            // Another caller may have fetched meanwhile.
            return Ok(self.loaded().unwrap_or_else(|| set.clone()));
        }
        self.fetch(Some(set.generation), transport, timeout)
            .await
            .map_err(LocalError::Unavailable)
    }

    /// Fetches the JWKS, unless another caller fetched a newer set than `seen` while this one
    /// waited its turn.
    async fn fetch(
        &self,
        seen: Option<u64>,
        transport: &Transport,
        timeout: Duration,
    ) -> Result<Arc<KeySet>, Error> {
        let _turn = self.fetching.lock().await;
        if let Some(set) = self.loaded()
            && Some(set.generation) != seen
        {
            return Ok(set);
        }
        if let Ok(mut at) = self.last_fetch.lock() {
            *at = Some(Instant::now());
        }
        transport.metrics.jwks_fetch();
        let segments = [".well-known", "jwks.json"];
        let doc: serde_json::Value = transport
            .call(
                Call::new(Operation::Jwks, Method::GET, &segments),
                timeout,
                &[200],
                |a| a.json(),
            )
            .await?;
        let generation = seen.map_or(1, |g| g + 1);
        let set = Arc::new(parse_jwks(&doc, generation));
        if let Ok(mut current) = self.current.write() {
            *current = Some(set.clone());
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header))
    }

    #[test]
    fn strict_header_accepts_only_issued_members() {
        let ok = read_strict(&token(r#"{"typ":"at+jwt","alg":"EdDSA","kid":"k"}"#)).unwrap();
        assert_eq!(
            (ok.alg.as_str(), ok.typ.as_str(), ok.kid.as_deref()),
            ("EdDSA", "at+jwt", Some("k"))
        );
        for bad in [
            r#"{"typ":"at+jwt","alg":"HS256","kid":null}"#,
            r#"{"typ":"at+jwt","alg":"HS256","kid":1}"#,
            r#"{"typ":"at+jwt","alg":"HS256","alg":"none"}"#,
            r#"{"typ":"at+jwt","alg":"HS256","crit":["exp"]}"#,
            r#"{"typ":"at+jwt","alg":"EdDSA","kid":"k","jwk":{}}"#,
            r#"{"typ":"at+jwt","alg":"HS256","jku":"https://x"}"#,
            r#"{"alg":"HS256"}"#,
            r#"["HS256","at+jwt"]"#,
            r#"{"typ":"at\u002bjwt","alg":"HS256"}"#,
        ] {
            assert!(read_strict(&token(bad)).is_none(), "{bad}");
        }
        let good = token(r#"{"typ":"at+jwt","alg":"HS256"}"#);
        assert!(read_strict(&format!("{good}.x")).is_none());
        assert!(read_strict(&"a".repeat(MAX_TOKEN_BYTES + 1)).is_none());
        assert_eq!(Kind::of(&good), Some(Kind::User));
        assert_eq!(
            Kind::of(&token(r#"{"typ":"device+jwt","alg":"HS256"}"#)),
            Some(Kind::Device)
        );
        assert_eq!(Kind::of("garbage"), None);
    }

    #[test]
    fn times_follow_the_service_rule() {
        let now = Utc::now().timestamp();
        assert!(check_times(now, now, now + 60, 30).is_ok());
        assert!(check_times(now, now, now - 29, 30).is_ok());
        assert_eq!(
            check_times(now, now, now - 30, 30),
            Err(TokenRejection::Expired)
        );
        assert_eq!(
            check_times(now + 31, now, now + 60, 30),
            Err(TokenRejection::Invalid)
        );
        assert_eq!(
            check_times(now, now + 31, now + 60, 30),
            Err(TokenRejection::Invalid)
        );
        assert!(check_times(now, now + 30, now + 60, 30).is_ok());
    }

    #[test]
    fn only_signing_keys_of_the_service_algorithms_are_used() {
        let doc = serde_json::json!({"keys": [
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed","alg":"EdDSA","use":"sig"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"no-alg"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"EdDSA"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"enc","alg":"EdDSA","use":"enc"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"mismatch","alg":"RS256"},
            {"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA","kid":"hmac","alg":"HS256"},
            {"kty":"weird"}
        ]});
        let set = parse_jwks(&doc, 1);
        assert_eq!(set.keys.keys().collect::<Vec<_>>(), vec!["ed"]);
        assert!(
            parse_jwks(&serde_json::json!({"keys": []}), 1)
                .keys
                .is_empty()
        );
        assert!(valid_device_id("frame:kitchen.01_a-b"));
        assert!(!valid_device_id("frame/01"));
        assert!(!valid_device_id(""));
        assert!(!valid_device_id(&"a".repeat(129)));
    }
}
