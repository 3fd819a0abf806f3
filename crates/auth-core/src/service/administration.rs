//! Service administration on [`AccountService`]: what an administrator does to accounts
//! (list, create, grant or revoke administration, disable, unlock, end sessions, send a reset
//! link, delete). The caller's right is checked by [`AccountService::require_admin`] against
//! the stored account, not a cached one, so a revoked administrator is refused at once.

use std::sync::Arc;

use super::account::{AccountError, AccountService, Principal, Registration, internal};
use crate::model::{DisplayName, Email, Password, TokenPurpose, User, UserId};
use crate::ports::{AdminChange, UserAdministration, UserListing, UserQuery};

/// Longest page of an administrators' listing.
pub const MAX_PAGE: usize = 500;

/// What an administrator changes on an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountChange {
    /// Grant or revoke service administration.
    pub is_admin: Option<bool>,
    /// Disable (every session ends) or enable.
    pub disabled: Option<bool>,
    /// A new display name (`Some(None)` clears it).
    pub display_name: Option<Option<DisplayName>>,
}

/// A new account made by an administrator.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Its address.
    pub email: Email,
    /// Its password; `None` mails a reset link instead.
    pub password: Option<Password>,
    /// Its display name.
    pub display_name: Option<DisplayName>,
    /// A service administrator.
    pub is_admin: bool,
}

impl AccountService {
    /// Adds service administration (and the record of each login's time).
    #[must_use]
    pub fn with_administration(mut self, store: Arc<dyn UserAdministration>) -> Self {
        self.administration = Some(store);
        self
    }

    fn administration(&self) -> Result<&Arc<dyn UserAdministration>, AccountError> {
        self.administration
            .as_ref()
            .ok_or_else(|| internal("service administration is not configured"))
    }

    /// The caller's stored account, if it is an enabled service administrator.
    ///
    /// # Errors
    /// [`AccountError::Forbidden`] otherwise; a store failure.
    pub async fn require_admin(&self, principal: &Principal) -> Result<User, AccountError> {
        let user = self.current_user(principal.user.id).await?;
        if !user.is_admin || user.disabled() {
            return Err(AccountError::Forbidden);
        }
        Ok(user)
    }

    /// A page of accounts (`query.limit` at most [`MAX_PAGE`]).
    ///
    /// # Errors
    /// A store failure.
    pub async fn list_users(&self, query: &UserQuery) -> Result<Vec<UserListing>, AccountError> {
        let query = UserQuery {
            email: query.email.as_ref().map(|e| e.trim().to_lowercase()),
            limit: query.limit.clamp(1, MAX_PAGE),
            after: query.after,
        };
        Ok(self.administration()?.list(&query).await?)
    }

    /// One account, with whether its second factor is on.
    ///
    /// # Errors
    /// [`AccountError::UserNotFound`]; a store failure.
    pub async fn user_listing(&self, id: UserId) -> Result<UserListing, AccountError> {
        let user = self
            .ports
            .users
            .find_by_id(id)
            .await?
            .ok_or(AccountError::UserNotFound)?;
        let mfa_enabled = self.mfa_enabled(id).await?;
        Ok(UserListing { user, mfa_enabled })
    }

    /// Makes an account, whether or not registration is open. Without a password the
    /// account gets an unusable random one and its address a reset link.
    ///
    /// # Errors
    /// [`AccountError::EmailTaken`]; a store or hashing failure.
    pub async fn create_account(&self, new: NewAccount) -> Result<User, AccountError> {
        let (password, mail_reset) = match new.password {
            Some(password) => (password, false),
            None => {
                let mut bytes = [0u8; 32];
                self.ports.secrets.fill(&mut bytes).map_err(internal)?;
                let random: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                (Password::presented(&random).map_err(internal)?, true)
            }
        };
        let user = self
            .register(
                Registration {
                    email: new.email,
                    password,
                    display_name: new.display_name,
                },
                new.is_admin,
            )
            .await?;
        if mail_reset {
            self.send_reset_link(user.id).await?;
        }
        tracing::info!(user_id = %user.id, is_admin = user.is_admin, "account created by an administrator");
        Ok(user)
    }

    /// Applies an administrator's change; every session of a disabled account ends on every
    /// instance.
    ///
    /// # Errors
    /// [`AccountError::UserNotFound`]; [`AccountError::LastAdministrator`] (nothing after the
    /// refused part is applied); a store failure.
    pub async fn change_account(
        &self,
        id: UserId,
        change: AccountChange,
    ) -> Result<UserListing, AccountError> {
        tracing::info!(
            user_id = %id,
            is_admin = ?change.is_admin,
            disabled = ?change.disabled,
            "account changed by an administrator"
        );
        let now = self.ports.clock.now();
        let store = self.administration()?.clone();
        let mut outcomes = Vec::new();
        if let Some(is_admin) = change.is_admin {
            outcomes.push(store.set_admin(id, is_admin, now).await?);
        }
        if let Some(disabled) = change.disabled {
            outcomes.push(store.set_disabled(id, disabled, now).await?);
        }
        for outcome in outcomes {
            match outcome {
                AdminChange::Done { ended, .. } => self.forget_sessions(&ended).await,
                AdminChange::NotFound => return Err(AccountError::UserNotFound),
                AdminChange::LastAdministrator => return Err(AccountError::LastAdministrator),
            }
        }
        if let Some(display_name) = change.display_name {
            self.ports
                .users
                .update_profile(id, display_name.as_ref(), now)
                .await?
                .ok_or(AccountError::UserNotFound)?;
        }
        self.user_listing(id).await
    }

    /// Clears the lockout of the account's address.
    ///
    /// # Errors
    /// [`AccountError::UserNotFound`]; a store failure.
    pub async fn unlock(&self, id: UserId) -> Result<(), AccountError> {
        let now = self.ports.clock.now();
        if !self.administration()?.unlock(id, now).await? {
            return Err(AccountError::UserNotFound);
        }
        tracing::info!(user_id = %id, "lockout cleared by an administrator");
        Ok(())
    }

    /// Ends every session of the account on every instance.
    ///
    /// # Errors
    /// [`AccountError::UserNotFound`]; a store failure.
    pub async fn end_sessions(&self, id: UserId) -> Result<(), AccountError> {
        self.stored(id).await?;
        self.logout_all(id).await?;
        Ok(())
    }

    /// Mails the account a password-reset link (older ones stop working), whatever the
    /// interval: an administrator asked.
    ///
    /// # Errors
    /// [`AccountError::UserNotFound`]; a store failure.
    pub async fn send_reset_link(&self, id: UserId) -> Result<(), AccountError> {
        let user = self.stored(id).await?;
        let tokens = self.mail_ports()?.tokens.clone();
        let (token, mail) = self.mail_with_token(TokenPurpose::PasswordReset, &user.email)?;
        tokens.issue(user.id, &token, &mail).await?;
        tracing::info!(user_id = %id, "reset link sent by an administrator");
        Ok(())
    }

    /// Sets the account's password as an operator does (no current password): every session
    /// of the account ends on every instance. Returns how many ended.
    ///
    /// # Errors
    /// [`AccountError::UserNotFound`]; a store or hashing failure.
    pub async fn set_password(
        &self,
        id: UserId,
        password: &Password,
    ) -> Result<usize, AccountError> {
        self.stored(id).await?;
        let hash = self.ports.hasher.hash(password).await.map_err(internal)?;
        let now = self.ports.clock.now();
        let ended = self
            .ports
            .sessions
            .revoke_all_for_user(id, None, now)
            .await?;
        if !self
            .ports
            .users
            .update_password(id, &hash, crate::ports::PasswordUpdate::Change, now)
            .await?
        {
            return Err(AccountError::UserNotFound);
        }
        self.forget_sessions(&ended).await;
        tracing::info!(user_id = %id, sessions_ended = ended.len(), "password set by an operator");
        Ok(ended.len())
    }

    async fn stored(&self, id: UserId) -> Result<User, AccountError> {
        self.ports
            .users
            .find_by_id(id)
            .await?
            .ok_or(AccountError::UserNotFound)
    }

    /// Notes a successful login (best effort: the login stands either way).
    pub(super) async fn note_login(&self, user: UserId) {
        if let Some(store) = &self.administration
            && let Err(err) = store.record_login(user, self.ports.clock.now()).await
        {
            tracing::warn!(user_id = %user, error = %err, "login time not recorded");
        }
    }
}
