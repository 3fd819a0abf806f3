//! `auth-server`: serve the API, migrate the database, administer users.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = auth_server::cli::Cli::parse();
    auth_server::telemetry::init(&cli.config);
    match auth_server::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "auth-server failed");
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
