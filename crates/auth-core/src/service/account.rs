//! `AccountService`: accounts and sessions: registration, login, refresh-token rotation with reuse
//! detection, logout, verification and password change.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::audit::{self, RequestActor};
use crate::model::{
    AccessClaims, DisplayName, Email, FailedLogin, LoginOutcome, LoginStep, LoginSubject,
    OrganizationId, Password, RefreshToken, Session, SessionId, TokenHash, TokenPair,
    TokenRejection, User, UserId,
};
use crate::ports::{
    AccountRemover, Admission, AttemptState, BoxError, Clock, CreateUserError, DeleteAccountError,
    LockoutPolicy, LoginAttemptStore, PasswordHasher, PasswordUpdate, Rotation, SecretGenerator,
    SessionRepository, StoreError, TokenSigner, UserRepository, VerificationCache,
};

/// Lifetimes and grace periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountConfig {
    /// Access token lifetime (`ACCESS_TOKEN_EXPIRE_MINUTES`, 15 min).
    pub access_ttl: Duration,
    /// Absolute session lifetime (`REFRESH_TOKEN_EXPIRE_DAYS`, 30 days).
    pub session_ttl: Duration,
    /// A rotated refresh token presented within this time of its rotation is refused without
    /// ending the session (`AUTH_REFRESH_REUSE_GRACE_SECONDS`, 0).
    pub reuse_grace: Duration,
    /// Account lockout (`AUTH_LOCKOUT_*`).
    pub lockout: LockoutPolicy,
    /// Self-registration open (`AUTH_REGISTRATION_ENABLED`, true); administrators make
    /// accounts either way.
    pub registration_enabled: bool,
    /// A correct password on an account whose address is not verified is refused with
    /// [`AccountError::EmailNotVerified`] (`AUTH_REQUIRE_VERIFIED_EMAIL`, false).
    pub require_verified_email: bool,
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self {
            access_ttl: Duration::minutes(15),
            session_ttl: Duration::days(30),
            reuse_grace: Duration::zero(),
            lockout: LockoutPolicy::default(),
            registration_enabled: true,
            require_verified_email: false,
        }
    }
}

/// The ports `AccountService` runs on.
#[derive(Clone)]
pub struct AccountPorts {
    /// User accounts.
    pub users: Arc<dyn UserRepository>,
    /// Sessions and refresh-token hashes.
    pub sessions: Arc<dyn SessionRepository>,
    /// Password hashing.
    pub hasher: Arc<dyn PasswordHasher>,
    /// Access-token signing.
    pub signer: Arc<dyn TokenSigner>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Randomness for refresh tokens.
    pub secrets: Arc<dyn SecretGenerator>,
    /// Cache of sessions for verification.
    pub session_cache: Arc<dyn VerificationCache<SessionId, SessionSnapshot>>,
    /// Failed-login counters for lockout.
    pub attempts: Arc<dyn LoginAttemptStore>,
    /// Account deletion (over the same store as `users` and `sessions`).
    pub accounts: Arc<dyn AccountRemover>,
}

/// A session and its user, as verification needs them (and caches them). Shared, not
/// copied: a verification answered from the cache hands out the cached records themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// The session.
    pub session: Arc<Session>,
    /// Its user.
    pub user: Arc<User>,
}

impl std::fmt::Debug for AccountPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountPorts").finish_non_exhaustive()
    }
}

/// What can go wrong in user and session operations.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Registration: the email is taken.
    #[error("email already registered")]
    EmailTaken,
    /// Login or password change: unknown email or wrong password (never says which).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Login or password change: the email is locked after too many failures; retry after
    /// the given time.
    #[error("too many failed attempts")]
    Locked {
        /// Until the lock ends.
        retry_after: Duration,
    },
    /// A second-factor code (TOTP or recovery code) was wrong, already used, or no second factor
    /// is enrolled.
    #[error("invalid second-factor code")]
    InvalidMfaCode,
    /// TOTP enrolment: the user's second factor is already enabled.
    #[error("second factor already enabled")]
    MfaAlreadyEnabled,
    /// The second factor cannot be used: no data key is configured (answer 503).
    #[error("second factor unavailable: no data key configured")]
    MfaUnavailable,
    /// [`AccountService::login`] for a user with a second factor: use
    /// [`AccountService::sign_in`], which answers with the challenge.
    #[error("second factor required")]
    MfaRequired,
    /// Import: the password hash is in no format the hasher verifies.
    #[error("password hash format not recognised")]
    UnrecognisedHash,
    /// Refresh: unknown, spent, expired or revoked refresh token.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// An access token was refused.
    #[error("access token refused: {0}")]
    InvalidToken(TokenRejection),
    /// A one-time token (a mailed link) is unknown, used, expired or superseded.
    #[error("invalid or expired link")]
    InvalidOneTimeToken,
    /// Login: the password is right but the account's address is not verified, and the
    /// service requires it.
    #[error("email address not verified")]
    EmailNotVerified,
    /// Registration is closed (`AUTH_REGISTRATION_ENABLED=false`).
    #[error("registration is closed")]
    RegistrationDisabled,
    /// Login: the password is right but an administrator disabled the account.
    #[error("account disabled")]
    AccountDisabled,
    /// Administration: the caller is not an enabled service administrator.
    #[error("not a service administrator")]
    Forbidden,
    /// Administration: no such account.
    #[error("no such account")]
    UserNotFound,
    /// Administration: the change would leave no enabled service administrator.
    #[error("the last administrator")]
    LastAdministrator,
    /// Change of address: the new address is the current one.
    #[error("the new address is the current one")]
    EmailUnchanged,
    /// A mail of this kind went to this address less than the minimum interval ago; retry
    /// after the given time.
    #[error("a mail was sent recently")]
    TooSoon {
        /// Until another may be sent.
        retry_after: Duration,
    },
    /// The account cannot go: it is the only owner of this organization.
    #[error("the account is the last owner of organization {0}")]
    LastOwner(OrganizationId),
    /// The store failed: [`StoreError::Unavailable`] (answer 503, retry later) or
    /// [`StoreError::Internal`] (answer 500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing, signing or the random source failed: a bug or resource exhaustion (answer
    /// 500, log the chain).
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl From<CreateUserError> for AccountError {
    fn from(err: CreateUserError) -> Self {
        match err {
            CreateUserError::EmailTaken => Self::EmailTaken,
            CreateUserError::Store(e) => Self::Store(e),
        }
    }
}

pub(super) fn internal(err: impl Into<BoxError>) -> AccountError {
    AccountError::Internal(err.into())
}

/// A new account's details, already validated.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Email.
    pub email: Email,
    /// Password that met the policy.
    pub password: Password,
    /// Optional display name.
    pub display_name: Option<DisplayName>,
}

/// An account brought over from another system.
#[derive(Debug, Clone)]
pub struct ImportedUser {
    /// Email.
    pub email: Email,
    /// The existing hash (bcrypt `$2a$`/`$2b$`/`$2y$`).
    pub password_hash: crate::model::PasswordHash,
    /// Display name.
    pub display_name: Option<DisplayName>,
    /// Service administrator.
    pub is_admin: bool,
    /// When the address was verified in the other system, if it was.
    pub email_verified_at: Option<DateTime<Utc>>,
    /// Original creation time, if known.
    pub created_at: Option<DateTime<Utc>>,
}

/// Who a valid access token speaks for. The user and session are shared with the
/// verification cache (read-only; a change to either invalidates the cached snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user: Arc<User>,
    /// The live session the token was issued under.
    pub session: Arc<Session>,
    /// The token's claims.
    pub claims: AccessClaims,
}

/// The user and session rules.
#[derive(Debug, Clone)]
pub struct AccountService {
    pub(super) ports: AccountPorts,
    pub(super) config: AccountConfig,
    pub(super) mfa: Option<super::mfa::MfaPorts>,
    pub(super) mail: Option<super::lifecycle::MailPorts>,
    pub(super) administration: Option<Arc<dyn crate::ports::UserAdministration>>,
}

impl AccountService {
    /// Builds the service over its ports.
    #[must_use]
    pub fn new(ports: AccountPorts, config: AccountConfig) -> Self {
        Self {
            ports,
            config,
            mfa: None,
            mail: None,
            administration: None,
        }
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &AccountConfig {
        &self.config
    }

    /// The kind a token claims to be (its `typ` header), unverified: for routing only.
    #[must_use]
    pub fn token_kind(&self, token: &str) -> Option<crate::model::TokenKind> {
        self.ports.signer.kind(token)
    }

    /// The clock the service reads.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.ports.clock
    }

    /// Creates an account.
    ///
    /// # Errors
    /// [`AccountError::EmailTaken`], or a store/hash failure.
    pub async fn register(&self, reg: Registration, is_admin: bool) -> Result<User, AccountError> {
        let password_hash = self
            .ports
            .hasher
            .hash(&reg.password)
            .await
            .map_err(internal)?;
        let now = self.ports.clock.now();
        let user = User {
            id: UserId::generate(),
            email: reg.email,
            display_name: reg.display_name,
            password_hash,
            is_admin,
            email_verified_at: None,
            disabled_at: None,
            last_login_at: None,
            created_at: now,
            updated_at: now,
        };
        self.ports.users.create(&user).await?;
        tracing::info!(user_id = %user.id, "user registered");
        self.send_welcome_verification(&user).await;
        Ok(user)
    }

    /// Self-registration: [`Self::register`] as a new user does it, refused while
    /// registration is closed.
    ///
    /// # Errors
    /// [`AccountError::RegistrationDisabled`], or as [`Self::register`].
    pub async fn sign_up(&self, reg: Registration) -> Result<User, AccountError> {
        if !self.config.registration_enabled {
            return Err(AccountError::RegistrationDisabled);
        }
        self.register(reg, false).await
    }

    /// Imports an account whose password hash was made elsewhere (bcrypt), so its user keeps
    /// the password. The hash must be in a format the hasher verifies.
    ///
    /// # Errors
    /// [`AccountError::EmailTaken`], [`AccountError::UnrecognisedHash`], or a store failure.
    pub async fn import(&self, import: ImportedUser) -> Result<User, AccountError> {
        if !self.ports.hasher.recognises(&import.password_hash) {
            return Err(AccountError::UnrecognisedHash);
        }
        let now = self.ports.clock.now();
        let user = User {
            id: UserId::generate(),
            email: import.email,
            display_name: import.display_name,
            password_hash: import.password_hash,
            is_admin: import.is_admin,
            email_verified_at: import.email_verified_at,
            disabled_at: None,
            last_login_at: None,
            created_at: import.created_at.unwrap_or(now),
            updated_at: now,
        };
        self.ports.users.create(&user).await?;
        Ok(user)
    }

    /// Checks credentials and opens a session.
    ///
    /// Unknown email and wrong password fail the same way, after one password verification
    /// either way.
    ///
    /// For a user with a second factor this fails with [`AccountError::MfaRequired`] (no
    /// session is opened): callers that handle the second step use [`Self::sign_in`].
    ///
    /// # Errors
    /// [`AccountError::InvalidCredentials`], or a store/hash/sign failure.
    pub async fn login(
        &self,
        email: &Email,
        password: &Password,
    ) -> Result<TokenPair, AccountError> {
        match self.sign_in(email, password).await? {
            LoginOutcome::Tokens(pair) => Ok(*pair),
            LoginOutcome::MfaRequired(_) => Err(AccountError::MfaRequired),
        }
    }

    /// Checks credentials and opens a session, or, for a user with a second factor, answers
    /// with the challenge to complete with [`Self::complete_mfa_login`].
    ///
    /// Unknown email and wrong password fail the same way, after one password verification
    /// either way.
    ///
    /// # Errors
    /// [`AccountError::InvalidCredentials`], or a store/hash/sign failure.
    pub async fn sign_in(
        &self,
        email: &Email,
        password: &Password,
    ) -> Result<LoginOutcome, AccountError> {
        let result = self.attempt_login(email, password).await;
        let outcome = match &result {
            Ok(LoginOutcome::MfaRequired(_)) => "mfa_required",
            Ok(_) => "success",
            Err(AccountError::InvalidCredentials) => "invalid_credentials",
            Err(AccountError::Locked { .. }) => "locked",
            Err(AccountError::EmailNotVerified) => "email_not_verified",
            Err(AccountError::AccountDisabled) => "account_disabled",
            Err(AccountError::Store(StoreError::Unavailable(_))) => "unavailable",
            Err(_) => "error",
        };
        metrics::counter!("auth_logins_total", "outcome" => outcome).increment(1);
        result
    }

    async fn attempt_login(
        &self,
        email: &Email,
        password: &Password,
    ) -> Result<LoginOutcome, AccountError> {
        let attempt_key = email.attempt_key();
        let attempt = self.admit_attempt(&attempt_key).await?;
        let user = self.ports.users.find_by_email(email).await?;
        let check = self
            .ports
            .hasher
            .verify(password, user.as_ref().map(|u| &u.password_hash))
            .await
            .map_err(internal)?;
        let subject = match &user {
            Some(user) => LoginSubject::User(user.id),
            None => LoginSubject::Address(self.address_fingerprint(email)),
        };
        let Some(mut user) = user.filter(|_| check.matches) else {
            self.note_failure(&attempt_key, attempt, subject, LoginStep::Password)
                .await?;
            return Err(AccountError::InvalidCredentials);
        };
        if check.needs_rehash {
            self.rehash(&mut user, password).await;
        }
        if user.disabled() {
            // The password was right: the counter goes, as after any correct password.
            self.ports.attempts.reset(&attempt_key).await?;
            return Err(AccountError::AccountDisabled);
        }
        if self.config.require_verified_email && !user.email_verified() {
            // The password was right: the counter goes, as after any correct password.
            self.ports.attempts.reset(&attempt_key).await?;
            return Err(AccountError::EmailNotVerified);
        }
        // With a second factor the attempt stays counted until the code is right: a password
        // alone never clears the lock the codes count toward.
        if let Some(challenge) = self.mfa_challenge(&user).await? {
            return Ok(LoginOutcome::MfaRequired(challenge));
        }
        self.ports.attempts.reset(&attempt_key).await?;
        self.open_session(user)
            .await
            .map(|p| LoginOutcome::Tokens(Box::new(p)))
    }

    /// Opens a session for `user` and issues its tokens.
    pub(super) async fn open_session(&self, user: User) -> Result<TokenPair, AccountError> {
        let now = self.ports.clock.now();
        let session = Session {
            id: SessionId::generate(),
            user_id: user.id,
            created_at: now,
            expires_at: now + self.config.session_ttl,
            revoked_at: None,
        };
        let refresh = self.new_refresh_token()?;
        // From here on the request is the user's (its events included).
        audit::set_actor(RequestActor::User(user.id));
        self.ports
            .sessions
            .create(&session, &refresh.hash())
            .await?;
        tracing::info!(user_id = %user.id, session_id = %session.id, "login succeeded");
        self.note_login(user.id).await;
        self.issue(user, session, refresh, now)
    }

    /// Upgrades a hash made with old parameters. Best effort: a failure is logged and the
    /// login goes on, since the old hash still verifies.
    async fn rehash(&self, user: &mut User, password: &Password) {
        match self.ports.hasher.hash(password).await {
            Ok(hash) => {
                let now = self.ports.clock.now();
                match self
                    .ports
                    .users
                    .update_password(user.id, &hash, PasswordUpdate::Rehash, now)
                    .await
                {
                    Ok(_) => user.password_hash = hash,
                    Err(err) => {
                        tracing::warn!(user_id = %user.id, error = %err, "password re-hash not stored")
                    }
                }
            }
            Err(err) => tracing::warn!(user_id = %user.id, error = %err, "password re-hash failed"),
        }
    }

    /// Rotates a refresh token: the presented one is spent, a new pair is issued.
    ///
    /// Presenting a token that was already rotated ends its whole session (RFC 9700
    /// §4.14.2), unless within the configured grace period of its rotation, where it is only
    /// refused.
    ///
    /// # Errors
    /// [`AccountError::InvalidRefreshToken`], or a store/sign failure.
    pub async fn refresh(&self, presented: &RefreshToken) -> Result<TokenPair, AccountError> {
        let next = self.new_refresh_token()?;
        let now = self.ports.clock.now();
        let rotation = self
            .ports
            .sessions
            .rotate(&presented.hash(), &next.hash(), now)
            .await?;
        match rotation {
            // Nothing fallible is left between spending the token and answering with its
            // successor: the user came with the rotation, and signing is local.
            // A disabled account's sessions were ended with it; one that slipped in between
            // (opened while it was being disabled) goes no further.
            Rotation::Rotated { user, .. } if user.disabled() => {
                Err(AccountError::InvalidRefreshToken)
            }
            Rotation::Rotated { session, user } => self.issue(*user, session, next, now),
            Rotation::Reused {
                session_id,
                rotated_at,
            } => {
                // With no grace period every reuse ends the session, even one whose clock
                // reading precedes the winning rotation (a parallel refresh).
                let grace = self.config.reuse_grace;
                let within_grace = grace > Duration::zero() && now - rotated_at <= grace;
                if !within_grace {
                    let ended = self.ports.sessions.revoke(session_id, now).await?;
                    metrics::counter!("auth_refresh_reuse_detected_total").increment(1);
                    tracing::warn!(%session_id, ended, "refresh token reuse detected; session ended");
                    self.forget_sessions(&[session_id]).await;
                } else {
                    tracing::info!(%session_id, "rotated refresh token presented within grace period");
                }
                Err(AccountError::InvalidRefreshToken)
            }
            Rotation::Inactive | Rotation::Unknown => Err(AccountError::InvalidRefreshToken),
        }
    }

    /// Ends the session that issued `token`. Unknown tokens are ignored.
    ///
    /// # Errors
    /// A store failure.
    pub async fn logout(&self, token: &RefreshToken) -> Result<(), AccountError> {
        let now = self.ports.clock.now();
        if let Some(session_id) = self
            .ports
            .sessions
            .revoke_by_token(&token.hash(), now)
            .await?
        {
            self.forget_sessions(&[session_id]).await;
            tracing::info!(%session_id, "logout");
        }
        Ok(())
    }

    /// Ends every session of the user.
    ///
    /// # Errors
    /// A store failure.
    pub async fn logout_all(&self, user: UserId) -> Result<Vec<SessionId>, AccountError> {
        let now = self.ports.clock.now();
        let ended = self
            .ports
            .sessions
            .revoke_all_for_user(user, None, now)
            .await?;
        self.forget_sessions(&ended).await;
        tracing::info!(user_id = %user, sessions = ended.len(), "logout from every session");
        Ok(ended)
    }

    /// Checks an access token: signature and claims, then that its session is still live and
    /// its user still exists.
    ///
    /// # Errors
    /// [`AccountError::InvalidToken`] (invalid, expired, revoked), or a store failure.
    pub async fn verify(&self, token: &str) -> Result<Principal, AccountError> {
        let now = self.ports.clock.now();
        let claims = self
            .ports
            .signer
            .verify_access(token, now)
            .map_err(AccountError::InvalidToken)?;
        let (sessions, users) = (self.ports.sessions.clone(), self.ports.users.clone());
        let session_id = claims.session_id;
        let snapshot = self
            .ports
            .session_cache
            .get_or_load(
                session_id,
                Box::pin(async move {
                    let Some(session) = sessions.find(session_id).await? else {
                        return Ok(None);
                    };
                    let user = users.find_by_id(session.user_id).await?;
                    Ok(user.map(|user| SessionSnapshot {
                        session: Arc::new(session),
                        user: Arc::new(user),
                    }))
                }),
            )
            .await?;
        let Some(SessionSnapshot { session, user }) = snapshot.filter(|snap| {
            snap.user.id == claims.user_id && snap.session.is_active(now) && !snap.user.disabled()
        }) else {
            return Err(AccountError::InvalidToken(TokenRejection::Revoked));
        };
        Ok(Principal {
            user,
            session,
            claims,
        })
    }

    /// Sets `user`'s display name (`None` clears it); returns the user as stored.
    ///
    /// # Errors
    /// `InvalidToken(Revoked)` when the user no longer exists; a store failure.
    pub async fn update_profile(
        &self,
        user: UserId,
        display_name: Option<DisplayName>,
    ) -> Result<User, AccountError> {
        let now = self.ports.clock.now();
        let updated = self
            .ports
            .users
            .update_profile(user, display_name.as_ref(), now)
            .await?
            .ok_or(AccountError::InvalidToken(TokenRejection::Revoked))?;
        tracing::info!(user_id = %user, "profile updated");
        Ok(updated)
    }

    /// `user` as stored now, not as cached with a session (a profile changed on another
    /// instance shows at once).
    ///
    /// # Errors
    /// `InvalidToken(Revoked)` when the user no longer exists; a store failure.
    pub async fn current_user(&self, user: UserId) -> Result<User, AccountError> {
        self.ports
            .users
            .find_by_id(user)
            .await?
            .ok_or(AccountError::InvalidToken(TokenRejection::Revoked))
    }

    /// Changes the password of the principal's user after checking the current one, and ends
    /// every other session of that user.
    ///
    /// # Errors
    /// [`AccountError::InvalidCredentials`] when `current` is wrong, or a store/hash failure.
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: &Password,
        new: &Password,
    ) -> Result<(), AccountError> {
        self.check_password(principal, current).await?;
        let hash = self.ports.hasher.hash(new).await.map_err(internal)?;
        let now = self.ports.clock.now();
        // Other sessions end first: if storing the new hash then fails, the caller retries
        // with the old password still valid, and no session outlives the change.
        let ended = self
            .ports
            .sessions
            .revoke_all_for_user(principal.user.id, Some(principal.session.id), now)
            .await?;
        if !self
            .ports
            .users
            .update_password(principal.user.id, &hash, PasswordUpdate::Change, now)
            .await?
        {
            return Err(AccountError::InvalidToken(TokenRejection::Revoked));
        }
        // The ended sessions were announced to every instance with their revocation. The
        // session kept may be cached with the old hash; nothing reads a hash from the cache.
        self.forget_sessions(&ended).await;
        tracing::info!(user_id = %principal.user.id, other_sessions_ended = ended.len(), "password changed");
        Ok(())
    }

    /// Deletes the caller's account after checking `password` (a wrong one counts toward the
    /// lockout, as at login): every session ends on every instance, memberships go, the user
    /// row goes; the event log keeps only the id.
    ///
    /// # Errors
    /// `InvalidCredentials`, `Locked`, `LastOwner` (the only owner of an organization: nothing
    /// changed), `InvalidToken(Revoked)` when the account is already gone, a store failure.
    pub async fn delete_account(
        &self,
        principal: &Principal,
        password: &Password,
    ) -> Result<(), AccountError> {
        self.check_password(principal, password).await?;
        self.remove_account(principal.user.id).await
    }

    /// Deletes `user`'s account as an operator does (no password): every session ends on
    /// every instance, memberships go, the user row goes.
    ///
    /// # Errors
    /// `LastOwner` (nothing changed), `InvalidToken(Revoked)` for an unknown user, a store
    /// failure.
    pub async fn remove_account(&self, user: UserId) -> Result<(), AccountError> {
        let now = self.ports.clock.now();
        let ended = match self.ports.accounts.delete_account(user, now).await {
            Ok(ended) => ended,
            Err(DeleteAccountError::NotFound) => {
                return Err(AccountError::InvalidToken(TokenRejection::Revoked));
            }
            Err(DeleteAccountError::LastOwner(organization)) => {
                return Err(AccountError::LastOwner(organization));
            }
            Err(DeleteAccountError::LastAdministrator) => {
                return Err(AccountError::LastAdministrator);
            }
            Err(DeleteAccountError::Store(e)) => return Err(e.into()),
        };
        self.forget_sessions(&ended).await;
        tracing::info!(user_id = %user, sessions_ended = ended.len(), "account deleted");
        Ok(())
    }

    /// Checks the caller's password (see `admit_password`) and, when it is right, resets the
    /// attempt count.
    pub(super) async fn check_password(
        &self,
        principal: &Principal,
        password: &Password,
    ) -> Result<User, AccountError> {
        let (user, attempt_key, _) = self.admit_password(principal, password).await?;
        self.ports.attempts.reset(&attempt_key).await?;
        Ok(user)
    }

    /// Counts an attempt for `key` before its check, or refuses it when the key is locked.
    ///
    /// The count and the lock decision are one atomic step in the store, so parallel attempts
    /// cannot all slip in before the first failures are recorded: at most the threshold reach
    /// a check. A refusal waits as long as a password check would take without making one (a
    /// lock costs no CPU and reveals nothing by its timing). The caller resets the key after a
    /// successful check; a failed one stays counted.
    pub(super) async fn admit_attempt(
        &self,
        key: &TokenHash,
    ) -> Result<AttemptState, AccountError> {
        let now = self.ports.clock.now();
        match self
            .ports
            .attempts
            .begin_attempt(key, now, &self.config.lockout)
            .await?
        {
            Admission::Admitted(state) => Ok(state),
            Admission::Locked { until } => {
                self.ports.hasher.delay_like_verify().await;
                tracing::info!(attempt_key = ?key, locked_until = %until, "login refused: locked");
                Err(AccountError::Locked {
                    retry_after: until - now,
                })
            }
        }
    }

    /// Records a failed check of `subject` at `step` (the attempt was counted when it was
    /// admitted): `user.login_failed`, and `user.locked` when it started a lock.
    ///
    /// # Errors
    /// A store failure: the failure could not be recorded (nor its lock, which stands).
    pub(super) async fn note_failure(
        &self,
        key: &TokenHash,
        attempt: AttemptState,
        subject: LoginSubject,
        step: LoginStep,
    ) -> Result<(), AccountError> {
        if let Some(until) = attempt.locked_until {
            metrics::counter!("auth_lockouts_total").increment(1);
            tracing::info!(attempt_key = ?key, failures = attempt.failures, locked_until = %until, "lockout started");
        }
        let failure = FailedLogin {
            subject,
            step,
            failures: attempt.failures,
            locked_until: attempt.locked_until,
            at: self.ports.clock.now(),
        };
        self.ports.attempts.record_failure(key, &failure).await?;
        Ok(())
    }

    /// How the audit trail names an address with no account, never the address itself:
    /// `hmac-sha256:` and 128 bits of an HMAC of the normalised address under a key derived
    /// from `AUTH_DATA_KEY` (the same for every attempt on the address, so attempts can be
    /// correlated, and beyond a dictionary attack by anyone without the key), or, with no data
    /// key, `sha256:` and 128 bits of its plain SHA-256 (as the lockout counter is keyed:
    /// stable, but a list of candidate addresses can be hashed and compared).
    #[must_use]
    pub fn address_fingerprint(&self, email: &Email) -> String {
        let normalized = email.normalized().as_bytes();
        match self.mfa.as_ref().and_then(|mfa| mfa.cipher.as_ref()) {
            Some(cipher) => {
                let print = cipher.fingerprint(normalized);
                format!("hmac-sha256:{}", hex::encode(&print[..16]))
            }
            None => {
                let print = TokenHash::of(normalized);
                format!("sha256:{}", hex::encode(&print.as_bytes()[..16]))
            }
        }
    }

    /// Forgets ended sessions here at once. Every other instance was told by the session
    /// repository, in the same atomic step that ended them.
    pub(super) async fn forget_sessions(&self, ended: &[SessionId]) {
        for id in ended {
            self.ports.session_cache.invalidate(id).await;
        }
    }

    pub(super) fn new_refresh_token(&self) -> Result<RefreshToken, AccountError> {
        let mut bytes = [0u8; RefreshToken::BYTES];
        self.ports.secrets.fill(&mut bytes).map_err(internal)?;
        Ok(RefreshToken::from_random(&bytes))
    }

    fn issue(
        &self,
        user: User,
        session: Session,
        refresh: RefreshToken,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, AccountError> {
        // An access token never outlives its session.
        let expires_at = (now + self.config.access_ttl).min(session.expires_at);
        let claims = AccessClaims {
            user_id: user.id,
            session_id: session.id,
            token_id: Uuid::now_v7(),
            issued_at: now,
            expires_at,
        };
        let access_token = self.ports.signer.sign_access(&claims).map_err(internal)?;
        Ok(TokenPair {
            access_token,
            access_expires_in: (expires_at - now).num_seconds(),
            refresh_token: refresh,
            refresh_expires_in: (session.expires_at - now).num_seconds(),
            session,
            user,
        })
    }
}
