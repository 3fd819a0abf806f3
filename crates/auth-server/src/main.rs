//! `auth-server`: serve the API, migrate the database, administer users.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = auth_server::cli::Cli::parse_process();
    auth_server::telemetry::init(&cli.config);
    let json_logs = cli.config.effective_log_format() == auth_server::config::LogFormat::Json;
    match auth_server::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // Once: as a log line where logs are read by machines, as a plain line for a
            // person otherwise (both go to stderr, so printing both showed it twice).
            let message = auth_core::ErrorChain(&err).to_string();
            if json_logs {
                tracing::error!(error = %message, "auth-server failed");
            } else {
                eprintln!("error: {message}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
