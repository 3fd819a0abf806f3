//! `auth-server`: serve the API, migrate the database, administer users.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = auth_server::cli::Cli::parse_process();
    auth_server::telemetry::init(&cli.config);
    match auth_server::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            let mut message = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            tracing::error!(error = %message, "auth-server failed");
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
