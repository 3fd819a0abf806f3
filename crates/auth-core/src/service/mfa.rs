//! The TOTP second factor on [`AccountService`]: enrolment, confirmation with recovery codes,
//! removal, and the login step between the password and the code.
//!
//! Codes are RFC 6238 (HMAC-SHA-1, 6 digits, 30 s steps), accepted one step early or late,
//! each step at most once per user. Secrets are kept sealed by a [`DataCipher`] bound to the
//! user's id; recovery codes and login challenges are kept as SHA-256 hashes.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use totp_rs::{Algorithm, Builder, Secret};

use super::account::{AccountError, AccountService, Principal, internal};
use crate::model::{
    Email, LoginStep, LoginSubject, MfaChallenge, MfaToken, Password, RecoveryCode, TokenHash,
    TokenPair, TokenRejection, TotpEnrolment, TotpSetup, User, UserId,
};
use crate::ports::{DataCipher, MfaRepository};

/// How long an `mfa_token` lives.
pub const MFA_TOKEN_TTL: Duration = Duration::seconds(300);
/// Seconds per TOTP step.
pub const TOTP_STEP_SECONDS: i64 = 30;
/// Random bytes in a TOTP secret (160 bits, as RFC 4226 recommends).
pub const TOTP_SECRET_BYTES: usize = 20;
/// Recovery codes handed out on confirmation.
pub const RECOVERY_CODES: usize = 10;

/// What the second factor runs on.
#[derive(Clone)]
pub struct MfaPorts {
    /// Enrolments, recovery codes, login challenges.
    pub store: Arc<dyn MfaRepository>,
    /// Encryption of the secrets at rest; `None` when no data key is configured (production
    /// without `AUTH_DATA_KEY`): nobody can enrol, and a code cannot be checked (fails closed
    /// with [`AccountError::MfaUnavailable`]).
    pub cipher: Option<Arc<dyn DataCipher>>,
    /// The issuer shown by authenticator apps (`otpauth://totp/<issuer>:<email>`).
    pub issuer: String,
}

impl std::fmt::Debug for MfaPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaPorts")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// The TOTP step of `at`.
#[must_use]
pub fn totp_step(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(TOTP_STEP_SECONDS)
}

/// The 6-digit code of `secret` at time step `step` (RFC 6238 with SHA-1).
///
/// # Errors
/// A secret shorter than 128 bits.
pub fn totp_code(secret: &[u8], step: i64) -> Result<String, AccountError> {
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(Secret::new(secret.to_vec().into_boxed_slice()))
        .build()
        .map_err(|e| internal(e.to_string()))?;
    let time = u64::try_from(step.saturating_mul(TOTP_STEP_SECONDS)).unwrap_or(0);
    Ok(totp.generate(time).to_string())
}

/// Percent-encodes `text` for an `otpauth://` URI (RFC 3986 unreserved characters kept).
fn uri_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn base32(bytes: &[u8]) -> String {
    Secret::new(bytes.to_vec().into_boxed_slice()).to_base32()
}

/// A presented TOTP code: six ASCII digits (spaces allowed, as apps show `123 456`).
fn as_totp_code(presented: &str) -> Option<String> {
    let digits: String = presented.chars().filter(|c| *c != ' ').collect();
    (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

impl AccountService {
    /// Adds the second factor. Without it, no user has one: [`Self::sign_in`] never asks for a
    /// code and the MFA operations fail as internal errors.
    #[must_use]
    pub fn with_mfa(mut self, mfa: MfaPorts) -> Self {
        self.mfa = Some(mfa);
        self
    }

    fn mfa_ports(&self) -> Result<&MfaPorts, AccountError> {
        self.mfa
            .as_ref()
            .ok_or_else(|| internal("the second factor is not configured"))
    }

    fn cipher(&self) -> Result<&Arc<dyn DataCipher>, AccountError> {
        self.mfa_ports()?
            .cipher
            .as_ref()
            .ok_or(AccountError::MfaUnavailable)
    }

    /// Whether `user` has a second factor in force.
    ///
    /// # Errors
    /// A store failure.
    pub async fn mfa_enabled(&self, user: UserId) -> Result<bool, AccountError> {
        let Some(mfa) = &self.mfa else {
            return Ok(false);
        };
        Ok(mfa.store.find(user).await?.is_some_and(|e| e.is_enabled()))
    }

    /// For a user with a second factor, a new login challenge (its hash stored).
    pub(super) async fn mfa_challenge(
        &self,
        user: &User,
    ) -> Result<Option<MfaChallenge>, AccountError> {
        if !self.mfa_enabled(user.id).await? {
            return Ok(None);
        }
        let mfa = self.mfa_ports()?;
        let token: MfaToken = self.new_refresh_token()?;
        let now = self.ports.clock.now();
        mfa.store
            .create_challenge(&token.hash(), user.id, now + MFA_TOKEN_TTL)
            .await?;
        tracing::info!(user_id = %user.id, "password accepted; second factor due");
        Ok(Some(MfaChallenge {
            token,
            expires_in: MFA_TOKEN_TTL.num_seconds(),
        }))
    }

    /// Checks the principal's password against the stored hash (the principal may come from a
    /// cache), counting the attempt toward the lockout as login does. Returns the stored user,
    /// the attempt key and the admitted attempt: the caller resets the key once everything it
    /// checks has passed (a second-factor change also needs its code).
    pub(super) async fn admit_password(
        &self,
        principal: &Principal,
        password: &Password,
    ) -> Result<(User, TokenHash, crate::ports::AttemptState), AccountError> {
        let Some(user) = self.ports.users.find_by_id(principal.user.id).await? else {
            return Err(AccountError::InvalidToken(TokenRejection::Revoked));
        };
        let attempt_key = user.email.attempt_key();
        let attempt = self.admit_attempt(&attempt_key).await?;
        let check = self
            .ports
            .hasher
            .verify(password, Some(&user.password_hash))
            .await
            .map_err(internal)?;
        if !check.matches {
            self.note_failure(
                &attempt_key,
                attempt,
                LoginSubject::User(user.id),
                LoginStep::Reauthentication,
            )
            .await?;
            return Err(AccountError::InvalidCredentials);
        }
        Ok((user, attempt_key, attempt))
    }

    /// Starts (or restarts) a TOTP enrolment after checking the password: a new secret,
    /// pending until [`Self::confirm_totp`].
    ///
    /// # Errors
    /// [`AccountError::InvalidCredentials`] (counted toward the lockout),
    /// [`AccountError::Locked`], [`AccountError::MfaAlreadyEnabled`], or a store failure.
    pub async fn enrol_totp(
        &self,
        principal: &Principal,
        password: &Password,
    ) -> Result<TotpSetup, AccountError> {
        let mfa = self.mfa_ports()?;
        let cipher = self.cipher()?;
        let (user, attempt_key, _) = self.admit_password(principal, password).await?;
        self.ports.attempts.reset(&attempt_key).await?;
        let mut secret = [0u8; TOTP_SECRET_BYTES];
        self.ports.secrets.fill(&mut secret).map_err(internal)?;
        let sealed = cipher
            .seal(&secret, user.id.to_string().as_bytes())
            .map_err(internal)?;
        let now = self.ports.clock.now();
        if !mfa.store.begin(user.id, &sealed, now).await? {
            return Err(AccountError::MfaAlreadyEnabled);
        }
        let encoded = base32(&secret);
        let uri = format!(
            "otpauth://totp/{issuer}:{account}?secret={encoded}&issuer={issuer}&algorithm=SHA1&digits=6&period=30",
            issuer = uri_escape(&mfa.issuer),
            account = uri_escape(user.email.as_str()),
        );
        tracing::info!(user_id = %user.id, "TOTP enrolment started");
        Ok(TotpSetup {
            secret: SecretString::from(encoded),
            otpauth_uri: SecretString::from(uri),
        })
    }

    /// The step of a valid code of `enrolment` at `now` (±1 step), if any.
    fn matching_step(
        &self,
        enrolment: &TotpEnrolment,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, AccountError> {
        let secret = self
            .cipher()?
            .open(&enrolment.secret, enrolment.user_id.to_string().as_bytes())
            .map_err(internal)?;
        let current = totp_step(now);
        for step in [current - 1, current, current + 1] {
            let expected = totp_code(&secret, step)?;
            if subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), code.as_bytes()).into() {
                return Ok(Some(step));
            }
        }
        Ok(None)
    }

    /// Confirms a pending enrolment with a code of its secret, and hands out the recovery
    /// codes, once.
    ///
    /// # Errors
    /// [`AccountError::InvalidMfaCode`] (no pending enrolment, or a wrong code),
    /// [`AccountError::MfaAlreadyEnabled`], or a store failure.
    pub async fn confirm_totp(
        &self,
        principal: &Principal,
        code: &str,
    ) -> Result<Vec<RecoveryCode>, AccountError> {
        let mfa = self.mfa_ports()?;
        let user = principal.user.id;
        let Some(enrolment) = mfa.store.find(user).await? else {
            return Err(AccountError::InvalidMfaCode);
        };
        if enrolment.is_enabled() {
            return Err(AccountError::MfaAlreadyEnabled);
        }
        let now = self.ports.clock.now();
        let Some(step) = as_totp_code(code)
            .map(|code| self.matching_step(&enrolment, &code, now))
            .transpose()?
            .flatten()
        else {
            return Err(AccountError::InvalidMfaCode);
        };
        let mut codes = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            let mut bytes = [0u8; RecoveryCode::BYTES];
            self.ports.secrets.fill(&mut bytes).map_err(internal)?;
            codes.push(RecoveryCode::from_random(&bytes));
        }
        let hashes: Vec<TokenHash> = codes.iter().map(RecoveryCode::hash).collect();
        if !mfa.store.enable(user, step, &hashes, now).await? {
            // A parallel confirmation won, or the enrolment was restarted or removed.
            return Err(AccountError::MfaAlreadyEnabled);
        }
        tracing::info!(user_id = %user, "second factor enabled");
        Ok(codes)
    }

    /// Checks a code of `user`'s enabled factor and spends it: a TOTP code's step (each step
    /// once, never one older than the last accepted), or an unused recovery code.
    async fn spend_code(&self, user: UserId, code: &str) -> Result<bool, AccountError> {
        let mfa = self.mfa_ports()?;
        let Some(enrolment) = mfa
            .store
            .find(user)
            .await?
            .filter(TotpEnrolment::is_enabled)
        else {
            return Ok(false);
        };
        let now = self.ports.clock.now();
        if let Some(digits) = as_totp_code(code) {
            return match self.matching_step(&enrolment, &digits, now)? {
                Some(step) => Ok(mfa.store.accept_step(user, step).await?),
                None => Ok(false),
            };
        }
        let used = mfa
            .store
            .use_recovery_code(user, &RecoveryCode::hash_presented(code), now)
            .await?;
        if used {
            tracing::info!(user_id = %user, "recovery code used");
        }
        Ok(used)
    }

    /// Removes the principal's second factor after checking the password and a code (a
    /// recovery code is accepted). A wrong password or code counts toward the lockout.
    ///
    /// # Errors
    /// [`AccountError::InvalidCredentials`], [`AccountError::InvalidMfaCode`],
    /// [`AccountError::Locked`], or a store failure.
    pub async fn disable_totp(
        &self,
        principal: &Principal,
        password: &Password,
        code: &str,
    ) -> Result<(), AccountError> {
        let mfa = self.mfa_ports()?;
        let (user, attempt_key, attempt) = self.admit_password(principal, password).await?;
        if !self.spend_code(user.id, code).await? {
            self.note_failure(
                &attempt_key,
                attempt,
                LoginSubject::User(user.id),
                LoginStep::Reauthentication,
            )
            .await?;
            return Err(AccountError::InvalidMfaCode);
        }
        self.ports.attempts.reset(&attempt_key).await?;
        let now = self.ports.clock.now();
        mfa.store.disable(user.id, now).await?;
        tracing::info!(user_id = %user.id, "second factor removed by its user");
        Ok(())
    }

    /// The second login step: a live `mfa_token` and a code (or a recovery code) open the
    /// session. A wrong code counts toward the lockout of the user's email; the token lives
    /// on until it is used or expires.
    ///
    /// # Errors
    /// [`AccountError::InvalidCredentials`] (unknown, spent or expired token),
    /// [`AccountError::InvalidMfaCode`], [`AccountError::Locked`], or a store/sign failure.
    pub async fn complete_mfa_login(
        &self,
        token: &MfaToken,
        code: &str,
    ) -> Result<TokenPair, AccountError> {
        let result = self.attempt_mfa_login(token, code).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(AccountError::InvalidMfaCode) => "invalid_mfa_code",
            Err(AccountError::InvalidCredentials) => "invalid_credentials",
            Err(AccountError::Locked { .. }) => "locked",
            Err(_) => "error",
        };
        metrics::counter!("auth_mfa_logins_total", "outcome" => outcome).increment(1);
        result
    }

    async fn attempt_mfa_login(
        &self,
        token: &MfaToken,
        code: &str,
    ) -> Result<TokenPair, AccountError> {
        let mfa = self.mfa_ports()?;
        let hash = token.hash();
        let now = self.ports.clock.now();
        let Some(user_id) = mfa.store.find_challenge(&hash, now).await? else {
            return Err(AccountError::InvalidCredentials);
        };
        let Some(user) = self.ports.users.find_by_id(user_id).await? else {
            return Err(AccountError::InvalidCredentials);
        };
        let attempt_key = user.email.attempt_key();
        let attempt = self.admit_attempt(&attempt_key).await?;
        if !self.spend_code(user.id, code).await? {
            self.note_failure(
                &attempt_key,
                attempt,
                LoginSubject::User(user.id),
                LoginStep::SecondFactor,
            )
            .await?;
            tracing::info!(user_id = %user.id, "second factor refused");
            return Err(AccountError::InvalidMfaCode);
        }
        if !mfa
            .store
            .spend_challenge(&hash, self.ports.clock.now())
            .await?
        {
            return Err(AccountError::InvalidCredentials);
        }
        self.ports.attempts.reset(&attempt_key).await?;
        self.open_session(user).await
    }

    /// An administrator's way back in: removes the second factor of the account with `email`.
    /// Returns whether one was in force.
    ///
    /// # Errors
    /// [`AccountError::InvalidCredentials`] when no account has that email, or a store failure.
    pub async fn reset_mfa(&self, email: &Email) -> Result<bool, AccountError> {
        let mfa = self.mfa_ports()?;
        let Some(user) = self.ports.users.find_by_email(email).await? else {
            return Err(AccountError::InvalidCredentials);
        };
        let removed = mfa.store.disable(user.id, self.ports.clock.now()).await?;
        tracing::warn!(user_id = %user.id, removed, "second factor reset by an administrator");
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1, truncated to 6 digits.
        let secret = b"12345678901234567890";
        assert_eq!(totp_code(secret, 59 / 30).unwrap(), "287082");
        assert_eq!(totp_code(secret, 1_111_111_109 / 30).unwrap(), "081804");
        assert_eq!(totp_code(secret, 2_000_000_000 / 30).unwrap(), "279037");
    }

    #[test]
    fn codes_and_uris() {
        assert_eq!(as_totp_code("123 456").as_deref(), Some("123456"));
        assert_eq!(as_totp_code("12345a"), None);
        assert_eq!(uri_escape("a b@c:d"), "a%20b%40c%3Ad");
    }
}
