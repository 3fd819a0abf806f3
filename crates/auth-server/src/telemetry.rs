//! Logging: `LOG_LEVEL` as an env-filter directive, `LOG_FORMAT` text or JSON; colour only
//! on a terminal, and never with `NO_COLOR` set.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// The Postgres driver logs every statement's parameters at debug level (password hashes,
/// emails). It stays at `info` unless `LOG_LEVEL` names it explicitly.
const QUIET_DRIVER: &str = "tokio_postgres=info";

/// The filter for a `LOG_LEVEL` value (`info` when it does not parse).
#[must_use]
pub fn filter(log_level: &str) -> EnvFilter {
    let directives = if log_level.contains("tokio_postgres") {
        log_level.to_owned()
    } else {
        format!("{log_level},{QUIET_DRIVER}")
    };
    EnvFilter::try_new(directives)
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET_DRIVER}")))
}

/// Whether text log lines carry ANSI colour: only when stderr (where they go) is a terminal
/// and `NO_COLOR` is unset or empty (<https://no-color.org>). A file or a log collector
/// otherwise receives escape codes in every line.
#[must_use]
pub fn colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(config: &Config) {
    let filter = filter(&config.log.level);
    let ansi = colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match config.effective_log_format() {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
