//! The mailed parts of an account's life on [`AccountService`]: address verification, a new
//! address, and password reset, each through a one-time link.
//!
//! A link carries a [`OneTimeToken`] (256 bits from the CSPRNG) in its fragment
//! (`AUTH_PUBLIC_URL/verify-email#token=…`), so the token never reaches a server log; the
//! store keeps its SHA-256 beside the address the mail went to. The mail is queued in the
//! outbox in the same atomic step as the token, and a worker sends it.

use std::sync::Arc;

use chrono::Duration;

use super::account::{AccountError, AccountService, Principal, internal};
use crate::model::{
    Email, MailTemplate, OneTimeToken, Password, StoredToken, TokenPurpose, TokenRejection, User,
    UserId,
};
use crate::ports::{AddressConfirmation, AddressIssue, OneTimeTokenStore};

/// Where mailed links point and how long they work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailLinks {
    /// The product name in mails (`AUTH_MAIL_PRODUCT_NAME`, else the JWT issuer).
    pub product: String,
    /// The base of links (`AUTH_PUBLIC_URL`), without a trailing slash.
    pub public_url: String,
    /// How long a verification link works (`AUTH_EMAIL_VERIFICATION_TTL_SECONDS`, 24 h).
    pub verification_ttl: Duration,
    /// How long a reset link works (`AUTH_PASSWORD_RESET_TTL_SECONDS`, 1 h).
    pub reset_ttl: Duration,
    /// At most one mail of a kind per address in this time
    /// (`AUTH_MAIL_MIN_INTERVAL_SECONDS`, 60 s).
    pub min_interval: Duration,
}

impl Default for MailLinks {
    fn default() -> Self {
        Self {
            product: "auth-service".to_owned(),
            public_url: "http://localhost:8080".to_owned(),
            verification_ttl: Duration::hours(24),
            reset_ttl: Duration::hours(1),
            min_interval: Duration::seconds(60),
        }
    }
}

/// Reset requests handled per call of [`AccountService::process_reset_requests`].
const RESET_BATCH: usize = 20;
/// How long a claimed reset request is left to its worker before another may take it.
const RESET_LEASE: Duration = Duration::minutes(5);

/// What the mailed flows run on.
#[derive(Clone)]
pub struct MailPorts {
    /// One-time tokens, and the outbox their mails go to (the same store).
    pub tokens: Arc<dyn OneTimeTokenStore>,
    /// Links and lifetimes.
    pub links: MailLinks,
}

impl std::fmt::Debug for MailPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailPorts")
            .field("links", &self.links)
            .finish_non_exhaustive()
    }
}

/// What a request for a verification mail did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendOutcome {
    /// A new link was queued (older ones no longer work).
    Sent,
    /// The address is verified already: nothing was sent.
    AlreadyVerified,
}

impl AccountService {
    /// Adds the mailed flows. Without them, registration sends no mail and the operations
    /// below fail as internal errors.
    #[must_use]
    pub fn with_mail(mut self, mail: MailPorts) -> Self {
        self.mail = Some(mail);
        self
    }

    pub(super) fn mail_ports(&self) -> Result<&MailPorts, AccountError> {
        self.mail
            .as_ref()
            .ok_or_else(|| internal("mail is not configured"))
    }

    /// Whether the mailed flows are configured.
    #[must_use]
    pub fn sends_mail(&self) -> bool {
        self.mail.is_some()
    }

    fn new_one_time_token(&self) -> Result<OneTimeToken, AccountError> {
        let mut bytes = [0u8; OneTimeToken::BYTES];
        self.ports.secrets.fill(&mut bytes).map_err(internal)?;
        Ok(OneTimeToken::from_random(&bytes))
    }

    /// A token of `purpose` for `email`, and its mail.
    pub(super) fn mail_with_token(
        &self,
        purpose: TokenPurpose,
        email: &Email,
    ) -> Result<(StoredToken, crate::model::OutgoingMail), AccountError> {
        let ports = self.mail_ports()?;
        let links = &ports.links;
        let token = self.new_one_time_token()?;
        let (template, page, ttl) = match purpose {
            TokenPurpose::VerifyEmail => (
                MailTemplate::VerifyEmail,
                "verify-email",
                links.verification_ttl,
            ),
            TokenPurpose::ChangeEmail => (
                MailTemplate::ChangeEmail,
                "verify-email",
                links.verification_ttl,
            ),
            TokenPurpose::PasswordReset => (
                MailTemplate::PasswordReset,
                "reset-password",
                links.reset_ttl,
            ),
        };
        let link = format!("{}/{page}#token={}", links.public_url, token.expose());
        let hours = (ttl.num_minutes() as f64 / 60.0).to_string();
        let minutes = ttl.num_minutes().to_string();
        let mail = template.render(
            email.clone(),
            &[
                ("product", &links.product),
                ("link", &link),
                ("hours", &hours),
                ("minutes", &minutes),
            ],
        );
        let now = self.ports.clock.now();
        let stored = StoredToken {
            hash: token.hash(),
            purpose,
            email: email.clone(),
            created_at: now,
            expires_at: now + ttl,
        };
        Ok((stored, mail))
    }

    /// Queues a verification mail to `user`'s address (after registration): best effort,
    /// since the account exists either way and its owner can ask again. Does nothing when
    /// mail is not configured.
    pub(super) async fn send_welcome_verification(&self, user: &User) {
        if self.mail.is_none() {
            return;
        }
        let queued = match self.mail_with_token(TokenPurpose::VerifyEmail, &user.email) {
            Ok((token, mail)) => self
                .mail_ports()
                .map(|p| p.tokens.clone())
                .map(|tokens| (tokens, token, mail)),
            Err(err) => Err(err),
        };
        let result = match queued {
            Ok((tokens, token, mail)) => tokens
                .issue(user.id, &token, &mail)
                .await
                .map_err(AccountError::from),
            Err(err) => Err(err),
        };
        if let Err(err) = result {
            tracing::warn!(
                user_id = %user.id,
                error = %crate::ErrorChain(&err),
                "verification mail not queued at registration; the user can ask for another"
            );
        }
    }

    /// Refuses a mail of `purpose` to `user` sent less than the minimum interval ago.
    async fn keep_interval(&self, user: UserId, purpose: TokenPurpose) -> Result<(), AccountError> {
        let ports = self.mail_ports()?;
        let now = self.ports.clock.now();
        if let Some(last) = ports.tokens.last_issued(user, purpose).await? {
            let next = last + ports.links.min_interval;
            if next > now {
                return Err(AccountError::TooSoon {
                    retry_after: next - now,
                });
            }
        }
        Ok(())
    }

    /// Sends a new verification link to the caller's address, unless it is verified.
    ///
    /// # Errors
    /// [`AccountError::TooSoon`] within the minimum interval of the last link;
    /// `InvalidToken(Revoked)` when the account is gone; a store failure.
    pub async fn resend_verification(
        &self,
        principal: &Principal,
    ) -> Result<ResendOutcome, AccountError> {
        let user = self.current_user(principal.user.id).await?;
        if user.email_verified() {
            return Ok(ResendOutcome::AlreadyVerified);
        }
        self.keep_interval(user.id, TokenPurpose::VerifyEmail)
            .await?;
        let (token, mail) = self.mail_with_token(TokenPurpose::VerifyEmail, &user.email)?;
        self.mail_ports()?
            .tokens
            .issue(user.id, &token, &mail)
            .await?;
        tracing::info!(user_id = %user.id, "verification mail queued");
        Ok(ResendOutcome::Sent)
    }

    /// Spends a verification or change-of-address token: the address is verified, or the
    /// new address replaces the old one.
    ///
    /// # Errors
    /// [`AccountError::InvalidOneTimeToken`] (unknown, used, expired, superseded);
    /// [`AccountError::EmailTaken`] when another account took the new address meanwhile
    /// (the link keeps working once it is free); a store failure (nothing changed).
    pub async fn confirm_email(&self, token: &OneTimeToken) -> Result<(), AccountError> {
        let now = self.ports.clock.now();
        let outcome = self
            .mail_ports()?
            .tokens
            .confirm_address(&token.hash(), now)
            .await?;
        match outcome {
            AddressConfirmation::Verified(user) => {
                tracing::info!(user_id = %user, "email verified");
                Ok(())
            }
            AddressConfirmation::Changed(user) => {
                tracing::info!(user_id = %user, "email changed");
                Ok(())
            }
            AddressConfirmation::Invalid => Err(AccountError::InvalidOneTimeToken),
            AddressConfirmation::Taken => Err(AccountError::EmailTaken),
        }
    }

    /// Asks for a reset link to `email`: the request is queued whatever the address, with one
    /// write that costs the same for every address, and answered; the mail worker then sends
    /// a link if an account has the address and no link went to it within the minimum
    /// interval ([`Self::process_reset_requests`]). So neither the answer nor its timing says
    /// whether the address exists.
    ///
    /// # Errors
    /// A store failure (whatever the address).
    pub async fn request_password_reset(&self, email: &Email) -> Result<(), AccountError> {
        let now = self.ports.clock.now();
        self.mail_ports()?.tokens.request_reset(email, now).await?;
        Ok(())
    }

    /// Handles queued reset requests (one batch): for each, a link to the account with that
    /// address, if any and if the interval allows, in one atomic step with the request's
    /// removal. Returns how many were handled. The mail worker calls it before each pass.
    ///
    /// # Errors
    /// A store failure (the requests left wait for the next call), or the random source
    /// failing.
    pub async fn process_reset_requests(&self) -> Result<usize, AccountError> {
        let Some(ports) = &self.mail else {
            return Ok(0);
        };
        let now = self.ports.clock.now();
        let requests = ports
            .tokens
            .claim_reset_requests(now, RESET_BATCH, RESET_LEASE)
            .await?;
        let mut handled = 0;
        for request in requests {
            let (token, mail) =
                self.mail_with_token(TokenPurpose::PasswordReset, &request.email)?;
            let outcome = ports
                .tokens
                .fulfil_reset_request(request.id, &token, &mail, ports.links.min_interval)
                .await?;
            let Some(outcome) = outcome else { continue };
            handled += 1;
            let label = match outcome {
                AddressIssue::Issued => "issued",
                AddressIssue::UnknownAddress => "unknown_address",
                AddressIssue::TooSoon => "too_soon",
            };
            metrics::counter!("auth_password_reset_requests_total", "outcome" => label)
                .increment(1);
        }
        Ok(handled)
    }

    /// Sets a new password through a reset token: every session of the account ends on every
    /// instance, and the address's lockout is cleared.
    ///
    /// # Errors
    /// [`AccountError::InvalidOneTimeToken`] (unknown, used, expired, superseded, or the
    /// account's address changed since); a store or hashing failure (nothing changed, the
    /// token still works).
    pub async fn reset_password(
        &self,
        token: &OneTimeToken,
        new: &Password,
    ) -> Result<(), AccountError> {
        let tokens = self.mail_ports()?.tokens.clone();
        let hash = self.ports.hasher.hash(new).await.map_err(internal)?;
        let now = self.ports.clock.now();
        let Some(done) = tokens.reset_password(&token.hash(), &hash, now).await? else {
            return Err(AccountError::InvalidOneTimeToken);
        };
        self.forget_sessions(&done.ended).await;
        tracing::info!(user_id = %done.user, sessions_ended = done.ended.len(), "password reset");
        Ok(())
    }

    /// Asks to move the caller's account to `new_email`, after checking `password` (a wrong
    /// one counts toward the lockout): a link goes to the new address, and the change applies
    /// when it is opened. The current address stays in use until then.
    ///
    /// # Errors
    /// `InvalidCredentials`, `Locked`, [`AccountError::EmailTaken`] (another account has it),
    /// [`AccountError::EmailUnchanged`] (it is the current address),
    /// [`AccountError::TooSoon`], a store failure.
    pub async fn request_email_change(
        &self,
        principal: &Principal,
        new_email: &Email,
        password: &Password,
    ) -> Result<(), AccountError> {
        let user = self.check_password(principal, password).await?;
        if user.email == *new_email {
            return Err(AccountError::EmailUnchanged);
        }
        if self.ports.users.find_by_email(new_email).await?.is_some() {
            return Err(AccountError::EmailTaken);
        }
        self.keep_interval(user.id, TokenPurpose::ChangeEmail)
            .await?;
        let (token, mail) = self.mail_with_token(TokenPurpose::ChangeEmail, new_email)?;
        self.mail_ports()?
            .tokens
            .issue(user.id, &token, &mail)
            .await?;
        tracing::info!(user_id = %user.id, "change of address requested");
        Ok(())
    }

    /// Marks `user`'s current address verified, as an operator does.
    ///
    /// # Errors
    /// `InvalidToken(Revoked)` for an unknown user; a store failure.
    pub async fn mark_email_verified(&self, user: UserId) -> Result<(), AccountError> {
        let now = self.ports.clock.now();
        if !self.ports.users.mark_email_verified(user, now).await? {
            return Err(AccountError::InvalidToken(TokenRejection::Revoked));
        }
        tracing::info!(user_id = %user, "email marked verified by an operator");
        Ok(())
    }
}
