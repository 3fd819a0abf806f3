//! Sending one call: the URL, the attempts with their pauses, the breaker, the per-attempt
//! timeout, and the call's metrics.
//!
//! Retry rules (see [`Operation::is_idempotent`]):
//!
//! - a connection that could not be made (nothing was sent) is retried for every operation;
//! - a timeout, a connection broken during the exchange, and the answers 429 (except
//!   `TOO_MANY_ATTEMPTS`, an account lock), 502, 503 and 504 are retried for idempotent
//!   operations only, since the request may have been applied;
//! - nothing else is retried: a 4xx answer is the service's verdict.
//!
//! Pauses grow exponentially with jitter; a `Retry-After` is honoured (the pause is at least
//! that long), and one longer than `max_retry_after` ends the call with the service's answer.
//! The breaker sees every attempt: connection failures, timeouts and 5xx answers count as
//! failures, any other answer as a success.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder as _, ExponentialBuilder};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use crate::breaker::Breaker;
use crate::config::{ClientConfig, RetryPolicy};
use crate::error::{ApiError, Error, ErrorCode};
use crate::stats::{BreakerMetrics, Metrics, Operation, Outcome};

/// Credentials sent with a call.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    None,
    Bearer(&'a str),
    ApiKey(&'a str),
}

/// One call, as the client methods describe it.
pub(crate) struct Call<'a> {
    pub(crate) op: Operation,
    pub(crate) method: Method,
    /// Path segments after the base URL, each percent-encoded as needed.
    pub(crate) segments: &'a [&'a str],
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) auth: Auth<'a>,
    /// A JSON body, serialised once.
    pub(crate) body: Option<Vec<u8>>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(op: Operation, method: Method, segments: &'a [&'a str]) -> Self {
        Self {
            op,
            method,
            segments,
            query: Vec::new(),
            auth: Auth::None,
            body: None,
        }
    }

    pub(crate) fn auth(mut self, auth: Auth<'a>) -> Self {
        self.auth = auth;
        self
    }

    pub(crate) fn query(mut self, name: &'static str, value: String) -> Self {
        self.query.push((name, value));
        self
    }

    /// With `body`, a body of `auth-api`. Serialising one cannot fail (string keys, no
    /// custom serializer); were it to, the request would go without a body and the service
    /// answer 400, never anything sent half-written.
    pub(crate) fn json(mut self, body: &impl serde::Serialize) -> Self {
        self.body = serde_json::to_vec(body).ok();
        self
    }
}

/// A complete answer of the service.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    request_id: Option<String>,
    retry_after: Option<Duration>,
}

impl Answer {
    pub(crate) fn into_error(self) -> Error {
        ApiError::from_answer(self.status, &self.body, self.request_id, self.retry_after).into()
    }

    /// The body as `T`. The error names the position, never the content (which may hold a
    /// secret).
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::UnexpectedResponse(format!(
                "the {} answer is not the expected JSON ({:?} error at line {}, column {})",
                self.status,
                e.classify(),
                e.line(),
                e.column()
            ))
        })
    }
}

/// What to do after an attempt.
enum Next {
    Stop,
    Retry { at_least: Duration },
}

/// The HTTP side of a client, shared by its clones.
pub(crate) struct Transport {
    http: reqwest::Client,
    base: Url,
    retry: RetryPolicy,
    breaker: Option<Breaker>,
    pub(crate) metrics: Metrics,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("base", &self.base.as_str())
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub(crate) fn new(config: &ClientConfig) -> Result<Self, Error> {
        Ok(Self {
            http: http_client(config)?,
            base: config.parsed_base_url()?,
            retry: config.retry.clone(),
            breaker: config.breaker.as_ref().map(Breaker::new),
            metrics: Metrics::default(),
        })
    }

    pub(crate) fn breaker_metrics(&self) -> BreakerMetrics {
        self.breaker
            .as_ref()
            .map_or_else(BreakerMetrics::disabled, Breaker::metrics)
    }

    /// Time until the open breaker lets a probe through, if it is open.
    pub(crate) fn breaker_retry_in(&self) -> Option<Duration> {
        self.breaker.as_ref().map(Breaker::retry_in)
    }

    /// The URL of `segments` under the base URL.
    pub(crate) fn endpoint(&self, segments: &[&str]) -> Result<Url, Error> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| Error::Config("the base URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn url(&self, call: &Call<'_>) -> Result<Url, Error> {
        let mut url = self.endpoint(call.segments)?;
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        Ok(url)
    }

    /// Runs `call` (with its retries), checks that the final status is one of `expect`, and
    /// decodes the answer with `decode`; records the call's outcome and latency.
    pub(crate) async fn call<T>(
        &self,
        call: Call<'_>,
        timeout: Duration,
        expect: &[u16],
        decode: impl FnOnce(&Answer) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let result = match self.attempts(&call, timeout).await {
            Ok(answer) if expect.contains(&answer.status) => decode(&answer),
            Ok(answer) => Err(answer.into_error()),
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(Error::Api(e)) if e.status < 500 => Outcome::ApiError,
            Err(Error::CircuitOpen { .. }) => Outcome::CircuitOpen,
            Err(_) => Outcome::Failure,
        };
        self.metrics.call(call.op, outcome, started.elapsed());
        result
    }

    async fn attempts(&self, call: &Call<'_>, timeout: Duration) -> Result<Answer, Error> {
        let url = self.url(call)?;
        // Checked before any attempt: a credential that cannot be a header is the caller's
        // error, never a transport failure to retry or to count against the breaker.
        let credential = credential_header(call.auth)?;
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.initial_backoff)
            .with_max_delay(self.retry.max_backoff)
            .with_max_times(usize::try_from(self.retry.max_retries).unwrap_or(usize::MAX))
            .with_jitter()
            .build();
        let mut retry = false;
        loop {
            let permit = match &self.breaker {
                Some(breaker) => match breaker.acquire() {
                    Ok(permit) => Some(permit),
                    Err(retry_in) => return Err(Error::CircuitOpen { retry_in }),
                },
                None => None,
            };
            self.metrics.attempt(call.op, retry);
            let result = self.send(call, &url, credential.as_ref(), timeout).await;
            if let (Some(breaker), Some(permit)) = (&self.breaker, permit) {
                let failed = match &result {
                    Ok(answer) => answer.status >= 500,
                    Err(Error::Connect(_) | Error::Timeout(_) | Error::Transport(_)) => true,
                    Err(_) => false,
                };
                breaker.record(permit, failed);
            }
            let Next::Retry { at_least } = self.next(call.op, &result) else {
                return result;
            };
            let Some(pause) = backoff.next() else {
                return result;
            };
            let pause = pause.max(at_least);
            tracing::debug!(
                operation = call.op.name(),
                pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                "retrying a call to the auth service"
            );
            tokio::time::sleep(pause).await;
            retry = true;
        }
    }

    /// Whether the outcome of an attempt is worth another one.
    fn next(&self, op: Operation, result: &Result<Answer, Error>) -> Next {
        let retry_now = Next::Retry {
            at_least: Duration::ZERO,
        };
        match result {
            Err(Error::Connect(_)) => retry_now,
            Err(Error::Timeout(_) | Error::Transport(_)) if op.is_idempotent() => retry_now,
            Err(_) => Next::Stop,
            Ok(_) if !op.is_idempotent() => Next::Stop,
            Ok(answer) => match answer.status {
                429 | 502..=504 => {
                    if answer.status == 429 && locked(answer) {
                        return Next::Stop;
                    }
                    match answer.retry_after {
                        Some(wait) if wait > self.retry.max_retry_after => Next::Stop,
                        Some(wait) => Next::Retry { at_least: wait },
                        None => retry_now,
                    }
                }
                _ => Next::Stop,
            },
        }
    }

    async fn send(
        &self,
        call: &Call<'_>,
        url: &Url,
        credential: Option<&(header::HeaderName, HeaderValue)>,
        timeout: Duration,
    ) -> Result<Answer, Error> {
        let mut request = self
            .http
            .request(call.method.clone(), url.clone())
            .timeout(timeout);
        if let Some((name, value)) = credential {
            request = request.header(name.clone(), value.clone());
        }
        if let Some(body) = &call.body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = request.send().await.map_err(|e| classify(e, timeout))?;
        let status = response.status().as_u16();
        let request_id = header_str(response.headers(), "x-request-id");
        let retry_after = retry_after(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| classify(e, timeout))?
            .to_vec();
        Ok(Answer {
            status,
            body,
            request_id,
            retry_after,
        })
    }
}

/// An HTTP client with the configured pool and timeouts.
pub(crate) fn http_client(config: &ClientConfig) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(config.pool_max_idle_per_host)
        .tcp_keepalive(config.tcp_keepalive)
        .user_agent(config.user_agent.clone())
        // The API never redirects; a redirect would carry credentials elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))
}

/// A 429 for a locked account: waiting minutes inside a call would help nobody.
fn locked(answer: &Answer) -> bool {
    #[derive(serde::Deserialize)]
    struct Code {
        code: Option<String>,
    }
    serde_json::from_slice::<Code>(&answer.body)
        .ok()
        .and_then(|c| c.code)
        .is_some_and(|c| ErrorCode::parse(&c) == ErrorCode::TooManyAttempts)
}

fn classify(e: reqwest::Error, timeout: Duration) -> Error {
    // A connect timeout is a connect error too: nothing was sent.
    if e.is_connect() {
        Error::Connect(Arc::new(e))
    } else if e.is_timeout() {
        Error::Timeout(timeout)
    } else {
        Error::Transport(Arc::new(e))
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `Retry-After` in seconds or as an HTTP date (RFC 9110 §10.2.3).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// The header carrying the call's credential, marked sensitive (kept out of reqwest's
/// `Debug`).
///
/// # Errors
/// [`Error::InvalidArgument`] for a credential that is not visible ASCII.
fn credential_header(auth: Auth<'_>) -> Result<Option<(header::HeaderName, HeaderValue)>, Error> {
    let (name, credential, text, what) = match auth {
        Auth::None => return Ok(None),
        Auth::Bearer(token) => (
            header::AUTHORIZATION,
            token,
            format!("Bearer {token}"),
            "a token",
        ),
        Auth::ApiKey(key) => (
            header::HeaderName::from_static("x-api-key"),
            key,
            key.to_owned(),
            "an API key",
        ),
    };
    let invalid = || Error::InvalidArgument(format!("{what} must be visible ASCII"));
    if credential.is_empty() || !credential.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    let mut value = HeaderValue::from_str(&text).map_err(|_| invalid())?;
    value.set_sensitive(true);
    Ok(Some((name, value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(retry_after).unwrap(),
        );
        h
    }

    #[test]
    fn reads_retry_after_in_both_forms() {
        assert_eq!(retry_after(&headers("2")), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:49:37 GMT")),
            Some(Duration::ZERO)
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let wait = retry_after(&headers(&later)).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    fn transport() -> Transport {
        Transport::new(&ClientConfig::new("http://localhost:1/prefix/")).unwrap()
    }

    fn answer(status: u16, body: &str, retry_after: Option<u64>) -> Result<Answer, Error> {
        Ok(Answer {
            status,
            body: body.as_bytes().to_vec(),
            request_id: None,
            retry_after: retry_after.map(Duration::from_secs),
        })
    }

    fn retries(next: &Next) -> Option<Duration> {
        match next {
            Next::Stop => None,
            Next::Retry { at_least } => Some(*at_least),
        }
    }

    #[test]
    fn retries_transient_answers_of_idempotent_calls_only() {
        let t = transport();
        let verify = Operation::VerifyApiKey;
        let login = Operation::Login;
        for status in [502, 503, 504] {
            assert_eq!(
                retries(&t.next(verify, &answer(status, "", None))),
                Some(Duration::ZERO)
            );
            assert_eq!(retries(&t.next(login, &answer(status, "", None))), None);
        }
        for status in [400, 401, 403, 404, 409, 422, 500] {
            assert_eq!(
                retries(&t.next(verify, &answer(status, "", None))),
                None,
                "{status}"
            );
        }
        let limited = r#"{"code":"RATE_LIMITED"}"#;
        assert_eq!(
            retries(&t.next(verify, &answer(429, limited, Some(3)))),
            Some(Duration::from_secs(3))
        );
        // Longer than max_retry_after (10 s): the caller gets the answer at once.
        assert_eq!(
            retries(&t.next(verify, &answer(429, limited, Some(60)))),
            None
        );
        let locked = r#"{"code":"TOO_MANY_ATTEMPTS"}"#;
        assert_eq!(
            retries(&t.next(verify, &answer(429, locked, Some(1)))),
            None
        );
        assert_eq!(
            retries(&t.next(login, &answer(429, limited, Some(1)))),
            None
        );
        assert_eq!(
            retries(&t.next(login, &Err(Error::Timeout(Duration::from_secs(1))))),
            None
        );
        assert_eq!(
            retries(&t.next(verify, &Err(Error::Timeout(Duration::from_secs(1))))),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn paths_are_appended_to_the_base_and_encoded() {
        let t = transport();
        let call = Call::new(
            Operation::GetDevice,
            Method::GET,
            &["api", "v1", "devices", "a/b?c"],
        )
        .query("organization_id", "x y".into());
        assert_eq!(
            t.url(&call).unwrap().as_str(),
            "http://localhost:1/prefix/api/v1/devices/a%2Fb%3Fc?organization_id=x+y"
        );
    }

    #[test]
    fn credentials_that_cannot_be_headers_are_the_callers_error() {
        for auth in [Auth::Bearer("tok\nen"), Auth::ApiKey("ak_live_é")] {
            assert!(matches!(
                credential_header(auth),
                Err(Error::InvalidArgument(_))
            ));
        }
        let (name, value) = credential_header(Auth::Bearer("abc")).unwrap().unwrap();
        assert_eq!(name, header::AUTHORIZATION);
        assert_eq!(value, "Bearer abc");
        assert!(value.is_sensitive());
        assert!(credential_header(Auth::None).unwrap().is_none());
    }
}
