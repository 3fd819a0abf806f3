//! `/api/v1/users/me*`: the calling user's profile and password.

use actix_web::{HttpResponse, get, post, web};
use auth_core::model::{DisplayName, Password};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, BearerErrors, BodyErrors, FieldError, Problem, StoreErrors};
use crate::extract::Authenticated;
use crate::json::{CleanString, ValidJson};
use crate::state::AppState;

/// An organization the user belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipSummary {
    /// Organization id.
    pub id: Uuid,
    /// Organization name.
    pub name: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
}

/// `GET /users/me` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// User id.
    pub id: Uuid,
    /// Email as typed.
    pub email: String,
    /// Display name, or null.
    pub display_name: Option<String>,
    /// Service administrator.
    pub is_admin: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Organizations the user belongs to.
    pub organizations: Vec<MembershipSummary>,
}

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
    let organizations = state
        .orgs
        .list_mine(user.id)
        .await?
        .into_iter()
        .map(|(org, role)| MembershipSummary {
            id: org.id.as_uuid(),
            name: org.name.as_str().to_owned(),
            role: role.as_str().to_owned(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(Me {
        id: user.id.as_uuid(),
        email: user.email.as_str().to_owned(),
        display_name: user.display_name.map(DisplayName::into_inner),
        is_admin: user.is_admin,
        created_at: user.created_at,
        organizations,
    }))
}

/// `POST /users/me/password` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    /// The password in use now.
    #[schema(value_type = String, format = Password, min_length = 1, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub current_password: CleanString,
    /// The new password (same rules as registration).
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 128, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub new_password: CleanString,
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
    let body = body.0;
    let mut errors = Vec::new();
    let current = Password::presented(body.current_password.as_str())
        .map_err(|e| errors.push(FieldError::new("current_password", "required", e)))
        .ok();
    let new = state
        .password_policy
        .new_password(body.new_password.as_str())
        .map_err(|e| errors.push(super::auth::password_error("new_password", e)))
        .ok();
    let (Some(current), Some(new)) = (current, new) else {
        return Err(ApiError::validation(errors));
    };
    state
        .auth
        .change_password(&caller.0, &current, &new)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
