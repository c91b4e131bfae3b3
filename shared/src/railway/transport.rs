//! One GraphQL request to Railway and its classification: the POST with `Authorization: Bearer`
//! and our User-Agent, the body read as text first (Railway's edge can answer HTML), the
//! `errors` array read into a [`RailwayError`], the rate-limit headers honoured, and the
//! bounded retries of [`crate::retry::run`], judged by [`super::retry`].

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, header};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tracing::Instrument;

use super::RailwayClient;
use super::error::{RailwayError, RailwayErrorKind, parse_reset, read_errors, sanitize};
use super::retry;
use crate::retry::parse_retry_after;

/// Sent on every request, as the Sprites client does: Railway can tell our traffic apart.
pub use crate::USER_AGENT;

/// Whether a call may be sent again when its outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resend {
    /// Reads, and writes that land in the same state however often they are sent.
    Safe,
    /// Creates (`volumeCreate`, `serviceDomainCreate`, `serviceCreate`): sent again only when
    /// Railway surely did not act; otherwise the caller looks the result up first.
    LookUpFirst,
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The wait the answer asks for: `Retry-After`, else `X-RateLimit-Reset` when
/// `X-RateLimit-Remaining` says the window is spent (or the answer is a 429).
fn asked_wait(headers: &HeaderMap, status: u16) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(wait) = get(header::RETRY_AFTER.as_str()).and_then(parse_retry_after) {
        return Some(wait);
    }
    let spent = get("x-ratelimit-remaining").and_then(|v| v.trim().parse::<f64>().ok()) == Some(0.0);
    if spent || status == 429 {
        return get("x-ratelimit-reset").and_then(|v| parse_reset(v, unix_now()));
    }
    None
}

impl RailwayClient {
    /// Sends one GraphQL request, retrying as the policy allows; returns `data`.
    /// `secrets` are blanked out of any error message (variable values sent in the request).
    pub(crate) async fn call(
        &self,
        operation: &'static str,
        query: &str,
        variables: Value,
        secrets: &[&str],
        resend: Resend,
    ) -> Result<Value, RailwayError> {
        let span = tracing::info_span!(
            "railway",
            operation,
            status = tracing::field::Empty,
            attempts = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let body = json!({"query": query, "variables": variables});
        let started = Instant::now();
        let settings = &self.inner.settings;
        async {
            let idempotent = resend == Resend::Safe;
            let body = &body;
            let attempt = move |_| async move {
                self.wait_for_window(operation).await?;
                let result = self.attempt(operation, body, secrets).await;
                tracing::Span::current()
                    .record("status", result.as_ref().map_or_else(|err| err.status, |_| 200));
                result
            };
            let verdict = |err: &RailwayError, attempt| {
                retry::verdict(&settings.retry, attempt, err, idempotent, settings.throttle_wait)
            };
            let (outcome, attempts) = crate::retry::run(&settings.retry, attempt, verdict).await;
            let span = tracing::Span::current();
            span.record("attempts", attempts);
            span.record("duration_ms", started.elapsed().as_millis() as u64);
            match &outcome {
                Ok(_) => tracing::debug!("railway call succeeded"),
                Err(err) if err.is_not_found() => tracing::debug!(error = %err, "railway call found nothing"),
                Err(err) => tracing::warn!(error = %err, "railway call failed"),
            }
            outcome
        }
        .instrument(span)
        .await
    }

    /// Holds a call while an earlier answer said the rate-limit window is spent; a wait longer
    /// than the policy lets a server ask for fails the call as rate limited instead.
    async fn wait_for_window(&self, operation: &'static str) -> Result<(), RailwayError> {
        let until = *self.inner.window_opens.lock().unwrap_or_else(|e| e.into_inner());
        let Some(until) = until else { return Ok(()) };
        let wait = until.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Ok(());
        }
        if wait > self.inner.settings.retry.max_server_delay {
            let mut err = RailwayError::new(
                RailwayErrorKind::RateLimited,
                operation,
                "the rate-limit window is spent (X-RateLimit-Remaining: 0)",
            );
            err.retry_after = Some(wait);
            return Err(err);
        }
        tracing::debug!(wait_ms = wait.as_millis() as u64, "railway rate-limit window spent; waiting");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn note_window(&self, headers: &HeaderMap, status: u16) {
        let spent = headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            == Some(0.0);
        if !spent && status != 429 {
            return;
        }
        if let Some(wait) = asked_wait(headers, status) {
            let mut opens = self.inner.window_opens.lock().unwrap_or_else(|e| e.into_inner());
            let at = Instant::now() + wait;
            if opens.is_none_or(|o| o < at) {
                *opens = Some(at);
            }
        }
    }

    async fn attempt(
        &self,
        operation: &'static str,
        body: &Value,
        secrets: &[&str],
    ) -> Result<Value, RailwayError> {
        let settings = &self.inner.settings;
        let token = settings.token.expose_secret();
        let mut all_secrets: Vec<&str> = secrets.to_vec();
        all_secrets.push(token);
        let fail = |kind, status: u16, retry_after: Option<Duration>, message: &str| RailwayError {
            status,
            retry_after,
            ..RailwayError::new(kind, operation, sanitize(message, &all_secrets))
        };
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            RailwayError::new(
                RailwayErrorKind::Unauthorized,
                operation,
                "the token has characters not allowed in a header",
            )
        })?;
        auth.set_sensitive(true);
        let response = self
            .inner
            .http
            .post(settings.api_url.clone())
            .header(header::AUTHORIZATION, auth)
            .header(header::USER_AGENT, USER_AGENT)
            .json(body)
            .timeout(settings.request_timeout)
            .send()
            .await
            .map_err(|e| fail(RailwayErrorKind::Transient, 0, None, &e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let retry_after = asked_wait(response.headers(), status);
        self.note_window(response.headers(), status);
        let text = response
            .text()
            .await
            .map_err(|e| fail(RailwayErrorKind::Transient, status, None, &e.without_url().to_string()))?;
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        let Some(parsed) = parsed else {
            // A page from the edge (HTML or text), not a GraphQL answer: Cloudflare's 403 and
            // 5xx pages come and go. Only 401 says the token is wrong.
            let kind = match status {
                401 => RailwayErrorKind::Unauthorized,
                429 => RailwayErrorKind::RateLimited,
                403 | 408 | 500..=599 | 200..=299 => RailwayErrorKind::Transient,
                _ => RailwayErrorKind::Permanent,
            };
            let snippet: String = text.chars().take(120).collect();
            return Err(fail(
                kind,
                status,
                retry_after,
                &format!("HTTP {status} without a JSON body: {snippet}"),
            ));
        };
        if let Some((reading, message)) = read_errors(&parsed) {
            let fallback = match status {
                401 | 403 => RailwayErrorKind::Unauthorized,
                429 => RailwayErrorKind::RateLimited,
                500..=599 => RailwayErrorKind::Transient,
                _ => RailwayErrorKind::Permanent,
            };
            let mut err = fail(reading.map_or(fallback, |r| r.kind), status, retry_after, &message);
            if let Some(r) = reading {
                err.missing = r.missing;
                err.throttle = r.throttle;
            }
            return Err(err);
        }
        match status {
            401 | 403 => Err(fail(RailwayErrorKind::Unauthorized, status, None, &format!("HTTP {status}"))),
            429 => {
                Err(fail(RailwayErrorKind::RateLimited, status, retry_after, "HTTP 429 Too Many Requests"))
            }
            500..=599 => {
                Err(fail(RailwayErrorKind::Transient, status, retry_after, &format!("HTTP {status}")))
            }
            200..=299 => match parsed.get("data") {
                Some(data) if !data.is_null() => Ok(data.clone()),
                _ => Err(fail(
                    RailwayErrorKind::Permanent,
                    status,
                    None,
                    "the answer has neither data nor errors",
                )),
            },
            _ => Err(fail(RailwayErrorKind::Permanent, status, None, &format!("HTTP {status}"))),
        }
    }
}
