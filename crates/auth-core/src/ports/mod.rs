//! Ports: one trait per concern, each documented with what an implementation MUST do.
//!
//! Storage ports are async (`async_trait`, so futures are `Send` and the traits are
//! object-safe: services hold `Arc<dyn Port>`). Computation ports that finish in
//! microseconds ([`TokenSigner`], [`Clock`], [`SecretGenerator`]) are plain functions.

mod account;
mod administration;
mod api_key;
mod cache;
mod clock;
mod device;
mod error;
mod event_log;
mod invalidation;
mod login_attempt;
mod mailer;
mod mfa;
mod one_time_token;
mod organization;
mod outbox;
mod password_hasher;
mod retention;
mod secret;
mod session;
mod token_signer;
mod user;

pub use account::{AccountRemover, DeleteAccountError};
pub use administration::{AdminChange, UserAdministration, UserListing, UserQuery};
pub use api_key::{ApiKeyRepository, Lease, LeaseRequest, RevokeApiKeyError, UpdateApiKeyError};
pub use cache::{BatchLoader, Loader, Matcher, VerificationCache};
pub use clock::Clock;
pub use device::{ChangeDeviceError, DeviceRepository, RegisterDeviceError};
pub use error::{BoxError, ErrorChain, StoreError};
pub use event_log::{EventLog, EventQuery, EventScope, LogBounds};
pub use invalidation::{Handlers, Invalidation, InvalidationBus, InvalidationHandler};
pub use login_attempt::{Admission, AttemptState, LockoutPolicy, LoginAttemptStore};
pub use mailer::{MailError, Mailer};
pub use mfa::{DataCipher, MfaRepository};
pub use one_time_token::{AddressConfirmation, AddressIssue, OneTimeTokenStore, PasswordResetDone};
pub use organization::{AddMemberError, OrganizationRepository, RemoveMemberError};
pub use outbox::MailOutbox;
pub use password_hasher::{HashError, PasswordCheck, PasswordHasher};
pub use retention::{
    PruneError, PruneReport, PrunedRows, Pruner, RESET_REQUEST_RETENTION, RetentionPolicy,
};
pub use secret::{SecretError, SecretGenerator};
pub use session::{Rotation, SessionRepository};
pub use token_signer::{SignError, TokenSigner};
pub use user::{CreateUserError, PasswordUpdate, UserRepository};
