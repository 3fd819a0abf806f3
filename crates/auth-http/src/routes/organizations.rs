//! `/api/v1/organizations*`: organizations and their members.

use actix_web::{HttpResponse, delete, get, post, web};
use auth_api::{
    AddMember, CreateOrganization, MemberBody, MemberList, OrganizationBody, OrganizationList,
    Problem,
};
use auth_core::Caller;

use crate::error::{ApiError, BearerErrors, BodyErrors, ManagerErrors, StoreErrors};
use crate::extract::Authenticated;
use crate::json::ValidJson;
use crate::params::{MemberPath, OrganizationPath};
use crate::parse::TryIntoDomain as _;
use crate::present;
use crate::state::AppState;

fn caller(auth: &Authenticated) -> Caller {
    Caller {
        user: auth.0.user.id,
        is_admin: auth.0.user.is_admin,
    }
}

/// Create an organization; the caller becomes its owner.
#[utoipa::path(
    operation_id = "create_organization",
    tag = "organizations",
    security(("bearer" = [])),
    request_body = CreateOrganization,
    responses((status = 201, description = "Created", body = OrganizationBody), BodyErrors, BearerErrors, StoreErrors)
)]
#[post("/organizations")]
pub async fn create(
    state: web::Data<AppState>,
    auth: Authenticated,
    body: ValidJson<CreateOrganization>,
) -> Result<HttpResponse, ApiError> {
    let name = body.0.try_into_domain(())?;
    let org = state.orgs.create(auth.0.user.id, name).await?;
    Ok(HttpResponse::Created().json(present::organization(&org)))
}

/// The caller's organizations.
#[utoipa::path(
    operation_id = "list_organizations",
    tag = "organizations",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's organizations", body = OrganizationList), BearerErrors, StoreErrors)
)]
#[get("/organizations")]
pub async fn list(
    state: web::Data<AppState>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let items = state.orgs.list_mine(auth.0.user.id).await?;
    Ok(HttpResponse::Ok().json(present::organization_list(items)))
}

/// One organization the caller belongs to.
#[utoipa::path(
    operation_id = "get_organization",
    tag = "organizations",
    security(("bearer" = [])),
    params(("org_id" = Uuid, Path, description = "Organization id")),
    responses((status = 200, description = "The organization", body = OrganizationBody), ManagerErrors, StoreErrors)
)]
#[get("/organizations/{org_id}")]
pub async fn get(
    state: web::Data<AppState>,
    auth: Authenticated,
    path: OrganizationPath,
) -> Result<HttpResponse, ApiError> {
    let org = state.orgs.get(caller(&auth), path.0).await?;
    Ok(HttpResponse::Ok().json(present::organization(&org)))
}

/// Add a registered user to the organization (owner or admin).
#[utoipa::path(
    operation_id = "add_organization_member",
    tag = "organizations",
    security(("bearer" = [])),
    params(("org_id" = Uuid, Path, description = "Organization id")),
    request_body = AddMember,
    responses(
        (status = 201, description = "Member added", body = MemberBody),
        (status = 409, description = "`ALREADY_MEMBER`", body = Problem, content_type = "application/problem+json"),
        BodyErrors, ManagerErrors, StoreErrors,
    )
)]
#[post("/organizations/{org_id}/members")]
pub async fn add_member(
    state: web::Data<AppState>,
    auth: Authenticated,
    body: ValidJson<AddMember>,
    path: OrganizationPath,
) -> Result<HttpResponse, ApiError> {
    let new = body.0.try_into_domain(())?;
    let member = state
        .orgs
        .add_member(caller(&auth), path.0, &new.email, new.role)
        .await?;
    Ok(HttpResponse::Created().json(present::member(&member)))
}

/// The members of an organization the caller belongs to.
#[utoipa::path(
    operation_id = "list_organization_members",
    tag = "organizations",
    security(("bearer" = [])),
    params(("org_id" = Uuid, Path, description = "Organization id")),
    responses((status = 200, description = "Members", body = MemberList), ManagerErrors, StoreErrors)
)]
#[get("/organizations/{org_id}/members")]
pub async fn members(
    state: web::Data<AppState>,
    auth: Authenticated,
    path: OrganizationPath,
) -> Result<HttpResponse, ApiError> {
    let items = state
        .orgs
        .members(caller(&auth), path.0)
        .await?
        .iter()
        .map(present::member)
        .collect();
    Ok(HttpResponse::Ok().json(MemberList { items }))
}

/// Remove a member (owner or admin; an admin cannot remove an owner; the last owner stays).
#[utoipa::path(
    operation_id = "remove_organization_member",
    tag = "organizations",
    security(("bearer" = [])),
    params(
        ("org_id" = Uuid, Path, description = "Organization id"),
        ("user_id" = Uuid, Path, description = "The member's user id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 409, description = "`LAST_OWNER`", body = Problem, content_type = "application/problem+json"),
        ManagerErrors, StoreErrors,
    )
)]
#[delete("/organizations/{org_id}/members/{user_id}")]
pub async fn remove_member(
    state: web::Data<AppState>,
    auth: Authenticated,
    path: MemberPath,
) -> Result<HttpResponse, ApiError> {
    let MemberPath(org, user) = path;
    state.orgs.remove_member(caller(&auth), org, user).await?;
    Ok(HttpResponse::NoContent().finish())
}
