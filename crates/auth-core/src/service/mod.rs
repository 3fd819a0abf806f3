//! Services: the rules of the domain, applied over the ports.

pub mod auth;
