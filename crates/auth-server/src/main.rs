//! `auth-server`: serve the API, migrate the database, administer users.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = auth_server::cli::Cli::parse_process();
    auth_server::telemetry::init(&cli.config);
    match auth_server::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            let message = auth_core::ErrorChain(&err).to_string();
            tracing::error!(error = %message, "auth-server failed");
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
