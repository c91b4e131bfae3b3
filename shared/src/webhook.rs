//! The webhook client (issue 16.5): one POST of one outbox row to `POOL_WEBHOOK_URL`, signed
//! with HMAC-SHA256 over `<timestamp>.<body>` (docs/webhooks.md says how to verify). Retries are
//! not made here: a failed attempt goes back to the outbox with its next time (engine/webhooks.rs).

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use url::Url;

/// Seconds since the Unix epoch at the time of the attempt.
pub const TIMESTAMP_HEADER: &str = "x-pool-webhook-timestamp";
/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "x-pool-webhook-signature";
/// The outbox row's id: the same on every attempt, so a receiver can drop a repeat.
pub const DELIVERY_HEADER: &str = "x-pool-webhook-id";
/// The event's type (`instance.claimed`, `breaker.open`, ...), also in the body.
pub const EVENT_HEADER: &str = "x-pool-webhook-event";

/// The signature header's value for `body` sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let code = mac.finalize().into_bytes();
    let hex: String = code.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Where and how webhooks are sent. The secret is never logged (Debug redacts it).
#[derive(Debug, Clone)]
pub struct WebhookSender {
    http: reqwest::Client,
    url: Url,
    secret: SecretString,
}

/// One failed attempt, as the outbox records it: never the URL (it may hold a token) nor the
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("receiver answered {0}")]
    Status(u16),
    #[error("request failed: {0}")]
    Request(String),
}

impl WebhookSender {
    /// `http` carries the per-request timeout.
    pub fn new(http: reqwest::Client, url: Url, secret: SecretString) -> Self {
        WebhookSender { http, url, secret }
    }

    /// Sends one row. Any 2xx is delivered; anything else is a failure to retry.
    pub async fn send(&self, delivery_id: i64, event_type: &str, body: &str) -> Result<(), SendError> {
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signed = signature(self.secret.expose_secret().as_bytes(), timestamp, body.as_bytes());
        let answer = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signed)
            .header(DELIVERY_HEADER, delivery_id.to_string())
            .header(EVENT_HEADER, event_type)
            .body(body.to_owned())
            .send()
            .await
            .map_err(|err| SendError::Request(error_chain(err.without_url())))?;
        let status = answer.status();
        if status.is_success() { Ok(()) } else { Err(SendError::Status(status.as_u16())) }
    }
}

/// The error with its causes ("error sending request: connection refused"), without the URL.
fn error_chain(err: reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned against an independent computation (`printf '1700000000.{"a":1}' | openssl dgst
    /// -sha256 -hmac secret`), so the documented recipe and the code cannot drift apart.
    #[test]
    fn signs_timestamp_dot_body() {
        assert_eq!(
            signature(b"secret", 1_700_000_000, br#"{"a":1}"#),
            "sha256=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
