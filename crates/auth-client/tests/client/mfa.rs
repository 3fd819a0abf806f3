//! The second login step: a user with a TOTP factor, enrolled through the API, logs in with
//! `sign_in` and `complete_mfa`; `login` names the step instead of failing to decode.
//!
//! Codes are computed here from the enrolment secret. The service reads the real clock and
//! refuses a step already spent, so the confirmation spends the current step and the login
//! takes the next one (inside the service's ±1 step window).

use auth_client::api::{RecoveryCodes, TotpConfirmRequest, TotpEnrolRequest, TotpEnrolment};
use auth_client::{
    AuthClient, Error, ErrorCode, ExposeSecret as _, LoginOutcome, MfaChallenge, Operation,
    SecretString, TokenPair,
};
use totp_rs::{Algorithm, Builder, Secret};

use crate::common::{PASSWORD, TestServer, exposed, password, user};

/// The code of `secret` (base32) `steps` steps from now.
fn code(secret: &str, steps: i64) -> String {
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(Secret::try_from_base32(secret).unwrap())
        .build()
        .unwrap();
    let now = chrono::Utc::now().timestamp() + steps * 30;
    totp.generate(u64::try_from(now).unwrap()).to_string()
}

struct Enrolled {
    email: String,
    secret: String,
    recovery: Vec<String>,
}

/// A new user with a confirmed factor (the code of the current step spent). The client has
/// no enrolment methods, so the two calls are made here, with the API's own bodies.
async fn enrolled(server: &TestServer) -> Enrolled {
    let client = server.client();
    let (email, pair) = user(&client).await;
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/api/v1/users/me/mfa/totp", server.url()))
        .bearer_auth(pair.access_token.expose_secret())
        .json(&TotpEnrolRequest {
            password: PASSWORD.into(),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let enrolment: TotpEnrolment = res.json().await.unwrap();
    let secret = enrolment.secret.into_inner();
    let res = http
        .post(format!("{}/api/v1/users/me/mfa/totp/confirm", server.url()))
        .bearer_auth(pair.access_token.expose_secret())
        .json(&TotpConfirmRequest {
            code: code(&secret, 0).into(),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let codes: RecoveryCodes = res.json().await.unwrap();
    let recovery: Vec<String> = codes
        .recovery_codes
        .into_iter()
        .map(auth_client::api::Redacted::into_inner)
        .collect();
    assert_eq!(recovery.len(), 10);
    Enrolled {
        email,
        secret,
        recovery,
    }
}

/// A code that is none of the codes the service may accept now (steps -1..=2).
fn wrong_code(secret: &str) -> SecretString {
    let near: Vec<String> = (-1..=2).map(|step| code(secret, step)).collect();
    let wrong = ["000000", "111111", "222222", "333333", "444444"]
        .into_iter()
        .find(|c| !near.iter().any(|n| n == c))
        .unwrap();
    SecretString::from(wrong)
}

/// The challenge of a login that must ask for the second factor.
async fn challenge(client: &AuthClient, email: &str) -> MfaChallenge {
    match client.sign_in(email, &password()).await.unwrap() {
        LoginOutcome::MfaRequired(challenge) => challenge,
        LoginOutcome::Tokens(_) => panic!("tokens before the second factor"),
    }
}

/// Neither `Debug` nor `Display` of `shown` holds the challenge's token.
fn hides_token(challenge: &MfaChallenge, shown: &str) {
    let token = exposed(&challenge.mfa_token);
    assert!(!token.is_empty());
    assert!(!shown.contains(token), "{shown}");
}

/// The pair opens a session of `email`'s user, as the service and local verification see it.
async fn opens_a_session(client: &AuthClient, pair: &TokenPair, email: &str) {
    let session = client.verify_session(&pair.access_token).await.unwrap();
    assert_eq!(session.user_id, pair.user.id);
    assert_eq!(session.email, email);
    let user = client
        .verify_access_token(exposed(&pair.access_token))
        .await
        .unwrap();
    assert_eq!(
        (user.user_id, user.session_id),
        (pair.user.id, session.session_id)
    );
    let rotated = client.refresh(&pair.refresh_token).await.unwrap();
    assert_eq!(rotated.user.id, pair.user.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_then_complete_with_a_code() {
    let server = TestServer::start().await;
    let client = server.client();
    let u = enrolled(&server).await;

    let challenge = challenge(&client, &u.email).await;
    assert_eq!(challenge.expires_in, 300);
    hides_token(&challenge, &format!("{challenge:?}"));

    // A wrong code is the typed refusal, and leaves the token usable.
    let wrong = client
        .complete_mfa(&challenge.mfa_token, &wrong_code(&u.secret))
        .await
        .unwrap_err();
    assert!(wrong.is_code(&ErrorCode::InvalidMfaCode), "{wrong}");
    assert_eq!(wrong.status(), Some(401));
    assert!(!wrong.is_transient());
    hides_token(&challenge, &format!("{wrong} {wrong:?}"));

    // The confirmation spent the current step: the next one's code is accepted.
    let right = SecretString::from(code(&u.secret, 1));
    let pair = client
        .complete_mfa(&challenge.mfa_token, &right)
        .await
        .unwrap();
    opens_a_session(&client, &pair, &u.email).await;
    let debug = format!("{pair:?}");
    assert!(!debug.contains(exposed(&pair.access_token)));

    // A right code spent the token: it is now an unknown one.
    let spent = client
        .complete_mfa(
            &challenge.mfa_token,
            &SecretString::from(u.recovery[0].clone()),
        )
        .await
        .unwrap_err();
    assert!(spent.is_code(&ErrorCode::InvalidCredentials), "{spent}");
    let unknown = client
        .complete_mfa(&SecretString::from("no-such-token"), &right)
        .await
        .unwrap_err();
    assert!(unknown.is_code(&ErrorCode::InvalidCredentials), "{unknown}");

    let metrics = client.metrics();
    let step = metrics.operation(Operation::LoginMfa).unwrap();
    assert_eq!((step.calls, step.ok, step.api_errors), (4, 1, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_code_works_once() {
    let server = TestServer::start().await;
    let client = server.client();
    let u = enrolled(&server).await;
    let recovery = SecretString::from(u.recovery[3].clone());

    let pair = client
        .complete_mfa(&challenge(&client, &u.email).await.mfa_token, &recovery)
        .await
        .unwrap();
    opens_a_session(&client, &pair, &u.email).await;

    let again = client
        .complete_mfa(&challenge(&client, &u.email).await.mfa_token, &recovery)
        .await
        .unwrap_err();
    assert!(again.is_code(&ErrorCode::InvalidMfaCode), "{again}");

    // Another one still works, typed in capitals and without its dashes.
    let typed = u.recovery[4].replace('-', "").to_uppercase();
    client
        .complete_mfa(
            &challenge(&client, &u.email).await.mfa_token,
            &SecretString::from(typed),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_names_the_second_factor() {
    let server = TestServer::start().await;
    let client = server.client();
    let u = enrolled(&server).await;

    // Before the client knew the step, this was "the 200 answer is not the expected JSON".
    let err = client.login(&u.email, &password()).await.unwrap_err();
    let Error::MfaRequired(challenge) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(challenge.expires_in, 300);
    assert!(!err.is_transient());
    assert_eq!(err.status(), None);
    assert!(err.mfa_challenge().is_some());
    hides_token(challenge, &format!("{err} {err:?}"));

    // The challenge the error carries completes the login.
    let pair = client
        .complete_mfa(
            &challenge.mfa_token,
            &SecretString::from(u.recovery[0].clone()),
        )
        .await
        .unwrap();
    opens_a_session(&client, &pair, &u.email).await;

    // A wrong password is still the usual refusal, for both entries.
    let wrong = SecretString::from("wrong password!");
    for err in [
        client.login(&u.email, &wrong).await.unwrap_err(),
        client.sign_in(&u.email, &wrong).await.unwrap_err(),
    ] {
        assert!(err.is_code(&ErrorCode::InvalidCredentials), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_factor_sign_in_answers_tokens() {
    let server = TestServer::start().await;
    let client = server.client();
    let (email, _) = user(&client).await;
    let LoginOutcome::Tokens(pair) = client.sign_in(&email, &password()).await.unwrap() else {
        panic!("no second factor was enrolled");
    };
    opens_a_session(&client, &pair, &email).await;
    let pair = client
        .sign_in(&email, &password())
        .await
        .unwrap()
        .into_tokens()
        .unwrap();
    assert_eq!(pair.token_type, "Bearer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_lock_the_account() {
    let server = TestServer::start().await;
    let client = server.client();
    let u = enrolled(&server).await;
    let challenge = challenge(&client, &u.email).await;
    let wrong = wrong_code(&u.secret);
    // The right password counts until a right code: four wrong codes reach the threshold (5).
    for _ in 0..4 {
        let err = client
            .complete_mfa(&challenge.mfa_token, &wrong)
            .await
            .unwrap_err();
        assert!(err.is_code(&ErrorCode::InvalidMfaCode), "{err}");
    }
    let locked = client
        .complete_mfa(
            &challenge.mfa_token,
            &SecretString::from(code(&u.secret, 1)),
        )
        .await
        .unwrap_err();
    assert!(locked.is_code(&ErrorCode::TooManyAttempts), "{locked}");
    assert_eq!(locked.status(), Some(429));
    assert!(locked.retry_after().is_some_and(|wait| !wait.is_zero()));
    // Locked is locked: not retried inside the call.
    let step = client.metrics();
    let step = step.operation(Operation::LoginMfa).unwrap();
    assert_eq!(step.attempts, step.calls);
}
