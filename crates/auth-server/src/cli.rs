//! Command line: `serve` (default), `migrate`, the admin commands (`users`,
//! `organizations`, `api-keys`, `devices`, `prune`), which work directly against the
//! configured database (`api-keys` and `devices` also through a running service, with
//! `--url`: see `remote`), and `healthcheck`.

use std::io::{BufRead as _, IsTerminal as _};
use std::net::TcpListener;
use std::time::Duration;

use auth_core::Registration;
use auth_core::model::Email;
use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret as _, SecretString};

use crate::config::Config;
use crate::wiring::{self, StartupError, Store};

/// The authentication service.
#[derive(Debug, Parser)]
#[command(name = "auth-server", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Print admin command results as JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Settings (environment variables or flags), by group.
    #[command(flatten)]
    pub config: Config,
}

impl Cli {
    /// Parses `args` (the process's own with [`Cli::parse_process`]) and the environment,
    /// treating a setting whose environment variable is set but empty as not set: templates
    /// (compose files, Helm values) often write `NAME: ""` for "none", and a list such as
    /// `AUTH_TRUSTED_PROXIES` or `CORS_ORIGINS` would otherwise be read as one empty entry.
    ///
    /// # Errors
    /// clap's error for invalid arguments or values (and for `--help` / `--version`).
    pub fn try_parse_with_env<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::FromArgMatches as _;
        let command = without_empty_env(Self::shaped_command());
        Self::from_arg_matches(&command.try_get_matches_from(args)?)
    }

    /// The command line as parsed, with each setting shown in the help of the commands that
    /// use it (see [`shown_settings`]). Every setting is still read by every command, from its
    /// environment variable or its flag, before or after the subcommand's name: only the help
    /// changes.
    #[must_use]
    pub fn shaped_command() -> clap::Command {
        use clap::CommandFactory as _;
        shape_help(Self::command())
    }

    /// [`Cli::try_parse_with_env`] over the process's arguments; prints clap's message and
    /// exits on an error, as `Parser::parse` does.
    #[must_use]
    pub fn parse_process() -> Self {
        Self::try_parse_with_env(std::env::args_os()).unwrap_or_else(|err| err.exit())
    }
}

/// The settings shown in the help of every command that works on the database.
const DATABASE_SETTINGS: &[&str] = &[
    "auth_env",
    "database_url",
    "db_pool_size",
    "db_timeout_ms",
    "log_level",
    "log_format",
];

/// The settings the help of subcommand `name` shows: all of them under `serve`, the few a
/// command reads otherwise. `None`: all.
fn shown_settings(name: &str) -> Option<Vec<&'static str>> {
    let mut shown = DATABASE_SETTINGS.to_vec();
    match name {
        "serve" => return None,
        "users" => shown.extend(["bcrypt_rounds", "password_min_length"]),
        "api-keys" => shown.push("api_key_prefix"),
        "healthcheck" => shown = vec!["host", "port"],
        _ => {}
    }
    Some(shown)
}

/// The top level's settings (global arguments, so that a flag works before or after the
/// subcommand, as it always has) hidden from every help, then a visible copy of each added to
/// the subcommands that use it. clap gives a subcommand's own argument precedence over a
/// global one of the same id, and hands a value to every level whichever level it was given
/// at, so parsing is unchanged.
fn shape_help(mut command: clap::Command) -> clap::Command {
    let settings: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|arg| arg.is_global_set() && arg.get_id() != "json")
        .cloned()
        .collect();
    for arg in &settings {
        command = command.mut_arg(arg.get_id().clone(), |arg| arg.hide(true));
    }
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in subcommands {
        let shown = shown_settings(&name);
        command = command.mut_subcommand(&name, |mut sub| {
            for arg in &settings {
                let id = arg.get_id().as_str();
                if shown.as_ref().is_none_or(|ids| ids.contains(&id)) {
                    sub = sub.arg(arg.clone());
                }
            }
            sub
        });
    }
    command.after_help(
        "Settings come from environment variables (or flags): `auth-server serve --help` \
         lists them all; each other command's --help lists those it reads.",
    )
}

/// `command` and its subcommands with every argument whose environment variable is set but
/// empty no longer reading it.
fn without_empty_env(mut command: clap::Command) -> clap::Command {
    let unset: Vec<clap::Id> = command
        .get_arguments()
        .filter(|arg| {
            arg.get_env()
                .and_then(std::env::var_os)
                .is_some_and(|value| value.is_empty())
        })
        .map(|arg| arg.get_id().clone())
        .collect();
    for id in unset {
        command = command.mut_arg(id, |arg| arg.env(None::<&str>));
    }
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in subcommands {
        command = command.mut_subcommand(name, without_empty_env);
    }
    command
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage organizations.
    #[command(subcommand)]
    Organizations(crate::admin::OrganizationsCommand),
    /// Manage API keys, in the database or, with --url, through a running service.
    #[command(name = "api-keys")]
    ApiKeys {
        /// Where the command runs.
        #[command(flatten)]
        target: Target,
        /// What it does.
        #[command(subcommand)]
        command: crate::admin::ApiKeysCommand,
    },
    /// Manage devices, in the database or, with --url, through a running service.
    Devices {
        /// Where the command runs.
        #[command(flatten)]
        target: Target,
        /// What it does.
        #[command(subcommand)]
        command: crate::admin::DevicesCommand,
    },
    /// Read the audit trail.
    #[command(subcommand)]
    Events(crate::admin::EventsCommand),
    /// Run one retention pass against the database and print what it deleted (skipped, with
    /// status 0, while another instance runs one).
    Prune,
    /// Exit with status 0 when a running service answers ready (`GET /health/ready` 200),
    /// 1 otherwise: the container image's HEALTHCHECK, which has no curl.
    Healthcheck {
        /// The service [default: http://127.0.0.1:$PORT, or HOST when it names one address]
        #[arg(long, env = "AUTH_URL", value_name = "URL")]
        url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
        timeout: u64,
    },
}

/// Where the `api-keys` and `devices` commands run: against the database (`DATABASE_URL`) by
/// default, or through a running service's API.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Remote")]
pub struct Target {
    /// Run against the service at URL (such as http://auth.internal:8000) through its API
    /// instead of the database, as the organization API key in the environment variable
    /// AUTH_API_KEY (never a flag), which must hold the `admin` scope. Commands then act on
    /// that key's organization only.
    #[arg(long, env = "AUTH_URL", value_name = "URL", global = true)]
    pub url: Option<String>,
}

/// `users` subcommands.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user. The password is read from standard input (first line) when it is not
    /// a terminal, or asked for at a prompt; never from the command line.
    Create {
        /// Email address.
        #[arg(long)]
        email: String,
        /// Make the user a service administrator.
        #[arg(long)]
        admin: bool,
    },
    /// Import users with existing bcrypt hashes from a JSON-lines file, one object a line:
    /// `{"email": "...", "password_hash": "$2b$...", "display_name"?: "...",
    /// "is_admin"?: false, "created_at"?: "RFC 3339"}`. Users already present (by email)
    /// are skipped, so an interrupted import can simply be run again.
    Import {
        /// The file.
        file: std::path::PathBuf,
    },
    /// Delete an account: its sessions end on every instance, its memberships go, the row
    /// goes (the event log keeps its id only). Refused while it is the only owner of an
    /// organization.
    Delete {
        /// Email address.
        email: String,
    },
    /// Remove a user's second factor (TOTP and recovery codes), for a user who lost both:
    /// the next login needs the password only. Recorded as `user.mfa_disabled`.
    #[command(name = "reset-mfa")]
    ResetMfa {
        /// Email address.
        email: String,
    },
    /// Mark a user's address verified without the mailed link (for an address the operator
    /// has confirmed otherwise). Recorded as `user.email_verified`.
    #[command(name = "verify-email")]
    VerifyEmail {
        /// Email address.
        email: String,
    },
    /// List accounts in creation order (the API's `GET /admin/users`).
    List {
        /// Only addresses containing this (case-insensitive).
        #[arg(long)]
        email: Option<String>,
        /// The last id of the previous page.
        #[arg(long)]
        after: Option<uuid::Uuid>,
        /// Page size (1..=500).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=500))]
        limit: u16,
    },
    /// Show one account with its organizations (the API's `GET /admin/users/{id}`).
    Info {
        /// Email address.
        email: String,
    },
    /// Grant (`--on`) or revoke (`--off`) service administration; the last enabled
    /// administrator keeps it.
    #[command(name = "set-admin")]
    SetAdmin {
        /// Email address.
        email: String,
        /// Grant.
        #[arg(long, conflicts_with = "off", required_unless_present = "off")]
        on: bool,
        /// Revoke.
        #[arg(long)]
        off: bool,
    },
    /// Clear the lockout of an address.
    Unlock {
        /// Email address.
        email: String,
    },
    /// Disable an account: it cannot log in, and every session ends on every instance.
    Disable {
        /// Email address.
        email: String,
    },
    /// Enable a disabled account.
    Enable {
        /// Email address.
        email: String,
    },
    /// Set an account's password (read from standard input, or asked for at a prompt); every
    /// session of the account ends.
    #[command(name = "set-password")]
    SetPassword {
        /// Email address.
        email: String,
    },
}

/// A command failed; the message is for the operator.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Startup failed.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// Input was unusable.
    #[error("{0}")]
    Input(String),
    /// I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A domain operation failed.
    #[error("{0}")]
    Failed(String),
}

/// Runs the command line.
///
/// # Errors
/// [`CliError`] with a message for the operator.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let config = cli.config;
    let json = cli.json;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let applied = wiring::migrate(&config).await?;
            if applied.is_empty() {
                println!("schema is current; no migration applied");
            } else {
                for version in applied {
                    println!("applied {version}");
                }
            }
            Ok(())
        }
        Command::Users(UsersCommand::Create { email, admin }) => {
            create_user(config, &email, admin, json).await
        }
        Command::Users(UsersCommand::Import { file }) => {
            crate::admin::import_users(config, &file, json).await
        }
        Command::Users(UsersCommand::Delete { email }) => {
            crate::admin::delete_user(config, &email, json).await
        }
        Command::Users(UsersCommand::ResetMfa { email }) => {
            crate::admin::reset_mfa(config, &email, json).await
        }
        Command::Users(UsersCommand::VerifyEmail { email }) => {
            crate::admin::verify_email(config, &email, json).await
        }
        Command::Users(UsersCommand::List {
            email,
            after,
            limit,
        }) => crate::admin::list_users(config, email, after, limit.into(), json).await,
        Command::Users(UsersCommand::Info { email }) => {
            crate::admin::user_info(config, &email, json).await
        }
        Command::Users(UsersCommand::SetAdmin { email, on, .. }) => {
            let change = auth_core::service::administration::AccountChange {
                is_admin: Some(on),
                ..Default::default()
            };
            crate::admin::change_user(config, &email, change, json).await
        }
        Command::Users(UsersCommand::Disable { email }) => {
            let change = auth_core::service::administration::AccountChange {
                disabled: Some(true),
                ..Default::default()
            };
            crate::admin::change_user(config, &email, change, json).await
        }
        Command::Users(UsersCommand::Enable { email }) => {
            let change = auth_core::service::administration::AccountChange {
                disabled: Some(false),
                ..Default::default()
            };
            crate::admin::change_user(config, &email, change, json).await
        }
        Command::Users(UsersCommand::Unlock { email }) => {
            crate::admin::unlock_user(config, &email, json).await
        }
        Command::Users(UsersCommand::SetPassword { email }) => {
            let password = read_password()?;
            crate::admin::set_password(config, &email, &password, json).await
        }
        Command::Organizations(cmd) => crate::admin::organizations(config, cmd, json).await,
        Command::ApiKeys { target, command } => match target.url {
            Some(url) => {
                let remote = crate::remote::Remote::connect(&url)?;
                crate::remote::api_keys(&remote, command, json).await
            }
            None => crate::admin::api_keys(config, command, json).await,
        },
        Command::Devices { target, command } => match target.url {
            Some(url) => {
                let remote = crate::remote::Remote::connect(&url)?;
                crate::remote::devices(&remote, command, json).await
            }
            None => crate::admin::devices(config, command, json).await,
        },
        Command::Events(cmd) => crate::admin::events(config, cmd, json).await,
        Command::Prune => crate::admin::prune(config, json).await,
        Command::Healthcheck { url, timeout } => {
            let url = url.unwrap_or_else(|| local_url(&config));
            crate::remote::healthcheck(&url, Duration::from_secs(timeout)).await
        }
    }
}

async fn serve(config: Config) -> Result<(), CliError> {
    // Every setting is checked before the database is touched.
    let store = Store::open(&config)?;
    let state = wiring::app_state(&config, &store)?;
    let outbox_worker = wiring::outbox_worker(&config, &store)?;
    // The port before the database: a taken port is reported at once, not after the
    // database has been waited for.
    let listener = listen(&config.http.host, config.http.port)?;
    if let Store::Postgres { .. } = store {
        tracing::info!(
            "readiness (GET /health/ready) answers 503 until the database answers and its \
             schema is current; liveness (GET /health/live) answers 200 meanwhile"
        );
    }
    wiring::migrate_at_start(&config).await?;
    let flusher = wiring::spawn_maintenance(&state);
    // A mail being sent when this stops stays in the outbox and goes again (at least once).
    let mailing = wiring::spawn_mail_worker(outbox_worker, state.auth.clone());
    let pruning = wiring::spawn_pruning(
        wiring::retention(&config, &store),
        config.retention.prune_interval(),
    );
    let (keys, devices) = (state.keys.clone(), state.devices.clone());
    let hub = state.revocations.clone();
    // Signals are handled here rather than by actix: the revocation streams, which never end
    // by themselves, are ended first, so that the graceful stop waits only for requests.
    let running = crate::server::start(state, listener, false)?;
    let handle = running.handle.clone();
    let stopping = tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("stopping: ending revocation streams, then finishing requests");
        hub.close();
        handle.stop(true).await;
    });
    tracing::info!(
        addr = %running.addr,
        store = store.kind(),
        docs = %format!("http://{}/docs", running.addr),
        "auth-server listening"
    );
    running.server.await?;
    stopping.abort();
    flusher.abort();
    mailing.abort();
    // A pass cut short here closes its connection, which gives its lock back.
    pruning.abort();
    if let Err(err) = keys.flush_usage().await {
        tracing::warn!(error = %err, "API key usage not written at shutdown");
    }
    if let Err(err) = devices.flush_seen().await {
        tracing::warn!(error = %err, "device authentications not written at shutdown");
    }
    tracing::info!("auth-server stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (SIGINT only where there is no SIGTERM).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "SIGTERM cannot be handled; stopping on SIGINT only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Binds `HOST`:`PORT`, or says which address could not be had and which settings choose it.
fn listen(host: &str, port: u16) -> Result<TcpListener, CliError> {
    TcpListener::bind((host, port)).map_err(|err| {
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let hint = if err.kind() == std::io::ErrorKind::AddrInUse {
            "another process listens there; stop it or choose another port with PORT (--port)"
        } else {
            "check HOST (--host) and PORT (--port)"
        };
        CliError::Failed(format!("cannot listen on {address}: {err}; {hint}"))
    })
}

fn read_password() -> Result<SecretString, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Repeat password: ")?;
        if first != second {
            return Err(CliError::Input("passwords do not match".into()));
        }
        Ok(SecretString::from(first))
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        Ok(SecretString::from(
            line.trim_end_matches(['\r', '\n']).to_owned(),
        ))
    }
}

async fn create_user(config: Config, email: &str, admin: bool, json: bool) -> Result<(), CliError> {
    let email = Email::parse(email).map_err(|e| CliError::Input(format!("--email: {e}")))?;
    let password = config
        .passwords
        .policy()
        .new_password(read_password()?.expose_secret())
        .map_err(|e| CliError::Input(format!("password: {e}")))?;
    let auth = crate::admin::open(config).await?.auth;
    let user = auth
        .register(
            Registration {
                email,
                password,
                display_name: None,
            },
            admin,
        )
        .await
        .map_err(|e| match e {
            auth_core::AccountError::EmailTaken => {
                CliError::Input("a user with this email already exists".into())
            }
            other => CliError::Input(format!("could not create the user: {other}")),
        })?;
    if json {
        #[derive(serde::Serialize)]
        struct Created<'a> {
            id: uuid::Uuid,
            email: &'a str,
            display_name: Option<&'a str>,
            is_admin: bool,
            created_at: chrono::DateTime<chrono::Utc>,
        }
        return crate::output::print_json(&Created {
            id: user.id.as_uuid(),
            email: user.email.as_str(),
            display_name: user.display_name.as_ref().map(|n| n.as_str()),
            is_admin: user.is_admin,
            created_at: user.created_at,
        });
    }
    println!(
        "created user {} <{}>{}",
        user.id,
        user.email,
        if admin { " (admin)" } else { "" }
    );
    Ok(())
}

/// The service this host runs, for `healthcheck`: `HOST` and `PORT`, with a wildcard `HOST`
/// (`0.0.0.0`, `::`) reached over the loopback address.
fn local_url(config: &Config) -> String {
    let host = match config.http.host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() && ip.is_ipv6() => "[::1]".to_owned(),
        Ok(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
        Ok(std::net::IpAddr::V4(ip)) => ip.to_string(),
        Err(_) => config.http.host.clone(),
    };
    format!("http://{host}:{}", config.http.port)
}
