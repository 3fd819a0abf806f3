//! Command line: `serve` (default), `migrate`, `users create`.

use std::io::{BufRead as _, IsTerminal as _};
use std::net::TcpListener;

use auth_core::Registration;
use auth_core::model::{Email, PasswordPolicy};
use clap::{Parser, Subcommand};
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
    /// Settings (environment variables or flags).
    #[command(flatten)]
    pub config: Config,
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
}

/// Runs the command line.
///
/// # Errors
/// [`CliError`] with a message for the operator.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let config = cli.config;
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
            create_user(config, &email, admin).await
        }
    }
}

async fn serve(config: Config) -> Result<(), CliError> {
    // Every setting is checked before the database is touched.
    let store = Store::open(&config)?;
    let state = wiring::app_state(&config, &store)?;
    wiring::migrate_at_start(&config).await?;
    let listener = TcpListener::bind((config.host.as_str(), config.port))?;
    let running = crate::server::start(state, listener, true)?;
    tracing::info!(
        addr = %running.addr,
        store = if matches!(store, Store::Postgres(_)) { "postgres" } else { "memory" },
        docs = %format!("http://{}/docs", running.addr),
        "auth-server listening"
    );
    running.server.await?;
    tracing::info!("auth-server stopped");
    Ok(())
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

async fn create_user(config: Config, email: &str, admin: bool) -> Result<(), CliError> {
    if config.database_url.is_none() {
        return Err(CliError::Input(
            "DATABASE_URL is not set: a user created in the in-memory store would vanish at once"
                .into(),
        ));
    }
    let email = Email::parse(email).map_err(|e| CliError::Input(format!("--email: {e}")))?;
    let policy = PasswordPolicy {
        min_chars: usize::from(config.password_min_length),
        ..PasswordPolicy::default()
    };
    let password = policy
        .new_password(read_password()?.expose_secret())
        .map_err(|e| CliError::Input(format!("password: {e}")))?;
    // No token is issued here, so a missing signing key does not matter: use a random one
    // rather than warn about it.
    let mut config = config;
    if config.jwt_secret_key.is_none() {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| CliError::Input(format!("random source: {e}")))?;
        config.jwt_secret_key = Some(SecretString::from(hex::encode(key)));
    }
    let store = Store::open(&config)?;
    let auth = wiring::auth_service(&config, &store)?;
    wiring::migrate(&config).await?;
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
            auth_core::AuthError::EmailTaken => {
                CliError::Input("a user with this email already exists".into())
            }
            other => CliError::Input(format!("could not create the user: {other}")),
        })?;
    println!(
        "created user {} <{}>{}",
        user.id,
        user.email,
        if admin { " (admin)" } else { "" }
    );
    Ok(())
}
