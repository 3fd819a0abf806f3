//! Path and query extractors, beside [`ValidJson`](crate::json::ValidJson) for bodies: a
//! handler names the ids it needs, already parsed. A path id that is not well-formed is a
//! 404, like an unknown one; a bad query is a 422.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use auth_core::model::{
    ApiKeyId, DeviceId, ExternalId, OrganizationId, USAGE_RETENTION_DAYS, UsageGranularity, UserId,
    hour_of,
};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, FieldError};

/// The path segment `name`, parsed; 404 when absent or malformed.
fn segment<T: std::str::FromStr>(req: &HttpRequest, name: &str) -> Result<T, ApiError> {
    req.match_info()
        .get(name)
        .and_then(|raw| raw.parse().ok())
        .ok_or_else(ApiError::not_found)
}

/// Implements `FromRequest` for an extractor that needs only the request head.
macro_rules! sync_extractor {
    ($ty:ty, $parse:expr) => {
        impl FromRequest for $ty {
            type Error = ApiError;
            type Future = Ready<Result<Self, ApiError>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                ready($parse(req))
            }
        }
    };
}

/// `{id}` of `/api-keys/{id}*`.
#[derive(Debug, Clone, Copy)]
pub struct KeyPath(pub ApiKeyId);
sync_extractor!(KeyPath, |req| segment(req, "id").map(KeyPath));

/// `{org_id}` of `/organizations/{org_id}*`.
#[derive(Debug, Clone, Copy)]
pub struct OrganizationPath(pub OrganizationId);
sync_extractor!(OrganizationPath, |req| segment(req, "org_id")
    .map(OrganizationPath));

/// `{org_id}` and `{user_id}` of `/organizations/{org_id}/members/{user_id}`.
#[derive(Debug, Clone, Copy)]
pub struct MemberPath(pub OrganizationId, pub UserId);
sync_extractor!(MemberPath, |req| Ok::<_, ApiError>(MemberPath(
    segment(req, "org_id")?,
    segment(req, "user_id")?
)));

/// `{device_id}` of `/devices/{device_id}*`.
#[derive(Debug, Clone)]
pub struct DevicePath(pub DeviceId);
sync_extractor!(DevicePath, |req: &HttpRequest| req
    .match_info()
    .get("device_id")
    .and_then(|raw| DeviceId::parse(raw).ok())
    .map(DevicePath)
    .ok_or_else(ApiError::not_found));

/// `{id}` of `/admin/users/{id}*`.
#[derive(Debug, Clone, Copy)]
pub struct UserPath(pub UserId);
sync_extractor!(UserPath, |req| segment(req, "id").map(UserPath));

/// The query of `GET /admin/users`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// A part of the address to look for (case-insensitive).
    #[param(max_length = 254)]
    pub email: Option<String>,
    /// The `next_after` of the previous page.
    pub after: Option<uuid::Uuid>,
    /// Page size, 1..=500 (100 by default).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

impl UserListQuery {
    /// The listing's query.
    ///
    /// # Errors
    /// 422 naming `limit` when it is out of range, or the query when it has the wrong shape.
    pub fn parse(req: &HttpRequest) -> Result<auth_core::ports::UserQuery, ApiError> {
        let raw: Self = query(req)?;
        let limit = raw.limit.unwrap_or(100);
        if !(1..=auth_core::service::administration::MAX_PAGE).contains(&limit) {
            return Err(ApiError::invalid_query(vec![FieldError::new(
                "limit",
                "out_of_range",
                "limit must be between 1 and 500",
            )]));
        }
        Ok(auth_core::ports::UserQuery {
            email: raw.email,
            after: raw.after.map(UserId::from_uuid),
            limit,
        })
    }
}

/// Parses a query string into `T`; a shape error is a 422.
fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|_| {
            // The deserializer's message is serde text: keep it out of the body.
            ApiError::invalid_query(vec![FieldError::new(
                "query",
                "invalid",
                "the query parameters are not valid",
            )])
        })
}

/// The `organization_id` a listing needs: missing is a 422, malformed or unknown a 404.
fn required_organization(raw: Option<&str>) -> Result<OrganizationId, ApiError> {
    let raw = raw.ok_or_else(|| {
        ApiError::invalid_query(vec![FieldError::new(
            "organization_id",
            "required",
            "organization_id is required",
        )])
    })?;
    raw.parse().map_err(|_| ApiError::not_found())
}

/// `GET /api-keys/{id}/usage` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyUsageParams {
    /// The first hour counted (RFC 3339, included; its hour counts whole): 24 hours before
    /// `to` by default.
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    pub from: Option<String>,
    /// The end (RFC 3339, excluded): now by default. At most 90 days after `from`.
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    pub to: Option<String>,
    /// `hour` (default) or `day` (UTC days, each the sum of its hours).
    #[param(value_type = Option<auth_api::UsageGranularity>)]
    pub granularity: Option<String>,
}

/// The parsed `GET /api-keys/{id}/usage` query.
#[derive(Debug, Clone, Copy)]
pub struct KeyUsageQuery {
    /// From (the start of its hour).
    pub from: DateTime<Utc>,
    /// To (excluded).
    pub to: DateTime<Utc>,
    /// Hours or days.
    pub granularity: UsageGranularity,
}

impl KeyUsageParams {
    /// The query at `now`, naming every broken parameter at once.
    ///
    /// # Errors
    /// 422 naming `from`, `to` or `granularity`.
    pub fn parse(req: &HttpRequest, now: DateTime<Utc>) -> Result<KeyUsageQuery, ApiError> {
        let raw: Self = query(req)?;
        let mut errors = Vec::new();
        // Absent or broken: `None` (a broken one is noted, and the query refused).
        // A `+` of an offset sent unencoded arrives as a space: read it as the `+` it was.
        let mut time = |field: &str, raw: Option<&str>| {
            let raw = raw?;
            DateTime::parse_from_rfc3339(raw)
                .or_else(|e| {
                    if raw.contains(' ') {
                        DateTime::parse_from_rfc3339(&raw.replace(' ', "+"))
                    } else {
                        Err(e)
                    }
                })
                .map(|at| at.with_timezone(&Utc))
                .map_err(|_| {
                    errors.push(FieldError::new(
                        field,
                        "invalid",
                        format!("{field} must be an RFC 3339 time"),
                    ));
                })
                .ok()
        };
        let to = time("to", raw.to.as_deref()).unwrap_or(now);
        let from = time("from", raw.from.as_deref()).unwrap_or(to - Duration::hours(24));
        let granularity = match raw.granularity.as_deref() {
            None | Some("hour") => UsageGranularity::Hour,
            Some("day") => UsageGranularity::Day,
            Some(_) => {
                errors.push(FieldError::new(
                    "granularity",
                    "invalid",
                    "granularity must be hour or day",
                ));
                UsageGranularity::Hour
            }
        };
        let from = hour_of(from);
        if errors.is_empty() {
            if from >= to {
                errors.push(FieldError::new(
                    "from",
                    "out_of_range",
                    "from must be before to",
                ));
            } else if to - from > Duration::days(USAGE_RETENTION_DAYS) {
                errors.push(FieldError::new(
                    "to",
                    "out_of_range",
                    format!("to must be at most {USAGE_RETENTION_DAYS} days after from"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(KeyUsageQuery {
                from,
                to,
                granularity,
            })
        } else {
            Err(ApiError::invalid_query(errors))
        }
    }
}

/// `GET /api-keys` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListKeysQuery {
    /// The organization (required: without it the answer is a 422 naming it).
    #[param(required = true)]
    pub organization_id: Option<String>,
    /// Include revoked keys (`true`/`false`, default false).
    pub include_revoked: Option<String>,
    /// Only the keys issued for this external id (compared byte-exact).
    #[param(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub external_id: Option<String>,
}

/// The parsed `GET /api-keys` query.
#[derive(Debug, Clone)]
pub struct KeysQuery {
    /// The organization.
    pub organization: OrganizationId,
    /// Whether revoked keys are listed too.
    pub include_revoked: bool,
    /// Only the keys of this external id.
    pub external_id: Option<ExternalId>,
}

impl KeysQuery {
    fn from_request(req: &HttpRequest) -> Result<Self, ApiError> {
        let raw: ListKeysQuery = query(req)?;
        let organization = required_organization(raw.organization_id.as_deref())?;
        let include_revoked = match raw.include_revoked.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(ApiError::invalid_query(vec![FieldError::new(
                    "include_revoked",
                    "invalid_type",
                    "include_revoked must be true or false",
                )]));
            }
        };
        let external_id = raw
            .external_id
            .as_deref()
            .map(ExternalId::parse)
            .transpose()
            .map_err(|e| {
                ApiError::invalid_query(vec![FieldError::new("external_id", e.code(), e)])
            })?;
        Ok(Self {
            organization,
            include_revoked,
            external_id,
        })
    }
}
sync_extractor!(KeysQuery, KeysQuery::from_request);

/// `GET /devices` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListDevicesQuery {
    /// The organization (required: without it the answer is a 422 naming it).
    #[param(required = true)]
    pub organization_id: Option<String>,
}

/// The parsed `GET /devices` query.
#[derive(Debug, Clone, Copy)]
pub struct DevicesQuery {
    /// The organization.
    pub organization: OrganizationId,
}

impl DevicesQuery {
    fn from_request(req: &HttpRequest) -> Result<Self, ApiError> {
        let raw: ListDevicesQuery = query(req)?;
        let organization = required_organization(raw.organization_id.as_deref())?;
        Ok(Self { organization })
    }
}
sync_extractor!(DevicesQuery, DevicesQuery::from_request);

/// The query of `GET /organizations/{org_id}/events` and `GET /users/me/events`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events after this position (the `next_after` of the previous page); 0 by default.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub after: Option<String>,
    /// Page size, 1..=500 (100 by default).
    #[param(value_type = Option<u16>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// Only this action (for example `api_key.revoked`).
    #[param(schema_with = event_action_schema)]
    pub action: Option<String>,
}

/// The catalogue's actions, as the schema of the `action` parameter.
fn event_action_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(
            auth_core::model::EventAction::ALL
                .iter()
                .map(|a| a.as_str()),
        ))
        .build()
}

impl EventsQuery {
    /// The page asked for; every broken parameter is named at once.
    ///
    /// # Errors
    /// 422 naming `after`, `limit` or `action`.
    pub fn parse(req: &HttpRequest) -> Result<auth_core::TrailPage, ApiError> {
        use auth_core::service::audit::{DEFAULT_PAGE, MAX_PAGE};
        let raw: Self = query(req)?;
        let mut errors = Vec::new();
        let after = match raw.after.as_deref().map(str::parse::<i64>) {
            None => 0,
            Some(Ok(after)) if after >= 0 => after,
            Some(_) => {
                errors.push(FieldError::new(
                    "after",
                    "invalid",
                    "after must be a position (an integer, 0 or more)",
                ));
                0
            }
        };
        let limit = match raw.limit.as_deref().map(str::parse::<usize>) {
            None => DEFAULT_PAGE,
            Some(Ok(limit)) if (1..=MAX_PAGE).contains(&limit) => limit,
            Some(_) => {
                errors.push(FieldError::new(
                    "limit",
                    "out_of_range",
                    "limit must be between 1 and 500",
                ));
                DEFAULT_PAGE
            }
        };
        let action = match raw.action.as_deref() {
            None | Some("") => None,
            Some(name) => match auth_core::model::EventAction::parse(name) {
                Some(action) => Some(action),
                None => {
                    errors.push(FieldError::new(
                        "action",
                        "unknown",
                        "action must be one of the event catalogue's names, such as \
                         api_key.revoked",
                    ));
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(ApiError::invalid_query(errors));
        }
        Ok(auth_core::TrailPage {
            after,
            limit,
            action,
        })
    }
}
