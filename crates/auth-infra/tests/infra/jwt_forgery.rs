//! `JwtSigner` under every configured algorithm: round trips, RFC 7638 `kid`, key rotation,
//! JWKS, key errors, and a corpus of forged tokens that every signer configuration refuses.
//!
//! Keys are the test-only PEM files in `tests/infra/keys/` (see its README).

use auth_core::model::{
    AccessClaims, DeviceClaims, DeviceId, OrganizationId, SessionId, TokenKind, TokenRejection,
    UserId,
};
use auth_core::ports::TokenSigner;
use auth_infra::jwt::{AsymmetricAlgorithm, JwtKeyError, JwtKeys, JwtSettings, JwtSigner, KeyRole};
use auth_infra::test_support::{
    asymmetric_test_keys, forged_tokens, public_pem_from_jwk, test_key_pair, test_keys,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret as _, SecretSlice};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use AsymmetricAlgorithm::{EdDsa, Es256, Rs256};

/// RFC 7638 thumbprints of the test public keys, computed independently of this crate with
/// `openssl pkey -pubin -outform DER` / `openssl rsa -modulus` and Python's `hashlib` (see
/// `tests/infra/keys/README.md`).
const KIDS: [(AsymmetricAlgorithm, usize, &str); 6] = [
    (EdDsa, 0, "lzuquL-DuZOjeE2lttZJwut8K4EPXwjeOP6x7v8_zYA"),
    (EdDsa, 1, "P275dYs5g7N_ah1Is-ikdepFI5YM0wDYwJYu5J0D1S4"),
    (Es256, 0, "YZF3uVtuiaoClCdsT6n7JDpX4eNf8_gRvbv2uwXG6oI"),
    (Es256, 1, "0O7rJvDqiIgh4HtAyjaPH_Nx-9FGkaVpOJrGn1ntdVw"),
    (Rs256, 0, "UkWZJHS6BG9TIGVlILE8a2w6dxAzbF3WwLj26npmbE0"),
    (Rs256, 1, "WeT2vHmoTr3pzdjLk56o93ftFqVOA008sswuu_MR2yc"),
];

fn expected_kid(algorithm: AsymmetricAlgorithm, index: usize) -> &'static str {
    KIDS.iter()
        .find(|(a, i, _)| *a == algorithm && *i == index)
        .map(|(_, _, k)| *k)
        .unwrap_or_default()
}

fn hs256_keys() -> JwtKeys {
    JwtKeys::Hs256(SecretSlice::from(
        b"test-only-hs256-key-0123456789-abcdefghij".to_vec(),
    ))
}

/// Every signer configuration: HS256, each asymmetric algorithm with key "a", and each
/// with key "b" that still accepts "a" (a rotation in progress).
fn configurations() -> Vec<(String, JwtKeys)> {
    let mut out = vec![("HS256".to_owned(), hs256_keys())];
    for algorithm in AsymmetricAlgorithm::ALL {
        out.push((
            format!("{algorithm} a"),
            asymmetric_test_keys(algorithm, 0, &[]),
        ));
        let old_public = test_key_pair(algorithm, 0).1;
        out.push((
            format!("{algorithm} b + verify a"),
            asymmetric_test_keys(algorithm, 1, &[old_public]),
        ));
    }
    out
}

fn signer(keys: &JwtKeys) -> JwtSigner {
    JwtSigner::from_keys(keys, JwtSettings::default()).unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

fn access(at: DateTime<Utc>) -> AccessClaims {
    AccessClaims {
        user_id: UserId::generate(),
        session_id: SessionId::generate(),
        token_id: Uuid::now_v7(),
        issued_at: at,
        expires_at: at + Duration::minutes(15),
    }
}

fn device(at: DateTime<Utc>) -> DeviceClaims {
    DeviceClaims {
        device_id: DeviceId::parse("frame:01").unwrap(),
        organization_id: OrganizationId::generate(),
        token_id: Uuid::now_v7(),
        issued_at: at,
        expires_at: at + Duration::hours(24),
    }
}

fn tokens(s: &JwtSigner, at: DateTime<Utc>) -> (String, String) {
    (
        s.sign_access(&access(at))
            .unwrap()
            .expose_secret()
            .to_owned(),
        s.sign_device(&device(at))
            .unwrap()
            .expose_secret()
            .to_owned(),
    )
}

fn header_of(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// RFC 7638 computed here from the published JWK, independently of jsonwebtoken.
fn rfc7638(jwk: &Value) -> String {
    let canonical = match jwk["kty"].as_str().unwrap() {
        "OKP" => json!({"crv": jwk["crv"], "kty": "OKP", "x": jwk["x"]}),
        "EC" => json!({"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}),
        "RSA" => json!({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}),
        other => panic!("unexpected kty {other}"),
    };
    // serde_json without `preserve_order` writes members sorted, with no whitespace: the
    // RFC 7638 form.
    let text = serde_json::to_string(&canonical).unwrap();
    URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes()))
}

#[test]
fn round_trips_both_kinds_under_every_algorithm() {
    let t0 = now();
    for (name, keys) in configurations() {
        let s = signer(&keys);
        let (a, d) = (access(t0), device(t0));
        let at = s.sign_access(&a).unwrap();
        let dt = s.sign_device(&d).unwrap();
        let (at, dt) = (at.expose_secret(), dt.expose_secret());
        assert_eq!(s.verify_access(at, t0).unwrap(), a, "{name}");
        assert_eq!(s.verify_device(dt, t0).unwrap(), d, "{name}");
        assert_eq!(s.kind(at), Some(TokenKind::User), "{name}");
        assert_eq!(s.kind(dt), Some(TokenKind::Device), "{name}");
        // A kind is never accepted in place of the other.
        assert_eq!(
            s.verify_device(at, t0),
            Err(TokenRejection::Invalid),
            "{name}"
        );
        assert_eq!(
            s.verify_access(dt, t0),
            Err(TokenRejection::Invalid),
            "{name}"
        );
        // Expiry with the 30 s leeway, from the domain clock.
        assert!(
            s.verify_access(at, a.expires_at + Duration::seconds(29))
                .is_ok()
        );
        assert_eq!(
            s.verify_access(at, a.expires_at + Duration::seconds(30)),
            Err(TokenRejection::Expired),
            "{name}"
        );
        assert_eq!(
            s.verify_device(dt, d.expires_at + Duration::seconds(30)),
            Err(TokenRejection::Expired),
            "{name}"
        );
        // The header holds exactly what the contract says.
        let header = header_of(at);
        assert_eq!(header["alg"], s.algorithm_name(), "{name}");
        assert_eq!(header["typ"], "at+jwt", "{name}");
        assert_eq!(header_of(dt)["typ"], "device+jwt", "{name}");
        match s.signing_kid() {
            None => assert_eq!(header, json!({"alg": "HS256", "typ": "at+jwt"}), "{name}"),
            Some(kid) => {
                assert_eq!(header.as_object().unwrap().len(), 3, "{name}");
                assert_eq!(header["kid"], kid, "{name}");
                assert_eq!(header_of(dt)["kid"], kid, "{name}");
            }
        }
    }
}

#[test]
fn kid_is_the_rfc_7638_thumbprint_of_the_signing_key() {
    for (algorithm, index, kid) in KIDS {
        let s = signer(&asymmetric_test_keys(algorithm, index, &[]));
        assert_eq!(s.signing_kid(), Some(kid), "{algorithm} {index}");
        let jwk = &s.jwks()["keys"][0];
        assert_eq!(rfc7638(jwk), kid, "{algorithm} {index}");
        // The same public key given as a verify key gets the same kid.
        let other = signer(&asymmetric_test_keys(
            algorithm,
            1 - index,
            &[test_key_pair(algorithm, index).1],
        ));
        assert_eq!(other.jwks()["keys"][1]["kid"], kid);
    }
    // PKCS#1 and PKCS#8 forms of one RSA key are one key.
    let pkcs1 = signer(&JwtKeys::Asymmetric {
        algorithm: Rs256,
        private_pem: SecretSlice::from(test_keys::RSA2048_A_PKCS1.as_bytes().to_vec()),
        verify_pems: vec![],
    });
    assert_eq!(pkcs1.signing_kid(), Some(expected_kid(Rs256, 0)));
    let pkcs1_public = signer(&asymmetric_test_keys(
        Rs256,
        1,
        &[test_keys::RSA2048_A_PKCS1_PUB],
    ));
    assert_eq!(
        pkcs1_public.jwks()["keys"][1]["kid"],
        expected_kid(Rs256, 0)
    );
}

#[test]
fn jwks_publishes_public_keys_only() {
    assert_eq!(signer(&hs256_keys()).jwks(), json!({"keys": []}));
    for algorithm in AsymmetricAlgorithm::ALL {
        let (_, public_a) = test_key_pair(algorithm, 0);
        let (_, public_b) = test_key_pair(algorithm, 1);
        // Key b signs; a (previous) is accepted; a given twice and b given as its own verify
        // key are listed once.
        let s = signer(&asymmetric_test_keys(
            algorithm,
            1,
            &[public_a, public_b, public_a],
        ));
        let jwks = s.jwks();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2, "{algorithm}: {jwks}");
        assert_eq!(keys[0]["kid"], expected_kid(algorithm, 1));
        assert_eq!(keys[1]["kid"], expected_kid(algorithm, 0));
        for (jwk, public_pem) in keys.iter().zip([public_b, public_a]) {
            let mut members: Vec<&str> = jwk
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            members.sort_unstable();
            let expected: &[&str] = match algorithm {
                EdDsa => &["alg", "crv", "kid", "kty", "use", "x"],
                Es256 => &["alg", "crv", "kid", "kty", "use", "x", "y"],
                Rs256 => &["alg", "e", "kid", "kty", "n", "use"],
            };
            assert_eq!(members, expected, "{algorithm}: {jwk}");
            assert_eq!(jwk["alg"], algorithm.as_str());
            assert_eq!(jwk["use"], "sig");
            match algorithm {
                EdDsa => assert_eq!(
                    (&jwk["kty"], &jwk["crv"]),
                    (&json!("OKP"), &json!("Ed25519"))
                ),
                Es256 => assert_eq!((&jwk["kty"], &jwk["crv"]), (&json!("EC"), &json!("P-256"))),
                Rs256 => assert_eq!((&jwk["kty"], &jwk["e"]), (&json!("RSA"), &json!("AQAB"))),
            }
            // The published components rebuild exactly the public key file openssl wrote:
            // derived from the private key for b, read from the PEM for a.
            assert_eq!(public_pem_from_jwk(jwk).unwrap(), public_pem, "{algorithm}");
        }
    }
}

#[test]
fn rotation_accepts_previous_keys_until_they_expire() {
    let t0 = now();
    for algorithm in AsymmetricAlgorithm::ALL {
        let old = signer(&asymmetric_test_keys(algorithm, 0, &[]));
        let new_alone = signer(&asymmetric_test_keys(algorithm, 1, &[]));
        let (_, old_public) = test_key_pair(algorithm, 0);
        let new = signer(&asymmetric_test_keys(algorithm, 1, &[old_public]));
        let (a, d) = (access(t0), device(t0));
        let old_access = old.sign_access(&a).unwrap();
        let old_device = old.sign_device(&d).unwrap();
        let (oa, od) = (old_access.expose_secret(), old_device.expose_secret());

        assert_eq!(new.verify_access(oa, t0).unwrap(), a, "{algorithm}");
        assert_eq!(new.verify_device(od, t0).unwrap(), d, "{algorithm}");
        assert_eq!(
            new_alone.verify_access(oa, t0),
            Err(TokenRejection::Invalid)
        );
        assert_eq!(
            new_alone.verify_device(od, t0),
            Err(TokenRejection::Invalid)
        );
        // Until it expires, like any token.
        assert_eq!(
            new.verify_access(oa, a.expires_at + Duration::seconds(30)),
            Err(TokenRejection::Expired)
        );
        // New tokens carry the new kid, and the old signer does not know it.
        let (na, nd) = tokens(&new, t0);
        assert_eq!(header_of(&na)["kid"], expected_kid(algorithm, 1));
        assert!(new.verify_access(&na, t0).is_ok() && new.verify_device(&nd, t0).is_ok());
        assert_eq!(old.verify_access(&na, t0), Err(TokenRejection::Invalid));
        // A kid naming one configured key over another configured key's signature fails.
        let (h, rest) = oa.split_once('.').unwrap();
        let mut header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        header["kid"] = json!(expected_kid(algorithm, 1));
        let swapped = format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap())
        );
        assert_eq!(
            new.verify_access(&swapped, t0),
            Err(TokenRejection::Invalid)
        );
        // The JWKS lists both.
        let kids: Vec<Value> = new.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].clone())
            .collect();
        assert_eq!(
            kids,
            [
                json!(expected_kid(algorithm, 1)),
                json!(expected_kid(algorithm, 0))
            ]
        );
    }
}

#[test]
fn tokens_of_one_configuration_fail_in_every_other() {
    let t0 = now();
    let configs = configurations();
    for (issuer_name, issuer_keys) in &configs {
        let issuer = signer(issuer_keys);
        let (a, d) = tokens(&issuer, t0);
        let issuer_kid = issuer.signing_kid();
        for (name, keys) in &configs {
            let s = signer(keys);
            let knows = match (issuer_kid, s.jwks()["keys"].as_array()) {
                (None, _) => name == issuer_name,
                (Some(kid), Some(keys)) => {
                    s.algorithm_name() == issuer.algorithm_name()
                        && keys.iter().any(|k| k["kid"] == kid)
                }
                (Some(_), None) => false,
            };
            assert_eq!(
                s.verify_access(&a, t0).is_ok(),
                knows,
                "{issuer_name} -> {name}"
            );
            assert_eq!(
                s.verify_device(&d, t0).is_ok(),
                knows,
                "{issuer_name} -> {name}"
            );
        }
    }
}

fn key_error(algorithm: AsymmetricAlgorithm, private: &str, verify: &[&str]) -> JwtKeyError {
    JwtSigner::from_keys(
        &JwtKeys::Asymmetric {
            algorithm,
            private_pem: SecretSlice::from(private.as_bytes().to_vec()),
            verify_pems: verify.iter().map(|p| (*p).to_owned()).collect(),
        },
        JwtSettings::default(),
    )
    .unwrap_err()
}

#[test]
fn unusable_keys_are_refused_with_clear_errors() {
    use test_keys::*;
    let short = JwtSigner::from_keys(
        &JwtKeys::Hs256(SecretSlice::from(vec![7u8; 31])),
        JwtSettings::default(),
    )
    .unwrap_err();
    assert_eq!(short, JwtKeyError::KeyTooShort);
    assert_eq!(
        short.to_string(),
        "JWT_SECRET_KEY must be at least 32 bytes"
    );

    let cases: Vec<(JwtKeyError, &str)> = vec![
        (
            key_error(EdDsa, P256_A, &[]),
            "is an EC key, but JWT_ALGORITHM=EdDSA needs an Ed25519 key",
        ),
        (
            key_error(Es256, RSA2048_A, &[]),
            "is an RSA key, but JWT_ALGORITHM=ES256 needs a P-256 EC key",
        ),
        (
            key_error(Rs256, ED25519_A, &[]),
            "is an Ed25519 key, but JWT_ALGORITHM=RS256 needs an RSA key",
        ),
        (key_error(Es256, P384, &[]), "is a P-384 EC key"),
        (
            key_error(Rs256, RSA1024, &[]),
            "RSA keys must have at least 2048 bits",
        ),
        (
            key_error(Rs256, RSA2048_A, &[RSA1024_PUB]),
            "verify key #1 (JWT_VERIFY_KEY_FILES): RSA keys must have at least 2048 bits, this one has 1024",
        ),
        (
            key_error(Es256, P256_A, &[P256_B_PUB, P384_PUB]),
            "verify key #2 (JWT_VERIFY_KEY_FILES) is an EC key on another curve than P-256",
        ),
        (
            key_error(EdDsa, ED25519_A, &[P256_A_PUB]),
            "verify key #1 (JWT_VERIFY_KEY_FILES) is an EC key, but JWT_ALGORITHM=EdDSA",
        ),
        (
            key_error(Es256, P256_A_SEC1, &[]),
            "openssl pkcs8 -topk8 -nocrypt",
        ),
        (
            key_error(EdDsa, ED25519_A_PUB, &[]),
            "private key (JWT_PRIVATE_KEY_FILE): unreadable PEM: this is a public key",
        ),
        (
            key_error(EdDsa, ED25519_A, &[ED25519_B]),
            "verify key #1 (JWT_VERIFY_KEY_FILES): unreadable PEM: this is a private key",
        ),
        (key_error(EdDsa, "", &[]), "unreadable PEM: no `-----BEGIN"),
        (
            key_error(
                EdDsa,
                "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
                &[],
            ),
            "unreadable PEM",
        ),
        (
            key_error(
                EdDsa,
                ED25519_A,
                &["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"],
            ),
            "verify key #1 (JWT_VERIFY_KEY_FILES): unreadable PEM",
        ),
        (
            key_error(
                EdDsa,
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                &[],
            ),
            "encrypted private keys are not supported",
        ),
    ];
    for (error, expected) in cases {
        assert!(
            error.to_string().contains(expected),
            "{error} does not contain {expected}"
        );
    }
    assert!(matches!(
        key_error(Rs256, RSA1024, &[]),
        JwtKeyError::RsaKeyTooSmall {
            role: KeyRole::Signing,
            ..
        }
    ));
    assert!(matches!(
        key_error(Es256, P256_A, &[P256_B_PUB, P384_PUB]),
        JwtKeyError::WrongKeyType {
            role: KeyRole::Verify(1),
            algorithm: Es256,
            ..
        }
    ));
    // Config parsing of the algorithm name.
    assert_eq!("ES256".parse::<AsymmetricAlgorithm>(), Ok(Es256));
    assert!("es256".parse::<AsymmetricAlgorithm>().is_err());
}

#[test]
fn forged_tokens_are_refused_by_every_configuration() {
    let t0 = now();
    let configs = configurations();
    let signers: Vec<(String, JwtSigner)> = configs
        .iter()
        .map(|(name, keys)| (name.clone(), signer(keys)))
        .collect();
    for (corpus_name, keys) in &configs {
        let own = signer(keys);
        let (user, device) = tokens(&own, t0);
        assert!(own.verify_access(&user, t0).is_ok() && own.verify_device(&device, t0).is_ok());

        let corpus = forged_tokens(keys, &user, &device);
        assert!(
            corpus.len() >= 30,
            "{corpus_name}: only {} forgeries",
            corpus.len()
        );
        let mut labels: Vec<&str> = corpus.iter().map(|(l, _)| l.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(
            labels.len(),
            corpus.len(),
            "{corpus_name}: duplicate labels"
        );
        for needle in [
            "alg none",
            "alg None",
            "alg NONE",
            "alg nOnE",
            "signature stripped",
            "signature byte flipped",
            "payload sub changed",
            "payload exp changed",
            "typ swapped",
            "HS256 keyed with",
            "alg swapped to",
            "expired",
            "nbf an hour ahead",
            "iat an hour ahead",
            "wrong iss",
            "wrong aud",
            "missing exp",
            "missing sub",
            "kid path traversal",
            "kid SQL injection",
            "kid of an unknown key",
            "jku header",
            "jwk header",
            "x5u header",
            "x5c header",
            "crit header",
            "duplicate alg",
            "foo header",
            "user claims with typ device+jwt",
            "device claims with typ at+jwt",
            "100 KB",
            "non-base64 garbage",
            "two-part token",
            "five-part JWE-shaped token",
            "empty string",
            "leading space",
            "trailing newline",
        ] {
            assert!(
                labels.iter().any(|l| l.contains(needle)),
                "{corpus_name}: no forgery labelled {needle:?}"
            );
        }
        // The correctly-signed entries really are signed with the service's key: the expired
        // one fails on expiry alone.
        let expired = &corpus
            .iter()
            .find(|(l, _)| l == "expired an hour ago, correctly signed")
            .unwrap()
            .1;
        assert_eq!(own.verify_access(expired, t0), Err(TokenRejection::Expired));

        for (label, token) in &corpus {
            for (name, s) in &signers {
                for (method, result) in [
                    ("verify_access", s.verify_access(token, t0).map(drop)),
                    ("verify_device", s.verify_device(token, t0).map(drop)),
                ] {
                    // `Expired` only for a token that is otherwise valid.
                    let allowed: &[TokenRejection] = if label.contains("expired") {
                        &[TokenRejection::Invalid, TokenRejection::Expired]
                    } else {
                        &[TokenRejection::Invalid]
                    };
                    assert!(
                        result.is_err_and(|e| allowed.contains(&e)),
                        "{method} of {name} answered {result:?} to {corpus_name} forgery {label:?}"
                    );
                }
            }
        }
    }
}

/// A quick timing, not a benchmark: `CARGO_TARGET_DIR=/tmp/target-jwt cargo test --release
/// -p auth-infra --test jwt_forgery -- --ignored --nocapture timings`.
#[test]
#[ignore = "timing only; run in release"]
fn timings() {
    let t0 = now();
    for (name, keys) in configurations()
        .into_iter()
        .filter(|(n, _)| !n.contains('+'))
    {
        let s = signer(&keys);
        let claims = access(t0);
        let n = if name.starts_with("RS256") {
            500
        } else {
            5_000
        };
        let start = std::time::Instant::now();
        let mut token = None;
        for _ in 0..n {
            token = Some(s.sign_access(&claims).unwrap());
        }
        let sign = start.elapsed() / n;
        let token = token.unwrap();
        let start = std::time::Instant::now();
        for _ in 0..n {
            assert!(s.verify_access(token.expose_secret(), t0).is_ok());
        }
        let verify = start.elapsed() / n;
        println!("{name:>6}: sign {sign:?}, verify {verify:?}");
    }
}
