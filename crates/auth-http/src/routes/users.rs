//! `/api/v1/users/me*`: the calling user's profile and password.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use auth_api::{ChangePasswordRequest, DeleteAccountRequest, Me, Problem, UpdateProfileRequest};

use crate::error::{ApiError, BearerErrors, BodyErrors, StoreErrors};
use crate::extract::Authenticated;
use crate::json::ValidJson;
use crate::parse::TryIntoDomain as _;
use crate::present;
use crate::state::AppState;

/// The calling user's profile.
#[utoipa::path(
    operation_id = "get_current_user",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Profile", body = Me),
        BearerErrors, StoreErrors,
    )
)]
#[get("/users/me")]
pub async fn me(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    // As stored, not as cached with the session: a change made on another instance shows.
    let user = state.auth.current_user(caller.0.user.id).await?;
    Ok(HttpResponse::Ok().json(profile(&state, user).await?))
}

/// The profile of `user`: with their organizations and whether a second factor is on.
async fn profile(state: &AppState, user: auth_core::model::User) -> Result<Me, ApiError> {
    let organizations = state.orgs.list_mine(user.id).await?;
    let mfa_enabled = state.auth.mfa_enabled(user.id).await?;
    Ok(present::me(user, organizations, mfa_enabled))
}

/// Change the calling user's profile: `display_name` (`null` clears it).
#[utoipa::path(
    operation_id = "update_current_user",
    tag = "users",
    security(("bearer" = [])),
    request_body = UpdateProfileRequest,
    responses(
        (status = 200, description = "The profile as stored", body = Me),
        BearerErrors, BodyErrors, StoreErrors,
    )
)]
#[patch("/users/me")]
pub async fn update_me(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: ValidJson<UpdateProfileRequest>,
) -> Result<HttpResponse, ApiError> {
    let display_name = body.0.try_into_domain(())?;
    let user = state
        .auth
        .update_profile(caller.0.user.id, display_name)
        .await?;
    Ok(HttpResponse::Ok().json(profile(&state, user).await?))
}

/// Change the calling user's password; every other session of the user ends.
#[utoipa::path(
    operation_id = "change_password",
    tag = "users",
    security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Password changed"),
        (status = 401, description = "`UNAUTHENTICATED` or `INVALID_CREDENTIALS`", body = Problem, content_type = "application/problem+json"),
        BodyErrors, StoreErrors,
        (status = 429, description = "`TOO_MANY_ATTEMPTS`: too many wrong current passwords (with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/users/me/password")]
pub async fn change_password(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: ValidJson<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let change = body.0.try_into_domain(&state.password_policy)?;
    state
        .auth
        .change_password(&caller.0, &change.current, &change.new)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete the calling user's account: every session ends, memberships go, the account is
/// deleted (the audit trail keeps only its id). The only owner of an organization must make
/// another member an owner first.
#[utoipa::path(
    operation_id = "delete_current_user",
    tag = "users",
    security(("bearer" = [])),
    request_body = DeleteAccountRequest,
    responses(
        (status = 204, description = "The account is deleted"),
        (status = 401, description = "`UNAUTHENTICATED` or `INVALID_CREDENTIALS`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`LAST_OWNER` (the only owner of an organization) or `LAST_ADMINISTRATOR` (the last enabled service administrator)", body = Problem, content_type = "application/problem+json"),
        BodyErrors, StoreErrors,
        (status = 429, description = "`TOO_MANY_ATTEMPTS`: too many wrong passwords (with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/users/me")]
pub async fn delete_me(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: ValidJson<DeleteAccountRequest>,
) -> Result<HttpResponse, ApiError> {
    let password = body.0.try_into_domain(())?;
    state.auth.delete_account(&caller.0, &password).await?;
    Ok(HttpResponse::NoContent().finish())
}
