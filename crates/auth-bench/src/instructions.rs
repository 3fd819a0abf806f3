//! `auth-bench-instructions`: serves `--requests` requests of one scenario to the real
//! application in this process, for `scripts/instructions.sh` to count their instructions
//! under callgrind. No socket and no HTTP/1 codec: each request is handed to the service as
//! `actix_web::test::call_service` does, its body read as the server would write it, and
//! every answer is checked afterwards (a path that fails cheaply must not look fast).
//!
//! The application is `auth_http::app` over the state `auth-server serve` builds for the
//! in-memory store (`Store::open` and `wiring::app_state`), with rate limits off and logging at
//! `warn` as `scripts/bench.sh` runs it (and bcrypt at cost 4, which only the seeding uses);
//! one user with a live session, one organization with an API key and one device are created
//! through the services of that state. The `ceiling` scenario serves the bare handler of
//! `auth_bench::bare` instead, with the same token. The in-memory store has no verification
//! caches (it is as fast as one): a verification reads the store itself. `key-churn` is the
//! exception: its API keys are verified through the production cache (`MokaCache`) put in
//! front of the in-memory store, a cache of [`CHURN_CACHE`] entries cycled through
//! [`CHURN_KEYS`] keys, so that every verification is a miss, a lookup, an insertion and an
//! eviction, as on the cold path over Postgres without the round trip.
//!
//! The requests are built before they are counted, and only [`measured`] is counted: the
//! script passes `--toggle-collect` with its name, so setting up, warming up and checking
//! cost nothing in the counts.

use std::process::ExitCode;

use actix_web::body::{self, MessageBody};
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::rt::SystemRunner;
use actix_web::test::{self, TestRequest};
use actix_web::web::{self, Bytes};
use auth_bench::bare::{self, Verifier};
use auth_core::model::{
    ApiKeyName, DeviceId, DeviceMetadata, Email, OrganizationName, Password, PasswordPolicy, Scope,
    Scopes,
};
use auth_core::system::{OsSecretGenerator, SystemClock};
use auth_core::{Actor, ApiKeyPorts, ApiKeyService, NewApiKey, NewDevice, Registration};
use auth_infra::cache::MokaCache;
use auth_server::cli::Cli;
use auth_server::config::Config;
use auth_server::wiring::{self, Store};
use clap::{Parser, ValueEnum};
use secrecy::{ExposeSecret as _, SecretString};

type Error = Box<dyn std::error::Error>;
type Request = actix_http::Request;

/// The HS256 key of both applications. HMAC-SHA-256 costs the same for every key of at most
/// 64 bytes (one block), so its value does not change what is counted.
const JWT_KEY: &str = "instruction-count-signing-key-0123456789-abcdefghijkl";
const PASSWORD: &str = "violet tugboat margin 47!x";
/// Keys `key-churn` cycles through, and the entries of its cache: four keys for each entry.
const CHURN_KEYS: usize = 256;
const CHURN_CACHE: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// `GET /api/v1/auth/verify` to the bare handler.
    Ceiling,
    /// `GET /health/live`: the service's middleware alone.
    Live,
    /// `GET /api/v1/auth/verify` with the user's access token.
    Verify,
    /// `POST /api/v1/auth/verify-token` with the user's access token.
    VerifyToken,
    /// `POST /api/v1/api-keys/verify` of the API key, with one required scope.
    KeyCached,
    /// `POST /api/v1/api-keys/verify` of [`CHURN_KEYS`] keys in turn through a cache of
    /// [`CHURN_CACHE`] entries: every one a miss and an eviction.
    KeyChurn,
    /// `POST /api/v1/devices/authenticate` with the device's secret.
    Device,
}

#[derive(Debug, Parser)]
#[command(about = "Serves requests of one scenario in process, for callgrind to count")]
struct Args {
    /// The scenario.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Requests counted.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Requests served before the counted ones (first-use initialisation, caches).
    #[arg(long, default_value_t = 50)]
    warmup: usize,
}

/// The credentials the scenarios present.
struct Fixture {
    access_token: String,
    api_key: String,
    /// The keys `key-churn` cycles through (empty for the other scenarios).
    churn_keys: Vec<String>,
    device_id: String,
    device_secret: String,
}

/// The configuration `auth-server serve` reads, from defaults alone (the script clears the
/// environment), made to match the load harness: in memory, rate limits off, a known key.
fn config() -> Result<Config, Error> {
    let mut config = Cli::try_parse_with_env(["auth-server"])?.config;
    config.db.url = None;
    config.passwords.bcrypt_rounds = 4;
    config.jwt.secret_key = Some(SecretString::from(JWT_KEY));
    config.rate_limit.enabled = false;
    config.log.level = "warn".into();
    Ok(config)
}

/// A key of `org` with the scopes `read` and `write`, made by `keys`; its secret.
async fn new_key(
    keys: &ApiKeyService,
    org: auth_core::model::OrganizationId,
    name: &str,
) -> Result<String, Error> {
    let key = keys
        .create(
            &Actor::Operator,
            NewApiKey::new(
                org,
                ApiKeyName::parse(name)?,
                Scopes::new(vec![Scope::parse("read")?, Scope::parse("write")?])?,
            ),
        )
        .await?;
    Ok(key.secret.expose().to_owned())
}

/// One user logged in, an organization it owns with an API key and a device, all through the
/// application's own services; and `churn` more keys.
async fn seed(state: &auth_http::AppState, churn: usize) -> Result<Fixture, Error> {
    let email = Email::parse("instructions@example.com")?;
    let user = state
        .auth
        .register(
            Registration {
                email: email.clone(),
                password: PasswordPolicy::default().new_password(PASSWORD)?,
                display_name: None,
            },
            false,
        )
        .await?;
    let pair = state
        .auth
        .login(&email, &Password::presented(PASSWORD)?)
        .await?;
    let org = state
        .orgs
        .create(user.id, OrganizationName::parse("Instructions")?)
        .await?;
    let api_key = new_key(&state.keys, org.id, "instructions").await?;
    let mut churn_keys = Vec::with_capacity(churn);
    for n in 0..churn {
        churn_keys.push(new_key(&state.keys, org.id, &format!("churn {n}")).await?);
    }
    let device_id = DeviceId::parse("instructions-device-000001")?;
    let device = state
        .devices
        .register(
            &Actor::Operator,
            NewDevice {
                id: device_id.clone(),
                organization_id: org.id,
                name: None,
                metadata: DeviceMetadata::default(),
            },
        )
        .await?;
    Ok(Fixture {
        access_token: pair.access_token.expose_secret().to_owned(),
        api_key,
        churn_keys,
        device_id: device_id.as_str().to_owned(),
        device_secret: device.secret.expose().to_owned(),
    })
}

/// The client's address, as a connection would give it (the request context and the rate
/// limits read it).
fn peer() -> std::net::SocketAddr {
    ([127, 0, 0, 1], 40000).into()
}

fn get(path: &str, token: Option<&str>) -> Request {
    let mut req = TestRequest::get().uri(path).peer_addr(peer());
    if let Some(token) = token {
        req = req.insert_header((header::AUTHORIZATION, format!("Bearer {token}")));
    }
    req.to_request()
}

fn post_json(path: &str, body: &serde_json::Value) -> Request {
    TestRequest::post()
        .uri(path)
        .peer_addr(peer())
        .insert_header(header::ContentType::json())
        .set_payload(body.to_string())
        .to_request()
}

/// The `n`th request of `scenario`.
fn request(scenario: Scenario, f: &Fixture, n: usize) -> Request {
    match scenario {
        Scenario::Ceiling | Scenario::Verify => get(bare::PATH, Some(&f.access_token)),
        Scenario::Live => get("/health/live", None),
        Scenario::VerifyToken => post_json(
            "/api/v1/auth/verify-token",
            &serde_json::json!({ "token": f.access_token }),
        ),
        Scenario::KeyCached => post_json(
            "/api/v1/api-keys/verify",
            &serde_json::json!({ "key": f.api_key, "required_scopes": ["read"] }),
        ),
        Scenario::KeyChurn => post_json(
            "/api/v1/api-keys/verify",
            &serde_json::json!({
                "key": f.churn_keys[n % f.churn_keys.len()],
                "required_scopes": ["read"],
            }),
        ),
        Scenario::Device => post_json(
            "/api/v1/devices/authenticate",
            &serde_json::json!({ "device_id": f.device_id, "device_secret": f.device_secret }),
        ),
    }
}

/// What the body of a successful answer of `scenario` contains.
fn expected(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Live => "",
        Scenario::Device => r#""access_token":""#,
        Scenario::Ceiling
        | Scenario::Verify
        | Scenario::VerifyToken
        | Scenario::KeyCached
        | Scenario::KeyChurn => r#""valid":true"#,
    }
}

/// Status and body of each answer, in order.
async fn answer<S, B>(
    service: &S,
    requests: Vec<Request>,
) -> Result<Vec<(StatusCode, Bytes)>, Error>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut answers = Vec::with_capacity(requests.len());
    for req in requests {
        let res = test::try_call_service(service, req).await?;
        let status = res.status();
        let body = body::to_bytes(res.into_body()).await.map_err(Into::into)?;
        answers.push((status, body));
    }
    Ok(answers)
}

/// The counted part: `requests` served one after the other. Never inlined, so that callgrind's
/// `--toggle-collect` finds it by name.
#[inline(never)]
fn measured<S, B>(
    system: &SystemRunner,
    service: &S,
    requests: Vec<Request>,
) -> Result<Vec<(StatusCode, Bytes)>, Error>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    system.block_on(answer(service, requests))
}

fn check(answers: &[(StatusCode, Bytes)], expected: &str) -> Result<(), Error> {
    for (i, (status, body)) in answers.iter().enumerate() {
        let found = expected.is_empty()
            || body
                .windows(expected.len())
                .any(|w| w == expected.as_bytes());
        if *status != StatusCode::OK || !found {
            return Err(format!(
                "answer {i} was {status} {}; expected 200 with {expected}",
                String::from_utf8_lossy(body)
            )
            .into());
        }
    }
    Ok(())
}

/// Warms `service` up, then serves the counted requests and checks every answer.
fn serve<S, B>(
    system: &SystemRunner,
    service: &S,
    args: &Args,
    fixture: &Fixture,
) -> Result<(), Error>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let batch = |from: usize, n: usize| {
        (from..from + n)
            .map(|i| request(args.scenario, fixture, i))
            .collect::<Vec<_>>()
    };
    let want = expected(args.scenario);
    check(
        &system.block_on(answer(service, batch(0, args.warmup)))?,
        want,
    )?;
    let requests = batch(args.warmup, args.requests);
    check(&measured(system, service, requests)?, want)
}

fn run(args: &Args) -> Result<(), Error> {
    let config = config()?;
    auth_server::telemetry::init(&config);
    let system = actix_web::rt::System::new();
    let store = Store::open(&config)?;
    let mut state = system.block_on(async { wiring::app_state(&config, &store) })?;
    let churn = if args.scenario == Scenario::KeyChurn {
        let Store::Memory(memory) = &store else {
            return Err("the instruction counts run on the in-memory store".into());
        };
        state.keys = ApiKeyService::new(
            ApiKeyPorts {
                keys: memory.api_keys.clone(),
                orgs: state.orgs.clone(),
                cache: std::sync::Arc::new(MokaCache::new(
                    "api_keys",
                    CHURN_CACHE,
                    config.cache.ttl(),
                )),
                clock: std::sync::Arc::new(SystemClock),
                secrets: std::sync::Arc::new(OsSecretGenerator),
            },
            config.api_keys.key_prefix()?,
        );
        CHURN_KEYS
    } else {
        0
    };
    let fixture = system.block_on(seed(&state, churn))?;
    if args.scenario == Scenario::Ceiling {
        let verifier = web::Data::new(Verifier::hs256(
            JWT_KEY.as_bytes(),
            &config.jwt.issuer,
            &config.jwt.audience,
        ));
        let service = system.block_on(test::init_service(bare::app(verifier)));
        serve(&system, &service, args, &fixture)
    } else {
        let service = system.block_on(test::init_service(auth_http::app(state)));
        serve(&system, &service, args, &fixture)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
