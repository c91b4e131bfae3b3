//! Per-instance resources: an OpenRouter key and an AgentMail inbox (convos-contracts §4).
//!
//! Both clients share [`Http`]: Bearer auth from a [`SecretString`], the pool's `User-Agent`
//! ([`crate::USER_AGENT`], as the Sprites client sends), one request timeout, and the bounded
//! retries of [`crate::retry::run`] on 429 (honouring `Retry-After`), 408, 5xx, timeouts and
//! connection errors. Every other 4xx is permanent. No secret — the
//! management key, the API key or a created key — ever reaches `Debug` output, an error or a
//! log line: they live in [`SecretString`]s and only in sensitive header values.

pub mod agentmail;
pub mod openrouter;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::Instrument;
use url::Url;

pub use agentmail::{AgentMailClient, AgentMailSettings, InboxInfo};
pub use openrouter::{CreatedKey, KeyInfo, OpenRouterClient, OpenRouterSettings};

/// A failed resource call. `transient` means trying again later may succeed (rate limits,
/// 5xx, timeouts, connection errors after the retries inside the client ran out); otherwise
/// the request itself was refused (401, 400, 403…).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ResourceError {
    pub transient: bool,
    pub message: String,
}

impl ResourceError {
    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        ResourceError { transient: false, message: message.into() }
    }

    pub(crate) fn transient(message: impl Into<String>) -> Self {
        ResourceError { transient: true, message: message.into() }
    }
}

pub use crate::retry::RetryPolicy;
use crate::retry::{Verdict, parse_retry_after};

/// The resource clients' retry pace: the shared default, its backoff starting at half a second.
pub(crate) fn default_retry() -> RetryPolicy {
    RetryPolicy { base_delay: Duration::from_millis(500), ..RetryPolicy::default() }
}

/// Per attempt, connect to last body byte, unless a client is given another.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a failed attempt may be sent again inside the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Reads, deletes and creates the server deduplicates: any transient failure is retried.
    Safe,
    /// A create the server does not deduplicate: resent only when the server certainly did
    /// not act on it (429, or no connection made). After a timeout, a 5xx or a broken
    /// connection the key may exist, so the failure goes back to the caller, who recorded the
    /// request and looks the result up before asking again (issue 19.7).
    OnlyIfUnprocessed,
}

/// A final answer that was not retried away: any status the caller must interpret.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, ResourceError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ResourceError::permanent(format!("{what}: undecodable answer ({}): {e}", self.status))
        })
    }

    /// The permanent error for a refused request.
    pub fn refused(&self, what: &str) -> ResourceError {
        ResourceError::permanent(format!("{what}: HTTP {}: {}", self.status.as_u16(), excerpt(&self.body)))
    }
}

/// What both clients share: the HTTP client, the Bearer header and the retry policy.
#[derive(Clone)]
pub(crate) struct Http {
    pub client: reqwest::Client,
    pub secret: SecretString,
    pub retry: RetryPolicy,
    /// Per attempt, connect to last body byte.
    pub request_timeout: Duration,
    /// `openrouter` or `agentmail`, for messages and logs.
    pub service: &'static str,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("service", &self.service)
            .field("secret", &"[redacted]")
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// A failed attempt, and what decides whether it is sent again.
struct Failed {
    error: ResourceError,
    /// The server's `Retry-After`.
    asked: Option<Duration>,
    /// The server certainly did not act on the request: a 429, or no connection made.
    unprocessed: bool,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error.message)
    }
}

impl Failed {
    fn verdict(&self, replay: Replay) -> Verdict {
        match self.asked {
            _ if !self.error.transient => Verdict::GiveUp,
            _ if replay == Replay::OnlyIfUnprocessed && !self.unprocessed => Verdict::GiveUp,
            Some(asked) => Verdict::ResendAfter(asked),
            None => Verdict::Resend,
        }
    }
}

impl Http {
    fn auth(&self) -> Result<HeaderValue, ResourceError> {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", self.secret.expose_secret())).map_err(|_| {
                ResourceError::permanent(format!(
                    "{}: the key contains characters not allowed in a header",
                    self.service
                ))
            })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// Sends the request `build` makes (once per attempt) until it gets an answer that is not
    /// worth retrying or the attempts run out. `Ok` holds any such answer, 4xx included.
    pub async fn call(
        &self,
        operation: &'static str,
        replay: Replay,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Reply, ResourceError> {
        let span = tracing::info_span!("resource", service = self.service, operation);
        let what = format!("{} {operation}", self.service);
        let auth = self.auth()?;
        async {
            let attempt = |_| self.attempt(&what, &auth, &build);
            let verdict = |failed: &Failed, _| failed.verdict(replay);
            match crate::retry::run(&self.retry, attempt, verdict).await {
                (Ok(reply), attempts) => {
                    tracing::debug!(status = reply.status.as_u16(), attempts, "resource call answered");
                    Ok(reply)
                }
                (Err(Failed { mut error, asked, .. }), attempts) => {
                    if let Some(asked) = asked.filter(|asked| *asked > self.retry.max_server_delay) {
                        // Rate limited for longer than the policy waits: the caller is told how long.
                        error.message = format!("{} (retry after {}s)", error.message, asked.as_secs());
                    }
                    tracing::warn!(attempts, error = %error, "resource call failed");
                    Err(error)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// One request: `Ok` for an answer not worth retrying, whatever its status.
    async fn attempt(
        &self,
        what: &str,
        auth: &HeaderValue,
        build: &impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Reply, Failed> {
        let failed = |error, asked, unprocessed| Failed { error, asked, unprocessed };
        // Set per request: the reqwest client is shared and may have been built without it.
        let request = build(&self.client)
            .header(header::USER_AGENT, crate::USER_AGENT)
            .header(header::AUTHORIZATION, auth.clone())
            .timeout(self.request_timeout);
        let response = match request.send().await {
            Err(e) if e.is_builder() => {
                let error = ResourceError::permanent(format!("{what}: bad request: {}", e.without_url()));
                return Err(failed(error, None, false));
            }
            Err(e) => {
                let unprocessed = e.is_connect();
                return Err(failed(
                    ResourceError::transient(format!("{what}: {}", transport(e))),
                    None,
                    unprocessed,
                ));
            }
            Ok(response) => response,
        };
        let status = response.status();
        let asked = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        match response.bytes().await {
            Err(e) => Err(failed(ResourceError::transient(format!("{what}: {}", transport(e))), None, false)),
            Ok(body) if !retryable(status) => Ok(Reply { status, body }),
            Ok(body) => {
                let message = format!("{what}: HTTP {}: {}", status.as_u16(), excerpt(&body));
                Err(failed(ResourceError::transient(message), asked, status == StatusCode::TOO_MANY_REQUESTS))
            }
        }
    }
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

fn transport(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    format!("{kind}: {}", e.without_url())
}

/// `Retry-After` in seconds (fractions allowed); HTTP dates fall back to backoff.
/// At most 300 characters of an error body, on one line.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// `base` with `segments` appended, each percent-encoded like `encodeURIComponent` (so the
/// `@` of an inbox id travels as `%40`).
pub(crate) fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    let mut path = url.path().trim_end_matches('/').to_string();
    for segment in segments {
        path.push('/');
        for b in segment.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                path.push(b as char);
            } else {
                path.push_str(&format!("%{b:02X}"));
            }
        }
    }
    url.set_path(&path);
    url
}

pub(crate) fn parse_time(value: Option<&str>) -> Option<OffsetDateTime> {
    value.and_then(|v| OffsetDateTime::parse(v, &Rfc3339).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_encode_segments() {
        let base: Url = "https://api.agentmail.to/v0".parse().unwrap();
        assert_eq!(
            endpoint(&base, &["inboxes", "a@b.to"]).as_str(),
            "https://api.agentmail.to/v0/inboxes/a%40b.to"
        );
        let slash: Url = "https://openrouter.ai/api/v1/".parse().unwrap();
        assert_eq!(endpoint(&slash, &["keys", "x/y"]).as_str(), "https://openrouter.ai/api/v1/keys/x%2Fy");
    }

    fn failed(transient: bool, asked: Option<Duration>, unprocessed: bool) -> Failed {
        let error = ResourceError { transient, message: String::new() };
        Failed { error, asked, unprocessed }
    }

    #[test]
    fn only_transient_failures_are_resent_and_creates_only_when_unprocessed() {
        let asked = Duration::from_secs(2);
        assert_eq!(failed(true, None, false).verdict(Replay::Safe), Verdict::Resend);
        assert_eq!(failed(true, Some(asked), true).verdict(Replay::Safe), Verdict::ResendAfter(asked));
        assert_eq!(failed(false, None, true).verdict(Replay::Safe), Verdict::GiveUp);
        assert_eq!(failed(true, None, false).verdict(Replay::OnlyIfUnprocessed), Verdict::GiveUp);
        assert_eq!(failed(true, None, true).verdict(Replay::OnlyIfUnprocessed), Verdict::Resend);
        assert_eq!(
            failed(true, Some(asked), true).verdict(Replay::OnlyIfUnprocessed),
            Verdict::ResendAfter(asked)
        );
    }

    #[test]
    fn retry_after_and_excerpts() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(excerpt(b"a\n  b"), "a b");
        assert_eq!(excerpt("x".repeat(400).as_bytes()).chars().count(), 301);
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!retryable(StatusCode::UNAUTHORIZED));
        assert!(!retryable(StatusCode::NOT_FOUND));
    }
}
