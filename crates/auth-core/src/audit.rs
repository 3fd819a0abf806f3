//! The request behind a change: who made it, from which address, in which request.
//!
//! The HTTP layer runs each request inside [`scope`] with a [`RequestContext`] (its id and
//! the client's address) and names the caller with [`set_actor`] once it is authenticated.
//! Every event the log appends inside the scope is stamped with them ([`stamp`], called by
//! each event log's append); an event appended outside any scope (a background worker, the
//! command line, an embedder calling a service directly) is the service's own: `system`.
//!
//! A task-local, not a thread-local: a request's future moves between worker threads at its
//! `.await`s and many requests share a thread. The context lives inside the request's future
//! (no allocation, no lock: naming the caller on the hot verify paths costs a thread-local
//! read and a `Cell` write), and ends with it. A task spawned from a request does not inherit
//! it; one that appends events runs its future in `scope(inherit()?, ...)`. (Hashing on a
//! blocking pool appends nothing, and no other request work is spawned today.)

use std::cell::Cell;
use std::future::Future;
use std::net::IpAddr;

use crate::model::{ApiKeyId, EventActor, NewEvent, UserId};

task_local::task_local! {
    static CONTEXT: RequestContext;
}

/// An authenticated caller, as a request names it (ids only: `Copy`, nothing to allocate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestActor {
    /// A user, through an access token (or the user a login just signed in).
    User(UserId),
    /// An organization's API key, through `X-API-Key`.
    ApiKey(ApiKeyId),
}

impl From<RequestActor> for EventActor {
    fn from(actor: RequestActor) -> Self {
        match actor {
            RequestActor::User(user) => Self::user(user),
            RequestActor::ApiKey(key) => Self::api_key(key),
        }
    }
}

/// What a request tells the events it causes: its id, the client's address, and its caller
/// once authenticated.
#[derive(Debug, Clone)]
pub struct RequestContext {
    request_id: String,
    ip: Option<IpAddr>,
    // Set after the scope began (by an extractor, deep inside the request), read at append.
    actor: Cell<Option<RequestActor>>,
}

impl RequestContext {
    /// The context of request `request_id` from `ip`, whose caller is not known yet.
    #[must_use]
    pub const fn new(request_id: String, ip: Option<IpAddr>) -> Self {
        Self {
            request_id,
            ip,
            actor: Cell::new(None),
        }
    }

    /// The request's id.
    #[must_use]
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The client's address.
    #[must_use]
    pub const fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The authenticated caller, if named yet.
    #[must_use]
    pub fn actor(&self) -> Option<RequestActor> {
        self.actor.get()
    }
}

/// Runs `future` as the request `context` describes: events appended while it runs carry its
/// id, address and caller.
pub fn scope<F: Future>(context: RequestContext, future: F) -> impl Future<Output = F::Output> {
    CONTEXT.scope(context, future)
}

/// Names the authenticated caller of the request being served; events appended after this
/// are theirs. Outside a request it does nothing.
pub fn set_actor(actor: RequestActor) {
    // Outside a scope there is no request to name a caller of: nothing to do.
    let _ = CONTEXT.try_with(|context| context.actor.set(Some(actor)));
}

/// The id of the request being served, if called within one.
#[must_use]
pub fn request_id() -> Option<String> {
    CONTEXT.try_with(|context| context.request_id.clone()).ok()
}

/// A copy of the current request's context (its caller as named so far), for a task spawned
/// from the request that appends events; `None` outside a request.
#[must_use]
pub fn inherit() -> Option<RequestContext> {
    CONTEXT.try_with(Clone::clone).ok()
}

/// Fills in what `event` does not say itself: inside a request, its caller (`anonymous`
/// until one is named), the client's address and the request's id; outside any request,
/// `system` as its actor. What the event already holds is kept (a login names its user).
pub fn stamp(event: &mut NewEvent) {
    let in_request = CONTEXT
        .try_with(|context| {
            if event.actor.is_none() {
                event.actor = Some(
                    context
                        .actor
                        .get()
                        .map_or_else(EventActor::anonymous, EventActor::from),
                );
            }
            if event.ip.is_none() {
                event.ip = context.ip;
            }
            if event.request_id.is_none() {
                event.request_id = Some(context.request_id.clone());
            }
        })
        .is_ok();
    if !in_request && event.actor.is_none() {
        event.actor = Some(EventActor::system());
    }
}

#[cfg(test)]
mod tests {
    use std::task::Poll;

    use chrono::Utc;

    use super::*;
    use crate::model::ActorKind;

    fn event() -> NewEvent {
        NewEvent::password_changed(UserId::generate(), Utc::now())
    }

    fn stamped() -> NewEvent {
        let mut e = event();
        stamp(&mut e);
        e
    }

    #[tokio::test]
    async fn outside_a_request_events_are_the_systems() {
        let e = stamped();
        assert_eq!(e.actor, Some(EventActor::system()));
        assert_eq!((e.ip, e.request_id), (None, None));
        set_actor(RequestActor::User(UserId::generate()));
        assert_eq!(stamped().actor, Some(EventActor::system()));
        assert_eq!(request_id(), None);
        assert!(inherit().is_none());
    }

    #[tokio::test]
    async fn a_request_stamps_its_id_address_and_caller() {
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let user = UserId::generate();
        scope(RequestContext::new("req-1".into(), Some(ip)), async {
            let e = stamped();
            assert_eq!(e.actor, Some(EventActor::anonymous()));
            assert_eq!(e.ip, Some(ip));
            assert_eq!(e.request_id.as_deref(), Some("req-1"));
            tokio::task::yield_now().await;
            set_actor(RequestActor::User(user));
            tokio::task::yield_now().await;
            assert_eq!(stamped().actor, Some(EventActor::user(user)));
            assert_eq!(request_id().as_deref(), Some("req-1"));
            // What the event names itself stays.
            let key = ApiKeyId::generate();
            let mut own = event();
            own.actor = Some(EventActor::api_key(key));
            own.request_id = Some("other".into());
            stamp(&mut own);
            assert_eq!(own.actor.unwrap().kind, ActorKind::ApiKey);
            assert_eq!(own.request_id.as_deref(), Some("other"));
            assert_eq!(inherit().unwrap().actor(), Some(RequestActor::User(user)));
        })
        .await;
        assert_eq!(stamped().actor, Some(EventActor::system()));
    }

    /// Requests interleaved on one thread, each naming its caller between polls, never see
    /// each other's context.
    #[tokio::test]
    async fn interleaved_requests_keep_their_own_context() {
        let requests: Vec<_> = (0..8)
            .map(|i| {
                let user = UserId::generate();
                let context = RequestContext::new(format!("req-{i}"), None);
                (
                    user,
                    Box::pin(scope(context, async move {
                        let mut seen = Vec::new();
                        for step in 0..4 {
                            if step == 1 {
                                set_actor(RequestActor::User(user));
                            }
                            seen.push(stamped());
                            tokio::task::yield_now().await;
                        }
                        seen
                    })),
                )
            })
            .collect();
        let users: Vec<UserId> = requests.iter().map(|(u, _)| *u).collect();
        let mut pending: Vec<_> = requests.into_iter().map(|(_, f)| Some(f)).collect();
        let mut results = vec![None; pending.len()];
        // Poll them round-robin by hand, so every step of one lies between steps of others.
        std::future::poll_fn(|cx| {
            for (i, slot) in pending.iter_mut().enumerate() {
                if let Some(fut) = slot
                    && let Poll::Ready(seen) = fut.as_mut().poll(cx)
                {
                    results[i] = Some(seen);
                    *slot = None;
                }
            }
            if pending.iter().all(Option::is_none) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        for (i, seen) in results.into_iter().enumerate() {
            let seen = seen.unwrap();
            assert_eq!(seen[0].actor, Some(EventActor::anonymous()));
            for e in &seen[1..] {
                assert_eq!(e.actor, Some(EventActor::user(users[i])));
            }
            let want = format!("req-{i}");
            assert!(seen.iter().all(|e| e.request_id.as_deref() == Some(&want)));
        }
    }
}
