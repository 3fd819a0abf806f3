//! The TOTP second factor: a sealed secret, one-time codes, recovery codes and the login step
//! between the password and the code.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::{RefreshToken, TokenHash, TokenPair, UserId};

/// A TOTP secret encrypted under the data key (see [`crate::ports::DataCipher`]): the only
/// form in which a secret is stored. `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret(Vec<u8>);

impl SealedSecret {
    /// Wraps sealed bytes (from the cipher, or as stored).
    #[must_use]
    pub const fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The sealed bytes, as stored.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedSecret({} bytes)", self.0.len())
    }
}

/// A user's TOTP enrolment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpEnrolment {
    /// The user.
    pub user_id: UserId,
    /// The secret, sealed.
    pub secret: SealedSecret,
    /// When the enrolment was confirmed; `None` while pending.
    pub enabled_at: Option<DateTime<Utc>>,
    /// The last time step (Unix time / 30 s) whose code was accepted: no code of this step or
    /// an earlier one is accepted again.
    pub last_step: Option<i64>,
    /// When the (pending) secret was made.
    pub created_at: DateTime<Utc>,
}

impl TotpEnrolment {
    /// Whether the second factor is in force (confirmed).
    #[must_use]
    pub const fn is_enabled(&self) -> bool {
        self.enabled_at.is_some()
    }
}

/// A recovery code: 80 random bits as 20 hexadecimal digits in groups of five. Stored as the
/// SHA-256 of its normalised form (lower case, no separators); high entropy makes a slow hash
/// unnecessary.
#[derive(Clone)]
pub struct RecoveryCode(SecretString);

impl RecoveryCode {
    /// Random bytes in a code.
    pub const BYTES: usize = 10;

    /// Encodes fresh random bytes as a code.
    #[must_use]
    pub fn from_random(bytes: &[u8; Self::BYTES]) -> Self {
        let digits = hex::encode(bytes);
        let groups: Vec<&str> = digits
            .as_bytes()
            .chunks(5)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        Self(SecretString::from(groups.join("-")))
    }

    /// The code, to show its user once.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The stored form of a presented code: lower case, separators and spaces dropped, hashed.
    #[must_use]
    pub fn hash_presented(presented: &str) -> TokenHash {
        let normalised: String = presented
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        TokenHash::of(normalised.as_bytes())
    }

    /// The stored form of this code.
    #[must_use]
    pub fn hash(&self) -> TokenHash {
        Self::hash_presented(self.expose())
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode([REDACTED])")
    }
}

/// The opaque token of the login step between a correct password and the second factor:
/// 256 random bits, stored hashed, single purpose, spent by a successful second step.
pub type MfaToken = RefreshToken;

/// A password accepted for a user with a second factor: the code is still due.
#[derive(Debug, Clone)]
pub struct MfaChallenge {
    /// The token to present with the code.
    pub token: MfaToken,
    /// Seconds until the token dies.
    pub expires_in: i64,
}

/// What a correct password gets.
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    /// No second factor: a session is open.
    Tokens(Box<TokenPair>),
    /// The user has a second factor: present a code with the challenge's token.
    MfaRequired(MfaChallenge),
}

/// A new pending enrolment: the secret to put in an authenticator app. `Debug` shows neither.
#[derive(Clone)]
pub struct TotpSetup {
    /// The secret, base32 (RFC 4648, no padding) as authenticator apps take it.
    pub secret: SecretString,
    /// `otpauth://totp/...` with the secret, issuer, algorithm, digits and period.
    pub otpauth_uri: SecretString,
}

impl fmt::Debug for TotpSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSetup([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_normalise_before_hashing() {
        let code = RecoveryCode::from_random(&[0xab; RecoveryCode::BYTES]);
        assert_eq!(code.expose(), "ababa-babab-ababa-babab");
        assert_eq!(
            code.hash(),
            RecoveryCode::hash_presented("ABABABABAB ababababab")
        );
        assert_eq!(format!("{code:?}"), "RecoveryCode([REDACTED])");
        let sealed = SealedSecret::from_bytes(vec![1, 2, 3]);
        assert_eq!(format!("{sealed:?}"), "SealedSecret(3 bytes)");
    }
}
