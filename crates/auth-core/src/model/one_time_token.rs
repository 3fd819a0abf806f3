//! One-time tokens: the secret in a mailed link (address verification, password reset).
//!
//! 256 bits from the CSPRNG, base64url, shown once (in the mail); only the SHA-256 is stored.
//! A token works once, until its expiry (from the domain clock), and only while it is its
//! user's newest of its purpose: issuing one deletes the older ones.

use chrono::{DateTime, Utc};

use super::{Email, TokenHash};

/// What a one-time token is for; a token of one purpose never serves another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenPurpose {
    /// Confirms an address.
    VerifyEmail,
    /// Sets a new password.
    PasswordReset,
    /// Confirms a new address, which then replaces the account's.
    ChangeEmail,
}

impl TokenPurpose {
    /// The stored spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::PasswordReset => "password_reset",
            Self::ChangeEmail => "change_email",
        }
    }

    /// Reads the stored spelling.
    #[must_use]
    pub fn from_stored(raw: &str) -> Option<Self> {
        match raw {
            "verify_email" => Some(Self::VerifyEmail),
            "password_reset" => Some(Self::PasswordReset),
            "change_email" => Some(Self::ChangeEmail),
            _ => None,
        }
    }
}

opaque_token!(
    /// A one-time token (email verification, password reset): 256 bits from the CSPRNG,
    /// base64url, sent once in a link; only its hash is stored. `Debug` is redacted.
    OneTimeToken
);

/// A one-time token as stored (its user is kept beside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// SHA-256 of the token.
    pub hash: TokenHash,
    /// What it is for.
    pub purpose: TokenPurpose,
    /// The address its mail went to. A verification or reset token works only while this is
    /// still the account's address; a change-of-address token makes it the account's.
    pub email: Email,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_256_bits_and_hide_in_debug() {
        let token = OneTimeToken::from_random(&[7; OneTimeToken::BYTES]);
        assert_eq!(token.expose().len(), 43);
        assert_eq!(format!("{token:?}"), "OneTimeToken([REDACTED])");
        assert_eq!(token.hash(), OneTimeToken::presented(token.expose()).hash());
        for purpose in [
            TokenPurpose::VerifyEmail,
            TokenPurpose::PasswordReset,
            TokenPurpose::ChangeEmail,
        ] {
            assert_eq!(TokenPurpose::from_stored(purpose.as_str()), Some(purpose));
        }
    }
}
