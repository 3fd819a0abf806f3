//! The mailed parts of an account's life: `/auth/verify-email*`, `/auth/password-reset*`,
//! `/users/me/email`.

use actix_web::{HttpResponse, post, web};
use auth_api::{
    ChangeEmailRequest, MailAccepted, PasswordResetConfirm, PasswordResetRequest, Problem,
    VerifyEmailRequest,
};
use auth_core::service::lifecycle::ResendOutcome;

use crate::error::{ApiError, BearerErrors, BodyErrors, LimitedErrors, NoBodyErrors, StoreErrors};
use crate::extract::Authenticated;
use crate::json::{NoBody, ValidJson};
use crate::parse::TryIntoDomain as _;
use crate::state::AppState;

fn accepted(message: &str) -> HttpResponse {
    HttpResponse::Accepted().json(MailAccepted {
        message: message.to_owned(),
    })
}

/// Confirm an address with the token of a mailed link: the account's address is verified,
/// or, for a change of address, the new address replaces the old one.
#[utoipa::path(
    operation_id = "verify_email",
    tag = "auth",
    request_body = VerifyEmailRequest,
    responses(
        (status = 204, description = "The address is verified (or, for a change of address, now in use)"),
        (status = 401, description = "`INVALID_ONE_TIME_TOKEN`: unknown, used, expired or superseded link", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`EMAIL_TAKEN`: another account took the new address meanwhile (the link works again once it is free)", body = Problem, content_type = "application/problem+json"),
        BodyErrors, StoreErrors, LimitedErrors,
    )
)]
#[post("/auth/verify-email")]
pub async fn verify_email(
    state: web::Data<AppState>,
    body: ValidJson<VerifyEmailRequest>,
) -> Result<HttpResponse, ApiError> {
    let token = body.0.try_into_domain(())?;
    state.auth.confirm_email(&token).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Send a new verification link to the caller's address (older links stop working).
/// Nothing is sent when the address is verified already.
#[utoipa::path(
    operation_id = "resend_verification_email",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "A link is on its way (or the address is verified already)", body = MailAccepted),
        (status = 429, description = "`RATE_LIMITED`: a link went to this address less than `AUTH_MAIL_MIN_INTERVAL_SECONDS` ago (with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
        BearerErrors, StoreErrors, NoBodyErrors,
    )
)]
#[post("/auth/verify-email/resend")]
pub async fn resend_verification(
    state: web::Data<AppState>,
    caller: Authenticated,
    _body: NoBody,
) -> Result<HttpResponse, ApiError> {
    Ok(match state.auth.resend_verification(&caller.0).await? {
        ResendOutcome::Sent => accepted("A new verification link is on its way."),
        ResendOutcome::AlreadyVerified => {
            accepted("The address is verified already: nothing was sent.")
        }
    })
}

/// Ask for a password-reset link. The answer is the same, after about the same time,
/// whether or not an account has the address; at most one link goes to an address per
/// `AUTH_MAIL_MIN_INTERVAL_SECONDS`.
#[utoipa::path(
    operation_id = "request_password_reset",
    tag = "auth",
    request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "If an account has the address, a link is on its way", body = MailAccepted),
        BodyErrors, StoreErrors, LimitedErrors,
    )
)]
#[post("/auth/password-reset")]
pub async fn request_password_reset(
    state: web::Data<AppState>,
    body: ValidJson<PasswordResetRequest>,
) -> Result<HttpResponse, ApiError> {
    let email = body.0.try_into_domain(())?;
    state.auth.request_password_reset(&email).await?;
    Ok(accepted(
        "If an account uses this address, a link to set a new password is on its way.",
    ))
}

/// Set a new password with the token of a reset link: every session of the account ends,
/// and its lockout is cleared.
#[utoipa::path(
    operation_id = "confirm_password_reset",
    tag = "auth",
    request_body = PasswordResetConfirm,
    responses(
        (status = 204, description = "The password is set; every session ended"),
        (status = 401, description = "`INVALID_ONE_TIME_TOKEN`: unknown, used, expired or superseded link", body = Problem, content_type = "application/problem+json"),
        BodyErrors, StoreErrors, LimitedErrors,
    )
)]
#[post("/auth/password-reset/confirm")]
pub async fn confirm_password_reset(
    state: web::Data<AppState>,
    body: ValidJson<PasswordResetConfirm>,
) -> Result<HttpResponse, ApiError> {
    let (token, password) = body.0.try_into_domain(&state.password_policy)?;
    state.auth.reset_password(&token, &password).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Move the caller's account to a new address: a link goes to the new address, and the
/// change applies when it is opened (`POST /auth/verify-email`). Until then the current
/// address stays in use.
#[utoipa::path(
    operation_id = "change_email",
    tag = "users",
    security(("bearer" = [])),
    request_body = ChangeEmailRequest,
    responses(
        (status = 202, description = "A link is on its way to the new address", body = MailAccepted),
        (status = 401, description = "`UNAUTHENTICATED` or `INVALID_CREDENTIALS`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`EMAIL_TAKEN`: another account has the new address", body = Problem, content_type = "application/problem+json"),
        BodyErrors, StoreErrors,
        (status = 429, description = "`TOO_MANY_ATTEMPTS` (too many wrong passwords) or `RATE_LIMITED` (a link went out less than `AUTH_MAIL_MIN_INTERVAL_SECONDS` ago), with `Retry-After`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/users/me/email")]
pub async fn change_email(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: ValidJson<ChangeEmailRequest>,
) -> Result<HttpResponse, ApiError> {
    let (new_email, password) = body.0.try_into_domain(())?;
    state
        .auth
        .request_email_change(&caller.0, &new_email, &password)
        .await?;
    Ok(accepted(
        "A link is on its way to the new address; the change applies when it is opened.",
    ))
}
