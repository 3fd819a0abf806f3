//! The audit trail (`/organizations/{org_id}/events`, `/users/me/events`) and the revocation
//! stream (`/revocations/stream`).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use auth_api::{EventList, Problem, Revocation};
use auth_core::model::{Scope, StoredEvent};
use auth_core::{Actor, TrailPage};

use crate::error::{ApiError, BearerErrors, ManagerErrors, StoreErrors};
use crate::extract::{Authenticated, Manager};
use crate::params::{EventsQuery, OrganizationPath};
use crate::present;
use crate::revocations::Subscribed;
use crate::state::AppState;

/// The scope a key needs to follow the revocation stream.
pub const REVOCATIONS_READ: &str = "revocations:read";

fn page(events: Vec<StoredEvent>) -> HttpResponse {
    let next_after = events.last().map(|e| e.seq);
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(EventList {
            items: events.into_iter().map(present::audit_event).collect(),
            next_after,
        })
}

/// The query as a page, read from the request (named in the handlers' signatures for the
/// OpenAPI document).
struct Page(TrailPage);

impl actix_web::FromRequest for Page {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(EventsQuery::parse(req).map(Page))
    }
}

/// An organization's audit trail: who created, rotated and revoked which credential, who
/// joined and left.
#[utoipa::path(
    operation_id = "list_organization_events",
    tag = "events",
    security(("bearer" = []), ("api_key" = [])),
    params(("org_id" = Uuid, Path, description = "Organization id"), EventsQuery),
    responses(
        (status = 200, description = "Events, oldest first", body = EventList),
        (status = 422, description = "`VALIDATION_FAILED`: bad query", body = Problem, content_type = "application/problem+json"),
        ManagerErrors, StoreErrors,
    )
)]
#[get("/organizations/{org_id}/events")]
pub async fn organization_events(
    state: web::Data<AppState>,
    manager: Manager,
    path: OrganizationPath,
    query: Page,
) -> Result<HttpResponse, ApiError> {
    let events = state
        .audit
        .organization_events(&manager.0, path.0, query.0)
        .await?;
    Ok(page(events))
}

/// The events about the caller's own account: sign-ins, failed attempts, ended sessions,
/// changes.
#[utoipa::path(
    operation_id = "list_my_events",
    tag = "events",
    security(("bearer" = [])),
    params(EventsQuery),
    responses(
        (status = 200, description = "Events, oldest first", body = EventList),
        (status = 422, description = "`VALIDATION_FAILED`: bad query", body = Problem, content_type = "application/problem+json"),
        BearerErrors, StoreErrors,
    )
)]
#[get("/users/me/events")]
pub async fn my_events(
    state: web::Data<AppState>,
    caller: Authenticated,
    query: Page,
) -> Result<HttpResponse, ApiError> {
    let events = state.audit.user_events(caller.0.user.id, query.0).await?;
    Ok(page(events))
}

/// Server-sent events: one per revocation (`session.ended`, `api_key.revoked`, ...), ids
/// only, `id:` its position; resume with `Last-Event-ID`. For services that verify tokens or
/// cache key verdicts themselves: apply each to stop accepting what was revoked.
#[utoipa::path(
    operation_id = "revocation_stream",
    tag = "events",
    security(("api_key" = [])),
    params(("Last-Event-ID" = Option<u64>, Header, minimum = 0, description = "The `id` of the last event received: the stream resumes after it, missing nothing")),
    responses(
        (status = 200, description = "`text/event-stream`; each event's `data` is a Revocation", body = Revocation, content_type = "text/event-stream"),
        (status = 400, description = "`MALFORMED_REQUEST`: a `Last-Event-ID` that is not a position", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`RATE_LIMITED`: the key holds `AUTH_STREAM_MAX_PER_KEY` streams on this instance already", body = Problem, content_type = "application/problem+json"),
        ManagerErrors, StoreErrors,
    )
)]
#[get("/revocations/stream")]
pub async fn revocation_stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    manager: Manager,
) -> Result<HttpResponse, ApiError> {
    let Actor::ApiKey(key) = &manager.0 else {
        return Err(ApiError::forbidden_because(
            "the revocation stream is for API keys with the scope revocations:read, sent as \
             X-API-Key",
        ));
    };
    let needed = Scope::parse(REVOCATIONS_READ).map_err(|_| ApiError::not_found())?;
    if !key.scopes.as_slice().contains(&needed) {
        return Err(ApiError::forbidden_because(
            "this API key lacks the scope revocations:read",
        ));
    }
    let last_event_id = match req.headers().get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|id| *id >= 0)
                .ok_or_else(|| {
                    ApiError::malformed("Last-Event-ID must be the id of an event of the stream")
                })?,
        ),
    };
    let body = match state
        .revocations
        .subscribe(key.id, key.organization_id, last_event_id)
        .await?
    {
        Subscribed::Stream(body) => body,
        // Stopping: the client goes to another instance.
        Subscribed::Closing => return Err(ApiError::unavailable()),
        Subscribed::TooMany { limit } => {
            return Err(ApiError::too_many_streams(
                limit,
                state.revocations.heartbeat().as_secs(),
            ));
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        // Not cached, not compressed (which would hold events back), not buffered by a proxy.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(tokio_stream_of(body)))
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<actix_web::web::Bytes, std::convert::Infallible>>,
) -> impl futures::Stream<Item = Result<actix_web::web::Bytes, std::convert::Infallible>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
