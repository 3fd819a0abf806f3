//! Claims of a user access token, independent of how it is encoded.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{SessionId, UserId};

/// The domain content of a user access token. The signer adds `iss`, `aud`, `nbf` and the
/// `typ` header; these are the parts the rules care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// `sub`: the user.
    pub user_id: UserId,
    /// `sid`: the session the token was issued under.
    pub session_id: SessionId,
    /// `jti`: unique token id.
    pub token_id: Uuid,
    /// `iat` (and `nbf`).
    pub issued_at: DateTime<Utc>,
    /// `exp`.
    pub expires_at: DateTime<Utc>,
}

/// Which kind of token a JWT claims to be (from its `typ` header), before any verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `at+jwt`: a user access token.
    User,
    /// `device+jwt`: a device token.
    Device,
}

/// Why a presented token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// Malformed, wrong signature, wrong kind, issuer or audience, or not yet valid.
    #[error("token is invalid")]
    Invalid,
    /// Past its `exp` (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// Well-formed and signed, but its session has ended.
    #[error("token has been revoked")]
    Revoked,
}

impl TokenRejection {
    /// The code used in API answers (`INVALID`, `EXPIRED`, `REVOKED`).
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Invalid => "INVALID",
            Self::Expired => "EXPIRED",
            Self::Revoked => "REVOKED",
        }
    }
}
