//! The mailed parts of an account's life: address verification, password reset, a new
//! address (`/auth/verify-email*`, `/auth/password-reset*`, `/users/me/email`).

use serde::{Deserialize, Serialize};

use crate::redacted::Redacted;

/// `POST /auth/verify-email` body: the token from the link's fragment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyEmailRequest {
    /// The `token` of the mailed link (`…/verify-email#token=…`).
    #[cfg_attr(feature = "openapi", schema(value_type = String, min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub token: Redacted,
}

/// `POST /auth/password-reset` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordResetRequest {
    /// The account's address.
    #[cfg_attr(feature = "openapi", schema(example = "ada@example.com", format = Email, max_length = 254))]
    pub email: String,
}

/// `POST /auth/password-reset/confirm` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordResetConfirm {
    /// The `token` of the mailed link (`…/reset-password#token=…`).
    #[cfg_attr(feature = "openapi", schema(value_type = String, min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub token: Redacted,
    /// The new password, under the same rules as at registration.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Password, min_length = 8, max_length = 128, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub new_password: Redacted,
}

/// `POST /users/me/email` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeEmailRequest {
    /// The address to move the account to; it applies when the link mailed to it is opened.
    #[cfg_attr(feature = "openapi", schema(example = "ada@new.example", format = Email, max_length = 254))]
    pub new_email: String,
    /// The password in use now.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Password, min_length = 1, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"))]
    pub password: Redacted,
}

/// The 202 answer of a request that causes a mail: what happens next. A password-reset
/// request gets the same answer whether or not an account has the address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MailAccepted {
    /// What was done, for people.
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "If an account uses this address, a link to set a new password is on its way."
        )
    )]
    pub message: String,
}
