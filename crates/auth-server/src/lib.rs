//! The `auth-server` binary's library: configuration, wiring, the HTTP server and the admin
//! commands. Tests start the same server the binary does.

pub mod admin;
pub mod cli;
pub mod config;
pub mod output;
pub mod remote;
pub mod server;
pub mod telemetry;
pub mod wiring;
