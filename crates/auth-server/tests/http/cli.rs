//! The command line as an operator meets it: each command's help lists the settings it reads
//! (all of them under `serve` only), an error is printed once, logs carry no colour codes
//! unless written to a terminal, and a database command without `DATABASE_URL` says what to
//! do.

use std::process::{Command, Output, Stdio};

use auth_server::cli::{Cli, Command as Sub};

/// The binary with none of the settings of this machine's environment that matter here.
fn binary(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auth-server"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("AUTH_URL")
        .env_remove("AUTH_API_KEY")
        .env_remove("NO_COLOR")
        .env_remove("LOG_FORMAT")
        .env_remove("AUTH_ENV")
        .env("LOG_LEVEL", "info")
        .env("AUTH_MAIL_DIR", std::env::temp_dir())
        .stdin(Stdio::null());
    cmd
}

fn run(args: &[&str]) -> Output {
    binary(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn help(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--help");
    let out = run(&all);
    assert!(out.status.success(), "{all:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn each_help_lists_the_settings_its_command_reads() {
    let serve = help(&["serve"]);
    for setting in [
        "JWT_SECRET_KEY",
        "CORS_ORIGINS",
        "SMTP_URL",
        "DATABASE_URL",
        "PORT",
    ] {
        assert!(serve.contains(setting), "serve --help lacks {setting}");
    }
    let top = help(&[]);
    assert!(top.lines().count() < 40, "auth-server --help:\n{top}");
    assert!(!top.contains("JWT_SECRET_KEY"), "{top}");
    assert!(top.contains("serve --help"), "{top}");
    for command in [
        &["migrate"][..],
        &["users", "create"],
        &["organizations", "create"],
        &["api-keys", "list"],
        &["devices", "register"],
        &["prune"],
    ] {
        let text = help(command);
        assert!(
            text.lines().count() < 100,
            "{command:?} --help has {} lines:\n{text}",
            text.lines().count()
        );
        assert!(text.contains("DATABASE_URL"), "{command:?}: {text}");
        for other in [
            "JWT_SECRET_KEY",
            "CORS_ORIGINS",
            "SMTP_URL",
            "AUTH_LOCKOUT_THRESHOLD",
        ] {
            assert!(!text.contains(other), "{command:?} --help lists {other}");
        }
    }
    assert!(help(&["users", "create"]).contains("BCRYPT_ROUNDS"));
    assert!(help(&["api-keys", "create"]).contains("AUTH_API_KEY_PREFIX"));
    let health = help(&["healthcheck"]);
    assert!(
        health.contains("PORT") && !health.contains("DATABASE_URL"),
        "{health}"
    );
}

#[test]
fn hidden_settings_still_parse_before_or_after_the_subcommand() {
    let parsed = Cli::try_parse_with_env([
        "auth-server",
        "--port",
        "9001",
        "users",
        "create",
        "--email",
        "a@example.com",
        "--lockout-threshold",
        "7",
    ])
    .unwrap();
    assert_eq!(parsed.config.http.port, 9001);
    assert_eq!(parsed.config.lockout.threshold, 7);
    assert!(matches!(parsed.command, Some(Sub::Users(_))));
    let serve = Cli::try_parse_with_env(["auth-server", "serve", "--port", "9002"]).unwrap();
    assert_eq!(serve.config.http.port, 9002);
    let default = Cli::try_parse_with_env(["auth-server", "--port", "9003"]).unwrap();
    assert_eq!(default.config.http.port, 9003);
    assert!(default.command.is_none());
}

#[test]
fn an_error_is_printed_once() {
    let out = run(&["migrate"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.matches("DATABASE_URL is not set").count(),
        1,
        "{stderr}"
    );
    // In production the error is one JSON log line, and nothing else.
    let mut cmd = binary(&["migrate"]);
    cmd.env("LOG_FORMAT", "json");
    let out = cmd.output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.matches("DATABASE_URL is not set").count(),
        1,
        "{stderr}"
    );
    let line: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
    assert_eq!(line["level"], "ERROR");
}

#[test]
fn a_database_command_without_database_url_says_what_to_do() {
    for command in [
        &["migrate"][..],
        &[
            "organizations",
            "create",
            "--name",
            "A",
            "--owner-email",
            "a@example.com",
        ],
        &["api-keys", "list", "--organization", "x"],
        &["prune"],
    ] {
        let out = run(command);
        assert!(!out.status.success());
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("export DATABASE_URL=postgres://") && stderr.contains("--database-url"),
            "{command:?}: {stderr}"
        );
    }
    let stderr = text(&run(&["devices", "list", "--organization", "x"]).stderr);
    assert!(stderr.contains("--url"), "{stderr}");
}

#[test]
fn logs_carry_no_colour_codes_when_not_on_a_terminal_or_with_no_color() {
    // stderr is a pipe here: no colour, with or without NO_COLOR.
    for no_color in [None, Some("1")] {
        let mut cmd = binary(&["migrate"]);
        if let Some(value) = no_color {
            cmd.env("NO_COLOR", value);
        }
        let out = cmd.output().unwrap();
        let stderr = text(&out.stderr);
        assert!(
            !stderr.contains('\u{1b}'),
            "NO_COLOR={no_color:?}: {stderr:?}"
        );
    }
    // A log line, not only the final error.
    let mut cmd = binary(&["serve", "--port", "1", "--host", "256.0.0.1"]);
    let stderr = text(&cmd.output().unwrap().stderr);
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    // A clap error in a pipe has none either.
    let stderr = text(&run(&["--no-such-flag"]).stderr);
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");

    use auth_server::telemetry::colour;
    let set = std::ffi::OsStr::new("1");
    assert!(colour(true, None));
    assert!(colour(true, Some(std::ffi::OsStr::new(""))));
    assert!(!colour(true, Some(set)));
    assert!(!colour(false, None));
}
