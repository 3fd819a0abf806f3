//! Admin commands for organizations, API keys, devices and retention, run by the operator
//! directly against the configured database. Tables by default, `--json` for scripts; a new
//! key's secret is printed once, to stdout (`output`, shared with the remote mode of the
//! `api-keys` and `devices` commands in `remote`, which also checks its arguments here).

use auth_api::{ApiKeyItem, DeviceItem};
use auth_core::model::{
    ApiKeyId, ApiKeyMeta, ApiKeyName, DeviceId, DeviceMetadata, DeviceName, Email, ExternalId,
    OrganizationId, OrganizationName, Scope, Scopes, USAGE_RETENTION_DAYS, UsageGranularity,
    hour_of,
};
use auth_core::ports::PruneReport;
use auth_core::{
    AccountError, Actor, ApiKeyError, DeviceError, ImportedUser, NewApiKey, NewDevice,
    OrganizationError,
};
use auth_http::present;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use comfy_table::Table;
use secrecy::SecretString;
use serde::Serialize;

use crate::cli::CliError;
use crate::config::Config;
use crate::output;
use crate::wiring::{self, Services, Store};

/// `organizations` subcommands.
#[derive(Debug, Subcommand)]
pub enum OrganizationsCommand {
    /// Create an organization owned by a registered user.
    Create {
        /// Name (1..=100 characters).
        #[arg(long)]
        name: String,
        /// Email of the owner (a registered user).
        #[arg(long)]
        owner_email: String,
    },
    /// List every organization, or with `--user` the organizations a user belongs to with
    /// the user's role in each (as `GET /organizations` answers that user).
    List {
        /// Email of the user.
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
    },
    /// List an organization's members (as `GET /organizations/{org_id}/members`).
    Members {
        /// Organization id.
        organization: String,
    },
}

/// `events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List events, oldest first: an organization's trail (as
    /// `GET /organizations/{org_id}/events`), a user's (as `GET /users/me/events`), or every
    /// event. With `--json`, one event per line (JSON lines, for a SIEM).
    List {
        /// Only this organization's events.
        #[arg(long, value_name = "ORG", conflicts_with = "user")]
        organization: Option<String>,
        /// Only the events about this user's account (email).
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// Only events after this position (the `seq` of the last event already read).
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        after: i64,
        /// Only this action (such as `api_key.revoked`).
        #[arg(long, value_name = "ACTION")]
        action: Option<String>,
        /// At most this many events (all by default; with --follow, none is the limit).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Keep printing new events as they are recorded (every second), like `tail -f`.
        #[arg(long)]
        follow: bool,
    },
}

/// `api-keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        /// Organization id.
        #[arg(long)]
        organization: String,
        /// Name.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Lifetime in days (none: never expires); the API's `expires_in_days`.
        #[arg(long = "expires-in-days", alias = "ttl-days", value_name = "DAYS")]
        expires_in_days: Option<u32>,
        /// What to say about the key: a JSON object of at most 4 KiB, returned by a valid
        /// verification.
        #[arg(long, value_name = "JSON")]
        meta: Option<String>,
        /// The customer's own id for whom the key is issued (1..=128 characters).
        #[arg(long = "external-id", value_name = "ID")]
        external_id: Option<String>,
    },
    /// List an organization's keys.
    List {
        /// Organization id.
        #[arg(long)]
        organization: String,
        /// Include revoked keys; the API's `include_revoked`.
        #[arg(long, alias = "all")]
        include_revoked: bool,
    },
    /// Show one key.
    Info {
        /// Key id.
        id: String,
    },
    /// Revoke a key (every running instance rejects it within a second).
    Revoke {
        /// Key id.
        id: String,
    },
    /// Replace a key by a new one with the same name, scopes and expiry.
    Rotate {
        /// Key id.
        id: String,
    },
    /// A key's verifications by outcome, per hour or per day (UTC); up to a few seconds
    /// behind.
    Usage {
        /// Key id.
        id: String,
        /// From (RFC 3339; 24 hours before `--to` by default).
        #[arg(long)]
        from: Option<String>,
        /// To (RFC 3339, excluded; now by default); at most 90 days after `--from`.
        #[arg(long)]
        to: Option<String>,
        /// `hour` or `day`.
        #[arg(long, default_value = "hour")]
        granularity: String,
    },
}

/// The arguments of `api-keys usage`, checked as the service checks them: `(from, to,
/// granularity)` with the service's defaults filled in.
pub(crate) fn usage_range(
    from: Option<&str>,
    to: Option<&str>,
    granularity: &str,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>, UsageGranularity), CliError> {
    let time = |flag: &str, raw: Option<&str>| {
        raw.map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|at| at.with_timezone(&Utc))
                .map_err(|_| CliError::Input(format!("{flag} must be an RFC 3339 time")))
        })
        .transpose()
    };
    let to = time("--to", to)?.unwrap_or(now);
    let from = hour_of(time("--from", from)?.unwrap_or(to - chrono::Duration::hours(24)));
    let granularity = match granularity {
        "hour" => UsageGranularity::Hour,
        "day" => UsageGranularity::Day,
        _ => return Err(CliError::Input("--granularity must be hour or day".into())),
    };
    if from >= to {
        return Err(CliError::Input("--from must be before --to".into()));
    }
    if to - from > chrono::Duration::days(USAGE_RETENTION_DAYS) {
        return Err(CliError::Input(format!(
            "--to must be at most {USAGE_RETENTION_DAYS} days after --from"
        )));
    }
    Ok((from, to, granularity))
}

/// `devices` subcommands.
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Register a device; its secret is printed once.
    Register {
        /// Organization id.
        #[arg(long)]
        organization: String,
        /// The device's id (1..=128 of `[A-Za-z0-9_.:-]`).
        #[arg(long)]
        device_id: String,
        /// Name (defaults to the id).
        #[arg(long)]
        name: Option<String>,
        /// Free-form metadata: a JSON object (at most 16 KiB), such as
        /// `{"site":"north","model":"x2"}`.
        #[arg(long, value_name = "JSON")]
        metadata: Option<String>,
    },
    /// List an organization's devices.
    List {
        /// Organization id.
        #[arg(long)]
        organization: String,
    },
    /// Show one device.
    Info {
        /// Device id.
        device_id: String,
    },
    /// Give a device a new secret (printed once); the old one stops working at once.
    #[command(name = "rotate-secret")]
    RotateSecret {
        /// Device id.
        device_id: String,
    },
    /// Revoke a device; its tokens stop verifying on every instance within a second.
    Revoke {
        /// Device id.
        device_id: String,
    },
}

/// One line of an import file.
#[derive(serde::Deserialize)]
struct ImportLine {
    email: String,
    password_hash: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    is_admin: bool,
    #[serde(default)]
    created_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the other system verified the address (absent: unverified).
    #[serde(default)]
    email_verified_at: Option<chrono::DateTime<chrono::Utc>>,
}

enum Imported {
    Added,
    Present,
    Invalid(String),
}

fn parse_import_line(line: &str) -> Result<ImportedUser, String> {
    let parsed: ImportLine =
        serde_json::from_str(line).map_err(|e| format!("not a valid import object: {e}"))?;
    let email = Email::parse(&parsed.email).map_err(|e| format!("email: {e}"))?;
    let display_name = parsed
        .display_name
        .as_deref()
        .map(auth_core::model::DisplayName::parse)
        .transpose()
        .map_err(|e| format!("display_name: {e}"))?;
    Ok(ImportedUser {
        email,
        password_hash: auth_core::model::PasswordHash::new(parsed.password_hash),
        display_name,
        is_admin: parsed.is_admin,
        email_verified_at: parsed.email_verified_at,
        created_at: parsed.created_at,
    })
}

/// `users import FILE`: imports concurrently (16 at a time), with a progress bar on a
/// terminal, and reports what it could not import by line number.
///
/// # Errors
/// [`CliError`]; also when any line was invalid (after importing the others).
pub async fn import_users(
    config: Config,
    file: &std::path::Path,
    json: bool,
) -> Result<(), CliError> {
    use futures::StreamExt as _;

    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
    let services = open(config).await?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let bar = indicatif::ProgressBar::new(lines.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} users ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let auth = &services.auth;
    let outcomes: Vec<(usize, Result<Imported, CliError>)> = futures::stream::iter(lines)
        .map(|(number, line)| {
            let bar = bar.clone();
            async move {
                let outcome = match parse_import_line(line) {
                    Err(reason) => Ok(Imported::Invalid(reason)),
                    Ok(user) => match auth.import(user).await {
                        Ok(_) => Ok(Imported::Added),
                        Err(AccountError::EmailTaken) => Ok(Imported::Present),
                        Err(AccountError::UnrecognisedHash) => Ok(Imported::Invalid(
                            "password_hash is not a bcrypt hash".into(),
                        )),
                        Err(other) => Err(CliError::Failed(format!("line {number}: {other}"))),
                    },
                };
                bar.inc(1);
                (number, outcome)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    bar.finish_and_clear();
    let (mut added, mut present, mut invalid) = (0usize, 0usize, Vec::new());
    for (number, outcome) in outcomes {
        match outcome? {
            Imported::Added => added += 1,
            Imported::Present => present += 1,
            Imported::Invalid(reason) => invalid.push((number, reason)),
        }
    }
    invalid.sort();
    for (number, reason) in &invalid {
        eprintln!("line {number}: {reason}");
    }
    if json {
        output::print_json(
            &serde_json::json!({"imported": added, "already_present": present, "invalid": invalid.len()}),
        )?;
    } else {
        println!(
            "imported {added}, already present {present}, invalid {}",
            invalid.len()
        );
    }
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{} lines were not imported",
            invalid.len()
        )))
    }
}

/// Opens the configured database for an admin command: requires `DATABASE_URL`, applies
/// migrations, and builds the services. No token is issued here, so a missing signing key
/// is replaced by a random one rather than warned about.
///
/// # Errors
/// No database, or the database is unusable.
pub async fn open(mut config: Config) -> Result<Services, CliError> {
    if config.db.url.is_none() {
        return Err(CliError::Input(format!(
            "{}; `api-keys` and `devices` also run through a running service with --url URL \
             (or AUTH_URL) and an organization key holding `admin` in AUTH_API_KEY",
            crate::config::database_url_missing("this command")
        )));
    }
    if config.jwt.secret_key.is_none() {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| CliError::Input(format!("random source: {e}")))?;
        config.jwt.secret_key = Some(SecretString::from(hex::encode(key)));
    }
    let store = Store::open(&config)?;
    wiring::migrate(&config).await?;
    Ok(wiring::services(&config, &store)?)
}

/// `users delete EMAIL`.
///
/// # Errors
/// No database, no such user, the user is an organization's only owner, or the store failed.
pub async fn delete_user(config: Config, email: &str, json: bool) -> Result<(), CliError> {
    let email = Email::parse(email).map_err(|e| CliError::Input(format!("email: {e}")))?;
    let services = open(config).await?;
    let user = account_by_email(&services, &email).await?;
    services
        .auth
        .remove_account(user.id)
        .await
        .map_err(|err| match err {
            AccountError::LastOwner(org) => CliError::Failed(format!(
                "{email} is the only owner of organization {org}: the account stays"
            )),
            AccountError::InvalidToken(_) => {
                CliError::Failed(format!("no user with email {email}"))
            }
            other => CliError::Failed(auth_core::ErrorChain(&other).to_string()),
        })?;
    if json {
        output::print_json(&serde_json::json!({ "deleted": user.id.to_string() }))
    } else {
        println!("deleted {email} ({})", user.id);
        Ok(())
    }
}

/// The account with `email`, or a message saying there is none.
async fn account_by_email(
    services: &crate::wiring::Services,
    email: &Email,
) -> Result<auth_core::model::User, CliError> {
    services
        .orgs
        .find_user(email)
        .await
        .map_err(org_error)?
        .ok_or_else(|| CliError::Failed(format!("no user with email {email}")))
}

fn parse_email(raw: &str) -> Result<Email, CliError> {
    Email::parse(raw).map_err(|e| CliError::Input(format!("email: {e}")))
}

fn account_error(err: AccountError) -> CliError {
    match err {
        AccountError::LastAdministrator => CliError::Failed(
            "the service must keep an enabled administrator: make another one first".into(),
        ),
        AccountError::UserNotFound | AccountError::InvalidToken(_) => {
            CliError::Failed("no such user".into())
        }
        other => CliError::Failed(auth_core::ErrorChain(&other).to_string()),
    }
}

/// `users list`: a page of accounts, as `GET /admin/users` answers.
///
/// # Errors
/// [`CliError`].
pub async fn list_users(
    config: Config,
    email: Option<String>,
    after: Option<uuid::Uuid>,
    limit: usize,
    json: bool,
) -> Result<(), CliError> {
    let services = open(config).await?;
    let query = auth_core::ports::UserQuery {
        email,
        after: after.map(auth_core::model::UserId::from_uuid),
        limit,
    };
    let listings = services
        .auth
        .list_users(&query)
        .await
        .map_err(account_error)?;
    let next_after = (listings.len() == limit)
        .then(|| listings.last().map(|l| l.user.id.as_uuid()))
        .flatten();
    let list = auth_api::AdminUserList {
        items: listings
            .into_iter()
            .map(auth_http::present::admin_user)
            .collect(),
        next_after,
    };
    output::admin_users(&list, json)
}

/// `users info`: one account with its organizations.
///
/// # Errors
/// [`CliError`].
pub async fn user_info(config: Config, email: &str, json: bool) -> Result<(), CliError> {
    let email = parse_email(email)?;
    let services = open(config).await?;
    let user = account_by_email(&services, &email).await?;
    let listing = services
        .auth
        .user_listing(user.id)
        .await
        .map_err(account_error)?;
    let organizations = services.orgs.list_mine(user.id).await.map_err(org_error)?;
    let detail = auth_http::present::admin_user_detail(listing, organizations);
    if json {
        return output::print_json(&detail);
    }
    output::admin_users(
        &auth_api::AdminUserList {
            items: vec![detail.user.clone()],
            next_after: None,
        },
        false,
    )?;
    for org in &detail.organizations {
        println!("member of {} ({}) as {:?}", org.name, org.id, org.role);
    }
    Ok(())
}

/// `users set-admin|disable|enable`: an administrator's change.
///
/// # Errors
/// [`CliError`]; the last administrator is refused.
pub async fn change_user(
    config: Config,
    email: &str,
    change: auth_core::service::administration::AccountChange,
    json: bool,
) -> Result<(), CliError> {
    let email = parse_email(email)?;
    let services = open(config).await?;
    let user = account_by_email(&services, &email).await?;
    let listing = services
        .auth
        .change_account(user.id, change)
        .await
        .map_err(account_error)?;
    let shown = auth_http::present::admin_user(listing);
    if json {
        return output::print_json(&shown);
    }
    println!(
        "{}: admin {}, {}",
        shown.email,
        if shown.is_admin { "yes" } else { "no" },
        if shown.disabled {
            "disabled"
        } else {
            "enabled"
        }
    );
    Ok(())
}

/// `users unlock`: clears the lockout of the address.
///
/// # Errors
/// [`CliError`].
pub async fn unlock_user(config: Config, email: &str, json: bool) -> Result<(), CliError> {
    let email = parse_email(email)?;
    let services = open(config).await?;
    let user = account_by_email(&services, &email).await?;
    services.auth.unlock(user.id).await.map_err(account_error)?;
    if json {
        return output::print_json(&serde_json::json!({ "unlocked": user.id.to_string() }));
    }
    println!("{} unlocked", user.email);
    Ok(())
}

/// `users set-password`: sets the password; every session of the account ends.
///
/// # Errors
/// [`CliError`]: a password the policy refuses, no such user, a store failure.
pub async fn set_password(
    config: Config,
    email: &str,
    password: &secrecy::SecretString,
    json: bool,
) -> Result<(), CliError> {
    use secrecy::ExposeSecret as _;
    let password = config
        .passwords
        .policy()
        .new_password(password.expose_secret())
        .map_err(|e| CliError::Input(format!("password: {e}")))?;
    let email = parse_email(email)?;
    let services = open(config).await?;
    let user = account_by_email(&services, &email).await?;
    let ended = services
        .auth
        .set_password(user.id, &password)
        .await
        .map_err(account_error)?;
    if json {
        return output::print_json(&serde_json::json!({
            "user_id": user.id.to_string(),
            "sessions_ended": ended,
        }));
    }
    println!("password set for {}; {ended} session(s) ended", user.email);
    Ok(())
}

/// Marks the address of the user with `email` verified.
///
/// # Errors
/// [`CliError`]: a bad address, no such user, or a store failure.
pub async fn verify_email(config: Config, email: &str, json: bool) -> Result<(), CliError> {
    let email = Email::parse(email).map_err(|e| CliError::Input(format!("email: {e}")))?;
    let services = open(config).await?;
    let user = account_by_email(&services, &email).await?;
    let already = user.email_verified();
    services
        .auth
        .mark_email_verified(user.id)
        .await
        .map_err(|err| match err {
            AccountError::InvalidToken(_) => {
                CliError::Failed(format!("no user with email {email}"))
            }
            other => CliError::Failed(auth_core::ErrorChain(&other).to_string()),
        })?;
    if json {
        output::print_json(&serde_json::json!({
            "user_id": user.id.to_string(),
            "email_verified": true,
            "changed": !already,
        }))
    } else if already {
        println!("{email} was verified already; nothing changed");
        Ok(())
    } else {
        println!("{email} is now verified");
        Ok(())
    }
}

/// Removes the second factor of the user with `email`.
///
/// # Errors
/// [`CliError`]: no such user, or the store failed.
pub async fn reset_mfa(config: Config, email: &str, json: bool) -> Result<(), CliError> {
    let email = auth_core::model::Email::parse(email)
        .map_err(|e| CliError::Input(format!("email: {e}")))?;
    let services = open(config).await?;
    let removed = match services.auth.reset_mfa(&email).await {
        Ok(removed) => removed,
        Err(AccountError::InvalidCredentials) => {
            return Err(CliError::Failed("no user with this email".into()));
        }
        Err(other) => return Err(CliError::Failed(other.to_string())),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({ "email": email.as_str(), "mfa_removed": removed })
        );
    } else if removed {
        println!("second factor removed for {}", email.as_str());
    } else {
        println!(
            "{} had no second factor enabled; nothing changed",
            email.as_str()
        );
    }
    Ok(())
}

fn org_error(err: OrganizationError) -> CliError {
    CliError::Failed(match err {
        OrganizationError::NotFound => "not found".into(),
        other => other.to_string(),
    })
}

/// What the `api-keys` commands say when there is no such key (or organization), in either
/// mode.
pub(crate) const NO_SUCH_KEY: &str = "no such API key or organization";
/// ... when the key is already revoked.
pub(crate) const KEY_ALREADY_REVOKED: &str = "the key is already revoked";
/// ... when an expired key is to be rotated.
pub(crate) const KEY_EXPIRED: &str = "the key has expired and cannot be rotated; create a new key";
/// What the `devices` commands say when there is no such device (or organization).
pub(crate) const NO_SUCH_DEVICE: &str = "no such device or organization";
/// ... when the device id is taken.
pub(crate) const DEVICE_EXISTS: &str = "a device with this id exists";
/// ... when the device is already revoked.
pub(crate) const DEVICE_ALREADY_REVOKED: &str = "the device is already revoked";

fn key_error(err: ApiKeyError) -> CliError {
    CliError::Failed(match err {
        ApiKeyError::NotFound => NO_SUCH_KEY.into(),
        ApiKeyError::AlreadyRevoked => KEY_ALREADY_REVOKED.into(),
        ApiKeyError::Expired => KEY_EXPIRED.into(),
        other => other.to_string(),
    })
}

fn device_error(err: DeviceError) -> CliError {
    CliError::Failed(match err {
        DeviceError::NotFound => NO_SUCH_DEVICE.into(),
        DeviceError::Exists => DEVICE_EXISTS.into(),
        DeviceError::AlreadyRevoked => DEVICE_ALREADY_REVOKED.into(),
        other => other.to_string(),
    })
}

pub(crate) fn device_id(raw: &str) -> Result<DeviceId, CliError> {
    DeviceId::parse(raw).map_err(|e| CliError::Input(format!("device id: {e}")))
}

/// Runs a `devices` command.
///
/// # Errors
/// [`CliError`].
pub async fn devices(config: Config, cmd: DevicesCommand, json: bool) -> Result<(), CliError> {
    let services = open(config).await?;
    let devices = &services.devices;
    let actor = Actor::Operator;
    match cmd {
        DevicesCommand::Register {
            organization,
            device_id: id,
            name,
            metadata,
        } => {
            let new = new_device(&organization, &id, name.as_deref(), metadata.as_deref())?;
            let issued = devices.register(&actor, new).await.map_err(device_error)?;
            output::registered_device(&present::registered_device(issued), json)
        }
        DevicesCommand::List { organization } => {
            let org: OrganizationId = parse_id("--organization", &organization)?;
            let items: Vec<DeviceItem> = devices
                .list(&actor, org)
                .await
                .map_err(device_error)?
                .iter()
                .map(present::device_item)
                .collect();
            output::devices(&items, json)
        }
        DevicesCommand::Info { device_id: id } => {
            let device = devices
                .get(&actor, &device_id(&id)?)
                .await
                .map_err(device_error)?;
            output::device(&present::device_item(&device), json)
        }
        DevicesCommand::RotateSecret { device_id: id } => {
            let issued = devices
                .rotate_secret(&actor, &device_id(&id)?)
                .await
                .map_err(device_error)?;
            output::rotated_secret(&present::rotated_secret(&issued), json)
        }
        DevicesCommand::Revoke { device_id: id } => {
            let device = devices
                .revoke(&actor, &device_id(&id)?)
                .await
                .map_err(device_error)?;
            output::device(&present::device_item(&device), json)
        }
    }
}

pub(crate) fn parse_id<T: std::str::FromStr>(what: &str, raw: &str) -> Result<T, CliError> {
    raw.parse()
        .map_err(|_| CliError::Input(format!("{what} must be a UUID")))
}

/// The arguments of `api-keys create`, checked as the service checks them.
pub(crate) fn new_key(
    organization: &str,
    name: &str,
    scopes: &[String],
    expires_in_days: Option<u32>,
    meta: Option<&str>,
    external_id: Option<&str>,
) -> Result<NewApiKey, CliError> {
    let organization_id: OrganizationId = parse_id("--organization", organization)?;
    let name = ApiKeyName::parse(name).map_err(|e| CliError::Input(format!("--name: {e}")))?;
    let scopes = scopes
        .iter()
        .map(|s| {
            Scope::parse(s.trim()).map_err(|e| CliError::Input(format!("--scopes: {s:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if expires_in_days.is_some_and(|d| !(1..=3650).contains(&d)) {
        return Err(CliError::Input("--expires-in-days must be 1..=3650".into()));
    }
    let scopes = Scopes::new(scopes).map_err(|e| CliError::Input(format!("--scopes: {e}")))?;
    let meta = meta
        .map(|text| {
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| CliError::Input(format!("--meta: not JSON: {e}")))?;
            ApiKeyMeta::new(value).map_err(|e| CliError::Input(format!("--meta: {e}")))
        })
        .transpose()?;
    let external_id = external_id
        .map(|raw| {
            ExternalId::parse(raw).map_err(|e| CliError::Input(format!("--external-id: {e}")))
        })
        .transpose()?;
    Ok(NewApiKey {
        organization_id,
        name,
        scopes,
        expires_in_days,
        meta,
        external_id,
        rate_limit: None,
        remaining: None,
        refill: None,
    })
}

/// The arguments of `devices register`, checked as the service checks them.
pub(crate) fn new_device(
    organization: &str,
    id: &str,
    name: Option<&str>,
    metadata: Option<&str>,
) -> Result<NewDevice, CliError> {
    let metadata = match metadata {
        None => DeviceMetadata::default(),
        Some(text) => {
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| CliError::Input(format!("--metadata is not JSON: {e}")))?;
            DeviceMetadata::new(value).map_err(|e| CliError::Input(format!("--metadata: {e}")))?
        }
    };
    Ok(NewDevice {
        id: device_id(id)?,
        organization_id: parse_id("--organization", organization)?,
        name: name
            .map(|n| DeviceName::parse(n).map_err(|e| CliError::Input(format!("--name: {e}"))))
            .transpose()?,
        metadata,
    })
}

/// Runs an `organizations` command.
///
/// # Errors
/// [`CliError`].
pub async fn organizations(
    config: Config,
    cmd: OrganizationsCommand,
    json: bool,
) -> Result<(), CliError> {
    let services = open(config).await?;
    match cmd {
        OrganizationsCommand::List { user: None } => {
            let store = |e: auth_core::ports::StoreError| {
                CliError::Failed(auth_core::ErrorChain(&e).to_string())
            };
            let repository = services.orgs.repository();
            let mut all = Vec::new();
            let mut after = None;
            loop {
                let page = repository.list_all(after, 1000).await.map_err(store)?;
                let full = page.len() == 1000;
                after = page.last().map(|o| o.id);
                all.extend(page);
                if !full {
                    break;
                }
            }
            output::all_organizations(&all, json)
        }
        OrganizationsCommand::List { user: Some(user) } => {
            let email = Email::parse(&user).map_err(|e| CliError::Input(format!("--user: {e}")))?;
            let user = services
                .orgs
                .find_user(&email)
                .await
                .map_err(org_error)?
                .ok_or_else(|| CliError::Input(format!("no user with email {email}")))?;
            let list = present::organization_list(
                services.orgs.list_mine(user.id).await.map_err(org_error)?,
            );
            output::organizations(&list, json)
        }
        OrganizationsCommand::Members { organization } => {
            let org: OrganizationId = parse_id("ORGANIZATION", &organization)?;
            let store = |e: auth_core::ports::StoreError| {
                CliError::Failed(auth_core::ErrorChain(&e).to_string())
            };
            let repository = services.orgs.repository();
            if repository.find(org).await.map_err(store)?.is_none() {
                return Err(CliError::Failed(format!("no organization {org}")));
            }
            let list = auth_api::MemberList {
                items: repository
                    .members(org)
                    .await
                    .map_err(store)?
                    .iter()
                    .map(present::member)
                    .collect(),
            };
            output::members(&list, json)
        }
        OrganizationsCommand::Create { name, owner_email } => {
            let name = OrganizationName::parse(&name)
                .map_err(|e| CliError::Input(format!("--name: {e}")))?;
            let email = Email::parse(&owner_email)
                .map_err(|e| CliError::Input(format!("--owner-email: {e}")))?;
            let owner = services
                .orgs
                .find_user(&email)
                .await
                .map_err(org_error)?
                .ok_or_else(|| CliError::Input(format!("no user with email {email}")))?;
            let org = services
                .orgs
                .create(owner.id, name)
                .await
                .map_err(org_error)?;
            #[derive(Serialize)]
            struct Created<'a> {
                id: String,
                name: &'a str,
                owner_id: String,
                created_at: String,
            }
            let created = Created {
                id: org.id.to_string(),
                name: org.name.as_str(),
                owner_id: owner.id.to_string(),
                created_at: org.created_at.to_rfc3339(),
            };
            if json {
                output::print_json(&created)
            } else {
                let mut table = Table::new();
                table.set_header(["id", "name", "owner", "created"]);
                table.add_row([
                    created.id,
                    created.name.to_owned(),
                    owner.email.to_string(),
                    created.created_at,
                ]);
                println!("{table}");
                Ok(())
            }
        }
    }
}

/// Runs an `api-keys` command.
///
/// # Errors
/// [`CliError`].
pub async fn api_keys(config: Config, cmd: ApiKeysCommand, json: bool) -> Result<(), CliError> {
    let services = open(config).await?;
    let keys = &services.keys;
    let now = services.auth.clock().now();
    let actor = Actor::Operator;
    match cmd {
        ApiKeysCommand::Create {
            organization,
            name,
            scopes,
            expires_in_days,
            meta,
            external_id,
        } => {
            let new = new_key(
                &organization,
                &name,
                &scopes,
                expires_in_days,
                meta.as_deref(),
                external_id.as_deref(),
            )?;
            let issued = keys.create(&actor, new).await.map_err(key_error)?;
            output::created_key(&present::created_key(issued), json)
        }
        ApiKeysCommand::List {
            organization,
            include_revoked,
        } => {
            let org: OrganizationId = parse_id("--organization", &organization)?;
            let items: Vec<ApiKeyItem> = keys
                .list(&actor, org, include_revoked, None)
                .await
                .map_err(key_error)?
                .iter()
                .map(|k| present::api_key_item(k, now))
                .collect();
            output::keys(&items, json)
        }
        ApiKeysCommand::Info { id } => {
            let id: ApiKeyId = parse_id("ID", &id)?;
            let item = present::api_key_item(&keys.get(&actor, id).await.map_err(key_error)?, now);
            output::key(&item, json)
        }
        ApiKeysCommand::Revoke { id } => {
            let id: ApiKeyId = parse_id("ID", &id)?;
            let item =
                present::api_key_item(&keys.revoke(&actor, id).await.map_err(key_error)?, now);
            output::key(&item, json)
        }
        ApiKeysCommand::Rotate { id } => {
            let id: ApiKeyId = parse_id("ID", &id)?;
            let issued = keys.rotate(&actor, id).await.map_err(key_error)?;
            output::created_key(&present::created_key(issued), json)
        }
        ApiKeysCommand::Usage {
            id,
            from,
            to,
            granularity,
        } => {
            let id: ApiKeyId = parse_id("ID", &id)?;
            let (from, to, granularity) =
                usage_range(from.as_deref(), to.as_deref(), &granularity, now)?;
            let buckets = keys
                .usage(&actor, id, from, to, granularity)
                .await
                .map_err(key_error)?;
            output::usage(&present::key_usage(granularity, &buckets), json)
        }
    }
}

/// What `prune --json` prints.
#[derive(Serialize)]
struct PruneOutput {
    /// `completed`, or `skipped` while another instance runs a pass.
    status: &'static str,
    /// Rows deleted per table (all 0 when skipped).
    deleted: PrunedOutput,
    elapsed_ms: u64,
}

#[derive(Serialize)]
struct PrunedOutput {
    sessions: u64,
    refresh_tokens: u64,
    login_attempts: u64,
    one_time_tokens: u64,
    mfa_challenges: u64,
    password_reset_requests: u64,
    events: u64,
    api_key_usage: u64,
}

/// `prune`: one retention pass against the database, with the configured policy. Prints the
/// rows deleted per table. Skipped while another instance runs a pass (exit status 0: that
/// pass deletes what this one would have).
///
/// # Errors
/// No database, or the pass failed (the message says what it deleted before).
pub async fn prune(config: Config, json: bool) -> Result<(), CliError> {
    if config.db.url.is_none() {
        return Err(CliError::Input(format!(
            "{} (a server on the in-memory store prunes it itself)",
            crate::config::database_url_missing("`prune`")
        )));
    }
    let store = Store::open(&config)?;
    wiring::migrate(&config).await?;
    let started = std::time::Instant::now();
    let report = wiring::retention(&config, &store)
        .run_once()
        .await
        .map_err(|err| {
            let deleted: Vec<String> = err
                .deleted
                .by_table()
                .iter()
                .map(|(table, n)| format!("{table} {n}"))
                .collect();
            CliError::Failed(format!(
                "retention pass failed after deleting rows ({}): {}",
                deleted.join(", "),
                auth_core::ErrorChain(&err.cause)
            ))
        })?;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let rows = report.deleted();
    let status = match report {
        PruneReport::Completed(_) => "completed",
        PruneReport::Skipped => "skipped",
    };
    if json {
        return output::print_json(&PruneOutput {
            status,
            deleted: PrunedOutput {
                sessions: rows.sessions,
                refresh_tokens: rows.refresh_tokens,
                login_attempts: rows.login_attempts,
                one_time_tokens: rows.one_time_tokens,
                mfa_challenges: rows.mfa_challenges,
                password_reset_requests: rows.password_reset_requests,
                events: rows.events,
                api_key_usage: rows.api_key_usage,
            },
            elapsed_ms,
        });
    }
    if report == PruneReport::Skipped {
        println!(
            "skipped: another instance is running a retention pass; it deletes what this one \
             would have"
        );
        return Ok(());
    }
    let mut table = Table::new();
    table.set_header(["table", "deleted"]);
    for (name, n) in rows.by_table() {
        table.add_row([name.to_owned(), n.to_string()]);
    }
    println!("{table}");
    println!("retention pass done in {elapsed_ms} ms");
    Ok(())
}

/// `events list`: pages through the trail, and with `--follow` keeps reading it.
///
/// # Errors
/// Bad input, an unknown organization or user, a store failure.
pub async fn events(config: Config, cmd: EventsCommand, json: bool) -> Result<(), CliError> {
    let EventsCommand::List {
        organization,
        user,
        after,
        action,
        limit,
        follow,
    } = cmd;
    let action = action
        .map(|name| {
            auth_core::model::EventAction::parse(&name).ok_or_else(|| {
                CliError::Input(format!(
                    "--action: {name} is not an action of the event catalogue (such as \
                     api_key.revoked)"
                ))
            })
        })
        .transpose()?;
    let services = open(config).await?;
    let scope = match (organization, user) {
        (Some(org), _) => {
            let org: OrganizationId = parse_id("--organization", &org)?;
            services
                .orgs
                .authorize(&Actor::Operator, org)
                .await
                .map_err(|_| CliError::Failed(format!("no organization {org}")))?;
            Trail::Organization(org)
        }
        (None, Some(email)) => {
            let email =
                Email::parse(&email).map_err(|e| CliError::Input(format!("--user: {e}")))?;
            let user = services
                .orgs
                .find_user(&email)
                .await
                .map_err(org_error)?
                .ok_or_else(|| CliError::Input(format!("no user with email {email}")))?;
            Trail::User(user.id)
        }
        (None, None) => Trail::All,
    };
    let store =
        |e: auth_core::ports::StoreError| CliError::Failed(auth_core::ErrorChain(&e).to_string());
    let mut printer = output::EventPrinter::new(json);
    let mut left = limit.unwrap_or(usize::MAX);
    let mut position = after.max(0);
    // Positions are taken when an event is appended and become visible when it commits, so a
    // follower re-reads the last minute and prints what it has not printed yet.
    let mut printed = std::collections::BTreeSet::new();
    loop {
        let mut cursor = if follow {
            let settled = services
                .audit
                .log()
                .position_at(chrono::Utc::now() - auth_core::service::follow::HOLE_PATIENCE)
                .await
                .map_err(store)?;
            printed.retain(|seq| *seq > settled);
            settled.max(after).min(position)
        } else {
            position
        };
        // Every page after the cursor, then (following) a pause.
        loop {
            let page = auth_core::TrailPage {
                after: cursor,
                limit: left.min(auth_core::service::audit::MAX_PAGE),
                action,
            };
            let events = match scope {
                Trail::Organization(org) => services
                    .audit
                    .organization_events(&Actor::Operator, org, page)
                    .await
                    .map_err(org_error)?,
                Trail::User(user) => services
                    .audit
                    .user_events(user, page)
                    .await
                    .map_err(store)?,
                Trail::All => services.audit.all_events(page).await.map_err(store)?,
            };
            let full = events.len() == page.limit;
            for event in events {
                cursor = cursor.max(event.seq);
                if !follow || printed.insert(event.seq) {
                    position = position.max(event.seq);
                    printer.print(auth_http::present::audit_event(event))?;
                    left = left.saturating_sub(1);
                }
            }
            if left == 0 || !full {
                break;
            }
        }
        if left == 0 || !follow {
            break;
        }
        printer.flush();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    printer.finish();
    Ok(())
}

/// Whose events `events list` reads.
#[derive(Debug, Clone, Copy)]
enum Trail {
    Organization(OrganizationId),
    User(auth_core::model::UserId),
    All,
}
