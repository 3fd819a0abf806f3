//! `/api/v1/users/me*`: the calling user's profile and password.

use actix_web::{HttpResponse, get, post, web};
use auth_api::{ChangePasswordRequest, Me, Problem};

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
    let user = caller.0.user;
    let organizations = state.orgs.list_mine(user.id).await?;
    let mfa_enabled = state.auth.mfa_enabled(user.id).await?;
    Ok(HttpResponse::Ok().json(present::me(user, organizations, mfa_enabled)))
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
