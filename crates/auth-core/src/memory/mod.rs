//! In-memory adapters for every storage port, and a clock tests can move.
//!
//! These are a supported product, not scaffolding: they pass the same contract suite
//! ([`crate::contract`]) as the Postgres adapters, so an embedder or an integration test can
//! run the whole service without a database. State lives in the process and is lost with it.

mod api_key;
mod cache;
mod clock;
mod device;
mod event_log;
mod login_attempt;
mod organization;
mod prune;
mod session;
mod user;

pub use api_key::MemoryApiKeyRepository;
pub use cache::NoCache;
pub use clock::ManualClock;
pub use device::MemoryDeviceRepository;
pub use event_log::MemoryEventLog;
pub use login_attempt::MemoryLoginAttemptStore;
pub use organization::MemoryOrganizationRepository;
pub use prune::MemoryPruner;
pub use session::MemorySessionRepository;
pub use user::MemoryUserRepository;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every critical
/// section here leaves the state consistent before anything can panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
