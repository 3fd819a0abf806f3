//! `auth-bench-seed`: prepares a database for the load scenarios of `scripts/bench.sh` and
//! writes the credentials they present, one per line, into `--out`:
//!
//! - `token.txt`: a user access token (`GET /auth/verify`, `POST /auth/verify-token`);
//! - `refresh.txt`: one refresh token per open session (`POST /auth/refresh` chains them),
//!   each after `--refresh-history` refreshes, so that the token table holds the spent tokens
//!   of a service that has been running (with a table of a few hundred rows, Postgres caches a
//!   sequential scan for the rotating statement and keeps it while the scenario grows the
//!   table to tens of thousands);
//! - `key.txt`: one API key (the cached verification);
//! - `keys.txt`: `--keys` distinct API keys (the cold-cache verification);
//! - `key_limited.txt`: one API key with a rate limit of 1,000,000 per second (every
//!   verification takes a use of its window; none is refused below a million a second);
//! - `key_credits.txt`: one API key with 1,000,000,000 credits (every verification takes one
//!   in the database);
//! - `unknown_keys.txt`: `--unknown-keys` well-formed keys that exist nowhere (the memory bound:
//!   each is a database miss and a negative cache entry);
//! - `devices.txt`: `<device_id> <secret>` per device (`POST /devices/authenticate`);
//! - `mixed_admin.txt`: a key holding `admin` of a second organization, and `mixed_keys.txt`:
//!   `<id> <key>` per key of that organization (`--mixed-keys`), for the mixed scenario, which
//!   creates, rotates and revokes keys there through the API with the admin key (a second
//!   organization, so that its revocations leave the keys of the other scenarios alone).
//!
//! It reads the server's configuration from the same environment (`DATABASE_URL`,
//! `JWT_SECRET_KEY`, `BCRYPT_ROUNDS`, ...), so the tokens it signs verify on the server. The
//! login user's password is hashed at the configured `BCRYPT_ROUNDS`, as a real user's would be;
//! the user whose sessions feed the refresh scenario is hashed at cost 4 so that opening
//! hundreds of sessions takes a second, not a minute (refresh never runs bcrypt).
//!
//! Everything goes through the service's own code (the same services the server runs), so the
//! rows are exactly what the API would have written.

use std::io::Write as _;
use std::path::PathBuf;

use auth_core::model::{
    ApiKeyName, ApiKeyPrefix, ApiKeySecret, DeviceId, DeviceMetadata, Email, OrganizationName,
    Password, PasswordPolicy, Scope, Scopes,
};
use auth_core::{Actor, NewApiKey, NewDevice, Registration};
use auth_server::cli::Cli;
use auth_server::wiring::{self, Store};
use clap::Parser;
use futures::{StreamExt as _, TryStreamExt as _};
use secrecy::ExposeSecret as _;

/// The login scenario's users (their passwords hashed at the configured cost), written to
/// `login.txt`. Several, so that the scenario's connections are different people logging
/// in: lockout counts an attempt before its check, and more concurrent attempts on one
/// address than its threshold are refused (429) without a check.
const LOGIN_USERS: usize = 16;
/// The password of every seeded user.
const PASSWORD: &str = "violet tugboat margin 47!x";
/// Concurrent writes while seeding.
const PARALLEL: usize = 32;

#[derive(Debug, Parser)]
#[command(about = "Seeds a database for the load scenarios and writes their credentials")]
struct Args {
    /// Directory for the credential files.
    #[arg(long)]
    out: PathBuf,
    /// Distinct API keys created.
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Well-formed keys that exist nowhere.
    #[arg(long, default_value_t = 1_000_000)]
    unknown_keys: usize,
    /// Devices registered.
    #[arg(long, default_value_t = 1_000)]
    devices: usize,
    /// Sessions opened for the refresh scenario.
    #[arg(long, default_value_t = 256)]
    sessions: usize,
    /// Refreshes made in each session before its token is written: the spent tokens a
    /// running service keeps (for reuse detection) until the session ends.
    #[arg(long, default_value_t = 200)]
    refresh_history: usize,
    /// Keys of the mixed scenario's organization, besides its admin key.
    #[arg(long, default_value_t = 2_000)]
    mixed_keys: usize,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn write_lines(path: PathBuf, lines: impl IntoIterator<Item = String>) -> Result<usize, Error> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let mut count = 0;
    for line in lines {
        writeln!(out, "{line}")?;
        count += 1;
    }
    out.flush()?;
    eprintln!("  {}: {count} lines", path.display());
    Ok(count)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let config = Cli::try_parse_with_env(["auth-server"])?.config;
    let mut fast_config = config.clone();
    fast_config.passwords.bcrypt_rounds = 4;
    // Seeding logs one user in hundreds of times, many at once; lockout counts attempts
    // before their check, so a burst above the threshold would be refused.
    fast_config.lockout.threshold = 1000;
    wiring::migrate(&config).await?;
    let slow = wiring::services(&config, &Store::open(&config)?)?;
    let fast = wiring::services(&fast_config, &Store::open(&fast_config)?)?;
    let policy = PasswordPolicy::default();
    let password = || Password::presented(PASSWORD);

    eprintln!(
        "seeding users and {} sessions, each refreshed {} times",
        args.sessions.max(1),
        args.refresh_history
    );
    let login_emails: Vec<String> = (1..=LOGIN_USERS)
        .map(|n| format!("bench.login.{n}@example.com"))
        .collect();
    for address in &login_emails {
        let email = Email::parse(address)?;
        if slow.auth.login(&email, &password()?).await.is_err() {
            slow.auth
                .register(
                    Registration {
                        email,
                        password: policy.new_password(PASSWORD)?,
                        display_name: None,
                    },
                    false,
                )
                .await?;
        }
    }
    write_lines(args.out.join("login.txt"), login_emails)?;
    let owner_email = Email::parse(&format!(
        "bench.{}@example.com",
        auth_core::model::UserId::generate()
    ))?;
    let owner = fast
        .auth
        .register(
            Registration {
                email: owner_email.clone(),
                password: policy.new_password(PASSWORD)?,
                display_name: None,
            },
            false,
        )
        .await?;
    let history = args.refresh_history;
    let sessions: Vec<_> = futures::stream::iter(0..args.sessions.max(1))
        .map(|_| {
            let auth = fast.auth.clone();
            let email = owner_email.clone();
            async move {
                let mut pair = auth.login(&email, &Password::presented(PASSWORD)?).await?;
                for _ in 0..history {
                    pair = auth.refresh(&pair.refresh_token).await?;
                }
                Ok::<_, Error>(pair)
            }
        })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    write_lines(
        args.out.join("token.txt"),
        sessions
            .first()
            .map(|pair| pair.access_token.expose_secret().to_owned()),
    )?;
    write_lines(
        args.out.join("refresh.txt"),
        sessions
            .iter()
            .map(|pair| pair.refresh_token.expose().to_owned()),
    )?;

    eprintln!("seeding {} API keys", args.keys);
    let org = fast
        .orgs
        .create(owner.id, OrganizationName::parse("Load test")?)
        .await?;
    let scopes = Scopes::new(vec![Scope::parse("read")?, Scope::parse("write")?])?;
    let keys: Vec<String> = futures::stream::iter(0..args.keys.max(1))
        .map(|i| {
            let service = fast.keys.clone();
            let scopes = scopes.clone();
            async move {
                let new = NewApiKey::new(org.id, ApiKeyName::parse(&format!("load-{i}"))?, scopes);
                let issued = service.create(&Actor::Operator, new).await?;
                Ok::<_, Error>(issued.secret.expose().to_owned())
            }
        })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    write_lines(args.out.join("key.txt"), keys.first().cloned())?;
    write_lines(args.out.join("keys.txt"), keys)?;
    for (file, rate_limit, remaining) in [
        (
            "key_limited.txt",
            Some(auth_core::model::RateLimit::new(1_000_000, 1)?),
            None,
        ),
        (
            "key_credits.txt",
            None,
            Some(auth_core::model::Credits::MAX),
        ),
    ] {
        let issued = fast
            .keys
            .create(
                &Actor::Operator,
                NewApiKey {
                    organization_id: org.id,
                    name: ApiKeyName::parse(file.trim_end_matches(".txt"))?,
                    scopes: scopes.clone(),
                    expires_in_days: None,
                    meta: None,
                    external_id: None,
                    rate_limit,
                    remaining,
                    refill: None,
                },
            )
            .await?;
        write_lines(args.out.join(file), [issued.secret.expose().to_owned()])?;
    }

    eprintln!("seeding {} devices", args.devices);
    let devices: Vec<String> = futures::stream::iter(0..args.devices)
        .map(|i| {
            let service = fast.devices.clone();
            async move {
                let id = DeviceId::parse(&format!("load-device-{i:06}"))?;
                let issued = service
                    .register(
                        &Actor::Operator,
                        NewDevice {
                            id: id.clone(),
                            organization_id: org.id,
                            name: None,
                            metadata: DeviceMetadata::default(),
                        },
                    )
                    .await?;
                Ok::<_, Error>(format!("{} {}", id.as_str(), issued.secret.expose()))
            }
        })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    write_lines(args.out.join("devices.txt"), devices)?;

    eprintln!(
        "seeding the mixed scenario's organization: {} keys",
        args.mixed_keys
    );
    let mixed_org = fast
        .orgs
        .create(owner.id, OrganizationName::parse("Mixed load")?)
        .await?;
    let admin = fast
        .keys
        .create(
            &Actor::Operator,
            NewApiKey::new(
                mixed_org.id,
                ApiKeyName::parse("mixed-admin")?,
                Scopes::new(vec![Scope::parse("admin")?])?,
            ),
        )
        .await?;
    write_lines(
        args.out.join("mixed_admin.txt"),
        [admin.secret.expose().to_owned()],
    )?;
    let read = Scopes::new(vec![Scope::parse("read")?])?;
    let mixed: Vec<String> = futures::stream::iter(0..args.mixed_keys)
        .map(|i| {
            let service = fast.keys.clone();
            let scopes = read.clone();
            async move {
                let new = NewApiKey::new(
                    mixed_org.id,
                    ApiKeyName::parse(&format!("mixed-{i}"))?,
                    scopes,
                );
                let issued = service.create(&Actor::Operator, new).await?;
                Ok::<_, Error>(format!("{} {}", issued.key.id, issued.secret.expose()))
            }
        })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    write_lines(args.out.join("mixed_keys.txt"), mixed)?;

    eprintln!("writing {} unknown keys", args.unknown_keys);
    let prefix = ApiKeyPrefix::parse(&config.api_keys.prefix)?;
    let mut random = [0u8; 64];
    let mut unknown = Vec::with_capacity(args.unknown_keys);
    while unknown.len() < args.unknown_keys {
        getrandom::fill(&mut random)?;
        if let Some(key) = ApiKeySecret::from_random(&prefix, &random) {
            unknown.push(key.expose().to_owned());
        }
    }
    write_lines(args.out.join("unknown_keys.txt"), unknown)?;
    Ok(())
}
