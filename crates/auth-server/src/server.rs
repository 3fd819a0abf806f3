//! Starting and stopping the HTTP server.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::HttpServer;
use actix_web::dev::{Server, ServerHandle};
use auth_http::AppState;

/// A server bound to its address and running.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Stops it (gracefully with `stop(true)`).
    pub handle: ServerHandle,
    /// Resolves when the server has stopped.
    pub server: Server,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Binds `listener` and serves the application on it. Signals (SIGTERM, SIGINT) stop the
/// server gracefully unless `signals` is false (tests stop it through the handle).
///
/// # Errors
/// When the listener cannot be used.
pub fn start(state: AppState, listener: TcpListener, signals: bool) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
    // The factory runs once on each worker thread: each gets a share of the database pool.
    let mut server = HttpServer::new(move || {
        auth_infra::postgres::mark_request_thread();
        auth_http::app(state.clone())
    })
    .listen(listener)?
    .shutdown_timeout(10)
    .client_request_timeout(Duration::from_secs(10));
    if !signals {
        server = server.disable_signals();
    }
    let server = server.run();
    Ok(Running {
        addr,
        handle: server.handle(),
        server,
    })
}
