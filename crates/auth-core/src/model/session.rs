//! Sessions and their opaque, rotating refresh tokens.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::{SessionId, User, UserId};

/// One login: every refresh token descended from that login belongs to it, and ending the
/// session ends them all. Its lifetime is absolute (not sliding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Stable id, carried as `sid` in access tokens.
    pub id: SessionId,
    /// Owner.
    pub user_id: UserId,
    /// When the login happened.
    pub created_at: DateTime<Utc>,
    /// Absolute end of the session.
    pub expires_at: DateTime<Utc>,
    /// When the session was ended (logout, reuse detected, password change), if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Session {
    /// True when the session may still be used at `now`.
    #[must_use]
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }

    /// When the session ended, or will end unless revoked first: the earlier of its
    /// revocation and its expiry. Retention counts from here.
    #[must_use]
    pub fn ends_at(&self) -> DateTime<Utc> {
        self.revoked_at
            .map_or(self.expires_at, |revoked| revoked.min(self.expires_at))
    }
}

opaque_token!(
    /// An opaque refresh token: 256 bits from the CSPRNG, base64url. Shown to the client once;
    /// only its [`TokenHash`] is stored. `Debug` is redacted.
    RefreshToken
);

/// SHA-256 of a high-entropy secret (refresh token, later API key or device secret).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes `secret` with SHA-256.
    #[must_use]
    pub fn of(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }

    /// Wraps stored hash bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A short fingerprint is enough to correlate; the full digest stays out of logs.
        write!(f, "TokenHash({}…)", hex::encode(&self.0[..4]))
    }
}

/// What a successful login or refresh hands out.
#[derive(Debug, Clone)]
pub struct TokenPair {
    /// Signed access token (JWT).
    pub access_token: SecretString,
    /// Seconds until the access token expires.
    pub access_expires_in: i64,
    /// New refresh token.
    pub refresh_token: RefreshToken,
    /// Seconds until the session (and so the refresh token) expires.
    pub refresh_expires_in: i64,
    /// The session the tokens belong to.
    pub session: Session,
    /// The user.
    pub user: User,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_token_is_256_bits_and_redacted() {
        let t = RefreshToken::from_random(&[7u8; 32]);
        assert_eq!(t.expose().len(), 43);
        assert!(!format!("{t:?}").contains(t.expose()));
        assert_eq!(t.hash(), RefreshToken::presented(t.expose()).hash());
    }
}
