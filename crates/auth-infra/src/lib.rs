//! Adapters for the ports of `auth-core`.
//!
//! - [`password`]: bcrypt on a blocking pool sized to the cores, with a versioned SHA-256
//!   pre-hash so no byte of a long password is ignored;
//! - [`jwt`]: jsonwebtoken signer/verifier with the algorithm, claims and header rules pinned;
//! - [`postgres`] (feature `postgres`): Diesel + diesel-async + deadpool repositories and the
//!   embedded migrations.
//!
//! The hasher and signer need no running infrastructure: embedders may take this crate with
//! `default-features = false` and pair them with the in-memory stores of `auth-core`.

pub mod cache;
pub mod data_key;
pub mod jwt;
pub mod mail;
pub mod password;

#[cfg(feature = "postgres")]
pub mod postgres;

#[cfg(feature = "test-support")]
pub mod test_support;
