//! Parse at the edge: each request body of `auth-api` becomes its domain input through
//! [`TryIntoDomain`], which checks every field and answers one 422 naming every broken one
//! (not just the first). Handlers stay extract, call, map.
//!
//! The wire types know no rule; the rules are the domain's (`Email::parse`, `Scope::parse`,
//! the password policy...). One rule is the API's own: no text field holds a control
//! character (`control_character`).

use auth_api as api;
use auth_core::model::text::has_control_chars;
use auth_core::model::{
    ApiKeyChanges, ApiKeyMeta, ApiKeyName, Credits, DeviceId, DeviceMetadata, DeviceName,
    DeviceSecret, DisplayName, Email, ExternalId, MAX_KEY_LIFETIME_DAYS, OneTimeToken,
    OrganizationId, OrganizationName, Password, PasswordError, PasswordPolicy, RateLimit, Refill,
    RefillPeriod, RefreshToken, Role, Scope, Scopes, expiry_allowed,
};
use auth_core::{NewApiKey, NewDevice, Registration};
use chrono::{DateTime, Utc};

use crate::error::{ApiError, FieldError};

// The document's limits (in `auth-api`) are the domain's.
const _: () = assert!(api::api_key::MAX_SCOPES == Scopes::MAX);

/// A request body that converts into its domain input, given the rules in `C` (the password
/// policy, for bodies carrying a new password; `()` for the others).
pub trait TryIntoDomain<C = ()> {
    /// The domain input.
    type Domain;

    /// The domain input, or a 422 naming every broken field (or, where the contract says
    /// so, another answer: unknown device credentials are a 401).
    ///
    /// # Errors
    /// [`ApiError`] 422 `VALIDATION_FAILED` with one [`FieldError`] per broken field.
    fn try_into_domain(self, rules: C) -> Result<Self::Domain, ApiError>;
}

/// Collects field errors while a body is checked.
#[derive(Debug, Default)]
pub struct Fields {
    errors: Vec<FieldError>,
}

impl Fields {
    /// Notes a broken field.
    pub fn push(&mut self, error: FieldError) {
        self.errors.push(error);
    }

    /// Whether a field is broken so far.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `raw` when it holds no control character; otherwise notes `control_character`.
    pub fn text<'a>(&mut self, field: &dyn std::fmt::Display, raw: &'a str) -> Option<&'a str> {
        if has_control_chars(raw) {
            let text = format!("{field} must not contain control characters");
            self.errors.push(FieldError::new(
                field.to_string(),
                "control_character",
                text,
            ));
            return None;
        }
        Some(raw)
    }

    /// `rule(raw)` for a clean `raw`, or notes why not (`code` and the rule's message).
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        code: &str,
        raw: &str,
        rule: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let raw = self.text(&field, raw)?;
        rule(raw)
            .map_err(|e| self.errors.push(FieldError::new(field, code, e)))
            .ok()
    }

    /// A password under `rule`, with the policy's codes.
    pub fn password(
        &mut self,
        field: &str,
        raw: &str,
        rule: impl FnOnce(&str) -> Result<Password, PasswordError>,
    ) -> Option<Password> {
        let raw = self.text(&field, raw)?;
        rule(raw)
            .map_err(|e| self.errors.push(password_error(field, e)))
            .ok()
    }

    /// The scopes of `field`, or notes what is wrong: more than [`Scopes::MAX`] entries (one
    /// error, without reading them), or each entry that is not a scope (`None` for an entry
    /// that is not a string, as in a batch item).
    pub fn scopes<'a>(
        &mut self,
        field: &dyn std::fmt::Display,
        raw: impl Iterator<Item = Option<&'a str>>,
        count: usize,
    ) -> Option<Scopes> {
        if count > Scopes::MAX {
            self.errors.push(FieldError::new(
                field.to_string(),
                "too_many",
                format!("{field} must hold at most {} scopes", Scopes::MAX),
            ));
            return None;
        }
        let before = self.errors.len();
        let mut scopes = Vec::with_capacity(count);
        for (i, entry) in raw.enumerate() {
            // The field path is built only for an error: this runs for every scope of every
            // verification.
            match entry {
                Some(s) if has_control_chars(s) => {
                    let _ = self.text(&format!("{field}[{i}]"), s);
                }
                Some(s) => match Scope::parse(s) {
                    Ok(scope) => scopes.push(scope),
                    Err(e) => self.errors.push(FieldError::new(
                        format!("{field}[{i}]"),
                        "invalid_scope",
                        e,
                    )),
                },
                None => {
                    let at = format!("{field}[{i}]");
                    let text = format!("{at} has the wrong type");
                    self.errors.push(FieldError::new(at, "invalid_type", text));
                }
            }
        }
        if self.errors.len() > before {
            return None;
        }
        Scopes::new(scopes)
            .map_err(|e| {
                self.errors
                    .push(FieldError::new(field.to_string(), "too_many", e));
            })
            .ok()
    }

    /// A key's `meta`, or notes why not.
    pub fn meta(&mut self, value: serde_json::Value) -> Option<ApiKeyMeta> {
        ApiKeyMeta::new(value)
            .map_err(|e| self.push(FieldError::new("meta", e.code(), e)))
            .ok()
    }

    /// A key's `external_id`, or notes why not.
    pub fn external_id(&mut self, raw: &str) -> Option<ExternalId> {
        ExternalId::parse(raw)
            .map_err(|e| self.push(FieldError::new("external_id", e.code(), e)))
            .ok()
    }

    /// A key's `rate_limit`, or notes which of its members is out of range.
    pub fn rate_limit(&mut self, spec: api::RateLimitSpec) -> Option<RateLimit> {
        RateLimit::new(u64::from(spec.limit), u64::from(spec.window_seconds))
            .map_err(|e| {
                self.push(FieldError::new(
                    format!("rate_limit.{}", e.field),
                    e.code(),
                    e,
                ))
            })
            .ok()
    }

    /// A key's `remaining`, or notes why not.
    pub fn remaining(&mut self, remaining: u64) -> Option<u64> {
        Credits::check_remaining(remaining)
            .map_err(|e| self.push(FieldError::new("remaining", e.code(), e)))
            .ok()
    }

    /// A key's `refill`, or notes why not.
    pub fn refill(&mut self, spec: api::RefillSpec) -> Option<Refill> {
        let every = match spec.every {
            api::RefillEvery::Day => RefillPeriod::Day,
            api::RefillEvery::Month => RefillPeriod::Month,
        };
        Refill::new(spec.amount, every)
            .map_err(|e| self.push(FieldError::new(format!("refill.{}", e.field), e.code(), e)))
            .ok()
    }

    /// Notes a refill given without a count of credits beside it.
    pub fn refill_needs_remaining(&mut self) {
        self.push(FieldError::new(
            "refill",
            "requires_remaining",
            "refill is only given with remaining",
        ));
    }

    /// `value` when no field is broken; the 422 naming each broken one otherwise.
    ///
    /// # Errors
    /// [`ApiError`] 422 with the noted field errors.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, ApiError> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(ApiError::validation(self.errors)),
        }
    }
}

/// The 422 entry for a password the policy refuses.
fn password_error(field: &str, err: PasswordError) -> FieldError {
    let code = match err {
        PasswordError::Empty => "required",
        PasswordError::TooShort { .. } => "too_short",
        PasswordError::TooLong { .. } => "too_long",
        PasswordError::ControlCharacter => "control_character",
        PasswordError::Common => "too_common",
    };
    FieldError::new(field, code, err)
}

// ---------------------------------------------------------------------------------------------
// Accounts and sessions

impl TryIntoDomain<&PasswordPolicy> for api::RegisterRequest {
    type Domain = Registration;

    fn try_into_domain(self, policy: &PasswordPolicy) -> Result<Registration, ApiError> {
        let mut f = Fields::default();
        let email = f.check("email", "invalid_email", &self.email, Email::parse);
        let password = f.password("password", self.password.expose(), |raw| {
            policy.new_password(raw)
        });
        let display_name = match &self.display_name {
            None => Some(None),
            Some(raw) => f
                .check("display_name", "invalid", raw, DisplayName::parse)
                .map(Some),
        };
        let parts = email.zip(password).zip(display_name);
        f.finish(parts.map(|((email, password), display_name)| Registration {
            email,
            password,
            display_name,
        }))
    }
}

impl TryIntoDomain for api::UpdateProfileRequest {
    type Domain = Option<DisplayName>;

    fn try_into_domain(self, (): ()) -> Result<Option<DisplayName>, ApiError> {
        let mut f = Fields::default();
        let display_name = match &self.display_name {
            None => Some(None),
            Some(raw) => f
                .check("display_name", "invalid", raw, DisplayName::parse)
                .map(Some),
        };
        f.finish(display_name)
    }
}

/// An email and a presented password (login).
#[derive(Debug)]
pub struct Credentials {
    /// The email.
    pub email: Email,
    /// The password.
    pub password: Password,
}

impl TryIntoDomain for api::LoginRequest {
    type Domain = Credentials;

    fn try_into_domain(self, (): ()) -> Result<Credentials, ApiError> {
        let mut f = Fields::default();
        let email = f.check("email", "invalid_email", &self.email, Email::parse);
        let password = f.password("password", self.password.expose(), Password::presented);
        f.finish(
            email
                .zip(password)
                .map(|(email, password)| Credentials { email, password }),
        )
    }
}

impl TryIntoDomain for api::RefreshRequest {
    type Domain = RefreshToken;

    fn try_into_domain(self, (): ()) -> Result<RefreshToken, ApiError> {
        let mut f = Fields::default();
        let token = f
            .text(&"refresh_token", self.refresh_token.expose())
            .map(RefreshToken::presented);
        f.finish(token)
    }
}

impl TryIntoDomain for api::VerifyTokenRequest {
    /// The presented token (any kind).
    type Domain = String;

    fn try_into_domain(self, (): ()) -> Result<String, ApiError> {
        let mut f = Fields::default();
        let clean = f.text(&"token", self.token.expose()).is_some();
        f.finish(clean.then(|| self.token.into_inner()))
    }
}

/// The current password and the new one.
#[derive(Debug)]
pub struct PasswordChange {
    /// The password in use now.
    pub current: Password,
    /// The new password.
    pub new: Password,
}

impl TryIntoDomain for api::DeleteAccountRequest {
    type Domain = Password;

    fn try_into_domain(self, (): ()) -> Result<Password, ApiError> {
        let mut f = Fields::default();
        // A missing password is `required` whatever the reason, as for a password change.
        let password = f.text(&"password", self.password.expose()).and_then(|raw| {
            Password::presented(raw)
                .map_err(|e| f.push(FieldError::new("password", "required", e)))
                .ok()
        });
        f.finish(password)
    }
}

impl TryIntoDomain<&PasswordPolicy> for api::ChangePasswordRequest {
    type Domain = PasswordChange;

    fn try_into_domain(self, policy: &PasswordPolicy) -> Result<PasswordChange, ApiError> {
        let mut f = Fields::default();
        // A missing current password is `required` whatever the reason.
        let current = f
            .text(&"current_password", self.current_password.expose())
            .and_then(|raw| {
                Password::presented(raw)
                    .map_err(|e| f.push(FieldError::new("current_password", "required", e)))
                    .ok()
            });
        let new = f.password("new_password", self.new_password.expose(), |raw| {
            policy.new_password(raw)
        });
        f.finish(
            current
                .zip(new)
                .map(|(current, new)| PasswordChange { current, new }),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Second factor

/// The longest code accepted: a TOTP code is 6 digits, a recovery code 23 characters.
const MAX_CODE_CHARS: usize = 64;
/// The longest `mfa_token` accepted (ours are 43 characters).
const MAX_MFA_TOKEN_CHARS: usize = 256;

impl Fields {
    /// A non-empty clean string of at most `max` characters (`required`, `too_long`).
    fn bounded<'a>(&mut self, field: &str, raw: &'a str, max: usize) -> Option<&'a str> {
        let raw = self.text(&field, raw)?;
        if raw.trim().is_empty() {
            self.push(FieldError::new(
                field,
                "required",
                format!("{field} is required"),
            ));
            return None;
        }
        if raw.chars().count() > max {
            let text = format!("{field} must be at most {max} characters");
            self.push(FieldError::new(field, "too_long", text));
            return None;
        }
        Some(raw)
    }

    /// A presented password for a check (`required` when empty).
    fn presented_password(&mut self, field: &str, raw: &str) -> Option<Password> {
        self.text(&field, raw).and_then(|raw| {
            Password::presented(raw)
                .map_err(|e| self.push(FieldError::new(field, "required", e)))
                .ok()
        })
    }
}

impl TryIntoDomain for api::TotpEnrolRequest {
    type Domain = Password;

    fn try_into_domain(self, (): ()) -> Result<Password, ApiError> {
        let mut f = Fields::default();
        let password = f.presented_password("password", self.password.expose());
        f.finish(password)
    }
}

impl TryIntoDomain for api::TotpConfirmRequest {
    /// The code.
    type Domain = String;

    fn try_into_domain(self, (): ()) -> Result<String, ApiError> {
        let mut f = Fields::default();
        let code = f
            .bounded("code", self.code.expose(), MAX_CODE_CHARS)
            .map(str::to_owned);
        f.finish(code)
    }
}

impl TryIntoDomain for api::TotpDisableRequest {
    /// The password and the code.
    type Domain = (Password, String);

    fn try_into_domain(self, (): ()) -> Result<(Password, String), ApiError> {
        let mut f = Fields::default();
        let password = f.presented_password("password", self.password.expose());
        let code = f
            .bounded("code", self.code.expose(), MAX_CODE_CHARS)
            .map(str::to_owned);
        f.finish(password.zip(code))
    }
}

impl TryIntoDomain for api::MfaLoginRequest {
    /// The `mfa_token` and the code.
    type Domain = (RefreshToken, String);

    fn try_into_domain(self, (): ()) -> Result<(RefreshToken, String), ApiError> {
        let mut f = Fields::default();
        let token = f
            .bounded("mfa_token", self.mfa_token.expose(), MAX_MFA_TOKEN_CHARS)
            .map(RefreshToken::presented);
        let code = f
            .bounded("code", self.code.expose(), MAX_CODE_CHARS)
            .map(str::to_owned);
        f.finish(token.zip(code))
    }
}

// ---------------------------------------------------------------------------------------------
// Mailed links

/// The longest one-time token accepted (ours are 43 characters).
const MAX_ONE_TIME_TOKEN_CHARS: usize = 256;

impl TryIntoDomain for api::VerifyEmailRequest {
    type Domain = OneTimeToken;

    fn try_into_domain(self, (): ()) -> Result<OneTimeToken, ApiError> {
        let mut f = Fields::default();
        let token = f
            .bounded("token", self.token.expose(), MAX_ONE_TIME_TOKEN_CHARS)
            .map(OneTimeToken::presented);
        f.finish(token)
    }
}

impl TryIntoDomain for api::PasswordResetRequest {
    type Domain = Email;

    fn try_into_domain(self, (): ()) -> Result<Email, ApiError> {
        let mut f = Fields::default();
        let email = f.check("email", "invalid_email", &self.email, Email::parse);
        f.finish(email)
    }
}

impl TryIntoDomain<&PasswordPolicy> for api::PasswordResetConfirm {
    /// The token and the new password.
    type Domain = (OneTimeToken, Password);

    fn try_into_domain(
        self,
        policy: &PasswordPolicy,
    ) -> Result<(OneTimeToken, Password), ApiError> {
        let mut f = Fields::default();
        let token = f
            .bounded("token", self.token.expose(), MAX_ONE_TIME_TOKEN_CHARS)
            .map(OneTimeToken::presented);
        let new = f.password("new_password", self.new_password.expose(), |raw| {
            policy.new_password(raw)
        });
        f.finish(token.zip(new))
    }
}

impl TryIntoDomain for api::ChangeEmailRequest {
    /// The new address and the current password.
    type Domain = (Email, Password);

    fn try_into_domain(self, (): ()) -> Result<(Email, Password), ApiError> {
        let mut f = Fields::default();
        let email = f.check("new_email", "invalid_email", &self.new_email, Email::parse);
        // A missing password is `required` whatever the reason, as for a password change.
        let password = f.text(&"password", self.password.expose()).and_then(|raw| {
            Password::presented(raw)
                .map_err(|e| f.push(FieldError::new("password", "required", e)))
                .ok()
        });
        f.finish(email.zip(password))
    }
}

// ---------------------------------------------------------------------------------------------
// Service administration

impl TryIntoDomain<&PasswordPolicy> for api::CreateUserRequest {
    type Domain = auth_core::service::administration::NewAccount;

    fn try_into_domain(self, policy: &PasswordPolicy) -> Result<Self::Domain, ApiError> {
        let mut f = Fields::default();
        let email = f.check("email", "invalid_email", &self.email, Email::parse);
        let password = match &self.password {
            None => Some(None),
            Some(raw) => f
                .password("password", raw.expose(), |raw| policy.new_password(raw))
                .map(Some),
        };
        let display_name = match self.display_name.as_deref() {
            None => Some(None),
            Some(raw) => f
                .check("display_name", "invalid", raw, DisplayName::parse)
                .map(Some),
        };
        let is_admin = self.is_admin;
        f.finish(
            email
                .zip(password)
                .zip(display_name)
                .map(|((email, password), display_name)| {
                    auth_core::service::administration::NewAccount {
                        email,
                        password,
                        display_name,
                        is_admin,
                    }
                }),
        )
    }
}

impl TryIntoDomain for api::UpdateUserRequest {
    type Domain = auth_core::service::administration::AccountChange;

    fn try_into_domain(self, (): ()) -> Result<Self::Domain, ApiError> {
        let mut f = Fields::default();
        let display_name = match self.display_name {
            None => Some(None),
            Some(None) => Some(Some(None)),
            Some(Some(raw)) => f
                .check("display_name", "invalid", &raw, DisplayName::parse)
                .map(|name| Some(Some(name))),
        };
        let (is_admin, disabled) = (self.is_admin, self.disabled);
        f.finish(display_name.map(|display_name| {
            auth_core::service::administration::AccountChange {
                is_admin,
                disabled,
                display_name,
            }
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Organizations

impl TryIntoDomain for api::CreateOrganization {
    type Domain = OrganizationName;

    fn try_into_domain(self, (): ()) -> Result<OrganizationName, ApiError> {
        let mut f = Fields::default();
        let name = f.check("name", "invalid", &self.name, OrganizationName::parse);
        f.finish(name)
    }
}

/// A registered user's email and the role to give them.
#[derive(Debug)]
pub struct NewMember {
    /// The user's email.
    pub email: Email,
    /// `Admin` or `Member`.
    pub role: Role,
}

impl TryIntoDomain for api::AddMember {
    type Domain = NewMember;

    fn try_into_domain(self, (): ()) -> Result<NewMember, ApiError> {
        let mut f = Fields::default();
        let email = f.check("email", "invalid_email", &self.email, Email::parse);
        let role = match self.role {
            api::Role::Admin => Some(Role::Admin),
            api::Role::Member => Some(Role::Member),
            api::Role::Owner | api::Role::Unknown => {
                f.push(FieldError::new(
                    "role",
                    "invalid",
                    "role must be admin or member",
                ));
                None
            }
        };
        f.finish(
            email
                .zip(role)
                .map(|(email, role)| NewMember { email, role }),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// API keys

/// The key the caller sent to an organization, as `NewApiKey` wants it.
impl TryIntoDomain for api::CreateKey {
    type Domain = NewApiKey;

    fn try_into_domain(self, (): ()) -> Result<NewApiKey, ApiError> {
        let mut f = Fields::default();
        let name = f.check("name", "invalid", &self.name, ApiKeyName::parse);
        let scopes = f.scopes(
            &"scopes",
            self.scopes.iter().map(|s| Some(s.as_str())),
            self.scopes.len(),
        );
        if self
            .expires_in_days
            .is_some_and(|d| !(1..=MAX_KEY_LIFETIME_DAYS).contains(&d))
        {
            f.push(FieldError::new(
                "expires_in_days",
                "out_of_range",
                "expires_in_days must be 1..=3650",
            ));
        }
        let meta = self.meta.map(|value| f.meta(value));
        let external_id = self.external_id.as_deref().map(|raw| f.external_id(raw));
        let rate_limit = self.rate_limit.and_then(|spec| f.rate_limit(spec));
        let remaining = self.remaining.and_then(|n| f.remaining(n));
        let refill = self.refill.and_then(|spec| f.refill(spec));
        if self.refill.is_some() && self.remaining.is_none() {
            f.refill_needs_remaining();
        }
        f.finish(name.zip(scopes).map(|(name, scopes)| NewApiKey {
            organization_id: OrganizationId::from_uuid(self.organization_id),
            name,
            scopes,
            expires_in_days: self.expires_in_days,
            meta: meta.flatten(),
            external_id: external_id.flatten(),
            rate_limit,
            remaining,
            refill,
        }))
    }
}

/// A change checked at `now` (its expiry must lie ahead), naming every broken member at once.
impl TryIntoDomain<DateTime<Utc>> for api::UpdateKey {
    type Domain = ApiKeyChanges;

    fn try_into_domain(self, now: DateTime<Utc>) -> Result<ApiKeyChanges, ApiError> {
        let mut f = Fields::default();
        let never_null = |f: &mut Fields, field: &str| {
            f.push(FieldError::new(
                field,
                "invalid_type",
                format!("{field} cannot be null"),
            ));
        };
        let name = match &self.name {
            None => None,
            Some(None) => {
                never_null(&mut f, "name");
                None
            }
            Some(Some(raw)) => f.check("name", "invalid", raw, ApiKeyName::parse),
        };
        let scopes = match &self.scopes {
            None => None,
            Some(None) => {
                never_null(&mut f, "scopes");
                None
            }
            Some(Some(raw)) => f.scopes(&"scopes", raw.iter().map(|s| Some(s.as_str())), raw.len()),
        };
        let meta = self.meta.map(|meta| meta.map(|value| f.meta(value)));
        let external_id = self
            .external_id
            .map(|id| id.as_deref().map(|raw| f.external_id(raw)));
        if let Some(Some(expires_at)) = self.expires_at
            && !expiry_allowed(expires_at, now)
        {
            f.push(FieldError::new(
                "expires_at",
                "out_of_range",
                format!(
                    "expires_at must be after now and at most {MAX_KEY_LIFETIME_DAYS} days ahead"
                ),
            ));
        }
        let rate_limit = self
            .rate_limit
            .map(|spec| spec.and_then(|spec| f.rate_limit(spec)));
        let remaining = self.remaining.map(|n| n.and_then(|n| f.remaining(n)));
        let refill = self.refill.map(|spec| spec.and_then(|spec| f.refill(spec)));
        let changes = ApiKeyChanges {
            name,
            scopes,
            // A broken member is noted in `f` (and `finish` refuses); a cleared one is
            // `Some(None)`.
            meta: meta.map(Option::flatten),
            external_id: external_id.map(Option::flatten),
            expires_at: self.expires_at,
            rate_limit,
            remaining,
            refill,
        };
        if matches!(self.refill, Some(Some(_))) && !matches!(self.remaining, Some(Some(_))) {
            f.refill_needs_remaining();
        }
        f.finish(Some(changes))
    }
}

/// A presented key and the scopes it must hold.
#[derive(Debug)]
pub struct KeyCheck {
    /// The key as presented (its `Debug` never shows it).
    pub key: api::Redacted,
    /// Required scopes.
    pub required: Scopes,
}

impl TryIntoDomain for api::VerifyKey {
    type Domain = KeyCheck;

    fn try_into_domain(self, (): ()) -> Result<KeyCheck, ApiError> {
        let mut f = Fields::default();
        let clean = f.text(&"key", self.key.expose()).is_some();
        let raw = self.required_scopes.unwrap_or_default();
        let required = f.scopes(
            &"required_scopes",
            raw.iter().map(|s| Some(s.as_str())),
            raw.len(),
        );
        let key = self.key;
        f.finish(
            required
                .filter(|_| clean)
                .map(|required| KeyCheck { key, required }),
        )
    }
}

/// A batch read leniently: each item as free JSON, so that every broken field of every item
/// is named (serde would stop at the first).
impl TryIntoDomain for api::VerifyBatch<serde_json::Value> {
    type Domain = Vec<KeyCheck>;

    fn try_into_domain(self, (): ()) -> Result<Vec<KeyCheck>, ApiError> {
        if !(1..=api::api_key::MAX_BATCH).contains(&self.items.len()) {
            return Err(ApiError::validation(vec![FieldError::new(
                "items",
                "out_of_range",
                "items must hold 1 to 100 entries",
            )]));
        }
        let mut f = Fields::default();
        let checks: Vec<_> = self
            .items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| batch_item(i, item, &mut f))
            .collect();
        f.finish(Some(checks))
    }
}

/// One batch item checked against the [`api::VerifyKey`] rules, every broken field noted.
fn batch_item(index: usize, item: serde_json::Value, f: &mut Fields) -> Option<KeyCheck> {
    use serde_json::Value;
    // Field paths are built only for errors: a clean batch of 100 items allocates none.
    let Value::Object(mut fields) = item else {
        let at = format!("items[{index}]");
        let text = format!("{at} must be an object");
        f.push(FieldError::new(at, "invalid_type", text));
        return None;
    };
    let field = || format!("items[{index}].key");
    let key = match fields.remove("key") {
        Some(Value::String(key)) => f.text(&field(), &key).is_some().then_some(key),
        None => {
            let field = field();
            let text = format!("{field} is required");
            f.push(FieldError::new(field, "required", text));
            None
        }
        Some(_) => {
            let field = field();
            let text = format!("{field} has the wrong type");
            f.push(FieldError::new(field, "invalid_type", text));
            None
        }
    };
    let field = ItemField(index, "required_scopes");
    let required = match fields.get("required_scopes") {
        None | Some(Value::Null) => Some(Scopes::default()),
        Some(Value::Array(entries)) => {
            f.scopes(&field, entries.iter().map(Value::as_str), entries.len())
        }
        Some(_) => {
            let text = format!("{field} has the wrong type");
            f.push(FieldError::new(field.to_string(), "invalid_type", text));
            None
        }
    };
    key.zip(required).map(|(key, required)| KeyCheck {
        key: api::Redacted::new(key),
        required,
    })
}

/// The path of a field of batch item `.0`, written out only when an error names it.
struct ItemField(usize, &'static str);

impl std::fmt::Display for ItemField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "items[{}].{}", self.0, self.1)
    }
}

// ---------------------------------------------------------------------------------------------
// Devices

impl TryIntoDomain for api::RegisterDevice {
    type Domain = NewDevice;

    fn try_into_domain(self, (): ()) -> Result<NewDevice, ApiError> {
        let mut f = Fields::default();
        let id = f.check("device_id", "invalid", &self.device_id, DeviceId::parse);
        let name = match &self.name {
            None => Some(None),
            Some(raw) => f.check("name", "invalid", raw, DeviceName::parse).map(Some),
        };
        let metadata = match self.metadata {
            None | Some(serde_json::Value::Null) => Some(DeviceMetadata::default()),
            Some(value) => DeviceMetadata::new(value)
                .map_err(|e| f.push(FieldError::new("metadata", "invalid", e)))
                .ok(),
        };
        let parts = id.zip(name).zip(metadata);
        f.finish(parts.map(|((id, name), metadata)| NewDevice {
            id,
            organization_id: OrganizationId::from_uuid(self.organization_id),
            name,
            metadata,
        }))
    }
}

/// A device's presented credentials.
#[derive(Debug)]
pub struct DeviceCredentials {
    /// The id.
    pub id: DeviceId,
    /// The secret.
    pub secret: DeviceSecret,
}

impl TryIntoDomain for api::AuthenticateDevice {
    type Domain = DeviceCredentials;

    /// An id that cannot exist fails exactly like an unknown one: 401, not 422.
    fn try_into_domain(self, (): ()) -> Result<DeviceCredentials, ApiError> {
        let mut f = Fields::default();
        let id = f.text(&"device_id", &self.device_id);
        let secret = f
            .text(&"device_secret", self.device_secret.expose())
            .map(DeviceSecret::presented);
        let (id, secret) = f.finish(id.zip(secret))?;
        let id = DeviceId::parse(id).map_err(|_| ApiError::invalid_device_credentials())?;
        Ok(DeviceCredentials { id, secret })
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn fields(err: &ApiError) -> Vec<(&str, &str)> {
        err.field_errors()
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect()
    }

    #[test]
    fn every_broken_field_is_named() {
        let body = api::RegisterRequest {
            email: "not-an-email".into(),
            password: "pass\u{0}word".into(),
            display_name: Some("y".repeat(101)),
        };
        let err = body
            .try_into_domain(&PasswordPolicy::default())
            .unwrap_err();
        assert_eq!(
            fields(&err),
            [
                ("email", "invalid_email"),
                ("password", "control_character"),
                ("display_name", "invalid")
            ]
        );

        let body = api::CreateKey {
            organization_id: uuid::Uuid::nil(),
            name: String::new(),
            scopes: vec!["ok".into(), "Bad Scope".into(), "\u{7}".into()],
            expires_in_days: Some(0),
            meta: Some(serde_json::json!(["not", "an", "object"])),
            external_id: Some("x".repeat(129)),
            rate_limit: Some(api::RateLimitSpec {
                limit: 0,
                window_seconds: 10,
            }),
            remaining: Some(1_000_000_001),
            refill: Some(api::RefillSpec {
                amount: 0,
                every: api::RefillEvery::Day,
            }),
        };
        let err = body.try_into_domain(()).unwrap_err();
        assert_eq!(
            fields(&err),
            [
                ("name", "invalid"),
                ("scopes[1]", "invalid_scope"),
                ("scopes[2]", "control_character"),
                ("expires_in_days", "out_of_range"),
                ("meta", "not_an_object"),
                ("external_id", "too_long"),
                ("rate_limit.limit", "out_of_range"),
                ("remaining", "out_of_range"),
                ("refill.amount", "out_of_range"),
            ]
        );
        for (meta, code) in [
            (serde_json::json!({"k": "v".repeat(4096)}), "too_large"),
            (
                serde_json::json!({"k": ["ok", "\u{0}"]}),
                "control_character",
            ),
            (serde_json::json!({"\u{202e}k": 1}), "bidi_control"),
        ] {
            let body = api::UpdateKey {
                meta: Some(Some(meta)),
                ..api::UpdateKey::default()
            };
            assert_eq!(
                fields(&body.try_into_domain(Utc::now()).unwrap_err()),
                [("meta", code)]
            );
        }
        let body = api::UpdateKey {
            name: Some(None),
            scopes: Some(None),
            external_id: Some(Some(String::new())),
            expires_at: Some(Some(Utc::now() - chrono::Duration::minutes(1))),
            ..api::UpdateKey::default()
        };
        assert_eq!(
            fields(&body.try_into_domain(Utc::now()).unwrap_err()),
            [
                ("name", "invalid_type"),
                ("scopes", "invalid_type"),
                ("external_id", "empty"),
                ("expires_at", "out_of_range")
            ]
        );
        let at_the_bound = api::UpdateKey {
            meta: Some(Some(serde_json::json!({"k": "v".repeat(4088)}))),
            external_id: Some(Some("é".repeat(128))),
            ..api::UpdateKey::default()
        };
        assert_eq!(
            serde_json::to_vec(at_the_bound.meta.as_ref().unwrap())
                .unwrap()
                .len(),
            4096
        );
        assert!(at_the_bound.try_into_domain(Utc::now()).is_ok());
        let cleared = api::UpdateKey {
            meta: Some(None),
            external_id: Some(None),
            expires_at: Some(None),
            ..api::UpdateKey::default()
        }
        .try_into_domain(Utc::now())
        .unwrap();
        assert_eq!(cleared.members(), ["meta", "external_id", "expires_at"]);
        assert_eq!(
            (cleared.meta, cleared.external_id, cleared.expires_at),
            (Some(None), Some(None), Some(None))
        );
    }

    #[test]
    fn a_batch_names_every_broken_item() {
        let batch = api::VerifyBatch {
            items: vec![
                serde_json::json!({"key": "ak_live_x"}),
                serde_json::json!(5),
                serde_json::json!({"required_scopes": ["BAD"]}),
            ],
        };
        let err = batch.try_into_domain(()).unwrap_err();
        assert_eq!(
            fields(&err),
            [
                ("items[1]", "invalid_type"),
                ("items[2].key", "required"),
                ("items[2].required_scopes[0]", "invalid_scope")
            ]
        );
        let empty = api::VerifyBatch::<serde_json::Value> { items: vec![] };
        assert_eq!(
            fields(&empty.try_into_domain(()).unwrap_err()),
            [("items", "out_of_range")]
        );
    }

    #[test]
    fn impossible_device_ids_are_unknown_credentials() {
        let body = api::AuthenticateDevice {
            device_id: "no spaces allowed".into(),
            device_secret: "s".into(),
        };
        let err = body.try_into_domain(()).unwrap_err();
        assert_eq!(err.code(), "INVALID_DEVICE_CREDENTIALS");
    }
}
