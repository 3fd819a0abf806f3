//! In-memory adapters for every storage port, a clock tests can move, and fake hashing and
//! signing.
//!
//! The storage adapters are a supported product, not scaffolding: they pass the same contract
//! suite ([`crate::contract`]) as the Postgres adapters, so an embedder or an integration test
//! can run the whole service without a database. State lives in the process and is lost with
//! it.
//!
//! [`FakeHasher`] and [`FakeSigner`] are different: they are for tests (this crate's, and an
//! embedder's), cheap and deterministic, keeping only the behaviour the rules depend on. They
//! are not secure and must never hash a real password or sign a token anyone relies on; use
//! the bcrypt hasher and JWT signer of `auth-infra` (or adapters of the same grade) for that.

mod account;
mod administration;
mod api_key;
mod cache;
mod clock;
mod device;
mod event_log;
mod hasher;
mod login_attempt;
mod mail;
mod mfa;
mod one_time_token;
mod organization;
mod prune;
mod session;
mod signer;
mod store;
mod user;

pub use account::MemoryAccountRemover;
pub use administration::MemoryUserAdministration;
pub use api_key::MemoryApiKeyRepository;
pub use cache::NoCache;
pub use clock::ManualClock;
pub use device::MemoryDeviceRepository;
pub use event_log::MemoryEventLog;
pub use hasher::FakeHasher;
pub use login_attempt::MemoryLoginAttemptStore;
pub use mail::{MailerAnswer, MemoryMailOutbox, RecordingMailer};
pub use mfa::{FakeCipher, MemoryMfaRepository};
pub use one_time_token::MemoryOneTimeTokenStore;
pub use organization::MemoryOrganizationRepository;
pub use prune::MemoryPruner;
pub use session::MemorySessionRepository;
pub use signer::FakeSigner;
pub use store::MemoryStore;
pub use user::MemoryUserRepository;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every critical
/// section here leaves the state consistent before anything can panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
