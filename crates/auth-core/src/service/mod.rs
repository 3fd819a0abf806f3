//! Services: the rules of the domain, applied over the ports.

pub mod account;
pub mod actor;
pub mod administration;
pub mod api_key;
pub mod audit;
pub mod device;
pub mod follow;
pub mod invalidation;
pub mod key_limits;
pub mod key_usage;
pub mod last_seen;
pub mod lifecycle;
pub mod mail;
pub mod mfa;
pub mod organization;
pub mod retention;
