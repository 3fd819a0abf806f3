//! `/api/v1/organizations*`: organizations and their members.

use actix_web::{HttpResponse, delete, get, post, web};
use auth_core::Caller;
use auth_core::model::{Email, OrganizationId, OrganizationName, Role, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{
    ApiError, BearerErrors, BodyErrors, FieldError, ManagerErrors, Problem, StoreErrors,
};
use crate::extract::Authenticated;
use crate::json::{CleanString, ValidJson};
use crate::state::AppState;

fn caller(auth: &Authenticated) -> Caller {
    Caller {
        user: auth.0.user.id,
        is_admin: auth.0.user.is_admin,
    }
}

/// A path id that is not a well-formed id is a 404, like an unknown one.
pub(crate) fn path_id<T: std::str::FromStr>(raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}

/// Parses a query string into `T`; a shape error is a 422.
pub(crate) fn query<T: serde::de::DeserializeOwned>(
    req: &actix_web::HttpRequest,
) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|_| {
            // The deserializer's message is serde text: keep it out of the body.
            ApiError::validation(vec![FieldError::new(
                "query",
                "invalid",
                "the query parameters are not valid",
            )])
        })
}

/// The `organization_id` a listing needs: missing is a 422, malformed or unknown a 404.
pub(crate) fn required_organization(raw: Option<&str>) -> Result<OrganizationId, ApiError> {
    let raw = raw.ok_or_else(|| {
        ApiError::validation(vec![FieldError::new(
            "organization_id",
            "required",
            "organization_id is required",
        )])
    })?;
    path_id(raw)
}

/// `POST /organizations` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateOrganization {
    /// 1..=100 characters.
    #[schema(value_type = String, example = "Acme")]
    pub name: CleanString,
}

/// An organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationBody {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// An organization with the caller's role.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationWithRole {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// `owner`, `admin` or `member`.
    #[schema(example = "owner")]
    pub role: &'static str,
}

/// A list of the caller's organizations.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationList {
    /// Items.
    pub items: Vec<OrganizationWithRole>,
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
    let name = OrganizationName::parse(body.0.name.as_str())
        .map_err(|e| ApiError::validation(vec![FieldError::new("name", "invalid", e)]))?;
    let org = state.orgs.create(auth.0.user.id, name).await?;
    Ok(HttpResponse::Created().json(OrganizationBody {
        id: org.id.as_uuid(),
        name: org.name.as_str().to_owned(),
        created_at: org.created_at,
    }))
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
    let items = state
        .orgs
        .list_mine(auth.0.user.id)
        .await?
        .into_iter()
        .map(|(org, role)| OrganizationWithRole {
            id: org.id.as_uuid(),
            name: org.name.as_str().to_owned(),
            role: role.as_str(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(OrganizationList { items }))
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
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: OrganizationId = path_id(&path)?;
    let org = state.orgs.get(caller(&auth), id).await?;
    Ok(HttpResponse::Ok().json(OrganizationBody {
        id: org.id.as_uuid(),
        name: org.name.as_str().to_owned(),
        created_at: org.created_at,
    }))
}

/// `POST /organizations/{org_id}/members` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AddMember {
    /// The user's email.
    #[schema(value_type = String, example = "bob@example.com")]
    pub email: CleanString,
    /// `admin` or `member`.
    #[schema(value_type = String, example = "member")]
    pub role: CleanString,
}

/// A member.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberBody {
    /// The user.
    pub user_id: Uuid,
    /// Their email.
    pub email: String,
    /// Their role.
    #[schema(example = "member")]
    pub role: &'static str,
}

/// The members of an organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    /// Items.
    pub items: Vec<MemberBody>,
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
    path: web::Path<String>,
    body: ValidJson<AddMember>,
) -> Result<HttpResponse, ApiError> {
    let org: OrganizationId = path_id(&path)?;
    let mut errors = Vec::new();
    let email = Email::parse(body.0.email.as_str())
        .map_err(|e| errors.push(FieldError::new("email", "invalid_email", e)))
        .ok();
    let role = match body.0.role.as_str() {
        "admin" => Some(Role::Admin),
        "member" => Some(Role::Member),
        _ => {
            errors.push(FieldError::new(
                "role",
                "invalid",
                "role must be admin or member",
            ));
            None
        }
    };
    let (Some(email), Some(role)) = (email, role) else {
        return Err(ApiError::validation(errors));
    };
    let member = state
        .orgs
        .add_member(caller(&auth), org, &email, role)
        .await?;
    Ok(HttpResponse::Created().json(MemberBody {
        user_id: member.membership.user_id.as_uuid(),
        email: member.email.as_str().to_owned(),
        role: member.membership.role.as_str(),
    }))
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
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let org: OrganizationId = path_id(&path)?;
    let items = state
        .orgs
        .members(caller(&auth), org)
        .await?
        .into_iter()
        .map(|m| MemberBody {
            user_id: m.membership.user_id.as_uuid(),
            email: m.email.as_str().to_owned(),
            role: m.membership.role.as_str(),
        })
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
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let org: OrganizationId = path_id(&path.0)?;
    let user: UserId = path_id(&path.1)?;
    state.orgs.remove_member(caller(&auth), org, user).await?;
    Ok(HttpResponse::NoContent().finish())
}
