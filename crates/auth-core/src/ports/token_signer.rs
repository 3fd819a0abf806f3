//! `TokenSigner`: issues and checks signed access tokens.

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::BoxError;
use crate::model::{AccessClaims, DeviceClaims, TokenKind, TokenRejection};

/// Signing failed (a key or encoding problem, never the caller's fault).
#[derive(Debug, thiserror::Error)]
#[error("token signing failed")]
pub struct SignError(#[source] pub BoxError);

/// Signs and verifies user access tokens and device tokens.
///
/// Implementations MUST:
/// - mark each token kind so that no kind is accepted in place of another (for JWTs, the
///   `typ` header `at+jwt` for user access tokens, `device+jwt` for device tokens), and
///   refuse a token of one kind where the other is verified;
/// - pin the algorithm: the token's own header never chooses how it is verified;
/// - require and check issuer, audience, subject, session id, token id, issued-at,
///   not-before and expiry, with at most 30 s of leeway, against `now`;
/// - reject any header parameter they never issue (`jku`, `jwk`, `x5u`, `x5c`, `crit`) and
///   any `kid` naming no configured key;
/// - answer [`TokenRejection::Expired`] only for a token that is otherwise valid.
pub trait TokenSigner: Send + Sync + 'static {
    /// Encodes and signs `claims`.
    ///
    /// # Errors
    /// [`SignError`] when signing fails.
    fn sign_access(&self, claims: &AccessClaims) -> Result<SecretString, SignError>;

    /// Checks a presented access token at time `now`.
    ///
    /// # Errors
    /// [`TokenRejection::Invalid`] or [`TokenRejection::Expired`].
    fn verify_access(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<AccessClaims, TokenRejection>;

    /// Encodes and signs device claims.
    ///
    /// # Errors
    /// [`SignError`] when signing fails.
    fn sign_device(&self, claims: &DeviceClaims) -> Result<SecretString, SignError>;

    /// Checks a presented device token at time `now`.
    ///
    /// # Errors
    /// [`TokenRejection::Invalid`] or [`TokenRejection::Expired`].
    fn verify_device(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<DeviceClaims, TokenRejection>;

    /// The kind a token claims to be, read from its header without verifying anything; `None`
    /// when it is no token of this service's shape. Only for routing to the right `verify_*`.
    fn kind(&self, token: &str) -> Option<TokenKind>;
}
