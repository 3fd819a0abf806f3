//! Key material: the configured algorithm, PEM keys checked against it, their public JWKs
//! and RFC 7638 thumbprints (`kid`).
//!
//! Everything cryptographic goes through jsonwebtoken's own facilities (PEM decoding, public
//! components of a private key, JWK thumbprint), which run on its single `aws_lc_rs` backend.
//! This module only adds the checks that turn a misconfiguration into a clear start-up error
//! instead of a signer that fails on the first request.

use std::fmt;
use std::str::FromStr;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use secrecy::{ExposeSecret as _, SecretSlice};

use super::MIN_HS256_KEY_BYTES;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (aws-lc-rs verifies 2048..=8192).
pub const MAX_RSA_BITS: usize = 8192;

/// An asymmetric `JWT_ALGORITHM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AsymmetricAlgorithm {
    /// `EdDSA` with an Ed25519 key.
    EdDsa,
    /// `ES256`: ECDSA on P-256 with SHA-256.
    Es256,
    /// `RS256`: RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 to 8192 bits.
    Rs256,
}

impl AsymmetricAlgorithm {
    /// Every asymmetric algorithm, in the order the contract names them.
    pub const ALL: [Self; 3] = [Self::EdDsa, Self::Es256, Self::Rs256];

    /// The JOSE name (`EdDSA`, `ES256`, `RS256`), as in the `alg` header and `JWT_ALGORITHM`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    /// The jsonwebtoken algorithm.
    #[must_use]
    pub const fn jwt_algorithm(self) -> Algorithm {
        match self {
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
            Self::Rs256 => Algorithm::RS256,
        }
    }

    const fn family(self) -> AlgorithmFamily {
        match self {
            Self::EdDsa => AlgorithmFamily::Ed,
            Self::Es256 => AlgorithmFamily::Ec,
            Self::Rs256 => AlgorithmFamily::Rsa,
        }
    }

    const fn needs(self) -> &'static str {
        match self {
            Self::EdDsa => "an Ed25519 key",
            Self::Es256 => "a P-256 EC key",
            Self::Rs256 => "an RSA key of at least 2048 bits",
        }
    }
}

impl fmt::Display for AsymmetricAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AsymmetricAlgorithm {
    type Err = JwtKeyError;

    /// Exact JOSE names only (`EdDSA`, `ES256`, `RS256`): no case folding.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| JwtKeyError::UnknownAlgorithm(s.to_owned()))
    }
}

/// The keys a [`JwtSigner`](super::JwtSigner) signs and verifies with.
#[derive(Clone)]
pub enum JwtKeys {
    /// HS256 over the raw bytes of the secret (`JWT_SECRET_KEY`, at least 32 bytes).
    Hs256(SecretSlice<u8>),
    /// An asymmetric algorithm.
    Asymmetric {
        /// `JWT_ALGORITHM`.
        algorithm: AsymmetricAlgorithm,
        /// Contents of `JWT_PRIVATE_KEY_FILE`: a PKCS#8 PEM (`BEGIN PRIVATE KEY`), or PKCS#1
        /// (`BEGIN RSA PRIVATE KEY`) for RSA. Its public key is derived from it.
        private_pem: SecretSlice<u8>,
        /// Contents of each `JWT_VERIFY_KEY_FILES` entry: public key PEMs
        /// (`BEGIN PUBLIC KEY`, or `BEGIN RSA PUBLIC KEY`) accepted in addition to the signing
        /// key, e.g. the previous key during a rotation.
        verify_pems: Vec<String>,
    },
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hs256(_) => f.write_str("JwtKeys::Hs256([REDACTED])"),
            Self::Asymmetric {
                algorithm,
                verify_pems,
                ..
            } => f
                .debug_struct("JwtKeys::Asymmetric")
                .field("algorithm", algorithm)
                .field("private_pem", &"[REDACTED]")
                .field("verify_pems", &verify_pems.len())
                .finish(),
        }
    }
}

/// Which configured key an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// The private signing key (`JWT_PRIVATE_KEY_FILE`).
    Signing,
    /// The verify key at this index (0-based) of `verify_pems` (`JWT_VERIFY_KEY_FILES`).
    Verify(usize),
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Signing => f.write_str("private key (JWT_PRIVATE_KEY_FILE)"),
            Self::Verify(i) => write!(f, "verify key #{} (JWT_VERIFY_KEY_FILES)", i + 1),
        }
    }
}

/// Building a signer failed: the configured keys are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtKeyError {
    /// The HS256 key is shorter than 32 bytes.
    #[error("JWT_SECRET_KEY must be at least {MIN_HS256_KEY_BYTES} bytes")]
    KeyTooShort,
    /// An algorithm name this signer does not offer.
    #[error("{0:?} is not an asymmetric JWT algorithm: expected EdDSA, ES256 or RS256")]
    UnknownAlgorithm(String),
    /// Not a PEM key of a kind this signer reads (or not the kind expected in that place).
    #[error("{role}: unreadable PEM: {reason}")]
    UnreadablePem {
        /// The key.
        role: KeyRole,
        /// What was wrong, with a hint to fix it.
        reason: String,
    },
    /// A readable key of another type than the algorithm needs.
    #[error("{role} is {found}, but JWT_ALGORITHM={algorithm} needs {}", algorithm.needs())]
    WrongKeyType {
        /// The key.
        role: KeyRole,
        /// The configured algorithm.
        algorithm: AsymmetricAlgorithm,
        /// What the key is (`an RSA key`, `a P-384 EC key`, ...).
        found: &'static str,
    },
    /// An RSA key below 2048 bits.
    #[error(
        "{role}: RSA keys must have at least {MIN_RSA_BITS} bits{}",
        bits.map(|b| format!(", this one has {b}")).unwrap_or_default()
    )]
    RsaKeyTooSmall {
        /// The key.
        role: KeyRole,
        /// Its size, when known.
        bits: Option<usize>,
    },
    /// A key of the right type that the crypto backend refuses (corrupt, inconsistent,
    /// oversized).
    #[error("{role}: invalid {algorithm} key: {reason}")]
    InvalidKey {
        /// The key.
        role: KeyRole,
        /// The configured algorithm.
        algorithm: AsymmetricAlgorithm,
        /// The backend's reason.
        reason: String,
    },
}

/// A parsed key: what the signer keeps about it.
pub(crate) struct LoadedKey {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// Public JWK with `kid`, `alg` and `use: sig`.
    pub jwk: Jwk,
    /// Verifies this key's signatures.
    pub decoding: DecodingKey,
}

/// The label of the first PEM block (`PRIVATE KEY`, `PUBLIC KEY`, ...), if any.
fn pem_label(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let len = text[start..].find("-----")?;
    Some(&text[start..start + len])
}

fn unreadable(role: KeyRole, reason: impl Into<String>) -> JwtKeyError {
    JwtKeyError::UnreadablePem {
        role,
        reason: reason.into(),
    }
}

fn label_of(role: KeyRole, pem: &[u8]) -> Result<&str, JwtKeyError> {
    let text = std::str::from_utf8(pem).map_err(|_| {
        unreadable(
            role,
            "not PEM text (a DER file? convert it with `openssl pkey -inform DER`)",
        )
    })?;
    pem_label(text).ok_or_else(|| unreadable(role, "no `-----BEGIN ...-----` line"))
}

/// Checks the PEM label of a private key and explains the usual mistakes.
fn check_private_label(role: KeyRole, label: &str) -> Result<(), JwtKeyError> {
    match label {
        "PRIVATE KEY" | "RSA PRIVATE KEY" => Ok(()),
        "EC PRIVATE KEY" | "EC PARAMETERS" => Err(unreadable(
            role,
            "SEC1 `EC PRIVATE KEY` is not read; convert it to PKCS#8 with \
             `openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.p8.pem`",
        )),
        "ENCRYPTED PRIVATE KEY" => Err(unreadable(
            role,
            "encrypted private keys are not supported; decrypt with `openssl pkey -in key.pem`",
        )),
        "PUBLIC KEY" | "RSA PUBLIC KEY" => Err(unreadable(
            role,
            "this is a public key; the signing key must be the private key",
        )),
        "CERTIFICATE" => Err(unreadable(
            role,
            "this is a certificate; the signing key must be the private key",
        )),
        other => Err(unreadable(role, format!("unexpected PEM block `{other}`"))),
    }
}

/// Checks the PEM label of a public key and explains the usual mistakes.
fn check_public_label(role: KeyRole, label: &str) -> Result<(), JwtKeyError> {
    match label {
        "PUBLIC KEY" | "RSA PUBLIC KEY" => Ok(()),
        "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => {
            Err(unreadable(
                role,
                "this is a private key; give its public key \
                 (`openssl pkey -in key.pem -pubout -out key.pub.pem`)",
            ))
        }
        "CERTIFICATE" => Err(unreadable(
            role,
            "certificates are not read; extract the key with \
             `openssl x509 -in cert.pem -pubkey -noout`",
        )),
        other => Err(unreadable(role, format!("unexpected PEM block `{other}`"))),
    }
}

fn family_name(family: AlgorithmFamily) -> &'static str {
    match family {
        AlgorithmFamily::Ed => "an Ed25519 key",
        AlgorithmFamily::Ec => "an EC key",
        AlgorithmFamily::Rsa => "an RSA key",
        AlgorithmFamily::Hmac => "a secret",
    }
}

fn rsa_bits(n_b64: &str) -> Option<usize> {
    use base64::Engine as _;
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(n_b64)
        .ok()?;
    let first = n.iter().position(|b| *b != 0)?;
    let lead = usize::try_from(n[first].leading_zeros()).ok()?;
    Some((n.len() - first) * 8 - lead)
}

/// RFC 7638 thumbprint (SHA-256, base64url) of a public JWK.
pub(crate) fn thumbprint(jwk: &Jwk) -> Result<String, String> {
    jwk.thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| format!("cannot compute the JWK thumbprint: {e}"))
}

/// Adds `kid`, `alg` and `use` to a public JWK and computes its verifier.
fn finish(
    role: KeyRole,
    algorithm: AsymmetricAlgorithm,
    mut jwk: Jwk,
) -> Result<LoadedKey, JwtKeyError> {
    let invalid = |reason: String| JwtKeyError::InvalidKey {
        role,
        algorithm,
        reason,
    };
    match (&jwk.algorithm, algorithm) {
        (AlgorithmParameters::OctetKeyPair(p), AsymmetricAlgorithm::EdDsa)
            if p.curve == EllipticCurve::Ed25519 => {}
        (AlgorithmParameters::EllipticCurve(p), AsymmetricAlgorithm::Es256) => {
            if p.curve != EllipticCurve::P256 {
                return Err(JwtKeyError::WrongKeyType {
                    role,
                    algorithm,
                    found: "an EC key on another curve than P-256",
                });
            }
        }
        (AlgorithmParameters::RSA(p), AsymmetricAlgorithm::Rs256) => match rsa_bits(&p.n) {
            Some(bits) if bits < MIN_RSA_BITS => {
                return Err(JwtKeyError::RsaKeyTooSmall {
                    role,
                    bits: Some(bits),
                });
            }
            Some(bits) if bits > MAX_RSA_BITS => {
                return Err(invalid(format!(
                    "{bits}-bit RSA keys are not supported (at most {MAX_RSA_BITS})"
                )));
            }
            Some(_) => {}
            None => return Err(invalid("the RSA modulus is empty".into())),
        },
        _ => return Err(invalid("unexpected public key parameters".into())),
    }
    let kid = thumbprint(&jwk).map_err(invalid)?;
    jwk.common = CommonParameters {
        public_key_use: Some(PublicKeyUse::Signature),
        key_algorithm: Some(algorithm.jwt_algorithm().into()),
        key_id: Some(kid.clone()),
        ..CommonParameters::default()
    };
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| invalid(e.to_string()))?;
    Ok(LoadedKey { kid, jwk, decoding })
}

fn backend_error(role: KeyRole, algorithm: AsymmetricAlgorithm, kind: &ErrorKind) -> JwtKeyError {
    match kind {
        ErrorKind::InvalidRsaKey(reason) if reason == "TooSmall" => {
            JwtKeyError::RsaKeyTooSmall { role, bits: None }
        }
        ErrorKind::InvalidRsaKey(reason) if reason == "TooLarge" => JwtKeyError::InvalidKey {
            role,
            algorithm,
            reason: format!("RSA keys over {MAX_RSA_BITS} bits are not supported"),
        },
        other => JwtKeyError::InvalidKey {
            role,
            algorithm,
            reason: other_reason(other),
        },
    }
}

fn other_reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::InvalidRsaKey(reason) => format!("the RSA key was refused ({reason})"),
        ErrorKind::InvalidEcdsaKey => "the EC key was refused".into(),
        ErrorKind::InvalidEddsaKey => "the Ed25519 key was refused".into(),
        other => format!("{other:?}"),
    }
}

/// The key among jsonwebtoken's per-family PEM readers (each accepts only its own family)
/// that read it, if it is of the algorithm's family.
fn pick<K>(
    role: KeyRole,
    algorithm: AsymmetricAlgorithm,
    parsed: [(AlgorithmFamily, jsonwebtoken::errors::Result<K>); 3],
    unreadable_reason: &str,
) -> Result<K, JwtKeyError> {
    let mut read = parsed
        .into_iter()
        .filter_map(|(family, result)| result.ok().map(|key| (family, key)));
    match read.next() {
        Some((family, key)) if family == algorithm.family() => Ok(key),
        Some((family, _)) => Err(JwtKeyError::WrongKeyType {
            role,
            algorithm,
            found: family_name(family),
        }),
        None => Err(unreadable(role, unreadable_reason)),
    }
}

/// Reads the private signing key: its [`EncodingKey`] and its public half.
///
/// # Errors
/// [`JwtKeyError`] naming [`KeyRole::Signing`].
pub(crate) fn load_private(
    algorithm: AsymmetricAlgorithm,
    pem: &SecretSlice<u8>,
) -> Result<(EncodingKey, LoadedKey), JwtKeyError> {
    let role = KeyRole::Signing;
    let pem = pem.expose_secret();
    let label = label_of(role, pem)?;
    check_private_label(role, label)?;
    let key = pick(
        role,
        algorithm,
        [
            (AlgorithmFamily::Ed, EncodingKey::from_ed_pem(pem)),
            (AlgorithmFamily::Ec, EncodingKey::from_ec_pem(pem)),
            (AlgorithmFamily::Rsa, EncodingKey::from_rsa_pem(pem)),
        ],
        "not a PKCS#8 Ed25519, EC or RSA private key (or corrupt base64/DER)",
    )?;
    if algorithm == AsymmetricAlgorithm::EdDsa && key.as_bytes().len() != 48 {
        return Err(JwtKeyError::InvalidKey {
            role,
            algorithm,
            reason: "unexpected Ed25519 PKCS#8 form (PKCS#8 v2 with an embedded public key?); \
                     rewrite it with `openssl pkey -in key.pem -out key.v1.pem`"
                .into(),
        });
    }
    let jwk = match Jwk::from_encoding_key(&key, algorithm.jwt_algorithm()) {
        Ok(jwk) => jwk,
        // jsonwebtoken's PEM reader accepts any EC key; the backend refuses other curves.
        Err(_) if algorithm == AsymmetricAlgorithm::Es256 => {
            let p384 = Jwk::from_encoding_key(&key, Algorithm::ES384).is_ok();
            return Err(JwtKeyError::WrongKeyType {
                role,
                algorithm,
                found: if p384 {
                    "a P-384 EC key"
                } else {
                    "an EC key on another curve than P-256 (or a corrupt one)"
                },
            });
        }
        Err(e) => return Err(backend_error(role, algorithm, e.kind())),
    };
    let loaded = finish(role, algorithm, jwk)?;
    self_test(&key, &loaded, algorithm)?;
    Ok((key, loaded))
}

/// Signs and verifies one message so that a key the backend would refuse at signing time is
/// refused at start instead.
fn self_test(
    key: &EncodingKey,
    loaded: &LoadedKey,
    algorithm: AsymmetricAlgorithm,
) -> Result<(), JwtKeyError> {
    const MESSAGE: &[u8] = b"auth-infra signing key self-test";
    let alg = algorithm.jwt_algorithm();
    let failed = |reason: String| JwtKeyError::InvalidKey {
        role: KeyRole::Signing,
        algorithm,
        reason,
    };
    let signature = jsonwebtoken::crypto::sign(MESSAGE, key, alg)
        .map_err(|e| backend_error(KeyRole::Signing, algorithm, e.kind()))?;
    match jsonwebtoken::crypto::verify(&signature, MESSAGE, &loaded.decoding, alg) {
        Ok(true) => Ok(()),
        Ok(false) => Err(failed(
            "a test signature does not verify with the derived public key".into(),
        )),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// Reads one verify (public) key.
///
/// # Errors
/// [`JwtKeyError`] naming [`KeyRole::Verify`].
pub(crate) fn load_public(
    algorithm: AsymmetricAlgorithm,
    index: usize,
    pem: &str,
) -> Result<LoadedKey, JwtKeyError> {
    let role = KeyRole::Verify(index);
    let label = label_of(role, pem.as_bytes())?;
    check_public_label(role, label)?;
    let bytes = pem.as_bytes();
    let key = pick(
        role,
        algorithm,
        [
            (AlgorithmFamily::Ed, DecodingKey::from_ed_pem(bytes)),
            (AlgorithmFamily::Ec, DecodingKey::from_ec_pem(bytes)),
            (AlgorithmFamily::Rsa, DecodingKey::from_rsa_pem(bytes)),
        ],
        "not an Ed25519, EC or RSA public key (or corrupt base64/DER)",
    )?;
    let jwk =
        Jwk::from_decoding_key(&key, Some(algorithm.jwt_algorithm())).map_err(|e| {
            match (algorithm, e.kind()) {
                (AsymmetricAlgorithm::Es256, ErrorKind::InvalidEcdsaKey) => {
                    JwtKeyError::WrongKeyType {
                        role,
                        algorithm,
                        found: "an EC key on another curve than P-256 (or a compressed point)",
                    }
                }
                (_, kind) => backend_error(role, algorithm, kind),
            }
        })?;
    finish(role, algorithm, jwk)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::jwk::{RSAKeyParameters, RSAKeyType};

    use super::*;

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 §3.1.
        let jwk = Jwk {
            common: CommonParameters::default(),
            algorithm: AlgorithmParameters::RSA(RSAKeyParameters {
                key_type: RSAKeyType::RSA,
                n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
                e: "AQAB".into(),
            }),
        };
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        // The RFC 7638 modulus is 2048 bits.
        let AlgorithmParameters::RSA(p) = &jwk.algorithm else {
            unreachable!()
        };
        assert_eq!(rsa_bits(&p.n), Some(2048));
    }

    #[test]
    fn algorithm_names_are_exact() {
        for a in AsymmetricAlgorithm::ALL {
            assert_eq!(a.as_str().parse::<AsymmetricAlgorithm>().unwrap(), a);
        }
        for bad in ["eddsa", "es256", "HS256", "none", "PS256", ""] {
            assert_eq!(
                bad.parse::<AsymmetricAlgorithm>(),
                Err(JwtKeyError::UnknownAlgorithm(bad.into()))
            );
        }
    }

    #[test]
    fn pem_labels_and_hints() {
        assert_eq!(
            pem_label("x\n-----BEGIN PUBLIC KEY-----\nAA"),
            Some("PUBLIC KEY")
        );
        assert_eq!(pem_label("no pem"), None);
        let hs = |pem: &str| {
            load_private(
                AsymmetricAlgorithm::EdDsa,
                &SecretSlice::from(pem.as_bytes().to_vec()),
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        assert!(
            hs("-----BEGIN EC PRIVATE KEY-----\nAA\n-----END EC PRIVATE KEY-----\n")
                .contains("openssl pkcs8 -topk8")
        );
        assert!(hs("-----BEGIN PUBLIC KEY-----\n").contains("public key"));
        assert!(hs("garbage").contains("no `-----BEGIN"));
        assert!(
            hs("-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n")
                .contains("unreadable PEM")
        );
        let err = load_public(
            AsymmetricAlgorithm::EdDsa,
            1,
            "-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n",
        )
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .starts_with("verify key #2 (JWT_VERIFY_KEY_FILES)")
        );
        assert!(err.to_string().contains("-pubout"));
    }
}
