//! `/api/v1/admin/users*`: service administration. Every route answers 403 to a caller who is
//! not an enabled service administrator (checked against the stored account).

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use auth_api::{
    AdminUser, AdminUserDetail, AdminUserList, CreateUserRequest, MailAccepted, Problem,
    UpdateUserRequest,
};

use crate::error::{ApiError, BearerErrors, BodyErrors, NoBodyErrors, StoreErrors};
use crate::extract::Authenticated;
use crate::json::{NoBody, ValidJson};
use crate::params::{UserListQuery, UserPath};
use crate::parse::TryIntoDomain as _;
use crate::present;
use crate::state::AppState;

/// Answers documented by every administration route besides its own.
#[derive(Debug, utoipa::IntoResponses)]
pub enum AdminErrors {
    /// The caller is not a service administrator.
    #[response(
        status = 403,
        description = "`FORBIDDEN`: the caller is not an enabled service administrator",
        content_type = "application/problem+json"
    )]
    Forbidden(#[to_schema] Problem),
}

/// List and search accounts, in creation order.
#[utoipa::path(
    operation_id = "admin_list_users",
    tag = "admin",
    security(("bearer" = [])),
    params(UserListQuery),
    responses(
        (status = 200, description = "A page of accounts", body = AdminUserList),
        (status = 422, description = "`VALIDATION_FAILED`: a bad query parameter", body = Problem, content_type = "application/problem+json"),
        BearerErrors, AdminErrors, StoreErrors,
    )
)]
#[get("/admin/users")]
pub async fn list(
    state: web::Data<AppState>,
    caller: Authenticated,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0).await?;
    let query = UserListQuery::parse(&req)?;
    let limit = query.limit;
    let listings = state.auth.list_users(&query).await?;
    let next_after = (listings.len() == limit)
        .then(|| listings.last().map(|l| l.user.id.as_uuid()))
        .flatten();
    let items: Vec<AdminUser> = listings.into_iter().map(present::admin_user).collect();
    Ok(HttpResponse::Ok().json(AdminUserList { items, next_after }))
}

/// Make an account (whether or not registration is open). Without a password a reset link
/// is mailed to the address.
#[utoipa::path(
    operation_id = "admin_create_user",
    tag = "admin",
    security(("bearer" = [])),
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "The account", body = AdminUser),
        (status = 409, description = "`EMAIL_TAKEN`", body = Problem, content_type = "application/problem+json"),
        BearerErrors, AdminErrors, BodyErrors, StoreErrors,
    )
)]
#[post("/admin/users")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: ValidJson<CreateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0).await?;
    let new = body.0.try_into_domain(&state.password_policy)?;
    let user = state.auth.create_account(new).await?;
    let listing = state.auth.user_listing(user.id).await?;
    Ok(HttpResponse::Created().json(present::admin_user(listing)))
}

/// One account, with its organizations.
#[utoipa::path(
    operation_id = "admin_get_user",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The account", body = AdminUserDetail),
        (status = 404, description = "`NOT_FOUND`", body = Problem, content_type = "application/problem+json"),
        BearerErrors, AdminErrors, StoreErrors,
    )
)]
#[get("/admin/users/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: UserPath,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0).await?;
    let listing = state.auth.user_listing(path.0).await?;
    let organizations = state.orgs.list_mine(path.0).await?;
    Ok(HttpResponse::Ok().json(present::admin_user_detail(listing, organizations)))
}

/// Change an account: `is_admin`, `disabled` (every session ends at once), `display_name`.
#[utoipa::path(
    operation_id = "admin_update_user",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "The account afterwards", body = AdminUser),
        (status = 404, description = "`NOT_FOUND`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`LAST_ADMINISTRATOR`: the service must keep an enabled administrator", body = Problem, content_type = "application/problem+json"),
        BearerErrors, AdminErrors, BodyErrors, StoreErrors,
    )
)]
#[patch("/admin/users/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: UserPath,
    body: ValidJson<UpdateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0).await?;
    let change = body.0.try_into_domain(())?;
    let listing = state.auth.change_account(path.0, change).await?;
    Ok(HttpResponse::Ok().json(present::admin_user(listing)))
}

/// Clear the lockout of the account's address.
#[utoipa::path(
    operation_id = "admin_unlock_user",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 204, description = "The lockout is cleared"),
        (status = 404, description = "`NOT_FOUND`", body = Problem, content_type = "application/problem+json"),
        BearerErrors, AdminErrors, StoreErrors, NoBodyErrors,
    )
)]
#[post("/admin/users/{id}/unlock")]
pub async fn unlock(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: UserPath,
    _body: NoBody,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0).await?;
    state.auth.unlock(path.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// End every session of the account, on every instance.
#[utoipa::path(
    operation_id = "admin_revoke_user_sessions",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 204, description = "Every session ended"),
        (status = 404, description = "`NOT_FOUND`", body = Problem, content_type = "application/problem+json"),
        BearerErrors, AdminErrors, StoreErrors, NoBodyErrors,
    )
)]
#[post("/admin/users/{id}/sessions/revoke")]
pub async fn revoke_sessions(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: UserPath,
    _body: NoBody,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0).await?;
    state.auth.end_sessions(path.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Mail the account a password-reset link.
#[utoipa::path(
    operation_id = "admin_send_password_reset",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 202, description = "A link is on its way", body = MailAccepted),
        (status = 404, description = "`NOT_FOUND`", body = Problem, content_type = "application/problem+json"),
        BearerErrors, AdminErrors, StoreErrors, NoBodyErrors,
    )
)]
#[post("/admin/users/{id}/password-reset")]
pub async fn send_password_reset(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: UserPath,
    _body: NoBody,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0).await?;
    state.auth.send_reset_link(path.0).await?;
    Ok(HttpResponse::Accepted().json(MailAccepted {
        message: "A link to set a new password is on its way to the account's address.".to_owned(),
    }))
}

/// Delete the account as `DELETE /users/me` does (sessions end, memberships go).
#[utoipa::path(
    operation_id = "admin_delete_user",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 204, description = "The account is deleted"),
        (status = 404, description = "`NOT_FOUND`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`LAST_OWNER` (the only owner of an organization) or `LAST_ADMINISTRATOR` (the last enabled service administrator)", body = Problem, content_type = "application/problem+json"),
        BearerErrors, AdminErrors, StoreErrors, NoBodyErrors,
    )
)]
#[delete("/admin/users/{id}")]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: UserPath,
    _body: NoBody,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0).await?;
    state
        .auth
        .remove_account(path.0)
        .await
        .map_err(|err| match err {
            auth_core::AccountError::InvalidToken(_) => ApiError::not_found(),
            other => other.into(),
        })?;
    Ok(HttpResponse::NoContent().finish())
}
